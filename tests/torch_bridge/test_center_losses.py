"""Centre and prototype losses against float64 references written from the
papers' formulas, live pytorch-ood 0.4.0 cross-checks, and training through
OODNeuralNetClassifier on the digits.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import warnings

import numpy as np
import torch
from _torch_helpers import digits_images

from sklearn_ood.detectors import CACScore, CenterDistance
from sklearn_ood.torch import (
    CACLoss,
    CenterLoss,
    DeepSADLoss,
    DeepSVDDLoss,
    DigitsCNN,
    IILoss,
    MCHADLoss,
    OODNeuralNetClassifier,
)

REDUCTIONS = ["mean", "sum", "none"]
# ID rows and outlier rows of a batch: mixed, ID only, outliers only.
COMPOSITIONS = [(9, 5), (8, 0), (0, 4)]


def _batch(n_in, n_out, n_classes=3, n_dim=3, seed=0, scale=2.0):
    """Embeddings and labels (every class present once n_in >= n_classes)."""
    rng = np.random.default_rng(seed)
    z = scale * rng.normal(size=(n_in + n_out, n_dim))
    y = np.r_[np.arange(n_in) % n_classes, -np.ones(n_out, dtype=int)]
    return z, y


def _t(z, y, dtype=torch.float64):
    return torch.tensor(z, dtype=dtype), torch.tensor(y)


def _reduce(rows, y, reduction, whole_batch=False):
    """The reductions of the docstrings: per-group means (or the batch mean)."""
    rows = np.asarray(rows, dtype=np.float64)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    if whole_batch:
        return rows.sum() / max(len(rows), 1)
    is_in = y >= 0
    mean_in = rows[is_in].mean() if is_in.any() else 0.0
    mean_out = rows[~is_in].mean() if (~is_in).any() else 0.0
    return mean_in + mean_out


# ---------------------------------------------------------------- references
def ref_center(z, y, mu, r, reduction="mean"):
    """Wen et al.: max(0, ||z - mu_y||^2 - r^2) per ID row, 0 per outlier."""
    rows = []
    for zi, yi in zip(z, y):
        rows.append(
            max(0.0, float(np.sum((zi - mu[yi]) ** 2)) - r**2) if yi >= 0 else 0
        )
    return _reduce(rows, y, reduction)


def _euclid(zi, a):
    return float(np.sqrt(np.sum((zi - a) ** 2)))


def ref_cac(z, y, magnitude, lam, reduction="mean"):
    """Miller et al.: lam d_y + log(1 + sum_{c != y} exp(d_y - d_c)), anchors
    magnitude * e_c, Euclidean distances."""
    C = z.shape[1]
    anchors = magnitude * np.eye(C)
    rows = []
    for zi, yi in zip(z, y):
        if yi < 0:
            rows.append(0.0)
            continue
        d = [_euclid(zi, anchors[c]) for c in range(C)]
        tuplet = np.log(1 + sum(np.exp(d[yi] - d[c]) for c in range(C) if c != yi))
        rows.append(lam * d[yi] + tuplet)
    return _reduce(rows, y, reduction)


def ref_ii(z, y, alpha):
    """Hassen & Chan: mean ||z - mean_y||^2 minus alpha min ||mean_j - mean_k||^2."""
    keep = y >= 0
    z, y = z[keep], y[keep]
    if len(y) == 0:
        return 0.0
    classes = sorted(set(y.tolist()))
    means = {c: z[y == c].mean(axis=0) for c in classes}
    spread = sum(float(np.sum((zi - means[yi]) ** 2)) for zi, yi in zip(z, y)) / len(y)
    if len(classes) < 2:
        return spread
    gaps = [
        float(np.sum((means[j] - means[k]) ** 2))
        for j in classes
        for k in classes
        if j != k
    ]
    return spread - alpha * min(gaps)


def ref_mchad(z, y, mu, r, m, wc, wn, wo, reduction="mean"):
    """Kirchheim et al.: centre + softmin NLL on ID rows, margin on outliers."""
    rows = []
    for zi, yi in zip(z, y):
        d = np.array([np.sum((zi - c) ** 2) for c in mu])
        if yi >= 0:
            center = max(0.0, d[yi] - r**2)
            nll = np.log(
                1 + sum(np.exp(d[yi] - d[c]) for c in range(len(mu)) if c != yi)
            )
            rows.append(wc * center + wn * nll)
        else:
            rows.append(wo * sum(max(0.0, (r + m) ** 2 - dc) for dc in d))
    return _reduce(rows, y, reduction)


def ref_svdd(z, y, c, r, reduction="mean"):
    """Ruff et al. 2018: max(0, ||z - c||^2 - r^2) per ID row."""
    rows = [
        max(0.0, float(np.sum((zi - c) ** 2)) - r**2) if yi >= 0 else 0.0
        for zi, yi in zip(z, y)
    ]
    return _reduce(rows, y, reduction)


def ref_sad(z, y, c, eta, eps, reduction="mean"):
    """Ruff et al. 2020: ||z - c||^2 for ID rows, eta / (||z - c||^2 + eps) for
    labelled anomalies, averaged over the whole batch."""
    rows = []
    for zi, yi in zip(z, y):
        d = float(np.sum((zi - c) ** 2))
        rows.append(d if yi >= 0 else eta / (d + eps))
    return _reduce(rows, y, reduction, whole_batch=True)


def _check(value, expected):
    np.testing.assert_allclose(
        value.detach().double().numpy(), expected, rtol=1e-10, atol=1e-12
    )


# ------------------------------------------------------------------ formulas
MU = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -1.0], [-2.0, 1.0, 0.0]])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize("radius", [0.0, 1.5])
def test_center_loss_matches_reference(reduction, n_in, n_out, radius):
    z, y = _batch(n_in, n_out)
    loss = CenterLoss(3, 3, radius=radius, initial_centers=MU, reduction=reduction)
    _check(loss(*_t(z, y)), ref_center(z, y, MU, radius, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize("magnitude, lam", [(10.0, 0.1), (1.0, 1.0)])
def test_cac_loss_matches_reference(reduction, n_in, n_out, magnitude, lam):
    z, y = _batch(n_in, n_out, seed=1, scale=4.0)
    loss = CACLoss(3, magnitude=magnitude, anchor_weight=lam, reduction=reduction)
    _check(loss(*_t(z, y)), ref_cac(z, y, magnitude, lam, reduction))


def test_cac_loss_has_no_overflow():
    # d_y - d_c of 1000: the log-sum-exp keeps the loss finite and exact.
    z = np.array([[0.0, 1000.0, 0.0]])  # on the anchor of class 1, label 0
    loss = CACLoss(3, magnitude=1000.0, anchor_weight=0.0)(*_t(z, [0]))
    d = [_euclid(z[0], a) for a in 1000.0 * np.eye(3)]
    expected = np.logaddexp.reduce([0.0, d[0] - d[1], d[0] - d[2]])
    assert expected > 1000
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)


@pytest.mark.parametrize("n_in, n_out", [(9, 5), (8, 0), (0, 4), (3, 2)])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_ii_loss_matches_reference(n_in, n_out, alpha):
    z, y = _batch(n_in, n_out, seed=2)
    if n_in == 3:
        y[:3] = 1  # one class only: no separation term
    _check(IILoss(3, 3, alpha=alpha)(*_t(z, y)), ref_ii(z, y, alpha))


def test_ii_running_centers_are_class_means_of_all_rows():
    z, y = _batch(30, 0, seed=3)
    loss = IILoss(3, 3)
    for part in np.array_split(np.arange(30), [7, 19]):
        loss(*_t(z[part], y[part]))
    expected = np.array([z[y == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(loss.centers.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(loss.counts.numpy(), [10, 10, 10])
    loss.eval()  # evaluation batches leave them alone
    loss(*_t(z[:5] + 100.0, y[:5]))
    np.testing.assert_allclose(loss.centers.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize(
    "params", [(0.0, 0.0, 1.0, 1.0, 1.0), (1.0, 2.5, 0.5, 2.0, 0.3)]
)
def test_mchad_loss_matches_reference(reduction, n_in, n_out, params):
    r, m, wc, wn, wo = params
    z, y = _batch(n_in, n_out, seed=4)
    loss = MCHADLoss(
        3,
        3,
        radius=r,
        margin=m,
        weight_center=wc,
        weight_nll=wn,
        weight_oe=wo,
        initial_centers=MU,
        reduction=reduction,
    )
    _check(loss(*_t(z, y)), ref_mchad(z, y, MU, r, m, wc, wn, wo, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize("radius", [0.0, 2.0])
def test_deep_svdd_matches_reference(reduction, n_in, n_out, radius):
    z, y = _batch(n_in, n_out, seed=5)
    c = MU[0]
    loss = DeepSVDDLoss(3, radius=radius, initial_center=c, reduction=reduction)
    _check(loss(*_t(z, y)), ref_svdd(z, y, c, radius, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
def test_deep_sad_matches_reference(reduction, n_in, n_out):
    z, y = _batch(n_in, n_out, seed=6)
    c = MU[1]
    loss = DeepSADLoss(3, eta=0.7, eps=1e-3, initial_center=c, reduction=reduction)
    _check(loss(*_t(z, y)), ref_sad(z, y, c, 0.7, 1e-3, reduction))


def test_one_center_set_from_the_first_batch_with_the_eps_rule():
    z = np.array([[0.05, -0.05, 1.0, 0.0], [0.03, -0.01, 3.0, 0.0], [9, 9, 9, 9]])
    y = np.array([0, 1, -1])
    for cls in (DeepSVDDLoss, DeepSADLoss):
        loss = cls(4)
        assert torch.isnan(loss.center).all()
        loss(*_t(z, y))
        # mean of the ID rows (0.04, -0.03, 2, 0): small coordinates -> +-0.1,
        # an exact zero stays (the authors' rule)
        np.testing.assert_allclose(loss.center.numpy(), [0.1, -0.1, 2.0, 0.0])
        before = loss.center.clone()
        loss(*_t(z + 5.0, y))  # fixed afterwards
        torch.testing.assert_close(loss.center, before)
        assert loss.centers.shape == (1, 4)


@pytest.mark.parametrize(
    "loss",
    [
        CenterLoss(3, 3, initial_centers=MU),
        CACLoss(3),
        IILoss(3, 3),
        MCHADLoss(3, 3, initial_centers=MU),
        DeepSVDDLoss(3, initial_center=MU[0]),
        DeepSADLoss(3, initial_center=MU[0]),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_float32_in_float32_out_and_gradients(loss):
    z, y = _batch(9, 5, seed=7)
    if isinstance(loss, IILoss):
        y = np.where(y < 0, 0, y)
    x32 = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    value = loss(x32, torch.tensor(y))
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(x32.grad).all()
    np.testing.assert_allclose(
        value.item(), loss(*_t(z, y)).item(), rtol=1e-5, atol=1e-6
    )


# ------------------------------------------------------------------ pytorch-ood
@pytest.fixture(scope="module")
def po_loss():
    return pytest.importorskip("pytorch_ood.loss")


def _po_quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Discarding samples ..."
        return fn(*args)


@pytest.mark.parametrize("n_in, n_out", [(9, 5), (8, 0)])
@pytest.mark.parametrize("radius", [0.0, 1.5])
def test_center_loss_vs_pytorch_ood(po_loss, n_in, n_out, radius):
    """Theirs: the mean over the N x C distance matrix (1/C times ours), their
    radius subtracted from the squared distance (theirs r**2 = ours r)."""
    z, y = _batch(n_in, n_out, seed=8)
    x, t = _t(z, y)
    theirs = po_loss.CenterLoss(n_classes=3, n_dim=3, radius=radius**2)
    theirs.centers._params.data = torch.tensor(MU)
    ours = CenterLoss(3, 3, radius=radius, initial_centers=MU)
    expected = ours(x, t).item() / 3
    value = _po_quiet(theirs, theirs.distance(x), t).item()
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-11)


def test_cac_loss_vs_pytorch_ood(po_loss):
    """On our Euclidean distances (theirs takes whatever it is given): equal on
    rows of the last class; for the others their tuplet term sums over the
    classes 0..C-2, the row's own (a term e^0 = 1) instead of the last one."""
    z, _ = _batch(9, 0, seed=9, scale=4.0)
    x = torch.tensor(z)
    ours = CACLoss(3, magnitude=10.0, anchor_weight=0.1)
    theirs = po_loss.CACLoss(n_classes=3, magnitude=10.0, alpha=0.1)
    d = ours.anchor_distance(x)
    last = torch.full((9,), 2)
    torch.testing.assert_close(ours(x, last), theirs(d, last), rtol=1e-12, atol=0)
    t = torch.tensor(np.arange(9) % 3)
    d_np = d.numpy()
    d_y = d_np[np.arange(9), t.numpy()]
    as_theirs = 0.1 * d_y.mean() + np.mean(
        np.log1p(np.exp(d_y[:, None] - d_np[:, :2]).sum(axis=1))
    )
    np.testing.assert_allclose(theirs(d, t).item(), as_theirs, rtol=1e-12)
    assert abs(ours(x, t).item() - as_theirs) > 1e-3
    # their own distance() is the squared one
    torch.testing.assert_close(
        theirs.distance(x.float()).double(),
        ours.anchor_distance(x) ** 2,
        rtol=1e-5,
        atol=1e-4,
    )


