"""Nearest-neighbour detectors on penultimate-layer features: KNN, NNGuide.

Both memorise (a function of) their fit rows in ``bank_``. The threshold
``offset_`` is set from *leave-one-out* scores: each fit row is scored
against the bank without itself, as a new ID sample would be. Scoring the
fit rows later with ``score_samples`` counts them as their own neighbours,
so ``predict(X_fit)`` rejects fewer than ``contamination`` of them.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import gen_batches
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors._head import check_head, head_logits
from sklearn_ood.detectors._knn_search import (
    BACKENDS,
    kneighbors,
    normalize_rows,
    resolve_backend,
)
from sklearn_ood.detectors._softmax import logsumexp64

__all__ = ["KNN", "NNGuide"]

# Rows whose logits are computed at once (n_classes float64 values each).
_LOGIT_CHUNK = 8192

_SEARCH_CONSTRAINTS = {
    "k": [Interval(Integral, 1, None, closed="left")],
    "backend": [StrOptions(set(BACKENDS))],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
}


def _check_k(k, n_samples):
    if k + 1 > n_samples:
        raise ValueError(
            f"k={k} needs at least k + 1 = {k + 1} fit rows (each fit row is "
            f"scored without itself for the threshold), got n_samples={n_samples}."
        )


class KNN(BaseDetector):
    r"""Deep nearest neighbours: negative distance to the k-th nearest fit row.

    .. math::

        s(x) = -\lVert z - z_{(k)} \rVert_2, \qquad
        z = \frac{x}{\lVert x \rVert_2}

    Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest
    Neighbors", ICML 2022. :math:`z_{(k)}` is the k-th nearest of the
    L2-normalised fit rows (the bank). A query equal to a bank row is at
    distance exactly 0 from it, so with ``k=1`` its score is 0, the largest
    possible. Zero rows are left as they are by the normalisation.

    The search is exact (see ``backend``); every backend gives the same
    scores up to rounding, because the k-th distance is recomputed in
    float64 from the rows once the neighbours are found. Fit rows are scored
    leave-one-out for ``offset_``: row :math:`i` is searched with ``k + 1``
    neighbours and exactly one match, row :math:`i` itself, is dropped by
    index (duplicates of it elsewhere still count, at distance 0). With more
    than 10,000 fit rows, a seeded uniform sample of 10,000 of them is
    scored so, not all: each costs a search of the whole bank.

    Differences: the paper's code (faiss ``IndexFlatL2``) ranks by the
    *squared* distance; the ranking is the same. pytorch-ood 0.4.0's ``KNN``
    returns :math:`-s` and scores fit rows with themselves; it also divides
    by ``max(norm, 1e-12)``, which differs from ours only for rows of norm
    below 1e-12. The paper uses a random subset of ImageNet's training set
    as the bank; fit on such a subset to do the same.

    Parameters
    ----------
    k : int >= 1, default=50
        Rank of the neighbour whose distance is the score (the paper uses 50
        on CIFAR-10, 200 on CIFAR-100, 1000 on ImageNet). The fit set needs
        at least ``k + 1`` rows.
    normalize : bool, default=True
        L2-normalise fit rows and queries. With ``False`` the raw Euclidean
        distance is used.
    backend : {"auto", "numpy", "sklearn", "faiss"}, default="auto"
        Exact neighbour search: NumPy blocked matrix products, scikit-learn's
        brute-force ``NearestNeighbors``, or faiss (``faiss.knn``).
        ``"auto"`` uses faiss when it is installed, else NumPy;
        ``"faiss"`` without faiss raises ``ImportError``.
    batch_size : int >= 1, default=1024
        Queries searched at once by the NumPy backend, which also splits the
        bank so that one block holds at most 2**24 query-bank pairs (64 MiB
        of float32 scores): memory never grows with ``n_fit * n_queries``.
        faiss and scikit-learn, which block internally, get at least 8192
        queries at a time.
    contamination : float in (0, 0.5], default=0.05
        Fraction of the ID fit rows rejected by the leave-one-out threshold.

    Attributes
    ----------
    bank_ : ndarray of shape (n_fit, n_features)
        Normalised fit rows, in the dtype of the fit data (float32 stays
        float32, half the memory; queries are cast to it). With
        ``normalize=False``, the validated fit data itself (C-contiguous; not
        copied when it already was).
    backend_ : str
        Backend that ``backend`` resolved to at fit time. Scoring resolves
        ``backend`` again, so an ``"auto"`` model pickled where faiss was
        installed still scores where it is not.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import KNN
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> knn = KNN(k=1, backend="numpy").fit(X)
    >>> knn.score_samples([[2.0, 0.0], [-1.0, 0.0]]).round(4)
    array([ 0.    , -1.4142])
    """

    # Most fit rows scored (leave-one-out) for offset_, as in PartialFitMixin.
    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_SEARCH_CONSTRAINTS,
        "normalize": ["boolean"],
    }

    def __init__(
        self,
        k=50,
        normalize=True,
        backend="auto",
        batch_size=1024,
        *,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.k = k
        self.normalize = normalize
        self.backend = backend
        self.batch_size = batch_size

    def _fit(self, X, y):
        _check_k(self.k, X.shape[0])
        self.backend_ = resolve_backend(self.backend)
        self.bank_ = normalize_rows(X) if self.normalize else np.ascontiguousarray(X)

    def _kth_distance(self, queries, exclude=None):
        distances, _ = kneighbors(
            self.bank_,
            queries,
            self.k,
            metric="l2",
            backend=self.backend,
            batch_size=self.batch_size,
            exclude=exclude,
        )
        return distances[:, -1]

    def _score(self, X):
        # Queries are prepared exactly like the bank (same dtype), so that a
        # duplicate of a fit row is at distance exactly 0.
        queries = normalize_rows(X, dtype=self.bank_.dtype) if self.normalize else X
        return 0.0 - self._kth_distance(queries)

    def _fit_scores(self, X_id, rows):
        # Each sampled bank row is left out of its own neighbours.
        rows = np.arange(len(X_id))[rows]
        return 0.0 - self._kth_distance(self.bank_[rows], exclude=rows)


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
    largest inner products :math:`\langle \hat x, b_i \rangle` (the set
    :math:`N_k(x)`), i.e. the mean confidence-weighted cosine similarity.
    The neighbours are ranked by these scaled products, not by cosine alone,
    and a fit row of negative confidence (all logits very negative) points
    the other way. This is the definition of the authors' code (faiss ``IndexFlatIP`` on
    the scaled bank) and of pytorch-ood 0.4.0, whose ``NNGuide`` returns
    :math:`-s`. Fit rows are scored leave-one-out for ``offset_`` (a fit
    row is dropped from its own neighbour list by index; at most a seeded
    sample of 10,000 of them, as in :class:`KNN`); pytorch-ood and the
    authors' code have no threshold. The paper's bank is a random 1 %
    of ImageNet's training set; fit on such a subset to do the same.

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer, anything
        :func:`~sklearn_ood.detectors.check_head` accepts: a pair ``(W, b)``,
        a torch ``nn.Linear``, a fitted scikit-learn linear model, or a
        callable ``head(n_features)`` returning one of those.
    k : int >= 1, default=10
        Number of neighbours averaged (the paper's default). The fit set
        needs at least ``k + 1`` rows.
    backend : {"auto", "numpy", "sklearn", "faiss"}, default="auto"
        Exact maximum-inner-product search; see :class:`KNN`.
    batch_size : int >= 1, default=1024
        Queries searched at once; see :class:`KNN`.
    contamination : float in (0, 0.5], default=0.05
        Fraction of the ID fit rows rejected by the leave-one-out threshold.

    Attributes
    ----------
    W_ : ndarray of shape (n_classes, n_features)
        Head weights.
    b_ : ndarray of shape (n_classes,)
        Head bias.
    bank_ : ndarray of shape (n_fit, n_features)
        Confidence-scaled normalised fit rows :math:`b_i`, in the dtype of
        the fit data (queries are cast to it).
    backend_ : str
        Backend that ``backend`` resolved to at fit time; see :class:`KNN`.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import NNGuide
    >>> X = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    >>> head = (np.eye(2), np.zeros(2))
    >>> det = NNGuide(head, k=1, backend="numpy").fit(X)
    >>> det.score_samples([[3.0, 0.0], [-3.0, 0.0]]).round(3)
    array([6.484, 0.   ])
    """

    # Most fit rows scored (leave-one-out) for offset_, as in PartialFitMixin.
    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_SEARCH_CONSTRAINTS,
        "head": [object],  # resolved and checked by check_head in fit
    }

    def __init__(
        self, head, k=10, backend="auto", batch_size=1024, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.k = k
        self.backend = backend
        self.batch_size = batch_size

    def _confidence(self, X):
        out = np.empty(X.shape[0])
        for rows in gen_batches(X.shape[0], _LOGIT_CHUNK):
            out[rows] = logsumexp64(head_logits(X[rows], self.W_, self.b_))
        return out

    def _fit(self, X, y):
        self.W_, self.b_ = check_head(self.head, X.shape[1])
        _check_k(self.k, X.shape[0])
        self.backend_ = resolve_backend(self.backend)
        self.bank_ = normalize_rows(X, scale=self._confidence(X))

    def _guided(self, X, exclude=None):
        similarities, _ = kneighbors(
            self.bank_,
            normalize_rows(X, dtype=self.bank_.dtype),
            self.k,
            metric="ip",
            backend=self.backend,
            batch_size=self.batch_size,
            exclude=exclude,
        )
        return self._confidence(X) * similarities.mean(axis=1)

    def _score(self, X):
        return self._guided(X)

    def _fit_scores(self, X_id, rows):
        # Each sampled row is left out of its own neighbours.
        rows = np.arange(len(X_id))[rows]
        return self._guided(X_id[rows], exclude=rows)
