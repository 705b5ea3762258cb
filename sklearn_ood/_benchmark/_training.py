"""The model of a run: trained on the ID data and cached, or the user's file.

Training goes through the package's own skorch net,
:class:`~sklearn_ood.torch.OODNeuralNetClassifier`, without outliers (plain
cross-entropy on the ID rows): it seeds its batches from ``random_state``,
checks the labels, and gives the same SGD + cosine schedule that
``benchmarks/bench_training.py`` verified (about 99 % ID test accuracy on
digits 0-4), so the command shows the package's training side rather than a
second, hand-written loop.

The trained weights are cached as a state dict under a key that hashes
everything that changes them (data, classes, seed, epochs, architecture,
training settings, the package and torch versions); the file is written
atomically and read back with ``torch.load(weights_only=True)``.
"""

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
import zipfile

import numpy as np

from sklearn_ood._benchmark._common import BenchmarkError, UsageError, one_line

# --arch values -> model classes of sklearn_ood.torch.
ARCHS = {
    "digits-cnn": "DigitsCNN",
    "fashion-cnn": "FashionCNN",
    "wideresnet": "WideResNet",
    "densenet-bc": "DenseNetBC",
}
PRESET_ARCH = {"digits": "digits-cnn", "fashion-mnist": "fashion-cnn"}

# Training settings, all in one place: SGD (momentum 0.9, weight decay
# 5e-4) with a cosine learning rate over the epochs. The small CNNs get
# dropout before the head so that MCDropout applies to them. Epochs are the
# default of --epochs; the digits ones keep the default run under two
# minutes on 2 CPU cores.
TRAINING = {
    "digits-cnn": {"epochs": 30, "batch_size": 64, "lr": 0.05},
    "fashion-cnn": {"epochs": 15, "batch_size": 128, "lr": 0.05},
    "wideresnet": {"epochs": 100, "batch_size": 128, "lr": 0.1},
    "densenet-bc": {"epochs": 100, "batch_size": 64, "lr": 0.1},
}
MODEL_PARAMS = {
    "digits-cnn": {"width": 16, "dropout": 0.2},
    "fashion-cnn": {"width": 16, "dropout": 0.2},
    "wideresnet": {},
    "densenet-bc": {},
}
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
# Bump when the cached file's layout or the training code changes.
CACHE_FORMAT = 1


