"""The ID and OOD sets of one benchmark run: a preset, or the user's files.

A :class:`Task` holds float32 images (or any sample shape) with ID labels
``0 .. n_classes - 1``: ``X_train`` / ``y_train`` fit the model and the
detectors, ``X_test`` / ``y_test`` are the ID test set, ``ood`` the named OOD
test sets in order. The user's files are checked here, before any training,
so that a wrong path or a malformed file is one line and exit status 2.
"""

import hashlib
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from sklearn_ood._benchmark._common import BenchmarkError, UsageError

# Names the result table uses itself, so an OOD set may not take them.
RESERVED_SET_NAMES = ("id", "mean")
# Share of the ID rows held out as the ID test set when a file has no test part.
TEST_SIZE = 0.3


@dataclass
class Task:
    """The data of one run (one seed)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    ood: dict
    ood_kind: dict
    class_names: list
    # What identifies the training data in the model cache key.
    fingerprint: dict = field(default_factory=dict)

    @property
    def n_classes(self):
        return len(self.class_names)

    @property
    def sample_shape(self):
        return tuple(self.X_train.shape[1:])

    def summary(self):
        """Sizes and kinds of the sets, for ``results.json``."""
        return {
            "id_train": int(len(self.X_train)),
            "id_test": int(len(self.X_test)),
            "sample_shape": list(self.sample_shape),
            "classes": list(self.class_names),
            "ood": {
                name: {"kind": self.ood_kind[name], "n_samples": int(len(X))}
                for name, X in self.ood.items()
            },
        }


# ----------------------------------------------------------------- presets
def check_id_classes(id_classes, n_total=10):
    """The preset's ID classes, checked: distinct, in range, some held out."""
    classes = tuple(int(c) for c in id_classes)
    if len(set(classes)) != len(classes):
        raise UsageError(f"--id-classes has repeated classes: {list(classes)}.")
    bad = [c for c in classes if not 0 <= c < n_total]
    if bad:
        raise UsageError(f"--id-classes must be in 0..{n_total - 1}; got {bad}.")
    if not 2 <= len(classes) < n_total:
        raise UsageError(
            f"--id-classes needs 2 to {n_total - 1} classes (the others are the "
            f"near-OOD set); got {len(classes)}."
        )
    return classes


def load_preset(
    preset, seed, *, id_classes, fashion_path=None, n_train=None, n_test=None
):
    """A :class:`Task` from ``sklearn_ood.datasets`` (split drawn by ``seed``)."""
    from sklearn_ood import datasets

    if preset == "digits":
        bunch = datasets.load_digits_ood(id_classes, random_state=seed)
        fingerprint = {"id_classes": list(id_classes)}
    else:
        try:
            bunch = datasets.load_fashion_mnist_ood(
                id_classes,
                path=fashion_path,
                n_train=n_train,
                n_test=n_test,
                random_state=seed,
            )
        except FileNotFoundError as exc:
            # The loader's message names the Debian package and the path.
            raise BenchmarkError(str(exc)) from exc
        fingerprint = {
            "id_classes": list(id_classes),
            "n_train": n_train,
            "n_test": n_test,
        }
    names = [str(n) for n in getattr(bunch, "target_names", id_classes)]
    if len(names) != len(id_classes):
        # target_names may list every class of the dataset: keep the ID ones.
        names = [names[c] if c < len(names) else str(c) for c in id_classes]
    return Task(
        name=preset,
        X_train=np.asarray(bunch.data, dtype=np.float32),
        y_train=np.asarray(bunch.target, dtype=np.int64),
        X_test=np.asarray(bunch.data_test, dtype=np.float32),
        y_test=np.asarray(bunch.target_test, dtype=np.int64),
        ood={name: np.asarray(X, np.float32) for name, X in bunch.ood.items()},
        ood_kind=dict(bunch.ood_kind),
        class_names=names,
        fingerprint=fingerprint,
    )


