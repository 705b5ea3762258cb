r"""OOD training losses: torch criteria called as ``criterion(logits, target)``.

Every loss here is a ``torch.nn.Module`` whose ``forward(logits, target)``
takes logits of shape ``(n_samples, n_classes)`` and integer labels of shape
``(n_samples,)``. Rows with ``target >= 0`` are in-distribution (ID) samples
of that class; rows with ``target < 0`` are auxiliary outliers (the
package's label convention, and pytorch-ood's). A batch may hold only ID
rows or only outlier rows: the missing group's term is 0, never NaN.

All constructor arguments are plain values, so the losses are skorch
criteria: pass the class and route its arguments by prefix,
``NeuralNetClassifier(module, criterion=EnergyRegularizedLoss,
criterion__alpha=0.1)``, and ``set_params(criterion__alpha=...)`` (a grid
search) rebuilds it. skorch's ``predict_nonlinearity="auto"`` applies a
softmax only for ``torch.nn.CrossEntropyLoss`` criteria, so a net using
these losses must set ``predict_nonlinearity`` to a softmax itself.

Reductions: ``reduction="none"`` returns one term per row, ``l_i``,
aligned with the batch: the ID rows carry their cross-entropy (plus, for
the energy loss, their weighted ID hinge), the outlier rows their weighted
outlier term, and a row a loss does not use carries 0. ``"sum"`` is
``l.sum()``. ``"mean"`` is the sum of the two *per-group* means,
``mean_{ID} l_i + mean_{out} l_i`` (weights ``1 / N_in`` and ``1 / N_out``,
an empty group giving 0), as the reference OE and energy code average each
term over its own rows; the one exception, :class:`EntropicOpenSetLoss`,
averages over the whole batch as its paper and pytorch-ood do.
"""

import inspect
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from torch import nn

__all__ = [
    "EnergyRegularizedLoss",
    "EntropicOpenSetLoss",
    "IDCrossEntropyLoss",
    "LogitNormLoss",
    "OutlierExposureLoss",
    "UnleashingMaskLoss",
    "energy_margins",
]

_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}.")


def _check_real(name, value, low=None, strict=False):
    """``value`` checked to be a real number (not a bool) above ``low``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number; got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}.")
    if low is not None and (value <= low if strict else value < low):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {low}; got {value!r}.")


def _check_inputs(logits, target):
    """``(logits, target)`` checked; ``target`` as int64 on the logits' device."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
        raise ValueError(
            f"logits must be a tensor of shape (n_samples, n_classes); got {shape!r}."
        )
    if not torch.is_floating_point(logits):
        raise ValueError(
            f"logits must be a floating-point tensor; got dtype {logits.dtype}."
        )
    target = torch.as_tensor(target, device=logits.device)
    if target.dtype == torch.bool or torch.is_floating_point(target):
        raise ValueError(
            "target must hold integer labels (class index >= 0 for an ID "
            f"sample, < 0 for an outlier); got dtype {target.dtype}."
        )
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"target must have shape (n_samples,) = ({len(logits)},); got "
            f"{tuple(target.shape)}."
        )
    return logits, target.long()


def _id_cross_entropy(logits, target, is_in):
    """Per-row cross-entropy on the ID rows, 0 on the outlier rows."""
    return F.cross_entropy(
        logits, torch.where(is_in, target, -100), ignore_index=-100, reduction="none"
    )


def _uniform_cross_entropy(logits):
    """Per-row cross-entropy to the uniform distribution: lse(f) - mean_c f_c."""
    return torch.logsumexp(logits, dim=1) - logits.mean(dim=1)


def _outlier_exposure(logits, is_in):
    """Per-row cross-entropy to the uniform distribution on the outlier rows, 0
    on the ID rows."""
    oe = _uniform_cross_entropy(logits)
    return torch.where(is_in, torch.zeros_like(oe), oe)


