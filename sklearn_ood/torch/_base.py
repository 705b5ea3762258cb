"""Shared base of the detectors that run the model on raw inputs.

:class:`BaseTorchModelDetector` adapts :class:`~sklearn_ood.base.BaseDetector`
to model inputs of any sample shape (images ``(N, C, H, W)``, sequences,
tabular rows): validation, batching, device placement, eval mode with every
``training`` flag restored, input gradients that leave the model's
parameters alone, and a ``clone`` that shares the model.
"""

import contextlib
from numbers import Integral

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import DataLoader, Dataset, Subset

from sklearn_ood.base import BaseDetector
from sklearn_ood.torch._utils import (
    _check_model,
    _clone_sharing_modules,
    _eval_mode,
    _floating_dtype,
    _resolve_device,
    _Source,
    _to_device,
)

__all__ = ["BaseTorchModelDetector"]

# Half precision inputs give float32 scores, like float32 inputs.
_FLOAT32_TENSORS = (torch.float16, torch.bfloat16, torch.float32)


class _ModelInput:
    """Validated model inputs: a NumPy array, a tensor or a map-style Dataset.

    ``sample_shape`` is the shape of one sample (``X.shape[1:]``, or the
    shape of the first Dataset item); ``dtype`` is the float dtype of the
    scores (float32 for float16/32 inputs, float64 otherwise).
    """

    def __init__(self, X):
        if isinstance(X, DataLoader):
            raise TypeError(
                "Model detectors need to know the samples (to match y and check "
                "their shape): pass the DataLoader's dataset, an array or a "
                "tensor instead of a DataLoader."
            )
        if isinstance(X, Dataset) and not hasattr(X, "__len__"):
            raise TypeError(
                "X is an iterable-style Dataset without len(); pass a map-style "
                "Dataset, an array or a tensor."
            )
        self.source = _Source(X)
        source = self.source
        self.n_samples = source.n_samples
        if source.array is not None:
            self.data = source.array
            first = source.array[:1]
            low_precision = first.dtype in (np.float16, np.float32)
        else:
            if source.tensor is not None:
                self.data = source.tensor
                first = source.tensor[:1]
            else:
                self.data = source.dataset
                first = source.head(1)
                if first.ndim < 2:
                    raise ValueError(
                        "Dataset items must have at least one dimension (a "
                        f"sample of shape {tuple(first.shape[1:])} was found)."
                    )
            low_precision = first.dtype in _FLOAT32_TENSORS
        self.sample_shape = tuple(int(d) for d in first.shape[1:])
        self.dtype = np.dtype(np.float32 if low_precision else np.float64)

    def subset(self, rows):
        """The samples selected by a boolean mask, indices or a slice."""
        if isinstance(rows, slice) and rows == slice(None):
            return self
        rows = np.arange(self.n_samples)[rows]  # indices, in order
        if len(rows) == self.n_samples:
            return self
        if isinstance(self.data, np.ndarray):
            return _ModelInput(self.data[rows])
        if isinstance(self.data, torch.Tensor):
            return _ModelInput(
                self.data[torch.as_tensor(rows, device=self.data.device)]
            )
        return _ModelInput(Subset(self.data, rows.tolist()))

    def batches(self, batch_size, device):
        return self.source.batches(batch_size, device)


