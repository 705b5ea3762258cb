"""ReAct, DICE, ASH and SCALE against float64 references written from the papers."""

import math

import numpy as np
import pytest
from _helpers import RandomLinearHead
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_ood.detectors import (
    ASH,
    DICE,
    GEN,
    SCALE,
    Energy,
    KLMatching,
    MaxSoftmax,
    ReAct,
    TemperatureScaling,
)

N_FEATURES, N_CLASSES = 16, 5
SHAPING_DETECTORS = [
    lambda head, **kw: ReAct(head, **kw),
    lambda head, **kw: DICE(head, **kw),
    lambda head, **kw: ASH(head, variant="s", **kw),
    lambda head, **kw: ASH(head, variant="p", **kw),
    lambda head, **kw: ASH(head, variant="b", **kw),
    lambda head, **kw: SCALE(head, **kw),
]
DETECTOR_IDS = ["ReAct", "DICE", "ASH-S", "ASH-P", "ASH-B", "SCALE"]


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


def ref_percentile(values, q):
    """Linear interpolation between order statistics (NumPy's default)."""
    v = sorted(values)
    pos = q / 100.0 * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def ref_logits(rows, W, b):
    return np.array(
        [
            [sum(r[j] * W[c][j] for j in range(len(r))) + b[c] for c in range(len(b))]
            for r in rows
        ]
    )


def ref_react_logits(X_fit, X, W, b, q=90.0, c=None):
    if c is None:
        c = ref_percentile([v for row in X_fit for v in row], q)
    return ref_logits([[min(v, c) for v in row] for row in X], W, b)


def ref_dice_logits(X_fit, X, W, b, q=70.0):
    n, d = len(X_fit), len(X_fit[0])
    mean = [sum(X_fit[i][j] for i in range(n)) / n for j in range(d)]
    contrib = [[mean[j] * W[c][j] for j in range(d)] for c in range(len(W))]
    thr = ref_percentile([v for row in contrib for v in row], q)
    masked = [
        [W[c][j] if contrib[c][j] >= thr else 0.0 for j in range(d)]
        for c in range(len(W))
    ]
    return ref_logits(X, masked, b)


def _ref_kept(row, q):
    """Positions kept by per-sample pruning at percentile q (ties all kept)."""
    n = len(row)
    k = max(1, n - int(round(n * q / 100.0)))
    t = sorted(row, reverse=True)[k - 1]
    return [v >= t for v in row]


def _ref_ratio(s1, s2):
    return math.exp(s1 / s2) if s2 > 0 else 1.0


def ref_ash_logits(X, W, b, variant="s", q=65.0):
    shaped = []
    for row in X:
        kept = _ref_kept(row, q)
        s1 = sum(row)
        pruned = [v if k else 0.0 for v, k in zip(row, kept)]
        if variant == "p":
            shaped.append(pruned)
        elif variant == "b":
            # The kept non-zero entries share s1: zeros carry no pattern.
            kept = [k and v != 0 for v, k in zip(row, kept)]
            fill = s1 / sum(kept) if any(kept) else 0.0
            shaped.append([fill if k else 0.0 for k in kept])
        else:
            f = _ref_ratio(s1, sum(pruned))
            shaped.append([v * f for v in pruned])
    return ref_logits(shaped, W, b)


def ref_scale_logits(X, W, b, q=85.0):
    shaped = []
    for row in X:
        kept = _ref_kept(row, q)
        f = _ref_ratio(sum(row), sum(v for v, k in zip(row, kept) if k))
        shaped.append([v * f for v in row])
    return ref_logits(shaped, W, b)


