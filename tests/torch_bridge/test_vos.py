"""VOSRegLoss: float64 references, the virtual-outlier sampler, pytorch-ood
0.4.0 cross-checks, and a short DigitsCNN training through the net."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import numpy as np
import torch
from _torch_helpers import digits_images
from scipy.special import log_softmax, logsumexp

from sklearn_ood.torch import (
    DigitsCNN,
    OODNeuralNetClassifier,
    VOSRegLoss,
    WithFeatures,
)


def _batch(n_in, n_out, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n_in + n_out, n_classes))
    target = np.concatenate(
        [rng.integers(0, n_classes, n_in), -np.ones(n_out, dtype=np.int64)]
    )
    order = rng.permutation(n_in + n_out)
    return logits[order], target[order]


def _ref_weighted_energy(logits, w):
    return -logsumexp(logits, axis=1, b=np.maximum(w, 0.0)[None, :])


def _ref_vos(logits, target, loss, extra_out_energy=()):
    w = loss.weights_energy.weight.detach().double().numpy()[0]
    a = loss.logistic_regression.weight.detach().double().numpy()[:, 0]
    b = loss.logistic_regression.bias.detach().double().numpy()
    is_in = target >= 0
    energy = _ref_weighted_energy(logits, w)
    e_out = np.concatenate([energy[~is_in], np.asarray(extra_out_energy)])
    ce = -log_softmax(logits[is_in], axis=1)[np.arange(is_in.sum()), target[is_in]]
    if len(e_out) == 0:
        reg = 0.0
    else:
        e = np.concatenate([energy[is_in], e_out])
        labels = np.r_[np.ones(is_in.sum(), int), np.zeros(len(e_out), int)]
        lr_logits = e[:, None] * a[None, :] + b[None, :]
        reg = -log_softmax(lr_logits, axis=1)[np.arange(len(e)), labels]
    if loss.reduction == "sum":
        return ce.sum() + loss.alpha * np.sum(reg)
    return (ce.mean() if len(ce) else 0.0) + loss.alpha * np.mean(reg)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n_in, n_out", [(6, 8), (7, 0), (0, 5)])
def test_real_outliers_match_float64_reference(reduction, n_in, n_out):
    logits, target = _batch(n_in, n_out)
    torch.manual_seed(0)
    loss = VOSRegLoss(n_classes=3, alpha=0.3, reduction=reduction).double()
    got = loss(torch.tensor(logits), torch.tensor(target))
    np.testing.assert_allclose(got.item(), _ref_vos(logits, target, loss), rtol=1e-12)


def test_real_outliers_match_pytorch_ood():
    po_loss = pytest.importorskip("pytorch_ood.loss")
    logits, target = _batch(6, 8)
    logits, target = torch.tensor(logits, dtype=torch.float32), torch.tensor(target)
    torch.manual_seed(0)
    ours = VOSRegLoss(n_classes=3, alpha=0.2)
    theirs = po_loss.VOSRegLoss(
        ours.logistic_regression, ours.weights_energy, alpha=0.2
    )
    torch.testing.assert_close(ours(logits, target), theirs(logits, target))


def _feed(loss, n_batches, n_classes=3, n_features=4, per_class=2, seed=0):
    """Batches of ``per_class`` rows per class; returns the last batch's loss."""
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(n_features, n_classes)
    for _ in range(n_batches):
        feats = torch.randn(n_classes * per_class, n_features, generator=gen)
        feats += 3 * torch.arange(n_classes).repeat_interleave(per_class)[:, None]
        target = torch.arange(n_classes).repeat_interleave(per_class)
        value = loss((head(feats), feats, head), target)
    return value, head


def test_queues_fill_then_virtual_outliers_join():
    torch.manual_seed(0)
    loss = VOSRegLoss(n_classes=3, sample_number=4, select=2, sample_from=50)
    value, _ = _feed(loss, 1)
    assert not loss.queues_full() and value.item() > 0  # CE only: no outlier yet
    _feed(loss, 1, seed=1)
    assert loss.queues_full()
    assert loss.queue.shape == (3, 4, 4)
    # FIFO: the queue holds the last 4 features of each class, oldest first
    gen = torch.Generator().manual_seed(1)
    second = torch.randn(6, 4, generator=gen)
    torch.testing.assert_close(loss.queue[0, 2:], second[:2])
    _feed(loss, 1, seed=2)
    torch.testing.assert_close(loss.queue[0, :2], second[:2])


