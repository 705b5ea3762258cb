"""A trained torch model as a scikit-learn transformer: logits and features.

:class:`TorchFeatureTransformer` runs a model over its input in batches and
returns what detectors consume: the logits, the penultimate features, or the
pooled outputs of any submodules, several of them from one forward pass.
"""

import contextlib
import copy
import difflib
from collections import OrderedDict
from itertools import chain
from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

__all__ = ["TorchFeatureTransformer"]

LOGITS = "logits"
PENULTIMATE = "penultimate"
_POOLINGS = ("avg", "max", "flatten")
_N_PROBE = 2  # rows that ``fit`` runs through the model
_PROGRESS_DELAY = 2.0  # seconds before the progress bar appears


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
        The trained model. It is shared, never copied (see *Notes*).
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
        CPU; or e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``.
        The model is moved there in place (``model.to(device)``) and stays
        there. ``None`` leaves the model where it is and sends the inputs to
        the device of its first parameter (for models placed by hand).
    amp_dtype : torch.dtype or None, default=None
        Run the forward pass under ``torch.autocast`` with this dtype (e.g.
        ``torch.bfloat16`` or ``torch.float16``) on the device's type.
        Features are cast to float32 after pooling.
    preprocess : callable or None, default=None
        Applied to each input batch once it is on the device (e.g. a
        normalisation), before the model.
    progress : bool, default=True
        Show a tqdm progress bar (on stderr) when ``transform`` runs more than
        one batch and takes more than two seconds. tqdm is part of the
        ``torch`` extra; without it there is no bar.

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
    n_features_in_ : int
        Number of columns of ``X`` during ``fit``; only set when ``X`` is a
        2-D array or tensor (tabular models).

    Notes
    -----
    **Inputs.** ``X`` is a NumPy array (or array-like of numbers) or a
    ``torch.Tensor`` of any sample shape, at least 2-D (images
    ``(N, C, H, W)``, sequences, tabular rows ``(N, n_features)``), a
    ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, y, ...)``
    (the first element is used), or a ``DataLoader`` (used as it is: its
    batch size, workers and order).
    Batches are moved to the device one at a time; floating inputs are cast
    to the model's floating dtype, integer inputs (e.g. token ids) are left
    as they are. Inputs are not scanned for NaN (that would cost a pass
    over the data), but the extracted features are: a NaN or infinite
    feature raises a ``ValueError`` naming the layer.

    **Model state.** Extraction runs in eval mode under
    ``torch.inference_mode()``; the ``training`` flag of every submodule is
    restored afterwards, also when an exception is raised. Hooks are
    removed. The model is moved to ``device`` and left there: a model put on
    the GPU by ``device="auto"`` must be given GPU inputs afterwards.

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
        "pooling": [StrOptions(set(_POOLINGS)), callable],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, None],
        "amp_dtype": [torch.dtype, None],
        "preprocess": [callable, None],
        "progress": ["boolean"],
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
        progress=True,
    ):
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = device
        self.amp_dtype = amp_dtype
        self.preprocess = preprocess
        self.progress = progress

    # ------------------------------------------------------------ sklearn API
    def __sklearn_clone__(self):
        # The default clone deep-copies every parameter; torch modules (the
        # model above all) are shared instead. Everything else is cloned as
        # scikit-learn would.
        params = {
            name: value if isinstance(value, nn.Module) else clone(value, safe=False)
            for name, value in self.get_params(deep=False).items()
        }
        new = type(self)(**params)
        for attr in ("_metadata_request", "_sklearn_output_config"):
            if hasattr(self, attr):
                setattr(new, attr, copy.deepcopy(getattr(self, attr)))
        if hasattr(self, "_skl_callbacks"):
            new._skl_callbacks = self._skl_callbacks
        return new

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
        source = _Source(X)
        device = _resolve_device(self.device, model)
        layers = _resolve_layers(model, names)
        probe = source.head(_N_PROBE)
        if self.device is not None:
            model.to(device)
        with (
            _feature_hooks(model, layers, stop_early=False) as hooks,
            _eval_mode(model),
            torch.inference_mode(),
        ):
            blocks = self._forward_blocks(
                model, probe, device, _floating_dtype(model), layers, hooks
            )
        for block, (name, where) in layers.items():
            calls = hooks.calls[block]
            if (name, where) != ("", "output") and calls > 1:
                raise ValueError(
                    f"{_describe(block, name, where)} ran {calls} times in one "
                    "forward pass, so it is ambiguous (the module is reused). "
                    "Choose a module that runs exactly once."
                )
        _check_finite([b.cpu().numpy() for b in blocks], list(layers))
        self.layers_ = layers
        self.feature_blocks_ = OrderedDict(
            (block, int(b.shape[1])) for block, b in zip(layers, blocks)
        )
        self.n_features_out_ = sum(self.feature_blocks_.values())
        if source.n_columns is not None:
            self.n_features_in_ = source.n_columns
        elif hasattr(self, "n_features_in_"):
            del self.n_features_in_
        return self

    def transform(self, X):
        """Extract the features of ``X``, batch by batch.

        Parameters
        ----------
        X : array-like, torch.Tensor, Dataset or DataLoader
            Model inputs (see *Notes* of the class).

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out_), dtype float32
            The layers' blocks side by side, in the order of ``layer``.
        """
        check_is_fitted(self)
        model = self._check_model()
        source = _Source(X)
        if (
            hasattr(self, "n_features_in_")
            and source.loader is None
            and source.dataset is None
            and source.n_columns != self.n_features_in_
        ):
            raise ValueError(
                f"X has {source.n_columns} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
                if source.n_columns is not None
                else f"{type(self).__name__} was fitted on 2-D input with "
                f"{self.n_features_in_} features; got input of another shape. "
                "Reshape your data to (n_samples, n_features)."
            )
        device = _resolve_device(self.device, model)
        if self.device is not None:
            model.to(device)
        layers, widths = self.layers_, list(self.feature_blocks_.values())
        stop_early = ("", "output") not in layers.values()
        n = source.n_samples
        out = np.empty((n, self.n_features_out_), np.float32) if n is not None else []
        start = 0
        with contextlib.ExitStack() as stack:
            bar = self._progress_bar(source, stack)
            hooks = stack.enter_context(_feature_hooks(model, layers, stop_early))
            stack.enter_context(_eval_mode(model))
            stack.enter_context(torch.inference_mode())
            dtype = _floating_dtype(model)
            for xb in source.batches(self.batch_size, device):
                blocks = self._forward_blocks(model, xb, device, dtype, layers, hooks)
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
        if not isinstance(self.model, nn.Module):
            hint = (
                " (for a skorch net, pass net.module_)"
                if hasattr(self.model, "module_")
                else ""
            )
            raise TypeError(
                f"model must be a torch.nn.Module{hint}; got "
                f"{type(self.model).__name__}."
            )
        return self.model

    def _forward_blocks(self, model, xb, device, dtype, layers, hooks):
        """One forward pass: the pooled (N, width) float32 block of each layer."""
        xb = _to_device(xb, device, dtype)
        if self.preprocess is not None:
            xb = self.preprocess(xb)
        n = len(xb)
        hooks.captured.clear()
        autocast = (
            torch.autocast(xb.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        output = None
        try:
            with autocast:
                output = model(xb)
        except _StopForward:
            pass
        blocks = []
        for block, (name, where) in layers.items():
            if (name, where) == ("", "output"):
                value = output
            elif block in hooks.captured:
                value = hooks.captured[block]
            else:
                raise ValueError(
                    f"{_describe(block, name, where)} did not run in the forward "
                    "pass: the model's forward does not call that module."
                )
            blocks.append(self._pool(value, block, n))
        return blocks

    def _pool(self, value, block, n):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"Layer {block!r} produced a {type(value).__name__}, not a tensor; "
                "choose a submodule whose output is a tensor."
            )
        if value.ndim == 0 or value.shape[0] != n:
            raise ValueError(
                f"Layer {block!r} produced shape {tuple(value.shape)}; expected the "
                f"batch ({n} samples) along the first dimension."
            )
        if value.ndim > 2:
            if callable(self.pooling):
                value = self.pooling(value)
                if not isinstance(value, torch.Tensor) or value.shape[:1] != (n,):
                    raise ValueError(
                        f"pooling must return a tensor with {n} rows for layer "
                        f"{block!r}; got {getattr(value, 'shape', type(value))}."
                    )
            elif self.pooling == "flatten":
                value = value.flatten(1)
            else:
                if not value.is_floating_point():
                    value = value.float()
                dims = tuple(range(2, value.ndim))
                value = value.mean(dims) if self.pooling == "avg" else value.amax(dims)
        return value.reshape(n, -1).float()

    def _progress_bar(self, source, stack):
        n_batches = source.n_batches(self.batch_size)
        if not self.progress or (n_batches is not None and n_batches <= 1):
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm ships with the torch extra
            return None
        return stack.enter_context(
            tqdm(
                total=source.n_samples,
                unit="sample",
                desc="features",
                leave=False,
                delay=_PROGRESS_DELAY,
            )
        )


# ------------------------------------------------------------------ inputs
class _Source:
    """Batches of model inputs from an array, tensor, Dataset or DataLoader."""

    def __init__(self, X):
        self.array = self.tensor = self.dataset = self.loader = None
        if isinstance(X, DataLoader):
            self.loader = X
            self.n_samples = None
        elif isinstance(X, Dataset):
            self.dataset = X
            self.n_samples = len(X) if hasattr(X, "__len__") else None
        elif isinstance(X, torch.Tensor):
            self.tensor = X
            self.n_samples = _check_shape(X.shape)
        else:
            self.array = _as_array(X)
            self.n_samples = _check_shape(self.array.shape)
        if self.n_samples == 0:
            raise ValueError("X has 0 samples; at least one is required.")
        data = self.array if self.array is not None else self.tensor
        self.n_columns = data.shape[1] if data is not None and data.ndim == 2 else None

    def n_batches(self, batch_size):
        if self.loader is not None:
            return len(self.loader) if hasattr(self.loader, "__len__") else None
        if self.n_samples is None:
            return None
        return -(-self.n_samples // batch_size)

    def head(self, k):
        """The first ``k`` samples (the first batch of a DataLoader)."""
        if self.loader is not None:
            for batch in self.loader:
                return _first(batch)
            raise ValueError("The DataLoader yielded no batch.")
        if self.dataset is not None:
            if self.n_samples is not None:
                k = min(k, self.n_samples)
                return _collate_first([self.dataset[i] for i in range(k)])
            for batch in DataLoader(
                self.dataset, batch_size=k, collate_fn=_collate_first
            ):
                return batch
            raise ValueError("The Dataset yielded no sample.")
        return self._slice(0, k)

    def batches(self, batch_size, device):
        if self.loader is not None:
            for batch in self.loader:
                yield _first(batch)
        elif self.dataset is not None:
            yield from DataLoader(
                self.dataset,
                batch_size=batch_size,
                shuffle=False,
                collate_fn=_collate_first,
                pin_memory=device is not None and device.type == "cuda",
            )
        else:
            for start in range(0, self.n_samples, batch_size):
                yield self._slice(start, start + batch_size)

    def _slice(self, start, stop):
        if self.tensor is not None:
            return self.tensor[start:stop]
        batch = np.ascontiguousarray(self.array[start:stop])
        if not batch.flags.writeable:  # torch only wraps writeable memory
            batch = batch.copy()
        return torch.from_numpy(batch)


def _as_array(X):
    if sp.issparse(X):
        raise TypeError(
            "Sparse input is not supported: X must be dense (e.g. X.toarray())."
        )
    if X is None or isinstance(X, (str, bytes, dict)):
        raise TypeError(
            "X must be a NumPy array, a torch.Tensor, a torch Dataset or a "
            f"DataLoader; got {type(X).__name__}."
        )
    try:
        array = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Cannot turn X ({type(X).__name__}) into an array.") from exc
    if array.dtype.kind == "c":
        raise ValueError("Complex data not supported.")
    if array.dtype.kind == "O":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"X must hold numbers: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"X must hold numbers (bool, int or float); got dtype {array.dtype} "
            f"from {type(X).__name__}."
        )
    return array


def _check_shape(shape):
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            "X must have a samples dimension and at least one more, e.g. "
            f"(n_samples, n_features) or (n_samples, C, H, W); got shape {shape}. "
            "Reshape your data, e.g. with X.reshape(-1, 1) for a single feature."
        )
    if 0 in shape[1:]:
        raise ValueError(
            f"0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )
    return shape[0]


def _first(batch):
    """The input part of a batch: ``x`` itself or the first of ``(x, y, ...)``."""
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("Got an empty batch tuple.")
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            "Dataset items must be tensors or arrays, or tuples whose first "
            f"element is one; got a batch of {type(batch).__name__}."
        )
    return batch