CASES = [
    (lambda h: ReAct(h), lambda F, X, W, b: ref_react_logits(F, X, W, b)),
    (
        lambda h: ReAct(h, percentile=63.5),
        lambda F, X, W, b: ref_react_logits(F, X, W, b, q=63.5),
    ),
    (
        lambda h: ReAct(h, threshold=0.5),
        lambda F, X, W, b: ref_react_logits(F, X, W, b, c=0.5),
    ),
    (lambda h: DICE(h), lambda F, X, W, b: ref_dice_logits(F, X, W, b)),
    (
        lambda h: DICE(h, percentile=35),
        lambda F, X, W, b: ref_dice_logits(F, X, W, b, 35),
    ),
    (lambda h: ASH(h), lambda F, X, W, b: ref_ash_logits(X, W, b)),
    (
        lambda h: ASH(h, variant="p", percentile=80),
        lambda F, X, W, b: ref_ash_logits(X, W, b, "p", 80),
    ),
    (
        lambda h: ASH(h, variant="b", percentile=50),
        lambda F, X, W, b: ref_ash_logits(X, W, b, "b", 50),
    ),
    (lambda h: SCALE(h), lambda F, X, W, b: ref_scale_logits(X, W, b)),
    (
        lambda h: SCALE(h, percentile=40),
        lambda F, X, W, b: ref_scale_logits(X, W, b, 40),
    ),
]
CASE_IDS = [
    "ReAct",
    "ReAct-63.5",
    "ReAct-c",
    "DICE",
    "DICE-35",
    "ASH-S",
    "ASH-P-80",
    "ASH-B-50",
    "SCALE",
    "SCALE-40",
]


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize("make, reference", CASES, ids=CASE_IDS)
def test_scores_match_float64_reference(make, reference, signed):
    W, b = _head()
    X_fit, X = _features(signed=signed), _features(n=12, seed=2, signed=signed)
    det = make((W, b)).fit(X_fit)
    scores = det.score_samples(X)
    assert scores.dtype == np.float64
    expected = ref_energy(reference(X_fit, X, W, b))
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-10)
    # The threshold is the contamination quantile of the fit scores.
    fit_scores = ref_energy(reference(X_fit, X_fit, W, b))
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)


@pytest.mark.parametrize("make", SHAPING_DETECTORS, ids=DETECTOR_IDS)
def test_float32_in_float32_out_and_close_to_float64(make):
    X_fit, X = _features(), _features(n=12, seed=2)
    s64 = make(_head()).fit(X_fit).score_samples(X)
    det32 = make(_head()).fit(X_fit.astype(np.float32))
    s32 = det32.score_samples(X.astype(np.float32))
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, s64, rtol=1e-5, atol=1e-5)


def test_fitted_statistics():
    W, b = _head()
    X_fit = _features()
    react = ReAct((W, b), percentile=75).fit(X_fit)
    assert react.threshold_ == ref_percentile(X_fit.ravel().tolist(), 75)
    np.testing.assert_array_equal(react.coef_, W)
    np.testing.assert_array_equal(react.intercept_, b)
    dice = DICE((W, b), percentile=70).fit(X_fit)
    np.testing.assert_allclose(dice.mean_, X_fit.mean(axis=0), rtol=1e-14)
    # percentile is the sparsity: the percentage of weights set to zero (up to
    # one weight), as ASH's and SCALE's percentile is that of pruned entries.
    assert abs((~dice.mask_).sum() - 0.7 * W.size) <= 1
    np.testing.assert_array_equal(dice.masked_coef_, np.where(dice.mask_, W, 0.0))


def test_ood_rows_are_left_out_of_the_fitted_statistics():
    W, b = _head()
    X_id, X_ood = _features(), 100 + _features(n=10, seed=5)
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.arange(len(X_id)) % N_CLASSES, -np.ones(len(X_ood), int)]
    for make in (lambda: ReAct((W, b)), lambda: DICE((W, b))):
        with_ood, without = make().fit(X, y), make().fit(X_id)
        assert with_ood.threshold_ == without.threshold_
        assert with_ood.offset_ == without.offset_
    dice = DICE((W, b)).fit(X, y)
    np.testing.assert_allclose(dice.mean_, X_id.mean(axis=0), rtol=1e-14)


