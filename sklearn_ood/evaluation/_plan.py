"""What each detector consumes, and the one feature extraction that feeds them.

:func:`~sklearn_ood.evaluation.evaluate` checks its arguments here, decides
for every detector which layers it needs (or the raw inputs), asks the
transformer once per input set for the union of those layers and cuts each
detector's columns out of that one result. Nothing here imports torch: a
transformer is recognised as layer-aware by its ``layer`` parameter.
"""

import sys
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

INPUTS = "inputs"
# A detector fed the whole output of a transformer without a ``layer``.
ALL_COLUMNS = "all columns"
# The default layer of each ``_input_kind`` under a layer-aware transformer;
# "layers" takes the transformer's own ``layer`` and "inputs" the raw inputs.
_DEFAULT_LAYER = {"logits": "logits", "features": "penultimate"}
_KINDS = ("logits", "features", "layers", INPUTS)
_LAYER_HELP = (
    "a layer is 'logits', 'penultimate', a submodule name of the model, a list "
    "of those (side by side, in that order), or 'inputs' (raw inputs)"
)


@dataclass
class _Entry:
    """One detector to evaluate: its name, the user's object and what it eats.

    ``source`` is ``INPUTS`` (raw inputs, or the arrays as given without a
    transformer), ``ALL_COLUMNS`` (the output of a transformer without a
    ``layer`` parameter) or a tuple of layer names.
    """

    name: str
    estimator: object
    layer: object  # as the user gave it: None, a str or a tuple of str
    source: object = None


# ------------------------------------------------------------------ checks
def check_detectors(detectors):
    """``detectors`` (dict or list) as a list of :class:`_Entry`."""
    if not detectors:
        raise ValueError(
            "detectors is empty: pass at least one detector, e.g. "
            "{'Energy': Energy(), 'KNN': KNN()}."
        )
    if isinstance(detectors, dict):
        items = list(detectors.items())
        for name, _ in items:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"Detector names must be non-empty strings; got {name!r}."
                )
    else:
        items = []
        for value in detectors:
            estimator = value[0] if _is_pair(value) else value
            items.append((_class_name(estimator), value))
        names = [name for name, _ in items]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"Detectors in a list are named by their class, and {repeated} "
                "occur more than once. Pass a dict of unique names instead, e.g. "
                "{'KNN-10': KNN(n_neighbors=10), 'KNN-50': KNN(n_neighbors=50)}."
            )
    entries = []
    for name, value in items:
        estimator, layer = value if _is_pair(value) else (value, None)
        _check_estimator(name, estimator)
        entries.append(_Entry(name, estimator, _check_layer(name, layer)))
    return entries


def _is_pair(value):
    return isinstance(value, tuple) and len(value) == 2


def _class_name(estimator):
    return (
        estimator.__name__ if isinstance(estimator, type) else type(estimator).__name__
    )


def _check_estimator(name, estimator):
    if isinstance(estimator, type):
        raise ValueError(
            f"Detector {name!r} is the class {estimator.__name__}, not an "
            f"instance: pass {estimator.__name__}(...)."
        )
    missing = [
        m for m in ("fit", "score_samples", "get_params") if not hasattr(estimator, m)
    ]
    if missing:
        raise ValueError(
            f"Detector {name!r} must be a scikit-learn estimator with fit and "
            f"score_samples (higher = more in-distribution); "
            f"{type(estimator).__name__} has no {', '.join(missing)}."
        )


def _check_layer(name, layer):
    """None (the default of the detector's kind), INPUTS, or a tuple of names."""
    if layer is None or layer == INPUTS:
        return layer
    names = [layer] if isinstance(layer, str) else layer
    if not isinstance(names, list | tuple) or not names:
        raise ValueError(f"Detector {name!r}: invalid layer {layer!r}; {_LAYER_HELP}.")
    for item in names:
        if not isinstance(item, str) or not item or item == INPUTS:
            raise ValueError(
                f"Detector {name!r}: invalid layer name {item!r} in {layer!r}; "
                f"{_LAYER_HELP} ('inputs' cannot be combined with layers)."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"Detector {name!r}: layer {layer!r} names a layer twice.")
    return tuple(names)


def check_test_sets(test_sets, id_set):
    """The names of the OOD sets (every key but ``id_set``, in order)."""
    for name, X in test_sets.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"Test set names must be non-empty strings; got {name!r}.")
        if X is None:
            raise ValueError(f"Test set {name!r} is None.")
    if id_set not in test_sets:
        raise ValueError(
            f"test_sets has no in-distribution set {id_set!r} (id_set); its keys "
            f"are {list(test_sets)}. Add the ID test set under that key or pass "
            "id_set=<its key>."
        )
    ood_sets = [name for name in test_sets if name != id_set]
    if not ood_sets:
        raise ValueError(
            f"test_sets holds only the in-distribution set {id_set!r}: add at least "
            "one OOD set, e.g. {'id': X_test, 'noise': X_noise}."
        )
    if "mean" in ood_sets:
        raise ValueError(
            "An OOD set is named 'mean', which the table uses for the mean over "
            "the OOD sets; rename it."
        )
    return ood_sets


