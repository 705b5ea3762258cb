"""Class-conditional Gaussian statistics shared by the Mahalanobis family.

:class:`ClassStats` streams per-class counts, means and scatter matrices in
float64 with the pairwise update of Chan, Golub & LeVeque ("Updating Formulae
and a Pairwise Algorithm for Computing Sample Variances", 1979): each row
block is centred at its own class means and then merged, so there is no
``X^T X - n mu mu^T`` cancellation. :func:`estimate_covariance` turns a
scatter matrix into an empirical, Ledoit-Wolf or OAS covariance;
:func:`whitener` factorises it (Cholesky, with a ridge fallback for singular
matrices); :class:`TiedGaussian` and :class:`ClassGaussians` score rows in
chunks whose size follows scikit-learn's ``working_memory``, so memory never
grows with ``n_train x n_test``.
"""

import copy
import math

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from scipy.special import logsumexp

from sklearn_ood.exceptions import SingularCovarianceWarning
from sklearn_ood.utils._chunking import row_chunks
from sklearn_ood.utils._warnings import warn

__all__ = [
    "COVARIANCE_OPTIONS",
    "ClassGaussians",
    "ClassStats",
    "GaussianLabelsMixin",
    "SingularCovarianceWarning",
    "TiedGaussian",
    "check_scores",
    "estimate_covariance",
    "whitener",
]

# The ``covariance_estimator`` options, named after the estimators of
# sklearn.covariance whose formulas they apply to streamed scatter matrices:
# EmpiricalCovariance, LedoitWolf and OAS.
COVARIANCE_OPTIONS = {"empirical", "ledoit_wolf", "oas"}

# A Cholesky pivot C_ii^2 is the part of the variance of feature i that the
# features before it leave unexplained; a covariance is treated as singular
# when some pivot falls below this fraction of its diagonal entry.
_PIVOT_RTOL = 1e-10
# First fallback ridge, relative to the mean variance trace(cov) / d; it grows
# tenfold until the factorisation passes.
_RIDGE_START = 1e-6
_MAX_RIDGE_STEPS = 30

_RESCALE = (
    "Rescale the features (e.g. divide them by a power of ten, or fit a "
    "StandardScaler on the in-distribution rows) before fitting."
)


def _overflow_error(what="The sums of squares", size="1e154"):
    return ValueError(
        f"{what} overflowed float64: the features hold values too large (about "
        f"{size} or more) for a covariance. {_RESCALE}"
    )


def _allocate(shape, what, zeros=True):
    """A float64 array of ``shape``, or a ``MemoryError`` that says what to do.

    The whole need is asked for at once, so that a request beyond the
    machine's memory fails here with this message. Linux over-commits memory:
    a request below the physical memory plus swap but above what is free
    succeeds, and the process may be killed later when the pages are used.
    """
    try:
        return np.zeros(shape) if zeros else np.empty(shape)
    except MemoryError as exc:
        n_bytes = 8 * math.prod(shape)
        raise MemoryError(
            f"Could not allocate {n_bytes / 2**30:.3g} GiB of float64 for {what}. "
            "Use a tied covariance (Mahalanobis, RMD) instead of per-class "
            "ones, fewer features (e.g. a PCA), or fewer classes."
        ) from exc


def _row_batches(n_rows, floats_per_row):
    """Row slices whose float64 work arrays fit in ``working_memory``."""
    return row_chunks(n_rows, 8 * max(floats_per_row, 1))


# Rows per block of ClassStats._update_block: gathered in class order into a
# small buffer of the input dtype, then centred in a float64 buffer.
_BLOCK_ROWS = 4096


def _centred(X, rows, columns, center):
    """float64 ``X[rows, columns] - center`` (C order)."""
    block = X[rows] if columns is None else X[rows, columns]
    return np.subtract(block, center, dtype=np.float64)


def _whiten(centred, W):
    """``centred @ W`` for upper-triangular ``W`` by BLAS trmm (half a matmul).

    Computed as ``(W^T centred^T)^T`` so that the C-ordered rows are read as
    a Fortran matrix without a copy.
    """
    return blas.dtrmm(1.0, W, centred.T, side=0, lower=0, trans_a=1).T


