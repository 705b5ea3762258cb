"""TorchFeatureTransformer against manual forward passes of the same model."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import subprocess
import sys

import numpy as np
import scipy.sparse as sp
import torch
from _torch_helpers import (
    MLP,
    ItemsOnly,
    NoLinear,
    ReusedReLU,
    RowStats,
    TokenModel,
    TupleOutput,
    count_forwards,
)
from sklearn.base import clone
from sklearn.covariance import EllipticEnvelope
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_estimator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_ood.detectors import Energy
from sklearn_ood.metrics import auroc, ood_scorer
from sklearn_ood.torch import DigitsCNN, TorchFeatureTransformer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _cnn(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = DigitsCNN(n_classes=5, width=4, **kwargs)
    # Non-trivial batch-norm statistics, so that train and eval mode differ.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def _images(n=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def _eval_forward(model, x):
    """Reference: a plain forward pass in eval mode, flags restored."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x))
    model.train(was_training)
    return out


def _manual_blocks(model, x):
    """The DigitsCNN's intermediate tensors, computed by hand in eval mode."""
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(x)
        b1 = model.block1(x)
        b2 = model.block2(b1)
        b3 = model.block3(b2)
        pen = model.pool(b3)
        logits = model.fc(pen)
    return {
        "block1": b1,
        "block2": b2,
        "block3": b3,
        "penultimate": pen,
        "logits": logits,
    }


# ------------------------------------------------------------------ layers
def test_logits_are_the_model_output():
    model, X = _cnn(), _images()
    out = TorchFeatureTransformer(model).fit_transform(X)
    assert out.dtype == np.float32 and out.shape == (10, 5)
    np.testing.assert_allclose(out, _eval_forward(model, X).numpy(), rtol=1e-6)


def test_penultimate_is_the_input_of_the_last_linear():
    model, X = _cnn(), _images()
    t = TorchFeatureTransformer(model, layer="penultimate").fit(X)
    assert t.layers_ == {"penultimate": ("fc", "input")}
    assert t.feature_blocks_ == {"penultimate": 16}
    expected = _manual_blocks(model, X)["penultimate"].numpy()
    np.testing.assert_allclose(t.transform(X), expected, rtol=1e-6)

    mlp = MLP()
    X_tab = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
    t = TorchFeatureTransformer(mlp, layer="penultimate").fit(X_tab)
    assert t.layers_["penultimate"] == ("head", "input")
    with torch.no_grad():
        expected = mlp.hidden(torch.from_numpy(X_tab)).numpy()
    np.testing.assert_allclose(t.transform(X_tab), expected, rtol=1e-6)


