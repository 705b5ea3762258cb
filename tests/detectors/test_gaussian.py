"""Mahalanobis, RMD and GMM against float64 references written from the papers."""

import pickle
import warnings

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn import config_context
from sklearn.covariance import EmpiricalCovariance, ledoit_wolf, oas

from sklearn_ood.detectors._mahalanobis import GMM, RMD, Mahalanobis
from sklearn_ood.exceptions import SingularCovarianceWarning

LABELS = np.array([3, 7, 12])


def _data(n=240, d=5, labels=LABELS, seed=0, n_test=30):
    """Classes with different means and a shared correlated noise."""
    rng = np.random.default_rng(seed)
    y = labels[rng.integers(0, len(labels), n)]
    mix = np.eye(d) + 0.4 * rng.normal(size=(d, d))
    centers = 3.0 * rng.normal(size=(len(labels), d))
    X = rng.normal(size=(n, d)) @ mix + centers[np.searchsorted(labels, y)]
    T = 2.0 * rng.normal(size=(n_test, d)) @ mix
    return X, y, T


# ---------------------------------------------------------------- references
def ref_means_and_within(X, y):
    classes = np.unique(y)
    means = np.array([X[y == k].mean(axis=0) for k in classes])
    centred = X - means[np.searchsorted(classes, y)]
    return means, centred


def ref_min_sq_mahalanobis(T, means, cov):
    VI = np.linalg.inv(cov)
    return np.array([min(scipy_mahalanobis(t, m, VI) ** 2 for m in means) for t in T])


def ref_mahalanobis(X, y, T, estimator="empirical", reg=0.0):
    means, centred = ref_means_and_within(X, y)
    if estimator == "empirical":
        cov = centred.T @ centred / len(X)
    else:
        cov = {"ledoit_wolf": ledoit_wolf, "oas": oas}[estimator](centred)[0]
    cov = cov + reg * np.eye(X.shape[1])
    return -ref_min_sq_mahalanobis(T, means, cov), cov


def ref_rmd(X, y, T):
    means, centred = ref_means_and_within(X, y)
    d_k = ref_min_sq_mahalanobis(T, means, centred.T @ centred / len(X))
    mu0 = X.mean(axis=0)
    d_0 = ref_min_sq_mahalanobis(T, [mu0], np.cov(X.T, bias=True))
    return d_0 - d_k


def ref_gmm(X, y, T, estimator="empirical", reg=0.0):
    logs = []
    for k in np.unique(y):
        Xk = X[y == k]
        if estimator == "empirical":
            cov = np.cov(Xk.T, bias=True)
        else:
            cov = {"ledoit_wolf": ledoit_wolf, "oas": oas}[estimator](Xk)[0]
        cov = cov + reg * np.eye(X.shape[1])
        prior = len(Xk) / len(X)
        logs.append(np.log(prior) + multivariate_normal(Xk.mean(0), cov).logpdf(T))
    return logsumexp(np.array(logs), axis=0)


