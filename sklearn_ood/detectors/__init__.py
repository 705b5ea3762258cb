"""NumPy-only OOD detectors, grouped by what they consume."""

from sklearn_ood.detectors._fitted_logits import KLMatching, TemperatureScaling
from sklearn_ood.detectors._head import check_head
from sklearn_ood.detectors._head_aware import NCI, SHE, fDBD
from sklearn_ood.detectors._logits import (
    GEN,
    Energy,
    Entropy,
    MaxLogit,
    MaxSoftmax,
    WeightedEnergy,
)
from sklearn_ood.detectors._openmax import OpenMax
from sklearn_ood.detectors._subspace import ViM

__all__ = [
    "GEN",
    "Energy",
    "Entropy",
    "KLMatching",
    "NCI",
    "SHE",
    "ViM",
    "fDBD",
    "MaxLogit",
    "MaxSoftmax",
    "OpenMax",
    "TemperatureScaling",
    "WeightedEnergy",
    "check_head",
]
