"""OpenMax: extreme-value recalibration of the logits with an unknown class.

The Weibull fits use :func:`scipy.stats.weibull_min.fit`; libMR is not needed.
"""

import warnings
from numbers import Integral

import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import weibull_min
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.base import BaseDetector
from sklearn_ood.utils._validation import check_logit_labels, check_n_classes

__all__ = ["OpenMax"]

# Fewest correctly classified fit rows per class: a two-parameter Weibull
# needs a tail of at least a few distinct distances.
_MIN_ROWS = 3

# Weight of the Euclidean distance in "eucos", from the paper's code (sized
# for the scale of ImageNet fc8 activations).
_EUCOS_EUCLIDEAN_WEIGHT = 1.0 / 200.0


def _row_distances(X, means, kind):
    """Distance of each row of ``X`` to the matching row of ``means``.

    The cosine distance is :math:`1 - \\cos`, clipped to ``[0, 2]``; a zero
    vector has cosine similarity 0 (distance 1) with everything.
    """
    if kind in ("euclidean", "eucos"):
        euclidean = np.linalg.norm(X - means, axis=1)
        if kind == "euclidean":
            return euclidean
    norms = np.linalg.norm(X, axis=1) * np.linalg.norm(means, axis=1)
    dots = np.einsum("ij,ij->i", X, means)
    safe = np.where(norms > 0, norms, 1.0)
    cosine = np.clip(1.0 - np.where(norms > 0, dots / safe, 0.0), 0.0, 2.0)
    if kind == "cosine":
        return cosine
    return _EUCOS_EUCLIDEAN_WEIGHT * euclidean + cosine


def _fit_weibull(tail):
    """Two-parameter Weibull (location 0) fitted by maximum likelihood.

    Returns ``(shape, scale)``. Zero distances lie outside the support and are
    left out. A tail without two distinct positive values gives the limit of
    the fit as the shape grows, a step at its largest value:
    ``(inf, max(tail))``.
    """
    tail = np.asarray(tail, dtype=np.float64)
    top = float(tail.max()) if tail.size else 0.0
    tail = tail[tail > 0]
    if tail.size < 2 or tail.min() == tail.max():
        return np.inf, top
    with warnings.catch_warnings():
        # scipy warns about precision loss on nearly constant data; the
        # result is checked below.
        warnings.simplefilter("ignore", RuntimeWarning)
        # The MLE is scale-equivariant: fit on tail / max for conditioning.
        shape, _, scale = weibull_min.fit(tail / top, floc=0)
    scale *= top
    if not (np.isfinite(shape) and np.isfinite(scale) and shape > 0 and scale > 0):
        return np.inf, top
    return float(shape), float(scale)


def _weibull_cdf(d, shape, scale):
    """Weibull CDF :math:`1 - \\exp(-(d / \\lambda)^\\kappa)`, elementwise.

    An infinite shape is the step limit: 0 below ``scale``, :math:`1 - 1/e`
    at it, 1 above.
    """
    d, shape, scale = np.broadcast_arrays(d, shape, scale)
    finite = np.isfinite(shape)
    cdf = np.where(d > scale, 1.0, np.where(d == scale, -np.expm1(-1.0), 0.0))
    with np.errstate(over="ignore"):
        z = (d[finite] / scale[finite]) ** shape[finite]
    cdf[finite] = -np.expm1(-z)
    return cdf