def _collate_first(items):
    items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
    try:
        batch = default_collate(items)
    except TypeError as exc:
        raise TypeError(
            f"Cannot batch Dataset items of type {type(items[0]).__name__}: they "
            "must be tensors, arrays or numbers (give the Dataset a transform "
            "such as torchvision's ToTensor)."
        ) from exc
    return _first(batch)


def _to_device(xb, device, dtype):
    if xb.is_floating_point() and xb.dtype != dtype:
        xb = xb.to(dtype)
    return xb if device is None else xb.to(device, non_blocking=True)


def _floating_dtype(model):
    for tensor in chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


# ------------------------------------------------------------------ devices
def _resolve_device(device, model):
    """The torch.device to run on; None means the model's own device."""
    if device is None:
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
        return None
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:1', a torch.device or None."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available; use device='cpu' "
                "or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) are available."
            )
    return resolved


# ------------------------------------------------------------------- layers
def _layer_names(layer):
    names = [layer] if isinstance(layer, str) else list(layer)
    if not names:
        raise ValueError("layer must name at least one layer.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Layer names must be non-empty strings; got {name!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"layer lists a name more than once: {names}.")
    return names


def _resolve_layers(model, names):
    """Map each requested block to (module name, "input" or "output")."""
    modules = dict(model.named_modules(remove_duplicate=False))
    layers = OrderedDict()
    for name in names:
        if name == LOGITS:
            layers[name] = ("", "output")
        elif name == PENULTIMATE:
            layers[name] = (_last_linear(model), "input")
        elif name in modules:
            layers[name] = (name, "output")
        else:
            raise ValueError(_unknown_layer_message(name, modules))
    return layers


def _last_linear(model):
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        submodules = [n for n in dict(model.named_modules()) if n]
        raise ValueError(
            "layer='penultimate' is the input of the model's last torch.nn.Linear, "
            f"but {type(model).__name__} has no nn.Linear. Name the submodule whose "
            f"output you want instead, e.g. one of {_few(submodules)}."
        )
    return linears[-1]


def _few(names, head=6, tail=4):
    if len(names) <= head + tail:
        return ", ".join(repr(n) for n in names)
    return ", ".join(
        [repr(n) for n in names[:head]] + ["..."] + [repr(n) for n in names[-tail:]]
    )


def _unknown_layer_message(name, modules):
    valid = [LOGITS, PENULTIMATE] + [n for n in modules if n]
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"Unknown layer {name!r}.{hint} Valid names are 'logits', 'penultimate' or a "
        f"submodule name from model.named_modules(), e.g. {_few(valid)}."
    )