def _group_mean(values, mask):
    """Mean of ``values[mask]``; 0 (keeping the graph) for an empty group."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def _reduce(rows, is_in, reduction):
    """Per-row terms reduced as the module docstring says (per-group means)."""
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return _group_mean(rows, is_in) + _group_mean(rows, ~is_in)


# ---------------------------------------------------------------------------
# Cross-entropy over the ID rows
# ---------------------------------------------------------------------------


class _OODLoss(nn.Module):
    """Shared plumbing of the losses: ``repr`` from the constructor parameters.

    Subclasses store their constructor arguments as attributes of the same
    names (plain values, so that skorch's ``criterion__*`` parameters and
    ``set_params`` rebuild them) and check them in ``_validate_params``.
    """

    def extra_repr(self):
        names = inspect.signature(type(self).__init__).parameters
        return ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in names
            if name != "self" and getattr(self, name) is not None
        )


class _RegularizedCrossEntropy(_OODLoss):
    """ID cross-entropy plus a per-row regulariser ``_regularizer(logits, is_in)``.

    Energy regularisation and outlier exposure differ only in that term;
    :class:`UnleashingMaskLoss` adds the same term (``regularizer``) to its
    flooded cross-entropy.
    """

    def regularizer(self, logits, target):
        """The weighted regularisation term of every row, without the CE.

        Its per-group means, summed, are the loss's regularisation term (the
        formula is in the class docstring).

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        terms : torch.Tensor of shape (n_samples,)
            The weighted term of each row.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        return self._regularizer(logits, target >= 0)

    def forward(self, logits, target):
        """The loss of a batch: ID cross-entropy plus the regulariser.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        rows = _id_cross_entropy(logits, target, is_in) + self._regularizer(
            logits, is_in
        )
        return _reduce(rows, is_in, self.reduction)


class IDCrossEntropyLoss(_OODLoss):
    r"""Cross-entropy over the in-distribution rows, ignoring outlier rows.

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0}
            \Big( \log \sum_c e^{f_c(x_i)} - f_{y_i}(x_i) \Big)

    The plain classification loss for batches that may carry auxiliary
    outliers (``target < 0``, any negative value): they are ignored, so a
    net can be trained on ``fit(X, y)`` with ``y = -1`` rows without them
    biasing the classifier. ``torch.nn.CrossEntropyLoss(ignore_index=-1)``
    does the same for the label -1 only; pytorch-ood 0.4.0's
    ``CrossEntropyLoss`` computes the same value and warns when outliers
    are present. A batch without ID rows gives 0, not NaN.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, the row's cross-entropy for an ID
        row and 0 for an outlier row.

    See Also
    --------
    OutlierExposureLoss : Adds a cross-entropy to the uniform on outliers.
    EnergyRegularizedLoss : Adds squared hinges on the free energy.
    UnleashingMaskLoss : Floods this loss at a level.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import IDCrossEntropyLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    >>> target = torch.tensor([0, -1])
    >>> loss = IDCrossEntropyLoss()(logits, target)
    >>> round(loss.item(), 4)  # log(1 + e^-2), the outlier row ignored
    0.1269
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_reduction(self.reduction)

    def forward(self, logits, target):
        """Cross-entropy of the ID rows of ``logits`` against ``target``.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        return _reduce(_id_cross_entropy(logits, target, is_in), is_in, self.reduction)


# ---------------------------------------------------------------------------
# Energy regularisation
# ---------------------------------------------------------------------------


def _energy(logits):
    return -torch.logsumexp(logits, dim=1)


class EnergyRegularizedLoss(_RegularizedCrossEntropy):
    r"""Cross-entropy plus squared hinges pushing ID and outlier energies apart.

    .. math::

        \mathcal{L} = \operatorname{CE}_\text{in}
            + \alpha \Big( \frac{1}{N_\text{in}} \sum_{i \in \text{in}}
                \max(0, E(x_i) - m_\text{in})^2
            + \frac{1}{N_\text{out}} \sum_{j \in \text{out}}
                \max(0, m_\text{out} - E(x_j))^2 \Big),
        \qquad E(x) = -\log \sum_c e^{f_c(x)}

    Liu, Wang, Owens & Li, "Energy-based Out-of-distribution Detection",
    NeurIPS 2020: fine-tuning with this loss lowers the energy of ID samples
    below :math:`m_\text{in}` and raises that of auxiliary outliers
    (``target < 0``) above :math:`m_\text{out}`; the hinges are zero
    inside the margins. :math:`\operatorname{CE}_\text{in}` is the mean
    cross-entropy over the ID rows, and each hinge is averaged over its own
    rows, as in the reference code (``CIFAR/train.py``); an empty group
    gives 0. It equals pytorch-ood 0.4.0's ``EnergyRegularizedLoss`` for
    every reduction.

    The defaults :math:`\alpha = 0.1`, :math:`m_\text{in} = -25`,
    :math:`m_\text{out} = -7` are the reference code's, tuned for a
    WideResNet-40-2 on CIFAR; its run script actually uses -23 / -5 on
    CIFAR-10 and -27 / -5 on CIFAR-100, and the paper's Section 4.1 swaps
    the two names (the code is right, as its author confirmed). They are
    far too extreme for small models: the author advises margins near the
    pretrained model's mean ID and mean outlier energies, which
    :func:`energy_margins` computes from its logits.

    Parameters
    ----------
    alpha : float >= 0, default=0.1
        Weight :math:`\alpha` of the energy term (``--energy_beta`` in the
        Unleashing Mask code, ``lambda`` in the paper).
    margin_in : float, default=-25.0
        :math:`m_\text{in}`: ID energies above it are penalised.
    margin_out : float, default=-7.0
        :math:`m_\text{out}`: outlier energies below it are penalised.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"``: one value per row, :math:`\operatorname{CE}_i + \alpha
        \max(0, E_i - m_\text{in})^2` for an ID row and :math:`\alpha
        \max(0, m_\text{out} - E_j)^2` for an outlier row; ``"sum"``: their
        sum; ``"mean"``: the formula above (the ID rows' mean plus the
        outlier rows' mean).

    See Also
    --------
    energy_margins : Margins from a trained model's mean energies.
    OutlierExposureLoss : Cross-entropy to the uniform on the outliers.
    UnleashingMaskLoss : Floods the ID cross-entropy; composes with this loss.
    sklearn_ood.detectors.Energy : The energy score this loss trains for.

    References
    ----------
    .. [1] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import EnergyRegularizedLoss
    >>> logits = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    >>> target = torch.tensor([0, -1])
    >>> loss = EnergyRegularizedLoss(alpha=0.1, margin_in=-2.0, margin_out=0.0)
    >>> ce = torch.logsumexp(logits[0], 0) - 3.0
    >>> e_out = -torch.logsumexp(logits[1], 0)  # -log 2, below m_out = 0
    >>> manual = ce + 0.1 * (0.0 - e_out) ** 2  # E_in = -3.05 < m_in: no hinge
    >>> torch.isclose(loss(logits, target), manual)
    tensor(True)
    """

    def __init__(self, alpha=0.1, margin_in=-25.0, margin_out=-7.0, reduction="mean"):
        super().__init__()
        self.alpha = alpha
        self.margin_in = margin_in
        self.margin_out = margin_out
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("alpha", self.alpha, low=0)
        _check_real("margin_in", self.margin_in)
        _check_real("margin_out", self.margin_out)
        _check_reduction(self.reduction)

    def _regularizer(self, logits, is_in):
        energy = _energy(logits)
        hinge = torch.where(
            is_in,
            (energy - self.margin_in).relu().square(),
            (self.margin_out - energy).relu().square(),
        )
        return self.alpha * hinge


def _as_logits_array(logits, name):
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().double().numpy()
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty array of shape (n_samples, n_classes); "
            f"got shape {logits.shape}."
        )
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return logits


def energy_margins(logits_id, logits_out):
    r"""Energy margins from a trained model: its mean ID and outlier energies.

    Returns :math:`(m_\text{in}, m_\text{out}) = (\overline{E}_\text{in},
    \overline{E}_\text{out})` with :math:`E(x) = -\log \sum_c e^{f_c(x)}`,
    the mean energies of the pretrained model on ID samples and on the
    auxiliary outliers, computed in float64. The energy paper's defaults
    (-25 / -7, for a WideResNet on CIFAR; its run script uses -23 / -5 and
    -27 / -5, and the paper's text swaps the two names) do not transfer to
    other models; its author advises margins near these averages
    (wetliu/energy_ood issues 13 and 21). With them, the hinges start by
    penalising the ID samples of above-average energy and the outliers of
    below-average energy; shift them apart (lower :math:`m_\text{in}`,
    higher :math:`m_\text{out}`) for a stronger push.

    Parameters
    ----------
    logits_id : array-like or torch.Tensor of shape (n_id, n_classes)
        The pretrained model's logits on ID (training) samples, e.g. from
        ``TorchFeatureTransformer(model, layer="logits")``.
    logits_out : array-like or torch.Tensor of shape (n_out, n_classes)
        Its logits on the auxiliary outliers used for fine-tuning.

    Returns
    -------
    margin_in : float
        Mean ID energy, for ``EnergyRegularizedLoss(margin_in=...)``.
    margin_out : float
        Mean outlier energy, for ``EnergyRegularizedLoss(margin_out=...)``.

    See Also
    --------
    EnergyRegularizedLoss : The loss that uses these margins.
    sklearn_ood.detectors.Energy : Energy score (its negation) of a model.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.torch import EnergyRegularizedLoss, energy_margins
    >>> logits_id = np.array([[4.0, 0.0], [0.0, 6.0]])
    >>> logits_out = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> m_in, m_out = energy_margins(logits_id, logits_out)
    >>> round(m_in, 3), round(m_out, 3)
    (-5.01, -1.193)
    >>> loss = EnergyRegularizedLoss(margin_in=m_in, margin_out=m_out)
    """
    logits_id = _as_logits_array(logits_id, "logits_id")
    logits_out = _as_logits_array(logits_out, "logits_out")
    if logits_id.shape[1] != logits_out.shape[1]:
        raise ValueError(
            "logits_id and logits_out must come from the same model; got "
            f"{logits_id.shape[1]} and {logits_out.shape[1]} classes."
        )
    margin_in = float(-logsumexp(logits_id, axis=1).mean())
    margin_out = float(-logsumexp(logits_out, axis=1).mean())
    return margin_in, margin_out


# ---------------------------------------------------------------------------
# Outlier exposure and the entropic open-set loss
# ---------------------------------------------------------------------------


class OutlierExposureLoss(_RegularizedCrossEntropy):
    r"""Cross-entropy plus a cross-entropy to the uniform on the outliers.

    .. math::

        \mathcal{L} = \operatorname{CE}_\text{in}
            + \alpha \, \frac{1}{N_\text{out}} \sum_{j \in \text{out}}
              \Big( \log \sum_c e^{f_c(x_j)} - \frac{1}{C} \sum_c f_c(x_j)
              \Big)

    Hendrycks, Mazeika & Dietterich, "Deep Anomaly Detection with Outlier
    Exposure", ICLR 2019. The outlier term of a row is the cross-entropy
    from its softmax to the uniform distribution over the :math:`C`
    classes, :math:`-\frac{1}{C} \sum_c \log \operatorname{softmax}_c`;
    it is at least :math:`\log C`, reached at constant logits. Each term is
    averaged over its own rows (ID rows ``target >= 0``, outlier rows
    ``target < 0``), as the reference code does (``CIFAR/oe_tune.py``);
    an empty group gives 0. :math:`\alpha = 0.5` is the paper's weight for
    image classifiers.

    pytorch-ood 0.4.0's ``OutlierExposureLoss`` computes the same per-row
    terms (its ``reduction="none"`` equals ours) but averages them over the
    whole batch: with :math:`N = N_\text{in} + N_\text{out}`,

    .. math::

        \mathcal{L}_\text{pytorch-ood} = \frac{N_\text{in} \,
            \operatorname{CE}_\text{in} + \alpha \, N_\text{out} \,
            \operatorname{OE}_\text{out}}{N},

    i.e. an effective outlier weight :math:`\alpha N_\text{out} /
    N_\text{in}` and an overall factor :math:`N_\text{in} / N` (with the
    reference's 1:2 batches, ours is ``CE + 0.5 OE`` where pytorch-ood's is
    ``(CE + OE) / 3``).

    Parameters
    ----------
    alpha : float >= 0, default=0.5
        Weight :math:`\alpha` of the outlier term (:math:`\lambda` in the
        paper).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"``: one value per row, the cross-entropy for an ID row and
        :math:`\alpha` times the cross-entropy to the uniform for an
        outlier row; ``"sum"``: their sum; ``"mean"``: the formula above
        (the ID rows' mean plus the outlier rows' mean).

    See Also
    --------
    EntropicOpenSetLoss : The same terms, averaged over the whole batch.
    EnergyRegularizedLoss : Squared hinges on the free energy instead.
    UnleashingMaskLoss : Floods the ID cross-entropy; composes with this loss.

    References
    ----------
    .. [1] D. Hendrycks, M. Mazeika and T. Dietterich, "Deep Anomaly
       Detection with Outlier Exposure", ICLR 2019.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import OutlierExposureLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> target = torch.tensor([0, -1])
    >>> loss = OutlierExposureLoss(alpha=0.5)(logits, target)
    >>> round(loss.item(), 4)  # log(1 + e^-2) + 0.5 * log 2
    0.4735
    """

    def __init__(self, alpha=0.5, reduction="mean"):
        super().__init__()
        self.alpha = alpha
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("alpha", self.alpha, low=0)
        _check_reduction(self.reduction)

    def _regularizer(self, logits, is_in):
        return self.alpha * _outlier_exposure(logits, is_in)


class EntropicOpenSetLoss(_OODLoss):
    r"""Entropic open-set loss: cross-entropy, and maximal entropy on outliers.

    .. math::

        \mathcal{L} = \frac{1}{N} \Big( \sum_{i \in \text{in}}
            \operatorname{CE}(f(x_i), y_i)
            - \sum_{j \in \text{out}} \frac{1}{C} \sum_c
              \log \operatorname{softmax}_c(f(x_j)) \Big)

    Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS
    2018: the outlier rows (``target < 0``) are pushed towards the uniform
    softmax. Unlike the other losses here, the terms are averaged over the
    whole batch of :math:`N` rows, as in the paper and pytorch-ood 0.4.0
    (whose ``EntropicOpenSetLoss`` this equals). Since
    :math:`-\frac{1}{C}\sum_c \log \operatorname{softmax}_c = \log \sum_c
    e^{f_c} - \frac{1}{C}\sum_c f_c`, its per-row terms are exactly those of
    :class:`OutlierExposureLoss` with ``alpha=1`` (same ``reduction="none"``
    output), and with ``reduction="mean"``

    .. math::

        \mathcal{L} = \frac{N_\text{in}}{N} \operatorname{CE}_\text{in}
            + \frac{N_\text{out}}{N} \operatorname{OE}_\text{out},

    where ``OutlierExposureLoss(alpha=1)`` gives
    :math:`\operatorname{CE}_\text{in} + \operatorname{OE}_\text{out}`
    (pytorch-ood's ``OutlierExposureLoss(alpha=1)`` gives this loss).

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"``: one value per row, the cross-entropy for an ID row and
        the cross-entropy to the uniform for an outlier row; ``"sum"``:
        their sum; ``"mean"``: their mean over all rows (0 for an empty
        batch).

    See Also
    --------
    OutlierExposureLoss : The same terms, each averaged over its own rows.
    IDCrossEntropyLoss : The cross-entropy alone.

    References
    ----------
    .. [1] A. R. Dhamija, M. Günther and T. E. Boult, "Reducing Network
       Agnostophobia", NeurIPS 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import EntropicOpenSetLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> target = torch.tensor([0, -1])
    >>> loss = EntropicOpenSetLoss()(logits, target)
    >>> round(loss.item(), 4)  # (log(1 + e^-2) + log 2) / 2
    0.41
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_reduction(self.reduction)

    def forward(self, logits, target):
        """The entropic open-set loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        rows = _id_cross_entropy(logits, target, is_in) + _outlier_exposure(
            logits, is_in
        )
        if self.reduction == "none":
            return rows
        if self.reduction == "sum":
            return rows.sum()
        return rows.sum() / max(len(rows), 1)


# ---------------------------------------------------------------------------
# LogitNorm
# ---------------------------------------------------------------------------


class LogitNormLoss(_OODLoss):
    r"""Cross-entropy of the L2-normalised logits divided by a temperature.

    .. math::

        \mathcal{L} = \operatorname{CE}_\text{in}\Big(
            \frac{f(x)}{\tau \, (\lVert f(x) \rVert_2 + 10^{-7})} \Big)

    Wei, Xie, Cheng, Feng, An & Li, "Mitigating Neural Network
    Overconfidence with Logit Normalization", ICML 2022: the logits'
    norm is fixed at :math:`1/\tau` during training, so the network cannot
    lower the loss by inflating it, which keeps its confidence on OOD
    inputs low. The :math:`10^{-7}` is added to the norm before the
    division by :math:`\tau`, as in the authors' code and pytorch-ood
    0.4.0's ``LogitNorm`` (which this equals on the ID rows). It is a
    training-from-scratch loss (the authors train 200 epochs) that uses no
    outliers: outlier rows (``target < 0``) are dropped (they contribute 0;
    pytorch-ood drops them with a warning).

    The temperature default is 0.01, the value of the authors' README run
    command. Their ``train.py`` defaults to ``--temp 1.0``, which is
    pytorch-ood's default too, but at :math:`\tau = 1` the normalised
    logits lie on the unit sphere, any two differ by at most
    :math:`\sqrt{2}`, and the loss cannot fall below
    :math:`\log(1 + (C - 1) e^{-\sqrt{2}})` (1.16 nats for 10 classes): the
    classifier barely trains. The paper tunes :math:`\tau` per dataset;
    treat it as a hyperparameter.

    Parameters
    ----------
    temperature : float > 0, default=0.01
        Temperature :math:`\tau` (``--temp`` in the authors' code, ``t``
        in pytorch-ood).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, 0 for an outlier row (pytorch-ood
        returns the ID rows only).

    See Also
    --------
    IDCrossEntropyLoss : The cross-entropy of the raw logits.
    OutlierExposureLoss : A fine-tuning loss that uses outliers.

    References
    ----------
    .. [1] H. Wei, R. Xie, H. Cheng, L. Feng, B. An and Y. Li, "Mitigating
       Neural Network Overconfidence with Logit Normalization", ICML 2022.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import LogitNormLoss
    >>> logits = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    >>> target = torch.tensor([1, -1])
    >>> loss = LogitNormLoss(temperature=1.0)(logits, target)
    >>> round(loss.item(), 4)  # CE of [0.6, 0.8] for class 1
    0.5981
    """

    def __init__(self, temperature=0.01, reduction="mean"):
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("temperature", self.temperature, low=0, strict=True)
        _check_reduction(self.reduction)

    def forward(self, logits, target):
        """The LogitNorm loss of the ID rows of a batch.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are dropped.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        norm = torch.linalg.vector_norm(logits, dim=1, keepdim=True) + 1e-7
        scaled = logits / (norm * self.temperature)
        return _reduce(_id_cross_entropy(scaled, target, is_in), is_in, self.reduction)


# ---------------------------------------------------------------------------
# Unleashing Mask: the flooded ID cross-entropy
# ---------------------------------------------------------------------------

_OUTLIER_LOSSES = {"oe": OutlierExposureLoss, "energy": EnergyRegularizedLoss}


class UnleashingMaskLoss(_OODLoss):
    r"""Flooded ID cross-entropy (Unleashing Mask), plus an optional outlier term.

    .. math::

        \mathcal{L} = \big| \beta \operatorname{CE}_\text{in} - b \big| + b
            + R_\text{out}

    Zhu, Chen, Xie, Gong, Liu, Han & Chen, "Unleashing Mask: Explore the
    Intrinsic Out-of-Distribution Detection Capability", ICML 2023. The
    constraint ("flooding") acts on the batch-mean cross-entropy of the ID
    rows, :math:`\operatorname{CE}_\text{in}`: above the level :math:`b`
    (``level``) it is the identity, :math:`\beta \operatorname{CE}_\text{in}`;
    below it the loss is :math:`2b - \beta \operatorname{CE}_\text{in}`, so
    the step is a gradient *ascent* on the cross-entropy, which keeps the
    fine-tuned model from memorising the atypical ID samples. ``level=0``
    means no constraint (the plain :math:`\beta \operatorname{CE}_\text{in}`).
    The Unleashing Mask repository estimates the level as the mean
    cross-entropy of the trained model with a random 3.5 % of its weights
    masked, on its training data.

    :math:`R_\text{out}` composes the flood with an outlier loss as the
    Unleashing Mask code does for its OE and energy methods: the flood
    applies to the ID cross-entropy only and the outlier term is added
    unflooded. With ``outlier_loss="oe"`` it is the outlier term of
    :class:`OutlierExposureLoss` (default weight 0.5), with ``"energy"``
    the hinge terms of :class:`EnergyRegularizedLoss` (default weight 0.1,
    margins -25 / -7), each averaged over its own rows; an empty group
    gives 0, and so does the flooded term of a batch without ID rows.

    Two pitfalls of the reference repository. Its flood only runs when
    ``--criterion`` is set to something other than ``CrossEntropyLoss``,
    which no shipped configuration or README command does: as shipped,
    UM is plain training. And it floods the validation loss as well
    (logging only). A criterion cannot tell training from validation:
    skorch calls ``get_loss(y_pred, y_true, X, training)`` for both, and a
    net that wants the flood in training only overrides ``get_loss`` to call
    ``self.criterion_(y_pred, y_true, flood=training)``.

    Parameters
    ----------
    level : float >= 0, default=0.0
        The flood level :math:`b` (``--UM`` in the reference code); 0
        turns the constraint off.
    beta : float > 0, default=1.0
        Scale :math:`\beta` of the ID cross-entropy before the comparison
        (``--beta``; ``L = beta |CE - b / beta| + b``).
    outlier_loss : {None, "oe", "energy"} or object, default=None
        The outlier term :math:`R_\text{out}`: None for none (outlier rows
        are then ignored), ``"oe"`` or ``"energy"`` as above, or an object
        with a ``regularizer(logits, target)`` method returning one
        weighted term per row (e.g. an :class:`OutlierExposureLoss` or
        :class:`EnergyRegularizedLoss` instance, whose own parameters are
        used), reduced like the per-group terms here.
    alpha : float >= 0 or None, default=None
        Weight of the outlier term for ``outlier_loss="oe"`` or
        ``"energy"``; None is that loss's default (0.5 or 0.1). A plain
        argument, so that a grid search can set ``criterion__alpha``.
    margin_in : float or None, default=None
        :math:`m_\text{in}` for ``outlier_loss="energy"``; None is -25.
    margin_out : float or None, default=None
        :math:`m_\text{out}` for ``outlier_loss="energy"``; None is -7.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"``: one value per row; an ID row carries its flooded
        cross-entropy :math:`s (\beta \operatorname{CE}_i - b) + b` with
        :math:`s = \operatorname{sign}(\beta \operatorname{CE}_\text{in} - b)`
        taken on the batch mean (so that the ID rows' mean is the flooded
        term) plus its outlier-loss term, an outlier row its outlier-loss
        term; ``"sum"``: their sum; ``"mean"``: the formula above (the ID
        rows' mean plus the outlier rows' mean).

    See Also
    --------
    OutlierExposureLoss : The OE term, for ``outlier_loss="oe"``.
    EnergyRegularizedLoss : The energy term, for ``outlier_loss="energy"``.
    IDCrossEntropyLoss : The unflooded ID cross-entropy.

    References
    ----------
    .. [1] J. Zhu, Y. Chen, J. Xie, Z. Gong, T. Liu, B. Han and X. Chen,
       "Unleashing Mask: Explore the Intrinsic Out-of-Distribution
       Detection Capability", ICML 2023.
    .. [2] T. Ishida, I. Yamane, T. Sakai, G. Niu and M. Sugiyama, "Do We
       Need Zero Training Loss After Achieving Zero Training Error?",
       ICML 2020 (flooding).

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import UnleashingMaskLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> target = torch.tensor([0, -1])
    >>> ce = torch.log(1 + torch.exp(torch.tensor(-2.0)))  # 0.1269
    >>> loss = UnleashingMaskLoss(level=0.5)
    >>> torch.isclose(loss(logits, target), 2 * 0.5 - ce)  # below the level
    tensor(True)
    >>> loss = UnleashingMaskLoss(level=0.1, outlier_loss="oe")
    >>> torch.isclose(loss(logits, target), ce + 0.5 * torch.log(torch.tensor(2.0)))
    tensor(True)
    """

    def __init__(
        self,
        level=0.0,
        beta=1.0,
        outlier_loss=None,
        alpha=None,
        margin_in=None,
        margin_out=None,
        reduction="mean",
    ):
        super().__init__()
        self.level = level
        self.beta = beta
        self.outlier_loss = outlier_loss
        self.alpha = alpha
        self.margin_in = margin_in
        self.margin_out = margin_out
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("level", self.level, low=0)
        _check_real("beta", self.beta, low=0, strict=True)
        _check_reduction(self.reduction)
        outlier_loss = self.outlier_loss
        named = isinstance(outlier_loss, str)
        if named and outlier_loss not in _OUTLIER_LOSSES:
            raise ValueError(
                'outlier_loss must be None, "oe", "energy" or an object with a '
                f"regularizer(logits, target) method; got {outlier_loss!r}."
            )
        if not named and outlier_loss is not None:
            if not callable(getattr(outlier_loss, "regularizer", None)):
                raise ValueError(
                    'outlier_loss must be None, "oe", "energy" or an object with '
                    "a regularizer(logits, target) method (e.g. an "
                    "OutlierExposureLoss or EnergyRegularizedLoss); got "
                    f"{type(outlier_loss).__name__}."
                )
        if self.alpha is not None:
            if not named:
                raise ValueError(
                    'alpha is the weight of outlier_loss="oe" or "energy"; got '
                    f"outlier_loss={outlier_loss!r}. Leave alpha=None (an "
                    "outlier-loss object carries its own weight)."
                )
            _check_real("alpha", self.alpha, low=0)
        for name in ("margin_in", "margin_out"):
            value = getattr(self, name)
            if value is not None:
                if outlier_loss != "energy":
                    raise ValueError(
                        f'{name} is only used with outlier_loss="energy"; got '
                        f"outlier_loss={outlier_loss!r}. Leave {name}=None."
                    )
                _check_real(name, value)

    def _outlier_term(self):
        """The module whose ``regularizer`` gives the outlier term, or None."""
        if not isinstance(self.outlier_loss, str):
            return self.outlier_loss
        kwargs = {}
        if self.alpha is not None:
            kwargs["alpha"] = self.alpha
        if self.outlier_loss == "energy":
            for name in ("margin_in", "margin_out"):
                if getattr(self, name) is not None:
                    kwargs[name] = getattr(self, name)
        return _OUTLIER_LOSSES[self.outlier_loss](**kwargs)

    def forward(self, logits, target, flood=True):
        """The flooded ID cross-entropy plus the outlier term of a batch.

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes)
            Model outputs.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.
        flood : bool, default=True
            False computes the loss without the constraint (as with
            ``level=0``), e.g. for validation batches.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        ce = self.beta * _id_cross_entropy(logits, target, is_in)
        level = float(self.level) if flood else 0.0
        if level != 0.0:
            # The flood |v - b| + b of the batch mean v, written per row so
            # that the ID rows' mean is exactly it: s (beta CE_i - b) + b.
            sign = torch.sign(_group_mean(ce, is_in) - level).detach()
            ce = torch.where(is_in, sign * (ce - level) + level, ce)
        outlier_term = self._outlier_term()
        if outlier_term is not None:
            ce = ce + outlier_term.regularizer(logits, target)
        return _reduce(ce, is_in, self.reduction)
