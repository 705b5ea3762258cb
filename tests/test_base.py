"""The shared detector base: labels, threshold, validation, registry."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone

import sklearn_ood
from sklearn_ood import all_detectors
from sklearn_ood.base import BaseDetector, PartialFitMixin, check_ood_labels
from sklearn_ood.detectors import Energy, MaxSoftmax


class CentroidDistance(BaseDetector):
    """Test-local class-aware detector: minus the distance to the nearest mean."""

    _class_aware = True

    def _fit(self, X, y):
        labels = np.zeros(len(X), int) if y is None else y
        self.means_ = np.array([X[labels == c].mean(axis=0) for c in np.unique(labels)])

    def _score(self, X):
        d = np.linalg.norm(X[:, None, :] - self.means_[None], axis=2)
        return -d.min(axis=1)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, 0.3, size=(30, 2)) for c in (0.0, 3.0, 6.0)])
    y = np.repeat([3, 7, 12], 30)
    return X, y


def test_classes_are_the_sorted_id_labels_and_need_not_be_contiguous():
    X, y = _data()
    y = y.copy()
    y[:5] = -1
    det = CentroidDistance().fit(X, y)
    np.testing.assert_array_equal(det.classes_, [3, 7, 12])
    assert det.means_.shape == (3, 2)


def test_ood_rows_are_dropped_before_fit():
    X, y = _data()
    X_ood = np.full((10, 2), 100.0)
    with_ood = CentroidDistance().fit(np.vstack([X, X_ood]), np.r_[y, -np.ones(10)])
    without = CentroidDistance().fit(X, y)
    np.testing.assert_array_equal(with_ood.means_, without.means_)
    assert with_ood.offset_ == without.offset_


@pytest.mark.parametrize("contamination", [0.01, 0.05, 0.2, 0.5])
def test_offset_rejects_the_contamination_share_of_id_rows(contamination):
    X = np.random.default_rng(0).normal(size=(2000, 4))
    det = Energy(contamination=contamination).fit(X)
    rejected = np.mean(det.predict(X) == -1)
    assert abs(rejected - contamination) <= 1 / 2000
    np.testing.assert_allclose(
        det.offset_, np.quantile(det.score_samples(X), contamination)
    )


def test_decision_function_predict_and_fit_predict():
    X = np.random.default_rng(1).normal(size=(50, 3))
    det = MaxSoftmax().fit(X)
    np.testing.assert_allclose(
        det.decision_function(X), det.score_samples(X) - det.offset_
    )
    pred = det.predict(X)
    assert pred.dtype.kind == "i" and set(pred) <= {-1, 1}
    np.testing.assert_array_equal(MaxSoftmax().fit_predict(X), pred)


def test_float32_decision_function_matches_predict():
    X = np.random.default_rng(2).normal(size=(300, 3)).astype(np.float32)
    det = Energy().fit(X)
    decision = det.decision_function(X)
    assert decision.dtype == np.float32
    np.testing.assert_array_equal(det.predict(X), np.where(decision >= 0, 1, -1))


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([0.5, 1.0, 2.0, 0.0]), "integer labels"),
        (np.array(["a", "b", "a", "b"]), "Unknown label type"),
        (np.array([0, 1, 2]), "3 labels but X has 4 rows"),
        (np.array([-1, -1, -2, -1]), "every row as out-of-distribution"),
        (np.array([0, np.nan, 1, 1]), "NaN or infinity"),
    ],
)
def test_bad_labels_raise(y, match):
    with pytest.raises(ValueError, match=match):
        Energy().fit(np.zeros((4, 2)), y)


def test_integral_float_and_object_labels_are_accepted():
    np.testing.assert_array_equal(
        check_ood_labels(np.array([1.0, -1.0, 0.0]), 3), [1, -1, 0]
    )
    np.testing.assert_array_equal(
        check_ood_labels(np.array([1, -1, 0], dtype=object), 3), [1, -1, 0]
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_raise(bad):
    X = np.zeros((5, 3))
    det = Energy().fit(X)
    X_bad = X.copy()
    X_bad[2, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        Energy().fit(X_bad)
    with pytest.raises(ValueError, match="NaN|infinity"):
        det.score_samples(X_bad)


@pytest.mark.parametrize("contamination", [0, -0.1, 0.51, 1.0])
def test_contamination_outside_half_open_interval_raises(contamination):
    with pytest.raises(ValueError, match="contamination"):
        Energy(contamination=contamination).fit(np.zeros((5, 3)))


def test_clone_keeps_parameters_and_drops_fitted_state():
    det = MaxSoftmax(temperature=3.0, contamination=0.1).fit(np.zeros((5, 2)))
    copy = clone(det)
    assert copy.get_params() == det.get_params()
    assert not hasattr(copy, "offset_")


def test_registry_lists_detectors_once_sorted_and_public():
    detectors = all_detectors(include_torch=False)
    names = [name for name, _ in detectors]
    assert names == sorted(set(names))
    assert all(issubclass(cls, BaseDetector) for _, cls in detectors)
    assert "BaseDetector" not in names
    assert sklearn_ood.all_detectors is all_detectors


def test_import_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, sklearn_ood, sklearn_ood.detectors, sklearn_ood.metrics; "
        "sklearn_ood.all_detectors(include_torch=False); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class MeanDistance(PartialFitMixin, BaseDetector):
    """Test-local streaming detector: minus the distance to the ID mean."""

    def _reset_stats(self, X, y):
        self.sum_ = np.zeros(X.shape[1])

    def _update_stats(self, X, y):
        with np.errstate(over="ignore"):  # refused below
            self.sum_ = self.sum_ + X.sum(axis=0, dtype=np.float64)
        if not np.all(np.isfinite(self.sum_)):
            raise ValueError("the sum overflowed")

    def _finalize_stats(self):
        self.mean_ = self.sum_ / self.n_samples_seen_

    def _score(self, X):
        return -np.linalg.norm(X - self.mean_, axis=1)


def test_partial_fit_scores_each_chunk_under_the_model_of_its_call():
    X = np.random.default_rng(0).normal(size=(900, 3))
    y = np.r_[np.zeros(800, int), -np.ones(100, int)]
    whole = MeanDistance().fit(X, y)
    chunked = MeanDistance()
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(900), 7)]
    for chunk in chunks:
        chunked.partial_fit(*chunk)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=0, atol=1e-12)
    assert chunked.n_samples_seen_ == whole.n_samples_seen_ == 800
    # Reference written out: chunk k's ID rows scored by the mean of chunks <= k.
    scores = []
    for k, (X_k, y_k) in enumerate(chunks):
        seen = np.concatenate([c[0][c[1] >= 0] for c in chunks[: k + 1]])
        scores.append(-np.linalg.norm(X_k[y_k >= 0] - seen.mean(axis=0), axis=1))
    expected = np.percentile(np.concatenate(scores), 5)
    assert chunked.offset_ == pytest.approx(expected, rel=1e-12)
    assert chunked.offset_ == pytest.approx(whole.offset_, rel=0.2)


def test_partial_fit_keeps_a_bounded_uniform_sample_of_scores(monkeypatch):
    monkeypatch.setattr(MeanDistance, "_offset_sample_size", 200)
    X = np.arange(20_000, dtype=float)[:, None]
    det = MeanDistance()
    for chunk in np.array_split(X, 50):
        det.partial_fit(chunk)
    terms = det._offset_terms_
    assert terms.shape == (200,) and det.n_samples_seen_ == 20_000
    # The same chunks give the same sample: no hidden random state.
    again = MeanDistance()
    for chunk in np.array_split(X, 50):
        again.partial_fit(chunk)
    np.testing.assert_array_equal(again._offset_terms_, terms)
    # fit followed by partial_fit keeps streaming from the fitted state.
    det = MeanDistance().fit(X[:1000])
    det.partial_fit(X[1000:2000])
    np.testing.assert_allclose(det.mean_, X[:2000].mean(axis=0))
    assert det.n_samples_seen_ == 2000
    assert det._offset_terms_.shape == (200,)


def test_reservoir_sample_of_scores_is_uniform(monkeypatch):
    # Score = the row's index: the kept scores are a sample of the rows.
    class Index(MeanDistance):
        def _score(self, X):
            return X[:, 0].copy()

    monkeypatch.setattr(Index, "_offset_sample_size", 500)
    X = np.arange(50_000, dtype=float)[:, None]
    det = Index()
    for chunk in np.array_split(X, 37):
        det.partial_fit(chunk)
    kept = det._offset_terms_
    assert len(np.unique(kept)) == 500
    # Uniform over 0..49999: mean 25000 (sd of the mean ~650), each decile
    # holds about 50 rows.
    assert abs(kept.mean() - 25_000) < 3_000
    counts = np.histogram(kept, bins=10, range=(0, 50_000))[0]
    assert counts.min() > 20 and counts.max() < 85


def test_partial_fit_rejects_a_changed_feature_count():
    det = MeanDistance().partial_fit(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="features"):
        det.partial_fit(np.zeros((5, 4)))


def _state(det):
    import pickle

    return pickle.dumps(det.__dict__)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((4, 3), np.nan), "NaN"),
        (np.full((4, 3), 1e308), "overflowed"),
        (np.zeros((4, 2)), "features"),
    ],
)
def test_a_refused_chunk_leaves_the_detector_unchanged(bad, match):
    rng = np.random.default_rng(1)
    det = MeanDistance().partial_fit(rng.normal(size=(50, 3)))
    det.partial_fit(rng.normal(size=(50, 3)))
    before = _state(det)
    with pytest.raises(ValueError, match=match):
        det.partial_fit(np.vstack([bad, bad]) if bad.shape[1] == 3 else bad)
    assert _state(det) == before
    # A refused first chunk leaves an unfitted detector.
    fresh = MeanDistance()
    with pytest.raises(ValueError, match="overflowed"):
        fresh.partial_fit(np.full((4, 3), 1e308))
    assert fresh.__dict__ == MeanDistance().__dict__


def test_offset_of_a_large_fit_set_comes_from_a_sample(monkeypatch):
    monkeypatch.setattr(Energy, "_offset_sample_size", 500)
    X = np.random.default_rng(4).normal(size=(20_000, 3))
    det = Energy().fit(X)
    rows = det._offset_row_indices(len(X))
    assert len(rows) == 500 and len(np.unique(rows)) == 500
    np.testing.assert_allclose(
        det.offset_, np.quantile(det.score_samples(X[rows]), 0.05)
    )
    # A 500-row sample estimates the 5 % quantile of all 20,000 rows well.
    assert abs(np.mean(det.predict(X) == -1) - 0.05) < 0.03


class CountingCentroidDistance(CentroidDistance):
    """CentroidDistance that counts the rows it scores."""

    def _score(self, X):
        self.scored_rows = getattr(self, "scored_rows", 0) + len(X)
        return super()._score(X)


def test_offset_is_a_plain_attribute_set_by_fit():
    X, y = _data()
    det = CountingCentroidDistance(contamination=0.1).fit(X, y)
    assert "offset_" in det.__dict__
    assert det.scored_rows == len(X)  # fit scores its rows once
    expected = np.quantile(CentroidDistance().fit(X, y).score_samples(X), 0.1)
    assert det.offset_ == pytest.approx(expected, rel=1e-12)
    # Nothing of the fit rows is kept: changing them, or the parameter after
    # fit, changes nothing, and scoring computes no threshold.
    X_copy = X.copy()
    X[:] = 0.0
    det.set_params(contamination=0.3)
    assert det.offset_ == pytest.approx(expected, rel=1e-12)
    det.predict(X_copy[:5])
    det.decision_function(X_copy[:5])
    assert det.scored_rows == len(X) + 10


def test_contamination_none_learns_no_threshold():
    from sklearn_ood.exceptions import NoThresholdError

    X, y = _data()
    det = CountingCentroidDistance(contamination=None).fit(X, y)
    assert not hasattr(det, "scored_rows")  # fit scores nothing
    assert not hasattr(det, "offset_")
    np.testing.assert_allclose(
        det.score_samples(X), CentroidDistance().fit(X, y).score_samples(X)
    )
    for method in (det.predict, det.decision_function):
        with pytest.raises(NoThresholdError, match="contamination=None"):
            method(X)
    # A threshold can be set by hand.
    det.offset_ = -1.0
    np.testing.assert_array_equal(
        det.predict(X), np.where(det.score_samples(X) >= -1.0, 1, -1)
    )
    # Refitting with a contamination learns one; refitting without drops it.
    det.set_params(contamination=0.1).fit(X, y)
    assert hasattr(det, "offset_")
    det.set_params(contamination=None).fit(X, y)
    assert not hasattr(det, "offset_")


def test_offset_survives_pickle_and_can_be_set():
    import pickle

    X, y = _data()
    det = CentroidDistance().fit(X, y)
    restored = pickle.loads(pickle.dumps(det))
    assert restored.offset_ == det.offset_
    det.offset_ = -1.0
    np.testing.assert_allclose(
        det.decision_function(X), det.score_samples(X) + 1.0, rtol=1e-12
    )
    np.testing.assert_array_equal(
        det.predict(X), np.where(det.score_samples(X) >= -1.0, 1, -1)
    )


@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(2, 40), st.integers(2, 4)),
        elements=st.floats(-1e3, 1e3, allow_subnormal=False),
    ),
    contaminations=st.lists(
        st.floats(1e-3, 0.5, exclude_min=False), min_size=2, max_size=2
    ),
)
def test_a_larger_contamination_never_lowers_offset(X, contaminations):
    low, high = sorted(contaminations)
    for det in (Energy(), CentroidDistance()):
        offset_low = clone(det).set_params(contamination=low).fit(X).offset_
        offset_high = clone(det).set_params(contamination=high).fit(X).offset_
        assert offset_low <= offset_high


class CountingMeanDistance(MeanDistance):
    def _score(self, X):
        self.scored_rows = getattr(self, "scored_rows", 0) + len(X)
        return super()._score(X)


def test_streams_without_a_threshold_score_nothing():
    X = np.random.default_rng(5).normal(size=(300, 3))
    det = CountingMeanDistance(contamination=None).fit(X)
    det.partial_fit(X[:100])
    assert not hasattr(det, "scored_rows") and det._offset_terms_ is None
    assert not hasattr(det, "offset_") and det.n_samples_seen_ == 400
    # Setting a contamination starts the sample from the next chunk on.
    det.set_params(contamination=0.1).partial_fit(X[100:200])
    assert det.scored_rows == 100 and len(det._offset_terms_) == 100
    assert det.offset_ == pytest.approx(np.percentile(det._offset_terms_, 10))


def test_a_failed_fit_leaves_no_stream_to_continue():
    rng = np.random.default_rng(6)
    det = MeanDistance().partial_fit(rng.normal(size=(50, 3)))
    with pytest.raises(ValueError, match="overflowed"):
        det.fit(np.full((4, 3), 1e308))
    assert not hasattr(det, "n_samples_seen_")
    # The next partial_fit starts afresh (here with another feature count).
    X = rng.normal(size=(20, 5))
    det.partial_fit(X)
    np.testing.assert_allclose(det.mean_, X.mean(axis=0))
    assert det.n_samples_seen_ == 20
