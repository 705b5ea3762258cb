"""Residual (ViM's residual norm alone) against a float64 reference."""

import numpy as np
import pytest
from _helpers import streamed_offset
from sklearn.covariance import EmpiricalCovariance

from sklearn_ood.detectors import Residual, ViM


def _problem(n=150, d=8, c=4, seed=0):
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(c, d)), rng.normal(size=c)
    y = rng.integers(0, c, size=n)
    X = 1.5 * W[y] + 1.5 * rng.normal(size=(n, d))
    return X, y, W, b


def ref_residual(X_fit, X, W, b, dim):
    """OpenOOD's recipe from the paper: u = -W^+ b, the uncentred covariance at
    u, its eigenvectors past the top ``dim``, minus the norm of the projection."""
    u = np.linalg.lstsq(W, -b, rcond=None)[0]
    cov = EmpiricalCovariance(assume_centered=True).fit(X_fit - u).covariance_
    vals, vecs = np.linalg.eigh(cov)
    null_space = vecs[:, np.argsort(-vals)[dim:]]
    return -np.linalg.norm((X - u) @ null_space, axis=1)


@pytest.mark.parametrize("dim", [None, 1, 3, 7])
def test_matches_float64_reference(dim):
    X, _, W, b = _problem()
    X_test = np.vstack([_problem(n=20, seed=1)[0], 4 * _problem(n=10, seed=2)[0]])
    det = Residual(head=(W, b), n_components=dim).fit(X)
    used = 4 if dim is None else dim
    assert det.n_components_ == used
    np.testing.assert_allclose(
        det.score_samples(X_test), ref_residual(X, X_test, W, b, used), rtol=1e-10
    )
    fit_scores = ref_residual(X, X, W, b, used)
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


def test_is_vims_residual_term_and_shares_its_fit():
    X, _, W, b = _problem()
    X_test = _problem(n=30, seed=3)[0]
    residual = Residual(head=(W, b), n_components=3).fit(X)
    vim = ViM(head=(W, b), n_components=3).fit(X)
    np.testing.assert_array_equal(residual.components_, vim.components_)
    energy = np.log(np.exp(X_test @ W.T + b).sum(axis=1))
    np.testing.assert_allclose(
        residual.score_samples(X_test),
        (vim.score_samples(X_test) - energy) / vim.residual_scale_,
        rtol=1e-9,
    )


def test_agrees_with_pytorch_oods_vim_residual():
    torch = pytest.importorskip("torch")
    detector_module = pytest.importorskip("pytorch_ood.detector")
    X, y, W, b = _problem()
    X_test = _problem(n=30, seed=3)[0]
    theirs = detector_module.ViM(
        None, d=3, w=torch.from_numpy(W), b=torch.from_numpy(b)
    ).fit_features(torch.from_numpy(X), torch.from_numpy(y))
    their_vim = theirs.predict_features(torch.from_numpy(X_test)).double().numpy()
    energy = np.log(np.exp(X_test @ W.T + b).sum(axis=1))
    # Their score is -(energy - alpha * r): r = (theirs + energy) / alpha.
    their_residual = (their_vim + energy) / theirs.alpha
    ours = Residual(head=(W, b), n_components=3).fit(X)
    np.testing.assert_allclose(
        ours.score_samples(X_test), -their_residual, rtol=1e-4, atol=1e-4
    )


def test_float32_in_float32_out():
    X, _, W, b = _problem()
    det = Residual(head=(W, b), n_components=3).fit(X.astype(np.float32))
    scores = det.score_samples(X.astype(np.float32))
    assert scores.dtype == np.float32
    ref = Residual(head=(W, b), n_components=3).fit(X).score_samples(X)
    np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-5)


def test_partial_fit_in_chunks_equals_fit():
    X, _, W, b = _problem(n=300)
    whole = Residual(head=(W, b), n_components=3).fit(X)
    chunked = Residual(head=(W, b), n_components=3)
    for rows in np.array_split(np.arange(len(X)), 7):
        chunked.partial_fit(X[rows])
    np.testing.assert_allclose(
        chunked.second_moment_sum_, whole.second_moment_sum_, rtol=1e-10
    )
    np.testing.assert_allclose(
        chunked.score_samples(X), whole.score_samples(X), rtol=1e-9, atol=1e-12
    )
    chunks = [(X[rows], None) for rows in np.array_split(np.arange(len(X)), 7)]
    assert chunked.offset_ == pytest.approx(streamed_offset(chunked, chunks), rel=1e-9)


def test_far_rows_score_low_and_bad_input_is_refused():
    X, _, W, b = _problem()
    det = Residual(head=(W, b), n_components=3).fit(X)
    far = 50 * det.residual_components_[:1]
    assert det.score_samples(far)[0] < det.score_samples(X).min()
    with pytest.raises(ValueError, match="must be smaller than the number"):
        Residual(head=(W, b), n_components=8).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(np.full((1, 8), np.nan))
    with pytest.raises(ValueError, match="features"):
        det.score_samples(X[:, :5])