def _sq_dist(Z, M, m2):
    """``||z_i - m_k||^2`` for rows of ``Z`` and ``M``, one matrix product."""
    D = Z @ M.T
    D *= -2.0
    D += np.einsum("ij,ij->i", Z, Z)[:, None]
    D += m2
    return np.maximum(D, 0.0, out=D)


def check_scores(scores, dtype, owner, what="squared Mahalanobis distance"):
    """Return ``scores`` (one row per sample), or raise ``ValueError`` where
    one is not a finite number of the output ``dtype`` (float32 scores of
    float32 input).

    A row far enough from every fitted Gaussian has a ``what`` beyond the
    float range: an error that says so, never a silent ``-inf`` or NaN.
    """
    limit = np.finfo(dtype).max
    bad = ~(np.abs(scores) <= limit)  # NaN, inf, or beyond the output dtype
    if not bad.any():
        return scores
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    if np.all(np.isfinite(scores)):  # finite in float64, not in float32
        detail = (
            "beyond the float32 range of the scores of float32 input; pass the "
            "features as float64 to get float64 scores"
        )
    else:
        detail = (
            "beyond the float64 range: these rows lie extremely far from the "
            "fitted Gaussians (features about 1e154 times their spread or more). "
            "Such rows are far out of distribution; rescale the features, or "
            "reject rows with huge values before scoring"
        )
    raise ValueError(
        f"{owner} cannot score {rows.size} row(s) (the first is row {rows[0]}): "
        f"their {what} is {detail}."
    )


