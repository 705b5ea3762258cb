"""CIFAR-10 and CIFAR-100 from a user's local copy of the python batches.

The python versions of CIFAR are pickles. A pickle can name any importable
function and have it called while loading, so a file from elsewhere is read
with :class:`_RestrictedUnpickler`, which resolves only the few globals that
a dict of lists, bytes and NumPy arrays needs (see ``_allowed_globals``).
"""

import os
import pickle
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Options, validate_params

__all__ = ["load_cifar"]

# Per variant: the folder that the archive extracts to, the archive, the
# training and test files, the metadata file, and the keys read from them.
_LAYOUTS = {
    10: {
        "n_classes": 10,
        "name": "CIFAR-10",
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
    },
    100: {
        "n_classes": 100,
        "name": "CIFAR-100",
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
    },
}
_N_FEATURES = 3 * 32 * 32


def _latin1_encode(text, encoding):
    # Python 3 writes bytes into protocol 0-2 pickles as
    # ``_codecs.encode(text, "latin1")``; nothing else of ``_codecs`` is let in.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            "only _codecs.encode(str, 'latin1') is allowed in a CIFAR batch"
        )
    return text.encode("latin1")


def _allowed_globals():
    """The globals a pickled dict of lists, bytes and ndarrays refers to.

    An ndarray pickles as ``_reconstruct(ndarray, (0,), b"b")`` plus a state
    (protocols 0-4) or ``_frombuffer(buffer, dtype, shape, order)`` (protocol
    5), its dtype as ``dtype("u1", False, True)`` plus a state. The
    reconstruction functions are taken from this NumPy's own ``__reduce_ex__``
    rather than imported from its private modules, and are accepted under the
    module names that NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``)
    write. They only build arrays of the classes resolved here.
    """
    probe = np.zeros(1, dtype=np.uint8)
    reconstruct = probe.__reduce_ex__(2)[0]
    frombuffer = probe.__reduce_ex__(5)[0]
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals of ``_allowed_globals``.

    Any other global (``os.system``, ``builtins.eval``, a class with a
    ``__reduce__``) raises ``pickle.UnpicklingError`` before it is imported,
    so loading a malicious file cannot run its code.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a CIFAR batch"
            ) from None


def _decode(value):
    return value.decode("latin1") if isinstance(value, bytes) else value


def _unpickle(file):
    """Load one CIFAR pickle as a dict with str keys (ValueError naming it)."""
    try:
        with open(file, "rb") as f:
            # The original batches were written by Python 2: its str (the
            # dict keys and the array buffers) must load as bytes.
            content = _RestrictedUnpickler(f, encoding="bytes").load()
    except (OSError, MemoryError):
        raise  # an unreadable file or a full memory: not a format problem
    except Exception as exc:
        # A damaged pickle fails in many ways (EOFError, KeyError on the
        # memo, struct.error, ...): all of them mean "not a CIFAR batch".
        raise ValueError(
            f"{file} is not a CIFAR python batch ({type(exc).__name__}: {exc}). "
            "Use the files of the python version (cifar-*-python.tar.gz) as "
            "extracted, unmodified."
        ) from exc
    if not isinstance(content, dict):
        raise ValueError(
            f"{file} is not a CIFAR python batch: it holds a "
            f"{type(content).__name__}, not a dict."
        )
    return {_decode(key): value for key, value in content.items()}


def _missing_message(path, layout, missing):
    files = layout["train"] + layout["test"] + [layout["meta"]]
    lines = [
        f"{layout['name']} python batches not found at {path}: missing "
        f"{', '.join(missing)}.",
        f"Extract {layout['archive']} (the python version) so that the folder "
        f"{layout['folder']}/ with the files {', '.join(files)} is at {path} or "
        f"inside it, e.g. `tar -xzf {layout['archive']} -C {path}`, and pass "
        "either folder.",
    ]
    other = _LAYOUTS[110 - layout["n_classes"]]
    if (path / other["folder"]).is_dir() or path.name == other["folder"]:
        lines.append(
            f"{path} holds {other['name']}: pass n_classes="
            f"{other['n_classes']} to read it."
        )
    return " ".join(lines)