# --------------------------------------------------------------- resolution
def is_layer_aware(transformer):
    """Whether ``transformer`` takes a ``layer`` parameter (TorchFeatureTransformer)."""
    return transformer is not None and "layer" in transformer.get_params(deep=False)


def resolve_sources(entries, transformer):
    """Set each entry's ``source``; return the ordered union of layer names."""
    layer_aware = is_layer_aware(transformer)
    union = {}  # an ordered set
    for entry in entries:
        kind = getattr(entry.estimator, "_input_kind", "features")
        if kind not in _KINDS:  # an estimator from elsewhere: one feature vector
            kind = "features"
        if entry.layer == INPUTS or (entry.layer is None and kind == INPUTS):
            entry.source = INPUTS
        elif transformer is None:
            if entry.layer is not None:
                raise ValueError(
                    f"Detector {entry.name!r} asks for layer {list(entry.layer)}, "
                    "but transformer is None: pass transformer="
                    "TorchFeatureTransformer(model), or drop the layer to give it "
                    "the arrays as they are."
                )
            entry.source = INPUTS
        elif not layer_aware:
            if entry.layer is not None:
                raise ValueError(
                    f"Detector {entry.name!r} asks for layer {list(entry.layer)}, "
                    f"but the transformer {type(transformer).__name__} has no "
                    "'layer' parameter: drop the layer (the detector then gets the "
                    "transformer's output) or use a TorchFeatureTransformer."
                )
            entry.source = ALL_COLUMNS
        else:
            layer = entry.layer
            if layer is None:
                own = transformer.get_params(deep=False)["layer"]
                layer = _DEFAULT_LAYER.get(kind, own)
                layer = (layer,) if isinstance(layer, str) else tuple(layer)
            entry.source = layer
            union.update(dict.fromkeys(layer))
    return list(union)


# --------------------------------------------------------------- extraction
class FeatureBank:
    """Each input set through the transformer once; the columns per source.

    ``fit`` fits a clone of the transformer on ``X_fit`` (with ``layer`` set
    to the union of the detectors' layers when it is layer-aware), and
    transforms ``X_fit`` and every test set exactly once. ``get(set, source)``
    then returns a detector's input: the raw set for ``INPUTS``, the whole
    output for ``ALL_COLUMNS``, or its layers' blocks side by side. Each
    distinct source is cut (a C-contiguous copy, the array a pipeline would
    pass) once per set, and the full output is dropped after cutting.
    """

    FIT = object()  # key of the fit set, which no test set name can equal

    def __init__(self, transformer, union, sources):
        self.transformer = transformer
        self.union = union
        self.sources = [s for s in dict.fromkeys(sources) if s != INPUTS]
        self.fitted_transformer = None
        self.widths = {}
        self.fit_seconds = 0.0
        self.seconds = {}
        self._raw, self._features = {}, {}

    def fit(self, X_fit, y_fit, test_sets, verbose=0):
        self._raw = {self.FIT: X_fit, **test_sets}
        self.seconds = dict.fromkeys(test_sets, 0.0)
        if not self.sources:  # every detector takes raw inputs
            return self
        transformer, slices = clone(self.transformer), {}
        if self.union:
            layer = self.union[0] if len(self.union) == 1 else list(self.union)
            transformer.set_params(layer=layer)
        for key, X in self._raw.items():
            start = time.perf_counter()
            if key is self.FIT:
                features = transformer.fit_transform(X_fit, y_fit)
                slices = self._block_slices(transformer)
            else:
                features = transformer.transform(X)
            features = np.asarray(features)
            self._features[key] = {
                s: self._cut(features, s, slices) for s in self.sources
            }
            seconds = time.perf_counter() - start
            if key is self.FIT:
                self.fit_seconds = seconds
            else:
                self.seconds[key] = seconds
            if verbose > 1:
                label = "fit set" if key is self.FIT else f"set {key!r}"
                print(
                    f"[evaluate] extracted {label}: {seconds:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        self.fitted_transformer = transformer
        return self

    def _block_slices(self, transformer):
        if not self.union:
            return {}
        blocks = getattr(transformer, "feature_blocks_", None)
        if blocks is None:
            if len(self.union) > 1:
                raise ValueError(
                    f"The transformer {type(transformer).__name__} has a 'layer' "
                    "parameter but no feature_blocks_ after fit, so the columns of "
                    f"each of the layers {self.union} are unknown."
                )
            return {self.union[0]: slice(None)}
        slices, start = {}, 0
        for name, width in blocks.items():
            slices[name] = slice(start, start + int(width))
            self.widths[name] = int(width)
            start += int(width)
        return slices

    @staticmethod
    def _cut(features, source, slices):
        if source == ALL_COLUMNS:
            return features
        parts = [features[:, slices[name]] for name in source]
        block = parts[0] if len(parts) == 1 else np.hstack(parts)
        # A copy only when a slice is not already contiguous (one layer of
        # several): the detector then sees the array a Pipeline would give it.
        return np.ascontiguousarray(block)

    def get(self, key, source):
        if source == INPUTS:
            return self._raw[key]
        return self._features[key][source]

    def group_widths(self, source):
        """Block widths of a tuple of layers (for ``groups``), else None."""
        if isinstance(source, tuple) and all(n in self.widths for n in source):
            return [self.widths[name] for name in source]
        return None
