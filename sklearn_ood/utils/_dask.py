"""Fit and score on Dask arrays (the optional ``dask`` extra).

Nothing here imports dask unless the caller passed a dask collection (dask
must already be in ``sys.modules`` for that), so the package runs without it.

* **Fit of a detector built from sums** (:class:`~sklearn_ood.base.
  PartialFitMixin`): each row block is validated and summed on a worker by a
  fresh copy of the detector (``_reset_stats`` + ``_update_stats``), the
  partial statistics are tree-reduced pairwise by ``_merge_stats`` (the
  Chan et al. pairwise update of the Gaussian family, plain sums elsewhere)
  and finalised here. ``offset_`` is set by the usual code from the same
  seeded sample of ID rows as an in-memory fit, gathered by global index.
  The fitted detector is a plain in-memory estimator, equal to the
  in-memory fit up to rounding. ``MultiMahalanobis(layer_weights="learn")``
  then fits its logistic regression on the layer scores of every row,
  computed on the workers.
* **Fixed-formula detectors** (``_stateless``: ``MaxSoftmax``, ``Energy``,
  ...): the blocks are validated on the workers and ``offset_`` is set from
  the sampled rows; nothing else is learnt.
* **KNN and NNGuide**: the bank stays on the cluster, one shard per row
  block, as a persisted dask array in ``bank_``. A search sends the queries
  to every shard, each worker searches its own shard (the same exact search
  as in memory, whose values are recomputed in float64 from the rows), and
  the top-k lists merge exactly. Pickling such a detector gathers the bank.
* **Scoring** a dask array returns a dask array computed block by block on
  the workers (``map_blocks``); for a sharded bank, each query block is
  searched against every shard, then merged.

Labels are small (one integer a row): they are gathered and checked here,
with the messages of an in-memory fit, and sent to the workers with their
blocks.
"""

import sys

import numpy as np

__all__ = [
    "computed_state",
    "fit",
    "is_dask_collection",
    "is_sharded",
    "score",
    "sharded_kneighbors",
]

_FLOAT_DTYPES = (np.float64, np.float32)


def is_dask_collection(x):
    """Whether ``x`` is a dask collection (False, importing nothing, when
    dask was never imported)."""
    if x is None or "dask" not in sys.modules:
        return False
    import dask

    return dask.is_dask_collection(x)


def is_sharded(bank):
    """Whether a neighbour bank is held on a Dask cluster (or stands in for
    one shard of it during a search)."""
    return isinstance(bank, _ShardBank | _MergedBank) or is_dask_collection(bank)


def computed_state(state):
    """``state`` (an estimator's ``__dict__``) with dask values computed."""
    if "dask" not in sys.modules:
        return state
    lazy = [name for name, value in state.items() if is_dask_collection(value)]
    if not lazy:
        return state
    import dask

    state = dict(state)
    state.update(zip(lazy, dask.compute(*[state[name] for name in lazy])))
    return state


def _light(est):
    """A shallow copy of ``est`` without its dask attributes, to ship to the
    workers (``copy.copy`` would pickle, and so gather, a sharded bank)."""
    new = object.__new__(type(est))
    new.__dict__.update(
        {k: v for k, v in est.__dict__.items() if not is_dask_collection(v)}
    )
    return new


def _float_dtype(dtype):
    """The dtype ``validate_data(..., dtype=[float64, float32])`` gives."""
    return np.dtype(dtype) if np.dtype(dtype) in _FLOAT_DTYPES else np.dtype(np.float64)


def _as_rows(est, X):
    """``X`` as a 2-D dask array chunked by rows only, with known chunks."""
    import dask.array as da
    from sklearn.base import clone
    from sklearn.utils.validation import validate_data

    if hasattr(X, "to_dask_array"):  # a dask DataFrame or Series
        X = X.to_dask_array(lengths=True)
    elif not isinstance(X, da.Array):  # in memory, with dask labels
        X = da.asarray(X)
    if X.ndim != 2:  # the message of an in-memory fit
        validate_data(clone(est), np.zeros(tuple(min(n, 1) for n in X.shape)))
    if any(np.isnan(n) for n in X.shape):
        X = X.compute_chunk_sizes()
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def _row_bounds(X):
    stops = np.cumsum(X.chunks[0])
    return list(zip(stops - np.asarray(X.chunks[0]), stops))


