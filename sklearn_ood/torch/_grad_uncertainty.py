"""GradUncertainty: per-sample parameter gradients against a confounding label."""

import difflib

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._utils import _check_logits, _eval_mode
from sklearn_ood.utils._chunking import chunk_n_rows

__all__ = ["GradUncertainty"]

# Per-sample temporaries of the vectorised gradient, in gradient sizes: the
# gradient itself, its square and autograd's buffers.
_GRADIENT_COPIES = 4


class GradUncertainty(BaseTorchModelDetector):
    r"""GradUncertainty: size of the gradient that would make every class certain.

    .. math::

        J(x) = \sum_{k=1}^{K} \operatorname{BCE}\big(p_k(x), 1\big)
             = -\sum_{k=1}^{K} \log p_k(x), \quad
        p = \operatorname{softmax}(f(x)), \qquad
        s(x) = \sum_{g} \Big\lVert \frac{\partial J(x)}{\partial \theta_g}
               \Big\rVert_2^2

    Lee & AlRegib, "Gradients as a Measure of Uncertainty in Neural
    Networks", ICIP 2020: the binary cross-entropy between the softmax
    output and a *confounding* label, the all-ones vector that no
    prediction can match, is back-propagated for each sample alone, and
    :math:`\theta_g` runs over the selected parameter tensors
    (``parameters``, e.g. a layer's weight and bias). Its derivative with
    respect to the logits is :math:`K p - 1`: zero for a uniform softmax
    and large for a confident one, so the gradients of familiar inputs are
    larger and the score is higher for more in-distribution inputs.

    The paper concatenates the per-layer squared norms into a feature
    vector and trains a small classifier on ID and OOD gradients; this
    detector is the unsupervised sum of those norms, as in pytorch-ood.
    Per-sample gradients come from ``torch.func`` (``vmap`` of ``grad``
    over ``functional_call``, in chunks that follow scikit-learn's
    ``working_memory``), or a loop over samples for models that ``vmap``
    cannot batch (``.item()`` or data-dependent control flow). The model's
    parameters are never touched (frozen ones are scored too). Squares are
    summed in float64.

    pytorch-ood 0.4.0's ``GradUncertainty`` (default: all parameters, its
    ``param_filter`` selects some) returns :math:`-s(x)`: ours is its
    negation. It applies torch's ``binary_cross_entropy`` to the softmax
    probabilities, which clamps :math:`\log p_k` at :math:`-100`; ours takes
    ``log_softmax``, the same for :math:`p_k > e^{-100}`. It also leaves the
    model in its own mode, where this detector switches to eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits. It is shared, never copied,
        and never modified apart from its placement on ``device``.
    parameters : "all" or list of str, default="all"
        The parameter tensors :math:`\theta_g`: names from
        ``model.named_parameters()`` (e.g. ``"fc.weight"``), or submodule
        names from ``model.named_modules()`` for all their parameters
        (e.g. ``"fc"``, the head alone, is much cheaper than ``"all"``).
    batch_size : int, default=128
        Samples per batch (per-sample gradients are computed in chunks of
        at most this many).
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
    parameters_ : list of str
        Names of the selected parameter tensors.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    GradNorm : L1 norm of the head's gradient of a KL to the uniform.
    sklearn_ood.detectors.MaxSoftmax : Confidence of the softmax itself.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, GradUncertainty
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = torch.rand(6, 1, 8, 8)
    >>> det = GradUncertainty(model, parameters=["fc"], device="cpu").fit(X)
    >>> det.parameters_
    ['fc.weight', 'fc.bias']
    >>> with torch.no_grad():  # the head alone: ||3p - 1||^2 (||h||^2 + 1)
    ...     h = model.pool(model.block3(model.block2(model.block1(X))))
    ...     g = 3 * torch.softmax(model.fc(h), dim=1) - 1
    >>> manual = (g**2).sum(1) * ((h**2).sum(1) + 1)
    >>> np.allclose(det.score_samples(X), manual.numpy(), rtol=1e-5)
    True
    >>> model.fc.weight.grad is None
    True
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "parameters": [str, list, tuple],
    }

    def __init__(
        self,
        model,
        parameters="all",
        *,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.parameters = parameters
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        self.parameters_ = _select_parameters(self.model, self.parameters)

    def _score(self, inputs):
        model, device, dtype = self._placement()
        named = dict(model.named_parameters())
        missing = [name for name in self.parameters_ if name not in named]
        if missing:
            raise ValueError(
                f"The model has no parameter {missing[0]!r} any more; refit the "
                "detector after changing the model."
            )
        selected = {name: named[name].detach() for name in self.parameters_}
        fixed = {name: p.detach() for name, p in named.items() if name not in selected}
        fixed.update(dict(model.named_buffers()))
        n_values = sum(p.numel() for p in selected.values())
        itemsize = max(p.element_size() for p in selected.values())
        chunk = chunk_n_rows(
            _GRADIENT_COPIES * n_values * itemsize, max_n_rows=self.batch_size
        )

        def loss(params, x):
            logits = functional_call(model, {**params, **fixed}, (x[None],))
            logits = _check_logits(logits, 1)
            return -torch.log_softmax(logits, dim=1).sum()

        def squared_norm(params, x):
            grads = grad(loss)(params, x)
            return sum((g.to(torch.float64) ** 2).sum() for g in grads.values())

        batched = vmap(squared_norm, in_dims=(None, 0), chunk_size=chunk)
        scores, vectorised = [], True
        with _eval_mode(model), torch.inference_mode(False):
            for xb in self._batches(inputs, device, dtype):
                if vectorised:
                    try:
                        scores.append(batched(selected, xb).cpu().numpy())
                        continue
                    except RuntimeError as exc:
                        if "vmap" not in str(exc):
                            raise
                        # .item() or data-dependent control flow: one by one.
                        vectorised = False
                values = [squared_norm(selected, x) for x in xb]
                scores.append(torch.stack(values).cpu().numpy())
        scores = np.concatenate(scores)
        if not np.isfinite(scores).all():
            raise ValueError(
                "GradUncertainty produced NaN or infinite gradients; check the "
                "model's outputs for NaN or infinite values."
            )
        return scores


def _select_parameters(model, parameters):
    """Names of the parameter tensors that ``parameters`` selects."""
    names = [name for name, _ in model.named_parameters()]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no parameters: GradUncertainty measures "
            "the gradient of the model's parameters."
        )
    if isinstance(parameters, str):
        if parameters == "all":
            return names
        parameters = [parameters]
    if not parameters:
        raise ValueError('parameters must be "all" or name at least one parameter.')
    modules = dict(model.named_modules())
    chosen = []
    for item in parameters:
        if not isinstance(item, str) or not item:
            raise ValueError(
                f"Parameter names must be non-empty strings; got {item!r}."
            )
        if item in names:
            found = [item]
        elif item in modules:
            prefix = item + "."
            found = [name for name in names if name.startswith(prefix)]
            if not found:
                raise ValueError(f"The submodule {item!r} has no parameters.")
        else:
            close = difflib.get_close_matches(item, names + list(modules), n=3)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"{item!r} is neither a parameter nor a submodule of "
                f"{type(model).__name__}.{hint}"
            )
        chosen.extend(name for name in found if name not in chosen)
    return [name for name in names if name in chosen]  # the model's order
