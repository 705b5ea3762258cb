"""Exact k-nearest-neighbour search shared by the neighbour detectors.

Three interchangeable backends *select* the neighbours of each query:

* ``"numpy"``: blocked matrix products and ``np.argpartition``. Queries are
  taken ``batch_size`` rows at a time and the bank is split too, so that one
  block holds at most ``_BLOCK_ELEMENTS`` query-bank pairs; a running top-k
  is merged across bank blocks. A strided probe of the bank (about 64 k
  rows, at most one block) seeds each query's k candidates first, so every
  block only gathers the entries below the running k-th key instead of
  being partitioned whole (a block where too many are below still is).
  Memory never grows with ``n_bank * n_queries``: a KNN fit on 1,000,000 x
  256 float32 rows (1 GB) then scoring 2,000 queries peaked at 2.25 GiB of
  resident memory.
* ``"sklearn"``: :class:`sklearn.neighbors.NearestNeighbors` with
  ``algorithm="brute"`` (chunked by scikit-learn's ``working_memory``).
* ``"faiss"``: ``faiss.knn``, faiss's exact brute-force search, which reads
  the bank in place (float32) instead of copying it into an index.

``"auto"`` picks faiss when it imports, else NumPy. Every backend ranks by
a matrix product (the expansion ``||q||^2 + ||b||^2 - 2 q.b`` for
distances, ``q.b`` itself for inner products) and returns ``k + 8``
candidates; their distances (or inner products) are then recomputed in
float64 straight from the rows (``||q - b||`` from the difference, never a
square root of a cancelled expansion) and the best ``k`` kept. So all
backends return the same values, and a query equal to a bank row is at
distance exactly 0 from it. The result is the exact top-k unless more than
8 other bank rows tie with the k-th within the ranking's rounding (about
1e-7 relative in float32).
"""

import functools

import numpy as np
from sklearn.utils import gen_batches

__all__ = [
    "BACKENDS",
    "kneighbors",
    "normalize_rows",
    "resolve_backend",
    "squared_row_norms",
]

BACKENDS = ("auto", "numpy", "sklearn", "faiss")

# Query-bank pairs in one block of the NumPy backend: 2**24 float32 scores
# (64 MiB) plus the int64 indices of np.argpartition (128 MiB).
_BLOCK_ELEMENTS = 2**24
# Elements of the (rows, k, n_features) float64 array used to refine values.
_REFINE_ELEMENTS = 2**22
# Rows per chunk for row-wise preprocessing (norms).
_ROW_CHUNK = 8192
# Entries per float64 chunk of normalize_rows (4 MiB: stays in cache).
_NORMALIZE_ELEMENTS = 2**19
# Bank rows per neighbour in the NumPy backend's probe: the k-th key of the
# probe bounds a block's share of candidates to about k * width / probe rows.
_PROBE_PER_K = 64
# Candidates fetched beyond k, then re-ranked by their exact values: the
# ranking expansion loses precision (about 1e-4 in a float32 distance near
# 0), so a bank row equal to the query could tie with a row a hair away.
_EXTRA_CANDIDATES = 8
# Queries handed at once to faiss and scikit-learn, which bound their own
# memory by blocking internally and are faster on large query batches.
_LIBRARY_BATCH = 8192


