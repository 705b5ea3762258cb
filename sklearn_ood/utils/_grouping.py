"""Per-group sums of rows (class templates, class patterns)."""

import numpy as np


def group_sums(values, groups):
    """Per-group row sums (float64) and counts of ``values``, groups ascending.

    Returns ``(unique_groups, sums, counts)``. The rows are sorted by group
    once, then each group's contiguous block is reduced along axis 0 with a
    float64 accumulator: a loop over groups, not rows, and several times
    faster than ``np.add.reduceat`` (slow along axis 0) or ``np.add.at``.
    """
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    values = values[order]
    ends = np.cumsum(counts)
    sums = np.empty((len(unique),) + values.shape[1:])
    for i, (start, end) in enumerate(zip(ends - counts, ends)):
        np.add.reduce(values[start:end], axis=0, dtype=np.float64, out=sums[i])
    return unique, sums, counts
