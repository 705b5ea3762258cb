r"""Open-set and outlier losses whose model outputs more than logits.

The criteria here follow the calling convention of ``_losses.py``,
``criterion(outputs, target)`` with ``target < 0`` marking the auxiliary
outlier rows, but several need a second model output: the deep features
(:class:`ObjectosphereLoss`, and :class:`VOSRegLoss` in ``_vos.py``), a
learned confidence (:class:`ConfidenceLoss`) or a background logit
(:class:`BackgroundClassLoss`). The model then returns a tuple whose first
element is the ID logits, which is skorch's own convention:
``predict_proba`` uses the first element of a tuple output, and
:class:`~sklearn_ood.torch.OODNeuralNetClassifier` checks the logits' width
on it and hands the whole tuple to the criterion. Three small wrapper
modules build such outputs from a plain classifier without changing its
weights: :class:`WithFeatures`, :class:`WithConfidence` and
:class:`WithBackgroundClass`.

The small checks (reduction, real numbers, labels) and the per-row ID
cross-entropy are those of ``_losses.py``.
"""

from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

from sklearn_ood.torch._layers import _last_linear, _resolve_layers
from sklearn_ood.torch._losses import (
    _check_inputs,
    _check_real,
    _check_reduction,
    _group_mean,
    _id_cross_entropy,
    _OODLoss,
    _outlier_exposure,
    _reduce,
)

__all__ = [
    "BackgroundClassLoss",
    "ConfidenceLoss",
    "EnergyMarginLoss",
    "ObjectosphereLoss",
    "WithBackgroundClass",
    "WithConfidence",
    "WithFeatures",
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _split_outputs(outputs, what, n_needed):
    """``outputs`` as a tuple of at least ``n_needed`` tensors (logits first)."""
    if not isinstance(outputs, (tuple, list)) or len(outputs) < n_needed:
        got = (
            f"a tuple of {len(outputs)}"
            if isinstance(outputs, (tuple, list))
            else type(outputs).__name__
        )
        raise ValueError(
            f"{what}; got {got}. Wrap the classifier (e.g. WithFeatures(model) or "
            "WithConfidence(model)) so that it returns that tuple."
        )
    return tuple(outputs)


def _whole_batch(rows, reduction):
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / max(len(rows), 1)


def _hooked_call(model, x, name, where):
    """``model(x)`` and the input (``where="input"``) or output of ``name``."""
    module = dict(model.named_modules())[name]
    captured = []
    if where == "input":
        handle = module.register_forward_pre_hook(
            lambda mod, args: captured.append(args[0])
        )
    else:
        handle = module.register_forward_hook(
            lambda mod, args, out: captured.append(out)
        )
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(
            f"The layer {name!r} ran {len(captured)} times in one forward pass of "
            f"{type(model).__name__}; its features need exactly one call."
        )
    return logits, captured[0].flatten(1)


# ---------------------------------------------------------------------------
# Wrapper modules
# ---------------------------------------------------------------------------


class WithFeatures(nn.Module):
    """Wrap a classifier so that it returns its logits and its deep features.

    ``forward(x)`` returns ``(logits, features)``: the classifier's output
    and the flattened input of its last ``torch.nn.Linear``
    (``layer="penultimate"``) or output of the named submodule, taken by a
    forward hook registered for that call only. The wrapped model is used
    as it is (no copy, no new weights). In training mode, with
    ``layer="penultimate"``, a third element follows: the last
    ``nn.Linear`` itself, which maps the features to the logits;
    :class:`VOSRegLoss` sends its virtual outliers through it. Evaluation
    mode (prediction, validation) returns the pair only.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits of shape ``(n_samples, n_classes)``.
    layer : str, default="penultimate"
        The features: ``"penultimate"`` (the input of the last
        ``nn.Linear``) or the name of a submodule (its output).

    Attributes
    ----------
    model : torch.nn.Module
        The wrapped classifier.

    See Also
    --------
    ObjectosphereLoss : Needs the features' norms.
    VOSRegLoss : Synthesises outliers from the features.
    TorchFeatureTransformer : Extracts the same features for detectors.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, WithFeatures
    >>> model = WithFeatures(DigitsCNN(n_classes=3, width=4)).eval()
    >>> logits, features = model(torch.zeros(2, 1, 8, 8))
    >>> tuple(logits.shape), tuple(features.shape)
    ((2, 3), (2, 16))
    """

    def __init__(self, model, layer="penultimate"):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model must be a torch.nn.Module; got {type(model).__name__}."
            )
        if not isinstance(layer, str) or layer == "logits":
            raise ValueError(
                "layer must be 'penultimate' or the name of a submodule; got "
                f"{layer!r}."
            )
        ((name, where),) = _resolve_layers(model, [layer]).values()
        self.model = model
        self.layer = layer
        self._block = (name, where)

    def forward(self, x):
        """The logits, the features and, in training, the last linear layer.

        Parameters
        ----------
        x : torch.Tensor
            A batch of inputs.

        Returns
        -------
        outputs : tuple
            ``(logits, features)``, plus the head ``nn.Linear`` in
            training mode with ``layer="penultimate"``.
        """
        logits, features = _hooked_call(self.model, x, *self._block)
        if self.training and self.layer == "penultimate":
            head = dict(self.model.named_modules())[self._block[0]]
            return logits, features, head
        return logits, features


