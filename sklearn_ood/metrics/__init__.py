"""Metrics for OOD detection, and scorers for scikit-learn model selection.

All functions take ``y_true`` -- integer labels, ``>= 0`` (the class) for
in-distribution (ID) samples and ``< 0`` (e.g. -1) for out-of-distribution
(OOD) samples -- and ``scores`` in the detectors' direction: higher for more
in-distribution, as returned by ``score_samples``.

Higher is better: :func:`auroc`, :func:`aupr_in`, :func:`aupr_out`.
Lower is better: :func:`fpr_at_tpr` (FPR95), :func:`detection_error`.
:func:`ood_report` computes all of them; :func:`ood_scorer` turns any of
them into a scorer for ``GridSearchCV`` / ``cross_validate`` (lower-is-better
metrics negated and named ``neg_...``, as scikit-learn's ``neg_log_loss``:
``"neg_fpr95"``, ``"neg_fpr_at_tpr"``, ``"neg_detection_error"``).
Cross-validate mixed ID/OOD data with ``StratifiedKFold(n_splits,
shuffle=True)`` so that every fold holds OOD samples.
"""

from sklearn_ood.metrics._ranking import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    ood_report,
)
from sklearn_ood.metrics._scorer import get_ood_scorer_names, ood_scorer

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_error",
    "fpr_at_tpr",
    "get_ood_scorer_names",
    "ood_report",
    "ood_scorer",
]
