"""NAC against a float64 loop written from the paper's formula and the
authors' thresholds, and against pytorch-ood's NACUE."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import numpy as np
import torch
from _torch_helpers import cnn64, random_images
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_ood.metrics import auroc
from sklearn_ood.torch import NAC

CPU = "cpu"


def _cnn64(seed=0, n_classes=3, **kwargs):
    return cnn64(seed, n_classes, width=4, **kwargs)


def _images(n=30, seed=0, **kwargs):
    return random_images(n, seed, **kwargs)


def _authors_thresholds(m):
    """The M thresholds of the authors' code, written out: log_1000 of M/2
    points evenly spaced in [1, sqrt(1000)], mirrored, the last moved to
    1.01, and 1.2 appended; intervals are [t_j, t_{j+1})."""
    half = m // 2
    x = np.linspace(1.0, np.sqrt(1000.0), half)
    low = np.log(x) / np.log(1000.0)
    t = np.concatenate([low[:-1], (1 - low)[::-1]])
    t[-1] += 1e-2
    return np.append(t, 1.2)


def _states_reference(model, X, layers, steepness):
    """hat z of each sample and layer, one sample at a time, float64."""
    products = _products_reference(model, X, layers)
    return [1 / (1 + np.exp(-alpha * v)) for v, alpha in zip(products, steepness)]


class _Recorder:
    """Forward hook that keeps a module's output."""

    def __init__(self, maps, name):
        self.maps, self.name = maps, name

    def __call__(self, module, args, output):
        self.maps[self.name] = output


def _products_reference(model, X, layers):
    """z * dKL/dz of each sample and layer, one sample at a time, float64."""
    modules = dict(model.named_modules())
    out = {name: [] for name in layers}
    for x in torch.as_tensor(X):
        maps = {}
        handles = [
            modules[name].register_forward_hook(_Recorder(maps, name))
            for name in layers
        ]
        logits = model(x[None])
        for h in handles:
            h.remove()
        p = torch.softmax(logits[0], 0)
        u = torch.full_like(p, 1 / len(p))
        kl = (u * (u.log() - p.log())).sum()  # KL(u || softmax)
        grads = torch.autograd.grad(kl, [maps[name] for name in layers])
        for name, g in zip(layers, grads):
            z = maps[name][0].detach().numpy()
            g = g[0].numpy()
            if z.ndim > 1:  # (C, H, W): sum over the positions, then multiply
                z, g = z.reshape(len(z), -1).sum(1), g.reshape(len(g), -1).sum(1)
            out[name].append(z * g)
    return [np.array(out[name]) for name in layers]


def _interval(t, value):
    """Index j of the authors' interval [t_j, t_{j+1}) holding ``value``."""
    return [j for j in range(len(t) - 1) if t[j] <= value < t[j + 1]][0]


def _coverage_reference(states, counts, t, r, minus):
    total = np.zeros(len(states))
    for i, row in enumerate(states):
        for n, value in enumerate(row):
            total[i] += min((counts[n, _interval(t, value)] - minus) / r, 1.0)
    return total / states.shape[1]


def _nac_reference(states_fit, states_test, n_bins, min_count):
    """Histograms by explicit loops over samples, neurons and intervals."""
    scores = np.zeros(len(states_test[0]))
    loo = np.zeros(len(states_fit[0]))
    for fit, test, m, r in zip(states_fit, states_test, n_bins, min_count):
        t = _authors_thresholds(m)
        counts = np.zeros((fit.shape[1], m - 1))
        for row in fit:
            for n, value in enumerate(row):
                counts[n, _interval(t, value)] += 1
        scores += _coverage_reference(test, counts, t, r, 0)
        loo += _coverage_reference(fit, counts, t, r, 1)
    return scores / len(n_bins), loo / len(n_bins)


