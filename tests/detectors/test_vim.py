"""ViM against a float64 reference written from the paper and pytorch-ood."""

import pickle
import warnings

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.linear_model import LogisticRegression

from sklearn_ood.detectors._vim import ViM, vim_default_n_components


def _problem(n=150, d=8, c=4, noise=1.5, seed=0):
    """Features of a decent linear classifier: class k's rows lie along w_k."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    X = 1.5 * W[y] + noise * rng.normal(size=(n, d))
    return X, y, W, b


# ---------------------------------------------------------------- reference
def ref_vim(X_fit, X, W, b, dim, alpha=None):
    """The paper's recipe, written with lstsq / EmpiricalCovariance / eig
    (``dim`` is the paper's D, ``alpha`` its residual scale)."""
    # Minimum-norm u with W u = -b (pinv(W) @ -b, computed differently).
    u = np.linalg.lstsq(W, -b, rcond=None)[0]
    cov = EmpiricalCovariance(assume_centered=True).fit(X_fit - u).covariance_
    vals, vecs = np.linalg.eig(cov)
    null_space = np.real(vecs[:, np.argsort(-np.real(vals))[dim:]])
    residual_fit = np.linalg.norm((X_fit - u) @ null_space, axis=1)
    if alpha is None:
        alpha = (X_fit @ W.T + b).max(axis=1).mean() / residual_fit.mean()
    residual = np.linalg.norm((X - u) @ null_space, axis=1)
    energy = np.log(np.sum(np.exp(X @ W.T + b), axis=1))
    return energy - alpha * residual, alpha


@pytest.mark.parametrize("dim", [None, 0, 2, 7])
def test_matches_float64_reference(dim):
    X, _, W, b = _problem()
    X_test = np.vstack([_problem(n=20, seed=1)[0], 4 * _problem(n=10, seed=2)[0]])
    det = ViM(head=(W, b), n_components=dim).fit(X)
    used_dim = 4 if dim is None else dim
    expected, alpha = ref_vim(X, X_test, W, b, used_dim)
    assert det.n_components_ == used_dim
    np.testing.assert_allclose(det.residual_scale_, alpha, rtol=1e-10)
    np.testing.assert_allclose(
        det.score_samples(X_test), expected, rtol=1e-10, atol=1e-10
    )
    fit_scores, _ = ref_vim(X, X, W, b, used_dim)
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


def test_given_residual_scale_is_used():
    X, _, W, b = _problem()
    det = ViM(head=(W, b), n_components=3, residual_scale=0.25).fit(X)
    assert det.residual_scale_ == 0.25
    expected, _ = ref_vim(X, X, W, b, 3, alpha=0.25)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


def test_score_is_minus_logit_of_the_papers_ood_probability():
    X, _, W, b = _problem()
    det = ViM(head=(W, b), n_components=3).fit(X)
    logits = X @ W.T + b
    u = -np.linalg.pinv(W) @ b
    P = det.components_.T
    virtual = det.residual_scale_ * np.linalg.norm((X - u) - (X - u) @ P @ P.T, axis=1)
    all_logits = np.column_stack([logits, virtual])
    p_ood = np.exp(virtual - logsumexp(all_logits, axis=1))
    np.testing.assert_allclose(det.score_samples(X), np.log((1 - p_ood) / p_ood))


def test_default_n_components_rule():
    assert [
        vim_default_n_components(n) for n in (4096, 2048, 2047, 768, 767, 9, 1)
    ] == [
        1000,
        1000,
        512,
        512,
        383,
        4,
        0,
    ]


def test_float32_in_float32_out():
    X, _, W, b = _problem()
    s64 = ViM(head=(W, b)).fit(X).score_samples(X)
    X32 = X.astype(np.float32)
    s32 = ViM(head=(W, b)).fit(X32).score_samples(X32)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-4, atol=1e-4)


def test_far_rows_score_low():
    X, _, W, b = _problem(d=10)
    det = ViM(head=(W, b), n_components=5).fit(X)
    far = X[:20] + 30 * det.residual_components_[0]
    assert np.mean(det.predict(far) == -1) == 1.0
    assert np.mean(det.predict(X) == -1) <= 0.06


