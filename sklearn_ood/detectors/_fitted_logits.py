"""Logit-space detectors that learn something from the fit logits.

Each takes logits of shape ``(n_samples, n_classes)``. In logit space a class
label *is* the index of its logit column, so labels must lie in
``0 .. n_classes - 1`` (they need not all occur: ``{3, 7, 12}`` with 13 logit
columns is fine). :class:`~sklearn_ood.detectors.OpenMax` lives in
``_openmax.py``.
"""

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import StrOptions

from sklearn_ood.base import BaseDetector, PartialFitMixin
from sklearn_ood.detectors._softmax import log_softmax64, shifted_exp64, softmax64
from sklearn_ood.utils._grouping import group_sums
from sklearn_ood.utils._validation import check_logit_labels, check_n_classes
from sklearn_ood.utils._warnings import warn

__all__ = ["KLMatching", "TemperatureScaling"]

# Search interval of the fitted temperature (optima reported for real networks
# lie between about 1 and 3); an optimum outside it gives its edge and a
# ConvergenceWarning.
_T_BOUNDS = (1e-3, 1e3)

# Probabilities of a typical posterior are clipped at this value before the
# logarithm, so that log(0) never occurs (log(tiny) is about -708.4).
_EPS = np.finfo(np.float64).tiny
# Rows per block of KLMatching scores: the float64 temporaries of 1,024
# rows of 100 classes (0.8 MiB each) stay in cache.
_BLOCK_ROWS = 1024


def _nll_slope(X, true_logit, beta):
    """First and second derivative of the mean NLL in beta = 1 / T.

    ``NLL'(beta) = mean_i(E_p[l_i] - l_{i, y_i})`` and
    ``NLL''(beta) = mean_i Var_p[l_i]`` with ``p = softmax(beta l_i)``.
    """
    p = X * beta
    p -= p.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    mean = np.einsum("ij,ij->i", p, X)
    centred = X - mean[:, np.newaxis]
    var = np.einsum("ij,ij,ij->i", p, centred, centred)
    return np.mean(mean - true_logit), np.mean(var)


def _root_of_slope(X, true_logit, lo, hi, rtol=1e-13, max_iter=200):
    """Root of the increasing ``NLL'(beta)`` with ``NLL'(lo) < 0 < NLL'(hi)``.

    Safeguarded Newton steps inside the shrinking bracket ``[lo, hi]``: a
    step that would leave the bracket, or that is not at least twice as short
    (in log space) as the step before it, is replaced by a bisection in log
    space. Newton alone crawls where the slope decays exponentially (a fit
    label tied with the largest logit); the bisections bound the work at
    about 50 iterations. Typically 5 to 8.
    """
    beta = min(max(1.0, lo), hi)
    last_log_step = np.log(hi / lo)
    for _ in range(max_iter):
        slope, curvature = _nll_slope(X, true_logit, beta)
        if slope == 0:
            return beta
        if slope > 0:
            hi = beta
        else:
            lo = beta
        step = beta - slope / curvature if curvature > 0 else np.nan
        if not lo < step < hi or abs(np.log(step / beta)) > 0.5 * last_log_step:
            step = np.sqrt(lo * hi)
        last_log_step = abs(np.log(step / beta))
        if abs(step - beta) <= rtol * beta or hi - lo <= rtol * beta:
            return float(step)
        beta = step
    return float(np.sqrt(lo * hi))  # pragma: no cover - the bracket holds the root


