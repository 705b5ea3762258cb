"""PNML against a float64 reference written from the paper, and pytorch-ood."""

import math

import mpmath
import numpy as np
import pytest
from _helpers import streamed_offset

from sklearn_ood.detectors import PNML


def _problem(n=200, d=6, c=4, seed=0, scale=1.0):
    """Post-ReLU-like features and a head of moderate logits on unit rows."""
    rng = np.random.default_rng(seed)
    W = scale * rng.normal(size=(c, d))
    b = 0.5 * rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    X = np.abs(np.eye(c, d)[y] + 0.7 * rng.normal(size=(n, d)))
    return X, y, W, b


def _test_rows(d=6, seed=1):
    rng = np.random.default_rng(seed)
    return np.vstack([np.abs(rng.normal(size=(15, d))), rng.normal(size=(10, d))])


# ---------------------------------------------------------------- reference
def ref_pnml(X_fit, X, W, b):
    """-log sum_c p_c / (p_c + (1 - p_c) p_c^kappa), loop style, from the paper:
    unit rows, G = sum x x^T, x^T G^+ x / (1 + x^T G^+ x), and the squared
    norm of the part outside the span (the authors' max rule)."""
    U = np.array([row / np.linalg.norm(row) for row in X_fit])
    G = U.T @ U
    G_pinv = np.linalg.pinv(G, hermitian=True)
    P_bot = np.eye(len(G)) - G_pinv @ G
    scores = []
    for x in X:
        x = x / np.linalg.norm(x)
        logits = W @ x + b
        p = np.exp(logits - logits.max())
        p /= p.sum()
        inner = x @ G_pinv @ x
        kappa = max(x @ P_bot @ x, inner / (1 + inner))
        scores.append(-math.log(sum(p / (p + (1 - p) * p**kappa))))
    return np.array(scores)


def test_matches_reference():
    X, y, W, b = _problem()
    X_test = _test_rows()
    det = PNML(head=(W, b)).fit(X, y)
    assert det.rank_ == 6
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_pnml(X, X_test, W, b), rtol=1e-10
    )
    assert det.offset_ == pytest.approx(
        np.percentile(ref_pnml(X, X, W, b), 5), rel=1e-10
    )


def test_rank_deficient_fit_matches_reference():
    # A unit never active on the fit rows (column 4) and one that copies
    # another (column 5 = column 0): rank 4 of 6.
    X, _, W, b = _problem()
    X[:, 4] = 0.0
    X[:, 5] = X[:, 0]
    det = PNML(head=(W, b)).fit(X)
    assert det.rank_ == 4
    X_test = np.vstack([_test_rows(), X[:5]])
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_pnml(X, X_test, W, b), rtol=1e-9, atol=1e-12
    )


def test_the_theorem_at_both_ends_of_the_span():
    X, _, W, b = _problem()
    X[:, 4] = 0.0
    det = PNML(head=(W, b)).fit(X)
    inside = X[:3]
    outside = np.eye(6)[[4]]  # orthogonal to every fit row: kappa = 1
    unit = inside / np.linalg.norm(inside, axis=1, keepdims=True)
    G_pinv = np.linalg.pinv(det.second_moment_sum_)
    inner = np.einsum("ij,jk,ik->i", unit, G_pinv, unit)
    np.testing.assert_allclose(det._kappa(unit), inner / (1 + inner), rtol=1e-10)
    assert det._kappa(outside)[0] == pytest.approx(1.0, abs=1e-12)
    p = np.exp(W[:, 4] + b) / np.exp(W[:, 4] + b).sum()
    expected = -np.log(np.sum(1.0 / (2.0 - p)))  # p / (p + (1 - p) p)
    assert det.score_samples(outside)[0] == pytest.approx(expected, rel=1e-12)


def test_score_range_and_zero_row():
    X, _, W, b = _problem()
    det = PNML(head=(W, b)).fit(X)
    scores = det.score_samples(np.vstack([_test_rows(), np.zeros((1, 6))]))
    assert np.all(scores <= 0) and np.all(scores >= -np.log(len(W)))
    assert scores[-1] == 0.0  # no direction: kappa = 0, regret 0


def test_float32_in_float32_out():
    X, y, W, b = _problem()
    s64 = PNML(head=(W, b)).fit(X, y).score_samples(X)
    X32 = X.astype(np.float32)
    det32 = PNML(head=(W, b)).fit(X32, y)
    s32 = det32.score_samples(X32)
    assert s32.dtype == np.float32
    assert det32.second_moment_sum_.dtype == np.float64
    np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-7)


def test_scale_invariant_without_overflow():
    # Only the direction of x counts: rows of 1e200 or 1e-200 (whose squares
    # leave the float64 range) give the scores of the rows themselves.
    X, _, W, b = _problem()
    X_test = _test_rows()
    expected = PNML(head=(W, b)).fit(X).score_samples(X_test)
    for scale in (1e200, 1e-200):
        det = PNML(head=(W, b)).fit(X * scale)
        np.testing.assert_allclose(
            det.score_samples(X_test * scale), expected, rtol=1e-12
        )