# ------------------------------------------------------------ special cases
def test_react_percentile_100_and_dice_percentile_0_are_plain_energy():
    W, b = _head()
    X_fit, X = _features(), _features(n=12, seed=2)
    energy = Energy().fit(X_fit @ W.T + b)
    # percentile=100 clips at the largest fit activation: no fit row changes.
    react = ReAct((W, b), percentile=100).fit(X_fit)
    assert react.threshold_ == X_fit.max()
    np.testing.assert_allclose(
        react.score_samples(X_fit), energy.score_samples(X_fit @ W.T + b), rtol=1e-12
    )
    assert react.offset_ == pytest.approx(energy.offset_, rel=1e-12)
    # percentile=0 keeps the whole head, for any data.
    dice = DICE((W, b), percentile=0).fit(X_fit)
    assert dice.mask_.all()
    np.testing.assert_allclose(
        dice.score_samples(X), energy.score_samples(X @ W.T + b), rtol=1e-12
    )


def test_no_pruning_limits_of_ash_and_scale():
    W, b = _head()
    X = _features(n=12, seed=2)
    energy = Energy().fit(X @ W.T + b)
    ash_p = ASH((W, b), variant="p", percentile=0).fit(X)
    np.testing.assert_allclose(
        ash_p.score_samples(X), energy.score_samples(X @ W.T + b), rtol=1e-12
    )
    # Nothing pruned: s1 = s2, so ASH-S and SCALE multiply the features by e.
    for det in (ASH((W, b), percentile=0), SCALE((W, b), percentile=0)):
        np.testing.assert_allclose(
            det.fit(X).score_samples(X),
            energy.score_samples(np.e * X @ W.T + b),
            rtol=1e-12,
        )


def test_react_threshold_overrides_percentile_and_keeps_negatives():
    W, b = _head()
    X = _features(signed=True)
    a = ReAct((W, b), threshold=0.25, percentile=10).fit(X)
    assert a.threshold_ == 0.25
    clipped = np.minimum(X, 0.25)
    assert np.any(X < 0) and np.array_equal(clipped[X < 0], X[X < 0])
    np.testing.assert_allclose(
        a.score_samples(X), ref_energy(clipped @ W.T + b), rtol=1e-12
    )


def test_ash_and_scale_keep_an_all_zero_row_finite():
    """exp(s1 / s2) is 0 / 0 on an all-zero row; the row stays zero (logits b)."""
    W, b = _head()
    X = _features(n=5)
    X[2] = 0.0
    for det in (ASH((W, b)), ASH((W, b), variant="b"), SCALE((W, b))):
        scores = det.fit(X).score_samples(X)
        assert np.all(np.isfinite(scores))
        assert scores[2] == pytest.approx(ref_energy(b[None, :])[0], rel=1e-12)


def test_ash_ties_at_the_threshold_are_all_kept():
    W, b = _head(n_features=4)
    X = np.array([[3.0, 1.0, 1.0, 0.5]])  # k = 2, the 2nd largest value is tied
    shaped = {"p": [3.0, 1.0, 1.0, 0.0], "b": [5.5 / 3] * 3 + [0.0]}
    for variant, row in shaped.items():
        det = ASH((W, b), variant=variant, percentile=50).fit(X)
        np.testing.assert_allclose(
            det.score_samples(X), ref_energy(np.array([row]) @ W.T + b), rtol=1e-12
        )


@pytest.mark.parametrize("signed", [False, True], ids=["relu", "signed"])
@pytest.mark.parametrize(
    "make, reference",
    [c for c, i in zip(CASES, CASE_IDS) if i.startswith(("ASH", "SCALE"))],
    ids=[i for i in CASE_IDS if i.startswith(("ASH", "SCALE"))],
)
def test_ties_everywhere_match_the_reference(make, reference, signed):
    """Few distinct values: most thresholds are tied, at zero and elsewhere."""
    W, b = _head()
    X = np.round(2 * _features(n=40, seed=8, signed=signed)) / 2
    for dtype in (np.float64, np.float32):
        scores = make((W, b)).fit(X.astype(dtype)).score_samples(X.astype(dtype))
        expected = ref_energy(reference(X, X, W, b))
        tol = 1e-10 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(scores, expected, rtol=tol, atol=tol)


