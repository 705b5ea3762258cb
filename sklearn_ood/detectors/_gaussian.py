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

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from scipy.special import logsumexp
from sklearn import get_config
from sklearn.utils import gen_batches

from sklearn_ood.exceptions import SingularCovarianceWarning
from sklearn_ood.utils._warnings import warn

__all__ = [
    "ClassGaussians",
    "ClassStats",
    "GaussianLabelsMixin",
    "SingularCovarianceWarning",
    "TiedGaussian",
    "estimate_covariance",
    "whitener",
]

COVARIANCE_OPTIONS = {"empirical", "ledoit_wolf", "oas"}

# A Cholesky pivot C_ii^2 is the part of the variance of feature i that the
# features before it leave unexplained; a covariance is treated as singular
# when some pivot falls below this fraction of its diagonal entry.
_PIVOT_RTOL = 1e-10
# First fallback ridge, relative to the mean variance trace(cov) / d; it grows
# tenfold until the factorisation passes.
_RIDGE_START = 1e-6
_MAX_RIDGE_STEPS = 30


def _available_memory():
    """Bytes the kernel reports as available (Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_free_memory(n_bytes, what):
    """Raise ``MemoryError`` up front rather than be killed by the OOM killer.

    Linux over-commits: a too-large ``np.empty`` succeeds and the process is
    killed later, with no message, when the pages are touched.
    """
    available = _available_memory()
    if available is not None and n_bytes > available:
        raise MemoryError(
            f"{what} need {n_bytes / 2**30:.1f} GiB of float64 matrices but only "
            f"{available / 2**30:.1f} GiB of memory is available. Use a tied "
            "covariance (Mahalanobis, RMD), fewer features (e.g. a PCA), or "
            "fewer classes."
        )


def _row_batches(n_rows, floats_per_row):
    """Row slices whose float64 work arrays fit in ``working_memory``."""
    budget = get_config()["working_memory"] * 2**20
    rows = max(1, int(budget // (8 * max(floats_per_row, 1))))
    return gen_batches(n_rows, rows)


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


class ClassStats:
    """Streaming float64 per-class counts, means and scatter matrices.

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
        new = np.setdiff1d(labels, self.labels)
        if not new.size:
            return
        merged = np.union1d(self.labels, new)
        old = np.searchsorted(merged, self.labels)

        def grow(a):
            out = np.zeros((len(merged),) + a.shape[1:])
            out[old] = a
            return out

        self.counts, self.means = grow(self.counts), grow(self.means)
        if self.class_scatter is not None:
            d = self.means.shape[1]
            # Per-class scatter and whitening factor: 2 K d^2.
            _check_free_memory(
                2 * len(merged) * d * d * 8,
                f"per-class covariances of {len(merged)} classes x {d} features",
            )
            self.class_scatter = grow(self.class_scatter)
        if self.fourth is not None:
            self.fourth = grow(self.fourth)
        self.labels = merged

    def update(self, X, labels):
        """Add rows ``X`` (any float dtype) with integer class ``labels``."""
        labels = np.asarray(labels, dtype=np.int64)
        self._add_labels(np.unique(labels))
        d = self.means.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):
            for rows in _row_batches(len(X), 2 * d):
                block = X[rows] if self.columns is None else X[rows, self.columns]
                self._update_block(block, labels[rows])
        if not np.all(np.isfinite(self.within)):
            raise ValueError(
                "The sums of squares overflowed float64; the features hold values "
                "too large (about 1e154 or more) for a covariance."
            )

    def _update_block(self, X, labels):
        idx = np.searchsorted(self.labels, labels)
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        X = np.asarray(X[order], dtype=np.float64)  # sorted copy, centred below
        present, starts, n_b = np.unique(idx, return_index=True, return_counts=True)
        segments = [slice(a, a + n) for a, n in zip(starts, n_b)]
        mean_b = np.add.reduceat(X, starts, axis=0) / n_b[:, None]
        for seg, mean in zip(segments, mean_b):
            X[seg] -= mean
        # Chan et al.: merge (n_a, mean_a, M2_a) with the block's (n_b, ...).
        n_a = self.counts[present]
        n = n_a + n_b
        delta = mean_b - self.means[present]
        weight = n_a * n_b / n
        self.means[present] += delta * (n_b / n)[:, None]
        self.counts[present] = n
        self.within += X.T @ X + (delta * weight[:, None]).T @ delta
        if self.class_scatter is not None:
            for j, (k, seg) in enumerate(zip(present, segments)):
                self.class_scatter[k] += X[seg].T @ X[seg]
                self.class_scatter[k] += weight[j] * np.outer(delta[j], delta[j])
        if self.fourth is not None:
            # Rows about the updated class means, then about the grand mean.
            shift = np.repeat(mean_b - self.means[present], n_b, axis=0)
            resid = X + shift
            r2 = np.einsum("ij,ij->i", resid, resid)
            self.fourth += np.bincount(idx, r2**2, minlength=len(self.labels))
            resid += self.means[idx] - self.total_mean()
            r2 = np.einsum("ij,ij->i", resid, resid)
            self.fourth_total += float(np.sum(r2**2))

    def total_mean(self):
        """Mean of every row seen."""
        return self.counts @ self.means / self.n_samples

    def total_scatter(self):
        """Scatter about the grand mean: within + between-class scatter."""
        between = self.means - self.total_mean()
        return self.within + (between * self.counts[:, None]).T @ between