@functools.cache
def _import_faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_backend(backend):
    """Name of the backend that ``backend`` stands for.

    ``"auto"`` is ``"faiss"`` when faiss imports, else ``"numpy"``.

    Raises
    ------
    ImportError
        If ``backend="faiss"`` and faiss is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "auto":
        return "faiss" if _import_faiss() is not None else "numpy"
    if backend == "faiss" and _import_faiss() is None:
        raise ImportError(
            "backend='faiss' needs the faiss package (pip install faiss-cpu); "
            "backend='numpy' or 'sklearn' give the same exact search without it."
        )
    return backend


def squared_row_norms(X):
    """``||x_i||^2`` of each row in float64, a chunk of rows at a time."""
    out = np.empty(X.shape[0])
    for rows in gen_batches(X.shape[0], _ROW_CHUNK):
        chunk = X[rows].astype(np.float64)
        out[rows] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def normalize_rows(X, scale=None, dtype=None):
    """Rows divided by their L2 norm (times ``scale``), computed in float64.

    Zero rows stay zero. The result has ``dtype`` (default: ``X``'s).
    """
    out = np.empty(X.shape, dtype=X.dtype if dtype is None else dtype)
    # Squares of float64 entries below 1e-154 or above 1e154 under- or
    # overflow, and the row would not come out of unit length: such input is
    # divided by its largest entry first. Squares of float32 entries cannot
    # leave the float64 range, so they skip that pass.
    rescale = X.dtype != np.float32
    step = max(1, _NORMALIZE_ELEMENTS // max(X.shape[1], 1))
    for rows in gen_batches(X.shape[0], step):
        chunk = X[rows].astype(np.float64)
        if rescale and chunk.shape[1]:
            peaks = np.abs(chunk).max(axis=1)
            chunk /= np.where(peaks > 0, peaks, 1.0)[:, None]
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        factor = 1.0 / np.where(norms > 0, norms, 1.0)
        if scale is not None:
            factor *= scale[rows]
        chunk *= factor[:, None]
        out[rows] = chunk
    return out


# ------------------------------------------------------------------ backends
def _block_top_k(key, k, start):
    """The k smallest keys of each row of a block, with their bank rows."""
    idx = np.arange(start, start + key.shape[1])
    if key.shape[1] <= k:
        return key, np.broadcast_to(idx, key.shape)
    part = np.argpartition(key, k - 1, axis=1)[:, :k]
    return np.take_along_axis(key, part, axis=1), idx[part]


def _below_threshold(key, threshold, start):
    """Keys of each row below its threshold, padded with +inf; None if many.

    Once k candidates are known, a new block only matters where it beats a
    row's current k-th key. Those entries are few, and gathering them is
    much cheaper than partitioning the whole block.
    """
    # flatnonzero then divmod: 2-D np.nonzero is ~40x slower on a sparse mask.
    rows, cols = np.divmod(np.flatnonzero(key < threshold[:, None]), key.shape[1])
    counts = np.bincount(rows, minlength=key.shape[0])
    width = int(counts.max()) if rows.size else 0
    if width > key.shape[1] // 4:
        return None
    slots = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
    out_key = np.full((key.shape[0], width), np.inf, dtype=key.dtype)
    out_idx = np.zeros((key.shape[0], width), dtype=np.int64)
    out_key[rows, slots] = key[rows, cols]
    out_idx[rows, slots] = cols + start
    return out_key, out_idx


def _numpy_searcher(bank, metric):
    offsets = None
    if metric == "l2":
        offsets = squared_row_norms(bank).astype(bank.dtype)

    def keys(scaled, cols):
        key = scaled @ bank[cols].T
        if offsets is not None:
            key += offsets[cols]
        return key

    def search(queries, k):
        # Rank by ||b||^2 - 2 q.b (l2; ||q||^2 is constant per query) or by
        # -q.b (ip): smaller is better for both.
        n_q, n_bank = queries.shape[0], bank.shape[0]
        scaled = queries * (-2 if metric == "l2" else -1)
        width = max(k, _BLOCK_ELEMENTS // max(n_q, 1))
        best_key = np.empty((n_q, 0), dtype=bank.dtype)
        best_idx = np.empty((n_q, 0), dtype=np.int64)
        # A strided probe of about _PROBE_PER_K * k bank rows gives every row
        # k candidates before the first block: the blocks then only gather
        # the few entries below the running k-th key instead of partitioning
        # whole blocks (the probe's rows are masked out of the blocks).
        # No larger than a block, so that memory stays bounded by one block.
        stride = n_bank // min(_PROBE_PER_K * k, width)
        if stride > 1 and n_bank > width:
            probe = slice(0, n_bank, stride)
            best_key, best_idx = _block_top_k(keys(scaled, probe), k, 0)
            best_idx = best_idx * stride
        for cols in gen_batches(n_bank, width):
            key = keys(scaled, cols)
            if stride > 1 and n_bank > width:
                key[:, (-cols.start) % stride :: stride] = np.inf
            found = None
            if best_key.shape[1] == k:
                found = _below_threshold(key, best_key.max(axis=1), cols.start)
            if found is None:
                found = _block_top_k(key, k, cols.start)
            best_key = np.concatenate([best_key, found[0]], axis=1)
            best_idx = np.concatenate([best_idx, found[1]], axis=1)
            if best_key.shape[1] > k:
                part = np.argpartition(best_key, k - 1, axis=1)[:, :k]
                best_key = np.take_along_axis(best_key, part, axis=1)
                best_idx = np.take_along_axis(best_idx, part, axis=1)
        return best_idx

    return search


def _sklearn_searcher(bank, metric):
    from sklearn.neighbors import NearestNeighbors

    data = bank
    if metric == "ip":
        # Maximum inner product as a nearest-neighbour problem: append
        # sqrt(M - ||b||^2) to each bank row and 0 to each query, so that
        # ||q' - b'||^2 = ||q||^2 + M - 2 q.b ranks like -q.b.
        sq = squared_row_norms(bank)
        extra = np.sqrt(sq.max() - sq).astype(bank.dtype)
        data = np.hstack([bank, extra[:, None]])
    nn = NearestNeighbors(algorithm="brute").fit(data)

    def search(queries, k):
        if metric == "ip":
            queries = np.hstack([queries, np.zeros((len(queries), 1), queries.dtype)])
        return nn.kneighbors(queries, k, return_distance=False).astype(np.int64)

    return search


def _faiss_searcher(bank, metric):
    faiss = _import_faiss()
    data = np.ascontiguousarray(bank, dtype=np.float32)
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def search(queries, k):
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return faiss.knn(queries, data, k, metric=kind)[1]

    return search


_SEARCHERS = {
    "numpy": _numpy_searcher,
    "sklearn": _sklearn_searcher,
    "faiss": _faiss_searcher,
}


# -------------------------------------------------------------------- search
def _refine(bank, queries, idx, metric):
    """Exact float64 distance (l2) or inner product (ip) of each pair."""
    out = np.empty(idx.shape)
    step = max(1, _REFINE_ELEMENTS // max(idx.shape[1] * bank.shape[1], 1))
    for rows in gen_batches(len(queries), step):
        neighbours = bank[idx[rows]].astype(np.float64)  # (rows, k, n_features)
        q = queries[rows].astype(np.float64)
        if metric == "l2":
            neighbours -= q[:, None, :]
            out[rows] = np.sqrt(np.einsum("rkd,rkd->rk", neighbours, neighbours))
        else:
            out[rows] = np.einsum("rkd,rd->rk", neighbours, q)
    return out


def kneighbors(
    bank,
    queries,
    k,
    *,
    metric="l2",
    backend="numpy",
    batch_size=1024,
    exclude=None,
):
    """Exact k nearest bank rows of each query.

    Parameters
    ----------
    bank : ndarray of shape (n_bank, n_features)
        Rows searched (float32 or float64).
    queries : ndarray of shape (n_queries, n_features)
        Rows whose neighbours are wanted; cast to ``bank``'s dtype.
    k : int
        Number of neighbours, at most ``n_bank`` (``n_bank - 1`` with
        ``exclude``).
    metric : {"l2", "ip"}
        ``"l2"``: smallest Euclidean distance; ``"ip"``: largest inner
        product.
    backend : {"auto", "numpy", "sklearn", "faiss"}
        Search backend (see the module docstring).
    batch_size : int
        Queries searched at once by the NumPy backend; faiss and
        scikit-learn get at least 8192 at a time (they block internally).
    exclude : array-like of int of shape (n_queries,), default=None
        Leave one out: ``exclude[i]`` is the bank row that query ``i`` *is*
        and must not count as its own neighbour. Exactly one match, found by
        index, is dropped, so exact duplicates of it elsewhere in the bank
        still count (at distance 0).

    Returns
    -------
    values : ndarray of shape (n_queries, k), float64
        Distances in increasing order (``"l2"``) or inner products in
        decreasing order (``"ip"``).
    indices : ndarray of shape (n_queries, k), int64
        Bank rows of the neighbours, in the same order.
    """
    backend = resolve_backend(backend)
    queries = np.asarray(queries, dtype=bank.dtype)
    n_queries, n_bank = queries.shape[0], bank.shape[0]
    n_search = k if exclude is None else k + 1
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (n_queries,):
            raise ValueError("exclude needs one bank row per query.")
    if not 1 <= n_search <= n_bank:
        raise ValueError(
            f"k={k} needs at least {n_search} bank rows, got n_samples={n_bank}."
        )
    n_candidates = min(n_bank, n_search + _EXTRA_CANDIDATES)
    search = _SEARCHERS[backend](bank, metric)
    worst = np.inf if metric == "l2" else -np.inf
    values = np.empty((n_queries, k))
    indices = np.empty((n_queries, k), dtype=np.int64)
    if backend != "numpy":
        batch_size = max(batch_size, _LIBRARY_BATCH)
    for rows in gen_batches(n_queries, batch_size):
        idx = np.asarray(search(queries[rows], n_candidates), dtype=np.int64)
        val = _refine(bank, queries[rows], idx, metric)
        if exclude is not None:
            # Indices within a row are distinct: at most one self-match. If
            # none (ties among > k duplicates), self ranks behind all of the
            # candidates, so the first k of them are its neighbours anyway.
            val[idx == exclude[rows, None]] = worst
        order = np.argsort(val if metric == "l2" else -val, axis=1, kind="stable")
        order = order[:, :k]
        values[rows] = np.take_along_axis(val, order, axis=1)
        indices[rows] = np.take_along_axis(idx, order, axis=1)
    return values, indices