# ------------------------------------------------------------------ workers
def _validated_block(template, X, y):
    """Validate one block as an in-memory fit does; drop OOD rows unless the
    method uses them. Returns ``(part, X, y)`` with ``part`` a fresh detector."""
    from sklearn.base import clone
    from sklearn.utils.validation import validate_data

    part = clone(template)
    X = validate_data(part, X, dtype=list(_FLOAT_DTYPES), reset=True)
    if y is not None and not part._uses_outliers:
        keep = y >= 0
        if not keep.all():
            X, y = X[keep], y[keep]
    return part, X, y


def _block_stats(template, X, y):
    """The partial statistics of one block (a detector), None if no rows."""
    part, X, y = _validated_block(template, X, y)
    if not len(X):
        return None
    part.n_samples_seen_ = len(part._in_distribution_rows(X, y))
    part._reset_stats(X, y)
    part._update_stats(X, y)
    return part


def _merge_parts(a, b=None):
    if a is None or b is None:
        return b if a is None else a
    a._merge_stats(b)
    return a


def _id_rows_block(template, X, y):
    _, X, y = _validated_block(template, X, y)
    return X if y is None else X[y >= 0]


def _residual_sum(est, X, y):
    X = _id_rows_block(est, X, y)
    return float(est._residual(X).sum()) if len(X) else 0.0


def _n_valid_rows(template, X, y):
    return len(_validated_block(template, X, y)[1])


def _layer_scores_block(template, est, X, y):
    """MultiMahalanobis: the layer scores of a block's rows (OOD rows too)."""
    _, X, _ = _validated_block(template, X, y)
    return est._layer_scores(X) if len(X) else np.empty((0, len(est._tied)))


def _n_rows(block):
    return np.array([len(block)])


def _normalized(block):
    from sklearn_ood.detectors._knn_search import normalize_rows

    return normalize_rows(block)


def _ldexp(block, exponent):
    return np.ldexp(block, -exponent).astype(block.dtype, copy=False)


def _confidence(block, est):
    return est._confidence(block) if len(block) else np.empty(0)


def _guided_rows(block, confidence, exponent):
    from sklearn_ood.detectors._knn_search import normalize_rows

    return normalize_rows(block, scale=np.ldexp(confidence[:, 0], -exponent))


def _score_block(block, est, method, dtype):
    if not len(block):
        return np.empty(0, dtype=dtype)
    return getattr(est, method)(block)


# --------------------------------------------------------------------- fit
class _FitRows:
    """The ID fit rows as ``offset_`` sees them: their number, dtype, and the
    rows at given ID-row indices, gathered from the cluster on demand."""

    def __init__(self, X, positions, n_rows, dtype):
        self._X, self._positions = X, positions
        self.shape = (n_rows, X.shape[1])
        self.dtype = dtype

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        index = np.arange(len(self))[rows]
        if self._positions is not None:
            index = self._positions[index]
        return np.asarray(self._X[index].compute(), dtype=self.dtype)


