"""NAC: how well ID data covers the states of a sample's neurons."""

from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import expit
from sklearn.utils._param_validation import Interval, StrOptions

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._inputs import _call_model
from sklearn_ood.torch._layers import _layer_names, _resolve_layers
from sklearn_ood.torch._utils import _check_logits, _eval_mode

__all__ = ["NAC"]

# The bin edges of the authors' code are log_base(x) for x evenly spaced in
# [1, sqrt(base)], mirrored around 1/2.
_EDGE_BASE = 1000.0


class NAC(BaseTorchModelDetector):
    r"""Neuron activation coverage (NAC-UE): how often ID data put each neuron there.

    .. math::

        \hat z_{l,n}(x) = \sigma\Big(\alpha_l \, z_{l,n}(x) \,
            \frac{\partial D_\text{KL}\big(u \,\|\, \operatorname{softmax}(f(x))
            \big)}{\partial z_{l,n}(x)}\Big), \qquad
        \Phi_{l,n}(b) = \min\Big(\frac{c_{l,n}(b)}{r_l}, 1\Big),

        s(x) = \frac{1}{L} \sum_{l=1}^{L} \frac{1}{N_l} \sum_{n=1}^{N_l}
               \Phi_{l,n}\big(\operatorname{bin}_l(\hat z_{l,n}(x))\big)

    Liu, Lou, Wang, Xiang & Chen, "Neuron Activation Coverage: Rethinking
    Out-of-distribution Detection and Generalization", ICLR 2024 (NAC-UE).
    :math:`z_{l,n}` is neuron :math:`n` of layer :math:`l` (``layers``),
    :math:`u` the uniform distribution over the :math:`K` classes and
    :math:`\sigma` the logistic sigmoid of steepness :math:`\alpha_l`
    (``steepness``). The gradient is taken by autograd through the rest of
    the model, for all samples of a batch at once (the model must treat
    samples independently: eval mode). ``fit`` counts, for every neuron, how
    many ID fit samples put :math:`\hat z` in each bin: :math:`c_{l,n}(b)`;
    a bin counted :math:`r_l` times (``min_count``) or more is fully covered.
    The score is the coverage of the sample's own bins, averaged over the
    neurons of a layer, then over the layers: between 0 and 1, higher is
    more in-distribution.

    As in the authors' code (the OpenOOD v1.5 postprocessor):

    * a layer output of shape ``(N, C, ...)`` has ``C`` neurons: both
      :math:`z` and its gradient are *summed* over the positions (dimensions
      after ``C``) before they are multiplied;
    * the :math:`M` thresholds (``n_bins``, even) are :math:`e_j =
      \log_{1000} x_j` for :math:`M/2` values :math:`x_j` evenly spaced in
      :math:`[1, \sqrt{1000}]`, and their mirror images :math:`1 - e_j`,
      which gives :math:`M - 2` bins over :math:`[0, 1]`, narrowest around
      1/2 (the authors' code keeps one more interval, above 1, that no
      state reaches);
    * the derivative is that of the cross-entropy to :math:`u`, the KL up to
      a constant, with temperature 1.

    **Steepness.** Each layer has its own :math:`\alpha_l, M_l, r_l` (a
    scalar sets all layers). The scale of :math:`z \, \partial D_\text{KL}
    / \partial z` differs by orders of magnitude between layers and models,
    so the paper searches :math:`\alpha_l` per layer on validation data:
    OpenOOD's CIFAR-10 ResNet-18 uses 100 for ``avgpool``, 1000 for
    ``layer3`` and 0.001 for ``layer1`` and ``layer2`` (with :math:`M = 50`
    and :math:`r = 50` for ``avgpool``, the defaults of ``n_bins`` and
    ``min_count``). ``steepness="auto"`` (ours, not the paper's) sets
    :math:`\alpha_l = 1 / \operatorname{sd}_l`, the inverse standard
    deviation of the layer's products over its neurons and the ID fit
    samples (one more pass over them), so that the ID states spread over the
    bins around 1/2; a fixed value such as 100 can leave the states of
    another model saturated at 0 or 1, where the coverage says little.

    OpenOOD fits on 1,000 class-balanced training images; here every ID fit
    sample is counted. The fit samples themselves are scored without their
    own count (:math:`c - 1` in their bins) for ``offset_``, so that the
    threshold is honest.

    pytorch-ood 0.4.0's ``NACUE`` (marked AI-coded; fixed default
    :math:`\alpha = 100`, :math:`M = 50`, :math:`r = 50`) differs: it multiplies
    :math:`z` by its gradient *before* the spatial mean, uses its own
    geometric bins (:math:`M` bins, narrowest near 0 and 1), *sums* the
    layers' coverages and returns :math:`-\sum_l`, i.e. :math:`-L` times
    our score with its pooling and bins. On 2-D layer outputs and with its
    binning replaced by ours, ours is exactly its negation divided by
    :math:`L`.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits. It is shared, never copied,
        and never modified apart from its placement on ``device``.
    layers : str or list of str
        Layers whose neurons are covered: submodule names from
        ``model.named_modules()`` (their output), ``"penultimate"`` (the
        input of the last ``nn.Linear``) or ``"logits"``, as in
        :class:`~sklearn_ood.torch.TorchFeatureTransformer`. Each must run
        once per forward pass and return ``(N, C, ...)``.
    n_bins : int or sequence of int, default=50
        Number :math:`M` of thresholds (even, at least 4; :math:`M - 2`
        bins), for all layers or one per layer.
    steepness : "auto", float or sequence of float, default="auto"
        Sigmoid steepness :math:`\alpha > 0`, for all layers or one per
        layer; ``"auto"``: :math:`1 / \operatorname{sd}_l` (see
        *Steepness*).
    min_count : int or sequence of int, default=50
        Count :math:`r \ge 1` (the authors' :math:`O`) from which a bin is
        fully covered, for all layers or one per layer.
    batch_size : int, default=128
        Samples per forward and backward pass.
    device : "auto", str, torch.device or None, default="auto"
        Where the model runs: ``"auto"`` is CUDA when available, else the
        CPU; or e.g. ``"cpu"``, ``"cuda:1"``, a ``torch.device``. The model
        is moved there in place (``model.to(device)``, as ``nn.Module.to``
        does) and stays there; its weights, ``.grad`` and ``training`` flags
        are left as they were. ``None`` leaves the model where it is and
        sends the inputs to the device of its first parameter.
    contamination : float in (0, 0.5] or None, default=0.05
        Fraction of the ID fit samples rejected by ``predict`` (from their
        scores without their own counts).
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    layer_sizes_ : OrderedDict of str -> int
        Number of neurons :math:`N_l` of each layer.
    bin_edges_ : list of ndarray
        The :math:`M_l - 1` bin edges of each layer, from 0 to 1.
    bin_counts_ : list of ndarray of shape (n_neurons, n_bins - 2)
        :math:`c_{l,n}(b)`: ID fit samples per neuron and bin, per layer.
    steepness_, n_bins_, min_count_ : ndarray of shape (n_layers,)
        The per-layer hyperparameters (``steepness_`` as set by ``"auto"``).
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    GradNorm : Size of the head's gradient of the same KL.
    Gram : Out-of-range correlations of several layers.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import NAC, DigitsCNN
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    >>> det = NAC(model, ["block3", "penultimate"], min_count=5, device="cpu")
    >>> det = det.fit(X)
    >>> dict(det.layer_sizes_)
    {'block3': 8, 'penultimate': 8}
    >>> det.bin_counts_[0].shape  # neurons x bins
    (8, 48)
    >>> scores = det.score_samples(X)
    >>> bool(np.all((scores >= 0) & (scores <= 1)))
    True
    >>> bool(det.score_samples(X).mean() > det.score_samples(5 * X).mean())
    True
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "layers": [str, list, tuple],
        "n_bins": [Interval(Integral, 4, None, closed="left"), "array-like"],
        "steepness": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
            "array-like",
        ],
        "min_count": [Interval(Integral, 1, None, closed="left"), "array-like"],
    }

    def __init__(
        self,
        model,
        layers,
        n_bins=50,
        steepness="auto",
        min_count=50,
        *,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.layers = layers
        self.n_bins = n_bins
        self.steepness = steepness
        self.min_count = min_count
        self.batch_size = batch_size
        self.device = device

    # --------------------------------------------------------------- params
    def _check_params(self, inputs):
        self._layers = _resolve_layers(self.model, _layer_names(self.layers))
        n_layers = len(self._layers)
        self.n_bins_ = _per_layer(self.n_bins, "n_bins", n_layers, np.int64)
        if not _is_auto(self.steepness):
            self.steepness_ = _per_layer(self.steepness, "steepness", n_layers, float)
            if not np.all(np.isfinite(self.steepness_) & (self.steepness_ > 0)):
                raise ValueError(f"steepness must be > 0; got {self.steepness!r}.")
        self.min_count_ = _per_layer(self.min_count, "min_count", n_layers, np.int64)
        if np.any(self.n_bins_ < 4) or np.any(self.n_bins_ % 2):
            raise ValueError(
                "n_bins must be even and at least 4 (the thresholds are mirrored "
                f"around 1/2); got {self.n_bins!r}."
            )
        if np.any(self.min_count_ < 1):
            raise ValueError(f"min_count must be >= 1; got {self.min_count!r}.")

    # ------------------------------------------------------------------ fit
    def _fit(self, inputs, y):
        self.bin_edges_ = [_bin_edges(m) for m in self.n_bins_]
        if _is_auto(self.steepness):
            self.steepness_ = self._auto_steepness(inputs)
        counts, sizes = None, None
        for states in self._state_batches(inputs):
            if counts is None:
                sizes = [s.shape[1] for s in states]
                counts = [
                    np.zeros((n, len(e) - 1), dtype=np.int64)
                    for n, e in zip(sizes, self.bin_edges_)
                ]
            for count, state, edges in zip(counts, states, self.bin_edges_):
                bins = _bin_index(state, edges)
                n_bins = count.shape[1]
                flat = (np.arange(count.shape[0]) * n_bins + bins).ravel()
                count += np.bincount(flat, minlength=count.size).reshape(count.shape)
        self.layer_sizes_ = OrderedDict(zip(self._layers, sizes))
        self.bin_counts_ = counts

    def _fit_scores(self, inputs, rows):
        # Each fit sample is scored without its own count in its bins.
        return self._coverage(inputs.subset(rows), leave_one_out=True)

    # ---------------------------------------------------------------- score
    def _score(self, inputs):
        return self._coverage(inputs, leave_one_out=False)

    def _coverage(self, inputs, leave_one_out):
        scores = []
        for states in self._state_batches(inputs):
            total = 0.0
            for layer, state in enumerate(states):
                count = self.bin_counts_[layer]
                bins = _bin_index(state, self.bin_edges_[layer])
                hits = np.take_along_axis(count.T, bins, axis=0)  # (B, n_neurons)
                if leave_one_out:
                    hits = hits - 1
                phi = np.minimum(hits / self.min_count_[layer], 1.0)
                total = total + phi.mean(1)
            scores.append(total / len(states))
        return np.concatenate(scores)

    def _auto_steepness(self, inputs):
        """``1 / std`` of each layer's products over the ID fit samples."""
        count = mean = m2 = None
        for products in self._product_batches(inputs):
            # Chan et al.'s pairwise merge of means and squared deviations.
            n_b = np.array([p.size for p in products], dtype=float)
            mean_b = np.array([p.mean() for p in products])
            m2_b = np.array([((p - m) ** 2).sum() for p, m in zip(products, mean_b)])
            if count is None:
                count, mean, m2 = n_b, mean_b, m2_b
                continue
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * n_b / total
            m2 = m2 + m2_b + delta**2 * count * n_b / total
            count = total
        std = np.sqrt(m2 / count)
        return 1.0 / np.where(std > 0, std, 1.0)

    # -------------------------------------------------------------- helpers
    def _state_batches(self, inputs):
        """Yield the neuron states ``hat z`` of each layer: [(B, N_l) float64]."""
        for products in self._product_batches(inputs):
            yield [
                expit(alpha * product)
                for alpha, product in zip(self.steepness_, products)
            ]

    def _product_batches(self, inputs):
        """Yield ``z * dKL/dz`` of each layer, pooled: [(B, N_l) float64]."""
        model, device, dtype = self._placement()
        modules = dict(model.named_modules(remove_duplicate=False))
        captured, calls, handles = {}, {}, []

        def capture(block, value):
            calls[block] = calls.get(block, 0) + 1
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise TypeError(
                    f"Layer {block!r} produced a {type(value).__name__}; NAC needs "
                    "a floating-point tensor."
                )
            # Gradients flow from here on: the part before the first layer
            # runs without autograd, and a fresh leaf starts the graph.
            torch.set_grad_enabled(True)  # reset when the no_grad block exits
            if not value.requires_grad:
                value = value.detach().requires_grad_(True)
            captured[block] = value
            # The model goes on with a copy, which in-place operations after
            # the layer (ReLU(inplace=True)) may change without touching z.
            return value.clone()

        def output_hook(block):
            return lambda module, args, output: capture(block, output)

        def input_hook(block):
            def hook(module, args):
                if args:
                    return (capture(block, args[0]), *args[1:])
                return None

            return hook

        try:
            for block, (name, where) in self._layers.items():
                if not name:  # the model's output: captured after the pass
                    continue
                if name not in modules:
                    raise ValueError(
                        f"Layer {block!r}: the model has no submodule {name!r} any "
                        "more; refit the detector after changing the model."
                    )
                if where == "input":
                    hook = modules[name].register_forward_pre_hook(input_hook(block))
                else:
                    hook = modules[name].register_forward_hook(output_hook(block))
                handles.append(hook)
            with _eval_mode(model):
                for xb in self._batches(inputs, device, dtype):
                    captured.clear()
                    calls.clear()
                    with torch.inference_mode(False), torch.no_grad():
                        logits = _check_logits(_call_model(model, xb), len(xb))
                        yield self._products(logits, captured, calls, len(xb))
        finally:
            for handle in handles:
                handle.remove()

    def _products(self, logits, captured, calls, n):
        """``z * dKL/dz`` of each layer from one forward pass (grad mode is on)."""
        if "" in {name for name, _ in self._layers.values()}:
            if not logits.requires_grad:
                logits = logits.detach().requires_grad_(True)
        values = []
        for block, (name, _) in self._layers.items():
            if not name:
                values.append(logits)
                continue
            if calls.get(block, 0) != 1:
                raise ValueError(
                    f"Layer {block!r} ran {calls.get(block, 0)} times in one forward "
                    "pass; NAC needs a module that runs exactly once."
                )
            value = captured[block]
            if value.ndim < 2 or value.shape[0] != n:
                raise ValueError(
                    f"Layer {block!r} produced shape {tuple(value.shape)}; NAC "
                    f"needs (n_samples={n}, neurons, ...)."
                )
            values.append(value)
        with torch.enable_grad():
            # sum_i KL(u || softmax(f(x_i))) up to a constant.
            loss = -torch.log_softmax(logits, dim=1).mean(1).sum()
            grads = torch.autograd.grad(loss, values, allow_unused=True)
        products = []
        for (block, _), value, grad in zip(self._layers.items(), values, grads):
            if grad is None:
                raise ValueError(
                    f"The model's output does not depend on the layer {block!r}."
                )
            z = _sum_positions(value.detach().to(torch.float64))
            g = _sum_positions(grad.detach().to(torch.float64))
            product = (z * g).cpu().numpy()
            if not np.isfinite(product).all():
                raise ValueError(
                    f"Layer {block!r} produced NaN or infinite neuron states; check "
                    "the model's outputs for NaN or infinite values."
                )
            products.append(product)
        return products


def _per_layer(value, name, n_layers, dtype):
    """A per-layer hyperparameter as an array of ``n_layers`` values."""
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(n_layers, array)
    if array.ndim != 1 or len(array) != n_layers:
        raise ValueError(
            f"{name} must be a scalar or have one value per layer ({n_layers}); "
            f"got {value!r}."
        )
    if dtype is not float and array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers; got {value!r}.")
    if dtype is float and array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold numbers; got {value!r}.")
    return array.astype(dtype)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _bin_edges(n_thresholds):
    """The authors' ``M`` thresholds, less the unused last one: ``M - 1`` edges."""
    half = int(n_thresholds) // 2
    low = np.log(np.linspace(1.0, np.sqrt(_EDGE_BASE), half)) / np.log(_EDGE_BASE)
    return np.concatenate([low[:-1], (1.0 - low)[::-1]])


def _bin_index(state, edges):
    """Bin of each state: ``[e_j, e_{j+1})``, the last bin closed at 1."""
    return np.searchsorted(edges[1:-1], state, side="right")


def _sum_positions(value):
    """``(B, C, ...)`` summed over the positions after ``C``: ``(B, C)``."""
    return value.flatten(2).sum(2) if value.ndim > 2 else value
