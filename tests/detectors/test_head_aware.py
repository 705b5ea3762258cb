"""SHE, fDBD and NCI against float64 references written from the papers."""

import warnings

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from sklearn_ood.detectors._head_aware import NCI, SHE, fDBD

DETECTORS = [SHE, fDBD, NCI]


def _problem(n=150, d=6, c=4, noise=1.5, seed=0):
    """Features of a decent linear classifier (some rows misclassified)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    X = 1.5 * W[y] + noise * rng.normal(size=(n, d))
    return X, y, W, b


def _torch_linear(W, b, dtype):
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(W.shape[1], W.shape[0]).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


# ---------------------------------------------------------------- references
def ref_she(X_fit, y_fit, X, W, b):
    pred_fit = np.argmax(X_fit @ W.T + b, axis=1)
    labels = pred_fit if y_fit is None else y_fit
    patterns = np.array(
        [X_fit[(pred_fit == k) & (labels == k)].mean(axis=0) for k in range(len(W))]
    )
    pred = np.argmax(X @ W.T + b, axis=1)
    return np.array([x @ patterns[k] for x, k in zip(X, pred)])


def ref_fdbd(X_fit, X, W, b):
    mu = X_fit.mean(axis=0)
    scores = []
    for x in X:
        logits = W @ x + b
        p = int(np.argmax(logits))
        dists = [
            abs((W[p] - W[c]) @ x + b[p] - b[c]) / np.linalg.norm(W[p] - W[c])
            for c in range(len(W))
            if c != p
        ]
        scores.append(np.mean(dists) / np.linalg.norm(x - mu))
    return np.array(scores)


def ref_nci(X_fit, X, W, b, alpha):
    mu = X_fit.mean(axis=0)
    scores = []
    for x in X:
        p = int(np.argmax(W @ x + b))
        z = x - mu
        scores.append(W[p] @ z / np.sqrt(z @ z) + alpha * np.sum(np.abs(x)))
    return np.array(scores)


def _test_rows():
    return np.vstack([_problem(n=20, seed=1)[0], 5 * _problem(n=10, seed=2)[0]])


@pytest.mark.parametrize("use_labels", [True, False])
def test_she_matches_reference(use_labels):
    X, y, W, b = _problem()
    y_fit = y if use_labels else None
    det = SHE(head=(W, b)).fit(X, y_fit)
    X_test = _test_rows()
    expected = ref_she(X, y_fit, X_test, W, b)
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-12)
    assert det.offset_ == pytest.approx(
        np.percentile(ref_she(X, y_fit, X, W, b), 5), rel=1e-12
    )
    if use_labels:
        assert np.mean(np.argmax(X @ W.T + b, axis=1) != y) > 0.05  # filter matters
        np.testing.assert_array_equal(det.classes_, np.arange(4))


def test_fdbd_matches_reference():
    X, _, W, b = _problem()
    X_test = _test_rows()
    det = fDBD(head=(W, b)).fit(X)
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_fdbd(X, X_test, W, b), rtol=1e-12
    )
    assert det.offset_ == pytest.approx(
        np.percentile(ref_fdbd(X, X, W, b), 5), rel=1e-12
    )


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.3])
def test_nci_matches_reference(alpha):
    X, _, W, b = _problem()
    X_test = _test_rows()
    det = NCI(head=(W, b), norm_weight=alpha).fit(X)
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_nci(X, X_test, W, b, alpha), rtol=1e-12
    )


@pytest.mark.parametrize("cls", DETECTORS)
def test_float32_in_float32_out(cls):
    X, y, W, b = _problem()
    s64 = cls(head=(W, b)).fit(X, y).score_samples(X)
    X32 = X.astype(np.float32)
    s32 = cls(head=(W, b)).fit(X32, y).score_samples(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------- cross-check pytorch-ood
def test_she_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, y, W, b = _problem()
    X_test = _test_rows()
    theirs = detector_module.SHE(None, head=_torch_linear(W, b, torch.float64))
    theirs.fit_features(torch.from_numpy(X), torch.from_numpy(y))
    their_scores = theirs.predict_features(torch.from_numpy(X_test)).numpy()
    ours = SHE(head=(W, b)).fit(X, y).score_samples(X_test)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-12)


def test_fdbd_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, _, W, b = _problem()
    X_test = _test_rows()
    theirs = detector_module.fDBD(None, head=_torch_linear(W, b, torch.float32))
    theirs.fit_features(torch.from_numpy(X))
    their_scores = theirs.predict_features(torch.from_numpy(X_test)).double().numpy()
    ours = fDBD(head=(W, b)).fit(X).score_samples(X_test)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-4)  # theirs: float32


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_nci_agrees_with_pytorch_ood(alpha):
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, _, W, b = _problem()
    X_test = _test_rows()
    head = _torch_linear(W, b, torch.float32)
    theirs = detector_module.NCI(None, head=head, alpha=alpha)
    theirs.fit_features(torch.from_numpy(X))
    their_scores = theirs.predict_features(torch.from_numpy(X_test)).double().numpy()
    ours = NCI(head=(W, b), norm_weight=alpha).fit(X).score_samples(X_test)
    np.testing.assert_allclose(ours, -their_scores, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ heads
@pytest.mark.parametrize("cls", DETECTORS)
def test_torch_linear_head(cls):
    torch = pytest.importorskip("torch")
    X, y, W, b = _problem()
    layer = _torch_linear(W, b, torch.float64)
    np.testing.assert_allclose(
        cls(head=layer).fit(X, y).score_samples(X),
        cls(head=(W, b)).fit(X, y).score_samples(X),
        rtol=1e-12,
    )


def test_she_sklearn_head_maps_labels_through_classes():
    X, y, _, _ = _problem(noise=3.0)
    labels = np.array([3, 7, 12, 20])[y]
    clf = LogisticRegression(max_iter=1000).fit(X, labels)
    det = SHE(head=clf).fit(X, labels)
    np.testing.assert_array_equal(det.head_classes_, [3, 7, 12, 20])
    np.testing.assert_array_equal(det.classes_, [3, 7, 12, 20])
    # Same as the (W, b) head with labels given as row indices.
    plain = SHE(head=(clf.coef_, clf.intercept_)).fit(X, y)
    np.testing.assert_allclose(det.patterns_, plain.patterns_)
    np.testing.assert_allclose(det.score_samples(X), plain.score_samples(X))
    correct = clf.predict(X) == labels
    np.testing.assert_allclose(det.patterns_[1], X[correct & (labels == 7)].mean(0))


@pytest.mark.parametrize("cls", [fDBD, NCI])
def test_sklearn_head(cls):
    X, y, _, _ = _problem()
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    np.testing.assert_allclose(
        cls(head=clf).fit(X).score_samples(X),
        cls(head=(clf.coef_, clf.intercept_)).fit(X).score_samples(X),
    )


def test_binary_sklearn_head():
    X, y, _, _ = _problem(c=2)
    clf = LogisticRegression().fit(X, y)
    det = fDBD(head=clf).fit(X)
    # Two classes: one boundary, the signed margin over ||w||.
    margin = np.abs(clf.decision_function(X)) / np.linalg.norm(clf.coef_)
    expected = margin / np.linalg.norm(X - X.mean(axis=0), axis=1)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)
    SHE(head=clf).fit(X, y)  # labels 0/1 are the model's classes_


# ------------------------------------------------------------ partial_fit
@pytest.mark.parametrize("cls", DETECTORS)
def test_partial_fit_in_chunks_equals_fit(cls):
    X, y, W, b = _problem(n=400)
    y = np.where(np.arange(400) % 9 == 0, -1, y)
    order = np.argsort(y, kind="stable")  # classes appear chunk by chunk
    X, y = X[order], y[order]
    whole = cls(head=(W, b)).fit(X, y)
    chunked = cls(head=(W, b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SHE: classes not seen yet
        chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(400), 7)]
        for chunk in chunks:
            chunked.partial_fit(*chunk)
    if cls is SHE:
        np.testing.assert_allclose(
            chunked.patterns_, whole.patterns_, rtol=1e-10, atol=1e-10
        )
        np.testing.assert_array_equal(chunked.classes_, whole.classes_)
    else:
        np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-10, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SHE: classes not seen yet
        expected_offset = streamed_offset(chunked, chunks)
    np.testing.assert_allclose(chunked.offset_, expected_offset, rtol=1e-10)
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-10
    )


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("cls", DETECTORS)
def test_head_shape_mismatch(cls):
    X, y, W, b = _problem()
    with pytest.raises(ValueError, match="expects 5 input features"):
        cls(head=(W[:, :5], b)).fit(X, y)
    with pytest.raises(ValueError, match="bias"):
        cls(head=(W, b[:3])).fit(X, y)


def test_she_label_not_in_head():
    X, y, W, b = _problem()
    with pytest.raises(ValueError, match="label 4.*head's classes"):
        SHE(head=(W, b)).fit(X, np.where(y == 0, 4, y))


def test_she_class_without_correct_rows_gets_zero_pattern():
    X, y, W, b = _problem()
    pred = np.argmax(X @ W.T + b, axis=1)
    keep = pred != 2  # no row is predicted (so classified correctly) as class 2
    with pytest.warns(UserWarning, match=r"head classes \[2\]"):
        det = SHE(head=(W, b)).fit(X[keep], y[keep])
    np.testing.assert_array_equal(det.patterns_[2], 0.0)
    assert det.pattern_counts_[2] == 0
    np.testing.assert_array_equal(det.score_samples(X[~keep]), 0.0)


def test_she_no_correct_row():
    X, y, W, b = _problem()
    pred = np.argmax(X @ W.T + b, axis=1)
    with pytest.raises(ValueError, match="no fit row that the head classifies"):
        SHE(head=(W, b)).fit(X, (pred + 1) % 4)


def test_fdbd_needs_distinct_rows():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="rows 1 and 3 have equal weights"):
        fDBD(head=(W[[0, 1, 2, 1]], b)).fit(X)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fDBD(head=(W[:1], b[:1])).fit(X)


@pytest.mark.parametrize("cls", [fDBD, NCI])
def test_row_at_the_mean_is_finite(cls):
    X, _, W, b = _problem()
    det = cls(head=(W, b)).fit(X)
    score = det.score_samples(X.mean(axis=0, keepdims=True))
    assert np.all(np.isfinite(score))
    if cls is NCI:
        assert score[0] == pytest.approx(1e-4 * np.abs(X.mean(axis=0)).sum())


def test_nci_bad_norm_weight():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="norm_weight"):
        NCI(head=(W, b), norm_weight=-0.1).fit(X)


def test_fitted_head_is_named_like_scikit_learn():
    X, _, W, b = _problem()
    for cls in DETECTORS:
        det = _fit(cls(head=(W, b)), X)
        np.testing.assert_array_equal(det.coef_, W)
        np.testing.assert_array_equal(det.intercept_, b)
        assert not hasattr(det, "W_") and not hasattr(det, "b_")


# ----------------------------------------------------------- extreme values
@pytest.mark.parametrize("cls", DETECTORS)
def test_float32_scores_beyond_float32_range_are_refused(cls):
    # Found by the edge-input battery: SHE returned inf for float32 features
    # of about 1e19 (its score is of the order of |x|^2). Refused with the
    # remedy; float64 features of the same values are scored.
    X, y, W, b = _problem()
    X = np.abs(X) * 1e19
    det = _fit(cls(head=(W, b)), X, np.argmax(X @ W.T + b, axis=1))
    scores = det.score_samples(X)
    assert np.all(np.isfinite(scores))
    if cls is SHE:
        with pytest.raises(ValueError, match="float32 range.*as float64"):
            _fit(cls(head=(W, b)), X.astype(np.float32))
        with pytest.raises(ValueError, match="float32 range.*as float64"):
            det.score_samples(X.astype(np.float32))
    else:  # fDBD's ratio and NCI (small norm_weight) stay in range
        scores32 = _fit(cls(head=(W, b)), X.astype(np.float32)).score_samples(
            X.astype(np.float32)
        )
        assert scores32.dtype == np.float32
        np.testing.assert_allclose(scores32, scores, rtol=1e-4)


def test_she_scores_beyond_float64_range_are_refused():
    X, _, W, b = _problem()
    X = np.abs(X)
    with pytest.raises(ValueError, match="float64 range"):
        _fit(SHE(head=(W, b)), X * 1e155)  # fit rows' scores of about 1e310
    det = _fit(SHE(head=(W, b)), X * 1e100)
    assert np.all(np.isfinite(det.score_samples(X * 1e100)))
    with pytest.raises(ValueError, match="float64 range"):
        det.score_samples(X * 1e210)


@pytest.mark.parametrize("cls", DETECTORS)
def test_fit_sums_that_overflow_are_refused(cls):
    X, _, W, b = _problem()
    X = np.abs(X) * 1e306
    with pytest.raises(ValueError, match="overflow"):
        _fit(cls(head=(W, b)), X)


@pytest.mark.parametrize("cls", [fDBD, NCI])
def test_norms_of_huge_rows_do_not_overflow(cls):
    # ||x - mu|| of rows about 1e160 overflows a plain sum of squares; the
    # scores are those of the same rows scaled down (fDBD and NCI's
    # proximity depend on the direction only), not 0 or NaN.
    X, _, W, b = _problem()
    det = cls(head=(W, np.zeros_like(b)), norm_weight=0.0) if cls is NCI else None
    det = det or cls(head=(W, np.zeros_like(b)))
    det.fit(X - X.mean(axis=0))
    rows = _test_rows()
    np.testing.assert_allclose(
        det.score_samples(rows * 1e160), det.score_samples(rows), rtol=1e-12
    )


# ------------------------------------------------ monotonicity, by design not
# These detectors do not score rows lower as they move away from the ID data
# (their docstrings say so); each test is a concrete counterexample.
def _symmetric_problem():
    W, b = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)
    X = np.array([[2.0, 1.0], [-2.0, -1.0], [2.0, -1.0], [-2.0, 1.0]])
    return X, W, b  # mean 0: the logits are equal at the mean


def test_nci_rises_along_a_ray_leaving_the_id_data():
    X, W, b = _symmetric_problem()
    det = NCI(head=(W, b), norm_weight=1e-2).fit(X)
    ray = np.array([[1.0, 0.5]]) * np.array([[1.0], [10.0], [100.0], [1e4]])
    scores = det.score_samples(ray)
    assert np.all(np.diff(scores) > 0)
    assert scores[-1] > det.score_samples(X).max()  # far beyond: "more ID"
    # Without the norm term the proximity depends on the direction only.
    flat = NCI(head=(W, b), norm_weight=0.0).fit(X).score_samples(ray)
    np.testing.assert_allclose(flat, flat[0], rtol=1e-12)


def test_fdbd_is_constant_along_a_ray_from_the_mean():
    X, W, b = _symmetric_problem()
    det = fDBD(head=(W, b)).fit(X)
    ray = np.array([[1.0, 0.5]]) * np.array([[1.0], [10.0], [100.0], [1e4]])
    scores = det.score_samples(ray)
    np.testing.assert_allclose(scores, scores[0], rtol=1e-12)
    assert det.predict(ray[-1:])[0] == 1  # 1e4 times farther, still ID


def test_fdbd_can_rise_along_a_ray_leaving_the_mean():
    # With a bias the logits differ at the mean; on a ray where the predicted
    # class is not the mean's, s = a / t + b' with a < 0 rises with t.
    X, W, _ = _symmetric_problem()
    det = fDBD(head=(W, np.array([1.0, 0.0]))).fit(X)
    ray = np.array([[-1.0, 0.0]]) * np.array([[2.0], [4.0], [8.0], [100.0]])
    assert np.all(np.diff(det.score_samples(ray)) > 0)


def test_she_rises_along_a_ray_leaving_the_id_data():
    W, b = np.eye(2), np.zeros(2)
    X = np.array([[2.0, 0.0], [4.0, 1.0], [0.0, 3.0], [1.0, 2.0]])
    det = SHE(head=(W, b)).fit(X, [0, 0, 1, 1])
    ray = np.array([[1.0, 0.2]]) * np.array([[1.0], [10.0], [100.0]])
    scores = det.score_samples(ray)
    np.testing.assert_allclose(scores, scores[0] * np.array([1.0, 10.0, 100.0]))
    assert scores[-1] > det.score_samples(X).max()


# ------------------------------------------------------- hypothesis properties
shapes = st.tuples(
    st.integers(2, 5), st.integers(2, 4), st.integers(0, 10_000)
)  # n_features, n_classes, seed


def _draw(d, c, seed, n=None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(3, 25))
    W = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    X = 1.5 * W[y] + rng.normal(scale=rng.uniform(0.2, 3), size=(n, d))
    # Label by the head's own prediction so every SHE class keeps a pattern.
    y = np.argmax(X @ W.T + b, axis=1)
    return X, y, W, b


def _fit(det, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SHE: an unpredicted class
        return det.fit(X, y)


@given(shapes, st.randoms(use_true_random=False))
def test_scores_are_row_wise(shape, random):
    X, y, W, b = _draw(*shape)
    perm = np.array(random.sample(range(len(X)), len(X)))
    for cls in DETECTORS:
        det = _fit(cls(head=(W, b)), X, y)
        np.testing.assert_allclose(
            det.score_samples(X[perm]),
            det.score_samples(X)[perm],
            rtol=1e-12,
            atol=1e-12,
        )


@given(shapes, st.randoms(use_true_random=False))
def test_invariant_to_permuting_classes(shape, random):
    X, y, W, b = _draw(*shape)
    perm = np.array(random.sample(range(len(W)), len(W)))
    new_label = np.argsort(perm)  # old class k is row new_label[k] afterwards
    for cls in DETECTORS:
        scores = _fit(cls(head=(W, b)), X, y).score_samples(X)
        permuted = _fit(cls(head=(W[perm], b[perm])), X, new_label[y])
        np.testing.assert_allclose(
            permuted.score_samples(X), scores, rtol=1e-9, atol=1e-9
        )


@given(shapes, st.integers(1, 10))
def test_ood_rows_do_not_change_the_fit(shape, n_ood):
    X, y, W, b = _draw(*shape)
    X_ood = 10 + _draw(*shape, n=n_ood)[0]
    X_all = np.vstack([X, X_ood])
    y_all = np.r_[y, -np.ones(n_ood, int)]
    for cls in DETECTORS:
        with_ood = _fit(cls(head=(W, b)), X_all, y_all)
        without = _fit(cls(head=(W, b)), X, y)
        assert with_ood.offset_ == without.offset_
        np.testing.assert_array_equal(
            with_ood.score_samples(X_all), without.score_samples(X_all)
        )


@given(shapes)
def test_she_without_labels_is_she_with_predicted_labels(shape):
    X, y, W, b = _draw(*shape)
    np.testing.assert_allclose(
        _fit(SHE(head=(W, b)), X).score_samples(X),
        _fit(SHE(head=(W, b)), X, y).score_samples(X),
    )


# ------------------------------------------------------- float32 block scoring
def _relu_problem(n, d=64, c=10, seed=0):
    """float32 post-ReLU features of ``c`` classes and a matching float64 head."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d))
    y = rng.integers(0, c, size=n)
    X = np.maximum(means[y] + rng.normal(size=(n, d)), 0).astype(np.float32)
    W = means - means.mean(axis=0) + 0.3 * rng.normal(size=(c, d)) / np.sqrt(d)
    return X, W, rng.normal(scale=0.1, size=c)


