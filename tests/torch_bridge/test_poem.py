"""POEM's outlier mining in OODNeuralNetClassifier (``outlier_mining="poem"``).

The Bayesian linear regression, the Thompson draw and the selection are
checked against float64 computations written from the paper and the
reference code (Unleashing Mask's ``utils/neural_linear_opt.py`` and
``select_ood_opt`` in ``utils/net_utils.py``), on fixed features; then
the option trains a small model.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import numpy as np
import torch
from _torch_helpers import MLP, digits_images
from skorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from sklearn_ood.torch import (
    DigitsCNN,
    EnergyRegularizedLoss,
    OODNeuralNetClassifier,
    UnleashingMaskLoss,
)
from sklearn_ood.torch._outlier_batches import (
    _blr_posterior,
    _closest_to_boundary,
    _OutlierPool,
    _sample_coef,
    _ThompsonMiner,
)


def _posterior_reference(z, t, sigma2, sigma_n2):
    """Float64 posterior from the formulas (explicit rows, no weights)."""
    d = z.shape[1]
    a = z.T @ z / sigma_n2 + np.eye(d) / sigma2
    mean = np.linalg.solve(a, z.T @ t / sigma_n2)
    return mean, sigma2 * np.linalg.inv(a)


def test_posterior_matches_formula_and_weights_repeat_rows():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    t = rng.choice([-3.9, 3.9], size=30) + 0.2
    mean, cov = _blr_posterior(z, t, 20.0, 0.5)
    ref_mean, ref_cov = _posterior_reference(z, t, 20.0, 0.5)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(cov, cov.T)
    # a weight of 3 on the first 10 rows = those rows repeated 3 times
    w = np.r_[np.full(10, 3.0), np.ones(20)]
    mean_w, cov_w = _blr_posterior(z, t, 20.0, 0.5, sample_weight=w)
    z_rep = np.concatenate([z[:10]] * 3 + [z[10:]])
    t_rep = np.concatenate([t[:10]] * 3 + [t[10:]])
    ref_mean, ref_cov = _posterior_reference(z_rep, t_rep, 20.0, 0.5)
    np.testing.assert_allclose(mean_w, ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov_w, ref_cov, rtol=1e-10, atol=1e-12)


def test_thompson_draws_follow_the_posterior():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=3)
    root = rng.normal(size=(3, 3))
    cov = root @ root.T + 0.1 * np.eye(3)
    torch.manual_seed(0)
    draws = np.array([_sample_coef(mean, cov) for _ in range(20000)])
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.06)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.12 * np.abs(cov).max())


def test_selection_keeps_smallest_absolute_scores():
    scores = np.array([3.0, -0.5, 0.2, -4.0, 0.5, 1.0, -0.1])
    np.testing.assert_array_equal(_closest_to_boundary(scores, 3), [6, 2, 1])
    # ties (|-0.5| = |0.5|) keep index order
    np.testing.assert_array_equal(_closest_to_boundary(scores, 4), [6, 2, 1, 4])
    assert len(_closest_to_boundary(scores, 100)) == len(scores)


class _Lookup:
    """``featurize`` stub: rows carry their id in column 0; fixed features."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def __call__(self, batches):
        self.calls += 1
        ids = np.concatenate([np.asarray(b)[:, 0] for b in batches]).astype(int)
        return self.table[ids]


def _miner_setup(n_id=12, n_pool=20, d=3, seed=0, **params):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(1000 + n_pool, d))
    X_id = np.c_[np.arange(n_id), np.zeros(n_id)].astype(np.float32)
    pool_X = np.c_[1000 + np.arange(n_pool), np.zeros(n_pool)].astype(np.float32)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(X_id), torch.zeros(n_id, dtype=torch.long)),
        batch_size=5,
    )
    pool = _OutlierPool([(pool_X, None)])
    miner = _ThompsonMiner(_Lookup(table), **params)
    return miner, loader, pool, table[:n_id], table[1000:]


