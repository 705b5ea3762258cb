"""OOD training losses against float64 references written from the formulas,
live pytorch-ood 0.4.0 cross-checks, hypothesis properties, and skorch use.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import math
import warnings

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import log_softmax, logsumexp
from sklearn.base import clone
from torch import nn

from sklearn_ood.torch import (
    EnergyRegularizedLoss,
    EntropicOpenSetLoss,
    IDCrossEntropyLoss,
    LogitNormLoss,
    OutlierExposureLoss,
    UnleashingMaskLoss,
    energy_margins,
)

REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [torch.float32, torch.float64]
# Batch compositions: mixed (1:2 as in the references), ID only, outliers only.
COMPOSITIONS = [(5, 10), (6, 0), (0, 7)]


def _batch(n_in, n_out, n_classes=4, scale=3.0, seed=0):
    """Random logits and labels: ``n_in`` ID rows, ``n_out`` rows labelled < 0."""
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n_in + n_out, n_classes))
    target = np.concatenate(
        [rng.integers(0, n_classes, n_in), rng.integers(-3, 0, n_out)]
    )
    order = rng.permutation(n_in + n_out)
    return logits[order], target[order]


def _t(logits, target, dtype=torch.float64, grad=False):
    x = torch.tensor(logits, dtype=dtype, requires_grad=grad)
    return x, torch.tensor(target, dtype=torch.long)


# ---------------------------------------------------------------------------
# float64 references from the formulas (numpy / scipy only)
# ---------------------------------------------------------------------------


def _ref_ce_rows(logits, target):
    rows = np.zeros(len(target))
    is_in = target >= 0
    rows[is_in] = -log_softmax(logits[is_in], axis=1)[
        np.arange(is_in.sum()), target[is_in]
    ]
    return rows


def _ref_reduce(rows, is_in, reduction):
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    mean_in = rows[is_in].mean() if is_in.any() else 0.0
    mean_out = rows[~is_in].mean() if (~is_in).any() else 0.0
    return mean_in + mean_out


def _ref_oe_rows(logits):
    # cross-entropy to the uniform: -(1/C) sum_c log softmax_c
    return -log_softmax(logits, axis=1).mean(axis=1)


def ref_id_ce(logits, target, reduction="mean"):
    return _ref_reduce(_ref_ce_rows(logits, target), target >= 0, reduction)


def ref_energy(logits, target, alpha, m_in, m_out, reduction="mean"):
    is_in = target >= 0
    energy = -logsumexp(logits, axis=1)
    hinge = np.where(
        is_in,
        np.maximum(0.0, energy - m_in) ** 2,
        np.maximum(0.0, m_out - energy) ** 2,
    )
    return _ref_reduce(_ref_ce_rows(logits, target) + alpha * hinge, is_in, reduction)


def ref_oe(logits, target, alpha, reduction="mean"):
    is_in = target >= 0
    rows = _ref_ce_rows(logits, target) + alpha * np.where(
        is_in, 0.0, _ref_oe_rows(logits)
    )
    return _ref_reduce(rows, is_in, reduction)


def ref_eos(logits, target, reduction="mean"):
    is_in = target >= 0
    rows = _ref_ce_rows(logits, target) + np.where(is_in, 0.0, _ref_oe_rows(logits))
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.mean() if len(rows) else 0.0


def ref_logitnorm(logits, target, t, reduction="mean"):
    norm = np.sqrt((logits**2).sum(axis=1, keepdims=True)) + 1e-7
    return _ref_reduce(
        _ref_ce_rows(logits / (t * norm), target), target >= 0, reduction
    )


def ref_um(logits, target, level, beta, reg_rows, reduction="mean"):
    """|beta CE_in - b| + b on the batch-mean ID CE, plus per-row outlier terms."""
    is_in = target >= 0
    ce = beta * _ref_ce_rows(logits, target)
    if reduction == "mean":
        flood = abs(ce[is_in].mean() - level) + level if is_in.any() else 0.0
        return flood + _ref_reduce(reg_rows, is_in, "mean")
    sign = np.sign(ce[is_in].mean() - level) if is_in.any() else 0.0
    rows = np.where(is_in, sign * (ce - level) + level, 0.0) + reg_rows
    return rows if reduction == "none" else rows.sum()


def _ref_energy_reg(logits, target, alpha, m_in, m_out):
    is_in = target >= 0
    energy = -logsumexp(logits, axis=1)
    return alpha * np.where(
        is_in,
        np.maximum(0.0, energy - m_in) ** 2,
        np.maximum(0.0, m_out - energy) ** 2,
    )


def _ref_oe_reg(logits, target, alpha):
    return alpha * np.where(target >= 0, 0.0, _ref_oe_rows(logits))


def _check(loss, expected, dtype):
    assert loss.dtype == dtype
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(
        loss.detach().numpy(), expected, rtol=rtol, atol=rtol * 10
    )


# Every loss with its reference, in the same parametrisation.
CASES = {
    "id_ce": (lambda r: IDCrossEntropyLoss(reduction=r), ref_id_ce),
    "energy": (
        lambda r: EnergyRegularizedLoss(
            alpha=0.3, margin_in=-4.0, margin_out=-2.0, reduction=r
        ),
        lambda x, y, r: ref_energy(x, y, 0.3, -4.0, -2.0, r),
    ),
    "energy_defaults": (
        lambda r: EnergyRegularizedLoss(reduction=r),
        lambda x, y, r: ref_energy(x, y, 0.1, -25.0, -7.0, r),
    ),
    "oe": (
        lambda r: OutlierExposureLoss(alpha=0.7, reduction=r),
        lambda x, y, r: ref_oe(x, y, 0.7, r),
    ),
    "eos": (lambda r: EntropicOpenSetLoss(reduction=r), ref_eos),
    "logitnorm": (
        lambda r: LogitNormLoss(temperature=0.1, reduction=r),
        lambda x, y, r: ref_logitnorm(x, y, 0.1, r),
    ),
    "um_alone": (
        lambda r: UnleashingMaskLoss(level=1.0, beta=1.5, reduction=r),
        lambda x, y, r: ref_um(x, y, 1.0, 1.5, np.zeros(len(y)), r),
    ),
    "um_oe": (
        lambda r: UnleashingMaskLoss(level=2.0, outlier_loss="oe", reduction=r),
        lambda x, y, r: ref_um(x, y, 2.0, 1.0, _ref_oe_reg(x, y, 0.5), r),
    ),
    "um_energy": (
        lambda r: UnleashingMaskLoss(
            level=0.5,
            outlier_loss="energy",
            alpha=0.2,
            margin_in=-3.0,
            margin_out=-1.0,
            reduction=r,
        ),
        lambda x, y, r: ref_um(
            x, y, 0.5, 1.0, _ref_energy_reg(x, y, 0.2, -3.0, -1.0), r
        ),
    ),
    "um_object": (
        lambda r: UnleashingMaskLoss(
            level=0.3, outlier_loss=OutlierExposureLoss(alpha=0.25), reduction=r
        ),
        lambda x, y, r: ref_um(x, y, 0.3, 1.0, _ref_oe_reg(x, y, 0.25), r),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_reference(case, reduction, n_in, n_out, dtype):
    make, ref = CASES[case]
    logits, target = _batch(n_in, n_out, seed=n_in + 2 * n_out)
    x, y = _t(logits, target, dtype=dtype, grad=True)
    loss = make(reduction)(x, y)
    expected = ref(logits, target, reduction)
    _check(loss, expected, dtype)
    assert torch.isfinite(loss).all()
    if reduction == "none":
        assert loss.shape == (n_in + n_out,)
    loss.sum().backward()
    assert x.grad.dtype == dtype
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("case", list(CASES))
def test_empty_batch(case):
    make, _ = CASES[case]
    x = torch.zeros(0, 3, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    for reduction in REDUCTIONS:
        loss = make(reduction)(x, y)
        assert torch.isfinite(loss).all()
        if reduction != "none":
            assert loss.item() == 0.0


def test_missing_group_term_is_zero():
    """A batch without outliers (or without ID rows) drops that term only."""
    logits, target = _batch(6, 0)
    x_in, y_in = _t(logits, target)
    logits, target = _batch(0, 7)
    x_out, y_out = _t(logits, target)
    ce = IDCrossEntropyLoss()
    assert ce(x_out, y_out).item() == 0.0
    assert torch.equal(OutlierExposureLoss()(x_in, y_in), ce(x_in, y_in))
    oe_out = _uniform_ce(x_out).mean()
    assert torch.isclose(OutlierExposureLoss(alpha=0.5)(x_out, y_out), 0.5 * oe_out)
    energy = EnergyRegularizedLoss(alpha=0.5, margin_in=-1.0, margin_out=0.0)
    e_out = -torch.logsumexp(x_out, dim=1)
    assert torch.isclose(
        energy(x_out, y_out), 0.5 * (0.0 - e_out).relu().square().mean()
    )
    # UM without ID rows: no flood (not 2 * level), the outlier term alone
    um = UnleashingMaskLoss(level=3.0, outlier_loss="oe", alpha=0.5)
    assert torch.isclose(um(x_out, y_out), 0.5 * oe_out)
    assert UnleashingMaskLoss(level=3.0)(x_out, y_out).item() == 0.0
    assert torch.isclose(um(x_in, y_in), (3.0 - ce(x_in, y_in)).abs() + 3.0)


def test_float32_stays_float32_and_matches_float64():
    logits, target = _batch(4, 8)
    x32, y = _t(logits, target, dtype=torch.float32)
    x64, _ = _t(logits, target)
    for make, _ in CASES.values():
        loss32, loss64 = make("mean")(x32, y), make("mean")(x64, y)
        assert loss32.dtype == torch.float32
        assert torch.isclose(loss32.double(), loss64, rtol=1e-5)


def test_integer_targets_of_any_width_and_lists():
    logits, target = _batch(4, 2)
    x, y = _t(logits, target)
    loss = OutlierExposureLoss()
    expected = loss(x, y)
    assert torch.equal(loss(x, y.int()), expected)
    assert torch.equal(loss(x, target.tolist()), expected)


# ---------------------------------------------------------------------------
# Relations between the losses
# ---------------------------------------------------------------------------


def test_oe_per_group_vs_whole_batch_mean():
    """ours: CE_in + a OE_out; whole batch: (N_in CE_in + a N_out OE_out) / N."""
    logits, target = _batch(128 // 8, 256 // 8, n_classes=10)
    x, y = _t(logits, target)
    alpha = 0.5
    n_in, n_out = int((y >= 0).sum()), int((y < 0).sum())
    ce_in = IDCrossEntropyLoss()(x, y)
    oe_out = _uniform_ce(x[y < 0]).mean()
    ours = OutlierExposureLoss(alpha=alpha)(x, y)
    assert torch.isclose(ours, ce_in + alpha * oe_out, rtol=1e-12)
    rows = OutlierExposureLoss(alpha=alpha, reduction="none")(x, y)
    whole = (n_in * ce_in + alpha * n_out * oe_out) / (n_in + n_out)
    assert torch.isclose(rows.mean(), whole, rtol=1e-12)


def _uniform_ce(x):
    return -torch.log_softmax(x, dim=1).mean(dim=1)


def test_entropic_open_set_is_whole_batch_oe_with_alpha_one():
    logits, target = _batch(5, 9)
    x, y = _t(logits, target)
    eos_rows = EntropicOpenSetLoss(reduction="none")(x, y)
    oe_rows = OutlierExposureLoss(alpha=1.0, reduction="none")(x, y)
    assert torch.allclose(eos_rows, oe_rows, rtol=1e-12)
    n_in, n_out, n = 5, 9, 14
    ce_in = IDCrossEntropyLoss()(x, y)
    oe_out = _uniform_ce(x[y < 0]).mean()
    assert torch.isclose(
        EntropicOpenSetLoss()(x, y), (n_in * ce_in + n_out * oe_out) / n, rtol=1e-12
    )
    assert torch.isclose(OutlierExposureLoss(alpha=1.0)(x, y), ce_in + oe_out)


@pytest.mark.parametrize("outlier_loss", [None, "oe", "energy"])
def test_um_level_zero_is_the_unflooded_loss(outlier_loss):
    logits, target = _batch(6, 9)
    x, y = _t(logits, target)
    plain = {
        None: IDCrossEntropyLoss(),
        "oe": OutlierExposureLoss(),
        "energy": EnergyRegularizedLoss(),
    }[outlier_loss]
    for reduction in REDUCTIONS:
        plain.reduction = reduction
        um = UnleashingMaskLoss(
            level=0.0, outlier_loss=outlier_loss, reduction=reduction
        )
        torch.testing.assert_close(um(x, y), plain(x, y), rtol=1e-12, atol=1e-12)


def test_um_named_and_object_outlier_losses_agree():
    logits, target = _batch(6, 9)
    x, y = _t(logits, target)
    named = UnleashingMaskLoss(
        level=3.0, outlier_loss="energy", alpha=0.3, margin_in=-2.0, margin_out=0.0
    )
    obj = UnleashingMaskLoss(
        level=3.0,
        outlier_loss=EnergyRegularizedLoss(alpha=0.3, margin_in=-2.0, margin_out=0.0),
    )
    assert torch.equal(named(x, y), obj(x, y))


def test_um_floods_the_id_term_only():
    """UM + OE = flood(CE_in) + a OE_out, the outlier term unflooded."""
    logits, target = _batch(6, 9)
    x, y = _t(logits, target)
    ce_in = IDCrossEntropyLoss()(x, y)
    level = float(ce_in) + 1.0  # below the level: flooded
    um = UnleashingMaskLoss(level=level, outlier_loss="oe", alpha=0.5)(x, y)
    oe_term = 0.5 * _uniform_ce(x[y < 0]).mean()
    assert torch.isclose(um, (2 * level - ce_in) + oe_term, rtol=1e-12)


def test_um_flood_off_and_none_rows_average_to_the_flood():
    logits, target = _batch(6, 9)
    x, y = _t(logits, target)
    um = UnleashingMaskLoss(level=50.0, beta=2.0, outlier_loss="oe")
    unflooded = UnleashingMaskLoss(level=0.0, beta=2.0, outlier_loss="oe")
    assert torch.equal(um(x, y, flood=False), unflooded(x, y))
    um.reduction = "none"
    rows = um(x, y)
    ce_in = IDCrossEntropyLoss()(x, y)
    assert torch.isclose(rows[y >= 0].mean(), 100.0 - 2.0 * ce_in, rtol=1e-12)


# ---------------------------------------------------------------------------
# Hypothesis properties
# ---------------------------------------------------------------------------

_logit_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(2, 7)),
    elements=st.floats(-30, 30),
)


@given(_logit_rows)
def test_oe_term_at_least_log_c(logits):
    """The per-row OE term is >= log C, with equality at constant logits."""
    x = torch.tensor(logits)
    target = torch.full((len(x),), -1)
    n_classes = x.shape[1]
    rows = OutlierExposureLoss(alpha=1.0, reduction="none")(x, target)
    assert torch.all(rows >= math.log(n_classes) - 1e-9)
    const = torch.full_like(x, float(logits[0, 0]))
    rows = OutlierExposureLoss(alpha=1.0, reduction="none")(const, target)
    torch.testing.assert_close(
        rows, torch.full_like(rows, math.log(n_classes)), rtol=1e-12, atol=1e-12
    )


@given(
    _logit_rows,
    st.floats(0.05, 20.0),
    st.floats(0.5, 3.0),
    st.sampled_from([None, "oe", "energy"]),
)
def test_flood_identity_above_mirror_below(logits, level, beta, outlier_loss):
    """Above the level: the unflooded loss and its gradient; below: 2b - v and
    the mirrored ID gradient (the outlier term's gradient unchanged)."""
    n = len(logits)
    target = torch.tensor([i % logits.shape[1] if i % 2 == 0 else -1 for i in range(n)])
    kwargs = {"outlier_loss": outlier_loss}
    if outlier_loss == "energy":
        kwargs.update(margin_in=-5.0, margin_out=-1.0)

    def value_and_grad(loss):
        x = torch.tensor(logits, requires_grad=True)
        value = loss(x, target)
        (grad,) = torch.autograd.grad(value, x)
        return value.detach(), grad

    v_um, g_um = value_and_grad(UnleashingMaskLoss(level=level, beta=beta, **kwargs))
    v_ce, g_ce = value_and_grad(
        UnleashingMaskLoss(level=0.0, beta=beta, outlier_loss=None)
    )
    if outlier_loss is None:
        v_reg, g_reg = torch.tensor(0.0, dtype=torch.float64), torch.zeros_like(g_um)
    else:
        v_all, g_all = value_and_grad(
            UnleashingMaskLoss(level=0.0, beta=beta, **kwargs)
        )
        v_reg, g_reg = v_all - v_ce, g_all - g_ce
    gap = float(v_ce) - level  # beta * CE_in - b
    if abs(gap) < 1e-9:
        return
    if gap > 0:
        torch.testing.assert_close(v_um, v_ce + v_reg, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(g_um, g_ce + g_reg, rtol=1e-9, atol=1e-9)
    else:
        torch.testing.assert_close(v_um, 2 * level - v_ce + v_reg, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(g_um, -g_ce + g_reg, rtol=1e-9, atol=1e-9)


@given(_logit_rows, st.floats(0.0, 10.0), st.floats(0.0, 10.0))
def test_energy_hinges_zero_inside_the_margins(logits, slack_in, slack_out):
    """ID energies below m_in and outlier energies above m_out cost nothing."""
    x = torch.tensor(logits)
    energy = -torch.logsumexp(x, dim=1)
    margin_in = float(energy.max()) + slack_in
    margin_out = float(energy.min()) - slack_out
    loss = EnergyRegularizedLoss(alpha=1.0, margin_in=margin_in, margin_out=margin_out)
    for label in (0, -1):
        target = torch.full((len(x),), label)
        assert torch.all(loss.regularizer(x, target) == 0)
    target = torch.zeros(len(x), dtype=torch.long)
    assert torch.equal(loss(x, target), IDCrossEntropyLoss()(x, target))


# ---------------------------------------------------------------------------
# energy_margins
# ---------------------------------------------------------------------------


def test_energy_margins_are_mean_energies():
    logits_id, _ = _batch(7, 0, scale=4.0, seed=1)
    logits_out, _ = _batch(0, 9, scale=0.5, seed=2)
    m_in, m_out = energy_margins(logits_id, logits_out)
    assert isinstance(m_in, float) and isinstance(m_out, float)
    np.testing.assert_allclose(m_in, -logsumexp(logits_id, axis=1).mean(), rtol=1e-14)
    np.testing.assert_allclose(m_out, -logsumexp(logits_out, axis=1).mean(), rtol=1e-14)
    x_id = torch.tensor(logits_id, dtype=torch.float32, requires_grad=True)
    m_in32, _ = energy_margins(x_id, torch.tensor(logits_out))
    np.testing.assert_allclose(m_in32, m_in, rtol=1e-6)
    EnergyRegularizedLoss(margin_in=m_in, margin_out=m_out)  # accepted


@pytest.mark.parametrize(
    "logits_id, logits_out, match",
    [
        (np.zeros((0, 3)), np.zeros((2, 3)), "logits_id must be a non-empty"),
        (np.zeros(3), np.zeros((2, 3)), "logits_id must be a non-empty"),
        (np.zeros((2, 3)), np.full((2, 3), np.nan), "logits_out contains NaN"),
        (np.zeros((2, 3)), np.zeros((2, 4)), "same model"),
    ],
)
def test_energy_margins_errors(logits_id, logits_out, match):
    with pytest.raises(ValueError, match=match):
        energy_margins(logits_id, logits_out)


# ---------------------------------------------------------------------------
# Live cross-checks against pytorch-ood 0.4.0
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def po_loss():
    loss = pytest.importorskip("pytorch_ood.loss")
    return loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
def test_energy_matches_pytorch_ood(po_loss, reduction, n_in, n_out):
    logits, target = _batch(n_in, n_out, seed=3)
    x, y = _t(logits, target)
    kwargs = {"alpha": 0.3, "margin_in": -4.0, "margin_out": -2.0}
    ours = EnergyRegularizedLoss(**kwargs, reduction=reduction)(x, y)
    theirs = po_loss.EnergyRegularizedLoss(**kwargs, reduction=reduction)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_in, n_out", [(128 // 8, 256 // 8), (6, 0), (0, 7)])
def test_oe_relation_to_pytorch_ood(po_loss, n_in, n_out):
    """Same per-row terms; pytorch-ood's mean is the whole-batch mean."""
    logits, target = _batch(n_in, n_out, n_classes=10, seed=4)
    # pytorch-ood builds its OE rows in float32 whatever the input dtype
    x, y = _t(logits, target, dtype=torch.float32)
    alpha = 0.5
    theirs = po_loss.OutlierExposureLoss(alpha=alpha)
    ours_rows = OutlierExposureLoss(alpha=alpha, reduction="none")(x, y)
    torch.testing.assert_close(
        ours_rows, po_loss.OutlierExposureLoss(alpha=alpha, reduction="none")(x, y)
    )
    ce_in = IDCrossEntropyLoss()(x, y)
    oe_out = _uniform_ce(x[y < 0]).mean() if n_out else 0.0
    whole = (n_in * ce_in + alpha * n_out * oe_out) / (n_in + n_out)
    torch.testing.assert_close(theirs(x, y), whole, rtol=1e-5, atol=1e-6)
    ours = OutlierExposureLoss(alpha=alpha)(x, y)
    torch.testing.assert_close(ours, ce_in + alpha * oe_out, rtol=1e-5, atol=1e-6)
    if n_in and n_out:  # the reference's 1:2 batches: different values
        assert not torch.isclose(ours, theirs(x, y), rtol=1e-2)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_entropic_open_set_matches_pytorch_ood(po_loss, reduction):
    logits, target = _batch(5, 9, seed=5)
    x, y = _t(logits, target, dtype=torch.float32)
    ours = EntropicOpenSetLoss(reduction=reduction)(x, y)
    torch.testing.assert_close(
        ours, po_loss.EntropicOpenSetLoss(reduction=reduction)(x, y)
    )
    torch.testing.assert_close(
        ours, po_loss.OutlierExposureLoss(alpha=1.0, reduction=reduction)(x, y)
    )


@pytest.mark.parametrize("temperature", [1.0, 0.04, 0.01])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logitnorm_matches_pytorch_ood(po_loss, temperature, reduction):
    logits, target = _batch(6, 4, seed=6)
    x, y = _t(logits, target)
    ours = LogitNormLoss(temperature=temperature, reduction=reduction)(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-ood warns that it drops outliers
        theirs = po_loss.LogitNorm(t=temperature, reduction=reduction)(x, y)
    if reduction == "none":  # pytorch-ood returns the ID rows only
        ours = ours[y >= 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_id_cross_entropy_matches_torch_and_pytorch_ood(po_loss):
    logits, target = _batch(6, 4, seed=7)
    target = np.where(target < 0, -1, target)
    x, y = _t(logits, target)
    ours = IDCrossEntropyLoss()(x, y)
    torch.testing.assert_close(ours, nn.CrossEntropyLoss(ignore_index=-1)(x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(ours, po_loss.CrossEntropyLoss()(x, y))


# ---------------------------------------------------------------------------
# Parameters and inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: IDCrossEntropyLoss(reduction="avg"), "reduction must be one of"),
        (lambda: EnergyRegularizedLoss(alpha=-1), "alpha must be >= 0"),
        (lambda: EnergyRegularizedLoss(margin_in="a"), "margin_in must be a real"),
        (lambda: OutlierExposureLoss(alpha=float("nan")), "alpha must be finite"),
        (lambda: LogitNormLoss(temperature=0), "temperature must be > 0"),
        (lambda: UnleashingMaskLoss(level=-0.1), "level must be >= 0"),
        (lambda: UnleashingMaskLoss(beta=0), "beta must be > 0"),
        (lambda: UnleashingMaskLoss(outlier_loss="doe"), "outlier_loss must be"),
        (lambda: UnleashingMaskLoss(outlier_loss=nn.Linear(2, 2)), "regularizer"),
        (lambda: UnleashingMaskLoss(alpha=0.5), "alpha is the weight of"),
        (
            lambda: UnleashingMaskLoss(outlier_loss=OutlierExposureLoss(), alpha=0.5),
            "alpha is the weight of",
        ),
        (
            lambda: UnleashingMaskLoss(outlier_loss="oe", margin_in=-5.0),
            'margin_in is only used with outlier_loss="energy"',
        ),
        (lambda: UnleashingMaskLoss(level=True), "level must be a real"),
    ],
)
def test_parameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_parameters_are_checked_again_in_forward():
    loss = OutlierExposureLoss()
    loss.alpha = -1.0
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        loss(torch.zeros(2, 3), torch.tensor([0, -1]))


@pytest.mark.parametrize(
    "logits, target, match",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "shape \\(n_samples, n_"),
        (np.zeros((3, 2)), torch.zeros(3, dtype=torch.long), "logits must be a"),
        (torch.zeros(3, 2, dtype=torch.long), torch.zeros(3), "floating-point"),
        (torch.zeros(3, 2), torch.zeros(3), "integer labels"),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool), "integer labels"),
        (torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), "shape \\(n_samples,\\)"),
    ],
)
def test_input_errors(logits, target, match):
    for make, _ in CASES.values():
        with pytest.raises(ValueError, match=match):
            make("mean")(logits, target)


