"""NumPy-only OOD detectors, grouped by what they consume."""

from sklearn_ood.detectors._centers import CACScore, CenterDistance, check_centers
from sklearn_ood.detectors._fitted_logits import KLMatching, TemperatureScaling
from sklearn_ood.detectors._head import check_head
from sklearn_ood.detectors._head_aware import NCI, SHE, fDBD
from sklearn_ood.detectors._logit_scaling import LTS
from sklearn_ood.detectors._logits import (
    GEN,
    BackgroundClass,
    Energy,
    Entropy,
    MaxLogit,
    MaxSoftmax,
    WeightedEnergy,
)
from sklearn_ood.detectors._mahalanobis import GMM, RMD, Mahalanobis
from sklearn_ood.detectors._mcm import MCM
from sklearn_ood.detectors._multi_mahalanobis import MultiMahalanobis
from sklearn_ood.detectors._neighbors import KNN, NNGuide
from sklearn_ood.detectors._openmax import OpenMax
from sklearn_ood.detectors._pnml import PNML
from sklearn_ood.detectors._rectification import VRA
from sklearn_ood.detectors._shaping import ASH, DICE, SCALE, ReAct
from sklearn_ood.detectors._vim import Residual, ViM

__all__ = [
    "ASH",
    "BackgroundClass",
    "CACScore",
    "CenterDistance",
    "check_centers",
    "check_head",
    "DICE",
    "Energy",
    "Entropy",
    "fDBD",
    "GEN",
    "GMM",
    "KLMatching",
    "KNN",
    "LTS",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "MCM",
    "MultiMahalanobis",
    "NCI",
    "NNGuide",
    "OpenMax",
    "PNML",
    "ReAct",
    "RMD",
    "Residual",
    "SCALE",
    "SHE",
    "TemperatureScaling",
    "ViM",
    "VRA",
    "WeightedEnergy",
]