@pytest.fixture
def small_blocks(monkeypatch):
    from sklearn_ood.detectors import _head, _head_aware

    # Several blocks and a short last one.
    monkeypatch.setattr(_head_aware, "_BLOCK_ROWS", 300)
    monkeypatch.setattr(_head, "_BLOCK_ROWS", 300)


def _float32_scores(make, far=1.3):
    """A detector ``make(head)`` fitted on float32 rows, its float32 scores
    of fresh rows (30 % of them scaled by ``far``), and the float64 data."""
    X_fit, W, b = _relu_problem(2000)
    X = np.vstack([_relu_problem(700, seed=1)[0], far * _relu_problem(300, seed=2)[0]])
    det = make((W, b)).fit(X_fit)
    s32 = det.score_samples(X)
    assert s32.dtype == np.float32
    return det, s32, X_fit.astype(np.float64), X.astype(np.float64), W, b


def test_fdbd_float32_blocks_within_the_stated_bound(small_blocks):
    det, s32, F64, X64, W, b = _float32_scores(lambda head: fDBD(head=head))
    expected = ref_fdbd(F64, X64, W, b)
    # Stated bound: 2**-21 |s| + 2**-23 sum_j |x_j v_j| / ((C - 1) ||x - mu||).
    C = len(W)
    V = np.array(
        [
            sum((W[p] - W[c]) / np.linalg.norm(W[p] - W[c]) for c in range(C) if c != p)
            for p in range(C)
        ]
    )
    pred = np.argmax(X64 @ W.T + b, axis=1)
    dist = np.linalg.norm(X64 - F64.mean(axis=0), axis=1)
    cancel = np.sum(np.abs(X64 * V[pred]), axis=1) / ((C - 1) * dist)
    err = np.abs(s32 - expected)
    assert np.all(err <= 2.0**-21 * np.abs(expected) + 2.0**-23 * cancel)
    np.testing.assert_allclose(s32, expected, rtol=1e-5)  # the claim, in practice
    assert det.offset_ == pytest.approx(
        np.percentile(ref_fdbd(F64, F64, W, b), 5), rel=1e-5
    )


