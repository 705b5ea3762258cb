"""Exact order statistics: of all entries of a matrix, and of each of its rows.

ReAct clips at a percentile of *all* entries of the fit matrix. NumPy's
``np.percentile`` copies the matrix (to float64 for float32 input) and
partitions every entry; :func:`percentile_of_entries` gives the same value
from the two neighbouring order statistics, selected in one pass without a
copy.

ASH and SCALE rank the entries of each row: :func:`rank_rows` selects each
row's ``k``-th largest entry, :func:`row_sums` adds up the whole row and its
entries at or above that threshold; :func:`shape_top_k` (ASH) and
:func:`top_k_ratios` (SCALE) run them over cache-sized chunks of rows
(:func:`cache_row_chunks`, a speed choice bounded by ``working_memory`` too).

Selection is exact in any floating dtype (a selected value is one of the
entries), so float32 input is ranked in float32; sums accumulate in float64.
"""

import math

import numpy as np
from sklearn.utils import gen_batches

from sklearn_ood.utils import _chunking
from sklearn_ood.utils._chunking import chunk_n_rows


def cache_row_chunks(X):
    """Row slices of ``X`` of about ``CACHE_BLOCK_BYTES`` each.

    Per-row work over such a chunk (ranks, masks, sums) stays in cache. The
    chunks also stay within ``sklearn.get_config()["working_memory"]``, when
    a user sets it smaller than the cache block.
    """
    row_bytes = X.itemsize * max(1, X.shape[1])
    in_cache = max(1, _chunking.CACHE_BLOCK_BYTES // row_bytes)
    step = chunk_n_rows(row_bytes, max_n_rows=in_cache)
    return list(gen_batches(X.shape[0], step))


# ------------------------------------------------- all entries of a matrix
def order_statistics_between(X, rank, low, high):
    """Entries ``rank`` and ``rank + 1`` of the sorted entries of ``X``, or None.

    One pass over ``X`` in row chunks counts the entries below ``low`` and
    equal to it, and collects those in ``(low, high]``; when both ranks fall
    in ``[low, high]`` the answer is among them, else the bounds missed and
    the result is None. Ties at ``low`` (e.g. the zeros of ReLU features) are
    counted, not collected.
    """
    below = at_low = 0
    inside = []
    for rows in cache_row_chunks(X):
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


def order_statistics(X, rank, sample_size=65_536):
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
    found = order_statistics_between(X, rank, low, high)
    if found is None:
        flat = np.partition(X.reshape(-1), [rank, rank + 1])
        found = flat[rank], flat[rank + 1]
    return found


def percentile_of_entries(X, q):
    """``np.percentile(X, q)`` over all entries of ``X``, computed in float64.

    Equal to ``np.percentile(X.astype(np.float64), q)`` (NumPy's linear
    interpolation) for float32 and float64 ``X``, without the float64 copy
    and the partition of all entries: only the two neighbouring order
    statistics are selected (:func:`order_statistics`), in the dtype of
    ``X``, where they are exact, and interpolated in float64 with NumPy's
    formula.
    """
    n = X.size
    virtual = (n - 1) * np.true_divide(q, 100)
    if virtual >= n - 1:
        return float(X.max())
    rank = math.floor(virtual)
    gamma = float(virtual - rank)
    a, b = (float(v) for v in order_statistics(X, rank))
    # NumPy's _lerp: from the nearer end, so that gamma = 0 and 1 are exact.
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


# ------------------------------------------------------------ each row
def n_kept(n_features, percentile):
    """``k = n - round(n * percentile / 100)``, at least 1."""
    return max(1, n_features - int(np.round(n_features * percentile / 100.0)))


def rank_rows(chunk, k, scratch):
    """Partition a copy of each row around its ``k``-th largest entry.

    Returns the partitioned copy (written to ``scratch``, an array of at least
    as many rows, reused from chunk to chunk) and the per-row threshold
    :math:`t`, the ``k``-th largest entry. The ranking runs in the dtype of
    ``chunk``: :math:`t` is one of the row's entries, exact in any dtype, so
    float32 rows give the threshold of their float64 cast, about 7 times
    faster.
    """
    n = chunk.shape[1]
    part = scratch[: len(chunk)]
    np.copyto(part, chunk)
    part.partition(n - k, axis=1)
    return part, part[:, n - k].copy()


def row_sums(part, threshold, k):
    """Float64 sums :math:`s_1` of all entries and :math:`s_2` of those >= t.

    ``part`` is a chunk partitioned by :func:`rank_rows`: the ``k`` largest
    entries of a row sit at its end. Entries left of them equal to
    :math:`t` are kept too, so that without ties :math:`s_2` is the sum of
    the ``k`` largest entries and with ties it does not depend on the order
    of the features. Ties at :math:`t = 0` add nothing.
    """
    n = part.shape[1]
    total = part.sum(axis=1, dtype=np.float64)
    kept = part[:, n - k :].sum(axis=1, dtype=np.float64)
    if k < n:
        # Only a row whose largest pruned entry equals t has ties.
        lower = part[:, : n - k]
        tied = np.flatnonzero((lower.max(axis=1) == threshold) & (threshold != 0))
        if tied.size:
            t = threshold[tied, np.newaxis]
            kept[tied] += t[:, 0] * np.count_nonzero(lower[tied] == t, axis=1)
    return total, kept


def sum_ratio(total, kept_total):
    """Per-row ``s1 / s2``; 0 where ``s2 <= 0``."""
    return np.divide(total, kept_total, out=np.zeros_like(total), where=kept_total > 0)


def _chunks_and_scratch(X):
    """Cache-sized row chunks of ``X`` and one C-ordered scratch chunk."""
    chunks = cache_row_chunks(X)
    return chunks, np.empty_like(X[chunks[0]], order="C")


def shape_top_k(X, k, variant, out):
    r"""ASH's shaping of each row of ``X`` around its ``k``-th largest entry t.

    Writes into ``out`` (an array like ``X``) the pruned rows ``x [x >= t]``
    (``variant`` "p" or "s") or the 0/1 mask of the kept *non-zero* entries
    ``[x >= t, x != 0]`` ("b": zeros tied with or above t carry no pattern),
    exactly, in the dtype of ``X``. Returns the float64 per-row factor that
    multiplies the logits of ``out``: None for "p", the exponent
    :math:`s_1 / s_2` for "s" (0 where :math:`s_2 \le 0`), the fill value
    :math:`s_1 / m` for "b" (:math:`m` kept non-zero entries; 0 where none).
    """
    factor = None if variant == "p" else np.empty(len(X))
    chunks, scratch = _chunks_and_scratch(X)
    for rows in chunks:
        chunk = X[rows]
        part, threshold = rank_rows(chunk, k, scratch)
        kept = np.greater_equal(chunk, threshold[:, np.newaxis], out=out[rows])
        if variant == "b":
            low = np.flatnonzero(threshold <= 0)  # zeros tie with t or exceed it
            if low.size:
                kept[low] *= chunk[low] != 0
            total = part.sum(axis=1, dtype=np.float64)
            count = np.count_nonzero(kept, axis=1)
            factor[rows] = np.divide(
                total, count, out=np.zeros_like(total), where=count > 0
            )
            continue
        # x [x >= t]; a pruned negative entry becomes -0.0, which adds
        # nothing to a product.
        np.multiply(kept, chunk, out=kept)
        if variant == "s":
            factor[rows] = sum_ratio(*row_sums(part, threshold, k))
    return factor


def top_k_ratios(X, k):
    """Per-row float64 :math:`s_1 / s_2` (SCALE's exponent), 0 where s2 <= 0."""
    ratio = np.empty(len(X))
    chunks, scratch = _chunks_and_scratch(X)
    for rows in chunks:
        part, threshold = rank_rows(X[rows], k, scratch)
        ratio[rows] = sum_ratio(*row_sums(part, threshold, k))
    return ratio
