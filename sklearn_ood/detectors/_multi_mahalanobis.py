"""Mahalanobis feature ensemble over several layers (Lee et al., 2018)."""

from numbers import Integral, Real

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from sklearn_ood.base import BaseDetector, PartialFitMixin, check_ood_labels
from sklearn_ood.detectors._gaussian import (
    COVARIANCE_OPTIONS,
    ClassStats,
    GaussianLabelsMixin,
    TiedGaussian,
    check_scores,
)

__all__ = ["MultiMahalanobis"]


def _resolve_groups(groups, n_features):
    """Column selectors (slices or int arrays) of the ``groups`` parameter."""
    if groups is None:
        return [slice(0, n_features)]
    groups = list(groups)
    if not groups:
        raise ValueError("groups must list at least one group of columns.")
    if all(isinstance(g, Integral) and not isinstance(g, bool) for g in groups):
        sizes = np.asarray(groups, dtype=np.int64)
        if np.any(sizes < 1) or sizes.sum() != n_features:
            raise ValueError(
                f"groups given as block sizes {sizes.tolist()} must be positive "
                f"and sum to the number of features, {n_features}."
            )
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    resolved = []
    for i, group in enumerate(groups):
        if isinstance(group, slice):
            group = np.arange(n_features)[group]
        else:
            group = np.asarray(group)
            if group.dtype == bool and group.shape == (n_features,):
                group = np.flatnonzero(group)
            elif group.ndim != 1 or (group.size and group.dtype.kind not in "iu"):
                raise ValueError(
                    f"group {i} must be a slice, a 1-D array of column indices or "
                    f"a boolean mask of length {n_features}; got {group!r}."
                )
        if group.size == 0:
            raise ValueError(f"group {i} selects no column.")
        if group.min() < 0 or group.max() >= n_features:
            raise ValueError(
                f"group {i} has column indices outside 0..{n_features - 1}."
            )
        if np.unique(group).size != group.size:
            raise ValueError(f"group {i} repeats a column.")
        if np.array_equal(group, np.arange(group[0], group[0] + group.size)):
            resolved.append(slice(int(group[0]), int(group[0] + group.size)))
        else:
            resolved.append(group.astype(np.intp))
    return resolved


def _width(columns):
    return columns.stop - columns.start if isinstance(columns, slice) else columns.size


