"""Nearest-neighbour detectors on penultimate-layer features: KNN, NNGuide.

Both memorise (a function of) their fit rows in ``bank_``. The threshold
``offset_`` is set from *leave-one-out* scores: each fit row is scored
against the bank without itself, as a new ID sample would be. Scoring the
fit rows later with ``score_samples`` counts them as their own neighbours,
so ``predict(X_fit)`` rejects fewer than ``contamination`` of them.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors._head import check_head, head_logits
from sklearn_ood.detectors._knn_search import (
    ALGORITHMS,
    APPROXIMATE_ALGORITHMS,
    ApproximateIndex,
    check_algorithm_params,
    kneighbors,
    normalize_rows,
    normalized_bank,
    range_exponent,
    rescale_rows,
    resolve_algorithm,
)
from sklearn_ood.detectors._softmax import logsumexp64
from sklearn_ood.utils._chunking import row_chunks
from sklearn_ood.utils._validation import check_score_range

__all__ = ["KNN", "NNGuide"]

_SEARCH_CONSTRAINTS = {
    "n_neighbors": [Interval(Integral, 1, None, closed="left")],
    "algorithm": [StrOptions(set(ALGORITHMS + APPROXIMATE_ALGORITHMS))],
    "algorithm_params": [dict, None],
    "random_state": ["random_state"],
}


def _build_index(det, params, metric):
    """The approximate index of ``det.bank_``, or None for an exact search."""
    if det.algorithm not in APPROXIMATE_ALGORITHMS:
        return None
    index = ApproximateIndex(det.algorithm, params, metric)
    return index.build(det.bank_, det.random_state)


def _check_n_neighbors(n_neighbors, n_samples):
    if n_neighbors + 1 > n_samples:
        raise ValueError(
            f"n_neighbors={n_neighbors} needs at least n_neighbors + 1 = "
            f"{n_neighbors + 1} fit rows (each fit row is scored without itself "
            f"for the threshold), got n_samples={n_samples}."
        )


class KNN(BaseDetector):
    r"""Deep nearest neighbours: negative distance to the k-th nearest fit row.

    .. math::

        s(x) = -\lVert z - z_{(k)} \rVert_2, \qquad
        z = \frac{x}{\lVert x \rVert_2}

    Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest
    Neighbors", ICML 2022. :math:`z_{(k)}` is the :math:`k`-th nearest
    (:math:`k` = ``n_neighbors``) of the L2-normalised fit rows (the bank).
    A query equal to a bank row is at distance exactly 0 from it, so with
    ``n_neighbors=1`` its score is 0, the largest possible. Zero rows are
    left as they are by the normalisation.

    The search is exact (see ``algorithm``); every algorithm gives the same
    scores up to rounding, because the k-th distance is recomputed in
    float64 from the rows once the neighbours are found. Fit rows are scored
    leave-one-out for ``offset_``: row :math:`i` is searched with ``k + 1``
    neighbours and exactly one match, row :math:`i` itself, is dropped by
    index (duplicates of it elsewhere still count, at distance 0). With more
    than 10,000 fit rows, a seeded uniform sample of 10,000 of them is
    scored so, not all: each costs a search of the whole bank.
    ``contamination=None`` skips that pass (scores only).

    With ``normalize=False`` the score is the raw Euclidean distance, the
    same from every algorithm at any magnitude the floats hold: a bank whose
    entries lie outside :math:`[2^{-20}, 2^{20}]` is divided by a power of
    two (exactly) and the ranking divides the queries alike, so that a
    float32 ranking (faiss's, or NumPy's on float32 data) never overflows,
    while the distances are computed from the true rows, with squares
    rescaled where they would leave the float64 range. A distance beyond the
    float range of the scores (float32 for float32 input) raises a
    ``ValueError``. Moving a query away from the bank along a ray, beyond
    the bank's radius around the ray's origin, lowers its score at every
    step: every distance :math:`\lVert c + t v - b \rVert` grows with
    :math:`t` once :math:`t > \lVert b - c \rVert`.

    Differences: the paper's code (faiss ``IndexFlatL2``) ranks by the
    *squared* distance; the ranking is the same. pytorch-ood 0.4.0's ``KNN``
    returns :math:`-s` and scores fit rows with themselves; it also divides
    by ``max(norm, 1e-12)``, which differs from ours only for rows of norm
    below 1e-12. The paper uses a random subset of ImageNet's training set
    as the bank; fit on such a subset to do the same.

    Parameters
    ----------
    n_neighbors : int >= 1, default=50
        Rank :math:`k` of the neighbour whose distance is the score (the
        paper uses 50 on CIFAR-10, 200 on CIFAR-100, 1000 on ImageNet). The
        fit set needs at least ``n_neighbors + 1`` rows.
    normalize : bool, default=True
        L2-normalise fit rows and queries. With ``False`` the raw Euclidean
        distance is used.
    algorithm : str, default="auto"
        One of ``"auto"``, ``"numpy"``, ``"sklearn"``, ``"faiss"`` (exact),
        ``"faiss-ivf"``, ``"faiss-hnsw"`` (approximate). Exact neighbour
        search: NumPy blocked matrix products, scikit-learn's
        brute-force ``NearestNeighbors``, or faiss (``faiss.knn``).
        ``"auto"`` uses faiss when it is installed, else NumPy;
        ``"faiss"`` without faiss raises ``ImportError``. Queries are
        searched a chunk at a time, as many as scikit-learn's
        ``working_memory`` allows (``sklearn.config_context(
        working_memory=...)``, in MiB), so memory never grows with
        ``n_fit * n_queries``. A memory-mapped fit set (``np.memmap``) is
        not copied: the bank keeps the mapped rows (and one normalisation
        factor per row, applied when a block is read) and is searched a
        block of rows at a time, with the same scores as in memory.

        Approximate search, for banks where the exact one is too slow:
        ``"faiss-ivf"`` (inverted lists, ``IndexIVFFlat``) or
        ``"faiss-hnsw"`` (a navigable graph, ``IndexHNSWFlat``), built at
        fit time (both need faiss). They pick the candidates; the distances
        of those found are still exact (float64), and fit rows are still
        scored leave-one-out (``k + 1`` neighbours searched, the row itself
        dropped by index). Some true neighbours may be missed (recall@k
        below 1), which can only push the k-th distance up (the guidance
        of :class:`NNGuide` down).
    algorithm_params : dict, default=None
        Parameters of an approximate ``algorithm`` (an error for the exact
        ones): ``"faiss-ivf"``: ``nlist`` lists (default
        ``round(sqrt(n_fit))``), ``nprobe`` of them searched (default
        ``max(8, nlist // 64)``); ``"faiss-hnsw"``: ``M`` links per row
        (default 32), ``efConstruction`` (default 160), ``efSearch``
        (default ``max(256, 2 * c)``; never below ``c``), where ``c`` is the
        number of candidates searched, ``n_neighbors + 8``
        (``n_neighbors + 9`` for the leave-one-out fit scores). More lists
        probed or a larger ``efSearch`` raise recall and cost time; a
        larger ``efConstruction`` raises recall and costs build time. On
        1M clustered rows (``benchmarks/bench_knn_scale.py``, k = 50) the
        HNSW defaults reach recall@50 = 0.9953 (AUROC -0.0016 against exact
        search), 0.9992 on 500k of them.
    random_state : int, RandomState instance or None, default=None
        Seeds the training of the ``"faiss-ivf"`` lists (their k-means and
        its sample of fit rows); unused by the other algorithms.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by the leave-one-out threshold;
        ``None`` learns no threshold.

    Attributes
    ----------
    bank_ : ndarray of shape (n_fit, n_features)
        Normalised fit rows, in the dtype of the fit data (float32 stays
        float32, half the memory; the ranking casts queries to it). With
        ``normalize=False``, the validated fit data itself (C-contiguous; not
        copied when it already was), divided by a power of two when its
        entries lie outside :math:`[2^{-20}, 2^{20}]` (see above). For a
        memory-mapped fit set, a read-only view of the mapped rows that
        normalises the rows read (``bank_[rows]``).
    algorithm_ : str
        Algorithm that ``algorithm`` resolved to at fit time. Scoring
        resolves ``algorithm`` again, so an ``"auto"`` model pickled where
        faiss was installed still scores where it is not.
    index_ : object or None
        The approximate index (``algorithm="faiss-ivf"`` or
        ``"faiss-hnsw"``), None otherwise. It holds a float32 copy of the
        bank and pickles through ``faiss.serialize_index``, so the pickle of
        such a model is about that copy (plus the IVF centroids or the HNSW
        links) larger.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    NNGuide : Energy score guided by the similarity to the nearest fit rows.
    Mahalanobis : Distance to the closest class mean under a shared covariance.
    GMM : Likelihood under a Gaussian mixture fitted to the features.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import KNN
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> knn = KNN(n_neighbors=1, algorithm="numpy").fit(X)
    >>> knn.score_samples([[2.0, 0.0], [-1.0, 0.0]]).round(4)
    array([ 0.    , -1.4142])
    """

    _family = "neighbors"
    _dask_bank_builder = "knn"  # fit on a dask array keeps the bank sharded

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_SEARCH_CONSTRAINTS,
        "normalize": ["boolean"],
    }

    def __init__(
        self,
        n_neighbors=50,
        normalize=True,
        algorithm="auto",
        *,
        algorithm_params=None,
        random_state=None,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.normalize = normalize
        self.algorithm = algorithm
        self.algorithm_params = algorithm_params
        self.random_state = random_state

    def _fit(self, X, y):
        _check_n_neighbors(self.n_neighbors, X.shape[0])
        params = check_algorithm_params(self.algorithm, self.algorithm_params)
        self.algorithm_ = resolve_algorithm(self.algorithm)
        if self.normalize:
            self.bank_, self._bank_exponent = normalized_bank(X), 0
        else:
            self.bank_, self._bank_exponent = rescale_rows(X)
        self.index_ = _build_index(self, params, "l2")

    def _kth_distance(self, queries, dtype, exclude=None):
        distances, _ = kneighbors(
            self.bank_,
            queries,
            self.n_neighbors,
            metric="l2",
            algorithm=self.algorithm,
            exclude=exclude,
            bank_exponent=self._bank_exponent,
            index=self.index_,
        )
        return check_score_range(
            0.0 - distances[:, -1],
            dtype,
            type(self).__name__,
            "distance to the k-th neighbour",
        )

    def _score(self, X):
        # Normalised queries are prepared exactly like the bank (same dtype),
        # so that a duplicate of a fit row is at distance exactly 0.
        if self.normalize:
            X = normalize_rows(X, dtype=self.bank_.dtype)
        return self._kth_distance(X, X.dtype)

    def _fit_scores(self, X_id, rows):
        # Each sampled fit row is left out of its own neighbours.
        rows = np.arange(len(X_id))[rows]
        queries = self.bank_[rows] if self.normalize else X_id[rows]
        return self._kth_distance(queries, X_id.dtype, exclude=rows)


class NNGuide(BaseDetector):
    r"""Nearest neighbour guidance: energy scaled by similarity to the fit rows.

    .. math::

        c(x) = \log \sum_j e^{l_j(x)}, \qquad
        \hat x = \frac{x}{\lVert x \rVert_2}, \qquad
        b_i = c(x_i) \, \hat x_i

    .. math::

        s(x) = c(x) \cdot \frac{1}{k} \sum_{i \in N_k(x)} \langle \hat x, b_i \rangle

    Park, Jung & Teoh, "Nearest Neighbor Guidance for Out-of-Distribution
    Detection", ICCV 2023. The confidence :math:`c` is the energy score
    (``logsumexp`` of the logits :math:`l(x) = W x + b` of the classifier's
    ``head``, temperature 1). The bank holds the normalised fit rows scaled
    by their confidence, and the guidance is the mean of the :math:`k`
    (``n_neighbors``) largest inner products :math:`\langle \hat x, b_i
    \rangle` (the set :math:`N_k(x)`), i.e. the mean confidence-weighted
    cosine similarity. The neighbours are ranked by these scaled products,
    not by cosine alone, and a fit row of negative confidence (all logits
    very negative) points the other way. This is the definition of the
    authors' code (faiss ``IndexFlatIP`` on the scaled bank) and of
    pytorch-ood 0.4.0, whose ``NNGuide`` returns :math:`-s`. Fit rows are
    scored leave-one-out for ``offset_`` (a fit row is dropped from its own
    neighbour list by index; at most a seeded sample of 10,000 of them, as
    in :class:`KNN`); pytorch-ood and the authors' code have no threshold.
    The paper's bank is a random 1 % of ImageNet's training set; fit on such
    a subset to do the same.

    The confidence and the products are computed in float64. The score
    grows like the square of the features' scale (about
    :math:`\lVert W \rVert^2 \lVert x \rVert^2`), so it leaves the float32
    range for float32 features of about :math:`10^{19}` and the float64
    range for features of about :math:`10^{154}`: ``fit`` (for the
    bank or the threshold) and ``score_samples`` then raise a
    ``ValueError`` (pass float64 features in the first case).

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer, anything
        :func:`~sklearn_ood.detectors.check_head` accepts: a pair ``(W, b)``,
        a torch ``nn.Linear``, a fitted scikit-learn linear model, or a
        callable ``head(n_features)`` returning one of those.
    n_neighbors : int >= 1, default=10
        Number :math:`k` of neighbours averaged (the paper's default). The
        fit set needs at least ``n_neighbors + 1`` rows.
    algorithm : str, default="auto"
        Exact maximum-inner-product search (``"auto"``, ``"numpy"``,
        ``"sklearn"``, ``"faiss"``), or an approximate one (``"faiss-ivf"``,
        ``"faiss-hnsw"``); see :class:`KNN`.
    algorithm_params : dict, default=None
        Parameters of an approximate ``algorithm``; see :class:`KNN`.
    random_state : int, RandomState instance or None, default=None
        Seeds the training of the ``"faiss-ivf"`` lists; see :class:`KNN`.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by the leave-one-out threshold;
        ``None`` learns no threshold.

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W`.
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    bank_ : ndarray of shape (n_fit, n_features)
        Confidence-scaled normalised fit rows :math:`b_i`, in the dtype of
        the fit data (the ranking casts queries to it), divided by a power of
        two when their entries lie outside :math:`[2^{-20}, 2^{20}]` (as in
        :class:`KNN`). For a memory-mapped fit set, a read-only view of the
        mapped rows that scales the rows read (see :class:`KNN`).
    algorithm_ : str
        Algorithm that ``algorithm`` resolved to at fit time; see
        :class:`KNN`.
    index_ : object or None
        The approximate index, None for an exact search; see :class:`KNN`.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    KNN : Negative distance to the k-th nearest fit row.
    Energy : The confidence :math:`c` alone, from the logits.
    ViM : Energy corrected by the residual outside the principal subspace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import NNGuide
    >>> X = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    >>> head = (np.eye(2), np.zeros(2))
    >>> det = NNGuide(head, n_neighbors=1, algorithm="numpy").fit(X)
    >>> det.score_samples([[3.0, 0.0], [-3.0, 0.0]]).round(3)
    array([6.484, 0.   ])
    """

    _family = "neighbors"
    _dask_bank_builder = "nnguide"  # fit on a dask array keeps the bank sharded

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_SEARCH_CONSTRAINTS,
        "head": [object],  # resolved and checked by check_head in fit
    }

    def __init__(
        self,
        head,
        n_neighbors=10,
        algorithm="auto",
        *,
        algorithm_params=None,
        random_state=None,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.algorithm_params = algorithm_params
        self.random_state = random_state

    def _confidence(self, X):
        out = np.empty(X.shape[0])
        # Temporaries per row: its float64 copy, its logits and their shift.
        row_bytes = 8 * (X.shape[1] + 2 * len(self.intercept_))
        with np.errstate(over="ignore", invalid="ignore"):
            for rows in row_chunks(X.shape[0], row_bytes):
                out[rows] = logsumexp64(
                    head_logits(X[rows], self.coef_, self.intercept_)
                )
        return check_score_range(
            out, np.float64, type(self).__name__, "confidence (energy of the logits)"
        )

    def _fit(self, X, y):
        self.coef_, self.intercept_ = check_head(self.head, X.shape[1])
        _check_n_neighbors(self.n_neighbors, X.shape[0])
        params = check_algorithm_params(self.algorithm, self.algorithm_params)
        self.algorithm_ = resolve_algorithm(self.algorithm)
        # Unit rows times their confidence: the largest |entry| lies within a
        # factor sqrt(n_features) below max |c|, so dividing c by a power of
        # two brings the bank into the range where the search cannot overflow.
        confidence = self._confidence(X)
        peak = np.abs(confidence).max() if len(confidence) else 0.0
        self._bank_exponent = range_exponent(peak)
        scale = np.ldexp(confidence, -self._bank_exponent)
        self.bank_ = normalized_bank(X, scale=scale)
        self.index_ = _build_index(self, params, "ip")

    def _guided(self, X, exclude=None):
        similarities, _ = kneighbors(
            self.bank_,
            normalize_rows(X, dtype=self.bank_.dtype),
            self.n_neighbors,
            metric="ip",
            algorithm=self.algorithm,
            exclude=exclude,
            bank_exponent=self._bank_exponent,
            index=self.index_,
        )
        # Both factors are finite; only their product may overflow.
        with np.errstate(over="ignore", invalid="ignore"):
            scores = self._confidence(X) * similarities.mean(axis=1)
        return check_score_range(scores, X.dtype, type(self).__name__, "score")

    def _score(self, X):
        return self._guided(X)

    def _fit_scores(self, X_id, rows):
        # Each sampled row is left out of its own neighbours.
        rows = np.arange(len(X_id))[rows]
        return self._guided(X_id[rows], exclude=rows)