def _sparse_features(n=60, n_features=N_FEATURES, seed=9, dtype=np.float64):
    """ReLU features with about 80 % zeros: most rows have fewer than k
    positive activations at percentile 50, so their threshold t(x) is 0."""
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.normal(-0.85, 1.0, size=(n, n_features)), 0)
    X[np.arange(n), np.arange(n) % n_features] += rng.uniform(0.1, 1.0, n)
    return X.astype(dtype)


def test_ash_b_keeps_the_pattern_of_sparse_rows():
    """Issue 8: ties at t(x) = 0 must not erase a sparse row's pattern.

    Each row has fewer positive activations than the k = 4 kept; all have
    s1 = 3. Binarising the zeros too gave each of them the logits
    (s1 / n) W 1 + b, the same for all four rows.
    """
    W, b = _head(n_features=8)
    X = np.zeros((4, 8))
    X[0, 0] = 3.0
    X[1, [1, 2]] = 1.5
    X[2, [3, 4, 5]] = 1.0
    X[3, [0, 6]] = [1.0, 2.0]
    det = ASH((W, b), variant="b", percentile=50).fit(X)
    logits = det._shaped_logits(X)
    assert len(np.unique(logits.round(10), axis=0)) == 4
    assert not np.allclose(logits, 3 / 8 * W.sum(axis=1) + b)
    # The kept positive entries share s1: row 1 is 1.5 on its two positives.
    np.testing.assert_allclose(logits, ref_ash_logits(X, W, b, "b", 50), rtol=1e-12)
    np.testing.assert_allclose(logits[1], 1.5 * W[:, [1, 2]].sum(axis=1) + b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make", SHAPING_DETECTORS[2:], ids=DETECTOR_IDS[2:])
def test_sparse_rows_keep_distinct_scores_and_match_the_reference(make, dtype):
    W, b = _head()
    X = _sparse_features(dtype=dtype)
    k = N_FEATURES - 8  # percentile 50
    assert np.mean(np.count_nonzero(X, axis=1) < k) > 0.8
    det = make((W, b), percentile=50).fit(X)
    scores = det.score_samples(X)
    # Distinct rows, distinct scores.
    assert len(np.unique(X, axis=0)) == len(X)
    assert len(np.unique(scores)) == len(X)
    name = DETECTOR_IDS[SHAPING_DETECTORS.index(make)]
    X64 = X.astype(np.float64)
    if name == "SCALE":
        expected = ref_energy(ref_scale_logits(X64, W, b, 50))
    else:
        variant = name[-1].lower()
        expected = ref_energy(ref_ash_logits(X64, W, b, variant, 50))
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(scores, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("make", [SHAPING_DETECTORS[i] for i in (2, 3, 5)])
def test_zeros_tied_at_the_threshold_change_nothing_in_ash_p_ash_s_and_scale(make):
    """Keeping exactly k entries, any zeros among them, gives the same scores."""
    W, b = _head()
    X = _sparse_features()
    k = N_FEATURES - 8
    rng = np.random.default_rng(10)
    top_k = np.zeros_like(X)
    for i, row in enumerate(X):
        # The positive entries and randomly chosen zeros: exactly k entries.
        order = np.lexsort((rng.random(len(row)), -row))[:k]
        top_k[i, order] = row[order]
    ratio = np.exp(X.sum(axis=1) / np.maximum(top_k.sum(axis=1), 1e-300))
    ratio[top_k.sum(axis=1) == 0] = 1.0
    shaped = {
        "ASH-P": top_k,
        "ASH-S": top_k * ratio[:, None],
        "SCALE": X * ratio[:, None],
    }[DETECTOR_IDS[SHAPING_DETECTORS.index(make)]]
    scores = make((W, b), percentile=50).fit(X).score_samples(X)
    np.testing.assert_allclose(scores, ref_energy(shaped @ W.T + b), rtol=1e-10)


def test_overflowing_scale_factor_raises():
    # k = 1 of 1000 nearly equal activations: r = s1 / s2 ~ 1000 overflows exp.
    X = np.tile(np.linspace(1.0, 1.001, 1000), (3, 1))
    head = RandomLinearHead(n_classes=3)
    with pytest.raises(ValueError, match="not finite.*lower `percentile`"):
        SCALE(head, percentile=99.9).fit(X)
    det = SCALE(head, percentile=50).fit(X)  # r = 2: fine
    with pytest.raises(ValueError, match="not finite"):
        det.set_params(percentile=99.9).score_samples(X)


# ------------------------------------------------------------ inner detector
@pytest.mark.parametrize("make", SHAPING_DETECTORS, ids=DETECTOR_IDS)
@pytest.mark.parametrize("inner", [MaxSoftmax(temperature=2.0), GEN(gamma=0.5)])
def test_given_detector_is_cloned_and_scores_the_shaped_logits(make, inner):
    W, b = _head()
    X_fit, X = _features(), _features(n=12, seed=2)
    det = make((W, b), detector=inner).fit(X_fit)
    assert not hasattr(inner, "offset_")  # the user's instance is not fitted
    assert det.detector_ is not inner and type(det.detector_) is type(inner)
    # The clone learns no threshold of its own: offset_ is the outer one's.
    assert det.detector_.get_params() == {**inner.get_params(), "contamination": None}
    plain = make((W, b)).fit(X_fit)  # the same shaping, scored with Energy
    logits = plain._shaped_logits(X)
    np.testing.assert_allclose(
        ref_energy(logits), plain.score_samples(X), rtol=1e-12, atol=1e-12
    )
    expected = type(inner)(**inner.get_params()).fit(logits).score_samples(logits)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-12)


def test_labels_reach_the_inner_detector():
    W, b = _head()
    X_fit = _features(n=40)
    y = (X_fit @ W.T + b).argmax(axis=1)
    y[:3] = [(v + 1) % N_CLASSES for v in y[:3]]  # labels differ from predictions
    det = DICE((W, b), detector=KLMatching()).fit(X_fit, y)
    logits = X_fit @ det.masked_coef_.T + b
    expected = KLMatching().fit(logits, y).score_samples(logits)
    np.testing.assert_allclose(det.score_samples(X_fit), expected, rtol=1e-12)
    # An inner detector that needs labels makes the shaping detector need them.
    with pytest.raises(ValueError, match="requires y"):
        ReAct((W, b), detector=TemperatureScaling()).fit(X_fit)
    assert (
        ReAct((W, b), detector=TemperatureScaling())
        .__sklearn_tags__()
        .target_tags.required
    )
    assert not ReAct((W, b)).__sklearn_tags__().target_tags.required


# ------------------------------------------------------- cross-check pytorch-ood
def _torch_head(torch, W, b):
    layer = torch.nn.Linear(W.shape[1], W.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W))
        layer.bias.copy_(torch.from_numpy(b))
    return layer


