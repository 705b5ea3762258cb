"""The classifier's last linear layer, as head-aware detectors take it."""

import numpy as np

from sklearn_ood.utils._validation import float32_path

__all__ = ["check_head", "head_logits", "head_with_classes"]


def _to_numpy(value):
    """Array from a NumPy array, a list or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def head_logits(X, W, b):
    """Float64 logits ``X @ W.T + b`` of a resolved head."""
    return np.asarray(X, dtype=np.float64) @ W.T + b


# Rows per float32 block of head_logits_fast.
_BLOCK_ROWS = 4096


def head_logits_fast(X, W, b):
    """Float64 logits with float32 products for float32 ``X``, same arg-max.

    float64 ``X`` (or weights beyond the float32 range) get
    :func:`head_logits`. float32 ``X`` is multiplied by the float32 weights
    in blocks of 4,096 rows, without a float64 copy; each logit's error is
    at most ``(n_features + 2) * 2**-24 * ||x|| * ||w_k||`` (the standard
    bound for a float32 dot product, plus the rounding of ``w_k``). In rows
    whose two largest logits are closer than twice that bound, the logits
    within twice the bound of the largest (the only classes that can be
    the float64 arg-max) are redone with float64 products, and so are
    blocks whose products overflow, so the arg-max is always the float64
    one.
    """
    if not float32_path(X, W):
        return head_logits(X, W, b)
    W32 = W.astype(np.float32).T
    unit = (X.shape[1] + 2) * 2.0**-24 * 1.01
    w_norm = float(np.max(np.linalg.norm(W, axis=1)))
    logits = np.empty((X.shape[0], W.shape[0]))
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        Xb = X[rows]
        with np.errstate(over="ignore", invalid="ignore"):
            block = (Xb @ W32).astype(np.float64)
        if not np.all(np.isfinite(block)):
            logits[rows] = head_logits(Xb, W, b)
            continue
        block += b
        if block.shape[1] > 1:
            # A float32 sum of d squares is within a factor 1 + d * 2**-24 of
            # the exact one (the standard bound; an overflow gives inf, which
            # marks the row close), so this over-estimates ||x|| safely at a
            # fifth of the cost of a float64 sum.
            with np.errstate(over="ignore"):
                x_norm = np.sqrt(np.einsum("ij,ij->i", Xb, Xb)) * (1 + unit)
            # Squares below the float32 normal range lose their relative
            # precision: such rows get the float64 norm.
            tiny = x_norm < 1e-15
            if tiny.any():
                x_norm[tiny] = np.linalg.norm(Xb[tiny].astype(np.float64), axis=1)
            # Close rows: a second logit within twice the bound of the top.
            with np.errstate(invalid="ignore"):  # inf * 0 for a zero head: exact
                floor = block.max(axis=1) - 2 * unit * x_norm * w_norm
            n_near = np.count_nonzero(block >= floor[:, np.newaxis], axis=1)
            close = np.flatnonzero(n_near > 1)
            if close.size:
                _redo_candidates(block, Xb, W, b, close, floor[close])
        logits[rows] = block
    return logits


def _redo_candidates(block, Xb, W, b, close, floor):
    """Float64 logits of the classes that may be the arg-max of the rows ``close``.

    A class whose float32 logit is below ``floor`` (the top logit minus twice
    the error bound) is below the true top logit, so only the others can be
    the float64 arg-max: usually two per row. Their float64 dot products are
    taken pair by pair, which costs little for a handful of rows (a BLAS
    product of a few float64 rows by the whole head can cost as much as the
    whole float32 block).
    """
    rows, cols = np.nonzero(block[close] >= floor[:, np.newaxis])
    rows = close[rows]
    X64 = np.asarray(Xb[rows], dtype=np.float64)
    block[rows, cols] = np.einsum("ij,ij->i", X64, W[cols]) + b[cols]


def check_head(head, n_features):
    """Return the weights ``W`` and bias ``b`` of a linear classification head.

    The head maps features to logits: ``logits = X @ W.T + b``.

    Parameters
    ----------
    head : tuple, object or callable
        One of:

        * a pair ``(W, b)`` of arrays of shapes ``(n_classes, n_features)`` and
          ``(n_classes,)``; ``b`` may be None (no bias);
        * an object with ``weight`` and ``bias`` attributes, such as a torch
          ``nn.Linear`` (tensors are detached and copied to the CPU);
        * a fitted scikit-learn linear model with ``coef_`` and ``intercept_``.
          A binary model (one row of ``coef_``) becomes the equivalent
          two-class head ``[0, w]``, ``[0, b]``, whose softmax is the model's
          ``predict_proba``;
        * a callable ``head(n_features)`` returning one of the above, for
          heads built once the feature count is known.
    n_features : int
        Number of feature columns the head must accept.

    Returns
    -------
    W : ndarray of shape (n_classes, n_features), dtype float64
        Head weights, one row per class (a detector's fitted ``coef_``).
    b : ndarray of shape (n_classes,), dtype float64
        Head bias, zeros when the head has none (a detector's fitted
        ``intercept_``).

    Raises
    ------
    ValueError
        If the shapes do not match each other or ``n_features``, or the
        weights are not finite.

    See Also
    --------
    SHE : Inner product with the stored pattern of the predicted class.
    NNGuide : Energy of the head's logits guided by the nearest fit rows.
    ViM : Energy corrected by the residual outside the principal subspace.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import check_head
    >>> W, b = check_head((np.eye(2, 3), None), n_features=3)
    >>> W.shape, b
    ((2, 3), array([0., 0.]))
    """
    return head_with_classes(head, n_features)[:2]


def head_with_classes(head, n_features):
    """:func:`check_head`, plus the class each row of the head stands for.

    A fitted scikit-learn model names its rows with ``classes_``; row ``k`` of
    any other head is class ``k``.

    Returns
    -------
    W : ndarray of shape (n_classes, n_features), dtype float64
    b : ndarray of shape (n_classes,), dtype float64
    row_classes : ndarray of shape (n_classes,)
    """
    binary = False
    row_classes = None
    if hasattr(head, "weight") and hasattr(head, "bias"):
        W, b = head.weight, head.bias
    elif hasattr(head, "coef_") and hasattr(head, "intercept_"):
        W, b = head.coef_, head.intercept_
        row_classes = getattr(head, "classes_", None)
        binary = np.ndim(W) == 2 and np.shape(W)[0] == 1 and len(head.classes_) == 2
    elif isinstance(head, (tuple, list)) and len(head) == 2:
        W, b = head
    elif callable(head):
        return head_with_classes(head(n_features), n_features)
    else:
        raise ValueError(
            "head must be a (W, b) pair, an object with weight and bias (torch "
            "nn.Linear), a fitted scikit-learn linear model (coef_, intercept_) "
            f"or a callable returning one of them; got {type(head).__name__}."
        )
    W = _to_numpy(W)
    if W.ndim != 2:
        raise ValueError(
            f"head weights must be 2-D (n_classes, n_features), got {W.shape}."
        )
    b = np.zeros(W.shape[0]) if b is None else np.atleast_1d(_to_numpy(b))
    if binary:
        W, b = np.vstack([np.zeros_like(W), W]), np.r_[0.0, b]
    if b.shape != (W.shape[0],):
        raise ValueError(
            f"head bias has shape {b.shape} but the weights have {W.shape[0]} rows "
            f"(classes); expected shape ({W.shape[0]},)."
        )
    if W.shape[1] != n_features:
        raise ValueError(
            f"head expects {W.shape[1]} input features but X has {n_features} features."
        )
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        raise ValueError("head weights and bias must be finite.")
    if row_classes is None or len(row_classes) != len(W):
        row_classes = np.arange(len(W))
    return W, b, np.asarray(row_classes)
