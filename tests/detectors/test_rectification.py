"""VRA against a float64 reference written from the paper, and pytorch-ood."""

import math

import numpy as np
import pytest
import sklearn
from _helpers import RandomLinearHead
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ood.detectors import VRA, Energy, MaxSoftmax, ReAct

N_FEATURES, N_CLASSES = 12, 4


def _head(n_features=N_FEATURES, n_classes=N_CLASSES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_classes, n_features)), rng.normal(size=n_classes)


def _features(n=40, n_features=N_FEATURES, seed=1, signed=False):
    """Continuous (tie-free) features: |N(0, 1)| like post-ReLU, or signed."""
    z = np.random.default_rng(seed).normal(size=(n, n_features))
    return z if signed else np.abs(z)


def _sparse_relu_features(n=200, n_features=N_FEATURES, seed=3):
    """ReLU features with about half zeros in every column."""
    z = np.random.default_rng(seed).normal(size=(n, n_features))
    return np.maximum(z, 0)


# ---------------------------------------------------------------- references
# Plain float64 formulas written loop-style, without the package's helpers.
def ref_energy(logits):
    out = []
    for row in logits:
        m = max(row)
        out.append(m + math.log(sum(math.exp(v - m) for v in row)))
    return np.array(out)


def ref_percentile(values, q):
    """Linear interpolation between order statistics (NumPy's default)."""
    v = sorted(values)
    pos = q / 100.0 * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def ref_thresholds(X_fit, q, per_feature):
    d = len(X_fit[0])
    if per_feature:
        return [ref_percentile([row[j] for row in X_fit], q) for j in range(d)]
    return [ref_percentile([v for row in X_fit for v in row], q)] * d


def ref_vra(v, alpha, beta, gamma):
    """The paper's piecewise function of one activation."""
    if v < alpha:
        return 0.0
    if v > beta:
        return beta
    return v + gamma


def ref_vra_logits(X_fit, X, W, b, low=60.0, high=95.0, gamma=0.6, per_feature=True):
    alpha = ref_thresholds(X_fit, low, per_feature)
    beta = ref_thresholds(X_fit, high, per_feature)
    shaped = [
        [ref_vra(v, alpha[j], beta[j], gamma) for j, v in enumerate(row)] for row in X
    ]
    return np.array(
        [
            [sum(r[j] * W[c][j] for j in range(len(r))) + b[c] for c in range(len(b))]
            for r in shaped
        ]
    )


CASES = [
    ({}, {}),
    (
        {"lower_percentile": 30, "upper_percentile": 80, "shift": 0.25},
        {"low": 30, "high": 80, "gamma": 0.25},
    ),
    ({"shift": 0.0}, {"gamma": 0.0}),
    ({"per_feature": False}, {"per_feature": False}),
    (
        {"lower_percentile": 12.5, "upper_percentile": 12.5, "per_feature": False},
        {"low": 12.5, "high": 12.5, "per_feature": False},
    ),
]
CASE_IDS = ["defaults", "30-80-0.25", "no-shift", "all-entries", "equal-thresholds"]


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize("kwargs, ref_kwargs", CASES, ids=CASE_IDS)
def test_scores_match_float64_reference(kwargs, ref_kwargs, signed):
    W, b = _head()
    X_fit = _features(signed=signed)
    X = _features(n=15, seed=2, signed=signed)
    det = VRA((W, b), **kwargs).fit(X_fit)
    scores = det.score_samples(X)
    assert scores.dtype == np.float64
    expected = ref_energy(ref_vra_logits(X_fit, X, W, b, **ref_kwargs))
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-10)
    # The threshold is the contamination quantile of the fit scores.
    fit_scores = ref_energy(ref_vra_logits(X_fit, X_fit, W, b, **ref_kwargs))
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


def test_fitted_thresholds_are_percentiles_of_the_fit_activations():
    X_fit = _features(signed=True)
    det = VRA(RandomLinearHead(), lower_percentile=35, upper_percentile=90).fit(X_fit)
    assert det.lower_threshold_.shape == det.upper_threshold_.shape == (N_FEATURES,)
    np.testing.assert_allclose(
        det.lower_threshold_, ref_thresholds(X_fit.tolist(), 35, True), rtol=1e-14
    )
    np.testing.assert_allclose(
        det.upper_threshold_, ref_thresholds(X_fit.tolist(), 90, True), rtol=1e-14
    )
    pooled = VRA(RandomLinearHead(), per_feature=False).fit(X_fit)
    assert np.all(pooled.lower_threshold_ == np.percentile(X_fit, 60))
    assert np.all(pooled.upper_threshold_ == np.percentile(X_fit, 95))