class WithConfidence(nn.Module):
    r"""Wrap a classifier with a learned confidence branch (DeVries & Taylor).

    ``forward(x)`` returns ``(logits, confidence)`` with
    :math:`c = \sigma(w^\top h(x) + b)` of shape ``(n_samples, 1)``, computed
    by the new submodule ``confidence`` (``nn.Linear`` then
    ``nn.Sigmoid``) from the penultimate features :math:`h(x)` (the input
    of the classifier's last ``nn.Linear``), as in the paper, where the
    branch sits beside the class head. The branch is trained with
    :class:`ConfidenceLoss`; the confidence is the OOD score (higher =
    more in-distribution), e.g. ``TorchFeatureTransformer(wrapped,
    layer="confidence")`` extracts it. pytorch-ood leaves the model to
    the user.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier whose last ``nn.Linear`` maps the penultimate features
        to the logits.

    Attributes
    ----------
    model : torch.nn.Module
        The wrapped classifier.
    confidence : torch.nn.Sequential
        The confidence branch, ``Linear(n_features, 1)`` and a sigmoid.

    See Also
    --------
    ConfidenceLoss : The loss that trains the branch.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, WithConfidence
    >>> model = WithConfidence(DigitsCNN(n_classes=3, width=4))
    >>> logits, confidence = model(torch.zeros(2, 1, 8, 8))
    >>> tuple(logits.shape), tuple(confidence.shape)
    ((2, 3), (2, 1))
    """

    def __init__(self, model):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model must be a torch.nn.Module; got {type(model).__name__}."
            )
        head = _last_linear(model)
        self.model = model
        self._head = head
        n_features = dict(model.named_modules())[head].in_features
        self.confidence = nn.Sequential(nn.Linear(n_features, 1), nn.Sigmoid())

    def forward(self, x):
        """The logits and the confidence of a batch.

        Parameters
        ----------
        x : torch.Tensor
            A batch of inputs.

        Returns
        -------
        outputs : tuple of torch.Tensor
            ``(logits, confidence)``, the confidence of shape
            ``(n_samples, 1)`` in ``(0, 1)``.
        """
        logits, features = _hooked_call(self.model, x, self._head, "input")
        return logits, self.confidence(features)


class WithBackgroundClass(nn.Module):
    """Split a classifier's last logit off as the background class.

    The wrapped classifier has ``C + 1`` outputs, the last for the
    background (outlier) class; ``forward(x)`` returns
    ``(logits[:, :C], logits[:, C:])``, so that
    :class:`~sklearn_ood.torch.OODNeuralNetClassifier` predicts among the
    ``C`` ID classes and :class:`BackgroundClassLoss` sees all ``C + 1``.
    pytorch-ood leaves the model to the user.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning ``C + 1`` logits, e.g.
        ``DigitsCNN(n_classes=C + 1)``.

    Attributes
    ----------
    model : torch.nn.Module
        The wrapped classifier.

    See Also
    --------
    BackgroundClassLoss : The loss for these outputs.
    sklearn_ood.detectors.BackgroundClass : Its detector on the C + 1 logits.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, WithBackgroundClass
    >>> model = WithBackgroundClass(DigitsCNN(n_classes=4, width=4))
    >>> logits, background = model(torch.zeros(2, 1, 8, 8))
    >>> tuple(logits.shape), tuple(background.shape)
    ((2, 3), (2, 1))
    """

    def __init__(self, model):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"model must be a torch.nn.Module; got {type(model).__name__}."
            )
        self.model = model

    def forward(self, x):
        """The ID logits and the background logit of a batch.

        Parameters
        ----------
        x : torch.Tensor
            A batch of inputs.

        Returns
        -------
        outputs : tuple of torch.Tensor
            ``(logits, background)`` of shapes ``(n, C)`` and ``(n, 1)``.
        """
        out = self.model(x)
        if out.ndim != 2 or out.shape[1] < 2:
            raise ValueError(
                "WithBackgroundClass needs a model returning logits of shape "
                f"(n_samples, C + 1) with C >= 1; got {tuple(out.shape)}."
            )
        return out[:, :-1], out[:, -1:]