def test_nac_matches_the_loop_reference():
    model = _cnn64()
    X_fit, X_test = _images(40), np.r_[_images(10, seed=1), 3 * _images(5, seed=2)]
    layers, steepness = ["block2", "pool"], [10.0, 300.0]
    n_bins, min_count = [20, 50], [3, 2]
    det = NAC(model, layers, n_bins, steepness, min_count, batch_size=7, device=CPU)
    det.fit(X_fit)
    fit_states = _states_reference(model, X_fit, layers, steepness)
    test_states = _states_reference(model, X_test, layers, steepness)
    expected, loo = _nac_reference(fit_states, test_states, n_bins, min_count)
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-12)
    assert dict(det.layer_sizes_) == {"block2": 8, "pool": 16}
    assert [c.shape for c in det.bin_counts_] == [(8, 18), (16, 48)]
    assert all(c.sum() == 40 * len(c) for c in det.bin_counts_)
    # offset_: the fit samples are scored without their own counts.
    assert det.offset_ == pytest.approx(np.percentile(loo, 5), rel=1e-12)
    # The edges are the authors' thresholds less the interval above 1.
    for edges, m in zip(det.bin_edges_, n_bins):
        np.testing.assert_allclose(edges[:-1], _authors_thresholds(m)[:-2])
        assert edges[0] == 0.0 and edges[-1] == 1.0


def test_nac_auto_steepness_is_the_inverse_standard_deviation():
    model, X_fit, X_test = _cnn64(), _images(40), _images(10, seed=1)
    layers = ["block1", "block3", "logits"]
    det = NAC(model, layers, min_count=3, batch_size=9, device=CPU).fit(X_fit)
    products = _products_reference(model, X_fit, ["block1", "block3", "fc"])
    steepness = [1 / v.std() for v in products]
    np.testing.assert_allclose(det.steepness_, steepness, rtol=1e-10)
    fixed = NAC(model, layers, steepness=steepness, min_count=3, device=CPU)
    np.testing.assert_allclose(
        fixed.fit(X_fit).score_samples(X_test), det.score_samples(X_test)
    )


def test_nac_states_are_squashed_products_of_pooled_maps():
    """Summing z and its gradient over positions before the product (the
    authors' code) is not the sum of the product (pytorch-ood)."""
    model, X = _cnn64(), _images(8)
    det = NAC(model, "block3", steepness=1.0, device=CPU).fit(X)
    (states,) = next(det._state_batches(det._check_inputs(X, reset=False)))
    (expected,) = _states_reference(model, X, ["block3"], [1.0])
    np.testing.assert_allclose(states, expected, rtol=1e-12)
    assert states.shape == (8, 16) and np.all((states > 0) & (states < 1))


def test_nac_agrees_with_pytorch_ood(monkeypatch):
    nac = pytest.importorskip("pytorch_ood.detector.nac")
    model = _cnn64()
    X_fit, X_test = _images(40), np.r_[_images(10, seed=1), 3 * _images(5, seed=2)]
    n_bins, steepness, min_count = 20, 50.0, 4
    ours = NAC(model, ["pool", "fc"], n_bins, steepness, min_count, device=CPU)
    scores = ours.fit(X_fit).score_samples(X_test)

    # Alignment: pytorch-ood's geometric bins replaced by the authors' (M - 2
    # bins), on 2-D layer outputs (no pooling, where the two differ).
    edges = ours.bin_edges_[0]

    def authors_bins(z_hat, m):
        assert m == n_bins - 2
        idx = np.searchsorted(edges[1:-1], z_hat.cpu().numpy(), side="right")
        return torch.as_tensor(idx, dtype=torch.long)

    monkeypatch.setattr(nac, "_bin_indices_geometric", authors_bins)
    theirs = nac.NACUE(model, [model.pool, model.fc], n_bins - 2, steepness, min_count)
    theirs.fit(DataLoader(TensorDataset(torch.as_tensor(X_fit)), batch_size=16))
    expected = theirs.predict(torch.as_tensor(X_test)).numpy()
    # pytorch-ood sums the two layers' coverages and negates them.
    np.testing.assert_allclose(scores, -expected / 2, rtol=1e-12)
    for ours_counts, stats in zip(ours.bin_counts_, theirs._stats):
        np.testing.assert_array_equal(ours_counts, stats.counts.numpy())


