"""Helpers for the torch tests: digits data, a short training loop, toy models.

Imported by the test modules as ``_torch_helpers`` (pytest puts this folder
on ``sys.path``). This folder is not called ``tests/torch``: with ``tests/``
on ``sys.path``, a folder named ``torch`` imports as a namespace package
called ``torch`` wherever PyTorch is not installed, so that
``importorskip("torch")`` no longer skips and scipy's torch detection breaks.
"""

# ruff: noqa: E402 (the imports follow the importorskip guard)

import pytest

pytest.importorskip("torch")  # --doctest-modules imports this file too

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def digits_images():
    """scikit-learn's digits as float32 images (N, 1, 8, 8) in [0, 1], labels."""
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    return X, digits.target


def train_classifier(model, X, y, *, epochs=10, lr=1e-2, batch_size=64, seed=0):
    """Train ``model`` with Adam on cross-entropy; return it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X, y = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for batch in order.split(batch_size):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(X[batch]), y[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


def count_forwards(model):
    """Register a pre-hook counting ``model``'s forward calls: (counter, handle)."""
    counter = {"n": 0}

    def hook(module, args):
        counter["n"] += 1

    return counter, model.register_forward_pre_hook(hook)


class MLP(nn.Module):
    """Tabular two-layer perceptron."""

    def __init__(self, n_in=6, n_hidden=8, n_out=3):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU())
        self.head = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.head(self.hidden(x))


class TokenModel(nn.Module):
    """A toy sequence model with channels-last (N, L, C) intermediate outputs."""

    def __init__(self, vocab=20, dim=6, n_out=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, n_out)

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.embed(tokens))).mean(1))


class NoLinear(nn.Module):
    """A fully convolutional model: there is no penultimate nn.Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


class ReusedReLU(nn.Module):
    """Applies the same ReLU module twice, so its output is ambiguous."""

    def __init__(self):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(4, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU()
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin2(self.relu(self.lin1(self.relu(x))))


class TupleOutput(nn.Module):
    """An LSTM-like model whose submodule returns a tuple."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class ItemsOnly(torch.utils.data.Dataset):
    """A map-style Dataset whose items are bare inputs (NumPy arrays)."""

    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i]


class RowStats(nn.Module):
    """Parameter-free tabular "model" that accepts any number of columns."""

    def forward(self, x):
        return torch.stack([x.mean(1), x.amax(1), x.amin(1)], dim=1)

    def __repr__(self):
        return "RowStats()"


def cnn64(seed=0, n_classes=3, *, width=2, in_channels=1, dropout=0.0):
    """A tiny float64 DigitsCNN in eval mode with non-trivial batch norm, for
    float64 references of the model detectors."""
    from sklearn_ood.torch import DigitsCNN

    torch.manual_seed(seed)
    model = DigitsCNN(
        n_classes=n_classes, width=width, in_channels=in_channels, dropout=dropout
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.double().eval()


def random_images(n=12, seed=0, *, channels=1, dtype=np.float64):
    """``n`` seeded uniform images of shape (channels, 8, 8)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, channels, 8, 8)).astype(dtype)
