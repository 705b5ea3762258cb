"""Warnings raised by sklearn-ood."""

__all__ = ["SingularCovarianceWarning"]


class SingularCovarianceWarning(UserWarning):
    """A covariance was singular and a ridge ``r * I`` was added to it.

    Raised by the Gaussian detectors (Mahalanobis, RMD, GMM,
    MultiMahalanobis) when there are fewer rows than features, constant or
    collinear features: the fallback keeps the scores finite.
    """
