"""ViM: the energy of the head's logits against the residual of the features.

ViM splits the penultimate features into the principal subspace of the
in-distribution (ID) training features and its orthogonal residual; the
residual norm becomes an extra "virtual" logit.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.base import BaseDetector, PartialFitMixin
from sklearn_ood.detectors._head import check_head, head_logits
from sklearn_ood.detectors._softmax import logsumexp64
from sklearn_ood.utils._validation import float32_path
from sklearn_ood.utils._warnings import warn

__all__ = ["Residual", "ViM", "vim_default_n_components"]


def vim_default_n_components(n_features):
    """Principal-subspace dimension ViM uses by default for a feature width.

    The authors' benchmark code uses 1000 for features of at least 2048
    dimensions and 512 otherwise (they evaluated widths of 768 and more);
    below 768 features, where 512 would leave little or no residual, this
    uses half the width.

    Parameters
    ----------
    n_features : int
        Width :math:`N` of the feature space.

    Returns
    -------
    n_components : int
        The dimension :math:`D` of the principal subspace.

    Examples
    --------
    >>> from sklearn_ood.detectors._vim import vim_default_n_components
    >>> [vim_default_n_components(n) for n in (2048, 768, 512)]
    [1000, 512, 256]
    """
    if n_features >= 2048:
        return 1000
    if n_features >= 768:
        return 512
    return n_features // 2


def _row_norms(R):
    """Euclidean norm of each row, without overflow for huge finite rows."""
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(R, axis=1)
    bad = np.isinf(norms)
    if bad.any():  # rows whose squares overflow: scale by their largest entry
        rows = R[bad]
        top = np.max(np.abs(rows), axis=1)
        with np.errstate(invalid="ignore"):
            norms[bad] = top * np.linalg.norm(rows / top[:, None], axis=1)
    return norms


# float32 features: products run in float32 blocks of this many rows, each
# block's result taken to float64 before it is summed or used, so that no
# float64 copy of the data is made. A block whose float32 products leave the
# float32 range is redone in float64.
_BLOCK_ROWS = 4096


def _row_blocks(n_rows):
    return (
        slice(start, start + _BLOCK_ROWS) for start in range(0, n_rows, _BLOCK_ROWS)
    )


def _centred_gram(X, origin):
    """``(X - origin).T @ (X - origin)`` in float64.

    float32 ``X``: float32 blocks of :data:`_BLOCK_ROWS` rows summed in float64
    (relative error of each entry about ``1e-6`` of the product of the row
    norms, see :class:`ViM`); float64 ``X``: float64 throughout.
    """
    if not float32_path(X, origin):
        Z = np.subtract(X, origin, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return Z.T @ Z
    origin32 = origin.astype(np.float32)
    gram = np.zeros((X.shape[1], X.shape[1]))
    for rows in _row_blocks(X.shape[0]):
        with np.errstate(over="ignore", invalid="ignore"):
            Z = X[rows] - origin32
            block = Z.T @ Z
            if not np.all(np.isfinite(block)):
                Z = np.subtract(X[rows], origin, dtype=np.float64)
                block = Z.T @ Z
            gram += block
    return gram


def _logits(X, W, b):
    """Float64 logits ``X @ W.T + b``; float32 ``X`` in float32 row blocks."""
    if not float32_path(X, W):
        return head_logits(X, W, b)
    W32 = W.astype(np.float32).T
    logits = np.empty((X.shape[0], W.shape[0]))
    for rows in _row_blocks(X.shape[0]):
        with np.errstate(over="ignore", invalid="ignore"):
            block = X[rows] @ W32
        if not np.all(np.isfinite(block)):
            block = head_logits(X[rows], W, np.zeros_like(b))
        logits[rows] = block
    logits += b
    return logits


_FLOAT_RANGE = (
    "Rescale the features (e.g. divide them by a power of ten, or fit a "
    "StandardScaler on the in-distribution rows)."
)


class _PrincipalResidual(PartialFitMixin, BaseDetector):
    """The residual of the features off their principal subspace (ViM's fit).

    Fits, from the second moments of the ID features at the head's origin
    :math:`u = -W^{+} b`, the top ``n_components`` eigenvectors and their
    orthogonal complement; ``_residual`` is the norm of a row's component in
    that complement. :class:`ViM` adds the energy and the matched scale,
    :class:`Residual` scores the residual alone. The moments are sums, so
    ``partial_fit`` streams them exactly.
    """

    _family = "head-aware"
    _summed_stats = ("second_moment_sum_",)

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
        "n_components": [Interval(Integral, 0, None, closed="left"), None],
    }

    def _reset_stats(self, X, y):
        n_features = X.shape[1]
        self.coef_, self.intercept_ = check_head(self.head, n_features)
        n_components = (
            vim_default_n_components(n_features)
            if self.n_components is None
            else self.n_components
        )
        if n_components >= n_features:
            raise ValueError(
                f"n_components={n_components} must be smaller than the number of "
                f"features, n_features={n_features}: the residual outside a "
                f"{n_components}-dimensional principal subspace would be "
                "identically zero."
            )
        self.n_components_ = n_components
        # The minimum-norm point whose logits vanish (exactly when W has full
        # row rank), as in the paper.
        # Singular values below max(C, d) * eps of the largest are rank noise:
        # NumPy's default cutoff (1e-15) keeps them for a rank-deficient head
        # and sends the origin to ~1e7.
        cutoff = max(self.coef_.shape) * np.finfo(np.float64).eps
        self.origin_ = -np.linalg.pinv(self.coef_, rcond=cutoff) @ self.intercept_
        self.second_moment_sum_ = np.zeros((n_features, n_features))

    def _added_second_moments(self, X):
        """``second_moment_sum_`` with the rows of ``X`` added (not stored)."""
        moment = _centred_gram(X, self.origin_)
        if not np.all(np.isfinite(moment)):
            raise self._overflow_error()
        second_moment_sum = self.second_moment_sum_ + moment
        if not np.all(np.isfinite(second_moment_sum)):
            raise self._overflow_error()
        return second_moment_sum

    def _update_stats(self, X, y):
        # Rebound, never updated in place, so that partial_fit can restore it.
        self.second_moment_sum_ = self._added_second_moments(X)

    @staticmethod
    def _overflow_error():
        return ValueError(
            "The second moments (sums of squares of the features) or sums of "
            "logits overflowed float64: the features hold values too large "
            f"(about 1e154 or more). {_FLOAT_RANGE}"
        )

    def _finalize_stats(self):
        moment = self.second_moment_sum_ / self.n_samples_seen_
        # Eigenvectors of the moment scaled to entries <= 1, so that LAPACK's
        # intermediate sums stay in range; eigenvalues scaled back.
        scale = float(np.max(np.abs(moment)))
        scale = scale if scale > 0 else 1.0
        moment = moment / scale
        try:
            eigenvalues, eigenvectors = np.linalg.eigh((moment + moment.T) / 2)
        except np.linalg.LinAlgError as exc:  # pragma: no cover - finite input
            raise self._overflow_error() from exc
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        self.eigenvalues_ = eigenvalues * scale
        D = self.n_components_
        self.components_ = np.ascontiguousarray(eigenvectors[:, :D].T)
        self.residual_components_ = np.ascontiguousarray(eigenvectors[:, D:].T)

    def _residual(self, X):
        """``||(x - o) projected off the principal subspace||`` of each row."""
        R = self.residual_components_
        if not float32_path(X, self.origin_, R):
            centred = np.subtract(X, self.origin_, dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                return _row_norms(centred @ R.T)
        origin32, R32 = self.origin_.astype(np.float32), R.astype(np.float32).T
        norms = np.empty(X.shape[0])
        for rows in _row_blocks(X.shape[0]):
            with np.errstate(over="ignore", invalid="ignore"):
                residual = (X[rows] - origin32) @ R32
            if np.all(np.isfinite(residual)):
                residual = residual.astype(np.float64)
                norms[rows] = np.sqrt(np.einsum("ij,ij->i", residual, residual))
            else:  # float32 overflow: this block in float64
                centred = np.subtract(X[rows], self.origin_, dtype=np.float64)
                with np.errstate(over="ignore", invalid="ignore"):
                    norms[rows] = _row_norms(centred @ R.T)
        return norms


class ViM(_PrincipalResidual):
    r"""Virtual-logit Matching (ViM): energy minus the scaled residual norm.

    Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit
    Matching", CVPR 2022. With head :math:`(W, b)` and logits
    :math:`l = Wx + b`, the features are taken relative to the origin
    :math:`u = -W^{+} b` (the point whose logits vanish, :math:`W^{+}` the
    pseudo-inverse). :math:`P` spans the top ``n_components`` (the paper's
    :math:`D`) eigenvectors of the second-moment matrix :math:`\frac1n
    \sum_i (x_i - u)(x_i - u)^\top` of the ID fit features (uncentred at
    :math:`u`, as in the paper's code), and :math:`x^{P^\perp} = (I -
    PP^\top)(x - u)` is the residual. Then

    .. math::

        s(x) = \log \sum_k e^{l_k(x)} - \alpha \lVert x^{P^\perp} \rVert,
        \qquad
        \alpha = \frac{\sum_i \max_k l_k(x_i)}{\sum_i \lVert x_i^{P^\perp} \rVert}

    with both sums over the ID fit rows; :math:`\alpha` is the
    ``residual_scale``. The paper's OOD probability, the softmax weight of
    the virtual logit :math:`\alpha \lVert x^{P^\perp}\rVert` among the real
    ones, is :math:`\sigma(-s(x))` (logistic sigmoid), so ``score_samples``
    ranks exactly as the paper; higher is more ID. This is the score of the
    authors' code and of OpenOOD; pytorch-ood 0.4.0's ``ViM`` returns
    :math:`-s` (it computes in float32). pytorch-ood silently lowers a ``d``
    larger than the feature width to half of it; here ``n_components`` must
    be smaller than the width.

    The score is not monotone in the logits, by design: a step of :math:`x`
    that raises the largest logit (and the energy) may lengthen the residual
    more, and then the score falls. A step :math:`tv` with :math:`v` in the
    residual subspace, along the residual :math:`x^{P^\perp}`, changes the
    energy by at most :math:`t \max_k |w_k^\top v|` but lowers
    :math:`-\alpha \lVert x^{P^\perp} \rVert` by :math:`\alpha t`.

    The fit is a sum of second moments, so :meth:`partial_fit` streams: the
    moment matrix and the sum of maximum logits are exact. :math:`\alpha`'s
    denominator needs the residuals under the *final* subspace, which
    streaming cannot revisit; ``partial_fit`` takes it from the uniform
    sample of at most 10,000 rows that also sets ``offset_`` (see
    :class:`~sklearn_ood.base.PartialFitMixin`), each row's residual taken
    under the subspace of the call that brought it. ``fit`` matches it on
    every row under the final subspace, as the paper does. A refused chunk
    leaves the detector as it was.

    Features of about :math:`10^{154}` or more overflow the float64 second
    moments: ``fit`` and ``partial_fit`` raise a ``ValueError``. Scoring
    takes residual norms without overflow, so a huge finite row gets its
    finite score; a row whose logits or score leave the float
    range (float32 for float32 input) makes ``score_samples`` raise a
    ``ValueError``.

    float32 features are never copied to float64: the second moments, the
    logits and the residuals are products taken in float32 blocks of 4,096
    rows, each block's result summed (or used) in float64; a block whose
    float32 products overflow is redone in float64. Against float64
    products of the same features, the entries of ``second_moment_sum_``
    differ by about ``1e-6`` of the largest (tested: ``1e-5``), and the
    logits and residual norms under a given subspace by about ``1e-6``
    relative (tested: ``1e-5``). The principal subspace, and with it the
    scores, moves by that error divided by the relative eigen-gap at
    ``n_components``: about ``1e-3`` of the score range on 50,000 x 512
    ReLU features split at :math:`D = 256`, where the eigenvalues around
    :math:`D` are close. float64 features get float64 products throughout.

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer: a ``(W, b)`` pair, a torch
        ``nn.Linear``, a fitted scikit-learn linear model, or a callable
        ``head(n_features)`` returning one of these (see
        :func:`~sklearn_ood.detectors.check_head`).
    n_components : int >= 0, default=None
        Dimension :math:`D` of the principal subspace; must be smaller than
        the number of features. ``None`` uses
        :func:`vim_default_n_components`: 1000 for :math:`N \ge 2048`
        features, 512 for :math:`N \ge 768`, :math:`\lfloor N/2 \rfloor`
        otherwise.
    residual_scale : float > 0, default=None
        Scale :math:`\alpha` of the virtual logit (the residual norm's
        weight); ``None`` matches it to the fit data as above. The paper
        assumes a positive mean max logit; when it is negative, a negative
        :math:`\alpha` would reward large residuals, so its magnitude is
        used instead, with a warning. When the fit rows seen lie inside the
        principal subspace (e.g. no more rows than ``n_components``, as
        after the first small ``partial_fit`` chunks), the denominator
        vanishes: :math:`\alpha = 0` (the score is the energy) until more
        rows arrive, with a warning.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W`.
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    origin_ : ndarray of shape (n_features,)
        The origin :math:`u = -W^{+} b`.
    n_components_ : int
        Dimension :math:`D` of the principal subspace used.
    components_ : ndarray of shape (``n_components_``, n_features)
        Orthonormal basis of the principal subspace (rows), largest
        eigenvalue first.
    residual_components_ : ndarray of shape (n_features - ``n_components_``, n_features)
        Orthonormal basis of its orthogonal complement (rows).
    eigenvalues_ : ndarray of shape (n_features,)
        Eigenvalues of the second-moment matrix, in decreasing order.
    residual_scale_ : float
        Scale :math:`\alpha` of the virtual logit in use.
    second_moment_sum_ : ndarray of shape (n_features, n_features)
        :math:`\sum_i (x_i - u)(x_i - u)^\top` over the ID fit rows.
    max_logit_sum_ : float
        :math:`\sum_i \max_k l_k(x_i)` over the ID fit rows.
    n_samples_seen_ : int
        Number of ID fit rows.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    Energy : The score without the residual term.
    NCI : Another head-aware score, from the features' angle to the head.
    fDBD : Feature distances to the head's decision boundaries.
    Mahalanobis : A Gaussian distance in feature space, without the head.
    sklearn.decomposition.PCA : The principal subspace of centred data
        (ViM's is uncentred, at the head's origin).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import ViM
    >>> rng = np.random.default_rng(0)
    >>> W, b = rng.normal(size=(3, 6)), np.zeros(3)
    >>> X = rng.normal(size=(200, 6)) * [3, 3, 3, 0.1, 0.1, 0.1]
    >>> vim = ViM(head=(W, b), n_components=3).fit(X)
    >>> vim.components_.shape, vim.residual_components_.shape
    ((3, 6), (3, 6))
    >>> far = np.array([[0.0, 0.0, 0.0, 5.0, 5.0, 5.0]])
    >>> bool(vim.score_samples(far)[0] < vim.offset_)
    True
    """

    _summed_stats = ("second_moment_sum_", "max_logit_sum_")
    _parameter_constraints = {
        **_PrincipalResidual._parameter_constraints,
        "residual_scale": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self, head, n_components=None, residual_scale=None, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.head = head
        self.n_components = n_components
        self.residual_scale = residual_scale

    # ------------------------------------------------------------- streaming
    def _reset_stats(self, X, y):
        super()._reset_stats(X, y)
        self.max_logit_sum_ = 0.0

    def _update_stats(self, X, y):
        second_moment_sum = self._added_second_moments(X)
        with np.errstate(over="ignore", invalid="ignore"):
            logits = _logits(X, self.coef_, self.intercept_)
            max_logit_sum = self.max_logit_sum_ + float(logits.max(axis=1).sum())
        # Checked before anything is merged; rebound, never updated in place,
        # so that partial_fit can restore the previous sums.
        if not np.isfinite(max_logit_sum):
            raise self._overflow_error()
        self.second_moment_sum_ = second_moment_sum
        self.max_logit_sum_ = max_logit_sum

    def _finalize_stats(self):
        super()._finalize_stats()
        if self.residual_scale is not None:
            self.residual_scale_ = float(self.residual_scale)

    def _fit(self, X, y):
        super()._fit(X, y)
        # The paper matches alpha on the whole training set.
        self._set_residual_scale(X)

    # offset_ keeps each sampled row's energy and residual, so that it follows
    # residual_scale_ when a stream re-matches it.
    def _threshold_terms(self, X_id):
        energy = logsumexp64(_logits(X_id, self.coef_, self.intercept_))
        return np.column_stack([energy, self._residual(X_id)])

    def _scores_from_terms(self, terms):
        return terms[:, 0] - self.residual_scale_ * terms[:, 1]

    @property
    def _keeps_offset_terms(self):
        # A stream matches residual_scale_ on the sampled residuals.
        return super()._keeps_offset_terms or self.residual_scale is None

    def _add_offset_terms(self, terms, n_before):
        super()._add_offset_terms(terms, n_before)
        # A stream cannot be revisited: alpha is matched on the sampled
        # residuals (every row's while <= 10,000 were seen).
        if self.residual_scale is None:
            self.residual_scale_ = self._matched_scale(self._offset_terms_[:, 1])

    def _set_residual_scale(self, X_id):
        if self.residual_scale is None:
            self.residual_scale_ = self._matched_scale(self._residual(X_id))

    def _matched_scale(self, residual):
        mean_residual = float(residual.mean())
        # Residuals below sqrt(eps) of the typical norm are eigen-solver noise;
        # the typical norm is sqrt(trace) of the moment, taken without overflow.
        rms_norm = float(_row_norms(np.sqrt(np.maximum(self.eigenvalues_, 0))[None])[0])
        if not mean_residual > np.sqrt(np.finfo(np.float64).eps) * rms_norm:
            warn(
                f"ViM cannot match residual_scale: the {self.n_samples_seen_} fit "
                f"rows seen lie in the {self.n_components_}-dimensional principal "
                "subspace (zero residual), so residual_scale_ = 0 and the score "
                "is the plain energy. Fit on more rows (or keep calling "
                "partial_fit), lower n_components, or pass residual_scale.",
                UserWarning,
            )
            return 0.0
        mean_max_logit = self.max_logit_sum_ / self.n_samples_seen_
        if mean_max_logit < 0:
            warn(
                f"The mean max logit of the ViM fit rows is {mean_max_logit:.6g}; "
                "a negative residual_scale would reward large residuals, so it "
                "uses its magnitude. Pass residual_scale to choose the scale "
                "yourself.",
                UserWarning,
            )
        return abs(mean_max_logit) / mean_residual

    # --------------------------------------------------------------- scoring
    def _score(self, X):
        with np.errstate(over="ignore", invalid="ignore"):
            energy = logsumexp64(_logits(X, self.coef_, self.intercept_))
            scores = energy - self.residual_scale_ * self._residual(X)
        bad = ~(np.abs(scores) <= np.finfo(X.dtype).max)  # NaN, inf, float32
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"ViM cannot score {rows.size} row(s) (the first is row {rows[0]}): "
                f"their logits or score leave the {X.dtype} range. Such rows are "
                "far out of distribution; rescale the features, or reject rows "
                "with huge values before scoring"
                + (
                    "; float64 features give float64 scores."
                    if X.dtype == np.float32
                    else "."
                )
            )
        return scores


class Residual(_PrincipalResidual):
    r"""Residual: minus the norm of the features off their principal subspace.

    ViM's residual term alone, the "Residual" baseline of Wang, Li, Feng &
    Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022,
    listed as a post-hoc method of its own in OpenOOD. With head :math:`(W,
    b)`, the features are taken relative to the origin :math:`u = -W^{+} b`;
    :math:`P` spans the top ``n_components`` (the paper's :math:`D`)
    eigenvectors of the uncentred second-moment matrix :math:`\frac1n \sum_i
    (x_i - u)(x_i - u)^\top` of the ID fit features, exactly as in
    :class:`ViM` (one shared fit), and

    .. math::

        s(x) = -\lVert (I - PP^\top)(x - u) \rVert .

    Higher is more in-distribution: a row far outside the subspace the ID
    features span scores low, whatever its logits. The head enters only
    through the origin :math:`u`. The fit is a sum of second moments, so
    :meth:`partial_fit` streams exactly. float32 features are multiplied in
    float32 blocks summed in float64, with the accuracy stated in
    :class:`ViM`.

    pytorch-ood 0.4.0 has no Residual detector. Its ``ViM`` computes the same
    residual inside its score: ours is
    :math:`-(s_{\text{ViM}}^{\text{pytorch-ood}} + \log\sum_k e^{l_k}) /
    \alpha` with its fitted :math:`\alpha`; OpenOOD's ``Residual``
    postprocessor returns the same score as ours (both are minus the norm).

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer: a ``(W, b)`` pair, a torch
        ``nn.Linear``, a fitted scikit-learn linear model, or a callable
        ``head(n_features)`` returning one of these (see
        :func:`~sklearn_ood.detectors.check_head`).
    n_components : int >= 0, default=None
        Dimension :math:`D` of the principal subspace; must be smaller than
        the number of features. ``None`` uses
        :func:`vim_default_n_components`, as :class:`ViM` does.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        Head weights :math:`W`.
    intercept_ : ndarray of shape (n_classes,)
        Head bias :math:`b`.
    origin_ : ndarray of shape (n_features,)
        The origin :math:`u = -W^{+} b`.
    n_components_ : int
        Dimension :math:`D` of the principal subspace used.
    components_ : ndarray of shape (``n_components_``, n_features)
        Orthonormal basis of the principal subspace (rows), largest
        eigenvalue first.
    residual_components_ : ndarray of shape (n_features - ``n_components_``, n_features)
        Orthonormal basis of its orthogonal complement (rows).
    eigenvalues_ : ndarray of shape (n_features,)
        Eigenvalues of the second-moment matrix, in decreasing order.
    second_moment_sum_ : ndarray of shape (n_features, n_features)
        :math:`\sum_i (x_i - u)(x_i - u)^\top` over the ID fit rows.
    n_samples_seen_ : int
        Number of ID fit rows.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    See Also
    --------
    ViM : The residual norm scaled against the energy of the logits.
    Mahalanobis : A Gaussian distance in feature space.
    sklearn.decomposition.PCA : The principal subspace of centred data.

    References
    ----------
    .. [1] H. Wang, Z. Li, L. Feng and W. Zhang, "ViM: Out-Of-Distribution
       with Virtual-logit Matching", CVPR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Residual
    >>> rng = np.random.default_rng(0)
    >>> W, b = rng.normal(size=(3, 6)), np.zeros(3)
    >>> X = rng.normal(size=(200, 6)) * [3, 3, 3, 0.1, 0.1, 0.1]
    >>> residual = Residual(head=(W, b), n_components=3).fit(X)
    >>> far = np.array([[0.0, 0.0, 0.0, 5.0, 5.0, 5.0]])
    >>> float(residual.score_samples(far)[0]) < residual.offset_
    True
    """

    def __init__(self, head, n_components=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.n_components = n_components

    def _score(self, X):
        scores = -self._residual(X)
        bad = ~(np.abs(scores) <= np.finfo(X.dtype).max)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"Residual cannot score {rows.size} row(s) (the first is row "
                f"{rows[0]}): their residual norm leaves the {X.dtype} range. "
                f"{_FLOAT_RANGE}"
            )
        return scores
