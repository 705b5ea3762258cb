"""Training batches of ID rows with auxiliary outliers mixed in at a fixed ratio.

The outliers of a fit (rows with ``y < 0`` and a separate ``outliers`` set)
form one pool that is indexed, never concatenated with the ID data; each ID
batch from skorch's loader is followed by ``ratio`` times as many outlier
rows, drawn in a reshuffled order. With POEM's outlier mining
(:class:`_ThompsonMiner`), each epoch draws them from the part of the pool
that a Bayesian linear model, sampled by Thompson sampling, places closest
to the ID / outlier boundary.
"""

from collections import deque
from collections.abc import Mapping

import numpy as np
import torch
from skorch.dataset import get_len
from skorch.utils import multi_indexing, to_tensor
from torch.utils.data import DataLoader, Dataset


class _WithOutliers(Dataset):
    """The ID training dataset, carrying the outlier pool to the iterator.

    It behaves as the ID dataset (length, items) for skorch's callbacks.
    """

    def __init__(self, dataset, pool):
        self.dataset = dataset
        self.pool = pool

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


class _OutlierPool:
    """Outlier rows from several sources, indexed without copying them.

    ``parts`` is a list of ``(data, rows)``: ``data`` an array, a tensor or
    a dict of them, ``rows`` the row indices used (None for all).
    """

    def __init__(self, parts):
        self.parts = parts
        sizes = [get_len(data) if rows is None else len(rows) for data, rows in parts]
        self.offsets = np.cumsum([0, *sizes])

    def __len__(self):
        return int(self.offsets[-1])

    def take(self, idx):
        chunks = []
        for p, (data, rows) in enumerate(self.parts):
            start, stop = self.offsets[p], self.offsets[p + 1]
            sel = idx[(idx >= start) & (idx < stop)] - start
            if len(sel):
                chunks.append(
                    _to_tensor(multi_indexing(data, sel if rows is None else rows[sel]))
                )
        return chunks[0] if len(chunks) == 1 else _cat(chunks)


def _to_tensor(x):
    return to_tensor(x, device="cpu")


def _cat(chunks, like=None):
    """Concatenate batches (tensors, or dicts / tuples of them) along rows."""
    first = chunks[0]
    if isinstance(first, Mapping):
        return {
            k: _cat([c[k] for c in chunks], None if like is None else like[k])
            for k in first
        }
    if isinstance(first, (tuple, list)):
        return type(first)(
            _cat([c[i] for c in chunks], None if like is None else like[i])
            for i in range(len(first))
        )
    if like is not None and first.is_floating_point():
        chunks = [c.to(like.dtype) for c in chunks]
    return torch.cat(chunks)


class _OutlierMixer:
    """Training batches: each ID batch followed by its share of outliers.

    The pool is read through a random permutation, reshuffled at every
    epoch (each ``iter``) and whenever it is exhausted. With a ``miner``,
    every epoch reads only the pool rows the miner selects at its start, and
    tells the miner which rows the epoch used.
    """

    def __init__(self, loader, pool, ratio, miner=None):
        self.loader = loader
        self.pool = pool
        self.ratio = ratio
        self.miner = miner

    def __len__(self):
        return len(self.loader)

    def _indices(self, rows=None):
        n = len(self.pool) if rows is None else len(rows)
        while True:
            order = torch.randperm(n).numpy()
            yield from (order if rows is None else rows[order])

    def __iter__(self):
        rows = None
        if self.miner is not None:
            n_epoch = max(1, round(self.ratio * len(self.loader.dataset)))
            rows = self.miner.select(self.loader, self.pool, n_epoch)
        stream = self._indices(rows)
        used = []
        for Xi, yi in self.loader:
            n_out = max(1, round(self.ratio * get_len(yi)))
            idx = np.fromiter((next(stream) for _ in range(n_out)), np.int64, n_out)
            if self.miner is not None:
                used.append(idx)
            Xo = self.pool.take(idx)
            X = _cat([Xi, Xo], like=Xi)
            y = torch.cat(
                [torch.as_tensor(yi), torch.full((n_out,), -1, dtype=torch.int64)]
            )
            yield X, y
        if self.miner is not None and used:
            self.miner.record(np.concatenate(used))


# ------------------------------------------------------------ POEM's mining


