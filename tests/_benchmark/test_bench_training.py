"""The benchmark's model: cache key, atomic cache, user models, blocks."""

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn_ood._benchmark import _training  # noqa: E402
from sklearn_ood._benchmark._common import Log, UsageError  # noqa: E402
from sklearn_ood._benchmark._data import Task  # noqa: E402
from sklearn_ood.torch import DigitsCNN  # noqa: E402


class _ListLog(Log):
    """Keeps the messages instead of printing them."""

    def __init__(self):
        super().__init__(quiet=False)
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)


def _task(n_classes=3, name="digits"):
    rng = np.random.default_rng(0)
    X = rng.random((30, 1, 8, 8)).astype(np.float32)
    y = np.arange(30) % n_classes
    return Task(
        name=name,
        X_train=X,
        y_train=y,
        X_test=X[:9],
        y_test=y[:9],
        ood={},
        ood_kind={},
        class_names=[str(c) for c in range(n_classes)],
        fingerprint={"id_classes": list(range(n_classes))},
    )


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _training.default_cache_dir() == os.path.join(str(tmp_path), "sklearn-ood")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _training.default_cache_dir().endswith(os.path.join(".cache", "sklearn-ood"))


def test_cache_key_changes_with_what_changes_the_weights():
    task = _task()
    base = _training.cache_key(task, "digits-cnn", 0, 5)
    path = _training.cache_path("/c", base)
    assert path == _training.cache_path(
        "/c", _training.cache_key(task, "digits-cnn", 0, 5)
    )
    others = [
        _training.cache_key(task, "digits-cnn", 1, 5),  # seed
        _training.cache_key(task, "digits-cnn", 0, 6),  # epochs
        _training.cache_key(_task(n_classes=4), "digits-cnn", 0, 5),  # classes
        _training.cache_key(task, "fashion-cnn", 0, 5),  # architecture
    ]
    assert len({path, *(_training.cache_path("/c", k) for k in others)}) == 5
    assert base["torch"] == torch.__version__ and "sklearn_ood" in base


def test_trained_model_is_cached_and_reused(tmp_path, monkeypatch):
    calls = []

    def fake_fit(model, task, arch, seed, **kwargs):
        calls.append(seed)
        with torch.no_grad():
            model.fc.bias.fill_(7.0)
        return model

    monkeypatch.setattr(_training, "fit_model", fake_fit)
    log = _ListLog()
    messages = log.messages
    task = _task()
    kwargs = {"epochs": 1, "cache_dir": str(tmp_path), "device": "cpu", "log": log}
    model, info = _training.trained_model(task, "digits-cnn", 0, **kwargs)
    assert info["source"] == "trained" and calls == [0]
    assert os.listdir(tmp_path / "models") == [os.path.basename(info["path"])]
    # Written as a plain state dict: the safe loader reads it.
    state = torch.load(info["path"], weights_only=True)
    assert torch.equal(state["fc.bias"], torch.full((3,), 7.0))

    again, info2 = _training.trained_model(task, "digits-cnn", 0, **kwargs)
    assert info2 == {"source": "cache", "path": info["path"], "arch": "digits-cnn"}
    assert calls == [0]
    assert torch.equal(again.fc.bias, model.fc.bias)
    assert any(m.startswith("using cached model") for m in messages)

    # A damaged file is trained again, not trusted.
    with open(info["path"], "wb") as f:
        f.write(b"garbage")
    _, info3 = _training.trained_model(task, "digits-cnn", 0, **kwargs)
    assert info3["source"] == "trained" and calls == [0, 0]
    assert any(m.startswith("ignoring unreadable cached model") for m in messages)


def test_fit_model_learns(monkeypatch):
    task = _task(n_classes=2)
    torch.manual_seed(0)
    model = _training.build_model("digits-cnn", 2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    log = Log(quiet=True)
    trained = _training.fit_model(
        model, task, "digits-cnn", 0, epochs=2, device="cpu", log=log
    )
    assert not trained.training
    changed = [not torch.equal(a, b) for a, b in zip(before, trained.parameters())]
    assert any(changed)


def test_conv_blocks():
    model = DigitsCNN(n_classes=3, width=4)
    assert _training.conv_blocks(model) == ["block1", "block2", "block3"]
    assert _training.conv_blocks(model, ["block2", "pool"]) == ["block2", "pool"]
    with pytest.raises(UsageError, match="no submodule nope"):
        _training.conv_blocks(model, ["nope"])
    assert _training.conv_blocks(torch.nn.Sequential(torch.nn.Linear(2, 2))) == []


def test_user_models(tmp_path):
    task = _task()
    model = DigitsCNN(n_classes=3, width=16).eval()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(tmp_path / "script.pt"))
    assert _training._is_torchscript(tmp_path / "script.pt")
    assert not _training._is_torchscript(tmp_path / "state.pt")

    scripted, info = _training.load_user_model(
        str(tmp_path / "script.pt"), arch=None, n_classes=None, task=task
    )
    assert info["source"] == "torchscript" and _training.is_scripted(scripted)
    assert _training.conv_blocks(scripted) == []
    loaded, info = _training.load_user_model(
        str(tmp_path / "state.pt"), arch="digits-cnn", n_classes=None, task=task
    )
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    _training.check_model_fits(loaded, task, "cpu")
    with pytest.raises(UsageError, match="--arch"):
        _training.load_user_model(
            str(tmp_path / "state.pt"), arch=None, n_classes=None, task=task
        )
    with pytest.raises(UsageError, match="4 classes"):
        _training.check_model_fits(loaded, _task(n_classes=4), "cpu")
    # A pickled module is refused by the safe loader, not executed.
    torch.save(model, tmp_path / "pickled.pt")
    with pytest.raises(UsageError, match="--model"):
        _training.load_user_model(
            str(tmp_path / "pickled.pt"), arch="digits-cnn", n_classes=None, task=task
        )