def test_react_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X_fit, X = _features(), _features(n=12, seed=2)
    layer = _torch_head(torch, W, b)
    theirs = tood.ReAct(backbone=None, head=layer, percentile=0.9)
    theirs.fit_feature_maps(torch.from_numpy(X_fit), torch.zeros(len(X_fit)).long())
    ours = ReAct(layer, percentile=90).fit(X_fit)  # an nn.Linear head works too
    assert ours.threshold_ == pytest.approx(theirs.threshold, rel=1e-12)
    their_scores = theirs.predict_feature_maps(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(ours.score_samples(X), -their_scores, rtol=1e-10)


def test_dice_agrees_with_pytorch_ood():
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X_fit, X = _features(), _features(n=12, seed=2)
    # 0.7 * (80 - 1) is not a whole number: the quantile falls between two
    # contributions, where ">" (theirs) and ">=" (ours) keep the same weights.
    theirs = tood.DICE(None, torch.from_numpy(W), torch.from_numpy(b), p=0.7)
    theirs.fit_features(torch.from_numpy(X_fit), torch.zeros(len(X_fit)).long())
    ours = DICE((W, b), percentile=70).fit(X_fit)  # their fraction, in percent
    np.testing.assert_array_equal(ours.mask_, theirs.masked_w.numpy() != 0)
    their_scores = theirs.predict_features(torch.from_numpy(X)).numpy()
    # They compute in float32.
    np.testing.assert_allclose(ours.score_samples(X), -their_scores, rtol=1e-5)


@pytest.mark.parametrize("variant", ["s", "p", "b"])
@pytest.mark.parametrize("percentile", [65, 90])
def test_ash_agrees_with_pytorch_ood(variant, percentile):
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X = _features(n=12, seed=2)
    layer = _torch_head(torch, W, b)
    theirs = tood.ASH(
        backbone=None,
        head=lambda maps: layer(maps.flatten(1)),
        variant=f"ash-{variant}",
        percentile=percentile / 100,
    )
    # Their maps are 4-D: penultimate features are B x C x 1 x 1.
    their_scores = theirs.predict_feature_maps(torch.from_numpy(X)[:, :, None, None])
    ours = ASH((W, b), variant=variant, percentile=percentile).fit(X)
    np.testing.assert_allclose(ours.score_samples(X), -their_scores.numpy(), rtol=1e-10)


@pytest.mark.parametrize("percentile", [65, 85])
def test_scale_agrees_with_pytorch_ood(percentile):
    torch = pytest.importorskip("torch")
    tood = pytest.importorskip("pytorch_ood.detector")
    W, b = _head()
    X = _features(n=12, seed=2)
    layer = _torch_head(torch, W, b)
    theirs = tood.SCALE(
        backbone=None,
        head=lambda maps: layer(maps.flatten(1)),
        percentile=percentile / 100,
    )
    their_scores = theirs.predict_feature_maps(torch.from_numpy(X)[:, :, None, None])
    ours = SCALE((W, b), percentile=percentile).fit(X)
    np.testing.assert_allclose(ours.score_samples(X), -their_scores.numpy(), rtol=1e-10)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "det, match",
    [
        (ReAct(None, percentile=101), "percentile"),
        (ReAct(None, percentile=-1), "percentile"),
        (ReAct(None, threshold=np.nan), "threshold"),
        (DICE(None, percentile=100), "percentile"),
        (DICE(None, percentile=-1), "percentile"),
        (ASH(None, percentile=100), "percentile"),
        (ASH(None, variant="ash-s"), "variant"),
        (SCALE(None, percentile=100), "percentile"),
        (ReAct(None, detector=LogisticRegression()), "detector"),
        (ASH(None, detector="energy"), "detector"),
    ],
)
def test_invalid_parameters(det, match):
    with pytest.raises(InvalidParameterError, match=match):
        det.fit(_features())


