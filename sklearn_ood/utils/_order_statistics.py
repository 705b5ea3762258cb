"""Exact order statistics and row chunking for the activation-shaping detectors.

ReAct clips at a percentile of *all* entries of the fit matrix. NumPy's
``np.percentile`` copies the matrix (to float64 for float32 input) and
partitions every entry; :func:`_percentile_of_entries` gives the same value
from the two neighbouring order statistics, selected in one pass without a
copy. :func:`_row_blocks` splits rows into blocks of bounded size, for the
cache-sized chunks of the per-row work and the larger blocks of the product
with the head.
"""

import math

import numpy as np

# Per-row statistics (ranks, sums) run over smaller chunks that stay in cache.
_CACHE_BYTES = 1 << 19


def _row_blocks(X, max_bytes):
    """Slices of about equal numbers of rows, each at most ``max_bytes`` of X."""
    n_rows, row_bytes = X.shape[0], X.itemsize * max(1, X.shape[1])
    n_blocks = max(1, -(-n_rows * row_bytes // max_bytes))
    step = max(1, -(-n_rows // n_blocks))
    return [slice(start, start + step) for start in range(0, n_rows, step)]


def _order_statistics_between(X, rank, low, high):
    """Entries ``rank`` and ``rank + 1`` of the sorted entries of ``X``, or None.

    One pass over ``X`` in row chunks counts the entries below ``low`` and
    equal to it, and collects those in ``(low, high]``; when both ranks fall
    in ``[low, high]`` the answer is among them, else the bounds missed and
    the result is None. Ties at ``low`` (e.g. the zeros of ReLU features) are
    counted, not collected.
    """
    below = at_low = 0
    inside = []
    for rows in _row_blocks(X, _CACHE_BYTES):
        chunk = X[rows]
        keep = chunk >= low
        n_from_low = np.count_nonzero(keep)
        below += chunk.size - n_from_low
        np.greater(chunk, low, out=keep)
        at_low += n_from_low - np.count_nonzero(keep)
        keep &= chunk <= high
        inside.append(chunk[keep])
    inside = np.concatenate(inside)
    values = []
    for r in (rank, rank + 1):
        r -= below
        if r < 0 or r >= at_low + len(inside):
            return None
        values.append(r)
    if values[0] >= at_low or values[1] >= at_low:
        kth = [r - at_low for r in values if r >= at_low]
        inside.partition(kth)
    return tuple(low if r < at_low else inside[r - at_low] for r in values)


def _order_statistics(X, rank, sample_size=65_536):
    """Entries ``rank`` and ``rank + 1`` of the sorted entries of ``X``, exactly.

    Without copying ``X``: the two entries are found between bounds read off
    a seeded random sample of ``sample_size`` entries, six standard
    deviations of the sample's rank on either side (a miss, then a partition
    of a copy, has a probability of about 1e-9). Small arrays are
    partitioned directly.
    """
    n = X.size
    if n <= 4 * sample_size:
        flat = np.partition(X.reshape(-1), [rank, rank + 1])
        return flat[rank], flat[rank + 1]
    rng = np.random.default_rng(0)
    sample = np.sort(
        X[
            rng.integers(X.shape[0], size=sample_size),
            rng.integers(X.shape[1], size=sample_size),
        ]
    )
    # Sample entries below X_(r): binomial with mean m r / n and standard
    # deviation at most sqrt(m) / 2.
    margin = 6.0 * math.sqrt(sample_size) / 2 + 16
    lo = math.floor(sample_size * rank / n - margin)
    hi = math.ceil(sample_size * (rank + 1) / n + margin)
    low = sample[lo] if lo >= 0 else -np.inf
    high = sample[hi] if hi < sample_size else np.inf
    found = _order_statistics_between(X, rank, low, high)
    if found is None:
        flat = np.partition(X.reshape(-1), [rank, rank + 1])
        found = flat[rank], flat[rank + 1]
    return found


def _percentile_of_entries(X, q):
    """``np.percentile(X, q)`` over all entries of ``X``, computed in float64.

    Equal to ``np.percentile(X.astype(np.float64), q)`` (NumPy's linear
    interpolation) for float32 and float64 ``X``, without the float64 copy
    and the partition of all entries: only the two neighbouring order
    statistics are selected (:func:`_order_statistics`), in the dtype of
    ``X``, where they are exact, and interpolated in float64 with NumPy's
    formula.
    """
    n = X.size
    virtual = (n - 1) * np.true_divide(q, 100)
    if virtual >= n - 1:
        return float(X.max())
    rank = math.floor(virtual)
    gamma = float(virtual - rank)
    a, b = (float(v) for v in _order_statistics(X, rank))
    # NumPy's _lerp: from the nearer end, so that gamma = 0 and 1 are exact.
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
