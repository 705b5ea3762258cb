"""Gram matrices: out-of-range feature correlations of several layers."""

from collections import OrderedDict
from numbers import Integral

import numpy as np
import torch
from sklearn import get_config

from sklearn_ood.torch._base import BaseTorchModelDetector
from sklearn_ood.torch._layers import (
    _check_single_calls,
    _feature_hooks,
    _hooked_forward,
    _layer_names,
    _resolve_layers,
)
from sklearn_ood.torch._utils import _check_logits

__all__ = ["Gram"]

# Added to |bound| in the deviation's denominator, as in the authors' code.
_DENOMINATOR_EPS = 1e-6


class Gram(BaseTorchModelDetector):
    r"""Gram matrices: how far a sample's layer correlations leave their ID range.

    .. math::

        G_l^p(x) = \big(F_l^p \, {F_l^p}^\top\big)^{1/p}, \qquad
        g_{l,p,c}(x) = \operatorname{sign}(r_c) \lvert r_c \rvert^{1/p},
        \quad r_c = \sum_{c'} \big(F_l^p {F_l^p}^\top\big)_{c c'},

        \delta_l(x) = \sum_{p, c}
            \frac{\max(0, m_{l,p,c} - g_{l,p,c}(x))}{\lvert m_{l,p,c}\rvert + 10^{-6}}
          + \frac{\max(0, g_{l,p,c}(x) - M_{l,p,c})}{\lvert M_{l,p,c}\rvert + 10^{-6}},
        \qquad s(x) = -\sum_l \frac{\delta_l(x)}{\mathbb{E}[\delta_l]}

    Sastry & Oore, "Detecting Out-of-Distribution Examples with Gram
    Matrices", ICML 2020. :math:`F_l` is
    the output of layer ``l`` reshaped to ``C x HW`` (a 2-D output ``(N, C)``
    is ``C x 1``), :math:`F_l^p` its elementwise power, and the root is
    signed and elementwise. As in the authors' code (and pytorch-ood), each
    Gram matrix is summarised by its *row sums* :math:`r_c` (taken before
    the root), ``C`` values per layer and power; they are computed without
    forming the ``C x C`` matrix, :math:`r_c = \sum_{hw} F^p_{c,hw}
    \sum_{c'} F^p_{c',hw}`, in float64. The powers :math:`F^p` are built by
    successive float64 products (:math:`F^p = F^q F^{p-q}` for the next
    smaller power :math:`q`), at most :math:`p` roundings, so they are within
    :math:`p` float64 ulps (relative :math:`p \cdot 1.1 \times 10^{-16}`)
    of the exact power; a value beyond the float64 range raises a
    ``ValueError``.

    **Cost.** ``fit`` runs the model once over the fit data when the Gram
    values of all fit samples (``8 * n_samples * n_gram_values`` bytes) fit
    in scikit-learn's ``working_memory`` (``sklearn.set_config``, MiB), and
    twice otherwise (bounds, then leave-one-out deviations), with the same
    result.

    **Bounds.** :math:`m, M` are the minimum and maximum of each value over
    the ID fit samples *predicted* (argmax of the model's logits) as the
    test sample's predicted class, as in the authors' code (labels ``y``
    only drop OOD rows). A class predicted for fewer than 2 fit samples
    uses the bounds of all fit samples.

    **Normalisation.** :math:`\mathbb{E}[\delta_l]` is the mean deviation of
    layer ``l`` on held-out ID data. The paper holds out part of the test
    set; here every fit sample is held out in turn: its deviation is taken
    against the bounds of the *other* fit samples (leave-one-out, the
    second smallest / largest value where it is the extreme one), which
    needs no split and has the distribution of a held-out deviation. The
    same leave-one-out scores set ``offset_``, so the threshold is honest
    (in-sample deviations are all 0). A layer whose expected deviation is 0
    is not normalised (divided by 1).

    The authors' code also divides the test deviations by the max softmax
    probability; neither the paper's formula nor this detector does.
    pytorch-ood 0.4.0's ``Gram`` has the same features and deviation but
    fits the bounds per *true* label, estimates :math:`\mathbb{E}[\delta_l]`
    on a random 10 % of the fit data (left out of the bounds, drawn from the
    global torch RNG), returns :math:`-s(x)`, and defaults to the powers
    :math:`1, \dots, L` (``L`` = number of layers) where the paper and we
    use :math:`1, \dots, 10`.

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier returning logits. It is shared, never copied,
        and never modified apart from its placement on ``device``.
    layers : str or list of str
        Layers whose output feature maps :math:`F_l` are used: submodule
        names from ``model.named_modules()`` (or ``"penultimate"`` /
        ``"logits"``, as in
        :class:`~sklearn_ood.torch.TorchFeatureTransformer`). Each must run
        once per forward pass and return ``(N, C, ...)``.
    powers : int or sequence of int, default=10
        The powers :math:`p`: an int ``P`` means :math:`1, \dots, P`.
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
        Fraction of the ID fit samples rejected by ``predict`` (from their
        leave-one-out scores).
        ``None`` learns no threshold (scores only; ``predict`` raises).

    Attributes
    ----------
    powers_ : ndarray of int
        The powers used.
    feature_blocks_ : OrderedDict of str -> int
        Number of Gram values (``len(powers_) * C``) of each layer, in the
        column order of ``min_`` and ``max_`` (power-major within a layer).
    class_counts_ : ndarray of shape (n_classes,)
        Number of ID fit samples predicted as each class (logit column).
    min_, max_ : ndarray of shape (n_classes, n_gram_values)
        Bounds per predicted class (all fit samples' bounds for classes with
        fewer than 2).
    expected_deviation_ : ndarray of shape (n_layers,)
        :math:`\mathbb{E}[\delta_l]` (leave-one-out mean; 1 where it is 0).
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.MultiMahalanobis : Gaussians on several layers.
    MahalanobisPreprocessed : Mahalanobis on a layer after an input step.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, Gram
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = np.random.default_rng(0).random((30, 1, 8, 8), dtype=np.float32)
    >>> det = Gram(model, layers=["block1", "block2"], powers=3, device="cpu")
    >>> det = det.fit(X)
    >>> dict(det.feature_blocks_)
    {'block1': 6, 'block2': 12}
    >>> det.min_.shape
    (3, 18)
    >>> float(det.score_samples(X).max())  # fit samples lie within the bounds
    0.0
    >>> bool(det.score_samples(10 * X).max() < 0)  # far outside them
    True
    """

    _parameter_constraints = {
        **BaseTorchModelDetector._parameter_constraints,
        "layers": [str, list, tuple],
        "powers": ["array-like", Integral],
    }

    def __init__(
        self,
        model,
        layers,
        powers=10,
        *,
        batch_size=128,
        device="auto",
        contamination=0.05,
    ):
        super().__init__(contamination=contamination)
        self.model = model
        self.layers = layers
        self.powers = powers
        self.batch_size = batch_size
        self.device = device

    def _check_params(self, inputs):
        if isinstance(self.powers, Integral):
            if self.powers < 1:
                raise ValueError(f"powers must be >= 1; got {self.powers}.")
            powers = np.arange(1, int(self.powers) + 1)
        else:
            powers = np.asarray(self.powers)
            if (
                powers.ndim != 1
                or powers.size == 0
                or powers.dtype.kind not in "iu"
                or np.any(powers < 1)
            ):
                raise ValueError(
                    "powers must be a positive int or a non-empty sequence of "
                    f"positive ints; got {self.powers!r}."
                )
        self.powers_ = powers.astype(np.int64)
        self._layers = _resolve_layers(self.model, _layer_names(self.layers))

    # ------------------------------------------------------------------ fit
    def _fit(self, inputs, y):
        n = inputs.n_samples
        if n < 2:
            raise ValueError(
                f"Gram needs at least 2 in-distribution fit samples for its "
                f"leave-one-out normalisation; got {n} sample."
            )
        # Pass 1: the two smallest and two largest of every Gram value per
        # predicted class and over all samples (group n_classes), with the
        # sample holding the extreme, streamed batch by batch. The batches'
        # Gram values are kept while they fit in scikit-learn's
        # working_memory, so that pass 2 need not run the model again.
        budget = get_config()["working_memory"] * 2**20
        cache, cached_bytes = [], 0
        low = high = None
        preds, start, spec = [], 0, {}
        for values, pred in self._gram_batches(inputs, spec):
            if cache is not None:
                cached_bytes += values.nbytes + pred.nbytes
                if cached_bytes <= budget:
                    cache.append((values, pred))
                else:  # too large: drop it, pass 2 runs the model again
                    cache = None
            n_classes = spec["n_classes"]
            if low is None:
                low = _TwoSmallest(n_classes + 1, values.shape[1])
                high = _TwoSmallest(n_classes + 1, values.shape[1])
            rows = np.arange(start, start + len(values))
            low.update(values, pred, rows)
            high.update(-values, pred, rows)
            preds.append(pred)
            start += len(values)
        # The pooled group from the classes' two smallest: the same values
        # as streaming it, without a second selection over every batch.
        low.pool(n_classes)
        high.pool(n_classes)
        counts = np.bincount(np.concatenate(preds), minlength=n_classes)
        # Classes predicted for fewer than 2 fit samples use the pooled bounds.
        group_of = np.where(counts >= 2, np.arange(n_classes), n_classes)
        self.feature_blocks_ = spec["widths"]
        self.class_counts_ = counts
        self.min_ = low.first[group_of]
        self.max_ = -high.first[group_of]

        # Pass 2: leave-one-out deviations of the fit samples, from the cached
        # Gram values or else from a second run of the model.
        deviations, start = [], 0
        batches = self._gram_batches(inputs, spec) if cache is None else cache
        for values, pred in batches:
            rows = np.arange(start, start + len(values))
            group = group_of[pred]
            deviations.append(
                self._layer_deviations(
                    values, low.without(group, rows), -high.without(group, rows)
                )
            )
            start += len(values)
        deviations = np.concatenate(deviations)
        expected = deviations.mean(0)
        self.expected_deviation_ = np.where(expected > 0, expected, 1.0)
        return self._total(deviations)

    # ---------------------------------------------------------------- score
    def _score(self, inputs):
        scores = []
        spec = {"widths": self.feature_blocks_, "n_classes": len(self.class_counts_)}
        for values, pred in self._gram_batches(inputs, spec):
            deviations = self._layer_deviations(
                values, self.min_[pred], self.max_[pred]
            )
            scores.append(self._total(deviations))
        return np.concatenate(scores)

    # -------------------------------------------------------------- helpers
    def _gram_batches(self, inputs, spec):
        """Yield ``(Gram values (B, D) float64, predicted class (B,))``.

        ``spec`` holds the Gram widths per layer and the number of logits;
        an empty dict is filled from the first batch.
        """
        model, device, dtype = self._placement()
        layers = OrderedDict(self._layers)
        layers[_OUTPUT] = ("", "output")
        with (
            _feature_hooks(model, layers, stop_early=False) as hooks,
            self._running(model),
        ):
            for xb in self._batches(inputs, device, dtype):
                values = _hooked_forward(model, xb, layers, hooks)
                _check_single_calls(hooks, layers)
                logits = _check_logits(values.pop(_OUTPUT), len(xb))
                blocks = [
                    _gram_values(_check_map(value, block, len(xb)), self.powers_)
                    for block, value in values.items()
                ]
                widths = OrderedDict((b, v.shape[1]) for b, v in zip(values, blocks))
                n_classes = logits.shape[1]
                if not spec:
                    spec.update(widths=widths, n_classes=n_classes)
                if widths != spec["widths"] or n_classes != spec["n_classes"]:
                    raise ValueError(
                        f"The layers give {dict(widths)} Gram values and "
                        f"{n_classes} logits, but {dict(spec['widths'])} and "
                        f"{spec['n_classes']} were found during fit."
                    )
                gram = torch.cat(blocks, 1).cpu().numpy()
                if not np.isfinite(gram).all():
                    raise ValueError(
                        "The Gram values overflowed float64 (features too large "
                        f"for the power {int(self.powers_.max())}); use smaller "
                        "powers."
                    )
                yield gram, logits.argmax(1).cpu().numpy()

    def _total(self, deviations):
        """Score: minus the normalised total deviation (0.0, never -0.0)."""
        return 0.0 - (deviations / self.expected_deviation_).sum(1)

    def _layer_deviations(self, values, low, high):
        """Deviation ``delta_l`` of each sample and layer: (B, n_layers)."""
        below = np.maximum(low - values, 0) / (np.abs(low) + _DENOMINATOR_EPS)
        above = np.maximum(values - high, 0) / (np.abs(high) + _DENOMINATOR_EPS)
        starts = np.cumsum([0, *self.feature_blocks_.values()])[:-1]
        return np.add.reduceat(below + above, starts, axis=1)


