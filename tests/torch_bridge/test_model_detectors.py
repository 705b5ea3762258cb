"""Detectors that run the model (ODIN, MahalanobisPreprocessed, MCDropout,
GradNorm, Gram) against float64 references written from the papers' formulas.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import copy

import numpy as np
import torch
from _torch_helpers import MLP, NoLinear, cnn64, random_images
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from torch import nn
from torch.utils.data import TensorDataset

from sklearn_ood.detectors import Mahalanobis, MaxSoftmax
from sklearn_ood.metrics import auroc, ood_scorer
from sklearn_ood.torch import (
    ODIN,
    GradNorm,
    Gram,
    MahalanobisPreprocessed,
    MCDropout,
    TorchFeatureTransformer,
)
from sklearn_ood.torch._gram import _gram_values

# The shared trained model must stay on the CPU (other tests call it on CPU
# tensors); CUDA is exercised by test_cuda_matches_cpu.
CPU = "cpu"


def _cnn64(seed=0, n_classes=3, **kwargs):
    return cnn64(seed, n_classes, width=2, **kwargs)


def _images(n=12, seed=0, **kwargs):
    return random_images(n, seed, **kwargs)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ------------------------------------------------------------------ helpers


def _penultimate(model, x):
    return model.pool(model.block3(model.block2(model.block1(x))))


def _noise(n=100, seed=0):
    return np.random.default_rng(seed).random((n, 1, 8, 8)).astype(np.float32)


def _auroc(det, X_id, X_ood):
    y = np.r_[np.zeros(len(X_id), int), -np.ones(len(X_ood), int)]
    return auroc(y, det.score_samples(np.concatenate([X_id, X_ood])))


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model, before):
    after = model.state_dict()
    for name, value in before.items():
        torch.testing.assert_close(after[name].cpu(), value.cpu(), rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------- ODIN
def _odin_reference(model, X, temperature, epsilon, std):
    """One sample at a time, as the authors' code: manual autograd."""
    scores = []
    for x in torch.as_tensor(X):
        x = x[None].clone().requires_grad_(True)
        log_p = torch.log_softmax(model(x) / temperature, dim=1)
        log_p.max().backward()  # d log S_yhat / dx
        step = x.grad.sign() / torch.as_tensor(std).view(1, -1, 1, 1)
        x_tilde = (x + epsilon * step).detach()  # towards a higher softmax
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            p = torch.softmax(model(x_tilde) / temperature, dim=1)
        scores.append(p.max().item())
    return np.array(scores)


@pytest.mark.parametrize("temperature, epsilon", [(1.0, 0.01), (1000.0, 0.0014)])
def test_odin_matches_manual_autograd(temperature, epsilon):
    model, X = _cnn64(in_channels=2), _images(channels=2)
    std = [0.5, 0.25]
    det = ODIN(model, temperature, epsilon, norm_std=std, batch_size=5, device=CPU)
    scores = det.fit(X).score_samples(X)
    assert scores.dtype == np.float64
    expected = _odin_reference(model, X, temperature, epsilon, std)
    np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("temperature", [1.0, 1000.0])
def test_odin_epsilon_zero_is_max_softmax_of_the_logits(digits_cnn, temperature):
    model, _, _, X_test, _ = digits_cnn
    logits = TorchFeatureTransformer(model, device=CPU).fit_transform(X_test)
    expected = MaxSoftmax(temperature).fit(logits).score_samples(logits)
    odin = ODIN(model, temperature, epsilon=0.0, device=CPU).fit(X_test)
    np.testing.assert_array_equal(odin.score_samples(X_test), expected)


