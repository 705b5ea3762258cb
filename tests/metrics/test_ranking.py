"""Tests for the threshold-free OOD metrics in ``sklearn_ood.metrics``."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from sklearn_ood.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    ood_report,
)
from sklearn_ood.metrics._ranking import _fpr_key, _tied_counts

TPRS = [0.01, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0]
SEEDS = range(6)


def _make_data(seed, decimals=1):
    """Random ID (classes 0..2) and OOD (-1) samples with many tied scores."""
    rng = np.random.default_rng(seed)
    n_id = int(rng.integers(5, 80))
    n_ood = int(rng.integers(5, 80))
    y = np.r_[rng.integers(0, 3, n_id), -np.ones(n_ood, dtype=int)]
    s = np.r_[rng.normal(1.0, 1.0, n_id), rng.normal(0.0, 1.0, n_ood)]
    if decimals is not None:
        s = np.round(s, decimals)
    perm = rng.permutation(y.shape[0])
    return y[perm], s[perm]


# --------------------------------------------------------------------------
# Brute-force float64 references: every candidate threshold, no sorting tricks
# --------------------------------------------------------------------------


def _brute_fpr_at_tpr(y, s, tpr, positive="id"):
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    pos = y >= 0 if positive == "id" else y < 0
    v = s if positive == "id" else -s  # higher = more positive
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    best = None
    for t in [np.inf, *np.unique(v).tolist(), -np.inf]:
        rate = np.count_nonzero(v[pos] >= t) / n_pos
        if rate >= tpr and (best is None or t > best):
            best = t
    return np.count_nonzero(v[~pos] >= best) / n_neg


def _brute_detection_error(y, s):
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    s_id, s_ood = s[y >= 0], s[y < 0]
    errors = []
    for t in [np.inf, *np.unique(s).tolist(), -np.inf]:
        rejected_id = np.count_nonzero(s_id < t) / s_id.shape[0]
        accepted_ood = np.count_nonzero(s_ood >= t) / s_ood.shape[0]
        errors.append(0.5 * (rejected_id + accepted_ood))
    return min(errors)


# --------------------------------------------------------------------------
# Agreement with scikit-learn
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_auroc_equals_sklearn(seed, decimals):
    y, s = _make_data(seed, decimals)
    value = auroc(y, s)
    assert type(value) is float
    assert value == roc_auc_score(y >= 0, s)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_aupr_equals_sklearn(seed, decimals):
    y, s = _make_data(seed, decimals)
    assert aupr_in(y, s) == average_precision_score(y >= 0, s)
    assert aupr_out(y, s) == average_precision_score(y < 0, -s)

    precision, recall, _ = precision_recall_curve(y >= 0, s)
    assert aupr_in(y, s, method="trapezoid") == auc(recall, precision)
    precision, recall, _ = precision_recall_curve(y < 0, -s)
    assert aupr_out(y, s, method="trapezoid") == auc(recall, precision)


# --------------------------------------------------------------------------
# FPR at TPR and detection error against the brute-force reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("positive", ["id", "ood"])
def test_fpr_at_tpr_matches_brute_force(seed, positive):
    y, s = _make_data(seed, decimals=1)
    for tpr in TPRS:
        value = fpr_at_tpr(y, s, tpr, positive=positive)
        assert type(value) is float
        assert value == _brute_fpr_at_tpr(y, s, tpr, positive), tpr


@pytest.mark.parametrize("positive", ["id", "ood"])
def test_fpr_at_tpr_exact_fraction_reaches_tpr(positive):
    # 20 positives: 19 of them reach tpr=0.95 exactly, no rounding slack needed
    y = np.r_[np.zeros(20, dtype=int), -np.ones(20, dtype=int)]
    s = np.r_[np.arange(20.0), np.arange(20.0) - 0.5]
    if positive == "ood":
        y = -1 - y  # swap the roles of ID and OOD ...
        s = -s  # ... and the ranking direction
    # threshold at the 19th positive (score 1); negatives >= 1: 18.5 .. 1.5
    assert fpr_at_tpr(y, s, 0.95, positive=positive) == 18 / 20
    assert _brute_fpr_at_tpr(y, s, 0.95, positive) == 18 / 20


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_detection_error_matches_brute_force(seed, decimals):
    y, s = _make_data(seed, decimals)
    value = detection_error(y, s)
    assert type(value) is float
    assert value == pytest.approx(_brute_detection_error(y, s), abs=1e-15)
    assert 0.0 <= value <= 0.5


def test_hand_computed_example_with_ties():
    # ID:  0.9, 0.5, 0.5, 0.2     OOD: 0.5, 0.4, 0.2, 0.1
    y = [0, 1, 2, 0, -1, -1, -1, -1]
    s = [0.9, 0.5, 0.5, 0.2, 0.5, 0.4, 0.2, 0.1]

    # ID-positive, accept score >= t.
    # tpr 0.5 and 0.75: t = 0.5 accepts 3/4 ID and the tied OOD 0.5 -> 1/4
    assert fpr_at_tpr(y, s, 0.5) == 0.25
    assert fpr_at_tpr(y, s, 0.75) == 0.25
    # tpr 0.95: all ID needed, t = 0.2 accepts OOD 0.5, 0.4, 0.2 -> 3/4
    assert fpr_at_tpr(y, s, 0.95) == 0.75
    assert fpr_at_tpr(y, s, 1.0) == 0.75
    # tpr 0.25: t = 0.9 accepts no OOD
    assert fpr_at_tpr(y, s, 0.25) == 0.0

    # OOD-positive, flag score <= c.
    # tpr 0.5: c = 0.2 flags OOD 0.1, 0.2 and the tied ID 0.2 -> 1/4
    assert fpr_at_tpr(y, s, 0.5, positive="ood") == 0.25
    # tpr 0.75: c = 0.4 flags ID 0.2 -> 1/4
    assert fpr_at_tpr(y, s, 0.75, positive="ood") == 0.25
    # tpr 1: c = 0.5 flags ID 0.5, 0.5, 0.2 -> 3/4
    assert fpr_at_tpr(y, s, 0.95, positive="ood") == 0.75

    # thresholds 0.9, 0.5, 0.4, 0.2, 0.1 -> errors .375, .25, .375, .375, .5
    assert detection_error(y, s) == 0.25
    # ID beats OOD in 12 of 16 pairs, ties in 1 pair (0.5/0.5 twice, 0.2/0.2
    # once: 3 half-pairs): (4 + 3 + 3 + 1) + 3 * 0.5 = 12.5 -> 12.5 / 16
    assert auroc(y, s) == 12.5 / 16


def test_perfect_and_inverted_detectors():
    y = [0, 0, 1, -1, -1]
    good = [3.0, 2.0, 2.5, 0.0, 1.0]
    assert auroc(y, good) == 1.0
    assert aupr_in(y, good) == 1.0
    assert aupr_out(y, good) == 1.0
    assert fpr_at_tpr(y, good) == 0.0
    assert fpr_at_tpr(y, good, positive="ood") == 0.0
    assert detection_error(y, good) == 0.0

    bad = [-v for v in good]
    assert auroc(y, bad) == 0.0
    assert fpr_at_tpr(y, bad) == 1.0
    assert fpr_at_tpr(y, bad, positive="ood") == 1.0
    assert detection_error(y, bad) == 0.5

    constant = [1.0] * 5
    assert auroc(y, constant) == 0.5
    assert fpr_at_tpr(y, constant) == 1.0
    assert detection_error(y, constant) == 0.5


# --------------------------------------------------------------------------
# Agreement with OpenOOD-style computations on sklearn's ROC curve
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_fpr_at_tpr_equals_openood_style_roc_curve(seed, decimals):
    y, s = _make_data(seed, decimals)
    for tpr in TPRS:
        # ID positive: OpenOOD's ``fpr_recall``
        fpr, tpr_curve, _ = roc_curve(y >= 0, s, drop_intermediate=False)
        assert fpr_at_tpr(y, s, tpr) == fpr[np.argmax(tpr_curve >= tpr)]
        # OOD positive on -scores: OpenOOD's ``auc_and_fpr_recall``
        fpr, tpr_curve, _ = roc_curve(y < 0, -s, drop_intermediate=False)
        value = fpr_at_tpr(y, s, tpr, positive="ood")
        assert value == fpr[np.argmax(tpr_curve >= tpr)]


def test_roc_curve_drop_intermediate_can_skip_the_crossing_point():
    # Each score value holds one ID and one OOD sample: the ROC curve is one
    # straight diagonal and roc_curve's default drop_intermediate=True keeps
    # only its end points, so ``fpr[argmax(tpr >= 0.95)]`` jumps to 1.0.
    y = np.r_[np.zeros(20, dtype=int), -np.ones(20, dtype=int)]
    s = np.r_[np.arange(20.0), np.arange(20.0)]
    assert fpr_at_tpr(y, s, 0.95) == 0.95
    fpr, tpr_curve, _ = roc_curve(y >= 0, s)
    assert fpr[np.argmax(tpr_curve >= 0.95)] == 1.0
    fpr, tpr_curve, _ = roc_curve(y >= 0, s, drop_intermediate=False)
    assert fpr[np.argmax(tpr_curve >= 0.95)] == 0.95


# --------------------------------------------------------------------------
# Agreement with pytorch-ood 0.4.0 (outlier scores = -scores, OOD positive)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_matches_pytorch_ood(seed, decimals):
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_ood")
    from pytorch_ood.metrics import FPRAtTPR, OODMetrics

    y, s = _make_data(seed, decimals)
    outlier = torch.from_numpy(-s)
    labels = torch.from_numpy(y.astype(np.int64))
    theirs = OODMetrics().update(outlier, labels).compute()

    assert theirs["AUROC"] == pytest.approx(auroc(y, s), rel=1e-12, abs=0)
    # pytorch-ood's AUPR is the trapezoidal area (not average precision)
    assert theirs["AUPR-IN"] == pytest.approx(
        aupr_in(y, s, method="trapezoid"), rel=1e-12, abs=0
    )
    assert theirs["AUPR-OUT"] == pytest.approx(
        aupr_out(y, s, method="trapezoid"), rel=1e-12, abs=0
    )
    # pytorch-ood's FPR95TPR is the OOD-positive definition
    assert theirs["FPR95TPR"] == fpr_at_tpr(y, s, 0.95, positive="ood")
    for tpr in (0.5, 0.8, 0.99):
        (value,) = FPRAtTPR(tpr=tpr).update(outlier, labels).compute().values()
        assert value == fpr_at_tpr(y, s, tpr, positive="ood")


def test_pytorch_ood_fpr95_differs_from_id_positive_fpr95():
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_ood")
    from pytorch_ood.metrics import OODMetrics

    # ID scores -10, -9, ..., 9 spread out; OOD scores -0.9, -0.875, ..., -0.425
    # bunched in between. Accepting 19 of 20 ID samples needs t = -9, which
    # accepts every OOD sample (ID-positive FPR95 = 1). Flagging 19 of 20 OOD
    # samples needs score <= -0.45, which flags the 10 ID samples -10 .. -1
    # (OOD-positive FPR95 = 0.5).
    y = np.r_[np.zeros(20, dtype=int), -np.ones(20, dtype=int)]
    s = np.r_[np.arange(20.0) - 10.0, np.arange(20.0) / 40.0 - 0.9]
    theirs = OODMetrics().update(torch.from_numpy(-s), torch.from_numpy(y)).compute()
    assert theirs["FPR95TPR"] == fpr_at_tpr(y, s, positive="ood") == 0.5
    assert fpr_at_tpr(y, s, positive="id") == 1.0


# --------------------------------------------------------------------------
# Invariance under strictly increasing maps (hypothesis)
# --------------------------------------------------------------------------

_quarters = st.lists(st.integers(-40, 40), min_size=1, max_size=12)
# x**3 + x and 3x - 5 are exact in float64 on multiples of 1/4 in [-10, 10]
_MAPS = [
    lambda x: x**3 + x,
    lambda x: 3.0 * x - 5.0,
    lambda x: np.exp(x / 7.0),
]


@settings(deadline=None)
@given(id_ints=_quarters, ood_ints=_quarters, map_index=st.integers(0, 2))
def test_metrics_invariant_under_increasing_maps(id_ints, ood_ints, map_index):
    y = np.r_[np.zeros(len(id_ints), dtype=int), -np.ones(len(ood_ints), dtype=int)]
    s = np.array(id_ints + ood_ints, dtype=np.float64) / 4.0
    t = _MAPS[map_index](s)
    assert auroc(y, t) == auroc(y, s)
    assert aupr_in(y, t) == aupr_in(y, s)
    assert aupr_out(y, t) == aupr_out(y, s)
    assert detection_error(y, t) == detection_error(y, s)
    for tpr in (0.5, 0.95):
        for positive in ("id", "ood"):
            assert fpr_at_tpr(y, t, tpr, positive=positive) == fpr_at_tpr(
                y, s, tpr, positive=positive
            )


@settings(deadline=None)
@given(
    id_ints=_quarters,
    ood_ints=_quarters,
    tpr=st.floats(0.01, 1.0),
    positive=st.sampled_from(["id", "ood"]),
)
def test_fpr_at_tpr_and_detection_error_brute_force_property(
    id_ints, ood_ints, tpr, positive
):
    y = np.r_[np.zeros(len(id_ints), dtype=int), -np.ones(len(ood_ints), dtype=int)]
    s = np.array(id_ints + ood_ints, dtype=np.float64) / 4.0
    assert fpr_at_tpr(y, s, tpr, positive=positive) == _brute_fpr_at_tpr(
        y, s, tpr, positive
    )
    assert detection_error(y, s) == pytest.approx(
        _brute_detection_error(y, s), abs=1e-15
    )


# --------------------------------------------------------------------------
# Inputs, report
# --------------------------------------------------------------------------


def test_accepts_lists_float32_and_integral_float_labels():
    y, s = _make_data(0, decimals=None)
    s32 = s.astype(np.float32)
    expected = ood_report(y, s32.astype(np.float64))
    assert ood_report(y, s32) == expected
    assert ood_report(y.tolist(), s32.tolist()) == expected
    assert ood_report(y.astype(np.float64), s32) == expected
    for value in expected.values():
        assert type(value) is float


def test_object_arrays_of_numbers_are_accepted_as_scores():
    y, s = _make_data(1)
    expected = ood_report(y, s)
    mixed = np.array([int(v) if v == int(v) else v for v in s], dtype=object)
    assert ood_report(y, mixed) == expected
    assert ood_report(y, s.astype(np.float32).astype(object)) == ood_report(
        y, s.astype(np.float32)
    )


def test_ood_report_matches_individual_metrics():
    y, s = _make_data(3)
    report = ood_report(y, s)
    assert report == {
        "auroc": auroc(y, s),
        "aupr_in": aupr_in(y, s),
        "aupr_out": aupr_out(y, s),
        "fpr95": fpr_at_tpr(y, s),
        "detection_error": detection_error(y, s),
    }
    report = ood_report(y, s, tpr=0.9, positive="ood", aupr_method="trapezoid")
    assert list(report) == ["auroc", "aupr_in", "aupr_out", "fpr90", "detection_error"]
    assert report["fpr90"] == fpr_at_tpr(y, s, 0.9, positive="ood")
    assert report["aupr_in"] == aupr_in(y, s, method="trapezoid")
    assert report["aupr_out"] == aupr_out(y, s, method="trapezoid")
    assert "fpr99.5" in ood_report(y, s, tpr=0.995)


def _individual_metrics(y, s, tpr, positive, aupr_method):
    return {
        "auroc": auroc(y, s),
        "aupr_in": aupr_in(y, s, method=aupr_method),
        "aupr_out": aupr_out(y, s, method=aupr_method),
        _fpr_key(tpr): fpr_at_tpr(y, s, tpr, positive=positive),
        "detection_error": detection_error(y, s),
    }


def _heavily_tied_data(seed):
    """Few distinct scores, shared by ID and OOD rows; ID or OOD the majority."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    y = np.where(rng.random(n) < rng.uniform(0.05, 0.95), -1, 0)
    y[:2] = [0, -1]  # both classes present
    s = rng.integers(0, int(rng.integers(1, 6)), n) + 0.5 * (y >= 0)
    s = np.round(s)  # 0.5 rounds to even: more ties across the classes
    return y, s


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("positive", ["id", "ood"])
@pytest.mark.parametrize("aupr_method", ["average_precision", "trapezoid"])
def test_ood_report_equals_individual_metrics_exactly_on_ties(
    seed, positive, aupr_method
):
    # ood_report sorts once and shares the counts; the public functions
    # must give bit-for-bit the same numbers
    y, s = _heavily_tied_data(seed)
    for tpr in (0.5, 0.95, 1.0):
        report = ood_report(y, s, tpr=tpr, positive=positive, aupr_method=aupr_method)
        assert report == _individual_metrics(y, s, tpr, positive, aupr_method)
        assert all(type(v) is float for v in report.values())


