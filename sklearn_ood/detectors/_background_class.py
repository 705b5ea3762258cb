"""The background-class detector: logits with one extra, background column."""

import numpy as np

from sklearn_ood.detectors._logits import _LogitDetector

__all__ = ["BackgroundClass"]


class BackgroundClass(_LogitDetector):
    r"""Probability of the ID classes under a classifier with a background class.

    .. math::

        s(x) = 1 - \operatorname{softmax}(l(x))_{C}
             = \frac{\sum_{c < C} e^{l_c(x)}}{\sum_{c \le C} e^{l_c(x)}}

    The detector of the background-class baseline of Dhamija, Günther &
    Boult, "Reducing Network Agnostophobia", NeurIPS 2018: a network
    trained with :class:`~sklearn_ood.torch.BackgroundClassLoss` has
    :math:`C + 1` outputs, the last one (column :math:`C`) for the
    outliers, and :math:`s` is the probability it gives to the ID classes
    together. It is computed in float64 as the ratio of the two sums (with
    the row maximum subtracted), so that it keeps its relative precision
    near 0 and near 1. pytorch-ood 0.4.0 has the loss but no detector; the
    background probability it would use as an outlier score is
    :math:`1 - s`. Every logit column but the last raises the score.

    Parameters
    ----------
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of logit columns, :math:`C + 1 \ge 2`, the last the
        background class.

    See Also
    --------
    MaxSoftmax : The largest softmax probability, without a background class.
    sklearn_ood.torch.BackgroundClassLoss : Trains the background column.

    References
    ----------
    .. [1] A. R. Dhamija, M. Günther and T. E. Boult, "Reducing Network
       Agnostophobia", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import BackgroundClass
    >>> logits = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 5.0]])  # last: background
    >>> BackgroundClass().fit(logits).score_samples(logits).round(4)
    array([0.9547, 0.0133])
    """

    def __init__(self, *, contamination=0.05):
        super().__init__(contamination=contamination)

    def _score(self, X):
        shifted = np.asarray(X, dtype=np.float64)
        shifted = np.exp(shifted - shifted.max(axis=1, keepdims=True))
        return shifted[:, :-1].sum(axis=1) / shifted.sum(axis=1)