class MultiMahalanobis(GaussianLabelsMixin, PartialFitMixin, BaseDetector):
    r"""Weighted sum of per-layer Mahalanobis scores (feature ensemble).

    .. math::

        s(x) = \sum_{\ell} \alpha_\ell \, s_\ell(x), \qquad
        s_\ell(x) = -\min_k \, (f_\ell(x) - \mu_{\ell k})^\top
                    \Sigma_\ell^{-1} (f_\ell(x) - \mu_{\ell k})

    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", NeurIPS 2018, section 2.2: one
    :class:`Mahalanobis` model (class means, tied covariance) per layer
    :math:`f_\ell`, combined with layer weights :math:`\alpha_\ell` (the
    paper's symbol; ``layer_weights`` here) that the paper learns by logistic
    regression on validation samples. ``X`` holds the layers' features side
    by side and ``groups`` says which columns belong to each layer.
    pytorch-ood 0.4.0's ``MultiMahalanobis`` sums :math:`\alpha_\ell`
    (its ``alpha``) times its :class:`Mahalanobis` outlier score
    (:math:`\approx \min_k d_{\ell k}^2 / (2N)`), so ours is :math:`-2N`
    times it for the same weights; it has no way to learn them.

    Weights, three ways:

    * ``layer_weights=None`` (all ones) or fixed values;
    * ``layer_weights="learn"``: ``fit(X, y)`` takes OOD rows (``y = -1``)
      too. The Gaussians use the ID rows only; :math:`\alpha` is the
      coefficient vector of a logistic regression (ID = 1 vs OOD = 0,
      ``C=1`` on standardised layer scores, intercept dropped) fitted on the
      layer scores of *all* rows. Caveat: the ID rows then serve twice, and
      their in-sample distances are smaller than those of unseen ID data,
      which biases :math:`\alpha` (little with many rows per class and few
      features). Usable in pipelines and grid searches; no ``partial_fit``;
    * the paper's protocol: fit the Gaussians on training rows, then call
      :meth:`fit_layer_weights` on held-out validation rows mixing ID and
      OOD.

    Learned weights may be negative (a layer that ranks OOD rows high).
    ``covariance_estimator`` and ``reg_covar`` apply to every layer, with the
    singular fallback of :class:`Mahalanobis`; ``y=None`` fits one class.
    Overflow and refused ``partial_fit`` chunks behave as in
    :class:`Mahalanobis`: a ``ValueError`` that leaves the detector as it
    was (each call holds the previous sums beside the new ones), and a
    ``ValueError`` from ``score_samples`` for a row whose score leaves the
    float range.

    Parameters
    ----------
    groups : list, default=None
        Columns of each layer: a list of block sizes (``[512, 1024]``: the
        first 512 columns, then the next 1024; they must sum to
        ``n_features``), or a list of slices, index arrays or boolean masks.
        ``None``: one group of all columns (plain :class:`Mahalanobis`).
    layer_weights : array-like of shape (n_groups,), "learn" or None, default=None
        Layer weights :math:`\alpha_\ell`; ``None`` means all ones,
        ``"learn"`` fits them in ``fit`` as above.
    covariance_estimator : {"empirical", "ledoit_wolf", "oas"}, default="empirical"
        Covariance estimator of each layer, as in :class:`Mahalanobis`
        (:class:`sklearn.covariance.EmpiricalCovariance`,
        :class:`sklearn.covariance.LedoitWolf` or
        :class:`sklearn.covariance.OAS`).
    reg_covar : float >= 0, default=0.0
        Non-negative regularisation added to the diagonal of each layer's
        covariance.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    groups_ : list of slice or ndarray
        Resolved column selector of each layer.
    layer_weights_ : ndarray of shape (n_groups,)
        Layer weights in use.
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    means_ : list of ndarray of shape (n_classes, n_features_l)
        Class means of each layer.
    covariances_ : list of ndarray of shape (n_features_l, n_features_l)
        Tied covariance of each layer.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Total number of columns.

    See Also
    --------
    Mahalanobis : The score of one layer.
    RMD : A Mahalanobis distance relative to a background Gaussian.
    sklearn_ood.torch.TorchFeatureTransformer : Extracts several layers side
        by side; its ``feature_blocks_`` give ``groups``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import MultiMahalanobis
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> X = rng.normal(size=(100, 5)) + 4 * y[:, None]  # layers of 2 and 3 columns
    >>> det = MultiMahalanobis(groups=[2, 3], layer_weights=[1.0, 0.5]).fit(X, y)
    >>> det.layer_scores(X[:2]).shape
    (2, 2)
    >>> X_ood = rng.normal(size=(100, 5)) + 2  # OOD: between the classes
    >>> X_val = np.vstack([X, X_ood])
    >>> y_val = np.r_[y, -np.ones(100, int)]
    >>> det.fit_layer_weights(X_val, y_val).layer_weights_.shape
    (2,)
    """

    _input_kind = "layers"
    _family = "gaussian"

    _class_aware = True
    _summed_stats = ("_stats",)
    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "groups": ["array-like", None],
        "layer_weights": ["array-like", StrOptions({"learn"}), None],
        "covariance_estimator": [StrOptions(COVARIANCE_OPTIONS)],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        groups=None,
        layer_weights=None,
        covariance_estimator="empirical",
        reg_covar=0.0,
        *,
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.groups = groups
        self.layer_weights = layer_weights
        self.covariance_estimator = covariance_estimator
        self.reg_covar = reg_covar

    @property
    def _learns_weights(self):
        weights = self.layer_weights
        return isinstance(weights, str) and weights == "learn"

    # layer_weights="learn" fits on OOD rows too, so it needs labels.
    _uses_outliers = property(lambda self: self._learns_weights)
    _requires_labels = property(lambda self: self._learns_weights)

    def _reset_stats(self, X, y):
        self._start_labels(y)
        self.groups_ = _resolve_groups(self.groups, X.shape[1])
        n_groups = len(self.groups_)
        if self.layer_weights is None or self._learns_weights:
            self.layer_weights_ = np.ones(n_groups)
        else:
            weights = np.asarray(self.layer_weights, dtype=np.float64)
            if weights.shape != (n_groups,) or not np.all(np.isfinite(weights)):
                raise ValueError(
                    f"layer_weights must hold {n_groups} finite weights, one per "
                    f"group; got shape {weights.shape}."
                )
            self.layer_weights_ = weights
        lw = self.covariance_estimator == "ledoit_wolf"
        self._stats = [
            ClassStats(_width(cols), columns=cols, fourth_moments=lw)
            for cols in self.groups_
        ]

    def _update_stats(self, X, y):
        X, labels = self._id_rows(X, y)
        # New objects in a new list: partial_fit restores the old if refused.
        self._stats = [stats.with_rows(X, labels) for stats in self._stats]

    def _finalize_stats(self):
        self._tied = [
            TiedGaussian.from_stats(
                stats,
                self.covariance_estimator,
                self.reg_covar,
                f"MultiMahalanobis (group {i})",
            )
            for i, stats in enumerate(self._stats)
        ]
        self.means_ = [g.means for g in self._tied]
        self.covariances_ = [g.covariance for g in self._tied]

    def _fit(self, X, y):
        super()._fit(X, y)
        if self._learns_weights:
            self._learn_weights(X, y)

    def partial_fit(self, X, y=None):
        if self._learns_weights:
            raise ValueError(
                "layer_weights='learn' fits a logistic regression on all rows at "
                "once and cannot stream; use fixed layer_weights with "
                "partial_fit, then fit_layer_weights."
            )
        return super().partial_fit(X, y)

    partial_fit.__doc__ = PartialFitMixin.partial_fit.__doc__

    def layer_scores(self, X):
        """Per-layer scores :math:`s_\\ell(x)`, before weighting.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_groups), dtype float64
            Column :math:`\\ell` holds :math:`s_\\ell(x)`, minus the squared
            Mahalanobis distance of each row's layer features to the closest
            class mean of that layer.
        """
        return self._layer_scores(self._validate_score_input(X))

    def _layer_scores(self, X):
        scores = np.column_stack([-g.min_sq_distance(X) for g in self._tied])
        return check_scores(scores, np.float64, "MultiMahalanobis")

    def _score(self, X):
        with np.errstate(over="ignore", invalid="ignore"):
            scores = self._layer_scores(X) @ self.layer_weights_
        return check_scores(
            scores, X.dtype, "MultiMahalanobis", "weighted sum of squared distances"
        )

    def _learn_weights(self, X, y, layer_scores=None):
        """Fit ``layer_weights_`` on the layer scores of ``X`` (or on
        ``layer_scores``, when computed elsewhere, e.g. on Dask workers)."""
        if y is None or not (np.any(y >= 0) and np.any(y < 0)):
            raise ValueError(
                "Learning layer_weights needs in-distribution rows (y >= 0) and "
                "out-of-distribution rows (y < 0)."
            )
        scores = self._layer_scores(X) if layer_scores is None else layer_scores
        center, scale = scores.mean(axis=0), scores.std(axis=0)
        scale[scale == 0] = 1.0
        model = LogisticRegression(max_iter=1000)
        model.fit((scores - center) / scale, (y >= 0).astype(int))
        self.layer_weights_ = model.coef_[0] / scale

    def fit_layer_weights(self, X, y):
        """Learn ``layer_weights_`` on held-out rows, keeping the Gaussians.

        The weights are the coefficients of a logistic regression separating
        the ID rows (``y >= 0``) from the OOD rows (``y < 0``) by their layer
        scores, as Lee et al. (2018) do on validation data. ``offset_`` is
        then recomputed from the (sample of) ID fit rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Validation rows, unseen by ``fit``.
        y : array-like of shape (n_samples,)
            Any label >= 0 for ID rows, a negative label for OOD rows.

        Returns
        -------
        self : object
            The detector, with new ``layer_weights_`` and ``offset_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        self._learn_weights(X, check_ood_labels(y, X.shape[0]))
        self._set_offset_from_terms()
        return self

    # offset_ keeps the layer scores of the sampled fit rows, so that
    # fit_layer_weights can re-threshold them under the new weights.
    def _threshold_terms(self, X_id):
        return self._layer_scores(X_id)

    def _scores_from_terms(self, terms):
        return terms @ self.layer_weights_