@settings(deadline=None)
@given(
    id_ints=st.lists(st.integers(-3, 3), min_size=1, max_size=30),
    ood_ints=st.lists(st.integers(-3, 3), min_size=1, max_size=30),
    tpr=st.floats(0.01, 1.0),
    positive=st.sampled_from(["id", "ood"]),
    aupr_method=st.sampled_from(["average_precision", "trapezoid"]),
)
def test_ood_report_and_sklearn_agree_exactly_property(
    id_ints, ood_ints, tpr, positive, aupr_method
):
    y = np.r_[np.zeros(len(id_ints), dtype=int), -np.ones(len(ood_ints), dtype=int)]
    s = np.array(id_ints + ood_ints, dtype=np.float64) / 2.0
    report = ood_report(y, s, tpr=tpr, positive=positive, aupr_method=aupr_method)
    assert report == _individual_metrics(y, s, tpr, positive, aupr_method)
    # scikit-learn's own computations, bit for bit
    assert report["auroc"] == roc_auc_score(y >= 0, s)
    if aupr_method == "average_precision":
        assert report["aupr_in"] == average_precision_score(y >= 0, s)
        assert report["aupr_out"] == average_precision_score(y < 0, -s)
    else:
        precision, recall, _ = precision_recall_curve(y >= 0, s)
        assert report["aupr_in"] == auc(recall, precision)
        precision, recall, _ = precision_recall_curve(y < 0, -s)
        assert report["aupr_out"] == auc(recall, precision)


