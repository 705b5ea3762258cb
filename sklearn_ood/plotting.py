"""Plots of OOD detection results: score histograms, ROC and PR curves.

The displays follow scikit-learn's Display API: a display stores the data it
draws, ``plot(ax=None, ...)`` draws it and returns the display (with ``ax_``,
``figure_`` and the drawn artists set), and the ``from_estimator(s)`` /
``from_predictions`` class methods compute the data and call ``plot``.

Labels follow the package convention (``y >= 0`` in-distribution, ``y < 0``
OOD) and scores its direction (higher = more in-distribution, as
``score_samples`` returns). Matplotlib is optional (the ``plot`` extra):
importing this module never imports it; a display imports it when it draws.
"""

from collections.abc import Mapping
from numbers import Real

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.pipeline import Pipeline

from sklearn_ood.base import check_ood_labels
from sklearn_ood.metrics import aupr_in, aupr_out, auroc

__all__ = ["OODPrecisionRecallDisplay", "OODRocCurveDisplay", "OODScoreDisplay"]

_ID_LABEL = "in-distribution"
_OOD_LABEL = "OOD"
_POSITIVE = ("id", "ood")
_AUPR_METHODS = ("average_precision", "trapezoid")


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _check_matplotlib(caller):
    """Import pyplot, or say how to install the optional dependency."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller} requires matplotlib, an optional dependency of sklearn-ood. "
            'Install it with: pip install "sklearn-ood[plot]"'
        ) from exc
    return plt


def _axes(ax, caller):
    plt = _check_matplotlib(caller)
    if ax is None:
        _, ax = plt.subplots()
    return ax, ax.figure


def _style(defaults, user, artist):
    """Merge user keyword arguments over defaults, aliases included.

    ``normalize_kwargs`` maps aliases (``c``, ``ls``, ``lw``) to their full
    names first, so that a user's ``c="red"`` replaces the default
    ``color`` instead of matplotlib refusing both.
    """
    from matplotlib.cbook import normalize_kwargs

    if user is not None and not isinstance(user, Mapping):
        raise ValueError(
            f"Style keyword arguments must be a dict, got {type(user).__name__}."
        )
    merged = dict(normalize_kwargs(defaults, artist))
    merged.update(normalize_kwargs(dict(user or {}), artist))
    return merged


def _check_option(name, value, options):
    if not isinstance(value, str) or value not in options:
        valid = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {valid}, got {value!r}.")
    return value


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def _as_scores(scores, what):
    """``scores`` as a 1-D finite float64 array, or a ValueError naming it."""
    s = np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(
            f"{what} must be 1-D (one score per sample), got an array of shape "
            f"{s.shape}."
        )
    if s.dtype.kind == "O" and not all(
        isinstance(v, Real) and not isinstance(v, bool) for v in s
    ):
        raise ValueError(
            f"{what} must be real numbers; got an object array holding "
            f"non-numbers. Convert them first, e.g. np.asarray({what}, dtype=float)."
        )
    if s.dtype.kind not in "biufO":
        raise ValueError(
            f"{what} must be real numbers (a numeric array, one score per sample); "
            f"got an array of dtype {s.dtype}."
        )
    s = s.astype(np.float64)
    finite = np.isfinite(s)
    if not finite.all():
        raise ValueError(
            f"{what} contain {int(np.count_nonzero(~finite))} NaN or infinite "
            f"value(s) out of {s.shape[0]}; plots need finite scores. Drop those "
            "rows, or check the detector's inputs."
        )
    return s


def _check_labels(y):
    """Validate OOD-convention labels; return them and the ID mask."""
    labels = check_ood_labels(y, name="y")
    is_id = labels >= 0
    n_id = int(np.count_nonzero(is_id))
    if n_id == labels.shape[0]:
        raise ValueError(
            "y holds no OOD sample (label < 0): an OOD plot needs both ID "
            "(labels >= 0) and OOD rows. Mark the OOD rows with -1."
        )
    if n_id == 0:
        raise ValueError(
            "y holds no ID sample (label >= 0): an OOD plot needs both ID "
            "(labels >= 0) and OOD rows."
        )
    return labels, is_id


def _check_scores_for(labels, scores, what):
    s = _as_scores(scores, what)
    if s.shape[0] != labels.shape[0]:
        raise ValueError(
            f"y and {what} have different lengths: {labels.shape[0]} != "
            f"{s.shape[0]}; pass one score per row of y."
        )
    return s


def _check_threshold(threshold):
    if threshold is None:
        return None
    if (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, Real)
        or not np.isfinite(threshold)
    ):
        raise ValueError(
            f"threshold must be a finite number or None, got {threshold!r}."
        )
    return float(threshold)


def _check_target_tpr(target_tpr):
    if (
        isinstance(target_tpr, (bool, np.bool_))
        or not isinstance(target_tpr, Real)
        or not 0.0 < float(target_tpr) <= 1.0
    ):
        raise ValueError(f"target_tpr must be a number in (0, 1], got {target_tpr!r}.")
    return float(target_tpr)


def _final_estimator(estimator):
    """The detector at the end of (nested) pipelines, which holds ``offset_``."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return estimator


def _score_samples(detector, X, what="detector"):
    if not callable(getattr(detector, "score_samples", None)):
        raise ValueError(
            f"{what} must be a fitted OOD detector with a score_samples method, "
            f"got {type(detector).__name__}."
        )
    return detector.score_samples(X)


