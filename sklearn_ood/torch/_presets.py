"""Reference OOD fine-tuning schedules as :class:`OODNeuralNetClassifier` parameters."""

import math

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from skorch.dataset import get_len

from sklearn_ood.torch._inputs import _check_labels

__all__ = ["finetune_preset"]


class _CosinePerStep(LRScheduler):
    """Per-step cosine schedule whose length is set at the start of training.

    ``T_max="auto"`` is the number of scheduler steps of the run:
    ``max_epochs`` with ``step_every="epoch"``, else
    ``max_epochs * ceil(n_id / batch_size)``, with ``n_id`` the number of
    ID rows of ``y`` (exact with ``train_split=None``; an overestimate
    otherwise, so the learning rate ends slightly above ``eta_min`` and
    never rises again).
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if net.history:
            try:
                self.batch_idx_ = sum(net.history[:, "train_batch_count"])
            except KeyError:
                self.batch_idx_ = sum(len(b) for b in net.history[:, "batches"])
        scheduler_kwargs = dict(self.kwargs)
        if scheduler_kwargs.get("T_max") == "auto" and self.step_every == "epoch":
            scheduler_kwargs["T_max"] = max(1, net.max_epochs)
        elif scheduler_kwargs.get("T_max") == "auto":
            n_id = get_len(X) if y is None else int(np.sum(_check_labels(y) >= 0))
            batch = net.batch_size if net.batch_size > 0 else max(n_id, 1)
            scheduler_kwargs["T_max"] = max(1, net.max_epochs * math.ceil(n_id / batch))
        self.lr_scheduler_ = self._get_scheduler(net, self.policy_, **scheduler_kwargs)


_PRESETS = ("energy_oe", "um")


def finetune_preset(name="energy_oe"):
    """Return the parameters of a reference OOD fine-tuning schedule.

    Two schedules, as dicts of :class:`OODNeuralNetClassifier` parameters
    (``OODNeuralNetClassifier(model, criterion=..., **finetune_preset(name))``;
    any of them can be overridden by a later keyword or ``set_params``):

    * ``"energy_oe"``: the energy (Liu et al., 2020) and outlier-exposure
      (Hendrycks et al., 2019) reference fine-tuning of a pretrained model:
      10 epochs, SGD with ``lr=1e-3``, momentum 0.9, Nesterov, weight decay
      ``5e-4``, a cosine schedule stepped every batch from ``lr`` down to
      ``1e-6`` (``eta_min + (lr - eta_min) (1 + cos(pi t / T)) / 2`` over
      the ``T`` training steps, counted at the start of training),
      batches of 128 ID and 256 outlier rows (``outlier_ratio=2``), no
      internal validation;
    * ``"um"``: the Unleashing Mask repository's schedule (Zhu et al.,
      2023): 100 epochs, SGD with ``lr=0.1``, momentum 0.9, no Nesterov,
      weight decay ``1e-4``, a cosine schedule stepped every epoch down to 0
      (``lr_e = lr (1 + cos(pi e / E)) / 2``), 256 ID rows per batch and
      outliers at 1:1 (``outlier_ratio=1``), no internal validation. It is
      a full retraining schedule rather than a gentle fine-tune; pair it
      with :class:`~sklearn_ood.torch.UnleashingMaskLoss`.

    The learning-rate schedule is a skorch ``LRScheduler`` callback named
    ``"lr_scheduler"``; ``callbacks__lr_scheduler__eta_min`` tunes its floor.

    Parameters
    ----------
    name : {"energy_oe", "um"}, default="energy_oe"
        The schedule.

    Returns
    -------
    params : dict
        Keyword arguments of :class:`OODNeuralNetClassifier`: ``max_epochs``,
        ``batch_size``, ``outlier_ratio``, ``optimizer``, ``lr``,
        ``optimizer__momentum``, ``optimizer__nesterov``,
        ``optimizer__weight_decay``, ``train_split`` and ``callbacks``. A new
        dict (and new callback) at each call.

    See Also
    --------
    OODNeuralNetClassifier : The net these parameters are for.

    References
    ----------
    .. [1] D. Hendrycks, M. Mazeika and T. Dietterich, "Deep Anomaly
       Detection with Outlier Exposure", ICLR 2019.
    .. [2] W. Liu, X. Wang, J. Owens and Y. Li, "Energy-based
       Out-of-distribution Detection", NeurIPS 2020.
    .. [3] J. Zhu et al., "Unleashing Mask: Explore the Intrinsic
       Out-of-Distribution Detection Capability", ICML 2023.

    Examples
    --------
    >>> from sklearn_ood.torch import finetune_preset
    >>> params = finetune_preset("energy_oe")
    >>> params["lr"], params["max_epochs"], params["outlier_ratio"]
    (0.001, 10, 2)
    >>> params["optimizer__nesterov"], params["optimizer__weight_decay"]
    (True, 0.0005)
    """
    if name == "energy_oe":
        return _sgd_cosine(
            max_epochs=10,
            batch_size=128,
            outlier_ratio=2,
            lr=1e-3,
            nesterov=True,
            weight_decay=5e-4,
            eta_min=1e-6,
            step_every="batch",
        )
    if name == "um":
        return _sgd_cosine(
            max_epochs=100,
            batch_size=256,
            outlier_ratio=1,
            lr=0.1,
            nesterov=False,
            weight_decay=1e-4,
            eta_min=0.0,
            step_every="epoch",
        )
    raise ValueError(f"Unknown fine-tuning preset {name!r}; use one of {_PRESETS}.")


def _sgd_cosine(
    *, max_epochs, batch_size, outlier_ratio, lr, nesterov, weight_decay, eta_min,
    step_every
):  # fmt: skip
    """Parameters of SGD (momentum 0.9) with a cosine schedule, no validation."""
    return {
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "outlier_ratio": outlier_ratio,
        "optimizer": torch.optim.SGD,
        "lr": lr,
        "optimizer__momentum": 0.9,
        "optimizer__nesterov": nesterov,
        "optimizer__weight_decay": weight_decay,
        "train_split": None,
        "callbacks": [
            (
                "lr_scheduler",
                _CosinePerStep(
                    policy=torch.optim.lr_scheduler.CosineAnnealingLR,
                    T_max="auto",
                    eta_min=eta_min,
                    step_every=step_every,
                ),
            )
        ],
    }
