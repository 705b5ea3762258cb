"""NumPy-only OOD detectors, grouped by what they consume."""

from sklearn_ood.detectors._logits import (
    GEN,
    Energy,
    Entropy,
    MaxLogit,
    MaxSoftmax,
    WeightedEnergy,
)

__all__ = [
    "GEN",
    "Energy",
    "Entropy",
    "MaxLogit",
    "MaxSoftmax",
    "WeightedEnergy",
]
