"""Shared test helpers (imported by test modules as ``_helpers``)."""

import numpy as np
from sklearn.base import clone


class RandomLinearHead:
    """A random linear head built once the feature count is known.

    Head-aware detectors accept a callable ``head(n_features) -> (W, b)``; the
    common checks need one because they fit on data of many widths.
    """

    def __init__(self, n_classes=3, random_state=0):
        self.n_classes = n_classes
        self.random_state = random_state

    def __call__(self, n_features):
        rng = np.random.default_rng(self.random_state)
        W = rng.normal(size=(self.n_classes, n_features))
        b = rng.normal(size=self.n_classes)
        return W, b

    def __repr__(self):
        return f"RandomLinearHead(n_classes={self.n_classes})"


def streamed_offset(stream, chunks):
    """The ``offset_`` a stream of ``(X, y)`` chunks ends with (<= 10,000 rows).

    ``partial_fit`` scores each chunk's ID rows under the model updated with
    that chunk. That model is the one ``fit`` gives on every chunk so far, so
    here each chunk is scored by a ``fit`` on its prefix (no ``partial_fit``
    involved), and the terms of all rows are combined as ``stream`` combines
    them (e.g. with its final ``residual_scale_``) before taking the quantile.
    """
    terms = []
    for k, (X, y) in enumerate(chunks):
        X_prefix = np.concatenate([c[0] for c in chunks[: k + 1]])
        y_prefix = (
            None if y is None else np.concatenate([c[1] for c in chunks[: k + 1]])
        )
        prefix = clone(stream).fit(X_prefix, y_prefix)
        terms.append(prefix._threshold_terms(X if y is None else X[y >= 0]))
    scores = stream._scores_from_terms(np.concatenate(terms))
    return float(np.percentile(scores, 100 * stream.contamination))


# ------------------------------------------------------------- torch models
# A tiny classifier for scikit-learn's checks on the torch detectors, which
# fit tabular data of 1 to 10 columns: the model must take any width and be
# picklable (a module-level class). Defined only when torch is installed;
# TORCH_DETECTOR_KWARGS (constructor arguments of each detector of
# sklearn_ood.torch) is merged into tests/test_common.py's DETECTOR_KWARGS and
# is {} without torch.
try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the torch extra is not installed
    torch = None

TORCH_DETECTOR_KWARGS = {}

if torch is not None:

    class _RowStats(nn.Module):
        """Mean, standard deviation, min and max of each row: any width -> 4."""

        def forward(self, x):
            x = x.flatten(1)
            return torch.stack(
                [x.mean(1), x.std(1, unbiased=False), x.amin(1), x.amax(1)], dim=1
            )

    class TabularNet(nn.Module):
        """Tiny seeded classifier that accepts rows of any width.

        ``stats`` (4 row statistics) -> ``hidden`` (Linear + Tanh) ->
        ``dropout`` -> ``head`` (Linear), in float64 so that scores do not
        depend on the batch composition at float32 rounding level (scikit-
        learn's subset-invariance check compares them to 1e-7). Inputs of
        any dtype are cast to the model's dtype (the checks also feed
        integers).
        """

        def __init__(self, n_classes=3, n_hidden=8, dropout=0.25, seed=0):
            super().__init__()
            self._config = dict(
                n_classes=n_classes, n_hidden=n_hidden, dropout=dropout, seed=seed
            )
            generator = torch.Generator().manual_seed(seed)
            self.stats = _RowStats()
            self.hidden = nn.Sequential(nn.Linear(4, n_hidden), nn.Tanh())
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(n_hidden, n_classes)
            # Seeded float64 weights.
            for layer in (self.hidden[0], self.head):
                for name in ("weight", "bias"):
                    shape = getattr(layer, name).shape
                    value = torch.randn(shape, generator=generator, dtype=torch.float64)
                    setattr(layer, name, nn.Parameter(value))

        def forward(self, x):
            x = x.to(self.head.weight.dtype)
            return self.head(self.dropout(self.hidden(self.stats(x))))

        def __reduce__(self):
            # Pickle the weights as NumPy arrays: a pickled tensor names its
            # storage by memory address, so joblib.hash (which scikit-learn's
            # check_estimators_overwrite_params compares before and after fit)
            # would differ between the model and its deep copy.
            weights = {
                k: v.detach().cpu().numpy() for k, v in self.state_dict().items()
            }
            flags = [module.training for module in self.modules()]
            return (_rebuild_tabular_net, (self._config, weights, flags))

    def _rebuild_tabular_net(config, weights, flags):
        model = TabularNet(**config)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        for module, training in zip(model.modules(), flags):
            module.training = training
        return model

    class MapNet(TabularNet):
        """TabularNet whose hidden features pass through a 2 x (n_hidden / 2)
        map (``maps``), for the detectors that need feature maps (RankFeat)."""

        def __init__(self, **config):
            super().__init__(**config)
            self.maps = nn.Unflatten(1, (2, self._config["n_hidden"] // 2))

        def forward(self, x):
            x = x.to(self.head.weight.dtype)
            maps = self.maps(self.hidden(self.stats(x)))
            return self.head(self.dropout(maps.flatten(1)))

        def __reduce__(self):
            return (_rebuild_map_net, TabularNet.__reduce__(self)[1])

    def _rebuild_map_net(config, weights, flags):
        model = MapNet(**config)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        for module, training in zip(model.modules(), flags):
            module.training = training
        return model

    _TABULAR_NET = TabularNet()
    TORCH_DETECTOR_KWARGS = {
        "ODIN": {"model": _TABULAR_NET, "device": "cpu"},
        "MahalanobisPreprocessed": {"model": _TABULAR_NET, "device": "cpu"},
        "MCDropout": {
            "model": _TABULAR_NET,
            "n_samples": 5,
            "random_state": 0,
            "device": "cpu",
        },
        "GradNorm": {"model": _TABULAR_NET, "device": "cpu"},
        "Gram": {"model": _TABULAR_NET, "layers": ["hidden"], "device": "cpu"},
        "NAC": {
            "model": _TABULAR_NET,
            "layers": ["hidden"],
            "min_count": 5,
            "device": "cpu",
        },
        "RankFeat": {"model": MapNet(), "layers": ["maps"], "device": "cpu"},
        "GradUncertainty": {"model": _TABULAR_NET, "device": "cpu"},
    }
