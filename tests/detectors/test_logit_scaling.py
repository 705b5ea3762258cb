"""LTS against a float64 reference written from the paper, and pytorch-ood."""

import math

import numpy as np
import pytest
from _helpers import RandomLinearHead
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ood.detectors import LTS, SCALE, Energy, MaxSoftmax

N_FEATURES, N_CLASSES = 40, 5


def _head(n_features=N_FEATURES, n_classes=N_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes)


def _features(n=30, n_features=N_FEATURES, seed=1, signed=False):
    """Continuous (tie-free) features: |N(0, 1)| like post-ReLU, or signed."""
    z = np.random.default_rng(seed).normal(size=(n, n_features))
    return z if signed else np.abs(z)


# ---------------------------------------------------------------- references
# Plain float64 formulas written loop-style, without the package's helpers.
def ref_energy(logits):
    out = []
    for row in logits:
        m = max(row)
        out.append(m + math.log(sum(math.exp(v - m) for v in row)))
    return np.array(out)


def ref_factor(row, q):
    """(s1 / s2)^2 of the rectified row; s2 sums the top n - round(n q / 100)
    entries, every entry tied with the k-th largest included; 1 if s2 = 0."""
    a = [max(v, 0.0) for v in row]
    n = len(a)
    k = max(1, n - int(round(n * q / 100.0)))
    t = sorted(a, reverse=True)[k - 1]
    s1 = sum(a)
    s2 = sum(v for v in a if v >= t)
    return (s1 / s2) ** 2 if s2 > 0 else 1.0


def ref_lts_logits(X, W, b, q=95.0):
    out = []
    for row in X:
        f = ref_factor(row, q)
        logits = [
            sum(row[j] * W[c][j] for j in range(len(row))) + b[c] for c in range(len(b))
        ]
        out.append([f * v for v in logits])
    return np.array(out)


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize("percentile", [95, 65, 50, 0])
def test_scores_match_float64_reference(percentile, signed):
    W, b = _head()
    X_fit, X = _features(signed=signed), _features(n=12, seed=2, signed=signed)
    det = LTS((W, b), percentile=percentile).fit(X_fit)
    scores = det.score_samples(X)
    assert scores.dtype == np.float64
    expected = ref_energy(ref_lts_logits(X, W, b, percentile))
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-10)
    fit_scores = ref_energy(ref_lts_logits(X_fit, W, b, percentile))
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


def test_float32_in_float32_out():
    W, b = _head()
    X_fit = _features(signed=True).astype(np.float32)
    X = _features(n=12, seed=2, signed=True).astype(np.float32)
    s32 = LTS((W, b)).fit(X_fit).score_samples(X)
    assert s32.dtype == np.float32
    # Ranked exactly in float32, summed and multiplied in float64: the
    # float64 scores of the same numbers, rounded.
    expected = ref_energy(ref_lts_logits(X.astype(np.float64), W, b))
    np.testing.assert_allclose(s32, expected, rtol=1e-6)


def test_factor_scales_the_whole_logits_bias_included():
    """Unlike SCALE (e^r W x + b), the factor multiplies W x + b."""
    W, b = _head()
    X = _features(n=12, seed=2)
    factors = np.array([ref_factor(row, 95) for row in X])
    assert np.all(factors >= 1) and np.all(factors <= (N_FEATURES / 2) ** 2)
    logits = X @ W.T + b
    np.testing.assert_allclose(
        LTS((W, b)).fit(X).score_samples(X),
        Energy().fit(logits).score_samples(factors[:, None] * logits),
        rtol=1e-12,
    )
    # A head without weights: the score is the energy of the scaled bias.
    zero_w = LTS((np.zeros_like(W), b)).fit(X)
    np.testing.assert_allclose(
        zero_w.score_samples(X), ref_energy(factors[:, None] * b), rtol=1e-12
    )
    scale = SCALE((W, b)).fit(X)
    assert not np.allclose(scale.score_samples(X), LTS((W, b)).fit(X).score_samples(X))


