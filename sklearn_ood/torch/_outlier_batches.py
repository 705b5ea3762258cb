"""Training batches of ID rows with auxiliary outliers mixed in at a fixed ratio.

The outliers of a fit (rows with ``y < 0`` and a separate ``outliers`` set)
form one pool that is indexed, never concatenated with the ID data; each ID
batch from skorch's loader is followed by ``ratio`` times as many outlier
rows, drawn in a reshuffled order.
"""

from collections.abc import Mapping

import numpy as np
import torch
from skorch.dataset import get_len
from skorch.utils import multi_indexing, to_tensor
from torch.utils.data import Dataset


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
    epoch (each ``iter``) and whenever it is exhausted.
    """

    def __init__(self, loader, pool, ratio):
        self.loader = loader
        self.pool = pool
        self.ratio = ratio

    def __len__(self):
        return len(self.loader)

    def _indices(self):
        n = len(self.pool)
        while True:
            yield from torch.randperm(n).numpy()

    def __iter__(self):
        stream = self._indices()
        for Xi, yi in self.loader:
            n_out = max(1, round(self.ratio * get_len(yi)))
            idx = np.fromiter((next(stream) for _ in range(n_out)), np.int64, n_out)
            Xo = self.pool.take(idx)
            X = _cat([Xi, Xo], like=Xi)
            y = torch.cat(
                [torch.as_tensor(yi), torch.full((n_out,), -1, dtype=torch.int64)]
            )
            yield X, y


# ------------------------------------------------------------------ presets