# ------------------------------------------------------------- user files
def parse_ood_specs(specs):
    """``["NAME=PATH", ...]`` -> ``{name: path}``, checked (paths must exist)."""
    out = {}
    for spec in specs or ():
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise UsageError(
                f"--ood-data takes NAME=PATH (e.g. --ood-data noise=noise.npz); "
                f"got {spec!r}."
            )
        if name.lower() in RESERVED_SET_NAMES:
            raise UsageError(
                f"--ood-data: the name {name!r} is reserved for the table; "
                "choose another."
            )
        if name in out:
            raise UsageError(f"--ood-data: the name {name!r} is given twice.")
        check_path(path, "--ood-data")
        out[name] = path
    return out


def check_path(path, option):
    """A file or folder that must exist (usage error otherwise)."""
    if not os.path.exists(path):
        raise UsageError(f"{option}: no such file or folder: {path}")
    if os.path.isfile(path) and not path.endswith(".npz"):
        raise UsageError(
            f"{option}: {path} is a file but not a .npz; give a .npz or a folder "
            "of images."
        )


def load_user_task(id_path, ood_paths, seed, *, image_size):
    """A :class:`Task` from ``--id-data`` and ``--ood-data`` (checked)."""
    check_path(id_path, "--id-data")
    if os.path.isdir(id_path):
        X, y, class_names = _read_class_folders(id_path, image_size)
        X_test = y_test = None
    else:
        arrays = _read_npz(id_path, "--id-data", required=("X", "y"))
        X = _as_inputs(arrays["X"], id_path, "X")
        y = arrays["y"]
        X_test = arrays.get("X_test")
        y_test = arrays.get("y_test")
        if (X_test is None) != (y_test is None):
            raise UsageError(
                f"--id-data: {id_path} has only one of X_test and y_test; give "
                "both or neither (then 30 % of X is held out)."
            )
        if X_test is not None:
            X_test = _as_inputs(X_test, id_path, "X_test")
        class_names = None
    y, y_test, names = _encode_labels(id_path, X, y, X_test, y_test)
    class_names = class_names or names
    if X_test is None:
        X, X_test, y, y_test = _split(X, y, seed, id_path)
    ood = read_user_ood(ood_paths, X.shape[1:], image_size)
    return Task(
        name="user",
        X_train=X,
        y_train=y,
        X_test=X_test,
        y_test=y_test,
        ood=ood,
        ood_kind={name: "user" for name in ood},
        class_names=class_names,
        fingerprint={"id_data": fingerprint(id_path), "image_size": image_size},
    )


def read_user_ood(ood_paths, sample_shape, image_size):
    """The ``--ood-data`` sets, checked to have the ID samples' shape.

    Image folders are read in the ID images' format: grey or RGB by their
    channels, at their size when they are square (so a folder of photos
    works with the 8 x 8 grey digits); otherwise RGB at ``image_size``.
    """
    sample_shape = tuple(sample_shape)
    size, mode = image_size, "RGB"
    if len(sample_shape) == 3 and sample_shape[0] in (1, 3):
        if sample_shape[1] == sample_shape[2]:
            size = sample_shape[1]
        mode = "L" if sample_shape[0] == 1 else "RGB"
    out = {}
    for name, path in ood_paths.items():
        if os.path.isdir(path):
            X = _read_image_folder(path, size, "--ood-data", mode=mode)
        else:
            X = _as_inputs(_read_npz(path, "--ood-data", ("X",))["X"], path, "X")
        if X.shape[1:] != sample_shape:
            raise UsageError(
                f"--ood-data {name}: samples of shape {X.shape[1:]}, but the ID "
                f"samples have {sample_shape}; give both the same shape."
            )
        out[name] = X
    return out


def _read_npz(path, option, required):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(
            f"{option}: {path} is not a readable .npz file ({exc})."
        ) from exc
    missing = [key for key in required if key not in arrays]
    if missing:
        raise UsageError(
            f"{option}: {path} has no array {', '.join(missing)} (it has "
            f"{', '.join(sorted(arrays)) or 'none'}); save it with "
            f"np.savez(path, {', '.join(f'{k}=...' for k in required)})."
        )
    return arrays