def test_she_float32_blocks_within_the_stated_bound(small_blocks):
    det, s32, F64, X64, W, b = _float32_scores(lambda head: SHE(head=head), far=1e3)
    expected = ref_she(F64, None, X64, W, b)
    pred = np.argmax(X64 @ W.T + b, axis=1)
    # Stated bound: 2**-22 sum_j |x_j S_j| + 2**-24 |s|.
    spread = np.sum(np.abs(X64 * det.patterns_[pred]), axis=1)
    err = np.abs(s32.astype(np.float64) - expected)
    assert np.all(err <= 2.0**-22 * spread + 2.0**-24 * np.abs(expected))
    np.testing.assert_allclose(s32, expected, rtol=1e-6)
    # float64 input keeps the float64 formula.
    np.testing.assert_allclose(det.score_samples(X64), expected, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 1e-2])
def test_nci_float32_blocks_within_the_stated_bound(small_blocks, alpha):
    _, s32, F64, X64, W, b = _float32_scores(
        lambda head: NCI(head=head, norm_weight=alpha)
    )
    expected = ref_nci(F64, X64, W, b, alpha)
    # Stated bound: 2**-21 ||w_pred|| + 2**-23 |s|.
    w_norm = np.linalg.norm(W[np.argmax(X64 @ W.T + b, axis=1)], axis=1)
    err = np.abs(s32 - expected)
    assert np.all(err <= 2.0**-21 * w_norm + 2.0**-23 * np.abs(expected))
    # A proximity near 0 has no relative accuracy: the bound is on its scale.
    np.testing.assert_allclose(s32, expected, rtol=1e-5, atol=1e-6 * w_norm.max())


