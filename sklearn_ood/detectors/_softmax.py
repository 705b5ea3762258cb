"""Numerically stable softmax helpers shared by the logit-space detectors.

Logits arrive as float32 or float64; every reduction here runs in float64
(the base class casts the final scores back to the input dtype).
"""

import numpy as np
from scipy.special import log_softmax, logsumexp

__all__ = ["log_softmax64", "logsumexp64", "softmax64"]


def _scaled(logits, temperature):
    logits = np.asarray(logits, dtype=np.float64)
    return logits if temperature == 1 else logits / temperature


def logsumexp64(logits, temperature=1.0, weights=None):
    """Row-wise ``log sum_k w_k exp(l_k / T)`` in float64."""
    return logsumexp(_scaled(logits, temperature), axis=1, b=weights)


def log_softmax64(logits, temperature=1.0):
    """Row-wise ``log softmax(l / T)`` in float64."""
    return log_softmax(_scaled(logits, temperature), axis=1)


def softmax64(logits, temperature=1.0):
    """Row-wise ``softmax(l / T)`` in float64."""
    return np.exp(log_softmax64(logits, temperature))
