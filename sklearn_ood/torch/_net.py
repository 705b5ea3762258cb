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
from skorch import NeuralNetClassifier
from skorch.callbacks import (
    EpochScoring,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
)
from skorch.dataset import ValidSplit, get_len
from skorch.utils import is_dataset, to_numpy, to_tensor
from torch import nn
from torch.utils.data import DataLoader, Subset

from sklearn_ood.detectors._softmax import logsumexp64, max_softmax64
from sklearn_ood.torch._inputs import _check_labels
from sklearn_ood.torch._losses import IDCrossEntropyLoss, UnleashingMaskLoss
from sklearn_ood.torch._outlier_batches import (
    _OutlierMixer,
    _OutlierPool,
    _WithOutliers,
)

__all__ = ["OODNeuralNetClassifier"]

_OOD_SCORES = ("energy", "msp")
# skorch's classifier default, as a module-level singleton (stateless)
_DEFAULT_SPLIT = ValidSplit(5, stratified=True)


class OODNeuralNetClassifier(NeuralNetClassifier):
    """Skorch classifier trained with auxiliary outliers and an OOD loss.

    A :class:`skorch.NeuralNetClassifier` for OOD training and fine-tuning
    (energy regularisation, outlier exposure, Unleashing Mask). Auxiliary
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

    References
    ----------
    .. [1] D. Hendrycks, M. Mazeika and T. Dietterich, "Deep Anomaly
       Detection with Outlier Exposure", ICLR 2019.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Zhu et al., "Unleashing Mask: Explore the Intrinsic
       Out-of-Distribution Detection Capability", ICML 2023.

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
        self.random_state = random_state

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
        try:
            return super().partial_fit(X, y, classes=classes, **fit_params)
        finally:
            del self._fit_outliers_

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
        return _OutlierMixer(loader, pool, self.outlier_ratio)

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
        if y_pred.ndim != 2 or y_pred.shape[1] != n_classes:
            raise ValueError(
                f"The module returns outputs of shape {tuple(y_pred.shape)}, but y "
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


@contextlib.contextmanager
def _seeded_rng(seed, devices):
    """``torch.random.fork_rng`` with the generator seeded inside."""
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
