"""ASH and SCALE: shape each sample from its own largest activations.

Both rank the entries of one row of penultimate features ``X``, keep the
largest ones and compute the logits through the linear ``head``; nothing is
fitted but the head and the logit detector. The shared skeleton
(:class:`~sklearn_ood.detectors._shaping._ShapedLogitDetector`) lives in
``_shaping.py``.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.detectors._shaping import _ShapedLogitDetector

__all__ = ["ASH", "SCALE"]


def _keep_largest(X, percentile):
    """Mask of the entries of each row at or above its pruning threshold.

    The threshold of a row is its ``k``-th largest value, ``k = n -
    round(n * percentile / 100)`` (at least 1), so that without ties exactly
    the ``k`` largest entries are kept; entries tied with the threshold are
    all kept.
    """
    n = X.shape[1]
    k = max(1, n - int(np.round(n * percentile / 100.0)))
    kth_largest = np.partition(X, n - k, axis=1)[:, n - k]
    return X >= kth_largest[:, np.newaxis]


def _sharpening(total, kept_total):
    """Per-row factor ``exp(s1 / s2)``; 1 where ``s2 <= 0``."""
    ratio = np.divide(total, kept_total, out=np.zeros_like(total), where=kept_total > 0)
    return np.exp(ratio)


class ASH(_ShapedLogitDetector):
    r"""Extremely simple activation shaping: prune each sample, then rescale.

    .. math::

        \tilde x_j = x_j \, [x_j \ge t(x)], \qquad
        s_1 = \sum_j x_j, \quad s_2 = \sum_j \tilde x_j, \qquad
        s(x) = S\big(W \operatorname{ash}(x) + b\big)

    with :math:`\operatorname{ash}(x) = \tilde x` (ASH-P, ``variant="p"``),
    :math:`\frac{s_1}{m} [x_j \ge t(x)]` (ASH-B, ``"b"``, :math:`m` the number
    of kept entries, so that the sum stays :math:`s_1`), or
    :math:`\tilde x \exp(s_1 / s_2)` (ASH-S, ``"s"``).

    Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation Shaping for
    Out-of-Distribution Detection", ICLR 2023. The threshold :math:`t(x)` is
    the :math:`k`-th largest entry of the sample, :math:`k = n -
    \operatorname{round}(n q / 100)` with :math:`n` = ``n_features`` and
    :math:`q` = ``percentile``: the activations below the sample's
    :math:`q`-th percentile are set to zero. At least one entry is always
    kept. :math:`S` is the logit detector (negative energy by default).
    Nothing is learnt from the fit data but the logit detector and
    ``offset_``.

    The penultimate features of a ReLU network are non-negative, but nothing
    here assumes it: entries are ranked by signed value (the most negative
    are pruned first), and ASH-B's fill value :math:`s_1 / m` follows the
    sign of :math:`s_1`. For non-negative features :math:`1 \le s_1 / s_2 \le
    n / k`; ASH-S leaves a row unscaled (factor 1) when :math:`s_2 \le 0`,
    which for non-negative features happens only to an all-zero row (whose
    shaped features are zero whatever the factor).

    Differences from pytorch-ood 0.4.0 ``ASH`` (and the authors' code): they
    take 4-D tensors (samples x channels x height x width) and rank all
    entries of a sample together; here each row of ``X`` is the whole
    activation vector of a sample, e.g. the penultimate features after
    global average pooling (a 1 x 1 map); to shape an earlier layer, pass
    its flattened maps with a head that includes the (linear) pooling. They
    keep exactly :math:`k` entries through ``topk``, breaking ties
    arbitrarily; here every entry tied with :math:`t(x)` is kept, so that the
    result does not depend on the order of the features (ASH-B then spreads
    :math:`s_1` over all :math:`m \ge k` kept entries). Their ASH-S gives
    NaN for an all-zero row; here it gives zero features. pytorch-ood's
    ``percentile`` is a fraction (0.65); here it is in percent (65), as in the
    paper and the authors' code. pytorch-ood returns the energy (an outlier
    score); here the score is higher for ID data.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    variant : {"s", "p", "b"}, default="s"
        ASH-S (prune and sharpen), ASH-P (prune only) or ASH-B (prune and
        binarise).
    percentile : float in [0, 100), default=65
        Percentage :math:`q` of the activations of each sample set to zero.
    detector : logit detector, default=None
        Scores the shaped logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's choice).
        Any detector of this package that takes logits works, e.g.
        ``MaxSoftmax()``, ``GEN()``, ``KLMatching()``. A clone is fitted on
        the shaped logits of the fit rows (with ``y``) as ``detector_``.
    contamination : float in (0, 0.5], default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    W_ : ndarray of shape (n_classes, n_features)
        Head weights.
    b_ : ndarray of shape (n_classes,)
        Head bias.
    detector_ : estimator
        Fitted clone of ``detector`` (or ``Energy()``).
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import ASH
    >>> head = (np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]), np.zeros(2))
    >>> X = np.array([[2.0, 1.0, 0.5, 0.5], [0.5, 1.0, 1.5, 2.0]])
    >>> ASH(head, variant="p", percentile=50).fit(X).score_samples(X).round(4)
    array([2.3133, 3.5298])
    >>> ASH(head, variant="b", percentile=50).fit(X).score_samples(X).round(4)
    array([2.6931, 5.0067])
    >>> ASH(head, variant="s", percentile=50).fit(X).score_samples(X).round(4)
    array([ 7.6096, 14.6046])
    """

    _parameter_constraints = {
        **_ShapedLogitDetector._parameter_constraints,
        "variant": [StrOptions({"s", "p", "b"})],
        "percentile": [Interval(Real, 0, 100, closed="left")],
    }

    def __init__(
        self, head, variant="s", percentile=65, detector=None, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.variant = variant
        self.percentile = percentile
        self.detector = detector

    def _shape(self, X):
        keep = _keep_largest(X, self.percentile)
        if self.variant == "b":
            fill = X.sum(axis=1) / keep.sum(axis=1)
            return np.where(keep, fill[:, np.newaxis], 0.0)
        pruned = np.where(keep, X, 0.0)
        if self.variant == "p":
            return pruned
        factor = _sharpening(X.sum(axis=1), pruned.sum(axis=1))
        return pruned * factor[:, np.newaxis]


class SCALE(_ShapedLogitDetector):
    r"""Scale each sample by its activation-sum ratio, without pruning it.

    .. math::

        s_1 = \sum_j x_j, \quad s_2 = \sum_j x_j \, [x_j \ge t(x)], \qquad
        s(x) = S\big(W \, x \exp(s_1 / s_2) + b\big)

    Xu, Chen, Franchi & Yao, "Scaling for Training Time and Post-hoc
    Out-of-distribution Detection Enhancement", ICLR 2024. As in ASH-S
    (:class:`ASH`), :math:`t(x)` is the :math:`k`-th largest entry of the
    sample, :math:`k = n - \operatorname{round}(n q / 100)` (at least 1), so
    :math:`s_2` is the sum of its largest :math:`100 - q` percent of
    activations. Unlike ASH-S, the pruned copy only gives the ratio
    :math:`r = s_1 / s_2`: *all* activations are kept and multiplied by
    :math:`e^r`. The paper finds that pruning hurts OOD detection while this
    scaling helps; the logits become :math:`e^r \, W x + b`. :math:`S` is
    the logit detector
    (negative energy by default). Nothing is learnt from the fit data but the
    logit detector and ``offset_``.

    The penultimate features of a ReLU network are non-negative, but nothing
    here assumes it: entries are ranked by signed value and :math:`r` is
    taken as it is (negative when :math:`s_1 < 0 < s_2`). For non-negative
    features :math:`1 \le r \le n / k`. A row with :math:`s_2 \le 0` (for
    non-negative features only an all-zero row) is left unscaled (factor 1).

    Differences from pytorch-ood 0.4.0 ``SCALE`` (and the authors' code):
    they take 4-D tensors and rank all entries of a sample together; here
    each row of ``X`` is the penultimate feature vector (after global
    average pooling, where the paper applies SCALE). Their ``topk`` keeps
    exactly :math:`k` entries for :math:`s_2`; here entries tied with
    :math:`t(x)` all count. They give NaN for an all-zero row; here its
    features stay zero. pytorch-ood's ``percentile`` is a fraction with
    default 0.65; here it is in percent with default 85. pytorch-ood returns
    the energy (an outlier score); here the score is higher for ID data.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    percentile : float in [0, 100), default=85
        Percentage :math:`q` of each sample's activations left out of
        :math:`s_2`.
    detector : logit detector, default=None
        Scores the shaped logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's choice).
        Any detector of this package that takes logits works, e.g.
        ``MaxSoftmax()``, ``GEN()``, ``KLMatching()``. A clone is fitted on
        the shaped logits of the fit rows (with ``y``) as ``detector_``.
    contamination : float in (0, 0.5], default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    W_ : ndarray of shape (n_classes, n_features)
        Head weights.
    b_ : ndarray of shape (n_classes,)
        Head bias.
    detector_ : estimator
        Fitted clone of ``detector`` (or ``Energy()``).
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import SCALE
    >>> head = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2))
    >>> X = np.array([[1.0, 3.0], [2.0, 0.0]])
    >>> det = SCALE(head, percentile=50).fit(X)  # r = 4 / 3 and r = 1
    >>> det.score_samples(X).round(4)
    array([11.3815,  5.4409])
    """

    _parameter_constraints = {
        **_ShapedLogitDetector._parameter_constraints,
        "percentile": [Interval(Real, 0, 100, closed="left")],
    }

    def __init__(self, head, percentile=85, detector=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.percentile = percentile
        self.detector = detector

    def _shape(self, X):
        keep = _keep_largest(X, self.percentile)
        factor = _sharpening(X.sum(axis=1), np.where(keep, X, 0.0).sum(axis=1))
        return X * factor[:, np.newaxis]
