import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from sklearn_ood.datasets import load_fashion_mnist, load_fashion_mnist_ood
from sklearn_ood.datasets._base import _stratified_subset

_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_REAL = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.tobytes()


def _write(folder, key, payload, gz):
    path = folder / (_NAMES[key] + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def _fake_fashion(folder, *, n_per_class_train=2, n_per_class_test=1, gz=True, seed=0):
    """Write a tiny Fashion-MNIST in idx format; return the arrays written."""
    rng = np.random.RandomState(seed)
    arrays = {
        "train_labels": np.tile(np.arange(10), n_per_class_train),
        "test_labels": np.tile(np.arange(10), n_per_class_test)[::-1].copy(),
    }
    for split in ("train", "test"):
        n = arrays[f"{split}_labels"].size
        arrays[f"{split}_images"] = rng.randint(0, 256, size=(n, 28, 28))
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        _write(folder, key, _idx_bytes(array), gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files(tmp_path, gz):
    arrays = _fake_fashion(tmp_path, gz=gz)
    bunch = load_fashion_mnist(tmp_path)
    assert bunch.data.dtype == np.uint8 and bunch.data.shape == (20, 28, 28)
    assert bunch.data_test.dtype == np.uint8 and bunch.data_test.shape == (10, 28, 28)
    assert bunch.target.dtype == np.int64 and bunch.target_test.dtype == np.int64
    np.testing.assert_array_equal(bunch.data, arrays["train_images"])
    np.testing.assert_array_equal(bunch.target, arrays["train_labels"])
    np.testing.assert_array_equal(bunch.data_test, arrays["test_images"])
    np.testing.assert_array_equal(bunch.target_test, arrays["test_labels"])
    assert list(bunch.target_names[:2]) == ["T-shirt/top", "Trouser"]
    assert bunch.target_names.shape == (10,)
    assert str(tmp_path) in bunch.DESCR
    bunch.data[0, 0, 0] = 7  # a loaded array is the user's to modify


def test_mixed_plain_and_gz_and_str_path(tmp_path):
    arrays = _fake_fashion(tmp_path, gz=True)
    (tmp_path / (_NAMES["test_labels"] + ".gz")).unlink()
    _write(tmp_path, "test_labels", _idx_bytes(arrays["test_labels"]), gz=False)
    bunch = load_fashion_mnist(str(tmp_path))
    np.testing.assert_array_equal(bunch.target_test, arrays["test_labels"])


def test_missing_folder_names_package_and_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(missing)
    message = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert str(missing) in message
    assert "train-images-idx3-ubyte" in message


def test_missing_file_is_named(tmp_path):
    _fake_fashion(tmp_path)
    (tmp_path / (_NAMES["test_labels"] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte") as info:
        load_fashion_mnist(tmp_path)
    assert "apt-get install -y dataset-fashion-mnist" in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_bad_magic(tmp_path, gz):
    arrays = _fake_fashion(tmp_path, gz=gz)
    # an images file written with the labels' magic number
    bad = _write(
        tmp_path, "train_images", _idx_bytes(arrays["train_images"], 0x801), gz
    )
    with pytest.raises(ValueError, match="magic number is 0x00000801") as info:
        load_fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)


def test_swapped_files_fail_on_magic(tmp_path):
    arrays = _fake_fashion(tmp_path, gz=False)
    _write(tmp_path, "train_labels", _idx_bytes(arrays["train_images"]), gz=False)
    with pytest.raises(ValueError, match="not an idx label file"):
        load_fashion_mnist(tmp_path)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "cut, match", [(-5, "is truncated: its header announces"), (6, "header needs")]
)
def test_truncated(tmp_path, gz, cut, match):
    arrays = _fake_fashion(tmp_path, gz=gz)
    payload = _idx_bytes(arrays["test_images"])
    bad = _write(tmp_path, "test_images", payload[:cut], gz)
    with pytest.raises(ValueError, match=match) as info:
        load_fashion_mnist(tmp_path)
    assert str(bad) in str(info.value)


def test_trailing_bytes(tmp_path):
    arrays = _fake_fashion(tmp_path, gz=False)
    _write(tmp_path, "test_labels", _idx_bytes(arrays["test_labels"]) + b"\0", False)
    with pytest.raises(ValueError, match="trailing bytes"):
        load_fashion_mnist(tmp_path)


def test_corrupt_gzip_names_file(tmp_path):
    _fake_fashion(tmp_path, gz=True)
    path = tmp_path / (_NAMES["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:40])  # the compressed stream ends early
    with pytest.raises(ValueError, match="Cannot read") as info:
        load_fashion_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_images_and_labels_disagree(tmp_path):
    arrays = _fake_fashion(tmp_path)
    _write(tmp_path, "train_labels", _idx_bytes(arrays["train_labels"][:-1]), True)
    with pytest.raises(ValueError, match="20 images but .* 19 labels"):
        load_fashion_mnist(tmp_path)


def test_label_out_of_range(tmp_path):
    arrays = _fake_fashion(tmp_path)
    labels = arrays["test_labels"].copy()
    labels[0] = 12
    _write(tmp_path, "test_labels", _idx_bytes(labels), True)
    with pytest.raises(ValueError, match="label 12"):
        load_fashion_mnist(tmp_path)


def test_bad_path_type():
    with pytest.raises(ValueError, match="path"):
        load_fashion_mnist(path=3)


# --------------------------------------------------------------------------
# The OOD preset
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fmnist")
    _fake_fashion(folder, n_per_class_train=6, n_per_class_test=3)
    return folder


def test_ood_layout(fake_dir):
    full = load_fashion_mnist(fake_dir)
    bunch = load_fashion_mnist_ood((2, 0, 5), path=fake_dir, random_state=0)
    assert list(bunch.ood) == [
        "held-out-classes",
        "digits",
        "uniform-noise",
        "gaussian-noise",
        "flipped",
    ]
    assert bunch.ood_kind == {
        "held-out-classes": "near",
        "digits": "far",
        "uniform-noise": "far",
        "gaussian-noise": "far",
        "flipped": "far",
    }
    for x in [bunch.data, bunch.data_test, *bunch.ood.values()]:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 28, 28)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert bunch.id_classes == (2, 0, 5)
    assert list(bunch.target_names) == ["Pullover", "T-shirt/top", "Sandal"]
    # every ID row of each split, in file order, target indexing id_classes
    for x, target, images, labels in [
        (bunch.data, bunch.target, full.data, full.target),
        (bunch.data_test, bunch.target_test, full.data_test, full.target_test),
    ]:
        keep = np.isin(labels, (2, 0, 5))
        np.testing.assert_array_equal(
            x, (images[keep] / np.float32(255))[:, None].astype(np.float32)
        )
        np.testing.assert_array_equal(np.array([2, 0, 5])[target], labels[keep])
        assert target.dtype == np.int64
    held = ~np.isin(full.target_test, (2, 0, 5))
    np.testing.assert_array_equal(
        bunch.ood["held-out-classes"] * 255, full.data_test[held][:, None]
    )
    np.testing.assert_array_equal(bunch.ood["flipped"], bunch.data_test[:, :, ::-1])
    n_test = bunch.data_test.shape[0]
    assert bunch.ood["uniform-noise"].shape[0] == n_test
    assert bunch.ood["gaussian-noise"].shape[0] == n_test
    assert bunch.ood["digits"].shape[0] == 1797


def test_digits_are_bilinear_upscaled(fake_dir):
    bunch = load_fashion_mnist_ood(path=fake_dir)
    images = load_digits().images
    expected = ndimage.zoom(images[:3] / 16.0, (1, 3.5, 3.5), order=1)
    np.testing.assert_allclose(bunch.ood["digits"][:3, 0], expected, atol=1e-6)
    # corners aligned: the corner pixels are the 8x8 image's corners
    np.testing.assert_allclose(
        bunch.ood["digits"][:, 0, -1, -1], images[:, -1, -1] / 16.0, atol=1e-6
    )


def test_ood_subsets_are_stratified_and_seeded(fake_dir):
    kwargs = dict(path=fake_dir, n_train=10, n_test=5)
    a = load_fashion_mnist_ood(random_state=0, **kwargs)
    b = load_fashion_mnist_ood(random_state=0, **kwargs)
    c = load_fashion_mnist_ood(random_state=1, **kwargs)
    np.testing.assert_array_equal(np.bincount(a.target), [2] * 5)
    np.testing.assert_array_equal(np.bincount(a.target_test), [1] * 5)
    for name, x in a.ood.items():
        assert x.shape[0] == 5, name
        np.testing.assert_array_equal(x, b.ood[name])
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.ood["gaussian-noise"], c.ood["gaussian-noise"])
    # one held-out image of each of the five other classes
    full = load_fashion_mnist(fake_dir)
    lookup = {img.tobytes(): lab for img, lab in zip(full.data_test, full.target_test)}
    held = [
        lookup[np.round(x[0] * 255).astype(np.uint8).tobytes()]
        for x in a.ood["held-out-classes"]
    ]
    assert sorted(held) == [5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_train": 31}, "larger than the 30 ID training images"),
        ({"n_train": 3}, "at least n_train=5"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 2.5}, "n_test"),
        ({"n_test": 16}, "larger than the 15 ID test images"),
        ({"id_classes": (0, 0)}, "distinct"),
        ({"id_classes": tuple(range(10))}, "leave at least one"),
    ],
)
def test_ood_bad_arguments(fake_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_fashion_mnist_ood(path=fake_dir, **kwargs)


def test_ood_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist_ood(path=tmp_path)


@pytest.mark.parametrize(
    "counts, n, expected",
    [
        # largest remainders: shares 2.33 each, the first tie gets the extra row
        ([5, 5, 5], 7, [3, 2, 2]),
        ([30, 10], 8, [6, 2]),
        # one row at least per class, taken back from the largest class
        ([1, 1, 98], 3, [1, 1, 1]),
        ([50, 3, 1], 10, [8, 1, 1]),
        ([4, 6], 10, [4, 6]),  # everything
    ],
)
def test_stratified_subset(counts, n, expected):
    y = np.repeat(np.arange(len(counts)), counts)
    rows = _stratified_subset(y, n, np.random.RandomState(0), name="n", what="rows")
    assert rows.size == n and np.all(np.diff(rows) > 0)  # distinct, file order
    np.testing.assert_array_equal(np.bincount(y[rows]), expected)


@pytest.mark.skipif(
    not (_REAL / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist():
    bunch = load_fashion_mnist()
    assert bunch.data.shape == (60000, 28, 28) and bunch.data.dtype == np.uint8
    assert bunch.data_test.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(bunch.target), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(bunch.target_test), [1000] * 10)
    assert bunch.target_names[bunch.target[0]] == "Ankle boot"
    ood = load_fashion_mnist_ood(n_train=100, n_test=50, random_state=0)
    assert ood.data.shape == (100, 1, 28, 28)
    assert {x.shape[0] for x in ood.ood.values()} == {50}
