"""scikit-learn's bundled digits split into ID and named OOD test sets."""

from numbers import Real

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from sklearn_ood.datasets._base import (
    _check_id_classes,
    _index_into,
    _ood_bunch,
    _stratified_split,
    _to_unit_images,
)
from sklearn_ood.datasets._noise import make_noise_images

__all__ = ["load_digits_ood"]

_DESCR = """\
Digits OOD benchmark
--------------------

scikit-learn's bundled optical recognition of handwritten digits (1,797 8x8
images, pixel values 0..16), rescaled to [0, 1] (divided by 16) and shaped
(n, 1, 8, 8) for a convolutional network. It ships with scikit-learn, so this
benchmark runs offline everywhere.

In-distribution (ID): the digits {id_classes}, split per class into
train and test rows (test_size={test_size}, stratified, seeded). ``target``
is the index of a row's digit in ``id_classes`` (so a classifier with
len(id_classes) outputs trains on it directly); ``target_names[target]``
gives the digit.

Out-of-distribution (OOD) test sets, near first:

- held-out-digits (near): every image of the other digits {held_out}.
- uniform-noise (far): i.i.d. pixels uniform on [0, 1] (ODIN).
- gaussian-noise (far): i.i.d. pixels N(0.5, 1) clipped to [0, 1] (ODIN).
- inverted (far): 1 - x for the ID test images.
- flipped (far): the ID test images upside down.

The noise sets have as many images as the ID test set.

{sets}

References: E. Alpaydin and C. Kaynak, "Optical recognition of handwritten
digits", UCI Machine Learning Repository, 1998; S. Liang, Y. Li and
R. Srikant, "Enhancing the reliability of out-of-distribution image detection
in neural networks", ICLR 2018.
"""


@validate_params(
    {
        "id_classes": ["array-like"],
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits_ood(id_classes=(0, 1, 2, 3, 4), *, test_size=0.3, random_state=0):
    """Load scikit-learn's digits split into ID train/test and named OOD sets.

    The digits of ``id_classes`` are the in-distribution (ID) data, split
    per class into train and test rows. The other digits form the near-OOD
    set; ODIN's uniform and Gaussian noise, and the ID test digits inverted
    or flipped upside down, form the far-OOD sets. Images are float32 of
    shape (n, 1, 8, 8) with values in [0, 1] (pixel / 16). The data ship
    with scikit-learn: nothing downloads.

    Parameters
    ----------
    id_classes : array-like of int, default=(0, 1, 2, 3, 4)
        The in-distribution digits: distinct labels in 0..9, not all ten.
        Their order defines ``target``.
    test_size : float, default=0.3
        Fraction of each ID digit's images held out as the ID test set, in
        (0, 1); each class keeps at least one row on either side.
    random_state : int, RandomState instance or None, default=0
        Seed of the train/test split and of the noise sets.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_train, 1, 8, 8), dtype float32
            ID training images, values in [0, 1].
        target : ndarray of shape (n_train,), dtype int64
            Index of each training image's digit in ``id_classes``, in
            ``0 .. len(id_classes) - 1``; ``np.asarray(id_classes)[target]``
            is the digit itself.
        data_test : ndarray of shape (n_test, 1, 8, 8), dtype float32
            ID test images.
        target_test : ndarray of shape (n_test,), dtype int64
            Index of each test image's digit in ``id_classes``.
        ood : dict of str to ndarray of shape (n, 1, 8, 8), dtype float32
            The OOD test sets, near first: ``"held-out-digits"`` (every image
            of the other digits), ``"uniform-noise"``, ``"gaussian-noise"``
            (``n_test`` images each), ``"inverted"`` (``1 - data_test``) and
            ``"flipped"`` (``data_test`` upside down).
        ood_kind : dict of str to str
            ``"near"`` or ``"far"`` for each key of ``ood``.
        id_classes : tuple of int
            The ID digits, in the order given.
        target_names : ndarray of shape (len(id_classes),), dtype str
            The ID digits as text, indexed by ``target``.
        DESCR : str
            Description of the benchmark and of its set sizes.

    See Also
    --------
    load_fashion_mnist_ood : The same layout on Fashion-MNIST (28x28).
    make_noise_images : The noise sets on their own, of any shape.
    sklearn.datasets.load_digits : The digits themselves.

    Examples
    --------
    >>> from sklearn_ood.datasets import load_digits_ood
    >>> digits = load_digits_ood(id_classes=(0, 1, 2, 3, 4), random_state=0)
    >>> digits.data.shape, digits.data.dtype
    ((631, 1, 8, 8), dtype('float32'))
    >>> digits.data_test.shape
    (270, 1, 8, 8)
    >>> list(digits.ood)
    ['held-out-digits', 'uniform-noise', 'gaussian-noise', 'inverted', 'flipped']
    >>> digits.ood["held-out-digits"].shape
    (896, 1, 8, 8)
    """
    digits = load_digits()
    id_classes = _check_id_classes(id_classes, n_classes=10, what="digits")
    rng = check_random_state(random_state)

    images = _to_unit_images(digits.images, 16.0)
    labels = digits.target
    is_id = np.isin(labels, id_classes)
    id_rows = np.flatnonzero(is_id)
    train, test = _stratified_split(labels[id_rows], test_size, rng, what="ID digits")
    train, test = id_rows[train], id_rows[test]
    data, data_test = images[train], images[test]
    n_test = data_test.shape[0]

    ood = {
        "held-out-digits": images[~is_id],
        "uniform-noise": make_noise_images(
            "uniform", n_test, data_test.shape[1:], random_state=rng
        ),
        "gaussian-noise": make_noise_images(
            "gaussian", n_test, data_test.shape[1:], random_state=rng
        ),
        "inverted": 1.0 - data_test,
        # axis 2 is the image height in (n, 1, H, W): upside down, not mirrored
        "flipped": np.ascontiguousarray(np.flip(data_test, axis=2)),
    }
    ood_kind = {
        "held-out-digits": "near",
        "uniform-noise": "far",
        "gaussian-noise": "far",
        "inverted": "far",
        "flipped": "far",
    }
    held_out = tuple(int(c) for c in range(10) if c not in id_classes)
    return _ood_bunch(
        data=data,
        target=_index_into(labels[train], id_classes),
        data_test=data_test,
        target_test=_index_into(labels[test], id_classes),
        ood=ood,
        ood_kind=ood_kind,
        id_classes=id_classes,
        names=[str(c) for c in range(10)],
        # {sets} stays a field: the Bunch builder fills in the set sizes
        descr=_DESCR.format(
            id_classes=id_classes,
            held_out=held_out,
            test_size=f"{test_size:g}",
            sets="{sets}",
        ),
    )