# ------------------------------------------------------------ against formula
@pytest.mark.parametrize("estimator", ["empirical", "ledoit_wolf", "oas"])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_mahalanobis_matches_reference(estimator, reg):
    X, y, T = _data()
    det = Mahalanobis(covariance_estimator=estimator, reg_covar=reg).fit(X, y)
    ref, cov = ref_mahalanobis(X, y, T, estimator, reg)
    np.testing.assert_array_equal(det.classes_, LABELS)
    np.testing.assert_allclose(det.covariance_, cov, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(det.score_samples(T), ref, rtol=1e-10)
    assert (det.shrinkage_ > 0) == (estimator != "empirical")


def test_shrinkage_matches_sklearn_on_class_centred_rows():
    X, y, _ = _data(n=40, d=12)  # few rows: noticeable shrinkage
    _, centred = ref_means_and_within(X, y)
    for estimator, func in [("ledoit_wolf", ledoit_wolf), ("oas", oas)]:
        det = Mahalanobis(covariance_estimator=estimator).fit(X, y)
        assert det.shrinkage_ == pytest.approx(func(centred)[1], rel=1e-10)
        assert det.shrinkage_ > 0.05


def test_single_class_is_sklearn_empirical_covariance_mahalanobis():
    X, _, T = _data()
    det = Mahalanobis().fit(X)
    np.testing.assert_array_equal(det.classes_, [0])
    expected = -EmpiricalCovariance().fit(X).mahalanobis(T)
    np.testing.assert_allclose(det.score_samples(T), expected, rtol=1e-10)


def test_rmd_matches_reference():
    X, y, T = _data()
    det = RMD().fit(X, y)
    np.testing.assert_allclose(det.background_mean_, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(det.score_samples(T), ref_rmd(X, y, T), rtol=1e-9)


@pytest.mark.parametrize(
    "estimator, reg", [("empirical", 0.0), ("empirical", 0.5), ("oas", 0.0)]
)
def test_gmm_matches_scipy_logpdf(estimator, reg):
    X, y, T = _data()
    det = GMM(covariance_estimator=estimator, reg_covar=reg).fit(X, y)
    np.testing.assert_allclose(det.priors_, np.bincount(y)[LABELS] / len(y))
    expected = ref_gmm(X, y, T, estimator, reg)
    np.testing.assert_allclose(det.score_samples(T), expected, rtol=1e-10)


def test_gmm_ledoit_wolf_per_class_shrinkage():
    X, y, T = _data(n=90, d=8)
    det = GMM(covariance_estimator="ledoit_wolf").fit(X, y)
    expected = [ledoit_wolf(X[y == k])[1] for k in LABELS]
    np.testing.assert_allclose(det.shrinkage_, expected, rtol=1e-10)
    np.testing.assert_allclose(
        det.score_samples(T), ref_gmm(X, y, T, "ledoit_wolf"), rtol=1e-10
    )


def test_scores_do_not_depend_on_the_row_chunks():
    X, y, T = _data(n_test=200)
    for det in [Mahalanobis(), RMD(), GMM()]:
        det.fit(X, y)
        whole = det.score_samples(T)
        with config_context(working_memory=0.001):  # a few rows per chunk
            np.testing.assert_allclose(det.score_samples(T), whole, rtol=1e-12)
            # fit accumulates in row blocks too
            refit = type(det)().fit(X, y).score_samples(T)
        np.testing.assert_allclose(refit, whole, rtol=1e-10)


def test_ood_rows_do_not_change_the_fit():
    X, y, T = _data()
    X_all = np.vstack([X, T])
    y_all = np.r_[y, -np.ones(len(T), int)]
    for cls in (Mahalanobis, RMD, GMM):
        np.testing.assert_array_equal(
            cls().fit(X_all, y_all).score_samples(T), cls().fit(X, y).score_samples(T)
        )


# -------------------------------------------------------- pytorch-ood 0.4.0
@pytest.fixture
def torch64():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_ood")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # their buffers use the default
    yield torch
    torch.set_default_dtype(old)


def test_mahalanobis_and_rmd_agree_with_pytorch_ood(torch64):
    from pytorch_ood.detector import RMD as TorchRMD
    from pytorch_ood.detector import Mahalanobis as TorchMahalanobis

    X, y, T = _data(labels=np.arange(3))
    n = len(X)
    Xt, yt, Tt = (torch64.from_numpy(a) for a in (X, y, T))
    # They invert the undivided scatter N * Sigma plus 1e-6 I: reg = 1e-6 / N.
    ours = Mahalanobis(reg_covar=1e-6 / n).fit(X, y).score_samples(T)
    theirs = TorchMahalanobis(None).fit_features(Xt, yt).predict_features(Tt)
    np.testing.assert_allclose(ours, -2 * n * theirs.numpy(), rtol=1e-9)
    ours = RMD(reg_covar=1e-6 / n).fit(X, y).score_samples(T)
    theirs = TorchRMD(None).fit_features(Xt, yt).predict_features(Tt)
    np.testing.assert_allclose(ours, -n * theirs.numpy(), rtol=1e-8)


def test_gmm_agrees_with_pytorch_ood(torch64):
    from pytorch_ood.detector import GMM as TorchGMM

    X, y, T = _data(labels=np.arange(3))
    Xt, yt, Tt = (torch64.from_numpy(a) for a in (X, y, T))
    ours = GMM(reg_covar=1e-6).fit(X, y).score_samples(T)
    theirs = TorchGMM(None, reg=1e-6).fit_features(Xt, yt).predict_features(Tt)
    np.testing.assert_allclose(ours, -theirs.numpy(), rtol=1e-10)


# ------------------------------------------------------------------ streaming
STREAMING = [
    Mahalanobis(),
    Mahalanobis(covariance_estimator="oas", reg_covar=0.1),
    RMD(),
    RMD(covariance_estimator="oas"),
    GMM(),
    GMM(covariance_estimator="oas"),
]


@pytest.mark.parametrize("det", STREAMING, ids=repr)
def test_partial_fit_in_chunks_equals_fit(det):
    X, y, T = _data(n=300)
    # Class 12 only arrives in the last chunks; class 7 (between 3 and 12 in
    # sorted order) only after class 12.
    order = np.argsort(np.select([y == 3, y == 12], [0, 1], 2), kind="stable")
    X, y = X[order], y[order]
    whole = det.fit(X, y)
    expected, offset = whole.score_samples(T), whole.offset_
    stream = type(det)(**det.get_params())
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(len(X)), 7)]
    for chunk in chunks:
        stream.partial_fit(*chunk)
    np.testing.assert_array_equal(stream.classes_, LABELS)
    np.testing.assert_allclose(stream.means_, whole.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(stream.score_samples(T), expected, rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularCovarianceWarning)  # short prefixes
        assert stream.offset_ == pytest.approx(
            streamed_offset(stream, chunks), rel=1e-9
        )
    # A fit scores its rows under the final model, a stream each chunk under
    # the model of its call: close once the statistics settle.
    assert stream.offset_ == pytest.approx(offset, rel=0.5)


def test_partial_fit_ledoit_wolf_is_close_and_exact_for_one_chunk():
    X, y, T = _data(n=300, d=10)
    whole = Mahalanobis(covariance_estimator="ledoit_wolf").fit(X, y)
    one = Mahalanobis(covariance_estimator="ledoit_wolf").partial_fit(X, y)
    assert one.shrinkage_ == pytest.approx(whole.shrinkage_, rel=1e-12)
    stream = Mahalanobis(covariance_estimator="ledoit_wolf")
    for rows in np.array_split(np.arange(len(X)), 5):
        stream.partial_fit(X[rows], y[rows])
    # Fourth moments about the running class means: a close approximation.
    assert stream.shrinkage_ == pytest.approx(whole.shrinkage_, rel=0.05)


def test_float32_features_accumulate_in_float64():
    """A large common offset wrecks float32 sums, not the float64 streaming."""
    X, y, T = _data(n=2000, d=4)
    X32 = (X + 1e4).astype(np.float32)
    T32 = (T + 1e4).astype(np.float32)
    X64 = X32.astype(np.float64)  # the same values, exactly
    naive_cov = (X32.T @ X32) / len(X32) - np.outer(
        *[X32.mean(0, dtype=np.float32)] * 2
    )
    true_cov = np.cov(X64.T, bias=True)
    assert np.max(np.abs(naive_cov - true_cov)) > 0.1  # float32 fails visibly
    for cls in (Mahalanobis, RMD, GMM):
        det32, det64 = cls().fit(X32, y), cls().fit(X64, y)
        np.testing.assert_allclose(det32.means_, det64.means_, rtol=1e-13)
        s32, s64 = det32.score_samples(T32), det64.score_samples(T32.astype(float))
        assert s32.dtype == np.float32
        np.testing.assert_allclose(s32, s64, rtol=1e-6)
    stream = Mahalanobis()
    for rows in np.array_split(np.arange(len(X32)), 9):
        stream.partial_fit(X32[rows], y[rows])
    np.testing.assert_allclose(
        stream.covariance_, Mahalanobis().fit(X64, y).covariance_, rtol=1e-10
    )


# -------------------------------------------------------- singular covariance
@pytest.mark.parametrize(
    "case", ["fewer_rows_than_features", "constant_feature", "collinear", "zero"]
)
@pytest.mark.parametrize("cls", [Mahalanobis, RMD, GMM])
def test_singular_covariance_falls_back_to_a_ridge(case, cls):
    X, y, T = _data(n=60, d=4)
    if case == "fewer_rows_than_features":
        X, T = (
            np.hstack([X, X @ np.ones((4, 30))]),
            np.hstack([T, T @ np.ones((4, 30))]),
        )
        X = X[:20] + 0.01 * np.random.default_rng(1).normal(size=(20, 34))
        y = y[:20]
    elif case == "constant_feature":
        X[:, 1], T[:, 1] = 5.0, 5.0
    elif case == "collinear":
        X[:, 2], T[:, 2] = X[:, 0] - X[:, 1], T[:, 0] - T[:, 1]
    else:  # every row equal to its class mean: zero scatter
        X = np.zeros_like(X) + y[:, None]
    with pytest.warns(SingularCovarianceWarning, match="is singular"):
        det = cls().fit(X, y)
    assert np.all(np.asarray(det.ridge_) >= 0) and np.any(np.asarray(det.ridge_) > 0)
    assert np.all(np.isfinite(det.score_samples(T)))
    assert np.all(np.isfinite(det.score_samples(X)))


def test_no_warning_when_shrinkage_or_reg_makes_it_invertible():
    X, y, T = _data(n=20, d=30)  # N - K < d
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for det in [
            Mahalanobis(covariance_estimator="oas"),
            Mahalanobis(reg_covar=0.1),
            RMD(reg_covar=1.0),
        ]:
            assert det.fit(X, y).ridge_ == 0.0
            assert np.all(np.isfinite(det.score_samples(T)))


# --------------------------------------------------------------------- errors
def test_every_class_with_one_sample_is_an_error():
    X, _, _ = _data(n=3)
    with pytest.raises(ValueError, match="more rows than classes"):
        Mahalanobis().fit(X, [0, 1, 2])
    # One single-row class is fine for the tied covariance ...
    X, y, _ = _data(n=30)
    y[0] = 99
    Mahalanobis().fit(X, y)
    # ... but not for per-class covariances.
    with pytest.raises(ValueError, match=r"class\(es\) \[99\] have only one sample"):
        GMM().fit(X, y)


def test_rmd_requires_labels():
    X, _, _ = _data()
    with pytest.raises(ValueError, match="requires y"):
        RMD().fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"covariance_estimator": "shrunk"}, "covariance_estimator"),
        ({"covariance_estimator": 0.1}, "covariance_estimator"),
        ({"reg_covar": -1.0}, "reg_covar"),
    ],
)
@pytest.mark.parametrize("cls", [Mahalanobis, RMD, GMM])
def test_bad_parameters(cls, params, match):
    X, y, _ = _data()
    with pytest.raises(ValueError, match=match):
        cls(**params).fit(X, y)


