"""The PyTorch bridge of sklearn-ood: everything that imports torch.

* :class:`TorchFeatureTransformer` turns a trained ``torch.nn.Module`` into a
  scikit-learn transformer that returns its logits, penultimate features or
  the pooled outputs of any layers, ready for a detector in a ``Pipeline``.
* Detectors that run the model on raw inputs (images ``(N, C, H, W)``,
  sequences, tabular rows): :class:`ODIN` and
  :class:`MahalanobisPreprocessed` (input perturbation), :class:`MCDropout`,
  :class:`GradNorm` and :class:`Gram`.
* More detectors through the model: :class:`NAC` (neuron activation
  coverage), :class:`RankFeat` and :class:`GradUncertainty`.
* :func:`save` and :func:`load` store a fitted estimator without its model's
  weights and load it back against the model, checked to be the same.
* Reference architectures: :class:`DigitsCNN` (scikit-learn's 8x8 digits),
  :class:`FashionCNN` (28x28 images), :class:`WideResNet` and
  :class:`DenseNetBC` (CIFAR), and :func:`load_weights` for local weights.
* Training: :class:`OODNeuralNetClassifier` (a skorch classifier that mixes
  auxiliary outliers into every batch, with :func:`finetune_preset`), and the
  OOD losses :class:`EnergyRegularizedLoss` (with :func:`energy_margins`),
  :class:`OutlierExposureLoss`, :class:`UnleashingMaskLoss`,
  :class:`LogitNormLoss`, :class:`EntropicOpenSetLoss` and
  :class:`IDCrossEntropyLoss`.
* The Unleashing Mask repository's other outlier-exposure methods, as options
  of :class:`OODNeuralNetClassifier`: POEM (``outlier_mining="poem"``) and
  DOE (``weight_perturbation="doe"``).
* Centre losses on an embedding: :class:`CenterLoss`, :class:`CACLoss`,
  :class:`IILoss`, :class:`MCHADLoss`, :class:`DeepSVDDLoss` and
  :class:`DeepSADLoss` (scored by the detectors ``CenterDistance`` and
  ``CACScore``).
* Open-set and outlier losses: :class:`ObjectosphereLoss`,
  :class:`EnergyMarginLoss`, :class:`ConfidenceLoss`,
  :class:`BackgroundClassLoss` and :class:`VOSRegLoss`, with the wrappers
  :class:`WithFeatures`, :class:`WithConfidence` and
  :class:`WithBackgroundClass` for models that must return more than logits.
* Unleashing Mask: :func:`estimate_um_level` (the loss level), and
  :func:`add_learnable_masks` / :func:`apply_masks` (UMAP's learned masks).

Needs the ``torch`` extra: ``pip install "sklearn-ood[torch]"``.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "sklearn_ood.torch needs PyTorch, which is not installed. Install the "
        'torch extra: pip install "sklearn-ood[torch]"',
        name="torch",
    ) from exc

from sklearn_ood.torch._center_losses import (
    CACLoss,
    CenterLoss,
    DeepSADLoss,
    DeepSVDDLoss,
    IILoss,
    MCHADLoss,
)
from sklearn_ood.torch._feature_extraction import TorchFeatureTransformer
from sklearn_ood.torch._grad_uncertainty import GradUncertainty
from sklearn_ood.torch._gradnorm import GradNorm
from sklearn_ood.torch._gram import Gram
from sklearn_ood.torch._input_preprocessing import ODIN, MahalanobisPreprocessed
from sklearn_ood.torch._losses import (
    EnergyRegularizedLoss,
    EntropicOpenSetLoss,
    IDCrossEntropyLoss,
    LogitNormLoss,
    OutlierExposureLoss,
    UnleashingMaskLoss,
    energy_margins,
)
from sklearn_ood.torch._mc_dropout import MCDropout
from sklearn_ood.torch._nac import NAC
from sklearn_ood.torch._net import OODNeuralNetClassifier
from sklearn_ood.torch._openset_losses import (
    BackgroundClassLoss,
    ConfidenceLoss,
    EnergyMarginLoss,
    ObjectosphereLoss,
    WithBackgroundClass,
    WithConfidence,
    WithFeatures,
)
from sklearn_ood.torch._presets import finetune_preset
from sklearn_ood.torch._rankfeat import RankFeat
from sklearn_ood.torch._saving import load, save
from sklearn_ood.torch._unleashing_mask import (
    add_learnable_masks,
    apply_masks,
    estimate_um_level,
)
from sklearn_ood.torch._vos import VOSRegLoss
from sklearn_ood.torch.models import (
    DenseNetBC,
    DigitsCNN,
    FashionCNN,
    WideResNet,
    load_weights,
)

__all__ = [
    "BackgroundClassLoss",
    "ConfidenceLoss",
    "EnergyMarginLoss",
    "ObjectosphereLoss",
    "VOSRegLoss",
    "WithBackgroundClass",
    "WithConfidence",
    "WithFeatures",
    "CACLoss",
    "CenterLoss",
    "DeepSADLoss",
    "DeepSVDDLoss",
    "IILoss",
    "MCHADLoss",
    "DenseNetBC",
    "DigitsCNN",
    "EnergyRegularizedLoss",
    "EntropicOpenSetLoss",
    "FashionCNN",
    "GradNorm",
    "GradUncertainty",
    "Gram",
    "IDCrossEntropyLoss",
    "LogitNormLoss",
    "MCDropout",
    "MahalanobisPreprocessed",
    "NAC",
    "ODIN",
    "OODNeuralNetClassifier",
    "OutlierExposureLoss",
    "RankFeat",
    "TorchFeatureTransformer",
    "UnleashingMaskLoss",
    "WideResNet",
    "add_learnable_masks",
    "apply_masks",
    "energy_margins",
    "estimate_um_level",
    "finetune_preset",
    "load",
    "load_weights",
    "save",
]
