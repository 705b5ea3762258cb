"""Private helpers shared by the torch bridge: inputs, devices, layers, hooks.

Used by :class:`~sklearn_ood.torch.TorchFeatureTransformer` and by the
detectors that run the model (:mod:`sklearn_ood.torch._base`).
"""

import contextlib
import copy
import difflib
from collections import OrderedDict
from itertools import chain

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

LOGITS = "logits"
PENULTIMATE = "penultimate"


# ---------------------------------------------------------------- estimators
def _check_model(model):
    """``model`` itself, or a TypeError when it is not a torch module."""
    if not isinstance(model, nn.Module):
        hint = ""
        if hasattr(model, "module_"):
            hint = " (for a skorch net, pass net.module_)"
        raise TypeError(
            f"model must be a torch.nn.Module{hint}; got {type(model).__name__}."
        )
    return model


def _clone_sharing_modules(estimator):
    """``sklearn.base.clone`` that shares torch modules instead of copying them.

    The default clone deep-copies every parameter; torch modules (the model
    above all) are shared instead, so that a grid search does not copy the
    weights once per candidate. Everything else is cloned as scikit-learn
    would.
    """
    params = {
        name: value if isinstance(value, nn.Module) else clone(value, safe=False)
        for name, value in estimator.get_params(deep=False).items()
    }
    new = type(estimator)(**params)
    for attr in ("_metadata_request", "_sklearn_output_config"):
        if hasattr(estimator, attr):
            setattr(new, attr, copy.deepcopy(getattr(estimator, attr)))
    if hasattr(estimator, "_skl_callbacks"):
        new._skl_callbacks = estimator._skl_callbacks
    return new


def _pool_output(value, block, n, pooling):
    """A layer output as one row per sample, ``(n, k)``, in its own dtype.

    ``pooling`` is "avg", "max", "flatten" or a callable; see
    :class:`~sklearn_ood.torch.TorchFeatureTransformer`. Differentiable.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"Layer {block!r} produced a {type(value).__name__}, not a tensor; "
            "choose a submodule whose output is a tensor."
        )
    if value.ndim == 0 or value.shape[0] != n:
        raise ValueError(
            f"Layer {block!r} produced shape {tuple(value.shape)}; expected the "
            f"batch ({n} samples) along the first dimension."
        )
    if value.ndim > 2:
        if callable(pooling):
            value = pooling(value)
            if not isinstance(value, torch.Tensor) or value.shape[:1] != (n,):
                raise ValueError(
                    f"pooling must return a tensor with {n} rows for layer "
                    f"{block!r}; got {getattr(value, 'shape', type(value))}."
                )
        elif pooling == "flatten":
            value = value.flatten(1)
        else:
            if not value.is_floating_point():
                value = value.float()
            dims = tuple(range(2, value.ndim))
            value = value.mean(dims) if pooling == "avg" else value.amax(dims)
    return value.reshape(n, -1)


# ------------------------------------------------------------------ inputs
class _Source:
    """Batches of model inputs from an array, tensor, Dataset or DataLoader."""

    def __init__(self, X):
        self.array = self.tensor = self.dataset = self.loader = None
        if isinstance(X, DataLoader):
            self.loader = X
            self.n_samples = None
        elif isinstance(X, Dataset):
            self.dataset = X
            self.n_samples = len(X) if hasattr(X, "__len__") else None
        elif isinstance(X, torch.Tensor):
            self.tensor = X
            self.n_samples = _check_shape(X.shape)
        else:
            self.array = _as_array(X)
            self.n_samples = _check_shape(self.array.shape)
        if self.n_samples == 0:
            raise ValueError("X has 0 samples; at least one is required.")
        data = self.array if self.array is not None else self.tensor
        self.n_columns = data.shape[1] if data is not None and data.ndim == 2 else None

    def n_batches(self, batch_size):
        if self.loader is not None:
            return len(self.loader) if hasattr(self.loader, "__len__") else None
        if self.n_samples is None:
            return None
        return -(-self.n_samples // batch_size)

    def head(self, k):
        """The first ``k`` samples (the first batch of a DataLoader)."""
        if self.loader is not None:
            for batch in self.loader:
                return _first(batch)
            raise ValueError("The DataLoader yielded no batch.")
        if self.dataset is not None:
            if self.n_samples is not None:
                k = min(k, self.n_samples)
                return _collate_first([self.dataset[i] for i in range(k)])
            for batch in DataLoader(
                self.dataset, batch_size=k, collate_fn=_collate_first
            ):
                return batch
            raise ValueError("The Dataset yielded no sample.")
        return self._slice(0, k)

    def batches(self, batch_size, device):
        if self.loader is not None:
            for batch in self.loader:
                yield _first(batch)
        elif self.dataset is not None:
            yield from DataLoader(
                self.dataset,
                batch_size=batch_size,
                shuffle=False,
                collate_fn=_collate_first,
                pin_memory=device is not None and device.type == "cuda",
                # Its own generator: a DataLoader draws a base seed for its
                # workers, which would otherwise advance the global torch RNG
                # (and change, e.g., MCDropout's seeded masks).
                generator=torch.Generator(),
            )
        else:
            for start in range(0, self.n_samples, batch_size):
                yield self._slice(start, start + batch_size)

    def _slice(self, start, stop):
        if self.tensor is not None:
            return self.tensor[start:stop]
        batch = np.ascontiguousarray(self.array[start:stop])
        if not batch.flags.writeable:  # torch only wraps writeable memory
            batch = batch.copy()
        return torch.from_numpy(batch)


def _as_array(X):
    if sp.issparse(X):
        raise TypeError(
            "Sparse input is not supported: X must be dense (e.g. X.toarray())."
        )
    if X is None or isinstance(X, (str, bytes, dict)):
        raise TypeError(
            "X must be a NumPy array, a torch.Tensor, a torch Dataset or a "
            f"DataLoader; got {type(X).__name__}."
        )
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cannot turn X ({type(X).__name__}) into an array.") from exc
    if array.dtype.kind == "c":
        raise ValueError("Complex data not supported.")
    if array.dtype.kind == "O":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"X must hold numbers: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"X must hold numbers (bool, int or float); got dtype {array.dtype} "
            f"from {type(X).__name__}."
        )
    return array


def _check_shape(shape):
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            "X must have a samples dimension and at least one more, e.g. "
            f"(n_samples, n_features) or (n_samples, C, H, W); got shape {shape}. "
            "Reshape your data, e.g. with X.reshape(-1, 1) for a single feature."
        )
    if 0 in shape[1:]:
        raise ValueError(
            f"0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )
    return shape[0]


def _first(batch):
    """The input part of a batch: ``x`` itself or the first of ``(x, y, ...)``."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("Got an empty batch tuple.")
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            "Dataset items must be tensors or arrays, or tuples whose first "
            f"element is one; got a batch of {type(batch).__name__}."
        )
    return batch