def test_miner_prior_then_posterior_selection_against_reference():
    miner, loader, pool, z_id, z_pool = _miner_setup(
        n_selected=6, buffer_size=2, prior_variance=20.0, noise_variance=0.5
    )
    torch.manual_seed(0)
    # epoch 0: beta from the prior N(mean0, 20 I), mean0 ~ N(0, 0.01^2)
    rows0 = miner.select(loader, pool, n_epoch=99)
    assert np.all(np.abs(miner.mean_) < 0.05)
    np.testing.assert_array_equal(miner.cov_, 20.0 * np.eye(3))
    expected = np.argsort(np.abs(z_pool @ miner.coef_), kind="stable")[:6]
    np.testing.assert_array_equal(rows0, expected)
    used0 = np.r_[rows0, rows0[:2]]  # an epoch may cycle through its rows
    miner.record(used0)

    # epoch 1: posterior from the ID rows (target -3.9 + eta) and the used
    # outliers (+3.9 + eta), one eta ~ N(0, 0.5) per fit
    rows1 = miner.select(loader, pool, n_epoch=99)
    eta = miner.noise_
    z = np.concatenate([z_id, z_pool[used0]])
    t = np.r_[np.full(len(z_id), -3.9 + eta), np.full(len(used0), 3.9 + eta)]
    ref_mean, ref_cov = _posterior_reference(z, t, 20.0, 0.5)
    np.testing.assert_allclose(miner.mean_, ref_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(miner.cov_, ref_cov, rtol=1e-9, atol=1e-12)
    expected = np.argsort(np.abs(z_pool @ miner.coef_), kind="stable")[:6]
    np.testing.assert_array_equal(rows1, expected)
    miner.record(rows1)

    # epoch 2: ID rows counted twice (two buffered epochs), as the reference
    # repeats them, plus both epochs' outliers
    miner.select(loader, pool, n_epoch=99)
    z = np.concatenate([z_id, z_id, z_pool[used0], z_pool[rows1]])
    t = np.r_[
        np.full(2 * len(z_id), -3.9 + eta), np.full(len(used0) + len(rows1), 3.9 + eta)
    ]
    ref_mean, ref_cov = _posterior_reference(z, t, 20.0, 0.5)
    np.testing.assert_allclose(miner.mean_, ref_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(miner.cov_, ref_cov, rtol=1e-9, atol=1e-12)
    assert miner.noise_ == eta

    # epoch 3: the buffer holds the last 2 epochs only
    miner.record(miner.selected_)
    assert len(miner.buffer) == 2
    np.testing.assert_array_equal(miner.buffer[0], rows1)


def test_miner_default_count_and_small_pool():
    miner, loader, pool, _, _ = _miner_setup(n_pool=8)
    torch.manual_seed(0)
    assert len(miner.select(loader, pool, n_epoch=5)) == 5
    # a pool no larger than the count: every row, nothing mined
    assert sorted(miner.select(loader, pool, n_epoch=50)) == list(range(8))


# ------------------------------------------------------------------ the net


class OutlierIds(Callback):
    """The ids (column 0) of the outlier rows of each training epoch."""

    def initialize(self):
        self.epochs_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.epochs_.append(set())

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            X, y = batch
            self.epochs_[-1].update(X[y < 0, 0].numpy().astype(int).tolist())


def _tabular(n_per_class=12, n_aux=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n_per_class)
    X = rng.normal(size=(len(y), 5)).astype(np.float32)
    X[:, 1:] += y[:, None] / 2.0
    X[:, 0] = 0.0
    X_aux = rng.uniform(-3, 3, size=(n_aux, 5)).astype(np.float32)
    X_aux[:, 0] = 1000 + np.arange(n_aux)
    return X, y, X_aux


def test_each_epoch_trains_on_its_selected_outliers():
    X, y, X_aux = _tabular()
    torch.manual_seed(0)
    net = OODNeuralNetClassifier(
        MLP(n_in=5, n_hidden=8, n_out=3),
        criterion=EnergyRegularizedLoss,
        criterion__margin_in=-3.0,
        criterion__margin_out=-1.0,
        outlier_mining="poem",
        outlier_mining__n_selected=7,
        callbacks=[("ids", OutlierIds())],
        max_epochs=4,
        batch_size=6,
        train_split=None,
        verbose=0,
        random_state=0,
    ).fit(X, y, outliers=X_aux)
    epochs = dict(net.callbacks_)["ids"].epochs_
    assert [len(ids) for ids in epochs] == [7, 7, 7, 7]
    assert all(ids <= set(range(1000, 1040)) for ids in epochs)
    assert len(set.union(*epochs)) > 7  # the selection moves between epochs


def test_mining_needs_outliers_and_checks_its_parameters():
    X, y, _ = _tabular()
    net = OODNeuralNetClassifier(
        MLP(n_in=5, n_hidden=8, n_out=3),
        outlier_mining="poem",
        max_epochs=1,
        train_split=None,
        verbose=0,
    )
    with pytest.raises(ValueError, match="needs|none: pass them"):
        net.fit(X, y)
    bad = [
        ({"outlier_mining": "bayes"}, 'must be None or "poem"'),
        ({"outlier_mining__n_selected": 0}, "n_selected"),
        ({"outlier_mining__noise_variance": -1.0}, "noise_variance"),
        ({"outlier_mining__buffer": 3}, "Unknown parameter outlier_mining__buffer"),
    ]
    for params, match in bad:
        with pytest.raises(ValueError, match=match):
            net.set_params(**params).fit(X, y, outliers=X[:5])
        net = OODNeuralNetClassifier(
            MLP(n_in=5, n_hidden=8, n_out=3),
            outlier_mining="poem",
            max_epochs=1,
            train_split=None,
            verbose=0,
        )
    net = OODNeuralNetClassifier(
        MLP(n_in=5, n_hidden=8, n_out=3), outlier_mining__n_selected=3, verbose=0
    )
    with pytest.raises(ValueError, match="outlier_mining is None"):
        net.fit(X, y)


def _digits_fit(criterion, seed=0, **params):
    X, y = digits_images()
    X_id, y_id = X[y < 5][:200], y[y < 5][:200]
    rng = np.random.default_rng(0)
    perm = np.argsort(rng.random((300, 64)), axis=1)
    flat = X[y < 5][200:500].reshape(300, -1)
    X_aux = np.take_along_axis(flat, perm, axis=1).reshape(300, 1, 8, 8)
    torch.manual_seed(0)
    return OODNeuralNetClassifier(
        DigitsCNN(n_classes=5, width=4),
        criterion=criterion,
        outlier_mining="poem",
        outlier_mining__n_selected=100,
        max_epochs=4,
        batch_size=32,
        outlier_ratio=1.0,
        lr=0.05,
        optimizer__momentum=0.9,
        train_split=None,
        verbose=0,
        random_state=seed,
        **params,
    ).fit(X_id, y_id, outliers=X_aux)


@pytest.mark.parametrize(
    "criterion, params",
    [
        (EnergyRegularizedLoss, {"criterion__margin_in": -6.0}),
        (
            UnleashingMaskLoss,
            {
                "criterion__level": 0.05,
                "criterion__outlier_loss": "energy",
                "criterion__margin_in": -6.0,
                "criterion__margin_out": -2.0,
            },
        ),
    ],
    ids=["POEM", "POEM+UM"],
)
def test_digits_training_decreases_the_loss_and_is_reproducible(criterion, params):
    net = _digits_fit(criterion, **params)
    losses = np.asarray(net.history[:, "train_loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    again = _digits_fit(criterion, **params)
    for a, b in zip(
        net.module_.state_dict().values(), again.module_.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
