"""OOD image sets from a user's folders, streamed as a torch ``Dataset``.

The image sets of OOD benchmarks (TinyImageNet, LSUN and iSUN as the ODIN
downloads lay them out, Textures, Places365, and OpenOOD's image lists) are
folders of image files. :class:`OODImageFolder` lists the files once and
opens one per ``__getitem__``, so a folder of any size never sits in memory.

This module imports torch; ``sklearn_ood.datasets`` exposes the class lazily.
"""

import operator
import os
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from torch.utils.data import Dataset

__all__ = ["OODImageFolder"]

#: Suffixes of the image files found by a folder scan, compared lower-case
#: (ImageNet's ``.JPEG`` included).
IMG_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)

_LAYOUT_HELP = (
    "Pass as root a folder of image files (searched recursively), e.g. an "
    "ODIN download as extracted (Imagenet_resize/Imagenet_resize/*.jpg, "
    "LSUN/test/*.jpg, iSUN/iSUN_patches/*.jpeg), Textures (dtd/images/"
    "<category>/*.jpg) or Places365 (<category>/*.jpg); or, for an OpenOOD "
    "benchmark, root=<data>/images_classic with image_list=<data>/"
    "benchmark_imglist/<benchmark>/test_<dataset>.txt."
)


def _scan(root, extensions):
    """Image files under ``root``, recursively, sorted by relative path.

    Hidden files and folders (``.DS_Store``, macOS ``._name.jpg`` resource
    forks that archives carry along) are skipped: they are not images.
    Symbolic links to folders are followed once (a link cycle is cut).
    """
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                found.append(Path(dirpath, name))
    return sorted(found, key=lambda file: file.relative_to(root).parts)


