"""The OOD label check shared by detectors and metrics (``check_ood_labels``)."""

from fractions import Fraction

import numpy as np
import pytest

from sklearn_ood._labels import check_ood_labels
from sklearn_ood.metrics import auroc

INT64_MAX = np.iinfo(np.int64).max


@pytest.mark.parametrize(
    "y",
    [
        np.array([3, -1, 7], dtype=np.int8),
        np.array([3, 0, 7], dtype=np.uint8),
        np.array([3, 0, INT64_MAX], dtype=np.uint64),
        np.array([3.0, -1.0, 7.0], dtype=np.float32),
        np.array([3, -1.0, np.int16(7)], dtype=object),
        np.array([np.float32(3.0), np.uint64(2**63 - 1), Fraction(4, 2)], dtype=object),
        [3, -1, 7],
    ],
)
def test_valid_labels_become_int64(y):
    out = check_ood_labels(y)
    assert out.dtype == np.int64
    assert out.tolist() == [int(v) for v in y]


def test_object_python_ints_are_checked_exactly():
    # no detour through float64: 2**62 + 1 keeps its last bit
    y = np.array([2**62 + 1, -1], dtype=object)
    assert check_ood_labels(y).tolist() == [2**62 + 1, -1]
    y = np.array([-(2**63), 0], dtype=object)
    assert check_ood_labels(y).tolist() == [-(2**63), 0]


@pytest.mark.parametrize(
    "y",
    [
        np.array([0, 2**63], dtype=np.uint64),
        np.array([0, 2**64 - 1], dtype=np.uint64),
        np.array([0, 2**63], dtype=object),
        np.array([0, -(2**63) - 1], dtype=object),
        np.array([0.0, 2.0**63]),
        np.array([0.0, -1e30]),
        np.array([0.0, 1e30], dtype=object),
    ],
)
def test_labels_beyond_int64_raise(y):
    # uint64 labels >= 2**63 used to wrap to negative values: silently OOD
    with pytest.raises(ValueError, match="does not fit in a signed 64-bit integer"):
        check_ood_labels(y)


def test_uint64_wrap_no_longer_makes_ood_rows():
    y = np.array([0, 0, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(ValueError, match="would otherwise wrap around"):
        auroc(y, [0.9, 0.8, 0.1])


@pytest.mark.parametrize(
    "y",
    [
        np.array(["-1", "3"], dtype=object),
        np.array([0, "-1"], dtype=object),
        np.array([b"-1", b"3"], dtype=object),
        np.array(["-1", "3"]),
        np.array([b"-1", b"3"]),
    ],
)
def test_text_labels_raise_even_when_numeric(y):
    # "-1" used to be read as an OOD label
    with pytest.raises(ValueError, match="Unknown label type.*text") as info:
        check_ood_labels(y)
    assert "astype(int)" in str(info.value)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([None, 1], dtype=object), "Unknown label type.*NoneType"),
        (np.array([1 + 0j, 1], dtype=object), "Unknown label type.*complex"),
        (np.array([True, 0], dtype=object), "boolean|np.where"),
        (np.array([np.bool_(False), 0], dtype=object), "np.where"),
        (np.array([0.5, 1], dtype=object), "non-integer value.*0.5"),
        (np.array([float("nan"), 1], dtype=object), "NaN or infinity"),
        (np.array([True, False]), "boolean array"),
        (np.array([0.5, 1.0]), r"non-integer value\(s\) such as 0.5"),
    ],
)
def test_other_bad_labels_raise(y, match):
    with pytest.raises(ValueError, match=match):
        check_ood_labels(y)
