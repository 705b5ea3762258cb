"""Saving and loading every NumPy detector: pickle, joblib and skops.

docs/saving.md documents these round trips. Its table of the types that
``skops.io.load`` must trust is checked here against the types that skops
reports for each fitted detector, so that the page cannot go stale: when a
class moves or a detector gains a helper object, the test fails and prints
the table to paste.
"""

import pathlib
import pickle
import re

import joblib
import numpy as np
import pytest
from _helpers import RandomLinearHead
from test_common import DETECTOR_KWARGS

from sklearn_ood import all_detectors
from sklearn_ood.base import PartialFitMixin
from sklearn_ood.exceptions import NoThresholdError

DETECTORS = all_detectors(include_torch=False)
PARTIAL_FIT_DETECTORS = [
    (name, cls) for name, cls in DETECTORS if issubclass(cls, PartialFitMixin)
]
# Detectors the common checks give a head as a callable (tests' RandomLinearHead).
HEAD_DETECTORS = [
    (name, cls)
    for name, cls in DETECTORS
    if any(
        isinstance(v, RandomLinearHead) for v in DETECTOR_KWARGS.get(name, {}).values()
    )
]
SAVING_DOC = pathlib.Path(__file__).parents[1] / "docs" / "saving.md"
_TABLE_START = "<!-- skops-trusted-types: start -->"
_TABLE_END = "<!-- skops-trusted-types: end -->"

# The test's random head leaves a class of SHE without a correctly classified
# fit row, which SHE reports; it does not matter for saving.
pytestmark = pytest.mark.filterwarnings(
    "ignore:SHE has no correctly classified:UserWarning"
)


