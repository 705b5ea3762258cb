"""RankFeat against a float64 NumPy reference (SVD per sample) and
pytorch-ood's RankFeat."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import copy

import numpy as np
import torch
from _torch_helpers import cnn64, random_images
from scipy.special import logsumexp
from torch import nn

from sklearn_ood.torch import RankFeat

CPU = "cpu"


def _cnn64(seed=0, n_classes=3, **kwargs):
    return cnn64(seed, n_classes, width=4, **kwargs)


def _images(n=12, seed=0, **kwargs):
    return random_images(n, seed, **kwargs)


def _logits_without_rank1(model, x, layer):
    """One sample: the layer's C x HW map less sigma_1 u_1 v_1^T by NumPy's
    SVD, then the rest of the network on it."""
    module = dict(model.named_modules())[layer]

    def replace(m, args, out):
        F = out[0].numpy().reshape(out.shape[1], -1)
        U, S, Vt = np.linalg.svd(F)
        F = F - S[0] * np.outer(U[:, 0], Vt[0])
        return torch.as_tensor(F.reshape(out.shape))

    handle = module.register_forward_hook(replace)
    try:
        with torch.no_grad():
            return model(torch.as_tensor(x)[None])[0].numpy()
    finally:
        handle.remove()


def _rankfeat_reference(model, X, layers, temperature):
    scores = []
    for x in X:
        logits = np.mean([_logits_without_rank1(model, x, lay) for lay in layers], 0)
        scores.append(temperature * logsumexp(logits / temperature))
    return np.array(scores)


@pytest.mark.parametrize(
    "layers, temperature", [("block3", 1.0), (["block3", "block2"], 2.5)]
)
def test_rankfeat_matches_the_numpy_reference(layers, temperature):
    model, X = _cnn64(), _images()
    det = RankFeat(model, layers, temperature, batch_size=5, device=CPU).fit(X)
    names = [layers] if isinstance(layers, str) else layers
    expected = _rankfeat_reference(model, X, names, temperature)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)
    assert det.layers_ == names


def test_rankfeat_agrees_with_pytorch_ood():
    detector = pytest.importorskip("pytorch_ood.detector")
    model, X = _cnn64(), _images()

    def backbone(x):
        return model.block3(model.block2(model.block1(x)))

    def head(maps):
        return model.fc(model.dropout(model.pool(maps)))

    theirs = detector.RankFeat(backbone, head).predict(torch.as_tensor(X))
    ours = RankFeat(model, "block3", device=CPU).fit(X).score_samples(X)
    np.testing.assert_allclose(ours, -theirs.numpy(), rtol=1e-10)


def test_rankfeat_of_a_rank_one_map_is_the_energy_of_zero_features():
    """A layer whose maps are rank 1 per sample (one channel) is zeroed: the
    logits are then the model's on a zero map."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1), nn.Flatten(), nn.Linear(64, 3)
    ).double()
    X = _images(6)
    det = RankFeat(model, "0", device=CPU).fit(X)
    with torch.no_grad():
        logits = model[2](torch.zeros(1, 64, dtype=torch.float64))
    expected = torch.logsumexp(logits, 1).item()
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-12)


def test_rankfeat_on_a_trained_model_in_float32(digits_cnn):
    """On the small digits CNN the rank-1 part carries much of the class
    evidence (AUROC against noise about 0.5, below Energy's): no separation
    is asserted, only the float32 path against the float64 one."""
    model, X_train, y_train, X_test, _ = digits_cnn
    det = RankFeat(model, ["block3", "block2"], device=CPU).fit(X_train, y_train)
    scores = det.score_samples(X_test)
    assert scores.dtype == np.float32
    expected = _rankfeat_reference(
        _double(model), X_test[:20].astype(np.float64), ["block3", "block2"], 1.0
    )
    np.testing.assert_allclose(scores[:20], expected, rtol=1e-4)
    assert det.offset_ == pytest.approx(
        np.percentile(det.score_samples(X_train).astype(np.float64), 5), rel=1e-5
    )


def _double(model):
    return copy.deepcopy(model).double()


def test_rankfeat_leaves_the_model_untouched():
    model, X = _cnn64(dropout=0.5), _images(20)
    model.train()
    model.block2.eval()
    flags = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    det = RankFeat(model, ["block2", "block3"], device=CPU).fit(X)
    scores = det.score_samples(X)
    assert [m.training for m in model.modules()] == flags
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    assert not model.block3._forward_hooks  # hooks removed
    with torch.no_grad():
        plain = torch.logsumexp(model.eval()(torch.as_tensor(X)), 1).numpy()
    assert not np.allclose(scores, plain)  # the removal changes the logits


class _Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(self.conv(self.conv(x)).flatten(1))


def test_rankfeat_errors():
    X = _images()
    model = _cnn64()
    with pytest.raises(ValueError, match=r"produced shape \(5, 16\)"):
        RankFeat(model, "pool", batch_size=5, device=CPU).fit(X)
    for layer in ("penultimate", "logits"):
        with pytest.raises(ValueError, match="needs feature maps"):
            RankFeat(model, layer, device=CPU).fit(X)
    with pytest.raises(ValueError, match="Unknown layer 'blok3'"):
        RankFeat(model, "blok3", device=CPU).fit(X)
    with pytest.raises(ValueError, match="ran 2 times"):
        RankFeat(_Reused().double(), "conv", device=CPU).fit(X)
    with pytest.raises(ValueError, match="temperature"):
        RankFeat(model, "block3", temperature=0.0, device=CPU).fit(X)
