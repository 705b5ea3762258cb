"""The fast paths of ReAct, DICE, ASH and SCALE compute what the plain ones do.

Exact selection of ReAct's percentile, the inner detector that is not fitted
on every row, float32 products, chunks and blocks of rows: each is checked
against the computation it replaces.
"""

import pickle

import numpy as np
import pytest
from sklearn import config_context
from sklearn.base import BaseEstimator, clone

from sklearn_ood.detectors import (
    ASH,
    DICE,
    GEN,
    SCALE,
    Energy,
    Entropy,
    KLMatching,
    MaxLogit,
    MaxSoftmax,
    ReAct,
    TemperatureScaling,
    WeightedEnergy,
)
from sklearn_ood.detectors._shaped_logits import _is_stateless
from sklearn_ood.utils import _chunking
from sklearn_ood.utils import _order_statistics as _order_statistics_module
from sklearn_ood.utils._order_statistics import (
    cache_row_chunks,
    order_statistics,
    order_statistics_between,
    percentile_of_entries,
)

DETECTORS = {
    "ReAct": lambda head, **kw: ReAct(head, **kw),
    "DICE": lambda head, **kw: DICE(head, **kw),
    "ASH-S": lambda head, **kw: ASH(head, variant="s", **kw),
    "ASH-P": lambda head, **kw: ASH(head, variant="p", **kw),
    "ASH-B": lambda head, **kw: ASH(head, variant="b", **kw),
    "SCALE": lambda head, **kw: SCALE(head, **kw),
}


def _realistic(n_fit=400, n_test=200, n_features=512, n_classes=100, seed=0):
    """ReLU features of class clusters and a head that separates them.

    As for a trained network: about half the activations are zero, the top
    logit is several units above the others, and the head is the centred
    class means (scaled) plus noise.
    """
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, n_features))
    labels = rng.integers(n_classes, size=n_fit)
    X_fit = np.maximum(means[labels] + rng.standard_normal((n_fit, n_features)), 0)
    X_test = np.maximum(1.3 * rng.standard_normal((n_test, n_features)) + means[:1], 0)
    centred = means - means.mean(axis=0)
    W = 3.0 * centred / np.linalg.norm(centred, axis=1, keepdims=True)
    W += 0.3 * rng.standard_normal(W.shape) / np.sqrt(n_features)
    b = rng.normal(0.0, 0.1, n_classes)
    return X_fit.astype(np.float32), X_test.astype(np.float32), (W, b)


# ------------------------------------------------------ ReAct's percentile
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["relu", "signed", "few-values", "fortran"])
def test_percentile_of_entries_is_numpys_on_the_float64_matrix(dtype, kind):
    # 700 x 512 entries: more than the size below which it just partitions.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 512))
    if kind == "relu":
        X = np.maximum(X, 0)  # half the entries tie at 0
    elif kind == "few-values":
        X = np.round(3 * X)  # ~20 distinct values: every rank is a tie
    X = X.astype(dtype)
    if kind == "fortran":
        X = np.asfortranarray(X)
    X64 = X.astype(np.float64)
    for q in (0, 1e-4, 0.5, 10, 37.3, 50, 63.5, 90, 99, 99.99, 100):
        assert percentile_of_entries(X, q) == np.percentile(X64, q), q


def test_percentile_of_small_matrices():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 5), (3, 1), (7, 4), (30, 16)]:
        X = rng.standard_normal(shape).astype(np.float32)
        for q in (0, 12.5, 50, 90, 100):
            expected = np.percentile(X.astype(np.float64), q)
            assert percentile_of_entries(X, q) == expected


def test_order_statistics_between_bounds():
    rng = np.random.default_rng(2)
    X = np.maximum(rng.standard_normal((300, 40)), 0).astype(np.float32)
    flat = np.sort(X.ravel())
    r = 9_000  # above the ~6,000 zeros
    assert order_statistics_between(X, r, flat[r - 50], flat[r + 50]) == (
        flat[r],
        flat[r + 1],
    )
    # Ranks inside the ties at the lower bound (the zeros) are counted.
    assert order_statistics_between(X, 10, 0.0, flat[r]) == (0.0, 0.0)
    # Bounds that miss a rank give None.
    assert order_statistics_between(X, r, flat[r + 5], np.inf) is None
    assert order_statistics_between(X, r, -np.inf, flat[r - 5]) is None


