"""Where a torch model runs: the device, the placement rule, the float dtype.

The rule, shared by every estimator of :mod:`sklearn_ood.torch`: with
``device`` set, the model is moved there in place (``model.to(device)``, as
``nn.Module.to`` and skorch do) and stays there; ``device=None`` leaves it
where it is and sends the inputs to the device of its first parameter.
Nothing else about the model changes.
"""

from itertools import chain

import torch


def _resolve_device(device, model):
    """The torch.device to run on; None means the model's own device."""
    if device is None:
        for tensor in chain(model.parameters(), model.buffers()):
            return tensor.device
        return None
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:1', a torch.device or None."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available; use device='cpu' "
                "or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) are available."
            )
    return resolved


def _place_model(model, device):
    """Move ``model`` to ``device`` in place (unless None): ``(device, dtype)``.

    ``dtype`` is the model's floating dtype, which floating inputs are cast
    to.
    """
    resolved = _resolve_device(device, model)
    if device is not None:
        model.to(resolved)
    return resolved, _floating_dtype(model)


def _floating_dtype(model):
    """The dtype of the model's first floating parameter or buffer."""
    for tensor in chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()