def _named_scores(y, scores, name, caller):
    """Labels, ID mask and an ordered dict name -> validated scores."""
    labels, is_id = _check_labels(y)
    if isinstance(scores, Mapping):
        if not scores:
            raise ValueError(
                f"{caller}: scores is an empty dict; pass at least one "
                "detector's scores, as {name: scores}."
            )
        if name is not None:
            raise ValueError(
                f"{caller}: name is for a single array of scores; with a dict, "
                "its keys name the curves."
            )
        return (
            labels,
            is_id,
            {
                str(key): _check_scores_for(labels, value, f"scores[{key!r}]")
                for key, value in scores.items()
            },
        )
    return labels, is_id, {name: _check_scores_for(labels, scores, "scores")}


def _scores_of_detectors(detectors, X, caller):
    if not isinstance(detectors, Mapping) or not detectors:
        raise ValueError(
            f"{caller} takes a non-empty dict name -> fitted detector, e.g. "
            "{'Mahalanobis': mahalanobis, 'KNN': knn}; got "
            f"{type(detectors).__name__}."
        )
    return {
        name: _score_samples(detector, X, f"detectors[{name!r}]")
        for name, detector in detectors.items()
    }


def _as_curves(value, what):
    """One curve (a 1-D array) or several (a list of 1-D arrays) as a list."""
    if isinstance(value, np.ndarray) or (
        isinstance(value, (list, tuple)) and value and np.ndim(value[0]) == 0
    ):
        value = [value]
    curves = [np.asarray(v, dtype=np.float64) for v in value]
    for curve in curves:
        if curve.ndim != 1:
            raise ValueError(f"Each curve of {what} must be 1-D, got {curve.shape}.")
    return curves


def _as_list(value, n_curves, what):
    """A per-curve parameter as a list of ``n_curves`` entries (None allowed)."""
    if value is None:
        return [None] * n_curves
    if isinstance(value, (str, Real)):
        value = [value]
    value = list(value)
    if len(value) != n_curves:
        raise ValueError(
            f"{what} has {len(value)} entries for {n_curves} curve(s); give one "
            "per curve."
        )
    return value


def _curve_kwargs(curve_kwargs, n_curves):
    if curve_kwargs is None or isinstance(curve_kwargs, Mapping):
        return [curve_kwargs] * n_curves
    curve_kwargs = list(curve_kwargs)
    if len(curve_kwargs) != n_curves:
        raise ValueError(
            f"curve_kwargs has {len(curve_kwargs)} dicts for {n_curves} curve(s); "
            "pass one dict for all curves or one per curve."
        )
    return curve_kwargs


def _legend_label(name, metrics):
    values = ", ".join(
        f"{key} = {value:.3f}" for key, value in metrics if value is not None
    )
    if name is not None and values:
        return f"{name} ({values})"
    return name if name is not None else (values or None)


def _fpr_key(target_tpr):
    # the name ood_report gives the same number ("FPR95" for 0.95)
    return f"FPR{100 * target_tpr:g}"


def _set_unit_square(ax, xlabel, ylabel):
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        aspect="equal",
    )


# --------------------------------------------------------------------------
# Score histograms
# --------------------------------------------------------------------------