# ---------------------------------------------------------------------------
# Objectosphere
# ---------------------------------------------------------------------------


class ObjectosphereLoss(_OODLoss):
    r"""Entropic open-set loss plus feature-magnitude terms (objectosphere).

    .. math::

        \mathcal{L} = \frac{1}{N} \sum_i \Big( J_E(x_i)
            + \alpha \begin{cases}
                \max(0, \xi - \lVert F(x_i) \rVert_2)^2 & y_i \ge 0 \\
                \lVert F(x_i) \rVert_2^2 & y_i < 0
            \end{cases} \Big)

    Dhamija, Günther & Boult, "Reducing Network Agnostophobia", NeurIPS
    2018. :math:`J_E` is the entropic open-set loss
    (:class:`EntropicOpenSetLoss`: the cross-entropy on an ID row, the
    cross-entropy to the uniform on an outlier row) and :math:`F(x)` the
    deep features (the penultimate layer in the paper): ID features are
    pushed to a norm of at least :math:`\xi`, outlier features to 0, so
    that the feature magnitude (and the logits it scales) separates them.
    The batch mean is over all rows, as in the paper and pytorch-ood 0.4.0's
    ``ObjectosphereLoss``, which this equals (its ``forward(logits,
    features, target)`` is ours on ``((logits, features), target)``). The
    paper's score is the maximum softmax times the feature (or logit)
    norm; :class:`~sklearn_ood.detectors.MaxSoftmax` and the norm are
    available.

    The model returns ``(logits, features)``; :class:`WithFeatures` wraps a
    classifier so that it does. The defaults :math:`\alpha = \xi = 1` are
    pytorch-ood's; the paper tunes :math:`\xi` (large, e.g. 50) and
    :math:`\alpha` per network, and :math:`\xi` should be of the order of
    the trained model's ID feature norms.

    Parameters
    ----------
    alpha : float >= 0, default=1.0
        Weight :math:`\alpha` (:math:`\lambda` in the paper) of the
        feature-magnitude term.
    xi : float >= 0, default=1.0
        The minimum ID feature norm :math:`\xi`.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over all rows (ID and outliers together);
        ``"sum"``: the sum; ``"none"``: one value per row.

    See Also
    --------
    EntropicOpenSetLoss : The same loss without the feature term.
    WithFeatures : Makes a classifier return ``(logits, features)``.
    BackgroundClassLoss : The paper's background-class baseline.

    References
    ----------
    .. [1] A. R. Dhamija, M. Günther and T. E. Boult, "Reducing Network
       Agnostophobia", NeurIPS 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import ObjectosphereLoss
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> features = torch.tensor([[0.6, 0.0], [3.0, 4.0]])
    >>> target = torch.tensor([0, -1])
    >>> loss = ObjectosphereLoss(alpha=0.1, xi=1.0)((logits, features), target)
    >>> manual = (0.1269 + 0.1 * 0.4**2 + 0.6931 + 0.1 * 25.0) / 2
    >>> round(loss.item(), 3), round(manual, 3)
    (1.668, 1.668)
    """

    def __init__(self, alpha=1.0, xi=1.0, reduction="mean"):
        super().__init__()
        self.alpha = alpha
        self.xi = xi
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("alpha", self.alpha, low=0)
        _check_real("xi", self.xi, low=0)
        _check_reduction(self.reduction)

    def forward(self, outputs, target):
        """The objectosphere loss of a batch.

        Parameters
        ----------
        outputs : tuple of torch.Tensor
            ``(logits, features)`` (further elements are ignored): logits
            of shape ``(n_samples, n_classes)`` and features of shape
            ``(n_samples, ...)``, flattened per row.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, features = _split_outputs(
            outputs, "ObjectosphereLoss needs the model output (logits, features)", 2
        )[:2]
        logits, target = _check_inputs(logits, target)
        features = features.reshape(len(features), -1)
        if len(features) != len(logits):
            raise ValueError(
                f"features have {len(features)} rows and logits {len(logits)}."
            )
        is_in = target >= 0
        norm = torch.linalg.vector_norm(features, dim=1)
        magnitude = torch.where(is_in, (self.xi - norm).relu().square(), norm.square())
        rows = (
            _id_cross_entropy(logits, target, is_in)
            + _outlier_exposure(logits, is_in)
            + self.alpha * magnitude.to(logits.dtype)
        )
        return _whole_batch(rows, self.reduction)


# ---------------------------------------------------------------------------
# Learned confidence
# ---------------------------------------------------------------------------


class ConfidenceLoss(_OODLoss):
    r"""Cross-entropy with a learned confidence hint (DeVries & Taylor).

    .. math::

        \mathcal{L} = \frac{1}{N_\text{in}} \sum_{i:\, y_i \ge 0} \Big(
            -\log\big(c_i \, p_{y_i}(x_i) + 1 - c_i\big)
            - \alpha \log c_i \Big)

    DeVries & Taylor, "Learning Confidence for Out-of-Distribution
    Detection in Neural Networks", arXiv 2018. The model predicts, beside
    the softmax :math:`p`, a confidence :math:`c \in (0, 1)`; the
    prediction is interpolated towards the one-hot label,
    :math:`p' = c\,p + (1 - c)\,e_y`, so that a low confidence buys a hint
    at the cost :math:`-\alpha \log c`. At test time :math:`c` is the OOD
    score (higher = more in-distribution; pytorch-ood's outlier score is
    :math:`1 - c`). Outlier rows (``target < 0``) are not used: they
    contribute 0 (pytorch-ood drops them with a warning). Both logarithms'
    arguments are clipped below at ``eps``, as pytorch-ood 0.4.0's
    ``ConfidenceLoss`` does (at 1e-24), which this equals for
    ``reduction="mean"``.

    The model returns ``(logits, confidence)``; :class:`WithConfidence`
    adds the paper's branch (a sigmoid unit on the penultimate features)
    to a classifier. Left out, as in pytorch-ood: the paper's adaptive
    :math:`\alpha` (raised or lowered to keep :math:`-\log c` near a budget
    :math:`\beta`), its hints given to only half of each batch, and its
    input preprocessing at test time.

    Parameters
    ----------
    alpha : float >= 0, default=1.0
        Weight :math:`\alpha` (:math:`\lambda` in the paper) of the
        confidence penalty.
    eps : float > 0, default=1e-12
        Lower clip of :math:`p'_{y}` and :math:`c` inside the logarithms.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over the ID rows; ``"sum"``: their sum;
        ``"none"``: one value per row, 0 for an outlier row.

    See Also
    --------
    WithConfidence : Adds the confidence branch to a classifier.
    IDCrossEntropyLoss : The plain cross-entropy over the ID rows.

    References
    ----------
    .. [1] T. DeVries and G. W. Taylor, "Learning Confidence for
       Out-of-Distribution Detection in Neural Networks", arXiv:1802.04865,
       2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import ConfidenceLoss
    >>> logits = torch.tensor([[0.0, 0.0]])
    >>> confidence = torch.tensor([[0.5]])
    >>> loss = ConfidenceLoss()((logits, confidence), torch.tensor([1]))
    >>> manual = -torch.log(torch.tensor(0.5 * 0.5 + 0.5)) - torch.log(
    ...     torch.tensor(0.5))
    >>> torch.isclose(loss, manual)
    tensor(True)
    """

    def __init__(self, alpha=1.0, eps=1e-12, reduction="mean"):
        super().__init__()
        self.alpha = alpha
        self.eps = eps
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_real("alpha", self.alpha, low=0)
        _check_real("eps", self.eps, low=0, strict=True)
        if self.eps >= 1:
            raise ValueError(f"eps must be < 1; got {self.eps!r}.")
        _check_reduction(self.reduction)

    def forward(self, outputs, target):
        """The confidence loss of the ID rows of a batch.

        Parameters
        ----------
        outputs : tuple of torch.Tensor
            ``(logits, confidence)``: logits of shape ``(n_samples,
            n_classes)`` and confidences in ``[0, 1]`` of shape
            ``(n_samples, 1)`` or ``(n_samples,)``.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; rows with ``target < 0`` contribute 0.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        logits, confidence = _split_outputs(
            outputs, "ConfidenceLoss needs the model output (logits, confidence)", 2
        )[:2]
        logits, target = _check_inputs(logits, target)
        confidence = confidence.reshape(-1)
        if len(confidence) != len(logits):
            raise ValueError(
                "confidence must have one value per row, shape (n_samples, 1); got "
                f"{len(confidence)} values for {len(logits)} rows."
            )
        with torch.no_grad():
            if confidence.numel() and (confidence.min() < 0 or confidence.max() > 1):
                raise ValueError(
                    "confidence must lie in [0, 1] (e.g. a sigmoid output); got "
                    f"values in [{confidence.min().item():.3g}, "
                    f"{confidence.max().item():.3g}]."
                )
        is_in = target >= 0
        confidence = confidence.to(logits.dtype)
        p_true = torch.softmax(logits, dim=1).gather(
            1, torch.where(is_in, target, 0)[:, None]
        )[:, 0]
        hinted = (confidence * p_true + (1 - confidence)).clamp(self.eps, 1.0)
        penalty = -torch.log(confidence.clamp(self.eps, 1.0))
        rows = -torch.log(hinted) + self.alpha * penalty
        rows = torch.where(is_in, rows, torch.zeros_like(rows))
        return _reduce(rows, is_in, self.reduction)


