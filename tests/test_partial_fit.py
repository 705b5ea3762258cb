"""``partial_fit`` of every streaming detector: a refused chunk changes nothing."""

import pickle
import warnings

import numpy as np
import pytest
from test_common import DETECTOR_KWARGS

from sklearn_ood import all_detectors
from sklearn_ood.base import PartialFitMixin

STREAMING = [
    (name, cls)
    for name, cls in all_detectors(include_torch=False)
    if issubclass(cls, PartialFitMixin)
]


def _data(n_samples, seed):
    """Non-negative rows whose largest column is the label (3 classes)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 3
    X = np.abs(3.0 * np.eye(3, 6)[y] + rng.normal(size=(n_samples, 6)))
    return X, y


def _bad_chunks():
    X, y = _data(12, seed=3)
    nan = X.copy()
    nan[2, 1] = np.nan
    return {
        "nan": (nan, y),
        "1e200": (X * 1e200, y),
        "1e300": (X * 1e300, y),
        "width": (X[:, :5], y),
        "labels": (X, np.full(len(X), 7.5)),
    }


@pytest.mark.parametrize("bad", list(_bad_chunks()))
@pytest.mark.parametrize("name, cls", STREAMING, ids=[n for n, _ in STREAMING])
def test_a_refused_chunk_leaves_the_stream_unchanged(name, cls, bad):
    X, y = _data(60, seed=0)
    X_bad, y_bad = _bad_chunks()[bad]
    X_next, y_next = _data(30, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = cls(**DETECTOR_KWARGS.get(name, {})).partial_fit(X, y)
        before = pickle.dumps(det.__dict__)
        try:
            det.partial_fit(X_bad, y_bad)
        except ValueError:
            assert pickle.dumps(det.__dict__) == before
            # The stream goes on as if the chunk had never come.
            det.partial_fit(X_next, y_next)
            expected = cls(**DETECTOR_KWARGS.get(name, {}))
            expected.partial_fit(X, y).partial_fit(X_next, y_next)
            assert pickle.dumps(det.__dict__) == pickle.dumps(expected.__dict__)
        else:
            # Accepted: the chunk is within the method's range; its scores
            # must then be finite.
            assert bad not in ("nan", "width", "labels")
            assert np.all(np.isfinite(det.score_samples(X)))