def test_no_pruning_is_plain_energy():
    """percentile=0: s2 = s1, the factor is 1."""
    W, b = _head()
    X = _features(n=12, seed=2, signed=True)
    np.testing.assert_allclose(
        LTS((W, b), percentile=0).fit(X).score_samples(X),
        ref_energy(X @ W.T + b),
        rtol=1e-12,
    )


def test_a_row_without_positive_activation_is_left_unscaled():
    W, b = _head()
    X = _features(n=6, seed=2)
    X[1] = 0.0
    X[4] = -np.abs(X[4])  # signed, none positive
    scores = LTS((W, b)).fit(X).score_samples(X)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores[[1, 4]], ref_energy(X[[1, 4]] @ W.T + b))


def test_ties_match_the_reference():
    """Few distinct values: entries tied with the k-th largest all count."""
    W, b = _head()
    X = np.round(2 * _features(n=40, seed=8, signed=True)) / 2
    for dtype in (np.float64, np.float32):
        scores = (
            LTS((W, b), percentile=80)
            .fit(X.astype(dtype))
            .score_samples(X.astype(dtype))
        )
        expected = ref_energy(ref_lts_logits(X, W, b, 80))
        np.testing.assert_allclose(
            scores, expected, rtol=1e-6 if dtype == np.float32 else 1e-10
        )


def test_given_detector_is_cloned_and_scores_the_scaled_logits():
    W, b = _head()
    X_fit, X = _features(), _features(n=12, seed=2)
    inner = MaxSoftmax(temperature=2.0)
    det = LTS((W, b), detector=inner).fit(X_fit)
    assert not hasattr(inner, "offset_")
    assert det.detector_.get_params() == {**inner.get_params(), "contamination": None}
    logits = ref_lts_logits(X, W, b)
    expected = MaxSoftmax(temperature=2.0).fit(logits).score_samples(logits)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


def test_ood_rows_do_not_change_the_fit():
    W, b = _head()
    X_id, X_ood = _features(), 50 + _features(n=10, seed=5)
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.zeros(len(X_id), int), -np.ones(len(X_ood), int)]
    assert LTS((W, b)).fit(X, y).offset_ == LTS((W, b)).fit(X_id).offset_


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"percentile": 100}, "percentile"),
        ({"percentile": -1}, "percentile"),
        ({"detector": "energy"}, "detector"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        LTS(RandomLinearHead(), **kwargs).fit(_features())


def test_bad_input_is_refused():
    det = LTS(RandomLinearHead()).fit(_features())
    with pytest.raises(ValueError, match="features"):
        det.score_samples(_features(n_features=N_FEATURES - 1))
    bad = _features()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LTS(RandomLinearHead()).fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(bad)
    W, b = _head(n_features=N_FEATURES - 1)
    with pytest.raises(ValueError, match="head expects 39 input features"):
        LTS((W, b)).fit(_features())


# ------------------------------------------------------- hypothesis properties
@given(
    arrays(np.float64, (4, 6), elements=st.floats(-5, 5, width=64)),
    st.floats(0.01, 100),
)
def test_factor_is_invariant_to_a_positive_rescaling(X, c):
    """s1 / s2 does not change when the features are multiplied by c > 0: the
    scaled logits of c x (head without bias) are c times those of x."""
    W = _head(n_features=6, n_classes=3)[0]
    det = LTS((W, np.zeros(3)), percentile=50).fit(X)
    np.testing.assert_allclose(
        det._shaped_logits(c * X), c * det._shaped_logits(X), rtol=1e-9, atol=1e-9
    )


# ------------------------------------------------------- cross-check pytorch-ood
@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize("p", [0.05, 0.35])
def test_lts_agrees_with_pytorch_ood(p, signed):
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X = _features(n=20, seed=2, signed=signed)
    layer = torch.nn.Linear(N_FEATURES, N_CLASSES).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    theirs = tood.LTS(encoder=None, head=layer, p=p)
    their_scores = theirs.predict_features(torch.from_numpy(X)).numpy()
    # Their fraction of top activations kept is our percentage left out.
    ours = LTS(layer, percentile=100 * (1 - p)).fit(X)
    np.testing.assert_allclose(ours.score_samples(X), -their_scores, rtol=1e-10)