def fit(est, X, y):
    """``est.fit(X, y)`` for a dask array ``X`` (or dask labels)."""
    from dask import compute, delayed
    from sklearn.base import clone

    from sklearn_ood.base import PartialFitMixin

    X = _as_rows(est, X)
    n_rows, n_features = X.shape
    if is_dask_collection(y):
        y = y.compute()
    if n_rows == 0:
        from sklearn.utils.validation import validate_data

        validate_data(clone(est), np.empty((0, n_features)))  # the usual message
    y = est._check_fit_labels(X, y)
    dtype = _float_dtype(X.dtype)
    bounds = _row_bounds(X)
    blocks = list(X.to_delayed().ravel())
    y_blocks = [None if y is None else y[start:stop] for start, stop in bounds]
    id_positions = None if y is None else np.flatnonzero(y >= 0)
    n_id = n_rows if y is None else len(id_positions)
    template = clone(est)
    kind = _kind(est)

    est.__dict__.pop("feature_names_in_", None)
    est.n_features_in_ = n_features
    if est._class_aware and y is not None:
        est.classes_ = np.unique(y[y >= 0])
    if kind == "bank":
        X_id = _id_array(template, X, y, bounds, dtype)
        _BANK_BUILDERS[type(est)._dask_bank_builder](est, X_id)
        est._set_offset(_FitRows(X_id, None, n_id, dtype))
        return est

    if kind == "scores":
        # A fixed formula learns nothing but offset_: the blocks are
        # validated on the workers (the errors of an in-memory fit), _fit
        # checks the shape and parameters on one row, and the sampled rows
        # are scored here.
        compute(
            *[
                delayed(_n_valid_rows)(template, xb, yb)
                for xb, yb in zip(blocks, y_blocks)
            ]
        )
        est._fit(np.asarray(X[:1].compute(), dtype=dtype), None)
        est._set_offset(_FitRows(X, id_positions, n_id, dtype))
        return est
    # Sums: per block on the workers, tree-reduced pairwise, finalised here.
    parts = [
        delayed(_block_stats)(template, xb, yb)
        for xb, yb, (start, stop) in zip(blocks, y_blocks, bounds)
        if stop > start
    ]
    while len(parts) > 1:
        parts = [
            delayed(_merge_parts)(*parts[i : i + 2]) for i in range(0, len(parts), 2)
        ]
    (merged,) = compute(parts[0])
    params = est.get_params(deep=False)
    set_here = ("n_features_in_", "classes_") if y is not None else ()
    for name, value in merged.__dict__.items():
        if name not in params and name not in set_here:
            setattr(est, name, value)
    est._finalize_stats()
    if type(est)._fit is not PartialFitMixin._fit and hasattr(est, "_residual"):
        _match_residual_scale(est, blocks, y_blocks, n_id)
    if getattr(est, "_learns_weights", False):
        # The logistic regression sees the layer scores of every row,
        # computed on the workers: n_rows x n_groups floats.
        light = _light(est)
        layer_scores = compute(
            *[
                delayed(_layer_scores_block)(template, light, xb, yb)
                for xb, yb in zip(blocks, y_blocks)
            ]
        )
        est._learn_weights(None, y, np.concatenate(layer_scores))
    est._set_offset(_FitRows(X, id_positions, n_id, dtype))
    return est


def _kind(est):
    from sklearn_ood.base import PartialFitMixin, _is_stateless

    if getattr(type(est), "_dask_bank_builder", None) in _BANK_BUILDERS:
        return "bank"
    if isinstance(est, PartialFitMixin):
        return "sums"
    if _is_stateless(est):
        return "scores"
    raise TypeError(
        f"{type(est).__name__} cannot be fitted on a dask array: its fit is not a "
        "sum over rows (the detectors with partial_fit, KNN, NNGuide and the "
        "fixed-formula ones such as Energy can). Fit it on X.compute(), or on a "
        "sample of the rows; scoring a dask array works for every detector."
    )


def _match_residual_scale(est, blocks, y_blocks, n_id):
    """ViM: ``residual_scale_`` matched on every fit row under the final
    subspace (a second pass over the blocks), as its in-memory fit does."""
    from dask import compute, delayed

    if getattr(est, "residual_scale", None) is not None:
        return
    light = _light(est)
    sums = compute(
        *[delayed(_residual_sum)(light, xb, yb) for xb, yb in zip(blocks, y_blocks)]
    )
    # _matched_scale takes the mean of the residuals it is given.
    est.residual_scale_ = est._matched_scale(np.array([sum(sums) / n_id]))


def _id_array(template, X, y, bounds, dtype):
    """The validated ID rows of ``X`` as a dask array (known chunks)."""
    import dask.array as da
    from dask import delayed

    pieces = []
    for xb, (start, stop) in zip(X.to_delayed().ravel(), bounds):
        if stop == start:
            continue
        yb = None if y is None else y[start:stop]
        n = stop - start if yb is None else int(np.count_nonzero(yb >= 0))
        piece = delayed(_id_rows_block)(template, xb, yb)
        pieces.append(da.from_delayed(piece, (n, X.shape[1]), dtype=dtype))
    return da.concatenate(pieces, axis=0)


