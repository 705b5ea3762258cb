"""Save a fitted torch estimator without its model; load it against a model.

A fitted :class:`~sklearn_ood.torch.TorchFeatureTransformer` or model
detector holds the model it runs. ``pickle`` and ``joblib`` save it with its
weights, which is what scikit-learn needs to copy estimators between
processes (``GridSearchCV(n_jobs=2)``), and stays so. :func:`save` writes the
estimator without the weights: every torch module that is a parameter
(``model``, and ``preprocess`` or ``pooling`` where they are modules, at any
depth of a ``Pipeline`` or meta-estimator) is replaced by a placeholder
recording its structure and a digest of its weights; :func:`load` puts the
modules the user supplies in their place after checking them.
"""

import contextlib
import hashlib
import os
import pickle

import torch
from sklearn.base import BaseEstimator
from torch import nn

__all__ = ["load", "save"]

_FORMAT = "sklearn_ood.torch.save"
_VERSION = 1


def save(estimator, file):
    """Save a fitted estimator without the weights of its torch modules.

    Every torch module among the estimator's parameters (``model``, and
    ``preprocess`` or ``pooling`` when they are modules; in a ``Pipeline``
    or another meta-estimator, e.g. ``feat__model``) is left out and
    replaced by a placeholder that records its class, the names and shapes
    of its parameters and buffers, and a SHA-256 digest of their values.
    The rest (fitted statistics, parameters) is pickled, so the file is
    about the size of the statistics. Normal ``pickle`` / ``joblib`` dumps
    are unchanged and keep the model.

    Parameters
    ----------
    estimator : estimator
        A :class:`~sklearn_ood.torch.TorchFeatureTransformer`, a model
        detector (``ODIN``, ...), or any estimator holding them, such as a
        ``Pipeline``.
    file : str, path-like or binary file object
        Where to write.

    See Also
    --------
    load : Load the estimator back with the model supplied.

    Notes
    -----
    Torch modules held elsewhere than in a parameter (in a fitted attribute
    only) are pickled as usual. Submodules of a saved module that fitted
    attributes refer to are restored as the submodules of the supplied one.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import ODIN, DigitsCNN, load, save
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2).eval()
    >>> X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    >>> odin = ODIN(model, temperature=10.0, epsilon=0.01, device="cpu").fit(X)
    >>> file = io.BytesIO()
    >>> save(odin, file)
    >>> _ = file.seek(0)
    >>> loaded = load(file, model)
    >>> loaded.model is model
    True
    >>> np.array_equal(loaded.score_samples(X), odin.score_samples(X))
    True
    """
    slots = _module_slots(estimator)
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "estimator": type(estimator).__name__,
        "modules": [
            {key: value for key, value in slot.items() if key != "module"}
            for slot in slots.values()
        ],
    }
    with _open(file, "wb") as f:
        pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
        _SlotPickler(f, slots).dump(estimator)


def load(file, model=None, *, check_weights=True, **modules):
    """Load an estimator written by :func:`save`, with the modules supplied.

    Each supplied module is checked against the saved placeholder: the same
    parameter and buffer names and shapes and, unless ``check_weights`` is
    False, the same weights. The estimator then holds the supplied modules
    themselves.

    Parameters
    ----------
    file : str, path-like or binary file object
        What :func:`save` wrote. Loading unpickles it: load only files you
        trust.
    model : torch.nn.Module, default=None
        The model the estimator was fitted with: it fills every parameter
        named ``model`` (e.g. ``feat__model`` in a pipeline), which must all
        have held the same model. Several different models are passed by
        name instead, in ``**modules``.
    check_weights : bool, default=True
        Refuse modules whose weights differ from those saved (another
        training run, a freshly initialised model): the fitted statistics
        belong to the saved weights. ``False`` checks the structure only.
    **modules : torch.nn.Module
        The other saved modules, by parameter name: e.g.
        ``preprocess=normalise`` or ``feat__model=backbone``.

    Returns
    -------
    estimator : estimator
        The saved estimator, holding the supplied modules themselves (not
        copies).

    Raises
    ------
    ValueError
        If a saved module is not supplied, a name matches no saved module,
        or a supplied module's structure (parameter and buffer names and
        shapes) or, with ``check_weights``, its weights differ from the
        saved ones.

    See Also
    --------
    save : Save a fitted estimator without the weights of its modules.

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN, TorchFeatureTransformer, load, save
    >>> _ = torch.manual_seed(0)
    >>> model = DigitsCNN(n_classes=3, width=2)
    >>> X = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    >>> t = TorchFeatureTransformer(model, "penultimate", device="cpu").fit(X)
    >>> file = io.BytesIO()
    >>> save(t, file)
    >>> rebuilt = DigitsCNN(n_classes=3, width=2)
    >>> _ = rebuilt.load_state_dict(model.state_dict())
    >>> _ = file.seek(0)
    >>> np.array_equal(load(file, rebuilt).transform(X), t.transform(X))
    True
    """
    for name, module in [("model", model), *modules.items()]:
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(
                f"{name} must be a torch.nn.Module; got {type(module).__name__}."
            )
    with _open(file, "rb") as f:
        header = _read_header(f)
        supplied = _match_modules(header["modules"], model, modules)
        for slot, module in zip(header["modules"], supplied):
            _check_module(slot, module, check_weights)
        return _SlotUnpickler(f, supplied).load()


