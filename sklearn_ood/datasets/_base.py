"""Helpers shared by the in-memory OOD loaders: argument checks, subsets, Bunch.

Nothing here is public API.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import Bunch


def _check_id_classes(id_classes, n_classes, *, what="classes"):
    """Validate ``id_classes`` against the labels ``0 .. n_classes - 1``.

    Parameters
    ----------
    id_classes : array-like of int
        The in-distribution classes, as original labels.
    n_classes : int
        Number of classes of the dataset.
    what : str, default="classes"
        How the classes are called in the messages ("digits", ...).

    Returns
    -------
    id_classes : tuple of int
        The classes as plain Python ints, in the order given (the order that
        defines ``target``).
    """
    arr = np.asarray(id_classes)
    if arr.ndim != 1:
        raise ValueError(
            f"id_classes must be a 1-D sequence of class labels, e.g. (0, 1, 2); "
            f"got {id_classes!r}."
        )
    if arr.size == 0:
        raise ValueError(
            "id_classes is empty; give at least one in-distribution class, "
            "e.g. id_classes=(0, 1, 2, 3, 4)."
        )
    # bool is an integer subtype in numpy's eyes but never a class label here
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"id_classes must hold integer class labels in 0..{n_classes - 1}; "
            f"got {id_classes!r}."
        )
    bad = sorted({int(c) for c in arr if not 0 <= c < n_classes})
    if bad:
        raise ValueError(
            f"id_classes holds {bad}, which are not {what} of this dataset; valid "
            f"labels are 0..{n_classes - 1}."
        )
    values, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        dup = [int(v) for v in values[counts > 1]]
        raise ValueError(
            f"id_classes must be distinct; {dup} appear more than once in "
            f"{id_classes!r}."
        )
    if values.size == n_classes:
        raise ValueError(
            f"id_classes holds all {n_classes} {what}, which leaves none held out "
            "for the near-OOD set; leave at least one class out."
        )
    return tuple(int(c) for c in arr)


def _check_optional_count(value, name):
    """``None`` or a positive int; the error says which argument is wrong."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be None or a positive int, got {value!r}.")
    return int(value)


def _stratified_subset(y, n_samples, rng, *, name, what):
    """Indices of a seeded, class-stratified subset of ``n_samples`` rows.

    The indices are returned sorted, so that a subset keeps the file order
    and ``n_samples >= len(y)`` returns every row.

    Parameters
    ----------
    y : ndarray of shape (n_rows,)
        Class labels of the rows to draw from.
    n_samples : int or None
        Rows wanted; ``None`` keeps all of them.
    rng : numpy.random.RandomState
        Source of randomness.
    name : str
        The user's argument (``"n_train"``), for the error message.
    what : str
        What is drawn ("ID train rows"), for the error message.

    Returns
    -------
    indices : ndarray of int64
    """
    n_rows = y.shape[0]
    if n_samples is None or n_samples >= n_rows:
        if n_samples is not None and n_samples > n_rows:
            raise ValueError(
                f"{name}={n_samples} is larger than the {n_rows} {what} available; "
                f"pass {name}=None to keep them all, or a smaller number."
            )
        return np.arange(n_rows, dtype=np.int64)
    classes, y_idx = np.unique(y, return_inverse=True)
    if n_samples < classes.size:
        raise ValueError(
            f"{name}={n_samples} cannot hold one row of each of the {classes.size} "
            f"classes of the {what}; pass at least {name}={classes.size}."
        )
    # Largest-remainder allocation: every class gets its share of n_samples,
    # the rounding leftovers go to the largest fractional parts, so the class
    # proportions differ from the full set's by less than one row each.
    counts = np.bincount(y_idx)
    exact = counts * (n_samples / n_rows)
    alloc = np.maximum(np.floor(exact).astype(np.int64), 1)
    alloc = np.minimum(alloc, counts)
    while alloc.sum() > n_samples:
        # The floor at one row pushed the total over: take back from a class
        # that keeps at least one row (one exists, as n_samples >= n_classes).
        excess = np.where(alloc > 1, alloc - exact, -np.inf)
        alloc[np.argmax(excess)] -= 1
    remainder = exact - alloc
    while alloc.sum() < n_samples:
        remainder = np.where(alloc < counts, remainder, -np.inf)
        k = int(np.argmax(remainder))
        alloc[k] += 1
        remainder[k] -= 1.0
    picked = [
        rng.choice(np.flatnonzero(y_idx == k), size=int(alloc[k]), replace=False)
        for k in range(classes.size)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _stratified_split(y, test_size, rng, *, what):
    """Seeded, class-stratified train/test split of the rows of ``y``.

    Every class is split in the proportion ``test_size`` (rounded to whole
    rows, at least one row on each side).

    Returns
    -------
    train, test : ndarray of int64
        Sorted, disjoint row indices that cover every row.
    """
    train, test = [], []
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        if rows.size < 2:
            raise ValueError(
                f"class {cls!r} of the {what} has {rows.size} row; a train/test "
                "split needs at least two rows per class."
            )
        n_test = int(np.clip(np.round(test_size * rows.size), 1, rows.size - 1))
        rows = rng.permutation(rows)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return (
        np.sort(np.concatenate(train)).astype(np.int64),
        np.sort(np.concatenate(test)).astype(np.int64),
    )


def _to_unit_images(images, scale):
    """``images / scale`` as float32 of shape (n, 1, H, W) (one channel)."""
    images = np.asarray(images)
    out = images.astype(np.float32) / np.float32(scale)
    return np.ascontiguousarray(out.reshape(images.shape[0], 1, *images.shape[1:]))


def _describe_sets(bunch):
    """The lines of DESCR that list the sets of an OOD Bunch and their sizes."""
    lines = [
        f"- ID train (data, target): {bunch.data.shape[0]} images",
        f"- ID test (data_test, target_test): {bunch.data_test.shape[0]} images",
    ]
    for name, x in bunch.ood.items():
        lines.append(f"- OOD '{name}' ({bunch.ood_kind[name]}): {x.shape[0]} images")
    return "\n".join(lines)


def _ood_bunch(
    *, data, target, data_test, target_test, ood, ood_kind, id_classes, names, descr
):
    """The Bunch every OOD loader returns, in one layout.

    ``names`` are the names of all the dataset's classes; ``target_names``
    keeps those of ``id_classes``, in their order, so that
    ``target_names[target]`` names each ID row. ``descr`` is formatted with
    the set sizes (``{sets}``).
    """
    bunch = Bunch(
        data=data,
        target=target.astype(np.int64),
        data_test=data_test,
        target_test=target_test.astype(np.int64),
        ood=ood,
        ood_kind=ood_kind,
        id_classes=tuple(id_classes),
        target_names=np.asarray([names[c] for c in id_classes]),
    )
    bunch.DESCR = descr.format(sets=_describe_sets(bunch))
    return bunch


def _index_into(labels, id_classes):
    """Map original labels of ID rows to their index in ``id_classes``."""
    size = max(int(labels.max()) if labels.size else 0, max(id_classes)) + 1
    lookup = np.full(size, -1, dtype=np.int64)
    lookup[list(id_classes)] = np.arange(len(id_classes))
    return lookup[labels]