def estimate_covariance(scatter, n_samples, fourth, method, reg=0.0):
    """Covariance from a scatter matrix; returns ``(covariance, shrinkage)``.

    ``S = scatter / n_samples``; Ledoit-Wolf and OAS shrink it towards
    ``mu I`` (``mu = trace(S) / d``) with the formulas of
    :func:`sklearn.covariance.ledoit_wolf` and :func:`sklearn.covariance.oas`
    (``fourth`` is the sum of the fourth powers of the centred row norms,
    used by Ledoit-Wolf only). ``reg`` is then added to the diagonal.
    """
    S = scatter / n_samples
    S = (S + S.T) / 2
    d = S.shape[0]
    shrinkage = 0.0
    if method != "empirical" and d > 1:
        mu = np.trace(S) / d
        fro2 = float(np.sum(S**2))
        if method == "ledoit_wolf":
            off = S.copy()
            off.flat[:: d + 1] -= mu
            delta = float(np.sum(off**2)) / d
            beta = min((fourth / n_samples - fro2) / (d * n_samples), delta)
            shrinkage = 0.0 if beta <= 0 or delta <= 0 else beta / delta
        else:  # OAS, Chen et al. (2010) eq. 23 as in scikit-learn
            alpha = fro2 / d**2
            den = (n_samples + 1) * (alpha - mu**2 / d)
            shrinkage = 1.0 if den <= 0 else min((alpha + mu**2) / den, 1.0)
        S = (1.0 - shrinkage) * S
        S.flat[:: d + 1] += shrinkage * mu
    if reg:
        S.flat[:: d + 1] += reg
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
            "features probably hold values too large for float64 sums of squares."
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
            "covariance='ledoit_wolf' needs a fresh fit (its fourth moments were "
            "not collected)."
        )
    return stats.fourth.copy() if per_class else float(stats.fourth.sum())


def warn_singular(what, ridge, detail="", upto=False):
    amount = (
        f"a ridge of up to {ridge:.3g} * I" if upto else f"the ridge {ridge:.3g} * I"
    )
    warn(
        f"{what} is singular{detail}; added {amount} so that it can be "
        "inverted. Set reg > 0 or covariance='ledoit_wolf' or 'oas' to "
        "regularise it explicitly.",
        SingularCovarianceWarning,
    )


