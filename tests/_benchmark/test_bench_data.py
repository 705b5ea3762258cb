"""The benchmark's data: presets' classes, the user's .npz files and specs."""

import numpy as np
import pytest

from sklearn_ood._benchmark import _data
from sklearn_ood._benchmark._common import UsageError


def test_check_id_classes():
    assert _data.check_id_classes([4, 0, 2]) == (4, 0, 2)
    for bad, match in (([1, 1], "repeated"), ([0, 10], "0..9"), ([3], "2 to 9")):
        with pytest.raises(UsageError, match=match):
            _data.check_id_classes(bad)
    with pytest.raises(UsageError, match="2 to 9"):
        _data.check_id_classes(range(10))


def test_parse_ood_specs(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, X=np.zeros((2, 3)))
    specs = [f"near={path}", f"far-1={path}"]
    assert list(_data.parse_ood_specs(specs).items()) == [
        ("near", str(path)),
        ("far-1", str(path)),
    ]
    for spec, match in (
        (str(path), "NAME=PATH"),
        (f"={path}", "NAME=PATH"),
        (f"id={path}", "reserved"),
        (f"a={tmp_path / 'none.npz'}", "no such file"),
    ):
        with pytest.raises(UsageError, match=match):
            _data.parse_ood_specs([spec])
    with pytest.raises(UsageError, match="given twice"):
        _data.parse_ood_specs([f"a={path}", f"a={path}"])


def test_user_npz_task(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.random((40, 2, 4, 4)) * 255).astype(np.uint8)
    y = np.repeat([10, 20], 20)
    X_test = rng.random((6, 2, 4, 4)).astype(np.float64)
    np.savez(tmp_path / "id.npz", X=X, y=y, X_test=X_test, y_test=[20, 10] * 3)
    np.savez(tmp_path / "ood.npz", X=rng.random((5, 2, 4, 4)))
    ood = {"far": str(tmp_path / "ood.npz")}
    task = _data.load_user_task(str(tmp_path / "id.npz"), ood, 0, image_size=32)
    assert task.class_names == ["10", "20"] and task.n_classes == 2
    np.testing.assert_array_equal(task.y_train, np.repeat([0, 1], 20))
    np.testing.assert_array_equal(task.y_test, [1, 0] * 3)
    # uint8 images are scaled to [0, 1]; every set is float32.
    np.testing.assert_allclose(task.X_train, X / 255.0, rtol=1e-6)
    assert {a.dtype for a in (task.X_train, task.X_test, task.ood["far"])} == {
        np.dtype(np.float32)
    }
    assert task.ood_kind == {"far": "user"}
    assert task.summary()["ood"] == {"far": {"kind": "user", "n_samples": 5}}


def test_user_npz_without_test_is_split_per_seed(tmp_path):
    X = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    np.savez(tmp_path / "id.npz", X=X, y=np.arange(40) % 2)
    np.savez(tmp_path / "ood.npz", X=np.zeros((3, 3)))
    ood = {"o": str(tmp_path / "ood.npz")}
    a = _data.load_user_task(str(tmp_path / "id.npz"), ood, 0, image_size=32)
    b = _data.load_user_task(str(tmp_path / "id.npz"), ood, 1, image_size=32)
    assert len(a.X_test) == 12 and len(a.X_train) == 28
    assert not np.array_equal(a.X_test, b.X_test)
    assert np.bincount(a.y_test).tolist() == [6, 6]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"X": np.zeros((4, 3)), "y": [0, 1, 0, -1]}, "negative labels"),
        ({"X": np.zeros((4, 3)), "y": [0, 0, 0, 0]}, "one class"),
        ({"X": np.zeros((4, 3)), "y": [0.5, 1, 0, 1]}, "integer class labels"),
        ({"X": np.zeros((4, 3)), "y": [0, 1, 0]}, "one per row"),
        ({"X": np.full((4, 3), np.nan), "y": [0, 1, 0, 1]}, "NaN"),
        ({"X": np.zeros(4), "y": [0, 1, 0, 1]}, "first axis"),
        (
            {"X": np.zeros((4, 3)), "y": [0, 1, 0, 1], "X_test": np.zeros((2, 3))},
            "both or neither",
        ),  # fmt: skip
        (
            {
                "X": np.zeros((4, 3)),
                "y": [0, 1, 0, 1],
                "X_test": np.zeros((2, 3)),
                "y_test": [0, 2],
            },
            "classes that y has not",
        ),  # fmt: skip
        ({"X": np.zeros((4, 3)), "y": [0, 1, 0, 1]}, "samples of shape"),
    ],
)
def test_user_npz_errors(tmp_path, arrays, match):
    np.savez(tmp_path / "id.npz", **arrays)
    np.savez(tmp_path / "ood.npz", X=np.zeros((2, 5)))  # 5 features, not 3
    with pytest.raises(UsageError, match=match):
        _data.load_user_task(
            str(tmp_path / "id.npz"), {"o": str(tmp_path / "ood.npz")}, 0, image_size=8
        )


def test_fingerprint_follows_the_content(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros(3))
    first = _data.fingerprint(str(path))
    assert first == _data.fingerprint(str(path))
    np.savez(path, X=np.ones(3))
    assert _data.fingerprint(str(path)) != first
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "1.png").write_bytes(b"x")
    before = _data.fingerprint(str(folder))
    (folder / "2.png").write_bytes(b"y")
    assert _data.fingerprint(str(folder)) != before