def _persisted(bank):
    """``bank`` persisted on the cluster, its blocks computed (so that a
    validation error is raised by ``fit``)."""
    import dask.array as da

    bank = bank.persist()
    n_blocks = bank.numblocks[0]
    da.map_blocks(
        _n_rows, bank, drop_axis=1, chunks=((1,) * n_blocks,), dtype=np.int64
    ).compute()
    return bank


def _exact_search(est):
    """Check the search options; a sharded bank is searched exactly."""
    from sklearn_ood.detectors._knn_search import (
        APPROXIMATE_ALGORITHMS,
        check_algorithm_params,
        resolve_algorithm,
    )

    check_algorithm_params(est.algorithm, est.algorithm_params)
    if est.algorithm in APPROXIMATE_ALGORITHMS:
        raise ValueError(
            f"algorithm={est.algorithm!r} builds one index of the whole bank, which "
            "a bank sharded on a Dask cluster does not have; fit on a dask array "
            "with an exact algorithm ('auto', 'numpy', 'sklearn' or 'faiss'), or "
            "on X.compute()."
        )
    est.algorithm_ = resolve_algorithm(est.algorithm)
    est.index_ = None


def _knn_bank(est, X_id):
    from sklearn_ood.detectors._knn_search import range_exponent
    from sklearn_ood.detectors._neighbors import _check_n_neighbors

    _check_n_neighbors(est.n_neighbors, X_id.shape[0])
    _exact_search(est)
    if est.normalize:
        bank, exponent = X_id.map_blocks(_normalized, dtype=X_id.dtype), 0
    else:
        import dask

        bank = _persisted(X_id)
        high, low = dask.compute(bank.max(), bank.min())
        exponent = range_exponent(max(high, -low))
        if exponent:
            bank = bank.map_blocks(_ldexp, exponent, dtype=X_id.dtype)
    est.bank_, est._bank_exponent = _persisted(bank), exponent


def _nnguide_bank(est, X_id):
    from sklearn_ood.detectors._head import check_head
    from sklearn_ood.detectors._knn_search import range_exponent
    from sklearn_ood.detectors._neighbors import _check_n_neighbors

    est.coef_, est.intercept_ = check_head(est.head, X_id.shape[1])
    _check_n_neighbors(est.n_neighbors, X_id.shape[0])
    _exact_search(est)
    light = _light(est)
    confidence = X_id.map_blocks(_confidence, light, drop_axis=1, dtype=np.float64)
    confidence = _persisted(confidence[:, None])
    exponent = range_exponent(float(abs(confidence).max().compute()))
    bank = X_id.map_blocks(_guided_rows, confidence, exponent, dtype=X_id.dtype)
    est._bank_exponent = exponent
    est.bank_ = _persisted(bank)


# Builders of the sharded bank, named by the detectors' ``_dask_bank_builder``.
_BANK_BUILDERS = {"knn": _knn_bank, "nnguide": _nnguide_bank}


# ------------------------------------------------------------------- score
def score(est, X, method):
    """``getattr(est, method)(X)`` for a dask array ``X``: a dask array."""
    from sklearn.utils.validation import _check_n_features, check_is_fitted

    check_is_fitted(est)
    if method != "score_samples":
        est._check_offset()
    X = _as_rows(est, X)
    _check_n_features(est, X, reset=False)
    dtype = np.dtype(np.int64) if method == "predict" else _float_dtype(X.dtype)
    if is_dask_collection(getattr(est, "bank_", None)):
        return _sharded_score(est, X, method, dtype)
    return X.map_blocks(
        _score_block, _light(est), method, dtype, drop_axis=1, dtype=dtype
    )


class _Found(Exception):
    """Carries the neighbours a shard found out of the detector's scoring."""

    def __init__(self, result):
        super().__init__()
        self.result = result


