"""Numerically stable softmax helpers shared by the logit-space detectors.

Logits arrive as float32 or float64; every reduction here runs in float64
(the base class casts the final scores back to the input dtype). Plain NumPy
with the row maximum subtracted: several times faster than
``scipy.special.logsumexp`` on the (n, C) arrays detectors see, and as exact.
"""

import numpy as np

__all__ = [
    "log_softmax64",
    "logsumexp64",
    "max_softmax64",
    "neg_entropy64",
    "shifted_exp64",
    "softmax64",
]


def _shifted(logits, temperature):
    """``l / T - max_k(l / T)`` in float64, with that row maximum."""
    scaled = np.array(logits, dtype=np.float64)  # always a private copy
    if temperature != 1:
        scaled /= temperature
    row_max = scaled.max(axis=1, keepdims=True)
    scaled -= row_max
    return scaled, row_max[:, 0]


def shifted_exp64(logits):
    """``z = l - max(l)`` and ``exp(z)`` per row, as float64 arrays.

    float32 logits are shifted and exponentiated in float32 (a third of the
    cost of the float64 ``exp``), then widened; float64 logits, and float32
    blocks whose shift overflows, in float64.
    """
    if logits.dtype == np.float32:
        with np.errstate(over="ignore"):
            z32 = logits - logits.max(axis=1, keepdims=True)
        if np.all(np.isfinite(z32)):
            with np.errstate(under="ignore"):
                return z32.astype(np.float64), np.exp(z32).astype(np.float64)
    shifted, _ = _shifted(logits, 1.0)
    return shifted, np.exp(shifted)


def logsumexp64(logits, temperature=1.0, weights=None):
    """Row-wise ``log sum_k w_k exp(l_k / T)`` in float64."""
    shifted, row_max = _shifted(logits, temperature)
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=1) if weights is None else shifted @ weights
    return np.log(total) + row_max


def log_softmax64(logits, temperature=1.0):
    """Row-wise ``log softmax(l / T)`` in float64."""
    shifted, _ = _shifted(logits, temperature)
    # The largest term is exp(0) = 1, so the sum is >= 1: no log(0).
    log_total = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    shifted -= log_total
    return shifted


def softmax64(logits, temperature=1.0):
    """Row-wise ``softmax(l / T)`` in float64."""
    shifted, _ = _shifted(logits, temperature)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def max_softmax64(logits, temperature=1.0):
    """Row-wise ``max_k softmax(l / T)_k = 1 / sum_k exp(l_k / T - max)``."""
    shifted, _ = _shifted(logits, temperature)
    np.exp(shifted, out=shifted)
    # The sum is in [1, C]: one division, no overflow, no log/exp round trip.
    return 1.0 / shifted.sum(axis=1)


def neg_entropy64(logits):
    """Row-wise ``sum_k p_k log p_k`` of ``p = softmax(l)``, one ``exp`` pass.

    With ``z = l - max(l)``, ``e = exp(z)`` and ``s = sum(e)``:
    ``sum p log p = (sum e z) / s - log s``. Both terms are <= 0, so they
    add without cancellation. ``log s`` is ``log(n0) + log1p(r / n0)`` with
    ``n0`` the entries at the maximum (``e = 1``) and ``r`` the sum of the
    others, so that a confident row (``s = 1 + r``, ``r`` tiny) keeps its
    relative precision instead of losing ``r`` to the rounding of ``1 + r``.
    """
    shifted, _ = _shifted(logits, 1.0)
    at_max = shifted == 0
    weights = np.exp(shifted)
    dot = np.einsum("ij,ij->i", weights, shifted)
    weights[at_max] = 0.0
    n_max = at_max.sum(axis=1)
    rest = weights.sum(axis=1)
    return dot / (n_max + rest) - (np.log(n_max) + np.log1p(rest / n_max))