def _find_folder(path, layout):
    """The folder holding the batches: ``path`` itself or its named child."""
    files = layout["train"] + layout["test"] + [layout["meta"]]
    candidates = [path, path / layout["folder"]]
    for folder in candidates:
        if all((folder / name).is_file() for name in files):
            return folder
    if not path.exists():
        missing = [str(path)]
    else:
        # Report the files missing from whichever candidate has the most.
        folder = max(
            candidates, key=lambda d: sum((d / name).is_file() for name in files)
        )
        missing = [
            str(folder / name) for name in files if not (folder / name).is_file()
        ]
    raise FileNotFoundError(_missing_message(path, layout, missing))


def _read_batches(folder, names, layout):
    """Stack the images and labels of the named batch files."""
    data, target = [], []
    n_classes = layout["n_classes"]
    label_key = layout["label_key"]
    for name in names:
        file = folder / name
        batch = _unpickle(file)
        missing = [key for key in ("data", label_key) if key not in batch]
        if missing:
            other = _LAYOUTS[110 - n_classes]
            hint = (
                f" It looks like {other['name']}: pass n_classes={other['n_classes']}."
                if other["label_key"] in batch
                else ""
            )
            raise ValueError(
                f"{file} lacks the key(s) {missing} of a {layout['name']} batch "
                f"(found {sorted(map(str, batch))}).{hint}"
            )
        images = batch["data"]
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise ValueError(f"{file}: 'data' is not a uint8 NumPy array.")
        if images.ndim != 2 or images.shape[1] != _N_FEATURES:
            raise ValueError(
                f"{file}: 'data' has shape {images.shape}; a CIFAR batch holds "
                f"(n_images, {_N_FEATURES}) rows of 3 x 32 x 32 pixels."
            )
        try:
            labels = np.asarray(batch[label_key], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{file}: '{label_key}' is not a list of ints.") from exc
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{file}: {labels.size} labels for {images.shape[0]} images; "
                "the file is truncated or not a CIFAR batch."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"{file}: labels range over {labels.min()}..{labels.max()}, "
                f"outside 0..{n_classes - 1} for {layout['name']}."
            )
        # Rows are the red, green then blue planes, each 32 x 32 row-major.
        data.append(images.reshape(-1, 3, 32, 32))
        target.append(labels)
    return np.concatenate(data), np.concatenate(target)


def _read_names(folder, layout):
    file = folder / layout["meta"]
    meta = _unpickle(file)
    names = meta.get(layout["names_key"])
    if not isinstance(names, list) or len(names) != layout["n_classes"]:
        raise ValueError(
            f"{file} should list {layout['n_classes']} class names under "
            f"'{layout['names_key']}'; found keys {sorted(map(str, meta))}."
        )
    return [str(_decode(name)) for name in names]


_DESCR = """\
{name} (python version), read from a local copy
==================================================

{n_classes} classes of 32 x 32 colour images: {n_train} training and {n_test} test
images as loaded from {folder}.

:Classes: {n_classes}
:Image shape: (3, 32, 32), channels first, uint8 in 0..255
:Source: {archive}, https://www.cs.toronto.edu/~kriz/cifar.html

Divide by 255 (and normalise as at training time) before feeding a model.
In OOD benchmarks, CIFAR-10 and CIFAR-100 serve as each other's near-OOD
set.

.. rubric:: References

Krizhevsky, A. (2009). Learning Multiple Layers of Features from Tiny
Images. Technical report, University of Toronto.
"""


