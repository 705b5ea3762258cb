"""numpydoc's validator over every public class, method and function.

As scikit-learn's ``sklearn/tests/test_docstrings.py`` does: a docstring
error fails the test with numpydoc's message. The codes ignored everywhere,
and those checked only on classes, are the same as scikit-learn's.
"""

import importlib
import inspect

import pytest

# numpydoc is in the test extra: a missing install fails here, not skips.
from numpydoc import validate as numpydoc_validation

from sklearn_ood import all_detectors

# RT02 (the Returns type line may name the returned object), GL01/GL02
# (blank-line layout of the summary): ignored by scikit-learn too.
_IGNORED = {"RT02", "GL01", "GL02"}
# An extended summary, See Also and Examples are required of classes only.
_CLASS_ONLY = {"ES01", "SA01", "EX01"}
_METHODS = (
    "fit",
    "partial_fit",
    "score_samples",
    "decision_function",
    "predict",
    "fit_predict",
    "transform",
    "fit_transform",
    "get_feature_names_out",
    "layer_scores",
    "fit_layer_weights",
    "plot",
    "from_estimator",
    "from_estimators",
    "from_predictions",
)
# Public modules whose ``__all__`` functions and classes are checked.
_MODULES = [
    "sklearn_ood",
    "sklearn_ood.metrics",
    "sklearn_ood.detectors",
    "sklearn_ood.exceptions",
    "sklearn_ood.torch",
    "sklearn_ood.datasets",
    "sklearn_ood.evaluation",
    "sklearn_ood.plotting",
]


def _public_objects():
    seen = {}
    for _name, cls in all_detectors():
        seen[f"{cls.__module__}.{cls.__qualname__}"] = cls
    for module_name in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name != "torch":
                raise
            continue  # the torch extra is not installed
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for qualname, obj in sorted(seen.items()):
        yield qualname, None
        if inspect.isclass(obj):
            for method in _METHODS:
                # Methods defined by scikit-learn itself are not ours to check.
                func = getattr(obj, method, None)
                if func is not None and func.__module__.startswith("sklearn_ood"):
                    yield qualname, method


def _errors(qualname, method):
    target = qualname if method is None else f"{qualname}.{method}"
    result = numpydoc_validation.validate(target)
    for code, message in result["errors"]:
        if code in _IGNORED or (method is not None and code in _CLASS_ONLY):
            continue
        yield f"{code}: {message}"


@pytest.mark.parametrize(
    "qualname, method",
    list(_public_objects()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_docstring(qualname, method):
    errors = list(_errors(qualname, method))
    target = qualname if method is None else f"{qualname}.{method}"
    assert not errors, f"{target}:\n" + "\n".join(errors)