def _as_inputs(X, path, key):
    """Model inputs as float32; uint8 images are scaled to [0, 1]."""
    X = np.asarray(X)
    if X.ndim < 2 or len(X) == 0:
        raise UsageError(
            f"{path}: {key} must hold samples along its first axis, e.g. images "
            f"(n, C, H, W); got shape {X.shape}."
        )
    if X.dtype == np.uint8:
        X = X.astype(np.float32) / 255.0
    elif X.dtype.kind in "iuf":
        X = X.astype(np.float32)
    else:
        raise UsageError(f"{path}: {key} must be numeric; got dtype {X.dtype}.")
    if not np.isfinite(X).all():
        raise UsageError(f"{path}: {key} holds NaN or infinite values.")
    return X


def _encode_labels(path, X, y, X_test, y_test):
    """Labels as ``0 .. K-1`` (the order of the sorted original labels)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X) or y.dtype.kind not in "iu":
        raise UsageError(
            f"{path}: y must be integer class labels, one per row of X "
            f"({len(X)}); got dtype {y.dtype} and shape {y.shape}."
        )
    if (y < 0).any():
        raise UsageError(
            f"{path}: y holds negative labels, which mean OOD; --id-data takes "
            "ID rows only (give OOD sets with --ood-data)."
        )
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise UsageError(f"{path}: y has one class only; the model needs two or more.")
    if y_test is not None:
        y_test = np.asarray(y_test)
        if y_test.ndim != 1 or len(y_test) != len(X_test):
            raise UsageError(
                f"{path}: y_test must have one label per row of X_test "
                f"({len(X_test)}); got shape {y_test.shape}."
            )
        if X_test.shape[1:] != X.shape[1:]:
            raise UsageError(
                f"{path}: X_test samples have shape {X_test.shape[1:]}, X "
                f"samples {X.shape[1:]}."
            )
        unseen = np.setdiff1d(y_test, classes)
        if len(unseen):
            raise UsageError(
                f"{path}: y_test has classes that y has not: {unseen.tolist()}."
            )
        y_test = np.searchsorted(classes, y_test)
    names = [str(c) for c in classes.tolist()]
    return (
        y_enc.astype(np.int64),
        (None if y_test is None else y_test.astype(np.int64)),
        names,
    )


def _split(X, y, seed, path):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(
            X, y, test_size=TEST_SIZE, stratify=y, random_state=seed
        )
    except ValueError as exc:
        raise UsageError(
            f"--id-data: cannot hold out a stratified ID test set from {path} "
            f"({exc}); give X_test and y_test in the file."
        ) from exc


def _read_image_folder(path, image_size, option, mode="RGB"):
    """Every image under ``path`` as float32 ``(n, C, size, size)``."""
    from sklearn_ood.datasets import OODImageFolder

    try:
        dataset = OODImageFolder(path, size=image_size, mode=mode)
        n = len(dataset)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{option}: {path}: {exc}") from exc
    if n == 0:
        raise UsageError(f"{option}: no image files under {path}.")
    # The benchmark holds its test sets in memory (they are scored by many
    # detectors); the Dataset reads and resizes one file at a time.
    first = np.asarray(dataset[0][0], dtype=np.float32)
    out = np.empty((n, *first.shape), np.float32)
    out[0] = first
    for i in range(1, n):
        out[i] = np.asarray(dataset[i][0], dtype=np.float32)
    return out


def _read_class_folders(path, image_size):
    classes = sorted(
        entry.name
        for entry in os.scandir(path)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if len(classes) < 2:
        raise UsageError(
            f"--id-data: {path} needs one sub-folder per class (two or more), "
            f"e.g. {path}/cat/*.png and {path}/dog/*.png; found {len(classes)}."
        )
    parts = [
        _read_image_folder(os.path.join(path, c), image_size, "--id-data")
        for c in classes
    ]
    y = np.concatenate([np.full(len(p), i, np.int64) for i, p in enumerate(parts)])
    return np.concatenate(parts), y, classes


def fingerprint(path):
    """What identifies a data file or folder in the model cache key.

    A file's SHA-256; for a folder, the hash of its files' relative paths,
    sizes and modification times (reading every image would cost as much as
    the run).
    """
    digest = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            stat = os.stat(full)
            rel = os.path.relpath(full, path)
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
