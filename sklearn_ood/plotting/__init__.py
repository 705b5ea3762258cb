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

from sklearn_ood.plotting._precision_recall_curve import OODPrecisionRecallDisplay
from sklearn_ood.plotting._roc_curve import OODRocCurveDisplay
from sklearn_ood.plotting._score_display import OODScoreDisplay

__all__ = ["OODPrecisionRecallDisplay", "OODRocCurveDisplay", "OODScoreDisplay"]