class ClassStats:
    """Float64 per-class counts, means and scatter matrices of a stream.

    :meth:`with_rows` returns a new object holding the rows seen so far plus
    new ones and leaves this one unchanged, so that a detector can go back to
    the statistics of its previous ``partial_fit`` call when a chunk is
    refused. The price is memory: the new object owns copies of the arrays
    the rows change (``within``, ``means`` and, with ``per_class``, the
    ``K x d x d`` scatters), made once per call and only when this object
    already holds rows; a fresh object (as in ``fit``) copies nothing.

    Parameters
    ----------
    n_features : int
        Width of the rows (after ``columns`` selection).
    columns : slice or ndarray of int, default=None
        Columns of the incoming ``X`` to use; ``None`` uses all.
    per_class : bool, default=False
        Also keep one scatter matrix per class (``K x d x d`` memory).
    fourth_moments : bool, default=False
        Also keep :math:`\\sum \\lVert x - \\mu_k \\rVert^4` per class and
        :math:`\\sum \\lVert x - \\mu \\rVert^4` about the grand mean (for
        Ledoit-Wolf). Rows are measured about the means known after their
        chunk: exact for a single update, an approximation when streaming.

    See Also
    --------
    TiedGaussian : Class means with one shared covariance, from these sums.
    ClassGaussians : One Gaussian per class, from the per-class scatters.
    """

    def __init__(self, n_features, columns=None, per_class=False, fourth_moments=False):
        d = n_features
        self.columns = columns
        self.labels = np.empty(0, dtype=np.int64)
        self.counts = np.empty(0)
        self.means = np.empty((0, d))
        self.within = np.zeros((d, d))  # pooled within-class scatter
        self.class_scatter = np.empty((0, d, d)) if per_class else None
        self.fourth = np.empty(0) if fourth_moments else None
        self.fourth_total = 0.0

    @property
    def n_samples(self):
        return float(self.counts.sum())

    def _add_labels(self, labels):
        """Grow the per-class arrays (new arrays) for unseen ``labels``;
        return whether they were grown."""
        new = np.setdiff1d(labels, self.labels)
        if not new.size:
            return False
        merged = np.union1d(self.labels, new)
        old = np.searchsorted(merged, self.labels)

        def grow(a, what=None):
            shape = (len(merged),) + a.shape[1:]
            out = np.zeros(shape) if what is None else _allocate(shape, what)
            out[old] = a
            return out

        self.counts, self.means = grow(self.counts), grow(self.means)
        if self.class_scatter is not None:
            d = self.means.shape[1]
            self.class_scatter = grow(
                self.class_scatter,
                f"the scatter matrices of {len(merged)} classes x {d} features",
            )
        if self.fourth is not None:
            self.fourth = grow(self.fourth)
        self.labels = merged
        return True

    def _own_arrays(self):
        """Private copies of the arrays that the blocks update in place."""
        self.counts, self.means = self.counts.copy(), self.means.copy()
        if self.fourth is not None:
            self.fourth = self.fourth.copy()
        if self.class_scatter is not None:
            K, d, _ = self.class_scatter.shape
            scatter = _allocate(
                self.class_scatter.shape,
                f"a copy of the scatter matrices of {K} classes x {d} features "
                "(partial_fit keeps the previous ones until the chunk is added)",
                zeros=False,
            )
            np.copyto(scatter, self.class_scatter)
            self.class_scatter = scatter

    def with_rows(self, X, labels):
        """Statistics of the rows seen so far plus ``X``, as a new object.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_columns)
            Rows of any float dtype (``columns`` is applied here).
        labels : ndarray of shape (n_rows,)
            Their integer classes.

        Returns
        -------
        stats : ClassStats
            A new object; ``self`` is left unchanged.
        """
        labels = np.asarray(labels, dtype=np.int64)
        new = copy.copy(self)
        if not len(labels):
            return new
        if not new._add_labels(np.unique(labels)):
            new._own_arrays()
        d = new.means.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):
            for rows in _row_batches(len(X), 2 * d):
                block = X[rows] if new.columns is None else X[rows, new.columns]
                new._update_block(block, labels[rows])
        return new

    def _update_block(self, X, labels):
        """Merge one block into this (private) object's arrays.

        The rows are visited in class order, ``_BLOCK_ROWS`` at a time, by
        gathering them into one small buffer of their own dtype (no sorted
        or float64 copy of the whole block). Each buffer is copied to a
        small float64 buffer, its rows of each class are centred at their
        own mean there, and its scatter (float64 products, so float32 input
        loses nothing against a float64 copy of it) is merged by the
        pairwise update, buffer after buffer: one pass over the rows. The
        Ledoit-Wolf fourth moments take a second pass, about the updated
        class means.
        """
        K = len(self.labels)
        idx = np.searchsorted(self.labels, labels)
        # Small integers sort stably by radix sort.
        key = idx.astype(np.int16) if K < 2**15 else idx
        order = np.argsort(key, kind="stable")
        idx = idx[order]
        if X.dtype not in (np.float32, np.float64):
            X = np.asarray(X, dtype=np.float64)
        d = X.shape[1]
        counts = np.bincount(idx, minlength=K)
        ends = np.cumsum(counts)
        starts = ends - counts
        n_buf = min(_BLOCK_ROWS, len(idx))
        buf = np.empty((n_buf, d), dtype=X.dtype)
        buf64 = buf if X.dtype == np.float64 else np.empty((n_buf, d))
        contiguous = X.flags.c_contiguous

        def blocks():
            """``(rows, R, pieces)``: the rows of one buffer of the class
            order in float64 ``R``, with ``(k, a, b)`` for its classes."""
            for s in range(0, len(idx), _BLOCK_ROWS):
                e = min(s + _BLOCK_ROWS, len(idx))
                B, R = buf[: e - s], buf64[: e - s]
                if contiguous:
                    np.take(X, order[s:e], axis=0, out=B)
                else:  # np.take is slow on a column slice of a wider array
                    B[...] = X[order[s:e]]
                if R is not B:
                    np.copyto(R, B)
                pieces = [
                    (k, max(starts[k], s) - s, min(ends[k], e) - s)
                    for k in range(idx[s], idx[e - 1] + 1)
                    if counts[k]
                ]
                yield slice(s, e), R, pieces

        per_class = self.class_scatter is not None
        for _, R, pieces in blocks():
            present = np.array([k for k, _, _ in pieces])
            n_p = np.array([hi - lo for _, lo, hi in pieces], dtype=float)
            mean_p = np.empty((len(pieces), d))
            class_p = [] if per_class else None
            for j, (_, lo, hi) in enumerate(pieces):
                np.divide(np.add.reduce(R[lo:hi], axis=0), n_p[j], out=mean_p[j])
                R[lo:hi] -= mean_p[j]
                if per_class:
                    class_p.append(R[lo:hi].T @ R[lo:hi])
            # With per-class scatters, the pooled one is their sum (d^2 adds
            # per class instead of a second product over the rows).
            within_p = sum(class_p) if per_class else R.T @ R
            # A buffer's statistics are checked before they are merged.
            if not (np.all(np.isfinite(mean_p)) and np.all(np.isfinite(within_p))):
                raise _overflow_error()
            self._add_pairwise(present, n_p, mean_p, within_p, class_p)
        if self.fourth is None:
            return
        # Rows about the updated class means, then about the grand mean.
        grand = self.means - self.total_mean()
        fourth_b = np.zeros(K)
        fourth_total_b = 0.0
        for rows, R, pieces in blocks():
            for k, lo, hi in pieces:
                R[lo:hi] -= self.means[k]
            ib = idx[rows]
            r2 = np.einsum("ij,ij->i", R, R)
            fourth_b += np.bincount(ib, r2**2, minlength=K)
            R += grand[ib]
            r2 = np.einsum("ij,ij->i", R, R)
            fourth_total_b += float(np.sum(r2**2))
        self.fourth += fourth_b
        self.fourth_total += fourth_total_b
        if not (np.all(np.isfinite(self.fourth)) and np.isfinite(self.fourth_total)):
            raise ValueError(
                "The sums of fourth powers that the Ledoit-Wolf shrinkage needs "
                "overflowed float64: the features hold values too large (about "
                "1e77 or more). Use covariance_estimator='oas' or 'empirical', "
                "or rescale the features (e.g. fit a StandardScaler on the "
                "in-distribution rows)."
            )

    def _add_pairwise(self, present, n_b, mean_b, within_b, class_b=None):
        """Merge the statistics of other rows into this (private) object's
        arrays: the pairwise update of Chan, Golub & LeVeque.

        Per class ``k = present[j]``: ``n = n_a + n_b``, ``delta = mu_b -
        mu_a``, ``mu = mu_a + delta n_b / n`` and ``M = M_a + M_b + (n_a n_b
        / n) delta delta^T``. ``within_b`` (and ``class_b[j]``) are the
        other rows' scatters about their own class means.
        """
        n_a = self.counts[present]
        n = n_a + n_b
        delta = mean_b - self.means[present]
        weight = n_a * n_b / n
        with np.errstate(over="ignore", invalid="ignore"):
            within = self.within + within_b + (delta * weight[:, None]).T @ delta
        if not np.all(np.isfinite(within)):
            raise _overflow_error()
        self.within = within
        self.means[present] += delta * (n_b / n)[:, None]
        self.counts[present] = n
        if class_b is not None:
            for j, k in enumerate(present):
                self.class_scatter[k] += class_b[j]
                self.class_scatter[k] += weight[j] * np.outer(delta[j], delta[j])

    def merged(self, other):
        """Statistics of the rows of both objects, as a new object.

        The pairwise update of Chan, Golub & LeVeque for two sets of
        statistics: per class, ``n = n_a + n_b``, ``delta = mu_b - mu_a``,
        ``mu = mu_a + delta n_b / n`` and ``M = M_a + M_b + (n_a n_b / n)
        delta delta^T``, so merging the statistics of two row sets equals
        the statistics of their union up to rounding (classes may differ
        between the two). Both objects are left unchanged. The Ledoit-Wolf
        fourth moments are added as they are, each about its own class means:
        an approximation, as when streaming.

        Parameters
        ----------
        other : ClassStats
            Statistics of other rows, with the same columns and options.

        Returns
        -------
        stats : ClassStats
            A new object.
        """
        new = copy.copy(self)
        if not len(other.labels):
            return new
        if not new._add_labels(other.labels):
            new._own_arrays()
        present = np.searchsorted(new.labels, other.labels)
        new._add_pairwise(
            present, other.counts, other.means, other.within, other.class_scatter
        )
        if new.fourth is not None:
            new.fourth[present] += other.fourth
            new.fourth_total = new.fourth_total + other.fourth_total
        return new

    def total_mean(self):
        """Mean of every row seen."""
        return self.counts @ self.means / self.n_samples

    def total_scatter(self):
        """Scatter about the grand mean: within + between-class scatter."""
        between = self.means - self.total_mean()
        return self.within + (between * self.counts[:, None]).T @ between


