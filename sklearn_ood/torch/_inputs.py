"""Model inputs: one check for every torch estimator, and batches on the device.

:class:`_ModelInput` is what ``fit``, ``transform`` and ``score_samples`` of
:class:`~sklearn_ood.torch.TorchFeatureTransformer` and of the model
detectors validate their ``X`` with: a NumPy array (or array-like of
numbers), a ``torch.Tensor``, a map-style ``Dataset`` or, where allowed, a
``DataLoader``. :func:`_check_input_shape` records the sample shape in
``fit`` and refuses another one afterwards, and :func:`_call_model` turns a
model's refusal of its input into a ``ValueError`` that says what to do.

The dtype rule, the same for every estimator:

* floating inputs are cast to the model's floating dtype; values beyond that
  dtype's range (float64 data into a float32 model) are refused, not
  reported as infinity;
* integer and boolean inputs are never converted: they reach the model as
  they are (token ids for an ``nn.Embedding``), and a model that refuses them
  raises a ``ValueError`` saying to convert and scale ``X`` as at training
  time.
"""

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from sklearn_ood._labels import check_ood_labels

# Half precision inputs give float32 scores, like float32 inputs.
_FLOAT32_TENSORS = (torch.float16, torch.bfloat16, torch.float32)
_FLOAT32_ARRAYS = (np.float16, np.float32)
# Raised by a model but not about its input: passed on unchanged.
_NOT_INPUT_ERRORS = (MemoryError, torch.cuda.OutOfMemoryError)

#: Samples that ``fit`` runs through the model first (feature widths, and a
#: refusal of the input reported with its shape).
PROBE_SIZE = 2

INTEGER_HINT = (
    "convert X to floating point and scale it as at training time, e.g. "
    "X.astype(np.float32) / 255 for uint8 images"
)


