"""The label convention shared by detectors and metrics.

Labels are integers: ``y >= 0`` is the class of an in-distribution row,
``y < 0`` (usually -1) marks an out-of-distribution row.
"""

import numpy as np
from sklearn.utils.validation import column_or_1d

__all__ = ["check_ood_labels"]


def check_ood_labels(y, n_samples=None, *, name="y"):
    """Validate OOD-convention labels and return them as an int64 array.

    Integer arrays pass as they are; float or object arrays pass when every
    value is a finite whole number (``1.0``). Booleans are refused, because
    ``True``/``False`` would silently read as the ID classes 1 and 0.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels to check.
    n_samples : int, default=None
        Number of rows of the matching data; checked when given.
    name : str, default="y"
        Name used in error messages.

    Returns
    -------
    y : ndarray of shape (n_samples,), dtype int64

    Raises
    ------
    ValueError
        On a length mismatch, booleans, NaN, or non-integer values (the
        message includes "Unknown label type" as scikit-learn's checks expect).

    Examples
    --------
    >>> from sklearn_ood.base import check_ood_labels
    >>> check_ood_labels([3.0, -1.0, 7.0])
    array([ 3, -1,  7])
    """
    y = np.asarray(y)
    if y.ndim != 1:
        y = column_or_1d(y, warn=True)
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {y.shape[0]} labels but X has {n_samples} rows; they must "
            "match."
        )
    if y.dtype.kind == "b":
        raise ValueError(
            f"{name} must hold integer labels, got a boolean array. To pass an "
            "'is in-distribution' mask, use np.where(mask, 0, -1)."
        )
    if y.dtype.kind in "iu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "O":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            pass  # strings and other objects: reported below
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError(
                f"{name} contains NaN or infinity; it must hold integer labels."
            )
        integral = y == np.round(y)
        if integral.all():
            return y.astype(np.int64)
        detail = f"non-integer value(s) such as {y[~integral][0]!r}"
    else:
        detail = f"an array of dtype {y.dtype}"
    raise ValueError(
        f"Unknown label type: {name} must hold integer labels, the class (>= 0) "
        "of in-distribution rows and a negative value (e.g. -1) for "
        f"out-of-distribution rows; got {detail}."
    )