def _data(n_samples=60, n_features=6, seed=0):
    """Non-negative features (or logits) whose largest column is the label."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 3
    X = np.abs(
        3.0 * np.eye(3, n_features)[y] + rng.normal(size=(n_samples, n_features))
    )
    return X, y


def _detector(name, cls, **params):
    return cls(**{**DETECTOR_KWARGS.get(name, {}), **params})


def _fitted(name, cls, **params):
    X, y = _data()
    return _detector(name, cls, **params).fit(X, y)


def _assert_same_detector(loaded, det):
    X_test, _ = _data(40, seed=1)
    assert type(loaded) is type(det)
    assert repr(loaded.get_params()) == repr(det.get_params())
    np.testing.assert_array_equal(
        loaded.score_samples(X_test), det.score_samples(X_test)
    )
    if "offset_" in vars(det):
        assert loaded.offset_ == det.offset_
        np.testing.assert_array_equal(
            loaded.decision_function(X_test), det.decision_function(X_test)
        )
        np.testing.assert_array_equal(loaded.predict(X_test), det.predict(X_test))
    else:
        with pytest.raises(NoThresholdError):
            loaded.predict(X_test)


# ------------------------------------------------------------ pickle, joblib
@pytest.mark.parametrize("contamination", [0.05, None])
@pytest.mark.parametrize("name, cls", DETECTORS)
def test_pickle_round_trip(name, cls, contamination):
    det = _fitted(name, cls, contamination=contamination)
    _assert_same_detector(pickle.loads(pickle.dumps(det)), det)


@pytest.mark.parametrize("name, cls", DETECTORS)
def test_joblib_round_trip(name, cls, tmp_path):
    det = _fitted(name, cls)
    path = tmp_path / f"{name}.joblib"
    joblib.dump(det, path)
    _assert_same_detector(joblib.load(path), det)


@pytest.mark.parametrize("name, cls", PARTIAL_FIT_DETECTORS)
def test_partial_fit_continues_after_loading(name, cls):
    # The reservoir of threshold scores is saved too: a loaded stream goes on
    # exactly as the one that never left memory.
    X, y = _data(90)
    det = _detector(name, cls).partial_fit(X[:60], y[:60])
    loaded = pickle.loads(pickle.dumps(det))
    det.partial_fit(X[60:], y[60:])
    loaded.partial_fit(X[60:], y[60:])
    assert loaded.n_samples_seen_ == det.n_samples_seen_ == 90
    _assert_same_detector(loaded, det)


# ---------------------------------------------------------------------- skops
def _documented_trusted_types():
    """{detector name: set of type names} from the table in docs/saving.md."""
    text = SAVING_DOC.read_text()
    assert _TABLE_START in text and _TABLE_END in text, (
        f"{SAVING_DOC} lost the markers around its table of trusted types"
    )
    table = text.split(_TABLE_START, 1)[1].split(_TABLE_END, 1)[0]
    documented = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue  # header, separator or blank line
        documented[cells[0].strip("`")] = set(re.findall(r"`([^`]+)`", cells[1]))
    return documented


def _table(trusted):
    rows = [
        f"| `{name}` | " + ", ".join(f"`{t}`" for t in sorted(types)) + " |"
        for name, types in sorted(trusted.items())
    ]
    return "\n".join(["| detector | types to trust |", "| --- | --- |", *rows])


def _user_types(det):
    """Type names of the objects the test itself supplies (heads)."""
    return {
        f"{type(value).__module__}.{type(value).__qualname__}"
        for value in det.get_params(deep=False).values()
        if isinstance(value, RandomLinearHead)
    }


def _untrusted_types(det, path):
    sio = pytest.importorskip("skops.io")
    sio.dump(det, path)
    return sio.get_untrusted_types(file=path)


def _generated_trusted_types(tmp_path):
    trusted = {}
    for name, cls in DETECTORS:
        det = _fitted(name, cls)
        untrusted = set(_untrusted_types(det, tmp_path / f"{name}.skops"))
        trusted[name] = untrusted - _user_types(det)
    return trusted


def test_documented_trusted_types_are_those_skops_reports(tmp_path):
    generated = _generated_trusted_types(tmp_path)
    assert _documented_trusted_types() == generated, (
        f"The table of trusted types in {SAVING_DOC} is stale. Replace the "
        f"table between its markers by:\n\n{_table(generated)}\n"
    )


def test_documented_trusted_types_name_internal_types_only():
    # A documented type is sklearn-ood's own: nothing a user supplied.
    for name, types in _documented_trusted_types().items():
        assert all(t.startswith("sklearn_ood.") for t in types), name


@pytest.mark.parametrize("name, cls", DETECTORS)
def test_skops_round_trip(name, cls, tmp_path):
    sio = pytest.importorskip("skops.io")
    det = _fitted(name, cls)
    path = tmp_path / f"{name}.skops"
    untrusted = _untrusted_types(det, path)
    # What a loader must trust: the documented types, plus the type of every
    # object the user supplied (here the test's head, given as a callable).
    documented = _documented_trusted_types().get(name, set())
    assert set(untrusted) == documented | _user_types(det)
    _assert_same_detector(sio.load(path, trusted=untrusted), det)


@pytest.mark.parametrize("name, cls", HEAD_DETECTORS)
def test_skops_head_given_as_arrays_needs_no_extra_trust(name, cls, tmp_path):
    params = {
        key: value(6)  # the (W, b) pair the callable would build
        for key, value in DETECTOR_KWARGS.get(name, {}).items()
        if isinstance(value, RandomLinearHead)
    }
    det = _fitted(name, cls, **params)
    untrusted = _untrusted_types(det, tmp_path / f"{name}.skops")
    assert set(untrusted) == _documented_trusted_types()[name]


def test_skops_inner_detector_given_by_the_user_needs_its_own_types(tmp_path):
    from sklearn_ood.detectors import MaxLogit

    name, cls = "ReAct", dict(DETECTORS)["ReAct"]
    det = _detector(name, cls).set_params(detector=MaxLogit())
    X, y = _data()
    det.fit(X, y)
    untrusted = set(_untrusted_types(det, tmp_path / "react.skops"))
    documented = _documented_trusted_types()
    inner = documented["Energy"]  # the default inner detector
    expected = (documented[name] - inner) | documented["MaxLogit"] | _user_types(det)
    assert untrusted == expected


def test_skops_refuses_to_load_untrusted_types(tmp_path):
    sio = pytest.importorskip("skops.io")
    from skops.io.exceptions import UntrustedTypesFoundException

    from sklearn_ood.detectors import Mahalanobis

    X, y = _data()
    path = tmp_path / "mahalanobis.skops"
    sio.dump(Mahalanobis().fit(X, y), path)
    with pytest.raises(UntrustedTypesFoundException):
        sio.load(path)