def test_several_layers_come_from_one_forward_pass():
    model, X = _cnn(), _images(n=10)
    layers = ["block2", "block3", "penultimate", "logits"]
    t = TorchFeatureTransformer(model, layer=layers, batch_size=4).fit(X)
    counter, handle = count_forwards(model)
    out = t.transform(X)
    handle.remove()
    assert counter["n"] == 3  # ceil(10 / 4) batches, one forward each
    assert list(t.feature_blocks_.items()) == [
        ("block2", 8),
        ("block3", 16),
        ("penultimate", 16),
        ("logits", 5),
    ]
    assert t.n_features_out_ == out.shape[1] == 45
    manual = _manual_blocks(model, X)
    expected = np.hstack(
        [
            manual["block2"].mean((2, 3)).numpy(),
            manual["block3"].mean((2, 3)).numpy(),
            manual["penultimate"].numpy(),
            manual["logits"].numpy(),
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    names = t.get_feature_names_out()
    assert names.dtype == object and len(names) == 45
    assert list(names[:2]) == ["block2__0", "block2__1"]
    assert names[8] == "block3__0" and names[24] == "penultimate__0"
    assert list(names[-5:]) == [f"logits__{i}" for i in range(5)]
    # The block sizes split the columns as MultiMahalanobis(groups=...) expects.
    bounds = np.cumsum(list(t.feature_blocks_.values()))
    assert bounds[-1] == out.shape[1]


def test_forward_stops_after_the_last_hooked_layer():
    model, X = _cnn(), _images()
    t = TorchFeatureTransformer(model, layer=["block1", "penultimate"]).fit(X)
    fc_outputs = []
    handle = model.fc.register_forward_hook(lambda m, args, out: fc_outputs.append(1))
    out = t.transform(X)
    handle.remove()
    assert not fc_outputs  # the head never ran
    manual = _manual_blocks(model, X)
    expected = np.hstack([manual["block1"].mean((2, 3)), manual["penultimate"]])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "pooling, reduce",
    [
        ("avg", lambda t: t.mean(dim=(2, 3))),
        ("max", lambda t: t.amax(dim=(2, 3))),
        ("flatten", lambda t: t.reshape(len(t), -1)),
        (lambda t: t[:, :, 0, 0], lambda t: t[:, :, 0, 0]),
    ],
    ids=["avg", "max", "flatten", "callable"],
)
def test_pooling_matches_manual_reduction(pooling, reduce):
    model, X = _cnn(), _images()
    t = TorchFeatureTransformer(model, layer=["block2", "logits"], pooling=pooling)
    out = t.fit_transform(X)
    manual = _manual_blocks(model, X)
    block2 = reduce(manual["block2"]).numpy()
    assert t.feature_blocks_["block2"] == block2.shape[1]
    np.testing.assert_allclose(out[:, : block2.shape[1]], block2, rtol=1e-5, atol=1e-6)
    # 2-D outputs are never pooled.
    np.testing.assert_allclose(out[:, block2.shape[1] :], manual["logits"], rtol=1e-5)


def test_channels_last_sequences_need_a_callable_or_flatten():
    model = TokenModel()
    tokens = np.random.default_rng(0).integers(0, 20, size=(9, 7))
    with torch.no_grad():
        mixed = model.mix(model.embed(torch.from_numpy(tokens)))  # (N, L, C)
    mean_over_tokens = TorchFeatureTransformer(
        model, layer="mix", pooling=lambda t: t.mean(1)
    ).fit_transform(tokens)
    np.testing.assert_allclose(mean_over_tokens, mixed.mean(1), rtol=1e-6)
    flat = TorchFeatureTransformer(model, layer="mix", pooling="flatten")
    np.testing.assert_allclose(flat.fit_transform(tokens), mixed.reshape(9, -1))
    # Integer token ids reach the embedding as they are.
    logits = TorchFeatureTransformer(model).fit_transform(tokens)
    np.testing.assert_allclose(logits, _eval_forward(model, tokens), rtol=1e-6)


# ------------------------------------------------------------------ inputs
def test_numpy_tensor_dataset_and_loader_inputs_agree():
    model, X = _cnn(), _images(n=11)
    y = np.arange(11)
    t = TorchFeatureTransformer(model, layer=["block3", "logits"], batch_size=4)
    expected = t.fit_transform(X)
    X_tensor = torch.from_numpy(X)
    read_only = X.copy()
    read_only.flags.writeable = False
    inputs = {
        "tensor": X_tensor,
        "float64": X.astype(np.float64),
        "list": X.tolist(),
        "read-only": read_only,
        "strided": np.asfortranarray(X),
        "TensorDataset(x, y)": TensorDataset(X_tensor, torch.from_numpy(y)),
        "Dataset of arrays": ItemsOnly(X),
    }
    for name, data in inputs.items():
        np.testing.assert_array_equal(t.transform(data), expected, err_msg=name)
        refit = clone(t).fit(data)
        assert refit.feature_blocks_ == t.feature_blocks_, name
    # A DataLoader keeps its own batches (of 5 here): equal up to rounding.
    loader = DataLoader(TensorDataset(X_tensor, torch.from_numpy(y)), batch_size=5)
    np.testing.assert_allclose(t.transform(loader), expected, rtol=1e-5, atol=1e-7)
    assert clone(t).fit(loader).feature_blocks_ == t.feature_blocks_


def test_batch_size_does_not_change_the_result():
    model, X = _cnn(), _images(n=13)
    layers = ["block1", "penultimate", "logits"]
    reference = TorchFeatureTransformer(model, layer=layers, batch_size=128)
    expected = reference.fit_transform(X)
    for batch_size in (1, 3, 13):
        t = TorchFeatureTransformer(model, layer=layers, batch_size=batch_size)
        np.testing.assert_allclose(t.fit_transform(X), expected, rtol=1e-5, atol=1e-6)


def test_tabular_input_sets_n_features_in():
    mlp = MLP()
    X = np.random.default_rng(0).normal(size=(5, 6))
    t = TorchFeatureTransformer(mlp).fit(X)
    assert t.n_features_in_ == 6
    with pytest.raises(ValueError, match="X has 5 features"):
        t.transform(X[:, :5])
    images = TorchFeatureTransformer(_cnn()).fit(_images())
    assert not hasattr(images, "n_features_in_")
    t.fit(torch.zeros(3, 6))  # refit on a tensor
    assert t.n_features_in_ == 6


def test_float32_output_for_float64_model():
    model = MLP().double()
    X = np.random.default_rng(0).normal(size=(5, 6))
    out = TorchFeatureTransformer(model).fit_transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _eval_forward(model, X).numpy(), rtol=1e-6)


