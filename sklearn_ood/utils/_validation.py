"""Checks of logits, of labels that index logit columns, of score ranges, and
of the operands of float32 products."""

import numpy as np


def check_n_classes(X, name):
    """Refuse logits of a single class: their softmax is the constant 1.

    A binary classifier's ``decision_function`` (one column) is the case met
    in practice; the message shows how to give it two logit columns.
    """
    if X.shape[1] < 2:
        raise ValueError(
            f"{name} needs logits of at least 2 classes (one column per class); "
            f"got n_features = {X.shape[1]}. For the decision_function d of a "
            "binary classifier, pass np.column_stack([np.zeros_like(d), d]): "
            "its softmax is [1 - sigmoid(d), sigmoid(d)], the predict_proba of "
            "a logistic model (np.column_stack([-d, d]) has the softmax of 2 d)."
        )


def check_logit_labels(y, n_classes, name):
    """Refuse ID labels that do not index a logit column."""
    if y is not None and y.size and y.max() >= n_classes:
        raise ValueError(
            f"{name} reads a label as the index of its logit column, but y "
            f"contains label {int(y.max())} and X has only {n_classes} logit "
            f"columns; valid class labels are 0..{n_classes - 1} (negative "
            "labels mark out-of-distribution rows)."
        )


def check_score_range(scores, dtype, name, what="score"):
    """Return ``scores``, or raise ``ValueError`` where one is not a finite
    number of the output ``dtype`` (float32 scores of float32 input).

    For scores computed in float64 that grow with the features' scale: a
    silent ``inf`` (or NaN) would otherwise reach the user.
    """
    bad = ~(np.abs(scores) <= np.finfo(dtype).max)  # NaN, inf, beyond dtype
    if not bad.any():
        return scores
    rows = np.flatnonzero(bad)
    if np.dtype(dtype) != np.float64 and np.all(np.isfinite(scores)):
        detail = (
            "beyond the float32 range of the scores of float32 input; pass the "
            "features as float64 (X.astype(np.float64)) to get float64 scores"
        )
    else:
        detail = (
            "beyond the float64 range: the features are too large; rescale "
            "them, or reject rows with huge values before scoring"
        )
    raise ValueError(
        f"{name} cannot score {rows.size} row(s) (the first is row {rows[0]}): "
        f"their {what} is {detail}."
    )


def float32_path(X, *arrays):
    """Whether float32 ``X`` can be multiplied in float32 by ``arrays``: ``X``
    is float32 and every entry of ``arrays`` lies in the float32 range (their
    float32 copies are finite)."""
    if X.dtype != np.float32:
        return False
    big = np.finfo(np.float32).max
    return all(np.all(np.abs(a) <= big) for a in arrays)
