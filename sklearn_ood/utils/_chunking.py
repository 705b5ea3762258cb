"""Row chunking that follows scikit-learn's ``working_memory`` setting.

One knob for the whole package, as in scikit-learn's
``pairwise_distances_chunked``: temporaries of a chunk of rows stay within
``sklearn.get_config()["working_memory"]`` MiB, which a user sets with
``sklearn.config_context(working_memory=...)``.
"""

from sklearn import get_config
from sklearn.utils import gen_batches

# Per-row work (ranks, sums of a few passes over each row) runs over chunks
# that stay in the L2 cache; this is a speed choice, not a memory bound.
CACHE_BLOCK_BYTES = 1 << 19


def chunk_n_rows(row_bytes, *, max_n_rows=None, working_memory=None):
    """Rows per chunk whose temporaries of ``row_bytes`` each fit the budget.

    Parameters
    ----------
    row_bytes : int
        Bytes of temporaries that one row needs.
    max_n_rows : int, default=None
        Upper bound on the result.
    working_memory : float, default=None
        Budget in MiB; ``None`` reads ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    n_rows : int
        At least 1, even when one row exceeds the budget.
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    n_rows = max(1, int(working_memory * 2**20 // max(int(row_bytes), 1)))
    return n_rows if max_n_rows is None else max(1, min(n_rows, max_n_rows))


def row_chunks(n_rows, row_bytes, *, working_memory=None):
    """Slices of ``range(n_rows)`` sized by :func:`chunk_n_rows`."""
    return gen_batches(n_rows, chunk_n_rows(row_bytes, working_memory=working_memory))