class OpenMax(BaseDetector):
    r"""OpenMax: logits recalibrated by per-class Weibull models of distance.

    .. math::

        F_k(d) = 1 - e^{-(d / \lambda_k)^{\kappa_k}}, \qquad
        w_k(x) = 1 - \frac{\alpha - r_k(x) + 1}{\alpha}
                 F_k\big(\operatorname{dist}(l(x), \mu_k)\big)
        \ \text{ if } r_k(x) \le \alpha, \text{ else } 1

    .. math::

        \hat l_k = l_k w_k, \qquad
        \hat l_0 = \sum_k l_k (1 - w_k), \qquad
        P = \operatorname{softmax}(\hat l_0, \hat l_1, \dots, \hat l_C)

    .. math::

        s(x) = 1 - P_0 \ (\texttt{score_type="unknown"}), \qquad
        s(x) = \max_{k \ge 1} P_k \ (\texttt{score_type="max_known"})

    Bendale & Boult, "Towards Open Set Deep Networks", CVPR 2016.
    :math:`r_k(x)` is the rank of logit :math:`l_k` in its row (1 for the
    largest), so only the top-:math:`\alpha` classes are revised
    (:math:`\alpha` = ``n_revised_classes``, the paper's "alpha rank") and
    :math:`\hat l_0` is the logit of an extra "unknown" class.

    Fit, per class :math:`k`: the mean activation vector (MAV)
    :math:`\mu_k` is the mean logit vector of the *correctly classified* fit
    rows of class :math:`k` (:math:`\arg\max_j l_j = y`). Without ``y`` the
    predicted class is the class, so every row counts as correct. The
    distances of those rows to :math:`\mu_k` are computed, and a Weibull
    with location 0 is fitted by maximum likelihood
    (``scipy.stats.weibull_min.fit(tail, floc=0)``) to the ``tailsize``
    largest of them (all of them if the class has fewer). Each class needs
    at least 3 correctly classified fit rows. Zero distances are left out
    of the fit (outside the Weibull's support); a tail without two distinct
    positive distances gets the limit of the fit, a step at its largest
    distance (:math:`F_k = 0` below it, 1 above it, :math:`1 - 1/e` at it).
    A logit column with no fit rows (not in ``classes_``) has no model and
    counts as infinitely far: :math:`F_k = 1`.

    Distances, as in the paper's code: ``"euclidean"``
    :math:`\lVert l - \mu \rVert_2`; ``"cosine"``
    :math:`1 - \cos(l, \mu)` (similarity 0 when either vector is zero);
    ``"eucos"`` :math:`\lVert l - \mu \rVert_2 / 200 + (1 - \cos(l, \mu))`,
    whose 1/200 was sized for ImageNet fc8 activations.

    The paper rejects an input whose unknown probability is the largest or
    whose top probability is small; ``"unknown"`` (the default, like
    pytorch-ood) scores by :math:`1 - P_0` and ``"max_known"`` by the top
    known-class probability. :math:`1 - P_0` is computed as
    :math:`\sigma(\log\sum_{k \ge 1} e^{\hat l_k} - \hat l_0)` (:math:`\sigma`
    the logistic function), exact even when :math:`P_0 \to 1`, but it
    saturates at 1 for very confident rows.

    Differences from pytorch-ood 0.4.0 ``OpenMax``: its score is
    :math:`P_0` (ours is :math:`1 - P_0`); it fits on *all* labelled rows of
    a class, not only the correctly classified ones; its distance is
    ``euclid_weight * euclidean + (1 - euclid_weight) * cosine`` (no
    1/200 "eucos"); it fits the Weibull the libMR way, to
    ``tail + 10000 - min(tail)``, where we fit the raw distances; it clips
    its ``alpha`` (our ``n_revised_classes``) to the number of classes
    instead of raising; it uses distance 0
    for a top-:math:`\alpha` class that is no row's argmax in the scored
    batch; and it clips the revised logits at 709 instead of using a stable
    softmax.

    Parameters
    ----------
    tailsize : int >= 3, default=20
        Number of largest distances per class the Weibull is fitted to
        (clipped to the number of correctly classified rows of the class).
    n_revised_classes : int >= 1, default=10
        Number :math:`\alpha` of top classes revised per row (the paper's
        and pytorch-ood's ``alpha``); must not exceed the number of classes
        (logit columns).
    distance : {"eucos", "euclidean", "cosine"}, default="eucos"
        Distance between a logit vector and a MAV (see above).
    score_type : {"unknown", "max_known"}, default="unknown"
        ``"unknown"``: :math:`1 - P_0`; ``"max_known"``:
        :math:`\max_{k \ge 1} P_k`.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    classes_ : ndarray of shape (n_models,)
        Classes (logit columns) with a MAV and a Weibull model: the ID
        labels if ``y`` was given, else the predicted classes.
    means_ : ndarray of shape (n_models, n_classes)
        Mean activation vectors :math:`\mu_k`, aligned with ``classes_``.
    weibull_shape_ : ndarray of shape (n_models,)
        Fitted shapes :math:`\kappa_k` (``inf`` for a degenerate tail).
    weibull_scale_ : ndarray of shape (n_models,)
        Fitted scales :math:`\lambda_k`.
    tail_sizes_ : ndarray of shape (n_models,)
        Number of distances each Weibull was fitted to.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    KLMatching : Divergence from the typical softmax of each class.
    TemperatureScaling : MaxSoftmax at a temperature fitted to the labels.
    KNN : Distance to the k-th nearest fit row, in feature space.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import OpenMax
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 30)
    >>> logits = 6.0 * np.eye(3)[y] + rng.normal(size=(90, 3))
    >>> det = OpenMax(tailsize=10, n_revised_classes=2, distance="euclidean")
    >>> det = det.fit(logits, y)
    >>> det.score_samples([[6.0, 0.0, 0.0], [20.0, -20.0, 0.0]]).round(3)
    array([0.998, 0.   ])
    """

    _input_kind = "logits"
    _family = "fitted-logits"

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "tailsize": [Interval(Integral, _MIN_ROWS, None, closed="left")],
        "n_revised_classes": [Interval(Integral, 1, None, closed="left")],
        "distance": [StrOptions({"eucos", "euclidean", "cosine"})],
        "score_type": [StrOptions({"unknown", "max_known"})],
    }

    _class_aware = True

    def __init__(
        self,
        tailsize=20,
        n_revised_classes=10,
        distance="eucos",
        score_type="unknown",
        *,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.tailsize = tailsize
        self.n_revised_classes = n_revised_classes
        self.distance = distance
        self.score_type = score_type

    def _fit(self, X, y):
        name = type(self).__name__
        n_samples, n_classes = X.shape
        check_n_classes(X, name)
        if self.n_revised_classes > n_classes:
            raise ValueError(
                f"n_revised_classes={self.n_revised_classes} exceeds the number of "
                f"classes ({n_classes} logit columns)."
            )
        if n_samples < _MIN_ROWS:
            raise ValueError(
                f"{name} needs at least {_MIN_ROWS} correctly classified fit rows "
                f"per class; got n_samples = {n_samples}."
            )
        check_logit_labels(y, n_classes, name)
        X = np.asarray(X, dtype=np.float64)
        predicted = np.argmax(X, axis=1)
        labels = predicted if y is None else y
        classes = np.unique(labels)
        correct = predicted == labels

        means = np.empty((classes.size, n_classes))
        shapes = np.empty(classes.size)
        scales = np.empty(classes.size)
        tail_sizes = np.empty(classes.size, dtype=np.intp)
        for i, k in enumerate(classes):
            rows = X[correct & (labels == k)]
            if rows.shape[0] < _MIN_ROWS:
                raise ValueError(
                    f"{name} needs at least {_MIN_ROWS} correctly classified fit "
                    f"rows per class (argmax of the logits == label); class {k} "
                    f"has {rows.shape[0]}."
                )
            means[i] = rows.mean(axis=0)
            dist = _row_distances(
                rows, np.broadcast_to(means[i], rows.shape), self.distance
            )
            tail = np.sort(dist)[-self.tailsize :]
            shapes[i], scales[i] = _fit_weibull(tail)
            tail_sizes[i] = tail.size

        self.classes_ = classes
        self.means_ = means
        self.weibull_shape_ = shapes
        self.weibull_scale_ = scales
        self.tail_sizes_ = tail_sizes

    def _revised_logits(self, X):
        """Revised known logits ``(n, n_classes)`` and unknown logit ``(n,)``."""
        X = np.asarray(X, dtype=np.float64)
        n_samples, n_classes = X.shape
        alpha = self.n_revised_classes
        rows = np.arange(n_samples)
        model_of = np.full(n_classes, -1)
        model_of[self.classes_] = np.arange(self.classes_.size)
        # Columns by decreasing logit; ties keep the lower column first.
        ranked = np.argsort(-X, axis=1, kind="stable")[:, :alpha]
        revised = X.copy()
        for r in range(alpha):  # r = rank - 1
            cols = ranked[:, r]
            model = model_of[cols]
            has = model >= 0
            cdf = np.ones(n_samples)
            m = model[has]
            dist = _row_distances(X[has], self.means_[m], self.distance)
            cdf[has] = _weibull_cdf(
                dist, self.weibull_shape_[m], self.weibull_scale_[m]
            )
            weight = 1.0 - (alpha - r) / alpha * cdf
            revised[rows, cols] = X[rows, cols] * weight
        unknown = np.sum(X - revised, axis=1)
        return revised, unknown

    def _score(self, X):
        revised, unknown = self._revised_logits(X)
        known = logsumexp(revised, axis=1)
        if self.score_type == "unknown":
            return expit(known - unknown)
        total = np.logaddexp(known, unknown)
        return np.exp(revised.max(axis=1) - total)
