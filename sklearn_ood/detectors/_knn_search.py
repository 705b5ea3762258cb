"""Exact k-nearest-neighbour search shared by the neighbour detectors.

Three interchangeable algorithms *select* the neighbours of each query:

* ``"numpy"``: blocked matrix products and ``np.argpartition``. The bank is
  split into blocks of at most ``_BANK_BLOCK_ROWS`` rows and a running top-k
  is merged across them. A strided probe of the bank (about 64 k rows, at
  most one block) seeds each query's k candidates first, so every block only
  gathers the entries below the running k-th key instead of being
  partitioned whole (a block where too many are below still is).
* ``"sklearn"``: :class:`sklearn.neighbors.NearestNeighbors` with
  ``algorithm="brute"`` (chunked by scikit-learn's ``working_memory``).
* ``"faiss"``: ``faiss.knn``, faiss's exact brute-force search, which reads
  the bank in place (float32) instead of copying it into an index.

Approximate search (``"faiss-ivf"``, ``"faiss-hnsw"``) goes through an
:class:`ApproximateIndex` built once at fit time and passed as ``index``:
it only selects the candidates, which are refined as below. A bank that is
memory-mapped, or a :class:`ScaledRows` view of one (normalised when read),
is searched a block of rows at a time and never loaded whole.

``"auto"`` picks faiss when it imports, else NumPy. Queries are searched a
chunk of rows at a time, and their candidates refined (below) a smaller
chunk at a time, each no larger than scikit-learn's ``working_memory``
allows for its temporaries, as in ``pairwise_distances_chunked``: memory
never grows with ``n_bank * n_queries``.

Every algorithm ranks by a matrix product (the expansion ``||q||^2 +
||b||^2 - 2 q.b`` for distances, ``q.b`` itself for inner products) and
returns ``k + 8`` candidates; their distances (or inner products) are then
recomputed in float64 straight from the rows (``||q - b||`` from the
difference, never a square root of a cancelled expansion, and rescaled by a
power of two where its squares would leave the float64 range) and the best
``k`` kept. So all algorithms return the same values, and a query equal to
a bank row is at distance exactly 0 from it. The result is the exact top-k
unless more than 8 other bank rows tie with the k-th within the ranking's
rounding (about 1e-7 relative in float32).

The ranking runs in the bank's dtype (float32 for faiss), whose squares
overflow for entries of about 1e19 (float32) or 1e154 (float64). Callers
divide a bank whose entries leave ``[2**-20, 2**20]`` by a power of two
(:func:`rescale_rows`, exact) and pass that power as ``bank_exponent``: the
ranking divides the queries alike (and clips those so far beyond the bank
that every bank row is at the same distance to rounding), while the values
are computed from the true rows. They are therefore exact wherever they fit
in float64, and ``inf`` where a distance exceeds it.
"""

import functools
import mmap
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from sklearn_ood.utils._chunking import CACHE_BLOCK_BYTES, chunk_n_rows, row_chunks
from sklearn_ood.utils._dask import is_sharded, sharded_kneighbors

__all__ = [
    "ALGORITHMS",
    "APPROXIMATE_ALGORITHMS",
    "ApproximateIndex",
    "ScaledRows",
    "check_algorithm_params",
    "is_memory_mapped",
    "normalized_bank",
    "kneighbors",
    "normalize_rows",
    "range_exponent",
    "rescale_rows",
    "resolve_algorithm",
    "squared_row_norms",
]

ALGORITHMS = ("auto", "numpy", "sklearn", "faiss")
# Approximate search through a faiss index built at fit time (ApproximateIndex).
APPROXIMATE_ALGORITHMS = ("faiss-ivf", "faiss-hnsw")