def test_synthesis_keeps_the_lowest_likelihood_draws():
    torch.manual_seed(0)
    loss = VOSRegLoss(n_classes=3, sample_number=5, select=3, sample_from=400)
    _feed(loss, 3)
    queue = loss.queue.double()
    means = queue.mean(1)
    centred = (queue - means[:, None]).reshape(-1, 4)
    cov = centred.T @ centred / len(centred) + 1e-4 * torch.eye(4, dtype=queue.dtype)
    torch.manual_seed(1)
    virtual = loss._synthesize().double()
    assert virtual.shape == (9, 4)
    # replay the draws: the kept ones are the 3 least likely of each class
    torch.manual_seed(1)
    z = torch.randn(3, 400, 4, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    for c in range(3):
        draws = means[c] + z[c] @ chol.T
        dist = torch.distributions.MultivariateNormal(means[c], covariance_matrix=cov)
        logp = dist.log_prob(draws)
        kept = dist.log_prob(virtual[3 * c : 3 * c + 3])
        assert kept.max() <= torch.sort(logp).values[2] + 1e-4


def test_synthesis_matches_pytorch_ood_given_the_same_virtual_outliers(monkeypatch):
    po_vos = pytest.importorskip("pytorch_ood.loss.vos")
    torch.manual_seed(0)
    ours = VOSRegLoss(n_classes=3, alpha=0.1, sample_number=4, select=1, sample_from=30)
    head = torch.nn.Linear(4, 3)
    theirs = po_vos.VirtualOutlierSynthesizingRegLoss(
        ours.logistic_regression,
        ours.weights_energy,
        fc=head,
        alpha=0.1,
        sample_number=4,
        select=1,
        sample_from=30,
    )
    gen = torch.Generator().manual_seed(3)
    target = torch.arange(3).repeat_interleave(2)
    for step in range(4):
        feats = torch.randn(6, 4, generator=gen) + 2 * target[:, None]
        logits = head(feats)
        if step >= 2:  # queues full: same virtual outliers for both
            virtual = ours._synthesize()
            monkeypatch.setattr(ours, "_synthesize", lambda v=virtual: v)
            monkeypatch.setattr(theirs, "_sample_virtual_outliers", lambda v=virtual: v)
        a = ours((logits, feats, head), target)
        b = theirs(logits, feats, target)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ours.queue, theirs.data_dict)
        monkeypatch.undo()


def test_gradient_reaches_head_and_loss_parameters():
    torch.manual_seed(0)
    loss = VOSRegLoss(n_classes=3, sample_number=2, sample_from=20)
    value, head = _feed(loss, 3)
    value.backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert loss.logistic_regression.weight.grad is not None
    assert loss.weights_energy.weight.grad.abs().sum() > 0


def test_parameter_and_input_errors():
    with pytest.raises(ValueError, match='reduction must be "mean" or "sum"'):
        VOSRegLoss(n_classes=2, reduction="none")
    with pytest.raises(ValueError, match="select .* must not exceed"):
        VOSRegLoss(n_classes=2, select=5, sample_from=3)
    with pytest.raises(ValueError, match="n_classes must be an integer"):
        VOSRegLoss(n_classes=0)
    with pytest.raises(ValueError, match="built for n_classes=2"):
        VOSRegLoss(n_classes=2)(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="third model output must be the head"):
        VOSRegLoss(n_classes=2)(
            (torch.zeros(2, 2), torch.zeros(2, 3), "fc"), torch.tensor([0, 1])
        )


def test_vos_trains_a_digits_cnn():
    X, y = digits_images()
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.flatnonzero(y < 5))[:300]
    torch.manual_seed(0)
    net = OODNeuralNetClassifier(
        WithFeatures(DigitsCNN(n_classes=5, width=8)),
        criterion=VOSRegLoss,
        criterion__n_classes=5,
        criterion__sample_number=8,
        criterion__sample_from=200,
        optimizer=torch.optim.Adam,
        lr=5e-3,
        max_epochs=4,
        batch_size=32,
        train_split=None,
        verbose=0,
        random_state=0,
    ).fit(X[idx], y[idx])
    losses = net.history[:, "train_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert net.criterion_.queues_full()
    proba = net.predict_proba(X[:10])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(net.predict(X[:10])) <= set(range(5))
