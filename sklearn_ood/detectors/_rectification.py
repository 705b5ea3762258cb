r"""Variational rectified activation: suppress low and high, amplify the middle.

:class:`VRA` shapes each penultimate feature with a piecewise function of two
thresholds learned from the in-distribution fit rows (by default one pair per
feature), then scores the head's logits with a logit detector, as the other
activation-shaping detectors do (:mod:`sklearn_ood.detectors._shaping`).

The thresholds are percentiles of the fit activations, computed in float64
(NumPy's linear interpolation, as ``np.percentile`` of the float64 matrix);
per-feature percentiles are taken over blocks of columns whose float64 copy
stays within scikit-learn's ``working_memory``. Shaping compares each
activation with the thresholds exactly and adds the shift in float64, so
float32 features get the float64 scores of the same numbers, rounded.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.detectors._shaped_logits import BaseShapedLogitDetector
from sklearn_ood.utils._chunking import chunk_n_rows, row_chunks
from sklearn_ood.utils._order_statistics import percentile_of_entries

__all__ = ["VRA"]


def _column_percentiles(X, qs):
    """Float64 ``np.percentile(X, q, axis=0)`` for each ``q`` of ``qs``.

    Column blocks are copied to float64 one at a time (the order statistics
    are exact in float32, so the values are those of the float64 matrix),
    each copy within ``working_memory``.
    """
    n_samples, n_features = X.shape
    out = np.empty((len(qs), n_features))
    step = chunk_n_rows(8 * n_samples)
    for start in range(0, n_features, step):
        cols = slice(start, min(start + step, n_features))
        block = X[:, cols].astype(np.float64)
        out[:, cols] = np.percentile(block, qs, axis=0)
    return out


class VRA(BaseShapedLogitDetector):
    r"""Variational rectified activation: a piecewise reshaping of the features.

    .. math::

        \operatorname{vra}(x_j) =
        \begin{cases}
            0 & x_j < \alpha_j \\
            x_j + \gamma & \alpha_j \le x_j \le \beta_j \\
            \beta_j & x_j > \beta_j
        \end{cases}, \qquad
        s(x) = S\big(W \operatorname{vra}(x) + b\big)

    Xu, Lian, Liu & Tao, "VRA: Variational Rectified Activation for
    Out-of-distribution Detection", NeurIPS 2023. The paper derives, by a
    variational argument, that abnormally low and high activations should be
    suppressed and intermediate ones amplified, and approximates the optimal
    operator by this piecewise function: activations below :math:`\alpha`
    are set to zero, those above :math:`\beta` are clipped to :math:`\beta`
    (as ReAct does), and those in between are raised by :math:`\gamma`
    (``shift``). :math:`S` is the logit detector (negative energy,
    :math:`\log \sum_k \exp l_k`, by default).

    The thresholds are the ``lower_percentile`` and ``upper_percentile``
    percentiles (the paper's quantile levels :math:`\eta_\alpha`,
    :math:`\eta_\beta`, in percent) of the ID fit activations: of each
    feature separately (``per_feature=True``, as the authors' code and
    pytorch-ood compute them) or of all entries together (``False``, as
    ReAct does). ``lower_threshold`` and ``upper_threshold`` give
    :math:`\alpha` and :math:`\beta` directly instead (the authors' ImageNet
    settings are fixed values); ``-inf`` or ``inf`` switches a side off.
    The defaults 60, 95 and :math:`\gamma = 0.6` are the authors' CIFAR
    setting; the paper searches :math:`\eta_\alpha \in [0.5, 0.7]`,
    :math:`\eta_\beta \in [0.8, 0.99]` and :math:`\gamma \in [0.2, 0.7]`.
    ``shift=0`` keeps the middle piece unchanged. :math:`\gamma` is in the
    units of the features, so it needs tuning with their scale.

    Every row whose activations all fall below their lower thresholds
    becomes the zero vector, and all such rows share one score (that of the
    logits :math:`b`); with few features and a high ``lower_percentile``
    they can be a large share of the rows (a third of 2-feature data at the
    default 60), which ties many scores.

    The score is not monotone in the activations, by design: an activation
    that crosses :math:`\alpha_j` jumps from 0 to :math:`\alpha_j + \gamma`,
    and one that crosses :math:`\beta_j` drops from :math:`\beta_j + \gamma`
    to :math:`\beta_j`.

    Differences from pytorch-ood 0.4.0 ``VRA``: theirs is a two-sided ReAct,
    :math:`\min(\max(x_j, \alpha_j), \beta_j)`: activations below
    :math:`\alpha_j` are raised to :math:`\alpha_j` instead of set to zero,
    and there is no shift :math:`\gamma`. With ``shift=0`` and no fit or
    test activation below :math:`\alpha_j` (e.g. ReLU features with
    :math:`\alpha_j = 0`), ours is minus theirs. Their percentiles are
    fractions (defaults 0.01 and 0.99, per element of a feature map); here
    they are in percent (60 and 95), per feature by default. They return
    the energy (an outlier score); here the score is higher for ID data.

    Parameters
    ----------
    head : (W, b) pair, nn.Linear, fitted linear model or callable
        Linear classification head mapping features to logits, see
        :func:`~sklearn_ood.detectors.check_head`.
    lower_percentile : float in [0, 100], default=60
        Percentile :math:`100 \eta_\alpha` of the ID fit activations used as
        the lower threshold :math:`\alpha`. Ignored when ``lower_threshold``
        is given.
    upper_percentile : float in [0, 100], default=95
        Percentile :math:`100 \eta_\beta` used as the upper threshold
        :math:`\beta`, at least ``lower_percentile``. Ignored when
        ``upper_threshold`` is given. ``fit`` raises a ``ValueError`` when a
        lower threshold ends above its upper one, or when the thresholds map
        distinct fit rows all to the same shaped features (every row would
        get the same score).
    shift : float >= 0, default=0.6
        Amplification :math:`\gamma` added to the activations between the
        thresholds.
    lower_threshold : float or array-like of shape (n_features,), default=None
        Lower threshold :math:`\alpha` to use as it is (one value, or one
        per feature) instead of estimating it.
    upper_threshold : float or array-like of shape (n_features,), default=None
        Upper threshold :math:`\beta` to use as it is, instead of estimating
        it.
    per_feature : bool, default=True
        Estimate a pair of thresholds per feature (percentiles over the fit
        rows of each column); ``False`` estimates one pair from all entries.
    detector : logit detector, default=None
        Scores the shaped logits (higher = more in-distribution); ``None``
        means :class:`~sklearn_ood.detectors.Energy` (the paper's main
        choice). A clone is fitted on the shaped logits of the fit rows (with
        ``y``) as ``detector_``; a score-only one (``Energy``,
        ``MaxSoftmax``, ...) learns nothing from them, so ``fit`` shapes only
        the rows its threshold needs.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    lower_threshold_ : ndarray of shape (n_features,)
        Lower threshold :math:`\alpha_j` of each feature (all equal when the
        thresholds are not per feature).
    upper_threshold_ : ndarray of shape (n_features,)
        Upper threshold :math:`\beta_j` of each feature.
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
    ReAct : Clip the features from above only, at one percentile.
    LTS : Scale the logits by each sample's activation-sum ratio.
    ASH : Prune each sample to its largest activations, then rescale.
    Energy : The default logit detector, here on the shaped features' logits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import VRA
    >>> head = (np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2))
    >>> X = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    >>> det = VRA(head, lower_percentile=25, upper_percentile=75, shift=0.5).fit(X)
    >>> det.lower_threshold_, det.upper_threshold_
    (array([0.75, 1.75]), array([2.25, 3.25]))
    >>> # Shaped rows: [0, 0] (both below), [1.5, 2.5] and [2.5, 3.5]
    >>> # (between: x + 0.5) and [2.25, 3.25] (both clipped above).
    >>> det.score_samples(X).round(4)
    array([0.6931, 2.8133, 3.8133, 3.5633])
    """

    _parameter_constraints = {
        **BaseShapedLogitDetector._parameter_constraints,
        "lower_percentile": [Interval(Real, 0, 100, closed="both")],
        "upper_percentile": [Interval(Real, 0, 100, closed="both")],
        "shift": [Interval(Real, 0, None, closed="left")],
        "lower_threshold": [
            "array-like",
            Interval(Real, None, None, closed="both"),
            None,
        ],
        "upper_threshold": [
            "array-like",
            Interval(Real, None, None, closed="both"),
            None,
        ],
        "per_feature": ["boolean"],
    }

    def __init__(
        self,
        head,
        lower_percentile=60,
        upper_percentile=95,
        shift=0.6,
        lower_threshold=None,
        upper_threshold=None,
        per_feature=True,
        detector=None,
        *,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.lower_percentile = lower_percentile
        self.upper_percentile = upper_percentile
        self.shift = shift
        self.lower_threshold = lower_threshold
        self.upper_threshold = upper_threshold
        self.per_feature = per_feature
        self.detector = detector

    # ------------------------------------------------------------------ fit
    def _explicit_threshold(self, value, name, n_features):
        threshold = np.array(value, dtype=np.float64)  # a copy, never aliased
        if threshold.ndim == 0:
            threshold = np.full(n_features, float(threshold))
        elif threshold.shape != (n_features,):
            raise ValueError(
                f"VRA: {name} must be a number or have one value per feature, "
                f"shape ({n_features},); got shape {threshold.shape}."
            )
        if np.isnan(threshold).any():
            raise ValueError(
                f"VRA: {name} contains NaN; give a number per feature (-inf or "
                "inf switches that side off)."
            )
        return threshold

    def _estimated_thresholds(self, X, qs):
        if self.per_feature:
            return list(_column_percentiles(X, qs))
        return [np.full(X.shape[1], percentile_of_entries(X, q)) for q in qs]

    def _fit_shaping(self, X, y):
        n_features = X.shape[1]
        lower, upper = self.lower_threshold, self.upper_threshold
        if lower is None and upper is None:
            if self.lower_percentile > self.upper_percentile:
                raise ValueError(
                    f"VRA: lower_percentile={self.lower_percentile:g} exceeds "
                    f"upper_percentile={self.upper_percentile:g}; the lower "
                    "threshold must not be above the upper one."
                )
        # The percentiles of the sides without an explicit threshold.
        qs = [
            q
            for t, q in ((lower, self.lower_percentile), (upper, self.upper_percentile))
            if t is None
        ]
        estimated = iter(self._estimated_thresholds(X, qs) if qs else [])
        self.lower_threshold_ = (
            next(estimated)
            if lower is None
            else self._explicit_threshold(lower, "lower_threshold", n_features)
        )
        self.upper_threshold_ = (
            next(estimated)
            if upper is None
            else self._explicit_threshold(upper, "upper_threshold", n_features)
        )
        crossed = np.flatnonzero(self.lower_threshold_ > self.upper_threshold_)
        if crossed.size:
            j = crossed[0]
            raise ValueError(
                f"VRA: the lower threshold is above the upper one for "
                f"{crossed.size} feature(s), e.g. feature {j}: "
                f"{self.lower_threshold_[j]:g} > {self.upper_threshold_[j]:g}. "
                "Lower lower_threshold / lower_percentile or raise "
                "upper_threshold / upper_percentile."
            )
        self._check_rows_stay_distinct(X)

    def _check_rows_stay_distinct(self, X):
        """Refuse thresholds that map distinct fit rows to one shaped vector.

        Every row would then get the same logits and the same score. Fit rows
        that are all equal to begin with (e.g. a single row) are not refused.
        """
        n_features = X.shape[1]
        low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
        for rows in row_chunks(len(X), 9 * n_features):
            shaped = self._shape(X[rows])
            np.minimum(low, shaped.min(axis=0), out=low)
            np.maximum(high, shaped.max(axis=0), out=high)
        if np.all(low == high) and np.any(X.min(axis=0) != X.max(axis=0)):
            raise ValueError(
                "VRA: the thresholds map every fit row to the same shaped "
                "features (each activation falls below its lower threshold, "
                "which sets it to 0, or above its upper one, which clips it), "
                "so every row would get the same score. Use a lower "
                "lower_percentile or a higher upper_percentile (or pass "
                "lower_threshold / upper_threshold inside the range of the "
                "activations)."
            )

    # ---------------------------------------------------------------- score
    def _shape(self, X):
        """Float64 ``vra(X)`` of a block of rows (float32 or float64)."""
        shaped = X.astype(np.float64)  # a copy: exact for float32
        shaped += np.float64(self.shift)
        np.copyto(
            shaped,
            np.broadcast_to(self.upper_threshold_, shaped.shape),
            where=X > self.upper_threshold_,
        )
        np.copyto(shaped, 0.0, where=X < self.lower_threshold_)
        return shaped

    def _block_logits(self, X, out):
        np.matmul(self._shape(X), self.coef_.T, out=out)
        out += self.intercept_