def test_bad_input():
    X, y, T = _data()
    with pytest.raises(ValueError, match="NaN"):
        Mahalanobis().fit(np.where(X > 3, np.nan, X), y)
    det = Mahalanobis().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(T[:, :3])
    with pytest.raises(ValueError, match="pass y"):
        Mahalanobis().partial_fit(X, y).partial_fit(X)
    with pytest.raises(ValueError, match="pass y=None"):
        Mahalanobis().partial_fit(X).partial_fit(X, y)
    with pytest.raises(ValueError, match="ledoit_wolf"):
        det.set_params(covariance_estimator="ledoit_wolf").partial_fit(X, y)
    with pytest.raises(ValueError, match="overflowed float64"):
        GMM().fit(X * 1e160, y)


# ---------------------------------------------------- hypothesis properties
@st.composite
def affine_problems(draw):
    """Well-separated classes, a well-conditioned A (singular values in
    [0.6, 1.4]) and a shift c."""
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    scale = st.floats(-0.4 / d, 0.4 / d, allow_nan=False)
    A = np.eye(d) + draw(arrays(np.float64, (d, d), elements=scale))
    c = draw(arrays(np.float64, d, elements=st.floats(-50, 50)))
    X, y, T = _data(n=40, d=d, labels=np.arange(3), seed=seed, n_test=8)
    return X, y, T, A, c


