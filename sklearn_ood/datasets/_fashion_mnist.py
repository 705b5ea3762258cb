"""Fashion-MNIST from a local copy of its idx files, and its OOD preset."""

import gzip
import os
import zlib
from numbers import Integral
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from sklearn_ood.datasets._base import (
    _check_id_classes,
    _index_into,
    _ood_bunch,
    _stratified_subset,
    _to_unit_images,
)
from sklearn_ood.datasets._noise import make_noise_images

__all__ = ["load_fashion_mnist", "load_fashion_mnist_ood"]

# Where Debian's dataset-fashion-mnist package installs the idx files.
_DEFAULT_PATH = Path("/usr/share/datasets/fashion-mnist")
_INSTALL_HINT = (
    "Install them with `apt-get install -y dataset-fashion-mnist` (Debian and "
    f"Ubuntu; it puts the four files in {_DEFAULT_PATH}/), or pass path= the "
    "folder that holds them (plain or .gz). Nothing is downloaded."
)
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# idx magic numbers: two zero bytes, the type code (0x08 = unsigned byte) and
# the number of dimensions (3 for images, 1 for labels).
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_TARGET_NAMES = np.array(
    [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
)

_DESCR = """\
Fashion-MNIST
-------------

Zalando's article images: 60,000 training and 10,000 test grayscale images
of 28x28 pixels (values 0..255) in 10 classes (T-shirt/top, Trouser,
Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot), MIT
license. Read from the idx files in {path}.

- data: {n_train} training images, target: their labels
- data_test: {n_test} test images, target_test: their labels

Reference: H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image
dataset for benchmarking machine learning algorithms", arXiv:1708.07747, 2017.
"""

_OOD_DESCR = """\
Fashion-MNIST OOD benchmark
---------------------------

Fashion-MNIST (28x28 grayscale article images, 10 classes, read from the
local idx files) rescaled to [0, 1] (divided by 255) and shaped
(n, 1, 28, 28).

In-distribution (ID): the classes {id_classes}, i.e.
{id_names}. ID train comes from the training split{train_note}, ID test from
the test split{test_note}.
``target`` is the index of a row's class in ``id_classes``;
``target_names[target]`` gives the class name.

Out-of-distribution (OOD) test sets, near first:

- held-out-classes (near): test images of the other classes {held_out}.
- digits (far): scikit-learn's 8x8 digits upscaled to 28x28 with
  scipy.ndimage.zoom (bilinear, order=1, corners aligned), values / 16.
- uniform-noise (far): i.i.d. pixels uniform on [0, 1] (ODIN).
- gaussian-noise (far): i.i.d. pixels N(0.5, 1) clipped to [0, 1] (ODIN).
- flipped (far): the ID test images upside down.

The noise sets have as many images as the ID test set.

{sets}

References: H. Xiao, K. Rasul and R. Vollgraf, arXiv:1708.07747, 2017;
S. Liang, Y. Li and R. Srikant, "Enhancing the reliability of
out-of-distribution image detection in neural networks", ICLR 2018.
"""


def _fashion_folder(path):
    """The folder to read and the four files in it; a clear error if absent."""
    folder = _DEFAULT_PATH if path is None else Path(os.fspath(path))
    found, missing = {}, []
    for key, stem in _FILES.items():
        # the plain file first: torchvision's raw/ folder holds both forms
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        if folder.is_dir():
            where = "lacks " + ", ".join(missing)
        else:
            where = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"Fashion-MNIST idx files not found: the folder {str(folder)!r} {where}. "
            f"Expected {', '.join(s + '[.gz]' for s in _FILES.values())} in it. "
            + _INSTALL_HINT
        )
    return folder, found


