"""Monte-Carlo dropout: the softmax averaged over stochastic forward passes."""

import contextlib
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch.nn.modules.dropout import _DropoutNd

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._inputs import _call_model
from sklearn_ood.torch._utils import _check_logits

__all__ = ["MCDropout"]

_SEED_BOUND = np.iinfo(np.int32).max


class MCDropout(BaseTorchModelDetector):
    r"""Monte-Carlo dropout: confidence of the softmax averaged over dropout masks.

    .. math::

        p^{(s)}(x) = \operatorname{softmax}\big(f_s(x)\big), \quad
        \bar p(x) = \frac{1}{S} \sum_{s=1}^{S} p^{(s)}(x),

        s_\text{mean}(x) = \max_k \bar p_k(x), \qquad
        s_\text{var}(x) = -\frac{1}{K} \sum_{k=1}^{K} \frac{1}{S - 1}
                          \sum_{s=1}^{S} \big(p^{(s)}_k(x) - \bar p_k(x)\big)^2

    Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing
    Model Uncertainty in Deep Learning", ICML 2016: :math:`f_s` is the model
    with the dropout modules in training mode (a fresh mask per pass) and
    everything else, batch norm included, in eval mode. ``mode="mean"``
    scores the predictive distribution's max probability; ``mode="var"``
    minus the per-class variance of the :math:`S` softmax vectors (unbiased,
    :math:`S - 1`) averaged over the :math:`K` classes, the uncertainty of
    Kendall et al.'s Bayesian SegNet (arXiv:1511.02680).

    Only ``torch.nn`` dropout *modules* are switched on (``nn.Dropout``,
    ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``: the
    subclasses of ``torch.nn.modules.dropout._DropoutNd``); functional
    dropout in a model's ``forward`` (``F.dropout(x, training=...)``) follows
    whatever flag the model passes. A model without such a module with
    ``p > 0`` makes every pass identical, so ``fit`` and ``score_samples``
    raise a ``ValueError``. Every ``training`` flag is restored afterwards.

    **Randomness.** Each ``score_samples`` call (and ``fit``, for
    ``offset_``) runs inside ``torch.random.fork_rng``, seeded from
    ``random_state``: with an int, repeated calls give the same scores and
    the global torch RNG state is left as it was. The masks are drawn batch
    by batch (for each batch, :math:`S` passes), so a sample's score
    depends on ``batch_size`` and on the other samples of its batch: the
    estimator is tagged ``non_deterministic``.

    pytorch-ood 0.4.0's ``MCD`` (default ``mode="var"``) returns
    :math:`-s_\text{mean}` or :math:`-s_\text{var}` (the same variance,
    mean over classes with Bessel's correction): ours is its negation. It
    puts the whole model in training mode except batch norm (other
    mode-dependent modules change too), leaves a model that is already in
    training mode as it is (batch norm statistics then update), and draws
    from the global RNG.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits, with at least one dropout
        module with ``p > 0``. It is shared, never copied, and never
        modified apart from its placement on ``device``.
    n_samples : int >= 1, default=30
        Number :math:`S` of stochastic forward passes (at least 2 for
        ``mode="var"``).
    mode : {"mean", "var"}, default="mean"
        Score: max mean softmax, or minus the mean per-class variance.
    random_state : int, RandomState instance or None, default=None
        Seed of the dropout masks (see *Randomness*). ``None`` and a
        ``RandomState`` draw a new seed from NumPy at every call.
    batch_size : int, default=128
        Samples per forward pass.
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
    dropout_modules_ : list of str
        Names of the dropout modules switched on.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.MaxSoftmax : One deterministic forward pass.
    ODIN : Max softmax after an input step.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, MCDropout
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2, dropout=0.5).eval()
    >>> X = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    >>> mcd = MCDropout(model, n_samples=10, random_state=0, device="cpu").fit(X)
    >>> mcd.dropout_modules_
    ['dropout']
    >>> scores = mcd.score_samples(X)
    >>> bool(np.all((scores > 1 / 3) & (scores <= 1)))
    True
    >>> np.array_equal(scores, mcd.score_samples(X))  # seeded: reproducible
    True
    >>> model.training  # flags restored
    False
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "mode": [StrOptions({"mean", "var"})],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        model,
        n_samples=30,
        mode="mean",
        *,
        random_state=None,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.n_samples = n_samples
        self.mode = mode
        self.random_state = random_state
        self.batch_size = batch_size
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags

    def _check_params(self, inputs):
        if self.mode == "var" and self.n_samples < 2:
            raise ValueError(
                "mode='var' needs n_samples >= 2 to estimate a variance; got "
                f"n_samples={self.n_samples}."
            )
        self.dropout_modules_ = list(_dropout_modules(self.model))

    def _score(self, inputs):
        model, device, dtype = self._placement()
        dropouts = _dropout_modules(model)
        if isinstance(self.random_state, Integral):
            seed = int(self.random_state)
        else:
            seed = int(check_random_state(self.random_state).randint(_SEED_BOUND))
        on_cuda = device is not None and device.type == "cuda"
        scores = []
        with (
            torch.random.fork_rng(devices=[device] if on_cuda else []),
            _dropout_mode(model, dropouts.values()),
            torch.no_grad(),
        ):
            # Seed only the generators that fork_rng restores.
            torch.random.default_generator.manual_seed(seed)
            if on_cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            for xb in self._batches(inputs, device, dtype):
                mean, m2 = None, None
                # Welford's running mean and sum of squared deviations, float64.
                for s in range(1, self.n_samples + 1):
                    logits = _check_logits(_call_model(model, xb), len(xb))
                    p = torch.softmax(logits.to(torch.float64), dim=1)
                    if mean is None:
                        mean, m2 = p, torch.zeros_like(p)
                        continue
                    delta = p - mean
                    mean = mean + delta / s
                    m2 = m2 + delta * (p - mean)
                if self.mode == "mean":
                    scores.append(mean.amax(1).cpu().numpy())
                else:
                    var = m2 / (self.n_samples - 1)
                    scores.append(-var.mean(1).cpu().numpy())
        return np.concatenate(scores)


def _dropout_modules(model):
    """The dropout modules with ``p > 0``, by name; a ValueError if none."""
    found = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, _DropoutNd) and module.p > 0
    }
    if not found:
        raise ValueError(
            f"MCDropout needs dropout: {type(model).__name__} has no torch.nn "
            "dropout module (nn.Dropout, Dropout1d/2d/3d, AlphaDropout, "
            "FeatureAlphaDropout) with p > 0, so every forward pass would be "
            "the same. Functional dropout (F.dropout) is not switched on."
        )
    return found


@contextlib.contextmanager
def _dropout_mode(model, dropouts):
    """Eval mode except the dropout modules; every flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    for module in dropouts:
        module.train()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