@given(affine_problems())
def test_affine_invariance(problem):
    X, y, T, A, c = problem
    move = lambda Z: Z @ A.T + c  # noqa: E731
    for cls in (Mahalanobis, RMD):
        np.testing.assert_allclose(
            cls().fit(move(X), y).score_samples(move(T)),
            cls().fit(X, y).score_samples(T),
            rtol=1e-7,
            atol=1e-7,
        )
    # A density picks up the Jacobian: log p(Ax + c) = log p(x) - log|det A|.
    np.testing.assert_allclose(
        GMM().fit(move(X), y).score_samples(move(T)),
        GMM().fit(X, y).score_samples(T) - np.log(abs(np.linalg.det(A))),
        rtol=1e-7,
        atol=1e-7,
    )


@given(st.integers(0, 2**16), st.integers(1, 5))
def test_scores_bounded_by_the_densest_class(seed, d):
    X, y, T = _data(n=50, d=d, labels=np.arange(2), seed=seed, n_test=10)
    det = GMM().fit(X, y)
    per_class = np.array(
        [
            np.log(p) + multivariate_normal(m, c).logpdf(T)
            for p, m, c in zip(det.priors_, det.means_, det.covariances_)
        ]
    ).reshape(2, -1)
    # max_k log(pi_k N_k) <= log sum_k pi_k N_k <= max + log K
    scores, top = det.score_samples(T), per_class.max(0)
    # Two float64 evaluations of a quadratic form agree to about cond * eps:
    # _data can draw a class with a nearly flat direction (cond ~ 1e8).
    cond = max(np.linalg.cond(c) for c in det.covariances_)
    tol = (1e-9 + 1e-14 * cond) * (1 + np.abs(top))
    assert np.all(scores >= top - tol)
    assert np.all(scores <= top + np.log(2) + tol)
    assert np.all(Mahalanobis().fit(X, y).score_samples(T) <= 0)