def test_detector_class_instead_of_instance():
    with pytest.raises(ValueError, match=r"instance such as MaxSoftmax\(\)"):
        ReAct(RandomLinearHead(), detector=MaxSoftmax).fit(_features())


@pytest.mark.parametrize("make", SHAPING_DETECTORS, ids=DETECTOR_IDS)
def test_head_mismatch(make):
    W, b = _head(n_features=N_FEATURES - 1)
    with pytest.raises(ValueError, match="head expects 15 input features"):
        make((W, b)).fit(_features())
    with pytest.raises(ValueError, match="bias"):
        make((_head()[0], b[:2])).fit(_features())
    with pytest.raises(ValueError, match="head must be"):
        make(None).fit(_features())


@pytest.mark.parametrize("make", SHAPING_DETECTORS, ids=DETECTOR_IDS)
def test_wrong_number_of_features_at_score_time(make):
    det = make(RandomLinearHead()).fit(_features())
    with pytest.raises(ValueError, match="features"):
        det.score_samples(_features(n_features=N_FEATURES - 1))


# ------------------------------------------------------- hypothesis properties
values = st.floats(-2, 10, allow_nan=False, width=64)


@st.composite
def feature_matrices(draw, n_features=None):
    n = draw(st.integers(2, 10))
    d = n_features or draw(st.integers(1, 6))
    X = draw(arrays(np.float64, (n, d), elements=values))
    # ReAct refuses a clip threshold (90th percentile) at the smallest entry,
    # which would give every fit row the same score (tested on its own).
    assume(np.percentile(X, 90) > X.min())
    return X


