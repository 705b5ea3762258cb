"""GradNorm: the size of the last linear layer's weight gradient of a KL."""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._inputs import _call_model
from sklearn_ood.torch._layers import _linear_layer, _linear_module
from sklearn_ood.torch._utils import _check_logits, _eval_mode

__all__ = ["GradNorm"]


class GradNorm(BaseTorchModelDetector):
    r"""GradNorm: L1 norm of a linear layer's weight gradient of a KL to the uniform.

    .. math::

        G(x) = \frac{\partial}{\partial W}
               D_\text{KL}\big(u \,\big\|\, \operatorname{softmax}(f(x) / T)\big),
        \qquad s(x) = \lVert G(x) \rVert_1
                    = \frac{1}{T} \big\lVert \operatorname{softmax}(f(x)/T) - u
                      \big\rVert_1 \, \lVert h(x) \rVert_1

    Huang, Geng & Li, "On the Importance of Gradients for Detecting
    Distributional Shifts in the Wild", NeurIPS 2021: :math:`u` is the
    uniform distribution over the :math:`K` classes and :math:`W` the weight
    (not the bias) of the last linear layer (``layer``), :math:`f = W h + b`. The
    right-hand side holds because, for one sample, the gradient is the outer
    product :math:`g \, h^\top` of :math:`g = \partial D_\text{KL} /
    \partial f = (\operatorname{softmax}(f/T) - u) / T` and the layer's input
    :math:`h`, whose L1 norm factorises. It is computed that way for a
    whole batch at once: one forward pass, no backward pass through the
    network, no loop over samples. In general :math:`g` is the gradient with
    respect to the layer's *output*, taken by autograd through whatever the
    model computes after it (nothing, for a plain classifier); the model
    must treat samples independently (eval mode) and call the layer once,
    on a 2-D input ``(n_samples, n_features)``.

    The authors' code takes the cross-entropy to an all-ones target,
    :math:`-\sum_k \log \operatorname{softmax}(f/T)_k`, instead of the KL
    of the paper: its gradient, hence its score, is :math:`K` times ours
    (same ranking). pytorch-ood 0.4.0's ``GradNorm`` uses the cross-entropy
    to :math:`u` (the KL up to a constant, same gradient), over *all*
    parameters unless ``param_filter`` selects some (per-sample gradients by
    ``torch.func.vmap``), and returns :math:`-s(x)`: with
    ``param_filter=lambda name: name == "<layer>.weight"`` ours is its
    negation.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits. It is shared, never copied,
        and never modified apart from its placement on ``device``.
    temperature : float > 0, default=1.0
        Temperature :math:`T` (the paper uses 1).
    layer : "auto" or str, default="auto"
        Name of the ``nn.Linear`` submodule whose weight gradient is
        measured (:math:`W`), as in ``model.named_modules()`` (e.g. ``"fc"``
        or ``"classifier.2"``); ``"auto"`` is the model's last ``nn.Linear``
        (in ``model.named_modules()`` order).
    batch_size : int, default=128
        Samples per forward pass.
    device : "auto", str, torch.device or None, default="auto"
        Where the model runs: ``"auto"`` is CUDA when available, else the
        CPU; or e.g. ``"cpu"``, ``"cuda:1"``, a ``torch.device``. The model
        is moved there in place (``model.to(device)``, as ``nn.Module.to``
        does) and stays there; its weights, ``.grad`` and ``training`` flags
        are left as they were. ``None`` leaves the model where it is and
        sends the inputs to the device of its first parameter.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit samples rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    layer_ : str
        Name of the ``nn.Linear`` whose weight gradient is measured.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    ODIN : Max softmax after an input-gradient step.
    sklearn_ood.detectors.Energy : Free energy of the logits.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, GradNorm
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = torch.rand(6, 1, 8, 8)
    >>> det = GradNorm(model, device="cpu").fit(X)
    >>> det.layer_
    'fc'
    >>> with torch.no_grad():
    ...     h = model.pool(model.block3(model.block2(model.block1(X))))
    ...     p = torch.softmax(model.fc(h), dim=1)
    >>> manual = (p - 1 / 3).abs().sum(1) * h.abs().sum(1)
    >>> np.allclose(det.score_samples(X), manual.numpy(), rtol=1e-5)
    True
    >>> model.fc.weight.grad is None
    True
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "layer": [str],
    }

    def __init__(
        self,
        model,
        temperature=1.0,
        *,
        layer="auto",
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.temperature = temperature
        self.layer = layer
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        self.layer_ = _linear_layer(
            self.model, self.layer, "GradNorm measures the gradient of an nn.Linear"
        )

    def _score(self, inputs):
        model, device, dtype = self._placement()
        linear = _linear_module(model, self.layer_)
        state = {}

        def hook(module, args, output):
            state["calls"] += 1
            state["h"] = args[0] if args else None
            # A fresh leaf: autograd tracks only what the model does after the
            # layer (the rest of the forward pass runs under no_grad).
            state["o"] = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)  # reset when the no_grad block exits
            return state["o"]

        handle = linear.register_forward_hook(hook)
        scores = []
        try:
            with _eval_mode(model):
                for xb in self._batches(inputs, device, dtype):
                    state["calls"] = 0
                    with torch.inference_mode(False), torch.no_grad():
                        logits = _check_logits(_call_model(model, xb), len(xb))
                        g, h = self._output_gradient(logits, state, len(xb))
                    g_norm = g.detach().to(torch.float64).abs().sum(1)
                    h_norm = h.detach().to(torch.float64).abs().sum(1)
                    scores.append((g_norm * h_norm).cpu().numpy())
        finally:
            handle.remove()
        return np.concatenate(scores)

    def _output_gradient(self, logits, state, n):
        """``dKL/d(layer output)`` of every sample, and the layer's input."""
        if state["calls"] != 1:
            raise ValueError(
                f"The layer {self.layer_!r} ran {state['calls']} times in one "
                "forward pass; GradNorm needs a layer that runs exactly once."
            )
        h, o = state["h"], state["o"]
        if not isinstance(h, torch.Tensor) or h.ndim != 2 or o.ndim != 2:
            raise ValueError(
                f"The layer {self.layer_!r} must map (n_samples, n_features) to "
                f"(n_samples, n_outputs); got input shape "
                f"{tuple(getattr(h, 'shape', ()))}."
            )
        with torch.enable_grad():
            log_p = torch.log_softmax(logits / self.temperature, dim=1)
            # sum_i KL(u || p_i) up to the constant -n log K.
            loss = -log_p.mean(1).sum()
            (g,) = torch.autograd.grad(loss, o, allow_unused=True)
        if g is None:
            raise ValueError(
                f"The model's output does not depend on the layer {self.layer_!r}."
            )
        return g, h
