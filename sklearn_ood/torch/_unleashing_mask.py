"""Unleashing Mask: the loss-level estimate and the learned weight masks (UMAP).

Zhu et al. (ICML 2023) fine-tune a trained classifier so that its ID
cross-entropy stays at a level estimated from the model itself
(:func:`estimate_um_level`), either by training the weights (UM) or by
learning a binary mask over frozen weights (UMAP: :func:`add_learnable_masks`
to train, :func:`apply_masks` for the plain masked model).

The masked layers are ``nn.Linear`` and ``nn.Conv1d/2d/3d``, as the UM
repository's ``SubnetLinear`` and ``SubnetConv``; biases are never masked.
The masks are built the same way everywhere: per layer of ``n`` weights,
``j = int((1 - keep) * n)`` weights with the smallest ``|score|`` are zeroed
and ``n - j`` are kept (the edge-popup cut of the UM repository, where
``prune_rate`` is the *kept* fraction).
"""

import copy
import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn
from torch.nn.utils import parametrize

from sklearn_ood.torch._devices import _floating_dtype, _resolve_device
from sklearn_ood.torch._inputs import _call_model, _check_labels, _ModelInput
from sklearn_ood.torch._utils import _check_logits, _check_model

__all__ = ["add_learnable_masks", "apply_masks", "estimate_um_level"]

_MASKED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def estimate_um_level(module, X, y, *, keep=0.965, batch_size=256, random_state=None):
    """Estimate the Unleashing-Mask loss level of a trained classifier.

    The Unleashing-Mask repository's estimate (``estimate_loss.py``): the
    mean per-sample cross-entropy of the trained model on its training data,
    in eval mode and without gradients, after a random mask has zeroed a
    fraction ``1 - keep`` of the weights of every ``nn.Linear`` and
    ``nn.Conv1d/2d/3d`` layer, layer by layer::

        level = (1 / N) * sum_i CE(f_masked(x_i), y_i)

    In each layer of ``n`` weights (in ``module.modules()`` order),
    ``j = int((1 - keep) * n)`` weights are zeroed: those with the smallest
    ``|u|`` for ``u = rng.uniform(-1, 1, size=weight.shape)``, ``rng =
    check_random_state(random_state)``, i.e. a uniformly random subset (the
    repository's mask comes from randomly initialised scores, since a dense
    checkpoint has none). Biases are not masked. The result is the ``level``
    of the UM loss ``|beta * CE - level| + level``. The caller's module is
    not modified: the mask is applied to a deep copy.

    The repository runs this on the augmented training set with a fresh
    random mask, so its value varies from run to run; here a seeded
    ``random_state`` makes it reproducible, and augmentation is up to the
    caller's ``X``.

    Parameters
    ----------
    module : torch.nn.Module
        The trained classifier, returning logits ``(n_samples, n_classes)``.
        It runs where it is (the inputs go to its device) in its floating
        dtype.
    X : array-like, torch.Tensor or Dataset of shape (n_samples, ...)
        The training inputs, prepared as for the model.
    y : array-like of shape (n_samples,)
        Class labels in ``0 .. n_classes - 1``. Rows with ``y < 0``
        (auxiliary outliers) are ignored.
    keep : float, default=0.965
        Fraction of the weights of every layer that the mask keeps, in
        (0, 1]; ``keep=1`` gives the plain mean cross-entropy. 0.965 is the
        repository's CIFAR-10 setting.
    batch_size : int, default=256
        Samples per forward pass.
    random_state : int, RandomState instance or None, default=None
        Draws the masks. Pass an int for a reproducible estimate.

    Returns
    -------
    level : float
        The mean per-sample cross-entropy of the masked model, in nats
        (accumulated in float64).

    See Also
    --------
    UnleashingMaskLoss : The UM loss, which takes this level.
    add_learnable_masks : The learned masks of UMAP, trained at this level.
    apply_masks : The plain masked model after UMAP training.

    References
    ----------
    Zhu, Chen, Xie, Han, Song, Chen, Liu & Han, "Unleashing Mask: Explore
    the Intrinsic Out-of-Distribution Detection Capability", ICML 2023.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_ood.torch import estimate_um_level
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> X, y = torch.randn(20, 4), torch.arange(20) % 3
    >>> level = estimate_um_level(model, X, y, keep=0.9, random_state=0)
    >>> level > 0
    True
    """
    _check_model(module)
    keep = _check_keep(keep)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if parametrize.is_parametrized(module) or any(
        parametrize.is_parametrized(m) for m in module.modules()
    ):
        raise ValueError(
            "module has parametrized weights (learnable masks?); estimate the "
            "level on the trained dense model, or call apply_masks first."
        )
    inputs = _ModelInput(X, allow_loader=False)
    y = _check_labels(y, inputs.n_samples)
    rows = y >= 0
    if not rows.any():
        raise ValueError(
            "y has no in-distribution rows (all labels are negative); the level "
            "is the cross-entropy of ID training samples."
        )
    inputs, y = inputs.subset(rows), y[rows]
    rng = check_random_state(random_state)

    masked = copy.deepcopy(module)
    layers = _layers(masked)
    with torch.no_grad():
        for layer in layers:
            shape = tuple(layer.weight.shape)
            u = rng.uniform(-1.0, 1.0, size=shape)
            mask = _top_mask(np.abs(u), keep)
            layer.weight.mul_(torch.as_tensor(mask).to(layer.weight))
    masked.eval()
    device = _resolve_device(None, masked)
    dtype = _floating_dtype(masked)

    total, start = 0.0, 0
    with torch.no_grad():
        for xb in inputs.batches(batch_size, device, dtype, check_finite=True):
            n = len(xb)
            logits = _check_logits(_call_model(masked, xb), n)
            yb = torch.as_tensor(y[start : start + n], device=logits.device)
            if int(yb.max()) >= logits.shape[1]:
                raise ValueError(
                    f"y holds the label {int(yb.max())}, but the model returns "
                    f"{logits.shape[1]} logits; labels must be in 0 .. "
                    f"{logits.shape[1] - 1}."
                )
            ce = nn.functional.cross_entropy(logits.double(), yb, reduction="sum")
            total += float(ce)
            start += n
    level = total / len(y)
    if not np.isfinite(level):
        raise ValueError(
            "The masked model's cross-entropy is not finite (its logits overflow "
            "or hold NaN); check the model and its inputs."
        )
    return level