# ------------------------------------------------------------- model state
def test_training_flags_are_restored():
    model, X = _cnn(dropout=0.5), _images()
    model.train()
    model.block2.eval()  # a mixed state, per submodule
    flags = {name: m.training for name, m in model.named_modules()}
    t = TorchFeatureTransformer(model, layer=["block2", "logits"])
    out = t.fit_transform(X)
    assert {name: m.training for name, m in model.named_modules()} == flags
    # Eval mode was used: dropout off and batch norm on running statistics.
    np.testing.assert_allclose(out[:, 8:], _eval_forward(model, X), rtol=1e-5)
    np.testing.assert_array_equal(t.transform(X), out)


def test_training_flags_and_hooks_are_restored_after_an_exception():
    model, X = _cnn(), _images()
    model.train()
    t = TorchFeatureTransformer(model, layer=["block1", "logits"]).fit(X)
    flags = {name: m.training for name, m in model.named_modules()}

    def explode(module, args, output):
        raise RuntimeError("boom inside forward")

    handle = model.block3.register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="boom inside forward"):
        t.transform(X)
    handle.remove()
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    )


def test_extraction_runs_in_inference_mode():
    model, X = _cnn(), _images()
    seen = []

    def preprocess(batch):
        seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return batch * 2.0

    t = TorchFeatureTransformer(model, batch_size=4, preprocess=preprocess)
    out = t.fit_transform(X)
    assert seen and all(inference and not grad for inference, grad in seen)
    assert all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(out, _eval_forward(model, 2 * X), rtol=1e-5)


def test_cpu_autocast_bfloat16():
    model, X = _cnn(), _images()
    t = TorchFeatureTransformer(model, layer=["block2", "logits"])
    full = t.fit_transform(X)
    half = t.set_params(amp_dtype=torch.bfloat16).fit_transform(X)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)


def test_device_none_leaves_the_model_where_it_is():
    model, X = _cnn(), _images()
    out = TorchFeatureTransformer(model, device=None).fit_transform(X)
    np.testing.assert_allclose(out, _eval_forward(model, X), rtol=1e-6)
    cpu = TorchFeatureTransformer(model, device=torch.device("cpu"))
    np.testing.assert_array_equal(cpu.fit_transform(X), out)


@needs_cuda
def test_cuda_device_placement():
    model, X = _cnn(), _images()
    expected = _eval_forward(model, X).numpy()
    t = TorchFeatureTransformer(model, layer=["block2", "logits"], device="cuda")
    out = t.fit_transform(X)
    assert next(model.parameters()).is_cuda  # moved and left there (documented)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    # cuDNN may use TF32 convolutions: a few 1e-3 relative.
    np.testing.assert_allclose(out[:, 8:], expected, rtol=1e-2, atol=1e-3)
    # A Dataset goes through a DataLoader with pinned memory.
    dataset = TensorDataset(torch.from_numpy(X))
    np.testing.assert_allclose(t.transform(dataset), out, rtol=1e-5, atol=1e-6)
    on_gpu = TorchFeatureTransformer(model, device=None).fit_transform(X)
    np.testing.assert_allclose(on_gpu, out[:, 8:], rtol=1e-5, atol=1e-6)
    model.cpu()


@needs_cuda
def test_cuda_bfloat16_autocast():
    model, X = _cnn(), _images()
    full = TorchFeatureTransformer(model, device="cuda").fit_transform(X)
    half = TorchFeatureTransformer(
        model, device="cuda", amp_dtype=torch.bfloat16
    ).fit_transform(X)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)
    model.cpu()


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        TorchFeatureTransformer(_cnn(), device="cuda").fit(_images())


# --------------------------------------------------------- clone, caching
def test_clone_shares_the_model():
    model, X = _cnn(), _images()
    normalise = nn.Identity()
    t = TorchFeatureTransformer(
        model, layer=["block1", "logits"], preprocess=normalise, batch_size=7
    ).fit(X)
    copy = clone(t)
    assert copy.model is t.model
    assert copy.preprocess is normalise
    assert copy.get_params() == t.get_params()
    assert copy.layer is not t.layer  # plain parameters are cloned as usual
    assert not hasattr(copy, "feature_blocks_")
    with pytest.raises(NotFittedError):
        copy.transform(X)


_CACHED_FORWARDS = {"n": 0}


def _count_cached_forward(module, args):
    # Module level, so that joblib can pickle and hash the hooked model.
    _CACHED_FORWARDS["n"] += 1


