"""Class-conditional Gaussian detectors on features: Mahalanobis, RMD, GMM.

All three stream their sums (``partial_fit``) through
:class:`~sklearn_ood.detectors._gaussian.ClassStats` and score in row chunks.
:class:`~sklearn_ood.detectors.MultiMahalanobis` lives in
``_multi_mahalanobis.py``.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.base import BaseDetector, PartialFitMixin
from sklearn_ood.detectors._gaussian import (
    COVARIANCE_OPTIONS,
    ClassGaussians,
    ClassStats,
    GaussianLabelsMixin,
    TiedGaussian,
    check_scores,
)

__all__ = ["GMM", "RMD", "Mahalanobis"]

_COVARIANCE_CONSTRAINTS = {
    "covariance_estimator": [StrOptions(COVARIANCE_OPTIONS)],
    "reg_covar": [Interval(Real, 0, None, closed="left")],
}


class Mahalanobis(GaussianLabelsMixin, PartialFitMixin, BaseDetector):
    r"""Minus the squared Mahalanobis distance to the closest class mean.

    .. math::

        \mu_k = \frac{1}{n_k} \sum_{i: y_i = k} x_i, \qquad
        \Sigma = \frac{1}{N} \sum_k \sum_{i: y_i = k}
                 (x_i - \mu_k)(x_i - \mu_k)^\top, \qquad
        s(x) = -\min_k \, (x - \mu_k)^\top \Sigma^{-1} (x - \mu_k)

    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", NeurIPS 2018: class means with one tied
    covariance (a linear discriminant analysis fit), scored by the paper's
    confidence :math:`M(x)`, the negated *squared* distance. pytorch-ood
    0.4.0's ``Mahalanobis`` inverts the undivided scatter :math:`N\Sigma +
    10^{-6} I` and returns half the minimum, so its outlier score is about
    :math:`\min_k d_k^2 / (2N)`: ours is :math:`-2N` times it (same ranking,
    up to its ridge).

    With ``y=None`` all rows form one class (``classes_ = [0]``) and this is
    the distance to the data's mean under its covariance
    (:meth:`sklearn.covariance.EmpiricalCovariance.mahalanobis`). Any integer
    labels work (e.g. ``{3, 7, 12}``); classes may first appear in a later
    ``partial_fit`` chunk.

    The tied covariance pools the deviations from the class means, with
    :math:`N - K` degrees of freedom: a class with a single row is fine (its
    mean is that row), but ``N > K`` is required (a ``ValueError`` when every
    class has one row). With ``N - K < d``, a constant or collinear
    feature, :math:`\Sigma` is singular: a ridge :math:`rI` is then added,
    :math:`r = 10^{-6} \operatorname{tr}(\Sigma)/d` growing tenfold until
    the Cholesky factorisation has no pivot below :math:`10^{-10}` of its
    diagonal entry, with a
    :class:`~sklearn_ood.exceptions.SingularCovarianceWarning`.

    Sums accumulate in float64 with per-chunk centring (the pairwise update
    of Chan, Golub & LeVeque, 1979), so ``partial_fit`` in chunks equals
    ``fit``. Scores use the Cholesky factor :math:`\Sigma = CC^\top`: with
    :math:`z = C^{-1}(x - \bar x)` and :math:`m_k = C^{-1}(\mu_k - \bar
    x)`, :math:`d_k^2 = \lVert z\rVert^2 - 2 z^\top m_k + \lVert
    m_k\rVert^2`, two matrix products per row chunk sized by scikit-learn's
    ``working_memory``. With
    ``covariance_estimator="ledoit_wolf"``, ``partial_fit`` measures the
    fourth moments of each chunk about the class means known after that
    chunk, an approximation (exact for ``fit``). A refused ``partial_fit``
    chunk (e.g. values whose sums of squares overflow) leaves the detector
    as it was; the call then holds the previous sums beside the new ones
    (an extra ``n_features**2`` floats).

    Features of about :math:`10^{154}` or more overflow the float64 sums of
    squares: ``fit`` and ``partial_fit`` raise a ``ValueError``. A row whose
    squared distance leaves the float range (float64, or float32 for float32
    input) makes ``score_samples`` raise a ``ValueError`` naming it, never
    return ``-inf`` or NaN.

    With one class the score decreases strictly along every ray leaving the
    mean, :math:`s(\mu + tv) = -t^2 v^\top \Sigma^{-1} v`; with several
    classes a ray may pass near another class mean.

    Parameters
    ----------
    covariance_estimator : {"empirical", "ledoit_wolf", "oas"}, default="empirical"
        How :math:`\Sigma` is estimated from the class-centred rows, with
        the formulas of scikit-learn's estimators applied to the streamed
        scatter matrix: ``"empirical"`` is
        :class:`sklearn.covariance.EmpiricalCovariance` (divided by
        :math:`N`), ``"ledoit_wolf"`` and ``"oas"`` shrink it towards
        :math:`\mu I` (:math:`\mu` the mean variance) as
        :class:`sklearn.covariance.LedoitWolf` and
        :class:`sklearn.covariance.OAS` do.
    reg_covar : float >= 0, default=0.0
        Non-negative regularisation added to the diagonal of the covariance
        after estimation, :math:`\Sigma + rI`, as in
        :class:`sklearn.mixture.GaussianMixture` (whose default is
        :math:`10^{-6}`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    means_ : ndarray of shape (n_classes, n_features)
        Class means :math:`\mu_k`, float64.
    covariance_ : ndarray of shape (n_features, n_features)
        The covariance used, shrinkage, ``reg_covar`` and fallback ridge
        included.
    shrinkage_ : float
        Ledoit-Wolf or OAS shrinkage (0 for ``"empirical"``).
    ridge_ : float
        Fallback ridge added because the covariance was singular (0 if none).
    class_counts_ : ndarray of shape (n_classes,)
        Number of fit rows per class.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features.

    See Also
    --------
    RMD : The distance relative to a class-agnostic background Gaussian.
    GMM : One covariance per class; the score is the mixture log-density.
    MultiMahalanobis : A weighted sum of this score over several layers.
    sklearn_ood.torch.MahalanobisPreprocessed : This score after an input
        perturbation through the model.
    sklearn.covariance.EmpiricalCovariance.mahalanobis : The single-class
        squared distance.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Mahalanobis
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0],
    ...               [10.0, 0.0], [12.0, 0.0], [10.0, 2.0], [12.0, 2.0]])
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> det = Mahalanobis().fit(X, y)
    >>> det.means_
    array([[ 1.,  1.],
           [11.,  1.]])
    >>> det.score_samples([[2.0, 1.0], [6.0, 1.0], [11.0, 5.0]])
    array([ -1., -25., -16.])
    """

    _family = "gaussian"

    _class_aware = True
    _summed_stats = ("_stats",)
    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_COVARIANCE_CONSTRAINTS,
    }

    def __init__(
        self, covariance_estimator="empirical", reg_covar=0.0, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.covariance_estimator = covariance_estimator
        self.reg_covar = reg_covar

    def _reset_stats(self, X, y):
        self._start_labels(y)
        lw = self.covariance_estimator == "ledoit_wolf"
        self._stats = ClassStats(X.shape[1], fourth_moments=lw)

    def _update_stats(self, X, y):
        # A new object: partial_fit restores the previous one if refused.
        self._stats = self._stats.with_rows(*self._id_rows(X, y))

    def _finalize_stats(self):
        stats = self._stats
        name = type(self).__name__
        self._tied = TiedGaussian.from_stats(
            stats, self.covariance_estimator, self.reg_covar, name
        )
        self.means_ = self._tied.means
        self.covariance_ = self._tied.covariance
        self.shrinkage_ = self._tied.shrinkage
        self.ridge_ = self._tied.ridge
        self.class_counts_ = stats.counts.astype(np.int64)

    def _score(self, X):
        return check_scores(
            -self._tied.min_sq_distance(X), X.dtype, type(self).__name__
        )


class RMD(Mahalanobis):
    r"""Relative Mahalanobis distance: class distance minus background distance.

    .. math::

        d_k(x) = (x - \mu_k)^\top \Sigma^{-1} (x - \mu_k), \qquad
        d_0(x) = (x - \mu_0)^\top \Sigma_0^{-1} (x - \mu_0), \qquad
        s(x) = -\min_k \, \big(d_k(x) - d_0(x)\big) = d_0(x) - \min_k d_k(x)

    Ren et al., "A Simple Fix to Mahalanobis Distance for Improving Near-OOD
    Detection", arXiv:2106.09022, 2021. :math:`\mu_k, \Sigma` are those of
    :class:`Mahalanobis`; the background Gaussian :math:`(\mu_0, \Sigma_0)`
    is the mean and covariance (divided by :math:`N`) of all ID fit rows,
    class-agnostic. Both covariances use the same ``covariance_estimator``,
    ``reg_covar`` and singular fallback. Neither the paper nor ours has a factor
    1/2; pytorch-ood 0.4.0's ``RMD`` inverts the undivided scatters (plus
    :math:`10^{-6} I`) and returns :math:`\min_k (d_k - d_0)` on that
    scale, so ours is :math:`-N` times it. RMD requires ``y``: with a single
    class the class Gaussian *is* the background one, :math:`d_1 = d_0`, and
    every score is 0 (a single labelled class is accepted, since a stream may
    bring more classes later, but gives these zero scores).

    The score is not monotone along rays leaving a class mean. From
    :math:`\mu_k`, :math:`d_0` grows linearly and :math:`d_k` only
    quadratically, :math:`s(\mu_k + tv) = d_0(\mu_k) + 2t\,(\mu_k -
    \mu_0)^\top \Sigma_0^{-1} v + O(t^2)`, so a small step away from the
    background mean *raises* the score: a row just beyond a class, on the
    far side from the other classes, looks more in-distribution than the
    class mean itself. That is the method's intent (the class-specific part
    of the distance), not a numerical artefact. Overflow and refused chunks
    behave as in :class:`Mahalanobis`.

    Parameters
    ----------
    covariance_estimator : {"empirical", "ledoit_wolf", "oas"}, default="empirical"
        How the covariances are estimated, as in :class:`Mahalanobis`
        (:class:`sklearn.covariance.EmpiricalCovariance`,
        :class:`sklearn.covariance.LedoitWolf` or
        :class:`sklearn.covariance.OAS`), from the class-centred rows for
        :math:`\Sigma` and from the rows centred at :math:`\mu_0` for
        :math:`\Sigma_0`.
    reg_covar : float >= 0, default=0.0
        Non-negative regularisation added to the diagonal of both
        covariances after estimation, :math:`\Sigma + rI`.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    means_ : ndarray of shape (n_classes, n_features)
        Class means :math:`\mu_k`.
    covariance_ : ndarray of shape (n_features, n_features)
        Tied within-class covariance :math:`\Sigma`.
    background_mean_ : ndarray of shape (n_features,)
        :math:`\mu_0`, the mean of all ID fit rows.
    background_covariance_ : ndarray of shape (n_features, n_features)
        :math:`\Sigma_0`, their covariance (shrinkage, ``reg_covar`` and
        ridge included).
    shrinkage_, ridge_ : float
        Shrinkage and fallback ridge of :math:`\Sigma` (see
        :class:`Mahalanobis`).
    class_counts_ : ndarray of shape (n_classes,)
        Number of fit rows per class.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features.

    See Also
    --------
    Mahalanobis : The class distance alone.
    GMM : One covariance per class; the score is the mixture log-density.
    MultiMahalanobis : Mahalanobis scores of several layers, weighted.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import RMD
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0],
    ...               [10.0, 0.0], [12.0, 0.0], [10.0, 2.0], [12.0, 2.0]])
    >>> y = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> det = RMD().fit(X, y)
    >>> det.background_mean_
    array([6., 1.])
    >>> det.score_samples([[1.0, 1.0], [6.0, 1.0], [11.0, 5.0]]).round(3)
    array([  0.962, -25.   ,   0.962])
    """

    _requires_labels = True

    def _finalize_stats(self):
        super()._finalize_stats()
        stats = self._stats
        mu0 = stats.total_mean()
        self._background = TiedGaussian.from_scatter(
            mu0[None, :],
            stats.total_scatter(),
            stats.n_samples,
            stats.fourth_total,
            mu0,
            self.covariance_estimator,
            self.reg_covar,
            "The background covariance of RMD",
        )
        self.background_mean_ = mu0
        self.background_covariance_ = self._background.covariance

    def _score(self, X):
        background = self._background.min_sq_distance(X)
        with np.errstate(invalid="ignore"):  # inf - inf is refused below
            scores = background - self._tied.min_sq_distance(X)
        return check_scores(scores, X.dtype, "RMD", "relative Mahalanobis distance")


class GMM(GaussianLabelsMixin, PartialFitMixin, BaseDetector):
    r"""Log-density of the class-conditional Gaussian mixture (per-class covariances).

    .. math::

        \pi_k = \frac{n_k}{N}, \qquad
        \Sigma_k = \frac{1}{n_k} \sum_{i: y_i = k} (x_i - \mu_k)(x_i - \mu_k)^\top,
        \qquad s(x) = \log \sum_k \pi_k \, \mathcal{N}(x; \mu_k, \Sigma_k)

    The generative classifier of Gaussian (quadratic) discriminant analysis
    (Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning",
    2nd ed., Springer 2009, section 4.3); Lee et al. (NeurIPS 2018) score
    with its tied-covariance special case (:class:`Mahalanobis`). The score
    is the full mixture log-density (``logsumexp`` over classes, constants
    included), as in pytorch-ood 0.4.0's ``GMM``, whose outlier score is its
    negation (both divide each scatter by :math:`n_k` and add ``reg_covar``
    to the diagonal; pytorch-ood's default ``reg`` is :math:`10^{-6}`, ours
    0).
    Taking the max over classes instead (the QDA discriminant) would lower
    the score by at most :math:`\log K`.

    Each class needs at least two rows (a ``ValueError`` otherwise) and, for
    a non-singular :math:`\Sigma_k`, more than ``n_features``; a singular
    :math:`\Sigma_k` gets the ridge fallback of :class:`Mahalanobis` with a
    :class:`~sklearn_ood.exceptions.SingularCovarianceWarning`
    (shrinkage, ``covariance_estimator="oas"``, is usually the better
    remedy). ``y=None`` fits one Gaussian, whose score decreases strictly
    along every ray leaving its mean, :math:`s(\mu + tv) = s(\mu) - t^2
    v^\top \Sigma^{-1} v / 2`. Overflow is refused as in
    :class:`Mahalanobis` (a ``ValueError``, never ``-inf`` or NaN).

    Memory holds ``2 n_classes`` float64 matrices of ``n_features**2`` (the
    streamed scatters and the inverse Cholesky factors; ``covariances_`` is
    rebuilt from the scatters on each access), e.g. about 15.6 GiB for 1,000
    classes x 1,024 features. Each set is allocated as one block, so that a
    need beyond the machine's memory raises a ``MemoryError`` that says what
    to do; Linux over-commits, though, and a need below the physical memory
    but above the free memory may end the process when the pages are used.
    ``partial_fit`` finalises after each chunk, so every class seen so far
    must have two rows by then; a refused chunk (a class left with one row,
    values that overflow) leaves the detector as it was. For that, each call
    builds the scatters in a new array (a copy of the previous ones) and
    keeps the previous factors until it succeeds: up to ``4 n_classes``
    matrices during a ``partial_fit`` call (``fit`` copies nothing).

    Parameters
    ----------
    covariance_estimator : {"empirical", "ledoit_wolf", "oas"}, default="empirical"
        How each :math:`\Sigma_k` is estimated from the rows of its class,
        centred at its mean, as in :class:`Mahalanobis`
        (:class:`sklearn.covariance.EmpiricalCovariance` divided by
        :math:`n_k`, :class:`sklearn.covariance.LedoitWolf` or
        :class:`sklearn.covariance.OAS`).
    reg_covar : float >= 0, default=0.0
        Non-negative regularisation added to the diagonal of each
        covariance after estimation, :math:`\Sigma_k + rI`, as in
        :class:`sklearn.mixture.GaussianMixture` (whose default is
        :math:`10^{-6}`).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    means_ : ndarray of shape (n_classes, n_features)
        Class means.
    covariances_ : ndarray of shape (n_classes, n_features, n_features)
        Per-class covariances (shrinkage, ``reg_covar`` and ridge included),
        computed from the stored scatters on each access (a new array).
    priors_ : ndarray of shape (n_classes,)
        Class priors :math:`\pi_k = n_k / N`.
    shrinkage_ : ndarray of shape (n_classes,)
        Per-class shrinkage (0 for ``"empirical"``).
    ridge_ : ndarray of shape (n_classes,)
        Per-class fallback ridge (0 where none was needed).
    class_counts_ : ndarray of shape (n_classes,)
        Number of fit rows per class.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features.

    See Also
    --------
    Mahalanobis : Class means with one tied covariance (linear discriminant).
    RMD : The tied distance relative to a background Gaussian.
    sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis : The same
        class-conditional Gaussians, as a classifier.
    sklearn.mixture.GaussianMixture : A mixture fitted without labels (EM).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import GMM
    >>> X = np.array([[-1.0], [1.0], [9.0], [11.0]])
    >>> det = GMM().fit(X, [0, 0, 1, 1])
    >>> det.covariances_.ravel()
    array([1., 1.])
    >>> det.score_samples([[0.0], [5.0]]).round(4)
    array([ -1.6121, -13.4189])
    """

    _family = "gaussian"

    _class_aware = True
    _summed_stats = ("_stats",)
    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        **_COVARIANCE_CONSTRAINTS,
    }

    def __init__(
        self, covariance_estimator="empirical", reg_covar=0.0, *, contamination=0.05
    ):
        super().__init__(contamination=contamination)
        self.covariance_estimator = covariance_estimator
        self.reg_covar = reg_covar

    def _reset_stats(self, X, y):
        self._start_labels(y)
        lw = self.covariance_estimator == "ledoit_wolf"
        self._stats = ClassStats(X.shape[1], per_class=True, fourth_moments=lw)

    def _update_stats(self, X, y):
        # A new object: partial_fit restores the previous one if refused.
        self._stats = self._stats.with_rows(*self._id_rows(X, y))

    def _finalize_stats(self):
        stats = self._stats
        # A refit frees its previous factors first (partial_fit's copy of the
        # attributes keeps them until the call succeeds).
        self._gaussians = None
        self._gaussians = ClassGaussians(
            stats, self.covariance_estimator, self.reg_covar, "GMM"
        )
        self.means_ = self._gaussians.means
        self.priors_ = np.exp(self._gaussians.log_priors)
        self.shrinkage_ = self._gaussians.shrinkage
        self.ridge_ = self._gaussians.ridge
        self.class_counts_ = stats.counts.astype(np.int64)

    @property
    def covariances_(self):
        if self.__dict__.get("_gaussians") is None:
            raise AttributeError("'GMM' object has no attribute 'covariances_'")
        return self._gaussians.covariances()

    def _score(self, X):
        return check_scores(
            self._gaussians.log_density(X), X.dtype, "GMM", "log-density"
        )