class _NumpyWithLittleMemory:
    """``numpy`` for the Gaussian helpers, where an allocation of more than
    ``limit`` floats fails as a real one does (``MemoryError``)."""

    def __init__(self, limit, fail="both"):
        self.limit, self.fail = limit, fail

    def __getattr__(self, name):
        return getattr(np, name)

    def _check(self, shape, kind):
        if self.fail in (kind, "both") and np.prod(shape) > self.limit:
            raise MemoryError(f"Unable to allocate an array with shape {shape}")

    def zeros(self, shape, *args, **kwargs):
        self._check(shape, "zeros")
        return np.zeros(shape, *args, **kwargs)

    def empty(self, shape, *args, **kwargs):
        self._check(shape, "empty")
        return np.empty(shape, *args, **kwargs)


def test_gmm_memory_error_says_what_was_allocated(monkeypatch):
    import sklearn_ood.detectors._gaussian as gaussian

    X = np.random.default_rng(0).normal(size=(40, 6))
    y = np.repeat([0, 1], 20)
    X_wide = np.hstack([X] * 6)  # 2 classes x 36 x 36 = 2,592 floats
    # The 36 x 36 within-class scatter (1,296 floats) fits, not 2 x 36 x 36.
    monkeypatch.setattr(gaussian, "np", _NumpyWithLittleMemory(2_000))
    det = GMM().fit(X, y)  # 2 x 6 x 6 = 72 floats: fits
    with pytest.raises(
        MemoryError, match=r"scatter matrices of 2 classes x 36 features"
    ) as info:
        GMM().fit(X_wide, y)
    assert "GiB of float64" in str(info.value)
    assert "tied covariance" in str(info.value)  # what to do
    # The inverse Cholesky factors: one block, asked for at once.
    monkeypatch.setattr(gaussian, "np", _NumpyWithLittleMemory(2_000, "empty"))
    with pytest.raises(MemoryError, match="inverse Cholesky factors of 2 classes"):
        GMM().fit(X_wide, y)
    monkeypatch.setattr(gaussian, "np", _NumpyWithLittleMemory(50, "empty"))
    with pytest.raises(MemoryError, match="the covariances of 2 classes x 6"):
        _ = det.covariances_


