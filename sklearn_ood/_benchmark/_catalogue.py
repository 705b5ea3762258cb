"""Every detector of ``all_detectors()`` that applies, built from its signature.

Nothing here names a detector class except :data:`SPEED_SETTINGS`: a new
detector appears in the benchmark as soon as ``all_detectors()`` lists it.
A required constructor parameter is filled when the benchmark knows what it
means:

* ``head``: the model's last ``nn.Linear`` (the module whose input
  ``TorchFeatureTransformer``'s ``"penultimate"`` is);
* ``model``: the model itself;
* ``layers``: the model's convolution blocks (:func:`conv_blocks`).

A class with any other required parameter, or one whose input the model
cannot give (layer features of a TorchScript model, several layers of a
model without blocks), is listed as not applicable with the reason.
Detectors are built with ``contamination=None``: the metrics are
threshold-free, and a threshold would cost a second pass over the fit data
(a full gradient pass for ODIN).
"""

import inspect

from sklearn_ood._benchmark._common import UsageError
from sklearn_ood._registry import FAMILIES

# Defaults that are heavy on 2 CPU cores, lowered for the benchmark (the
# only per-class settings of the command): MCDropout's 30 stochastic passes
# per sample become 10.
SPEED_SETTINGS = {"MCDropout": {"n_samples": 10}}
# Parameters that count classes (OpenMax revises the top 10 by default) are
# capped at the number of ID classes: the defaults assume 10 or more.
CLASS_COUNT_PARAMS = ("n_revised_classes",)


def catalogue():
    """``[(name, class), ...]`` of every detector, torch ones included."""
    from sklearn_ood import all_detectors

    return all_detectors()


def describe(cls):
    """What a detector needs from the model, for ``sklearn-ood list``."""
    required = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return required


def select(tokens, detectors=None):
    """The detectors named by ``--detectors`` (names or families).

    Case-insensitive; commas and spaces both separate. ``None`` or empty
    selects every detector. Unknown names are one usage error listing the
    valid names and families.
    """
    detectors = catalogue() if detectors is None else detectors
    words = [w for token in tokens or () for w in token.split(",") if w.strip()]
    if not words:
        return list(detectors)
    by_name = {name.lower(): (name, cls) for name, cls in detectors}
    chosen, unknown = {}, []
    for word in (w.strip().lower() for w in words):
        if word == "all":
            chosen.update(dict(detectors))
        elif word in by_name:
            name, cls = by_name[word]
            chosen[name] = cls
        elif word in FAMILIES:
            chosen.update({name: cls for name, cls in detectors if cls._family == word})
        else:
            unknown.append(word)
    if unknown:
        raise UsageError(
            f"unknown detector or family {', '.join(map(repr, unknown))}; valid "
            f"detectors: {', '.join(name for name, _ in detectors)}; families: "
            f"{', '.join(FAMILIES)}."
        )
    # Keep the catalogue's order whatever the order on the command line.
    return [(name, cls) for name, cls in detectors if name in chosen]


def build(selected, *, model, head, blocks, seed, device, n_classes):
    """Construct the selected detectors for this model.

    Parameters
    ----------
    selected : list of (name, class)
    model : torch.nn.Module
    head : torch.nn.Linear or None
        None when the model's penultimate features cannot be taken
        (TorchScript, or no ``nn.Linear``).
    blocks : list of str
        Convolution blocks (``layers`` of Gram; the layer list of the
        "layers" input kind with the penultimate features).
    seed : int
        ``random_state`` of the detectors that draw random numbers.
    device : str
    n_classes : int
        Number of ID classes (caps :data:`CLASS_COUNT_PARAMS`).

    Returns
    -------
    detectors : dict
        Name -> unfitted detector, for ``evaluate``.
    skipped : list of dict
        ``{"detector", "family", "reason"}`` for those that do not apply.
    """
    detectors, skipped = {}, []
    for name, cls in selected:
        reason = _not_applicable(cls, head, blocks)
        if reason is None:
            kwargs, reason = _arguments(cls, model, head, blocks)
        if reason is not None:
            skipped.append({"detector": name, "family": cls._family, "reason": reason})
            continue
        params = inspect.signature(cls).parameters
        optional = {
            "contamination": None,
            "device": device,
            "random_state": seed,
        }
        kwargs.update({k: v for k, v in optional.items() if k in params})
        for param in CLASS_COUNT_PARAMS:
            default = params[param].default if param in params else None
            if isinstance(default, int) and default > n_classes:
                kwargs[param] = n_classes
        kwargs.update(SPEED_SETTINGS.get(name, {}))
        detectors[name] = cls(**kwargs)
    return detectors, skipped


def _not_applicable(cls, head, blocks):
    if cls._needs_special_model is not None:
        return cls._needs_special_model
    kind = cls._input_kind
    if kind in ("features", "layers") and head is None:
        return (
            "needs layer features, which this model does not give (the layers "
            "of a TorchScript model cannot be hooked: pass a state dict with "
            "--arch; a model without an nn.Linear head has no penultimate layer)"
        )
    if kind == "layers" and not blocks:
        return "needs several layers: the model has no block<k> children (--layers)"
    return None


def _arguments(cls, model, head, blocks):
    """The required arguments of ``cls``, or the reason they cannot be given."""
    kwargs = {}
    for param in describe(cls):
        if param == "head":
            if head is None:
                return None, "needs the model's head (nn.Linear), not found"
            kwargs["head"] = head
        elif param == "model":
            kwargs["model"] = model
        elif param == "layers":
            if not blocks:
                return None, "needs convolution blocks: none found (--layers)"
            kwargs["layers"] = list(blocks)
        else:
            return None, f"needs {param}=..., which the benchmark cannot choose"
    return kwargs, None