def add_learnable_masks(module, keep=0.8, *, random_state=None):
    """A copy of ``module`` with frozen weights and a learnable mask (UMAP).

    Unleashing Mask with a learned mask (UMAP, spec of the UM repository's
    ``SubnetConv`` / ``SubnetLinear``): every ``nn.Linear`` and
    ``nn.Conv1d/2d/3d`` layer gets ``scores`` of its weight's shape, and its
    weight becomes ``w_eff = weight * m`` with the binary mask ``m = 1`` on
    the ``n - int((1 - keep) * n)`` entries of largest ``|scores|`` (0
    elsewhere), recomputed at each use. The mask passes the gradient
    straight through to ``|scores|``::

        dL/dscores = (dL/dw_eff * weight) * sign(scores)

    All parameters of the copy (weights, biases, batch-norm scales and
    shifts) are frozen (``requires_grad=False``); the scores are its only
    trainable parameters, so an optimizer over ``model.parameters()`` trains
    the mask alone (the repository's ``freeze_weights: True``). Batch-norm
    running statistics still update in training mode. The scores are drawn
    as the repository's (Kaiming uniform, ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))``) from ``random_state``, with the draws of
    :func:`estimate_um_level`: with the same ``keep`` and ``random_state``,
    the initial mask is the one of the estimate (up to ties in the weights'
    dtype).

    The masks are ``torch.nn.utils.parametrize`` parametrizations of
    ``weight``: each layer is still an ``nn.Linear`` or ``nn.Conv*d`` that
    reads its masked weight as ``layer.weight``, and its scores are
    ``layer.parametrizations.weight[0].scores``. Train the copy with the
    UM loss, then call :func:`apply_masks` for a plain module. Like every
    parametrized module, the copy saves through ``state_dict()`` but cannot
    be pickled whole.

    Parameters
    ----------
    module : torch.nn.Module
        The trained model; it is not modified.
    keep : float, default=0.8
        Fraction of the weights of every layer that the mask keeps, in
        (0, 1] (the repository's ``prune_rate``; 0.8 in its UMAP configs).
    random_state : int, RandomState instance or None, default=None
        Draws the initial scores. Pass an int for reproducible masks.

    Returns
    -------
    masked : torch.nn.Module
        A deep copy of ``module`` with the learnable masks, in the training
        mode of ``module``.

    See Also
    --------
    apply_masks : The plain module with the learned masks applied.
    estimate_um_level : The loss level UMAP trains at.
    UnleashingMaskLoss : The UM loss to train the scores with.

    References
    ----------
    Zhu et al., "Unleashing Mask: Explore the Intrinsic Out-of-Distribution
    Detection Capability", ICML 2023. Ramanujan et al., "What's Hidden in a
    Randomly Weighted Neural Network?", CVPR 2020 (edge-popup).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_ood.torch import add_learnable_masks, apply_masks
    >>> model = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3))
    >>> masked = add_learnable_masks(model, keep=0.8, random_state=0)
    >>> [name for name, p in masked.named_parameters() if p.requires_grad]
    ['0.parametrizations.weight.0.scores', '2.parametrizations.weight.0.scores']
    >>> plain = apply_masks(masked)
    >>> int((plain[0].weight == 0).sum())  # int((1 - 0.8) * 40) = 7 zeroed
    7
    """
    _check_model(module)
    keep = _check_keep(keep)
    if any(parametrize.is_parametrized(m) for m in module.modules()):
        raise ValueError(
            "module already has parametrized weights (learnable masks?); call "
            "apply_masks first, or pass the dense model."
        )
    rng = check_random_state(random_state)
    masked = copy.deepcopy(module)
    layers = _layers(masked)
    for param in masked.parameters():
        param.requires_grad_(False)
    for layer in layers:
        weight = layer.weight
        fan_in = weight[0].numel()
        u = rng.uniform(-1.0, 1.0, size=tuple(weight.shape)) / np.sqrt(fan_in)
        scores = torch.as_tensor(u).to(device=weight.device, dtype=weight.dtype)
        parametrize.register_parametrization(layer, "weight", _TopKMask(scores, keep))
    return masked


