"""Validation and drawing helpers shared by the displays."""

from collections.abc import Mapping
from numbers import Real

import numpy as np
from sklearn.pipeline import Pipeline

from sklearn_ood.base import check_ood_labels

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


def _plot_curves(ax, xs, ys, labels, curve_kwargs, defaults):
    from matplotlib.lines import Line2D

    lines = []
    for x, y, label, user in zip(xs, ys, labels, curve_kwargs):
        kwargs = _style({**defaults, "label": label}, user, Line2D)
        lines.extend(ax.plot(x, y, **kwargs))
    return lines