def test_confident_rows_keep_their_precision():
    # Large logits: the regret is tiny (down to about 1e-30) or the
    # probabilities underflow; compared with 50-digit arithmetic of the same
    # formula (kappa from the detector). The plain formula returns log(1) = 0
    # or NaN (0 / 0) for these rows.
    X, _, W, b = _problem(scale=40.0)
    det = PNML(head=(W, b)).fit(X)
    X_test = _test_rows()
    scores = det.score_samples(X_test)
    assert np.all(np.isfinite(scores))
    unit = X_test / np.linalg.norm(X_test, axis=1, keepdims=True)
    kappas = det._kappa(unit)
    mpmath.mp.dps = 50
    for x, kappa, score in zip(unit, kappas, scores):
        logits = [mpmath.mpf(v) for v in W @ x + b]
        total = mpmath.fsum(mpmath.exp(v) for v in logits)
        p = [mpmath.exp(v) / total for v in logits]
        k = mpmath.mpf(kappa)
        regret = mpmath.log(mpmath.fsum(q / (q + (1 - q) * q**k) for q in p))
        assert score == pytest.approx(-float(regret), rel=1e-9, abs=1e-300)
    assert np.min(-scores) < 1e-12  # some rows are that confident


# ------------------------------------------------------- cross-check pytorch-ood
def _torch_linear(W, b):
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


def _theirs(X_fit, y_fit, X, W, b):
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    theirs = detector_module.PNML(None, head=_torch_linear(W, b))
    theirs.fit_features(torch.from_numpy(X_fit), torch.from_numpy(y_fit))
    return theirs.predict_features(torch.from_numpy(X)).double().numpy()


def test_agrees_with_pytorch_ood():
    # Full rank, probabilities in [1e-12, 1 - 1e-12]: ours is -log(C) times
    # theirs (theirs divides the regret by log C, in float32).
    X, y, W, b = _problem()
    X_test = _test_rows()
    their_scores = _theirs(X, y, X_test, W, b)
    ours = PNML(head=(W, b)).fit(X, y).score_samples(X_test)
    np.testing.assert_allclose(ours, -np.log(len(W)) * their_scores, rtol=2e-4)


def test_null_directions_differ_from_pytorch_ood():
    # A row along a unit never active on the fit rows: theirs uses the
    # pseudo-inverse alone (kappa = 0, regret 0: the most ID row); ours has
    # kappa = 1 (the paper's theorem), the largest regret for its softmax.
    X, y, W, b = _problem()
    X[:, 4] = 0.0
    row = np.eye(6)[[4]]
    their_scores = _theirs(X, y, row, W, b)
    assert their_scores[0] == pytest.approx(0.0, abs=1e-6)
    ours = PNML(head=(W, b)).fit(X, y)
    assert ours.score_samples(row)[0] < np.min(ours.score_samples(X))


# ------------------------------------------------------------ heads, labels
def test_torch_linear_head():
    X, y, W, b = _problem()
    np.testing.assert_allclose(
        PNML(head=_torch_linear(W, b)).fit(X, y).score_samples(X),
        PNML(head=(W, b)).fit(X, y).score_samples(X),
        rtol=1e-6,  # the layer's float32 weights
    )


def test_labels_are_ignored_but_ood_rows_dropped():
    X, y, W, b = _problem()
    plain = PNML(head=(W, b)).fit(X)
    labelled = PNML(head=(W, b)).fit(X, y)
    np.testing.assert_array_equal(plain.second_moment_sum_, labelled.second_moment_sum_)
    X_ood = 5 * np.random.default_rng(3).normal(size=(40, 6))
    mixed = PNML(head=(W, b)).fit(np.vstack([X, X_ood]), np.r_[y, -np.ones(40)])
    np.testing.assert_allclose(mixed.second_moment_sum_, plain.second_moment_sum_)
    assert mixed.n_samples_seen_ == len(X)


# ------------------------------------------------------------ partial_fit
def test_partial_fit_in_chunks_equals_fit():
    X, y, W, b = _problem(n=400)
    y = np.where(np.arange(400) % 9 == 0, -1, y)
    whole = PNML(head=(W, b)).fit(X, y)
    chunked = PNML(head=(W, b))
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(400), 7)]
    for chunk in chunks:
        chunked.partial_fit(*chunk)
    assert chunked.n_samples_seen_ == whole.n_samples_seen_
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-12
    )
    np.testing.assert_allclose(chunked.eigenvalues_, whole.eigenvalues_, rtol=1e-10)
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        chunked.offset_, streamed_offset(chunked, chunks), rtol=1e-10
    )


def test_partial_fit_grows_the_rank():
    # The first chunk spans 2 directions, the stream all 6.
    X, _, W, b = _problem()
    first = X[:10].copy()
    first[:, 2:] = 0.0
    det = PNML(head=(W, b)).partial_fit(first)
    assert det.rank_ == 2
    det.partial_fit(X[10:])
    assert det.rank_ == 6


# ------------------------------------------------------------------ errors
def test_nan_and_wrong_width_are_refused():
    X, _, W, b = _problem()
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PNML(head=(W, b)).fit(bad)
    det = PNML(head=(W, b)).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(bad)
    with pytest.raises(ValueError, match="features"):
        det.score_samples(X[:, :5])
    with pytest.raises(ValueError, match="expects 5 input features"):
        PNML(head=(W[:, :5], b)).fit(X)


def test_all_zero_fit_rows_are_refused():
    _, _, W, b = _problem()
    with pytest.raises(ValueError, match="all zero"):
        PNML(head=(W, b)).fit(np.zeros((20, 6)))


def test_single_class_head_is_refused():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="at least 2 classes"):
        PNML(head=(W[:1], b[:1])).fit(X)


def test_a_refused_chunk_leaves_the_stream_unchanged():
    X, _, W, b = _problem()
    det = PNML(head=(W, b)).partial_fit(X[:50])
    before = det.second_moment_sum_.copy(), det.offset_
    with pytest.raises(ValueError, match="features"):
        det.partial_fit(X[:5, :4])
    np.testing.assert_array_equal(det.second_moment_sum_, before[0])
    assert det.offset_ == before[1]