# ---------------------------------------------------------------------------
# Background class
# ---------------------------------------------------------------------------


class BackgroundClassLoss(_OODLoss):
    r"""Cross-entropy with the outliers as an extra, background class.

    .. math::

        \mathcal{L} = \frac{1}{N} \sum_i \Big( \log \sum_{c=0}^{C}
            e^{f_c(x_i)} - f_{\tilde y_i}(x_i) \Big), \qquad
        \tilde y_i = \begin{cases} y_i & y_i \ge 0 \\ C & y_i < 0 \end{cases}

    The background-class baseline of Dhamija, Günther & Boult, "Reducing
    Network Agnostophobia", NeurIPS 2018: the network has one output more
    than there are ID classes, and every outlier row (``target < 0``) is a
    sample of that class :math:`C`. The mean runs over all rows, as in
    pytorch-ood 0.4.0's ``BackgroundClassLoss``, which this equals; ours
    needs no ``n_classes`` (the logits' width gives it). The detector
    :class:`~sklearn_ood.detectors.BackgroundClass` scores with the
    trained network's background probability.

    The model returns either ``C + 1`` logits, the last one the
    background's, or the pair ``(logits, background)`` of shapes ``(n, C)``
    and ``(n, 1)`` that :class:`WithBackgroundClass` builds, which is what
    :class:`~sklearn_ood.torch.OODNeuralNetClassifier` needs to predict
    among the ID classes only.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: the mean over all rows; ``"sum"``: the sum;
        ``"none"``: one value per row.

    See Also
    --------
    WithBackgroundClass : Splits the background logit off a ``C + 1``-way model.
    EntropicOpenSetLoss : Outliers pushed to the uniform, no extra class.
    ObjectosphereLoss : Adds feature-magnitude terms to the entropic loss.

    References
    ----------
    .. [1] A. R. Dhamija, M. Günther and T. E. Boult, "Reducing Network
       Agnostophobia", NeurIPS 2018.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import BackgroundClassLoss
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    >>> target = torch.tensor([0, -1])  # the outlier's class is 2
    >>> loss = BackgroundClassLoss()(logits, target)
    >>> manual = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    >>> torch.isclose(loss, manual)
    tensor(True)
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction
        self._validate_params()

    def _validate_params(self):
        _check_reduction(self.reduction)

    def forward(self, outputs, target):
        """The background-class cross-entropy of a batch.

        Parameters
        ----------
        outputs : torch.Tensor or tuple of torch.Tensor
            Logits of shape ``(n_samples, C + 1)`` (the last column the
            background class), or ``(logits, background)`` of shapes
            ``(n_samples, C)`` and ``(n_samples, 1)``.
        target : torch.Tensor of shape (n_samples,)
            Integer labels in ``0 .. C-1``; ``target < 0`` marks an outlier.

        Returns
        -------
        loss : torch.Tensor
            A scalar, or one value per row for ``reduction="none"``.
        """
        self._validate_params()
        if isinstance(outputs, (tuple, list)):
            logits, background = _split_outputs(
                outputs, "BackgroundClassLoss needs (logits, background)", 2
            )[:2]
            background = background.reshape(len(background), -1)
            if background.shape[1] != 1:
                raise ValueError(
                    "background must hold one logit per row, shape (n_samples, 1);"
                    f" got {tuple(background.shape)}."
                )
            logits = torch.cat([logits, background.to(logits.dtype)], dim=1)
        else:
            logits = outputs
        logits, target = _check_inputs(logits, target)
        n_id = logits.shape[1] - 1
        if n_id < 1:
            raise ValueError(
                "BackgroundClassLoss needs C + 1 >= 2 logits (the last one the "
                f"background class); got {logits.shape[1]}."
            )
        if len(target) and int(target.max()) >= n_id:
            raise ValueError(
                f"target has the label {int(target.max())}, but the model has "
                f"{n_id} ID classes (labels 0 .. {n_id - 1}) and a background "
                "class: give it one output per ID class plus one."
            )
        mapped = torch.where(target < 0, n_id, target)
        rows = F.cross_entropy(logits, mapped, reduction="none")
        return _whole_batch(rows, self.reduction)


# ---------------------------------------------------------------------------
# Energy margin (SCONE)
# ---------------------------------------------------------------------------


def _penalty(violation, lam, weight):
    """The augmented-Lagrangian term psi(c; lambda, beta)."""
    if float(weight * violation.detach() + lam) >= 0:
        return lam * violation + weight / 2 * violation.square()
    return (-(lam**2) / (2 * weight)) + 0 * violation


class EnergyMarginLoss(_OODLoss):
    r"""Energy loss with a margin under constraints, by augmented Lagrangian (SCONE).

    .. math::

        \mathcal{L} = w \, \mathcal{L}_\text{out}
            + \psi(\mathcal{L}_\text{in} - \alpha;\ \lambda, \beta)
            + \psi(\operatorname{CE}_\text{in} - \tau \mathcal{L}_0;\
                \lambda_2, \beta_2),
        \qquad
        \psi(c; \lambda, \beta) = \begin{cases}
            \lambda c + \frac{\beta}{2} c^2 & \beta c + \lambda \ge 0 \\
            -\frac{\lambda^2}{2 \beta} & \text{otherwise}
        \end{cases}

    Bai, Canal, Du, Kwon, Nowak & Li, "Feed Two Birds with One Scone:
    Exploiting Wild Data for Both Out-of-Distribution Generalization and
    Detection", ICML 2023 (the constrained form of WOODS, Katz-Samuels et
    al., ICML 2022). With :math:`s(x) = \log \sum_c e^{f_c(x)}` and a
    learned one-dimensional logistic regression :math:`\phi` (the
    submodule ``logistic_regression``, trained by the net's optimizer with
    the model), :math:`\mathcal{L}_\text{in} = \operatorname{mean}_\text{in}
    \sigma(\phi(s(x)))` is the soft fraction of ID rows flagged as OOD,
    kept below :math:`\alpha`, and :math:`\mathcal{L}_\text{out} =
    \operatorname{mean}_\text{out} \sigma(-\phi(s(x) - \eta))` the soft
    fraction of outliers accepted, with the margin :math:`\eta` subtracted
    from their score; the ID cross-entropy is kept below :math:`\tau` times
    the pretrained model's, :math:`\mathcal{L}_0` (``full_train_loss``).

    The multipliers :math:`\lambda, \lambda_2` (buffers ``lam``, ``lam2``,
    starting at 0) and penalty weights :math:`\beta, \beta_2` (buffers
    ``in_penalty``, ``ce_penalty``) change only in
    :meth:`update_hyperparameters`, to be called once per epoch, as in the
    reference code. It equals pytorch-ood 0.4.0's ``EnergyMarginLoss``
    (which takes :math:`\phi` as a ``forward`` argument and needs both ID
    and outlier rows in every batch; here a missing group's terms are 0, so
    ID-only validation batches work), and its update, from the same ID
    logits.

    Parameters
    ----------
    full_train_loss : float >= 0
        :math:`\mathcal{L}_0`, the pretrained model's mean cross-entropy on
        the ID training data.
    eta : float, default=1.0
        Margin :math:`\eta`.
    false_alarm_cutoff : float in [0, 1], default=0.05
        :math:`\alpha`, the tolerated fraction of ID rows flagged as OOD.
    in_constraint_weight : float > 0, default=1.0
        Initial penalty weight :math:`\beta`.
    ce_tol : float > 0, default=2.0
        :math:`\tau`.
    ce_constraint_weight : float > 0, default=1.0
        Initial penalty weight :math:`\beta_2`.
    out_constraint_weight : float >= 0, default=1.0
        :math:`w`.
    lr_lam : float > 0, default=1.0
        Step :math:`\rho` of the multiplier updates.
    penalty_mult : float >= 1, default=1.5
        Factor :math:`\kappa` applied to a penalty weight whose constraint
        is violated by more than ``constraint_tol``.
    constraint_tol : float, default=0.0
        Tolerance :math:`\epsilon` of that rule.

    Attributes
    ----------
    logistic_regression : torch.nn.Linear
        :math:`\phi`, ``Linear(1, 1)``.

    See Also
    --------
    EnergyRegularizedLoss : Squared energy hinges, without constraints.
    sklearn_ood.detectors.Energy : The energy score.

    Notes
    -----
    :meth:`update_hyperparameters` takes the ID logits and labels of the
    training set (the reference computes them in evaluation mode once per
    epoch). Without them it uses the statistics of the ID rows of the
    training batches seen since the last update (a cheaper approximation:
    the model changed during the epoch and was in training mode). In
    skorch, a callback does it::

        class UpdateMultipliers(skorch.callbacks.Callback):
            def on_epoch_end(self, net, **kwargs):
                net.criterion_.update_hyperparameters()

    References
    ----------
    .. [1] H. Bai, G. Canal, X. Du, J. Kwon, R. Nowak and Y. Li, "Feed Two
       Birds with One Scone: Exploiting Wild Data for Both
       Out-of-Distribution Generalization and Detection", ICML 2023.
    .. [2] J. Katz-Samuels, J. Nakhleh, R. Nowak and Y. Li, "Training OOD
       Detectors in their Natural Habitats", ICML 2022.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import EnergyMarginLoss
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> loss = EnergyMarginLoss(full_train_loss=0.5)
    >>> logits = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    >>> value = loss(logits, torch.tensor([0, -1]))
    >>> loss.update_hyperparameters(logits[:1], torch.tensor([0]))
    >>> float(loss.lam) >= 0
    True
    """

    def __init__(
        self,
        full_train_loss,
        eta=1.0,
        false_alarm_cutoff=0.05,
        in_constraint_weight=1.0,
        ce_tol=2.0,
        ce_constraint_weight=1.0,
        out_constraint_weight=1.0,
        lr_lam=1.0,
        penalty_mult=1.5,
        constraint_tol=0.0,
    ):
        super().__init__()
        self.full_train_loss = full_train_loss
        self.eta = eta
        self.false_alarm_cutoff = false_alarm_cutoff
        self.in_constraint_weight = in_constraint_weight
        self.ce_tol = ce_tol
        self.ce_constraint_weight = ce_constraint_weight
        self.out_constraint_weight = out_constraint_weight
        self.lr_lam = lr_lam
        self.penalty_mult = penalty_mult
        self.constraint_tol = constraint_tol
        self._validate_params()
        self.logistic_regression = nn.Linear(1, 1)
        self.register_buffer("lam", torch.tensor(0.0))
        self.register_buffer("lam2", torch.tensor(0.0))
        self.register_buffer("in_penalty", torch.tensor(float(in_constraint_weight)))
        self.register_buffer("ce_penalty", torch.tensor(float(ce_constraint_weight)))
        self._reset_stats()

    def _validate_params(self):
        _check_real("full_train_loss", self.full_train_loss, low=0)
        _check_real("eta", self.eta)
        _check_real("false_alarm_cutoff", self.false_alarm_cutoff, low=0)
        if self.false_alarm_cutoff > 1:
            raise ValueError(
                "false_alarm_cutoff is a fraction in [0, 1]; got "
                f"{self.false_alarm_cutoff!r}."
            )
        for name in ("in_constraint_weight", "ce_tol", "ce_constraint_weight"):
            _check_real(name, getattr(self, name), low=0, strict=True)
        _check_real("lr_lam", self.lr_lam, low=0, strict=True)
        _check_real("out_constraint_weight", self.out_constraint_weight, low=0)
        _check_real("penalty_mult", self.penalty_mult, low=1)
        _check_real("constraint_tol", self.constraint_tol)

    def _reset_stats(self):
        self._stats = [0.0, 0.0, 0]  # sum sigma(phi(s)), sum CE, n ID rows

    def _phi(self, scores):
        weight = self.logistic_regression.weight.to(scores.dtype)
        bias = self.logistic_regression.bias.to(scores.dtype)
        return F.linear(scores[:, None], weight, bias)[:, 0]

    def forward(self, outputs, target):
        """The augmented Lagrangian of a batch.

        Parameters
        ----------
        outputs : torch.Tensor or tuple of torch.Tensor
            Logits of shape ``(n_samples, n_classes)``, or a tuple whose
            first element they are.
        target : torch.Tensor of shape (n_samples,)
            Integer labels; ``target < 0`` marks an outlier row.

        Returns
        -------
        loss : torch.Tensor
            A scalar.
        """
        self._validate_params()
        logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        logits, target = _check_inputs(logits, target)
        is_in = target >= 0
        score = torch.logsumexp(logits, dim=1)
        flagged = torch.sigmoid(self._phi(score))
        accepted = torch.sigmoid(-self._phi(score - self.eta))
        loss_out = _group_mean(accepted, ~is_in)
        ce_rows = _id_cross_entropy(logits, target, is_in)
        loss = self.out_constraint_weight * loss_out
        if is_in.any():
            loss_in = _group_mean(flagged, is_in)
            ce = _group_mean(ce_rows, is_in)
            lam, lam2 = self.lam.to(logits.dtype), self.lam2.to(logits.dtype)
            loss = loss + _penalty(
                loss_in - self.false_alarm_cutoff, lam, self.in_penalty
            )
            loss = loss + _penalty(
                ce - self.ce_tol * self.full_train_loss, lam2, self.ce_penalty
            )
            if torch.is_grad_enabled():
                n = int(is_in.sum())
                self._stats[0] += float(loss_in.detach()) * n
                self._stats[1] += float(ce.detach()) * n
                self._stats[2] += n
        return loss

    @torch.no_grad()
    def update_hyperparameters(self, logits=None, target=None):
        r"""Update the multipliers and penalty weights (once per epoch).

        With the constraint values :math:`c = \mathcal{L}_\text{in} -
        \alpha` and :math:`c_2 = \operatorname{CE}_\text{in} - \tau
        \mathcal{L}_0` on the ID data: :math:`\lambda \leftarrow \lambda +
        \rho c` if :math:`\beta c + \lambda \ge 0`, else :math:`\lambda
        \leftarrow \lambda - \rho \lambda / \beta`; :math:`\beta \leftarrow
        \kappa \beta` if :math:`c > \epsilon` (likewise for
        :math:`\lambda_2, \beta_2`).

        Parameters
        ----------
        logits : torch.Tensor of shape (n_samples, n_classes), default=None
            Logits of the ID training rows (evaluation mode, as the
            reference). None uses the ID rows of the training batches
            since the last update.
        target : torch.Tensor of shape (n_samples,), default=None
            Their labels (all >= 0).
        """
        self._validate_params()
        if logits is not None:
            logits, target = _check_inputs(torch.as_tensor(logits), target)
            if len(target) == 0 or bool((target < 0).any()):
                raise ValueError(
                    "update_hyperparameters needs ID rows only (labels >= 0)."
                )
            score = torch.logsumexp(logits, dim=1)
            logits = logits.to(self.lam.device)
            flagged = float(torch.sigmoid(self._phi(score.to(self.lam.device))).mean())
            ce = float(F.cross_entropy(logits, target.to(self.lam.device)))
        else:
            total_flagged, total_ce, n = self._stats
            if n == 0:
                raise ValueError(
                    "No ID training rows were seen since the last update: pass the "
                    "ID logits and labels, or call it after a training epoch."
                )
            flagged, ce = total_flagged / n, total_ce / n
        self._reset_stats()
        c_in = flagged - float(self.false_alarm_cutoff)
        c_ce = ce - float(self.ce_tol) * float(self.full_train_loss)
        for violation, lam, weight in (
            (c_in, self.lam, self.in_penalty),
            (c_ce, self.lam2, self.ce_penalty),
        ):
            if violation * float(weight) + float(lam) >= 0:
                lam += self.lr_lam * violation
            else:
                lam -= self.lr_lam * float(lam) / float(weight)
            if violation > self.constraint_tol:
                weight *= self.penalty_mult


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
