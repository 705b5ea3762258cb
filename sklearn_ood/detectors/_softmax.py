"""Numerically stable softmax helpers shared by the logit-space detectors.

Logits arrive as float32 or float64; every reduction here runs in float64
(the base class casts the final scores back to the input dtype). Plain NumPy
with the row maximum subtracted: several times faster than
``scipy.special.logsumexp`` on the (n, C) arrays detectors see, and as exact.
"""

import numpy as np

__all__ = ["log_softmax64", "logsumexp64", "softmax64"]


def _shifted(logits, temperature):
    """``l / T - max_k(l / T)`` in float64, with that row maximum."""
    scaled = np.array(logits, dtype=np.float64)  # always a private copy
    if temperature != 1:
        scaled /= temperature
    row_max = scaled.max(axis=1, keepdims=True)
    scaled -= row_max
    return scaled, row_max[:, 0]


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