# ------------------------------------------------------- cross-check pytorch-ood
def test_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, y, W, b = _problem()
    X_test = _problem(n=30, seed=3)[0]
    theirs = detector_module.ViM(
        None, d=3, w=torch.from_numpy(W), b=torch.from_numpy(b)
    ).fit_features(torch.from_numpy(X), torch.from_numpy(y))
    their_scores = theirs.predict_features(torch.from_numpy(X_test)).double().numpy()
    ours = ViM(head=(W, b), n_components=3).fit(X)
    # pytorch-ood computes in float32 and returns the outlier score -s.
    np.testing.assert_allclose(ours.residual_scale_, theirs.alpha, rtol=1e-4)
    np.testing.assert_allclose(
        ours.score_samples(X_test), -their_scores, rtol=1e-4, atol=1e-4
    )


def test_torch_linear_head():
    torch = pytest.importorskip("torch")
    X, _, W, b = _problem()
    layer = torch.nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    np.testing.assert_allclose(
        ViM(head=layer).fit(X).score_samples(X),
        ViM(head=(W, b)).fit(X).score_samples(X),
        rtol=1e-12,
    )


def test_sklearn_head():
    X, y, _, _ = _problem()
    clf = LogisticRegression(max_iter=1000).fit(X, y)
    np.testing.assert_allclose(
        ViM(head=clf).fit(X).score_samples(X),
        ViM(head=(clf.coef_, clf.intercept_)).fit(X).score_samples(X),
        rtol=1e-12,
    )


# ------------------------------------------------------------ partial_fit
def test_partial_fit_in_chunks_equals_fit():
    X, y, W, b = _problem(n=400)
    y = np.where(np.arange(400) % 7 == 0, -1, y)
    whole = ViM(head=(W, b), n_components=3).fit(X, y)
    chunked = ViM(head=(W, b), n_components=3)
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(400), 6)]
    for chunk in chunks:
        chunked.partial_fit(*chunk)
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-10, atol=1e-10
    )
    P_whole = whole.components_.T @ whole.components_
    P_chunked = chunked.components_.T @ chunked.components_
    np.testing.assert_allclose(P_chunked, P_whole, atol=1e-10)
    # residual_scale_ is matched on each row's residual under the subspace of its call
    # (fit: under the final subspace), and offset_ follows it.
    residuals = np.concatenate(
        [
            ViM(head=(W, b), n_components=3)
            .fit(X[: rows[-1] + 1], y[: rows[-1] + 1])
            ._residual(X[rows][y[rows] >= 0])
            for rows in np.array_split(np.arange(400), 6)
        ]
    )
    mean_max_logit = whole.max_logit_sum_ / whole.n_samples_seen_
    assert chunked.residual_scale_ == pytest.approx(
        mean_max_logit / residuals.mean(), rel=1e-9
    )
    assert chunked.residual_scale_ == pytest.approx(whole.residual_scale_, rel=0.1)
    assert chunked.offset_ == pytest.approx(streamed_offset(chunked, chunks), rel=1e-9)
    whole.residual_scale_ = chunked.residual_scale_
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-10
    )


def test_partial_fit_beyond_the_sample_estimates_residual_scale(monkeypatch):
    monkeypatch.setattr(ViM, "_offset_sample_size", 300)
    X, _, W, b = _problem(n=2000)
    whole = ViM(head=(W, b), n_components=3).fit(X)
    chunked = ViM(head=(W, b), n_components=3)
    for rows in np.array_split(np.arange(2000), 10):
        chunked.partial_fit(X[rows])
    # The moments stay exact; residual_scale_ comes from a 300-row uniform sample.
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-10
    )
    assert chunked.residual_scale_ == pytest.approx(whole.residual_scale_, rel=0.05)


# ------------------------------------------------------------------ errors
def test_head_shape_mismatch():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="expects 7 input features"):
        ViM(head=(W[:, :7], b)).fit(X)
    with pytest.raises(ValueError, match="bias"):
        ViM(head=(W, b[:2])).fit(X)


