"""Activation shaping: change the features (or the head), then score the logits.

Every detector here takes penultimate features ``X`` of shape ``(n_samples,
n_features)`` and the classifier's linear ``head``. It shapes the features
(or the head weights), computes the logits ``shaped @ W.T + b`` and scores
them with a logit detector, :class:`~sklearn_ood.detectors.Energy` unless
another one is given. The shared skeleton is :class:`_ShapedLogitDetector`;
:class:`ReAct` and :class:`DICE` live here, :class:`ASH` and :class:`SCALE`
(which shape each sample from its own largest activations) in
``_shaping_ash.py``.

Precision. Ranking, clipping and masking are exact in any floating dtype,
so float32 features are ranked and compared in float32 and never copied to
float64 as a whole; sums and the percentile interpolation accumulate in
float64, and the logits and scores stay float64 until ``score_samples``
rounds them to the dtype of ``X``. ReAct and DICE take the product with the
head in float64 (each block of float32 rows is cast, exactly, just before
it), so their float32 scores are the float64 scores of the same numbers,
rounded. ASH and SCALE multiply float32 features with a float32 copy of the
head (see ``_shaping_ash.py``).
"""

from numbers import Real

import numpy as np
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors._head import check_head
from sklearn_ood.detectors._logits import Energy
from sklearn_ood.utils._order_statistics import _percentile_of_entries, _row_blocks

__all__ = ["DICE", "ReAct"]

# Rows of X shaped at a time, in blocks of at most this many bytes of float64
# features: each block is one product with the head (a few large BLAS calls
# lose less than many small ones to thread wake-ups on busy cores), and the
# temporaries of a block stay below glibc's largest mmap threshold (32 MiB),
# so the next block reuses their memory instead of faulting in fresh pages.
_BLOCK_BYTES = 24 << 20


def _is_stateless(detector):
    """Whether ``detector`` scores each row by a fixed formula.

    Its class must declare ``_stateless = True`` itself: a subclass that
    overrides the fit of ``Energy`` learns from its rows unless it says
    otherwise.
    """
    return bool(type(detector).__dict__.get("_stateless", False))


