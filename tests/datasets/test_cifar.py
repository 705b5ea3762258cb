"""load_cifar on tiny CIFAR-10 / CIFAR-100 folders written in the python format."""

import io
import os
import pickle
import struct

import numpy as np
import pytest

from sklearn_ood.datasets import load_cifar

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


class _Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's str, as in the original CIFAR files.

    The published batches were pickled by Python 2 (protocol 2): dict keys,
    class names, dtype codes and array buffers are all ``str`` there, i.e.
    (SHORT_)BINSTRING opcodes, which Python 3 reads back as bytes with
    ``encoding="bytes"``. The pure-Python pickler (private, test-only use)
    lets us emit them.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_py2_str


def _dumps(obj, style):
    """``obj`` pickled as Python 2 wrote CIFAR, or as Python 3 re-saves it."""
    if style == "python2":
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(obj)
        # NumPy 1 (as in 2009) named its reconstruct function numpy.core.
        return buffer.getvalue().replace(
            b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"
        )
    return pickle.dumps(obj, protocol={"protocol2": 2, "protocol5": 5}[style])


def _write(file, obj, style="python2"):
    file.write_bytes(_dumps(obj, style))


def _batch(rng, n, label_key=b"labels", n_classes=10):
    return {
        b"batch_label": b"training batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, n_classes, n).tolist(),
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }


def _make_cifar10(parent, style="python2", n=3, seed=0):
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {name: _batch(rng, n) for name in CIFAR10_FILES}
    for name, batch in batches.items():
        _write(folder / name, batch, style)
    meta = {
        b"label_names": [name.encode() for name in CIFAR10_NAMES],
        b"num_cases_per_batch": n,
        b"num_vis": 3072,
    }
    _write(folder / "batches.meta", meta, style)
    return folder, batches


def _make_cifar100(parent, style="python2", n=4, seed=0):
    folder = parent / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in ("train", "test"):
        batch = _batch(rng, n, label_key=b"fine_labels", n_classes=100)
        batch[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
        batches[name] = batch
        _write(folder / name, batch, style)
    meta = {
        b"fine_label_names": [b"class_%d" % i for i in range(100)],
        b"coarse_label_names": [b"super_%d" % i for i in range(20)],
    }
    _write(folder / "meta", meta, style)
    return folder, batches


@pytest.mark.parametrize("style", ["python2", "protocol2", "protocol5"])
def test_cifar10_content(tmp_path, style):
    folder, batches = _make_cifar10(tmp_path, style)
    cifar = load_cifar(folder)
    train = [batches[name] for name in CIFAR10_FILES[:5]]
    expected = np.concatenate([b[b"data"] for b in train])
    assert cifar.data.shape == (15, 3, 32, 32) and cifar.data.dtype == np.uint8
    np.testing.assert_array_equal(cifar.data.reshape(15, -1), expected)
    np.testing.assert_array_equal(
        cifar.target, np.concatenate([b[b"labels"] for b in train])
    )
    assert cifar.target.dtype == np.int64
    assert cifar.data_test.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(
        cifar.data_test.reshape(3, -1), batches["test_batch"][b"data"]
    )
    np.testing.assert_array_equal(cifar.target_test, batches["test_batch"][b"labels"])
    assert cifar.target_test.dtype == np.int64
    assert cifar.target_names == CIFAR10_NAMES
    assert "CIFAR-10" in cifar.DESCR and str(folder) in cifar.DESCR


def test_cifar_channel_planes(tmp_path):
    # A row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    folder, batches = _make_cifar10(tmp_path)
    row = batches["data_batch_1"][b"data"][0]
    image = load_cifar(folder).data[0]
    for channel in range(3):
        plane = row[1024 * channel : 1024 * (channel + 1)].reshape(32, 32)
        np.testing.assert_array_equal(image[channel], plane)


def test_cifar_parent_and_home(tmp_path, monkeypatch):
    _make_cifar10(tmp_path / "data")
    from_parent = load_cifar(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path))
    from_home = load_cifar("~/data/cifar-10-batches-py")
    np.testing.assert_array_equal(from_parent.data, from_home.data)
    assert len(from_parent.data) == 15


@pytest.mark.parametrize("style", ["python2", "protocol5"])
def test_cifar100_fine_labels(tmp_path, style):
    folder, batches = _make_cifar100(tmp_path, style)
    cifar = load_cifar(tmp_path, n_classes=100)
    np.testing.assert_array_equal(cifar.target, batches["train"][b"fine_labels"])
    np.testing.assert_array_equal(cifar.target_test, batches["test"][b"fine_labels"])
    np.testing.assert_array_equal(cifar.data.reshape(4, -1), batches["train"][b"data"])
    assert cifar.target_names == [f"class_{i}" for i in range(100)]
    assert "CIFAR-100" in cifar.DESCR


