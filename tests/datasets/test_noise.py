import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from sklearn_ood.datasets import make_noise_images


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 5), (7,), [2, 3]])
def test_shape_dtype_range(kind, shape):
    X = make_noise_images(kind, n_samples=6, shape=shape, random_state=0)
    assert X.shape == (6, *shape)
    assert X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0


def test_int_shape_is_one_dimension():
    assert make_noise_images(n_samples=3, shape=5, random_state=0).shape == (3, 5)


def test_defaults():
    X = make_noise_images(random_state=0)
    assert X.shape == (100, 1, 8, 8)


def test_uniform_statistics():
    # 20,000 pixels: the mean's standard error is about 0.002
    X = make_noise_images("uniform", n_samples=500, shape=(1, 5, 8), random_state=1)
    assert abs(X.mean() - 0.5) < 0.01
    assert abs(X.var() - 1 / 12) < 0.005
    # uniform, not clipped: no mass piles up at the ends
    assert np.mean(X == 0.0) < 1e-3 and np.mean(X == 1.0) < 1e-3
    counts, _ = np.histogram(X, bins=10, range=(0, 1))
    assert counts.min() > 0.08 * X.size and counts.max() < 0.12 * X.size


def test_gaussian_is_odin_clipped_normal():
    X = make_noise_images("gaussian", n_samples=500, shape=(1, 5, 8), random_state=2)
    below = norm.cdf(0.0, loc=0.5, scale=1.0)  # P(N(0.5, 1) < 0) = 0.3085
    assert abs(np.mean(X == 0.0) - below) < 0.015
    assert abs(np.mean(X == 1.0) - below) < 0.015  # symmetric around 0.5
    inside = X[(X > 0) & (X < 1)]
    # the unclipped part is the normal density restricted to (0, 1): mean 0.5
    assert abs(inside.mean() - 0.5) < 0.01
    # a unit-variance normal is nearly flat on (0, 1): its variance is close to
    # the uniform's 1/12, far from what a small variance would give
    assert abs(inside.var() - 1 / 12) < 0.01


def test_random_state():
    a = make_noise_images("gaussian", 4, random_state=0)
    b = make_noise_images("gaussian", 4, random_state=0)
    c = make_noise_images("gaussian", 4, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = np.random.RandomState(0)
    first = make_noise_images("uniform", 4, random_state=rng)
    second = make_noise_images("uniform", 4, random_state=rng)
    assert not np.array_equal(first, second)  # the instance advances
    assert not np.array_equal(
        make_noise_images("uniform", 4, random_state=0),
        make_noise_images("gaussian", 4, random_state=0),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "laplace"}, "kind"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -3}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"shape": (0, 8)}, "shape"),
        ({"shape": (1, -8, 8)}, "shape"),
        ({"shape": (1.5, 8)}, "shape"),
        ({"shape": ()}, "shape"),
        ({"shape": (True, 8)}, "shape"),
        ({"shape": "1x8x8"}, "shape"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_noise_images(**kwargs)


def test_import_datasets_does_not_import_torch():
    # OODImageFolder is exposed lazily: the numpy loaders must work without torch
    code = (
        "import sys, sklearn_ood.datasets as d; d.make_noise_images(n_samples=1); "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
