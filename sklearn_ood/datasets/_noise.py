"""Synthetic far-OOD images: ODIN's uniform and Gaussian noise sets."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = ["make_noise_images"]


def _check_shape(shape):
    """``shape`` as a tuple of positive ints (an int is one dimension)."""
    if isinstance(shape, Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (
        not dims
        or any(isinstance(d, bool) or not isinstance(d, Integral) for d in dims)
        or any(d < 1 for d in dims)
    ):
        raise ValueError(
            "shape must be a tuple of positive ints giving the shape of one image, "
            f"e.g. (1, 8, 8) or (3, 32, 32); got {shape!r}."
        )
    return tuple(int(d) for d in dims)


@validate_params(
    {
        "kind": [StrOptions({"uniform", "gaussian"})],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "shape": [tuple, list, Integral],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_noise_images(
    kind="uniform", n_samples=100, shape=(1, 8, 8), *, random_state=None
):
    """Generate noise images in [0, 1], the far-OOD sets of ODIN.

    Every pixel is drawn independently, as in the synthetic OOD sets of
    Liang et al. (ODIN): ``"uniform"`` draws from the uniform distribution
    on [0, 1]; ``"gaussian"`` draws from a normal distribution of mean 0.5
    and unit variance, clipped to [0, 1]. With unit variance about 31% of
    the Gaussian pixels fall below 0 and as many above 1, so the Gaussian
    images are largely saturated black and white pixels; this is the
    definition of the paper, kept as it is.

    Parameters
    ----------
    kind : {"uniform", "gaussian"}, default="uniform"
        The noise distribution.
    n_samples : int, default=100
        Number of images.
    shape : tuple of int, default=(1, 8, 8)
        Shape of one image, e.g. ``(1, 8, 8)`` for scikit-learn's digits,
        ``(1, 28, 28)`` for Fashion-MNIST or ``(3, 32, 32)`` for CIFAR.
    random_state : int, RandomState instance or None, default=None
        Seed of the draw. Pass an int for reproducible images.

    Returns
    -------
    images : ndarray, dtype float32
        The noise images, of shape ``(n_samples, *shape)``, with values in
        [0, 1].

    See Also
    --------
    load_digits_ood : Digits split into ID and OOD sets, with these noise sets.
    load_fashion_mnist_ood : Fashion-MNIST split into ID and OOD sets.

    References
    ----------
    .. [1] S. Liang, Y. Li and R. Srikant, "Enhancing the reliability of
       out-of-distribution image detection in neural networks", ICLR 2018.

    Examples
    --------
    >>> from sklearn_ood.datasets import make_noise_images
    >>> X = make_noise_images("gaussian", n_samples=5, shape=(1, 8, 8), random_state=0)
    >>> X.shape, X.dtype
    ((5, 1, 8, 8), dtype('float32'))
    >>> bool(X.min() >= 0.0 and X.max() <= 1.0)
    True
    """
    dims = _check_shape(shape)
    rng = check_random_state(random_state)
    size = (n_samples, *dims)
    if kind == "uniform":
        images = rng.uniform(0.0, 1.0, size=size)
    else:
        images = np.clip(rng.normal(0.5, 1.0, size=size), 0.0, 1.0)
    return images.astype(np.float32)