def test_gmm_memory_error_in_partial_fit_leaves_the_detector(monkeypatch):
    import sklearn_ood.detectors._gaussian as gaussian

    X, y, _ = _data(n=80, d=6, labels=np.arange(2))
    det = GMM().partial_fit(X[:40], y[:40])
    before = pickle.dumps(det.__dict__)
    # The copy of the 2 x 6 x 6 scatters that keeps the old ones restorable.
    monkeypatch.setattr(gaussian, "np", _NumpyWithLittleMemory(60, "empty"))
    with pytest.raises(MemoryError, match="a copy of the scatter matrices"):
        det.partial_fit(X[40:], y[40:])
    assert pickle.dumps(det.__dict__) == before


def test_fit_copies_no_statistics(monkeypatch):
    """Only a partial_fit on statistics that hold rows copies them."""
    from sklearn_ood.detectors._gaussian import ClassStats

    def refuse(self):
        raise AssertionError("fit copied the statistics")

    monkeypatch.setattr(ClassStats, "_own_arrays", refuse)
    X, y, _ = _data(n=60)
    for cls in (Mahalanobis, RMD, GMM):
        cls().fit(X, y)
        cls().partial_fit(X, y)
        with pytest.raises(AssertionError, match="copied"):
            cls().partial_fit(X[:40], y[:40]).partial_fit(X[40:], y[40:])


# ------------------------------------------------ refused partial_fit chunks
def _stream(det, chunks):
    for X, y in chunks:
        det.partial_fit(X, y)
    return det


def _refused_chunks(cls, X, y):
    """Chunks that each detector refuses, and the error they raise."""
    yield "overflow", (X[:20] * 1e200, y[:20]), "overflowed float64"
    # Rows equal within each class: no scatter of their own, but the term
    # that merges their mean with the previous one, n_a n_b / n (1e154)^2,
    # overflows.
    yield "merge term", (np.full((4, X.shape[1]), 1e154), y[:4]), "overflowed"
    if cls is GMM:  # a new class with a single row: no covariance for it
        yield "one-row class", (X[:5], np.r_[y[:4], 99]), "only one sample"
    yield "unlabelled", (X[:20], None), "pass y|requires y"


