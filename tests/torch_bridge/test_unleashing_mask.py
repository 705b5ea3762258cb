"""Unleashing Mask: the level estimate and UMAP's learned masks."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")

import numpy as np
from _torch_helpers import MLP
from scipy.special import logsumexp
from torch import nn
from torch.nn.utils import parametrize

from sklearn_ood.torch import (
    DigitsCNN,
    TorchFeatureTransformer,
    add_learnable_masks,
    apply_masks,
    estimate_um_level,
)


def _data(n=40, n_in=6, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, n_in)), rng.randint(n_classes, size=n)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(n_in=6, n_hidden=8, n_out=3).double()


def _reference_level(model, X, y, keep, seed):
    """The masked MLP built by hand; its mean CE in NumPy float64."""
    rng = np.random.RandomState(seed)
    params = []
    for layer in (model.hidden[0], model.head):  # module order
        W = layer.weight.detach().numpy().copy()
        u = rng.uniform(-1, 1, size=W.shape)
        j = int((1 - keep) * W.size)
        W.flat[np.argsort(np.abs(u).ravel())[:j]] = 0
        params.append((W, layer.bias.detach().numpy()))
    (W1, b1), (W2, b2) = params
    logits = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2
    ce = logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
    return ce.mean()


# ----------------------------------------------------------- estimate_um_level
@pytest.mark.parametrize("keep", [0.965, 0.8, 0.5])
def test_estimate_matches_float64_reference(keep):
    model = _mlp()
    X, y = _data()
    level = estimate_um_level(model, X, y, keep=keep, batch_size=7, random_state=3)
    assert isinstance(level, float)
    np.testing.assert_allclose(
        level, _reference_level(model, X, y, keep, 3), rtol=1e-12
    )


def test_estimate_keep_one_is_plain_cross_entropy():
    model = _mlp()
    X, y = _data()
    level = estimate_um_level(model, torch.as_tensor(X), y, keep=1.0, random_state=0)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(
            model(torch.as_tensor(X)), torch.as_tensor(y)
        )
    assert level == pytest.approx(float(expected), rel=1e-12)


def test_estimate_mask_count_per_layer(monkeypatch):
    # 0.965 keeps n - int(0.035 n) weights of each layer, as the UM repository.
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)).double()
    X, y = _data(n_in=10)
    seen = []
    original = torch.Tensor.mul_

    def spy(self, other):
        if other.shape == self.shape and self.ndim == 2:
            seen.append((self.numel(), int((other == 0).sum())))
        return original(self, other)

    monkeypatch.setattr(torch.Tensor, "mul_", spy)
    estimate_um_level(model, X, y, random_state=0)
    monkeypatch.undo()
    assert seen == [(200, int(0.035 * 200)), (60, int((1 - 0.965) * 60))]
    assert seen[0][1] == 7 and seen[1][1] == 2  # int(7.000...01), int(2.1)


def test_estimate_seeded_and_ignores_outlier_rows():
    model = _mlp()
    X, y = _data()
    a = estimate_um_level(model, X, y, keep=0.7, random_state=5)
    assert a == estimate_um_level(model, X, y, keep=0.7, random_state=5)
    assert a != estimate_um_level(model, X, y, keep=0.7, random_state=6)
    rng = np.random.RandomState(0)
    X_aux = np.vstack([X, rng.normal(size=(5, 6))])
    y_aux = np.concatenate([y, -np.ones(5, dtype=int)])
    assert estimate_um_level(model, X_aux, y_aux, keep=0.7, random_state=5) == a


def test_estimate_leaves_module_unchanged():
    model = DigitsCNN(n_classes=3, width=4)
    model.train()
    model.block2.eval()  # a mixed mode, restored exactly
    flags = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    X = torch.rand(10, 1, 8, 8)
    y = np.arange(10) % 3
    level = estimate_um_level(model, X, y, random_state=0)
    assert np.isfinite(level)
    assert [m.training for m in model.modules()] == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.requires_grad for p in model.parameters())


def test_estimate_uses_eval_mode():
    # Dropout 0.9 in training mode would make the estimate random.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.9), nn.Linear(8, 3))
    model.train()
    X, y = _data()
    X = X.astype(np.float32)
    a = estimate_um_level(model, X, y, keep=1.0)
    b = estimate_um_level(model, X, y, keep=1.0)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(
            model.eval()(torch.as_tensor(X)), torch.as_tensor(y)
        )
    assert a == b == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep": 0.0}, "keep"),
        ({"keep": 1.5}, "keep"),
        ({"keep": True}, "keep"),
        ({"batch_size": 0}, "batch_size"),
        ({"y": [0, 1]}, "one label per sample"),
        ({"y": np.full(40, 3)}, "label 3"),
        ({"y": np.full(40, -1)}, "no in-distribution rows"),
        ({"y": np.full(40, 0.5)}, "integer class labels"),
    ],
)
def test_estimate_errors(kwargs, message):
    X, y = _data()
    kwargs = {"y": y, **kwargs}
    with pytest.raises(ValueError, match=message):
        estimate_um_level(_mlp(), X, random_state=0, **kwargs)


def test_estimate_needs_a_layer_to_mask():
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv"):
        estimate_um_level(nn.Identity(), np.zeros((3, 3)), [0, 1, 2])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        estimate_um_level("model", np.zeros((3, 3)), [0, 1, 2])


# ----------------------------------------------------------------------- UMAP
def _masks(masked):
    return {
        name: m.parametrizations.weight[0].mask().detach()
        for name, m in masked.named_modules()
        if parametrize.is_parametrized(m, "weight")
    }


@pytest.mark.parametrize("keep", [0.8, 0.5, 1.0])
def test_mask_keeps_exact_count_per_layer(keep):
    model = DigitsCNN(n_classes=3, width=4)
    masked = add_learnable_masks(model, keep=keep, random_state=0)
    masks = _masks(masked)
    layers = {
        n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
    }
    assert set(masks) == set(layers)  # every conv and the head
    for name, mask in masks.items():
        n = layers[name].weight.numel()
        assert mask.shape == layers[name].weight.shape
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert int(mask.sum()) == n - int((1 - keep) * n)
        scores = dict(masked.named_modules())[name].parametrizations.weight[0].scores
        kept = scores.detach().abs()[mask.bool()]
        dropped = scores.detach().abs()[~mask.bool()]
        if len(dropped):
            assert kept.min() >= dropped.max()  # the largest |scores| are kept


def test_masked_forward_equals_masked_weights():
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4).eval()
    masked = add_learnable_masks(model, keep=0.6, random_state=1).eval()
    by_hand = copy.deepcopy(model)
    masks = _masks(masked)
    with torch.no_grad():
        for name, layer in by_hand.named_modules():
            if name in masks:
                layer.weight.mul_(masks[name])
        x = torch.rand(5, 1, 8, 8)
        torch.testing.assert_close(masked(x), by_hand(x), rtol=0, atol=0)
        # and the model differs from the unmasked one
        assert not torch.allclose(masked(x), model(x))


def test_only_scores_train():
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4)
    masked = add_learnable_masks(model, keep=0.8, random_state=0)
    trainable = [n for n, p in masked.named_parameters() if p.requires_grad]
    assert trainable and all(
        n.endswith("parametrizations.weight.0.scores") for n in trainable
    )
    frozen = {
        n: p.detach().clone()
        for n, p in masked.named_parameters()
        if not n.endswith("scores")
    }
    assert any("bn" in n or "block1.1" in n for n in frozen)  # batch norm too
    scores = {
        n: p.detach().clone()
        for n, p in masked.named_parameters()
        if n.endswith("scores")
    }
    optimizer = torch.optim.SGD(
        masked.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 3
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(masked(x), y).backward()
        optimizer.step()
    for n, p in masked.named_parameters():
        if n in frozen:
            assert p.grad is None
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, scores[n]), n
    # the caller's model is untouched and still trainable
    assert all(p.requires_grad for p in model.parameters())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_straight_through_gradient():
    torch.manual_seed(0)
    layer = nn.Linear(5, 4).double()
    masked = add_learnable_masks(layer, keep=0.7, random_state=2)
    scores = masked.parametrizations.weight[0].scores
    x, r = (
        torch.randn(3, 5, dtype=torch.float64),
        torch.randn(3, 4, dtype=torch.float64),
    )
    (masked(x) * r).sum().backward()

    # dL/dw_eff, by autograd on the plain layer with the masked weight.
    mask = masked.parametrizations.weight[0].mask().detach()
    w_eff = (layer.weight.detach() * mask).requires_grad_(True)
    (nn.functional.linear(x, w_eff, layer.bias.detach()) * r).sum().backward()
    expected = w_eff.grad * layer.weight.detach() * torch.sign(scores.detach())
    torch.testing.assert_close(scores.grad, expected, rtol=1e-12, atol=1e-12)
    # also through the pruned entries (straight through, not zero)
    assert (scores.grad[mask == 0] != 0).any()


def test_training_changes_the_mask():
    torch.manual_seed(0)
    model = MLP(n_in=6, n_hidden=8, n_out=3)
    masked = add_learnable_masks(model, keep=0.5, random_state=0)
    before = _masks(masked)
    optimizer = torch.optim.SGD(masked.parameters(), lr=5.0)
    x, y = torch.randn(32, 6), torch.arange(32) % 3
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(masked(x), y).backward()
        optimizer.step()
    after = _masks(masked)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    for n, mask in after.items():  # still the same count
        assert mask.sum() == before[n].sum()


def test_apply_masks_gives_a_plain_module(tmp_path):
    torch.manual_seed(0)
    model = DigitsCNN(n_classes=3, width=4).eval()
    masked = add_learnable_masks(model, keep=0.7, random_state=0).eval()
    plain = apply_masks(masked)
    for name, module in plain.named_modules():
        assert type(module) is type(dict(model.named_modules())[name]), name
        assert not parametrize.is_parametrized(module)
    assert set(plain.state_dict()) == set(model.state_dict())
    assert all(p.requires_grad for p in plain.parameters())
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), masked(x), rtol=0, atol=0)
    masks = _masks(masked)
    for name, mask in masks.items():
        weight = dict(plain.named_modules())[name].weight
        assert int((weight == 0).sum()) >= int((mask == 0).sum())
    # the masked module still works (the parametrized class is shared)
    with torch.no_grad():
        masked(x)
    assert _masks(masked).keys() == masks.keys()
    # usable like any other module: pickling, torch.save, feature extraction
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    pickle.loads(pickle.dumps(plain))
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    feats = TorchFeatureTransformer(
        plain, layer="penultimate", device="cpu"
    ).fit_transform(x)
    assert feats.shape == (6, 16)


def test_initial_mask_is_the_estimates():
    model = _mlp()
    X, y = _data()
    level = estimate_um_level(model, X, y, keep=0.75, random_state=4)
    plain = apply_masks(add_learnable_masks(model, keep=0.75, random_state=4))
    with torch.no_grad():
        ce = nn.functional.cross_entropy(plain(torch.as_tensor(X)), torch.as_tensor(y))
    assert level == pytest.approx(float(ce), rel=1e-12)


def test_mask_errors():
    model = MLP()
    masked = add_learnable_masks(model, keep=0.8, random_state=0)
    with pytest.raises(ValueError, match="already has parametrized"):
        add_learnable_masks(masked)
    with pytest.raises(ValueError, match="no learnable masks"):
        apply_masks(model)
    with pytest.raises(ValueError, match="keep"):
        add_learnable_masks(model, keep=0)
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv"):
        add_learnable_masks(nn.ReLU())
    with pytest.raises(ValueError, match="apply_masks first"):
        estimate_um_level(masked, *_data())


def test_um_level_refuses_labels_beyond_int64():
    model = nn.Sequential(nn.Linear(3, 2))
    X = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="does not fit in a signed 64-bit int"):
        estimate_um_level(model, X, np.array([0, 2**63], dtype=np.uint64))
