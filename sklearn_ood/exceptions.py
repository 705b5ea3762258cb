"""Warnings and errors raised by sklearn-ood."""

__all__ = ["NoThresholdError", "SingularCovarianceWarning"]


class SingularCovarianceWarning(UserWarning):
    """A covariance was singular and a ridge ``r * I`` was added to it.

    Raised by the Gaussian detectors (Mahalanobis, RMD, GMM,
    MultiMahalanobis) when there are fewer rows than features, constant or
    collinear features: the fallback keeps the scores finite.
    """


class NoThresholdError(ValueError, AttributeError):
    """A detector fitted with ``contamination=None`` was asked to threshold.

    Such a detector learned no ``offset_``: ``score_samples`` works, while
    ``decision_function`` and ``predict`` raise this error. It derives from
    ``ValueError`` and ``AttributeError``, as scikit-learn's
    ``NotFittedError`` does.
    """
