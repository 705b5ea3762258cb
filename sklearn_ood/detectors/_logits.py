"""Detectors that score a classifier's logits without learning anything.

Each takes logits of shape ``(n_samples, n_classes)`` with at least two
columns. ``fit`` only records the number of classes and the
``contamination`` threshold ``offset_``.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from sklearn_ood.base import BaseDetector
from sklearn_ood.detectors._softmax import (
    logsumexp64,
    max_softmax64,
    neg_entropy64,
    softmax64,
)
from sklearn_ood.utils._validation import check_n_classes

__all__ = [
    "BackgroundClass",
    "Energy",
    "Entropy",
    "GEN",
    "MaxLogit",
    "MaxSoftmax",
    "WeightedEnergy",
]

_POSITIVE = Interval(Real, 0, None, closed="neither")


class _LogitDetector(BaseDetector):
    """A fixed function of the logits; ``fit`` refuses a single logit column.

    One column (a binary classifier's ``decision_function``) would give every
    row the same softmax-based score, silently.
    """

    _input_kind = "logits"
    _family = "logits"

    _stateless = True

    def _fit(self, X, y):
        check_n_classes(X, type(self).__name__)


class MaxSoftmax(_LogitDetector):
    r"""Maximum softmax probability (MSP) of the logits.

    .. math:: s(x) = \max_k \operatorname{softmax}(l(x) / T)_k

    The baseline of Hendrycks & Gimpel, "A Baseline for Detecting Misclassified
    and Out-of-Distribution Examples in Neural Networks", ICLR 2017. With
    ``temperature > 1`` it is the score ODIN uses without input perturbation.
    pytorch-ood's ``MaxSoftmax`` returns the negated value (an outlier score).
    Raising the largest logit, the others fixed, never lowers the score
    (:math:`s = 1 / \sum_k e^{(l_k - l_{\max}) / T}`). ``fit`` refuses a
    single logit column (a binary classifier's ``decision_function``), whose
    softmax is the constant 1; its error message shows how to build the two
    columns.

    Parameters
    ----------
    temperature : float > 0, default=1.0
        Softmax temperature :math:`T`.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    MaxLogit : The largest logit itself, before the softmax.
    Energy : Log-sum-exp of the logits.
    TemperatureScaling : MaxSoftmax at a temperature fitted to the labels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import MaxSoftmax
    >>> logits = np.array([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> MaxSoftmax().fit(logits).score_samples(logits).round(3)
    array([0.965, 0.333])
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "temperature": [_POSITIVE],
    }

    def __init__(self, temperature=1.0, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.temperature = temperature

    def _score(self, X):
        return max_softmax64(X, self.temperature)


class MaxLogit(_LogitDetector):
    r"""Maximum logit.

    .. math:: s(x) = \max_k l_k(x)

    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World
    Settings", ICML 2022. pytorch-ood's ``MaxLogit`` returns the negated value.
    Raising the largest logit raises the score; the other logits do not
    count.

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
        Number of classes (logit columns), at least 2.

    See Also
    --------
    MaxSoftmax : The largest softmax probability.
    Energy : Log-sum-exp of the logits, a smooth maximum.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import MaxLogit
    >>> logits = np.array([[4.0, 0.0], [1.0, 2.0]])
    >>> MaxLogit().fit(logits).score_samples(logits)
    array([4., 2.])
    """

    def __init__(self, *, contamination=0.05):
        super().__init__(contamination=contamination)

    def _score(self, X):
        return X.max(axis=1)


class Energy(_LogitDetector):
    r"""Free energy score (negative energy) of the logits.

    .. math:: s(x) = T \log \sum_k \exp(l_k(x) / T) = -E(x; T)

    Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020.
    The paper's energy :math:`E` is low for ID data; this score is its
    negation so that higher means more in-distribution. pytorch-ood's
    ``EnergyBased`` returns :math:`E` itself. The score increases in every
    logit (:math:`\partial s / \partial l_k = \operatorname{softmax}(l /
    T)_k > 0`).

    Parameters
    ----------
    temperature : float > 0, default=1.0
        Temperature :math:`T` (the paper uses 1).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    WeightedEnergy : Energy with class weights, as used by VOS.
    MaxLogit : The largest logit, the limit of the energy as :math:`T \to 0`.
    NNGuide : Energy of the head's logits guided by the nearest fit rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Energy
    >>> logits = np.array([[0.0, 0.0], [5.0, 0.0]])
    >>> Energy().fit(logits).score_samples(logits).round(4)
    array([0.6931, 5.0067])
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "temperature": [_POSITIVE],
    }

    def __init__(self, temperature=1.0, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.temperature = temperature

    def _score(self, X):
        return self.temperature * logsumexp64(X, self.temperature)


class WeightedEnergy(_LogitDetector):
    r"""Class-weighted free energy, as used by VOS.

    .. math:: s(x) = T \log \sum_k w_k \exp(l_k(x) / T)

    Du et al., "VOS: Learning What You Don't Know by Virtual Outlier
    Synthesis", ICLR 2022, learn the non-negative weights :math:`w_k` during
    training (the ``weight_energy`` layer of their code, passed through a
    ReLU); pass those weights here. Uniform weights of one give
    :class:`Energy`. pytorch-ood's ``WeightedEBO`` returns the negated value
    at temperature 1. The score never decreases in any logit, and increases
    in every logit of positive weight.

    Parameters
    ----------
    weights : array-like of shape (n_classes,), default=None
        Non-negative class weights with a positive sum; ``None`` means all
        ones. Their length must match the number of logit columns.
    temperature : float > 0, default=1.0
        Temperature :math:`T`.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    weights_ : ndarray of shape (n_classes,)
        Validated float64 weights.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    Energy : The unweighted free energy.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import WeightedEnergy
    >>> logits = np.array([[0.0, 0.0], [5.0, 0.0]])
    >>> WeightedEnergy(weights=[1.0, 0.5]).fit(logits).score_samples(logits).round(4)
    array([0.4055, 5.0034])
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "weights": ["array-like", None],
        "temperature": [_POSITIVE],
    }

    def __init__(self, weights=None, temperature=1.0, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.weights = weights
        self.temperature = temperature

    def _fit(self, X, y):
        super()._fit(X, y)
        n_classes = X.shape[1]
        if self.weights is None:
            self.weights_ = np.ones(n_classes)
            return
        weights = np.asarray(self.weights, dtype=np.float64)
        if weights.shape != (n_classes,):
            raise ValueError(
                f"weights has shape {weights.shape} but X has {n_classes} logit "
                f"columns; expected shape ({n_classes},)."
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("weights must be finite and non-negative.")
        if not weights.sum() > 0:
            raise ValueError("weights must not all be zero.")
        self.weights_ = weights

    def _score(self, X):
        with np.errstate(divide="ignore"):
            # A row can be -inf only where weights vanish on all its mass,
            # which needs -inf logits; validation has already refused those.
            return self.temperature * logsumexp64(X, self.temperature, self.weights_)


class Entropy(_LogitDetector):
    r"""Negative Shannon entropy of the softmax.

    .. math:: s(x) = \sum_k p_k \log p_k, \qquad p = \operatorname{softmax}(l(x))

    Confident (low-entropy) predictions score high. Used as an uncertainty
    baseline in e.g. Hendrycks et al., "Deep Anomaly Detection with Outlier
    Exposure", ICLR 2019; pytorch-ood's ``Entropy`` returns :math:`-s`.
    Raising the largest logit :math:`l_m`, the others fixed, never lowers
    the score: :math:`\partial s / \partial l_m = p_m \sum_{j} p_j (\log p_m
    - \log p_j) \ge 0`. Raising another logit can lower it.

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
        Number of classes (logit columns), at least 2.

    See Also
    --------
    GEN : Generalized entropy of the largest probabilities.
    MaxSoftmax : The largest softmax probability.
    KLMatching : Divergence from the typical softmax of each class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import Entropy
    >>> logits = np.array([[0.0, 0.0], [9.0, 0.0]])
    >>> Entropy().fit(logits).score_samples(logits).round(4)
    array([-0.6931, -0.0012])
    """

    def __init__(self, *, contamination=0.05):
        super().__init__(contamination=contamination)

    def _score(self, X):
        return neg_entropy64(X)


class GEN(_LogitDetector):
    r"""Generalized entropy (GEN) score.

    .. math:: s(x) = -\sum_{j \in \text{top-}M} p_j^\gamma (1 - p_j)^\gamma,
              \qquad p = \operatorname{softmax}(l(x))

    Liu, Lochman & Zach, "GEN: Pushing the Limits of Softmax-Based
    Out-of-Distribution Detection", CVPR 2023: the sum runs over the
    :math:`M` largest probabilities. We follow the paper and *sum* over them;
    pytorch-ood 0.4.0 averages (divides by :math:`M`), which changes the
    scale but not the ranking.

    With ``top_m=None`` raising the largest logit, the others fixed, never
    lowers the score (the classes losing mass have :math:`p_j \le 1/2`,
    where each term grows with :math:`p_j`, and they outweigh the top term).
    With ``top_m`` below the number of classes it can: while the top
    probability is below 1/2 its term grows with it, and the terms of the
    classes it takes mass from may be left out of the sum (with ``top_m=1``
    the score falls as the top probability rises towards 1/2).

    Parameters
    ----------
    gamma : float in (0, 1), default=0.1
        Exponent :math:`\gamma`; the paper recommends 0.1.
    top_m : int >= 1, default=None
        Number :math:`M` of largest probabilities kept; ``None`` keeps all
        classes. The paper uses 100 on ImageNet-1k. Must not exceed the number
        of classes.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    Entropy : Negative Shannon entropy of the softmax.
    MaxSoftmax : The largest softmax probability.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import GEN
    >>> logits = np.array([[0.0, 0.0], [9.0, 0.0]])
    >>> GEN(gamma=0.5).fit(logits).score_samples(logits).round(4)
    array([-1.    , -0.0222])
    """

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "gamma": [Interval(Real, 0, 1, closed="neither")],
        "top_m": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, gamma=0.1, top_m=None, *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.gamma = gamma
        self.top_m = top_m

    def _fit(self, X, y):
        super()._fit(X, y)
        if self.top_m is not None and self.top_m > X.shape[1]:
            raise ValueError(
                f"top_m={self.top_m} exceeds the number of classes ({X.shape[1]} "
                "logit columns)."
            )

    def _score(self, X):
        p = softmax64(X)
        # 1 - p cancels catastrophically for a confident class (p -> 1), the
        # very rows GEN must rank; only the top class can exceed 1/2, and its
        # complement is the sum of the other probabilities, computed exactly.
        rows, top = np.arange(len(p)), p.argmax(axis=1)
        complement = 1.0 - p
        others = p.copy()
        others[rows, top] = 0.0
        complement[rows, top] = others.sum(axis=1)
        terms = p**self.gamma * complement**self.gamma
        if self.top_m is not None and self.top_m < p.shape[1]:
            # Terms of the M largest probabilities, in no particular order.
            keep = np.argpartition(p, p.shape[1] - self.top_m, axis=1)[:, -self.top_m :]
            terms = np.take_along_axis(terms, keep, axis=1)
        return -terms.sum(axis=1)


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

    _needs_special_model = (
        "needs a model trained with an extra background logit (BackgroundClassLoss)"
    )

    def __init__(self, *, contamination=0.05):
        super().__init__(contamination=contamination)

    def _score(self, X):
        shifted = np.asarray(X, dtype=np.float64)
        shifted = np.exp(shifted - shifted.max(axis=1, keepdims=True))
        return shifted[:, :-1].sum(axis=1) / shifted.sum(axis=1)
