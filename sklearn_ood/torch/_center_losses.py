r"""Centre and prototype losses: criteria on an embedding, called as
``criterion(output, target)``.

The network's output ``z = f(x)``, of shape ``(n_samples, n_dim)``, is an
embedding (for a classifier, its logits when ``n_dim`` is the number of
classes), and the loss pulls it towards centres kept in the loss: one per
class (:class:`CenterLoss`, :class:`CACLoss`, :class:`IILoss`,
:class:`MCHADLoss`) or one for all in-distribution (ID) data
(:class:`DeepSVDDLoss`, :class:`DeepSADLoss`). Rows with ``target >= 0``
are ID samples of that class, rows with ``target < 0`` auxiliary outliers,
as for the losses of ``_losses.py``, whose shared helpers (input checks,
reductions and the ``_OODLoss`` base) these losses import.

Learnable centres (:class:`CenterLoss`, :class:`MCHADLoss`) are
``torch.nn.Parameter`` of the criterion: skorch's
``get_all_learnable_params`` yields the criterion's parameters too, so
:class:`~sklearn_ood.torch.OODNeuralNetClassifier`'s optimizer trains them
with the network. Fixed centres (anchors, the Deep SVDD centre, the
running class means of the ii-loss) are buffers: ``.to(device)`` and
``state_dict`` carry them, no optimizer sees them.

Each loss exposes its centres as ``centers`` (a tensor of shape
``(n_centers, n_dim)``), which the paired detectors
:class:`~sklearn_ood.detectors.CenterDistance` and
:class:`~sklearn_ood.detectors.CACScore` accept as their ``centers``.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sklearn_ood.torch._losses import (
    _check_inputs,
    _check_real,
    _check_reduction,
    _OODLoss,
    _reduce,
)

__all__ = [
    "CACLoss",
    "CenterLoss",
    "DeepSADLoss",
    "DeepSVDDLoss",
    "IILoss",
    "MCHADLoss",
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _check_count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}.")


def _initial_centers(value, shape, name):
    """Float32 tensor of ``shape``: ``value`` checked, or standard normal draws
    from torch's global generator (which ``OODNeuralNetClassifier`` seeds
    from its ``random_state``)."""
    if value is None:
        return torch.randn(shape)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite.")
    return torch.as_tensor(array, dtype=torch.float32).clone()


def _check_embedding(output, target, n_dim, n_classes=None):
    """``(output, target)`` checked: ``output`` of ``n_dim`` columns and, for
    class-centre losses, ID labels below ``n_classes``."""
    if isinstance(output, torch.Tensor) and output.ndim == 2:
        if output.shape[1] != n_dim:
            raise ValueError(
                f"The network's output has {output.shape[1]} columns, but the "
                f"loss's centres live in n_dim={n_dim} dimensions: make the "
                "network's last layer return an embedding of n_dim values."
            )
    output, target = _check_inputs(output, target)
    if n_classes is not None and len(target) and int(target.max()) >= n_classes:
        raise ValueError(
            f"target holds the class label {int(target.max())}, but the loss has "
            f"n_classes={n_classes} centres (labels 0..{n_classes - 1}; "
            "negative labels mark outliers)."
        )
    return output, target


def _squared_distances(z, centers):
    """``||z_i - mu_k||^2`` of shape ``(n_samples, n_centers)``, from the
    differences (no cancellation of the expanded form)."""
    return (z[:, None, :] - centers.to(z.dtype)[None]).square().sum(dim=2)


def _class_column(values, target):
    """``values[i, target_i]``; 0 where ``target_i < 0``."""
    picked = values.gather(1, target.clamp(min=0)[:, None]).squeeze(1)
    return torch.where(target >= 0, picked, torch.zeros_like(picked))


class _CenterLoss(_OODLoss):
    """Shared ``distance`` of the class-centre losses."""

    def distance(self, output):
        """Squared Euclidean distances of the embeddings to every centre.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).

        Returns
        -------
        distances : torch.Tensor of shape (n_samples, n_centers)
            :math:`\\lVert z_i - \\mu_k \\rVert_2^2`.
        """
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError("output must be a tensor of shape (n_samples, n_dim).")
        return _squared_distances(output, self.centers)


# ---------------------------------------------------------------------------
# Center loss
# ---------------------------------------------------------------------------


class CenterLoss(_CenterLoss):
    r"""Squared distance of each ID embedding to its class's learnable centre.

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0}
            \max\big(0, \lVert z_i - \mu_{y_i} \rVert_2^2 - r^2\big)

    Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for
    Deep Face Recognition", ECCV 2016: each class :math:`c` has a centre
    :math:`\mu_c` in the embedding space, learned with the network, and the
    loss pulls the embeddings :math:`z = f(x)` of a class together. With
    ``radius`` :math:`r > 0` only distances beyond the sphere of radius
    :math:`r` are penalised. Outlier rows (``target < 0``) are ignored.
    The paper trains it jointly with the softmax cross-entropy of a
    classifier head (:math:`\mathcal{L}_S + \lambda \mathcal{L}_C`, its
    :math:`\frac{1}{2}` absorbed in :math:`\lambda`): trained alone, with
    learnable centres, embeddings and centres may all collapse to one
    point; :class:`MCHADLoss` adds the discriminative term. The centres are
    a ``torch.nn.Parameter`` (``fixed_centers=False``), so
    :class:`~sklearn_ood.torch.OODNeuralNetClassifier` trains them with the
    network (the paper moves them by its own update rule instead, and the
    reference code by SGD, as here).

    Pairs with :class:`~sklearn_ood.detectors.CenterDistance`
    (``centers=loss.centers``): the score is minus the squared distance to
    the nearest centre.

    Differences from pytorch-ood 0.4.0's ``CenterLoss``: its ``forward``
    takes the matrix of squared distances (``loss.distance(z)``), ours the
    embedding; its mean runs over the :math:`N \times C` entries of that
    matrix, so on the same batch (without outliers, ``radius=0``) it is
    :math:`1/C` times ours; it subtracts its ``radius`` from the squared
    distance, so its ``radius=r**2`` is our ``radius=r``; it clamps each
    term to :math:`[10^{-12}, 10^{12}]`; and with ``n_classes == n_dim``
    it starts the centres at the identity (ours are standard normal draws,
    the reference code's, unless ``initial_centers`` is given).

    Parameters
    ----------
    n_classes : int
        Number of classes :math:`C` (centres).
    n_dim : int
        Dimension of the embedding (the network's output columns).
    radius : float >= 0, default=0.0
        Radius :math:`r`; 0 is the original centre loss.
    initial_centers : array-like of shape (n_classes, n_dim) or None, default=None
        Starting centres; None draws them from a standard normal with
        torch's global generator (seeded by the net's ``random_state``).
    fixed_centers : bool, default=False
        True keeps the centres where they start (a buffer, not trained).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, 0 for an outlier row.

    Attributes
    ----------
    centers : torch.Tensor of shape (n_classes, n_dim)
        The centres :math:`\mu_c` (a parameter, or a buffer when fixed).

    See Also
    --------
    MCHADLoss : Centre loss plus a softmin cross-entropy and outlier margins.
    CACLoss : Fixed class anchors and a distance cross-entropy.
    IILoss : Intra-class spread minus inter-class separation.

    References
    ----------
    .. [1] Y. Wen, K. Zhang, Z. Li and Y. Qiao, "A Discriminative Feature
       Learning Approach for Deep Face Recognition", ECCV 2016.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import CenterLoss
    >>> loss = CenterLoss(n_classes=2, n_dim=2, initial_centers=[[0, 0], [3, 0]])
    >>> z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]])
    >>> target = torch.tensor([0, 1, -1])
    >>> loss(z, target)  # (1 + 4) / 2, the outlier row ignored
    tensor(2.5000, grad_fn=<AddBackward0>)
    """

    def __init__(
        self,
        n_classes,
        n_dim,
        radius=0.0,
        initial_centers=None,
        fixed_centers=False,
        reduction="mean",
    ):
        super().__init__()
        self.n_classes = n_classes
        self.n_dim = n_dim
        self.radius = radius
        self.initial_centers = initial_centers
        self.fixed_centers = fixed_centers
        self.reduction = reduction
        self._validate_params()
        centers = _initial_centers(
            initial_centers, (n_classes, n_dim), "initial_centers"
        )
        if fixed_centers:
            self.register_buffer("centers", centers)
        else:
            self.centers = nn.Parameter(centers)

    def _validate_params(self):
        _check_count("n_classes", self.n_classes)
        _check_count("n_dim", self.n_dim)
        _check_real("radius", self.radius, low=0)
        if not isinstance(self.fixed_centers, bool):
            raise ValueError(
                f"fixed_centers must be True or False; got {self.fixed_centers!r}."
            )
        _check_reduction(self.reduction)

    def forward(self, output, target):
        """The centre loss of a batch.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        output, target = _check_embedding(output, target, self.n_dim, self.n_classes)
        d_own = _class_column(self.distance(output), target)
        rows = (d_own - float(self.radius) ** 2).relu()
        return _reduce(rows, target >= 0, self.reduction)