def test_float32_rows_near_the_mean_keep_their_precision():
    # The float32 rounding of the mean (about 2**-24 * 1e4 = 6e-4 here) must
    # not be added to x - mean: mean is split into two float32 parts.
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(3, 4)), np.zeros(3)
    X_fit = (1e4 + rng.normal(size=(50, 4))).astype(np.float32)
    det = NCI(head=(W, b), norm_weight=0.0).fit(X_fit)
    mu = X_fit.astype(np.float64).mean(axis=0)
    X = (np.float32(mu) + np.float32(1e-3) * np.sign(rng.normal(size=(20, 4)))).astype(
        np.float32
    )
    expected = ref_nci(X_fit.astype(np.float64), X.astype(np.float64), W, b, 0.0)
    w_norm = np.linalg.norm(W, axis=1).max()
    assert np.all(np.abs(det.score_samples(X) - expected) <= 2.0**-20 * w_norm)


@pytest.mark.parametrize("cls", [fDBD, NCI])
def test_float32_block_beyond_float32_after_centring_uses_float64(cls):
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    X_fit = np.full((10, 4), -3e38, dtype=np.float32)
    X_fit[:, 1:] = rng.normal(size=(10, 3))
    X = rng.normal(size=(5, 4)).astype(np.float32)
    X[0, 0] = 3e38  # x - mean = 6e38: beyond float32
    kwargs = {"norm_weight": 0.0} if cls is NCI else {}
    det = cls(head=(W, b), contamination=None, **kwargs).fit(X_fit)
    s32 = det.score_samples(X)
    ref = ref_fdbd if cls is fDBD else lambda F, Q, W, b: ref_nci(F, Q, W, b, 0.0)
    expected = ref(X_fit.astype(np.float64), X.astype(np.float64), W, b)
    assert np.all(np.isfinite(s32))
    np.testing.assert_allclose(s32, expected, rtol=1e-5)