@pytest.mark.parametrize("n_components", [8, 20])
def test_n_components_not_below_n_features(n_components):
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match=f"n_components={n_components} must be"):
        ViM(head=(W, b), n_components=n_components).fit(X)


def test_too_few_rows_for_the_subspace_give_plain_energy():
    X, _, W, b = _problem(n=3)
    with pytest.warns(UserWarning, match="zero residual"):
        det = ViM(head=(W, b), n_components=4).fit(X)
    assert det.residual_scale_ == 0.0
    X_test = _problem(n=10, seed=1)[0]
    np.testing.assert_allclose(
        det.score_samples(X_test), logsumexp(X_test @ W.T + b, axis=1)
    )


def test_partial_fit_with_chunks_smaller_than_n_components():
    X, _, W, b = _problem(n=60, d=8)
    whole = ViM(head=(W, b), n_components=6).fit(X)
    chunked = ViM(head=(W, b), n_components=6)
    with pytest.warns(UserWarning, match="zero residual"):
        chunked.partial_fit(X[:3])  # 3 rows span at most 3 of the 6 dimensions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # until 6 dimensions are full
        for rows in np.array_split(np.arange(3, 60), 19):
            chunked.partial_fit(X[rows])
    # The first rows' residuals were taken under subspaces that held them
    # (zero residual): residual_scale_ is matched on what the stream saw.
    ends = [3, *(rows[-1] + 1 for rows in np.array_split(np.arange(3, 60), 19))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        residuals = np.concatenate(
            [
                ViM(head=(W, b), n_components=6).fit(X[:end])._residual(X[start:end])
                for start, end in zip([0, *ends[:-1]], ends)
            ]
        )
    mean_max_logit = whole.max_logit_sum_ / whole.n_samples_seen_
    assert chunked.residual_scale_ == pytest.approx(
        mean_max_logit / residuals.mean(), rel=1e-9
    )
    whole.residual_scale_ = chunked.residual_scale_
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-10
    )


def test_negative_mean_max_logit_warns_and_uses_magnitude():
    X, _, W, b = _problem()
    b = b - 100.0
    with pytest.warns(UserWarning, match="mean max logit"):
        det = ViM(head=(W, b), n_components=3).fit(X)
    _, alpha = ref_vim(X, X, W, b, 3)
    assert alpha < 0
    assert det.residual_scale_ == pytest.approx(-alpha, rel=1e-10)


def test_bad_params():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="residual_scale"):
        ViM(head=(W, b), residual_scale=0.0).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        ViM(head=(W, b), n_components=-1).fit(X)


# ------------------------------------------------------- hypothesis properties
shapes = st.tuples(
    st.integers(2, 5), st.integers(2, 4), st.integers(0, 10_000)
)  # n_features, n_classes, seed


def _draw(d, c, seed, n=None):
    rng = np.random.default_rng(seed)
    n = n or rng.integers(d + 3, 25)
    W = rng.normal(size=(c, d))
    b = rng.normal(size=c)
    X = rng.normal(scale=rng.uniform(0.5, 3), size=(n, d)) + W[0]
    return X, W, b


def _fit(det, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a negative mean max logit
        return det.fit(X, y)


def test_float32_blocks_match_float64_products():
    """float32 features: float32 blocks summed in float64, as the docstring
    states (moments to 1e-5 of the largest entry, logits and residuals under
    one subspace to 1e-5 relative); two blocks and a ragged one."""
    X, _, W, b = _problem(n=9000, d=40, c=5)
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)  # the same features, float64 products
    det32 = ViM(head=(W, b), n_components=10).fit(X32)
    det64 = ViM(head=(W, b), n_components=10).fit(X64)
    moment64 = det64.second_moment_sum_
    assert np.max(np.abs(det32.second_moment_sum_ - moment64)) <= 1e-5 * np.max(
        np.abs(moment64)
    )
    np.testing.assert_allclose(det32.max_logit_sum_, det64.max_logit_sum_, rtol=1e-5)
    np.testing.assert_allclose(
        det64._residual(X32), det64._residual(X64), rtol=1e-5, atol=0
    )
    np.testing.assert_allclose(
        det32.score_samples(X32), det64.score_samples(X64), rtol=1e-4, atol=1e-4
    )