class _ModelInput:
    """Validated model inputs of any sample shape, batched for the model.

    Parameters
    ----------
    X : array-like, torch.Tensor, Dataset or DataLoader
        At least 2-D: ``(n_samples, *sample_shape)``. Dataset items are ``x``
        or ``(x, y, ...)``; only ``x`` is used.
    allow_loader : bool, default=True
        Whether a ``DataLoader`` or a Dataset without ``len()`` is accepted.
        The model detectors refuse them: they need the samples by index (to
        match ``y`` and to draw the rows that set ``offset_``).

    Attributes
    ----------
    data : ndarray, Tensor, Dataset or DataLoader
        The inputs (an array-like turned into an ndarray).
    kind : {"array", "tensor", "dataset", "loader"}
    n_samples : int or None
        None for a DataLoader or a Dataset without ``len()``.
    sample_shape : tuple of int or None
        Shape of one sample; for a DataLoader, known after :meth:`head`.
    is_integer : bool or None
        Whether the inputs hold integers or booleans (None until known).
    """

    def __init__(self, X, *, allow_loader=True):
        self.sample_shape = self.is_integer = self.dtype_name = None
        self.score_dtype = np.dtype(np.float64)
        self._expected = None
        if isinstance(X, DataLoader):
            if not allow_loader:
                raise TypeError(
                    "Model detectors need to know the samples (to match y and "
                    "check their shape): pass the DataLoader's dataset, an array "
                    "or a tensor instead of a DataLoader."
                )
            self.kind, self.n_samples = "loader", None
        elif isinstance(X, Dataset):
            self.kind = "dataset"
            self.n_samples = len(X) if hasattr(X, "__len__") else None
            if self.n_samples is None and not allow_loader:
                raise TypeError(
                    "X is an iterable-style Dataset without len(); pass a "
                    "map-style Dataset, an array or a tensor."
                )
        elif isinstance(X, torch.Tensor):
            if X.is_complex():
                raise ValueError("Complex data not supported.")
            self.kind, self.n_samples = "tensor", _check_shape(X.shape)
        else:
            X = _as_array(X)
            self.kind, self.n_samples = "array", _check_shape(X.shape)
        self.data = X
        if self.n_samples == 0:
            raise ValueError("X has 0 samples; at least one is required.")
        if self.kind in ("array", "tensor"):
            self._learn(X[:0])
        elif self.n_samples is not None:
            self.head(1)  # the sample shape and dtype of the first item

    def __len__(self):
        if self.n_samples is None:
            raise TypeError("The number of samples of a DataLoader is not known.")
        return self.n_samples

    @property
    def shape(self):
        """``(n_samples, *sample_shape)``, as the label checks expect."""
        return (self.n_samples, *(self.sample_shape or ()))

    def expect(self, sample_shape, name):
        """Refuse samples of another shape than ``sample_shape`` (from fit).

        Checked now where the shape is known, else batch by batch.
        """
        self._expected = (tuple(sample_shape), name)
        if self.sample_shape is not None:
            self._check_expected(self.sample_shape)

    def head(self, k):
        """The first ``k`` samples (the first batch of a DataLoader), on the CPU
        unless ``X`` is a tensor elsewhere."""
        if self.kind == "loader":
            batch = next(iter(self.data), None)
            if batch is None:
                raise ValueError("The DataLoader yielded no batch.")
            batch = _first(batch)
        elif self.kind == "dataset":
            if self.n_samples is not None:
                k = min(k, self.n_samples)
                batch = _collate_first([self.data[i] for i in range(k)])
            else:
                loader = DataLoader(self.data, batch_size=k, collate_fn=_collate_first)
                batch = next(iter(loader), None)
                if batch is None:
                    raise ValueError("The Dataset yielded no sample.")
        else:
            batch = self._slice(0, k)
        self._learn(batch)
        return batch

    def subset(self, rows):
        """The samples selected by a boolean mask, indices or a slice."""
        if isinstance(rows, slice) and rows == slice(None):
            return self
        rows = np.arange(self.n_samples)[rows]  # indices, in order
        if len(rows) == self.n_samples:
            return self
        if self.kind == "array":
            return _ModelInput(self.data[rows])
        if self.kind == "tensor":
            return _ModelInput(
                self.data[torch.as_tensor(rows, device=self.data.device)]
            )
        return _ModelInput(Subset(self.data, rows.tolist()))

    def batches(self, batch_size, device, dtype, *, check_finite=False):
        """Batches on ``device``, prepared by :meth:`to_model`.

        ``batch_size`` is ignored for a DataLoader (its own batches are used).
        """
        for xb in self._raw_batches(batch_size, device):
            if self.kind == "loader" or self.n_samples is None:
                self._learn(xb)
            yield self.to_model(xb, device, dtype, check_finite=check_finite)

    @staticmethod
    def to_model(xb, device, dtype, *, check_finite=False):
        """``xb`` on ``device``: floats in the model's ``dtype``, integers as they
        are; with ``check_finite``, NaN or infinity is a ValueError."""
        if xb.is_floating_point() and xb.dtype != dtype:
            xb = _cast(xb, dtype)
        if device is not None:
            xb = xb.to(device, non_blocking=True)
        if check_finite and xb.is_floating_point() and not torch.isfinite(xb).all():
            raise ValueError("Input X contains NaN or infinity.")
        return xb

    # -------------------------------------------------------------- helpers
    def _learn(self, batch):
        """Record (or check) the sample shape and dtype from a batch."""
        if batch.ndim < 2:
            raise ValueError(
                "Dataset items must have at least one dimension (a sample of "
                f"shape {tuple(batch.shape[1:])} was found)."
            )
        sample_shape = tuple(int(d) for d in batch.shape[1:])
        if self._expected is not None:
            self._check_expected(sample_shape)
        if self.sample_shape is not None:
            return
        self.sample_shape = sample_shape
        if isinstance(batch, np.ndarray):
            self.is_integer = batch.dtype.kind in "biu"
            self.dtype_name = str(batch.dtype)
            low_precision = batch.dtype in _FLOAT32_ARRAYS
        else:
            self.is_integer = not batch.is_floating_point()
            self.dtype_name = str(batch.dtype).removeprefix("torch.")
            low_precision = batch.dtype in _FLOAT32_TENSORS
        self.score_dtype = np.dtype(np.float32 if low_precision else np.float64)

    def _check_expected(self, sample_shape):
        fitted, name = self._expected
        if sample_shape != fitted:
            raise ValueError(_shape_message(sample_shape, fitted, name))

    def _raw_batches(self, batch_size, device):
        if self.kind == "loader":
            for batch in self.data:
                yield _first(batch)
        elif self.kind == "dataset":
            yield from DataLoader(
                self.data,
                batch_size=batch_size,
                shuffle=False,
                collate_fn=_collate_first,
                pin_memory=device is not None and device.type == "cuda",
                # Its own generator: a DataLoader draws a base seed for its
                # workers, which would otherwise advance the global torch RNG
                # (and change, e.g., MCDropout's seeded masks).
                generator=torch.Generator(),
            )
        else:
            for start in range(0, self.n_samples, batch_size):
                yield self._slice(start, start + batch_size)

    def _slice(self, start, stop):
        if self.kind == "tensor":
            return self.data[start:stop]
        batch = np.ascontiguousarray(self.data[start:stop])
        if not batch.flags.writeable:  # torch only wraps writeable memory
            batch = batch.copy()
        return torch.from_numpy(batch)