class _ShapedLogitDetector(BaseDetector):
    """Shape the features, compute the head's logits, score them with a detector.

    Subclasses list their own hyper-parameters and implement
    ``_fit_shaping(X, y)`` (fitted statistics, from the ID fit rows in their
    own dtype, float32 or float64, once ``W_`` and ``b_`` are set) and
    ``_block_logits(X, out)`` (writes the float64 shaped logits ``W shape(x)
    + b`` of a block of rows, float32 or float64, into ``out``).

    ``fit`` resolves ``head`` with :func:`check_head`, fits the shaping, then
    fits a clone of ``detector`` (``Energy()`` when None) on the shaped logits
    of the ID fit rows, passing ``y``; the user's ``detector`` is never fitted.
    The clone learns no threshold of its own (``contamination=None`` when it
    is a detector of this package): ``offset_`` is the outer detector's, from
    the shaped logits of (a sample of) the fit rows. A stateless inner
    detector (``Energy``, ``MaxSoftmax``, ``MaxLogit``, ``Entropy``, ``GEN``)
    learns nothing from the rows, so the clone is fitted on the logits of the
    first row only (which validates its parameters and sets its
    ``n_features_in_``), and ``fit`` shapes only the rows that set
    ``offset_``.
    ``score_samples`` is that clone's ``score_samples`` of the shaped logits.
    Labels are required exactly when the inner detector requires them.
    """

    _parameter_constraints: dict = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
        "detector": [HasMethods(["fit", "score_samples"]), None],
    }

    @property
    def _requires_labels(self):
        return bool(getattr(self.detector, "_requires_labels", False))

    def _fit(self, X, y):
        if self.detector is None:
            detector = Energy()
        elif isinstance(self.detector, type):
            raise ValueError(
                f"detector must be a detector instance such as "
                f"{self.detector.__name__}(), not the class itself."
            )
        else:
            detector = clone(self.detector, safe=False)
        if isinstance(detector, BaseDetector):
            detector.set_params(contamination=None)  # the threshold is ours
        self.W_, self.b_ = check_head(self.head, X.shape[1])
        self._fit_shaping(X, y)
        if _is_stateless(detector):
            detector.fit(self._shaped_logits(X[:1]), None if y is None else y[:1])
        else:
            detector.fit(self._shaped_logits(X), y)
        self.detector_ = detector

    def _fit_shaping(self, X, y):
        """Learn the shaping statistics; nothing by default."""

    def _block_logits(self, X, out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _shaped_logits(self, X):
        """Float64 shaped logits of the rows of ``X``, a block of rows at a time."""
        X = np.asarray(X)
        if X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        logits = np.empty((len(X), len(self.b_)))
        # Overflow (inf, then inf * 0 = NaN) is refused below, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            for rows in _row_blocks(X, _BLOCK_BYTES * X.itemsize // 8):
                self._block_logits(X[rows], logits[rows])
            bad = ~np.all(np.isfinite(logits), axis=1)
            if np.any(bad) and X.dtype == np.float32:
                # A float32 product (ASH, SCALE) overflows at 3.4e38: redo
                # those rows in float64 before calling them overflowing.
                redone = np.empty((np.count_nonzero(bad), len(self.b_)))
                self._block_logits(X[bad].astype(np.float64), redone)
                logits[bad] = redone
                bad = ~np.all(np.isfinite(logits), axis=1)
        if np.any(bad):
            raise ValueError(
                f"{type(self).__name__}: the shaped logits of {int(bad.sum())} "
                "row(s) are not finite because the shaped features overflow "
                "float64 (for ASH-S and SCALE the factor exp(s1 / s2) grows up to "
                "exp(n_features / k): lower `percentile`)."
            )
        return logits

    def _score(self, X):
        return self.detector_.score_samples(self._shaped_logits(X))


class ReAct(_ShapedLogitDetector):
    r"""Rectified activations: clip the features, then score the logits.

    .. math::

        \bar x_j = \min(x_j, c), \qquad
        s(x) = S\big(W \bar x + b\big), \qquad
        c = \text{the } q\text{-th percentile of all entries } x_{ij}
        \text{ of the ID fit rows}

    Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified
    Activations", NeurIPS 2021. :math:`S` is the logit detector (negative
    energy, :math:`\log \sum_k \exp l_k`, by default). The percentile is
    taken over every entry of the fit matrix together (NumPy's linear
    interpolation), and only rows with ``y >= 0`` count. ``percentile=100``
    clips at the largest fit activation, so the fit rows score as with no
    clipping at all. The threshold equals ``np.percentile`` of the float64
    fit matrix, for float32 input too; only its two neighbouring order
    statistics are selected, in one pass over the fit matrix and without a
    copy of it. Float32 features are clipped and multiplied with the head in
    float64, so their scores are the float64 scores of the same numbers.

    The penultimate features of a ReLU network are non-negative, but nothing
    here assumes it: negative activations lie below any sensible :math:`c`
    and pass unchanged (only the upper side is clipped).

    Differences from pytorch-ood 0.4.0 ``ReAct``: its ``percentile`` is a
    fraction (0.9); here it is in percent, as in the paper (90). It applies a
    callable to the logits and returns an outlier score (the energy by
    default); here a fitted logit detector gives a score that is higher for
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
        given.
    threshold : float, default=None
        Clipping threshold :math:`c` to use as it is, instead of estimating it.
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
    threshold_ : float
        Clipping threshold :math:`c` in use.
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
        **_ShapedLogitDetector._parameter_constraints,
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
        else:
            self.threshold_ = _percentile_of_entries(X, self.percentile)

    def _block_logits(self, X, out):
        # The float64 threshold makes the minimum (and the cast) float64.
        clipped = np.minimum(X, np.float64(self.threshold_))
        np.matmul(clipped, self.W_.T, out=out)
        out += self.b_


class DICE(_ShapedLogitDetector):
    r"""Directed sparsification of the head: keep its largest contributions.

    .. math::

        V_{kj} = \bar x_j W_{kj}, \qquad
        M_{kj} = [V_{kj} \ge Q_p(V)], \qquad
        s(x) = S\big((M \odot W) x + b\big)

    Sun & Li, "DICE: Leveraging Sparsification for Out-of-Distribution
    Detection", ECCV 2022. :math:`\bar x` is the mean of the ID fit rows,
    :math:`V` the contribution of each weight to the logits of an average ID
    sample, and :math:`Q_p(V)` the :math:`p`-quantile of all
    ``n_classes * n_features`` contributions (NumPy's linear interpolation).
    The mask keeps the weights at or above it, the top :math:`1 - p` of
    the contributions, so ``p`` is the *sparsity*: the fraction of weights
    set to zero (up to one weight, from the interpolation). ``p=0`` keeps the
    whole head. :math:`S` is the logit detector (negative energy by default).

    The penultimate features of a ReLU network are non-negative, but nothing
    here assumes it: a feature with a negative mean turns the sign of its
    contributions, and the mask follows the signed values.

    Differences from pytorch-ood 0.4.0 ``DICE`` (and the authors' code): they
    keep the weights strictly *above* the quantile, :math:`V > Q_p(V)`, which
    also drops one more weight whenever the quantile lands on a contribution,
    e.g. the smallest one at ``p=0``; here ``p=0`` is the plain head. It
    computes in float32 and returns the energy (an outlier score); here the
    fit and the product with the head are float64 (for float32 features
    too) and the score is higher for ID data.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    p : float in [0, 1), default=0.7
        Sparsity: fraction of the head weights, those of the smallest
        contributions, set to zero.
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
    mean_ : ndarray of shape (n_features,)
        Mean :math:`\bar x` of the ID fit rows.
    threshold_ : float
        Quantile :math:`Q_p(V)` of the contributions.
    mask_ : ndarray of shape (n_classes, n_features), dtype bool
        Kept weights :math:`M`.
    masked_W_ : ndarray of shape (n_classes, n_features)
        Sparsified head weights :math:`M \odot W`.
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
    >>> from sklearn_ood.detectors import DICE
    >>> head = (np.array([[2.0, -1.0], [0.5, 1.5]]), np.zeros(2))
    >>> X = np.array([[1.0, 1.0], [3.0, 1.0]])
    >>> det = DICE(head, p=0.5).fit(X)  # contributions [[4, -1], [1, 1.5]]
    >>> det.mask_
    array([[ True, False],
           [False,  True]])
    >>> det.score_samples(X).round(4)
    array([2.4741, 6.011 ])
    """

    _parameter_constraints = {
        **_ShapedLogitDetector._parameter_constraints,
        "p": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(self, head, p=0.7, detector=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.p = p
        self.detector = detector

    def _fit_shaping(self, X, y):
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        contributions = self.mean_ * self.W_
        self.threshold_ = float(np.quantile(contributions, self.p))
        self.mask_ = contributions >= self.threshold_
        self.masked_W_ = np.where(self.mask_, self.W_, 0.0)

    def _block_logits(self, X, out):
        np.matmul(X.astype(np.float64, copy=False), self.masked_W_.T, out=out)
        out += self.b_