def test_order_statistics_fall_back_when_the_bounds_miss(monkeypatch):
    X = np.random.default_rng(3).standard_normal((600, 512)).astype(np.float32)
    r = 123_456
    expected = tuple(np.sort(X.ravel())[[r, r + 1]])
    assert order_statistics(X, r) == expected
    monkeypatch.setattr(
        _order_statistics_module, "order_statistics_between", lambda *args: None
    )
    assert order_statistics(X, r) == expected


def test_react_threshold_of_float32_features_is_exact():
    X, _, head = _realistic(n_fit=700)
    det = ReAct(head, percentile=90).fit(X)
    assert det.threshold_ == np.percentile(X.astype(np.float64), 90)


# ------------------------------------------------------- float32 features
@pytest.mark.parametrize("name", list(DETECTORS))
def test_float32_features_match_the_float64_computation(name):
    """Float32 scores against float64 scores of the same numbers.

    ReAct and DICE compute in float64: only the float32 rounding of the
    scores (2**-24 relative) separates them. ASH and SCALE take a float32
    product with the head, documented to about 1e-6 relative.
    """
    X_fit, X_test, head = _realistic()
    make = DETECTORS[name]
    s64 = make(head).fit(X_fit.astype(np.float64))
    s64 = s64.score_samples(X_test.astype(np.float64))
    s32 = make(head).fit(X_fit).score_samples(X_test)
    assert s32.dtype == np.float32
    rtol = 1e-7 if name in ("ReAct", "DICE") else 1e-5
    np.testing.assert_allclose(s32, s64, rtol=rtol, atol=0)


@pytest.mark.parametrize("name", ["ASH-P", "ASH-S", "SCALE"])
def test_float32_product_that_overflows_is_redone_in_float64(name):
    # One class has weights of -1e19: its logit is about -1e40, beyond
    # float32 but not float64, and the energy stays small.
    rng = np.random.default_rng(4)
    X = np.abs(rng.normal(size=(5, 8))) * 1e20
    W = rng.normal(size=(3, 8)) * 1e-20
    W[2] = -1e19
    make = DETECTORS[name]
    s64 = make((W, np.zeros(3)), percentile=50).fit(X).score_samples(X)
    det32 = make((W, np.zeros(3)), percentile=50).fit(X.astype(np.float32))
    s32 = det32.score_samples(X.astype(np.float32))
    assert np.all(np.isfinite(s32))
    np.testing.assert_allclose(s32, s64, rtol=1e-5)


# ----------------------------------------------------------- inner detector
def test_is_stateless():
    for det in (Energy(), MaxSoftmax(), MaxLogit(), Entropy(), GEN(), WeightedEnergy()):
        assert _is_stateless(det)

    class OwnFit(Energy):  # a subclass must say so itself
        def _fit(self, X, y):
            self.mean_ = X.mean(axis=0)

    class OwnScore(Energy):  # a new formula, the fit of Energy
        def _score(self, X):
            return -super()._score(X)

    class SaysSo(OwnFit):
        _stateless = True

    assert _is_stateless(OwnScore()) and _is_stateless(SaysSo())

    class ThirdParty(BaseEstimator):
        def fit(self, X, y=None):
            return self

        def score_samples(self, X):
            return X.max(axis=1)

    for det in (KLMatching(), TemperatureScaling(), OwnFit(), ThirdParty()):
        assert not _is_stateless(det)


@pytest.mark.parametrize("n_fit", [40, 12_000], ids=["all-rows", "sampled"])
@pytest.mark.parametrize("name", ["ReAct", "DICE", "ASH-S", "SCALE"])
@pytest.mark.parametrize(
    "inner", [Energy(contamination=0.1), MaxSoftmax(temperature=2.0), Entropy()]
)
def test_stateless_inner_detector_scores_as_a_fit_on_every_row(n_fit, name, inner):
    rng = np.random.default_rng(5)
    X = np.abs(rng.standard_normal((n_fit, 16)))
    head = (rng.standard_normal((5, 16)), rng.standard_normal(5))
    det = DETECTORS[name](head, detector=inner, contamination=0.2).fit(X)
    full = clone(inner).fit(det._shaped_logits(X))
    assert det.detector_.n_features_in_ == full.n_features_in_ == 5
    # The inner clone learns no threshold; the outer one is the quantile of
    # the outer scores of (a sample of) the fit rows, set by fit.
    assert not hasattr(det.detector_, "offset_")
    assert "offset_" in det.__dict__
    rows = det._offset_row_indices(n_fit)
    expected = np.percentile(full.score_samples(det._shaped_logits(X[rows])), 20)
    assert det.offset_ == pytest.approx(expected, rel=1e-12)
    restored = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(
        restored.score_samples(X[:20]), det.score_samples(X[:20])
    )
    np.testing.assert_array_equal(
        det.score_samples(X[:20]), full.score_samples(det._shaped_logits(X[:20]))
    )