# Speed choices, each bounded further by scikit-learn's working_memory:
# bank rows per block of the NumPy algorithm (the running top-k then gathers
# the few entries of a block below its k-th key, much cheaper than
# partitioning long rows), query-bank pairs per block (larger blocks are no
# faster: 2**24 float32 keys, 64 MiB, with the int64 indices of their
# partition, 128 MiB), and bytes of candidate rows refined at once (the
# refinement is memory-bound: larger blocks are no faster).
_BANK_BLOCK_ROWS = 16_384
_BLOCK_PAIRS = 2**24
_REFINE_BYTES = 2**25
# Bank rows per neighbour in the NumPy algorithm's probe: the k-th key of the
# probe bounds a block's share of candidates to about k * width / probe rows.
_PROBE_PER_K = 64
# Candidates fetched beyond k, then re-ranked by their exact values: the
# ranking expansion loses precision (about 1e-4 in a float32 distance near
# 0), so a bank row equal to the query could tie with a row a hair away.
_EXTRA_CANDIDATES = 8
# rescale_rows leaves a bank alone when its largest |entry| lies within
# 2**+-_SAFE_EXPONENT: float32 squares and their sums stay far from the
# float32 range (and from its subnormals) there.
_SAFE_EXPONENT = 20
# Queries ranked in float32 (faiss, or a float32 bank) are clipped to
# +-2**_FAISS_CLIP_EXPONENT, so that their float32 squared distances stay
# finite (faiss drops neighbours at infinite distance). A query beyond it is
# so far from a bank kept within 2**20 that every bank row is at the same
# distance to float32 rounding; float64 rankings clip at 2**500.
_FAISS_CLIP_EXPONENT = 45
# Pairs whose float64 squared distance falls below 2**-960 (where squared
# differences may have been subnormal) or overflows are recomputed with both
# rows scaled by a power of two.
_TINY_SQUARE = 2.0**-960


@functools.cache
def _import_faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_algorithm(algorithm):
    """Name of the search algorithm that ``algorithm`` stands for.

    ``"auto"`` is ``"faiss"`` when faiss imports, else ``"numpy"``.

    Raises
    ------
    ImportError
        If ``algorithm`` is ``"faiss"``, ``"faiss-ivf"`` or ``"faiss-hnsw"``
        and faiss is not installed.
    """
    if algorithm not in ALGORITHMS + APPROXIMATE_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {ALGORITHMS + APPROXIMATE_ALGORITHMS}, "
            f"got {algorithm!r}."
        )
    if algorithm == "auto":
        return "faiss" if _import_faiss() is not None else "numpy"
    if algorithm.startswith("faiss") and _import_faiss() is None:
        raise ImportError(
            f"algorithm={algorithm!r} needs the faiss package (pip install "
            "faiss-cpu); algorithm='numpy' or 'sklearn' give an exact search "
            "without it."
        )
    return algorithm