class BaseTorchModelDetector(BaseDetector):
    """Base of the detectors that run a torch model on raw inputs.

    Subclasses implement ``_fit(inputs, y)`` and ``_score(inputs)``, where
    ``inputs`` is a validated :class:`_ModelInput`. ``_score`` returns float64
    scores, higher = more in-distribution. ``_fit`` is optional; it may
    return the scores of the fit samples that set ``offset_`` (e.g. honest
    leave-one-out scores), otherwise they are the ``_score`` of at most
    ``_offset_sample_size`` fit samples (a seeded uniform sample).
    They loop over ``self._batches(inputs, device, dtype)`` inside
    ``self._running(model)`` (eval mode) or another mode of their own.

    Inputs ``X`` are NumPy arrays or tensors of shape ``(n_samples, *sample
    shape)``, at least 2-D, or map-style torch Datasets whose items are
    ``x`` or ``(x, y, ...)`` (only ``x`` is used: labels are always passed as
    ``y``). ``fit`` records the sample shape in ``input_shape_`` (and
    ``n_features_in_`` for 2-D input); scoring another shape is a
    ``ValueError``. NaN or infinite inputs raise a ``ValueError`` when their
    batch reaches the model.

    The model is never modified: gradients are taken with respect to a copy
    of the inputs only (``torch.autograd.grad``, so no ``.grad`` is stored on
    the parameters), and the ``training`` flag of every submodule is
    restored afterwards, also after an exception. ``clone`` shares the model
    instead of copying it, as :class:`~sklearn_ood.torch.TorchFeatureTransformer`
    does.
    """

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "model": "no_validation",  # checked in fit with a more helpful message
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
    }

    #: Cast integer inputs to the model's floating dtype (needed for gradients
    #: with respect to the inputs); otherwise they reach the model unchanged.
    _float_inputs = False

    def __sklearn_clone__(self):
        return _clone_sharing_modules(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the detector on in-distribution inputs.

        Parameters
        ----------
        X : array-like, torch.Tensor or Dataset
            Raw model inputs of shape ``(n_samples, *sample_shape)``, e.g.
            images ``(n_samples, C, H, W)``, or a map-style Dataset.
        y : array-like of shape (n_samples,), default=None
            Integer labels: the class of ID samples (>= 0), a negative value
            for OOD samples, which are ignored.

        Returns
        -------
        self : object
            Fitted detector.
        """
        _check_model(self.model)
        inputs = self._check_inputs(X, reset=True)
        y = self._check_fit_labels(_Rows(inputs.n_samples), y)
        if y is not None:
            inputs, y = inputs.subset(y >= 0), y[y >= 0]
        self._check_params(inputs)
        fit_scores = self._fit(inputs, y)
        if fit_scores is None:
            # At most _offset_sample_size fit samples (a seeded uniform sample)
            # set the threshold, as in BaseDetector.
            rows = self._offset_row_indices(inputs.n_samples)
            fit_scores = self._score(inputs.subset(rows))
        self.offset_ = self._offset_from_scores(fit_scores)
        return self

    def _check_params(self, inputs):
        """Checks of parameters against the fit inputs (before ``_fit``)."""

    def _fit(self, inputs, y):
        """Learn from the ID inputs; may return their (honest) scores."""
        return None

    # ---------------------------------------------------------------- score
    def score_samples(self, X):
        """In-distribution score of each sample: higher is more in-distribution.

        Parameters
        ----------
        X : array-like, torch.Tensor or Dataset
            Raw model inputs with the sample shape seen in ``fit``.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            float32 for float16/float32 inputs, float64 otherwise.
        """
        check_is_fitted(self)
        _check_model(self.model)
        inputs = self._check_inputs(X, reset=False)
        return np.asarray(self._score(inputs)).astype(inputs.dtype, copy=False)

    # -------------------------------------------------------------- helpers
    def _check_inputs(self, X, reset):
        inputs = _ModelInput(X)
        shape = inputs.sample_shape
        if reset:
            self.input_shape_ = shape
            if len(shape) == 1:
                self.n_features_in_ = shape[0]
            elif hasattr(self, "n_features_in_"):
                del self.n_features_in_
        elif shape != self.input_shape_:
            name = type(self).__name__
            if len(shape) == 1 and len(self.input_shape_) == 1:
                raise ValueError(
                    f"X has {shape[0]} features, but {name} is expecting "
                    f"{self.input_shape_[0]} features as input."
                )
            raise ValueError(
                f"X has samples of shape {shape}, but {name} was fitted on samples "
                f"of shape {self.input_shape_}."
            )
        return inputs

    def _placement(self):
        """``(model, device, dtype)``; the model is moved to ``device``."""
        model = _check_model(self.model)
        device = _resolve_device(self.device, model)
        if self.device is not None:
            model.to(device)
        return model, device, _floating_dtype(model)

    def _batches(self, inputs, device, dtype):
        """Input batches on ``device``; floats cast to the model's dtype."""
        for xb in inputs.batches(self.batch_size, device):
            if torch.is_inference(xb):  # made under inference_mode: no autograd
                with torch.inference_mode(False):
                    xb = xb.clone()
            if self._float_inputs and not xb.is_floating_point():
                xb = xb.to(dtype)
            xb = _to_device(xb, device, dtype)
            if xb.is_floating_point() and not torch.isfinite(xb).all():
                raise ValueError("Input X contains NaN or infinity.")
            yield xb

    @staticmethod
    @contextlib.contextmanager
    def _running(model):
        """Eval mode (flags restored on exit) without autograd."""
        with _eval_mode(model), torch.no_grad():
            yield


class _Rows:
    """Stands in for ``X`` in :meth:`BaseDetector._check_fit_labels`."""

    def __init__(self, n_samples):
        self.shape = (n_samples,)


# --------------------------------------------------------------- gradients
def _input_gradient(loss_fn, xb):
    """``d loss_fn(x) / dx`` at ``xb``, leaving no ``.grad`` on any tensor.

    Works inside ``torch.no_grad`` or ``torch.inference_mode`` too. The loss
    is a sum of per-sample terms, so the gradient is per sample as long as
    the model treats samples independently (true in eval mode).
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = xb.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x), x)
    return grad


def _perturb(xb, grad, epsilon, norm_std):
    """``x - epsilon * sign(grad) / std`` (``std`` per channel, dim 1)."""
    step = grad.sign()
    if norm_std is not None:
        std = torch.as_tensor(norm_std, dtype=step.dtype, device=step.device)
        step = step / std.view(1, -1, *([1] * (step.ndim - 2)))
    return (xb - epsilon * step).detach()


def _check_norm_std(norm_std, sample_shape):
    """``norm_std`` as a float64 array with one positive std per channel."""
    if norm_std is None:
        return None
    std = np.asarray(norm_std, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise ValueError(f"norm_std must hold positive finite stds; got {norm_std}.")
    if std.size != sample_shape[0]:
        raise ValueError(
            f"norm_std has {std.size} value(s), but the inputs have "
            f"{sample_shape[0]} channel(s) (dimension 1 of X, shape "
            f"{(None, *sample_shape)})."
        )
    return std


def _check_logits(logits, n):
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != n:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
        raise ValueError(
            f"The model must return logits of shape (n_samples, n_classes); got "
            f"{shape} for {n} samples."
        )
    return logits
