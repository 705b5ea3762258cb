"""Layers of a torch model: names, resolution, forward hooks and pooling.

Used by :class:`~sklearn_ood.torch.TorchFeatureTransformer` and by the
detectors that read a layer's features or its gradient (``Gram``,
``MahalanobisPreprocessed``, ``GradNorm``).
"""

import contextlib
import difflib
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from sklearn_ood.torch._inputs import _call_model

LOGITS = "logits"
PENULTIMATE = "penultimate"
POOLINGS = ("avg", "max", "flatten")


# ---------------------------------------------------------------- resolution
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


def _linear_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _last_linear(model):
    linears = _linear_names(model)
    if not linears:
        submodules = [n for n in dict(model.named_modules()) if n]
        raise ValueError(
            "layer='penultimate' is the input of the model's last torch.nn.Linear, "
            f"but {type(model).__name__} has no nn.Linear. Name the submodule whose "
            f"output you want instead, e.g. one of {_few(submodules)}."
        )
    return linears[-1]


def _linear_layer(model, layer, what):
    """The name of the ``nn.Linear`` submodule ``layer`` ("auto": the last one).

    ``what`` says what the layer is used for, in the error messages.
    """
    linears = _linear_names(model)
    if layer == "auto":
        if not linears:
            raise ValueError(
                f"{what}: layer='auto' is the model's last nn.Linear, but "
                f"{type(model).__name__} has no nn.Linear."
            )
        return linears[-1]
    if layer not in linears:
        modules = dict(model.named_modules())
        kind = "is not an nn.Linear" if layer in modules else "is not a submodule"
        close = difflib.get_close_matches(layer, linears, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"layer={layer!r} {kind} of {type(model).__name__}.{hint} Its "
            f"nn.Linear modules are: {_few(linears) or 'none'}."
        )
    return layer


def _linear_module(model, name):
    """The ``nn.Linear`` named ``name``, still there after fit."""
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, nn.Linear):
        raise ValueError(
            f"The model has no nn.Linear {name!r} any more; refit the estimator "
            "after changing the model."
        )
    return module


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


def _hooked_forward(model, xb, layers, hooks, *, first_fit_batch=False):
    """One forward pass; the tensor of each block, as an OrderedDict.

    ``hooks`` comes from :func:`_feature_hooks` on the same ``layers``. The
    model's output is the block ``("", "output")``; with ``stop_early`` the
    pass ends once every hooked block has been captured. Errors of the model
    are reported as in :func:`~sklearn_ood.torch._inputs._call_model`.
    """
    hooks.captured.clear()
    hooks.calls = dict.fromkeys(layers, 0)
    output = None
    try:
        output = _call_model(model, xb, first_fit_batch=first_fit_batch)
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


# ------------------------------------------------------------------ pooling
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