def squared_row_norms(X):
    """``||x_i||^2`` of each row in float64, a chunk of rows at a time."""
    out = np.empty(X.shape[0])
    for rows in row_chunks(X.shape[0], 8 * max(X.shape[1], 1)):
        chunk = X[rows].astype(np.float64)
        out[rows] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def _chunk_factors(chunk, rescale, scale):
    """Per-row ``(peaks, factors)`` of a float64 chunk, which is divided by
    its peaks in place: row ``i`` normalised is ``chunk[i] * factors[i]``."""
    peaks = None
    # Squares of float64 entries below 1e-154 or above 1e154 under- or
    # overflow, and the row would not come out of unit length: such input is
    # divided by its largest entry first. Squares of float32 entries cannot
    # leave the float64 range, so they skip that pass.
    if rescale and chunk.shape[1]:
        peaks = np.abs(chunk).max(axis=1)
        peaks = np.where(peaks > 0, peaks, 1.0)
        chunk /= peaks[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
    factors = 1.0 / np.where(norms > 0, norms, 1.0)
    if scale is not None:
        factors *= scale
    return peaks, factors


def _normalize_steps(X):
    row_bytes = 8 * max(X.shape[1], 1)
    step = chunk_n_rows(row_bytes, max_n_rows=max(1, CACHE_BLOCK_BYTES // row_bytes))
    return range(0, X.shape[0], step), step


def normalize_rows(X, scale=None, dtype=None):
    """Rows divided by their L2 norm (times ``scale``), computed in float64.

    Zero rows stay zero. The result has ``dtype`` (default: ``X``'s).
    """
    out = np.empty(X.shape, dtype=X.dtype if dtype is None else dtype)
    rescale = X.dtype != np.float32
    starts, step = _normalize_steps(X)
    for start in starts:
        rows = slice(start, start + step)
        chunk = X[rows].astype(np.float64)
        _, factors = _chunk_factors(
            chunk, rescale, None if scale is None else scale[rows]
        )
        chunk *= factors[:, None]
        out[rows] = chunk
    return out


class ScaledRows:
    """Read-only rows ``X[i] / peaks[i] * factors[i]`` (float64, cast to
    ``dtype``), computed when read: a normalised bank that is never held in
    memory whole.

    ``ScaledRows(X, scale=s)[rows]`` equals ``normalize_rows(X, scale=s)[rows]``
    bit for bit (the same float64 operations on each row). It keeps a
    reference to ``X`` (e.g. a ``np.memmap``) and 8 or 16 bytes per row.
    Indexing takes rows only: a slice, or an integer array of any shape
    (the result then has that shape plus the feature axis).
    """

    ndim = 2

    def __init__(self, X, scale=None):
        self.rows = X
        self.dtype = X.dtype
        rescale = X.dtype != np.float32
        self.factors = np.empty(X.shape[0])
        self.peaks = np.ones(X.shape[0]) if rescale else None
        starts, step = _normalize_steps(X)
        for start in starts:
            rows = slice(start, start + step)
            chunk = X[rows].astype(np.float64)
            peaks, self.factors[rows] = _chunk_factors(
                chunk, rescale, None if scale is None else scale[rows]
            )
            if peaks is not None:
                self.peaks[rows] = peaks

    @property
    def shape(self):
        return self.rows.shape

    @property
    def itemsize(self):
        return self.dtype.itemsize

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if not isinstance(key, slice):
            key = np.asarray(key)
        flat = key if isinstance(key, slice) else key.ravel()
        chunk = np.array(self.rows[flat], dtype=np.float64)  # never in place
        if self.peaks is not None and chunk.shape[1]:
            chunk /= self.peaks[flat][:, None]
        chunk *= self.factors[flat][:, None]
        out = chunk.astype(self.dtype, copy=False)
        return out if isinstance(key, slice) else out.reshape(key.shape + (-1,))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def is_memory_mapped(X):
    """Whether ``X`` is (a view of) a memory-mapped file, e.g. a ``np.memmap``."""
    while X is not None:
        if isinstance(X, (np.memmap, mmap.mmap)):
            return True
        X = getattr(X, "base", None)
    return False


def normalized_bank(X, scale=None):
    """``normalize_rows(X, scale)``, or, for a memory-mapped ``X``, the same
    rows as :class:`ScaledRows`, computed a block at a time when searched,
    so that a bank larger than memory is never loaded whole."""
    if is_memory_mapped(X):
        return ScaledRows(X, scale=scale)
    return normalize_rows(X, scale=scale)


def range_exponent(peak):
    """Exponent ``e`` that brings ``peak``, the largest ``|entry|`` of a
    bank, into ``[0.5, 1)`` when it lies outside ``[2**-20, 2**20]``, else
    0 (no rescaling needed: float32 squares and their sums stay far from the
    float32 range there)."""
    peak = float(peak)
    if peak == 0 or 2.0**-_SAFE_EXPONENT <= peak <= 2.0**_SAFE_EXPONENT:
        return 0
    return int(np.frexp(peak)[1])


def rescale_rows(X):
    """``(X / 2**e, e)`` with ``e = range_exponent(max |X|)``; ``X`` itself
    (C-contiguous) when ``e = 0``.

    A division by a power of two is exact (up to entries that fall below the
    smallest normal float, about ``2**(e - 1022)``); distances found on the
    rescaled rows are ``2**-e`` times the true ones.
    """
    X = np.ascontiguousarray(X)
    exponent = range_exponent(max(X.max(), -X.min())) if X.size else 0
    if exponent == 0:
        return X, 0
    return np.ldexp(X, -exponent).astype(X.dtype, copy=False), exponent


# ---------------------------------------------------------------- algorithms
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


def _numpy_width(n_bank, k):
    """Bank rows per block of the NumPy algorithm."""
    return max(k, min(n_bank, _BANK_BLOCK_ROWS))


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
        # -q.b (ip): smaller is better for both. Keys that overflow (queries
        # far beyond the bank) only make the choice among rows that are all
        # at the same distance to rounding.
        with np.errstate(over="ignore", invalid="ignore"):
            return _search(queries, k)

    def _search(queries, k):
        n_q, n_bank = queries.shape[0], bank.shape[0]
        scaled = queries * (-2 if metric == "l2" else -1)
        width = _numpy_width(n_bank, k)
        best_key = np.empty((n_q, 0), dtype=bank.dtype)
        best_idx = np.empty((n_q, 0), dtype=np.int64)
        # A strided probe of about _PROBE_PER_K * k bank rows gives every row
        # k candidates before the first block: the blocks then only gather
        # the few entries below the running k-th key instead of partitioning
        # whole blocks (the probe's rows are masked out of the blocks).
        # No larger than a block, so that memory stays bounded by one block.
        stride = n_bank // min(_PROBE_PER_K * k, width)
        probed = stride > 1 and n_bank > width
        if probed:
            probe = slice(0, n_bank, stride)
            best_key, best_idx = _block_top_k(keys(scaled, probe), k, 0)
            best_idx = best_idx * stride
        for start in range(0, n_bank, width):
            cols = slice(start, start + width)
            key = keys(scaled, cols)
            if probed:
                key[:, (-start) % stride :: stride] = np.inf
            found = None
            if best_key.shape[1] == k:
                found = _below_threshold(key, best_key.max(axis=1), start)
            if found is None:
                found = _block_top_k(key, k, start)
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
        with np.errstate(over="ignore", invalid="ignore"):
            found = nn.kneighbors(queries, k, return_distance=False)
        return found.astype(np.int64)

    return search


def _faiss_searcher(bank, metric):
    faiss = _import_faiss()
    data = np.ascontiguousarray(bank, dtype=np.float32)
    kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    limit = 2.0**_FAISS_CLIP_EXPONENT

    def search(queries, k):
        if metric == "l2" and queries.size and np.abs(queries).max() > limit:
            queries = np.clip(queries, -limit, limit)
        found = faiss.knn(
            np.ascontiguousarray(queries, dtype=np.float32), data, k, metric=kind
        )[1]
        missing = np.flatnonzero((found < 0).any(axis=1))
        if missing.size:  # pragma: no cover - faiss dropped non-finite keys
            found[missing] = _numpy_searcher(bank, metric)(queries[missing], k)
        return found

    return search


# ------------------------------------------------------- approximate search
# Defaults of the approximate indexes (see ApproximateIndex); None: derived
# from the bank (nlist, nprobe) or from the candidates searched (efSearch).
_APPROXIMATE_PARAMS = {
    "faiss-ivf": {"nlist": None, "nprobe": None},
    "faiss-hnsw": {"M": 32, "efConstruction": 160, "efSearch": None},
}
# HNSW defaults, measured by benchmarks/bench_knn_scale.py (100 clusters of
# rows along 8-dimensional subspaces, k = 50, 2 busy shared cores). Such
# well-separated clusters are the hard case for a graph: a query routed into
# the wrong cluster finds none of its neighbours. The former defaults
# (efConstruction=40, faiss's own, efSearch=128) reached recall@50 = 0.94 on
# 200k rows and 0.87 on 1M (AUROC -0.09); no efSearch fixed that (0.97 at
# 1024 on 200k rows, slower than exact search): a graph built with a short
# candidate list links too few clusters together. At efSearch=256:
#   efConstruction  200k    500k    1M
#   80              0.998   -       -
#   100             0.9998  0.996   0.987 (AUROC -0.004, built in 570 s)
#   160             1.0     0.9992  0.9953 (AUROC -0.0016, built in 487 s)
# 160 built in about the time of 100 at 500k and 3x that of 40 at 200k
# (noisy). The default efSearch, max(256, 2 * candidates), keeps the beam
# twice the rows it returns once k is large (512 instead of 256 raised the
# 500k recall by 0.0006 to 0.0016).
_HNSW_EF_SEARCH_FLOOR = 256
_HNSW_EF_SEARCH_PER_CANDIDATE = 2
# IVF quantizer training: a seeded sample of this many rows per list (faiss
# warns below 39) trained for _IVF_NITER k-means iterations.
_IVF_TRAIN_PER_LIST = 50
_IVF_NITER = 20


def check_algorithm_params(algorithm, algorithm_params):
    """The validated ``algorithm_params`` of ``algorithm`` (a dict of ints).

    Raises
    ------
    ValueError
        For parameters of an exact algorithm, unknown names, or values that
        are not integers >= 1 (>= 2 for ``M``).
    """
    params = {} if algorithm_params is None else dict(algorithm_params)
    if algorithm not in _APPROXIMATE_PARAMS:
        if params:
            raise ValueError(
                f"algorithm_params apply to the approximate algorithms "
                f"{APPROXIMATE_ALGORITHMS}; algorithm={algorithm!r} takes none, "
                f"got {sorted(params)}."
            )
        return params
    allowed = _APPROXIMATE_PARAMS[algorithm]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"algorithm_params of algorithm={algorithm!r} are {sorted(allowed)}, "
            f"got unknown {unknown}."
        )
    for name, value in params.items():
        low = 2 if name == "M" else 1
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(
                f"algorithm_params[{name!r}] must be an int >= {low}, got {value!r}."
            )
    return params


class ApproximateIndex:
    """A faiss index over a bank: IVF (``"faiss-ivf"``) or HNSW (``"faiss-hnsw"``).

    Its ``search(queries, k)`` returns the bank rows of (about) the ``k``
    best keys of each query, ranked like the exact search (Euclidean for
    ``metric="l2"``, inner product for ``"ip"``), in float32; ``-1`` where
    an IVF index found fewer than ``k`` rows in the lists it probed.

    * ``"faiss-ivf"``: ``IndexIVFFlat`` with ``nlist`` lists (default
      ``round(sqrt(n_bank))``, at most ``n_bank``), of which ``nprobe`` are
      searched (default ``max(8, nlist // 64)``, at most ``nlist``). The
      coarse quantizer is trained by k-means on a seeded sample of
      ``50 * nlist`` rows (``random_state`` seeds both the sample and
      faiss's k-means).
    * ``"faiss-hnsw"``: ``IndexHNSWFlat`` with ``M`` links per node
      (default 32), built with ``efConstruction`` (default 160) and searched
      with a beam of ``max(efSearch, k)`` rows (default ``efSearch``:
      ``max(256, 2 * k)``, see :meth:`ef_search`). The graph built on
      several threads varies between builds. On the clustered 1M-row bank
      of ``benchmarks/bench_knn_scale.py`` (k = 50 neighbours, so 58
      candidates) ``efConstruction=40`` (faiss's default) with
      ``efSearch=128`` routed some queries into the wrong cluster (recall@50
      0.87, AUROC -0.09 against exact search); ``efConstruction=100`` gave
      0.987, and these defaults 0.9953 (AUROC -0.0016).

    Both hold a float32 copy of the bank (added a block of rows at a time,
    so a memory-mapped bank is never loaded whole besides). The index
    pickles through ``faiss.serialize_index``: its pickle is that copy plus
    the lists' centroids (IVF, ``nlist * n_features`` floats) or the graph
    links (HNSW, about ``2 * M`` int32 per row).
    """

    def __init__(self, algorithm, params, metric):
        self.algorithm = algorithm
        self.params = dict(params)
        self.metric = metric

    def build(self, bank, random_state=None):
        """Train (IVF) and fill the index with the rows of ``bank``."""
        faiss = _import_faiss()
        if faiss is None:  # pragma: no cover - resolve_algorithm checked it
            resolve_algorithm(self.algorithm)
        n_bank, n_features = bank.shape
        kind = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if self.algorithm == "faiss-ivf":
            nlist = self.params.get("nlist") or max(1, round(np.sqrt(n_bank)))
            if nlist > n_bank:
                raise ValueError(
                    f"algorithm_params['nlist']={nlist} needs at least as many "
                    f"fit rows, got n_samples={n_bank}."
                )
            nprobe = self.params.get("nprobe") or max(8, nlist // 64)
            self.nlist_, self.nprobe_ = nlist, min(nprobe, nlist)
            quantizer = faiss.IndexFlat(n_features, kind)
            index = faiss.IndexIVFFlat(quantizer, n_features, nlist, kind)
            rng = check_random_state(random_state)
            index.cp.seed = int(rng.randint(2**31 - 1))
            index.cp.niter = _IVF_NITER
            n_train = min(n_bank, _IVF_TRAIN_PER_LIST * nlist)
            sample = np.sort(rng.choice(n_bank, n_train, replace=False))
            index.train(np.ascontiguousarray(bank[sample], dtype=np.float32))
        else:
            defaults = _APPROXIMATE_PARAMS["faiss-hnsw"]
            params = {**defaults, **self.params}
            self.M_, self.ef_construction_ = params["M"], params["efConstruction"]
            index = faiss.IndexHNSWFlat(n_features, self.M_, kind)
            index.hnsw.efConstruction = self.ef_construction_
            self.ef_search_ = params["efSearch"]  # None: from k, see ef_search
        for rows in row_chunks(n_bank, 2 * max(n_features, 1) * bank.itemsize):
            index.add(np.ascontiguousarray(bank[rows], dtype=np.float32))
        self._index, self._serialized = index, None
        return self

    def _faiss_index(self):
        if self._index is None:
            faiss = _import_faiss()
            if faiss is None:
                resolve_algorithm(self.algorithm)  # raises the ImportError
            self._index = faiss.deserialize_index(self._serialized)
            self._serialized = None
        return self._index

    def ef_search(self, k):
        """HNSW beam width searched for ``k`` rows: ``max(efSearch, k)``, or
        by default ``max(256, 2 * k)``.

        The beam must hold the ``k`` rows returned; a wider one explores
        more of the graph (recall up, time up about in proportion). The
        floor keeps a small ``k`` from routing the query through too few
        rows to leave a wrong cluster.
        """
        if self.ef_search_ is None:
            return max(_HNSW_EF_SEARCH_FLOOR, _HNSW_EF_SEARCH_PER_CANDIDATE * k)
        return max(self.ef_search_, k)

    def search(self, queries, k):
        """Bank rows of (about) the ``k`` best keys of each query."""
        faiss = _import_faiss()
        index = self._faiss_index()
        if self.algorithm == "faiss-ivf":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe_)
        else:
            params = faiss.SearchParametersHNSW(efSearch=self.ef_search(k))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        return index.search(queries, k, params=params)[1]

    def __getstate__(self):
        state = dict(vars(self))
        if state["_index"] is not None:
            state["_serialized"] = _import_faiss().serialize_index(state["_index"])
        state["_index"] = None
        return state

    def __setstate__(self, state):
        # Deserialised when first searched, so that loading needs no faiss.
        vars(self).update(state)


_SEARCHERS = {
    "numpy": _numpy_searcher,
    "sklearn": _sklearn_searcher,
    "faiss": _faiss_searcher,
}


# -------------------------------------------------------------------- search
def _rescaled_distances(b, q):
    """``||b_i - q_i||`` of paired float64 rows, each pair scaled by a power
    of two first, so that no square under- or overflows (the result itself
    is ``inf`` where the distance exceeds the float64 range)."""
    peak = np.maximum(np.abs(b).max(axis=1), np.abs(q).max(axis=1))
    exponent = np.frexp(peak)[1][:, None]
    diff = np.ldexp(b, -exponent) - np.ldexp(q, -exponent)
    with np.errstate(over="ignore"):
        return np.ldexp(np.sqrt(np.einsum("ij,ij->i", diff, diff)), exponent[:, 0])


def _refine(bank, queries, idx, metric, exponent):
    """Exact float64 distance (l2) or inner product (ip) of each pair, for
    the bank rows times ``2**exponent`` (exact)."""
    neighbours = bank[idx].astype(np.float64, copy=False)  # (rows, k, n_features)
    if exponent:  # the true rows: finite, as they were validated
        neighbours = np.ldexp(neighbours, exponent)
    if metric == "ip":
        return np.einsum("rkd,rd->rk", neighbours, queries)
    with np.errstate(over="ignore", invalid="ignore"):
        neighbours -= queries[:, None, :]
        squares = np.einsum("rkd,rkd->rk", neighbours, neighbours)
    out = np.sqrt(squares)
    redo = ~((squares >= _TINY_SQUARE) & (squares < np.inf))
    if redo.any():
        rows, cols = np.nonzero(redo)
        pairs = np.ldexp(bank[idx[rows, cols]].astype(np.float64), exponent)
        out[rows, cols] = _rescaled_distances(pairs, queries[rows])
    return out


def _search_queries(queries, dtype, metric, exponent):
    """Queries as the ranking sees them: in the bank's dtype and, for
    distances, divided by the bank's power of two, clipped so that their
    squares stay finite in that dtype. A query clipped so lies so far beyond
    the bank that every bank row is at the same distance to rounding."""
    if metric == "ip":  # the bank's scale does not change the ranking
        return np.asarray(queries, dtype=dtype)
    if exponent:
        with np.errstate(over="ignore"):  # clipped below
            queries = np.ldexp(queries, -exponent)
    limit = 2.0 ** (_FAISS_CLIP_EXPONENT if dtype == np.float32 else 500)
    if queries.size and np.abs(queries).max() > limit:
        queries = np.clip(queries, -limit, limit)
    return np.asarray(queries, dtype=dtype)


def kneighbors(
    bank,
    queries,
    k,
    *,
    metric="l2",
    algorithm="numpy",
    exclude=None,
    bank_exponent=0,
    index=None,
):
    """Exact (or, with ``index``, approximate) k nearest bank rows of each query.

    A bank that is memory-mapped (``np.memmap``) or a :class:`ScaledRows` is
    searched a block of rows at a time (see :func:`_kneighbors_by_blocks`),
    with the same result.

    Parameters
    ----------
    bank : ndarray of shape (n_bank, n_features)
        Rows searched (float32 or float64), divided by ``2**bank_exponent``
        (see :func:`rescale_rows`) so that its entries lie within about
        ``2**+-20``.
    queries : ndarray of shape (n_queries, n_features)
        Rows whose neighbours are wanted, not divided: they are compared
        with the bank's rows times ``2**bank_exponent``. The ranking sees
        them in ``bank``'s dtype, the values are computed from them in
        float64.
    k : int
        Number of neighbours, at most ``n_bank`` (``n_bank - 1`` with
        ``exclude``).
    metric : {"l2", "ip"}
        ``"l2"``: smallest Euclidean distance; ``"ip"``: largest inner
        product.
    algorithm : {"auto", "numpy", "sklearn", "faiss"}
        Search algorithm (see the module docstring).
    exclude : array-like of int of shape (n_queries,), default=None
        Leave one out: ``exclude[i]`` is the bank row that query ``i`` *is*
        and must not count as its own neighbour. Exactly one match, found by
        index, is dropped, so exact duplicates of it elsewhere in the bank
        still count (at distance 0).
    bank_exponent : int, default=0
        The power of two the bank was divided by.
    index : ApproximateIndex, default=None
        Built on ``bank``: selects the candidates instead of ``algorithm``
        (which then only searches the rare queries the index returns too few
        candidates for, exactly). The values are still exact for the
        candidates found.

    Returns
    -------
    values : ndarray of shape (n_queries, k), float64
        Distances in increasing order (``"l2"``) or inner products in
        decreasing order (``"ip"``), of the queries and the bank's rows
        times ``2**bank_exponent``; ``inf`` where a distance exceeds the
        float64 range.
    indices : ndarray of shape (n_queries, k), int64
        Bank rows of the neighbours, in the same order.
    """
    if is_sharded(bank):  # a bank held on a Dask cluster
        return sharded_kneighbors(
            bank, queries, k, metric=metric, algorithm=algorithm,
            exclude=exclude, bank_exponent=bank_exponent,
        )  # fmt: skip
    queries = np.asarray(queries)
    n_search, exclude = _check_search(k, exclude, queries.shape[0], bank.shape[0])
    if index is None and (isinstance(bank, ScaledRows) or is_memory_mapped(bank)):
        return _kneighbors_by_blocks(
            bank, queries, k, metric, algorithm, exclude, bank_exponent
        )
    if index is None:
        algorithm = resolve_algorithm(algorithm)
        if algorithm in APPROXIMATE_ALGORITHMS:
            raise ValueError(f"algorithm={algorithm!r} searches a built index.")
        search = _SEARCHERS[algorithm](bank, metric)
    else:
        algorithm, search = "index", index.search
    (n_queries, n_features), n_bank = queries.shape, bank.shape[0]
    n_candidates = min(n_bank, n_search + _EXTRA_CANDIDATES)
    worst = np.inf if metric == "l2" else -np.inf
    values = np.empty((n_queries, k))
    indices = np.empty((n_queries, k), dtype=np.int64)
    # Temporaries per query row of a search chunk: its copies for the ranking
    # and the candidates found, or (NumPy) one block of keys with the int64
    # indices of their partition and a mask. Per row of a refinement chunk:
    # the candidate rows gathered in the bank's dtype, then in float64.
    row_bytes = n_features * (8 + bank.itemsize) + 16 * n_candidates
    max_rows = None
    if algorithm == "numpy":
        width = _numpy_width(n_bank, n_search)
        row_bytes += width * (bank.itemsize + 9)
        max_rows = max(1, _BLOCK_PAIRS // width)
    n_rows = chunk_n_rows(row_bytes, max_n_rows=max_rows)
    refine_bytes = n_candidates * max(n_features, 1) * (bank.itemsize + 8)
    refine_rows = chunk_n_rows(
        refine_bytes, max_n_rows=max(1, _REFINE_BYTES // refine_bytes)
    )
    for start in range(0, n_queries, n_rows):
        rows = slice(start, start + n_rows)
        chunk = queries[rows]
        ranked = _search_queries(chunk, bank.dtype, metric, bank_exponent)
        idx = np.asarray(search(ranked, n_candidates), dtype=np.int64)
        # An index may find fewer candidates (IVF lists probed hold fewer).
        missing = np.flatnonzero((idx < 0).any(axis=1))
        if missing.size:
            idx[missing] = _numpy_searcher(bank, metric)(ranked[missing], n_candidates)
        val = np.empty(idx.shape)
        for sub in range(0, len(idx), refine_rows):
            part = slice(sub, sub + refine_rows)
            val[part] = _refine(
                bank,
                chunk[part].astype(np.float64, copy=False),
                idx[part],
                metric,
                bank_exponent,
            )
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


def _check_search(k, exclude, n_queries, n_bank):
    """``(n_search, exclude)``: rows searched per query (k, or k + 1 to leave
    one out) and the validated ``exclude``."""
    n_search = k if exclude is None else k + 1
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        if exclude.shape != (n_queries,):
            raise ValueError("exclude needs one bank row per query.")
    if not 1 <= n_search <= n_bank:
        raise ValueError(
            f"k={k} needs at least {n_search} bank rows, got n_samples={n_bank}."
        )
    return n_search, exclude


def _kneighbors_by_blocks(bank, queries, k, metric, algorithm, exclude, exponent):
    """:func:`kneighbors` over a bank read a block of rows at a time.

    Each block (about half of ``working_memory``, at least ``k + 1`` rows) is
    loaded (normalised, for :class:`ScaledRows`), searched exactly for the
    ``k`` (``k + 1`` to leave one out) best rows of every query, and merged
    with the best ones so far by their exact float64 values. The best rows
    of the whole bank are among the best of their block, so the result is
    that of the in-memory search, up to the order of rows whose values tie
    exactly. The bank is read once, whatever the number of queries.
    """
    n_search = k if exclude is None else k + 1
    n_bank, n_features = bank.shape
    block_rows = max(n_search, chunk_n_rows(2 * max(n_features, 1) * bank.itemsize))
    worst = np.inf if metric == "l2" else -np.inf
    values = np.empty((len(queries), 0))
    indices = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, n_bank, block_rows):
        block = bank[start : start + block_rows]
        if is_memory_mapped(block):
            block = np.array(block)
        val, idx = kneighbors(
            block,
            queries,
            min(n_search, len(block)),
            metric=metric,
            algorithm=algorithm,
            bank_exponent=exponent,
        )
        idx += start
        if exclude is not None:
            val[idx == exclude[:, None]] = worst
        values = np.concatenate([values, val], axis=1)
        indices = np.concatenate([indices, idx], axis=1)
        order = np.argsort(values if metric == "l2" else -values, axis=1, kind="stable")
        order = order[:, :n_search]
        values = np.take_along_axis(values, order, axis=1)
        indices = np.take_along_axis(indices, order, axis=1)
    return values[:, :k], indices[:, :k]
