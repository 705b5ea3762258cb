"""An OOD-aware skorch classifier: outlier batches, ID-only labels.

:class:`OODNeuralNetClassifier` is a skorch ``NeuralNetClassifier`` that
trains (usually fine-tunes) a torch classifier with an OOD loss, mixing
auxiliary outliers into every training batch at a fixed ratio (the batches
are built in ``_outlier_batches.py``), and fixes the skorch defaults that
break when outliers are present. The reference schedules are in
``_presets.py`` (:func:`~sklearn_ood.torch.finetune_preset`).
"""

import contextlib
import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
)
from skorch import NeuralNetClassifier
from skorch.callbacks import (
    EpochScoring,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
)
from skorch.dataset import ValidSplit, get_len, unpack_data
from skorch.utils import is_dataset, to_numpy, to_tensor
from torch import nn
from torch.utils.data import DataLoader, Subset

from sklearn_ood.detectors._softmax import logsumexp64, max_softmax64
from sklearn_ood.torch._inputs import _check_labels
from sklearn_ood.torch._layers import _resolve_layers
from sklearn_ood.torch._losses import IDCrossEntropyLoss, UnleashingMaskLoss
from sklearn_ood.torch._outlier_batches import (
    _OutlierMixer,
    _OutlierPool,
    _ThompsonMiner,
    _WithOutliers,
)
from sklearn_ood.torch._utils import _eval_mode

__all__ = ["OODNeuralNetClassifier"]

_OOD_SCORES = ("energy", "msp")
# skorch's classifier default, as a module-level singleton (stateless)
_DEFAULT_SPLIT = ValidSplit(5, stratified=True)

# POEM's outlier mining and DOE's weight perturbation: the options' parameters
# (set as outlier_mining__* / weight_perturbation__*), defaults and constraints.
_POEM_DEFAULTS = {
    "n_selected": None,
    "prior_variance": 20.0,
    "noise_variance": 0.5,
    "target_value": 3.9,
    "buffer_size": 4,
    "layer": "penultimate",
}
_POEM_CONSTRAINTS = {
    "n_selected": [Interval(Integral, 1, None, closed="left"), None],
    "prior_variance": [Interval(Real, 0, None, closed="neither")],
    "noise_variance": [Interval(Real, 0, None, closed="neither")],
    "target_value": [Interval(Real, 0, None, closed="neither")],
    "buffer_size": [Interval(Integral, 1, None, closed="left")],
    "layer": [str],
}
_DOE_DEFAULTS = {
    "gamma": (1e-1, 1e-2, 1e-3, 1e-4),
    "warmup": 5,
    "smoothing": 0.6,
    "max_grad_norm": 1.0,
}
_DOE_CONSTRAINTS = {
    "gamma": [Interval(Real, 0, None, closed="neither"), tuple, list],
    "warmup": [Interval(Integral, 0, None, closed="left")],
    "smoothing": [Interval(Real, 0, 1, closed="both")],
    "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
}
_OPTIONS = {
    "outlier_mining": ("poem", _POEM_DEFAULTS, _POEM_CONSTRAINTS),
    "weight_perturbation": ("doe", _DOE_DEFAULTS, _DOE_CONSTRAINTS),
}


