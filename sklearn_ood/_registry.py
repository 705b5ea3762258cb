"""Discovery of every public detector, like ``sklearn.utils.all_estimators``."""

import importlib
import inspect
import pkgutil

__all__ = ["all_detectors"]

# The families a detector's ``_family`` names, in the order the documentation
# and ``sklearn-ood list`` show them (one documentation page each).
FAMILIES = (
    "logits",
    "fitted-logits",
    "gaussian",
    "neighbors",
    "head-aware",
    "activation-shaping",
    "learned-centers",
    "model",
)

# Subpackages scanned for detectors; ``torch`` is scanned only when torch imports.
_NUMPY_PACKAGES = ("sklearn_ood.detectors",)
_TORCH_PACKAGE = "sklearn_ood.torch"


def _torch_available():
    return importlib.util.find_spec("torch") is not None


def _public_classes(package_name):
    package = importlib.import_module(package_name)
    modules = [package]
    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
        if any(part.startswith("test") for part in info.name.split(".")):
            continue
        modules.append(importlib.import_module(info.name))
    for module in modules:
        yield from inspect.getmembers(module, inspect.isclass)


def all_detectors(include_torch="auto"):
    """Return every public detector class of sklearn-ood.

    Like :func:`sklearn.utils.all_estimators`: the public subclasses of
    :class:`~sklearn_ood.base.BaseDetector` found in
    :mod:`sklearn_ood.detectors` (and :mod:`sklearn_ood.torch`), for loops
    over the whole catalogue such as the common estimator checks.

    Parameters
    ----------
    include_torch : bool or "auto", default="auto"
        Also list the detectors of :mod:`sklearn_ood.torch`. ``"auto"`` does so
        when torch is installed; ``True`` raises ``ImportError`` otherwise.

    Returns
    -------
    detectors : list of (name, class) tuples
        Sorted by name; abstract bases and private classes are left out.

    See Also
    --------
    sklearn.utils.all_estimators : The same list for scikit-learn's estimators.

    Examples
    --------
    >>> from sklearn_ood import all_detectors
    >>> names = [name for name, _ in all_detectors(include_torch=False)]
    >>> "Energy" in names
    True
    """
    from sklearn_ood.base import BaseDetector

    packages = list(_NUMPY_PACKAGES)
    if include_torch is True or (include_torch == "auto" and _torch_available()):
        try:
            importlib.import_module(_TORCH_PACKAGE)
        except ModuleNotFoundError as exc:
            if exc.name == _TORCH_PACKAGE:
                pass  # the torch bridge has not been written yet
            elif include_torch is True:
                raise
        else:
            packages.append(_TORCH_PACKAGE)

    found = {}
    for package_name in packages:
        for name, cls in _public_classes(package_name):
            if (
                issubclass(cls, BaseDetector)
                and cls is not BaseDetector
                and not name.startswith("_")
                and not inspect.isabstract(cls)
                and not name.startswith("Base")
            ):
                found[name] = cls
    return sorted(found.items())
