"""The label convention shared by detectors and metrics.

Labels are integers: ``y >= 0`` is the class of an in-distribution row,
``y < 0`` (usually -1) marks an out-of-distribution row.
"""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils.validation import column_or_1d

__all__ = ["check_ood_labels"]

_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)
_TEXT_HINT = (
    " Labels given as text are not read as numbers; convert them first, e.g. "
    "np.asarray(y).astype(int)."
)


def _boolean_labels(name, what):
    return ValueError(
        f"{name} must hold integer labels, got {what}. To pass an 'is "
        "in-distribution' mask, use np.where(mask, 0, -1)."
    )


def _non_finite_labels(name):
    return ValueError(f"{name} contains NaN or infinity; it must hold integer labels.")


def _unknown_label_type(name, detail, hint=""):
    return ValueError(
        f"Unknown label type: {name} must hold integer labels, the class (>= 0) "
        "of in-distribution rows and a negative value (e.g. -1) for "
        f"out-of-distribution rows; got {detail}.{hint}"
    )


def _out_of_int64_range(name, value):
    return ValueError(
        f"{name} holds the label {value}, which does not fit in a signed 64-bit "
        f"integer: labels must lie in [{_INT64_MIN}, {_INT64_MAX}], and an "
        "unsigned label >= 2**63 would otherwise wrap around to a negative (OOD) "
        "label. Map the ID classes to small integers first (e.g. with "
        "np.unique(..., return_inverse=True)) and mark OOD rows with -1."
    )


def _object_labels(y, name):
    """Int64 labels from an object array whose elements are all real numbers.

    Python and NumPy ints and floats are accepted (floats when finite and
    whole); booleans, strings, bytes and any other object are refused, so
    that the text ``"-1"`` is never read as an OOD label. Python ints are
    range-checked exactly, without a detour through float64.
    """
    labels = []
    for value in y:
        if isinstance(value, (bool, np.bool_)):
            raise _boolean_labels(name, f"an object array holding {value!r}")
        if not isinstance(value, Real):
            hint = _TEXT_HINT if isinstance(value, (str, bytes)) else ""
            raise _unknown_label_type(
                name,
                f"an object array holding the {type(value).__name__} {value!r}",
                hint,
            )
        if isinstance(value, Integral):
            label = int(value)
        else:
            number = float(value)
            if not math.isfinite(number):
                raise _non_finite_labels(name)
            if number != round(number):
                raise _unknown_label_type(
                    name, f"non-integer value(s) such as {number!r}"
                )
            label = int(number)
        if not _INT64_MIN <= label <= _INT64_MAX:
            raise _out_of_int64_range(name, label)
        labels.append(label)
    return np.array(labels, dtype=np.int64)


def check_ood_labels(y, n_samples=None, *, name="y"):
    """Validate OOD-convention labels and return them as an int64 array.

    Integer arrays pass as they are, when every value fits in int64; float
    arrays pass when every value is a finite whole number (``1.0``) in the
    int64 range. Object arrays pass when every element is such a number (a
    Python or NumPy int or float). Booleans are refused, because
    ``True``/``False`` would silently read as the ID classes 1 and 0, and so
    is text (``"-1"``), even when it reads as a number.

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
        The labels, unchanged in value.

    Raises
    ------
    ValueError
        On a length mismatch, booleans, NaN, non-integer values, text, or a
        value outside the int64 range (such as a uint64 label >= 2**63). The
        message for a wrong label type includes "Unknown label type", as
        scikit-learn's estimator checks expect.

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
        raise _boolean_labels(name, "a boolean array")
    if y.dtype.kind == "i":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "u":
        # only uint64 can exceed int64; astype would wrap such values to < 0
        if y.dtype.itemsize >= 8 and y.shape[0] and y.max() > _INT64_MAX:
            raise _out_of_int64_range(name, int(y.max()))
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "O":
        return _object_labels(y, name)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise _non_finite_labels(name)
        integral = y == np.round(y)
        if not integral.all():
            raise _unknown_label_type(
                name, f"non-integer value(s) such as {y[~integral][0].item()!r}"
            )
        # the cast to int64 would silently wrap any value outside
        # [-2**63, 2**63) (both bounds are exact in float32 and float64)
        outside = (y < -(2.0**63)) | (y >= 2.0**63)
        if outside.any():
            raise _out_of_int64_range(name, int(y[outside][0]))
        return y.astype(np.int64)
    hint = _TEXT_HINT if y.dtype.kind in "US" else ""
    raise _unknown_label_type(name, f"an array of dtype {y.dtype}", hint)
