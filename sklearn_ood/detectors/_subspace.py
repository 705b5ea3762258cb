"""Subspace detectors that read a classifier's features together with its head.

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
from sklearn_ood.utils._warnings import warn

__all__ = ["ViM", "vim_default_dim"]


def vim_default_dim(n_features):
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
    dim : int

    Examples
    --------
    >>> from sklearn_ood.detectors._subspace import vim_default_dim
    >>> vim_default_dim(2048), vim_default_dim(768), vim_default_dim(512)
    (1000, 512, 256)
    """
    if n_features >= 2048:
        return 1000
    if n_features >= 768:
        return 512
    return n_features // 2


class ViM(PartialFitMixin, BaseDetector):
    r"""Virtual-logit Matching (ViM): energy minus the scaled residual norm.

    Wang, Li, Feng & Zhang, "ViM: Out-Of-Distribution with Virtual-logit
    Matching", CVPR 2022. With head :math:`(W, b)` and logits
    :math:`l = Wx + b`, the features are taken relative to the origin
    :math:`u = -W^{+} b` (the point whose logits vanish, :math:`W^{+}` the
    pseudo-inverse). :math:`P` spans the top ``dim`` eigenvectors of the
    second-moment matrix :math:`\frac1n \sum_i (x_i - u)(x_i - u)^\top` of the
    ID fit features (uncentred at :math:`u`, as in the paper's code), and
    :math:`x^{P^\perp} = (I - PP^\top)(x - u)` is the residual. Then

    .. math::

        s(x) = \log \sum_k e^{l_k(x)} - \alpha \lVert x^{P^\perp} \rVert,
        \qquad
        \alpha = \frac{\sum_i \max_k l_k(x_i)}{\sum_i \lVert x_i^{P^\perp} \rVert}

    with both sums over the ID fit rows. The paper's OOD probability, the
    softmax weight of the virtual logit :math:`\alpha \lVert x^{P^\perp}\rVert`
    among the real ones, is :math:`\sigma(-s(x))` (logistic sigmoid), so
    ``score_samples`` ranks exactly as the paper; higher is more ID. This is
    the score of the authors' code and of OpenOOD; pytorch-ood 0.4.0's ``ViM``
    returns :math:`-s` (it computes in float32). pytorch-ood silently lowers a
    ``d`` larger than the feature width to half of it; here ``dim`` must be
    smaller than the width.

    The fit is a sum of second moments, so :meth:`partial_fit` streams: the
    moment matrix and the sum of maximum logits are exact. :math:`\alpha`'s
    denominator needs the residuals under the *final* subspace, which
    streaming cannot revisit; ``partial_fit`` takes it from the uniform
    sample of at most 10,000 rows that also sets ``offset_`` (see
    :class:`~sklearn_ood.base.PartialFitMixin`), each row's residual taken
    under the subspace of the call that brought it. ``fit`` matches it on
    every row under the final subspace, as the paper does.

    Parameters
    ----------
    head : tuple, object or callable
        The classifier's last linear layer: a ``(W, b)`` pair, a torch
        ``nn.Linear``, a fitted scikit-learn linear model, or a callable
        ``head(n_features)`` returning one of these (see
        :func:`~sklearn_ood.detectors.check_head`).
    dim : int >= 0, default=None
        Dimension :math:`D` of the principal subspace; must be smaller than
        the number of features. ``None`` uses :func:`vim_default_dim`: 1000
        for :math:`N \ge 2048` features, 512 for :math:`N \ge 768`,
        :math:`\lfloor N/2 \rfloor` otherwise.
    alpha : float > 0, default=None
        Scale :math:`\alpha` of the virtual logit; ``None`` matches it to the
        fit data as above. The paper assumes a positive mean max logit; when
        it is negative, a negative :math:`\alpha` would reward large
        residuals, so its magnitude is used instead, with a warning. When the
        fit rows seen lie inside the principal subspace (e.g. no more rows
        than ``dim``, as after the first small ``partial_fit`` chunks), the
        denominator vanishes: :math:`\alpha = 0` (the score is the energy)
        until more rows arrive, with a warning.
    contamination : float in (0, 0.5], default=0.05
        Fraction of the ID fit rows rejected by ``predict``.

    Attributes
    ----------
    W_ : ndarray of shape (n_classes, n_features)
        Head weights.
    b_ : ndarray of shape (n_classes,)
        Head bias.
    origin_ : ndarray of shape (n_features,)
        The origin :math:`u = -W^{+} b`.
    dim_ : int
        Dimension of the principal subspace used.
    components_ : ndarray of shape (dim_, n_features)
        Orthonormal basis of the principal subspace (rows), largest
        eigenvalue first.
    residual_components_ : ndarray of shape (n_features - dim_, n_features)
        Orthonormal basis of its orthogonal complement (rows).
    eigenvalues_ : ndarray of shape (n_features,)
        Eigenvalues of the second-moment matrix, in decreasing order.
    alpha_ : float
        Scale of the virtual logit.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of feature columns.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors._subspace import ViM
    >>> rng = np.random.default_rng(0)
    >>> W, b = rng.normal(size=(3, 6)), np.zeros(3)
    >>> X = rng.normal(size=(200, 6)) * [3, 3, 3, 0.1, 0.1, 0.1]
    >>> vim = ViM(head=(W, b), dim=3).fit(X)
    >>> far = np.array([[0.0, 0.0, 0.0, 5.0, 5.0, 5.0]])
    >>> bool(vim.score_samples(far)[0] < vim.offset_)
    True
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "head": [object],  # resolved and checked by check_head in fit
        "dim": [Interval(Integral, 0, None, closed="left"), None],
        "alpha": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(self, head, dim=None, alpha=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.head = head
        self.dim = dim
        self.alpha = alpha

    # ------------------------------------------------------------- streaming
    def _reset_stats(self, X, y):
        n_features = X.shape[1]
        self.W_, self.b_ = check_head(self.head, n_features)
        dim = vim_default_dim(n_features) if self.dim is None else self.dim
        if dim >= n_features:
            raise ValueError(
                f"dim={dim} must be smaller than the number of features "
                f"({n_features}): the residual outside a {dim}-dimensional "
                "principal subspace would be identically zero."
            )
        self.dim_ = dim
        # The minimum-norm point whose logits vanish (exactly when W has full
        # row rank), as in the paper.
        # Singular values below max(C, d) * eps of the largest are rank noise:
        # NumPy's default cutoff (1e-15) keeps them for a rank-deficient head
        # and sends the origin to ~1e7.
        cutoff = max(self.W_.shape) * np.finfo(np.float64).eps
        self.origin_ = -np.linalg.pinv(self.W_, rcond=cutoff) @ self.b_
        self.second_moment_sum_ = np.zeros((n_features, n_features))
        self.max_logit_sum_ = 0.0

    def _update_stats(self, X, y):
        Z = np.subtract(X, self.origin_, dtype=np.float64)
        # Rebound, not updated in place, so that a refused chunk can be undone.
        self.second_moment_sum_ = self.second_moment_sum_ + Z.T @ Z
        self.max_logit_sum_ += float(head_logits(X, self.W_, self.b_).max(axis=1).sum())

    def _finalize_stats(self):
        moment = self.second_moment_sum_ / self.n_samples_seen_
        eigenvalues, eigenvectors = np.linalg.eigh((moment + moment.T) / 2)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        self.eigenvalues_ = eigenvalues
        self.components_ = np.ascontiguousarray(eigenvectors[:, : self.dim_].T)
        self.residual_components_ = np.ascontiguousarray(eigenvectors[:, self.dim_ :].T)
        if self.alpha is not None:
            self.alpha_ = float(self.alpha)

    def _fit(self, X, y):
        super()._fit(X, y)
        # The paper matches alpha on the whole training set.
        self._set_alpha(X)

    # offset_ keeps each sampled row's energy and residual, so that it follows
    # alpha_ when a stream re-matches it.
    def _threshold_terms(self, X_id):
        energy = logsumexp64(head_logits(X_id, self.W_, self.b_))
        return np.column_stack([energy, self._residual(X_id)])

    def _scores_from_terms(self, terms):
        return terms[:, 0] - self.alpha_ * terms[:, 1]

    def _add_offset_terms(self, terms, n_before):
        super()._add_offset_terms(terms, n_before)
        # A stream cannot be revisited: alpha is matched on the sampled
        # residuals (every row's while <= 10,000 were seen).
        if self.alpha is None:
            self.alpha_ = self._matched_alpha(self._offset_terms_[:, 1])

    def _set_alpha(self, X_id):
        if self.alpha is None:
            self.alpha_ = self._matched_alpha(self._residual(X_id))

    def _matched_alpha(self, residual):
        mean_residual = float(residual.mean())
        # Residuals below sqrt(eps) of the typical norm are eigen-solver noise.
        rms_norm = np.sqrt(np.trace(self.second_moment_sum_) / self.n_samples_seen_)
        if not mean_residual > np.sqrt(np.finfo(np.float64).eps) * rms_norm:
            warn(
                f"ViM cannot match alpha: the {self.n_samples_seen_} fit rows seen lie "
                f"in the {self.dim_}-dimensional principal subspace (zero "
                "residual), so alpha_ = 0 and the score is the plain energy. Fit "
                "on more rows (or keep calling partial_fit), lower dim, or pass "
                "alpha.",
                UserWarning,
            )
            return 0.0
        mean_max_logit = self.max_logit_sum_ / self.n_samples_seen_
        if mean_max_logit < 0:
            warn(
                f"The mean max logit of the ViM fit rows is {mean_max_logit:.6g}; "
                "a negative alpha would reward large residuals, so alpha uses its "
                "magnitude. Pass alpha to choose the scale yourself.",
                UserWarning,
            )
        return abs(mean_max_logit) / mean_residual

    # --------------------------------------------------------------- scoring
    def _residual(self, X):
        """``||(x - o) projected off the principal subspace||`` of each row."""
        centred = np.subtract(X, self.origin_, dtype=np.float64)
        return np.linalg.norm(centred @ self.residual_components_.T, axis=1)

    def _score(self, X):
        energy = logsumexp64(head_logits(X, self.W_, self.b_))
        return energy - self.alpha_ * self._residual(X)