def test_repr_shows_parameters():
    assert repr(OutlierExposureLoss(alpha=0.3)) == (
        "OutlierExposureLoss(alpha=0.3, reduction='mean')"
    )
    assert "outlier_loss='energy'" in repr(
        UnleashingMaskLoss(level=0.2, outlier_loss="energy")
    )


# ---------------------------------------------------------------------------
# skorch: criteria passed as classes, criterion__* routed and grid-searched
# ---------------------------------------------------------------------------


def test_skorch_criterion_params_route_and_rebuild():
    skorch = pytest.importorskip("skorch")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 4)).astype(np.float32)
    y = np.where(np.arange(48) % 3 == 2, -1, np.arange(48) % 2).astype(np.int64)
    net = skorch.NeuralNet(
        nn.Linear(4, 2),
        criterion=UnleashingMaskLoss,
        criterion__level=0.2,
        criterion__outlier_loss="energy",
        criterion__alpha=0.1,
        criterion__margin_in=-1.0,
        criterion__margin_out=0.0,
        optimizer=torch.optim.SGD,
        lr=0.01,
        max_epochs=2,
        batch_size=16,
        train_split=None,
        verbose=0,
    )
    net.fit(X, y)
    assert np.isfinite(net.history[:, "train_loss"]).all()
    assert net.criterion_.level == 0.2 and net.criterion_.alpha == 0.1
    net.set_params(criterion__level=0.5, criterion__alpha=0.3)
    assert isinstance(net.criterion_, UnleashingMaskLoss)
    assert (net.criterion_.level, net.criterion_.alpha) == (0.5, 0.3)
    assert net.criterion_.outlier_loss == "energy"
    twin = clone(net)
    assert twin.get_params()["criterion__alpha"] == 0.3
    twin = skorch.NeuralNet(
        nn.Linear(4, 2),
        criterion=OutlierExposureLoss,
        criterion__alpha=0.7,
        max_epochs=1,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    assert twin.criterion_.alpha == 0.7