def test_learning_inner_detector_is_fitted_on_every_row():
    class Recorder(BaseEstimator):
        def fit(self, X, y=None):
            self.X_, self.y_ = X, y
            return self

        def score_samples(self, X):
            return X.max(axis=1)

    rng = np.random.default_rng(6)
    X = np.abs(rng.standard_normal((50, 16))).astype(np.float32)
    y = np.arange(50) % 5
    head = (rng.standard_normal((5, 16)), rng.standard_normal(5))
    for make in DETECTORS.values():
        det = make(head, detector=Recorder()).fit(X, y)
        np.testing.assert_array_equal(det.detector_.X_, det._shaped_logits(X))
        np.testing.assert_array_equal(det.detector_.y_, y)


def test_fit_rows_whose_logits_overflow_raise_in_fit():
    """The rows that set ``offset_`` are shaped in ``fit``: overflowing
    logits are refused there, as they are by ``score_samples``."""
    rng = np.random.default_rng(7)
    head = (rng.standard_normal((3, 1000)), np.zeros(3))
    # k = 1 of 1000 nearly equal activations: exp(s1 / s2) ~ exp(1000).
    X = np.tile(np.linspace(1.0, 1.001, 1000), (3, 1))
    X[0] = 0.0
    X[0, 0] = 1.0  # s1 = s2: factor e
    with pytest.raises(ValueError, match="2 row\\(s\\) are not finite"):
        SCALE(head, percentile=99.9).fit(X)
    det = SCALE(head, percentile=99.9, contamination=None).fit(X)
    with pytest.raises(ValueError, match="2 row\\(s\\) are not finite"):
        det.score_samples(X)
    with pytest.raises(ValueError, match="not finite"):
        SCALE(head, percentile=99.9, detector=GEN(top_m=2)).fit(X)
    with pytest.raises(ValueError, match="not finite"):
        SCALE(head, percentile=99.9, detector=KLMatching()).fit(X)


# ----------------------------------------------------------- chunks, blocks
def test_cache_row_chunks_follow_the_cache_block_and_working_memory():
    X = np.zeros((1_000, 512), dtype=np.float32)  # 2 KiB rows
    chunks = cache_row_chunks(X)
    assert chunks[0] == slice(0, _chunking.CACHE_BLOCK_BYTES // 2048)
    assert sum(len(range(1_000)[c]) for c in chunks) == 1_000
    with config_context(working_memory=3 * 2048 / 2**20):
        assert cache_row_chunks(X)[0] == slice(0, 3)
    assert cache_row_chunks(X[:2, :])[0] == slice(0, 2)


@pytest.mark.parametrize("name", ["ASH-S", "ASH-P", "ASH-B", "SCALE"])
def test_cache_chunks_do_not_change_the_scores(name, monkeypatch):
    """The per-row work is exact: chunks of 3 rows give the same bits."""
    X_fit, X_test, head = _realistic(n_test=1_000)  # 2 MB: 4 chunks
    det = DETECTORS[name](head).fit(X_fit)
    scores = det.score_samples(X_test)
    monkeypatch.setattr(_chunking, "CACHE_BLOCK_BYTES", 3 * 2048)
    assert cache_row_chunks(X_test)[0] == slice(0, 3)
    np.testing.assert_array_equal(det.score_samples(X_test), scores)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(DETECTORS))
def test_blocks_follow_working_memory_and_do_not_change_the_scores(name, dtype):
    X_fit, X_test, head = _realistic(n_test=300)
    X_fit, X_test = X_fit.astype(dtype), X_test.astype(dtype)
    det = DETECTORS[name](head).fit(X_fit)
    scores = det.score_samples(X_test)
    sizes = []
    block_logits = det._block_logits

    def recording(X, out):
        sizes.append(len(X))
        block_logits(X, out)

    det._block_logits = recording
    # 7 rows of temporaries: 8 bytes x (512 features + 100 classes) each.
    with config_context(working_memory=7 * 8 * 612 / 2**20):
        chunked = det.score_samples(X_test)
    assert sizes == [7] * 42 + [6]
    # A BLAS product may round a row differently in another batch shape.
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(chunked, scores, rtol=rtol)
    sizes.clear()
    det.score_samples(X_test)
    assert sizes == [300]  # the default 1 GiB holds them all
