"""The PyTorch bridge of sklearn-ood: everything that imports torch.

* :class:`TorchFeatureTransformer` turns a trained ``torch.nn.Module`` into a
  scikit-learn transformer that returns its logits, penultimate features or
  the pooled outputs of any layers, ready for a detector in a ``Pipeline``.
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
from sklearn_ood.torch.models import DigitsCNN

__all__ = ["DigitsCNN", "TorchFeatureTransformer"]