def apply_masks(module):
    """The plain module whose weights are the learned masks applied (UMAP).

    Returns a deep copy of a module from :func:`add_learnable_masks` in
    which every masked layer holds ``weight * m`` as an ordinary
    ``weight`` parameter: the parametrizations and scores are gone and
    each layer is again of its own class (``nn.Linear``, ``nn.Conv2d``,
    ...), so the result is a plain module like any other (for
    :class:`TorchFeatureTransformer`, the detectors, ``torch.save``,
    pickling). Its outputs equal those of the masked module. Every
    parameter is trainable again (``requires_grad=True``), as in a freshly
    built module.

    Parameters
    ----------
    module : torch.nn.Module
        A module returned by :func:`add_learnable_masks` (trained or not);
        it is not modified.

    Returns
    -------
    plain : torch.nn.Module
        The masked weights, frozen into a plain module, in the training mode
        of ``module``.

    See Also
    --------
    add_learnable_masks : Add the learnable masks to a trained model.
    estimate_um_level : The loss level UMAP trains at.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_ood.torch import add_learnable_masks, apply_masks
    >>> model = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 3))
    >>> masked = add_learnable_masks(model, keep=0.5, random_state=0)
    >>> plain = apply_masks(masked)
    >>> type(plain[0]) is nn.Linear
    True
    >>> x = torch.randn(5, 4)
    >>> torch.equal(plain(x), masked(x))
    True
    """
    _check_model(module)
    if not any(_is_masked(m) for m in module.modules()):
        raise ValueError(
            "module has no learnable masks; apply_masks takes a module returned "
            "by add_learnable_masks."
        )
    plain = copy.deepcopy(module)
    for layer in plain.modules():
        if _is_masked(layer):
            _unmask(layer)
    for param in plain.parameters():
        param.requires_grad_(True)
    return plain