def test_ii_loss_vs_pytorch_ood(po_loss):
    z, y = _batch(12, 0, seed=10)
    x, t = _t(z.astype(np.float32), y, dtype=torch.float32)
    ours, theirs = IILoss(3, 3, alpha=0.5), po_loss.IILoss(3, 3, alpha=0.5)
    torch.testing.assert_close(ours(x, t), theirs(x, t), rtol=1e-5, atol=1e-5)
    # after one batch both running centres are its class means
    torch.testing.assert_close(ours.centers, theirs.centers.centers)


def test_mchad_loss_vs_pytorch_ood(po_loss):
    """ID rows: wc * centre / C + wn * NLL; their outlier term squares the
    squared distances and sums over the rows."""
    z, y = _batch(9, 0, seed=11)
    x, t = _t(z, y)
    kw = dict(weight_center=0.5, weight_nll=2.0)
    theirs = po_loss.MCHADLoss(n_classes=3, n_dim=3, **kw)
    theirs.centers._params.data = torch.tensor(MU)
    parts = {
        name: MCHADLoss(3, 3, initial_centers=MU, **{**kw, name: 0.0})(x, t).item()
        for name in ("weight_center", "weight_nll")
    }
    expected = parts["weight_nll"] / 3 + parts["weight_center"]  # centre / C + NLL
    value = _po_quiet(theirs, theirs.distance(x), t).item()
    np.testing.assert_allclose(value, expected, rtol=1e-9)
    # their outlier term
    z_out, y_out = _batch(0, 4, seed=12)
    x_out, t_out = _t(z_out, y_out)
    M = 3.0
    theirs = po_loss.MCHADLoss(n_classes=3, n_dim=3, margin=M)
    theirs.centers._params.data = torch.tensor(MU)
    d = ((z_out[:, None, :] - MU[None]) ** 2).sum(axis=2)
    value = theirs(theirs.distance(x_out), t_out).item()
    np.testing.assert_allclose(value, np.maximum(0, M**2 - d**2).sum(), rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n_in, n_out", [(9, 5), (8, 0)])
def test_deep_svdd_vs_pytorch_ood(po_loss, reduction, n_in, n_out):
    # pytorch-ood's per-row buffer is float32 whatever the input
    z, y = _batch(n_in, n_out, seed=13)
    x, t = _t(z, y, dtype=torch.float32)
    c = torch.tensor(MU[2], dtype=torch.float32)
    ours = DeepSVDDLoss(3, radius=1.0, initial_center=c, reduction=reduction)
    theirs = po_loss.DeepSVDDLoss(3, radius=1.0, center=c, reduction=reduction)
    torch.testing.assert_close(
        ours(x, t), _po_quiet(theirs, x, t), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_deep_sad_vs_pytorch_ood(po_loss, reduction):
    z, y = _batch(9, 5, seed=14)
    x, t = _t(z, y)
    c = torch.tensor(MU[2])
    ours = DeepSADLoss(3, eta=0.5, eps=1e-4, initial_center=c, reduction=reduction)
    theirs = po_loss.DeepSADLoss(3, eta=0.5, eps=1e-4, center=c, reduction=reduction)
    torch.testing.assert_close(ours(x, t), theirs(x, t), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CenterLoss(0, 2), "n_classes must be >= 1"),
        (lambda: CenterLoss(2, 2.5), "n_dim must be an integer"),
        (lambda: CenterLoss(2, 2, radius=-1.0), "radius must be >= 0"),
        (lambda: CenterLoss(2, 2, fixed_centers=1), "fixed_centers must be"),
        (lambda: CenterLoss(2, 2, initial_centers=np.eye(3)), r"shape \(2, 2\)"),
        (
            lambda: CenterLoss(2, 2, initial_centers=[[0, np.nan], [1, 1]]),
            "finite",
        ),
        (lambda: CenterLoss(2, 2, reduction="avg"), "reduction must be"),
        (lambda: CACLoss(1), "n_classes must be >= 2"),
        (lambda: CACLoss(3, magnitude=0.0), "magnitude must be > 0"),
        (lambda: CACLoss(3, anchor_weight=-1.0), "anchor_weight must be >= 0"),
        (lambda: IILoss(3, 2, alpha=np.inf), "alpha must be finite"),
        (lambda: MCHADLoss(1, 2), "n_classes must be >= 2"),
        (lambda: MCHADLoss(2, 2, margin=-1.0), "margin must be >= 0"),
        (lambda: DeepSVDDLoss(2, initial_center=[1.0]), r"shape \(2,\)"),
        (lambda: DeepSADLoss(2, eta=-1.0), "eta must be >= 0"),
    ],
)
def test_parameter_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "loss",
    [
        CenterLoss(3, 3),
        CACLoss(3),
        IILoss(3, 3),
        MCHADLoss(3, 3),
        DeepSVDDLoss(3),
        DeepSADLoss(3),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_input_errors(loss):
    with pytest.raises(ValueError, match="n_dim=3 dimensions"):
        loss(torch.zeros(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer labels"):
        loss(torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
    if not isinstance(loss, (DeepSVDDLoss, DeepSADLoss)):
        with pytest.raises(ValueError, match="n_classes=3 centres"):
            loss(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_first_batch_without_id_rows_needs_a_center():
    with pytest.raises(ValueError, match="pass initial_center"):
        DeepSADLoss(2)(torch.ones(3, 2), torch.tensor([-1, -1, -1]))


def test_learnable_and_fixed_centres():
    assert isinstance(CenterLoss(3, 2).centers, torch.nn.Parameter)
    assert isinstance(MCHADLoss(3, 2).centers, torch.nn.Parameter)
    for loss in (CenterLoss(3, 2, fixed_centers=True), CACLoss(3), IILoss(3, 2)):
        assert not isinstance(loss.centers, torch.nn.Parameter)
        assert "centers" in dict(loss.named_buffers())
        assert not list(loss.parameters())
    assert "center" in dict(DeepSVDDLoss(2).named_buffers())


# -------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def digits():
    X, y = digits_images()
    rng = np.random.default_rng(0)
    id_rows = rng.permutation(np.flatnonzero(y < 5))[:300]
    ood_rows = rng.permutation(np.flatnonzero(y >= 5))[:150]
    return X[id_rows], y[id_rows].astype(np.int64), X[ood_rows]


TRAINING = {
    "CenterLoss": (CenterLoss, {"n_classes": 5, "n_dim": 5}, False),
    "CACLoss": (CACLoss, {"n_classes": 5}, False),
    "IILoss": (IILoss, {"n_classes": 5, "n_dim": 5}, False),
    "MCHADLoss": (MCHADLoss, {"n_classes": 5, "n_dim": 5, "margin": 1.0}, True),
    "DeepSVDDLoss": (DeepSVDDLoss, {"n_dim": 5}, False),
    "DeepSADLoss": (DeepSADLoss, {"n_dim": 5}, True),
}


@pytest.mark.parametrize("name", list(TRAINING))
def test_trains_a_digits_cnn_through_the_net(name, digits):
    X, y, X_out = digits
    criterion, kwargs, with_outliers = TRAINING[name]
    start = np.random.default_rng(1).normal(size=(5, 5))
    if "initial_centers" in criterion.__init__.__code__.co_varnames:
        kwargs = {**kwargs, "initial_centers": start}
    net = OODNeuralNetClassifier(
        DigitsCNN(n_classes=5, width=8),
        criterion=criterion,
        **{f"criterion__{key}": value for key, value in kwargs.items()},
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=4,
        batch_size=32,
        outlier_ratio=1.0,
        train_split=None,
        verbose=0,
        random_state=0,
    )
    net.fit(X, y, outliers=X_out if with_outliers else None)
    losses = net.history[:, "train_loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    centers = net.criterion_.centers.detach().numpy()
    assert np.all(np.isfinite(centers))
    learned = [p for group in net.optimizer_.param_groups for p in group["params"]]
    is_learned = any(p is net.criterion_.centers for p in learned)
    if name in ("CenterLoss", "MCHADLoss"):
        # skorch hands the criterion's parameters to the optimizer: they move
        assert is_learned
        assert not np.allclose(centers, start, atol=1e-3)
    else:
        assert not is_learned
    # the paired detector scores the network's outputs against these centres
    logits = net.forward(X).detach().numpy()
    det = CACScore(magnitude=10.0) if name == "CACLoss" else CenterDistance(net)
    scores = det.fit(logits).score_samples(logits)
    assert np.all(np.isfinite(scores))


def test_skorch_rebuilds_the_criterion_and_its_optimizer_entry(digits):
    X, y, _ = digits
    net = OODNeuralNetClassifier(
        DigitsCNN(n_classes=5, width=4),
        criterion=CenterLoss,
        criterion__n_classes=5,
        criterion__n_dim=5,
        max_epochs=1,
        batch_size=64,
        train_split=None,
        verbose=0,
        random_state=0,
    ).fit(X[:64], y[:64])
    old = net.criterion_.centers
    net.set_params(criterion__radius=1.0)
    new = net.criterion_.centers
    assert net.criterion_.radius == 1.0 and new is not old
    learned = [p for group in net.optimizer_.param_groups for p in group["params"]]
    assert any(p is new for p in learned)
    assert not any(p is old for p in learned)
    assert "radius=1.0" in repr(net.criterion_)
