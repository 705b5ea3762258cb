r"""ASH and SCALE: shape each sample from its own largest activations.

Both rank the entries of one row of penultimate features ``X``, keep the
largest ones and compute the logits through the linear ``head``; nothing is
fitted but the head and the logit detector. The shared skeleton
(:class:`~sklearn_ood.detectors._shaping._ShapedLogitDetector`) lives in
``_shaping.py``.

Speed and precision. The per-row threshold is a rank selection
(``np.partition``) in the dtype of ``X``, exact in float32 as in float64;
the masks and the pruned copy are exact too, and the sums :math:`s_1, s_2`
accumulate in float64. The per-row factor of ASH-S, ASH-B and SCALE
multiplies the logits after the product with the head, :math:`W (f v) = f
(W v)`, so SCALE needs no shaped copy of ``X`` at all. The ranking and sums
run over cache-sized chunks of rows (:func:`_map_row_chunks`), the product
over large blocks. Float64 features are multiplied with the float64 head.
Float32 features are multiplied with a float32 copy of the head, a
single-precision product as the network (and pytorch-ood) compute their
logits, in half the time of a float64 one: each logit then carries a
relative error of order :math:`10^{-7}` of :math:`\sum_j |W_{kj} v_j|`,
and the scores agree with those of the float64 computation on the same
numbers to about :math:`10^{-6}` relative (tested at 1e-5); rows whose
float32 logits overflow are redone in float64.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.detectors._shaping import _ShapedLogitDetector
from sklearn_ood.utils._order_statistics import _CACHE_BYTES, _row_blocks

__all__ = ["ASH", "SCALE"]


def _n_kept(n_features, percentile):
    """``k = n - round(n * percentile / 100)``, at least 1."""
    return max(1, n_features - int(np.round(n_features * percentile / 100.0)))


def _rank_rows(chunk, k, scratch):
    """Partition a copy of each row around its ``k``-th largest entry.

    Returns the partitioned copy (written to ``scratch``, an array of at least
    as many rows, reused from chunk to chunk) and the per-row threshold
    :math:`t`, the ``k``-th largest entry. The ranking runs in the dtype of
    ``chunk``: :math:`t` is one of the row's entries, exact in any dtype, so
    float32 rows give the threshold of their float64 cast, about 7 times
    faster.
    """
    n = chunk.shape[1]
    part = scratch[: len(chunk)]
    np.copyto(part, chunk)
    part.partition(n - k, axis=1)
    return part, part[:, n - k].copy()


def _row_sums(part, threshold, k):
    """Float64 sums :math:`s_1` of all entries and :math:`s_2` of those >= t.

    ``part`` is a chunk partitioned by :func:`_rank_rows`: the ``k`` largest
    entries of a row sit at its end. Entries left of them equal to
    :math:`t` are kept too, so that without ties :math:`s_2` is the sum of
    the ``k`` largest entries and with ties it does not depend on the order
    of the features.
    """
    n = part.shape[1]
    total = part.sum(axis=1, dtype=np.float64)
    kept = part[:, n - k :].sum(axis=1, dtype=np.float64)
    if k < n:
        # Only a row whose largest pruned entry equals t has ties (which
        # add nothing when t = 0, e.g. for sparse ReLU features).
        lower = part[:, : n - k]
        tied = np.flatnonzero((lower.max(axis=1) == threshold) & (threshold != 0))
        if tied.size:
            t = threshold[tied, np.newaxis]
            kept[tied] += t[:, 0] * np.count_nonzero(lower[tied] == t, axis=1)
    return total, kept


def _product_weights(W, dtype):
    """The head weights in the dtype of the features for the product ``W v``.

    A float32 copy for float32 features: a single-precision product (see the
    module docstring); ``W`` itself for float64 features.
    """
    return W if dtype == np.float64 else W.astype(np.float32)


def _sum_ratio(total, kept_total):
    """Per-row ``s1 / s2``, the exponent of the factor; 0 where ``s2 <= 0``."""
    return np.divide(total, kept_total, out=np.zeros_like(total), where=kept_total > 0)


def _map_row_chunks(func, X):
    """Call ``func(rows, scratch)`` on cache-sized chunks of the rows of ``X``.

    The ranking, masks and sums of a chunk stay in cache, and ``scratch``, an
    array of one chunk, is allocated once for all of them.

    The chunks are independent and NumPy releases the GIL for their work, but
    they run in this thread: Python threads measured no faster here, as they
    compete with the BLAS threads that keep spinning for a while after the
    product with the head of the previous block or call.
    """
    chunks = _row_blocks(X, _CACHE_BYTES)
    scratch = np.empty_like(X[chunks[0]], order="C")
    for rows in chunks:
        func(rows, scratch)


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

    Float32 features are ranked and pruned in float32 (exactly) and
    multiplied with a float32 copy of the head, in a single-precision matrix
    product; :math:`s_1, s_2` and the logits are float64. Their scores agree
    with the float64 computation on the same numbers to about :math:`10^{-6}`
    relative.

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
        the shaped logits of the fit rows (with ``y``) as ``detector_``; a
        score-only one (``Energy``, ``MaxSoftmax``, ...) learns nothing from
        them, so ``fit`` shapes only the rows its threshold needs.
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

    def _block_logits(self, X, out):
        # The product runs on one shaped copy of the block: the pruned
        # features (ASH-P, ASH-S) or the mask of kept entries (ASH-B), in the
        # dtype of X, exact either way; the per-row factor of ASH-S and ASH-B
        # scales the logits after it: W (f v) = f (W v).
        k = _n_kept(X.shape[1], self.percentile)
        shaped = np.empty_like(X, order="C")
        scale = np.empty(len(X))

        def shape_rows(rows, scratch):
            chunk = X[rows]
            part, threshold = _rank_rows(chunk, k, scratch)
            mask = np.greater_equal(chunk, threshold[:, np.newaxis], out=shaped[rows])
            if self.variant == "b":
                total = part.sum(axis=1, dtype=np.float64)
                scale[rows] = total / np.count_nonzero(mask, axis=1)
                return
            # x [x >= t]; a pruned negative entry becomes -0.0, which adds
            # nothing to the product.
            np.multiply(mask, chunk, out=mask)
            if self.variant == "s":  # the exponent; exp() below, warnings off
                scale[rows] = _sum_ratio(*_row_sums(part, threshold, k))

        _map_row_chunks(shape_rows, X)
        W = _product_weights(self.W_, X.dtype)
        if self.variant == "p":
            out[...] = shaped @ W.T
        else:
            if self.variant == "s":
                scale = np.exp(scale)
            np.multiply(shaped @ W.T, scale[:, np.newaxis], out=out)
        out += self.b_


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
    scaling helps; the logits become :math:`e^r \, W x + b`, computed in
    that order (the product of the raw features, then the factor). :math:`S`
    is the logit detector (negative energy by default). Nothing is learnt
    from the fit data but the logit detector and ``offset_``.

    Float32 features are ranked in float32 (exactly) and multiplied with a
    float32 copy of the head, in a single-precision matrix product;
    :math:`s_1, s_2` and the logits are float64. Their scores agree with the
    float64 computation on the same numbers to about :math:`10^{-6}`
    relative.

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
        the shaped logits of the fit rows (with ``y``) as ``detector_``; a
        score-only one (``Energy``, ``MaxSoftmax``, ...) learns nothing from
        them, so ``fit`` shapes only the rows its threshold needs.
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

    def _block_logits(self, X, out):
        k = _n_kept(X.shape[1], self.percentile)
        ratio = np.empty(len(X))

        def ratio_rows(rows, scratch):
            part, threshold = _rank_rows(X[rows], k, scratch)
            ratio[rows] = _sum_ratio(*_row_sums(part, threshold, k))

        _map_row_chunks(ratio_rows, X)
        # W (f x) = f (W x): the factor scales the logits of the raw features,
        # which need no shaped copy.
        W = _product_weights(self.W_, X.dtype)
        np.multiply(X @ W.T, np.exp(ratio)[:, np.newaxis], out=out)
        out += self.b_