# ---------------------------------------------------------------------------
# Class anchor clustering
# ---------------------------------------------------------------------------


class CACLoss(_CenterLoss):
    r"""Class anchor clustering: distance to a fixed anchor plus a tuplet loss.

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0} \Big(
            \lambda\, d_{y_i}(z_i)
            + \log\big(1 + \sum_{c \ne y_i} e^{d_{y_i}(z_i) - d_c(z_i)}\big)
            \Big),
        \qquad d_c(z) = \lVert z - \alpha e_c \rVert_2

    Miller, Sünderhauf, Milford & Dayoub, "Class Anchor Clustering: a Loss
    for Distance-based Open Set Recognition", WACV 2021. The embedding has
    one dimension per class (``n_dim = n_classes``, e.g. a classifier's
    logits) and class :math:`c`'s anchor is the fixed point :math:`\alpha
    e_c` (``magnitude`` times the unit vector). The first term (the anchor
    loss) pulls each ID embedding to its anchor, the second (the tuplet
    loss) is the cross-entropy of the logits :math:`-d`, computed as such
    (a log-sum-exp, without overflow). :math:`d` is the Euclidean distance,
    not its square, as in the authors' code. Outlier rows (``target < 0``)
    are ignored. The defaults :math:`\alpha = 10`, :math:`\lambda = 0.1`
    are the authors' (``--alpha``, ``--lbda``).

    Pairs with :class:`~sklearn_ood.detectors.CACScore`: the paper's
    rejection score :math:`\min_c d_c (1 - \operatorname{softmin}(d)_c)`.
    At test time the authors replace the anchors by the mean embedding of
    each class's correctly classified training rows
    (``CACScore(centers="class_means")`` fitted on them); the training
    anchors themselves are ``CACScore(centers="anchors", magnitude=...)``.

    Differences from pytorch-ood 0.4.0's ``CACLoss``: its ``forward`` takes
    the distance matrix, and its ``distance`` gives *squared* distances
    (ours: Euclidean, the paper's); its defaults are ``magnitude=1`` and
    ``alpha=1`` (our :math:`\lambda`, ``anchor_weight``), against the
    paper's 10 and 0.1; it clamps :math:`d_y - d_c` at 50 before the
    exponential; and its tuplet term sums over the classes :math:`0 \ldots
    C - 2` for every row, so for a row of any class but the last it counts
    the row's own class (a term :math:`e^0 = 1`) and leaves out the last
    class. Given our Euclidean distances, its ``forward`` equals ours on
    rows of the last class, up to the clamp.

    Parameters
    ----------
    n_classes : int >= 2
        Number of classes :math:`C`, which is also the embedding dimension.
    magnitude : float > 0, default=10.0
        :math:`\alpha`, the anchors' distance from the origin.
    anchor_weight : float >= 0, default=0.1
        :math:`\lambda`, the weight of the anchor term.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, 0 for an outlier row.

    Attributes
    ----------
    centers : torch.Tensor of shape (n_classes, n_classes)
        The anchors :math:`\alpha I` (a buffer: never trained).

    See Also
    --------
    CenterLoss : Learnable centres, squared distances.
    MCHADLoss : Learnable centres, softmin cross-entropy and outlier margins.

    References
    ----------
    .. [1] D. Miller, N. Sünderhauf, M. Milford and F. Dayoub, "Class Anchor
       Clustering: a Loss for Distance-based Open Set Recognition", WACV
       2021. https://arxiv.org/abs/2004.02434

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import CACLoss
    >>> loss = CACLoss(n_classes=2, magnitude=1.0, anchor_weight=0.1)
    >>> z = torch.tensor([[1.0, 0.0]])  # on the anchor of class 0
    >>> d_other = 2.0**0.5  # distance to the anchor of class 1
    >>> manual = torch.log(1 + torch.exp(torch.tensor(0.0 - d_other)))
    >>> torch.isclose(loss(z, torch.tensor([0])), manual)
    tensor(True)
    """

    def __init__(self, n_classes, magnitude=10.0, anchor_weight=0.1, reduction="mean"):
        super().__init__()
        self.n_classes = n_classes
        self.magnitude = magnitude
        self.anchor_weight = anchor_weight
        self.reduction = reduction
        self._validate_params()
        self.register_buffer("centers", float(magnitude) * torch.eye(n_classes))

    def _validate_params(self):
        _check_count("n_classes", self.n_classes, low=2)
        _check_real("magnitude", self.magnitude, low=0, strict=True)
        _check_real("anchor_weight", self.anchor_weight, low=0)
        _check_reduction(self.reduction)

    def anchor_distance(self, output):
        """Euclidean distances of the embeddings to every anchor.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_classes)
            Embeddings (the network's output).

        Returns
        -------
        distances : torch.Tensor of shape (n_samples, n_classes)
            :math:`d_c(z_i) = \\lVert z_i - \\alpha e_c \\rVert_2`.
        """
        diff = output[:, None, :] - self.centers.to(output.dtype)[None]
        return torch.linalg.vector_norm(diff, dim=2)

    def forward(self, output, target):
        """The CAC loss of a batch.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_classes)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        output, target = _check_embedding(
            output, target, self.n_classes, self.n_classes
        )
        is_in = target >= 0
        d = self.anchor_distance(output)
        # log(1 + sum_{c != y} e^{d_y - d_c}) = CE(-d, y): the c = y term is 1.
        tuplet = F.cross_entropy(
            -d, torch.where(is_in, target, -100), ignore_index=-100, reduction="none"
        )
        rows = float(self.anchor_weight) * _class_column(d, target) + tuplet
        return _reduce(rows, is_in, self.reduction)


# ---------------------------------------------------------------------------
# ii-loss
# ---------------------------------------------------------------------------


class IILoss(_OODLoss):
    r"""The ii-loss: intra-class spread minus inter-class separation of a batch.

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0}
            \lVert z_i - \bar z_{y_i} \rVert_2^2
            - \alpha \min_{j \ne k} \lVert \bar z_j - \bar z_k \rVert_2^2

    Hassen & Chan, "Learning a Neural-network-based Representation for Open
    Set Recognition", SDM 2020. :math:`\bar z_c` is the mean embedding of
    class :math:`c`'s ID rows in the batch and the minimum runs over the
    pairs of classes present in it; the loss is computed on the batch
    means, with gradients through them, as in the paper. A batch with fewer
    than two classes has no separation term (0 here; pytorch-ood returns a
    separation of :math:`-10^{24}` then). Outlier rows are ignored, and a
    batch without ID rows gives 0. :math:`\alpha` is 1 in the paper. Both
    terms scale with the square of the outputs' scale, so on batches whose
    spread exceeds :math:`\alpha` times their separation, shrinking every
    output lowers the loss: a network can collapse to one point (the loss
    then tends to 0 from below or above), which a smaller learning rate or
    a larger :math:`\alpha` guards against.

    The centres :math:`\mu_c` that score test rows are the class means of
    the training embeddings. In training mode every batch updates
    ``centers``, the running mean of each class's ID embeddings (each
    class weighted by its rows; buffers, not trained): a cheap estimate,
    stale in early epochs. The paper's centres, the class means of the
    trained network's embeddings of the training set, are what
    :class:`~sklearn_ood.detectors.CenterDistance` computes with its
    default ``centers="class_means"``: it pairs with this loss that way
    (``centers=loss.centers`` uses the running means), its score minus
    the squared distance to the nearest centre (the paper's outlier score
    is that distance).

    Differences from pytorch-ood 0.4.0's ``IILoss``: its running centres
    average the batch means with one batch counter for all classes (a class
    absent from a batch still counts it); ours weight each class by its
    rows. In evaluation mode it computes the loss with the running centres;
    ours always with the batch means (the loss, not the centres, is what
    skorch's validation reports). Same value in training mode with at least
    two classes per batch.

    Parameters
    ----------
    n_classes : int
        Number of classes :math:`C`.
    n_dim : int
        Dimension of the embedding (the network's output columns).
    alpha : float >= 0, default=1.0
        Weight :math:`\alpha` of the separation term.

    Attributes
    ----------
    centers : torch.Tensor of shape (n_classes, n_dim)
        Running class means of the training embeddings (0 for a class not
        yet seen).
    counts : torch.Tensor of shape (n_classes,)
        ID training rows seen per class.

    See Also
    --------
    CenterLoss : Learnable centres instead of batch means.
    MCHADLoss : Learnable centres with a discriminative term and outliers.

    References
    ----------
    .. [1] M. Hassen and P. K. Chan, "Learning a Neural-network-based
       Representation for Open Set Recognition", SDM 2020.
       https://arxiv.org/abs/1802.04365

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import IILoss
    >>> loss = IILoss(n_classes=2, n_dim=1)
    >>> z = torch.tensor([[0.0], [2.0], [5.0], [7.0]])
    >>> target = torch.tensor([0, 0, 1, 1])
    >>> loss(z, target)  # spread (1+1+1+1)/4 minus separation (6 - 1)^2
    tensor(-24.)
    >>> loss.centers
    tensor([[1.],
            [6.]])
    """

    def __init__(self, n_classes, n_dim, alpha=1.0):
        super().__init__()
        self.n_classes = n_classes
        self.n_dim = n_dim
        self.alpha = alpha
        self._validate_params()
        self.register_buffer("centers", torch.zeros(n_classes, n_dim))
        self.register_buffer("counts", torch.zeros(n_classes, dtype=torch.float64))

    def _validate_params(self):
        _check_count("n_classes", self.n_classes)
        _check_count("n_dim", self.n_dim)
        _check_real("alpha", self.alpha, low=0)

    def forward(self, output, target):
        """The ii-loss of a batch; updates ``centers`` in training mode.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            A scalar.
        """
        self._validate_params()
        output, target = _check_embedding(output, target, self.n_dim, self.n_classes)
        is_in = target >= 0
        z, y = output[is_in], target[is_in]
        if len(y) == 0:
            return output.sum() * 0.0
        classes, codes, counts = torch.unique(
            y, return_inverse=True, return_counts=True
        )
        sums = torch.zeros(len(classes), z.shape[1], dtype=z.dtype, device=z.device)
        means = sums.index_add(0, codes, z) / counts[:, None].to(z.dtype)
        spread = (z - means[codes]).square().sum() / len(y)
        loss = spread
        if len(classes) > 1:
            gaps = _squared_distances(means, means)
            off_diagonal = ~torch.eye(len(classes), dtype=torch.bool, device=z.device)
            loss = spread - float(self.alpha) * gaps[off_diagonal].min()
        if self.training:
            self._update_centers(classes, means.detach(), counts)
        return loss

    @torch.no_grad()
    def _update_centers(self, classes, means, counts):
        old = self.counts[classes]
        new = old + counts.to(old.dtype)
        weight = (counts.to(old.dtype) / new).to(self.centers.dtype)[:, None]
        current = self.centers[classes]
        self.centers[classes] = current + weight * (means.to(current.dtype) - current)
        self.counts[classes] = new


# ---------------------------------------------------------------------------
# MCHAD
# ---------------------------------------------------------------------------


class MCHADLoss(_CenterLoss):
    r"""Multi-class hypersphere anomaly detection (MCHAD) loss.

    .. math::

        \mathcal{L} = \lambda_\Lambda \frac{1}{N_\text{in}} \sum_{i \in \text{in}}
                \max(0, d_{y_i}(z_i) - r^2)
            + \lambda_\Delta \frac{1}{N_\text{in}} \sum_{i \in \text{in}}
                \log\Big(1 + \sum_{c \ne y_i} e^{d_{y_i}(z_i) - d_c(z_i)}\Big)
            + \lambda_\Theta \frac{1}{N_\text{out}} \sum_{j \in \text{out}}
                \sum_c \max\big(0, (r + m)^2 - d_c(z_j)\big)

    with :math:`d_c(z) = \lVert z - \mu_c \rVert_2^2`. Kirchheim, Filax &
    Ortmeier, "Multi-Class Hypersphere Anomaly Detection", ICPR 2022: each
    class has a learnable centre :math:`\mu_c`; the first term pulls ID
    embeddings into the sphere of radius :math:`r` around their centre, the
    second (the cross-entropy of the logits :math:`-d`) keeps the centres
    apart, and the third pushes auxiliary outliers (``target < 0``) at
    least a margin :math:`m` outside every sphere. Each term is averaged
    over its own rows; an empty group gives 0. Without outliers the third
    term is 0 and the loss is unsupervised with respect to OOD data.

    Pairs with :class:`~sklearn_ood.detectors.CenterDistance`
    (``centers=loss.centers``): the paper's outlier score is the distance
    to the nearest centre, the detector's score minus its square.

    Differences from pytorch-ood 0.4.0's ``MCHADLoss``: its ``forward``
    takes the squared-distance matrix; its centre term is its
    ``CenterLoss``'s, :math:`1/C` times ours, with the radius subtracted
    from the squared distance (its ``radius=r**2`` is our ``radius=r``);
    its outlier term is :math:`\sum \max(0, M^2 - d_c^2)` with the squared
    distance squared again (its ``margin`` :math:`M` stands for the
    sphere's radius plus the margin) and *summed* over the outlier rows.
    With ``radius=0`` and no outliers, it equals
    :math:`\lambda_\Lambda \cdot \text{ours}_\Lambda / C + \lambda_\Delta
    \cdot \text{ours}_\Delta`.

    Parameters
    ----------
    n_classes : int >= 2
        Number of classes :math:`C` (centres).
    n_dim : int
        Dimension of the embedding (the network's output columns).
    radius : float >= 0, default=0.0
        Radius :math:`r` of the spheres.
    margin : float >= 0, default=0.0
        Margin :math:`m` outside the spheres for the outliers.
    weight_center : float >= 0, default=1.0
        :math:`\lambda_\Lambda`.
    weight_nll : float >= 0, default=1.0
        :math:`\lambda_\Delta`.
    weight_oe : float >= 0, default=1.0
        :math:`\lambda_\Theta`.
    initial_centers : array-like of shape (n_classes, n_dim) or None, default=None
        Starting centres; None draws them from a standard normal with
        torch's global generator (seeded by the net's ``random_state``).
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"``: one value per row, the weighted centre and
        cross-entropy terms for an ID row, the weighted outlier term for an
        outlier row; ``"sum"``: their sum; ``"mean"``: the formula above
        (the ID rows' mean plus the outlier rows' mean).

    Attributes
    ----------
    centers : torch.nn.Parameter of shape (n_classes, n_dim)
        The learnable centres :math:`\mu_c`.

    See Also
    --------
    CenterLoss : The centre term alone.
    CACLoss : Fixed anchors and the same kind of cross-entropy.

    References
    ----------
    .. [1] K. Kirchheim, M. Filax and F. Ortmeier, "Multi-Class Hypersphere
       Anomaly Detection", ICPR 2022.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import MCHADLoss
    >>> loss = MCHADLoss(n_classes=2, n_dim=1, margin=2.0,
    ...                  initial_centers=[[0.0], [4.0]])
    >>> z = torch.tensor([[1.0], [2.0]])
    >>> center = 1.0  # squared distance of the ID row to centre 0
    >>> nll = torch.log(1 + torch.exp(torch.tensor(1.0 - 9.0)))
    >>> outlier = (4.0 - 4.0) + (4.0 - 4.0)  # at distance 2 from both: on the margin
    >>> torch.isclose(loss(z, torch.tensor([0, -1])), center + nll + outlier)
    tensor(True)
    """

    def __init__(
        self,
        n_classes,
        n_dim,
        radius=0.0,
        margin=0.0,
        weight_center=1.0,
        weight_nll=1.0,
        weight_oe=1.0,
        initial_centers=None,
        reduction="mean",
    ):
        super().__init__()
        self.n_classes = n_classes
        self.n_dim = n_dim
        self.radius = radius
        self.margin = margin
        self.weight_center = weight_center
        self.weight_nll = weight_nll
        self.weight_oe = weight_oe
        self.initial_centers = initial_centers
        self.reduction = reduction
        self._validate_params()
        self.centers = nn.Parameter(
            _initial_centers(initial_centers, (n_classes, n_dim), "initial_centers")
        )

    def _validate_params(self):
        _check_count("n_classes", self.n_classes, low=2)
        _check_count("n_dim", self.n_dim)
        for name in ("radius", "margin", "weight_center", "weight_nll", "weight_oe"):
            _check_real(name, getattr(self, name), low=0)
        _check_reduction(self.reduction)

    def forward(self, output, target):
        """The MCHAD loss of a batch.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        output, target = _check_embedding(output, target, self.n_dim, self.n_classes)
        is_in = target >= 0
        d = self.distance(output)
        r2 = float(self.radius) ** 2
        center = (_class_column(d, target) - r2).relu()
        nll = F.cross_entropy(
            -d, torch.where(is_in, target, -100), ignore_index=-100, reduction="none"
        )
        outer = (float(self.radius) + float(self.margin)) ** 2
        oe = (outer - d).relu().sum(dim=1)
        rows = torch.where(
            is_in,
            float(self.weight_center) * center + float(self.weight_nll) * nll,
            float(self.weight_oe) * oe,
        )
        return _reduce(rows, is_in, self.reduction)


# ---------------------------------------------------------------------------
# Deep SVDD and Deep SAD: one centre
# ---------------------------------------------------------------------------


class _OneCenterLoss(_OODLoss):
    """A fixed centre ``center``, set from the first batch when not given."""

    # Ruff et al.'s code moves coordinates of the initial centre closer than
    # this to 0 out to +-0.1, so that a zero unit cannot trivially match it.
    _CENTER_EPS = 0.1

    def _init_center(self, initial_center):
        if initial_center is None:
            center = torch.full((self.n_dim,), float("nan"))
        else:
            center = _initial_centers(initial_center, (self.n_dim,), "initial_center")
        self.register_buffer("center", center)

    @property
    def centers(self):
        """The centre as a ``(1, n_dim)`` tensor (the detectors' form)."""
        return self.center[None]

    @torch.no_grad()
    def _set_center_from(self, z):
        c = z.detach().double().mean(dim=0)
        eps = self._CENTER_EPS
        c = torch.where((c.abs() < eps) & (c < 0), torch.full_like(c, -eps), c)
        c = torch.where((c.abs() < eps) & (c > 0), torch.full_like(c, eps), c)
        self.center.copy_(c.to(self.center.dtype))

    def _prepare(self, output, target):
        self._validate_params()
        output, target = _check_embedding(output, target, self.n_dim)
        is_in = target >= 0
        if torch.isnan(self.center).any():
            if not is_in.any():
                raise ValueError(
                    f"{type(self).__name__} sets its centre from the ID rows of the "
                    "first batch, and this batch has none; pass initial_center."
                )
            self._set_center_from(output[is_in])
        d = _squared_distances(output, self.center[None]).squeeze(1)
        return d, is_in

    def distance(self, output):
        """Squared Euclidean distances of the embeddings to the centre.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).

        Returns
        -------
        distances : torch.Tensor of shape (n_samples,)
            :math:`\\lVert z_i - c \\rVert_2^2`.
        """
        if not isinstance(output, torch.Tensor) or output.ndim != 2:
            raise ValueError("output must be a tensor of shape (n_samples, n_dim).")
        return _squared_distances(output, self.center[None]).squeeze(1)


class DeepSVDDLoss(_OneCenterLoss):
    r"""Deep SVDD: squared distance of the ID embeddings to one fixed centre.

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0}
            \max\big(0, \lVert z_i - c \rVert_2^2 - r^2\big)

    Ruff, Vandermeulen, Görnitz, Deecke, Siddiqui, Binder, Müller & Kloft,
    "Deep One-Class Classification", ICML 2018. The network maps the ID
    data into a small sphere around the centre :math:`c`; with
    :math:`r = 0` it is the *one-class* objective, with a fixed
    :math:`r > 0` the *soft-boundary* one without its :math:`R^2` term and
    :math:`1/\nu` factor (constant and a scale for a fixed radius).
    Outlier rows are ignored; class labels play no part (every ID row is
    pulled to the same centre). As in the paper the centre is fixed: given
    (``initial_center``), or set from the first batch: the mean of its ID
    embeddings, coordinates closer than 0.1 to 0 moved out to
    :math:`\pm 0.1` (the authors' rule; their code takes the mean over the
    whole training set before training). The paper warns that a network
    with bias terms or bounded activations can map every input to
    :math:`c` (hypersphere collapse), which the loss cannot prevent.

    Pairs with :class:`~sklearn_ood.detectors.CenterDistance`
    (``centers=loss.centers``, one centre): the score is minus the squared
    distance to :math:`c`, the paper's anomaly score negated.

    Differences from pytorch-ood 0.4.0's ``DeepSVDDLoss``: it starts at a
    standard normal centre when none is given (ours: the first batch's
    mean); it returns the same values, in float32 whatever the input, and
    for ``reduction="none"`` the ID rows only (ours: 0 on outlier rows);
    its ``distance`` is :math:`\lVert z - c \rVert^2 - r^2`.

    Parameters
    ----------
    n_dim : int
        Dimension of the embedding (the network's output columns).
    radius : float >= 0, default=0.0
        Radius :math:`r` of the sphere.
    initial_center : array-like of shape (n_dim,) or None, default=None
        The centre :math:`c`; None sets it from the first batch.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, 0 for an outlier row.

    Attributes
    ----------
    center : torch.Tensor of shape (n_dim,)
        The centre :math:`c` (a buffer; NaN until the first batch sets it).
    centers : torch.Tensor of shape (1, n_dim)
        The same centre as one row.

    See Also
    --------
    DeepSADLoss : The same centre, pushing labelled outliers away.
    CenterLoss : One centre per class.

    References
    ----------
    .. [1] L. Ruff et al., "Deep One-Class Classification", ICML 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DeepSVDDLoss
    >>> loss = DeepSVDDLoss(n_dim=2, initial_center=[1.0, 1.0])
    >>> z = torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    >>> loss(z, torch.tensor([0, 1, -1]))  # (1 + 4) / 2
    tensor(2.5000)
    """

    def __init__(self, n_dim, radius=0.0, initial_center=None, reduction="mean"):
        super().__init__()
        self.n_dim = n_dim
        self.radius = radius
        self.initial_center = initial_center
        self.reduction = reduction
        self._validate_params()
        self._init_center(initial_center)

    def _validate_params(self):
        _check_count("n_dim", self.n_dim)
        _check_real("radius", self.radius, low=0)
        _check_reduction(self.reduction)

    def forward(self, output, target):
        """The Deep SVDD loss of a batch.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        d, is_in = self._prepare(output, target)
        rows = (d - float(self.radius) ** 2).relu()
        rows = torch.where(is_in, rows, torch.zeros_like(rows))
        return _reduce(rows, is_in, self.reduction)


class DeepSADLoss(_OneCenterLoss):
    r"""Deep SAD: pull ID embeddings to one centre, push labelled outliers away.

    .. math::

        \mathcal{L} = \frac{1}{N} \Big( \sum_{i:\, y_i \ge 0}
            \lVert z_i - c \rVert_2^2
            + \eta \sum_{j:\, y_j < 0}
            \big(\lVert z_j - c \rVert_2^2 + \epsilon\big)^{-1} \Big)

    Ruff, Vandermeulen, Görnitz, Binder, Müller, Müller & Kloft, "Deep
    Semi-Supervised Anomaly Detection", ICLR 2020: the semi-supervised
    Deep SVDD. ID rows (``target >= 0``, the paper's unlabelled data,
    assumed mostly normal) are pulled to the fixed centre :math:`c`,
    labelled anomalies (``target < 0``) pushed away; :math:`\epsilon` keeps
    the inverse finite (the authors' code adds it). The mean runs over the
    whole batch (:math:`N = N_\text{in} + N_\text{out}`), as in the paper
    and the authors' code, not per group. The paper's labelled *normal*
    rows (weighted by :math:`\eta` too) are not distinguished: every ID
    row is unlabelled normal data. The centre is set as in
    :class:`DeepSVDDLoss`.

    Pairs with :class:`~sklearn_ood.detectors.CenterDistance`
    (``centers=loss.centers``): the score is minus the squared distance to
    :math:`c`.

    Differences from pytorch-ood 0.4.0's ``DeepSADLoss``: it starts at a
    standard normal centre when none is given (ours: the first batch's
    mean); it returns the same values.

    Parameters
    ----------
    n_dim : int
        Dimension of the embedding (the network's output columns).
    eta : float >= 0, default=1.0
        Weight :math:`\eta` of the labelled outliers.
    eps : float >= 0, default=1e-6
        :math:`\epsilon`, added to an outlier's squared distance before
        inverting it.
    initial_center : array-like of shape (n_dim,) or None, default=None
        The centre :math:`c`; None sets it from the ID rows of the first
        batch.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over all rows; ``"sum"``: their sum;
        ``"none"``: one value per row.

    Attributes
    ----------
    center : torch.Tensor of shape (n_dim,)
        The centre :math:`c` (a buffer; NaN until the first batch sets it).
    centers : torch.Tensor of shape (1, n_dim)
        The same centre as one row.

    See Also
    --------
    DeepSVDDLoss : Without outliers.
    MCHADLoss : One centre per class, with an outlier margin.

    References
    ----------
    .. [1] L. Ruff et al., "Deep Semi-Supervised Anomaly Detection", ICLR
       2020. https://arxiv.org/abs/1906.02694

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DeepSADLoss
    >>> loss = DeepSADLoss(n_dim=1, eps=0.0, initial_center=[0.0])
    >>> z = torch.tensor([[1.0], [2.0]])
    >>> loss(z, torch.tensor([0, -1]))  # (1 + 1 / 4) / 2
    tensor(0.6250)
    """

    def __init__(self, n_dim, eta=1.0, eps=1e-6, initial_center=None, reduction="mean"):
        super().__init__()
        self.n_dim = n_dim
        self.eta = eta
        self.eps = eps
        self.initial_center = initial_center
        self.reduction = reduction
        self._validate_params()
        self._init_center(initial_center)

    def _validate_params(self):
        _check_count("n_dim", self.n_dim)
        _check_real("eta", self.eta, low=0)
        _check_real("eps", self.eps, low=0)
        _check_reduction(self.reduction)

    def forward(self, output, target):
        """The Deep SAD loss of a batch.

        Parameters
        ----------
        output : torch.Tensor of shape (n_samples, n_dim)
            Embeddings (the network's output).
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks a labelled outlier.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        d, is_in = self._prepare(output, target)
        push = float(self.eta) / (d + float(self.eps))
        rows = torch.where(is_in, d, push)
        if self.reduction == "none":
            return rows
        if self.reduction == "sum":
            return rows.sum()
        return rows.sum() / max(len(rows), 1)
