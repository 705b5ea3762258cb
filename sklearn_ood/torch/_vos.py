r"""Virtual outlier synthesis (VOS): an energy regulariser with a learned
logistic regression, against real and synthesised outliers."""

import torch
import torch.nn.functional as F
from torch import nn

from sklearn_ood.torch._losses import (
    _check_inputs,
    _check_real,
    _group_mean,
    _id_cross_entropy,
    _OODLoss,
)
from sklearn_ood.torch._openset_losses import _check_positive_int

__all__ = ["VOSRegLoss"]


def weighted_energy(logits, weight):
    """``-log sum_c relu(w_c) exp(f_c)`` per row (stable)."""
    row_max = logits.max(dim=1, keepdim=True).values
    weights = F.relu(weight.reshape(-1)).to(logits.dtype)
    total = (weights * torch.exp(logits - row_max)).sum(dim=1)
    return -(row_max[:, 0] + torch.log(total))


class VOSRegLoss(_OODLoss):
    r"""Cross-entropy plus VOS's logistic energy regulariser, with virtual outliers.

    .. math::

        \mathcal{L} = \operatorname{CE}_\text{in} + \alpha \Big(
            \operatorname{mean}_{v \in \mathcal{V}}
              -\log \frac{1}{1 + e^{\phi(E(v))}}
            + \ldots \Big), \qquad
        E(x) = -\log \sum_c \operatorname{ReLU}(w_c) \, e^{f_c(x)}

    Du, Wang, Cai & Li, "VOS: Learning What You Don't Know by Virtual
    Outlier Synthesis", ICLR 2022. The regulariser is the cross-entropy of
    a learned logistic regression :math:`\phi` (the submodule
    ``logistic_regression``, ``Linear(1, 2)``: two logits, ID = 1 and
    outlier = 0) on the weighted energies :math:`E` (class weights :math:`w`
    in the submodule ``weights_energy``, ``Linear(n_classes, 1)``,
    initialised uniform on [0, 1] as in the reference), averaged over the
    ID rows and the outliers together; both submodules are trained by the
    net's optimizer with the model. The outliers are the rows with
    ``target < 0`` of the batch and, with ``virtual_outliers=True``, the
    virtual outliers :math:`\mathcal{V}`: the penultimate features of the
    last ``sample_number`` ID rows of each class are queued; once every
    queue is full, a Gaussian per class (the class mean and the shared,
    class-centred covariance plus :math:`10^{-4} I`) draws ``sample_from``
    features, of which the ``select`` of lowest likelihood are kept and sent
    through the model's last linear layer to give their logits.

    Synthesis needs the model output ``(logits, features, head)`` in
    training, the last being the ``nn.Linear`` that maps the features to the
    logits; :class:`WithFeatures` returns exactly that. A plain logits
    output (or ``(logits, features)``, as in evaluation mode) uses the real
    outliers only, which is pytorch-ood 0.4.0's ``VOSRegLoss``; its
    ``VirtualOutlierSynthesizingRegLoss`` synthesises and drops real
    outliers (with a warning). Both equal this loss on the same batch and
    outliers; a batch without any outlier (real or virtual) has a zero
    regulariser here, whereas pytorch-ood's ``VOSRegLoss`` still fits
    :math:`\phi` to the ID energies alone. The reference uses the positive
    score :math:`-E` with the labels the other way round, the same model up
    to the sign of :math:`\phi`; it starts synthesis after 40 epochs with
    ``sample_number=1000``, ``select=1``, ``sample_from=10000``
    (the defaults here) and :math:`\alpha = 0.1`.

    Parameters
    ----------
    n_classes : int >= 1
        Number of ID classes (logit columns).
    alpha : float >= 0, default=0.1
        Weight :math:`\alpha` of the regulariser.
    virtual_outliers : bool, default=True
        Whether to synthesise virtual outliers when the output carries the
        features and the head.
    sample_number : int >= 1, default=1000
        Queue length per class.
    select : int >= 1, default=1
        Virtual outliers kept per class and step.
    sample_from : int >= 1, default=10000
        Samples drawn per class and step, ``>= select``.
    reduction : {"mean", "sum"}, default="mean"
        ``"mean"``: the formula above; ``"sum"``: the ID cross-entropies'
        sum plus :math:`\alpha` times the sum of the logistic terms.

    Attributes
    ----------
    logistic_regression : torch.nn.Linear
        :math:`\phi`, ``Linear(1, 2)``.
    weights_energy : torch.nn.Linear
        The class weights :math:`w` of the energy, ``Linear(n_classes, 1)``.

    See Also
    --------
    WithFeatures : Returns the features and the head in training mode.
    EnergyRegularizedLoss : Squared hinges on the plain energy.
    sklearn_ood.detectors.WeightedEnergy : The weighted energy score.

    References
    ----------
    .. [1] X. Du, Z. Wang, M. Cai and Y. Li, "VOS: Learning What You Don't
       Know by Virtual Outlier Synthesis", ICLR 2022.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import VOSRegLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> loss = VOSRegLoss(n_classes=2, alpha=0.1)
    >>> logits = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    >>> value = loss(logits, torch.tensor([0, -1]))  # real outliers only
    >>> bool(value > 0)
    True
    """

    def __init__(
        self,
        n_classes,
        alpha=0.1,
        virtual_outliers=True,
        sample_number=1000,
        select=1,
        sample_from=10000,
        reduction="mean",
    ):
        super().__init__()
        self.n_classes = n_classes
        self.alpha = alpha
        self.virtual_outliers = virtual_outliers
        self.sample_number = sample_number
        self.select = select
        self.sample_from = sample_from
        self.reduction = reduction
        self._validate_params()
        self.logistic_regression = nn.Linear(1, 2)
        self.weights_energy = nn.Linear(n_classes, 1)
        nn.init.uniform_(self.weights_energy.weight)
        self.queue = None  # (n_classes, sample_number, n_features), lazily
        self.register_buffer("queue_counts", torch.zeros(n_classes, dtype=torch.long))

    def _validate_params(self):
        _check_positive_int("n_classes", self.n_classes)
        _check_real("alpha", self.alpha, low=0)
        if not isinstance(self.virtual_outliers, bool):
            raise ValueError(
                f"virtual_outliers must be a bool; got {self.virtual_outliers!r}."
            )
        for name in ("sample_number", "select", "sample_from"):
            _check_positive_int(name, getattr(self, name))
        if self.select > self.sample_from:
            raise ValueError(
                f"select ({self.select}) must not exceed sample_from "
                f"({self.sample_from})."
            )
        if self.reduction not in ("mean", "sum"):
            raise ValueError(
                'reduction must be "mean" or "sum" (the virtual outliers are not '
                f"rows of the batch); got {self.reduction!r}."
            )

    # ------------------------------------------------------------ queues
    def queues_full(self):
        """Whether every class queue holds ``sample_number`` features.

        Returns
        -------
        full : bool
            True once virtual outliers are synthesised.
        """
        return bool((self.queue_counts >= self.sample_number).all())

    @torch.no_grad()
    def _enqueue(self, features, target):
        if self.queue is None or self.queue.shape[2] != features.shape[1]:
            self.queue = features.new_zeros(
                (self.n_classes, self.sample_number, features.shape[1])
            )
            self.queue_counts.zero_()
        self.queue = self.queue.to(features.device, features.dtype)
        for c in torch.unique(target).tolist():
            new = features[target == c]
            count = int(self.queue_counts[c])
            kept = torch.cat([self.queue[c, :count], new])[-self.sample_number :]
            self.queue[c, : len(kept)] = kept
            self.queue_counts[c] = len(kept)

    @torch.no_grad()
    def _synthesize(self):
        """``select`` lowest-likelihood draws per class, (C * select, D)."""
        queue = self.queue.double()
        means = queue.mean(dim=1)
        centred = (queue - means[:, None]).reshape(-1, queue.shape[2])
        cov = centred.T @ centred / len(centred)
        cov += 1e-4 * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        chol = torch.linalg.cholesky(cov)
        z = torch.randn(
            self.n_classes,
            self.sample_from,
            len(cov),
            dtype=cov.dtype,
            device=cov.device,
        )
        # log N(mu + L z) = const - |z|^2 / 2: the lowest likelihoods are the
        # largest |z|.
        idx = z.square().sum(dim=2).topk(self.select, dim=1).indices
        z = torch.gather(z, 1, idx[:, :, None].expand(-1, -1, z.shape[2]))
        virtual = means[:, None] + z @ chol.T
        return virtual.reshape(-1, virtual.shape[2]).to(self.queue.dtype)

    # ----------------------------------------------------------- forward
    def regularizer(self, energy_in, energy_out):
        """The logistic-regression term on ID and outlier energies.

        Parameters
        ----------
        energy_in : torch.Tensor of shape (n_in,)
            Weighted energies of the ID rows (label 1).
        energy_out : torch.Tensor of shape (n_out,)
            Weighted energies of the outliers (label 0).

        Returns
        -------
        term : torch.Tensor
            The cross-entropy of ``logistic_regression``, averaged (or
            summed, with ``reduction="sum"``) over all energies; 0 without
            an outlier.
        """
        if len(energy_out) == 0:
            return energy_in.sum() * 0.0
        energies = torch.cat([energy_in, energy_out])
        labels = torch.cat(
            [
                torch.ones(len(energy_in), dtype=torch.long, device=energies.device),
                torch.zeros(len(energy_out), dtype=torch.long, device=energies.device),
            ]
        )
        weight = self.logistic_regression.weight.to(energies.dtype)
        bias = self.logistic_regression.bias.to(energies.dtype)
        out = F.linear(energies[:, None], weight, bias)
        return F.cross_entropy(out, labels, reduction=self.reduction)

    def forward(self, outputs, target):
        """The VOS loss of a batch.

        Parameters
        ----------
        outputs : torch.Tensor or tuple
            Logits of shape ``(n_samples, n_classes)``; or ``(logits,
            features)``; or ``(logits, features, head)`` for synthesis.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks a (real) outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar.
        """
        self._validate_params()
        features = head = None
        if isinstance(outputs, (tuple, list)):
            logits = outputs[0]
            features = outputs[1] if len(outputs) > 1 else None
            head = outputs[2] if len(outputs) > 2 else None
        else:
            logits = outputs
        logits, target = _check_inputs(logits, target)
        if logits.shape[1] != self.n_classes:
            raise ValueError(
                f"VOSRegLoss was built for n_classes={self.n_classes}; the logits "
                f"have {logits.shape[1]} columns."
            )
        is_in = target >= 0
        ce_rows = _id_cross_entropy(logits, target, is_in)
        ce = _group_mean(ce_rows, is_in) if self.reduction == "mean" else ce_rows.sum()
        weight = self.weights_energy.weight
        energy = weighted_energy(logits, weight)
        energy_out = energy[~is_in]
        if self.virtual_outliers and head is not None and features is not None:
            if not callable(head):
                raise ValueError(
                    "The third model output must be the head (the nn.Linear that "
                    f"maps the features to the logits); got {type(head).__name__}."
                )
            features = features.reshape(len(features), -1)
            was_full = self.queue is not None and self.queues_full()
            if is_in.any():
                self._enqueue(features[is_in].detach(), target[is_in])
            if was_full:
                virtual_logits = head(self._synthesize())
                energy_out = torch.cat(
                    [energy_out, weighted_energy(virtual_logits, weight)]
                )
        reg = self.regularizer(energy[is_in], energy_out)
        return ce + self.alpha * reg
