"""Open-set losses (objectosphere, confidence, background class, energy
margin), their wrapper modules and the BackgroundClass detector: float64
references from the formulas, pytorch-ood 0.4.0 cross-checks, and short
trainings of a DigitsCNN through OODNeuralNetClassifier.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import warnings

import numpy as np
import torch
from _torch_helpers import digits_images
from scipy.special import expit, log_softmax, logsumexp, softmax
from skorch.callbacks import Callback
from torch import nn

from sklearn_ood.detectors import BackgroundClass
from sklearn_ood.torch import (
    BackgroundClassLoss,
    ConfidenceLoss,
    DigitsCNN,
    EnergyMarginLoss,
    ObjectosphereLoss,
    OODNeuralNetClassifier,
    TorchFeatureTransformer,
    WithBackgroundClass,
    WithConfidence,
    WithFeatures,
)

REDUCTIONS = ["mean", "sum", "none"]
COMPOSITIONS = [(5, 10), (6, 0), (0, 7)]


def _batch(n_in, n_out, n_classes=4, n_features=6, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n_in + n_out, n_classes))
    features = rng.standard_normal((n_in + n_out, n_features))
    target = np.concatenate(
        [rng.integers(0, n_classes, n_in), rng.integers(-3, 0, n_out)]
    )
    order = rng.permutation(n_in + n_out)
    return logits[order], features[order], target[order]


def _t(array, dtype=torch.float64):
    return torch.tensor(array, dtype=dtype)


def _ref_ce_rows(logits, target):
    rows = np.zeros(len(target))
    is_in = target >= 0
    rows[is_in] = -log_softmax(logits[is_in], axis=1)[
        np.arange(is_in.sum()), target[is_in]
    ]
    return rows


def _whole(rows, reduction):
    if reduction == "none":
        return rows
    return rows.sum() if reduction == "sum" else rows.mean()


# ---------------------------------------------------------------------------
# Objectosphere
# ---------------------------------------------------------------------------


def _ref_objectosphere(logits, features, target, alpha, xi):
    is_in = target >= 0
    oe = logsumexp(logits, axis=1) - logits.mean(axis=1)
    norm = np.sqrt((features**2).sum(axis=1))
    magnitude = np.where(is_in, np.maximum(0.0, xi - norm) ** 2, norm**2)
    return _ref_ce_rows(logits, target) + np.where(is_in, 0.0, oe) + alpha * magnitude


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
def test_objectosphere_matches_float64_reference(reduction, n_in, n_out):
    logits, features, target = _batch(n_in, n_out)
    loss = ObjectosphereLoss(alpha=0.3, xi=2.5, reduction=reduction)
    got = loss((_t(logits), _t(features)), torch.tensor(target))
    ref = _whole(_ref_objectosphere(logits, features, target, 0.3, 2.5), reduction)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_objectosphere_matches_pytorch_ood(reduction):
    po_loss = pytest.importorskip("pytorch_ood.loss")
    logits, features, target = _batch(6, 9)
    logits, features = _t(logits, torch.float32), _t(features, torch.float32)
    target = torch.tensor(target)
    ours = ObjectosphereLoss(alpha=0.5, xi=2.0, reduction=reduction)
    theirs = po_loss.ObjectosphereLoss(alpha=0.5, xi=2.0, reduction=reduction)
    torch.testing.assert_close(
        ours((logits, features), target), theirs(logits, features, target)
    )


def test_objectosphere_needs_features():
    with pytest.raises(ValueError, match=r"\(logits, features\).*WithFeatures"):
        ObjectosphereLoss()(torch.zeros(2, 3), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="features have 3 rows"):
        ObjectosphereLoss()(
            (torch.zeros(2, 3), torch.zeros(3, 4)), torch.tensor([0, 1])
        )


# ---------------------------------------------------------------------------
# Confidence
# ---------------------------------------------------------------------------


def _ref_confidence(logits, confidence, target, alpha):
    is_in = target >= 0
    rows = np.zeros(len(target))
    p = softmax(logits[is_in], axis=1)[np.arange(is_in.sum()), target[is_in]]
    c = confidence[is_in]
    rows[is_in] = -np.log(c * p + 1 - c) - alpha * np.log(c)
    return rows


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
def test_confidence_matches_float64_reference(reduction, n_in, n_out):
    logits, _, target = _batch(n_in, n_out)
    confidence = np.random.default_rng(1).uniform(0.05, 0.95, len(target))
    loss = ConfidenceLoss(alpha=0.7, reduction=reduction)
    got = loss((_t(logits), _t(confidence[:, None])), torch.tensor(target))
    rows = _ref_confidence(logits, confidence, target, 0.7)
    is_in = target >= 0
    if reduction == "mean":
        ref = rows[is_in].mean() if is_in.any() else 0.0
    else:
        ref = _whole(rows, reduction)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_out", [0, 4])
def test_confidence_matches_pytorch_ood(n_out):
    po_loss = pytest.importorskip("pytorch_ood.loss")
    logits, _, target = _batch(7, n_out)
    confidence = np.random.default_rng(2).uniform(0.05, 0.95, (len(target), 1))
    logits, confidence = _t(logits, torch.float32), _t(confidence, torch.float32)
    target = torch.tensor(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-ood warns that it drops outliers
        theirs = po_loss.ConfidenceLoss(alpha=0.5)(logits, confidence, target)
    ours = ConfidenceLoss(alpha=0.5)((logits, confidence), target)
    torch.testing.assert_close(ours, theirs)


def test_confidence_clips_and_checks_range():
    logits = torch.tensor([[0.0, 30.0]])
    loss = ConfidenceLoss(eps=1e-6)((logits, torch.tensor([[0.0]])), torch.tensor([1]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(-np.log(1e-6))
    with pytest.raises(ValueError, match=r"confidence must lie in \[0, 1\]"):
        ConfidenceLoss()((logits, torch.tensor([[1.5]])), torch.tensor([1]))
    with pytest.raises(ValueError, match="one value per row"):
        ConfidenceLoss()((logits, torch.ones(2, 1)), torch.tensor([1]))
    with pytest.raises(ValueError, match="eps must be < 1"):
        ConfidenceLoss(eps=1.0)


# ---------------------------------------------------------------------------
# Background class
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
def test_background_matches_float64_reference(reduction, n_in, n_out):
    logits, _, target = _batch(n_in, n_out, n_classes=5)
    target = np.where(target >= 4, 3, target)  # 4 ID classes + background
    mapped = np.where(target < 0, 4, target)
    rows = -log_softmax(logits, axis=1)[np.arange(len(target)), mapped]
    ref = _whole(rows, reduction)
    loss = BackgroundClassLoss(reduction=reduction)
    got = loss(_t(logits), torch.tensor(target))
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    split = loss((_t(logits[:, :4]), _t(logits[:, 4:])), torch.tensor(target))
    torch.testing.assert_close(split, got)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_background_matches_pytorch_ood(reduction):
    po_loss = pytest.importorskip("pytorch_ood.loss")
    logits, _, target = _batch(6, 6, n_classes=4)
    target = np.where(target >= 3, 2, target)
    logits, target = _t(logits, torch.float32), torch.tensor(target)
    theirs = po_loss.BackgroundClassLoss(n_classes=3, reduction=reduction)
    torch.testing.assert_close(
        BackgroundClassLoss(reduction=reduction)(logits, target),
        theirs(logits, target),
    )


def test_background_errors():
    with pytest.raises(ValueError, match="has the label 2, but the model has 2 ID"):
        BackgroundClassLoss()(torch.zeros(2, 3), torch.tensor([2, -1]))
    with pytest.raises(ValueError, match="one logit per row"):
        BackgroundClassLoss()(
            (torch.zeros(2, 3), torch.zeros(2, 2)), torch.tensor([0, -1])
        )


def test_background_detector_matches_reference_and_keeps_precision():
    logits = np.random.default_rng(0).normal(scale=4, size=(50, 4))
    ref = softmax(logits, axis=1)[:, :3].sum(axis=1)
    det = BackgroundClass(contamination=0.1).fit(logits)
    np.testing.assert_allclose(det.score_samples(logits), ref, rtol=1e-12)
    # near 0: the relative precision stays (1 - p_bg computed naively is 0)
    tiny = det.score_samples(np.array([[0.0, 0.0, 0.0, 60.0]]))[0]
    assert tiny == pytest.approx(3 * np.exp(-60.0), rel=1e-12)
    assert det.score_samples(logits.astype(np.float32)).dtype == np.float32


# ---------------------------------------------------------------------------
# Energy margin (SCONE)
# ---------------------------------------------------------------------------


def _psi(c, lam, beta):
    return lam * c + beta / 2 * c**2 if beta * c + lam >= 0 else -(lam**2) / (2 * beta)


def _ref_energy_margin(logits, target, w, b, loss, lam=0.0, lam2=0.0):
    is_in = target >= 0
    s = logsumexp(logits, axis=1)
    value = 0.0
    if (~is_in).any():
        value += loss.out_constraint_weight * np.mean(
            expit(-(w * (s[~is_in] - loss.eta) + b))
        )
    if is_in.any():
        l_in = np.mean(expit(w * s[is_in] + b))
        ce = _ref_ce_rows(logits, target)[is_in].mean()
        value += _psi(l_in - loss.false_alarm_cutoff, lam, float(loss.in_penalty))
        value += _psi(
            ce - loss.ce_tol * loss.full_train_loss, lam2, float(loss.ce_penalty)
        )
    return value


@pytest.mark.parametrize("n_in, n_out", COMPOSITIONS)
@pytest.mark.parametrize("lams", [(0.0, 0.0), (0.4, -0.3), (-2.0, 3.0)])
def test_energy_margin_matches_float64_reference(n_in, n_out, lams):
    logits, _, target = _batch(n_in, n_out)
    torch.manual_seed(0)
    loss = EnergyMarginLoss(full_train_loss=0.8, eta=2.0, in_constraint_weight=2.0)
    loss.lam.fill_(lams[0])
    loss.lam2.fill_(lams[1])
    w = loss.logistic_regression.weight.item()
    b = loss.logistic_regression.bias.item()
    got = loss(_t(logits), torch.tensor(target))
    ref = _ref_energy_margin(logits, target, w, b, loss, *lams)
    np.testing.assert_allclose(got.item(), ref, rtol=1e-6)


def test_energy_margin_matches_pytorch_ood_with_updates():
    po_loss = pytest.importorskip("pytorch_ood.loss")
    logits, _, target = _batch(8, 8)
    logits, target = _t(logits, torch.float32), torch.tensor(target)
    torch.manual_seed(0)
    kwargs = dict(full_train_loss=0.5, eta=1.5, ce_tol=1.2, penalty_mult=2.0)
    ours = EnergyMarginLoss(**kwargs)
    theirs = po_loss.EnergyMarginLoss(**kwargs)
    phi = ours.logistic_regression
    is_in = target >= 0
    id_logits, id_target = logits[is_in], target[is_in]
    loader = [(id_logits[:4], id_target[:4]), (id_logits[4:], id_target[4:])]
    for _ in range(3):
        torch.testing.assert_close(ours(logits, target), theirs(logits, target, phi))
        ours.update_hyperparameters(id_logits, id_target)
        theirs.update_hyperparameters(nn.Identity(), loader, phi)
        torch.testing.assert_close(ours.lam, theirs.lam)
        torch.testing.assert_close(ours.lam2, theirs.lam2)
        torch.testing.assert_close(ours.in_penalty, theirs.in_constraint_weight)
        torch.testing.assert_close(ours.ce_penalty, theirs.ce_constraint_weight)
    assert float(theirs.lam2) != 0.0


def test_energy_margin_running_statistics_update():
    logits, _, target = _batch(10, 5)
    logits, target = _t(logits), torch.tensor(target)
    torch.manual_seed(0)
    a = EnergyMarginLoss(full_train_loss=0.2)
    b = EnergyMarginLoss(full_train_loss=0.2)
    b.load_state_dict(a.state_dict())
    a(logits[:7], target[:7])  # grad enabled: statistics recorded
    a(logits[7:], target[7:])
    with torch.no_grad():  # validation batches are not recorded
        a(logits, target)
    a.update_hyperparameters()
    b.update_hyperparameters(logits[target >= 0], target[target >= 0])
    for name in ("lam", "lam2", "in_penalty", "ce_penalty"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name).double().float())
    with pytest.raises(ValueError, match="No ID training rows"):
        a.update_hyperparameters()


def test_energy_margin_parameter_errors():
    with pytest.raises(ValueError, match="false_alarm_cutoff is a fraction"):
        EnergyMarginLoss(full_train_loss=1.0, false_alarm_cutoff=5)
    with pytest.raises(ValueError, match="full_train_loss must be"):
        EnergyMarginLoss(full_train_loss=-1.0)
    with pytest.raises(ValueError, match="ID rows only"):
        EnergyMarginLoss(full_train_loss=1.0).update_hyperparameters(
            torch.zeros(2, 3), torch.tensor([0, -1])
        )


# ---------------------------------------------------------------------------
# Wrapper modules
# ---------------------------------------------------------------------------


def test_with_features_matches_feature_transformer_and_leaves_no_hook():
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4).eval()
    X = np.random.default_rng(0).uniform(size=(6, 1, 8, 8)).astype(np.float32)
    wrapped = WithFeatures(model).eval()
    logits, features = wrapped(torch.from_numpy(X))
    ref = TorchFeatureTransformer(model, layer="penultimate").fit_transform(X)
    np.testing.assert_allclose(features.detach().numpy(), ref, rtol=1e-6)
    torch.testing.assert_close(logits, model(torch.from_numpy(X)))
    wrapped.train()
    out = wrapped(torch.from_numpy(X))
    assert len(out) == 3 and out[2] is model.fc
    torch.testing.assert_close(out[2](out[1]), out[0])
    assert not model.fc._forward_pre_hooks and not model.fc._forward_hooks
    named = WithFeatures(model, layer="block3").eval()(torch.from_numpy(X))
    assert len(named) == 2 and named[1].shape[0] == 6
    with pytest.raises(ValueError, match="layer must be"):
        WithFeatures(model, layer="logits")
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        WithConfidence("model")


def test_with_confidence_and_background_outputs():
    torch.manual_seed(0)
    X = torch.rand(5, 1, 8, 8)
    wrapped = WithConfidence(DigitsCNN(n_classes=3, width=4)).eval()
    logits, confidence = wrapped(X)
    assert logits.shape == (5, 3) and confidence.shape == (5, 1)
    assert bool(((confidence > 0) & (confidence < 1)).all())
    extracted = TorchFeatureTransformer(wrapped, layer="confidence").fit_transform(
        X.numpy()
    )
    np.testing.assert_allclose(extracted, confidence.detach().numpy(), rtol=1e-6)
    model = DigitsCNN(n_classes=4, width=4).eval()
    logits, background = WithBackgroundClass(model)(X)
    torch.testing.assert_close(torch.cat([logits, background], 1), model(X))


# ---------------------------------------------------------------------------
# Training through OODNeuralNetClassifier
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    X, y = digits_images()
    rng = np.random.default_rng(0)
    is_id = y < 5
    idx = rng.permutation(np.flatnonzero(is_id))[:300]
    aux = rng.permutation(np.flatnonzero(~is_id))[:300]
    return X[idx], y[idx], X[aux]


def _fit(module, criterion, digits, epochs=4, **params):
    X, y, X_aux = digits
    net = OODNeuralNetClassifier(
        module,
        criterion=criterion,
        optimizer=torch.optim.Adam,
        lr=5e-3,
        max_epochs=epochs,
        batch_size=32,
        train_split=None,
        verbose=0,
        random_state=0,
        **params,
    )
    net.fit(X, y, outliers=X_aux)
    losses = net.history[:, "train_loss"]
    assert np.all(np.isfinite(losses)), losses
    proba = net.predict_proba(X[:20])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert proba.shape == (20, 5)
    assert set(net.predict(X[:20])) <= set(range(5))
    assert np.all(np.isfinite(net.score_samples(X[:20])))
    return net, losses


def _cnn(n_classes=5):
    torch.manual_seed(0)
    return DigitsCNN(n_classes=n_classes, width=8)


def test_objectosphere_trains_a_digits_cnn(digits):
    net, losses = _fit(
        WithFeatures(_cnn()),
        ObjectosphereLoss,
        digits,
        criterion__alpha=0.05,
        criterion__xi=5.0,
    )
    assert losses[-1] < losses[0]
    X, _, X_aux = digits
    _, feats = net.module_.eval()(torch.from_numpy(X[:100]))
    _, feats_out = net.module_(torch.from_numpy(X_aux[:100]))
    assert feats.norm(dim=1).mean() > feats_out.norm(dim=1).mean()


def test_confidence_trains_a_digits_cnn(digits):
    net, losses = _fit(WithConfidence(_cnn()), ConfidenceLoss, digits)
    assert losses[-1] < losses[0]
    confidence = TorchFeatureTransformer(net.module_, layer="confidence").fit_transform(
        digits[0][:50]
    )
    assert confidence.shape == (50, 1) and np.all((confidence > 0) & (confidence < 1))


def test_background_class_trains_a_digits_cnn(digits):
    net, losses = _fit(WithBackgroundClass(_cnn(6)), BackgroundClassLoss, digits)
    assert losses[-1] < losses[0]
    X, _, X_aux = digits
    logits = TorchFeatureTransformer(net.module_.model, layer="logits")
    det = BackgroundClass().fit(logits.fit_transform(X))
    s_in = det.score_samples(logits.transform(X))
    s_out = det.score_samples(logits.transform(X_aux))
    assert s_in.mean() > s_out.mean()


class _UpdateMultipliers(Callback):
    def on_epoch_end(self, net, **kwargs):
        net.criterion_.update_hyperparameters()


def test_energy_margin_trains_a_digits_cnn(digits):
    _, losses = _fit(_cnn(), EnergyMarginLoss, digits, criterion__full_train_loss=1.0)
    assert losses[-1] < losses[0]
    net, _ = _fit(
        _cnn(),
        EnergyMarginLoss,
        digits,
        epochs=2,
        criterion__full_train_loss=0.05,
        callbacks=[("multipliers", _UpdateMultipliers())],
    )
    # CE above 2 * 0.05 after two epochs: its multiplier and weight grew
    assert float(net.criterion_.lam2) > 0
    assert float(net.criterion_.ce_penalty) > 1.0
    params = {id(p) for _, p in net.get_all_learnable_params()}
    assert id(net.criterion_.logistic_regression.weight) in params


def test_net_checks_the_width_of_the_first_output(digits):
    # a background model needs one output per ID class plus one
    with pytest.raises(ValueError, match=r"logits of shape \(96, 4\).*one logit"):
        _fit(WithBackgroundClass(_cnn(5)), BackgroundClassLoss, digits, epochs=1)
