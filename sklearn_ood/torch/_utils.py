"""Small helpers shared by the torch estimators: the model, its mode, clones.

Inputs live in :mod:`._inputs`, devices in :mod:`._devices`, layers and
hooks in :mod:`._layers`.
"""

import contextlib
import copy

import torch
from sklearn.base import clone
from torch import nn


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


def _check_logits(logits, n):
    """The model's output, checked to be ``(n, n_classes)`` logits."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != n:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
        raise ValueError(
            f"The model must return logits of shape (n_samples, n_classes); got "
            f"{shape} for {n} samples."
        )
    return logits


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