def test_nac_separates_digits_from_noise(digits_cnn):
    model, X_train, y_train, X_test, _ = digits_cnn
    det = NAC(model, ["block3", "penultimate"], device=CPU).fit(X_train, y_train)
    noise = np.random.default_rng(0).random((100, 1, 8, 8)).astype(np.float32)
    y = np.r_[np.zeros(len(X_test), int), -np.ones(100, int)]
    scores = det.score_samples(np.concatenate([X_test, noise]))
    assert scores.dtype == np.float32
    assert auroc(y, scores) > 0.9


def test_nac_logits_layer_and_ood_rows_ignored():
    model, X = _cnn64(), _images(20)
    det = NAC(model, "logits", 10, 100.0, 2, device=CPU).fit(X)
    # z * dKL/dz of the logits is f * (softmax(f) - 1/K): no hook needed.
    with torch.no_grad():
        f = model(torch.as_tensor(X))
        expected = torch.sigmoid(100 * f * (torch.softmax(f, 1) - 1 / 3)).numpy()
    (states,) = next(det._state_batches(det._check_inputs(X, reset=False)))
    np.testing.assert_allclose(states, expected, rtol=1e-10)
    X_ood = 5 * _images(6, seed=4)
    both = clone(det).fit(
        np.concatenate([X, X_ood]), np.r_[np.zeros(20, int), -np.ones(6, int)]
    )
    for a, b in zip(both.bin_counts_, det.bin_counts_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(both.score_samples(X_ood), det.score_samples(X_ood))


def test_nac_leaves_the_model_untouched_and_handles_inplace_relu():
    model, X = _cnn64(dropout=0.5), _images(20)
    model.train()
    model.block2.eval()
    flags = [m.training for m in model.modules()]
    for p in model.block1.parameters():  # a frozen part, too
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    det = NAC(model, ["block1.1", "block3"], device=CPU)
    model.block1[2].inplace = True  # ReLU(inplace=True) right after block1.1
    det.fit(X).score_samples(X)
    model.block1[2].inplace = False
    reference = clone(det).fit(X).score_samples(X)
    np.testing.assert_array_equal(det.score_samples(X), reference)
    assert [m.training for m in model.modules()] == flags
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.block1.parameters()] == [False] * 3
    with torch.inference_mode():
        np.testing.assert_array_equal(det.score_samples(X), reference)


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.side = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        self.side(x)  # computed, never used
        return self.fc(self.lin(self.lin(x)))


def test_nac_errors():
    X = _images()
    model = _cnn64()
    with pytest.raises(ValueError, match="even"):
        NAC(model, "block3", n_bins=21, device=CPU).fit(X)
    with pytest.raises(ValueError, match="one value per layer"):
        NAC(model, ["block2", "block3"], steepness=[1.0], device=CPU).fit(X)
    with pytest.raises(ValueError, match="integers"):
        NAC(model, "block3", min_count=[2.5], device=CPU).fit(X)
    with pytest.raises(ValueError, match="min_count"):
        NAC(model, "block3", min_count=0, device=CPU).fit(X)
    with pytest.raises(ValueError, match="steepness"):
        NAC(model, "block3", steepness=[-1.0], device=CPU).fit(X)
    with pytest.raises(ValueError, match="Unknown layer 'blok3'"):
        NAC(model, "blok3", device=CPU).fit(X)
    X_tab = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match="ran 2 times"):
        NAC(_Twice().double(), "lin", device=CPU).fit(X_tab)
    with pytest.raises(ValueError, match="ran 0 times"):
        NAC(_Twice().double(), "unused", device=CPU).fit(X_tab)
    with pytest.raises(ValueError, match="does not depend on the layer 'side'"):
        NAC(_Twice().double(), "side", device=CPU).fit(X_tab)
