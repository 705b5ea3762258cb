"""Warnings and errors raised by sklearn-ood."""

__all__ = ["NoThresholdError", "SingularCovarianceWarning"]


class SingularCovarianceWarning(UserWarning):
    """A covariance was singular and a ridge ``r * I`` was added to it.

    Raised by the Gaussian detectors (Mahalanobis, RMD, GMM,
    MultiMahalanobis) when there are fewer rows than features, constant or
    collinear features: the fallback keeps the scores finite.

    See Also
    --------
    sklearn_ood.detectors.Mahalanobis : A detector that may raise it.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Mahalanobis
    >>> from sklearn_ood.exceptions import SingularCovarianceWarning
    >>> X = np.random.default_rng(0).normal(size=(3, 5))  # fewer rows than features
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = Mahalanobis().fit(X)
    >>> any(issubclass(w.category, SingularCovarianceWarning) for w in caught)
    True
    """


class NoThresholdError(ValueError, AttributeError):
    """A detector fitted with ``contamination=None`` was asked to threshold.

    Such a detector learned no ``offset_``: ``score_samples`` works, while
    ``decision_function`` and ``predict`` raise this error. It derives from
    ``ValueError`` and ``AttributeError``, as scikit-learn's
    ``NotFittedError`` does.

    See Also
    --------
    sklearn_ood.base.BaseDetector : Where ``contamination`` sets ``offset_``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Energy
    >>> from sklearn_ood.exceptions import NoThresholdError
    >>> det = Energy(contamination=None).fit(np.zeros((4, 3)))
    >>> try:
    ...     det.predict(np.zeros((1, 3)))
    ... except NoThresholdError:
    ...     print("scores only")
    scores only
    """
