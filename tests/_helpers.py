"""Shared test helpers (imported by test modules as ``_helpers``)."""

import numpy as np


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