class TemperatureScaling(BaseDetector):
    r"""Maximum softmax probability after fitting the softmax temperature.

    .. math::

        T^\star = \operatorname*{arg\,min}_{T > 0} \; -\frac{1}{n}
                  \sum_{i=1}^n \log \operatorname{softmax}(l(x_i) / T)_{y_i},
        \qquad
        s(x) = \max_k \operatorname{softmax}(l(x) / T^\star)_k

    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017: the
    temperature minimises the mean negative log-likelihood (NLL) of the ID
    labels; the score is then the MSP (:class:`MaxSoftmax`) at that
    temperature. The NLL is convex in :math:`\beta = 1 / T`, with the
    increasing derivative :math:`\frac{1}{n} \sum_i \big(\mathbb{E}_{
    \operatorname{softmax}(\beta l(x_i))}[l(x_i)] - l_{y_i}(x_i)\big)`;
    :math:`T^\star` is its root, found in float64 by Newton steps safeguarded
    by bisection over :math:`\beta \in [10^{-3}, 10^{3}]` (so
    :math:`T \in [10^{-3}, 10^{3}]`) to a relative precision of about
    :math:`10^{-13}`. Without a root in that interval the edge the NLL falls
    towards is kept and a ``ConvergenceWarning`` is emitted: :math:`T =
    10^{-3}` when every fit label is the largest logit of its row (the NLL
    keeps falling as :math:`T \to 0`), :math:`T = 10^{3}` when the labels are
    unrelated to the logits (it keeps falling as :math:`T \to \infty`).

    Differences from pytorch-ood 0.4.0 ``TemperatureScaling``: it runs 50
    L-BFGS iterations (step size 0.01) on a float32 parameter :math:`T`
    started at 1, which can stop far from the optimum and nothing keeps
    positive, and returns the negated MSP (an outlier score); here the
    optimum over :math:`T > 0` is found to float64 precision and the score
    is the MSP itself.

    Parameters
    ----------
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    temperature_ : float
        Fitted temperature :math:`T^\star`.
    classes_ : ndarray of shape (n_labels,)
        ID labels seen in ``fit`` (each one the index of a logit column).
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    MaxSoftmax : The same score at a temperature given by hand.
    KLMatching : Divergence from the typical softmax of each class.
    OpenMax : Logits recalibrated by per-class Weibull models.

    Notes
    -----
    ``fit`` requires labels ``y``; a label must be the index of its logit
    column (``0 <= y < n_classes``), and rows with ``y < 0`` are ignored.
    It refuses a single logit column (a binary classifier's
    ``decision_function``); the error message shows how to build two.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import TemperatureScaling
    >>> logits = np.array([[4.0, 0.0], [3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    >>> det = TemperatureScaling().fit(logits, [0, 1, 1, 0])
    >>> round(det.temperature_, 3)
    3.476
    >>> det.score_samples(logits).round(3)
    array([0.76 , 0.703, 0.64 , 0.571])
    """

    _input_kind = "logits"
    _family = "fitted-logits"
    _needs_special_model = (
        "calibrates the temperature on held-out labelled data; on the training "
        "rows, which the model classifies perfectly, T runs to its lower bound"
    )

    _requires_labels = True
    _class_aware = True

    def __init__(self, *, contamination=0.05):
        super().__init__(contamination=contamination)

    def _fit(self, X, y):
        name = type(self).__name__
        check_n_classes(X, name)
        check_logit_labels(y, X.shape[1], name)
        X = np.asarray(X, dtype=np.float64)
        true_logit = X[np.arange(X.shape[0]), y]
        beta_lo, beta_hi = 1.0 / _T_BOUNDS[1], 1.0 / _T_BOUNDS[0]
        if (
            np.all(true_logit >= X.max(axis=1))
            or _nll_slope(X, true_logit, beta_hi)[0] <= 0
        ):
            beta, edge = beta_hi, "every fit label is the largest logit of its row"
        elif _nll_slope(X, true_logit, beta_lo)[0] >= 0:
            beta, edge = beta_lo, "the fit labels are unrelated to the logits"
        else:
            beta, edge = _root_of_slope(X, true_logit, beta_lo, beta_hi), None
        if edge is not None:
            warn(
                f"The NLL of the fit labels has no minimum for T in {_T_BOUNDS} "
                f"({edge}); temperature_ is set to the edge T = {1.0 / beta:g}.",
                ConvergenceWarning,
            )
        self.temperature_ = float(1.0 / beta)

    def _score(self, X):
        # max softmax = exp(max log-softmax): exact and free of overflow.
        return np.exp(log_softmax64(X, self.temperature_).max(axis=1))