def _read_image_list(image_list, root):
    """Files named by an OpenOOD image list, relative to ``root``.

    Each line is ``relative/path`` followed, after white space, by a label or
    other fields (ignored). Blank lines and ``#`` comments are skipped.
    """
    image_list = Path(image_list).expanduser()
    if not image_list.is_file():
        raise FileNotFoundError(
            f"Image list {image_list} not found. An OpenOOD image list is a text "
            "file of lines 'relative/path label', e.g. benchmark_imglist/cifar10/"
            "test_tin.txt, with paths relative to root (images_classic/)."
        )
    files = []
    with open(image_list, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                files.append(root / line.split(maxsplit=1)[0])
    if not files:
        raise ValueError(f"Image list {image_list} names no image file.")
    missing = [file for file in files if not file.is_file()]
    if missing:
        shown = ", ".join(str(file) for file in missing[:3])
        raise FileNotFoundError(
            f"{len(missing)} of the {len(files)} files named in {image_list} are "
            f"missing under root={root} (first: {shown}). The paths in an image "
            "list are relative to root: for OpenOOD, root is the images_classic/ "
            "(or images_largescale/) folder that holds the extracted datasets."
        )
    return files


def _to_mode(image, mode):
    # A palette image with a transparent colour goes through RGBA, as PIL
    # asks, rather than warning on every item.
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert(mode)


def _resize(image, size, resize):
    if resize == "resize":
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return image
    # "center-crop": shorter side to `size`, aspect kept, then the centre.
    width, height = image.size
    scale = size / min(width, height)
    new_width = max(size, int(width * scale))
    new_height = max(size, int(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left = int(round((new_width - size) / 2))
    top = int(round((new_height - size) / 2))
    return image.crop((left, top, left + size, top + size))


class OODImageFolder(Dataset):
    """OOD images from a folder, loaded one file at a time as a torch Dataset.

    Lists the image files under ``root`` (recursively, sorted by path) or the
    files named by an OpenOOD image list, and loads one file per item: opened
    with PIL, converted to RGB (or grayscale), resized to ``size x size`` and
    returned as a float32 tensor of shape ``(C, size, size)`` in ``[0, 1]``
    with the label ``-1`` (OOD). A folder of any size thus never sits in
    memory, and the dataset feeds a ``DataLoader`` or
    :class:`~sklearn_ood.torch.TorchFeatureTransformer` directly.

    The layouts of the common OOD downloads all work:

    * ODIN's TinyImageNet, LSUN (crop and resize) and iSUN archives,
      extracted: ``Imagenet_resize/Imagenet_resize/*.jpg``,
      ``LSUN/test/*.jpg``, ``iSUN/iSUN_patches/*.jpeg`` (pass either folder);
    * Textures (``dtd/images/<category>/*.jpg``) and Places365
      (``<category>/*.jpg``): found by the recursive scan;
    * OpenOOD: ``root=<data>/images_classic`` and ``image_list=<data>/
      benchmark_imglist/<benchmark>/test_<dataset>.txt``, whose lines are
      ``relative/path label`` (the label is ignored).

    Parameters
    ----------
    root : str or path-like
        The folder holding the images (searched recursively), or the folder
        that the paths of ``image_list`` are relative to. ``~`` is expanded.
    size : int, default=32
        Height and width of the returned images.
    image_list : str, path-like or None, default=None
        A text file whose lines name the images, relative to ``root``: the
        path first, then (after white space) anything, e.g. a label, which
        is ignored. Blank lines and lines starting with ``#`` are skipped.
        When given, ``root`` is not scanned and ``extensions`` is not used.
    resize : {"resize", "center-crop"}, default="resize"
        How an image becomes ``size x size``: ``"resize"`` scales it to that
        shape (the aspect ratio may change; what ODIN's ``*_resize`` sets
        were made with), ``"center-crop"`` scales its shorter side to
        ``size`` and keeps the central square (torchvision's
        ``Resize(size)`` then ``CenterCrop(size)``, as OpenOOD's test
        transform). Both use bilinear interpolation.
    mode : {"RGB", "L"}, default="RGB"
        Colour mode of the returned images: ``"RGB"`` gives 3 channels,
        ``"L"`` one grayscale channel (for models trained on 28 x 28
        grayscale benchmarks such as Fashion-MNIST).
    extensions : tuple of str, default=IMG_EXTENSIONS
        File suffixes that count as images in a folder scan, compared
        case-insensitively (``.JPEG`` matches ``".jpeg"``). The default is
        ``.jpg, .jpeg, .png, .bmp, .ppm, .pgm, .tif, .tiff, .webp, .gif``.
        Hidden files (names starting with ``.``) are always skipped.
    transform : callable or None, default=None
        Applied to each image tensor after loading, e.g. the normalisation
        the model was trained with (``torchvision.transforms.Normalize``).

    Attributes
    ----------
    files : list of pathlib.Path
        The image files, in item order.

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``image_list`` does not exist, or ``image_list``
        names files missing under ``root``; the message describes the
        expected layout.
    ValueError
        If no image file is found under ``root`` (or ``image_list`` names
        none), or, when an item is loaded, if its file cannot be read as an
        image (the message names the file).

    See Also
    --------
    load_cifar : CIFAR-10 or CIFAR-100 from the python batches.
    make_noise_images : Uniform or Gaussian noise images.
    sklearn_ood.torch.TorchFeatureTransformer : Model features of a Dataset.

    Notes
    -----
    Items are ``(image, -1)``: the label marks every image as OOD, as the
    metrics of :mod:`sklearn_ood.metrics` expect. ``DataLoader`` workers
    (``num_workers > 0``) each open their own files; nothing is cached.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_ood.datasets import OODImageFolder
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name) / "LSUN_resize" / "LSUN_resize"
    >>> folder.mkdir(parents=True)
    >>> rng = np.random.default_rng(0)
    >>> for i in range(3):
    ...     pixels = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
    ...     Image.fromarray(pixels).save(folder / f"{i}.jpg")
    >>> dataset = OODImageFolder(Path(tmp.name) / "LSUN_resize", size=32)
    >>> len(dataset)
    3
    >>> image, label = dataset[0]
    >>> image.shape, image.dtype, label
    (torch.Size([3, 32, 32]), torch.float32, -1)
    >>> bool(image.min() >= 0) and bool(image.max() <= 1)
    True
    >>> tmp.cleanup()
    """

    _parameter_constraints = {
        "root": [str, os.PathLike],
        "size": [Interval(Integral, 1, None, closed="left")],
        "image_list": [str, os.PathLike, None],
        "resize": [StrOptions({"resize", "center-crop"})],
        "mode": [StrOptions({"RGB", "L"})],
        "extensions": [tuple, list],
        "transform": [callable, None],
    }

    def __init__(
        self,
        root,
        *,
        size=32,
        image_list=None,
        resize="resize",
        mode="RGB",
        extensions=IMG_EXTENSIONS,
        transform=None,
    ):
        # A Dataset, not an estimator: parameters are checked here, once.
        validate_parameter_constraints(
            self._parameter_constraints,
            {
                "root": root,
                "size": size,
                "image_list": image_list,
                "resize": resize,
                "mode": mode,
                "extensions": extensions,
                "transform": transform,
            },
            caller_name=type(self).__name__,
        )
        self.root = Path(root).expanduser()
        self.size = size
        self.image_list = image_list
        self.resize = resize
        self.mode = mode
        self.extensions = tuple(extensions)
        self.transform = transform
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise FileNotFoundError(f"Image folder {self.root} {what}. {_LAYOUT_HELP}")
        if image_list is not None:
            self.files = _read_image_list(image_list, self.root)
            return
        suffixes = {_suffix(ext) for ext in self.extensions}
        self.files = _scan(self.root, suffixes)
        if not self.files:
            raise ValueError(
                f"No image file ({', '.join(sorted(suffixes))}) found under "
                f"{self.root}. {_LAYOUT_HELP}"
            )

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        """The image ``index`` as a ``(C, size, size)`` float32 tensor, and -1."""
        file = self.files[operator.index(index)]
        try:
            with Image.open(file) as image:
                image = _resize(_to_mode(image, self.mode), self.size, self.resize)
        except FileNotFoundError:
            raise  # removed since the dataset was built: the error names it
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(
                f"Cannot read the image file {file}: {exc}. Remove or replace it, "
                "or leave it out of the image list."
            ) from exc
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        # PIL gives (height, width[, channels]); torch models take channels first.
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels))
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, -1

    def __repr__(self):
        source = (
            "" if self.image_list is None else f", image_list={str(self.image_list)!r}"
        )
        return (
            f"{type(self).__name__}(root={str(self.root)!r}{source}, "
            f"n_images={len(self)}, size={self.size}, mode={self.mode!r})"
        )


def _suffix(extension):
    if not isinstance(extension, str) or not extension.strip("."):
        raise ValueError(
            f"extensions should hold file suffixes such as '.jpg'; got {extension!r}."
        )
    return "." + extension.lower().lstrip(".")
