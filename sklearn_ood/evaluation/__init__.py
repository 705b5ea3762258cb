"""Many OOD detectors on one feature extraction, rated in one table.

:func:`evaluate` fits every detector on the features of one pass of a
transformer (e.g. :class:`~sklearn_ood.torch.TorchFeatureTransformer`, all
layers from the same forward pass), scores the in-distribution test set and
every OOD set, and returns AUROC, AUPR-IN, AUPR-OUT, FPR95 and the detection
error per detector and OOD set, with their mean and the fit / score times.
Importing this module does not import torch.
"""

from sklearn_ood.evaluation._evaluate import evaluate

__all__ = ["evaluate"]
