"""scikit-learn's own estimator checks over every registered detector."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_ood import all_detectors

# Constructor arguments for detectors that cannot be built with defaults alone.
DETECTOR_KWARGS = {}

# Every expected failure of scikit-learn's checks, with its reason, in one place:
# {detector name: {check name: reason}}.
EXPECTED_FAILED_CHECKS = {}


def _instances():
    for name, cls in all_detectors():
        yield cls(**DETECTOR_KWARGS.get(name, {}))


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def test_registry_is_not_empty():
    names = [name for name, _ in all_detectors()]
    assert {"MaxSoftmax", "Energy", "MaxLogit", "Entropy", "GEN"} <= set(names)


@parametrize_with_checks(
    list(_instances()), expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible_detector(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name, cls", all_detectors())
def test_detector_is_exported(name, cls):
    import sklearn_ood.detectors as detectors

    module = cls.__module__
    if module.startswith("sklearn_ood.detectors"):
        assert getattr(detectors, name) is cls