class OODNeuralNetClassifier(NeuralNetClassifier):
    r"""Skorch classifier trained with auxiliary outliers and an OOD loss.

    A :class:`skorch.NeuralNetClassifier` for OOD training and fine-tuning
    (energy regularisation, outlier exposure, Unleashing Mask, and, as
    options, POEM's outlier mining and DOE's weight perturbation). Auxiliary
    outliers are given either as rows of ``X`` with a negative label
    (``y = -1``) or as a separate set, ``fit(X, y, outliers=X_aux)``, and
    are mixed into every training batch at a fixed ratio: each batch holds
    ``n`` shuffled ID rows followed by ``round(outlier_ratio * n)`` outlier
    rows labelled ``-1``, one forward pass for both as in the reference code
    (batch-norm statistics are shared). The criterion is called as
    ``criterion(logits, target)``, ``target < 0`` marking the outlier rows.

    The outlier rows are drawn from a pool holding the ``y = -1`` rows of
    ``X`` and the ``outliers`` set, neither copied nor concatenated to the
    ID data: a random permutation of the pool, consumed batch after batch,
    reshuffled when exhausted and at every epoch. An epoch ends with the
    last ID batch (the outliers are cycled, as ``zip`` over the ID loader
    and a repeating outlier loader would). ``outliers`` is an argument of
    ``fit``, not a constructor parameter, so ``sklearn.base.clone`` never
    copies it and the fitted net keeps no reference to it.

    Differences from ``NeuralNetClassifier``'s defaults:

    * ``classes_`` holds the ID classes only (negative labels are
      outliers); any integer labels (e.g. 3, 7, 12, of any integer dtype)
      are encoded as ``0 .. C-1`` for the criterion, in the order of
      ``classes_``, and ``predict`` returns the original labels;
    * ``predict_proba`` is the softmax of the logits over the ID classes,
      whatever the criterion (``predict_nonlinearity="auto"``);
    * the validation split (``train_split``) is drawn from the ID rows only,
      so ``valid_loss`` and ``valid_acc`` see no outlier;
    * training batches are shuffled (``iterator_train__shuffle=True``);
    * the module instance passed in is deep-copied when the net is
      initialised, so the caller's pretrained model is never modified and
      every ``fit`` starts from its original weights;
    * ``score`` is the accuracy over the ID rows (``y >= 0``) and
      ``score_samples`` an OOD score (higher = more in-distribution), so
      that :func:`~sklearn_ood.metrics.ood_scorer` and ``GridSearchCV``
      work on the net and on a ``Pipeline`` ending in it.

    Parameters
    ----------
    module : torch.nn.Module instance or class
        The classifier, returning logits of shape ``(n_samples, C)``. An
        instance (a pretrained model) is deep-copied into ``module_`` at
        each initialisation; a class is instantiated with the
        ``module__*`` parameters.
    criterion : torch.nn.Module class or instance, default=IDCrossEntropyLoss
        The loss, called as ``criterion(logits, target)`` with
        ``target < 0`` on the outlier rows, e.g.
        :class:`~sklearn_ood.torch.EnergyRegularizedLoss` or
        :class:`~sklearn_ood.torch.OutlierExposureLoss`. Its parameters are
        set with ``criterion__*`` (e.g. ``criterion__alpha=0.5``), which a
        grid search can tune. The default,
        :class:`~sklearn_ood.torch.IDCrossEntropyLoss`, is the cross-entropy
        over the ID rows (outlier rows contribute nothing).
    train_split : callable or None, default=ValidSplit(5, stratified=True)
        The internal validation split of skorch, applied to the ID rows only
        (outlier rows always go to training). None trains on every row, as
        the fine-tuning presets do.
    classes : array-like of int or None, default=None
        The ID class labels (non-negative integers), in the order of the
        logits. None infers them from ``y`` in ``fit``: the sorted unique
        non-negative labels.
    outlier_ratio : float, default=2.0
        Outlier rows per ID row in each training batch: a batch of ``n`` ID
        rows gets ``max(1, round(outlier_ratio * n))`` outlier rows. The
        energy and OE reference code use 2 (128 ID and 256 outlier rows);
        the Unleashing Mask code uses 1. Ignored when there are no
        outliers.
    ood_score : {"energy", "msp"}, default="energy"
        What ``score_samples`` returns: ``"energy"`` is the negative free
        energy of the logits, ``logsumexp_c f_c(x)`` (Liu et al., 2020),
        ``"msp"`` the maximum softmax probability (Hendrycks and Gimpel,
        2017). Both are higher for more in-distribution inputs.
    outlier_mining : {None, "poem"}, default=None
        ``"poem"`` draws each epoch's outliers from the part of the pool
        closest to the ID / outlier boundary of a Bayesian linear model on
        the features, by Thompson sampling (POEM [4]_, see Notes); pair it
        with :class:`~sklearn_ood.torch.EnergyRegularizedLoss` (POEM's loss)
        or ``UnleashingMaskLoss(outlier_loss="energy")``. Its parameters are
        set as ``outlier_mining__<name>``, defaults in brackets:
        ``n_selected`` (None: ``round(outlier_ratio * n_id)``, the outliers
        one epoch uses) rows kept per epoch; ``prior_variance``
        :math:`\sigma^2` (20.0); ``noise_variance`` :math:`\sigma_n^2`
        (0.5); ``target_value`` :math:`c` (3.9), the regression target,
        :math:`-c` for ID rows and :math:`+c` for outliers;
        ``buffer_size`` :math:`B` (4), the epochs of outliers the posterior
        is fitted on; ``layer`` (``"penultimate"``), the features :math:`z`,
        any layer name of :class:`~sklearn_ood.torch.TorchFeatureTransformer`.
        The pool should be larger than ``n_selected`` (the reference mines
        50,000 of 400,000 images); with a pool no larger, nothing is mined.
    weight_perturbation : {None, "doe"}, default=None
        ``"doe"`` trains on the outliers under a worst-case perturbation of
        the weights (DOE [5]_, see Notes); pair it with
        ``OutlierExposureLoss(alpha=1.0)`` (DOE's weight) or
        ``UnleashingMaskLoss(outlier_loss="oe", alpha=1.0)``. Its
        parameters, ``weight_perturbation__<name>``: ``gamma`` (``(0.1,
        0.01, 0.001, 0.0001)``), the perturbation size :math:`\gamma`, a
        number or a sequence drawn from uniformly at each batch;
        ``warmup`` (5), the epochs of plain training with the criterion
        first (counted in ``history_``, so ``partial_fit`` continues the
        count); ``smoothing`` :math:`\rho` (0.6), the weight of the previous
        direction in the moving average of directions; ``max_grad_norm``
        (1.0), the gradient-norm clipping of every step (None: none).
    random_state : int, RandomState instance or None, default=None
        Seeds torch's global random generator inside ``fit`` (module
        initialisation when ``module`` is a class, dropout, shuffling and
        outlier sampling), so that seeded CPU runs are reproducible. The
        generator's state is saved before and restored after ``fit``, so
        the caller's random stream is not disturbed. None uses the global
        generator as it is; ``partial_fit`` never seeds.
    **kwargs
        Every other parameter of :class:`skorch.NeuralNet`: ``optimizer``,
        ``lr``, ``max_epochs``, ``batch_size`` (the number of ID rows per
        training batch), ``callbacks``, ``device``, ``verbose``,
        ``optimizer__*``, ``iterator_train__*``, etc., with skorch's
        defaults (SGD, ``lr=0.01``, ``max_epochs=10``, ``batch_size=128``).

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained module: a plain ``nn.Module`` that plugs into
        :class:`~sklearn_ood.torch.TorchFeatureTransformer` and the model
        detectors.
    criterion_ : torch.nn.Module
        The initialised criterion.
    classes_ : ndarray of shape (n_classes,)
        The ID class labels; column ``j`` of ``predict_proba`` is
        ``classes_[j]``.
    history_ : skorch.History
        skorch's training history (``train_batch_size`` counts the outlier
        rows of each batch too).

    See Also
    --------
    finetune_preset : The reference fine-tuning schedules as parameters.
    TorchFeatureTransformer : Logits or features of ``net.module_``.
    sklearn_ood.detectors.Energy : Energy score of precomputed logits.

    Notes
    -----
    ``X`` is an array, a tensor or a dict of them (anything a
    ``skorch.dataset.Dataset`` takes), with ``y`` given; a torch
    ``Dataset`` is refused, because the net must see the labels to route
    the outlier rows. ``outliers`` has the same form and sample shape as
    ``X``; it is converted batch by batch to the dtype of the ID batch.
    In a ``Pipeline``, prefer outlier rows with ``y = -1``: they go through
    the earlier steps like the ID rows, whereas ``fit(X, y,
    net__outliers=X_aux)`` hands ``X_aux`` to the net untransformed.

    Fine-tuning a pretrained model with the energy and OE reference
    schedule::

        net = OODNeuralNetClassifier(
            model, criterion=EnergyRegularizedLoss,
            **finetune_preset("energy_oe"),
        ).fit(X_train, y_train, outliers=X_aux)

    **POEM** (``outlier_mining="poem"``; Ming, Fan & Li, 2022). At the
    start of each epoch a Bayesian linear regression :math:`t = \beta^T
    z(x) + \varepsilon`, prior :math:`\beta \sim N(0, \sigma^2 I)`,
    noise :math:`\varepsilon \sim N(0, \sigma_n^2)`, is fitted on the
    features of the ID training rows (target :math:`-c + \eta`) and of the
    outliers used in the last :math:`B` epochs (:math:`+c + \eta`; one
    draw :math:`\eta \sim N(0, \sigma_n^2)` per fit, as in the
    reference); the ID rows count once per buffered epoch, as the
    reference repeats them. With :math:`A = Z^T Z / \sigma_n^2 + I /
    \sigma^2`, the posterior is

    .. math::

        \beta \mid Z, t \sim N\big(A^{-1} Z^T t / \sigma_n^2,\;
            \sigma^2 A^{-1}\big),

    where :math:`\sigma^2 A^{-1}` is the reference code's covariance (the
    textbook posterior covariance is :math:`A^{-1}`, narrower by a factor
    :math:`\sigma^2 = 20`). One :math:`\beta_s` is drawn (Thompson
    sampling; the first epoch draws from the prior, with a mean of
    :math:`N(0, 0.01^2)` entries as in the reference), and the epoch's
    outliers are the ``n_selected`` pool rows of smallest :math:`|\beta_s^T
    z(x)|`, the closest to the decision boundary. Features are computed by
    the current model in eval mode, in float64 for the regression. The
    Bayesian model starts from its prior at each call of ``fit`` or
    ``partial_fit`` (the outliers may change between calls). Unlike the
    reference, which scans 200 fresh batches of a stream each epoch, the
    whole pool is scored every epoch.

    **DOE** (``weight_perturbation="doe"``; Wang et al., 2023). DOE
    replaces OE's outlier term by its value under a worst-case perturbation
    :math:`P` of the weights, an implicit transformation of the outliers:
    :math:`\min_\theta \mathcal{L}_\text{in}(\theta) +
    \mathcal{L}_\text{out}(\theta + P)`. During the first ``warmup``
    epochs each batch takes one plain step on the criterion (the
    reference's :math:`\operatorname{CE} + 1 \cdot \operatorname{OE}`
    with ``alpha=1.0``). Afterwards each batch, as in the authors' code:

    1. draws :math:`\gamma` from ``gamma``; computes on the outlier rows
       :math:`R = g^2`, :math:`g = \operatorname{mean}_j \big(\bar f_j -
       \sum_c \operatorname{softmax}_c(f_j) f_{jc}\big)`, the derivative
       at :math:`s = 1` of the negated OE loss of the logits scaled by
       :math:`s` (dropout off, batch-norm statistics untouched); the new
       direction of each weight tensor :math:`W` (linear and convolution
       weights; biases and norm layers are not perturbed) is
       :math:`D = -\nabla_W R \, \lVert W \rVert / (\lVert \nabla_W R
       \rVert + 10^{-20})` (one step of learning rate 1, rescaled to the
       weight's norm), averaged with the previous one,
       :math:`P \leftarrow \rho P + (1 - \rho) D` (the first direction
       is taken as it is);
    2. adds :math:`\gamma P` to the weights, takes an optimizer step on
       the criterion of the outlier rows alone (the OE term) and subtracts
       :math:`\gamma P` again;
    3. takes an optimizer step on the criterion of the ID rows alone (the
       cross-entropy, flooded with
       :class:`~sklearn_ood.torch.UnleashingMaskLoss`).

    Each forward pass holds the whole batch (batch-norm statistics over ID
    and outlier rows); every step's gradient norm is clipped at
    ``max_grad_norm``, warm-up included. ``train_loss`` records the sum of
    the two terms. The learning-rate scheduler steps once per batch, as in
    the reference. Differences from the authors' code: the direction is
    computed on the net's module itself rather than on a dropout-free copy
    (same value), and the direction's average restarts at each call of
    ``fit`` or ``partial_fit``. pytorch-ood 0.4.0 has neither POEM nor DOE.

    References
    ----------
    .. [1] D. Hendrycks, M. Mazeika and T. Dietterich, "Deep Anomaly
       Detection with Outlier Exposure", ICLR 2019.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Zhu et al., "Unleashing Mask: Explore the Intrinsic
       Out-of-Distribution Detection Capability", ICML 2023.
    .. [4] Y. Ming, Y. Fan and Y. Li, "POEM: Out-of-Distribution Detection
       with Posterior Sampling", ICML 2022.
    .. [5] Q. Wang, J. Ye, F. Liu, Q. Dai, M. Kalander, T. Liu, J. Hao and
       B. Han, "Out-of-distribution Detection with Implicit Outlier
       Transformation", ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import OODNeuralNetClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 4)).astype(np.float32)
    >>> y = np.repeat([3, 7], 20)
    >>> X_aux = rng.uniform(-3, 3, size=(30, 4)).astype(np.float32)
    >>> net = OODNeuralNetClassifier(
    ...     torch.nn.Linear(4, 2), max_epochs=2, batch_size=8,
    ...     train_split=None, verbose=0, random_state=0,
    ... ).fit(X, y, outliers=X_aux)
    >>> net.classes_
    array([3, 7])
    >>> net.predict(X[:3]).shape
    (3,)
    >>> np.allclose(net.predict_proba(X[:3]).sum(axis=1), 1.0)
    True
    """

    def __init__(
        self,
        module,
        criterion=IDCrossEntropyLoss,
        train_split=_DEFAULT_SPLIT,
        classes=None,
        outlier_ratio=2.0,
        ood_score="energy",
        outlier_mining=None,
        weight_perturbation=None,
        random_state=None,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion=criterion,
            train_split=train_split,
            classes=classes,
            **kwargs,
        )
        self.outlier_ratio = outlier_ratio
        self.ood_score = ood_score
        self.outlier_mining = outlier_mining
        self.weight_perturbation = weight_perturbation
        self.random_state = random_state

    # outlier_mining__* and weight_perturbation__* are routed by prefix.
    prefixes_ = [*NeuralNetClassifier.prefixes_, *_OPTIONS]

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            (
                "valid_acc",
                EpochScoring(
                    _encoded_accuracy, name="valid_acc", lower_is_better=False
                ),
            ),
            ("print_log", PrintLog()),
        ]

    # ------------------------------------------------------------------ init

    def initialize_module(self):
        """Initialise ``module_``: a deep copy of an instance, or a new one.

        Returns
        -------
        self : OODNeuralNetClassifier
            The net, with ``module_`` set.
        """
        kwargs = self.get_params_for("module")
        module = self.module
        if isinstance(module, nn.Module):
            module = type(module)(**kwargs) if kwargs else copy.deepcopy(module)
        else:
            module = module(**kwargs)
        self.module_ = module
        return self

    # ------------------------------------------------------------------- fit

    def fit(self, X, y, outliers=None, **fit_params):
        """Initialise the net and train it on ID rows and outliers.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Training inputs: ID rows and, optionally, auxiliary outlier rows
            (those with ``y < 0``).
        y : array-like of int of shape (n_samples,)
            Class labels (any non-negative integers) for the ID rows, a
            negative label (``-1``) for the outlier rows.
        outliers : array-like, tensor or dict of them, default=None
            A separate set of auxiliary outliers (no labels), pooled with
            the ``y < 0`` rows of ``X`` and mixed into every training
            batch at ``outlier_ratio``. It is never stored on the net.
        **fit_params : dict
            Passed on to skorch (the module's ``forward`` and the split).

        Returns
        -------
        self : OODNeuralNetClassifier
            The fitted net.
        """
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.__dict__.pop("classes_inferred_", None)
                self.initialize()
            self.partial_fit(
                X, y, outliers=outliers, _routing_method="fit", **fit_params
            )
        return self

    def partial_fit(self, X, y, classes=None, outliers=None, **fit_params):
        """Train the net further, without re-initialising it.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Training inputs (ID rows and rows with ``y < 0``).
        y : array-like of int of shape (n_samples,)
            Class labels for the ID rows, ``-1`` for outlier rows. Labels
            not seen by the first call raise a ``ValueError`` unless
            ``classes`` was set at construction.
        classes : None
            Unused; kept for scikit-learn compatibility (set the
            ``classes`` parameter of the net instead).
        outliers : array-like, tensor or dict of them, default=None
            A separate set of auxiliary outliers, as in :meth:`fit`.
        **fit_params : dict
            Passed on to skorch (the module's ``forward`` and the split).

        Returns
        -------
        self : OODNeuralNetClassifier
            The trained net.
        """
        if outliers is not None:
            if is_dataset(outliers):
                raise ValueError(
                    "outliers must be an array, a tensor or a dict of them, not a "
                    "torch Dataset."
                )
            if get_len(outliers) == 0:
                outliers = None
            elif hasattr(X, "shape") and hasattr(outliers, "shape"):
                if tuple(X.shape[1:]) != tuple(outliers.shape[1:]):
                    raise ValueError(
                        "outliers must have the sample shape of X: got "
                        f"{tuple(outliers.shape[1:])} and {tuple(X.shape[1:])}."
                    )
        self._fit_outliers_ = outliers
        self._perturbation = None
        try:
            return super().partial_fit(X, y, classes=classes, **fit_params)
        finally:
            del self._fit_outliers_, self._perturbation

    def _seeded(self):
        """Context: torch's RNG seeded from ``random_state``, restored after."""
        if self.random_state is None:
            return contextlib.nullcontext()
        if isinstance(self.random_state, Integral):
            seed = int(self.random_state)
        else:
            rng = check_random_state(self.random_state)
            seed = int(rng.randint(np.iinfo(np.int32).max))
        device = torch.device(self.device) if self.device else torch.device("cpu")
        devices = []
        if device.type == "cuda":
            index = device.index
            devices = [torch.cuda.current_device() if index is None else index]
        return _seeded_rng(seed, devices)

    def check_data(self, X, y):
        """Check ``X``, ``y`` and the parameters; infer the ID classes.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Training inputs.
        y : array-like of int of shape (n_samples,)
            Labels; negative for outliers.
        """
        if is_dataset(X):
            raise ValueError(
                f"{type(self).__name__} needs the labels to route the outlier rows: "
                "pass X as an array, a tensor or a dict of them and y as an array "
                "(negative labels for outliers), not a torch Dataset."
            )
        if y is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs y: class labels >= 0 for the ID "
                "rows and -1 for auxiliary outlier rows."
            )
        ratio = self.outlier_ratio
        if not isinstance(ratio, Real) or isinstance(ratio, bool) or not ratio > 0:
            raise ValueError(
                f"outlier_ratio must be a number > 0 (outlier rows per ID row in a "
                f"batch, e.g. 2); got {ratio!r}."
            )
        if self.ood_score not in _OOD_SCORES:
            raise ValueError(
                f"ood_score must be one of {_OOD_SCORES}; got {self.ood_score!r}."
            )
        for option in _OPTIONS:
            self._option_params(option)
        y = _check_labels(y)
        if get_len(X) != len(y):
            raise ValueError(
                f"X and y have different numbers of samples: {get_len(X)} and {len(y)}."
            )
        if self.classes is not None:
            classes = _check_labels(self.classes, name="classes")
            if len(classes) == 0 or np.any(classes < 0):
                raise ValueError(
                    "classes must list the ID class labels, non-negative integers; "
                    f"got {self.classes!r}."
                )
            if len(np.unique(classes)) != len(classes):
                raise ValueError(f"classes has repeated labels: {self.classes!r}.")
        elif not hasattr(self, "classes_inferred_"):
            id_labels = np.unique(y[y >= 0])
            if len(id_labels) == 0:
                raise ValueError(
                    "y has no ID row (every label is negative); at least one class "
                    "label >= 0 is needed."
                )
            self.classes_inferred_ = id_labels

    def _encode(self, y):
        """``y`` as int64 codes ``0 .. C-1`` in ``classes_`` order, -1 outliers."""
        y = _check_labels(y)
        classes = np.asarray(self.classes_)
        codes = np.full(len(y), -1, dtype=np.int64)
        is_id = y >= 0
        order = np.argsort(classes, kind="stable")
        sorted_classes = classes[order]
        pos = np.searchsorted(sorted_classes, y[is_id])
        pos = np.minimum(pos, len(classes) - 1)
        found = sorted_classes[pos] == y[is_id]
        if not np.all(found):
            unknown = np.unique(y[is_id][~found])
            raise ValueError(
                f"y has labels {unknown.tolist()} that are not among the classes "
                f"{classes.tolist()}; list every ID class in `classes`, and give "
                "outliers a negative label."
            )
        codes[is_id] = order[pos]
        return codes

    def get_split_datasets(self, X, y=None, **fit_params):
        """Training and validation datasets; outliers go to training only.

        The ID rows are split by ``train_split`` (stratified on the encoded
        labels); the outlier rows (``y < 0``) and the ``outliers`` set form
        the pool mixed into the training batches.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Training inputs.
        y : array-like of int of shape (n_samples,)
            Labels; negative for outliers.
        **fit_params : dict
            Passed to ``train_split``.

        Returns
        -------
        dataset_train : torch.utils.data.Dataset
            The ID training rows (with the outlier pool attached).
        dataset_valid : torch.utils.data.Dataset or None
            The ID validation rows, or None without ``train_split``.
        """
        codes = self._encode(y)
        dataset = self.get_dataset(X, codes)
        is_out = codes < 0
        id_rows = np.flatnonzero(~is_out)
        id_data = dataset if not is_out.any() else Subset(dataset, id_rows)
        if self.train_split:
            dataset_train, dataset_valid = self.train_split(
                id_data, codes[id_rows], **fit_params
            )
        else:
            dataset_train, dataset_valid = id_data, None
        parts = []
        if is_out.any():
            parts.append((X, np.flatnonzero(is_out)))
        outliers = getattr(self, "_fit_outliers_", None)
        if outliers is not None:
            parts.append((outliers, None))
        if parts:
            dataset_train = _WithOutliers(dataset_train, _OutlierPool(parts))
        else:
            for option in _OPTIONS:
                if getattr(self, option) is not None:
                    raise ValueError(
                        f"{option}={getattr(self, option)!r} trains on auxiliary "
                        "outliers, but there are none: pass them with fit(X, y, "
                        "outliers=X_aux) or as rows of X with y = -1."
                    )
        return dataset_train, dataset_valid

    def get_iterator(self, dataset, training=False):
        """Batches of ``dataset``; training batches get their outlier rows.

        Parameters
        ----------
        dataset : torch.utils.data.Dataset
            The data to iterate over.
        training : bool, default=False
            Whether to use ``iterator_train`` (shuffled by default, with the
            outliers mixed in) or ``iterator_valid``.

        Returns
        -------
        iterator : iterable
            The batches.
        """
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        iterator = self.iterator_train if training else self.iterator_valid
        pool = None
        if isinstance(dataset, _WithOutliers):
            dataset, pool = dataset.dataset, dataset.pool
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training and isinstance(iterator, type) and issubclass(iterator, DataLoader):
            kwargs.setdefault("shuffle", True)
        loader = iterator(dataset, **kwargs)
        if pool is None or not training:
            return loader
        miner = None
        if self.outlier_mining is not None:
            params = self._option_params("outlier_mining")
            layer = params.pop("layer")
            miner = _ThompsonMiner(
                lambda batches: self._features(batches, layer), **params
            )
        return _OutlierMixer(loader, pool, self.outlier_ratio, miner=miner)

    # ---------------------------------------------------- POEM and DOE options

    def set_params(self, **params):
        """Set parameters; ``outlier_mining*`` / ``weight_perturbation*`` too.

        The options' parameters are plain values read at each ``fit``: they
        are set without re-initialising anything, also on a fitted net.

        Parameters
        ----------
        **params : dict
            Parameter names and values.

        Returns
        -------
        self : OODNeuralNetClassifier
            The net.
        """
        ours = {k: v for k, v in params.items() if k.split("__", 1)[0] in _OPTIONS}
        for key, value in ours.items():
            setattr(self, key, value)
            if "__" in key:
                self._params_to_validate.add(key)
        rest = {k: v for k, v in params.items() if k not in ours}
        if rest or not ours:
            super().set_params(**rest)
        return self

    def _option_params(self, option):
        """The checked parameters of ``outlier_mining`` / ``weight_perturbation``.

        Returns the option's defaults updated with its ``option__*``
        parameters (None when the option is off); raises a ValueError for an
        unknown option value or parameter, or a parameter out of range.
        """
        name, defaults, constraints = _OPTIONS[option]
        value = getattr(self, option)
        given = self.get_params_for(option)
        if value is None:
            if given:
                raise ValueError(
                    f"{option}__{next(iter(given))} is set but {option} is None; "
                    f'set {option}="{name}" to use it.'
                )
            return None
        if value != name:
            raise ValueError(f'{option} must be None or "{name}"; got {value!r}.')
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(
                f"Unknown parameter {option}__{unknown[0]}; the parameters of "
                f'{option}="{name}" are '
                + ", ".join(f"{option}__{key}" for key in defaults)
                + "."
            )
        params = {**defaults, **given}
        try:
            validate_parameter_constraints(
                constraints, params, f'{option}="{name}" (set as {option}__<name>)'
            )
        except InvalidParameterError as exc:
            raise ValueError(str(exc)) from None
        if option == "weight_perturbation":
            gamma = params["gamma"]
            gammas = tuple(gamma) if isinstance(gamma, (tuple, list)) else (gamma,)
            if not gammas or not all(
                isinstance(g, Real) and not isinstance(g, bool) and g > 0
                for g in gammas
            ):
                raise ValueError(
                    f"{option}__gamma must be a number > 0 or a non-empty sequence "
                    f"of them; got {gamma!r}."
                )
            params["gamma"] = gammas
        return params

    def _features(self, batches, layer):
        """Float64 features at ``layer`` of ``module_`` (eval mode, no grad)."""
        module = self.module_
        name, where = _resolve_layers(module, [layer])[layer]
        target = module.get_submodule(name) if name else module
        captured = []
        if where == "input":
            handle = target.register_forward_pre_hook(
                lambda mod, args: captured.append(args[0])
            )
        else:
            handle = target.register_forward_hook(
                lambda mod, args, out: captured.append(
                    out[0] if isinstance(out, tuple) else out
                )
            )
        chunks = []
        try:
            with _eval_mode(module), torch.no_grad():
                for Xb in batches:
                    captured.clear()
                    self.infer(Xb)
                    chunks.append(captured[-1].flatten(1).double().cpu().numpy())
        finally:
            handle.remove()
        return np.concatenate(chunks)

    def train_step(self, batch, **fit_params):
        """One training step; with ``weight_perturbation="doe"``, DOE's step.

        Parameters
        ----------
        batch : tuple
            The batch ``(X, y)``, outlier rows labelled -1.
        **fit_params : dict
            Passed to the module's ``forward``.

        Returns
        -------
        step : dict
            ``{"loss": loss, "y_pred": y_pred}``; for a DOE step after the
            warm-up, the loss is the sum of its outlier and ID terms.
        """
        if self.weight_perturbation is None:
            return super().train_step(batch, **fit_params)
        params = self._option_params("weight_perturbation")
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_true = to_tensor(yi, device=self.device)
        is_out = y_true < 0
        epoch = len(self.history) - 1
        if epoch < params["warmup"] or not bool(is_out.any()):
            y_pred, loss = self._doe_update(Xi, y_true, None, params, **fit_params)
            return {"loss": loss, "y_pred": y_pred}
        gammas = params["gamma"]
        gamma = gammas[int(torch.randint(len(gammas), (1,)))]
        new = _doe_direction(self, Xi, is_out, **fit_params)
        old = getattr(self, "_perturbation", None)
        if old is None:
            self._perturbation = new
        else:
            s = params["smoothing"]
            self._perturbation = {k: s * old[k] + (1 - s) * new[k] for k in new}
        weights = dict(self.module_.named_parameters())
        with torch.no_grad():
            for key, direction in self._perturbation.items():
                weights[key].add_(direction, alpha=gamma)
        try:
            _, loss_out = self._doe_update(Xi, y_true, is_out, params, **fit_params)
        finally:
            with torch.no_grad():
                for key, direction in self._perturbation.items():
                    weights[key].sub_(direction, alpha=gamma)
        y_pred, loss_in = self._doe_update(Xi, y_true, ~is_out, params, **fit_params)
        return {"loss": loss_out.detach() + loss_in.detach(), "y_pred": y_pred}

    def _doe_update(self, Xi, y_true, rows, params, **fit_params):
        """Forward the batch, loss on ``rows`` (all if None), clipped step."""
        self._zero_grad_optimizer()
        y_pred = self.infer(Xi, **fit_params)
        if rows is None:
            loss = self.get_loss(y_pred, y_true, X=Xi, training=True)
        else:
            loss = self.get_loss(
                _take_rows(y_pred, rows), y_true[rows], X=Xi, training=True
            )
        if loss.requires_grad:
            loss.backward()
        learnable = [p for _, p in self.get_all_learnable_params()]
        if params["max_grad_norm"] is not None:
            torch.nn.utils.clip_grad_norm_(learnable, params["max_grad_norm"])
        self.notify(
            "on_grad_computed",
            named_parameters=list(self.get_all_learnable_params()),
            batch=(Xi, y_true),
            training=True,
        )
        self._step_optimizer(None)
        return y_pred, loss

    # --------------------------------------------------------------- predict

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The criterion's loss of a batch; UM floods the training loss only.

        Parameters
        ----------
        y_pred : torch.Tensor
            Logits of the batch.
        y_true : torch.Tensor
            Class codes, -1 for outliers.
        X : object, default=None
            The batch (unused).
        training : bool, default=False
            Whether the loss drives a training step.

        Returns
        -------
        loss : torch.Tensor
            The loss. An :class:`~sklearn_ood.torch.UnleashingMaskLoss`
            constrains (floods) the objective of training steps; the
            validation loss it reports is the unflooded one, so that
            ``valid_loss`` in the history stays comparable across levels (the
            UM repository floods it too, which only changes its logs).
        """
        n_classes = len(self.classes_)
        # A tuple output (logits, features, ...): the logits come first, as
        # for skorch's predict_proba; the criterion gets the whole tuple.
        logits = y_pred[0] if isinstance(y_pred, (tuple, list)) else y_pred
        if logits.ndim != 2 or logits.shape[1] != n_classes:
            raise ValueError(
                f"The module returns logits of shape {tuple(logits.shape)}, but y "
                f"has {n_classes} in-distribution classes {list(self.classes_)}: "
                "its last layer needs one logit per ID class (e.g. "
                f"DigitsCNN(n_classes={n_classes})), in the order of classes_."
            )
        if isinstance(self.criterion_, UnleashingMaskLoss) and not training:
            y_true = to_tensor(y_true, device=self.device)
            return self.criterion_(y_pred, y_true, flood=False)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def _get_predict_nonlinearity(self):
        if self.predict_nonlinearity == "auto":
            self.check_is_fitted()
            return _softmax
        return super()._get_predict_nonlinearity()

    def predict(self, X):
        """Predict the ID class label of each sample.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The most probable class of each sample, a label of ``classes_``
            (never an outlier label).
        """
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]

    def _logits(self, X):
        chunks = []
        for out in self.forward_iter(X, training=False):
            out = out[0] if isinstance(out, tuple) else out
            chunks.append(out)
        return torch.cat(chunks)

    def score_samples(self, X):
        """OOD score of each sample from its logits; higher is more ID.

        ``ood_score="energy"``: ``logsumexp_c f_c(x)``, the negative free
        energy at temperature 1; ``ood_score="msp"``: ``max_c
        softmax(f(x))_c``.

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Inputs.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The scores, float64.
        """
        if self.ood_score not in _OOD_SCORES:
            raise ValueError(
                f"ood_score must be one of {_OOD_SCORES}; got {self.ood_score!r}."
            )
        # The float64 kernels of the Energy and MaxSoftmax detectors.
        logits = to_numpy(self._logits(X))
        if self.ood_score == "energy":
            return logsumexp64(logits)
        return max_softmax64(logits)

    def score(self, X, y, sample_weight=None):
        """Classification accuracy over the ID rows (``y >= 0``).

        Parameters
        ----------
        X : array-like, tensor or dict of them
            Inputs.
        y : array-like of int of shape (n_samples,)
            Labels; rows with a negative label are left out.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The accuracy of ``predict`` on the ID rows.
        """
        y = _check_labels(y)
        keep = y >= 0
        if not keep.any():
            raise ValueError("y has no ID row (label >= 0) to score the accuracy on.")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)[keep]
        y_pred = self.predict(X)
        return accuracy_score(y[keep], y_pred[keep], sample_weight=sample_weight)


def _softmax(logits):
    return torch.softmax(logits, dim=-1)


def _encoded_accuracy(net, X, y):
    """``valid_acc``: accuracy of ``net.predict`` against encoded targets."""
    y = np.asarray(to_numpy(y) if isinstance(y, torch.Tensor) else y)
    keep = y >= 0
    y_pred = net.predict(X)
    return float(np.mean(y_pred[keep] == np.asarray(net.classes_)[y[keep]]))


def _take_rows(y_pred, rows):
    """The rows ``rows`` (a boolean mask) of the output.

    A tuple / list output is sliced part by part; a part that is not one
    row per sample (e.g. a loss's parameters) is passed unchanged.
    """
    if isinstance(y_pred, (tuple, list)):
        return type(y_pred)(_take_rows(part, rows) for part in y_pred)
    if isinstance(y_pred, torch.Tensor) and y_pred.ndim and len(y_pred) == len(rows):
        return y_pred[rows]
    return y_pred


def _doe_surrogate(logits):
    r"""DOE's perturbation objective on the outlier logits ``f``: ``g ** 2``.

    ``g`` is the derivative at :math:`s = 1` of the (negated) OE loss of the
    scaled logits, :math:`\ell(s) = \operatorname{mean}_j (\frac{1}{C}
    \sum_c s f_{jc} - \log \sum_c e^{s f_{jc}})`, i.e. :math:`g =
    \operatorname{mean}_j (\bar f_j - \sum_c \operatorname{softmax}_c(f_j)
    f_{jc})`, written in closed form (the reference differentiates through a
    scale variable with ``create_graph=True``: the same value).
    """
    probs = torch.softmax(logits, dim=1)
    g = (logits.mean(dim=1) - (probs * logits).sum(dim=1)).mean()
    return g * g


def _doe_direction(net, Xi, is_out, **fit_params):
    """DOE's new perturbation direction for the weights of ``net.module_``.

    One gradient step (learning rate 1) on :func:`_doe_surrogate` of the
    outlier rows, taken from the whole batch's forward pass with dropout off
    (the reference's proxy model has no dropout) and batch-norm statistics
    left untouched, rescaled per weight tensor to the norm of that weight:
    ``-grad * ||W|| / (||grad|| + 1e-20)``. Only weight tensors of 2 or more
    dimensions (linear and convolution weights) that require a gradient are
    perturbed, as in the reference (biases and norm layers are not).
    """
    module = net.module_
    weights = {
        name: p
        for name, p in module.named_parameters()
        if p.requires_grad and p.ndim > 1 and "weight" in name.rsplit(".", 1)[-1]
    }
    if not weights:
        return {}
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    dropouts = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training
    ]
    for m in dropouts:
        m.eval()
    try:
        y_pred = net.infer(Xi, **fit_params)
        logits = y_pred[0] if isinstance(y_pred, (tuple, list)) else y_pred
        objective = _doe_surrogate(logits[is_out])
        grads = torch.autograd.grad(
            objective, list(weights.values()), allow_unused=True
        )
    finally:
        for m in dropouts:
            m.train()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    direction = {}
    for (name, w), g in zip(weights.items(), grads):
        if g is None:
            g = torch.zeros_like(w)
        g = g.detach()
        direction[name] = -g * (w.detach().norm() / (g.norm() + 1e-20))
    return direction


@contextlib.contextmanager
def _seeded_rng(seed, devices):
    """``torch.random.fork_rng`` with the generator seeded inside."""
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