def test_float32_block_overflow_is_redone_in_float64():
    """A float32 block whose products leave the float32 range (features of
    1e20: squares of 1e40) is summed from float64 products instead."""
    X, _, W, b = _problem(n=300, d=6, c=3)
    X32 = (X * 1e20).astype(np.float32)
    det32 = ViM(head=(W, b), n_components=3).fit(X32)
    det64 = ViM(head=(W, b), n_components=3).fit(X32.astype(np.float64))
    np.testing.assert_allclose(
        det32.second_moment_sum_, det64.second_moment_sum_, rtol=1e-12
    )
    # The logits (about 1e21) stay in float32 range: float32 products.
    np.testing.assert_allclose(det32.max_logit_sum_, det64.max_logit_sum_, rtol=1e-5)
    np.testing.assert_allclose(det32.residual_scale_, det64.residual_scale_, rtol=1e-5)


@given(shapes, st.randoms(use_true_random=False))
def test_scores_are_row_wise(shape, random):
    X, W, b = _draw(*shape)
    det = _fit(ViM(head=(W, b)), X)
    perm = np.array(random.sample(range(len(X)), len(X)))
    np.testing.assert_allclose(
        det.score_samples(X[perm]), det.score_samples(X)[perm], rtol=1e-12, atol=1e-12
    )


@given(shapes, st.randoms(use_true_random=False))
def test_invariant_to_permuting_classes(shape, random):
    X, W, b = _draw(*shape)
    perm = np.array(random.sample(range(len(W)), len(W)))
    scores = _fit(ViM(head=(W, b)), X).score_samples(X)
    permuted = _fit(ViM(head=(W[perm], b[perm])), X).score_samples(X)
    np.testing.assert_allclose(permuted, scores, rtol=1e-8, atol=1e-8)


@given(shapes, st.integers(1, 10))
def test_ood_rows_do_not_change_the_fit(shape, n_ood):
    X, W, b = _draw(*shape)
    X_ood = 10 + _draw(*shape, n=n_ood)[0]
    X_all = np.vstack([X, X_ood])
    y = np.r_[np.arange(len(X)) % len(W), -np.ones(n_ood, int)]
    with_ood = _fit(ViM(head=(W, b)), X_all, y)
    without = _fit(ViM(head=(W, b)), X)
    assert with_ood.offset_ == without.offset_
    np.testing.assert_array_equal(
        with_ood.score_samples(X_all), without.score_samples(X_all)
    )


def test_origin_of_a_rank_deficient_head_stays_finite_and_small():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 6))
    W = means - means.mean(axis=0)  # centred class means: rank 3, not 4
    b = rng.normal(size=4)
    X = np.abs(rng.normal(size=(50, 6)))
    det = ViM((W, b), n_components=3).fit(X)
    expected = -np.linalg.lstsq(W, b, rcond=None)[0]  # minimum-norm solution
    np.testing.assert_allclose(det.origin_, expected, atol=1e-8)


def test_head_is_stored_as_coef_and_intercept():
    X, _, W, b = _problem()
    det = ViM(head=(W, b)).fit(X)
    np.testing.assert_array_equal(det.coef_, W)
    np.testing.assert_array_equal(det.intercept_, b)
    assert not hasattr(det, "W_") and not hasattr(det, "b_")