@pytest.mark.parametrize("cls", [fDBD, NCI])
@pytest.mark.parametrize("scale", [1e-22, 1e19])
def test_float32_products_beyond_float32_range_are_exact(cls, scale):
    # Products of such float32 features underflow or overflow float32: those
    # rows are redone with float64 products. (At 1e-22 the distances to the
    # mean are floored at 1e-12, as in float64.)
    X_fit, W, _ = _relu_problem(500, d=16, c=4)
    X = _relu_problem(200, d=16, c=4, seed=1)[0]
    X_fit, X = X_fit * np.float32(scale), X * np.float32(scale)
    kwargs = {"norm_weight": 0.0} if cls is NCI else {}
    det = cls(head=(W, np.zeros(4)), contamination=None, **kwargs).fit(X_fit)
    expected = det.score_samples(X.astype(np.float64))  # the float64 formula
    atol = 1e-6 * np.abs(expected).max()  # NCI's proximity can cancel to ~0
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-5, atol=atol)
    if scale > 1:
        ref = ref_fdbd if cls is fDBD else lambda F, Q, W, b: ref_nci(F, Q, W, b, 0.0)
        F64, X64 = X_fit.astype(np.float64), X.astype(np.float64)
        np.testing.assert_allclose(expected, ref(F64, X64, W, np.zeros(4)), rtol=1e-12)
