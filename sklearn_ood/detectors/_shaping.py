r"""Activation shaping: change the features (or the head), then score the logits.

Every detector here takes penultimate features ``X`` of shape ``(n_samples,
n_features)`` and the classifier's linear ``head``. It shapes the features
(ReAct clips them, ASH prunes each row, SCALE rescales each row) or the head
weights (DICE), computes the logits ``W shape(x) + b`` and scores them with a
logit detector, :class:`~sklearn_ood.detectors.Energy` unless another one is
given. The shared skeleton is
:class:`~sklearn_ood.detectors._shaped_logits.BaseShapedLogitDetector`; the order
statistics (ReAct's percentile, the per-row ranks and sums of ASH and SCALE)
are kernels of :mod:`sklearn_ood.utils._order_statistics`.

Rows are shaped in blocks whose temporaries stay within scikit-learn's
``working_memory``. Ranking, clipping and masking are exact in any floating
dtype, so float32 features are never copied to float64 as a whole; sums
accumulate in float64 and the logits are float64. ReAct and DICE multiply
with the head in float64, so float32 scores are the float64 scores of the
same numbers, rounded. ASH and SCALE multiply float32 features with a
float32 copy of the head, a single-precision product as the network (and
pytorch-ood) compute, in half the time: each logit carries a relative error
of order :math:`10^{-7}` of :math:`\sum_j |W_{kj} v_j|` and the scores agree
with the float64 ones to about :math:`10^{-6}` relative (tested at 1e-5);
rows whose float32 logits overflow are redone in float64.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.detectors._shaped_logits import (
    BaseShapedLogitDetector,
    product_weights,
)
from sklearn_ood.utils._order_statistics import (
    n_kept,
    percentile_of_entries,
    shape_top_k,
    top_k_ratios,
)

__all__ = ["ASH", "DICE", "ReAct", "SCALE"]


class ReAct(BaseShapedLogitDetector):
    r"""Rectified activations: clip the features, then score the logits.

    .. math::

        \bar x_j = \min(x_j, c), \qquad
        s(x) = S\big(W \bar x + b\big), \qquad
        c = \text{the } q\text{-th percentile of all entries } x_{ij}
        \text{ of the ID fit rows}

    Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified
    Activations", NeurIPS 2021 (their :math:`p` is :math:`q` =
    ``percentile``). :math:`S` is the logit detector (negative energy,
    :math:`\log \sum_k \exp l_k`, by default). The percentile is taken over
    every entry of the ID fit rows together, as ``np.percentile`` of the
    float64 matrix (linear interpolation; computed from two selected order
    statistics, without a copy). ``percentile=100`` clips at the largest fit
    activation, so the fit rows score as with no clipping: unlike the
    pruning percentiles of DICE, ASH and SCALE, 100 is valid here. Signed
    features are allowed: only the upper side is clipped. Float32 features
    are clipped and multiplied with the head in float64, so their scores
    are the float64 scores of the same numbers.

    The score is not monotone in the activations, by design: raising one
    that is already at or above :math:`c` changes nothing, and raising one
    whose head weights are negative lowers the logits. For a head with
    non-negative weights and the default ``Energy``, raising an activation
    never lowers the score.

    Differences from pytorch-ood 0.4.0 ``ReAct``: its ``percentile`` is a
    fraction (0.9); here it is in percent, as in the paper (90). It returns
    an outlier score (the energy by default); here the score is higher for
    ID data (the negative energy by default). It takes feature maps and a
    torch head; here the features are rows of ``X`` and the head is linear.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    percentile : float in [0, 100], default=90
        Percentile :math:`q` of the ID fit activations used as the clipping
        threshold :math:`c` (90 in the paper). Ignored when ``threshold`` is
        given. A threshold at or below the smallest fit activation (e.g. 0
        for ReLU features that are zero in more than ``percentile`` % of the
        entries) would clip every fit row to the same constant and is
        refused with a ``ValueError``.
    threshold : float, default=None
        Clipping threshold :math:`c` to use as it is, instead of estimating it.
    detector : logit detector, default=None
        Scores the shaped logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's choice).
        A clone is fitted on the shaped logits of the fit rows (with ``y``)
        as ``detector_``; a score-only one (``Energy``, ``MaxSoftmax``, ...)
        learns nothing from them, so ``fit`` shapes only the rows its
        threshold needs.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    threshold_ : float
        Clipping threshold :math:`c` in use.
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
    DICE : Sparsify the head weights instead of clipping the features.
    ASH : Prune each sample to its largest activations, then rescale.
    SCALE : Rescale each sample by its activation-sum ratio.
    Energy : The default logit detector, here on the clipped features' logits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import ReAct
    >>> head = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2))
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0], [9.0, 0.0]])
    >>> det = ReAct(head, percentile=75).fit(X)
    >>> det.threshold_
    1.75
    >>> det.score_samples(X).round(4)  # the 9 is clipped to 1.75
    array([1.3133, 1.9102, 1.9102])
    """

    _parameter_constraints = {
        **BaseShapedLogitDetector._parameter_constraints,
        "percentile": [Interval(Real, 0, 100, closed="both")],
        "threshold": [Interval(Real, None, None, closed="neither"), None],
    }

    def __init__(
        self, head, percentile=90, threshold=None, detector=None, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.percentile = percentile
        self.threshold = threshold
        self.detector = detector

    def _fit_shaping(self, X, y):
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
            source = f"threshold={self.threshold_:g}"
        else:
            self.threshold_ = percentile_of_entries(X, self.percentile)
            source = (
                f"the clip threshold, the {self.percentile:g}th percentile of the "
                f"fit activations ({self.threshold_:g}),"
            )
        # A threshold at or below every activation clips each row to the same
        # constant: every row would get the same logits and the same score.
        smallest = float(X.min())
        if self.threshold_ <= smallest:
            share = np.count_nonzero(X == smallest) / X.size
            raise ValueError(
                f"ReAct: {source} is not above the smallest fit activation "
                f"({smallest:g}, {share:.0%} of the entries, e.g. the zeros of "
                "sparse ReLU features), so clipping would map every row to the "
                "same constant and give every row the same score. Use a higher "
                "percentile or pass a larger threshold."
            )

    def _block_logits(self, X, out):
        # The float64 threshold makes the minimum (and the cast) float64.
        clipped = np.minimum(X, np.float64(self.threshold_))
        np.matmul(clipped, self.coef_.T, out=out)
        out += self.intercept_


class DICE(BaseShapedLogitDetector):
    r"""Directed sparsification of the head: keep its largest contributions.

    .. math::

        V_{kj} = \bar x_j W_{kj}, \qquad
        M_{kj} = [V_{kj} \ge Q_q(V)], \qquad
        s(x) = S\big((M \odot W) x + b\big)

    Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution
    Detection", ECCV 2022. :math:`\bar x` is the mean of the ID fit rows,
    :math:`V` the contribution of each weight to the logits of an average ID
    sample, and :math:`Q_q(V)` the :math:`q`-th percentile of all
    ``n_classes * n_features`` contributions (linear interpolation). The
    mask keeps the weights at or above it, the top :math:`100 - q` percent
    of the contributions: :math:`q` = ``percentile`` is the paper's sparsity
    :math:`p` in percent (:math:`q = 100 p`), the percentage of weights set
    to zero (up to one weight, from the interpolation). ``percentile=0``
    keeps the whole head. :math:`S` is the logit detector (negative energy
    by default). Signed features are allowed: a feature with a negative
    mean turns the sign of its contributions. The fit and the product with
    the head are float64, for float32 features too.

    The score is monotone in a feature only in the sign of its kept
    weights: raising a feature whose kept weight in a class is negative
    lowers that logit and can lower the score. For a head with
    non-negative weights and the default ``Energy``, raising a feature never
    lowers the score.

    Differences from pytorch-ood 0.4.0 ``DICE`` (and the authors' code): they
    keep the weights strictly *above* the quantile, :math:`V > Q_q(V)`, which
    also drops one more weight whenever the quantile lands on a contribution,
    e.g. the smallest one at :math:`p = 0`; here ``percentile=0`` is the
    plain head. Their ``p`` is a fraction (0.7); here ``percentile`` is in
    percent (70), as every percentile of this package. They compute in
    float32 and return the energy (an outlier score); here the score is
    higher for ID data.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    percentile : float in [0, 100), default=70
        Sparsity :math:`q`: percentage of the head weights, those of the
        smallest contributions, set to zero (the paper's :math:`p = 0.7`).
    detector : logit detector, default=None
        Scores the shaped logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's choice).
        A clone is fitted on the shaped logits of the fit rows (with ``y``)
        as ``detector_``; a score-only one (``Energy``, ``MaxSoftmax``, ...)
        learns nothing from them, so ``fit`` shapes only the rows its
        threshold needs.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Mean :math:`\bar x` of the ID fit rows.
    threshold_ : float
        Percentile :math:`Q_q(V)` of the contributions.
    mask_ : ndarray of shape (n_classes, n_features), dtype bool
        Kept weights :math:`M`.
    masked_coef_ : ndarray of shape (n_classes, n_features)
        Sparsified head weights :math:`M \odot W`.
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
    ReAct : Clip the features at a percentile of the fit activations.
    ASH : Prune each sample to its largest activations, then rescale.
    SCALE : Rescale each sample by its activation-sum ratio.
    Energy : The default logit detector, here on the sparsified head's logits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import DICE
    >>> head = (np.array([[2.0, -1.0], [0.5, 1.5]]), np.zeros(2))
    >>> X = np.array([[1.0, 1.0], [3.0, 1.0]])
    >>> det = DICE(head, percentile=50).fit(X)  # contributions [[4, -1], [1, 1.5]]
    >>> det.mask_
    array([[ True, False],
           [False,  True]])
    >>> det.score_samples(X).round(4)
    array([2.4741, 6.011 ])
    """

    _parameter_constraints = {
        **BaseShapedLogitDetector._parameter_constraints,
        "percentile": [Interval(Real, 0, 100, closed="left")],
    }

    def __init__(self, head, percentile=70, detector=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.percentile = percentile
        self.detector = detector

    def _fit_shaping(self, X, y):
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        contributions = self.mean_ * self.coef_
        self.threshold_ = float(np.percentile(contributions, self.percentile))
        self.mask_ = contributions >= self.threshold_
        self.masked_coef_ = np.where(self.mask_, self.coef_, 0.0)

    def _block_logits(self, X, out):
        np.matmul(X.astype(np.float64, copy=False), self.masked_coef_.T, out=out)
        out += self.intercept_


class ASH(BaseShapedLogitDetector):
    r"""Extremely simple activation shaping: prune each sample, then rescale.

    .. math::

        \tilde x_j = x_j \, [x_j \ge t(x)], \qquad
        s_1 = \sum_j x_j, \quad s_2 = \sum_j \tilde x_j, \qquad
        s(x) = S\big(W \operatorname{ash}(x) + b\big)

    with :math:`\operatorname{ash}(x) = \tilde x` (ASH-P, ``variant="p"``),
    :math:`\frac{s_1}{m} [x_j \ge t(x), x_j \ne 0]` (ASH-B, ``"b"``,
    :math:`m` the number of kept non-zero entries, so that the sum stays
    :math:`s_1`), or :math:`\tilde x \exp(s_1 / s_2)` (ASH-S, ``"s"``).

    Djurisic, Bozanic, Ashok & Liu, "Extremely Simple Activation Shaping for
    Out-of-Distribution Detection", ICLR 2023. The threshold :math:`t(x)` is
    the :math:`k`-th largest entry of the sample, :math:`k = n -
    \operatorname{round}(n q / 100)` (at least 1) with :math:`n` =
    ``n_features`` and :math:`q` = ``percentile`` (the paper's :math:`p`):
    the activations below the sample's :math:`q`-th percentile are set to
    zero. :math:`S` is the logit detector (negative energy by default).
    Nothing is learnt from the fit data but the logit detector and
    ``offset_``.

    Ties. Every entry tied with :math:`t(x)` is kept, so that the result
    does not depend on the order of the features. Zeros carry no pattern:
    a sparse sample (fewer than :math:`k` non-zero activations) has
    :math:`t(x) = 0`, its zeros add nothing to :math:`\tilde x` and
    :math:`s_2` (ASH-P, ASH-S), and ASH-B binarises its non-zero
    activations only. Binarising the zeros too would give every sparse
    sample the logits :math:`(s_1 / n) W \mathbf{1} + b`, whatever its
    pattern.

    Signed features are allowed: entries are ranked by signed value, and
    ASH-B's fill value :math:`s_1 / m` follows the sign of :math:`s_1`. For
    non-negative features :math:`1 \le s_1 / s_2 \le n / k`; ASH-S leaves a
    row with :math:`s_2 \le 0` unscaled, and ASH-B leaves a row without
    non-zero kept entries at zero. Float32 features are ranked and pruned
    in float32 (exactly) and multiplied with a float32 copy of the head:
    their scores agree with the float64 computation to about
    :math:`10^{-6}` relative.

    The score is not monotone in the activations, even for a head with
    non-negative weights: raising a pruned activation above :math:`t(x)`
    prunes another one in its place (ASH-P, ASH-B), and raising a kept one
    lowers the ASH-S factor :math:`\exp(s_1 / s_2)` (both sums grow by the
    same amount). For non-negative features and head weights and the
    default ``Energy``, raising a row's unique largest activation never
    lowers the ASH-P or ASH-B score.

    Differences from pytorch-ood 0.4.0 ``ASH`` (and the authors' code): they
    take 4-D maps and rank all entries of a sample together; here a row of
    ``X`` is the whole activation vector of a sample, e.g. the penultimate
    features after global average pooling (to shape an earlier layer, pass
    its flattened maps and a head that includes the linear pooling). They
    keep exactly :math:`k` entries through ``topk``, breaking ties
    arbitrarily, so their ASH-B fills a sparse sample's positive activations
    and some arbitrary zeros with :math:`s_1 / k`. Their
    ASH-S gives NaN for an all-zero row; here it gives zero features. Their
    ``percentile`` is a fraction (0.65); here it is in percent (65), as in
    the paper. They return the energy (an outlier score); here the score is
    higher for ID data.

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
        A clone is fitted on the shaped logits of the fit rows (with ``y``)
        as ``detector_``; a score-only one (``Energy``, ``MaxSoftmax``, ...)
        learns nothing from them, so ``fit`` shapes only the rows its
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
    SCALE : Rescale each sample like ASH-S, without pruning it.
    ReAct : Clip the features at a percentile of the fit activations.
    DICE : Sparsify the head weights instead of the features.
    Energy : The default logit detector, here on the shaped features' logits.

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
        **BaseShapedLogitDetector._parameter_constraints,
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

    def _block_logits(self, X, out):
        # One shaped copy of the block, exact in the dtype of X: the pruned
        # features (ASH-P, ASH-S) or the mask of kept entries (ASH-B); the
        # per-row factor scales the logits after the product: W (f v) = f (W v).
        shaped = np.empty_like(X, order="C")
        k = n_kept(X.shape[1], self.percentile)
        factor = shape_top_k(X, k, self.variant, shaped)
        logits = shaped @ product_weights(self.coef_, X.dtype).T
        if factor is None:
            out[...] = logits
        else:  # in float64; an overflow is refused by _shaped_logits
            if self.variant == "s":
                factor = np.exp(factor)
            np.multiply(logits, factor[:, np.newaxis], out=out)
        out += self.intercept_


class SCALE(BaseShapedLogitDetector):
    r"""Scale each sample by its activation-sum ratio, without pruning it.

    .. math::

        s_1 = \sum_j x_j, \quad s_2 = \sum_j x_j \, [x_j \ge t(x)], \qquad
        s(x) = S\big(W \, x \exp(s_1 / s_2) + b\big)

    Xu, Chen, Franchi & Yao, "Scaling for Training Time and Post-hoc
    Out-of-distribution Detection Enhancement", ICLR 2024. As in ASH-S
    (:class:`ASH`), :math:`t(x)` is the :math:`k`-th largest entry of the
    sample, :math:`k = n - \operatorname{round}(n q / 100)` (at least 1), so
    :math:`s_2` is the sum of its largest :math:`100 - q` percent of
    activations (:math:`q` = ``percentile``, the paper's :math:`p`). Unlike
    ASH-S, the pruned copy only gives the ratio :math:`r = s_1 / s_2`:
    *all* activations are kept and multiplied by :math:`e^r`, so the logits
    are :math:`e^r \, W x + b`. :math:`S` is the logit detector (negative
    energy by default). Nothing is learnt from the fit data but the logit
    detector and ``offset_``.

    Entries tied with :math:`t(x)` all count in :math:`s_2`, so that it does
    not depend on the order of the features; ties at :math:`t(x) = 0` (a
    sparse sample) add nothing, and no feature is pruned, so no tie erases a
    sample's pattern. Signed features are allowed: entries are ranked by
    signed value and :math:`r` is taken as it is. For non-negative features
    :math:`1 \le r \le n / k`; a row with :math:`s_2 \le 0` is left
    unscaled. Float32 features are ranked in float32 (exactly) and
    multiplied with a float32 copy of the head: their scores agree with the
    float64 computation to about :math:`10^{-6}` relative.

    The score is not monotone in the activations, even for a head with
    non-negative weights: raising a sample's largest activation adds the
    same amount to :math:`s_1` and :math:`s_2`, which lowers the factor
    :math:`e^r` and can outweigh the larger :math:`W x`.

    Differences from pytorch-ood 0.4.0 ``SCALE`` (and the authors' code):
    they take 4-D maps and rank all entries of a sample together; here a row
    of ``X`` is the penultimate feature vector (after global average
    pooling, where the paper applies SCALE). Their ``topk`` keeps exactly
    :math:`k` entries for :math:`s_2`; here entries tied with :math:`t(x)`
    all count. They give NaN for an all-zero row; here its features stay
    zero. Their ``percentile`` is a fraction with default 0.65; here it is in
    percent with default 85. They return the energy (an outlier score);
    here the score is higher for ID data.

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
        A clone is fitted on the shaped logits of the fit rows (with ``y``)
        as ``detector_``; a score-only one (``Energy``, ``MaxSoftmax``, ...)
        learns nothing from them, so ``fit`` shapes only the rows its
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
    ASH : Prune each sample to its largest activations, then rescale.
    ReAct : Clip the features at a percentile of the fit activations.
    DICE : Sparsify the head weights instead of the features.
    Energy : The default logit detector, here on the rescaled features' logits.

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
        **BaseShapedLogitDetector._parameter_constraints,
        "percentile": [Interval(Real, 0, 100, closed="left")],
    }

    def __init__(self, head, percentile=85, detector=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.percentile = percentile
        self.detector = detector

    def _block_logits(self, X, out):
        ratio = top_k_ratios(X, n_kept(X.shape[1], self.percentile))
        # W (f x) = f (W x): the factor scales the logits of the raw features,
        # which need no shaped copy.
        W = product_weights(self.coef_, X.dtype)
        np.multiply(X @ W.T, np.exp(ratio)[:, np.newaxis], out=out)
        out += self.intercept_