# ------------------------------------------------ refused partial_fit chunks
@pytest.mark.parametrize("scale", [1e155, 1e200])
def test_refused_partial_fit_chunk_leaves_the_detector_unchanged(scale):
    X, y, W, b = _problem(n=150)
    good = [(X[:60], y[:60]), (X[60:110], y[60:110]), (X[110:], y[110:])]
    det = ViM(head=(W, b), n_components=3).partial_fit(*good[0])
    before = pickle.dumps(det.__dict__)
    with pytest.raises(ValueError, match="overflowed float64.*Rescale"):
        det.partial_fit(X[:20] * scale, y[:20])
    assert pickle.dumps(det.__dict__) == before
    for chunk in good[1:]:
        det.partial_fit(*chunk)
    clean = ViM(head=(W, b), n_components=3)
    for chunk in good:
        clean.partial_fit(*chunk)
    assert pickle.dumps(det.__dict__) == pickle.dumps(clean.__dict__)
    np.testing.assert_array_equal(det.score_samples(X), clean.score_samples(X))


# --------------------------------------------------- beyond the float range
@pytest.mark.parametrize("scale", [1e155, 1e200])
def test_fit_beyond_the_float_range_is_a_value_error(scale):
    """It leaked numpy's LinAlgError ("Eigenvalues did not converge")."""
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="overflowed float64.*Rescale"):
        ViM(head=(W, b), n_components=3).fit(X * scale)


def test_fit_on_huge_but_finite_features_matches_the_scaled_fit():
    """Features of 1e150: second moments of ~1e301 still factorise."""
    X, _, W, b = _problem()
    det = ViM(head=(W, b * 1e150), n_components=3).fit(X * 1e150)
    ref = ViM(head=(W, b), n_components=3).fit(X)
    P, P_ref = det.components_.T @ det.components_, ref.components_.T @ ref.components_
    np.testing.assert_allclose(P, P_ref, atol=1e-8)
    np.testing.assert_allclose(det.eigenvalues_, ref.eigenvalues_ * 1e300, rtol=1e-8)


@pytest.mark.parametrize("scale", [1e155, 1e200])
def test_huge_rows_get_finite_scores(scale):
    """The residual norm of a huge finite row is taken without overflow."""
    X, _, W, b = _problem()
    det = ViM(head=(W, b), n_components=3).fit(X)
    far = det.residual_components_[:1] * scale  # logits of order `scale`
    energy = logsumexp(far @ W.T + b, axis=1)
    expected = energy - det.residual_scale_ * scale
    np.testing.assert_allclose(det.score_samples(far), expected, rtol=1e-12)
    assert np.isfinite(det.score_samples(far)).all()


def test_scores_beyond_the_float_range_raise():
    X, _, W, b = _problem()
    det = ViM(head=(W, b), n_components=3).fit(X)
    rows = X[:3].copy()
    rows[1] = 1e308  # its logits overflow float64
    with pytest.raises(ValueError, match=r"1 row\(s\) \(the first is row 1\)"):
        det.score_samples(rows)
    det32 = ViM(head=(W, b), n_components=3, residual_scale=100.0)
    det32.fit(X.astype(np.float32))
    rows32 = X[:3].astype(np.float32)
    # A float32 row whose residual norm, 1e37, times 100 is beyond float32.
    rows32[2] = 1e37 * det32.residual_components_[0]
    with pytest.raises(ValueError, match="float32 range.*float64 features"):
        det32.score_samples(rows32)


# ------------------------------------------------------------- monotonicity
def test_score_is_not_monotone_in_the_logits():
    """The counterexample of the docstring: a step that raises the largest
    logit and the energy lengthens the residual more, so the score falls."""
    rng = np.random.default_rng(0)
    # Fit features span the first two axes; the third is the residual.
    X = np.column_stack([rng.normal(size=(200, 2)) * 3, 0.1 * rng.normal(size=200)])
    W = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    b = np.zeros(3)
    det = ViM(head=(W, b), n_components=2).fit(X)
    assert det.residual_scale_ > 0.5  # larger than the logit's slope, w_0 . e_3
    x = np.array([[4.0, 0.0, 1.0]])
    x_step = x + [[0.0, 0.0, 1.0]]  # along e_3, in the residual subspace
    logits, logits_step = x @ W.T + b, x_step @ W.T + b
    assert logits_step.max() > logits.max()  # the largest logit rises,
    assert logsumexp(logits_step) > logsumexp(logits)  # so does the energy,
    assert det.score_samples(x_step)[0] < det.score_samples(x)[0]  # not ViM
