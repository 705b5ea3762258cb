"""DOE's weight perturbation in OODNeuralNetClassifier (``weight_perturbation="doe"``).

The perturbation is checked against a float64 hand computation on a linear
model (the direction, its size, the moving average, the restored weights),
the update against the same steps written with torch, the warm-up against a
plain step; then the option trains a small model.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import copy

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

import numpy as np
import torch
from _torch_helpers import digits_images
from scipy.special import softmax
from torch import nn

from sklearn_ood.torch import (
    DigitsCNN,
    OODNeuralNetClassifier,
    OutlierExposureLoss,
    UnleashingMaskLoss,
)
from sklearn_ood.torch._net import _doe_surrogate


class RecordingLinear(nn.Linear):
    """A linear layer that records its weight, bias and input at each call."""

    def forward(self, x):
        self.calls.append(
            (self.weight.detach().clone(), self.bias.detach().clone(), x.clone())
        )
        return super().forward(x)


def _linear(n_in=3, n_out=2, seed=0):
    torch.manual_seed(seed)
    model = RecordingLinear(n_in, n_out).double()
    model.calls = []
    return model


def _data(n_id=4, n_aux=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_id, 3))
    y = np.arange(n_id) % 2
    X_aux = rng.normal(size=(n_aux, 3)) * 2.0
    return X, y, X_aux


def _net(model, **params):
    defaults = {
        "criterion": OutlierExposureLoss,
        "criterion__alpha": 1.0,
        "weight_perturbation": "doe",
        "weight_perturbation__warmup": 0,
        "weight_perturbation__gamma": 0.01,
        "optimizer": torch.optim.SGD,
        "lr": 0.0,
        "max_epochs": 1,
        "batch_size": 4,
        "outlier_ratio": 1.0,
        "train_split": None,
        "verbose": 0,
        "random_state": 0,
    }
    return OODNeuralNetClassifier(model, **{**defaults, **params})


def _direction_by_hand(W, b, X_out):
    """-grad_W R * ||W|| / ||grad_W R||, R = g^2, in float64 NumPy."""
    f = X_out @ W.T + b
    p = softmax(f, axis=1)
    n_out, n_classes = f.shape
    expect = (p * f).sum(axis=1)
    g = np.mean(f.mean(axis=1) - expect)
    # d g / d f_jk = (1/n_out) (1/C - p_jk (1 + f_jk - E_p f_j))
    dg_df = (1.0 / n_classes - p * (1.0 + f - expect[:, None])) / n_out
    grad = 2.0 * g * dg_df.T @ X_out
    return -grad * np.linalg.norm(W) / np.linalg.norm(grad)


def test_surrogate_is_the_squared_scale_derivative_of_the_oe_loss():
    torch.manual_seed(0)
    logits = torch.randn(7, 4, dtype=torch.float64) * 3
    scale = torch.ones(1, dtype=torch.float64, requires_grad=True)
    x = logits * scale
    l_sur = (x.mean(1) - torch.logsumexp(x, dim=1)).mean()  # -OE of the rows
    (g,) = torch.autograd.grad(l_sur, [scale], create_graph=True)
    torch.testing.assert_close(_doe_surrogate(logits), (g**2).sum())


def test_perturbation_matches_hand_computation_and_is_restored():
    X, y, X_aux = _data()
    model = _linear()
    W0 = model.weight.detach().numpy().copy()
    b0 = model.bias.detach().numpy().copy()
    net = _net(model).fit(X, y, outliers=X_aux)
    calls = net.module_.calls
    # one batch: direction pass, OE step (perturbed), ID step (restored)
    assert len(calls) == 3
    (w1, b1, x1), (w2, b2, x2), (w3, b3, _) = calls
    np.testing.assert_array_equal(w1.numpy(), W0)
    x_out = x1.numpy()[4:]
    np.testing.assert_allclose(np.sort(x_out, axis=0), np.sort(X_aux, axis=0))
    direction = _direction_by_hand(W0, b0, x_out)
    np.testing.assert_allclose(w2.numpy() - W0, 0.01 * direction, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(
        np.linalg.norm(w2.numpy() - W0), 0.01 * np.linalg.norm(W0)
    )
    np.testing.assert_array_equal(b2.numpy(), b0)  # biases are not perturbed
    np.testing.assert_allclose(w3.numpy(), W0, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(x2.numpy(), x1.numpy())  # whole batch each pass
    # lr=0: the weights after training are the original ones
    np.testing.assert_allclose(net.module_.weight.detach().numpy(), W0, atol=1e-15)


def test_direction_moving_average_across_batches():
    X, y, X_aux = _data(n_id=4, n_aux=4)
    model = _linear()
    W0 = model.weight.detach().numpy().copy()
    b0 = model.bias.detach().numpy().copy()
    net = _net(model, batch_size=2, weight_perturbation__smoothing=0.6).fit(
        X, y, outliers=X_aux
    )
    calls = net.module_.calls
    assert len(calls) == 6  # two batches of three passes
    d1 = _direction_by_hand(W0, b0, calls[0][2].numpy()[2:])
    d2 = _direction_by_hand(W0, b0, calls[3][2].numpy()[2:])
    assert not np.allclose(d1, d2)
    np.testing.assert_allclose(calls[1][0].numpy() - W0, 0.01 * d1, atol=1e-14)
    np.testing.assert_allclose(
        calls[4][0].numpy() - W0, 0.01 * (0.6 * d1 + 0.4 * d2), atol=1e-14
    )


def test_update_is_oe_step_at_perturbed_weights_then_id_step():
    X, y, X_aux = _data()
    model = _linear()
    start = copy.deepcopy(model)
    net = _net(model, lr=0.1, weight_perturbation__max_grad_norm=None)
    net.fit(X, y, outliers=X_aux)
    x_batch = net.module_.calls[0][2]
    # the batch's targets, from its ID rows (shuffled by the net)
    ids = [
        int(np.flatnonzero(np.all(np.isclose(X, row), axis=1))[0])
        for row in x_batch[:4].numpy()
    ]
    target = torch.tensor([*y[ids], -1, -1, -1, -1])
    loss = OutlierExposureLoss(alpha=1.0)
    W, b = start.weight.detach().clone(), start.bias.detach().clone()
    direction = torch.from_numpy(
        _direction_by_hand(W.numpy(), b.numpy(), x_batch[4:].numpy())
    )
    # OE step at W + gamma D on the outlier rows, then remove gamma D
    Wp = (W + 0.01 * direction).requires_grad_()
    bp = b.clone().requires_grad_()
    out = x_batch @ Wp.T + bp
    l_out = loss(out[4:], target[4:])
    gW, gb = torch.autograd.grad(l_out, [Wp, bp])
    W1, b1 = W - 0.1 * gW, b - 0.1 * gb
    # ID step at the restored weights on the ID rows
    W1r, b1r = W1.clone().requires_grad_(), b1.clone().requires_grad_()
    l_in = loss((x_batch @ W1r.T + b1r)[:4], target[:4])
    gW, gb = torch.autograd.grad(l_in, [W1r, b1r])
    torch.testing.assert_close(net.module_.weight.detach(), W1 - 0.1 * gW)
    torch.testing.assert_close(net.module_.bias.detach(), b1 - 0.1 * gb)
    torch.testing.assert_close(
        torch.tensor(net.history[-1, "train_loss"], dtype=torch.float64),
        (l_out + l_in).detach(),
    )


def test_warmup_epochs_are_plain_steps():
    X, y, X_aux = _data(n_id=8, n_aux=8)
    params = {"lr": 0.1, "batch_size": 4, "max_epochs": 2}
    doe = _net(
        _linear(),
        weight_perturbation__warmup=2,
        weight_perturbation__max_grad_norm=None,
        **params,
    ).fit(X, y, outliers=X_aux)
    plain = OODNeuralNetClassifier(
        _linear(),
        criterion=OutlierExposureLoss,
        criterion__alpha=1.0,
        optimizer=torch.optim.SGD,
        outlier_ratio=1.0,
        train_split=None,
        verbose=0,
        random_state=0,
        **params,
    ).fit(X, y, outliers=X_aux)
    assert len(doe.module_.calls) == len(plain.module_.calls) == 4
    for a, b in zip(
        doe.module_.state_dict().values(), plain.module_.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 2)
        self.seen_dropout = []

    def forward(self, x):
        self.seen_dropout.append(self.drop.training)
        return self.fc(self.drop(torch.relu(self.bn(self.fc1(x)))))


def test_direction_pass_leaves_batchnorm_statistics_and_turns_dropout_off():
    X, y, X_aux = _data()
    torch.manual_seed(0)
    module = BNNet().double()
    net = _net(module).fit(X, y, outliers=X_aux)
    # two training passes count (OE and ID steps), not the direction pass
    assert int(net.module_.bn.num_batches_tracked) == 2
    assert net.module_.seen_dropout[:3] == [False, True, True]


def test_doe_needs_outliers_and_checks_parameters():
    X, y, X_aux = _data()
    net = _net(_linear())
    with pytest.raises(ValueError, match="outliers"):
        net.fit(X, y)
    for params, match in [
        ({"weight_perturbation": "awp"}, 'must be None or "doe"'),
        ({"weight_perturbation__gamma": [0.1, -1.0]}, "gamma"),
        ({"weight_perturbation__warmup": -1}, "warmup"),
        ({"weight_perturbation__smoothing": 1.5}, "smoothing"),
        ({"weight_perturbation__rho": 0.1}, "Unknown parameter"),
    ]:
        with pytest.raises(ValueError, match=match):
            _net(_linear(), **params).fit(X, y, outliers=X_aux)
    # set on a fitted net without re-initialising it; get_params sees it
    fitted = _net(_linear()).fit(X, y, outliers=X_aux)
    fitted.set_params(weight_perturbation__gamma=(0.1, 0.2))
    assert fitted.get_params()["weight_perturbation__gamma"] == (0.1, 0.2)
    fitted.fit(X, y, outliers=X_aux)


def _digits_fit(criterion, seed=0, **params):
    X, y = digits_images()
    X_id, y_id = X[y < 5][:200], y[y < 5][:200]
    rng = np.random.default_rng(0)
    perm = np.argsort(rng.random((200, 64)), axis=1)
    flat = X[y < 5][200:400].reshape(200, -1)
    X_aux = np.take_along_axis(flat, perm, axis=1).reshape(200, 1, 8, 8)
    torch.manual_seed(0)
    return OODNeuralNetClassifier(
        DigitsCNN(n_classes=5, width=4, dropout=0.2),
        criterion=criterion,
        weight_perturbation="doe",
        weight_perturbation__warmup=1,
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
        (OutlierExposureLoss, {"criterion__alpha": 1.0}),
        (
            UnleashingMaskLoss,
            {
                "criterion__level": 0.05,
                "criterion__outlier_loss": "oe",
                "criterion__alpha": 1.0,
            },
        ),
    ],
    ids=["DOE", "DOE+UM"],
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