class KLMatching(PartialFitMixin, BaseDetector):
    r"""Negative KL divergence of the softmax to the typical class posteriors.

    .. math::

        d_k = \frac{1}{|I_k|} \sum_{i \in I_k} p(x_i), \qquad
        \mathrm{KL}(p \,\|\, d_k) = \sum_j p_j \log \frac{p_j}{d_{kj}},
        \qquad p(x) = \operatorname{softmax}(l(x))

    .. math::

        s_{\text{min}}(x) = -\min_{k} \mathrm{KL}(p(x) \,\|\, d_k), \qquad
        s_{\text{predicted}}(x) = -\mathrm{KL}(p(x) \,\|\, d_{\hat k(x)}),
        \quad \hat k(x) = \operatorname*{arg\,max}_j l_j(x)

    Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World
    Settings", ICML 2022. :math:`I_k` are the fit rows of class :math:`k`:
    the rows *labelled* :math:`k` when ``y`` is given, otherwise the rows the
    model *predicts* as :math:`k` (:math:`\arg\max_j l_j = k`, the paper's
    label-free recipe). Only classes with at least one such row get a
    template :math:`d_k` (``classes_``), and :math:`k` runs over those.
    The divergence is taken from the input's posterior :math:`p(x)` to the
    template, :math:`\mathrm{KL}(p(x) \,\|\, d_k)`; template probabilities
    are clipped below at the smallest positive float64
    (:math:`\approx 2.2 \cdot 10^{-308}`) before the logarithm, and
    :math:`0 \log 0 = 0`.

    ``match="min"`` is the paper's score. ``match="predicted"`` compares with
    the template of the predicted class only; a row whose predicted class has
    no template falls back to the ``"min"`` score.

    Differences from pytorch-ood 0.4.0 ``KLMatching``: it returns
    :math:`\min_k \mathrm{KL}` (our ``match="min"``, negated) and always
    groups the fit rows by predicted class, using labels only to drop OOD
    rows; here labels, when given, define the classes. It has no
    ``"predicted"`` mode.

    The fit keeps per-class sums and counts of the posteriors, so
    ``partial_fit`` streams batches of logits and gives the same templates as
    one ``fit``.

    Scores are computed in float64 from :math:`z = l - \max_j l_j` and
    :math:`e = \exp(z)`. For float32 logits, :math:`z` and :math:`e` are
    computed in float32 (NumPy's float32 ``exp`` is accurate to a few units
    in the last place) and the sums in float64; to first order in
    :math:`2^{-24}` each score is then within
    :math:`2^{-21} \big(1 + \max_k \sum_j p_j (1 + |z_j|)
    \lvert \log (p_j / d_{kj}) - \mathrm{KL}(p \,\|\, d_k) \rvert\big)`
    of the float64 score, before its rounding to float32 (the perturbation
    of the logits by the float32 rounding, through the gradient of the
    divergence).

    Parameters
    ----------
    match : {"min", "predicted"}, default="min"
        Which template(s) a row is compared with (see above).
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit rows rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    classes_ : ndarray of shape (n_templates,)
        Classes (logit columns) that have a template, sorted.
    posterior_sums_ : ndarray of shape (n_templates, n_classes)
        Sum of the float64 softmax vectors of each class's fit rows.
    class_counts_ : ndarray of shape (n_templates,)
        Number of fit rows of each class.
    templates_ : ndarray of shape (n_templates, n_classes)
        Typical posteriors :math:`d_k`, ``posterior_sums_ / class_counts_``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of classes (logit columns), at least 2.

    See Also
    --------
    Entropy : Divergence from the uniform posterior, without fitting.
    TemperatureScaling : MaxSoftmax at a temperature fitted to the labels.
    OpenMax : Logits recalibrated by per-class Weibull models.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ood.detectors import KLMatching
    >>> logits = np.array([[3.0, 0.0], [5.0, 0.0], [0.0, 4.0], [0.0, 2.0], [1.0, 1.0]])
    >>> det = KLMatching().fit(logits)  # templates of the predicted classes
    >>> det.classes_
    array([0, 1])
    >>> det.score_samples(logits).round(4)
    array([-0.0838, -0.174 , -0.0279, -0.0167, -0.2535])
    >>> det = KLMatching().fit(logits, [0, 0, 1, 1, 1])  # templates of the labels
    >>> det.score_samples(logits).round(4)
    array([-0.0065, -0.0112, -0.1722, -0.0296, -0.2009])
    """

    _input_kind = "logits"
    _family = "fitted-logits"

    _parameter_constraints = {
        **BaseDetector._parameter_constraints,
        "match": [StrOptions({"min", "predicted"})],
    }

    _class_aware = True
    _summed_stats = ("_column_sums", "_column_counts")

    def __init__(self, match="min", *, contamination=0.05):
        super().__init__(contamination=contamination)
        self.match = match

    def _reset_stats(self, X, y):
        check_n_classes(X, type(self).__name__)
        n_classes = X.shape[1]
        # Accumulators indexed by logit column; classes without rows stay 0.
        self._column_sums = np.zeros((n_classes, n_classes))
        self._column_counts = np.zeros(n_classes, dtype=np.int64)

    def _update_stats(self, X, y):
        check_logit_labels(y, X.shape[1], type(self).__name__)
        if len(X) == 0:
            return
        groups = np.argmax(X, axis=1) if y is None else y
        classes, sums, counts = group_sums(softmax64(X), groups)
        # Copies, not in-place updates, so that a refused chunk is undone.
        self._column_sums = self._column_sums.copy()
        self._column_counts = self._column_counts.copy()
        self._column_sums[classes] += sums
        self._column_counts[classes] += counts

    def _finalize_stats(self):
        self.classes_ = np.flatnonzero(self._column_counts)
        self.posterior_sums_ = self._column_sums[self.classes_]
        self.class_counts_ = self._column_counts[self.classes_]
        self.templates_ = self.posterior_sums_ / self.class_counts_[:, np.newaxis]

    def _score(self, X):
        # KL(p || d_k) = sum_j p_j log p_j - sum_j p_j log d_kj. With the
        # shifted logits z = l - max(l), e = exp(z), s = sum(e), p = e / s:
        #     KL_k = (sum_j e_j z_j + e @ (-log d_k)) / s - log s,
        # one exp per entry and one product with the templates, in float64
        # (the divergence is a small difference of larger terms). Blocks of
        # rows keep the work in cache. e_j z_j is 0 where e_j underflows.
        neg_log_d = -np.log(np.maximum(self.templates_, _EPS)).T
        if self.match == "predicted":
            template_of = np.full(X.shape[1], -1)
            template_of[self.classes_] = np.arange(self.classes_.size)
        scores = np.empty(X.shape[0])
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            z, e = shifted_exp64(X[rows])
            s = e.sum(axis=1)
            neg_entropy_s = np.einsum("ij,ij->i", e, z)
            cross = e @ neg_log_d
            # Dividing by s > 0 keeps the order: the min is taken before it.
            best = cross.min(axis=1)
            if self.match == "predicted":
                idx = template_of[np.argmax(X[rows], axis=1)]
                has = np.flatnonzero(idx >= 0)
                best[has] = cross[has, idx[has]]
            scores[rows] = np.log(s) - (neg_entropy_s + best) / s
        return scores