def test_pieces_at_the_thresholds():
    """x < alpha -> 0; alpha <= x <= beta -> x + gamma; x > beta -> beta."""
    W, b = np.eye(3), np.zeros(3)
    det = VRA((W, b), lower_threshold=1.0, upper_threshold=2.0, shift=0.5)
    det.fit(np.array([[0.0, 1.0, 3.0], [1.5, 2.0, 0.5]]))
    x = np.array([[np.nextafter(1.0, 0), 1.0, 2.0], [np.nextafter(2.0, 3), 1.5, 9.0]])
    expected = np.array([[0.0, 1.5, 2.5], [2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(det._shaped_logits(x), expected)


@pytest.mark.parametrize("per_feature", [True, False])
def test_float32_in_float32_out(per_feature):
    W, b = _head()
    X_fit = _features(signed=True).astype(np.float32)
    X = _features(n=15, seed=2, signed=True).astype(np.float32)
    det32 = VRA((W, b), per_feature=per_feature).fit(X_fit)
    s32 = det32.score_samples(X)
    assert s32.dtype == np.float32
    # The same numbers in float64: the same thresholds, the float64 scores.
    det64 = VRA((W, b), per_feature=per_feature).fit(X_fit.astype(np.float64))
    np.testing.assert_array_equal(det32.lower_threshold_, det64.lower_threshold_)
    np.testing.assert_array_equal(det32.upper_threshold_, det64.upper_threshold_)
    s64 = det64.score_samples(X.astype(np.float64))
    np.testing.assert_array_equal(s32, s64.astype(np.float32))


def test_column_blocks_give_the_same_thresholds():
    """Per-feature percentiles over column blocks within working_memory."""
    X_fit = _features(n=300, n_features=30, signed=True)
    whole = VRA(RandomLinearHead()).fit(X_fit)
    with sklearn.config_context(working_memory=3 * 300 * 8 / 2**20):  # 3 columns
        blocks = VRA(RandomLinearHead()).fit(X_fit)
    np.testing.assert_array_equal(blocks.lower_threshold_, whole.lower_threshold_)
    np.testing.assert_array_equal(blocks.upper_threshold_, whole.upper_threshold_)
    np.testing.assert_array_equal(
        blocks.lower_threshold_, np.percentile(X_fit, 60, axis=0)
    )


# ------------------------------------------------------------ explicit thresholds
def test_explicit_thresholds_scalar_or_per_feature():
    W, b = _head()
    X_fit, X = _features(), _features(n=15, seed=2)
    alpha = np.linspace(0.1, 0.6, N_FEATURES)
    det = VRA((W, b), lower_threshold=alpha, upper_threshold=1.5, shift=0.3)
    det.fit(X_fit)
    np.testing.assert_array_equal(det.lower_threshold_, alpha)
    np.testing.assert_array_equal(det.upper_threshold_, np.full(N_FEATURES, 1.5))
    shaped = np.where(X < alpha, 0.0, np.where(X > 1.5, 1.5, X + 0.3))
    np.testing.assert_allclose(
        det.score_samples(X), ref_energy(shaped @ W.T + b), rtol=1e-12
    )
    # One side explicit, the other estimated.
    mixed = VRA((W, b), lower_threshold=0.2, upper_percentile=80).fit(X_fit)
    assert np.all(mixed.lower_threshold_ == 0.2)
    np.testing.assert_array_equal(
        mixed.upper_threshold_, np.percentile(X_fit, 80, axis=0)
    )


def test_infinite_thresholds_switch_a_side_off():
    W, b = _head()
    X_fit, X = _features(signed=True), _features(n=15, seed=2, signed=True)
    plain = VRA((W, b), lower_threshold=-np.inf, upper_threshold=np.inf, shift=0)
    energy = Energy().fit(X_fit @ W.T + b)
    np.testing.assert_allclose(
        plain.fit(X_fit).score_samples(X), energy.score_samples(X @ W.T + b), rtol=1e-12
    )
    # Only the upper side, no shift, one threshold for all entries: ReAct.
    react = ReAct((W, b), percentile=90).fit(X_fit)
    upper_only = VRA(
        (W, b), lower_threshold=-np.inf, upper_percentile=90, shift=0, per_feature=False
    ).fit(X_fit)
    np.testing.assert_allclose(
        upper_only.score_samples(X), react.score_samples(X), rtol=1e-12
    )
    assert upper_only.offset_ == pytest.approx(react.offset_, rel=1e-12)


def test_ood_rows_are_left_out_of_the_thresholds():
    W, b = _head()
    X_id, X_ood = _features(), 100 + _features(n=10, seed=5)
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.arange(len(X_id)) % N_CLASSES, -np.ones(len(X_ood), int)]
    with_ood, without = VRA((W, b)).fit(X, y), VRA((W, b)).fit(X_id)
    np.testing.assert_array_equal(with_ood.lower_threshold_, without.lower_threshold_)
    np.testing.assert_array_equal(with_ood.upper_threshold_, without.upper_threshold_)
    assert with_ood.offset_ == without.offset_


def test_given_detector_is_cloned_and_scores_the_shaped_logits():
    W, b = _head()
    X_fit, X = _features(), _features(n=15, seed=2)
    inner = MaxSoftmax(temperature=2.0)
    det = VRA((W, b), detector=inner).fit(X_fit)
    assert not hasattr(inner, "offset_")
    assert det.detector_.get_params() == {**inner.get_params(), "contamination": None}
    logits = ref_vra_logits(X_fit, X, W, b)
    expected = MaxSoftmax(temperature=2.0).fit(logits).score_samples(logits)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lower_percentile": 101}, "lower_percentile"),
        ({"upper_percentile": -1}, "upper_percentile"),
        ({"shift": -0.1}, "shift"),
        ({"lower_threshold": np.nan}, "lower_threshold"),
        ({"upper_threshold": "high"}, "upper_threshold"),
        ({"per_feature": "yes"}, "per_feature"),
        ({"detector": "energy"}, "detector"),
    ],
)
def test_invalid_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        VRA(RandomLinearHead(), **kwargs).fit(_features())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lower_percentile": 90, "upper_percentile": 80}, "exceeds upper_percentile"),
        ({"lower_threshold": 2.0, "upper_threshold": 1.0}, "above the upper one"),
        ({"lower_threshold": 5.0}, "above the upper one"),
        ({"upper_threshold": [1.0, 2.0]}, r"one value per feature, shape \(12,\)"),
        ({"lower_threshold": [np.nan] * N_FEATURES}, "contains NaN"),
    ],
)
def test_inconsistent_thresholds_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VRA(RandomLinearHead(), **kwargs).fit(_features())