def _collate_first(items):
    items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    try:
        batch = default_collate(items)
    except TypeError as exc:
        raise TypeError(
            f"Cannot batch Dataset items of type {type(items[0]).__name__}: they "
            "must be tensors, arrays or numbers (give the Dataset a transform "
            "such as torchvision's ToTensor)."
        ) from exc
    return _first(batch)


def _to_device(xb, device, dtype):
    if xb.is_floating_point() and xb.dtype != dtype:
        xb = xb.to(dtype)
    return xb if device is None else xb.to(device, non_blocking=True)


def _floating_dtype(model):
    for tensor in chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


# ------------------------------------------------------------------ devices
def _resolve_device(device, model):
    """The torch.device to run on; None means the model's own device."""
    if device is None:
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
        return None
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:1', a torch.device or None."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available; use device='cpu' "
                "or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) are available."
            )
    return resolved


# ------------------------------------------------------------------- layers
def _layer_names(layer):
    names = [layer] if isinstance(layer, str) else list(layer)
    if not names:
        raise ValueError("layer must name at least one layer.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Layer names must be non-empty strings; got {name!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"layer lists a name more than once: {names}.")
    return names


def _resolve_layers(model, names):
    """Map each requested block to (module name, "input" or "output")."""
    modules = dict(model.named_modules(remove_duplicate=False))
    layers = OrderedDict()
    for name in names:
        if name == LOGITS:
            layers[name] = ("", "output")
        elif name == PENULTIMATE:
            layers[name] = (_last_linear(model), "input")
        elif name in modules:
            layers[name] = (name, "output")
        else:
            raise ValueError(_unknown_layer_message(name, modules))
    return layers


def _last_linear(model):
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        submodules = [n for n in dict(model.named_modules()) if n]
        raise ValueError(
            "layer='penultimate' is the input of the model's last torch.nn.Linear, "
            f"but {type(model).__name__} has no nn.Linear. Name the submodule whose "
            f"output you want instead, e.g. one of {_few(submodules)}."
        )
    return linears[-1]


def _few(names, head=6, tail=4):
    if len(names) <= head + tail:
        return ", ".join(repr(n) for n in names)
    return ", ".join(
        [repr(n) for n in names[:head]] + ["..."] + [repr(n) for n in names[-tail:]]
    )


def _unknown_layer_message(name, modules):
    valid = [LOGITS, PENULTIMATE] + [n for n in modules if n]
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"Unknown layer {name!r}.{hint} Valid names are 'logits', 'penultimate' or a "
        f"submodule name from model.named_modules(), e.g. {_few(valid)}."
    )