def test_odin_step_raises_the_max_softmax(digits_cnn):
    # The sign convention: the perturbed input is classified more confidently.
    model, _, _, X_test, X_ood = digits_cnn
    X = np.concatenate([X_test[:100], X_ood[:100]])
    base = ODIN(model, 1000.0, 0.0, device=CPU).fit(X).score_samples(X)
    stepped = ODIN(model, 1000.0, 0.0014, device=CPU).fit(X).score_samples(X)
    assert np.mean(stepped > base) > 0.95
    wrong_way = ODIN(model, 1000.0, epsilon=-0.0014)
    with pytest.raises(ValueError, match="epsilon"):
        wrong_way.fit(X)


def test_odin_separates_digits_from_noise(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    odin = ODIN(model, 1.0, 0.0014, device=CPU).fit(X_train, y_train)
    assert _auroc(odin, X_test, _noise()) > 0.8  # about 0.9
    assert _auroc(odin, X_test, X_ood) > 0.8  # about 0.96
    assert np.mean(odin.predict(X_train) == -1) == pytest.approx(0.05, abs=0.01)


def test_odin_agrees_with_pytorch_ood():
    detector = pytest.importorskip("pytorch_ood.detector")
    model, X = _cnn64(in_channels=2), _images(channels=2)
    std = [0.5, 0.25]
    ours = ODIN(model, 100.0, 0.01, norm_std=std, device=CPU).fit(X)
    theirs = detector.ODIN(model, eps=0.01, temperature=100.0, norm_std=std)
    expected = -theirs.predict(torch.as_tensor(X)).numpy()  # their outlier score
    np.testing.assert_allclose(ours.score_samples(X), expected, rtol=1e-10)


def test_odin_works_inside_inference_mode():
    model, X = _cnn64(), torch.as_tensor(_images())
    expected = ODIN(model, 10.0, 0.01, device=CPU).fit(X).score_samples(X)
    with torch.inference_mode():
        X_inf = X.clone()
        scores = ODIN(model, 10.0, 0.01, device=CPU).fit(X_inf).score_samples(X_inf)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


# --------------------------------------------------- Mahalanobis + input step
def _gaussian_reference(features, y):
    """Class means and the tied covariance (divided by N), in float64."""
    classes = np.unique(y)
    means = np.stack([features[y == k].mean(0) for k in classes])
    centred = features - means[np.searchsorted(classes, y)]
    return means, centred.T @ centred / len(features)


def test_mahalanobis_preprocessed_matches_manual_autograd():
    model, X = _cnn64(in_channels=2), _images(n=40, channels=2)
    y = np.repeat([0, 1], 20)
    std, epsilon, reg = [0.5, 0.25], 0.02, 1e-2  # reg: some ReLUs are dead
    det = MahalanobisPreprocessed(
        model, epsilon=epsilon, reg_covar=reg, norm_std=std, batch_size=7, device=CPU
    ).fit(X, y)
    X_test = _images(n=9, seed=1, channels=2)

    with torch.no_grad():
        fit_features = _penultimate(model, torch.as_tensor(X)).numpy()
    means, cov = _gaussian_reference(fit_features, y)
    mu = torch.as_tensor(means)
    precision = torch.as_tensor(np.linalg.inv(cov + reg * np.eye(len(cov))))
    expected = []
    for x in torch.as_tensor(X_test):
        x = x[None].clone().requires_grad_(True)
        d = _penultimate(model, x) - mu  # (K, d) differences to each mean
        sq = ((d @ precision) * d).sum(1)
        sq[sq.argmin()].backward()  # the closest class's distance
        step = x.grad.sign() / torch.as_tensor(std).view(1, -1, 1, 1)
        x_tilde = (x - epsilon * step).detach()  # towards that class
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            d = _penultimate(model, x_tilde) - mu
            expected.append(-((d @ precision) * d).sum(1).min().item())
    # The features go through TorchFeatureTransformer, which returns float32.
    np.testing.assert_allclose(det.score_samples(X_test), expected, rtol=1e-4)
    assert det.classes_.tolist() == [0, 1]


def test_mahalanobis_preprocessed_epsilon_zero_is_the_pipeline(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    pipe = Pipeline(
        [
            ("feat", TorchFeatureTransformer(model, "penultimate", device=CPU)),
            ("ood", Mahalanobis()),
        ]
    ).fit(X_train, y_train)
    det = MahalanobisPreprocessed(model, epsilon=0.0, device=CPU)
    det.fit(X_train, y_train)
    X = np.concatenate([X_test, X_ood[:100]])
    np.testing.assert_array_equal(det.score_samples(X), pipe.score_samples(X))
    np.testing.assert_array_equal(det.mahalanobis_.means_, pipe[-1].means_)


def test_mahalanobis_preprocessed_step_decreases_the_distance(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    X = np.concatenate([X_test[:60], X_ood[:60]])
    det = MahalanobisPreprocessed(model, epsilon=0.0, device=CPU)
    base = det.fit(X_train, y_train).score_samples(X)
    stepped = det.set_params(epsilon=0.002).score_samples(X)
    assert np.mean(stepped > base) > 0.95
    assert _auroc(det, X_test, _noise()) > 0.9  # about 1.0


def test_mahalanobis_preprocessed_agrees_with_pytorch_ood(digits_cnn):
    detector = pytest.importorskip("pytorch_ood.detector")
    model, X_train, y_train, X_test, _ = digits_cnn
    X_train, y_train, X = X_train[:300], y_train[:300], X_test[:50]
    ours = MahalanobisPreprocessed(model, epsilon=0.002, device=CPU)
    ours.fit(X_train, y_train)

    def encoder(x):
        return _penultimate(model, x)

    theirs = detector.MahalanobisODIN(encoder, eps=0.002)
    theirs.fit_features(
        encoder(torch.as_tensor(X_train)).detach(), torch.as_tensor(y_train)
    )
    expected = theirs.predict(torch.as_tensor(X)).detach().numpy()
    # Theirs inverts the undivided scatter (N Sigma) and halves the distance:
    # its outlier score is min_k d_k^2 / (2 N), ours -min_k d_k^2.
    np.testing.assert_allclose(
        ours.score_samples(X), -2 * len(X_train) * expected, rtol=1e-3
    )


# --------------------------------------------------------------- MC dropout
def _mc_reference(model, X, n_samples, seed, batch_size):
    """Dropout on, the rest in eval mode; a manual loop with the same seed."""
    flags = [m.training for m in model.modules()]
    model.eval()
    model.dropout.train()
    means, variances = [], []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for xb in torch.as_tensor(X).split(batch_size):
            p = torch.stack([torch.softmax(model(xb), dim=1) for _ in range(n_samples)])
            means.append(p.mean(0).amax(1))
            variances.append(p.var(0, unbiased=True).mean(1))
    for module, flag in zip(model.modules(), flags):
        module.training = flag
    return torch.cat(means).numpy(), -torch.cat(variances).numpy()


def test_mc_dropout_matches_manual_loop():
    model, X = _cnn64(dropout=0.5), _images(n=13)
    mean_ref, var_ref = _mc_reference(model, X, 7, seed=3, batch_size=5)
    kwargs = dict(n_samples=7, random_state=3, batch_size=5, device=CPU)
    mean = MCDropout(model, mode="mean", **kwargs).fit(X).score_samples(X)
    var = MCDropout(model, mode="var", **kwargs).fit(X).score_samples(X)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-12)
    np.testing.assert_allclose(var, var_ref, rtol=1e-9, atol=1e-15)
    assert np.all(var < 0) and np.all(mean <= 1)


def test_mc_dropout_is_reproducible_and_leaves_the_global_rng_alone():
    model, X = _cnn64(dropout=0.5), _images()
    det = MCDropout(model, n_samples=5, random_state=0, device=CPU).fit(X)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = det.score_samples(X)
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(det.score_samples(X), first)
    other = clone(det).set_params(random_state=1).fit(X).score_samples(X)
    assert not np.allclose(other, first)
    # random_state=None draws a fresh seed (from NumPy) at every call.
    det.set_params(random_state=None)
    assert not np.array_equal(det.score_samples(X), det.score_samples(X))
    assert torch.equal(torch.get_rng_state(), state)


def test_mc_dropout_agrees_with_pytorch_ood():
    mcd = pytest.importorskip("pytorch_ood.detector").MCD
    model, X = _cnn64(dropout=0.5), _images()
    x = torch.as_tensor(X)
    torch.manual_seed(7)
    mean, var = mcd.run(model, x, samples=6)
    # Their outlier scores are -mean and var; ours are mean and -var.
    for mode, expected in (("mean", mean.numpy()), ("var", -var.numpy())):
        ours = MCDropout(model, 6, mode, random_state=7, device=CPU).fit(X)
        np.testing.assert_allclose(ours.score_samples(X), expected, rtol=1e-10)
    assert not model.training


def test_mc_dropout_needs_dropout():
    X = _images()
    with pytest.raises(ValueError, match="no torch.nn dropout module"):
        MCDropout(_cnn64(dropout=0.0), device=CPU).fit(X)  # p = 0 only
    with pytest.raises(ValueError, match="no torch.nn dropout module"):
        MCDropout(NoLinear(), device=CPU).fit(X)
    with pytest.raises(ValueError, match="n_samples >= 2"):
        MCDropout(_cnn64(dropout=0.5), n_samples=1, mode="var", device=CPU).fit(X)


# ----------------------------------------------------------------- GradNorm
def _gradnorm_reference(model, head, X, temperature):
    """Per-sample autograd of KL(u || softmax(f(x) / T)) w.r.t. the head."""
    scores = []
    for x in torch.as_tensor(X):
        log_p = torch.log_softmax(model(x[None]) / temperature, dim=1)[0]
        u = torch.full_like(log_p, 1.0 / len(log_p))
        kl = (u * (u.log() - log_p)).sum()
        (grad,) = torch.autograd.grad(kl, head.weight)
        scores.append(grad.abs().sum().item())
    return np.array(scores)


class _ScaledOutput(nn.Module):
    """A model that rescales its head's output: the head is not the output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return 3.0 * self.model(x) - 1.0


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_gradnorm_matches_per_sample_autograd(temperature):
    model, X = _cnn64(), _images()
    det = GradNorm(model, temperature, batch_size=5, device=CPU).fit(X)
    expected = _gradnorm_reference(model, model.fc, X, temperature)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)
    # The closed form: ||(p - u) / T||_1 * ||h||_1.
    with torch.no_grad():
        h = _penultimate(model, torch.as_tensor(X))
        p = torch.softmax(model.fc(h) / temperature, dim=1)
    closed = ((p - 1 / 3).abs().sum(1) / temperature * h.abs().sum(1)).numpy()
    np.testing.assert_allclose(det.score_samples(X), closed, rtol=1e-10)

    wrapped = _ScaledOutput(model)
    det = GradNorm(wrapped, temperature, layer="model.fc", device=CPU).fit(X)
    expected = _gradnorm_reference(wrapped, model.fc, X, temperature)
    np.testing.assert_allclose(det.score_samples(X), expected, rtol=1e-10)


def test_gradnorm_agrees_with_pytorch_ood():
    detector = pytest.importorskip("pytorch_ood.detector")
    model, X = _cnn64(), _images()
    theirs = detector.GradNorm(
        model, param_filter=lambda name: name == "fc.weight", temperature=2.0
    ).predict(torch.as_tensor(X))
    ours = GradNorm(model, 2.0, device=CPU).fit(X).score_samples(X)
    np.testing.assert_allclose(ours, -theirs.numpy(), rtol=1e-10)


def test_gradnorm_layer_errors():
    X = _images()
    with pytest.raises(ValueError, match="has no nn.Linear"):
        GradNorm(NoLinear(), device=CPU).fit(X)
    with pytest.raises(ValueError, match="is not an nn.Linear"):
        GradNorm(_cnn64(), layer="block1", device=CPU).fit(X)
    with pytest.raises(ValueError, match="Did you mean 'fc'"):
        GradNorm(_cnn64(), layer="fcc", device=CPU).fit(X)
    # `layer` names a submodule, as TorchFeatureTransformer's layer does.
    assert GradNorm(_cnn64(), device=CPU).fit(X).layer_ == "fc"
    assert "head" not in GradNorm(_cnn64()).get_params()


def test_gradnorm_ranks_digits_above_other_digits(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    det = GradNorm(model, device=CPU).fit(X_train, y_train)
    assert _auroc(det, X_test, X_ood) > 0.75  # about 0.87


# --------------------------------------------------------------------- Gram
def _gram_reference(model, layers, powers, X_fit, X_test):
    """A loop-style NumPy version of the paper's formulas (bounds, LOO)."""

    def features(X):
        maps = {}
        hooks = [
            dict(model.named_modules())[name].register_forward_hook(
                lambda m, a, out, name=name: maps.__setitem__(name, out)
            )
            for name in layers
        ]
        with torch.no_grad():
            logits = model(torch.as_tensor(X))
        for hook in hooks:
            hook.remove()
        rows = []
        for i in range(len(X)):
            per_layer = []
            for name in layers:
                F = maps[name][i].double().numpy()
                F = F.reshape(F.shape[0], -1)
                values = []
                for p in powers:
                    G = (F**p) @ (F**p).T  # the C x C Gram matrix
                    r = G.sum(1)
                    values.append(np.sign(r) * np.abs(r) ** (1 / p))
                per_layer.append(np.concatenate(values))
            rows.append(per_layer)
        return rows, logits.argmax(1).numpy()

    def deviation(value, low, high):
        below = np.maximum(low - value, 0) / (np.abs(low) + 1e-6)
        above = np.maximum(value - high, 0) / (np.abs(high) + 1e-6)
        return (below + above).sum()

    fit_rows, fit_pred = features(X_fit)
    n, n_layers = len(X_fit), len(layers)

    def group(cls, exclude=None):
        members = [i for i in range(n) if fit_pred[i] == cls]
        if len(members) < 2:  # too few: all fit samples
            members = list(range(n))
        return [i for i in members if i != exclude]

    def bounds(members, layer):
        values = np.stack([fit_rows[i][layer] for i in members])
        return values.min(0), values.max(0)

    loo = np.zeros((n, n_layers))
    for i in range(n):
        for layer in range(n_layers):
            low, high = bounds(group(fit_pred[i], exclude=i), layer)
            loo[i, layer] = deviation(fit_rows[i][layer], low, high)
    expected = loo.mean(0)
    expected[expected == 0] = 1.0

    test_rows, test_pred = features(X_test)
    scores = []
    for row, cls in zip(test_rows, test_pred):
        total = 0.0
        for layer in range(n_layers):
            low, high = bounds(group(cls), layer)
            total += deviation(row[layer], low, high) / expected[layer]
        scores.append(-total)
    fit_scores = -(loo / expected).sum(1)
    return np.array(scores), fit_scores, expected


def test_gram_matches_loop_reference():
    model = _cnn64(n_classes=3)
    with torch.no_grad():
        model.fc.bias[2] = -50.0  # class 2 is never predicted: pooled bounds
    X_fit, X_test = (
        _images(n=25),
        np.concatenate([_images(n=6, seed=1), 3 * _images(n=4, seed=2)]),
    )
    layers, powers = ["block1", "block3", "pool"], [1, 2, 5]
    det = Gram(model, layers, powers=powers, batch_size=7, device=CPU).fit(X_fit)
    scores, fit_scores, expected = _gram_reference(model, layers, powers, X_fit, X_test)
    np.testing.assert_allclose(det.expected_deviation_, expected, rtol=1e-10)
    np.testing.assert_allclose(det.score_samples(X_test), scores, rtol=1e-10)
    assert det.offset_ == pytest.approx(np.percentile(fit_scores, 5), rel=1e-10)
    assert det.class_counts_[2] == 0 and det.class_counts_.sum() == 25
    assert list(det.feature_blocks_.items()) == [
        ("block1", 6),
        ("block3", 24),
        ("pool", 24),
    ]
    assert det.score_samples(X_fit).max() == 0.0  # in-sample: inside the bounds
    assert det.offset_ < 0  # but the threshold comes from held-out deviations


def test_gram_values_agree_with_pytorch_ood():
    gram = pytest.importorskip("pytorch_ood.detector").Gram
    feature = torch.as_tensor(_images(n=5, channels=3)) - 0.3  # some negatives
    ours = _gram_values(feature, np.arange(1, 5))
    theirs = torch.cat([gram._gram_vector(feature, p) for p in range(1, 5)], 1)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_gram_separates_digits_from_noise(digits_cnn):
    model, X_train, y_train, X_test, _ = digits_cnn
    det = Gram(model, ["block1", "block2"], powers=4, device=CPU)
    det.fit(X_train[:300], y_train[:300])
    assert _auroc(det, X_test[:100], _noise()) > 0.9  # about 1.0


def test_gram_ignores_ood_rows_in_fit():
    model, X = _cnn64(), _images(n=20)
    X_ood = _images(n=5, seed=3) * 4
    det = Gram(model, ["block2"], powers=3, device=CPU).fit(X)
    both = Gram(model, ["block2"], powers=3, device=CPU).fit(
        np.concatenate([X, X_ood]), np.r_[np.zeros(20, int), -np.ones(5, int)]
    )
    np.testing.assert_array_equal(both.min_, det.min_)
    np.testing.assert_array_equal(both.score_samples(X_ood), det.score_samples(X_ood))


def test_gram_errors():
    X = _images()
    with pytest.raises(ValueError, match="Unknown layer 'blok2'"):
        Gram(_cnn64(), ["blok2"], device=CPU).fit(X)
    with pytest.raises(ValueError, match="1 sample"):
        Gram(_cnn64(), ["block2"], device=CPU).fit(X[:1])
    with pytest.raises(ValueError, match="powers"):
        Gram(_cnn64(), ["block2"], powers=[0, 1], device=CPU).fit(X)


# ------------------------------------------------------ shared conventions
def _detectors(model):
    """One of each detector on ``model`` (a DigitsCNN), small settings."""
    return [
        ODIN(model, 10.0, 0.01, batch_size=8, device=CPU),
        MahalanobisPreprocessed(
            model, epsilon=0.01, reg_covar=1e-3, batch_size=8, device=CPU
        ),
        MCDropout(model, n_samples=3, random_state=0, batch_size=8, device=CPU),
        GradNorm(model, batch_size=8, device=CPU),
        Gram(model, ["block2"], powers=3, batch_size=8, device=CPU),
    ]


_NAMES = ["ODIN", "MahalanobisPreprocessed", "MCDropout", "GradNorm", "Gram"]


@pytest.mark.parametrize("index", range(5), ids=_NAMES)
def test_model_is_untouched_and_flags_are_restored(index):
    model, X = _cnn64(dropout=0.5), _images(n=20)
    y = np.repeat([0, 1], 10)
    # A mix of training flags, all to be restored.
    model.train()
    model.block2.eval()
    flags = [m.training for m in model.modules()]
    before = _snapshot(model)
    det = _detectors(model)[index].fit(X, y)
    scores = det.score_samples(_images(n=5, seed=1))
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    assert [m.training for m in model.modules()] == flags
    _assert_untouched(model, before)
    assert det.predict(X).dtype.kind == "i"
    assert set(np.unique(det.predict(X))) <= {-1, 1}


@pytest.mark.parametrize("index", range(5), ids=_NAMES)
def test_clone_shares_the_model(index):
    model = _cnn64(dropout=0.5)
    det = _detectors(model)[index]
    copy_ = clone(det)
    assert copy_.model is model
    assert copy_.get_params()["batch_size"] == 8
    with pytest.raises(NotFittedError):
        copy_.score_samples(_images())


@pytest.mark.parametrize("index", range(5), ids=_NAMES)
def test_input_shape_and_values_are_checked(index):
    model, X = _cnn64(dropout=0.5), _images(n=20)
    y = np.repeat([0, 1], 10)
    det = _detectors(model)[index].fit(X, y)
    assert det.input_shape_ == (1, 8, 8)
    assert not hasattr(det, "n_features_in_")
    with pytest.raises(ValueError, match=r"samples of shape \(1, 6, 6\)"):
        det.score_samples(X[:, :, :6, :6])
    with pytest.raises(ValueError, match="Reshape your data"):
        det.score_samples(X[0, 0, 0])
    X_nan = X.copy()
    X_nan[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.score_samples(X_nan)


@pytest.mark.parametrize("index", range(5), ids=_NAMES)
def test_dataset_tensor_and_array_inputs_agree(index):
    model, X = _cnn64(dropout=0.5), _images(n=20)
    y = np.repeat([0, 1], 10)
    X_t = torch.as_tensor(X)
    dataset = TensorDataset(X_t, torch.as_tensor(y))  # its labels are not used
    det = _detectors(model)[index]
    from_array = clone(det).fit(X, y).score_samples(X)
    from_tensor = clone(det).fit(X_t, y).score_samples(X_t)
    from_dataset = clone(det).fit(dataset, y).score_samples(dataset)
    np.testing.assert_allclose(from_tensor, from_array, rtol=1e-12)
    np.testing.assert_allclose(from_dataset, from_array, rtol=1e-12)
    # OOD rows (y < 0) are dropped from the fit, also from a Dataset.
    y_ood = y.copy()
    y_ood[::4] = -1
    subset = clone(det).fit(dataset, y_ood).score_samples(X)
    reference = clone(det).fit(X[y_ood >= 0], y[y_ood >= 0]).score_samples(X)
    np.testing.assert_allclose(subset, reference, rtol=1e-12)


def test_float32_inputs_give_float32_scores_and_tabular_inputs_work():
    model, X = _cnn64(), _images(dtype=np.float32)
    assert ODIN(model, device=CPU).fit(X).score_samples(X).dtype == np.float32
    torch.manual_seed(0)
    mlp = MLP(n_in=6)
    X_tab = np.random.default_rng(0).normal(size=(30, 6))
    det = ODIN(mlp, 10.0, device=CPU).fit(X_tab)
    assert det.n_features_in_ == 6 and det.input_shape_ == (6,)
    with pytest.raises(ValueError, match="X has 5 features, but ODIN is expecting 6"):
        det.score_samples(X_tab[:, :5])
    with pytest.raises(ValueError, match="norm_std has 2 value"):
        ODIN(mlp, norm_std=[1.0, 2.0], device=CPU).fit(X_tab)


def test_offset_comes_from_a_seeded_sample_of_the_fit_samples():
    model, X = _cnn64(), _images(n=30)
    full = ODIN(model, 10.0, 0.01, device=CPU).fit(X)
    scores = full.score_samples(X)  # float64 input: float64 scores
    assert full.offset_ == pytest.approx(np.percentile(scores, 5), rel=1e-12)
    sampled = ODIN(model, 10.0, 0.01, device=CPU)
    sampled._offset_sample_size = 12
    rows = sampled._offset_row_indices(30)
    dataset = TensorDataset(torch.as_tensor(X))
    for X_fit in (X, dataset):
        offset = sampled.fit(X_fit).offset_
        assert offset == pytest.approx(np.percentile(scores[rows], 5), rel=1e-12)


def test_unknown_layer_and_bad_model_are_clear_errors():
    X = _images()
    with pytest.raises(ValueError, match="Unknown layer 'blok3'"):
        MahalanobisPreprocessed(_cnn64(), layer="blok3", device=CPU).fit(X)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ODIN(lambda x: x).fit(X)
    with pytest.raises(TypeError, match="DataLoader"):
        ODIN(_cnn64()).fit(torch.utils.data.DataLoader(TensorDataset(torch.ones(2, 3))))


def test_grid_search_shares_the_model(digits_cnn):
    model, _, _, X_test, X_ood = digits_cnn
    X = np.concatenate([X_test[:90], X_ood[:90]])
    y = np.r_[np.zeros(90, int), -np.ones(90, int)]
    search = GridSearchCV(
        ODIN(model, device=CPU),
        {"temperature": [1.0, 100.0], "epsilon": [0.0, 0.0014]},
        scoring=ood_scorer("auroc"),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X, y)
    assert search.best_estimator_.model is model
    assert search.best_score_ > 0.8


def test_mc_dropout_copy_of_the_trained_model(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    model = copy.deepcopy(model)
    model.dropout.p = 0.3
    det = MCDropout(model, n_samples=10, random_state=0, device=CPU)
    det.fit(X_train, y_train)
    assert _auroc(det, X_test, _noise()) > 0.8  # about 0.93


@needs_cuda
@pytest.mark.parametrize("index", range(5), ids=_NAMES)
def test_cuda_matches_cpu(index):
    model, X = _cnn64(dropout=0.5).float(), _images(n=20, dtype=np.float32)
    y = np.repeat([0, 1], 10)
    cpu_det = _detectors(model)[index].fit(X, y)
    expected = cpu_det.score_samples(X)
    cuda_det = clone(cpu_det).set_params(device="auto").fit(X, y)
    assert next(model.parameters()).device.type == "cuda"
    state = torch.cuda.get_rng_state()
    scores = cuda_det.score_samples(X)
    assert torch.equal(torch.cuda.get_rng_state(), state)
    if isinstance(cuda_det, MCDropout):  # other RNG: reproducible, not equal
        np.testing.assert_array_equal(cuda_det.score_samples(X), scores)
    else:
        np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-5)
    model.cpu()


# ------------------------------------------------------------- monotonicity
@given(
    data=arrays(
        np.float64,
        (5, 6),
        elements=st.floats(-3, 3, allow_subnormal=False),
    ),
    log_temperature=st.floats(-1, 3),
)
def test_odin_small_step_never_lowers_the_max_softmax(data, log_temperature):
    """A linear classifier: log S_c(x) = (w_c x + b_c) / T - logsumexp is
    concave with Hessian norm at most max ||w_k||^2 / T^2, so a step of
    epsilon * sign(gradient) raises it by at least epsilon * ||g||_1 -
    epsilon^2 * n * max ||w_k||^2 / (2 T^2). With epsilon below that bound,
    ODIN's score (the max softmax at T of the stepped input) never falls."""
    temperature = 10.0**log_temperature
    W, b, x = data[:3], data[3, :3], data[4][None]  # one input of 6 features
    model = nn.Linear(6, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(W))
        model.bias.copy_(torch.as_tensor(b))
    logits = (x @ W.T + b)[0] / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    c = np.argmax(logits)
    gradient = (W[c] - p @ W) / temperature
    curvature = 6 * np.max(np.sum(W**2, axis=1)) / temperature**2
    g1 = np.abs(gradient).sum()
    assume(g1 > 1e-6)
    epsilon = min(1e-3, g1 / max(curvature, 1e-12))
    base = ODIN(model, temperature, 0.0, device=CPU).fit(x).score_samples(x)
    stepped = ODIN(model, temperature, epsilon, device=CPU).fit(x).score_samples(x)
    assert stepped[0] >= base[0] * (1 - 1e-12)