# Key of the model's output among the hooked blocks (not a valid module name).
_OUTPUT = "\0output"


def _check_map(value, block, n):
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"Layer {block!r} produced a {type(value).__name__}, not a tensor; "
            "choose a submodule whose output is a tensor."
        )
    if value.ndim < 2 or value.shape[0] != n:
        raise ValueError(
            f"Layer {block!r} produced shape {tuple(value.shape)}; Gram needs "
            f"feature maps (n_samples={n}, channels, ...)."
        )
    return value


def _gram_values(value, powers):
    """Signed p-th roots of the row sums of ``F^p F^p^T``, for each power.

    ``value`` is ``(B, C, ...)``; returns ``(B, len(powers) * C)`` float64,
    power-major. Row ``c`` of ``F^p F^p^T`` sums to
    ``sum_hw F^p[c, hw] * sum_c' F^p[c', hw]``: no ``C x C`` matrix.

    The powers are built in float64 by multiplying the previous one in place
    (``F^p = F^q * F^(p - q)``, ascending ``p``), not by ``pow`` on the whole
    map: ``pow`` is a transcendental call per element and dominated the cost
    on real feature maps. That is at most ``p`` roundings, so ``F^p`` is
    within ``p`` float64 ulps (relative ``p * 1.1e-16``) of the exact power.
    """
    value = value.detach()
    value = value.reshape(value.shape[0], value.shape[1], -1)  # HW = 1 for (B, C)
    # (B, HW, C) in float64, one copy: the sum over channels is then over
    # contiguous memory and the row sums one batched vector-matrix product
    # (2-3x faster than reducing the middle axis of (B, C, HW)).
    F = value.new_empty(
        value.shape[0], value.shape[2], value.shape[1], dtype=torch.float64
    )
    F.copy_(value.transpose(1, 2))
    unique, position = np.unique(powers, return_inverse=True)
    Fp = F.clone()  # F^1, multiplied in place up to each power in turn
    rows, done = [], 1
    for p in unique.tolist():
        if p > done:
            Fp.mul_(F if p - done == 1 else F ** (p - done))
            done = p
        # r_c = sum_hw (sum_c' F^p[hw, c']) F^p[hw, c]
        rows.append(torch.bmm(Fp.sum(2).unsqueeze(1), Fp).squeeze(1))
    rows = torch.stack(rows, 1)  # (B, n_unique, C)
    if len(unique) != len(powers) or np.any(position != np.arange(len(powers))):
        rows = rows[:, torch.as_tensor(position, device=rows.device)]
    roots = torch.as_tensor(1.0 / powers, dtype=torch.float64, device=rows.device)
    roots = rows.abs() ** roots[:, None]
    return (rows.sign() * roots).reshape(rows.shape[0], -1)