def test_pipeline_memory_reuses_the_features(tmp_path):
    model, X = _cnn(), _images(n=20)
    handle = model.register_forward_pre_hook(_count_cached_forward)
    _CACHED_FORWARDS["n"] = 0
    pipe = Pipeline(
        [("feat", TorchFeatureTransformer(model, batch_size=8)), ("ood", Energy())],
        memory=str(tmp_path),
    )
    pipe.fit(X)
    first = _CACHED_FORWARDS["n"]
    assert first == 1 + 3  # fit's probe + ceil(20 / 8) batches
    scores_t1 = pipe.score_samples(X)
    _CACHED_FORWARDS["n"] = 0
    pipe.set_params(ood__temperature=10.0).fit(X)
    assert _CACHED_FORWARDS["n"] == 0  # cache hit: the model did not run
    assert not np.allclose(pipe.score_samples(X), scores_t1)
    handle.remove()


def test_grid_search_shares_the_model(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    X = np.concatenate([X_test, X_ood[:200]])
    y = np.r_[np.zeros(len(X_test), int), -np.ones(200, int)]
    pipe = Pipeline([("feat", TorchFeatureTransformer(model)), ("ood", Energy())])
    search = GridSearchCV(
        pipe,
        {"ood__temperature": [1.0, 100.0]},
        scoring=ood_scorer("auroc"),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X, y)
    assert search.best_estimator_.named_steps["feat"].model is model
    assert search.best_score_ > 0.85


# ------------------------------------------------------------ sklearn API
def test_tags():
    tags = TorchFeatureTransformer(_cnn()).__sklearn_tags__()
    assert tags.transformer_tags is not None
    assert tags.input_tags.two_d_array and tags.input_tags.three_d_array
    assert tags.requires_fit and not tags.non_deterministic
    assert not tags.target_tags.required


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_passes_scikit_learn_estimator_checks_on_tabular_input():
    # A parameter-free model accepts any width, as the checks require.
    check_estimator(
        TorchFeatureTransformer(RowStats()),
        expected_failed_checks={
            "check_estimators_dtypes": "integer inputs reach the model as they "
            "are (token ids), and RowStats cannot average integers: a ValueError "
            "says to convert them"
        },
    )


def test_verbose_shows_a_progress_bar(capsys):
    model, X = _cnn(), _images(n=6)
    assert TorchFeatureTransformer(model).verbose == 0  # silent by default
    TorchFeatureTransformer(model, batch_size=2).fit(X).transform(X)
    assert capsys.readouterr().err == ""
    TorchFeatureTransformer(model, batch_size=2, verbose=1).fit(X).transform(X)
    assert "features" in capsys.readouterr().err
    with pytest.raises(InvalidParameterError, match="verbose"):
        TorchFeatureTransformer(model, verbose="yes").fit(X)


# ------------------------------------------------------------------ errors
def test_unknown_layer_lists_valid_names():
    t = TorchFeatureTransformer(_cnn(), layer=["block2", "blok3"])
    with pytest.raises(ValueError, match="Unknown layer 'blok3'") as info:
        t.fit(_images())
    message = str(info.value)
    assert "Did you mean 'block3'" in message
    assert "'logits', 'penultimate'" in message and "'block1'" in message


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        TorchFeatureTransformer(lambda x: x).fit(_images())


def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        TorchFeatureTransformer(_cnn()).transform(_images())
    with pytest.raises(NotFittedError):
        TorchFeatureTransformer(_cnn()).get_feature_names_out()


@pytest.mark.parametrize(
    "X",
    [
        "images.npy",
        {"x": np.zeros((2, 1, 8, 8))},
        np.array([["a", "b"]]),
        sp.csr_matrix(np.ones((2, 64))),
        None,
    ],
    ids=["str", "dict", "strings", "sparse", "None"],
)
def test_wrong_input_type(X):
    with pytest.raises(TypeError, match="X must|Sparse input"):
        TorchFeatureTransformer(_cnn()).fit(X)


def test_dataset_of_unbatchable_items():
    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 8, 8)}

    with pytest.raises(TypeError, match="tuples whose first element"):
        TorchFeatureTransformer(_cnn()).fit(Dicts())