# -------------------------------------------------------------------- hooks
class _StopForward(BaseException):
    """Raised by the last feature hook to skip the rest of the forward pass.

    A ``BaseException`` so that a model's own ``except Exception`` cannot
    swallow it.
    """


class _HookState:
    def __init__(self, n_hooked, stop_early):
        self.captured, self.calls = {}, {}
        self.n_hooked, self.stop_early = n_hooked, stop_early

    def record(self, block, value):
        self.calls[block] = self.calls.get(block, 0) + 1
        self.captured[block] = value
        if self.stop_early and len(self.captured) == self.n_hooked:
            raise _StopForward


@contextlib.contextmanager
def _feature_hooks(model, layers, stop_early):
    """Forward (pre-)hooks that capture each block's tensor, removed on exit."""
    modules = dict(model.named_modules(remove_duplicate=False))
    hooked = {b: nw for b, nw in layers.items() if nw != ("", "output")}
    state = _HookState(len(hooked), stop_early and bool(hooked))
    state.calls = dict.fromkeys(layers, 0)
    handles = []
    try:
        for block, (name, where) in hooked.items():
            if name not in modules:
                raise ValueError(
                    f"Layer {block!r}: the model has no submodule {name!r} any more; "
                    "refit the transformer after changing the model."
                )
            if where == "input":
                hook = _input_hook(state, block)
                handles.append(modules[name].register_forward_pre_hook(hook))
            else:
                hook = _output_hook(state, block)
                handles.append(modules[name].register_forward_hook(hook))
        yield state
    finally:
        for handle in handles:
            handle.remove()


def _input_hook(state, block):
    def hook(module, args):
        state.record(block, args[0] if args else None)

    return hook


def _output_hook(state, block):
    def hook(module, args, output):
        state.record(block, output)

    return hook


@contextlib.contextmanager
def _eval_mode(model):
    """Eval mode inside; every submodule's ``training`` flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _describe(block, name, where):
    module = f"module {name!r}" if name else "the model"
    return f"Layer {block!r} (the {where} of {module})"


def _check_finite(blocks, names):
    for block, name in zip(blocks, names):
        if not np.isfinite(block).all():
            raise ValueError(
                f"Layer {name!r} produced NaN or infinite features. Check the "
                "inputs for NaN/inf (they are not scanned), or the amp_dtype "
                "(float16 overflows easily)."
            )
