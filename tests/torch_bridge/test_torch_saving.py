"""save / load: fitted torch estimators without the model's weights."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import io
import pickle

import joblib
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_ood.detectors import Energy
from sklearn_ood.metrics import ood_scorer
from sklearn_ood.torch import (
    ODIN,
    DigitsCNN,
    GradNorm,
    Gram,
    MahalanobisPreprocessed,
    MCDropout,
    TorchFeatureTransformer,
    load,
    save,
)

CPU = "cpu"


def _cnn(seed=0, width=16):
    torch.manual_seed(seed)
    model = DigitsCNN(n_classes=3, width=width, dropout=0.5)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _images(n=30, seed=0):
    return np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)


_Y = np.repeat([0, 1, 2], 10)

_ESTIMATORS = {
    "TorchFeatureTransformer": lambda m: TorchFeatureTransformer(
        m, ["block2", "penultimate"], device=CPU
    ),
    "ODIN": lambda m: ODIN(m, 10.0, 0.01, device=CPU),
    "MahalanobisPreprocessed": lambda m: MahalanobisPreprocessed(
        m, epsilon=0.01, reg_covar=1e-3, device=CPU
    ),
    "MCDropout": lambda m: MCDropout(m, n_samples=3, random_state=0, device=CPU),
    "GradNorm": lambda m: GradNorm(m, device=CPU),
    "Gram": lambda m: Gram(m, ["block1"], powers=2, device=CPU),
    "Pipeline": lambda m: Pipeline(
        [("feat", TorchFeatureTransformer(m, device=CPU)), ("ood", Energy())]
    ),
}


def _output(estimator, X):
    if isinstance(estimator, TorchFeatureTransformer):
        return estimator.transform(X)
    return estimator.score_samples(X)


def _saved(estimator):
    file = io.BytesIO()
    save(estimator, file)
    return file.getvalue()


def _state_bytes(model):
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _rebuilt(model, **kwargs):
    """The same trained model, rebuilt as a user would: a new instance."""
    new = _cnn(seed=1, **kwargs)
    new.load_state_dict(model.state_dict())
    return new.eval()


@pytest.mark.parametrize("name", list(_ESTIMATORS))
def test_round_trip_gives_identical_scores_and_leaves_out_the_weights(name, tmp_path):
    model, X, X_test = _cnn(), _images(), _images(n=7, seed=1)
    est = _ESTIMATORS[name](model).fit(X, _Y)
    expected = _output(est, X_test)
    path = tmp_path / "detector.skood"
    save(est, path)
    user_model = _rebuilt(model)
    loaded = load(path, user_model)
    np.testing.assert_array_equal(_output(loaded, X_test), expected)
    assert getattr(loaded, "offset_", None) == getattr(est, "offset_", None)
    # The loaded estimator holds the supplied model, nowhere a copy.
    params = loaded.get_params(deep=True)
    models = [v for k, v in params.items() if k.split("__")[-1] == "model"]
    assert models and all(m is user_model for m in models)
    if name == "MahalanobisPreprocessed":
        assert loaded.feature_transformer_.model is user_model
    # Without the weights: the file is smaller than a pickle of the estimator
    # by (about) the model's state_dict.
    size = path.stat().st_size
    assert size + 0.9 * _state_bytes(model) < len(pickle.dumps(est))
    if name != "MahalanobisPreprocessed":  # which stores a covariance
        assert size < 0.1 * _state_bytes(model)


def test_saved_file_holds_no_weights():
    model = _cnn(width=32)
    odin = ODIN(model, device=CPU).fit(_images())
    data = _saved(odin)
    assert len(data) < 4000 < _state_bytes(model)
    weight = model.block3[0].weight.detach().numpy().tobytes()
    assert weight[:64] not in data


def test_normal_pickling_keeps_the_model():
    model, X = _cnn(), _images()
    odin = ODIN(model, device=CPU).fit(X)
    copied = pickle.loads(pickle.dumps(odin))
    assert isinstance(copied.model, DigitsCNN) and copied.model is not model
    np.testing.assert_array_equal(copied.score_samples(X), odin.score_samples(X))
    buffer = io.BytesIO()
    joblib.dump(odin, buffer)
    assert len(buffer.getvalue()) > _state_bytes(model)


def test_a_fitted_grid_search_is_saved_without_the_model():
    model, X = _cnn(), _images(n=40)
    X = np.concatenate([X, 5 * _images(n=20, seed=3)])
    y = np.r_[np.zeros(40, int), -np.ones(20, int)]
    search = GridSearchCV(
        ODIN(model, device=CPU),
        {"temperature": [1.0, 10.0]},
        scoring=ood_scorer("auroc"),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(X, y)
    data = _saved(search)
    assert len(data) < 0.2 * _state_bytes(model)
    loaded = load(io.BytesIO(data), model)
    np.testing.assert_array_equal(
        loaded.best_estimator_.score_samples(X), search.best_estimator_.score_samples(X)
    )


def test_module_valued_preprocess_is_supplied_by_name():
    model, X = _cnn(), _images()
    normalise = nn.BatchNorm2d(1).eval()
    t = TorchFeatureTransformer(model, preprocess=normalise, device=CPU).fit(X)
    data = _saved(t)
    with pytest.raises(ValueError, match=r"not saved: \['preprocess'\]"):
        load(io.BytesIO(data), model)
    loaded = load(io.BytesIO(data), model, preprocess=normalise)
    np.testing.assert_array_equal(loaded.transform(X), t.transform(X))


def test_another_structure_or_other_weights_are_refused():
    model, X = _cnn(), _images()
    data = _saved(ODIN(model, device=CPU).fit(X))
    message = (
        r"structure of the saved one .*block1.0.weight: saved \(16, 1, 3, 3\), got \(8"
    )
    with pytest.raises(ValueError, match=message):
        load(io.BytesIO(data), _cnn(width=8))
    retrained = _cnn(seed=5)
    with pytest.raises(ValueError, match="other weights"):
        load(io.BytesIO(data), retrained)
    loaded = load(io.BytesIO(data), retrained, check_weights=False)
    assert loaded.model is retrained


def test_load_errors_say_what_to_supply():
    model, X = _cnn(), _images()
    data = _saved(ODIN(model, device=CPU).fit(X))
    with pytest.raises(ValueError, match=r"not saved: \['model'\]"):
        load(io.BytesIO(data))
    with pytest.raises(ValueError, match="no such parameter"):
        load(io.BytesIO(data), model, preprocess=nn.Identity())
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        load(io.BytesIO(data), model.state_dict())
    with pytest.raises(ValueError, match="Not a file written by"):
        load(io.BytesIO(pickle.dumps(ODIN(model))), model)
    with pytest.raises(TypeError, match="torch.save"):
        save(model, io.BytesIO())


def test_two_different_models_are_passed_by_name():
    first, second = _cnn(), _cnn(seed=3)
    pipe = Pipeline(
        [
            ("a", TorchFeatureTransformer(first, device=CPU)),
            ("b", TorchFeatureTransformer(second, device=CPU)),
        ]
    )
    data = _saved(pipe)  # fitted or not: any estimator holding modules
    with pytest.raises(ValueError, match="several different models"):
        load(io.BytesIO(data), first)
    loaded = load(io.BytesIO(data), a__model=first, b__model=second)
    assert loaded.named_steps["a"].model is first
    assert loaded.named_steps["b"].model is second
