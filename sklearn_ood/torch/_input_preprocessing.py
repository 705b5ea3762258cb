"""Detectors that perturb the inputs along a gradient before scoring them.

:class:`ODIN` (max softmax at a temperature) and
:class:`MahalanobisPreprocessed` (class-conditional Gaussian distance of a
layer's features) take one signed-gradient step on the *input* that makes
the model more confident, then score the perturbed input. In-distribution
inputs gain more from the step than OOD inputs, which separates them.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.detectors import Mahalanobis
from sklearn_ood.detectors._gaussian import COVARIANCE_OPTIONS
from sklearn_ood.detectors._softmax import log_softmax64
from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._feature_extraction import TorchFeatureTransformer
from sklearn_ood.torch._inputs import _call_model
from sklearn_ood.torch._layers import (
    PENULTIMATE,
    POOLINGS,
    _feature_hooks,
    _hooked_forward,
    _pool_output,
)
from sklearn_ood.torch._utils import _check_logits, _eval_mode

__all__ = ["ODIN", "MahalanobisPreprocessed"]

_POSITIVE = Interval(Real, 0, None, closed="neither")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")


class ODIN(BaseTorchModelDetector):
    r"""ODIN: max softmax at a temperature, after a confidence-raising input step.

    .. math::

        S_k(x; T) = \operatorname{softmax}\big(f(x) / T\big)_k, \qquad
        \hat y = \arg\max_k f_k(x),

        \tilde x = x - \varepsilon \, \operatorname{sign}\!\big(
                   -\nabla_x \log S_{\hat y}(x; T)\big) \oslash \sigma, \qquad
        s(x) = \max_k S_k(\tilde x; T)

    Liang, Li & Srikant, "Enhancing The Reliability of Out-of-distribution
    Image Detection in Neural Networks", ICLR 2018 (input preprocessing, as
    in the paper and the authors' code). The step goes *up* the log max
    softmax: :math:`\tilde x = x + \varepsilon \operatorname{sign}(\nabla_x
    \log S_{\hat y})`, i.e. down the cross-entropy of the predicted class
    (the authors' code subtracts the sign of the cross-entropy's gradient;
    the paper writes the same step with two minus signs), so the perturbed
    input is classified more confidently: the tests check that the max
    softmax rises. :math:`\sigma` is ``norm_std``: when the model's inputs
    were normalised per channel, :math:`x = (\text{raw} - m_c) / \sigma_c`,
    the sign of the gradient of channel :math:`c` is divided by
    :math:`\sigma_c`, so that :math:`\varepsilon` is a step in the raw
    (e.g. [0, 1] pixel) scale, as in the authors' code (which divides by
    their CIFAR normalisation's stds, e.g. 63/255). With ``norm_std=None``,
    :math:`\sigma = 1`. ``epsilon=0`` skips the backward pass and equals
    :class:`~sklearn_ood.detectors.MaxSoftmax` ``(temperature)`` on the
    model's logits.

    The inputs must be floating point, since the step is a gradient with
    respect to them: integer inputs (e.g. uint8 images) are refused with a
    ``ValueError``, never cast, because the model needs them scaled as at
    training time.

    pytorch-ood 0.4.0's ``ODIN`` takes the same step (cross-entropy to the
    predicted class, ``norm_std`` likewise) and returns :math:`-s(x)`; ours
    is its negation. The authors' code maps a zero gradient entry to
    :math:`+1` (``torch.ge``), ours and pytorch-ood's to 0
    (``torch.sign``). Everything runs in batches of ``batch_size`` (the
    authors perturb one image at a time; the result is the same because the
    model treats samples independently in eval mode).

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits ``(n_samples, n_classes)``.
        It is shared, never copied, and never modified
        apart from its placement on ``device``.
    temperature : float > 0, default=1000.0
        Temperature :math:`T`.
    epsilon : float >= 0, default=0.0014
        Step size :math:`\varepsilon` (in the raw input scale when
        ``norm_std`` is given).
    norm_std : array-like of shape (n_channels,), default=None
        Per-channel standard deviations :math:`\sigma` of the input
        normalisation; channels are dimension 1 of ``X``.
    batch_size : int, default=128
        Samples per forward/backward pass.
    device : "auto", str, torch.device or None, default="auto"
        Where the model runs: ``"auto"`` is CUDA when available, else the
        CPU; or e.g. ``"cpu"``, ``"cuda:1"``, a ``torch.device``. The model
        is moved there in place (``model.to(device)``, as ``nn.Module.to``
        does) and stays there; its weights, ``.grad`` and ``training`` flags
        are left as they were. ``None`` leaves the model where it is and
        sends the inputs to the device of its first parameter.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit samples rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    norm_std_ : ndarray of shape (n_channels,) or None
        Validated ``norm_std``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.MaxSoftmax : The same score without the input step.
    MahalanobisPreprocessed : The input step for a Mahalanobis score.
    GradNorm : Size of a gradient of the model's output.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.detectors import MaxSoftmax
    >>> from sklearn_ood.torch import ODIN, DigitsCNN, TorchFeatureTransformer
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    >>> odin = ODIN(model, temperature=10.0, epsilon=0.01, device="cpu").fit(X)
    >>> scores = odin.score_samples(X)
    >>> scores.shape, scores.dtype
    ((6,), dtype('float32'))
    >>> logits = TorchFeatureTransformer(model, device="cpu").fit_transform(X)
    >>> bool(np.all(scores >= MaxSoftmax(temperature=10.0).fit(logits)
    ...                        .score_samples(logits)))
    True
    >>> int((odin.predict(X) == -1).sum())  # contamination=0.05 of 6 fit samples
    1
    """

    _input_gradients = True
    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "temperature": [_POSITIVE],
        "epsilon": [_NON_NEGATIVE],
        "norm_std": ["array-like", None],
    }

    def __init__(
        self,
        model,
        temperature=1000.0,
        epsilon=0.0014,
        *,
        norm_std=None,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.temperature = temperature
        self.epsilon = epsilon
        self.norm_std = norm_std
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        self.norm_std_ = _check_norm_std(self.norm_std, inputs.sample_shape)

    def _score(self, inputs):
        model, device, dtype = self._placement()
        temperature = self.temperature

        def neg_log_max_softmax(x):
            logits = _check_logits(_call_model(model, x), len(x))
            return -torch.log_softmax(logits / temperature, dim=1).amax(1).sum()

        logits = []
        with _eval_mode(model):
            for xb in self._batches(inputs, device, dtype):
                if self.epsilon > 0:
                    grad = _input_gradient(neg_log_max_softmax, xb)
                    xb = _perturb(xb, grad, self.epsilon, self.norm_std_)
                with torch.no_grad():
                    out = _check_logits(_call_model(model, xb), len(xb))
                logits.append(out.double().cpu().numpy())
        # As MaxSoftmax: exp of the max log-softmax, in float64.
        return np.exp(log_softmax64(np.concatenate(logits), temperature).max(1))


class MahalanobisPreprocessed(BaseTorchModelDetector):
    r"""Mahalanobis distance of a layer's features after an input step towards a class.

    .. math::

        M(x) = \min_k \, (h(x) - \mu_k)^\top \Sigma^{-1} (h(x) - \mu_k), \qquad
        \hat k = \arg\min_k \, (h(x) - \mu_k)^\top \Sigma^{-1} (h(x) - \mu_k),

        \tilde x = x - \varepsilon \, \operatorname{sign}\!\big(\nabla_x
                   (h(x) - \mu_{\hat k})^\top \Sigma^{-1}
                   (h(x) - \mu_{\hat k})\big) \oslash \sigma, \qquad
        s(x) = -M(\tilde x)

    Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", NeurIPS 2018 (input pre-processing, as
    in their code): :math:`h(x)` is the (pooled) output of ``layer``, extracted by a
    :class:`~sklearn_ood.torch.TorchFeatureTransformer`, and the class means
    :math:`\mu_k` and tied covariance :math:`\Sigma` are those of a
    :class:`~sklearn_ood.detectors.Mahalanobis` detector fitted on the
    features of the ID fit samples (same estimator, ``covariance_estimator``
    and ``reg_covar`` options, singular fallback and score). The input step decreases
    the distance to the closest class mean :math:`\mu_{\hat k}` (fixed
    before the step), i.e. increases the confidence score; ``epsilon=0``
    skips the backward pass and equals
    ``Pipeline([TorchFeatureTransformer(model, layer), Mahalanobis()])``.
    :math:`\sigma` is ``norm_std``, and integer inputs are refused, as in
    :class:`ODIN`. Lee et al. also combine several layers with a logistic
    regression trained on OOD validation data; that ensemble is not part of
    this detector (a list of layers here means one Gaussian on their
    concatenated features).

    pytorch-ood 0.4.0's ``MahalanobisODIN`` takes the same step but inverts
    the undivided scatter :math:`N\Sigma + 10^{-6} I` and returns half the
    minimum distance, so its outlier score is about :math:`M(\tilde x) /
    (2N)`: ours is :math:`-2N` times it (same ranking, up to its ridge).
    Its default ``eps`` is 0.002, ours 0.0014 (the paper tunes it on
    validation data from {0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01}).

    Parameters
    ----------
    model : torch.nn.Module
        Trained model. It is shared, never copied, and never modified apart
        from its placement on ``device``.
    layer : str or list of str, default="penultimate"
        Features :math:`h(x)`, as in
        :class:`~sklearn_ood.torch.TorchFeatureTransformer` (e.g.
        ``"penultimate"``, the input of the last ``nn.Linear``, or a
        submodule name).
    epsilon : float >= 0, default=0.0014
        Step size :math:`\varepsilon` (in the raw input scale when
        ``norm_std`` is given).
    covariance_estimator : {"empirical", "ledoit_wolf", "oas"}, default="empirical"
        How the covariance is estimated, as in
        :class:`~sklearn_ood.detectors.Mahalanobis`.
    reg_covar : float >= 0, default=0.0
        Regularisation added to the diagonal of the covariance, as in
        :class:`~sklearn_ood.detectors.Mahalanobis`.
    norm_std : array-like of shape (n_channels,), default=None
        Per-channel standard deviations :math:`\sigma` of the input
        normalisation (see :class:`ODIN`).
    pooling : {"avg", "max", "flatten"} or callable, default="avg"
        How a layer output with spatial dimensions becomes one row (see
        :class:`~sklearn_ood.torch.TorchFeatureTransformer`); Lee et al.
        average over the spatial dimensions.
    batch_size : int, default=128
        Samples per forward/backward pass.
    device : "auto", str, torch.device or None, default="auto"
        Where the model runs: ``"auto"`` is CUDA when available, else the
        CPU; or e.g. ``"cpu"``, ``"cuda:1"``, a ``torch.device``. The model
        is moved there in place (``model.to(device)``, as ``nn.Module.to``
        does) and stays there; its weights, ``.grad`` and ``training`` flags
        are left as they were. ``None`` leaves the model where it is and
        sends the inputs to the device of its first parameter.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit samples rejected by ``predict``.
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    feature_transformer_ : TorchFeatureTransformer
        The fitted feature extractor (sharing ``model``).
    mahalanobis_ : Mahalanobis
        The Gaussian fit on the features of the ID fit samples.
    classes_ : ndarray of shape (n_classes,)
        Class labels (``[0]`` when fitted without ``y``).
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    norm_std_ : ndarray of shape (n_channels,) or None
        Validated ``norm_std``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.Mahalanobis : The same score without the input step.
    ODIN : The input step for the max softmax.
    TorchFeatureTransformer : The layer features, for any detector.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_ood.detectors import Mahalanobis
    >>> from sklearn_ood.torch import (DigitsCNN, MahalanobisPreprocessed,
    ...                                TorchFeatureTransformer)
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=2, width=2).eval()
    >>> X = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    >>> y = np.repeat([0, 1], 20)
    >>> det = MahalanobisPreprocessed(model, epsilon=0.01, device="cpu").fit(X, y)
    >>> det.mahalanobis_.means_.shape
    (2, 8)
    >>> pipe = make_pipeline(TorchFeatureTransformer(model, "penultimate",
    ...                                              device="cpu"),
    ...                      Mahalanobis()).fit(X, y)
    >>> bool(np.all(det.score_samples(X) >= pipe.score_samples(X) - 1e-4))
    True
    >>> np.array_equal(det.set_params(epsilon=0).score_samples(X),
    ...                pipe.score_samples(X))
    True
    """

    _input_gradients = True
    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "layer": [str, list, tuple],
        "epsilon": [_NON_NEGATIVE],
        "covariance_estimator": [StrOptions(COVARIANCE_OPTIONS)],
        "reg_covar": [_NON_NEGATIVE],
        "norm_std": ["array-like", None],
        "pooling": [StrOptions(set(POOLINGS)), callable],
    }

    def __init__(
        self,
        model,
        layer=PENULTIMATE,
        epsilon=0.0014,
        *,
        covariance_estimator="empirical",
        reg_covar=0.0,
        norm_std=None,
        pooling="avg",
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.layer = layer
        self.epsilon = epsilon
        self.covariance_estimator = covariance_estimator
        self.reg_covar = reg_covar
        self.norm_std = norm_std
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        self.norm_std_ = _check_norm_std(self.norm_std, inputs.sample_shape)

    def _fit(self, inputs, y):
        transformer = TorchFeatureTransformer(
            self.model,
            self.layer,
            pooling=self.pooling,
            batch_size=self.batch_size,
            device=self.device,
        )
        features = transformer.fit_transform(inputs.data)
        self.feature_transformer_ = transformer
        self.mahalanobis_ = Mahalanobis(
            covariance_estimator=self.covariance_estimator,
            reg_covar=self.reg_covar,
            contamination=None,  # the threshold is ours, on the perturbed scores
        ).fit(features, y)
        self.classes_ = self.mahalanobis_.classes_
        # The fitted Gaussian in torch, for the gradient: whitened rows
        # z = (h - c) W and whitened means m_k = (mu_k - c) W, so that the
        # squared distance is ||z - m_k||^2 exactly as in the NumPy helper.
        tied = self.mahalanobis_._tied
        W = torch.as_tensor(np.asarray(tied.W), dtype=torch.float64)
        center = torch.as_tensor(tied.center, dtype=torch.float64)
        means = torch.as_tensor(tied.means, dtype=torch.float64)
        self._whitening = (center, W, (means - center) @ W)

    def _score(self, inputs):
        transformer = self.feature_transformer_
        if self.epsilon == 0:
            features = transformer.transform(inputs.data)
        else:
            features = np.concatenate(list(self._perturbed_features(inputs)))
        return self.mahalanobis_.score_samples(features).astype(np.float64)

    def _perturbed_features(self, inputs):
        transformer = self.feature_transformer_
        layers, pooling = transformer.layers_, transformer.pooling
        model, device, dtype = self._placement()
        center, W, M = (t.to(device) for t in self._whitening)

        def closest_sq_distance(x):
            values = _hooked_forward(model, x, layers, hooks)
            h = torch.cat(
                [_pool_output(v, b, len(x), pooling) for b, v in values.items()], 1
            )
            z = (h.to(torch.float64) - center) @ W
            with torch.no_grad():
                sq = (z * z).sum(1, keepdim=True) - 2 * z @ M.T + (M * M).sum(1)
                k = sq.argmin(1)
            return ((z - M[k]) ** 2).sum()

        for xb in self._batches(inputs, device, dtype):
            # The hooks are removed before ``transform`` registers its own.
            with _feature_hooks(model, layers, stop_early=True) as hooks:
                with _eval_mode(model):
                    grad = _input_gradient(closest_sq_distance, xb)
            yield transformer.transform(
                _perturb(xb, grad, self.epsilon, self.norm_std_)
            )


# --------------------------------------------------------------- gradients
def _input_gradient(loss_fn, xb):
    """``d loss_fn(x) / dx`` at ``xb``, leaving no ``.grad`` on any tensor.

    Works inside ``torch.no_grad`` or ``torch.inference_mode`` too. The loss
    is a sum of per-sample terms, so the gradient is per sample as long as
    the model treats samples independently (true in eval mode).
    """
    with torch.inference_mode(False), torch.enable_grad():
        x = xb.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x), x)
    return grad


def _perturb(xb, grad, epsilon, norm_std):
    """``x - epsilon * sign(grad) / std`` (``std`` per channel, dim 1)."""
    step = grad.sign()
    if norm_std is not None:
        std = torch.as_tensor(norm_std, dtype=step.dtype, device=step.device)
        step = step / std.view(1, -1, *([1] * (step.ndim - 2)))
    return (xb - epsilon * step).detach()


def _check_norm_std(norm_std, sample_shape):
    """``norm_std`` as a float64 array with one positive std per channel."""
    if norm_std is None:
        return None
    std = np.asarray(norm_std, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise ValueError(f"norm_std must hold positive finite stds; got {norm_std}.")
    if std.size != sample_shape[0]:
        raise ValueError(
            f"norm_std has {std.size} value(s), but the inputs have "
            f"{sample_shape[0]} channel(s) (dimension 1 of X, shape "
            f"{(None, *sample_shape)})."
        )
    return std