def _check_labels(y, n_samples=None, name="y"):
    """Labels of model inputs as a 1-D int64 array (tensors too), or a ValueError.

    The values are checked by the package's :func:`check_ood_labels` (whole
    numbers within int64, no text or booleans); the message says what a
    class label is here.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if n_samples is not None and (y.ndim != 1 or len(y) != n_samples):
        raise ValueError(
            f"{name} must be 1-D with one label per sample of X ({n_samples}); got "
            f"shape {y.shape}."
        )
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {y.shape}.")
    try:
        return check_ood_labels(y, name=name)
    except ValueError as exc:
        raise ValueError(
            f"{name} must hold integer class labels (>= 0 for ID rows, -1 for "
            f"outliers): {exc} Encode other labels first, e.g. with "
            "sklearn.preprocessing.LabelEncoder."
        ) from exc


def _check_input_shape(estimator, inputs, *, reset):
    """Record the sample shape in ``fit``; refuse another one afterwards.

    ``reset=True`` sets ``estimator.input_shape_`` and, for 2-D input
    ``(n_samples, n_features)``, ``n_features_in_`` (deleted otherwise).
    ``reset=False`` refuses another sample shape with a ValueError (for a
    DataLoader, batch by batch).
    """
    if not reset:
        inputs.expect(estimator.input_shape_, type(estimator).__name__)
        return
    if inputs.sample_shape is None:
        inputs.head(1)
    shape = inputs.sample_shape
    estimator.input_shape_ = shape
    if len(shape) == 1:
        estimator.n_features_in_ = shape[0]
    elif hasattr(estimator, "n_features_in_"):
        del estimator.n_features_in_


def _shape_message(shape, fitted, name):
    if len(shape) == 1 and len(fitted) == 1:
        return (
            f"X has {shape[0]} features, but {name} is expecting {fitted[0]} "
            "features as input."
        )
    return (
        f"X has samples of shape {shape}, but {name} was fitted on samples of "
        f"shape {fitted}. Give inputs of the fitted shape (e.g. resize the "
        "images as at fit time), or refit."
    )


def _require_floating(inputs, name):
    """Refuse integer inputs for a method that differentiates with respect to X."""
    if inputs.is_integer:
        raise ValueError(
            f"{name} steps along the gradient of the model with respect to its "
            "inputs, which needs floating-point inputs, but X has dtype "
            f"{inputs.dtype_name}: {INTEGER_HINT}."
        )


def _call_model(model, xb, *, first_fit_batch=False):
    """``model(xb)``, where an error caused by the input becomes a ValueError.

    Integer batches reach the model unchanged: an error raised on one says
    to convert ``X`` (with the model's own message). On the first batch of
    ``fit`` (``first_fit_batch``), any error of the model is reported with the
    sample shape it was given. The original error is chained; out-of-memory
    errors pass unchanged.
    """
    try:
        return model(xb)
    except _NOT_INPUT_ERRORS:
        raise
    except Exception as exc:
        what = f"{type(model).__name__} raised {type(exc).__name__}: {_line(exc)}"
        if not xb.is_floating_point():
            dtype = str(xb.dtype).removeprefix("torch.")
            raise ValueError(
                f"The model failed on integer input (X has dtype {dtype}); {what}. "
                "Integer inputs reach the model unchanged (e.g. token ids for an "
                f"nn.Embedding); if the model expects floating-point inputs, "
                f"{INTEGER_HINT}."
            ) from exc
        if first_fit_batch:
            raise ValueError(
                "The model rejected the input given to fit: X has samples of "
                f"shape {tuple(xb.shape[1:])}, and {what}. Give it inputs of the "
                "shape it was trained on, e.g. (n_samples, n_features) rows for "
                "a tabular model or (n_samples, C, H, W) for images."
            ) from exc
        raise


def _line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _cast(xb, dtype):
    """``xb`` in the floating ``dtype``; refuse values beyond its range."""
    cast = xb.to(dtype)
    if torch.finfo(dtype).max < torch.finfo(xb.dtype).max and not bool(
        torch.isfinite(cast).all()
    ):
        overflow = torch.isinf(cast) & torch.isfinite(xb)
        if overflow.any():
            name = str(dtype).removeprefix("torch.")
            biggest = float(xb[overflow].abs().max())
            raise ValueError(
                f"X holds values up to |x| = {biggest:.4g}, beyond the {name} "
                f"range of the model (|x| <= {torch.finfo(dtype).max:.4g}): they "
                f"would become infinite in {name}. Scale X as at training time, "
                "or run a float64 model (model.double())."
            )
    return cast


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
    """The number of samples of an at least 2-D ``shape``."""
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