def _is_masked(layer):
    return parametrize.is_parametrized(layer, "weight") and any(
        isinstance(p, _TopKMask) for p in layer.parametrizations.weight
    )


def _unmask(layer):
    """Replace the parametrized ``weight`` of ``layer`` by its value, in place.

    ``parametrize.remove_parametrizations`` would also delete the property
    from the parametrized class, which a deep copy shares with its original
    (breaking the caller's masked module): the layer gets its own class back
    here instead, and the class is left alone.
    """
    if (
        set(layer.parametrizations) != {"weight"}
        or len(layer.parametrizations.weight) != 1
    ):
        raise ValueError(
            f"The layer {type(layer).__bases__[0].__name__} has parametrizations "
            "besides its learnable mask; apply_masks handles the masks of "
            "add_learnable_masks only."
        )
    with torch.no_grad():
        weight = layer.weight.detach().clone()
    original_class = parametrize.type_before_parametrizations(layer)
    del layer._modules["parametrizations"]
    layer.__class__ = original_class
    layer.register_parameter("weight", nn.Parameter(weight))


class _TopKMask(nn.Module):
    """Parametrization ``weight -> weight * m(|scores|)`` with a straight-through
    gradient to the scores."""

    def __init__(self, scores, keep):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.keep = keep

    def forward(self, weight):
        return weight * self.mask()

    def mask(self):
        """The binary mask (the scores' graph attached, straight through)."""
        return _StraightThroughTopK.apply(self.scores.abs(), self.keep)

    def extra_repr(self):
        return f"keep={self.keep}"


class _StraightThroughTopK(torch.autograd.Function):
    """1 on the ``n - int((1 - keep) n)`` largest entries, 0 elsewhere; the
    gradient passes unchanged (edge-popup's ``GetSubnet``)."""

    @staticmethod
    def forward(ctx, magnitude, keep):
        mask = torch.ones_like(magnitude)
        j = _n_pruned(magnitude.numel(), keep)
        if j:
            order = torch.argsort(magnitude.flatten(), stable=True)
            mask.view(-1)[order[:j]] = 0
        return mask

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _n_pruned(n, keep):
    """Entries zeroed in a layer of ``n`` weights, as the UM repository."""
    return int((1 - keep) * n)


def _top_mask(magnitude, keep):
    """NumPy twin of :class:`_StraightThroughTopK`'s forward."""
    mask = np.ones(magnitude.size)
    j = _n_pruned(magnitude.size, keep)
    if j:
        mask[np.argsort(magnitude, axis=None, kind="stable")[:j]] = 0
    return mask.reshape(magnitude.shape)


def _layers(module):
    layers = [m for m in module.modules() if isinstance(m, _MASKED_LAYERS)]
    if not layers:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear or nn.Conv1d/2d/3d layer "
            "to mask."
        )
    return layers


def _check_keep(keep):
    if (
        isinstance(keep, bool)
        or not isinstance(keep, numbers.Real)
        or not 0 < keep <= 1
    ):
        raise ValueError(
            f"keep is the fraction of the weights the mask keeps, in (0, 1]; "
            f"got {keep!r}."
        )
    return float(keep)