@pytest.mark.parametrize(
    "model, layer, X, error, match",
    [
        (NoLinear(), "penultimate", _images(), ValueError, "has no nn.Linear"),
        (ReusedReLU(), "relu", np.zeros((2, 4), np.float32), ValueError, "ran 2"),
        (ReusedReLU(), "unused", np.zeros((2, 4), np.float32), ValueError, "not run"),
        (TupleOutput(), "rnn", np.zeros((2, 5, 3), np.float32), TypeError, "tuple"),
        (_cnn(), ["logits", "logits"], _images(), ValueError, "more than once"),
        (_cnn(), [], _images(), ValueError, "at least one"),
        (_cnn(), "logits", np.zeros((0, 1, 8, 8)), ValueError, "0 samples"),
        (_cnn(), "logits", np.float32(1.0), ValueError, "Reshape your data"),
        (MLP(), "logits", np.zeros(6, np.float32), ValueError, "Reshape your data"),
        (MLP(), "logits", np.zeros((3, 0)), ValueError, "0 feature"),
        (MLP(), "logits", np.zeros((3, 6), complex), ValueError, "Complex data"),
    ],
)
def test_invalid_layers_and_inputs(model, layer, X, error, match):
    with pytest.raises(error, match=match):
        TorchFeatureTransformer(model, layer=layer).fit(X)


def test_invalid_parameters():
    X = _images()
    with pytest.raises(InvalidParameterError, match="pooling"):
        TorchFeatureTransformer(_cnn(), pooling="mean").fit(X)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        TorchFeatureTransformer(_cnn(), batch_size=0).fit(X)
    with pytest.raises(ValueError, match="floating dtype"):
        TorchFeatureTransformer(_cnn(), amp_dtype=torch.int8).fit(X)
    with pytest.raises(ValueError, match="not a torch device"):
        TorchFeatureTransformer(_cnn(), device="gpu0").fit(X)


def test_non_finite_features_name_the_layer():
    model, X = _cnn(), _images()
    t = TorchFeatureTransformer(model, layer=["block1", "logits"], batch_size=4)
    t.fit(X)
    X_nan = X.copy()
    X_nan[5, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="Layer 'block1' produced NaN"):
        t.transform(X_nan)
    with pytest.raises(ValueError, match="Layer 'block1' produced NaN"):
        clone(t).fit(X_nan[5:])


def test_missing_torch_gives_install_hint():
    # Block torch at import time (sys.modules['torch'] = None would break scipy).
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'no {name}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "try:\n"
        "    import sklearn_ood.torch\n"
        "except ImportError as exc:\n"
        "    assert 'pip install \"sklearn-ood[torch]\"' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------- end to end
# ``digits_cnn`` (a DigitsCNN trained on digits 0-4) comes from conftest.py.
def _auroc(pipe, X_test, X_ood):
    y = np.r_[np.zeros(len(X_test), int), -np.ones(len(X_ood), int)]
    return auroc(y, pipe.score_samples(np.concatenate([X_test, X_ood])))


def test_pipeline_energy_on_logits(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    pipe = Pipeline([("feat", TorchFeatureTransformer(model)), ("ood", Energy())])
    pipe.fit(X_train, y_train)
    assert np.mean(pipe.predict(X_train) == -1) == pytest.approx(0.05, abs=0.01)
    assert set(np.unique(pipe.predict(X_ood))) <= {-1, 1}
    assert _auroc(pipe, X_test, X_ood) > 0.85  # about 0.95


def test_pipeline_on_penultimate_features(digits_cnn):
    model, X_train, y_train, X_test, X_ood = digits_cnn
    pipe = Pipeline(
        [
            ("feat", TorchFeatureTransformer(model, layer="penultimate")),
            ("ood", EllipticEnvelope(random_state=0)),
        ]
    )
    pipe.fit(X_train)
    assert _auroc(pipe, X_test, X_ood) > 0.6  # about 0.74: no labels used


def test_pipeline_mahalanobis_on_penultimate_and_several_layers(digits_cnn):
    detectors = pytest.importorskip("sklearn_ood.detectors")
    if not hasattr(detectors, "MultiMahalanobis"):
        pytest.skip("sklearn_ood.detectors does not export Mahalanobis yet")
    model, X_train, y_train, X_test, X_ood = digits_cnn
    pipe = Pipeline(
        [
            ("feat", TorchFeatureTransformer(model, layer="penultimate")),
            ("ood", detectors.Mahalanobis()),
        ]
    ).fit(X_train, y_train)
    assert _auroc(pipe, X_test, X_ood) > 0.85  # about 0.96
    feat = TorchFeatureTransformer(model, layer=["block2", "block3", "penultimate"])
    groups = list(feat.fit(X_train[:2]).feature_blocks_.values())
    pipe = Pipeline(
        [("feat", feat), ("ood", detectors.MultiMahalanobis(groups=groups))]
    ).fit(X_train, y_train)
    assert _auroc(pipe, X_test, X_ood) > 0.8
