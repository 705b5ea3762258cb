"""Detectors that score features through the classifier's linear head.

Each reads penultimate features ``X`` and the head ``(W, b)`` with
``logits = X @ W.T + b``; the predicted class is the arg-max logit (the first
one on ties). All fits are sums over rows, so each offers ``partial_fit``.
"""

from numbers import Real

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.utils._param_validation import Interval

from sklearn_ood.base import BaseDetector, PartialFitMixin
from sklearn_ood.detectors._head import (
    check_head,
    head_logits_fast,
    head_with_classes,
)
from sklearn_ood.utils._grouping import group_sums
from sklearn_ood.utils._validation import check_score_range, float32_path
from sklearn_ood.utils._warnings import warn

__all__ = ["NCI", "SHE", "fDBD"]

# Floor of the feature distances that fDBD and NCI divide by: a row exactly at
# the training mean stays finite.
_MIN_NORM = 1e-12

# Rows per float32 block of the fDBD and NCI scores: 1,024 rows of 512
# float32 features are 2 MiB per temporary, which stay in cache.
_BLOCK_ROWS = 1024


def _label_rows(y, head_labels, name):
    """Row of the head for each label; a clear error for labels it lacks."""
    sorter = np.argsort(head_labels, kind="stable")
    pos = np.searchsorted(head_labels[sorter], y)
    pos_clipped = np.minimum(pos, len(head_labels) - 1)
    known = (pos < len(head_labels)) & (head_labels[sorter][pos_clipped] == y)
    if not known.all():
        raise ValueError(
            f"{name} matches labels to the rows of the head, but y contains label "
            f"{y[~known][0].item()!r}, which is not one of the head's classes "
            f"{head_labels.tolist()!r} (row k of a (W, b) pair or torch layer is "
            "class k; a scikit-learn model names its rows with classes_)."
        )
    return sorter[pos_clipped]


def _floored_norm(Z):
    """Row norms floored at 1e-12; rows whose squares would overflow are
    divided by their largest entry first."""
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(Z, axis=1)
    huge = ~np.isfinite(norms)
    if huge.any():
        peaks = np.abs(Z[huge]).max(axis=1)
        norms[huge] = peaks * np.linalg.norm(Z[huge] / peaks[:, None], axis=1)
    return np.maximum(norms, _MIN_NORM)


def _split_float32(a):
    """``a`` as ``hi + lo``, two float32 arrays (``hi`` the rounding of ``a``)."""
    hi = a.astype(np.float32)
    return hi, (a - hi).astype(np.float32)


def _centred_blocks(X, mean):
    """Blocks ``(rows, X[rows] - mean)`` of float32 ``X``, in float32.

    The mean is split as ``hi + lo`` in float32 and subtracted in two
    steps, so that each entry of ``z = x - mean`` is within
    ``2**-23 |z_j| + 2**-47 |mean_j|`` of the exact difference: the float32
    rounding of the mean is not added to rows near it. Blocks of
    ``_BLOCK_ROWS`` rows keep the work in cache and need no float64 copy of
    ``X``. A block whose difference overflows float32 is given as None.
    """
    hi, lo = _split_float32(mean)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        with np.errstate(over="ignore", invalid="ignore"):
            Z = X[rows] - hi
            Z -= lo
        yield rows, (Z if np.all(np.isfinite(Z)) else None)


