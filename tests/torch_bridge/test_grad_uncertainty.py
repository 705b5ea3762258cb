"""GradUncertainty against per-sample autograd of the paper's loss, its
closed form on the head, and pytorch-ood's GradUncertainty."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import numpy as np
import sklearn
import torch
from _torch_helpers import cnn64, random_images
from torch import nn

from sklearn_ood.metrics import auroc
from sklearn_ood.torch import GradUncertainty

CPU = "cpu"


def _cnn64(seed=0, n_classes=3, **kwargs):
    return cnn64(seed, n_classes, width=2, **kwargs)


def _images(n=12, seed=0, **kwargs):
    return random_images(n, seed, **kwargs)


def _reference(model, X, names):
    """One sample at a time: BCE(softmax, 1) summed over the classes, plain
    autograd w.r.t. the named parameters, squared L2 norms summed."""
    params = dict(model.named_parameters())
    scores = []
    for x in torch.as_tensor(X):
        p = torch.softmax(model(x[None])[0], 0)
        loss = -(torch.ones_like(p) * p.log() + 0 * (1 - p).log()).sum()
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        scores.append(sum((g**2).sum().item() for g in grads))
    return np.array(scores)


@pytest.mark.parametrize(
    "parameters, names",
    [
        ("all", None),
        (["fc"], ["fc.weight", "fc.bias"]),
        (
            ["block3", "fc.bias"],
            ["block3.0.weight", "block3.1.weight", "block3.1.bias", "fc.bias"],
        ),
    ],
)
def test_grad_uncertainty_matches_per_sample_autograd(parameters, names):
    model, X = _cnn64(), _images()
    det = GradUncertainty(model, parameters, batch_size=5, device=CPU).fit(X)
    names = names or [n for n, _ in model.named_parameters()]
    assert det.parameters_ == names
    expected = _reference(model, X, names)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


def test_grad_uncertainty_head_closed_form():
    """On the head alone: dJ/df = K p - 1, so the score is
    ||K p - 1||^2 (||h||^2 + 1) (weight and bias)."""
    model, X = _cnn64(), _images()
    det = GradUncertainty(model, ["fc"], device=CPU).fit(X)
    with torch.no_grad():
        h = model.pool(model.block3(model.block2(model.block1(torch.as_tensor(X)))))
        g = 3 * torch.softmax(model.fc(h), 1) - 1
    closed = ((g**2).sum(1) * ((h**2).sum(1) + 1)).numpy()
    np.testing.assert_allclose(det.score_samples(X), closed, rtol=1e-10)


@pytest.mark.parametrize("head_only", [False, True])
def test_grad_uncertainty_agrees_with_pytorch_ood(head_only):
    detector = pytest.importorskip("pytorch_ood.detector")
    model, X = _cnn64(), _images()
    select = (lambda name: name.startswith("fc.")) if head_only else None
    theirs = detector.GradUncertainty(model, param_filter=select)
    theirs = theirs.predict(torch.as_tensor(X)).numpy()
    ours = GradUncertainty(model, ["fc"] if head_only else "all", device=CPU)
    np.testing.assert_allclose(ours.fit(X).score_samples(X), -theirs, rtol=1e-10)


class _ItemModel(nn.Module):
    """A model that vmap cannot batch: data-dependent control flow."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 5)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        h = torch.tanh(self.hidden(x))
        if h.sum().item() > 1e9:  # never true; .item() refuses vmap
            h = 2 * h
        return self.fc(h)


def test_grad_uncertainty_falls_back_to_a_loop_and_chunks():
    torch.manual_seed(0)
    model = _ItemModel().double()
    X = np.random.default_rng(0).normal(size=(9, 6))
    names = [n for n, _ in model.named_parameters()]
    expected = _reference(model, X, names)
    det = GradUncertainty(model, batch_size=4, device=CPU).fit(X)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)
    # vmap chunks sized by working_memory give the same scores.
    model, X = _cnn64(), _images()
    det = GradUncertainty(model, device=CPU).fit(X)
    with sklearn.config_context(working_memory=1e-4):
        np.testing.assert_allclose(
            det.score_samples(X), _reference(model, X, det.parameters_), rtol=1e-10
        )


def test_grad_uncertainty_leaves_the_model_untouched():
    model, X = _cnn64(dropout=0.5), _images(20)
    model.train()
    model.block2.eval()
    for p in model.block1.parameters():  # frozen parameters are scored too
        p.requires_grad_(False)
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    det = GradUncertainty(model, ["block1", "fc"], device=CPU).fit(X)
    scores = det.score_samples(X)
    assert [m.training for m in model.modules()] == flags
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.block1.parameters()] == [False] * 3
    # Scored in eval mode (dropout off): deterministic.
    np.testing.assert_array_equal(det.score_samples(X), scores)
    with torch.inference_mode():
        np.testing.assert_array_equal(det.score_samples(X), scores)


def test_grad_uncertainty_ranks_digits_above_other_digits(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    det = GradUncertainty(model, ["fc"], device=CPU).fit(X_train, y_train)
    y = np.r_[np.zeros(len(X_test), int), -np.ones(len(X_ood), int)]
    scores = det.score_samples(np.concatenate([X_test, X_ood]))
    assert scores.dtype == np.float32
    assert auroc(y, scores) > 0.85  # about 0.94 (noise: about 0.5)


def test_grad_uncertainty_errors():
    X = _images()
    model = _cnn64()
    with pytest.raises(ValueError, match="Did you mean 'fc.weight'"):
        GradUncertainty(model, ["fc.weigth"], device=CPU).fit(X)
    with pytest.raises(ValueError, match="has no parameters"):
        GradUncertainty(model, ["pool"], device=CPU).fit(X)
    with pytest.raises(ValueError, match="at least one"):
        GradUncertainty(model, [], device=CPU).fit(X)
    with pytest.raises(ValueError, match="Flatten has no parameters"):
        GradUncertainty(nn.Flatten(), device=CPU).fit(X)