def estimate_covariance(scatter, n_samples, fourth, method, reg_covar=0.0):
    """Covariance from a scatter matrix; returns ``(covariance, shrinkage)``.

    ``S = scatter / n_samples``; Ledoit-Wolf and OAS shrink it towards
    ``mu I`` (``mu = trace(S) / d``) with the formulas of
    :func:`sklearn.covariance.ledoit_wolf` and :func:`sklearn.covariance.oas`
    (``fourth`` is the sum of the fourth powers of the centred row norms,
    used by Ledoit-Wolf only), evaluated on ``S / mu`` so that no square of
    an entry overflows. ``reg_covar`` is then added to the diagonal.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        S = scatter / n_samples
        S = (S + S.T) / 2
        d = S.shape[0]
        mu = np.trace(S) / d
    if not (np.all(np.isfinite(S)) and np.isfinite(mu)):
        raise _overflow_error("The covariance")
    shrinkage = 0.0
    if method != "empirical" and d > 1:
        # The shrinkage is scale-free: computed on S / mu (mean variance 1).
        unit = 1.0 / mu if mu > 0 else 1.0
        S1 = S * unit
        mu1 = mu * unit
        fro2 = float(np.sum(S1**2))
        if method == "ledoit_wolf":
            off = S1.copy()
            off.flat[:: d + 1] -= mu1
            delta = float(np.sum(off**2)) / d
            fourth1 = fourth * unit * unit
            beta = min((fourth1 / n_samples - fro2) / (d * n_samples), delta)
            shrinkage = 0.0 if beta <= 0 or delta <= 0 else beta / delta
        else:  # OAS, Chen et al. (2010) eq. 23 as in scikit-learn
            alpha = fro2 / d**2
            den = (n_samples + 1) * (alpha - mu1**2 / d)
            shrinkage = 1.0 if den <= 0 else min((alpha + mu1**2) / den, 1.0)
        S = (1.0 - shrinkage) * S
        S.flat[:: d + 1] += shrinkage * mu
    if reg_covar:
        S.flat[:: d + 1] += reg_covar
    return S, float(shrinkage)


def whitener(cov):
    """Factorise ``cov`` (plus a fallback ridge when singular).

    Returns ``(W, logdet, ridge)`` with ``(cov + ridge I)^{-1} = W W^T``,
    ``W = C^{-T}`` upper triangular for the Cholesky factor ``C``, so that
    ``(x - mu)^T (cov + ridge I)^{-1} (x - mu) = ||(x - mu) W||^2``. The
    ridge is 0 unless ``cov`` is singular (a failed factorisation or a pivot
    below ``1e-10`` of its diagonal entry); it then starts at ``1e-6 *
    trace(cov) / d`` (``1e-6`` for a zero matrix) and grows tenfold.
    """
    d = cov.shape[0]
    scale = float(np.trace(cov)) / d
    scale = scale if np.isfinite(scale) and scale > 0 else 1.0
    ridge = 0.0
    for _ in range(_MAX_RIDGE_STEPS):
        work = cov.copy()
        work.flat[:: d + 1] += ridge
        try:
            C = linalg.cholesky(work, lower=True, check_finite=False)
            if np.all(np.diag(C) ** 2 > _PIVOT_RTOL * np.diag(work)):
                break
        except (linalg.LinAlgError, ValueError):
            pass
        ridge = _RIDGE_START * scale if ridge == 0 else 10.0 * ridge
    else:
        raise ValueError(
            "The covariance could not be factorised even with a large ridge; the "
            "features probably hold values too large for float64 sums of squares. "
            + _RESCALE
        )
    W = linalg.solve_triangular(C, np.eye(d), lower=True, check_finite=False).T
    logdet = 2.0 * float(np.sum(np.log(np.diag(C))))
    return np.asfortranarray(W), logdet, ridge


def fourth_moment(stats, method, owner, per_class=False):
    """The Ledoit-Wolf fourth moments of ``stats`` (0 for other methods)."""
    if method != "ledoit_wolf":
        return np.zeros(len(stats.counts)) if per_class else 0.0
    if stats.fourth is None:
        raise ValueError(
            f"{owner} was started with another covariance estimator; "
            "covariance_estimator='ledoit_wolf' needs a fresh fit (its fourth "
            "moments were not collected)."
        )
    return stats.fourth.copy() if per_class else float(stats.fourth.sum())


def warn_singular(what, ridge, detail="", upto=False):
    amount = (
        f"a ridge of up to {ridge:.3g} * I" if upto else f"the ridge {ridge:.3g} * I"
    )
    warn(
        f"{what} is singular{detail}; added {amount} so that it can be "
        "inverted. Set reg_covar > 0 or covariance_estimator='ledoit_wolf' or "
        "'oas' to regularise it explicitly.",
        SingularCovarianceWarning,
    )


class GaussianLabelsMixin:
    """Label handling shared by the class-conditional Gaussian detectors.

    ``y=None`` fits a single class, reported as ``classes_ = [0]``. A stream
    must not mix labelled and unlabelled ``partial_fit`` chunks.

    See Also
    --------
    ClassStats : The per-class sums these labels index.
    """

    def _start_labels(self, y):
        self._labelled = y is not None
        if y is None:
            self.classes_ = np.array([0])

    def _id_rows(self, X, y):
        """ID rows of a chunk and their labels (all 0 when ``y`` is None)."""
        if (y is not None) != self._labelled:
            if not self._labelled:
                self.classes_ = np.array([0])
            raise ValueError(
                f"{type(self).__name__} was started "
                + ("with labels" if self._labelled else "without labels (y=None)")
                + "; every partial_fit chunk must then "
                + ("pass y." if self._labelled else "pass y=None.")
            )
        if y is None:
            return X, np.zeros(len(X), dtype=np.int64)
        keep = y >= 0
        return (X, y) if keep.all() else (X[keep], y[keep])


class TiedGaussian:
    """Class means sharing one covariance; squared Mahalanobis distances.

    Built by :meth:`from_scatter`. ``covariance`` includes ``reg_covar`` and
    the fallback ``ridge``. Distances use ``z = (x - center) W`` and
    ``||z - m_k||^2 = ||z||^2 - 2 z . m_k + ||m_k||^2`` with
    ``m_k = (mu_k - center) W``: two matrix products per row chunk. A row
    far enough from the means has an infinite (or NaN) distance; callers
    check their scores with :func:`check_scores`.

    See Also
    --------
    ClassGaussians : One covariance per class instead of a shared one.
    """

    def __init__(self, means, covariance, center, W, shrinkage, ridge, columns):
        self.means, self.covariance, self.center = means, covariance, center
        self.W, self.shrinkage, self.ridge, self.columns = W, shrinkage, ridge, columns
        with np.errstate(over="ignore", invalid="ignore"):
            self._M = (means - center) @ W
            self._m2 = np.einsum("ij,ij->i", self._M, self._M)

    @classmethod
    def from_scatter(cls, means, scatter, n, fourth, center, method, reg_covar,
                     what, columns=None):  # fmt: skip
        """Estimate the covariance of ``scatter`` over ``n`` rows and factorise."""
        cov, shrinkage = estimate_covariance(scatter, n, fourth, method, reg_covar)
        W, _, ridge = whitener(cov)
        if ridge:
            warn_singular(what, ridge, f" ({int(n)} rows, {cov.shape[0]} features)")
            cov.flat[:: cov.shape[0] + 1] += ridge
        return cls(means, cov, center, W, shrinkage, ridge, columns)

    @classmethod
    def from_stats(cls, stats, method, reg_covar, owner):
        """Class means and the pooled (tied) within-class covariance."""
        n, n_classes = stats.n_samples, len(stats.counts)
        if n <= n_classes:
            raise ValueError(
                f"{owner} estimates one covariance shared by all classes from the "
                "deviations of the rows from their class means, which needs more "
                f"rows than classes; got {int(n)} sample(s) in {n_classes} "
                "class(es), so every class has only one sample."
            )
        return cls.from_scatter(
            stats.means.copy(),
            stats.within,
            n,
            fourth_moment(stats, method, owner),
            stats.total_mean(),
            method,
            reg_covar,
            f"The within-class covariance of {owner}",
            stats.columns,
        )

    def sq_distances(self, X):
        """Yield ``(rows, D)`` with ``D[i, k]`` = squared distance to ``mu_k``."""
        d, K = self.W.shape[0], self._M.shape[0]
        for rows in _row_batches(len(X), 3 * d + 2 * K):
            with np.errstate(over="ignore", invalid="ignore"):
                Z = _whiten(_centred(X, rows, self.columns, self.center), self.W)
                yield rows, _sq_dist(Z, self._M, self._m2)

    def min_sq_distance(self, X):
        """``min_k`` squared Mahalanobis distance of each row (inf or NaN
        where it leaves the float64 range)."""
        out = np.empty(len(X))
        for rows, D in self.sq_distances(X):
            out[rows] = D.min(axis=1)
        return out


class ClassGaussians:
    """One Gaussian per class with its own covariance, and class priors.

    ``log_density`` is :math:`\\log \\sum_k \\pi_k \\mathcal{N}(x; \\mu_k,
    \\Sigma_k)`, by ``logsumexp`` over one matrix product per class and row
    chunk. The inverse Cholesky factors of the ``K`` classes are stored in one
    ``K x d x d`` block, asked for at once, so that a need beyond the
    machine's memory fails with a clear ``MemoryError``.

    See Also
    --------
    TiedGaussian : One covariance shared by all classes.
    """

    def __init__(self, stats, method, reg_covar, owner):
        counts = stats.counts
        single = stats.labels[counts < 2]
        if single.size:
            raise ValueError(
                f"{owner} estimates one covariance per class, which needs at least "
                f"two samples per class; class(es) {single.tolist()} have only one "
                "sample."
            )
        fourth = fourth_moment(stats, method, owner, per_class=True)
        K, d = stats.means.shape
        self.means = stats.means.copy()
        self.log_priors = np.log(counts / counts.sum())
        self.center = stats.total_mean()
        # Only the streamed scatters and the whitening factors stay in memory
        # (2 K d^2 floats); a covariance is rebuilt from its scatter on demand.
        self._stats, self._method, self._fourth = stats, method, fourth
        self._reg_covar = reg_covar
        # _Wt[k] = W_k^T (C order), so that _Wt[k].T is W_k in Fortran order.
        self._Wt = _allocate(
            (K, d, d),
            f"the inverse Cholesky factors of {K} classes x {d} features",
            zeros=False,
        )
        self.logdets = np.empty(K)
        self.shrinkage = np.zeros(K)
        self.ridge = np.zeros(K)
        for k in range(K):
            cov, self.shrinkage[k] = estimate_covariance(
                stats.class_scatter[k], counts[k], fourth[k], method, reg_covar
            )
            W, self.logdets[k], self.ridge[k] = whitener(cov)
            self._Wt[k] = W.T
            del cov, W
        # Whitened class means about the grand mean, as in TiedGaussian.
        with np.errstate(over="ignore", invalid="ignore"):
            self._M = np.stack(
                [(m - self.center) @ self.W(k) for k, m in enumerate(self.means)]
            )
            self._m2 = np.einsum("ij,ij->i", self._M, self._M)
        if np.any(self.ridge > 0):
            bad = stats.labels[self.ridge > 0]
            shown = ", ".join(map(str, bad[:10])) + (", ..." if bad.size > 10 else "")
            warn_singular(
                f"The covariance of class(es) {shown} of {owner}",
                float(self.ridge.max()),
                f" ({d} features; the smallest such class has "
                f"{int(counts[self.ridge > 0].min())} rows)",
                upto=True,
            )
        self.columns = stats.columns

    def W(self, k):
        """Inverse transposed Cholesky factor of class ``k`` (Fortran order)."""
        return self._Wt[k].T

    def covariances(self):
        """Per-class covariances (shrinkage, ``reg_covar`` and ridge included):
        a new ``(K, d, d)`` array built from the scatters."""
        K, d = self.means.shape
        out = _allocate(
            (K, d, d), f"the covariances of {K} classes x {d} features", zeros=False
        )
        for k in range(K):
            out[k], _ = estimate_covariance(
                self._stats.class_scatter[k],
                self._stats.counts[k],
                self._fourth[k],
                self._method,
                self._reg_covar,
            )
            out[k].flat[:: d + 1] += self.ridge[k]
        return out

    def log_density(self, X):
        """Mixture log-density of each row (-inf or NaN where a squared
        distance leaves the float64 range)."""
        K, d = self.means.shape
        out = np.empty(len(X))
        const = self.log_priors - 0.5 * (self.logdets + d * np.log(2 * np.pi))
        for rows in _row_batches(len(X), 3 * d + 2 * K):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                centred = _centred(X, rows, self.columns, self.center)
                ll = np.empty((len(centred), K))
                for k in range(K):
                    Z = _whiten(centred, self.W(k))
                    sq = _sq_dist(Z, self._M[k : k + 1], self._m2[k : k + 1])
                    ll[:, k] = -0.5 * sq[:, 0]
                out[rows] = logsumexp(ll + const, axis=1)
        return out