HEAD = RandomLinearHead(n_classes=3)


@given(feature_matrices(), st.randoms(use_true_random=False))
def test_scores_are_row_wise(X, random):
    perm = np.array(random.sample(range(len(X)), len(X)))
    for make in SHAPING_DETECTORS:
        det = make(HEAD).fit(X)
        scores = det.score_samples(X)
        # A BLAS product may round a row differently in another batch shape.
        np.testing.assert_allclose(det.score_samples(X[perm]), scores[perm], rtol=1e-12)
        np.testing.assert_allclose(det.score_samples(X[:1]), scores[:1], rtol=1e-12)


@given(
    feature_matrices(n_features=4), feature_matrices(n_features=4), st.floats(0.01, 0.5)
)
def test_predict_is_sign_of_decision_function(X_fit, X, contamination):
    for make in SHAPING_DETECTORS:
        det = make(HEAD, contamination=contamination).fit(X_fit)
        np.testing.assert_array_equal(
            det.predict(X), np.where(det.decision_function(X) >= 0, 1, -1)
        )


@given(feature_matrices(n_features=3), feature_matrices(n_features=3))
def test_ood_rows_do_not_change_the_fit(X_id, X_ood):
    X = np.vstack([X_id, X_ood])
    y = np.r_[np.zeros(len(X_id), int), -np.ones(len(X_ood), int)]
    for make in SHAPING_DETECTORS:
        with_ood, without = make(HEAD).fit(X, y), make(HEAD).fit(X_id)
        assert with_ood.offset_ == without.offset_
        np.testing.assert_array_equal(
            with_ood.score_samples(X), without.score_samples(X)
        )


@given(feature_matrices(), st.randoms(use_true_random=False))
def test_invariant_to_permuting_features_with_the_head(X, random):
    """Permuting features together with the head's columns changes nothing."""
    perm = np.array(random.sample(range(X.shape[1]), X.shape[1]))
    W, b = HEAD(X.shape[1])
    for make in SHAPING_DETECTORS:
        a = make((W, b)).fit(X).score_samples(X)
        p = make((W[:, perm], b)).fit(X[:, perm]).score_samples(X[:, perm])
        np.testing.assert_allclose(p, a, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------ monotonicity
def _energy_of(det, rows):
    return det.score_samples(np.asarray(rows, dtype=float))


def test_react_is_not_monotone_by_design():
    """Clipping: raising an activation above c changes nothing; a negative
    weight: raising its activation lowers the score."""
    W, b = np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2)
    det = ReAct((W, b), threshold=1.0).fit(_features(n_features=2))
    above = _energy_of(det, [[2.0, 0.5], [5.0, 0.5]])
    assert above[0] == above[1]
    negative = _energy_of(det, [[0.5, 0.2], [0.5, 0.8]])
    assert negative[1] < negative[0]


def test_dice_is_not_monotone_through_a_kept_negative_weight():
    # Contributions [[2, -1], [-3, 0]]: the 25th percentile -1.5 keeps the -1.
    W, b = np.array([[2.0, -1.0], [-3.0, 0.0]]), np.zeros(2)
    det = DICE((W, b), percentile=25).fit(np.ones((3, 2)))
    assert det.mask_[0, 1] and det.masked_coef_[0, 1] < 0
    scores = _energy_of(det, [[1.0, 0.5], [1.0, 1.5]])
    assert scores[1] < scores[0]


