"""Precision-recall curves of several detectors (AUPR-In / AUPR-Out)."""

import numpy as np
from sklearn.metrics import precision_recall_curve

from sklearn_ood.metrics import aupr_in, aupr_out
from sklearn_ood.plotting._common import (
    _AUPR_METHODS,
    _POSITIVE,
    _as_curves,
    _as_list,
    _axes,
    _check_bool,
    _check_matplotlib,
    _check_option,
    _curve_kwargs,
    _legend_label,
    _named_scores,
    _plot_curves,
    _scores_of_detectors,
    _set_unit_square,
    _style,
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