class OODScoreDisplay:
    """Histograms of the scores of ID and OOD samples, with the threshold.

    The ID and OOD scores are drawn on shared bins, so their overlap shows how
    well the detector separates them; the decision threshold (a fitted
    detector's ``offset_``: ``predict`` returns -1 left of it) is drawn as a
    vertical line when known. Create it with :meth:`from_estimator` or
    :meth:`from_predictions`; all parameters are stored as attributes.

    Parameters
    ----------
    id_scores : array-like of shape (n_id,)
        Scores of the in-distribution samples, higher for more
        in-distribution (``score_samples``).
    ood_scores : array-like of shape (n_ood,)
        Scores of the OOD samples.
    threshold : float, default=None
        Decision threshold on the scores, drawn as a vertical line; ``None``
        draws none.
    name : str, default=None
        Name of the detector, shown in the x-axis label.

    Attributes
    ----------
    hist_ : list of matplotlib BarContainer
        The two histograms, ID first, then OOD.
    bin_edges_ : ndarray of shape (n_bins + 1,)
        The bin edges shared by both histograms.
    threshold_line_ : matplotlib Line2D or None
        The threshold line; ``None`` when no threshold is known.
    ax_ : matplotlib Axes
        Axes with the histograms.
    figure_ : matplotlib Figure
        Figure containing the histograms.

    See Also
    --------
    OODRocCurveDisplay : ROC curves of several detectors on one axis.
    OODPrecisionRecallDisplay : Precision-recall curves of several detectors.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from sklearn_ood.plotting import OODScoreDisplay
    >>> display = OODScoreDisplay(
    ...     id_scores=[0.9, 0.8, 0.7, 0.6], ood_scores=[0.5, 0.3, 0.2], threshold=0.55
    ... ).plot(bins=4, density=False)
    >>> [int(sum(bars.datavalues)) for bars in display.hist_]
    [4, 3]
    >>> display.threshold_line_.get_xdata()[0]
    0.55
    >>> plt.close("all")
    """

    def __init__(self, id_scores, ood_scores, *, threshold=None, name=None):
        self.id_scores = id_scores
        self.ood_scores = ood_scores
        self.threshold = threshold
        self.name = name

    def plot(
        self,
        ax=None,
        *,
        name=None,
        bins=50,
        density=True,
        id_kwargs=None,
        ood_kwargs=None,
        threshold_kwargs=None,
    ):
        """Plot the two histograms and the threshold.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
            Drawing on an axes that already holds plots adds to them.
        name : str, default=None
            Name of the detector for the x-axis label; ``None`` uses the
            display's ``name``.
        bins : int, str or array-like, default=50
            Bins shared by both histograms: a number of equal-width bins over
            the range of all scores, a rule name or the bin edges, as
            :func:`numpy.histogram_bin_edges` takes them.
        density : bool, default=True
            Whether each histogram is normalised to unit area, so that ID and
            OOD sets of different sizes compare by shape; ``False`` shows
            counts.
        id_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the ID scores.
        ood_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the OOD scores.
        threshold_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axvline`` of the threshold.

        Returns
        -------
        display : OODScoreDisplay
            The display, with ``ax_``, ``figure_``, ``hist_``, ``bin_edges_``
            and ``threshold_line_`` set.
        """
        self.ax_, self.figure_ = _axes(ax, f"{type(self).__name__}.plot")
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        density = _check_bool("density", density)
        id_scores = _as_scores(self.id_scores, "id_scores")
        ood_scores = _as_scores(self.ood_scores, "ood_scores")
        for what, scores in (("id_scores", id_scores), ("ood_scores", ood_scores)):
            if scores.shape[0] == 0:
                raise ValueError(f"{what} is empty; the plot needs both groups.")
        threshold = _check_threshold(self.threshold)
        name = self.name if name is None else name

        # one set of edges over both groups: separate bins would make the
        # heights of the two histograms incomparable
        self.bin_edges_ = np.histogram_bin_edges(
            np.concatenate([id_scores, ood_scores]), bins=bins
        )
        self.hist_ = []
        for scores, label, color, user in (
            (id_scores, _ID_LABEL, "C0", id_kwargs),
            (ood_scores, _OOD_LABEL, "C1", ood_kwargs),
        ):
            defaults = {"alpha": 0.5, "color": color, "label": label}
            kwargs = _style(defaults, user, Patch)
            _, _, bars = self.ax_.hist(
                scores, bins=self.bin_edges_, density=density, **kwargs
            )
            self.hist_.append(bars)

        self.threshold_line_ = None
        if threshold is not None:
            defaults = {
                "color": "k",
                "linestyle": "--",
                "label": f"threshold = {threshold:.4g}",
            }
            kwargs = _style(defaults, threshold_kwargs, Line2D)
            self.threshold_line_ = self.ax_.axvline(threshold, **kwargs)

        what = "score" if name is None else f"{name} score"
        self.ax_.set(
            xlabel=f"{what} (higher = more in-distribution)",
            ylabel="density" if density else "count",
        )
        self.ax_.legend()
        return self

    @classmethod
    def from_estimator(
        cls,
        detector,
        X,
        y,
        *,
        threshold="auto",
        name=None,
        ax=None,
        bins=50,
        density=True,
        id_kwargs=None,
        ood_kwargs=None,
        threshold_kwargs=None,
    ):
        """Plot the score histograms of a fitted detector on labelled data.

        The rows of ``X`` are scored with ``detector.score_samples`` and split
        by ``y`` into ID (``y >= 0``) and OOD (``y < 0``).

        Parameters
        ----------
        detector : estimator
            A fitted OOD detector, or a fitted pipeline ending in one; it
            must have ``score_samples``.
        X : array-like of shape (n_samples, ...)
            Inputs to score, ID and OOD rows together.
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows.
        threshold : "auto", float or None, default="auto"
            Threshold to draw. ``"auto"`` takes the detector's ``offset_``
            (the last pipeline step's), where ``decision_function`` =
            ``score_samples`` - ``offset_`` changes sign; a detector fitted
            with ``contamination=None`` has none, and no line is drawn. A
            number draws that threshold; ``None`` draws none.
        name : str, default=None
            Name of the detector for the x-axis label; ``None`` uses its class
            name (the last pipeline step's).
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        bins : int, str or array-like, default=50
            Bins shared by both histograms, as
            :func:`numpy.histogram_bin_edges` takes them.
        density : bool, default=True
            Whether each histogram is normalised to unit area; ``False`` shows
            counts.
        id_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the ID scores.
        ood_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the OOD scores.
        threshold_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axvline`` of the threshold.

        Returns
        -------
        display : OODScoreDisplay
            The display, drawn.

        See Also
        --------
        OODScoreDisplay.from_predictions : The same plot from scores.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> import numpy as np
        >>> from sklearn_ood.detectors import Mahalanobis
        >>> from sklearn_ood.plotting import OODScoreDisplay
        >>> rng = np.random.default_rng(0)
        >>> detector = Mahalanobis().fit(rng.normal(size=(200, 2)))
        >>> X = np.vstack([rng.normal(size=(50, 2)), rng.normal(4, 1, size=(50, 2))])
        >>> y = np.r_[np.zeros(50, dtype=int), -np.ones(50, dtype=int)]
        >>> display = OODScoreDisplay.from_estimator(detector, X, y)
        >>> display.threshold == detector.offset_
        True
        >>> plt.close("all")
        """
        caller = f"{cls.__name__}.from_estimator"
        _check_matplotlib(caller)
        scores = _score_samples(detector, X)
        final = _final_estimator(detector)
        if isinstance(threshold, str):
            _check_option("threshold", threshold, ("auto",))
            # offset_ is absent, not None, after contamination=None
            threshold = getattr(final, "offset_", None)
        if name is None:
            name = type(final).__name__
        return cls.from_predictions(
            y,
            scores,
            threshold=threshold,
            name=name,
            ax=ax,
            bins=bins,
            density=density,
            id_kwargs=id_kwargs,
            ood_kwargs=ood_kwargs,
            threshold_kwargs=threshold_kwargs,
        )

    @classmethod
    def from_predictions(
        cls,
        y,
        scores,
        *,
        threshold=None,
        name=None,
        ax=None,
        bins=50,
        density=True,
        id_kwargs=None,
        ood_kwargs=None,
        threshold_kwargs=None,
    ):
        """Plot the score histograms of ID and OOD samples from scores.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows;
            both must be present.
        scores : array-like of shape (n_samples,)
            Finite detector scores, higher for more in-distribution.
        threshold : float, default=None
            Threshold to draw as a vertical line (e.g. a detector's
            ``offset_``); ``None`` draws none.
        name : str, default=None
            Name of the detector for the x-axis label.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        bins : int, str or array-like, default=50
            Bins shared by both histograms, as
            :func:`numpy.histogram_bin_edges` takes them.
        density : bool, default=True
            Whether each histogram is normalised to unit area; ``False`` shows
            counts.
        id_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the ID scores.
        ood_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``hist`` of the OOD scores.
        threshold_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axvline`` of the threshold.

        Returns
        -------
        display : OODScoreDisplay
            The display, drawn.

        See Also
        --------
        OODScoreDisplay.from_estimator : The same plot from a fitted detector.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from sklearn_ood.plotting import OODScoreDisplay
        >>> y = [0, 1, 0, -1, -1]
        >>> scores = [2.0, 1.5, 1.8, 0.2, 1.6]
        >>> display = OODScoreDisplay.from_predictions(y, scores, threshold=1.0)
        >>> len(display.id_scores), len(display.ood_scores)
        (3, 2)
        >>> plt.close("all")
        """
        _check_matplotlib(f"{cls.__name__}.from_predictions")
        labels, is_id = _check_labels(y)
        scores = _check_scores_for(labels, scores, "scores")
        display = cls(
            id_scores=scores[is_id],
            ood_scores=scores[~is_id],
            threshold=_check_threshold(threshold),
            name=name,
        )
        return display.plot(
            ax=ax,
            bins=bins,
            density=density,
            id_kwargs=id_kwargs,
            ood_kwargs=ood_kwargs,
            threshold_kwargs=threshold_kwargs,
        )


