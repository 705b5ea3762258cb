"""ROC curves of several detectors on one axis, ID as the positive class."""

import numpy as np
from sklearn.metrics import roc_curve

from sklearn_ood.metrics import auroc
from sklearn_ood.plotting._common import (
    _as_curves,
    _as_list,
    _axes,
    _check_bool,
    _check_matplotlib,
    _check_target_tpr,
    _curve_kwargs,
    _fpr_key,
    _legend_label,
    _named_scores,
    _plot_curves,
    _scores_of_detectors,
    _set_unit_square,
    _style,
)


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
