"""Offline data for OOD benchmarks: nothing here downloads.

In-distribution (ID) train and test sets with named out-of-distribution
(OOD) test sets, returned as :class:`~sklearn.utils.Bunch` objects in the
layout of scikit-learn's loaders:

- :func:`load_digits_ood`: scikit-learn's bundled 8x8 digits, some classes
  ID, the others near-OOD, noise and transformed digits far-OOD. Always
  available.
- :func:`load_fashion_mnist` and :func:`load_fashion_mnist_ood`:
  Fashion-MNIST from a local copy of its idx files (Debian's
  ``dataset-fashion-mnist`` package), the same OOD layout at 28x28.
- :func:`make_noise_images`: ODIN's uniform and Gaussian noise images.
- :func:`load_cifar` and :class:`OODImageFolder`: a user's local copies of
  CIFAR-10/100 and of the image-folder OOD sets (TinyImageNet, LSUN, iSUN,
  Textures, Places365). ``OODImageFolder`` is a torch ``Dataset``; it is
  imported on first use, so importing this module never imports torch.

The OOD presets return float32 images of shape (n, channels, height, width)
with values in [0, 1], ready for a convolutional network, and ID labels that
index ``id_classes``; :func:`load_fashion_mnist` and :func:`load_cifar` return
the datasets' own uint8 images and labels.
"""

from sklearn_ood.datasets._cifar import load_cifar
from sklearn_ood.datasets._digits import load_digits_ood
from sklearn_ood.datasets._fashion_mnist import (
    load_fashion_mnist,
    load_fashion_mnist_ood,
)
from sklearn_ood.datasets._noise import make_noise_images

__all__ = [
    "OODImageFolder",
    "load_cifar",
    "load_digits_ood",
    "load_fashion_mnist",
    "load_fashion_mnist_ood",
    "make_noise_images",
]


def __getattr__(name):
    # The image-folder Dataset subclasses torch's: import torch only when asked.
    if name == "OODImageFolder":
        from sklearn_ood.datasets._image_folders import OODImageFolder

        return OODImageFolder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