# --------------------------------------------------------------------------
# Curves of several detectors
# --------------------------------------------------------------------------


def _plot_curves(ax, xs, ys, labels, curve_kwargs, defaults):
    from matplotlib.lines import Line2D

    lines = []
    for x, y, label, user in zip(xs, ys, labels, curve_kwargs):
        kwargs = _style({**defaults, "label": label}, user, Line2D)
        lines.extend(ax.plot(x, y, **kwargs))
    return lines


class OODRocCurveDisplay:
    """ROC curves of several OOD detectors on one axis, ID as positive class.

    The true positive rate is the share of ID samples accepted (kept) and the
    false positive rate the share of OOD samples accepted, at every threshold
    on the scores, as :func:`sklearn_ood.metrics.auroc` and
    :func:`sklearn_ood.metrics.fpr_at_tpr` define them: the curves are
    :func:`sklearn.metrics.roc_curve` of ``(y >= 0, scores)``. The legend
    gives each detector's AUROC and FPR at the target TPR (FPR95), whose
    operating point is marked on its curve. Create it with
    :meth:`from_estimators` or :meth:`from_predictions`; all parameters are
    stored as attributes.

    Parameters
    ----------
    fpr : ndarray or list of ndarray
        False positive rates (share of OOD accepted) of each curve.
    tpr : ndarray or list of ndarray
        True positive rates (share of ID accepted) of each curve.
    roc_auc : float or list of float, default=None
        AUROC of each curve, shown in the legend.
    name : str or list of str, default=None
        Name of each curve (detector), shown in the legend.
    operating_point : tuple of float or list of tuple, default=None
        ``(fpr, tpr)`` of each curve's operating point at ``target_tpr``:
        the largest threshold that keeps at least ``target_tpr`` of the ID
        samples. Its FPR is shown in the legend and the point marked.
    target_tpr : float, default=0.95
        The TPR of the operating points, for the legend.

    Attributes
    ----------
    lines_ : list of matplotlib Line2D
        The ROC curves, one per detector.
    operating_points_ : list of matplotlib Line2D
        The markers of the operating points; empty when not drawn.
    chance_level_ : matplotlib Line2D or None
        The chance level line, or ``None`` when not drawn.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure containing the curves.

    See Also
    --------
    OODPrecisionRecallDisplay : Precision-recall curves of several detectors.
    OODScoreDisplay : Histograms of the ID and OOD scores of one detector.
    sklearn_ood.metrics.auroc : Area under the ROC curve, ID as the positive
        class.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from sklearn_ood.plotting import OODRocCurveDisplay
    >>> y = [0, 0, 1, 1, -1, -1, -1, -1]
    >>> scores = {
    ...     "good": [0.9, 0.8, 0.6, 0.7, 0.3, 0.5, 0.2, 0.1],
    ...     "poor": [0.9, 0.2, 0.6, 0.55, 0.7, 0.5, 0.3, 0.8],
    ... }
    >>> display = OODRocCurveDisplay.from_predictions(y, scores)
    >>> display.roc_auc
    [1.0, 0.5]
    >>> [line.get_label() for line in display.lines_]
    ['good (AUROC = 1.000, FPR95 = 0.000)', 'poor (AUROC = 0.500, FPR95 = 1.000)']
    >>> plt.close("all")
    """

    def __init__(
        self,
        *,
        fpr,
        tpr,
        roc_auc=None,
        name=None,
        operating_point=None,
        target_tpr=0.95,
    ):
        self.fpr = fpr
        self.tpr = tpr
        self.roc_auc = roc_auc
        self.name = name
        self.operating_point = operating_point
        self.target_tpr = target_tpr

    def plot(
        self,
        ax=None,
        *,
        name=None,
        curve_kwargs=None,
        plot_operating_point=True,
        operating_point_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the ROC curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
            Drawing on an axes that already holds curves adds these to them
            (the legend lists all).
        name : str or list of str, default=None
            Names of the curves for the legend; ``None`` uses the display's
            ``name``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_operating_point : bool, default=True
            Whether to mark each curve's operating point at ``target_tpr``
            (when known).
        operating_point_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the markers.
        plot_chance_level : bool, default=False
            Whether to draw the diagonal of a detector that ranks at random.
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the chance level.

        Returns
        -------
        display : OODRocCurveDisplay
            The display, with ``ax_``, ``figure_``, ``lines_``,
            ``operating_points_`` and ``chance_level_`` set.
        """
        self.ax_, self.figure_ = _axes(ax, f"{type(self).__name__}.plot")
        from matplotlib.lines import Line2D

        fpr = _as_curves(self.fpr, "fpr")
        tpr = _as_curves(self.tpr, "tpr")
        n_curves = len(fpr)
        if len(tpr) != n_curves or any(f.shape != t.shape for f, t in zip(fpr, tpr)):
            raise ValueError(
                "fpr and tpr must hold the same number of curves, each pair of "
                "equal length."
            )
        names = _as_list(self.name if name is None else name, n_curves, "name")
        roc_auc = _as_list(self.roc_auc, n_curves, "roc_auc")
        points = self.operating_point
        if isinstance(points, tuple) or (
            isinstance(points, np.ndarray) and points.ndim == 1
        ):
            points = [points]  # the (fpr, tpr) pair of a single curve
        points = _as_list(points, n_curves, "operating_point")
        target_tpr = _check_target_tpr(self.target_tpr)
        plot_operating_point = _check_bool("plot_operating_point", plot_operating_point)
        fpr_key = _fpr_key(target_tpr)
        labels = [
            _legend_label(
                curve_name,
                [("AUROC", area), (fpr_key, None if point is None else point[0])],
            )
            for curve_name, area, point in zip(names, roc_auc, points)
        ]
        self.lines_ = _plot_curves(
            self.ax_, fpr, tpr, labels, _curve_kwargs(curve_kwargs, n_curves), {}
        )

        self.operating_points_ = []
        if plot_operating_point:
            for line, point in zip(self.lines_, points):
                if point is None:
                    continue
                defaults = {
                    "marker": "o",
                    "linestyle": "none",
                    "color": line.get_color(),
                    # the legend already gives the point's FPR in the curve's
                    # label; one entry per marker would double the legend
                    "label": "_nolegend_",
                }
                kwargs = _style(defaults, operating_point_kwargs, Line2D)
                self.operating_points_.extend(
                    self.ax_.plot([point[0]], [point[1]], **kwargs)
                )

        self.chance_level_ = None
        if _check_bool("plot_chance_level", plot_chance_level):
            defaults = {"color": "k", "linestyle": "--", "label": "chance level"}
            kwargs = _style(defaults, chance_level_kwargs, Line2D)
            (self.chance_level_,) = self.ax_.plot((0, 1), (0, 1), **kwargs)

        _set_unit_square(
            self.ax_,
            "False positive rate (share of OOD accepted)",
            "True positive rate (share of ID accepted)",
        )
        if any(label is not None for label in labels) or self.chance_level_ is not None:
            self.ax_.legend(loc="lower right")
        return self

    @classmethod
    def from_estimators(
        cls,
        detectors,
        X,
        y,
        *,
        target_tpr=0.95,
        drop_intermediate=True,
        ax=None,
        curve_kwargs=None,
        plot_operating_point=True,
        operating_point_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the ROC curves of several fitted detectors on the same data.

        Every detector scores ``X`` with ``score_samples``. To compare
        detectors that read different inputs (logits, features, raw images)
        wrap each in a pipeline with its feature extractor, or compute the
        scores first and use :meth:`from_predictions`.

        Parameters
        ----------
        detectors : dict
            Names (legend entries) to fitted detectors (or pipelines ending
            in one).
        X : array-like of shape (n_samples, ...)
            Inputs to score, ID and OOD rows together.
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows.
        target_tpr : float, default=0.95
            TPR of the operating point marked on each curve and of the FPR
            given in the legend, in (0, 1].
        drop_intermediate : bool, default=True
            Whether to drop the inner points of straight runs of the curves,
            as :func:`sklearn.metrics.roc_curve` does; the shape, AUROC and
            operating points do not change.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_operating_point : bool, default=True
            Whether to mark each curve's operating point at ``target_tpr``.
        operating_point_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the markers.
        plot_chance_level : bool, default=False
            Whether to draw the diagonal of a detector that ranks at random.
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the chance level.

        Returns
        -------
        display : OODRocCurveDisplay
            The display, drawn.

        See Also
        --------
        OODRocCurveDisplay.from_predictions : The same plot from scores.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> import numpy as np
        >>> from sklearn_ood.detectors import KNN, Mahalanobis
        >>> from sklearn_ood.plotting import OODRocCurveDisplay
        >>> rng = np.random.default_rng(0)
        >>> X_train = rng.normal(size=(200, 2))
        >>> detectors = {
        ...     "Mahalanobis": Mahalanobis().fit(X_train),
        ...     "KNN": KNN(n_neighbors=5).fit(X_train),
        ... }
        >>> X = np.vstack([rng.normal(size=(50, 2)), rng.normal(3, 1, size=(50, 2))])
        >>> y = np.r_[np.zeros(50, dtype=int), -np.ones(50, dtype=int)]
        >>> display = OODRocCurveDisplay.from_estimators(detectors, X, y)
        >>> display.name
        ['Mahalanobis', 'KNN']
        >>> plt.close("all")
        """
        caller = f"{cls.__name__}.from_estimators"
        _check_matplotlib(caller)
        return cls.from_predictions(
            y,
            _scores_of_detectors(detectors, X, caller),
            target_tpr=target_tpr,
            drop_intermediate=drop_intermediate,
            ax=ax,
            curve_kwargs=curve_kwargs,
            plot_operating_point=plot_operating_point,
            operating_point_kwargs=operating_point_kwargs,
            plot_chance_level=plot_chance_level,
            chance_level_kwargs=chance_level_kwargs,
        )

    @classmethod
    def from_predictions(
        cls,
        y,
        scores,
        *,
        name=None,
        target_tpr=0.95,
        drop_intermediate=True,
        ax=None,
        curve_kwargs=None,
        plot_operating_point=True,
        operating_point_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the ROC curves of several detectors from their scores.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows;
            both must be present.
        scores : dict or array-like of shape (n_samples,)
            Names (legend entries) to each detector's finite scores on the
            rows of ``y``, higher for more in-distribution; or one array of
            scores.
        name : str, default=None
            Name of the curve when ``scores`` is one array; with a dict, its
            keys are the names.
        target_tpr : float, default=0.95
            TPR of the operating point marked on each curve and of the FPR
            given in the legend, in (0, 1]; that FPR is
            :func:`sklearn_ood.metrics.fpr_at_tpr` at ``target_tpr``.
        drop_intermediate : bool, default=True
            Whether to drop the inner points of straight runs of the curves,
            as :func:`sklearn.metrics.roc_curve` does; the shape, AUROC and
            operating points do not change.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_operating_point : bool, default=True
            Whether to mark each curve's operating point at ``target_tpr``.
        operating_point_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the markers.
        plot_chance_level : bool, default=False
            Whether to draw the diagonal of a detector that ranks at random.
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the chance level.

        Returns
        -------
        display : OODRocCurveDisplay
            The display, drawn.

        See Also
        --------
        OODRocCurveDisplay.from_estimators : The same plot from fitted
            detectors.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from sklearn_ood.plotting import OODRocCurveDisplay
        >>> y = [0, 0, 1, 1, -1, -1, -1, -1]
        >>> scores = [0.9, 0.8, 0.6, 0.2, 0.7, 0.5, 0.3, 0.1]
        >>> display = OODRocCurveDisplay.from_predictions(y, scores, name="MSP")
        >>> display.lines_[0].get_label()
        'MSP (AUROC = 0.750, FPR95 = 0.750)'
        >>> plt.close("all")
        """
        caller = f"{cls.__name__}.from_predictions"
        _check_matplotlib(caller)
        target_tpr = _check_target_tpr(target_tpr)
        drop_intermediate = _check_bool("drop_intermediate", drop_intermediate)
        labels, is_id, named = _named_scores(y, scores, name, caller)
        fprs, tprs, areas, points = [], [], [], []
        for curve_scores in named.values():
            # the full curve gives the operating point exactly as fpr_at_tpr
            # does: drop_intermediate may drop the point where TPR crosses
            full_fpr, full_tpr, _ = roc_curve(
                is_id, curve_scores, drop_intermediate=False
            )
            crossing = int(np.argmax(full_tpr >= target_tpr))
            points.append((float(full_fpr[crossing]), float(full_tpr[crossing])))
            if drop_intermediate:
                fpr, tpr, _ = roc_curve(is_id, curve_scores, drop_intermediate=True)
            else:
                fpr, tpr = full_fpr, full_tpr
            fprs.append(fpr)
            tprs.append(tpr)
            areas.append(auroc(labels, curve_scores))
        display = cls(
            fpr=fprs,
            tpr=tprs,
            roc_auc=areas,
            name=list(named),
            operating_point=points,
            target_tpr=target_tpr,
        )
        return display.plot(
            ax=ax,
            curve_kwargs=curve_kwargs,
            plot_operating_point=plot_operating_point,
            operating_point_kwargs=operating_point_kwargs,
            plot_chance_level=plot_chance_level,
            chance_level_kwargs=chance_level_kwargs,
        )


class OODPrecisionRecallDisplay:
    """Precision-recall curves of several OOD detectors on one axis.

    With ``positive="id"`` a sample is retrieved when its score is at least
    the threshold; precision is the share of retrieved samples that are ID
    and recall the share of ID samples retrieved (AUPR-In, as
    :func:`sklearn_ood.metrics.aupr_in`). With ``positive="ood"`` samples are
    ranked by ``-scores``: precision is the share of flagged samples that are
    OOD and recall the share of OOD samples flagged (AUPR-Out, as
    :func:`sklearn_ood.metrics.aupr_out`). The curves are
    :func:`sklearn.metrics.precision_recall_curve` of the positive class and
    the legend gives each detector's area. Create it with
    :meth:`from_estimators` or :meth:`from_predictions`; all parameters are
    stored as attributes.

    Parameters
    ----------
    precision : ndarray or list of ndarray
        Precision of each curve.
    recall : ndarray or list of ndarray
        Recall of each curve.
    aupr : float or list of float, default=None
        Area under each curve, shown in the legend.
    name : str or list of str, default=None
        Name of each curve (detector), shown in the legend.
    positive : {"id", "ood"}, default="id"
        The positive class: ``"id"`` for AUPR-In, ``"ood"`` for AUPR-Out.
    aupr_method : {"average_precision", "trapezoid"}, default="average_precision"
        How ``aupr`` summarises the curve (see
        :func:`sklearn_ood.metrics.aupr_in`); the curves are drawn as steps
        for average precision and as straight segments for the trapezoidal
        area, so that the drawn area is the one in the legend.
    prevalence : float, default=None
        Share of positive samples: the precision of a detector that ranks
        at random, drawn as the chance level.

    Attributes
    ----------
    lines_ : list of matplotlib Line2D
        The precision-recall curves, one per detector.
    chance_level_ : matplotlib Line2D or None
        The chance level line, or ``None`` when not drawn.
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure containing the curves.

    See Also
    --------
    OODRocCurveDisplay : ROC curves of several detectors on one axis.
    OODScoreDisplay : Histograms of the ID and OOD scores of one detector.
    sklearn_ood.metrics.aupr_in : Area under the precision-recall curve with
        ID positive.
    sklearn_ood.metrics.aupr_out : Area under the precision-recall curve with
        OOD positive.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from sklearn_ood.plotting import OODPrecisionRecallDisplay
    >>> y = [0, 1, -1, 2, -1]
    >>> scores = {"MSP": [0.9, 0.8, 0.7, 0.6, 0.1]}
    >>> display = OODPrecisionRecallDisplay.from_predictions(y, scores)
    >>> display.lines_[0].get_label()
    'MSP (AUPR-In = 0.917)'
    >>> display = OODPrecisionRecallDisplay.from_predictions(
    ...     y, scores, positive="ood"
    ... )
    >>> display.lines_[0].get_label()
    'MSP (AUPR-Out = 0.833)'
    >>> plt.close("all")
    """

    def __init__(
        self,
        *,
        precision,
        recall,
        aupr=None,
        name=None,
        positive="id",
        aupr_method="average_precision",
        prevalence=None,
    ):
        self.precision = precision
        self.recall = recall
        self.aupr = aupr
        self.name = name
        self.positive = positive
        self.aupr_method = aupr_method
        self.prevalence = prevalence

    def plot(
        self,
        ax=None,
        *,
        name=None,
        curve_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the precision-recall curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
            Drawing on an axes that already holds curves adds these to them
            (the legend lists all).
        name : str or list of str, default=None
            Names of the curves for the legend; ``None`` uses the display's
            ``name``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_chance_level : bool, default=False
            Whether to draw the precision of a detector that ranks at random
            (``prevalence``, which must be known).
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axhline`` of the chance
            level.

        Returns
        -------
        display : OODPrecisionRecallDisplay
            The display, with ``ax_``, ``figure_``, ``lines_`` and
            ``chance_level_`` set.
        """
        self.ax_, self.figure_ = _axes(ax, f"{type(self).__name__}.plot")
        from matplotlib.lines import Line2D

        positive = _check_option("positive", self.positive, _POSITIVE)
        aupr_method = _check_option("aupr_method", self.aupr_method, _AUPR_METHODS)
        precision = _as_curves(self.precision, "precision")
        recall = _as_curves(self.recall, "recall")
        n_curves = len(precision)
        if len(recall) != n_curves or any(
            p.shape != r.shape for p, r in zip(precision, recall)
        ):
            raise ValueError(
                "precision and recall must hold the same number of curves, each "
                "pair of equal length."
            )
        names = _as_list(self.name if name is None else name, n_curves, "name")
        areas = _as_list(self.aupr, n_curves, "aupr")
        metric = "AUPR-In" if positive == "id" else "AUPR-Out"
        labels = [
            _legend_label(curve_name, [(metric, area)])
            for curve_name, area in zip(names, areas)
        ]
        # average precision sums rectangles: each recall interval takes the
        # precision of its higher-recall end, which comes first in
        # precision_recall_curve's order (recall decreasing): "steps-post"
        defaults = (
            {"drawstyle": "steps-post"} if aupr_method == "average_precision" else {}
        )
        self.lines_ = _plot_curves(
            self.ax_,
            recall,
            precision,
            labels,
            _curve_kwargs(curve_kwargs, n_curves),
            defaults,
        )

        self.chance_level_ = None
        if _check_bool("plot_chance_level", plot_chance_level):
            if self.prevalence is None:
                raise ValueError(
                    "plot_chance_level=True needs the prevalence of the positive "
                    "class; pass prevalence= to the display, or create it with "
                    "from_predictions or from_estimators."
                )
            defaults = {
                "color": "k",
                "linestyle": "--",
                "label": f"chance level ({metric} = {self.prevalence:.3f})",
            }
            kwargs = _style(defaults, chance_level_kwargs, Line2D)
            self.chance_level_ = self.ax_.axhline(self.prevalence, **kwargs)

        if positive == "id":
            xlabel = "Recall (share of ID accepted)"
            ylabel = "Precision (share of accepted that are ID)"
        else:
            xlabel = "Recall (share of OOD flagged)"
            ylabel = "Precision (share of flagged that are OOD)"
        _set_unit_square(self.ax_, xlabel, ylabel)
        if any(label is not None for label in labels) or self.chance_level_ is not None:
            self.ax_.legend(loc="lower left")
        return self

    @classmethod
    def from_estimators(
        cls,
        detectors,
        X,
        y,
        *,
        positive="id",
        aupr_method="average_precision",
        ax=None,
        curve_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the precision-recall curves of fitted detectors on the same data.

        Every detector scores ``X`` with ``score_samples``. To compare
        detectors that read different inputs, wrap each in a pipeline with
        its feature extractor, or compute the scores first and use
        :meth:`from_predictions`.

        Parameters
        ----------
        detectors : dict
            Names (legend entries) to fitted detectors (or pipelines ending
            in one).
        X : array-like of shape (n_samples, ...)
            Inputs to score, ID and OOD rows together.
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows.
        positive : {"id", "ood"}, default="id"
            The positive class: ``"id"`` for AUPR-In, ``"ood"`` for AUPR-Out.
        aupr_method : {"average_precision", "trapezoid"}, \
default="average_precision"
            How the area in the legend summarises each curve, as the metrics'
            ``method``.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_chance_level : bool, default=False
            Whether to draw the precision of a detector that ranks at random.
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axhline`` of the chance
            level.

        Returns
        -------
        display : OODPrecisionRecallDisplay
            The display, drawn.

        See Also
        --------
        OODPrecisionRecallDisplay.from_predictions : The same plot from
            scores.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> import numpy as np
        >>> from sklearn_ood.detectors import KNN, Mahalanobis
        >>> from sklearn_ood.plotting import OODPrecisionRecallDisplay
        >>> rng = np.random.default_rng(0)
        >>> X_train = rng.normal(size=(200, 2))
        >>> detectors = {
        ...     "Mahalanobis": Mahalanobis().fit(X_train),
        ...     "KNN": KNN(n_neighbors=5).fit(X_train),
        ... }
        >>> X = np.vstack([rng.normal(size=(50, 2)), rng.normal(3, 1, size=(50, 2))])
        >>> y = np.r_[np.zeros(50, dtype=int), -np.ones(50, dtype=int)]
        >>> display = OODPrecisionRecallDisplay.from_estimators(
        ...     detectors, X, y, positive="ood"
        ... )
        >>> display.prevalence
        0.5
        >>> plt.close("all")
        """
        caller = f"{cls.__name__}.from_estimators"
        _check_matplotlib(caller)
        return cls.from_predictions(
            y,
            _scores_of_detectors(detectors, X, caller),
            positive=positive,
            aupr_method=aupr_method,
            ax=ax,
            curve_kwargs=curve_kwargs,
            plot_chance_level=plot_chance_level,
            chance_level_kwargs=chance_level_kwargs,
        )

    @classmethod
    def from_predictions(
        cls,
        y,
        scores,
        *,
        name=None,
        positive="id",
        aupr_method="average_precision",
        ax=None,
        curve_kwargs=None,
        plot_chance_level=False,
        chance_level_kwargs=None,
    ):
        """Plot the precision-recall curves of several detectors from scores.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            Labels: ``>= 0`` for ID rows, ``< 0`` (e.g. -1) for OOD rows;
            both must be present.
        scores : dict or array-like of shape (n_samples,)
            Names (legend entries) to each detector's finite scores on the
            rows of ``y``, higher for more in-distribution; or one array of
            scores.
        name : str, default=None
            Name of the curve when ``scores`` is one array; with a dict, its
            keys are the names.
        positive : {"id", "ood"}, default="id"
            The positive class: ``"id"`` for AUPR-In
            (:func:`sklearn_ood.metrics.aupr_in`), ``"ood"`` for AUPR-Out
            (:func:`sklearn_ood.metrics.aupr_out`).
        aupr_method : {"average_precision", "trapezoid"}, \
default="average_precision"
            How the area in the legend summarises each curve, as the metrics'
            ``method``.
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure and axes are created when ``None``.
        curve_kwargs : dict or list of dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the curves: one
            dict for all curves, or one per curve.
        plot_chance_level : bool, default=False
            Whether to draw the precision of a detector that ranks at random.
        chance_level_kwargs : dict, default=None
            Keyword arguments for matplotlib's ``axhline`` of the chance
            level.

        Returns
        -------
        display : OODPrecisionRecallDisplay
            The display, drawn.

        See Also
        --------
        OODPrecisionRecallDisplay.from_estimators : The same plot from fitted
            detectors.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from sklearn_ood.plotting import OODPrecisionRecallDisplay
        >>> y = [0, 1, -1, 2, -1]
        >>> scores = [0.9, 0.8, 0.7, 0.6, 0.1]
        >>> display = OODPrecisionRecallDisplay.from_predictions(
        ...     y, scores, name="MSP", aupr_method="trapezoid"
        ... )
        >>> display.lines_[0].get_label()
        'MSP (AUPR-In = 0.903)'
        >>> plt.close("all")
        """
        caller = f"{cls.__name__}.from_predictions"
        _check_matplotlib(caller)
        positive = _check_option("positive", positive, _POSITIVE)
        aupr_method = _check_option("aupr_method", aupr_method, _AUPR_METHODS)
        labels, is_id, named = _named_scores(y, scores, name, caller)
        # OOD positive ranks by the outlier score -scores, as aupr_out does
        is_positive, sign, area_of = (
            (is_id, 1.0, aupr_in) if positive == "id" else (~is_id, -1.0, aupr_out)
        )
        precisions, recalls, areas = [], [], []
        for curve_scores in named.values():
            precision, recall, _ = precision_recall_curve(
                is_positive, sign * curve_scores
            )
            precisions.append(precision)
            recalls.append(recall)
            areas.append(area_of(labels, curve_scores, method=aupr_method))
        display = cls(
            precision=precisions,
            recall=recalls,
            aupr=areas,
            name=list(named),
            positive=positive,
            aupr_method=aupr_method,
            prevalence=float(np.mean(is_positive)),
        )
        return display.plot(
            ax=ax,
            curve_kwargs=curve_kwargs,
            plot_chance_level=plot_chance_level,
            chance_level_kwargs=chance_level_kwargs,
        )
