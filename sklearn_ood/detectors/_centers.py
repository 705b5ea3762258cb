"""Distances to learned centres: the scores of the centre and prototype losses.

A network trained with a centre loss (``sklearn_ood.torch``'s
``CenterLoss``, ``IILoss``, ``MCHADLoss``, ``DeepSVDDLoss``,
``DeepSADLoss``, ``CACLoss``) maps each class near a centre in its output
space; these detectors score that output (the network's "logits") by its
distances to the centres. The centres come from the loss (any object with
a ``centers`` attribute, e.g. the fitted criterion), as an array, or as the
class means of the fit rows.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.base import BaseDetector
from sklearn_ood.utils._chunking import row_chunks
from sklearn_ood.utils._grouping import group_sums
from sklearn_ood.utils._validation import check_score_range

__all__ = ["CACScore", "CenterDistance", "check_centers"]


def _as_array(value):
    """Float64 array from an array-like or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _centers_of(obj):
    """The centres held by a loss object, or None if it holds none."""
    if hasattr(obj, "criterion_"):  # a fitted skorch net
        return _centers_of(obj.criterion_)
    for name in ("centers", "center"):
        if hasattr(obj, name):
            value = getattr(obj, name)
            # pytorch-ood wraps them: ClassCenters.params, RunningCenters.centers
            for inner in ("params", "centers"):
                if hasattr(value, inner) and not hasattr(value, "shape"):
                    value = getattr(value, inner)
            return value
    return None


def check_centers(centers, n_features):
    """Return the centres as a float64 array of shape ``(n_centers, n_features)``.

    The centres of the centre losses come in several forms: the loss itself
    (its learnable ``centers``), a fitted net holding it, an array, or a
    builder for a width known only at fit time; this resolves them all.

    Parameters
    ----------
    centers : array-like, tensor, object or callable
        One of:

        * an array or tensor of shape ``(n_centers, n_features)``, or
          ``(n_features,)`` for a single centre;
        * an object with a ``centers`` (or ``center``) attribute, such as a
          centre loss of :mod:`sklearn_ood.torch` or of pytorch-ood (whose
          ``ClassCenters`` / ``RunningCenters`` wrappers are unwrapped), or
          a fitted ``OODNeuralNetClassifier`` (its ``criterion_``);
        * a callable ``centers(n_features)`` returning one of the above.
    n_features : int
        Number of columns the centres must have.

    Returns
    -------
    centers : ndarray of shape (n_centers, n_features), dtype float64
        The centres, one per row.

    Raises
    ------
    ValueError
        If the centres are not finite, or their width is not ``n_features``.

    See Also
    --------
    CenterDistance : Minus the squared distance to the nearest centre.
    CACScore : Class anchor clustering's rejection score.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import check_centers
    >>> check_centers(np.eye(2), n_features=2)
    array([[1., 0.],
           [0., 1.]])
    """
    held = _centers_of(centers)
    if held is not None:
        value = held
    elif hasattr(centers, "shape") or isinstance(centers, (list, tuple)):
        value = centers
    elif callable(centers):
        return check_centers(centers(n_features), n_features)
    else:
        raise ValueError(
            "centers must be an array of shape (n_centers, n_features), an object "
            "with a centers attribute (a centre loss, a fitted "
            "OODNeuralNetClassifier) or a callable returning one of them; got "
            f"{type(centers).__name__}."
        )
    array = _as_array(value)
    if array.ndim == 1:
        array = array[np.newaxis]
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(
            "centers must have shape (n_centers, n_features) with at least one "
            f"centre; got shape {array.shape}."
        )
    if array.shape[1] != n_features:
        raise ValueError(
            f"The centres have {array.shape[1]} coordinates but X has {n_features} "
            "features: score the network's output in the space the centres live in."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            "centers must be finite (a DeepSVDDLoss centre is NaN until its first "
            "training batch sets it)."
        )
    return array


def _squared_distances(X, centers):
    """Float64 ``||x_i - c_k||^2``, from the differences, in row chunks."""
    out = np.empty((len(X), len(centers)))
    row_bytes = 8 * centers.size
    for rows in row_chunks(len(X), row_bytes):
        diff = np.asarray(X[rows], dtype=np.float64)[:, None, :] - centers[None]
        np.einsum("ikj,ikj->ik", diff, diff, out=out[rows])
    return out


