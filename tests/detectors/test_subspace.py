"""ViM against a float64 reference written from the paper and pytorch-ood."""

import warnings

import numpy as np
import pytest
from _helpers import streamed_offset
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.linear_model import LogisticRegression

from sklearn_ood.detectors._subspace import ViM, vim_default_dim


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
    """The paper's recipe, written with lstsq / EmpiricalCovariance / eig."""
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
    det = ViM(head=(W, b), dim=dim).fit(X)
    used_dim = 4 if dim is None else dim
    expected, alpha = ref_vim(X, X_test, W, b, used_dim)
    assert det.dim_ == used_dim
    np.testing.assert_allclose(det.alpha_, alpha, rtol=1e-10)
    np.testing.assert_allclose(
        det.score_samples(X_test), expected, rtol=1e-10, atol=1e-10
    )
    fit_scores, _ = ref_vim(X, X, W, b, used_dim)
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


def test_given_alpha_is_used():
    X, _, W, b = _problem()
    det = ViM(head=(W, b), dim=3, alpha=0.25).fit(X)
    assert det.alpha_ == 0.25
    expected, _ = ref_vim(X, X, W, b, 3, alpha=0.25)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


def test_score_is_minus_logit_of_the_papers_ood_probability():
    X, _, W, b = _problem()
    det = ViM(head=(W, b), dim=3).fit(X)
    logits = X @ W.T + b
    u = -np.linalg.pinv(W) @ b
    P = det.components_.T
    virtual = det.alpha_ * np.linalg.norm((X - u) - (X - u) @ P @ P.T, axis=1)
    all_logits = np.column_stack([logits, virtual])
    p_ood = np.exp(virtual - logsumexp(all_logits, axis=1))
    np.testing.assert_allclose(det.score_samples(X), np.log((1 - p_ood) / p_ood))


def test_default_dim_rule():
    assert [vim_default_dim(n) for n in (4096, 2048, 2047, 768, 767, 9, 1)] == [
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
    det = ViM(head=(W, b), dim=5).fit(X)
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
    ours = ViM(head=(W, b), dim=3).fit(X)
    # pytorch-ood computes in float32 and returns the outlier score -s.
    np.testing.assert_allclose(ours.alpha_, theirs.alpha, rtol=1e-4)
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
    whole = ViM(head=(W, b), dim=3).fit(X, y)
    chunked = ViM(head=(W, b), dim=3)
    chunks = [(X[rows], y[rows]) for rows in np.array_split(np.arange(400), 6)]
    for chunk in chunks:
        chunked.partial_fit(*chunk)
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-10, atol=1e-10
    )
    P_whole = whole.components_.T @ whole.components_
    P_chunked = chunked.components_.T @ chunked.components_
    np.testing.assert_allclose(P_chunked, P_whole, atol=1e-10)
    # alpha is matched on each row's residual under the subspace of its call
    # (fit: under the final subspace), and offset_ follows it.
    residuals = np.concatenate(
        [
            ViM(head=(W, b), dim=3)
            .fit(X[: rows[-1] + 1], y[: rows[-1] + 1])
            ._residual(X[rows][y[rows] >= 0])
            for rows in np.array_split(np.arange(400), 6)
        ]
    )
    mean_max_logit = whole.max_logit_sum_ / whole.n_samples_seen_
    assert chunked.alpha_ == pytest.approx(mean_max_logit / residuals.mean(), rel=1e-9)
    assert chunked.alpha_ == pytest.approx(whole.alpha_, rel=0.1)
    assert chunked.offset_ == pytest.approx(streamed_offset(chunked, chunks), rel=1e-9)
    whole.alpha_ = chunked.alpha_
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-10
    )


def test_partial_fit_beyond_the_sample_estimates_alpha(monkeypatch):
    monkeypatch.setattr(ViM, "_offset_sample_size", 300)
    X, _, W, b = _problem(n=2000)
    whole = ViM(head=(W, b), dim=3).fit(X)
    chunked = ViM(head=(W, b), dim=3)
    for rows in np.array_split(np.arange(2000), 10):
        chunked.partial_fit(X[rows])
    # The moments stay exact; alpha comes from a 300-row uniform sample.
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-10
    )
    assert chunked.alpha_ == pytest.approx(whole.alpha_, rel=0.05)


# ------------------------------------------------------------------ errors
def test_head_shape_mismatch():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="expects 7 input features"):
        ViM(head=(W[:, :7], b)).fit(X)
    with pytest.raises(ValueError, match="bias"):
        ViM(head=(W, b[:2])).fit(X)


@pytest.mark.parametrize("dim", [8, 20])
def test_dim_not_below_n_features(dim):
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match=f"dim={dim} must be smaller"):
        ViM(head=(W, b), dim=dim).fit(X)


def test_too_few_rows_for_the_subspace_give_plain_energy():
    X, _, W, b = _problem(n=3)
    with pytest.warns(UserWarning, match="zero residual"):
        det = ViM(head=(W, b), dim=4).fit(X)
    assert det.alpha_ == 0.0
    X_test = _problem(n=10, seed=1)[0]
    np.testing.assert_allclose(
        det.score_samples(X_test), logsumexp(X_test @ W.T + b, axis=1)
    )


def test_partial_fit_with_chunks_smaller_than_dim():
    X, _, W, b = _problem(n=60, d=8)
    whole = ViM(head=(W, b), dim=6).fit(X)
    chunked = ViM(head=(W, b), dim=6)
    with pytest.warns(UserWarning, match="zero residual"):
        chunked.partial_fit(X[:3])  # 3 rows span at most 3 of the 6 dimensions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # until 6 dimensions are full
        for rows in np.array_split(np.arange(3, 60), 19):
            chunked.partial_fit(X[rows])
    # The first rows' residuals were taken under subspaces that held them
    # (zero residual): alpha is matched on what the stream saw.
    ends = [3, *(rows[-1] + 1 for rows in np.array_split(np.arange(3, 60), 19))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        residuals = np.concatenate(
            [
                ViM(head=(W, b), dim=6).fit(X[:end])._residual(X[start:end])
                for start, end in zip([0, *ends[:-1]], ends)
            ]
        )
    mean_max_logit = whole.max_logit_sum_ / whole.n_samples_seen_
    assert chunked.alpha_ == pytest.approx(mean_max_logit / residuals.mean(), rel=1e-9)
    whole.alpha_ = chunked.alpha_
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-10, atol=1e-10
    )


def test_negative_mean_max_logit_warns_and_uses_magnitude():
    X, _, W, b = _problem()
    b = b - 100.0
    with pytest.warns(UserWarning, match="mean max logit"):
        det = ViM(head=(W, b), dim=3).fit(X)
    _, alpha = ref_vim(X, X, W, b, 3)
    assert alpha < 0
    assert det.alpha_ == pytest.approx(-alpha, rel=1e-10)


def test_bad_params():
    X, _, W, b = _problem()
    with pytest.raises(ValueError, match="alpha"):
        ViM(head=(W, b), alpha=0.0).fit(X)
    with pytest.raises(ValueError, match="dim"):
        ViM(head=(W, b), dim=-1).fit(X)


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
    det = ViM((W, b), dim=3).fit(X)
    expected = -np.linalg.lstsq(W, b, rcond=None)[0]  # minimum-norm solution
    np.testing.assert_allclose(det.origin_, expected, atol=1e-8)