class _ShardBank:
    """Stands in for ``bank_`` while a worker searches its shard."""

    def __init__(self, rows, start):
        self.rows, self.start, self.dtype = rows, start, rows.dtype
        self.shape = rows.shape


class _MergedBank:
    """Stands in for ``bank_`` with the neighbours every shard found."""

    def __init__(self, parts, dtype, shape):
        self.parts, self.dtype, self.shape = parts, dtype, shape


def _with_bank(est, bank):
    new = object.__new__(type(est))
    new.__dict__.update(est.__dict__)
    new.bank_ = bank
    return new


def _shard_neighbors(est, queries, rows, start, dtype):
    # The detector's own scoring prepares the queries; its search stops at
    # the shard's neighbours.
    if not len(queries):
        return None
    try:
        _with_bank(est, _ShardBank(rows, start)).score_samples(queries)
    except _Found as found:
        return found.result
    raise RuntimeError(f"{type(est).__name__} scored without a neighbour search.")


def _merged_scores(est, queries, parts, method, dtype, bank_dtype, bank_shape):
    if not len(queries):
        return np.empty(0, dtype=dtype)
    merged = _MergedBank([p for p in parts if p is not None], bank_dtype, bank_shape)
    return getattr(_with_bank(est, merged), method)(queries)


def _sharded_score(est, X, method, dtype):
    import dask.array as da
    from dask import delayed

    bank = est.bank_
    light = _light(est)
    shards = [
        (shard, start)
        for shard, (start, stop) in zip(bank.to_delayed().ravel(), _row_bounds(bank))
        if stop > start
    ]
    out = []
    for block, n in zip(X.to_delayed().ravel(), X.chunks[0]):
        parts = [
            delayed(_shard_neighbors)(light, block, shard, start, dtype)
            for shard, start in shards
        ]
        result = delayed(_merged_scores)(
            light, block, parts, method, dtype, bank.dtype, bank.shape
        )
        out.append(da.from_delayed(result, (n,), dtype=dtype))
    return da.concatenate(out)


# ------------------------------------------------------------------ search
def _search_shard(rows, start, queries, n_search, metric, algorithm, exponent):
    from sklearn_ood.detectors._knn_search import kneighbors

    k = min(n_search, len(rows))
    values, indices = kneighbors(
        rows, queries, k, metric=metric, algorithm=algorithm, bank_exponent=exponent
    )
    return values, indices + start


def sharded_kneighbors(
    bank, queries, k, *, metric, algorithm, exclude=None, bank_exponent=0
):
    """:func:`~sklearn_ood.detectors._knn_search.kneighbors` on a bank held
    as shards: each shard's ``k`` (``k + 1`` with ``exclude``) best rows,
    merged. The values are the exact float64 ones of the in-memory search,
    so the merged top-k is the same."""
    n_search = k if exclude is None else k + 1
    if isinstance(bank, _ShardBank):
        raise _Found(
            _search_shard(
                bank.rows, bank.start, queries, n_search, metric, algorithm,
                bank_exponent,
            )
        )  # fmt: skip
    if bank.shape[0] < n_search:
        raise ValueError(
            f"k={k} needs at least {n_search} bank rows, got n_samples={bank.shape[0]}."
        )
    if isinstance(bank, _MergedBank):
        parts = bank.parts
    else:  # a dask array: one search per shard, on the workers
        from dask import compute, delayed

        queries = np.asarray(queries)
        parts = compute(
            *[
                delayed(_search_shard)(
                    shard, start, queries, n_search, metric, algorithm, bank_exponent
                )
                for shard, (start, stop) in zip(
                    bank.to_delayed().ravel(), _row_bounds(bank)
                )
                if stop > start
            ]
        )
    values = np.concatenate([p[0] for p in parts], axis=1)
    indices = np.concatenate([p[1] for p in parts], axis=1)
    if exclude is not None:
        worst = np.inf if metric == "l2" else -np.inf
        values[indices == np.asarray(exclude, dtype=np.int64)[:, None]] = worst
    order = np.argsort(values if metric == "l2" else -values, axis=1, kind="stable")
    order = order[:, :k]
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(
        indices, order, axis=1
    )
