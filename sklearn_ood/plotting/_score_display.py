"""ID vs OOD score histograms with the detector's threshold."""

import numpy as np

from sklearn_ood.plotting._common import (
    _ID_LABEL,
    _OOD_LABEL,
    _as_scores,
    _axes,
    _check_bool,
    _check_labels,
    _check_matplotlib,
    _check_option,
    _check_scores_for,
    _check_threshold,
    _final_estimator,
    _score_samples,
    _style,
)


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