def _read_idx(file, magic):
    """Read an idx file of unsigned bytes (plain or gzip) into an array.

    The idx layout: a big-endian int32 magic number (two zero bytes, the
    type code 0x08 for unsigned bytes, the number of dimensions), one
    big-endian int32 per dimension, then the values in C order.

    Parameters
    ----------
    file : pathlib.Path
        The file; gzip-compressed when its name ends in ``.gz``.
    magic : int
        The expected magic number, 0x00000803 (images) or 0x00000801 (labels).

    Returns
    -------
    array : ndarray of dtype uint8
        Of the shape the header gives.
    """
    kind = "image" if magic == _IMAGES_MAGIC else "label"
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as fh:
                raw = fh.read()
        else:
            raw = file.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # a truncated or corrupt .gz: say which file, not just zlib's words
        raise ValueError(
            f"Cannot read the Fashion-MNIST {kind} file {str(file)!r}: {exc}. "
            "Reinstall it (`apt-get install --reinstall dataset-fashion-mnist`) "
            "or replace it with an intact copy."
        ) from exc

    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "none"
        raise ValueError(
            f"{str(file)!r} is not an idx {kind} file: its magic number is {found}, "
            f"expected 0x{magic:08x} (unsigned bytes, {ndim} dimension(s)). Check "
            "that the train/t10k images and labels files are not swapped or damaged."
        )
    if len(raw) < header:
        raise ValueError(
            f"{str(file)!r} is truncated: its header needs {header} bytes, the file "
            f"holds {len(raw)}."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    found = len(raw) - header
    if found != expected:
        problem = "is truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{str(file)!r} {problem}: its header announces shape {shape}, i.e. "
            f"{expected} values, but {found} bytes follow the header."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


@validate_params(
    {"path": [str, os.PathLike, None]},
    prefer_skip_nested_validation=True,
)
def load_fashion_mnist(path=None):
    """Load Fashion-MNIST from a local copy of its idx files.

    Reads the four idx files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each plain or gzip-compressed with ``.gz``)
    as shipped by Zalando and installed by the Debian package
    ``dataset-fashion-mnist`` (``apt-get install -y dataset-fashion-mnist``).
    Nothing is downloaded: a missing file raises ``FileNotFoundError``
    naming the package and the folder.

    Parameters
    ----------
    path : str or path-like, default=None
        Folder holding the four files. ``None`` reads the Debian package's
        ``/usr/share/datasets/fashion-mnist/``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (60000, 28, 28), dtype uint8
            Training images, pixel values 0..255.
        target : ndarray of shape (60000,), dtype int64
            Training labels, 0..9.
        data_test : ndarray of shape (10000, 28, 28), dtype uint8
            Test images.
        target_test : ndarray of shape (10000,), dtype int64
            Test labels.
        target_names : ndarray of shape (10,), dtype str
            The class names, indexed by the labels.
        DESCR : str
            Description of the dataset.

    Raises
    ------
    FileNotFoundError
        When the folder or one of the four files is missing.
    ValueError
        When a file is not a valid idx file (wrong magic number, truncated
        data, trailing bytes, a corrupt ``.gz``), when images and labels
        disagree in number, or when a label lies outside 0..9.

    See Also
    --------
    load_fashion_mnist_ood : Fashion-MNIST split into ID and OOD sets.
    load_digits_ood : The offline benchmark on scikit-learn's digits.

    References
    ----------
    .. [1] H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image
       dataset for benchmarking machine learning algorithms",
       arXiv:1708.07747, 2017.

    Examples
    --------
    >>> from sklearn_ood.datasets import load_fashion_mnist
    >>> fmnist = load_fashion_mnist()  # doctest: +SKIP
    >>> fmnist.data.shape, fmnist.data_test.shape  # doctest: +SKIP
    ((60000, 28, 28), (10000, 28, 28))
    >>> fmnist.target_names[fmnist.target[0]]  # doctest: +SKIP
    np.str_('Ankle boot')
    """
    folder, files = _fashion_folder(path)
    arrays = {}
    for key, file in files.items():
        arrays[key] = _read_idx(
            file, _IMAGES_MAGIC if key.endswith("images") else _LABELS_MAGIC
        )
    for split in ("train", "test"):
        n_images = arrays[f"{split}_images"].shape[0]
        n_labels = arrays[f"{split}_labels"].shape[0]
        if n_images != n_labels:
            raise ValueError(
                f"{str(files[split + '_images'])!r} holds {n_images} images but "
                f"{str(files[split + '_labels'])!r} holds {n_labels} labels; the "
                "two files of a split must belong together."
            )
        labels = arrays[f"{split}_labels"]
        if labels.size and labels.max() >= _TARGET_NAMES.size:
            raise ValueError(
                f"{str(files[split + '_labels'])!r} holds the label "
                f"{int(labels.max())}; Fashion-MNIST labels are 0..9."
            )
    train_hw = arrays["train_images"].shape[1:]
    test_hw = arrays["test_images"].shape[1:]
    if train_hw != test_hw:
        raise ValueError(
            f"The training images are {train_hw[0]}x{train_hw[1]} but the test "
            f"images are {test_hw[0]}x{test_hw[1]}; both files must come from the "
            "same dataset."
        )
    return Bunch(
        data=arrays["train_images"],
        target=arrays["train_labels"].astype(np.int64),
        data_test=arrays["test_images"],
        target_test=arrays["test_labels"].astype(np.int64),
        target_names=_TARGET_NAMES.copy(),
        DESCR=_DESCR.format(
            path=folder,
            n_train=arrays["train_images"].shape[0],
            n_test=arrays["test_images"].shape[0],
        ),
    )


def _upscaled_digits(shape, n_samples, rng):
    """scikit-learn's digits resized to ``shape`` (H, W), values in [0, 1].

    Bilinear interpolation (``order=1``) never overshoots the range of its
    input, unlike the default cubic spline, so the images stay in [0, 1]
    without clipping away spline ringing around the strokes.
    """
    images = load_digits().images
    if n_samples is not None and n_samples < images.shape[0]:
        images = images[np.sort(rng.choice(images.shape[0], n_samples, replace=False))]
    factors = (1, shape[0] / images.shape[1], shape[1] / images.shape[2])
    zoomed = ndimage.zoom(images / 16.0, factors, order=1)
    # guards float round-off at the ends of the range only
    return _to_unit_images(np.clip(zoomed, 0.0, 1.0), 1.0)


@validate_params(
    {
        "id_classes": ["array-like"],
        "path": [str, os.PathLike, None],
        "n_train": [Interval(Integral, 1, None, closed="left"), None],
        "n_test": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_fashion_mnist_ood(
    id_classes=(0, 1, 2, 3, 4), *, path=None, n_train=None, n_test=None, random_state=0
):
    """Load Fashion-MNIST split into ID train/test and named OOD sets.

    The classes ``id_classes`` are the in-distribution (ID) data: ID train
    from Fashion-MNIST's training split, ID test from its test split. The
    test images of the other classes form the near-OOD set; scikit-learn's
    digits upscaled to 28x28, ODIN's uniform and Gaussian noise, and the ID
    test images flipped upside down form the far-OOD sets. The layout is
    that of :func:`load_digits_ood`; images are float32 of shape
    (n, 1, 28, 28) with values in [0, 1] (pixel / 255). Reads the local idx
    files (see :func:`load_fashion_mnist`); nothing downloads.

    Parameters
    ----------
    id_classes : array-like of int, default=(0, 1, 2, 3, 4)
        The in-distribution classes: distinct labels in 0..9, not all ten.
        Their order defines ``target``. The default is T-shirt/top,
        Trouser, Pullover, Dress and Coat.
    path : str or path-like, default=None
        Folder of the idx files; ``None`` reads
        ``/usr/share/datasets/fashion-mnist/``.
    n_train : int, default=None
        Keep a class-stratified, seeded subset of this many ID training
        images (for speed); ``None`` keeps all of them.
    n_test : int, default=None
        Keep this many ID test images (stratified, seeded) and at most this
        many images in each OOD set (stratified over the held-out classes,
        a random subset of the digits); ``None`` keeps all of them.
    random_state : int, RandomState instance or None, default=0
        Seed of the subsets and of the noise sets.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_train, 1, 28, 28), dtype float32
            ID training images, values in [0, 1].
        target : ndarray of shape (n_train,), dtype int64
            Index of each training image's class in ``id_classes``.
        data_test : ndarray of shape (n_test, 1, 28, 28), dtype float32
            ID test images.
        target_test : ndarray of shape (n_test,), dtype int64
            Index of each test image's class in ``id_classes``.
        ood : dict of str to ndarray of shape (n, 1, 28, 28), dtype float32
            The OOD test sets, near first: ``"held-out-classes"``,
            ``"digits"``, ``"uniform-noise"``, ``"gaussian-noise"``
            (``n_test`` images each) and ``"flipped"`` (``data_test``
            upside down).
        ood_kind : dict of str to str
            ``"near"`` or ``"far"`` for each key of ``ood``.
        id_classes : tuple of int
            The ID classes, in the order given.
        target_names : ndarray of shape (len(id_classes),), dtype str
            The names of the ID classes, indexed by ``target``.
        DESCR : str
            Description of the benchmark and of its set sizes.

    Raises
    ------
    FileNotFoundError
        When the idx files are missing (the message names the Debian
        package ``dataset-fashion-mnist`` and the folder).

    See Also
    --------
    load_fashion_mnist : The full dataset as uint8 arrays.
    load_digits_ood : The same layout on scikit-learn's 8x8 digits.
    make_noise_images : The noise sets on their own, of any shape.

    Examples
    --------
    >>> from sklearn_ood.datasets import load_fashion_mnist_ood
    >>> fm = load_fashion_mnist_ood(n_train=1000, n_test=200)  # doctest: +SKIP
    >>> fm.data.shape, fm.data_test.shape  # doctest: +SKIP
    ((1000, 1, 28, 28), (200, 1, 28, 28))
    >>> {name: x.shape[0] for name, x in fm.ood.items()}  # doctest: +SKIP
    {'held-out-classes': 200, 'digits': 200, 'uniform-noise': 200,
     'gaussian-noise': 200, 'flipped': 200}
    """
    id_classes = _check_id_classes(id_classes, n_classes=_TARGET_NAMES.size)
    full = load_fashion_mnist(path)
    rng = check_random_state(random_state)

    in_train = np.flatnonzero(np.isin(full.target, id_classes))
    is_id_test = np.isin(full.target_test, id_classes)
    for split, n_found in (("training", in_train.size), ("test", is_id_test.sum())):
        if n_found == 0:
            raise ValueError(
                f"The Fashion-MNIST {split} split holds no image of the classes "
                f"id_classes={id_classes}; check the files or the classes."
            )
    in_train = in_train[
        _stratified_subset(
            full.target[in_train],
            n_train,
            rng,
            name="n_train",
            what="ID training images",
        )
    ]
    in_test = np.flatnonzero(is_id_test)
    in_test = in_test[
        _stratified_subset(
            full.target_test[in_test], n_test, rng, name="n_test", what="ID test images"
        )
    ]
    held_out = np.flatnonzero(~is_id_test)
    if n_test is not None and n_test < held_out.size:
        held_out = held_out[
            _stratified_subset(
                full.target_test[held_out],
                n_test,
                rng,
                name="n_test",
                what="held-out test images",
            )
        ]

    data = _to_unit_images(full.data[in_train], 255.0)
    data_test = _to_unit_images(full.data_test[in_test], 255.0)
    n_id_test, image_shape = data_test.shape[0], data_test.shape[1:]
    ood = {
        "held-out-classes": _to_unit_images(full.data_test[held_out], 255.0),
        "digits": _upscaled_digits(image_shape[1:], n_test, rng),
        "uniform-noise": make_noise_images(
            "uniform", n_id_test, image_shape, random_state=rng
        ),
        "gaussian-noise": make_noise_images(
            "gaussian", n_id_test, image_shape, random_state=rng
        ),
        # axis 2 is the image height in (n, 1, H, W): upside down, not mirrored
        "flipped": np.ascontiguousarray(np.flip(data_test, axis=2)),
    }
    ood_kind = {
        "held-out-classes": "near",
        "digits": "far",
        "uniform-noise": "far",
        "gaussian-noise": "far",
        "flipped": "far",
    }
    held_out_classes = tuple(
        c for c in range(_TARGET_NAMES.size) if c not in id_classes
    )
    return _ood_bunch(
        data=data,
        target=_index_into(full.target[in_train], id_classes),
        data_test=data_test,
        target_test=_index_into(full.target_test[in_test], id_classes),
        ood=ood,
        ood_kind=ood_kind,
        id_classes=id_classes,
        names=list(_TARGET_NAMES),
        # {sets} stays a field: the Bunch builder fills in the set sizes
        descr=_OOD_DESCR.format(
            id_classes=id_classes,
            id_names=", ".join(_TARGET_NAMES[list(id_classes)]),
            held_out=held_out_classes,
            train_note=""
            if n_train is None
            else f" (a stratified subset of {n_train})",
            test_note="" if n_test is None else f" (a stratified subset of {n_test})",
            sets="{sets}",
        ),
    )