# -------------------------------------------------------------------- hooks
class _StopForward(BaseException):
    """Raised by the last feature hook to skip the rest of the forward pass.

    A ``BaseException`` so that a model's own ``except Exception`` cannot
    swallow it.
    """


class _HookState:
    def __init__(self, n_hooked, stop_early):
        self.captured, self.calls = {}, {}
        self.n_hooked, self.stop_early = n_hooked, stop_early

    def record(self, block, value):
        self.calls[block] = self.calls.get(block, 0) + 1
        self.captured[block] = value
        if self.stop_early and len(self.captured) == self.n_hooked:
            raise _StopForward


@contextlib.contextmanager
def _feature_hooks(model, layers, stop_early):
    """Forward (pre-)hooks that capture each block's tensor, removed on exit."""
    modules = dict(model.named_modules(remove_duplicate=False))
    hooked = {b: nw for b, nw in layers.items() if nw != ("", "output")}
    state = _HookState(len(hooked), stop_early and bool(hooked))
    state.calls = dict.fromkeys(layers, 0)
    handles = []
    try:
        for block, (name, where) in hooked.items():
            if name not in modules:
                raise ValueError(
                    f"Layer {block!r}: the model has no submodule {name!r} any more; "
                    "refit the transformer after changing the model."
                )
            if where == "input":
                hook = _input_hook(state, block)
                handles.append(modules[name].register_forward_pre_hook(hook))
            else:
                hook = _output_hook(state, block)
                handles.append(modules[name].register_forward_hook(hook))
        yield state
    finally:
        for handle in handles:
            handle.remove()


def _input_hook(state, block):
    def hook(module, args):
        state.record(block, args[0] if args else None)

    return hook


def _output_hook(state, block):
    def hook(module, args, output):
        state.record(block, output)

    return hook


def _hooked_forward(model, xb, layers, hooks):
    """One forward pass; the tensor of each block, as an OrderedDict.

    ``hooks`` comes from :func:`_feature_hooks` on the same ``layers``. The
    model's output is the block ``("", "output")``; with ``stop_early`` the
    pass ends once every hooked block has been captured.
    """
    hooks.captured.clear()
    hooks.calls = dict.fromkeys(layers, 0)
    output = None
    try:
        output = model(xb)
    except _StopForward:
        pass
    values = OrderedDict()
    for block, (name, where) in layers.items():
        if (name, where) == ("", "output"):
            values[block] = output
        elif block in hooks.captured:
            values[block] = hooks.captured[block]
        else:
            raise ValueError(
                f"{_describe(block, name, where)} did not run in the forward "
                "pass: the model's forward does not call that module."
            )
    return values


def _check_single_calls(hooks, layers):
    """Refuse a hooked module that ran more than once in the last forward pass."""
    for block, (name, where) in layers.items():
        calls = hooks.calls[block]
        if (name, where) != ("", "output") and calls > 1:
            raise ValueError(
                f"{_describe(block, name, where)} ran {calls} times in one "
                "forward pass, so it is ambiguous (the module is reused). "
                "Choose a module that runs exactly once."
            )


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode inside; every submodule's ``training`` flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _describe(block, name, where):
    module = f"module {name!r}" if name else "the model"
    return f"Layer {block!r} (the {where} of {module})"


def _check_finite(blocks, names):
    for block, name in zip(blocks, names):
        if not np.isfinite(block).all():
            raise ValueError(
                f"Layer {name!r} produced NaN or infinite features. Check the "
                "inputs for NaN/inf (they are not scanned), or the amp_dtype "
                "(float16 overflows easily)."
            )
