"""Tests of OODNeuralNetClassifier and finetune_preset (tiny MLPs, few epochs)."""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pickle
from functools import partial

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import numpy as np
import torch
from _torch_helpers import MLP
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback

from sklearn_ood.detectors import Mahalanobis
from sklearn_ood.metrics import auroc, ood_scorer
from sklearn_ood.torch import (
    EnergyRegularizedLoss,
    IDCrossEntropyLoss,
    OODNeuralNetClassifier,
    OutlierExposureLoss,
    TorchFeatureTransformer,
    UnleashingMaskLoss,
    finetune_preset,
)
from sklearn_ood.torch._presets import _CosinePerStep

N_IN = 5


class BatchRecorder(Callback):
    """Records every batch: (training, first feature of each row, target)."""

    def initialize(self):
        self.batches_ = []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        X, y = batch
        self.batches_.append((training, X[:, 0].numpy().copy(), y.numpy().copy()))


def _data(n_per_class=12, labels=(3, 7, 12), n_aux=30, seed=0, dtype=np.int64):
    """ID rows with column 0 = row id (0..n-1), aux rows with ids >= 1000."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(labels, dtype=dtype), n_per_class)
    X = rng.normal(size=(len(y), N_IN)).astype(np.float32)
    X[:, 1:] += y[:, None].astype(np.float32) / 4  # separable classes
    X[:, 0] = np.arange(len(y))
    X_aux = rng.uniform(-3, 3, size=(n_aux, N_IN)).astype(np.float32)
    X_aux[:, 0] = 1000 + np.arange(n_aux)
    return X, y, X_aux


def _net(module=None, n_out=3, **params):
    if module is None:
        torch.manual_seed(0)
        module = MLP(n_in=N_IN, n_hidden=8, n_out=n_out)
    defaults = {"max_epochs": 2, "batch_size": 6, "verbose": 0, "random_state": 0}
    return OODNeuralNetClassifier(module, **{**defaults, **params})


def _recorder(net):
    return dict(net.callbacks_)["rec"]


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------ labels


def test_classes_encoding_and_predict_labels():
    X, y, _ = _data(dtype=np.int32)
    net = _net(train_split=None, callbacks=[("rec", BatchRecorder())]).fit(X, y)
    np.testing.assert_array_equal(net.classes_, [3, 7, 12])
    # the criterion sees codes 0..C-1, never the raw labels
    targets = np.concatenate([t for _, _, t in _recorder(net).batches_])
    assert set(targets) == {0, 1, 2}
    ids = np.concatenate([r for _, r, _ in _recorder(net).batches_]).astype(int)
    np.testing.assert_array_equal(targets, np.searchsorted([3, 7, 12], y[ids]))
    pred = net.predict(X)
    assert set(pred) <= {3, 7, 12}
    proba = net.predict_proba(X)
    np.testing.assert_array_equal(pred, net.classes_[proba.argmax(1)])


def test_classes_parameter_sets_order_and_outlier_rows_excluded():
    X, y, X_aux = _data()
    Xm, ym = np.vstack([X, X_aux]), np.r_[y, -np.ones(len(X_aux), int)]
    net = _net(classes=[12, 3, 7], train_split=None).fit(Xm, ym)
    np.testing.assert_array_equal(net.classes_, [12, 3, 7])
    assert set(net.predict(X)) <= {3, 7, 12}
    # inferred classes never include -1
    net = _net(train_split=None).fit(Xm, ym)
    np.testing.assert_array_equal(net.classes_, [3, 7, 12])


def test_float_integral_labels_accepted():
    X, y, _ = _data()
    net = _net(train_split=None, max_epochs=1).fit(X, y.astype(float))
    np.testing.assert_array_equal(net.classes_, [3, 7, 12])


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array(["a", "b"] * 18), "integer class labels"),
        (np.full(36, -1), "no ID row"),
        (np.ones((36, 1), dtype=int), "1-D"),
        (np.r_[np.zeros(18), np.full(18, 0.5)], "integer class labels"),
    ],
)
def test_bad_labels(y, match):
    X, _, _ = _data()
    with pytest.raises(ValueError, match=match):
        _net(train_split=None).fit(X, y)


def test_label_outside_given_classes():
    X, y, _ = _data()
    with pytest.raises(ValueError, match=r"labels \[12\] that are not among"):
        _net(classes=[3, 7], n_out=2, train_split=None).fit(X, y)


@pytest.mark.parametrize("ratio", [0, -1, "2", True])
def test_bad_outlier_ratio(ratio):
    X, y, _ = _data()
    with pytest.raises(ValueError, match="outlier_ratio"):
        _net(outlier_ratio=ratio).fit(X, y)


def test_dataset_input_refused():
    X, y, _ = _data()
    ds = torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
    with pytest.raises(ValueError, match="not a torch Dataset"):
        _net().fit(ds, None)


def test_predict_proba_is_softmax_for_any_criterion():
    X, y, X_aux = _data()
    net = _net(criterion=EnergyRegularizedLoss, criterion__margin_in=-5.0)
    net.fit(X, y, outliers=X_aux)
    proba = net.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert np.all(proba >= 0)
    logits = net.forward(X).numpy()
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(
        proba, expected / expected.sum(1, keepdims=True), rtol=1e-5
    )
    # predict_nonlinearity=None gives the logits back, as in skorch
    net.set_params(predict_nonlinearity=None)
    np.testing.assert_allclose(net.predict_proba(X), logits, rtol=1e-6)


# ------------------------------------------------------------ outliers


@pytest.mark.parametrize("source", ["rows", "set", "both"])
def test_batches_mix_outliers_at_the_ratio(source):
    X, y, X_aux = _data(n_aux=20)
    kw = {}
    if source in ("rows", "both"):
        X = np.vstack([X, X_aux[:10]])
        y = np.r_[y, -np.ones(10, dtype=int)]
    if source in ("set", "both"):
        kw["outliers"] = X_aux[10:] if source == "both" else X_aux
    net = _net(train_split=None, max_epochs=3, callbacks=[("rec", BatchRecorder())])
    net.fit(X, y, **kw)
    batches = _recorder(net).batches_
    assert all(training for training, _, _ in batches)
    n_id_total = 0
    for _, rows, target in batches:
        is_out = target < 0
        n_in = int((~is_out).sum())
        n_id_total += n_in
        assert is_out.sum() == 2 * n_in  # outlier_ratio=2
        # ID rows first, then the outliers, all drawn from the aux rows
        assert not is_out[:n_in].any()
        assert np.all(rows[is_out] >= 1000) and np.all(rows[~is_out] < 1000)
    assert n_id_total == 3 * 36  # each ID row once per epoch
    # the whole pool is used, cycled and reshuffled
    out_rows = np.concatenate([r[t < 0] for _, r, t in batches])
    n_pool = 10 if source == "rows" else 20
    assert set(out_rows.astype(int)) == set(range(1000, 1000 + n_pool))


def test_outlier_ratio_one_and_last_batch():
    X, y, X_aux = _data()
    net = _net(
        train_split=None,
        batch_size=8,
        outlier_ratio=1,
        max_epochs=1,
        callbacks=[("rec", BatchRecorder())],
    ).fit(X, y, outliers=X_aux)
    counts = [((t >= 0).sum(), (t < 0).sum()) for _, _, t in _recorder(net).batches_]
    assert counts == [(8, 8)] * 4 + [(4, 4)]


def test_training_batches_are_shuffled():
    X, y, _ = _data()
    net = _net(train_split=None, max_epochs=2, callbacks=[("rec", BatchRecorder())])
    net.fit(X, y)
    epochs = [r for _, r, _ in _recorder(net).batches_]
    first = np.concatenate(epochs[:6])
    second = np.concatenate(epochs[6:])
    assert sorted(first) == list(range(36))
    assert not np.array_equal(first, np.arange(36))
    assert not np.array_equal(first, second)
    # the caller can still switch shuffling off
    net = _net(
        train_split=None,
        max_epochs=1,
        iterator_train__shuffle=False,
        callbacks=[("rec", BatchRecorder())],
    ).fit(X, y)
    rows = np.concatenate([r for _, r, _ in _recorder(net).batches_])
    np.testing.assert_array_equal(rows, np.arange(36))


def test_validation_holds_id_rows_only():
    X, y, X_aux = _data(n_per_class=10, n_aux=20)
    Xm, ym = np.vstack([X, X_aux]), np.r_[y, -np.ones(20, dtype=int)]
    net = _net(callbacks=[("rec", BatchRecorder())], max_epochs=2)
    net.fit(Xm, ym)
    batches = _recorder(net).batches_
    valid = [(r, t) for training, r, t in batches if not training]
    valid_rows = np.concatenate([r for r, _ in valid])
    assert np.all(np.concatenate([t for _, t in valid]) >= 0)
    assert np.all(valid_rows < 1000)
    assert len(valid_rows) == 2 * 6  # 20 % of the 30 ID rows, every epoch
    train_ids = np.concatenate([r[t >= 0] for training, r, t in batches if training])
    assert not set(train_ids) & set(valid_rows)
    # valid_acc is the accuracy on the ID validation rows, in the labels' terms
    last = net.history[-1]
    ids = valid_rows[:6].astype(int)
    np.testing.assert_allclose(
        last["valid_acc"], np.mean(net.predict(X[ids]) == y[ids])
    )


def test_outliers_empty_or_dataset():
    X, y, _ = _data()
    net = _net(train_split=None, max_epochs=1, callbacks=[("rec", BatchRecorder())])
    net.fit(X, y, outliers=np.empty((0, N_IN), dtype=np.float32))
    assert all((t >= 0).all() for _, _, t in _recorder(net).batches_)
    with pytest.raises(ValueError, match="sample shape of X"):
        net.fit(X, y, outliers=np.zeros((4, N_IN + 1), dtype=np.float32))
    ds = torch.utils.data.TensorDataset(torch.zeros(3, N_IN))
    with pytest.raises(ValueError, match="outliers must be"):
        net.fit(X, y, outliers=ds)


def test_outliers_cast_to_id_dtype_and_tensor_input():
    X, y, X_aux = _data()
    net = _net(train_split=None, max_epochs=1)
    net.fit(torch.as_tensor(X), y, outliers=torch.as_tensor(X_aux, dtype=torch.float64))
    assert net.predict(X).shape == (len(X),)


def test_clone_and_fitted_net_keep_no_outliers():
    X, y, X_aux = _data()
    net = _net(train_split=None).fit(X, y, outliers=X_aux)
    assert "outliers" not in net.get_params()
    assert not any(v is X_aux for v in vars(net).values())
    assert not hasattr(net, "_fit_outliers_")
    cloned = clone(net)
    assert not any(isinstance(v, np.ndarray) for v in cloned.get_params().values())
    assert len(pickle.dumps(net)) < len(pickle.dumps(net.module_)) + 200_000


# ------------------------------------------------------------ module, seeds


def test_callers_module_unchanged_and_refit_starts_from_it():
    X, y, X_aux = _data()
    torch.manual_seed(0)
    model = MLP(n_in=N_IN, n_hidden=8, n_out=3)
    before = _state(model)
    net = _net(model, train_split=None).fit(X, y, outliers=X_aux)
    assert _same_state(_state(model), before)
    assert net.module_ is not model
    assert not _same_state(_state(net.module_), before)
    first = _state(net.module_)
    net.fit(X, y, outliers=X_aux)  # from the original weights, same seed
    assert _same_state(_state(net.module_), first)
    assert _same_state(_state(model), before)


def test_seeded_fits_are_reproducible_and_leave_global_rng():
    X, y, X_aux = _data()
    Xm, ym = np.vstack([X, X_aux[:10]]), np.r_[y, -np.ones(10, dtype=int)]
    params = {
        "module__n_in": N_IN,
        "module__n_hidden": 8,
        "module__n_out": 3,
        "criterion": OutlierExposureLoss,
    }
    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    a = _net(MLP, random_state=7, **params).fit(Xm, ym, outliers=X_aux[10:])
    assert torch.equal(torch.get_rng_state(), rng_state)
    b = _net(MLP, random_state=7, **params).fit(Xm, ym, outliers=X_aux[10:])
    c = _net(MLP, random_state=8, **params).fit(Xm, ym, outliers=X_aux[10:])
    assert _same_state(_state(a.module_), _state(b.module_))
    assert not _same_state(_state(a.module_), _state(c.module_))
    np.testing.assert_array_equal(
        a.history[:, "train_loss"], b.history[:, "train_loss"]
    )
    d = _net(MLP, random_state=np.random.RandomState(7), **params).fit(Xm, ym)
    assert d.module_ is not None


# ------------------------------------------------------------ scores


def test_score_is_id_accuracy_and_score_samples():
    X, y, X_aux = _data()
    net = _net(train_split=None, max_epochs=3).fit(X, y, outliers=X_aux)
    Xm, ym = np.vstack([X, X_aux]), np.r_[y, -np.ones(len(X_aux), dtype=int)]
    assert net.score(Xm, ym) == pytest.approx(np.mean(net.predict(X) == y))
    logits = net.forward(Xm).double()
    np.testing.assert_allclose(
        net.score_samples(Xm), torch.logsumexp(logits, 1).numpy(), rtol=1e-6
    )
    net.set_params(ood_score="msp")
    np.testing.assert_allclose(
        net.score_samples(Xm), torch.softmax(logits, 1).amax(1).numpy(), rtol=1e-6
    )
    assert ood_scorer("auroc")(net, Xm, ym) == pytest.approx(
        auroc(ym, net.score_samples(Xm))
    )
    with pytest.raises(ValueError, match="ood_score"):
        net.set_params(ood_score="maxlogit").score_samples(X)
    with pytest.raises(ValueError, match="no ID row"):
        net.score(X_aux, -np.ones(len(X_aux), dtype=int))


@pytest.mark.parametrize(
    "criterion, name, values",
    [
        (OutlierExposureLoss, "alpha", [0.1, 1.0]),
        (partial(UnleashingMaskLoss, outlier_loss="oe"), "level", [0.0, 0.5]),
    ],
)
def test_grid_search_over_criterion_parameter_in_pipeline(criterion, name, values):
    X, y, X_aux = _data(n_per_class=8, n_aux=24)
    Xm, ym = np.vstack([X, X_aux]), np.r_[y, -np.ones(len(X_aux), dtype=int)]
    pipe = Pipeline(
        [
            ("cast", FunctionTransformer(partial(np.asarray, dtype=np.float32))),
            (
                "net",
                _net(criterion=criterion, train_split=None, max_epochs=1),
            ),
        ]
    )
    search = GridSearchCV(
        pipe,
        {f"net__criterion__{name}": values},
        scoring=ood_scorer("auroc"),
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
    ).fit(Xm, ym)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    best = search.best_estimator_["net"]
    key = f"net__criterion__{name}"
    assert getattr(best.criterion_, name) == search.best_params_[key]


def test_module_plugs_into_feature_transformer_and_detectors():
    X, y, X_aux = _data(n_per_class=20)
    net = _net(train_split=None, max_epochs=3).fit(X, y, outliers=X_aux)
    pipe = Pipeline(
        [
            ("feat", TorchFeatureTransformer(net.module_, layer="penultimate")),
            ("ood", Mahalanobis(covariance_estimator="ledoit_wolf")),
        ]
    ).fit(X, y)
    scores = pipe.score_samples(np.vstack([X, X_aux]))
    assert scores.shape == (len(X) + len(X_aux),)
    assert np.all(np.isfinite(scores))
    assert set(pipe.predict(X_aux)) <= {-1, 1}


# ------------------------------------------------------------ presets


def test_energy_oe_preset_cosine_per_step():
    X, y, X_aux = _data()
    params = {**finetune_preset("energy_oe"), "max_epochs": 2, "batch_size": 8}
    assert params["optimizer"] is torch.optim.SGD
    assert params["optimizer__momentum"] == 0.9 and params["outlier_ratio"] == 2
    net = _net(criterion=IDCrossEntropyLoss, **params).fit(X, y, outliers=X_aux)
    lrs = [b["event_lr"] for h in net.history for b in h["batches"]]
    n_steps = 2 * 5  # ceil(36 / 8) batches per epoch
    t = np.arange(n_steps)
    expected = 1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + np.cos(np.pi * t / n_steps))
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-6)
    assert net.optimizer_.param_groups[0]["nesterov"] is True
    assert net.optimizer_.param_groups[0]["weight_decay"] == 5e-4
    assert finetune_preset()["callbacks"][0][1] is not params["callbacks"][0][1]


def test_um_preset_cosine_per_epoch_and_override():
    X, y, X_aux = _data()
    params = {**finetune_preset("um"), "max_epochs": 4, "lr": 0.05}
    assert params["outlier_ratio"] == 1 and params["batch_size"] == 256
    net = _net(**params).fit(X, y, outliers=X_aux)
    lrs = net.history[:, "event_lr"]
    e = np.arange(4)
    np.testing.assert_allclose(lrs, 0.05 * 0.5 * (1 + np.cos(np.pi * e / 4)))
    assert net.optimizer_.param_groups[0]["nesterov"] is False
    net.set_params(callbacks__lr_scheduler__eta_min=0.01)
    assert isinstance(dict(net.callbacks_)["lr_scheduler"], _CosinePerStep)


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown fine-tuning preset"):
        finetune_preset("oe")


def test_unleashing_mask_floods_training_steps_only():
    X, y, _ = _data()
    level = 50.0  # far above the cross-entropy: the flood ascends
    net = _net(criterion=UnleashingMaskLoss, criterion__level=level, max_epochs=1)
    net.fit(X, y)
    logits = torch.randn(6, 3, dtype=torch.float32)
    codes = torch.tensor([0, 1, 2, 0, 1, -1])
    plain = IDCrossEntropyLoss()(logits, codes)
    trained = net.get_loss(logits, codes, training=True)
    validated = net.get_loss(logits, codes, training=False)
    assert torch.allclose(validated, plain)
    assert torch.allclose(trained, 2 * level - plain)  # |CE - b| + b below b


def test_module_with_another_number_of_logits_is_refused():
    X, y, _ = _data()  # 3 ID classes
    net = _net(module=MLP(n_in=N_IN, n_hidden=8, n_out=5))
    with pytest.raises(ValueError, match="one logit per ID class"):
        net.fit(X, y)


def test_labels_beyond_int64_are_refused_not_wrapped_to_outliers():
    X, y, _ = _data()
    y = y.astype(np.uint64)
    y[0] = 2**63  # would wrap to a negative (outlier) label in int64
    with pytest.raises(ValueError, match="does not fit in a signed 64-bit int"):
        _net().fit(X, y)
