"""pNML: the regret of the predictive normalised maximum likelihood learner.

The last layer of a classifier is treated as a single-layer network on the
unit-length penultimate features; its pNML regret measures how much a
learner that also fits the test row (with each possible label) could change
the prediction there. The fit keeps the float64 sum of outer products of
the unit-length fit rows, so it streams (``partial_fit``).
"""

import numpy as np

from sklearn_ood.base import BaseDetector, PartialFitMixin
from sklearn_ood.detectors._head import check_head, head_logits
from sklearn_ood.detectors._knn_search import normalize_rows
from sklearn_ood.detectors._softmax import log_softmax64

__all__ = ["PNML"]


class PNML(PartialFitMixin, BaseDetector):
    r"""Predictive normalised maximum likelihood (pNML) regret of the head.

    Bibas, Feder & Hassner, "Single Layer Predictive Normalized Maximum
    Likelihood for Out-of-Distribution Detection", NeurIPS 2021. With
    :math:`\hat x = x / \lVert x \rVert` the unit-length feature, :math:`G =
    \sum_i \hat x_i \hat x_i^\top` over the ID fit rows, and :math:`p =
    \operatorname{softmax}(W \hat x + b)` the head's probabilities on the
    unit-length feature (:math:`C` classes), the regret :math:`\Gamma` is

    .. math::

        \Gamma(x) = \log \sum_{c=1}^{C}
            \frac{p_c}{p_c + (1 - p_c)\, p_c^{\kappa(x)}},
        \qquad
        \kappa(x) = \max\Big(\lVert \hat x_\perp \rVert^2,\;
            \frac{\hat x^\top G^{+} \hat x}{1 + \hat x^\top G^{+} \hat x}\Big)

    and ``score_samples`` returns :math:`s(x) = -\Gamma(x)`: higher is more
    ID. :math:`G^{+}` is the pseudo-inverse (the paper's
    :math:`X^{+} X^{+\top}`) and :math:`\hat x_\perp` the part of
    :math:`\hat x` outside the span of the fit rows. :math:`\kappa \in [0,
    1]` grows as :math:`\hat x` points along directions that the fit rows
    seldom take (small eigenvalues of :math:`G`), and :math:`\Gamma` grows
    with :math:`\kappa` (from 0 at :math:`\kappa = 0`); each term is at most
    1, so :math:`-\log C \le s(x) \le 0`.

    Rank deficiency. The span is that of the eigenvectors of :math:`G`
    whose eigenvalues exceed ``n_features * eps * max eigenvalue`` (eps of
    float64, the rank rule of :func:`numpy.linalg.matrix_rank`). The paper's
    theorem (and the authors' code for its low-dimensional figures) sets
    :math:`\kappa = 1` whenever :math:`\hat x_\perp \ne 0` (the learner
    then fits the test row exactly) and the second term otherwise. As the
    authors' first code does, this detector takes the larger of
    :math:`\lVert \hat x_\perp \rVert^2` and the second term, which is
    continuous in :math:`x` and agrees with the theorem at both ends
    (:math:`\hat x` in the span, :math:`\hat x` orthogonal to it). When
    :math:`G` has full rank (at least ``n_features`` fit rows in general
    position) :math:`\hat x_\perp = 0` and all rules agree. pytorch-ood
    0.4.0's ``PNML``, like the authors' code for deep networks, uses the
    pseudo-inverse alone, so a row along a null direction (e.g. a unit that
    is never active on the fit rows) gets :math:`\kappa = 0` there and the
    top score; here it gets :math:`\kappa = 1`.

    Differences from pytorch-ood 0.4.0: its score is :math:`\Gamma / \log C`
    in float32, with the probabilities clamped to :math:`[10^{-12}, 1 -
    10^{-12}]`, so where :math:`G` has full rank and the probabilities lie
    in that range, ours is :math:`-\log C` times theirs. As there and in the
    authors' code, the head's softmax is taken on the unit-length features,
    bias included: it is not the network's own prediction on the raw
    features. The paper has no temperature and neither has this detector.

    The score depends on the direction of :math:`x` only, so features of
    any finite scale work (they are normalised without overflow). An
    all-zero row has :math:`\kappa = 0` and the top score 0: no change of
    the head's weights moves its output there. Labels are ignored
    (``y=None`` is the same fit). :math:`G` is a sum over rows, so
    :meth:`partial_fit` streams it exactly; each call redoes its
    eigendecomposition (:math:`O(d^3)` for :math:`d` features).

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer, with at least two classes: a
        ``(W, b)`` pair, a torch ``nn.Linear``, a fitted scikit-learn linear
        model, or a callable ``head(n_features)`` returning one of these
        (see :func:`~sklearn_ood.detectors.check_head`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W`.
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    second_moment_sum_ : ndarray of shape (n_features, n_features)
        :math:`G = \sum_i \hat x_i \hat x_i^\top` over the ID fit rows.
    eigenvalues_ : ndarray of shape (n_features,)
        Eigenvalues of :math:`G`, in decreasing order.
    components_ : ndarray of shape (n_features, n_features)
        The matching orthonormal eigenvectors (rows).
    rank_ : int
        Number of eigenvalues above the rank tolerance: the first
        ``rank_`` components span the fit rows, the others are the null
        directions of :math:`\hat x_\perp`.
    n_samples_seen_ : int
        Number of ID fit rows.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    ViM : Energy minus the residual outside the principal subspace.
    NCI : Alignment with the predicted class's weight plus the feature norm.
    MaxSoftmax : The head's confidence alone, without the feature geometry.
    Mahalanobis : A Gaussian distance in feature space, without the head.

    References
    ----------
    .. [1] K. Bibas, M. Feder and T. Hassner, "Single Layer Predictive
       Normalized Maximum Likelihood for Out-of-Distribution Detection",
       NeurIPS 2021. https://arxiv.org/abs/2110.09246

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import PNML
    >>> W, b = 3.0 * np.eye(3), np.zeros(3)
    >>> rng = np.random.default_rng(0)
    >>> X = np.abs(rng.normal(size=(100, 3))) * [1.0, 1.0, 0.0]
    >>> pnml = PNML(head=(W, b)).fit(X)
    >>> pnml.rank_
    2
    >>> rows = np.array([[1.0, 0.1, 0.0], [0.0, 0.1, 1.0]])
    >>> pnml.score_samples(rows).round(4)
    array([-0.0082, -0.6506])
    """

    _family = "head-aware"
    _summed_stats = ("second_moment_sum_",)

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
    }

    def __init__(self, head, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head

    def _reset_stats(self, X, y):
        self.coef_, self.intercept_ = check_head(self.head, X.shape[1])
        if len(self.coef_) < 2:
            raise ValueError(
                f"PNML needs a head of at least 2 classes; got {len(self.coef_)} "
                "(the softmax of a single class is the constant 1, whose regret "
                "is 0 for every row)."
            )
        self.second_moment_sum_ = np.zeros((X.shape[1], X.shape[1]))

    def _update_stats(self, X, y):
        unit = normalize_rows(X, dtype=np.float64)
        # A new array (never an in-place update), so that a refused chunk can
        # be undone. The rows have unit length: the sum cannot overflow.
        self.second_moment_sum_ = self.second_moment_sum_ + unit.T @ unit

    def _finalize_stats(self):
        eigenvalues, vectors = np.linalg.eigh(self.second_moment_sum_)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, vectors = eigenvalues[order], vectors[:, order]
        top = eigenvalues[0]
        if not top > 0:
            raise ValueError(
                f"PNML's {self.n_samples_seen_} ID fit row(s) are all zero, so "
                "they span no feature direction and every row would get the "
                "same regret; fit on nonzero features."
            )
        tolerance = top * len(eigenvalues) * np.finfo(np.float64).eps
        self.rank_ = int(np.count_nonzero(eigenvalues > tolerance))
        self.eigenvalues_ = eigenvalues
        self.components_ = np.ascontiguousarray(vectors.T)

    def _kappa(self, unit):
        """:math:`\\kappa` of each unit-length row (float64)."""
        coords = unit @ self.components_.T
        squares = coords * coords
        r = self.rank_
        inner = squares[:, :r] @ (1.0 / self.eigenvalues_[:r])
        outside = squares[:, r:].sum(axis=1)
        return np.maximum(outside, inner / (1.0 + inner))

    def _score(self, X):
        unit = normalize_rows(X, dtype=np.float64)
        kappa = self._kappa(unit)[:, np.newaxis]
        # With L = -log p >= 0, each term p / (p + (1 - p) p^k) is
        # p + (1 - p)(1 - p^k) / (1 + (1 - p) p^(k - 1)), and the p sum to 1:
        # the regret is log1p of the sum of the excesses, accurate where it is
        # tiny (confident rows), and p^(k - 1) = exp((1 - k) L) may overflow
        # to inf, where the excess is 0, without a 0/0 for p -> 0.
        neg_log_p = -log_softmax64(head_logits(unit, self.coef_, self.intercept_))
        rest = -np.expm1(-neg_log_p)  # 1 - p
        with np.errstate(over="ignore"):
            growth = np.exp((1.0 - kappa) * neg_log_p)
        excess = rest * -np.expm1(-kappa * neg_log_p) / (1.0 + rest * growth)
        return -np.log1p(excess.sum(axis=1))