class _CenterDetector(BaseDetector):
    """Resolves ``centers`` in ``fit``: given, or the class means of the fit rows."""

    _family = "learned-centers"
    _input_kind = "logits"

    _center_options = ("class_means",)

    def _resolve_centers(self, X, y):
        if isinstance(self.centers, str) and self.centers not in self._center_options:
            raise ValueError(
                f"centers must be one of {self._center_options}, an array, an "
                "object with a centers attribute or a callable; got "
                f"{self.centers!r}."
            )
        if isinstance(self.centers, str) and self.centers == "class_means":
            groups = np.zeros(len(X), dtype=np.int64) if y is None else y
            classes, sums, counts = group_sums(X, groups)
            if y is not None:
                self.classes_ = classes
            centers = sums / counts[:, np.newaxis]
            if not np.all(np.isfinite(centers)):
                raise ValueError(
                    "The class means of the fit rows leave the float64 range: the "
                    "features are too large; rescale them."
                )
            return centers
        return check_centers(self.centers, X.shape[1])

    def _checked(self, scores, X):
        """``scores``, refused where they leave the range of ``X``'s dtype."""
        return check_score_range(scores, X.dtype, type(self).__name__)


class CenterDistance(_CenterDetector):
    r"""Minus the squared distance to the nearest learned centre.

    .. math::

        s(z) = -\min_k \lVert z - \mu_k \rVert_2^2

    The score of the centre losses: a network trained with
    :class:`~sklearn_ood.torch.CenterLoss` (Wen et al., ECCV 2016),
    :class:`~sklearn_ood.torch.MCHADLoss` (Kirchheim et al., ICPR 2022),
    :class:`~sklearn_ood.torch.IILoss` (Hassen & Chan, SDM 2020) or, with
    one centre, :class:`~sklearn_ood.torch.DeepSVDDLoss` /
    :class:`~sklearn_ood.torch.DeepSADLoss` (Ruff et al., ICML 2018, ICLR
    2020) maps in-distribution inputs near the centres :math:`\mu_k`, and
    the papers' outlier score is the distance of the output :math:`z` to
    the nearest one. The input ``X`` is that output (the network's
    "logits", the embedding the loss trained). Higher is more
    in-distribution.

    ``centers`` are the loss's (``centers=criterion``: any object with a
    ``centers`` attribute, or the fitted net), an array, or
    ``"class_means"``: the mean of the ID fit rows of each class (one
    centre for all rows without ``y``), which is how the ii-loss paper and
    Deep SVDD's centre are computed. ``fit`` only resolves them and sets
    the threshold. Distances are computed from the differences in float64,
    in row chunks that follow scikit-learn's ``working_memory``.

    Relation to pytorch-ood 0.4.0: its losses' ``distance(z)`` gives the
    squared distances (``DeepSVDDLoss.distance`` minus :math:`r^2`), and
    its examples score by their minimum: our score is minus that (plus
    :math:`-r^2` for ``DeepSVDDLoss``). Its ``IILoss`` scores against the
    running centres of the loss (``centers=loss`` here).

    Parameters
    ----------
    centers : "class_means", array-like, object or callable, default="class_means"
        The centres :math:`\mu_k`: ``"class_means"``, an array of shape
        ``(n_centers, n_features)``, an object with a ``centers``
        attribute, or a callable ``centers(n_features)`` returning one
        (see :func:`check_centers`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    centers_ : ndarray of shape (n_centers, n_features)
        The centres, float64.
    classes_ : ndarray of shape (n_centers,)
        The class of each centre, for ``centers="class_means"`` fitted with
        ``y`` only.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of columns.

    See Also
    --------
    CACScore : Class anchor clustering's distance-times-softmin score.
    Mahalanobis : The distance to class means under a shared covariance.
    KNN : The distance to the nearest fit rows instead of centres.

    References
    ----------
    .. [1] Y. Wen, K. Zhang, Z. Li and Y. Qiao, "A Discriminative Feature
       Learning Approach for Deep Face Recognition", ECCV 2016.
    .. [2] M. Hassen and P. K. Chan, "Learning a Neural-network-based
       Representation for Open Set Recognition", SDM 2020.
    .. [3] K. Kirchheim, M. Filax and F. Ortmeier, "Multi-Class Hypersphere
       Anomaly Detection", ICPR 2022.
    .. [4] L. Ruff et al., "Deep One-Class Classification", ICML 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import CenterDistance
    >>> X = np.array([[0.0, 0.1], [0.1, 0.0], [3.0, 3.1], [3.1, 3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> det = CenterDistance().fit(X, y)
    >>> det.centers_
    array([[0.05, 0.05],
           [3.05, 3.05]])
    >>> det.score_samples([[0.05, 1.05], [3.05, 1.05]])
    array([-1., -4.])
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "centers": [object],  # resolved and checked by check_centers in fit
    }

    def __init__(self, centers="class_means", *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.centers = centers

    def _fit(self, X, y):
        self.__dict__.pop("classes_", None)
        self.centers_ = self._resolve_centers(X, y)

    def _score(self, X):
        nearest = _squared_distances(X, self.centers_).min(axis=1)
        return self._checked(-nearest, X)


class CACScore(_CenterDetector):
    r"""Class anchor clustering's rejection score, negated.

    .. math::

        s(z) = -\min_c \, d_c(z) \big(1 - \operatorname{softmin}(d(z))_c\big),
        \qquad d_c(z) = \lVert z - \mu_c \rVert_2,
        \quad \operatorname{softmin}(d)_c = \frac{e^{-d_c}}{\sum_k e^{-d_k}}

    Miller, Sünderhauf, Milford & Dayoub, "Class Anchor Clustering: a Loss
    for Distance-based Open Set Recognition", WACV 2021: a network trained
    with :class:`~sklearn_ood.torch.CACLoss` maps class :math:`c` near its
    anchor :math:`\mu_c`; a row is unknown when its smallest
    distance-times-(1 - softmin) is large (the paper's rejection score).
    The distances are Euclidean, as in the paper. Higher is more
    in-distribution. The input ``X`` is the network's output (its logits,
    one per class).

    ``centers="anchors"`` uses the training anchors, ``magnitude`` times
    the unit vectors (one per feature); the authors evaluate with
    ``"class_means"``, the mean output of each class's (correctly
    classified) training rows: fit on those rows with their labels. An
    array, an object with a ``centers`` attribute (the loss, the fitted
    net) or a callable are taken as they are (see :func:`check_centers`).

    Difference from pytorch-ood 0.4.0: ``CACLoss.score(distances)``
    returns :math:`-\max_c` of the same product, not the minimum, computed
    on the distances it is given (its ``CACLoss.distance`` gives squared
    ones); ours is minus the paper's minimum on Euclidean distances.

    Parameters
    ----------
    centers : str, array-like, object or callable, default="anchors"
        The anchors :math:`\mu_c` (at least two): ``"anchors"``,
        ``"class_means"``, or as for :func:`check_centers`.
    magnitude : float > 0, default=10.0
        The anchors' magnitude :math:`\alpha` for ``centers="anchors"``
        (``CACLoss``'s ``magnitude``; the authors' default 10).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    centers_ : ndarray of shape (n_centers, n_features)
        The anchors, float64.
    classes_ : ndarray of shape (n_centers,)
        The class of each anchor, for ``centers="class_means"`` fitted with
        ``y`` only.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of columns.

    See Also
    --------
    CenterDistance : Minus the squared distance to the nearest centre.
    MaxSoftmax : The softmax confidence of the same logits.

    References
    ----------
    .. [1] D. Miller, N. Sünderhauf, M. Milford and F. Dayoub, "Class Anchor
       Clustering: a Loss for Distance-based Open Set Recognition", WACV
       2021. https://arxiv.org/abs/2004.02434

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import CACScore
    >>> X = np.array([[10.0, 0.0], [0.0, 10.0], [9.0, 1.0], [1.0, 8.0]])
    >>> det = CACScore(magnitude=10.0).fit(X)
    >>> det.centers_
    array([[10.,  0.],
           [ 0., 10.]])
    >>> # near an anchor the score is about 0; halfway, d (1 - 1/2) = 7.07 / 2
    >>> [round(float(s), 4) for s in det.score_samples([[8.0, 2.0], [5.0, 5.0]])]
    [-0.0006, -3.5355]
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "centers": [object],  # resolved and checked by check_centers in fit
        "magnitude": [Interval(Real, 0, None, closed="neither")],
    }

    _center_options = ("anchors", "class_means")

    def __init__(self, centers="anchors", magnitude=10.0, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.centers = centers
        self.magnitude = magnitude

    def _fit(self, X, y):
        self.__dict__.pop("classes_", None)
        if isinstance(self.centers, str) and self.centers == "anchors":
            centers = float(self.magnitude) * np.eye(X.shape[1])
        else:
            centers = self._resolve_centers(X, y)
        if len(centers) < 2:
            raise ValueError(
                "CACScore needs at least 2 anchors (the softmin of one distance is "
                f"1, so every row would score 0); got {len(centers)} for X of "
                f"{X.shape[1]} feature(s). The anchors are one per feature (logit); "
                'with centers="class_means", fit with the labels y of several '
                "classes."
            )
        self.centers_ = centers

    def _score(self, X):
        d = np.sqrt(_squared_distances(X, self.centers_))
        # 1 - softmin(d)_c = -expm1(log softmin(d)_c), with the log-normaliser
        # log(1 + rest) taken by log1p over the terms other than the nearest
        # anchor's (e^0 = 1): near an anchor, 1 - softmin is about rest, far
        # below the float64 epsilon, and keeps its digits. Rows with infinite
        # distances give NaN here, refused by _checked.
        with np.errstate(invalid="ignore"):
            nearest = d.argmin(axis=1)
            shifted = d - d[np.arange(len(d)), nearest][:, np.newaxis]
            terms = np.exp(-shifted)
            terms[np.arange(len(d)), nearest] = 0.0
            log_norm = np.log1p(terms.sum(axis=1, keepdims=True))
            scores = -np.min(d * -np.expm1(-shifted - log_norm), axis=1)
        return self._checked(scores, X)