@pytest.mark.parametrize("cls", [Mahalanobis, RMD, GMM])
def test_refused_partial_fit_chunk_leaves_the_detector_unchanged(cls):
    X, y, T = _data(n=150)
    good = [(X[:60], y[:60]), (X[60:110], y[60:110]), (X[110:], y[110:])]
    for name, bad, match in _refused_chunks(cls, X, y):
        det = cls().partial_fit(*good[0])
        before = pickle.dumps(det.__dict__)
        with pytest.raises(ValueError, match=match):
            det.partial_fit(*bad)
        assert pickle.dumps(det.__dict__) == before, name
        # Later chunks work, and equal the stream that never saw the bad one.
        _stream(det, good[1:])
        clean = _stream(cls(), good)
        assert pickle.dumps(det.__dict__) == pickle.dumps(clean.__dict__), name
        np.testing.assert_array_equal(det.score_samples(T), clean.score_samples(T))


def test_gmm_refuses_a_new_class_with_one_row_then_accepts_two():
    X, y, _ = _data(n=60)
    det = GMM().partial_fit(X[:40], y[:40])
    with pytest.raises(ValueError, match=r"class\(es\) \[99\]"):
        det.partial_fit(X[40:41], [99])
    np.testing.assert_array_equal(det.classes_, LABELS)
    with pytest.warns(SingularCovarianceWarning, match="class\\(es\\) 99"):
        det.partial_fit(X[40:42], [99, 99])  # 2 rows, 5 features: singular
    np.testing.assert_array_equal(det.classes_, [*LABELS, 99])


# --------------------------------------------------- beyond the float range
@pytest.mark.parametrize("scale", [1e155, 1e200])
@pytest.mark.parametrize("cls", [Mahalanobis, RMD, GMM])
def test_fit_and_score_beyond_the_float_range_raise(cls, scale):
    X, y, T = _data(n=60)
    with pytest.raises(ValueError, match="overflowed float64.*Rescale"):
        cls().fit(X * scale, y)
    det = cls().fit(X, y)
    T = T.copy()
    T[3] *= scale
    with pytest.raises(
        ValueError, match=r"cannot score 1 row\(s\) \(the first is row 3\).*float64"
    ):
        det.score_samples(T)
    with pytest.raises(ValueError, match="beyond the float64 range"):
        det.predict(T)
    # The other rows are fine.
    assert np.all(np.isfinite(det.score_samples(np.delete(T, 3, axis=0))))


@pytest.mark.parametrize("cls", [Mahalanobis, RMD, GMM])
def test_float32_scores_beyond_the_float32_range_raise(cls):
    X, y, T = _data(n=60)
    det = cls().fit(X.astype(np.float32), y)
    T32 = T.astype(np.float32)
    T32[0] = 1e20  # a float32 value, but the squared distance is ~1e40
    with pytest.raises(ValueError, match="float32 range.*features as float64"):
        det.score_samples(T32)
    # In float64 the same row has a finite score.
    assert np.isfinite(det.score_samples(T32.astype(np.float64))[0])


def test_shrinkage_is_scale_free_up_to_the_float_range():
    """OAS and the empirical covariance work on features of ~1e80, whose
    squared entries overflow; Ledoit-Wolf's fourth powers then overflow and
    say so."""
    X, y, T = _data(n=60)
    for estimator in ("empirical", "oas"):
        det = Mahalanobis(covariance_estimator=estimator)
        np.testing.assert_allclose(
            det.fit(X * 1e80, y).score_samples(T * 1e80),
            det.fit(X, y).score_samples(T),
            rtol=1e-9,
        )
    with pytest.raises(ValueError, match="fourth powers.*'oas'"):
        Mahalanobis(covariance_estimator="ledoit_wolf").fit(X * 1e80, y)


