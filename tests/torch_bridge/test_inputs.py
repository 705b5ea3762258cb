"""One input check for TorchFeatureTransformer and every model detector.

Regression tests of issue 8: another image size than at fit, integer
inputs, float64 values beyond a float32 model's range, wrongly shaped
tabular rows, and where the model is placed.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import inspect
import re

import numpy as np
import torch
from _torch_helpers import TokenModel
from sklearn.pipeline import Pipeline
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_ood.detectors import Energy
from sklearn_ood.torch import (
    ODIN,
    DigitsCNN,
    GradNorm,
    Gram,
    MahalanobisPreprocessed,
    MCDropout,
    TorchFeatureTransformer,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

_ALL = [
    "TorchFeatureTransformer",
    "ODIN",
    "MahalanobisPreprocessed",
    "MCDropout",
    "GradNorm",
    "Gram",
]


def _estimator(name, model, layer, device="cpu"):
    """One estimator of each kind, small settings; ``layer``: a hidden layer."""
    return {
        "TorchFeatureTransformer": lambda: TorchFeatureTransformer(
            model, batch_size=8, device=device
        ),
        "ODIN": lambda: ODIN(model, 10.0, 0.01, batch_size=8, device=device),
        "MahalanobisPreprocessed": lambda: MahalanobisPreprocessed(
            model, epsilon=0.01, reg_covar=1e-3, batch_size=8, device=device
        ),
        "MCDropout": lambda: MCDropout(
            model, n_samples=3, random_state=0, batch_size=8, device=device
        ),
        "GradNorm": lambda: GradNorm(model, batch_size=8, device=device),
        "Gram": lambda: Gram(model, [layer], powers=2, batch_size=8, device=device),
    }[name]()


def _output(estimator, X):
    if isinstance(estimator, TorchFeatureTransformer):
        return estimator.transform(X)
    return estimator.score_samples(X)


def _cnn():
    torch.manual_seed(0)
    return DigitsCNN(n_classes=3, width=2, dropout=0.5).eval()


def _images(n=20, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, size, size), dtype=np.float32)


def _mlp(n_in=6):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(n_in, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)
    ).eval()


def _rows(n=20, n_features=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


_Y = np.repeat([0, 1], 10)


# ------------------------------------------- a. the sample shape of fit
@pytest.mark.parametrize("name", _ALL)
def test_another_image_size_is_refused_by_every_estimator(name):
    est = _estimator(name, _cnn(), "block2").fit(_images(), _Y)
    assert est.input_shape_ == (1, 8, 8)
    assert not hasattr(est, "n_features_in_")
    message = (
        rf"X has samples of shape \(1, 16, 16\), but {name} was fitted on "
        r"samples of shape \(1, 8, 8\)"
    )
    with pytest.raises(ValueError, match=message):
        _output(est, _images(size=16))  # DigitsCNN itself accepts any size
    with pytest.raises(ValueError, match=message):
        _output(est, TensorDataset(torch.as_tensor(_images(size=16))))


def test_pipeline_fitted_on_8x8_refuses_16x16():
    pipe = Pipeline(
        [("feat", TorchFeatureTransformer(_cnn(), device="cpu")), ("ood", Energy())]
    ).fit(_images())
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        pipe.predict(_images(size=16))


def test_transformer_checks_every_dataloader_batch():
    X = _images(n=12)
    t = TorchFeatureTransformer(_cnn(), device="cpu")
    t.fit(DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=5))
    assert t.input_shape_ == (1, 8, 8)
    np.testing.assert_allclose(
        t.transform(DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=5)),
        t.transform(X),
        rtol=1e-5,
        atol=1e-6,
    )
    big = DataLoader(TensorDataset(torch.as_tensor(_images(size=16))), batch_size=5)
    with pytest.raises(ValueError, match=r"samples of shape \(1, 16, 16\)"):
        t.transform(big)


@pytest.mark.parametrize("name", _ALL)
def test_tabular_width_is_checked_by_every_estimator(name):
    est = _estimator(name, _mlp(), "1").fit(_rows(), _Y)
    assert est.input_shape_ == (6,) and est.n_features_in_ == 6
    with pytest.raises(ValueError, match=f"X has 7 features, but {name} is expecting"):
        _output(est, _rows(n_features=7))
    with pytest.raises(ValueError, match=r"samples of shape \(1, 6\)"):
        _output(est, _rows()[:, None])  # nn.Linear would accept (N, 1, 6)


# ------------------------------------- d. the model refuses the fit input
@pytest.mark.parametrize("name", _ALL)
def test_model_error_on_the_first_fit_batch_is_a_value_error(name):
    est = _estimator(name, _mlp(n_in=6), "1")
    message = (
        r"The model rejected the input given to fit: X has samples of shape "
        r"\(5,\), and Sequential raised RuntimeError"
    )
    with pytest.raises(ValueError, match=message) as info:
        est.fit(_rows(n_features=5), _Y)
    assert isinstance(info.value.__cause__, RuntimeError)  # chained


# ----------------------------------------------------- b. integer inputs
@pytest.mark.parametrize("name", _ALL)
def test_integer_images_give_a_value_error_that_says_to_convert(name):
    X_uint8 = (_images() * 255).astype(np.uint8)
    est = _estimator(name, _cnn(), "block2")
    with pytest.raises(ValueError, match="convert X to floating point and scale"):
        est.fit(X_uint8, _Y)
    # Fitted on floats, then given integers: the same answer.
    est.fit(_images(), _Y)
    with pytest.raises(ValueError, match="convert X to floating point and scale"):
        _output(est, X_uint8)
    with pytest.raises(ValueError, match="convert X to floating point and scale"):
        _output(est, torch.as_tensor(X_uint8, dtype=torch.int64))


def test_transformer_preprocess_can_scale_integer_images():
    X = _images()
    X_uint8 = np.round(X * 255).astype(np.uint8)
    model = _cnn()
    t = TorchFeatureTransformer(
        model, device="cpu", preprocess=lambda x: x.float() / 255
    ).fit(X_uint8)
    expected = TorchFeatureTransformer(model, device="cpu").fit_transform(
        X_uint8.astype(np.float32) / 255
    )
    np.testing.assert_allclose(t.transform(X_uint8), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["TorchFeatureTransformer", "GradNorm", "Gram"])
def test_integer_token_ids_reach_the_model_unchanged(name):
    tokens = np.random.default_rng(0).integers(0, 20, size=(20, 7))
    torch.manual_seed(0)
    model = TokenModel().eval()
    est = _estimator(name, model, "mix").fit(tokens, _Y)
    out = _output(est, tokens)
    assert np.all(np.isfinite(out))
    if name == "TorchFeatureTransformer":
        with torch.no_grad():
            expected = model(torch.as_tensor(tokens)).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    # A token id beyond the vocabulary: the model's own message is shown.
    with pytest.raises(ValueError, match="IndexError: index out of range") as info:
        _output(est, tokens + 100)
    assert isinstance(info.value.__cause__, IndexError)


@pytest.mark.parametrize("name", ["ODIN", "MahalanobisPreprocessed"])
def test_input_gradient_detectors_refuse_integers_before_running(name):
    calls = []
    model = _cnn()
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with pytest.raises(ValueError, match=f"{name} steps along the gradient"):
        _estimator(name, model, "block2").fit(np.ones((20, 1, 8, 8), int), _Y)
    assert not calls


# -------------------------------- c. values beyond the model's float range
@pytest.mark.parametrize("name", _ALL)
def test_float64_beyond_float32_range_is_not_called_nan(name):
    X = _images().astype(np.float64)
    X[0, 0, 3, 3] = -1e39
    est = _estimator(name, _cnn(), "block2")
    message = r"X holds values up to \|x\| = 1e\+39, beyond the float32 range"
    with pytest.raises(ValueError, match=message):
        est.fit(X, _Y)
    est.fit(X[1:], _Y[1:])
    with pytest.raises(ValueError, match=message):
        _output(est, X)
    # Real infinity is not reported as out of range.
    X[0, 0, 3, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite|NaN or infinity") as info:
        _output(est, X)
    assert "float32 range" not in str(info.value)


def test_values_within_float32_range_are_accepted():
    X = _images().astype(np.float64)
    X[0, 0, 0, 0] = 3e38  # large, but a float32
    t = TorchFeatureTransformer(nn.Flatten(), device="cpu").fit(X)
    assert t.transform(X)[0, 0] == np.float32(3e38)


# ---------------------------------------------------------- 3. the device
def _state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", _ALL)
def test_model_is_moved_to_device_in_place_and_otherwise_untouched(name):
    model = _cnn()
    model.train()
    model.block2.eval()  # a mix of training flags
    flags = [m.training for m in model.modules()]
    before = _state(model)
    moves = []
    to = model.to

    def spy(*args, **kwargs):
        moves.append(args)
        return to(*args, **kwargs)

    model.to = spy
    est = _estimator(name, model, "block2", device="cpu").fit(_images(), _Y)
    _output(est, _images(seed=1))
    assert moves and all(args == (torch.device("cpu"),) for args in moves)
    assert [m.training for m in model.modules()] == flags
    for key, value in _state(model).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    # device=None leaves the model where it is.
    moves.clear()
    est.set_params(device=None).fit(_images(), _Y)
    _output(est, _images(seed=1))
    assert not moves


@needs_cuda
@pytest.mark.parametrize("name", _ALL)
def test_cuda_device_moves_the_model_and_nothing_else(name):
    model = _cnn()
    model.train()
    flags = [m.training for m in model.modules()]
    before = _state(model)
    est = _estimator(name, model, "block2", device="cuda").fit(_images(), _Y)
    assert all(p.is_cuda for p in model.parameters())
    assert all(b.is_cuda for b in model.buffers())
    assert np.all(np.isfinite(_output(est, _images(seed=1))))
    assert [m.training for m in model.modules()] == flags
    for key, value in _state(model).items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", _ALL)
def test_every_docstring_states_the_same_device_rule(name):
    import sklearn_ood.torch as bridge

    doc = " ".join(inspect.getdoc(getattr(bridge, name)).split())
    assert "never copied, and never modified apart from its placement on" in doc
    assert (
        "The model is moved there in place (``model.to(device)``, as "
        "``nn.Module.to`` does) and stays there; its weights, ``.grad`` and "
        "``training`` flags are left as they were." in doc
    )
    assert not re.search(r"never (copied or )?modified\.", doc)
