"""The PyTorch bridge of sklearn-ood: everything that imports torch.

* :class:`TorchFeatureTransformer` turns a trained ``torch.nn.Module`` into a
  scikit-learn transformer that returns its logits, penultimate features or
  the pooled outputs of any layers, ready for a detector in a ``Pipeline``.
* Detectors that run the model on raw inputs (images ``(N, C, H, W)``,
  sequences, tabular rows): :class:`ODIN` and
  :class:`MahalanobisPreprocessed` (input perturbation), :class:`MCDropout`,
  :class:`GradNorm` and :class:`Gram`.
* :func:`save` and :func:`load` store a fitted estimator without its model's
  weights and load it back against the model, checked to be the same.
* :class:`DigitsCNN` is a small reference CNN for scikit-learn's bundled 8x8
  digits.

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

from sklearn_ood.torch._feature_extraction import TorchFeatureTransformer
from sklearn_ood.torch._gradnorm import GradNorm
from sklearn_ood.torch._gram import Gram
from sklearn_ood.torch._input_preprocessing import ODIN, MahalanobisPreprocessed
from sklearn_ood.torch._mc_dropout import MCDropout
from sklearn_ood.torch._saving import load, save
from sklearn_ood.torch.models import DigitsCNN

__all__ = [
    "DigitsCNN",
    "GradNorm",
    "Gram",
    "MCDropout",
    "MahalanobisPreprocessed",
    "ODIN",
    "TorchFeatureTransformer",
    "load",
    "save",
]