@pytest.mark.parametrize("seed", range(6))
def test_tied_counts_match_an_argsort(seed):
    # the shared helper (value sorts, no argsort) against the direct count
    y, s = _heavily_tied_data(seed)
    zeros = np.flatnonzero(s == 0)
    s[zeros[::2]] = -0.0  # -0.0 and 0.0 are one score
    for is_id in (y >= 0, y < 0):  # either class the smaller one
        id_le, ood_le = _tied_counts(is_id, s)
        values = np.unique(s)
        assert id_le.tolist() == [np.count_nonzero(s[is_id] <= v) for v in values]
        assert ood_le.tolist() == [np.count_nonzero(s[~is_id] <= v) for v in values]


def test_large_input_runs_quickly():
    # O(n log n): a quadratic implementation would not finish
    rng = np.random.default_rng(0)
    n = 200_000
    y = np.where(rng.random(n) < 0.3, -1, 0)
    s = np.round(rng.normal(size=n) + (y >= 0), 2)
    report = ood_report(y, s)
    assert 0.5 < report["auroc"] < 1.0


ALL_METRICS = [auroc, aupr_in, aupr_out, fpr_at_tpr, detection_error, ood_report]


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_only_id_samples_raise(metric):
    with pytest.raises(ValueError, match=r"no OOD samples.*StratifiedKFold"):
        metric([0, 1, 2, 0], [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_only_ood_samples_raise(metric):
    with pytest.raises(ValueError, match=r"no ID samples.*StratifiedKFold"):
        metric([-1, -1, -2], [0.1, 0.2, 0.3])


@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(metric, bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        metric([0, 0, -1, -1], [0.1, bad, 0.3, 0.4])


@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize(
    "y, s, match",
    [
        ([0, -1, 0], [0.1, 0.2], "different lengths"),
        ([0, -1], [[0.1, 0.2], [0.3, 0.4]], "1-D"),
        ([[0, -1]], [0.1, 0.2], "1-D"),
        ([], [], "empty"),
        ([0.5, -1.0], [0.1, 0.2], "integer labels"),
        ([0.0, np.nan], [0.1, 0.2], "integer labels"),
        (["a", "b"], [0.1, 0.2], "integer labels"),
        ([True, False], [0.1, 0.2], "boolean"),
        ([0, -1], ["x", "y"], "real numbers"),
        ([0, -1], ["0.1", "0.2"], "real numbers.*text"),
        ([0, -1], np.array(["0.1", "0.2"], dtype=object), "real numbers.*str"),
        ([0, -1], np.array([0.1, "0.2"], dtype=object), "real numbers.*str"),
        ([0, -1], np.array([b"0.1", b"0.2"], dtype=object), "real numbers.*bytes"),
        ([0, -1], np.array([0.1, None], dtype=object), "real numbers.*NoneType"),
        ([0, -1], np.array([0.1, 1j], dtype=object), "real numbers.*complex"),
        ([0, -1], np.array(["2020-01-01", "2020-01-02"], "M8[D]"), "real numbers"),
        (np.array(["-1", "0"], dtype=object), [0.1, 0.2], "Unknown label type.*str"),
        ([0, -1], [0.1 + 1j, 0.2], "real numbers"),
    ],
)
def test_invalid_inputs_raise(metric, y, s, match):
    with pytest.raises(ValueError, match=match):
        metric(y, s)


@pytest.mark.parametrize("tpr", [0, 0.0, -0.1, 1.5, np.nan, True, "0.95", None])
def test_tpr_out_of_range_raises(tpr):
    with pytest.raises(ValueError, match=r"tpr must be a number in \(0, 1\]"):
        fpr_at_tpr([0, -1], [0.2, 0.1], tpr)
    with pytest.raises(ValueError, match="tpr must be"):
        ood_report([0, -1], [0.2, 0.1], tpr=tpr)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="positive must be one of"):
        fpr_at_tpr([0, -1], [0.2, 0.1], positive="in")
    with pytest.raises(ValueError, match="method must be one of"):
        aupr_in([0, -1], [0.2, 0.1], method="interpolated")
    with pytest.raises(ValueError, match="method must be one of"):
        aupr_out([0, -1], [0.2, 0.1], method="interpolated")
    with pytest.raises(ValueError, match="aupr_method must be one of"):
        ood_report([0, -1], [0.2, 0.1], aupr_method="auc")
