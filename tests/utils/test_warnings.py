"""Warnings point at the user's line, however deep the package's calls go."""

import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_ood.detectors import SHE, Mahalanobis, TemperatureScaling, ViM
from sklearn_ood.exceptions import SingularCovarianceWarning

rng = np.random.default_rng(0)
X_FEW_ROWS = rng.normal(size=(4, 6))  # fewer rows than features: singular


def _she_without_class_1():
    X = np.abs(rng.normal(size=(40, 4)))
    W = np.eye(3, 4)
    W[1] = -10.0  # class 1 is never predicted
    return SHE((W, np.zeros(3))), X, (X @ W.T).argmax(axis=1)


def _vim_with_negative_logits():
    X = rng.normal(size=(60, 6))
    W, b = rng.normal(size=(3, 6)), np.full(3, -100.0)
    return ViM((W, b), n_components=3), X, None


def _temperature_with_labels_always_the_argmax():
    # Every label is the argmax: the NLL falls all the way to T -> 0.
    X = rng.normal(size=(30, 3))
    return TemperatureScaling(), X, X.argmax(axis=1)


CASES = {
    "Mahalanobis": (
        lambda: (Mahalanobis(), X_FEW_ROWS, None),
        SingularCovarianceWarning,
    ),
    "SHE": (_she_without_class_1, UserWarning),
    "ViM": (_vim_with_negative_logits, UserWarning),
    "TemperatureScaling": (_temperature_with_labels_always_the_argmax, Warning),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("in_pipeline", [False, True])
def test_warning_points_at_the_callers_line(name, in_pipeline):
    make, category = CASES[name]
    detector, X, y = make()
    estimator = (
        make_pipeline(FunctionTransformer(), detector) if in_pipeline else detector
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X, y)
    ours = [w for w in caught if issubclass(w.category, category)]
    assert ours, f"{name} did not warn"
    for w in ours:
        assert w.filename == __file__, (w.filename, str(w.message))
