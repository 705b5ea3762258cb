"""A trained torch model as a scikit-learn transformer: logits and features.

:class:`TorchFeatureTransformer` runs a model over its input in batches and
returns what detectors consume: the logits, the penultimate features, or the
pooled outputs of any submodules, several of them from one forward pass.
"""

import contextlib
from collections import OrderedDict
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from sklearn_ood.torch._devices import _place_model
from sklearn_ood.torch._inputs import PROBE_SIZE, _check_input_shape, _ModelInput
from sklearn_ood.torch._layers import (
    LOGITS,
    POOLINGS,
    _check_finite,
    _check_single_calls,
    _feature_hooks,
    _hooked_forward,
    _layer_names,
    _pool_output,
    _resolve_layers,
)
from sklearn_ood.torch._utils import (
    _check_model,
    _clone_sharing_modules,
    _eval_mode,
)

__all__ = ["TorchFeatureTransformer"]


class TorchFeatureTransformer(TransformerMixin, BaseEstimator):
    """Logits or layer features of a trained torch model, as a transformer.

    The model is already trained: ``fit`` learns nothing from the data. It
    checks the model, resolves the layers and runs one small batch to learn
    the feature widths. ``transform`` streams the input through the model in
    batches (eval mode, ``torch.inference_mode``) and returns a float32 array
    of shape ``(n_samples, n_features)`` for a detector::

        Pipeline([("feat", TorchFeatureTransformer(model, layer="penultimate")),
                  ("ood", Mahalanobis())])

    Parameters
    ----------
    model : torch.nn.Module
        The trained model. It is shared, never copied, and never modified
        apart from its placement on ``device`` (see *Notes*).
    layer : str or list of str, default="logits"
        What to extract:

        * ``"logits"``: the model's output;
        * ``"penultimate"``: the *input* of the model's last ``torch.nn.Linear``
          (last in ``model.named_modules()`` order), i.e. the features the
          classification head sees;
        * the name of a submodule, as in ``model.named_modules()`` (e.g.
          ``"layer3"`` or ``"layer3.1.conv2"``): its *output*;
        * a list of the above: all taken from one forward pass (forward
          hooks) and concatenated side by side in the given order.

        ``"logits"`` and ``"penultimate"`` take precedence over submodules
        of the same name. A hooked submodule must run exactly once per
        forward pass (a reused module, e.g. one ``ReLU`` applied twice, is
        ambiguous and refused by ``fit``). When ``"logits"`` is not asked
        for, the forward pass stops as soon as every hooked layer has run.
    pooling : {"avg", "max", "flatten"} or callable, default="avg"
        How a layer output with more than two dimensions becomes one row per
        sample. The string options assume channels first, ``(N, C, *spatial)``
        as in convolutional maps: ``"avg"`` and ``"max"`` reduce over every
        dimension after the second (global average / max pooling, ``C``
        features), ``"flatten"`` keeps everything (``C * prod(spatial)``
        features). For channels-last outputs such as a transformer's
        ``(N, L, C)`` tokens, ``"avg"`` would average over the channels:
        use ``"flatten"``, a callable (e.g. ``lambda t: t[:, 0]`` for the
        class token or ``lambda t: t.mean(1)``), or hook a layer that is
        already 2-D. A callable receives the batch tensor on the device and
        returns ``(N, k)`` (it is applied to outputs with more than two
        dimensions only). 2-D outputs are used as they are; 1-D outputs
        become one column.
    batch_size : int, default=128
        Samples per forward pass (ignored for a ``DataLoader`` input).
    device : "auto", str, torch.device or None, default="auto"
        Where the model runs: ``"auto"`` is CUDA when available, else the
        CPU; or e.g. ``"cpu"``, ``"cuda:1"``, a ``torch.device``. The model
        is moved there in place (``model.to(device)``, as ``nn.Module.to``
        does) and stays there; its weights, ``.grad`` and ``training`` flags
        are left as they were. ``None`` leaves the model where it is and
        sends the inputs to the device of its first parameter.
    amp_dtype : torch.dtype or None, default=None
        Run the forward pass under ``torch.autocast`` with this dtype (e.g.
        ``torch.bfloat16`` or ``torch.float16``) on the device's type.
        Features are cast to float32 after pooling.
    preprocess : callable or None, default=None
        Applied to each input batch once it is on the device (e.g. a
        normalisation), before the model.
    verbose : int, default=0
        Verbosity: 0 is silent; above 0, ``transform`` shows a tqdm progress
        bar on stderr (tqdm is part of the ``torch`` extra; without it there
        is no bar).

    Attributes
    ----------
    feature_blocks_ : OrderedDict of str -> int
        Width of each layer's block of columns, in output order; e.g.
        ``MultiMahalanobis(groups=list(t.feature_blocks_.values()))``.
    layers_ : OrderedDict of str -> (str, str)
        For each block, the submodule name (``""`` is the model itself) and
        whether its ``"input"`` or ``"output"`` is taken; e.g.
        ``{"penultimate": ("fc", "input")}``.
    n_features_out_ : int
        Number of output columns.
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``; ``transform`` refuses another.
    n_features_in_ : int
        Number of features, only for 2-D (tabular) input.

    See Also
    --------
    sklearn_ood.detectors.Mahalanobis : Class-conditional Gaussian on the features.
    sklearn_ood.detectors.Energy : Free energy of the logits.
    MahalanobisPreprocessed : Mahalanobis on a layer after an input step.
    save : Save the fitted transformer without the model's weights.

    Notes
    -----
    **Inputs.** ``X`` is a NumPy array (or array-like of numbers) or a
    ``torch.Tensor`` of any sample shape, at least 2-D (images
    ``(N, C, H, W)``, sequences, tabular rows ``(N, n_features)``), a
    ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, y, ...)``
    (the first element is used), or a ``DataLoader`` (used as it is: its
    batch size, workers and order). ``fit`` records the sample shape in
    ``input_shape_`` and ``transform`` refuses another one with a
    ``ValueError``, as the model detectors do (for a ``DataLoader``, batch by
    batch); a model that fails on ``fit``'s first batch gives a
    ``ValueError`` showing the sample shape it was given.
    Batches are moved to the device one at a time. Floating inputs are cast
    to the model's floating dtype (values beyond its range, e.g. float64
    data above 3.4e38 for a float32 model, are a ``ValueError``). Integer
    and boolean inputs are never converted: they reach the model as they
    are (token ids for an ``nn.Embedding``), and a model that fails on them
    gives a ``ValueError`` saying to convert ``X`` to floating point and
    scale it as at training time (or to do so in ``preprocess``, e.g.
    ``lambda x: x.float() / 255`` for uint8 images). Inputs are not scanned
    for NaN (that would cost a pass over the data), but the extracted
    features are: a NaN or infinite feature raises a ``ValueError`` naming
    the layer.

    **Model state.** With ``device`` set, the model is moved there in place
    (``model.to(device)``) and stays there: a model put on the GPU by
    ``device="auto"`` must be given GPU inputs afterwards. Otherwise it is
    never modified: extraction runs in eval mode under
    ``torch.inference_mode()``, the ``training`` flag of every submodule is
    restored afterwards, also when an exception is raised, no ``.grad`` is
    written, and hooks are removed.

    **Cloning and caching.** ``sklearn.base.clone`` returns a new unfitted
    transformer holding the *same* model object (and the same
    ``preprocess`` / ``pooling`` when they are modules) instead of a deep
    copy, so a grid search does not copy the weights once per candidate.
    ``Pipeline(memory=...)`` hashes the model's weights and state: refitting
    a pipeline with the same model and data reuses the cached features.
    joblib pickles the fitted transformer into the cache, so the pipeline's
    step holds a copy of the model after a cache hit, and the first fit
    after the model changed device (``device="auto"`` on a GPU machine) is a
    miss.

    **Saving.** ``pickle`` and ``joblib`` save the fitted transformer with the
    model (as ``GridSearchCV(n_jobs=2)`` needs); :func:`~sklearn_ood.torch.save`
    leaves the model's weights out and :func:`~sklearn_ood.torch.load` puts
    a model supplied by the user back, checked to be the same.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, TorchFeatureTransformer
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=5, width=4)
    >>> X = np.random.default_rng(0).normal(size=(10, 1, 8, 8)).astype(np.float32)
    >>> t = TorchFeatureTransformer(model, layer=["block2", "penultimate"])
    >>> t.fit_transform(X).shape
    (10, 24)
    >>> dict(t.feature_blocks_)
    {'block2': 8, 'penultimate': 16}
    >>> t.layers_["penultimate"]
    ('fc', 'input')
    >>> t.get_feature_names_out()[[0, 8]]
    array(['block2__0', 'penultimate__0'], dtype=object)
    """

    _parameter_constraints: dict = {
        "model": "no_validation",  # checked in fit with a more helpful message
        "layer": [str, list, tuple],
        "pooling": [StrOptions(set(POOLINGS)), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "amp_dtype": [torch.dtype, None],
        "preprocess": [callable, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model,
        layer=LOGITS,
        *,
        pooling="avg",
        batch_size=128,
        device="auto",
        amp_dtype=None,
        preprocess=None,
        verbose=0,
    ):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.amp_dtype = amp_dtype
        self.preprocess = preprocess
        self.verbose = verbose

    # ------------------------------------------------------------ sklearn API
    def __sklearn_clone__(self):
        # Shares the model (and module-valued preprocess / pooling): see Notes.
        return _clone_sharing_modules(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.non_deterministic = False
        tags.target_tags.required = False
        # Any sample shape: tabular rows, images, sequences.
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the model, resolve the layers and record the feature widths.

        Nothing is learned from ``X``: only its first samples run through the
        model, once, to find each layer's output width.

        Parameters
        ----------
        X : array-like, torch.Tensor, Dataset or DataLoader
            Model inputs, e.g. images of shape ``(n_samples, C, H, W)``.
        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        model = self._check_model()
        names = _layer_names(self.layer)
        if self.amp_dtype is not None and not self.amp_dtype.is_floating_point:
            raise ValueError(
                f"amp_dtype must be a floating dtype such as torch.bfloat16; got "
                f"{self.amp_dtype}."
            )
        inputs = _ModelInput(X)
        layers = _resolve_layers(model, names)
        probe = inputs.head(PROBE_SIZE)
        device, dtype = _place_model(model, self.device)
        with (
            _feature_hooks(model, layers, stop_early=False) as hooks,
            _eval_mode(model),
            torch.inference_mode(),
        ):
            blocks = self._forward_blocks(
                model,
                inputs.to_model(probe, device, dtype),
                layers,
                hooks,
                first_fit_batch=True,
            )
        _check_single_calls(hooks, layers)
        _check_finite([b.cpu().numpy() for b in blocks], list(layers))
        _check_input_shape(self, inputs, reset=True)
        self.layers_ = layers
        self.feature_blocks_ = OrderedDict(
            (block, int(b.shape[1])) for block, b in zip(layers, blocks)
        )
        self.n_features_out_ = sum(self.feature_blocks_.values())
        return self

    def transform(self, X):
        """Extract the features of ``X``, batch by batch.

        Parameters
        ----------
        X : array-like, torch.Tensor, Dataset or DataLoader
            Model inputs (see *Notes* of the class).

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), dtype float32
            The layers' blocks side by side, in the order of ``layer``.
        """
        check_is_fitted(self)
        model = self._check_model()
        inputs = _ModelInput(X)
        _check_input_shape(self, inputs, reset=False)
        device, dtype = _place_model(model, self.device)
        layers, widths = self.layers_, list(self.feature_blocks_.values())
        stop_early = ("", "output") not in layers.values()
        n = inputs.n_samples
        out = np.empty((n, self.n_features_out_), np.float32) if n is not None else []
        start = 0
        with contextlib.ExitStack() as stack:
            bar = self._progress_bar(n, stack)
            hooks = stack.enter_context(_feature_hooks(model, layers, stop_early))
            stack.enter_context(_eval_mode(model))
            stack.enter_context(torch.inference_mode())
            for xb in inputs.batches(self.batch_size, device, dtype):
                blocks = self._forward_blocks(model, xb, layers, hooks)
                for block, b, width in zip(layers, blocks, widths):
                    if b.shape[1] != width:
                        raise ValueError(
                            f"Layer {block!r} gives {b.shape[1]} features, but "
                            f"{width} were found during fit (another input size "
                            "with pooling='flatten'?)."
                        )
                feats = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
                feats = feats.cpu().numpy()
                if not np.isfinite(feats).all():
                    _check_finite(np.split(feats, np.cumsum(widths)[:-1], 1), layers)
                if isinstance(out, list):
                    out.append(feats)
                else:
                    out[start : start + len(feats)] = feats
                start += len(feats)
                if bar is not None:
                    bar.update(len(feats))
        if isinstance(out, list):
            if not out:
                raise ValueError("X yielded no samples.")
            out = np.concatenate(out)
        elif start != n:  # pragma: no cover - a Dataset whose len() lies
            raise ValueError(f"X has length {n} but yielded {start} samples.")
        return out

    def get_feature_names_out(self, input_features=None):
        """Column names: ``"<layer>__<index>"``, block by block.

        Parameters
        ----------
        input_features : None
            Ignored (the input is not tabular in general).

        Returns
        -------
        feature_names_out : ndarray of str objects
            E.g. ``["layer3__0", ..., "logits__9"]``.
        """
        check_is_fitted(self)
        return np.asarray(
            [
                f"{block}__{i}"
                for block, width in self.feature_blocks_.items()
                for i in range(width)
            ],
            dtype=object,
        )

    # -------------------------------------------------------------- helpers
    def _check_model(self):
        return _check_model(self.model)

    def _forward_blocks(self, model, xb, layers, hooks, *, first_fit_batch=False):
        """One forward pass: the pooled (N, width) float32 block of each layer.

        ``xb`` is on the device, in the model's dtype.
        """
        if self.preprocess is not None:
            xb = self.preprocess(xb)
        n = len(xb)
        autocast = (
            torch.autocast(xb.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            values = _hooked_forward(
                model, xb, layers, hooks, first_fit_batch=first_fit_batch
            )
        return [self._pool(value, block, n) for block, value in values.items()]

    def _pool(self, value, block, n):
        return _pool_output(value, block, n, self.pooling).float()

    def _progress_bar(self, n_samples, stack):
        """A tqdm bar on stderr when ``verbose > 0`` (without tqdm, none)."""
        if not self.verbose:
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm ships with the torch extra
            return None
        return stack.enter_context(
            tqdm(total=n_samples, unit="sample", desc="features", leave=False)
        )