def default_cache_dir():
    """``${XDG_CACHE_HOME:-~/.cache}/sklearn-ood``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "sklearn-ood")


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device: {one_line(exc)}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here; use cpu.")
    return device


def build_model(arch, n_classes, in_channels):
    """A new, untrained model of ``arch``."""
    from sklearn_ood import torch as ood_torch

    cls = getattr(ood_torch, ARCHS[arch])
    return cls(n_classes=n_classes, in_channels=in_channels, **MODEL_PARAMS[arch])


def _in_channels(task):
    if len(task.sample_shape) != 3:
        raise UsageError(
            f"training a CNN needs images (n, C, H, W); the ID data has samples "
            f"of shape {task.sample_shape}. Give a trained model with --model."
        )
    return task.sample_shape[0]


def cache_key(task, arch, seed, epochs):
    """The dict that identifies a trained model (hashed into its file name)."""
    import torch

    from sklearn_ood import __version__

    return {
        "format": CACHE_FORMAT,
        "data": task.name,
        "fingerprint": task.fingerprint,
        "sample_shape": list(task.sample_shape),
        "n_classes": task.n_classes,
        "seed": seed,
        "epochs": epochs,
        "arch": arch,
        "model": MODEL_PARAMS[arch],
        "training": {
            **{k: v for k, v in TRAINING[arch].items() if k != "epochs"},
            "momentum": MOMENTUM,
            "weight_decay": WEIGHT_DECAY,
        },
        "sklearn_ood": __version__,
        "torch": torch.__version__,
    }


def cache_path(cache_dir, key):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    name = f"{key['data']}-{key['arch']}-seed{key['seed']}-{digest[:16]}.pt"
    return os.path.join(cache_dir, "models", name)


def trained_model(task, arch, seed, *, epochs, cache_dir, device, log):
    """The model trained on ``task`` (from the cache when it is there).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on the CPU.
    info : dict
        ``source`` ("trained" or "cache"), ``path``, ``train_seconds``.
    """
    import torch

    model = build_model(arch, task.n_classes, _in_channels(task))
    key = cache_key(task, arch, seed, epochs)
    path = cache_path(cache_dir, key)
    if os.path.isfile(path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # a truncated or stale file: train again
            log(f"ignoring unreadable cached model {path} ({one_line(exc)})")
        else:
            log(f"using cached model {path}")
            return model.eval(), {"source": "cache", "path": path, "arch": arch}
    # Same seed, same initial weights: the model is built after seeding.
    torch.manual_seed(seed)
    model = build_model(arch, task.n_classes, _in_channels(task))
    start = time.perf_counter()
    model = fit_model(model, task, arch, seed, epochs=epochs, device=device, log=log)
    seconds = time.perf_counter() - start
    _save_atomically(model.state_dict(), path, log)
    info = {"source": "trained", "path": path, "arch": arch, "epochs": epochs}
    return model.eval(), {**info, "train_seconds": seconds}


def fit_model(model, task, arch, seed, *, epochs, device, log):
    """Train ``model`` on the ID training rows; return it on the CPU."""
    import torch
    from skorch.callbacks import LRScheduler

    from sklearn_ood.torch import IDCrossEntropyLoss, OODNeuralNetClassifier

    settings = TRAINING[arch]
    log(
        f"training {ARCHS[arch]} on {len(task.X_train)} {task.name} images "
        f"(seed {seed}, {epochs} epochs, {device})"
    )
    net = OODNeuralNetClassifier(
        model,
        criterion=IDCrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=settings["lr"],
        optimizer__momentum=MOMENTUM,
        optimizer__weight_decay=WEIGHT_DECAY,
        batch_size=settings["batch_size"],
        max_epochs=epochs,
        train_split=None,
        classes=np.arange(task.n_classes),
        random_state=seed,
        device=device,
        verbose=0,
        callbacks=[
            (
                "lr_scheduler",
                LRScheduler(
                    policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs
                ),
            ),
            ("progress", _epoch_bar(disable=log.quiet)),
        ],
    )
    net.fit(task.X_train, task.y_train)
    module = net.module_.to("cpu").eval()
    loss = net.history[-1, "train_loss"]
    if not np.isfinite(loss):
        raise BenchmarkError(
            f"training diverged (train loss {loss}); try fewer --epochs or "
            "another --seeds."
        )
    return module


def _epoch_bar(disable):
    """A skorch callback: one tqdm step per epoch, the train loss beside it."""
    from skorch.callbacks import Callback

    class EpochBar(Callback):
        def on_train_begin(self, net, **kwargs):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is in the torch extra
                self.bar = None
                return
            self.bar = tqdm(
                total=net.max_epochs,
                desc="training",
                unit="epoch",
                leave=False,
                disable=disable,
            )

        def on_epoch_end(self, net, **kwargs):
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{net.history[-1, 'train_loss']:.3f}")
                self.bar.update(1)

        def on_train_end(self, net, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return EpochBar()


def _save_atomically(state, path, log):
    """Write ``state`` to ``path`` through a temporary file in the same folder.

    Another process reading the cache never sees a half-written file; a
    cache folder that cannot be written costs the cache, not the run.
    """
    import torch

    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    except OSError as exc:
        log(f"cannot cache the model in {folder} ({one_line(exc)})")
        return
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    log(f"cached the model in {path}")


# --------------------------------------------------------------- user model
def _is_torchscript(path):
    # A TorchScript archive holds compiled code; a torch.save zip does not.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("/constants.pkl") or "/code/" in name
            for name in archive.namelist()
        )


def load_user_model(path, *, arch, n_classes, task):
    """The model of ``--model``: TorchScript, or a state dict for ``arch``.

    Never unpickles code: TorchScript goes through ``torch.jit.load`` and a
    state dict through :func:`~sklearn_ood.torch.load_weights`
    (``torch.load(weights_only=True)``).
    """
    import torch

    from sklearn_ood.torch import load_weights

    if not os.path.isfile(path):
        raise UsageError(f"--model: no such file: {path}")
    if _is_torchscript(path):
        with warnings.catch_warnings():
            # torch >= 2.9 marks TorchScript deprecated; it still loads.
            warnings.simplefilter("ignore", FutureWarning)
            try:
                model = torch.jit.load(path, map_location="cpu")
            except RuntimeError as exc:
                raise UsageError(
                    f"--model: {path} is not a loadable TorchScript file "
                    f"({one_line(exc)})."
                ) from exc
        return model.eval(), {"source": "torchscript", "path": path}
    if arch is None:
        raise UsageError(
            f"--model: {path} is not a TorchScript file, so it is read as a state "
            f"dict: name its architecture with --arch ({', '.join(ARCHS)})."
        )
    n_classes = task.n_classes if n_classes is None else n_classes
    model = build_model(arch, n_classes, _in_channels(task))
    try:
        load_weights(model, path)
    except ValueError as exc:
        raise UsageError(f"--model: {one_line(exc)}") from exc
    return model.eval(), {"source": "state_dict", "path": path, "arch": arch}


def is_scripted(model):
    import torch

    return isinstance(model, torch.jit.ScriptModule)


def check_model_fits(model, task, device):
    """The model runs on the ID data and gives one logit per ID class."""
    from sklearn_ood.torch import TorchFeatureTransformer

    X = task.X_test[:4]
    try:
        logits = TorchFeatureTransformer(
            model, layer="logits", device=device
        ).fit_transform(X)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UsageError(
            f"the model does not run on the ID data (samples of shape "
            f"{task.sample_shape}): {one_line(exc)}"
        ) from exc
    if logits.ndim != 2 or logits.shape[1] != task.n_classes:
        n_out = logits.shape[1] if logits.ndim == 2 else logits.shape[1:]
        raise UsageError(
            f"the model gives {n_out} outputs per sample, but the ID "
            f"data has {task.n_classes} classes; give a model with one logit "
            "per ID class (or --n-classes for a state dict)."
        )


def accuracy(model, task, device):
    """ID test accuracy of the model's argmax."""
    from sklearn_ood.torch import TorchFeatureTransformer

    logits = TorchFeatureTransformer(
        model, layer="logits", device=device
    ).fit_transform(task.X_test)
    return float(np.mean(logits.argmax(axis=1) == task.y_test))


def conv_blocks(model, layers=None):
    """The layers for Gram and MultiMahalanobis.

    ``--layers`` when given (checked against ``model.named_modules()``);
    otherwise the model's direct children named ``block<k>`` (the three
    blocks of every reference architecture), in order; none for a
    TorchScript model (its submodules cannot be hooked).
    """
    names = dict(model.named_modules())
    if layers:
        if is_scripted(model):
            raise UsageError(
                "--layers: the layers of a TorchScript model cannot be hooked; "
                "save its state dict and pass --arch instead."
            )
        unknown = [name for name in layers if name not in names or not name]
        if unknown:
            known = [n for n in names if n and "." not in n]
            raise UsageError(
                f"--layers: the model has no submodule {', '.join(unknown)}; its "
                f"top-level submodules are {', '.join(known)}."
            )
        return list(layers)
    if is_scripted(model):
        return []
    blocks = [
        name for name, _ in model.named_children() if re.fullmatch(r"block\d+", name)
    ]
    return sorted(blocks, key=lambda name: int(name[5:]))
