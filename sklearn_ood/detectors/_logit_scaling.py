r"""Logit scaling: multiply the logits by each sample's activation-sum ratio.

:class:`LTS` reads a per-sample factor off the penultimate activations (the
share of their mass in the sample's largest ones, as SCALE does) and scales
the head's logits by it before a logit detector scores them. The per-row
ranking and sums are the kernels of :mod:`sklearn_ood.utils._order_statistics`
shared with ASH and SCALE: exact in float32, summed in float64.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.detectors._shaped_logits import BaseShapedLogitDetector
from sklearn_ood.utils._order_statistics import n_kept, top_k_ratios

__all__ = ["LTS"]


class LTS(BaseShapedLogitDetector):
    r"""Logit scaling: scale the logits by the squared activation-sum ratio.

    .. math::

        a_j = \max(x_j, 0), \quad
        s_1 = \sum_j a_j, \quad s_2 = \sum_j a_j \, [a_j \ge t(a)], \qquad
        s(x) = S\Big(\big(s_1 / s_2\big)^2 \, (W x + b)\Big)

    Djurisic, Liu & Nikolic, "Logit Scaling for Out-of-Distribution
    Detection", Machine Vision and Applications, 2025 (arXiv:2409.01175).
    As in :class:`SCALE`, :math:`t(a)` is the :math:`k`-th largest entry of
    the sample's rectified activations, :math:`k = n -
    \operatorname{round}(n q / 100)` (at least 1) with :math:`n` =
    ``n_features`` and :math:`q` = ``percentile``, so :math:`s_2` is the sum
    of its largest :math:`100 - q` percent of activations (the paper's top
    :math:`p` percent, :math:`p = 100 - q`). Unlike SCALE, the features are
    not changed: the factor :math:`(s_1 / s_2)^2` multiplies the logits,
    bias included. :math:`S` is the logit detector (negative energy,
    :math:`\log \sum_k \exp l_k`, by default, the paper's score). Nothing is
    learnt from the fit data but the logit detector and ``offset_``: the
    method needs no training statistics.

    The factor is computed from the rectified activations :math:`a`, as the
    authors' code does (the paper's features are post-ReLU; the rectification
    matters for signed features, e.g. a transformer's); the head receives
    the features :math:`x` unchanged. For every row :math:`1 \le s_1 / s_2
    \le n / k`; a row without a positive activation (:math:`s_2 = 0`) is
    left unscaled (factor 1). Entries tied with :math:`t(a)` all count in
    :math:`s_2`, so that it does not depend on the order of the features;
    ties at zero add nothing. Float32 features are ranked in float32
    (exactly) and multiplied with the head in float64, so their scores are
    the float64 scores of the same numbers.

    The score is not monotone in the activations: raising a sample's
    largest activation adds the same amount to :math:`s_1` and :math:`s_2`,
    which lowers the factor.

    Differences from pytorch-ood 0.4.0 ``LTS``: its ``p`` is the fraction of
    top activations (0.05); here ``percentile`` is the percentage left out
    (95), the authors' ``lts@95``. Its ``topk`` keeps exactly :math:`k`
    entries, breaking ties arbitrarily; here entries tied with :math:`t(a)`
    all count. It gives NaN for a row without a positive activation; here
    that row is unscaled. It returns the energy (an outlier score); here the
    score is higher for ID data: on tie-free rows with a positive
    activation, ours is minus theirs.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    percentile : float in [0, 100), default=95
        Percentage :math:`q` of each sample's activations left out of
        :math:`s_2` (the paper's top :math:`p = 5` percent are kept).
    detector : logit detector, default=None
        Scores the scaled logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's choice).
        A clone is fitted on the scaled logits of the fit rows (with ``y``)
        as ``detector_``; a score-only one (``Energy``, ``MaxSoftmax``, ...)
        learns nothing from them, so ``fit`` scales only the rows its
        threshold needs.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights.
    intercept_ : ndarray of shape (n_classes,)
        Head bias.
    detector_ : estimator
        Fitted clone of ``detector`` (or ``Energy()``).
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    SCALE : Scale the features, not the logits, by the exponential of the ratio.
    ASH : Prune each sample to its largest activations, then rescale.
    VRA : Reshape each activation with thresholds learnt from ID data.
    Energy : The default logit detector, here on the scaled logits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import LTS
    >>> head = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2))
    >>> X = np.array([[1.0, 3.0], [2.0, 0.0]])
    >>> det = LTS(head, percentile=50).fit(X)  # factors (4 / 3)^2 and 1
    >>> det.score_samples(X).round(4)
    array([5.3615, 2.1269])
    """

    _parameter_constraints = {
        **BaseShapedLogitDetector._parameter_constraints,
        "percentile": [Interval(Real, 0, 100, closed="left")],
    }

    def __init__(self, head, percentile=95, detector=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.percentile = percentile
        self.detector = detector

    def _block_logits(self, X, out):
        rectified = np.maximum(X, 0)  # exact in the dtype of X
        ratio = top_k_ratios(rectified, n_kept(X.shape[1], self.percentile))
        # top_k_ratios gives 0 where s2 = 0 (no positive activation): unscaled.
        factor = np.where(ratio > 0, np.square(ratio), 1.0)
        np.matmul(X.astype(np.float64, copy=False), self.coef_.T, out=out)
        out += self.intercept_
        out *= factor[:, np.newaxis]