def _row_dots64(A, B):
    """Row-wise dot products of float32 ``A`` and ``B``: products in float32,
    summed in float64.

    Each product is rounded once (relative error at most ``2**-24``) and the
    float64 sum adds almost nothing, so the result is within
    ``2**-24 * sum_j |a_j b_j|`` (plus float64 rounding) of the exact dot
    product: no error that grows with the number of features. Faster than
    ``np.einsum(..., dtype=np.float64)``, which casts both operands; rows
    where a float32 product may have overflowed (a non-finite sum) or
    underflowed (a sum below 1e-25) get those exact float64 products.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        dots = np.multiply(A, B).sum(axis=1, dtype=np.float64)
    redo = ~(np.abs(dots) >= 1e-25) | np.isinf(dots)
    if redo.any():
        dots[redo] = np.einsum("ij,ij->i", A[redo], B[redo], dtype=np.float64)
    return dots


class SHE(PartialFitMixin, BaseDetector):
    r"""Simplified Hopfield Energy (SHE): inner product with a stored pattern.

    Zhang et al., "Out-of-Distribution Detection based on In-Distribution
    Data Patterns Memorization with Modern Hopfield Energy", ICLR 2023. The
    stored pattern :math:`S_k` of class :math:`k` is the mean of the fit
    features that the head classifies correctly as :math:`k`; a row is scored
    against the pattern of its predicted class:

    .. math::

        s(x) = x^\top S_{\hat y(x)}, \qquad \hat y(x) = \arg\max_k l_k(x)

    This is the simplified (inner-product) energy that the paper reports and
    OpenOOD implements; pytorch-ood 0.4.0's ``SHE`` returns :math:`-s`.

    With ``y=None`` every fit row counts as correctly classified as its
    predicted class, so :math:`S_k` is the mean of the rows predicted as
    :math:`k`. Labels are matched to the head's rows: row :math:`k` of a
    ``(W, b)`` pair or torch layer is class :math:`k`; a fitted scikit-learn
    model names its rows with ``classes_``. Unlike pytorch-ood, which refuses
    a fit where a class has no correctly classified row, such a class gets
    the zero pattern, with a warning: its predicted rows score 0, the lowest
    possible score for non-negative (post-ReLU) features.

    SHE does not score rows lower as they move away from the ID data: the
    score is linear in :math:`x` while the predicted class stays, so a row
    scaled by :math:`t > 1` (with a bias-free head, which keeps the
    predicted class) scores :math:`t` times higher, and features far beyond
    the ID ones can outscore every ID row. This is by design (the energy
    rewards large activations aligned with a pattern). The patterns are
    float64 means. float64 features are scored in float64; float32 features
    in float32 blocks without a float64 copy, each product of a feature and
    the float32-rounded pattern rounded once and summed in float64, so that
    :math:`|s_{32} - s| \le 2^{-22} \sum_j |x_j S_{\hat y j}| + 2^{-24}
    |s|` (the last term: the float32 score). The score grows like the
    square of the features' scale, so it leaves the float32 range for
    float32 features of about :math:`10^{19}` and the float64 range for
    features of about :math:`10^{154}`: ``fit`` and ``score_samples`` then
    raise a ``ValueError`` (pass float64 features in the first case).

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer (see
        :func:`~sklearn_ood.detectors.check_head`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W` (row :math:`k` is :math:`w_k`).
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    head_classes_ : ndarray of shape (n_classes,)
        Class label of each head row.
    patterns_ : ndarray of shape (n_classes, n_features)
        Stored pattern of each head row (zero where none was seen).
    pattern_counts_ : ndarray of shape (n_classes,)
        Number of fit rows averaged into each pattern.
    classes_ : ndarray
        Sorted ID labels seen in ``fit`` (only when ``y`` is given).
    offset_ : float
        ``decision_function = score_samples - offset_``.

    See Also
    --------
    NCI : Alignment with the predicted class's weight plus the feature norm.
    fDBD : Distance to the decision boundaries over the distance to the mean.
    KLMatching : Divergence from the typical softmax of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors._head_aware import SHE
    >>> W, b = np.eye(2), np.zeros(2)
    >>> X = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    >>> she = SHE(head=(W, b)).fit(X, y=[0, 0, 1])
    >>> she.patterns_
    array([[3., 0.],
           [0., 3.]])
    >>> she.score_samples([[1.0, 0.5], [0.0, 1.0]])
    array([3., 3.])
    """

    _family = "head-aware"

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
    }
    _class_aware = True
    _summed_stats = ("pattern_sums_", "pattern_counts_")

    def __init__(self, head, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head

    def _reset_stats(self, X, y):
        self.coef_, self.intercept_, self.head_classes_ = head_with_classes(
            self.head, X.shape[1]
        )
        self.pattern_sums_ = np.zeros_like(self.coef_)
        self.pattern_counts_ = np.zeros(len(self.coef_), dtype=np.int64)

    def _update_stats(self, X, y):
        # No float64 copy of X: head_logits_fast multiplies float32 rows in
        # float32 blocks (same arg-max as float64) and group_sums accumulates
        # in float64.
        pred = head_logits_fast(X, self.coef_, self.intercept_).argmax(axis=1)
        if y is not None:
            correct = pred == _label_rows(y, self.head_classes_, "SHE")
            X, pred = X[correct], pred[correct]
        if len(pred):
            with np.errstate(over="ignore"):  # refused in _finalize_stats
                rows, sums, counts = group_sums(X, pred)
            # Copies, not in-place updates, so that a refused chunk is undone.
            self.pattern_sums_ = self.pattern_sums_.copy()
            self.pattern_counts_ = self.pattern_counts_.copy()
            self.pattern_sums_[rows] += sums
            self.pattern_counts_[rows] += counts

    def _finalize_stats(self):
        counts = self.pattern_counts_
        if not counts.any():
            raise ValueError(
                "SHE found no fit row that the head classifies as its label (got "
                f"n_samples = {self.n_samples_seen_} ID rows), so it has no pattern to "
                "store; check that the labels match the head's classes."
            )
        empty = counts == 0
        if empty.any():
            warn(
                "SHE has no correctly classified fit row for the head classes "
                f"{self.head_classes_[empty].tolist()}; their patterns are zero, "
                "so rows predicted as them score 0.",
                UserWarning,
            )
        if not np.all(np.isfinite(self.pattern_sums_)):
            raise ValueError(
                "SHE's float64 sums of the fit features overflow: the features "
                "are too large (about 1e308 or more); rescale them."
            )
        self.patterns_ = self.pattern_sums_ / np.maximum(counts, 1)[:, np.newaxis]

    def _score(self, X):
        dtype = X.dtype
        pred = head_logits_fast(X, self.coef_, self.intercept_).argmax(axis=1)
        if not float32_path(X, self.patterns_):
            X = np.asarray(X, dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                scores = np.einsum("ij,ij->i", X, self.patterns_[pred])
            return check_score_range(scores, dtype, "SHE")
        # float32 blocks, without a float64 copy of X (_row_dots64).
        P32 = self.patterns_.astype(np.float32)
        scores = np.empty(X.shape[0])
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            scores[rows] = _row_dots64(X[rows], P32[pred[rows]])
        return check_score_range(scores, dtype, "SHE")


class _TrainMeanDetector(PartialFitMixin, BaseDetector):
    """Shared fit of fDBD and NCI: the head and the mean of the fit features."""

    _family = "head-aware"
    _summed_stats = ("feature_sum_",)

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
    }

    def _reset_stats(self, X, y):
        self.coef_, self.intercept_ = check_head(self.head, X.shape[1])
        self.feature_sum_ = np.zeros(X.shape[1])

    def _update_stats(self, X, y):
        with np.errstate(over="ignore"):  # refused in _finalize_stats
            self.feature_sum_ = self.feature_sum_ + np.sum(X, axis=0, dtype=np.float64)

    def _finalize_stats(self):
        if not np.all(np.isfinite(self.feature_sum_)):
            raise ValueError(
                f"{type(self).__name__}'s float64 sum of the fit features "
                "overflows: the features are too large (about 1e308 or more); "
                "rescale them."
            )
        self.mean_ = self.feature_sum_ / self.n_samples_seen_


class fDBD(_TrainMeanDetector):
    r"""Fast decision-boundary distance (fDBD), normalised by the mean distance.

    Liu & Qin, "Fast Decision Boundary based Out-of-Distribution Detector",
    ICML 2024. For the predicted class :math:`\hat y`, the distance from
    :math:`x` to the hyperplane where :math:`l_{\hat y} = l_c` is
    :math:`(l_{\hat y}(x) - l_c(x)) / \lVert w_{\hat y} - w_c \rVert`; fDBD
    averages it over the other classes and divides by the distance to the
    mean :math:`\mu` of the ID fit features:

    .. math::

        s(x) = \frac{1}{C - 1} \sum_{c \ne \hat y}
               \frac{l_{\hat y}(x) - l_c(x)}{\lVert w_{\hat y} - w_c \rVert}
               \Big/ \lVert x - \mu \rVert

    Higher is more ID. pytorch-ood 0.4.0's ``fDBD`` returns :math:`-s`; the
    authors' code and OpenOOD sum instead of averaging (the same ranking,
    :math:`C - 1` times larger). :math:`\lVert x - \mu\rVert` is floored at
    1e-12, so a row at the mean gets a large finite score. Labels are
    ignored (``y=None`` is the same fit).

    float64 features are scored in float64. float32 features are scored in
    float32 blocks, without a float64 copy: the predicted class is the
    float64 arg-max (near ties are redone in float64), the boundary term is
    computed as :math:`x^\top v_{\hat y} + e_{\hat y}` with
    :math:`v_p = \sum_{c \ne p} (w_p - w_c) / \lVert w_p - w_c \rVert`
    rounded to float32 and :math:`e_p` the same sum over the biases
    (products rounded to float32, summed in float64), and
    :math:`x - \mu` is formed in float32 with :math:`\mu` split into two
    float32 parts. Each score is then within
    :math:`2^{-21} |s| + 2^{-23} \sum_j |x_j v_{\hat y j}| / ((C - 1)
    \lVert x - \mu \rVert)` of the float64 score, i.e. a relative error
    of about :math:`10^{-6}` unless the boundary term nearly cancels.

    fDBD does not score rows lower as they move away from the ID data: a
    ratio of two distances, it depends on the direction of :math:`x - \mu`
    more than on its length. Along a ray :math:`\mu + t v` on which the
    predicted class stays, :math:`s = a / t + b'` for constants :math:`a,
    b'`; it is constant in :math:`t` where the logits are all equal at
    :math:`\mu` (e.g. a bias-free head and features centred at 0), and
    rises with :math:`t` where the predicted class at :math:`x` is not the
    largest logit at :math:`\mu`. This is by design: the paper argues that
    ID rows lie far from the boundaries *relative* to their distance to the
    mean.

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer, with at least two distinct rows
        (see :func:`~sklearn_ood.detectors.check_head`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W` (row :math:`k` is :math:`w_k`).
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    mean_ : ndarray of shape (n_features,)
        Mean :math:`\mu` of the ID fit features.
    weight_distances_ : ndarray of shape (n_classes, n_classes)
        :math:`\lVert w_p - w_c \rVert`, with ones on the diagonal.
    offset_ : float
        ``decision_function = score_samples - offset_``.

    See Also
    --------
    NCI : Alignment with the predicted class's weight plus the feature norm.
    SHE : Inner product with the stored pattern of the predicted class.
    ViM : Energy corrected by the residual outside the principal subspace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors._head_aware import fDBD
    >>> W, b = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)
    >>> X = np.array([[2.0, 1.0], [-2.0, -1.0]])
    >>> fDBD(head=(W, b)).fit(X).score_samples([[3.0, 0.0], [0.1, 3.0]]).round(4)
    array([1.    , 0.0333])
    """

    def __init__(self, head, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head

    def _reset_stats(self, X, y):
        super()._reset_stats(X, y)
        n_classes = len(self.coef_)
        if n_classes < 2:
            raise ValueError(
                f"fDBD needs a head of at least 2 classes; got {n_classes}."
            )
        distances = cdist(self.coef_, self.coef_)  # exact differences, no Gram trick
        np.fill_diagonal(distances, 1.0)
        if not np.all(distances > 0):
            p, c = np.argwhere(distances == 0)[0]
            raise ValueError(
                f"head rows {p} and {c} have equal weights, so the decision "
                "boundary between them is not a hyperplane; fDBD needs distinct "
                "rows."
            )
        self.weight_distances_ = distances

    def _score(self, X):
        dtype = X.dtype
        with np.errstate(over="ignore", invalid="ignore"):
            logits = head_logits_fast(X, self.coef_, self.intercept_)
        pred = logits.argmax(axis=1)
        if dtype == np.float32:
            scores = self._score_float32(X, pred)
        else:
            scores = self._score_float64(X, logits, pred)
        return check_score_range(scores, dtype, "fDBD")

    def _score_float64(self, X, logits, pred):
        """The formula in float64, from the gaps between the logits."""
        X = np.asarray(X, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            gaps = logits[np.arange(len(X)), pred][:, np.newaxis] - logits
            boundary = np.sum(gaps / self.weight_distances_[pred], axis=1)
            return boundary / ((len(self.coef_) - 1) * _floored_norm(X - self.mean_))

    def _score_float32(self, X, pred):
        """float32 ``X`` in float32 blocks, without a float64 copy of ``X``.

        The boundary term is linear in ``x``: it is ``x @ v_p + e_p`` with
        ``v_p = sum_c (w_p - w_c) / ||w_p - w_c||`` and ``e_p`` the same sum
        over the biases, so one dot product per row replaces the ``C`` gaps.
        Products in float32 are summed in float64 (:func:`_row_dots64`).
        """
        inv = 1.0 / self.weight_distances_
        np.fill_diagonal(inv, 0.0)
        # Weights and biases taken from their means first (the differences
        # do not change), so that a common offset does not cancel in the
        # float64 sums.
        W = self.coef_ - self.coef_.mean(axis=0)
        b = self.intercept_ - self.intercept_.mean()
        V = inv.sum(axis=1)[:, np.newaxis] * W - inv @ W
        e = inv.sum(axis=1) * b - inv @ b
        V32 = V.astype(np.float32)  # ||v_p|| <= C - 1, a sum of unit vectors
        scores = np.empty(X.shape[0])
        for rows, Z in _centred_blocks(X, self.mean_):
            p = pred[rows]
            if Z is None:  # x - mean beyond float32: this block in float64
                Xb = np.asarray(X[rows], dtype=np.float64)
                boundary = np.einsum("ij,ij->i", Xb, V[p]) + e[p]
                norms = _floored_norm(Xb - self.mean_)
            else:
                boundary = _row_dots64(X[rows], V32[p]) + e[p]
                norms = np.maximum(np.sqrt(_row_dots64(Z, Z)), _MIN_NORM)
            scores[rows] = boundary / ((len(self.coef_) - 1) * norms)
        return scores


class NCI(_TrainMeanDetector):
    r"""Neural-collapse inspired (NCI) score: class alignment plus feature norm.

    Liu & Qin, "Detecting Out-of-Distribution through the Lens of Neural
    Collapse", CVPR 2025. Features are centred at the mean :math:`\mu` of
    the ID fit features; the proximity to the predicted class's weight
    vector :math:`w_{\hat y}` is added to the :math:`L_1` norm of the raw
    feature:

    .. math::

        s(x) = \frac{w_{\hat y}^\top (x - \mu)}{\lVert x - \mu \rVert}
               + \alpha \lVert x \rVert_1

    with :math:`\alpha` = ``norm_weight``. As in the authors' OpenOOD code
    and pytorch-ood 0.4.0, the first term is not divided by
    :math:`\lVert w_{\hat y}\rVert` (neural collapse makes the class norms
    equal). pytorch-ood returns :math:`-s`. A row exactly at the mean has
    proximity 0. Labels are ignored (``y=None`` is the same fit).

    float64 features are scored in float64. float32 features (with weights
    in the float32 range) are scored in float32 blocks, without a float64
    copy: the predicted class is the float64 arg-max (near ties are redone
    in float64), :math:`x - \mu` is formed in float32 with :math:`\mu`
    split into two float32 parts, and the products of
    :math:`w_{\hat y}^\top (x - \mu)`, :math:`\lVert x - \mu \rVert` and
    the entries of :math:`\lVert x \rVert_1` are summed in float64. Each
    score is then within
    :math:`2^{-21} \lVert w_{\hat y} \rVert + 2^{-23} |s|` of the float64
    score (the proximity lies in
    :math:`[-\lVert w_{\hat y} \rVert, \lVert w_{\hat y} \rVert]`).

    NCI does not score rows lower as they move away from the ID data: along
    a ray :math:`\mu + t v` on which the predicted class stays, the
    proximity depends on the direction :math:`v` only and the norm term
    grows with :math:`t`, so the score is constant (``norm_weight=0``) or
    rises. This is by design: the paper reads large, well-aligned features
    as ID (the norm term is its answer to rows that align by chance).

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer (see
        :func:`~sklearn_ood.detectors.check_head`).
    norm_weight : float >= 0, default=1e-4
        Weight :math:`\alpha` of the :math:`L_1` norm term (the paper's and
        pytorch-ood's ``alpha``). The default is the authors' OpenOOD
        setting; they tune it over {1e-4, 1e-3, 1e-2, 1e-1} on validation
        data (its scale depends on the features'), e.g. with
        ``GridSearchCV`` and an OOD scorer. pytorch-ood's default is 0.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W` (row :math:`k` is :math:`w_k`).
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    mean_ : ndarray of shape (n_features,)
        Mean :math:`\mu` of the ID fit features.
    offset_ : float
        ``decision_function = score_samples - offset_``.

    See Also
    --------
    fDBD : Distance to the decision boundaries over the distance to the mean.
    SHE : Inner product with the stored pattern of the predicted class.
    ViM : Energy corrected by the residual outside the principal subspace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors._head_aware import NCI
    >>> W, b = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros(2)
    >>> X = np.array([[2.0, 1.0], [-2.0, -1.0]])
    >>> nci = NCI(head=(W, b), norm_weight=0.1).fit(X)
    >>> nci.score_samples([[3.0, 0.0], [0.0, 3.0]]).round(4)
    array([1.3, 0.3])
    """

    _parameter_constraints = {
        **_TrainMeanDetector._parameter_constraints,
        "norm_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, head, norm_weight=1e-4, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.norm_weight = norm_weight

    def _score(self, X):
        dtype = X.dtype
        with np.errstate(over="ignore", invalid="ignore"):
            pred = head_logits_fast(X, self.coef_, self.intercept_).argmax(axis=1)
        if not float32_path(X, self.coef_):
            scores = self._score_float64(X, pred)
        else:
            # float32 blocks, without a float64 copy of X; products in
            # float32, summed in float64 (_row_dots64).
            W32 = self.coef_.astype(np.float32)
            scores = np.empty(X.shape[0])
            for rows, Z in _centred_blocks(X, self.mean_):
                if Z is None:  # x - mean beyond float32: this block in float64
                    scores[rows] = self._score_float64(X[rows], pred[rows])
                    continue
                proximity = _row_dots64(Z, W32[pred[rows]])
                proximity /= np.maximum(np.sqrt(_row_dots64(Z, Z)), _MIN_NORM)
                if self.norm_weight != 0:
                    l1 = np.abs(X[rows]).sum(axis=1, dtype=np.float64)
                    proximity += self.norm_weight * l1
                scores[rows] = proximity
        return check_score_range(scores, dtype, "NCI")

    def _score_float64(self, X, pred):
        """The formula in float64."""
        X = np.asarray(X, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            Z = X - self.mean_
            proximity = np.einsum("ij,ij->i", Z, self.coef_[pred]) / _floored_norm(Z)
            scores = proximity
            if self.norm_weight != 0:
                scores = proximity + self.norm_weight * np.abs(X).sum(axis=1)
        return scores
