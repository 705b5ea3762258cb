"""A fitted detector's pickle holds its statistics, not its fit data.

For every NumPy detector, fitted on a fit set much larger than its
statistics: the pickle does not grow with the number of fit rows, except by
the two things documented to (``bank_`` of the detectors that memorise their
fit rows, and the reservoir of at most 10,000 threshold scores,
``_offset_terms_``, of the ``partial_fit`` detectors); no fitted attribute
holds an array with a row per fit row; and the pickle is not larger than the
arrays of the fitted state plus a small per-array overhead.
"""

import pickle
import warnings

import numpy as np
import pytest
from test_common import DETECTOR_KWARGS

from sklearn_ood import all_detectors
from sklearn_ood.base import OFFSET_SAMPLE_SIZE, PartialFitMixin
from sklearn_ood.detectors import Energy

DETECTORS = all_detectors(include_torch=False)
# Detectors whose model is the fit set itself: the attribute that holds it.
MEMORISING = {"KNN": "bank_", "NNGuide": "bank_"}
SMALL, LARGE = 2_000, 12_000  # fit rows; LARGE exceeds the 10,000-row reservoir
N_FEATURES, N_CLASSES = 8, 3
# Bytes a pickle spends on names, parameters and small Python objects, and on
# the header of each array.
OVERHEAD_BYTES, PER_ARRAY_BYTES = 1_024, 160


def _data(n_samples, seed=0):
    """Non-negative features (or logits) whose largest column is the label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % N_CLASSES
    means = 3.0 * np.eye(N_CLASSES, N_FEATURES)
    return np.abs(means[y] + rng.normal(size=(n_samples, N_FEATURES))), y


def _fitted(name, cls, n_samples):
    X, y = _data(n_samples)
    with warnings.catch_warnings():
        # SHE warns that the test's random head misclassifies a class.
        warnings.simplefilter("ignore", UserWarning)
        return cls(**DETECTOR_KWARGS.get(name, {})).fit(X, y)


def _fitted_arrays(det):
    """(path, array) of every array reachable from the fitted state.

    The fitted state is everything in ``vars(det)`` but the constructor
    parameters, walked through lists, tuples, dicts and objects (helper
    accumulators, inner detectors).
    """
    params = det.get_params(deep=False)
    stack = [(key, value) for key, value in vars(det).items() if key not in params]
    seen = set()
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            yield path, obj
        elif isinstance(obj, dict):
            stack.extend((f"{path}[{k!r}]", v) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(obj))
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend((f"{path}.{k}", v) for k, v in vars(obj).items())


def _documented_growth(det):
    """Bytes of the arrays allowed to grow with the fit set: bank, reservoir."""
    names = {MEMORISING.get(type(det).__name__), "_offset_terms_"}
    return sum(vars(det)[n].nbytes for n in names if vars(det).get(n) is not None)


@pytest.fixture(scope="module")
def fitted_pairs():
    """Each detector fitted on SMALL and on LARGE rows (fitted once)."""
    return {
        name: (_fitted(name, cls, SMALL), _fitted(name, cls, LARGE))
        for name, cls in DETECTORS
    }


@pytest.mark.parametrize("name", [name for name, _ in DETECTORS])
def test_pickle_does_not_grow_with_the_fit_set(name, fitted_pairs):
    small, large = fitted_pairs[name]
    size_small = len(pickle.dumps(small)) - _documented_growth(small)
    size_large = len(pickle.dumps(large)) - _documented_growth(large)
    assert abs(size_large - size_small) <= 256, (
        f"{name}: a pickle of the statistics of {LARGE:,} fit rows is "
        f"{size_large - size_small:+,} bytes off that of {SMALL:,} rows"
    )


@pytest.mark.parametrize("name", [name for name, _ in DETECTORS])
def test_no_fitted_array_has_a_row_per_fit_row(name, fitted_pairs):
    det = fitted_pairs[name][1]
    # Arrays with as many rows as the offset_ sample (10,000) or more: only the
    # bank of a memorising detector and the reservoir of a partial_fit one.
    long = {p for p, a in _fitted_arrays(det) if a.ndim and len(a) >= 10_000}
    expected = {MEMORISING[name]} if name in MEMORISING else set()
    if isinstance(det, PartialFitMixin):
        expected.add("_offset_terms_")
    assert long == expected
    if name in MEMORISING:
        assert vars(det)[MEMORISING[name]].shape == (LARGE, N_FEATURES)
    if isinstance(det, PartialFitMixin):
        # The threshold's reservoir: 10,000 float64 per score term, whatever
        # the number of features.
        terms = det._offset_terms_
        assert terms.dtype == np.float64
        assert terms.shape[0] == OFFSET_SAMPLE_SIZE
        assert terms.ndim == 1 or terms.shape[1] < N_FEATURES


@pytest.mark.parametrize("name", [name for name, _ in DETECTORS])
def test_pickle_is_the_size_of_the_fitted_arrays(name, fitted_pairs):
    det = fitted_pairs[name][1]
    arrays = [a for _, a in _fitted_arrays(det)]
    # The statistics proper (bank and reservoir aside) are at most a few
    # class-by-feature and feature-by-feature matrices: not the fit set.
    statistics = sum(a.nbytes for a in arrays) - _documented_growth(det)
    assert statistics <= 4 * 8 * (N_CLASSES + 1) * (N_FEATURES + 1) ** 2, name
    bound = sum(a.nbytes for a in arrays)
    bound += PER_ARRAY_BYTES * len(arrays) + OVERHEAD_BYTES
    assert len(pickle.dumps(det)) <= bound, (
        f"{name}: the pickle holds more than its fitted arrays "
        f"({len(pickle.dumps(det)):,} > {bound:,} bytes)"
    )


def test_energy_on_a_large_fit_set_pickles_to_under_2_kb():
    # 50,000 x 1,000 logits (200 MB as float32): before offset_ was set in
    # fit, this pickle held a 10,000-row sample of them (38 MB).
    X = np.random.default_rng(0).random((50_000, 1_000), dtype=np.float32)
    det = Energy().fit(X)
    del X
    assert len(pickle.dumps(det)) < 2_000
