"""Threshold-free OOD detection metrics computed from detector scores.

Every function here takes ``y_true`` (integer labels: ``>= 0`` for an
in-distribution (ID) row, ``< 0`` for an out-of-distribution (OOD) row) and
``scores`` in the detector's direction (higher = more in-distribution, as
returned by ``score_samples``).
"""

from numbers import Real

import numpy as np
from sklearn.metrics import auc

from sklearn_ood._labels import check_ood_labels

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_error",
    "fpr_at_tpr",
    "ood_report",
]

_CV_HINT = (
    "OOD metrics need both ID and OOD samples. In cross-validation over mixed "
    "ID/OOD data, use a stratified, shuffled splitter such as "
    "StratifiedKFold(n_splits, shuffle=True) so that every test fold holds both: "
    "for a detector an integer cv means an un-shuffled KFold, which gives folds "
    "with only ID or only OOD rows when the OOD rows are appended at the end."
)

_TEXT_HINT = (
    " Scores given as text are not read as numbers; convert them first, e.g. "
    "np.asarray(scores, dtype=float)."
)

_AUPR_METHODS = ("average_precision", "trapezoid")
_POSITIVE = ("id", "ood")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_ood_targets(y_true, scores):
    """Validate ``y_true`` and ``scores``; return the ID mask and float scores.

    Returns
    -------
    is_id : ndarray of shape (n_samples,), dtype bool
        ``y_true >= 0``.
    scores : ndarray of shape (n_samples,), dtype float64
        The scores; converting float32 (or smaller) and integers up to
        2**53 to float64 is exact, so ties and order are unchanged.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got an array of shape {y.shape}.")
    if s.ndim != 1:
        raise ValueError(
            f"scores must be 1-D (one score per sample), got an array of shape "
            f"{s.shape}."
        )
    if y.shape[0] != s.shape[0]:
        raise ValueError(
            f"y_true and scores have different lengths: {y.shape[0]} != {s.shape[0]}."
        )
    if y.shape[0] == 0:
        raise ValueError("y_true and scores are empty; OOD metrics need samples.")

    is_id = check_ood_labels(y, name="y_true") >= 0

    if s.dtype.kind == "c":
        raise ValueError("scores must be real numbers, got complex values.")
    if s.dtype.kind == "O":
        # an object array passes only when it holds numbers, never text:
        # "0.5" converts to float but is not a score
        for value in s:
            if not isinstance(value, Real):
                hint = _TEXT_HINT if isinstance(value, (str, bytes)) else ""
                raise ValueError(
                    "scores must be real numbers (a numeric array, one score per "
                    "sample); got an object array holding the "
                    f"{type(value).__name__} {value!r}.{hint}"
                )
    elif s.dtype.kind not in "biuf":
        hint = _TEXT_HINT if s.dtype.kind in "US" else ""
        raise ValueError(
            "scores must be real numbers (a numeric array, one score per sample); "
            f"got an array of dtype {s.dtype}.{hint}"
        )
    s = s.astype(np.float64, copy=False)
    finite = np.isfinite(s)
    if not finite.all():
        n_bad = int(np.count_nonzero(~finite))
        raise ValueError(
            f"scores contain {n_bad} NaN or infinite value(s) out of {s.shape[0]}; "
            "OOD metrics need finite scores."
        )

    n_id = int(np.count_nonzero(is_id))
    if n_id == is_id.shape[0]:
        raise ValueError(
            "y_true contains no OOD samples (labels < 0); only ID samples "
            f"(labels >= 0) were given. {_CV_HINT}"
        )
    if n_id == 0:
        raise ValueError(
            "y_true contains no ID samples (labels >= 0); only OOD samples "
            f"(labels < 0) were given. {_CV_HINT}"
        )
    return is_id, s


def _check_tpr(tpr):
    if (
        isinstance(tpr, bool)
        or not isinstance(tpr, Real)
        or not (0.0 < float(tpr) <= 1.0)
    ):
        raise ValueError(f"tpr must be a number in (0, 1], got {tpr!r}.")
    return float(tpr)


def _check_option(name, value, options):
    if not isinstance(value, str) or value not in options:
        valid = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {valid}, got {value!r}.")
    return value


# --------------------------------------------------------------------------
# Shared core: one sort, cumulative counts per distinct threshold
# --------------------------------------------------------------------------


def _tied_counts(is_id, scores):
    """Class counts at or below every distinct score.

    Every metric of this module is a function of these counts (the one
    sorting step), so :func:`ood_report` computes them once and derives all
    its entries from them.

    Parameters
    ----------
    is_id : ndarray of shape (n_samples,), dtype bool
        ID mask, with both classes present.
    scores : ndarray of shape (n_samples,), dtype float64
        Finite scores.

    Returns
    -------
    id_le, ood_le : ndarray of shape (n_distinct,), dtype int64
        For the distinct scores ``v_1 < v_2 < ... < v_m`` (``-0.0 == 0.0``),
        the number of ID / OOD samples scoring ``<= v_j``; the last entries
        are the class totals.
    """
    n_samples = scores.shape[0]
    # A value sort and a sort of the smaller class's scores, located among
    # the distinct values, give the class counts of every run of ties; an
    # argsort would give them directly, but is about ten times slower than a
    # value sort on large arrays (random access).
    ordered = np.sort(scores)
    last = np.flatnonzero(ordered[1:] != ordered[:-1])  # last index of a run
    last = np.append(last, n_samples - 1)
    n_id = int(np.count_nonzero(is_id))
    id_is_minority = 2 * n_id <= n_samples
    minority = np.sort(scores[is_id if id_is_minority else ~is_id])
    # each minority score equals exactly one distinct value: its run
    run = np.searchsorted(ordered[last], minority, side="left")
    minority_le = np.cumsum(np.bincount(run, minlength=last.shape[0]), dtype=np.int64)
    majority_le = last + 1 - minority_le
    if id_is_minority:
        return minority_le, majority_le
    return majority_le, minority_le


def _accept_counts(counts, positive):
    """Positive and negative samples accepted at each threshold, decreasing.

    Parameters
    ----------
    counts : tuple of ndarray
        ``(id_le, ood_le)`` from :func:`_tied_counts`.
    positive : {"id", "ood"}
        ``"id"``: a sample is accepted when ``score >= t``; ``"ood"``: when
        ``-score >= t`` (outlier score ``-score``).

    Returns
    -------
    tps, fps : ndarray of int64
        For the distinct thresholds ``t_1 > t_2 > ... > t_m`` (in that
        order), ``tps[j]`` / ``fps[j]`` count the positive / negative samples
        accepted at ``t_j``. Ties enter together; ``tps[-1]`` and ``fps[-1]``
        are the class totals. These are the counts of scikit-learn's
        ``confusion_matrix_at_thresholds`` (as integers).
    """
    id_le, ood_le = counts
    if positive == "ood":
        # -score >= t walks the distinct scores upwards
        return ood_le, id_le
    # score >= t walks them downwards: count everything not below v_j
    tps = id_le[-1] - np.concatenate(([0], id_le[:-1]))
    fps = ood_le[-1] - np.concatenate(([0], ood_le[:-1]))
    return tps[::-1], fps[::-1]


def _auroc_counts(tps, fps):
    """AUROC as :func:`sklearn.metrics.roc_auc_score` computes it."""
    # roc_curve's drop_intermediate=True: keep the ends of collinear runs
    # (the trapezoidal sum, and so its last bit, depends on the points kept)
    if tps.shape[0] > 2:
        keep = np.flatnonzero(
            np.concatenate(
                ([True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True])
            )
        )
        tps, fps = tps[keep], fps[keep]
    tps = np.concatenate(([0], tps))
    fps = np.concatenate(([0], fps))
    return auc(fps / fps[-1], tps / tps[-1])


def _aupr_counts(tps, fps, method):
    """AUPR as ``average_precision_score`` or ``auc`` of the PR curve gives it."""
    # precision_recall_curve: points in order of increasing threshold, then
    # the end point (recall 0, precision 1); tps + fps >= 1 at every point
    precision = np.concatenate(((tps / (tps + fps))[::-1], [1.0]))
    recall = np.concatenate(((tps / tps[-1])[::-1], [0.0]))
    if method == "trapezoid":
        return auc(recall, precision)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def _fpr_at_tpr_counts(tps, fps, tpr):
    """First (largest-threshold) point whose TPR reaches ``tpr``; its FPR."""
    tpr_curve = tps / tps[-1]  # float64, as in sklearn's roc_curve
    # tpr_curve is non-decreasing and ends at exactly 1.0 >= tpr
    j = int(np.searchsorted(tpr_curve, tpr, side="left"))
    return float(fps[j] / fps[-1])


def _detection_error_counts(tps, fps):
    # accept none: TPR = FPR = 0 -> error 0.5; the last point accepts all
    err = 0.5 * ((tps[-1] - tps) / tps[-1] + fps / fps[-1])
    return float(min(0.5, err.min()))


def _counts(y_true, scores):
    """Validate the inputs and return their :func:`_tied_counts`."""
    return _tied_counts(*_check_ood_targets(y_true, scores))


# --------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------


def auroc(y_true, scores):
    r"""Area under the ROC curve, in-distribution samples as positive class.

    The probability that a random ID sample scores higher than a random OOD
    sample, ties counting one half:

    .. math::

        \mathrm{AUROC} = \frac{1}{n_\mathrm{ID}\, n_\mathrm{OOD}}
        \sum_{i \in \mathrm{ID}} \sum_{j \in \mathrm{OOD}}
        \left( [s_i > s_j] + \tfrac{1}{2} [s_i = s_j] \right).

    Computed as :func:`sklearn.metrics.roc_auc_score` computes it on
    ``(y_true >= 0, scores)`` (the trapezoidal area under the same ROC
    points), so the value is bit-for-bit the one scikit-learn gives. AUROC
    does not depend on which class is called positive as long as the scores
    are ranked consistently: OOD-positive conventions with outlier scores
    ``-scores`` (OpenOOD, pytorch-ood) give the same number, up to rounding
    in the last bit. It was proposed
    for OOD detection by Hendrycks & Gimpel (2017) and is reported by ODIN,
    Energy, OpenOOD and pytorch-ood.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` (the class) for ID samples, ``< 0`` (e.g.
        -1) for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution (``score_samples``).

    Returns
    -------
    float
        AUROC in [0, 1]; 0.5 for an uninformative detector, higher is better.

    Raises
    ------
    ValueError
        If the inputs are not 1-D of equal length, ``scores`` are not finite,
        ``y_true`` is not integer-valued, or ``y_true`` lacks ID or OOD
        samples (use ``StratifiedKFold(n_splits, shuffle=True)`` in
        cross-validation).

    See Also
    --------
    aupr_in : Area under the precision-recall curve with ID positive.
    aupr_out : Area under the precision-recall curve with OOD positive.
    fpr_at_tpr : False positive rate at a true positive rate (FPR95).
    ood_report : Every metric above in one dictionary.

    References
    ----------
    .. [1] D. Hendrycks and K. Gimpel, "A Baseline for Detecting Misclassified
       and Out-of-Distribution Examples in Neural Networks", ICLR 2017.

    Examples
    --------
    >>> from sklearn_ood.metrics import auroc
    >>> y_true = [0, 1, 2, -1, -1]
    >>> scores = [0.9, 0.8, 0.4, 0.5, 0.1]
    >>> round(auroc(y_true, scores), 4)  # 5 of 6 ID/OOD pairs ranked right
    0.8333
    """
    return _auroc_counts(*_accept_counts(_counts(y_true, scores), "id"))


def aupr_in(y_true, scores, *, method="average_precision"):
    r"""Area under the precision-recall curve, ID samples as positive class.

    Samples are ranked by ``scores`` (higher = more in-distribution); a
    sample is "retrieved" at threshold ``t`` when ``score >= t``. Precision
    is the fraction of retrieved samples that are ID, recall the fraction of
    ID samples retrieved. Introduced for OOD detection as "AUPR-In" by
    Hendrycks & Gimpel (2017).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution.
    method : {"average_precision", "trapezoid"}, default="average_precision"
        How the curve is summarised; see Notes.

    Returns
    -------
    float
        AUPR-In in [0, 1]; higher is better. An uninformative detector gets
        about the fraction of ID samples.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auroc`) or an unknown ``method``.

    See Also
    --------
    aupr_out : Area under the precision-recall curve with OOD positive.
    auroc : Area under the ROC curve, ID as the positive class.

    Notes
    -----
    Two summaries of the precision-recall curve are in use:

    * ``method="average_precision"`` (default): scikit-learn's step-wise
      average precision, without interpolation,

      .. math::

          \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k ,

      over the distinct score thresholds in decreasing order. It is the
      default because it avoids interpolating precision linearly between
      curve points, which overestimates the area (Davis & Goadrich, 2006);
      it equals :func:`sklearn.metrics.average_precision_score` and is what
      the Outlier-Exposure / Energy reference code (Liu et al., 2020)
      reports.
    * ``method="trapezoid"``: trapezoidal area under
      :func:`sklearn.metrics.precision_recall_curve`, i.e.
      ``sklearn.metrics.auc(recall, precision)``, including the curve's end
      point (recall 0, precision 1). OpenOOD (Yang et al., 2022) and
      pytorch-ood (Kirchheim et al., 2022) report this value; use it to
      compare with their tables. (The ODIN code of Liang et al. (2018)
      approximates the area on a grid of thresholds instead.)

    The two can differ noticeably on small or heavily tied data.

    AUPR-In never decreases when an OOD sample's score is lowered, but
    raising an ID sample's score can lower it when that creates a tie: with
    ID scores 0, 0 and an OOD score 1, average precision is 2/3; raising one
    ID score to 1 gives 7/12.

    References
    ----------
    .. [1] D. Hendrycks and K. Gimpel, "A Baseline for Detecting Misclassified
       and Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Yang et al., "OpenOOD: Benchmarking Generalized
       Out-of-Distribution Detection", NeurIPS Datasets and Benchmarks 2022.
    .. [4] K. Kirchheim, M. Filax and F. Ortmeier, "PyTorch-OOD: A Library for
       Out-of-Distribution Detection based on PyTorch", CVPR Workshops 2022.

    Examples
    --------
    >>> from sklearn_ood.metrics import aupr_in
    >>> y_true = [0, 1, -1, 2, -1]
    >>> scores = [0.9, 0.8, 0.7, 0.6, 0.1]
    >>> round(aupr_in(y_true, scores), 4)
    0.9167
    >>> round(aupr_in(y_true, scores, method="trapezoid"), 4)
    0.9028
    """
    method = _check_option("method", method, _AUPR_METHODS)
    counts = _counts(y_true, scores)
    return _aupr_counts(*_accept_counts(counts, "id"), method)


def aupr_out(y_true, scores, *, method="average_precision"):
    r"""Area under the precision-recall curve, OOD samples as positive class.

    Samples are ranked by ``-scores`` (lower score = more OOD); at threshold
    ``t`` a sample is flagged when ``-score >= t``. Precision is the fraction
    of flagged samples that are OOD, recall the fraction of OOD samples
    flagged. Introduced for OOD detection as "AUPR-Out" by Hendrycks &
    Gimpel (2017).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution.
    method : {"average_precision", "trapezoid"}, default="average_precision"
        How the curve is summarised; see Notes.

    Returns
    -------
    float
        AUPR-Out in [0, 1]; higher is better. An uninformative detector gets
        about the fraction of OOD samples.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auroc`) or an unknown ``method``.

    See Also
    --------
    aupr_in : Area under the precision-recall curve with ID positive.
    auroc : Area under the ROC curve, ID as the positive class.

    Notes
    -----
    Two summaries of the precision-recall curve are in use:

    * ``method="average_precision"`` (default): scikit-learn's step-wise
      average precision, without interpolation,

      .. math::

          \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k ,

      over the distinct score thresholds in decreasing order. It is the
      default because it avoids interpolating precision linearly between
      curve points, which overestimates the area (Davis & Goadrich, 2006);
      it equals :func:`sklearn.metrics.average_precision_score` and is what
      the Outlier-Exposure / Energy reference code (Liu et al., 2020)
      reports.
    * ``method="trapezoid"``: trapezoidal area under
      :func:`sklearn.metrics.precision_recall_curve`, i.e.
      ``sklearn.metrics.auc(recall, precision)``, including the curve's end
      point (recall 0, precision 1). OpenOOD (Yang et al., 2022) and
      pytorch-ood (Kirchheim et al., 2022) report this value; use it to
      compare with their tables. (The ODIN code of Liang et al. (2018)
      approximates the area on a grid of thresholds instead.)

    The two can differ noticeably on small or heavily tied data.

    AUPR-Out never decreases when an ID sample's score is raised, but
    lowering an OOD sample's score can lower it when that creates a tie: with
    OOD scores 0, 0 and an ID score -1, average precision is 2/3; lowering
    one OOD score to -1 gives 7/12.

    References
    ----------
    .. [1] D. Hendrycks and K. Gimpel, "A Baseline for Detecting Misclassified
       and Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Yang et al., "OpenOOD: Benchmarking Generalized
       Out-of-Distribution Detection", NeurIPS Datasets and Benchmarks 2022.
    .. [4] K. Kirchheim, M. Filax and F. Ortmeier, "PyTorch-OOD: A Library for
       Out-of-Distribution Detection based on PyTorch", CVPR Workshops 2022.

    Examples
    --------
    >>> from sklearn_ood.metrics import aupr_out
    >>> y_true = [0, 1, -1, 2, -1]
    >>> scores = [0.9, 0.8, 0.7, 0.6, 0.1]
    >>> round(aupr_out(y_true, scores), 4)
    0.8333
    """
    method = _check_option("method", method, _AUPR_METHODS)
    counts = _counts(y_true, scores)
    return _aupr_counts(*_accept_counts(counts, "ood"), method)


def fpr_at_tpr(y_true, scores, tpr=0.95, *, positive="id"):
    r"""Compute the false positive rate at a target true positive rate.

    The "FPR at 95% TPR" (FPR95) of the OOD literature when ``tpr=0.95``.
    No interpolation: the threshold is one of the observed scores, and
    samples whose score equals the threshold are accepted (ID-positive) or
    flagged (OOD-positive).

    ``positive="id"`` (default) -- ID is the positive class; a sample is
    accepted as ID when ``score >= t``. The threshold is

    .. math::

        t^* = \max \{ t : \mathrm{TPR}(t) \ge \mathrm{tpr} \}, \qquad
        \mathrm{TPR}(t) = \frac{\#\{i \in \mathrm{ID} : s_i \ge t\}}
                               {n_\mathrm{ID}},

    (the largest score value that still accepts at least ``tpr`` of the ID
    samples), and the result is the fraction of OOD samples accepted,
    :math:`\#\{j \in \mathrm{OOD} : s_j \ge t^*\} / n_\mathrm{OOD}`: how
    often an OOD input passes as ID while 95% of the ID inputs are kept.
    This is the FPR95 of the ODIN (Liang et al., 2018) and Energy (Liu et
    al., 2020) papers and of OpenOOD's ``fpr_recall`` helper. It equals
    ``fpr[np.argmax(tpr_curve >= tpr)]`` on
    ``sklearn.metrics.roc_curve(y_true >= 0, scores,
    drop_intermediate=False)``. With ``roc_curve``'s default
    ``drop_intermediate=True`` (as in OpenOOD's ``fpr_recall``) that formula
    can give a larger FPR: scikit-learn drops the inner points of a straight
    run of equal ROC steps, and the crossing point may be one of them. The
    papers' reference codes pick the threshold slightly differently: ODIN's
    averages the FPR over a fine grid of thresholds whose TPR lies in
    [0.9495, 0.9505]; the Outlier-Exposure / Energy code takes the threshold
    whose TPR is *closest* to ``tpr``.

    ``positive="ood"`` -- OOD is the positive class with outlier scores
    :math:`o = -s`; a sample is flagged as OOD when :math:`o \ge t`, i.e.
    ``score <= -t``. The threshold is the largest :math:`t` that flags at
    least ``tpr`` of the OOD samples, and the result is the fraction of ID
    samples flagged (ID rejected). This is pytorch-ood's ``FPRAtTPR`` /
    ``"FPR95TPR"`` (Kirchheim et al., 2022) and the FPR@95 that OpenOOD's
    benchmark evaluator (``auc_and_fpr_recall``, Yang et al., 2022) reports
    (``roc_curve`` on OOD indicators and ``-scores``, same
    ``drop_intermediate`` caveat). It generally differs from the ID-positive
    value; state which one a table reports.

    TPR values are computed as ``count / n`` in float64 and compared with
    ``tpr``, as scikit-learn's ``roc_curve`` does, so e.g. 19 of 20 samples
    reach ``tpr=0.95`` exactly.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution.
    tpr : float, default=0.95
        Target true positive rate, in (0, 1].
    positive : {"id", "ood"}, default="id"
        The positive class; see above.

    Returns
    -------
    float
        The false positive rate in [0, 1]; lower is better.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auroc`), ``tpr`` outside (0, 1] or an
        unknown ``positive``.

    See Also
    --------
    detection_error : Minimum misclassification probability over thresholds.
    auroc : Area under the ROC curve, ID as the positive class.

    References
    ----------
    .. [1] S. Liang, Y. Li and R. Srikant, "Enhancing The Reliability of
       Out-of-distribution Image Detection in Neural Networks", ICLR 2018.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Yang et al., "OpenOOD: Benchmarking Generalized
       Out-of-Distribution Detection", NeurIPS Datasets and Benchmarks 2022.
    .. [4] K. Kirchheim, M. Filax and F. Ortmeier, "PyTorch-OOD: A Library for
       Out-of-Distribution Detection based on PyTorch", CVPR Workshops 2022.

    Examples
    --------
    Four ID and four OOD samples; accepting 3 of 4 ID samples (TPR 0.75)
    needs the threshold 0.6, which also accepts the OOD sample scoring 0.7:

    >>> from sklearn_ood.metrics import fpr_at_tpr
    >>> y_true = [0, 0, 1, 1, -1, -1, -1, -1]
    >>> scores = [0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.3, 0.1]
    >>> fpr_at_tpr(y_true, scores, tpr=0.75)
    0.25

    Flagging 3 of 4 OOD samples needs the outlier threshold -0.5 (score
    <= 0.5), which also flags the ID sample scoring 0.2:

    >>> fpr_at_tpr(y_true, scores, tpr=0.75, positive="ood")
    0.25
    """
    tpr = _check_tpr(tpr)
    positive = _check_option("positive", positive, _POSITIVE)
    counts = _counts(y_true, scores)
    return _fpr_at_tpr_counts(*_accept_counts(counts, positive), tpr)


def detection_error(y_true, scores):
    r"""Minimum detection error over all thresholds (ODIN's definition).

    With equal priors for ID and OOD samples, the smallest misclassification
    probability any threshold reaches, ID being accepted when
    ``score >= t``:

    .. math::

        \min_t \; \tfrac{1}{2} \left(1 - \mathrm{TPR}(t)\right)
                + \tfrac{1}{2}\, \mathrm{FPR}(t),

    with :math:`\mathrm{TPR}(t)` the fraction of ID samples and
    :math:`\mathrm{FPR}(t)` the fraction of OOD samples scoring
    :math:`\ge t`. Every observed score is a candidate threshold, as are
    "accept all" and "accept none" (both give 0.5), so the result is at most
    0.5. The error is symmetric in the two classes, so the OOD-positive
    convention gives the same value. Liang et al. (2018) defined it; their
    reference code minimises over a grid of thresholds, which can only give
    a larger or equal value.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution.

    Returns
    -------
    float
        Detection error in [0, 0.5]; lower is better.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auroc`).

    See Also
    --------
    fpr_at_tpr : False positive rate at a true positive rate (FPR95).

    References
    ----------
    .. [1] S. Liang, Y. Li and R. Srikant, "Enhancing The Reliability of
       Out-of-distribution Image Detection in Neural Networks", ICLR 2018.

    Examples
    --------
    The threshold 0.8 rejects 2 of 4 ID samples and accepts no OOD sample,
    an error of (0.5 + 0) / 2; the threshold 0.6 rejects 1 of 4 ID samples
    and accepts 1 of 4 OOD samples, also 0.25:

    >>> from sklearn_ood.metrics import detection_error
    >>> y_true = [0, 0, 1, 1, -1, -1, -1, -1]
    >>> scores = [0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.3, 0.1]
    >>> detection_error(y_true, scores)
    0.25
    """
    return _detection_error_counts(*_accept_counts(_counts(y_true, scores), "id"))


def _fpr_key(tpr):
    return f"fpr{100 * tpr:g}"


def ood_report(
    y_true, scores, *, tpr=0.95, positive="id", aupr_method="average_precision"
):
    """All standard OOD detection metrics in one dictionary.

    The scores are sorted once and every metric is read from the same tied
    counts, so the report costs about one metric; each entry equals its
    function's result exactly.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Integer labels: ``>= 0`` for ID samples, ``< 0`` for OOD samples.
    scores : array-like of shape (n_samples,)
        Detector scores, higher for more in-distribution.
    tpr : float, default=0.95
        True positive rate of the FPR entry, in (0, 1].
    positive : {"id", "ood"}, default="id"
        Positive class of the FPR entry, see :func:`fpr_at_tpr`.
    aupr_method : {"average_precision", "trapezoid"}, default="average_precision"
        Passed to :func:`aupr_in` and :func:`aupr_out` as ``method``.

    Returns
    -------
    dict
        Python floats, keyed (in this order) ``"auroc"``, ``"aupr_in"``,
        ``"aupr_out"``, ``"fpr<P>"`` and ``"detection_error"``. ``<P>`` is
        ``100 * tpr`` formatted with ``"%g"``: ``"fpr95"`` for the default
        ``tpr=0.95``, ``"fpr90"`` for 0.9, ``"fpr99.5"`` for 0.995.
        AUROC and AUPR are higher-is-better, FPR and detection error
        lower-is-better.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auroc`) or invalid options.

    See Also
    --------
    auroc : Area under the ROC curve, ID as the positive class.
    aupr_in : Area under the precision-recall curve with ID positive.
    aupr_out : Area under the precision-recall curve with OOD positive.
    fpr_at_tpr : False positive rate at a true positive rate (FPR95).
    detection_error : Minimum misclassification probability over thresholds.
    ood_scorer : Any of these metrics as a scorer for model selection.

    Examples
    --------
    >>> from sklearn_ood.metrics import ood_report
    >>> y_true = [0, 0, 1, 1, -1, -1, -1, -1]
    >>> scores = [0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.3, 0.1]
    >>> report = ood_report(y_true, scores)
    >>> list(report)
    ['auroc', 'aupr_in', 'aupr_out', 'fpr95', 'detection_error']
    >>> report["auroc"], report["fpr95"], report["detection_error"]
    (0.75, 0.75, 0.25)
    """
    tpr = _check_tpr(tpr)
    positive = _check_option("positive", positive, _POSITIVE)
    aupr_method = _check_option("aupr_method", aupr_method, _AUPR_METHODS)
    counts = _counts(y_true, scores)  # the one sort, shared by every entry
    id_curve = _accept_counts(counts, "id")
    ood_curve = _accept_counts(counts, "ood")
    fpr_curve = id_curve if positive == "id" else ood_curve
    return {
        "auroc": _auroc_counts(*id_curve),
        "aupr_in": _aupr_counts(*id_curve, aupr_method),
        "aupr_out": _aupr_counts(*ood_curve, aupr_method),
        _fpr_key(tpr): _fpr_at_tpr_counts(*fpr_curve, tpr),
        "detection_error": _detection_error_counts(*id_curve),
    }