@validate_params(
    {"path": [str, os.PathLike], "n_classes": [Options(Integral, {10, 100})]},
    prefer_skip_nested_validation=True,
)
def load_cifar(path, n_classes=10):
    """Load CIFAR-10 or CIFAR-100 from a local copy of the python batches.

    Reads the *python* version of the datasets as extracted from
    ``cifar-10-python.tar.gz`` (folder ``cifar-10-batches-py/`` with
    ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
    ``batches.meta``) or ``cifar-100-python.tar.gz`` (folder
    ``cifar-100-python/`` with ``train``, ``test`` and ``meta``; the 100
    fine labels are read). Nothing is downloaded.

    The files are pickles, which can run code when loaded. They are read
    with an unpickler that only resolves what a dict of lists, bytes and
    NumPy arrays needs, so a tampered file raises an error instead.

    Parameters
    ----------
    path : str or path-like
        The extracted folder (``cifar-10-batches-py`` or
        ``cifar-100-python``) or the folder that contains it. ``~`` is
        expanded.
    n_classes : {10, 100}, default=10
        Which dataset to read: CIFAR-10 or CIFAR-100 (fine labels).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_train, 3, 32, 32), dtype uint8
            The training images, channels first (50,000 in the full set).
        target : ndarray of shape (n_train,), dtype int64
            The training labels, in ``0 .. n_classes - 1``.
        data_test : ndarray of shape (n_test, 3, 32, 32), dtype uint8
            The test images (10,000 in the full set).
        target_test : ndarray of shape (n_test,), dtype int64
            The test labels.
        target_names : list of str
            The class names, indexed by label.
        DESCR : str
            A description of the dataset.

    Raises
    ------
    FileNotFoundError
        If the folder or one of its files is missing; the message lists the
        expected files and the archive they come from.
    ValueError
        If a file is not a CIFAR batch of the requested variant (wrong keys,
        shapes or labels, or a pickle that refers to anything but lists,
        bytes and NumPy arrays); the message names the file.

    See Also
    --------
    load_fashion_mnist : Fashion-MNIST from the Debian package's idx files.
    load_digits_ood : Scikit-learn's bundled digits split into ID and OOD sets.
    OODImageFolder : OOD images from a folder, streamed as a torch Dataset.

    Notes
    -----
    The images stay uint8, as stored (150 MB for the CIFAR-10 training
    set); convert them batch by batch, or once with
    ``data.astype(np.float32) / 255``.

    Examples
    --------
    A tiny CIFAR-10 folder, written here in the python format:

    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from sklearn_ood.datasets import load_cifar
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name) / "cifar-10-batches-py"
    >>> folder.mkdir()
    >>> rng = np.random.default_rng(0)
    >>> for name in ["data_batch_1", "data_batch_2", "data_batch_3",
    ...              "data_batch_4", "data_batch_5", "test_batch"]:
    ...     batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
    ...              b"labels": [0, 1, 2, 3]}
    ...     _ = (folder / name).write_bytes(pickle.dumps(batch))
    >>> names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
    ...          b"frog", b"horse", b"ship", b"truck"]
    >>> _ = (folder / "batches.meta").write_bytes(
    ...     pickle.dumps({b"label_names": names}))
    >>> cifar = load_cifar(tmp.name)
    >>> cifar.data.shape, cifar.data.dtype, cifar.data_test.shape
    ((20, 3, 32, 32), dtype('uint8'), (4, 3, 32, 32))
    >>> cifar.target_names[:3]
    ['airplane', 'automobile', 'bird']
    >>> tmp.cleanup()
    """
    path = Path(path).expanduser()
    layout = _LAYOUTS[n_classes]
    folder = _find_folder(path, layout)
    target_names = _read_names(folder, layout)  # small: fail fast on it
    data, target = _read_batches(folder, layout["train"], layout)
    data_test, target_test = _read_batches(folder, layout["test"], layout)
    descr = _DESCR.format(
        name=layout["name"],
        n_classes=n_classes,
        n_train=len(data),
        n_test=len(data_test),
        folder=folder,
        archive=layout["archive"],
    )
    return Bunch(
        data=data,
        target=target,
        data_test=data_test,
        target_test=target_test,
        target_names=target_names,
        DESCR=descr,
    )