# -------------------------------------------------------------- monotonicity
@st.composite
def rays(draw):
    """One Gaussian's fit data, a direction and increasing distances."""
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, d)) @ (np.eye(d) + 0.5 * rng.normal(size=(d, d)))
    X += 10 * rng.normal(size=d)
    direction = draw(arrays(np.float64, d, elements=st.floats(-1, 1)))
    assume(np.linalg.norm(direction) > 1e-3)
    # Steps of at least 1 % make the score differences far above rounding.
    steps = draw(st.lists(st.floats(0.01, 3.0), min_size=2, max_size=8))
    t = np.concatenate([[0.0], np.cumsum(steps)])
    estimator = draw(st.sampled_from(sorted(["empirical", "ledoit_wolf", "oas"])))
    reg_covar = draw(st.sampled_from([0.0, 0.1]))
    return X, direction, t, estimator, reg_covar


@given(rays())
def test_scores_fall_along_a_ray_leaving_a_single_gaussians_mean(ray):
    X, direction, t, estimator, reg_covar = ray
    for cls in (Mahalanobis, GMM):
        det = cls(covariance_estimator=estimator, reg_covar=reg_covar).fit(X)
        points = det.means_[0] + t[:, None] * direction
        scores = det.score_samples(points)
        assert np.all(np.diff(scores) < 0), (cls.__name__, scores)


def test_rmd_is_not_monotone_along_a_ray_leaving_a_class_mean():
    """The counterexample of RMD's docstring: from a class mean, a small step
    away from the background mean raises the score."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    X = rng.normal(size=(400, 1)) + np.where(y == 1, 5.0, -5.0)[:, None]
    det = RMD().fit(X, y)
    mean = det.means_[1]  # about +5; the background mean is about 0
    steps = mean + np.array([[0.0], [0.05], [0.1]])
    scores = det.score_samples(steps)
    assert np.all(np.diff(scores) > 0)  # moving away scores *higher*
    # Mahalanobis on the same data falls along the same steps.
    assert np.all(np.diff(Mahalanobis().fit(X, y).score_samples(steps)) < 0)


@pytest.mark.parametrize("columns", [None, slice(1, 5), np.array([4, 0, 2])])
def test_blocked_class_stats_equal_float64_reference(monkeypatch, columns):
    """The class-ordered row blocks of ClassStats (float32 rows gathered in
    small buffers, centred and multiplied in float64) give the statistics of
    a float64 copy of the rows to rounding, with classes spanning blocks."""
    from sklearn_ood.detectors import _gaussian

    monkeypatch.setattr(_gaussian, "_BLOCK_ROWS", 37)  # many blocks and pieces
    X, y, _ = _data(n=500, d=6)
    X32 = (X + 1e4).astype(np.float32)
    X64 = X32.astype(np.float64)  # the same values, exactly
    cols = slice(None) if columns is None else columns
    width = X64[:, cols].shape[1]

    def stats(Z):
        s = _gaussian.ClassStats(
            width, columns=columns, per_class=True, fourth_moments=True
        )
        return s.with_rows(Z, y)

    s32 = stats(X32)
    means, centred = ref_means_and_within(X64[:, cols], y)
    np.testing.assert_allclose(s32.means, means, rtol=1e-13)
    np.testing.assert_allclose(s32.within, centred.T @ centred, rtol=1e-11)
    for k, label in enumerate(LABELS):
        part = centred[y == label]
        np.testing.assert_allclose(s32.class_scatter[k], part.T @ part, rtol=1e-11)
    r2 = np.einsum("ij,ij->i", centred, centred)
    fourth = np.bincount(np.searchsorted(LABELS, y), r2**2)
    np.testing.assert_allclose(s32.fourth, fourth, rtol=1e-11)
    about_grand = X64[:, cols] - X64[:, cols].mean(axis=0)
    g2 = np.einsum("ij,ij->i", about_grand, about_grand)
    assert s32.fourth_total == pytest.approx(np.sum(g2**2), rel=1e-11)
    # float32 and float64 rows with the same values: the same statistics.
    s64 = stats(X64)
    np.testing.assert_allclose(s32.within, s64.within, rtol=1e-13)
    np.testing.assert_allclose(s32.class_scatter, s64.class_scatter, rtol=1e-13)