def test_thresholds_that_map_every_row_to_one_vector_raise():
    X = _features()
    # Everything below alpha: every row becomes 0.
    with pytest.raises(ValueError, match="same shaped features"):
        VRA(
            RandomLinearHead(), lower_threshold=X.max() + 1, upper_threshold=np.inf
        ).fit(X)
    # Everything above beta: every row is clipped to beta.
    with pytest.raises(ValueError, match="same shaped features"):
        VRA(RandomLinearHead(), lower_threshold=-1.0, upper_threshold=-0.5).fit(X)
    # Identical fit rows (one row) are not VRA's doing: accepted.
    VRA(RandomLinearHead()).fit(X[:1])
    VRA(RandomLinearHead()).fit(np.tile(X[:1], (5, 1)))


def test_bad_input_is_refused():
    det = VRA(RandomLinearHead()).fit(_features())
    with pytest.raises(ValueError, match="features"):
        det.score_samples(_features(n_features=N_FEATURES - 1))
    bad = _features()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VRA(RandomLinearHead()).fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(bad)
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        det.score_samples(bad)
    W, b = _head(n_features=N_FEATURES - 1)
    with pytest.raises(ValueError, match="head expects 11 input features"):
        VRA((W, b)).fit(_features())


# ------------------------------------------------------- cross-check pytorch-ood
def test_vra_agrees_with_pytorch_ood_on_relu_features():
    """Their VRA clips to [alpha, beta] without a shift; ours sets x < alpha to
    0 and adds gamma in between. With shift=0 and ReLU features whose lower
    percentile is 0 (alpha = 0, nothing below it), the two coincide."""
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X_fit = _sparse_relu_features()
    X = np.maximum(_features(n=30, seed=4, signed=True), 0)
    layer = torch.nn.Linear(N_FEATURES, N_CLASSES).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    theirs = tood.VRA(
        backbone=None, head=layer, lower_percentile=0.01, upper_percentile=0.99
    )
    theirs.fit_feature_maps(torch.from_numpy(X_fit), torch.zeros(len(X_fit)).long())
    ours = VRA(layer, lower_percentile=1, upper_percentile=99, shift=0).fit(X_fit)
    assert np.all(ours.lower_threshold_ == 0)
    # Their thresholds are rounded to float32.
    np.testing.assert_allclose(
        theirs._lower_threshold.numpy(), ours.lower_threshold_, rtol=1e-7
    )
    np.testing.assert_allclose(
        theirs._upper_threshold.numpy(), ours.upper_threshold_, rtol=1e-7
    )
    # With our float64 thresholds, their scores are minus ours.
    theirs._upper_threshold = torch.from_numpy(ours.upper_threshold_)
    theirs._lower_threshold = torch.from_numpy(ours.lower_threshold_)
    their_scores = theirs.predict_feature_maps(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(ours.score_samples(X), -their_scores, rtol=1e-12)
    # With a shift, or activations below alpha, the methods differ.
    shifted = VRA(layer, lower_percentile=1, upper_percentile=99).fit(X_fit)
    assert not np.allclose(shifted.score_samples(X), -their_scores)
