import numpy as np
import pytest
from scipy.stats import norm
from sklearn.datasets import load_digits

from sklearn_ood.datasets import load_digits_ood

_OOD_ORDER = [
    "held-out-digits",
    "uniform-noise",
    "gaussian-noise",
    "inverted",
    "flipped",
]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def bunch():
    return load_digits_ood()


def _original_rows(images, digits):
    """Row index in load_digits of every image (the digits have no duplicate)."""
    lookup = {
        (row / 16).astype(np.float32).tobytes(): i for i, row in enumerate(digits.data)
    }
    return np.array([lookup[x.reshape(-1).tobytes()] for x in images])


def test_layout_shapes_dtypes_ranges(bunch):
    n_train, n_test = bunch.data.shape[0], bunch.data_test.shape[0]
    assert bunch.data.shape == (n_train, 1, 8, 8)
    assert bunch.data_test.shape == (n_test, 1, 8, 8)
    assert bunch.target.shape == (n_train,) and bunch.target.dtype == np.int64
    assert bunch.target_test.shape == (n_test,) and bunch.target_test.dtype == np.int64
    assert list(bunch.ood) == _OOD_ORDER
    assert bunch.ood_kind == {
        "held-out-digits": "near",
        "uniform-noise": "far",
        "gaussian-noise": "far",
        "inverted": "far",
        "flipped": "far",
    }
    for x in [bunch.data, bunch.data_test, *bunch.ood.values()]:
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == (1, 8, 8)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.flags.c_contiguous
    for name in _OOD_ORDER[1:]:
        assert bunch.ood[name].shape[0] == n_test
    assert bunch.id_classes == (0, 1, 2, 3, 4)
    assert list(bunch.target_names) == ["0", "1", "2", "3", "4"]
    assert isinstance(bunch.DESCR, str)
    for name in _OOD_ORDER:
        assert name in bunch.DESCR
    assert f"ID test (data_test, target_test): {n_test} images" in bunch.DESCR


def test_split_is_disjoint_stratified_and_complete(bunch, digits):
    train = _original_rows(bunch.data, digits)
    test = _original_rows(bunch.data_test, digits)
    assert np.intersect1d(train, test).size == 0
    id_rows = np.flatnonzero(np.isin(digits.target, bunch.id_classes))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), id_rows)
    for k, digit in enumerate(bunch.id_classes):
        n_class = np.sum(digits.target == digit)
        n_test = np.sum(digits.target[test] == digit)
        # every class split in proportion test_size, to the row
        assert n_test == round(0.3 * n_class)
        assert np.sum(bunch.target_test == k) == n_test
        assert np.sum(bunch.target == k) == n_class - n_test


def test_target_indexes_id_classes(digits):
    bunch = load_digits_ood(id_classes=(7, 3), random_state=0)
    assert bunch.id_classes == (7, 3)
    assert list(bunch.target_names) == ["7", "3"]
    for x, target in [(bunch.data, bunch.target), (bunch.data_test, bunch.target_test)]:
        original = digits.target[_original_rows(x, digits)]
        np.testing.assert_array_equal(np.array([7, 3])[target], original)
        assert set(np.unique(target)) == {0, 1}


def test_held_out_digits_are_exactly_the_other_classes(digits):
    bunch = load_digits_ood(id_classes=(1, 4, 9), random_state=3)
    other = ~np.isin(digits.target, (1, 4, 9))
    expected = (digits.images[other] / 16).astype(np.float32)[:, None]
    np.testing.assert_array_equal(bunch.ood["held-out-digits"], expected)


def test_inverted_and_flipped(bunch):
    X = bunch.data_test
    np.testing.assert_array_equal(bunch.ood["inverted"], 1.0 - X)
    np.testing.assert_array_equal(bunch.ood["flipped"], X[:, :, ::-1, :])
    # upside down (rows reversed), not mirrored left-right
    assert not np.array_equal(bunch.ood["flipped"], X[:, :, :, ::-1])
    assert not np.array_equal(bunch.ood["flipped"], X)


def test_noise_sets(bunch):
    uniform = bunch.ood["uniform-noise"]
    gaussian = bunch.ood["gaussian-noise"]
    assert abs(uniform.mean() - 0.5) < 0.02
    assert np.mean(uniform == 0.0) < 0.01
    below = norm.cdf(0.0, loc=0.5, scale=1.0)
    assert abs(np.mean(gaussian == 0.0) - below) < 0.03
    assert abs(np.mean(gaussian == 1.0) - below) < 0.03
    assert not np.array_equal(uniform, gaussian)


def test_random_state():
    a = load_digits_ood(random_state=0)
    b = load_digits_ood(random_state=0)
    c = load_digits_ood(random_state=1)
    for key in ("data", "target", "data_test", "target_test"):
        np.testing.assert_array_equal(a[key], b[key])
    for name in _OOD_ORDER:
        np.testing.assert_array_equal(a.ood[name], b.ood[name])
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.ood["uniform-noise"], c.ood["uniform-noise"])
    # the held-out digits do not depend on the seed
    np.testing.assert_array_equal(a.ood["held-out-digits"], c.ood["held-out-digits"])
    rng = np.random.RandomState(0)
    assert not np.array_equal(
        load_digits_ood(random_state=rng).data, load_digits_ood(random_state=rng).data
    )


def test_test_size(digits):
    bunch = load_digits_ood(id_classes=(0, 1), test_size=0.5, random_state=0)
    for k, digit in enumerate((0, 1)):
        n_class = np.sum(digits.target == digit)
        assert np.sum(bunch.target_test == k) == round(0.5 * n_class)
    # a tiny test_size still keeps one row per class on the test side
    small = load_digits_ood(id_classes=(0, 1), test_size=1e-4, random_state=0)
    np.testing.assert_array_equal(np.bincount(small.target_test), [1, 1])


@pytest.mark.parametrize(
    "id_classes, match",
    [
        ((0, 1, 1), "distinct"),
        ((0, 10), "not digits"),
        ((-1, 2), "not digits"),
        (tuple(range(10)), "leave at least one"),
        ((), "empty"),
        ((0.0, 1.5), "integer"),
        ((True, False), "integer"),
        ([[0, 1], [2, 3]], "1-D"),
        (3, "id_classes"),
    ],
)
def test_bad_id_classes(id_classes, match):
    with pytest.raises(ValueError, match=match):
        load_digits_ood(id_classes=id_classes)


@pytest.mark.parametrize("test_size", [0, 1, -0.1, 1.5, "0.3"])
def test_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        load_digits_ood(test_size=test_size)
