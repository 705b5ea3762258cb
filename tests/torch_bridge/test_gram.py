"""Gram's fast paths: in-place powers and the cached fit pass, against float64
NumPy references and against the uncached path."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")

import numpy as np
import torch
from _torch_helpers import cnn64, random_images
from sklearn import config_context

from sklearn_ood.torch import Gram
from sklearn_ood.torch._gram import _gram_values, _TwoSmallest


def _numpy_gram_values(maps, powers):
    """Per sample and power: signed p-th root of the row sums of the C x C
    matrix ``F^p F^p^T``, with NumPy's float64 ``**`` (one rounding)."""
    out = []
    for F in maps:
        F = F.reshape(F.shape[0], -1).astype(np.float64)
        values = []
        for p in powers:
            G = (F**p) @ (F**p).T
            r = G.sum(1)
            values.append(np.sign(r) * np.abs(r) ** (1.0 / p))
        out.append(np.concatenate(values))
    return np.array(out)


@pytest.mark.parametrize(
    "powers", [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [7, 1, 3, 3, 12], [5]]
)
@pytest.mark.parametrize("shape", [(6, 5, 4, 3), (6, 7), (6, 3, 2, 2, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_values_match_float64_numpy(powers, shape, dtype):
    # Post-ReLU-like maps (>= 0, some exact zeros) spread over two decades,
    # so that high powers span many orders of magnitude.
    rng = np.random.default_rng(len(shape) + len(powers))
    maps = (
        np.maximum(rng.normal(size=shape), 0)
        * rng.uniform(0.1, 10, shape[:2])[(...,) + (None,) * (len(shape) - 2)]
    )
    value = torch.as_tensor(maps).to(dtype)
    ours = _gram_values(value, np.asarray(powers)).numpy()
    # The reference sees the same (possibly float32-rounded) map.
    expected = _numpy_gram_values(value.double().numpy(), powers)
    assert ours.dtype == np.float64 and ours.shape == (shape[0], len(powers) * shape[1])
    # Documented: F^p within p ulps; the sums and roots add a few more.
    np.testing.assert_allclose(ours, expected, rtol=1e-13, atol=0)


def test_gram_values_signed_maps_and_input_untouched():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 3, 5, 5))
    value = torch.as_tensor(maps)
    before = value.clone()
    ours = _gram_values(value, np.array([2, 1, 3])).numpy()
    torch.testing.assert_close(value, before, rtol=0, atol=0)  # no in-place change
    expected = _numpy_gram_values(maps, [2, 1, 3])
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_gram_values_keep_the_overflow_error():
    model, X = cnn64(n_classes=3, width=2), random_images(n=10)
    with pytest.raises(ValueError, match="overflowed float64"):
        Gram(model, ["block2"], powers=[400], device="cpu").fit(1e3 * X)


def _count_forwards(model):
    calls = {"n": 0}

    def hook(module, args):
        calls["n"] += 1

    return calls, model.register_forward_pre_hook(hook)


def _fitted(model, X, working_memory=None):
    det = Gram(model, ["block1", "block3"], powers=4, batch_size=7, device="cpu")
    calls, handle = _count_forwards(model)
    try:
        if working_memory is None:
            det.fit(X)
        else:
            with config_context(working_memory=working_memory):
                det.fit(X)
    finally:
        handle.remove()
    return det, calls["n"]


def test_gram_fit_caches_pass_one_within_working_memory():
    model, X = cnn64(n_classes=3, width=2), random_images(n=20)
    n_batches = 3  # 20 samples in batches of 7
    cached, n_cached = _fitted(model, X)
    # One call on the first samples (the base class's input check), then
    # the model runs once per batch.
    assert n_cached == 1 + n_batches
    # Gram values of one batch: 7 rows x 4 powers x (2 + 8) channels float64,
    # plus 7 int64 predictions; room for the first batch only: the cache is
    # dropped midway and pass 2 runs the model again.
    one_batch = 7 * 4 * 10 * 8 + 7 * 8
    for memory in (one_batch * 1.5 / 2**20, 1e-9):
        rerun, n_rerun = _fitted(model, X, working_memory=memory)
        assert n_rerun == 1 + 2 * n_batches
        for name in ("min_", "max_", "expected_deviation_", "class_counts_"):
            np.testing.assert_array_equal(getattr(rerun, name), getattr(cached, name))
        assert rerun.offset_ == cached.offset_
        X_test = np.concatenate([random_images(n=5, seed=1), 3 * X[:5]])
        np.testing.assert_array_equal(
            rerun.score_samples(X_test), cached.score_samples(X_test)
        )


@pytest.mark.parametrize("n_classes", [1, 3, 6])
def test_pooled_bounds_equal_streaming_them(n_classes):
    # The pooled group (all samples) is derived from the classes' two
    # smallest values; streaming it directly must give the same state, and
    # leaving out each sample must give the min of the others.
    rng = np.random.default_rng(n_classes)
    values = rng.integers(0, 6, size=(40, 5)).astype(float)  # many ties
    groups = rng.integers(0, n_classes, 40)
    groups[:3] = 0  # class 0 never empty; other classes may be
    rows = np.arange(40)
    derived = _TwoSmallest(n_classes + 1, 5)
    streamed = _TwoSmallest(n_classes + 1, 5)
    for chunk in np.array_split(rows, 4):
        derived.update(values[chunk], groups[chunk], chunk)
        streamed.update(values[chunk], groups[chunk], chunk)
        streamed.update(values[chunk], np.full(len(chunk), n_classes), chunk)
    derived.pool(n_classes)
    np.testing.assert_array_equal(derived.first, streamed.first)
    np.testing.assert_array_equal(derived.second, streamed.second)
    pooled = np.full(40, n_classes)
    left_out = derived.without(pooled, rows)
    expected = [np.delete(values, i, 0).min(0) for i in rows]
    np.testing.assert_array_equal(left_out, expected)
    for g in range(n_classes):
        members = rows[groups == g]
        if len(members) >= 2:
            expected = [values[np.setdiff1d(members, i)].min(0) for i in members]
            got = derived.without(np.full(len(members), g), members)
            np.testing.assert_array_equal(got, expected)