# ------------------------------------------------------------------ slots
def _module_slots(estimator):
    """``{id(module): slot}`` for each distinct module among the parameters."""
    if isinstance(estimator, nn.Module):
        raise TypeError(
            "save() saves a fitted estimator without its model; to save a torch "
            "model itself, use torch.save(model.state_dict(), path)."
        )
    params = (
        estimator.get_params(deep=True) if isinstance(estimator, BaseEstimator) else {}
    )
    slots = {}
    for name, value in params.items():
        if isinstance(value, nn.Module):
            slot = slots.setdefault(id(value), {"names": [], "module": value})
            slot["names"].append(name)
    for index, slot in enumerate(slots.values()):
        module = slot["module"]
        slot.update(index=index, **_describe(module))
    return slots


def _describe(module):
    state = module.state_dict()
    digest = hashlib.sha256()
    structure = []
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):  # a module's extra state
            continue
        tensor = tensor.detach()
        structure.append((key, tuple(tensor.shape)))
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        flat = tensor.cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return {
        "class": type(module).__qualname__,
        "structure": structure,
        "digest": digest.hexdigest(),
    }


class _SlotPickler(pickle.Pickler):
    """Pickles saved modules (and their submodules) as references."""

    def __init__(self, file, slots):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._refs = {}
        for slot in slots.values():
            for sub_name, sub in slot["module"].named_modules():
                self._refs.setdefault(id(sub), (slot["index"], sub_name))

    def persistent_id(self, obj):
        if isinstance(obj, nn.Module):
            return self._refs.get(id(obj))
        return None


class _SlotUnpickler(pickle.Unpickler):
    def __init__(self, file, modules):
        super().__init__(file)
        self._modules = modules

    def persistent_load(self, pid):
        index, sub_name = pid
        module = self._modules[index]
        return module.get_submodule(sub_name) if sub_name else module


# ------------------------------------------------------------------- load
def _read_header(f):
    try:
        header = pickle.load(f)
    except Exception as exc:
        raise ValueError(
            "Not a file written by sklearn_ood.torch.save (its header cannot be "
            "read); a pickle or joblib dump is loaded with pickle.load or "
            "joblib.load."
        ) from exc
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ValueError(
            "Not a file written by sklearn_ood.torch.save; a pickle or joblib "
            "dump is loaded with pickle.load or joblib.load."
        )
    if header.get("version") != _VERSION:
        raise ValueError(
            f"The file has format version {header.get('version')}; this version "
            f"of sklearn-ood reads version {_VERSION}."
        )
    return header


def _match_modules(slots, model, modules):
    """The supplied module of each slot, in slot order."""
    names = {name for slot in slots for name in slot["names"]}
    unknown = sorted(set(modules) - names)
    if unknown:
        raise ValueError(
            f"load() got modules for {unknown}, but the saved estimator has no "
            f"such parameter; its saved modules are {_listing(slots)}."
        )
    model_slots = [
        slot
        for slot in slots
        if not any(name in modules for name in slot["names"])
        and any(name.split("__")[-1] == "model" for name in slot["names"])
    ]
    if model is not None and not model_slots:
        raise ValueError(
            "load() got a model, but the saved estimator has no other parameter "
            f"named model; its saved modules are {_listing(slots)}."
        )
    if model is not None and len(model_slots) > 1:
        raise ValueError(
            "The saved estimator holds several different models: pass each by "
            f"name instead of model=..., e.g. {model_slots[0]['names'][0]}=... "
            f"(saved modules: {_listing(slots)})."
        )
    supplied, missing = [], []
    for slot in slots:
        module = next((modules[n] for n in slot["names"] if n in modules), None)
        if (
            module is None
            and model is not None
            and any(slot is other for other in model_slots)
        ):
            module = model
        if module is None:
            missing.append(slot["names"][0])
        supplied.append(module)
    if missing:
        raise ValueError(
            f"Supply the torch modules that were not saved: {missing} (e.g. "
            f"load(file, model) or load(file, {missing[0]}=module)); the saved "
            f"modules are {_listing(slots)}."
        )
    return supplied


def _check_module(slot, module, check_weights):
    name = slot["names"][0]
    saved = dict(slot["structure"])
    found = {
        key: tuple(t.shape)
        for key, t in module.state_dict().items()
        if isinstance(t, torch.Tensor)
    }
    if found != saved:
        problems = [
            f"{key}: saved {saved[key]}, got {found[key]}"
            for key in saved
            if key in found and saved[key] != found[key]
        ]
        problems += [f"{key}: missing" for key in saved if key not in found]
        problems += [f"{key}: not saved" for key in found if key not in saved]
        shown = "; ".join(problems[:5])
        if len(problems) > 5:
            shown += f" (and {len(problems) - 5} more)"
        raise ValueError(
            f"The module given for {name!r} ({type(module).__qualname__}) does not "
            f"have the structure of the saved one ({slot['class']}): {shown}. "
            "Supply the model the estimator was fitted with."
        )
    if check_weights and _describe(module)["digest"] != slot["digest"]:
        raise ValueError(
            f"The module given for {name!r} has the saved structure but other "
            "weights (or another dtype) than the estimator was fitted with, so "
            "its fitted "
            "statistics would not match. Load the trained weights into it "
            "(model.load_state_dict(...)), or pass check_weights=False to load "
            "anyway."
        )


def _listing(slots):
    return (
        ", ".join(f"{' = '.join(slot['names'])} ({slot['class']})" for slot in slots)
        or "none"
    )


@contextlib.contextmanager
def _open(file, mode):
    """A binary file opened from a path, or a file object used as it is."""
    if hasattr(file, "read" if "r" in mode else "write"):
        yield file
    else:
        with open(os.fspath(file), mode) as f:
            yield f