class GaussianLabelsMixin:
    """Label handling shared by the class-conditional Gaussian detectors.

    ``y=None`` fits a single class, reported as ``classes_ = [0]``. A stream
    must not mix labelled and unlabelled ``partial_fit`` chunks.
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

    Built by :meth:`from_scatter`. ``covariance`` includes ``reg`` and the
    fallback ``ridge``. Distances use ``z = (x - center) W`` and
    ``||z - m_k||^2 = ||z||^2 - 2 z . m_k + ||m_k||^2`` with
    ``m_k = (mu_k - center) W``: two matrix products per row chunk.
    """

    def __init__(self, means, covariance, center, W, shrinkage, ridge, columns):
        self.means, self.covariance, self.center = means, covariance, center
        self.W, self.shrinkage, self.ridge, self.columns = W, shrinkage, ridge, columns
        self._M = (means - center) @ W
        self._m2 = np.einsum("ij,ij->i", self._M, self._M)

    @classmethod
    def from_scatter(cls, means, scatter, n, fourth, center, method, reg, what,
                     columns=None):  # fmt: skip
        """Estimate the covariance of ``scatter`` over ``n`` rows and factorise."""
        cov, shrinkage = estimate_covariance(scatter, n, fourth, method, reg)
        W, _, ridge = whitener(cov)
        if ridge:
            warn_singular(what, ridge, f" ({int(n)} rows, {cov.shape[0]} features)")
            cov.flat[:: cov.shape[0] + 1] += ridge
        return cls(means, cov, center, W, shrinkage, ridge, columns)

    @classmethod
    def from_stats(cls, stats, method, reg, owner):
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
            reg,
            f"The within-class covariance of {owner}",
            stats.columns,
        )

    def sq_distances(self, X):
        """Yield ``(rows, D)`` with ``D[i, k]`` = squared distance to ``mu_k``."""
        d, K = self.W.shape[0], self._M.shape[0]
        for rows in _row_batches(len(X), 3 * d + 2 * K):
            Z = _whiten(_centred(X, rows, self.columns, self.center), self.W)
            yield rows, _sq_dist(Z, self._M, self._m2)

    def min_sq_distance(self, X):
        """``min_k`` squared Mahalanobis distance of each row."""
        out = np.empty(len(X))
        for rows, D in self.sq_distances(X):
            out[rows] = D.min(axis=1)
        return out


class ClassGaussians:
    """One Gaussian per class with its own covariance, and class priors.

    ``log_density`` is :math:`\\log \\sum_k \\pi_k \\mathcal{N}(x; \\mu_k,
    \\Sigma_k)`, by ``logsumexp`` over one matrix product per class and row
    chunk.
    """

    def __init__(self, stats, method, reg, owner):
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
        self._stats, self._method, self._reg, self._fourth = stats, method, reg, fourth
        self.W = [None] * K  # inverse transposed Cholesky factors, Fortran order
        self.logdets = np.empty(K)
        self.shrinkage = np.zeros(K)
        self.ridge = np.zeros(K)
        for k in range(K):
            cov, self.shrinkage[k] = estimate_covariance(
                stats.class_scatter[k], counts[k], fourth[k], method, reg
            )
            self.W[k], self.logdets[k], self.ridge[k] = whitener(cov)
            del cov
        # Whitened class means about the grand mean, as in TiedGaussian.
        self._M = np.stack([(m - self.center) @ W for m, W in zip(self.means, self.W)])
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

    def covariances(self):
        """Per-class covariances (shrinkage, ``reg`` and ridge included): a new
        ``(K, d, d)`` array built from the scatters."""
        K, d = self.means.shape
        _check_free_memory(K * d * d * 8, f"covariances of {K} classes x {d} features")
        out = np.empty((K, d, d))
        for k in range(K):
            out[k], _ = estimate_covariance(
                self._stats.class_scatter[k],
                self._stats.counts[k],
                self._fourth[k],
                self._method,
                self._reg,
            )
            out[k].flat[:: d + 1] += self.ridge[k]
        return out

    def log_density(self, X):
        K, d = self.means.shape
        out = np.empty(len(X))
        const = self.log_priors - 0.5 * (self.logdets + d * np.log(2 * np.pi))
        for rows in _row_batches(len(X), 3 * d + 2 * K):
            centred = _centred(X, rows, self.columns, self.center)
            ll = np.empty((len(centred), K))
            for k in range(K):
                Z = _whiten(centred, self.W[k])
                sq = _sq_dist(Z, self._M[k : k + 1], self._m2[k : k + 1])
                ll[:, k] = -0.5 * sq[:, 0]
            out[rows] = logsumexp(ll + const, axis=1)
        return out