@pytest.mark.parametrize(
    "make, x, j, raised",
    [
        # Raising a pruned entry above t(x) prunes the 2 with the large weight.
        (lambda h: ASH(h, variant="p", percentile=50), [3, 2, 1, 0.5], 2, 2.5),
        (lambda h: ASH(h, variant="b", percentile=50), [3, 2, 1, 0.5], 2, 2.5),
        # Raising the only kept entry lowers exp(s1 / s2) from e^2.5 to e^2.
        (lambda h: ASH(h, variant="s", percentile=75), [2, 1, 0.5, 1.5], 0, 3),
        (lambda h: SCALE(h, percentile=75), [2, 1, 0.5, 1.5], 0, 3),
    ],
    ids=["ASH-P", "ASH-B", "ASH-S", "SCALE"],
)
def test_ash_and_scale_are_not_monotone_even_for_a_non_negative_head(
    make, x, j, raised
):
    W = np.array([[1.0, 10.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    det = make((W, np.zeros(2))).fit(_features(n_features=4))
    higher = np.array(x, dtype=float)
    higher[j] = raised
    assert np.all(W >= 0) and raised > x[j]
    scores = _energy_of(det, [x, higher])
    assert scores[1] < scores[0]


def _never_lower(low, high):
    """``high >= low`` up to the rounding of the energy (a few ulps)."""
    return high >= low - 1e-12 * max(1.0, abs(low))


non_negative_heads = arrays(np.float64, (3, 4), elements=st.floats(0, 3))


@given(
    feature_matrices(n_features=4),
    non_negative_heads,
    st.integers(0, 9),
    st.integers(0, 3),
    st.floats(0, 10),
)
def test_react_and_dice_never_lower_the_score_for_a_non_negative_head(
    X, W, i, j, delta
):
    """min(x_j, c) and M W are non-decreasing maps and the energy is
    increasing in every logit: with W >= 0, raising x_j never lowers s(x)."""
    x = X[i % len(X)][None, :]
    raised = x.copy()
    raised[0, j] += delta
    for det in (ReAct((W, np.zeros(3))), DICE((W, np.zeros(3)))):
        det.fit(X)
        low, high = det.score_samples(np.vstack([x, raised]))
        assert _never_lower(low, high), type(det).__name__


@given(
    arrays(np.float64, st.integers(1, 6), elements=st.floats(0, 10)),
    st.floats(0, 10),
    st.sampled_from([0, 30, 50, 80]),
)
def test_raising_the_unique_largest_activation_never_lowers_ash_p_and_ash_b(
    x, delta, percentile
):
    """The kept set does not change, ASH-P's kept entry grows and ASH-B's fill
    s1 / m grows: with non-negative features and head, the logits do not
    decrease."""
    assume(np.count_nonzero(x == x.max()) == 1)
    W = np.abs(_head(n_features=len(x), n_classes=3)[0])
    raised = x.copy()
    raised[np.argmax(x)] += delta
    for variant in ("p", "b"):
        det = ASH((W, np.zeros(3)), variant=variant, percentile=percentile)
        low, high = det.fit(x[None, :]).score_samples(np.vstack([x, raised]))
        assert _never_lower(low, high), variant


@pytest.mark.parametrize("kwargs", [{"percentile": 60}, {"threshold": 0.0}])
def test_react_refuses_a_threshold_that_clips_every_row_to_a_constant(kwargs):
    # Sparse ReLU features: 70 % zeros, so the 60th percentile is 0 and
    # min(x, 0) = 0 for every row.
    rng = np.random.default_rng(11)
    X = np.abs(rng.normal(size=(200, 16))) * (rng.random((200, 16)) > 0.7)
    W, b = rng.normal(size=(3, 16)), rng.normal(size=3)
    with pytest.raises(ValueError, match="same constant"):
        ReAct((W, b), **kwargs).fit(X)
    # A percentile above the share of zeros keeps the pattern.
    det = ReAct((W, b), percentile=90).fit(X)
    assert len(np.unique(det.score_samples(X[:20]))) == 20
