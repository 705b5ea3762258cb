"""Shared base of the detectors that run the model on raw inputs.

:class:`BaseTorchModelDetector` adapts :class:`~sklearn_ood.base.BaseDetector`
to model inputs of any sample shape (images ``(N, C, H, W)``, sequences,
tabular rows): validation (one input check, shared with
:class:`~sklearn_ood.torch.TorchFeatureTransformer`), batching, device
placement, eval mode with every ``training`` flag restored, and a ``clone``
that shares the model.
"""

import contextlib
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from sklearn_ood.base import BaseDetector
from sklearn_ood.torch._devices import _place_model
from sklearn_ood.torch._inputs import (
    PROBE_SIZE,
    _call_model,
    _check_input_shape,
    _ModelInput,
    _require_floating,
)
from sklearn_ood.torch._utils import _check_model, _clone_sharing_modules, _eval_mode

__all__ = ["BaseTorchModelDetector"]


class BaseTorchModelDetector(BaseDetector):
    """Base of the detectors that run a torch model on raw inputs.

    Subclasses implement ``_fit(inputs, y)`` and ``_score(inputs)``, where
    ``inputs`` is a validated ``_ModelInput``. ``_score`` returns float64
    scores, higher = more in-distribution. ``fit`` is
    :meth:`BaseDetector.fit <sklearn_ood.base.BaseDetector.fit>` with hooks
    that validate model inputs: ``offset_`` comes from the same seeded sample
    of at most 10,000 ID fit samples as for every detector (scored by
    ``_score``, or taken from the scores that ``_fit`` may return when it
    computes them anyway, e.g. Gram's leave-one-out scores), and
    ``contamination=None`` scores none.
    They loop over ``self._batches(inputs, device, dtype)`` inside
    ``self._running(model)`` (eval mode) or another mode of their own, and
    call the model through ``_call_model``.

    **Inputs.** ``X`` is a NumPy array or tensor of shape ``(n_samples,
    *sample_shape)``, at least 2-D, or a map-style torch Dataset whose items
    are ``x`` or ``(x, y, ...)`` (only ``x`` is used: labels are always
    passed as ``y``). ``fit`` records the sample shape in ``input_shape_``
    (and ``n_features_in_`` for 2-D input); scoring another shape is a
    ``ValueError``, as in :class:`~sklearn_ood.torch.TorchFeatureTransformer`.
    ``fit`` first runs two samples through the model: an error of the model
    there is a ``ValueError`` showing the sample shape it was given.
    Floating inputs are cast to the model's floating dtype (values beyond
    its range are a ``ValueError``); integer inputs are never converted:
    they reach the model as they are (e.g. token ids), and a model that
    fails on them gives a ``ValueError`` saying to convert and scale ``X`` as
    at training time. Detectors that step along the input gradient
    (``_input_gradients = True``) refuse integer inputs. NaN or infinite
    inputs raise a ``ValueError`` when their batch reaches the model.

    **Model state.** With ``device`` set, the model is moved there in place
    (``model.to(device)``) and stays there; otherwise it is never modified:
    its weights, ``.grad`` (gradients are taken with ``torch.autograd.grad``)
    and every submodule's ``training`` flag are as before, also after an
    exception. ``clone`` shares the model instead of copying it, as
    :class:`~sklearn_ood.torch.TorchFeatureTransformer` does.
    """

    _input_kind = "inputs"
    _family = "model"

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "model": "no_validation",  # checked in fit with a more helpful message
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
    }

    #: The method differentiates with respect to the inputs, which must then
    #: be floating point (integer inputs are refused, never cast).
    _input_gradients = False

    def __sklearn_clone__(self):
        return _clone_sharing_modules(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit the detector on in-distribution inputs.

        Parameters
        ----------
        X : array-like, torch.Tensor or Dataset
            Raw model inputs of shape ``(n_samples, *sample_shape)``, e.g.
            images ``(n_samples, C, H, W)``, or a map-style Dataset whose
            items are ``x`` or ``(x, y, ...)``. Floating inputs are cast to
            the model's floating dtype; integer inputs reach the model
            unchanged (e.g. token ids), never converted nor scaled.
        y : array-like of shape (n_samples,), default=None
            Integer labels: the class of ID samples (>= 0), a negative value
            for OOD samples, which are ignored.

        Returns
        -------
        self : object
            Fitted detector.
        """
        # BaseDetector.fit, with the model inputs validated by the hooks below.
        return super().fit(X, y)

    def _validate_fit_data(self, X, y, reset):
        _check_model(self.model)
        inputs = self._check_inputs(X, reset=reset)
        y = self._check_fit_labels(inputs, y)
        if y is not None:
            inputs, y = inputs.subset(y >= 0), y[y >= 0]
        self._check_params(inputs)
        self._check_model_accepts(inputs)
        return inputs, y

    def _fit_scores(self, inputs, rows):
        return self._score(inputs.subset(rows))

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
            Raw model inputs with the sample shape seen in ``fit``
            (``input_shape_``), under the same dtype rule.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The scores, in float32 for float16/float32 inputs, float64
            otherwise.
        """
        check_is_fitted(self)
        _check_model(self.model)
        inputs = self._check_inputs(X, reset=False)
        return np.asarray(self._score(inputs)).astype(inputs.score_dtype, copy=False)

    # -------------------------------------------------------------- helpers
    def _check_inputs(self, X, reset):
        inputs = _ModelInput(X, allow_loader=False)
        if self._input_gradients:
            _require_floating(inputs, type(self).__name__)
        _check_input_shape(self, inputs, reset=reset)
        return inputs

    def _check_model_accepts(self, inputs):
        """Run the first samples through the model: a refusal is a ValueError."""
        model, device, dtype = self._placement()
        xb = inputs.to_model(inputs.head(PROBE_SIZE), device, dtype, check_finite=True)
        with self._running(model):
            _call_model(model, xb, first_fit_batch=True)

    def _placement(self):
        """``(model, device, dtype)``; the model is moved to ``device``."""
        model = _check_model(self.model)
        device, dtype = _place_model(model, self.device)
        return model, device, dtype

    def _batches(self, inputs, device, dtype):
        """Input batches on ``device``; floats cast to the model's dtype."""
        for xb in inputs.batches(self.batch_size, device, dtype, check_finite=True):
            if torch.is_inference(xb):  # made under inference_mode: no autograd
                with torch.inference_mode(False):
                    xb = xb.clone()
            yield xb

    @staticmethod
    @contextlib.contextmanager
    def _running(model):
        """Eval mode (flags restored on exit) without autograd."""
        with _eval_mode(model), torch.no_grad():
            yield