class _TwoSmallest:
    """Streaming two smallest values per (group, column), and the argmin's row."""

    def __init__(self, n_groups, n_columns):
        self.first = np.full((n_groups, n_columns), np.inf)
        self.second = np.full((n_groups, n_columns), np.inf)
        self.row = np.full((n_groups, n_columns), -1, dtype=np.int64)

    def update(self, values, groups, rows):
        for g in np.unique(groups):
            sel = groups == g
            self._merge(g, values[sel], rows[sel])

    def _merge(self, g, V, rows):
        if len(V) >= 2:
            idx = np.argpartition(V, 1, axis=0)[:2]  # row of the smallest, second
            b1 = np.take_along_axis(V, idx[:1], 0)[0]
            b2 = np.take_along_axis(V, idx[1:2], 0)[0]
            b1_row = rows[idx[0]]
        else:
            b1, b2, b1_row = V[0], np.full(V.shape[1], np.inf), rows[0]
        a1, a2 = self.first[g], self.second[g]
        self.row[g] = np.where(b1 < a1, b1_row, self.row[g])
        self.second[g] = np.minimum(np.maximum(a1, b1), np.minimum(a2, b2))
        self.first[g] = np.minimum(a1, b1)

    def pool(self, target):
        """Set group ``target`` to the two smallest over the groups before it."""
        first, second, row = (
            self.first[:target],
            self.second[:target],
            self.row[:target],
        )
        best = first.argmin(0)[None]  # group of the smallest, per column
        others = first.copy()
        np.put_along_axis(others, best, np.inf, 0)
        self.first[target] = np.take_along_axis(first, best, 0)[0]
        self.row[target] = np.take_along_axis(row, best, 0)[0]
        self.second[target] = np.minimum(
            np.take_along_axis(second, best, 0)[0], others.min(0)
        )

    def without(self, groups, rows):
        """Smallest value of each row's group once that row is left out."""
        is_min = self.row[groups] == rows[:, None]
        return np.where(is_min, self.second[groups], self.first[groups])