def test_missing_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        load_cifar(tmp_path / "nowhere")
    message = str(exc.value)
    assert "cifar-10-python.tar.gz" in message
    assert "cifar-10-batches-py" in message
    assert "data_batch_1" in message and "batches.meta" in message
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_cifar(tmp_path, n_classes=100)


def test_missing_file_is_named(tmp_path):
    folder, _ = _make_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as exc:
        load_cifar(tmp_path)
    message = str(exc.value)
    assert str(folder / "data_batch_3") in message
    assert "data_batch_1" not in message.split("missing")[1].split(".")[0]


def test_wrong_variant_hints_n_classes(tmp_path):
    _make_cifar100(tmp_path)
    with pytest.raises(FileNotFoundError, match="n_classes=100"):
        load_cifar(tmp_path)
    with pytest.raises(FileNotFoundError, match="n_classes=100"):
        load_cifar(tmp_path / "cifar-100-python")


def test_wrong_keys_hint_n_classes(tmp_path):
    # CIFAR-100 files renamed into a CIFAR-10 layout: the keys give it away.
    folder, _ = _make_cifar10(tmp_path)
    rng = np.random.default_rng(0)
    _write(folder / "data_batch_2", _batch(rng, 3, label_key=b"fine_labels"))
    with pytest.raises(ValueError, match="data_batch_2.*n_classes=100"):
        load_cifar(folder)


def test_refuses_code_in_a_pickle(tmp_path):
    folder, _ = _make_cifar10(tmp_path)
    canary = tmp_path / "canary"
    canary.write_text("still here")

    class Payload:
        def __reduce__(self):
            return os.remove, (str(canary),)

    _write(folder / "test_batch", {b"data": Payload(), b"labels": []}, "protocol2")
    with pytest.raises(ValueError, match="test_batch.*not allowed"):
        load_cifar(folder)
    assert canary.read_text() == "still here"


def test_refuses_codecs_other_than_latin1(tmp_path):
    # _codecs.encode is let in for Python 3's protocol-2 bytes only.
    folder, _ = _make_cifar10(tmp_path)
    payload = (
        b"\x80\x02}q\x00(X\x04\x00\x00\x00dataq\x01c_codecs\nencode\nq\x02"
        b"X\x01\x00\x00\x00xX\x06\x00\x00\x00base64\x86R"
        b"X\x06\x00\x00\x00labels]u."
    )
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match="test_batch.*latin1"):
        load_cifar(folder)


def _corrupt(rng, kind):
    batch = _batch(rng, 3)
    if kind == "missing key":
        del batch[b"labels"]
    elif kind == "short labels":
        batch[b"labels"] = batch[b"labels"][:2]
    elif kind == "wrong width":
        batch[b"data"] = batch[b"data"][:, :3000]
    elif kind == "wrong dtype":
        batch[b"data"] = batch[b"data"].astype(np.float32)
    elif kind == "label range":
        batch[b"labels"] = [0, 1, 10]
    elif kind == "not a dict":
        batch = [batch]
    return batch


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing key", "lacks the key"),
        ("short labels", "2 labels for 3 images"),
        ("wrong width", r"shape \(3, 3000\)"),
        ("wrong dtype", "uint8"),
        ("label range", r"0\.\.10, outside 0\.\.9"),
        ("not a dict", "not a dict"),
    ],
)
def test_malformed_batch_names_the_file(tmp_path, kind, match):
    folder, _ = _make_cifar10(tmp_path)
    _write(folder / "data_batch_4", _corrupt(np.random.default_rng(1), kind))
    with pytest.raises(ValueError, match=match) as exc:
        load_cifar(folder)
    assert str(folder / "data_batch_4") in str(exc.value)


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(X", b"not a pickle"])
def test_damaged_file_names_the_file(tmp_path, content):
    folder, _ = _make_cifar10(tmp_path)
    (folder / "data_batch_1").write_bytes(content)
    with pytest.raises(ValueError, match="data_batch_1 is not a CIFAR python batch"):
        load_cifar(folder)


def test_bad_meta_names_the_file(tmp_path):
    folder, _ = _make_cifar10(tmp_path)
    _write(folder / "batches.meta", {b"label_names": [b"cat", b"dog"]})
    with pytest.raises(ValueError, match="batches.meta should list 10 class names"):
        load_cifar(folder)


def test_n_classes_is_validated(tmp_path):
    with pytest.raises(ValueError, match="n_classes"):
        load_cifar(tmp_path, n_classes=20)
