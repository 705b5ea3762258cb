"""RankFeat: energy after removing the rank-1 part of a layer's feature map."""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._inputs import _call_model
from sklearn_ood.torch._layers import _layer_names, _resolve_layers
from sklearn_ood.torch._utils import _check_logits

__all__ = ["RankFeat"]


class RankFeat(BaseTorchModelDetector):
    r"""RankFeat: energy of the logits once a feature map's rank-1 part is removed.

    .. math::

        X_l' = X_l - \sigma_1 u_1 v_1^\top, \qquad
        \bar f(x) = \frac{1}{L} \sum_{l=1}^{L} f\big(x;\, X_l \to X_l'\big),
        \qquad s(x) = T \log \sum_{k=1}^{K} \exp\big(\bar f_k(x) / T\big)

    Song, Sebe & Wang, "RankFeat: Rank-1 Feature Removal for
    Out-of-distribution Detection", NeurIPS 2022. :math:`X_l` is one
    sample's output of layer ``l`` (``layers``) as a ``C x HW`` matrix
    (an output ``(N, C, ...)`` reshaped to ``(N, C, prod(...))``),
    :math:`\sigma_1, u_1, v_1` its largest singular value and singular
    vectors (an exact SVD, in float64), and :math:`f(x; X_l \to X_l')` the
    logits of the model run with that layer's output replaced by
    :math:`X_l'`, through the rest of the network; every other layer is
    left as it is. The paper removes the rank-1 part at ResNet block 4
    ("RankFeat"), at block 3 (then block 4 runs on it unchanged) or at both
    ("Block 3 + 4"): as in the authors' code, several layers are fused by
    averaging their logits (one forward pass per layer), then scored by
    the energy :math:`s` at temperature :math:`T`. Higher is more
    in-distribution.

    The authors' code also offers 20 power iterations instead of the SVD
    (faster, approximate); OpenOOD v1.5 uses the SVD and
    ``layers=["layer4", "layer3"]`` of ResNet-18 with :math:`T = 1`.
    pytorch-ood 0.4.0's ``RankFeat`` takes the model split in a backbone
    and a head around one layer and returns the negative energy (its
    default scorer, ``EnergyBased.score``): for one layer, ours is its
    negation.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits. It is shared, never copied,
        and never modified apart from its placement on ``device``.
    layers : str or list of str
        Layers whose output feature maps :math:`X_l` lose their rank-1 part
        (one at a time): submodule names from ``model.named_modules()``.
        Each must run once per forward pass and return ``(N, C, ...)`` with
        at least 3 dimensions (feature maps, or token sequences).
    temperature : float > 0, default=1.0
        Temperature :math:`T` of the energy (the paper uses 1).
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
    layers_ : list of str
        The layers, in the order of ``layers``.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.Energy : Energy of the unmodified logits.
    sklearn_ood.detectors.ReAct : Energy after clipping the penultimate features.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, RankFeat
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = np.random.default_rng(0).random((6, 1, 8, 8))
    >>> det = RankFeat(model.double(), "block3", device="cpu").fit(X)
    >>> def strip_rank1(module, args, out):
    ...     u, s, vh = torch.linalg.svd(out.flatten(2), full_matrices=False)
    ...     rank1 = s[:, :1, None] * u[:, :, :1] @ vh[:, :1]
    ...     return out - rank1.view(out.shape)
    >>> handle = model.block3.register_forward_hook(strip_rank1)
    >>> with torch.no_grad():
    ...     manual = torch.logsumexp(model(torch.as_tensor(X)), dim=1)
    >>> handle.remove()
    >>> np.allclose(det.score_samples(X), manual.numpy())
    True
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "layers": [str, list, tuple],
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        model,
        layers,
        temperature=1.0,
        *,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.layers = layers
        self.temperature = temperature
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        layers = _resolve_layers(self.model, _layer_names(self.layers))
        for block, (name, where) in layers.items():
            if where != "output" or not name:
                raise ValueError(
                    f"RankFeat needs feature maps: layer {block!r} is not the output "
                    "of a submodule; name a submodule of model.named_modules()."
                )
        self.layers_ = list(layers)

    def _score(self, inputs):
        model, device, dtype = self._placement()
        modules = dict(model.named_modules(remove_duplicate=False))
        state = {"active": None, "calls": dict.fromkeys(self.layers_, 0)}

        def make_hook(block):
            def hook(module, args, output):
                state["calls"][block] += 1
                if state["active"] == block:
                    return _remove_rank1(output, block)
                return None

            return hook

        handles = []
        scores = []
        try:
            for block in self.layers_:
                if block not in modules:
                    raise ValueError(
                        f"The model has no submodule {block!r} any more; refit the "
                        "detector after changing the model."
                    )
                handles.append(modules[block].register_forward_hook(make_hook(block)))
            with self._running(model):
                for xb in self._batches(inputs, device, dtype):
                    total = 0.0
                    for block in self.layers_:
                        state["active"] = block
                        state["calls"] = dict.fromkeys(self.layers_, 0)
                        logits = _check_logits(_call_model(model, xb), len(xb))
                        if state["calls"][block] != 1:
                            raise ValueError(
                                f"Layer {block!r} ran {state['calls'][block]} times in "
                                "one forward pass; RankFeat needs a module that runs "
                                "exactly once."
                            )
                        total = total + logits.to(torch.float64)
                    logits = total / len(self.layers_)
                    t = self.temperature
                    energy = t * torch.logsumexp(logits / t, dim=1)
                    scores.append(energy.cpu().numpy())
        finally:
            for handle in handles:
                handle.remove()
        scores = np.concatenate(scores)
        if not np.isfinite(scores).all():
            raise ValueError(
                "RankFeat produced NaN or infinite scores; check the model's outputs "
                "for NaN or infinite values."
            )
        return scores


def _remove_rank1(output, block):
    """``output`` (N, C, ...) less the rank-1 part of each sample's C x rest."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        raise TypeError(
            f"Layer {block!r} produced a {type(output).__name__}; RankFeat needs a "
            "floating-point feature map."
        )
    if output.ndim < 3:
        raise ValueError(
            f"Layer {block!r} produced shape {tuple(output.shape)}; RankFeat needs "
            "feature maps (n_samples, channels, ...) with at least 3 dimensions "
            "(the rank-1 part of a single column is the whole vector)."
        )
    X = output.to(torch.float64).flatten(2)  # (N, C, P)
    if not torch.isfinite(X).all():
        raise ValueError(f"Layer {block!r} produced NaN or infinite features.")
    u, s, vh = torch.linalg.svd(X, full_matrices=False)
    rank1 = s[:, :1, None] * (u[:, :, :1] @ vh[:, :1, :])
    return (X - rank1).view(output.shape).to(output.dtype)