def _blr_posterior(z, t, prior_variance, noise_variance, sample_weight=None):
    r"""POEM's Bayesian linear regression posterior, in float64.

    With prior :math:`\beta \sim N(0, \sigma^2 I)` and targets
    :math:`t = z \beta + \varepsilon`, :math:`\varepsilon \sim N(0,
    \sigma_n^2)`: :math:`A = Z^T W Z / \sigma_n^2 + I / \sigma^2`, mean
    :math:`A^{-1} Z^T W t / \sigma_n^2` and covariance :math:`\sigma^2
    A^{-1}`, as the reference code computes it (the textbook posterior
    covariance is :math:`A^{-1}`). ``sample_weight`` (``W``) repeats rows.
    ``prior_variance`` is :math:`\sigma^2`, ``noise_variance``
    :math:`\sigma_n^2`.
    """
    z = np.asarray(z, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    w = np.ones(len(z)) if sample_weight is None else np.asarray(sample_weight, float)
    zw = z * w[:, None]
    a = zw.T @ z / noise_variance + np.eye(z.shape[1]) / prior_variance
    b = zw.T @ t / noise_variance
    a_inv = np.linalg.inv(a)
    a_inv = 0.5 * (a_inv + a_inv.T)
    return a_inv @ b, prior_variance * a_inv


def _sample_coef(mean, cov):
    """One draw of ``N(mean, cov)`` from torch's global generator (float64).

    The covariance is factored by its eigendecomposition; negative rounding
    eigenvalues are replaced by their absolute value, as the reference does.
    """
    vals, vecs = np.linalg.eigh(cov)
    eps = torch.randn(len(mean), dtype=torch.float64).numpy()
    return mean + vecs @ (np.sqrt(np.abs(vals)) * eps)


def _closest_to_boundary(scores, n):
    """Indices of the ``n`` smallest ``|scores|`` (ties in index order)."""
    return np.argsort(np.abs(scores), kind="stable")[:n]


class _ThompsonMiner:
    r"""POEM's outlier mining (Ming, Fan & Li, ICML 2022), for one fit call.

    A Bayesian linear model :math:`t = \beta^T z` on the features ``z`` of
    the model (``featurize``) separates ID rows (target ``-target_value``)
    from outliers (``+target_value``); both targets are shifted by one draw
    of :math:`N(0, \sigma_n^2)` at the first update, as in the reference.
    At the start of every epoch: the posterior is updated from the ID
    training rows and the outliers used in the last ``buffer_size`` epochs
    (the ID rows weighted by the number of buffered epochs, as the reference
    repeats them), one :math:`\beta` is drawn from it (the first epoch
    draws from the prior, mean :math:`N(0, 10^{-4})` per coordinate and
    covariance :math:`\sigma^2 I`), and the ``n_selected`` pool rows of
    smallest :math:`|\beta^T z|` are the outliers of the epoch.

    ``featurize(batches)`` returns the float64 features of an iterable of
    input batches, computed by the current model in eval mode.
    """

    def __init__(
        self,
        featurize,
        n_selected=None,
        prior_variance=20.0,
        noise_variance=0.5,
        target_value=3.9,
        buffer_size=4,
    ):
        self.featurize = featurize
        self.n_selected = n_selected
        self.prior_variance = prior_variance
        self.noise_variance = noise_variance
        self.target_value = target_value
        self.buffer = deque(maxlen=buffer_size)
        self.mean_ = self.cov_ = self.coef_ = self.noise_ = None
        self.selected_ = None

    def _pool_batches(self, pool, batch_size, like):
        for start in range(0, len(pool), batch_size):
            rows = np.arange(start, min(start + batch_size, len(pool)))
            yield _cat([pool.take(rows)], like=like)

    def _id_batches(self, loader):
        batch_size = getattr(loader, "batch_size", None) or 128
        plain = DataLoader(loader.dataset, batch_size=batch_size, shuffle=False)
        for Xi, _ in plain:
            yield Xi

    def update(self, z_id, z_out, n_epochs):
        """Posterior from ID features (weighted ``n_epochs``) and outliers'."""
        if self.noise_ is None:
            std = float(self.noise_variance) ** 0.5
            self.noise_ = float(torch.randn(1, dtype=torch.float64)) * std
        z = np.concatenate([z_id, z_out])
        t = np.concatenate(
            [
                np.full(len(z_id), -self.target_value + self.noise_),
                np.full(len(z_out), self.target_value + self.noise_),
            ]
        )
        weight = np.concatenate(
            [np.full(len(z_id), float(n_epochs)), np.ones(len(z_out))]
        )
        self.mean_, self.cov_ = _blr_posterior(
            z, t, self.prior_variance, self.noise_variance, weight
        )

    def select(self, loader, pool, n_epoch):
        """Pool rows for this epoch: the ``n`` smallest ``|beta^T z|``."""
        first = next(iter(self._id_batches(loader)))
        z_pool = self.featurize(self._pool_batches(pool, len(first), first))
        if self.mean_ is None:
            d = z_pool.shape[1]
            self.mean_ = 0.01 * torch.randn(d, dtype=torch.float64).numpy()
            self.cov_ = self.prior_variance * np.eye(d)
        if self.buffer:
            z_id = self.featurize(self._id_batches(loader))
            z_out = z_pool[np.concatenate(list(self.buffer))]
            self.update(z_id, z_out, len(self.buffer))
        self.coef_ = _sample_coef(self.mean_, self.cov_)
        n = n_epoch if self.n_selected is None else self.n_selected
        self.selected_ = _closest_to_boundary(z_pool @ self.coef_, min(n, len(pool)))
        return self.selected_

    def record(self, used):
        """The pool rows one epoch used, for the next posterior update."""
        self.buffer.append(np.asarray(used, dtype=np.int64))
