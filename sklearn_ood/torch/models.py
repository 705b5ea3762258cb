"""Reference architectures, and a safe loader for their weights.

* :class:`DigitsCNN` (8x8 digits) and :class:`FashionCNN` (28x28 images) are
  small CNNs that train in seconds to minutes on a CPU.
* :class:`WideResNet` (WRN-40-2, the energy and outlier-exposure reference)
  and :class:`DenseNetBC` (DenseNet-BC-100, the ODIN and Unleashing-Mask
  reference) are the CIFAR architectures of the OOD literature; their
  parameter names match the published checkpoints.
* :func:`load_weights` reads weights from a local file only, without
  unpickling code.

Every model ends in one ``nn.Linear`` named ``fc``, the last ``nn.Linear`` of
the model: ``TorchFeatureTransformer(model, layer="penultimate")`` returns
its input, and head-aware detectors take ``model.fc``.
"""

import math
import os
import pickle
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["DenseNetBC", "DigitsCNN", "FashionCNN", "WideResNet", "load_weights"]


class _SmallCNN(nn.Module):
    """The layers of DigitsCNN and FashionCNN (``pool_first``: a 2x2 pooling
    after block1 too), created in one order so that a seed gives the same
    weights."""

    def __init__(self, n_classes, width, in_channels, dropout, pool_first):
        super().__init__()
        block1 = _conv_block(in_channels, width)
        self.block1 = nn.Sequential(*block1, nn.MaxPool2d(2)) if pool_first else block1
        self.block2 = nn.Sequential(*_conv_block(width, 2 * width), nn.MaxPool2d(2))
        self.block3 = _conv_block(2 * width, 4 * width)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * width, n_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.dropout(self.pool(x)))


class DigitsCNN(_SmallCNN):
    """Small CNN for scikit-learn's 8x8 digits (``load_digits``).

    Three 3x3 convolution blocks (convolution, batch norm, ReLU; a 2x2 max
    pooling after the second), global average pooling, dropout and one
    linear head::

        block1 (w x 8 x 8) -> block2 (2w x 4 x 4) -> block3 (4w x 4 x 4)
        -> pool + flatten (4w) -> dropout -> fc (n_classes)

    The penultimate features (the input of ``fc``) have ``4 * width``
    dimensions. Submodules are named so that they can be passed to
    :class:`~sklearn_ood.torch.TorchFeatureTransformer` as layers:
    ``"block1"``, ``"block2"``, ``"block3"``, ``"pool"``, ``"dropout"``,
    ``"fc"``. It trains to about 99 % accuracy on digits 0-4 within a few
    epochs on a CPU. No pretrained weights are shipped.

    Parameters
    ----------
    n_classes : int, default=10
        Number of logits.
    width : int, default=16
        Channels of the first block (the others have 2x and 4x).
    in_channels : int, default=1
        Channels of the input images.
    dropout : float, default=0.0
        Dropout probability before the head (active in training mode only;
        Monte-Carlo dropout methods need it > 0).

    See Also
    --------
    TorchFeatureTransformer : Its logits or layer features, for a detector.
    FashionCNN : The same design for 28x28 images.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN
    >>> model = DigitsCNN(n_classes=5).eval()
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_classes=10, width=16, in_channels=1, dropout=0.0):
        super().__init__(n_classes, width, in_channels, dropout, pool_first=False)


class FashionCNN(_SmallCNN):
    """Small CNN for 28x28 grey images (Fashion-MNIST, MNIST).

    Three 3x3 convolution blocks (convolution, batch norm, ReLU; a 2x2 max
    pooling after the first two), global average pooling, dropout and one
    linear head, as :class:`DigitsCNN` with one more pooling step::

        block1 (w x 14 x 14) -> block2 (2w x 7 x 7) -> block3 (4w x 7 x 7)
        -> pool + flatten (4w) -> dropout -> fc (n_classes)

    The penultimate features (the input of ``fc``) have ``4 * width``
    dimensions; the submodules ``"block1"``, ``"block2"``, ``"block3"``,
    ``"pool"``, ``"dropout"`` and ``"fc"`` can be passed to
    :class:`~sklearn_ood.torch.TorchFeatureTransformer` as layers. Global
    pooling makes it accept other image sizes too (at least 4x4). No
    pretrained weights are shipped.

    Parameters
    ----------
    n_classes : int, default=10
        Number of logits.
    width : int, default=16
        Channels of the first block (the others have 2x and 4x).
    in_channels : int, default=1
        Channels of the input images.
    dropout : float, default=0.0
        Dropout probability before the head (active in training mode only;
        Monte-Carlo dropout methods need it > 0).

    See Also
    --------
    DigitsCNN : The same design for 8x8 digits.
    WideResNet : The reference architecture for 32x32 colour images.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import FashionCNN
    >>> model = FashionCNN(n_classes=6, width=4).eval()
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 6])
    """

    def __init__(self, n_classes=10, width=16, in_channels=1, dropout=0.0):
        super().__init__(n_classes, width, in_channels, dropout, pool_first=True)


class WideResNet(nn.Module):
    """Wide residual network (WRN-depth-k), the energy and OE reference model.

    Zagoruyko & Komodakis's pre-activation wide ResNet as used by the energy
    and outlier-exposure papers (WRN-40-2 with dropout 0.3 on CIFAR): a 3x3
    convolution to 16 channels, three groups of ``n = (depth - 4) / 6``
    basic blocks with ``16k``, ``32k`` and ``64k`` channels (``k =
    widen_factor``; the second and third groups halve the resolution), then
    batch norm, ReLU, global average pooling and the linear head ``fc``::

        conv1 (16) -> block1 (16k) -> block2 (32k, /2) -> block3 (64k, /2)
        -> bn1 -> relu -> pool + flatten (64k) -> fc (n_classes)

    A basic block is ``BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3`` plus the
    identity, or a 1x1 convolution of the pre-activated input where the
    width or the stride changes. Batch norm is affine; the initialisation is
    the reference one (convolutions ``N(0, 2 / (k_h k_w c_out))``, zero
    biases). The penultimate features (the input of ``fc``) have
    ``64 * widen_factor`` dimensions. Parameter names match the published
    energy and OE checkpoints, so :func:`load_weights` reads them as they
    are; global pooling makes 32x32 inputs give the reference's 8x8 average.
    Images are expected normalised by the caller (the reference uses the
    CIFAR channel means and standard deviations). No weights are shipped.

    Parameters
    ----------
    depth : int, default=40
        Number of layers; ``depth - 4`` must be a positive multiple of 6.
    widen_factor : int, default=2
        Width multiplier ``k``.
    dropout : float, default=0.3
        Dropout probability between the two convolutions of each block (as
        ``nn.Dropout`` modules, so Monte-Carlo dropout switches them on).
    n_classes : int, default=10
        Number of logits.
    in_channels : int, default=3
        Channels of the input images.

    See Also
    --------
    DenseNetBC : The ODIN and Unleashing-Mask reference model.
    load_weights : Load a local checkpoint into the model.
    TorchFeatureTransformer : Its logits or layer features, for a detector.

    References
    ----------
    Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016.
    Hendrycks, Mazeika & Dietterich, "Deep Anomaly Detection with Outlier
    Exposure", ICLR 2019. Liu, Wang, Owens & Li, "Energy-based
    Out-of-distribution Detection", NeurIPS 2020.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import WideResNet
    >>> model = WideResNet(depth=10, widen_factor=1, n_classes=4).eval()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 4])
    >>> model.fc.in_features
    64
    """

    def __init__(
        self, depth=40, widen_factor=2, dropout=0.3, n_classes=10, in_channels=3
    ):
        super().__init__()
        _check_int(depth, "depth", 10)
        if (depth - 4) % 6:
            raise ValueError(
                f"WideResNet needs depth - 4 to be a multiple of 6 (e.g. 10, 16, "
                f"28, 40); got depth={depth}."
            )
        _check_int(widen_factor, "widen_factor", 1)
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = _WideGroup(n, widths[0], widths[1], 1, dropout)
        self.block2 = _WideGroup(n, widths[1], widths[2], 2, dropout)
        self.block3 = _WideGroup(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(widths[3], n_classes)
        _reference_init(self)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(self.relu(self.bn1(x))))


class _WideBlock(nn.Module):
    # Attribute names (convShortcut included) are the reference checkpoints'.
    def __init__(self, in_channels, out_channels, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.equal_in_out = in_channels == out_channels and stride == 1
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False
            )

    def forward(self, x):
        out = self.relu1(self.bn1(x))
        shortcut = x if self.equal_in_out else self.convShortcut(out)
        out = self.relu2(self.bn2(self.conv1(out)))
        return shortcut + self.conv2(self.dropout(out))


class _WideGroup(nn.Module):
    def __init__(self, n, in_channels, out_channels, stride, dropout):
        super().__init__()
        self.layer = nn.Sequential(
            *(
                _WideBlock(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    stride if i == 0 else 1,
                    dropout,
                )
                for i in range(n)
            )
        )

    def forward(self, x):
        return self.layer(x)


class DenseNetBC(nn.Module):
    """DenseNet-BC (bottleneck and compression), the ODIN and UM reference.

    Huang et al.'s DenseNet-BC for CIFAR, as used by ODIN and Unleashing
    Mask (DenseNet-BC-100, growth rate 12): a 3x3 convolution to
    ``2 * growth_rate`` channels, three dense blocks of ``n = (depth - 4) /
    6`` bottleneck layers (``BN-ReLU-conv1x1(4 g)-BN-ReLU-conv3x3(g)``, each
    output concatenated to its input), with a transition
    (``BN-ReLU-conv1x1``, ``floor(reduction * c)`` channels, 2x2 average
    pooling) after the first two, then batch norm, ReLU, global average
    pooling and the linear head ``fc``::

        conv1 -> block1 -> trans1 -> block2 -> trans2 -> block3
        -> bn1 -> relu -> pool + flatten -> fc (n_classes)

    With the defaults the widths are 24 -> 216 -> 108 -> 300 -> 150 -> 342:
    the penultimate features (the input of ``fc``) have 342 dimensions.
    Initialisation and parameter names are the reference code's, so
    :func:`load_weights` reads its checkpoints as they are.

    Two choices differ from the Unleashing-Mask repository, whose configs
    use batch norm without affine parameters and normalise the input inside
    ``forward`` (mean (125.3, 123.0, 113.9) / 255, std (63.0, 62.1, 66.7) /
    255): here batch norm is affine by default (as in ODIN and the original
    DenseNet; ``bn_affine=False`` builds the UM variant, whose checkpoints
    then load), and inputs are normalised by the caller, as for every model
    of this package (e.g. ``torchvision.transforms.Normalize`` with the
    values above before a UM checkpoint). The UM configs also set dropout
    0.3, the reference argument's default is 0.

    Parameters
    ----------
    depth : int, default=100
        Number of layers; ``depth - 4`` must be a positive multiple of 6.
    growth_rate : int, default=12
        Channels ``g`` added by each bottleneck layer.
    reduction : float, default=0.5
        Compression factor of the transitions, in (0, 1].
    dropout : float, default=0.0
        Dropout probability after every convolution of the dense blocks and
        transitions (``nn.Dropout`` modules, so Monte-Carlo dropout switches
        them on). The Unleashing-Mask configs use 0.3.
    n_classes : int, default=10
        Number of logits.
    in_channels : int, default=3
        Channels of the input images.
    bn_affine : bool, default=True
        Whether batch norm has a learned scale and shift. False is the
        Unleashing-Mask repository's ``NonAffineBatchNorm``.

    See Also
    --------
    WideResNet : The energy and outlier-exposure reference model.
    load_weights : Load a local checkpoint into the model.
    TorchFeatureTransformer : Its logits or layer features, for a detector.

    References
    ----------
    Huang, Liu, van der Maaten & Weinberger, "Densely Connected
    Convolutional Networks", CVPR 2017. Liang, Li & Srikant, "Enhancing the
    Reliability of Out-of-distribution Image Detection in Neural Networks",
    ICLR 2018. Zhu et al., "Unleashing Mask: Explore the Intrinsic
    Out-of-Distribution Detection Capability", ICML 2023.

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DenseNetBC
    >>> model = DenseNetBC(depth=10, growth_rate=4, n_classes=3).eval()
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    >>> DenseNetBC().fc.in_features
    342
    """

    def __init__(
        self,
        depth=100,
        growth_rate=12,
        reduction=0.5,
        dropout=0.0,
        n_classes=10,
        in_channels=3,
        bn_affine=True,
    ):
        super().__init__()
        _check_int(depth, "depth", 10)
        if (depth - 4) % 6:
            raise ValueError(
                f"DenseNetBC needs depth - 4 to be a multiple of 6 (e.g. 10, 40, "
                f"100, 190); got depth={depth}."
            )
        _check_int(growth_rate, "growth_rate", 1)
        if not 0 < reduction <= 1:
            raise ValueError(f"reduction must be in (0, 1]; got {reduction}.")
        n = (depth - 4) // 6
        c = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1, bias=False)
        self.block1 = _DenseBlock(n, c, growth_rate, dropout, bn_affine)
        c += n * growth_rate
        self.trans1 = _Transition(c, int(math.floor(c * reduction)), dropout, bn_affine)
        c = int(math.floor(c * reduction))
        self.block2 = _DenseBlock(n, c, growth_rate, dropout, bn_affine)
        c += n * growth_rate
        self.trans2 = _Transition(c, int(math.floor(c * reduction)), dropout, bn_affine)
        c = int(math.floor(c * reduction))
        self.block3 = _DenseBlock(n, c, growth_rate, dropout, bn_affine)
        c += n * growth_rate
        self.bn1 = nn.BatchNorm2d(c, affine=bn_affine)
        self.relu = nn.ReLU()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, n_classes)
        _reference_init(self)

    def forward(self, x):
        x = self.trans1(self.block1(self.conv1(x)))
        x = self.block3(self.trans2(self.block2(x)))
        return self.fc(self.pool(self.relu(self.bn1(x))))


class _Bottleneck(nn.Module):
    def __init__(self, in_channels, growth_rate, dropout, bn_affine):
        super().__init__()
        inter = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_channels, affine=bn_affine)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, inter, 1, bias=False)
        self.dropout1 = nn.Dropout(dropout)
        self.bn2 = nn.BatchNorm2d(inter, affine=bn_affine)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x):
        out = self.dropout1(self.conv1(self.relu(self.bn1(x))))
        out = self.dropout2(self.conv2(self.relu(self.bn2(out))))
        return torch.cat([x, out], 1)


class _DenseBlock(nn.Module):
    def __init__(self, n, in_channels, growth_rate, dropout, bn_affine):
        super().__init__()
        self.layer = nn.Sequential(
            *(
                _Bottleneck(
                    in_channels + i * growth_rate, growth_rate, dropout, bn_affine
                )
                for i in range(n)
            )
        )

    def forward(self, x):
        return self.layer(x)


class _Transition(nn.Module):
    def __init__(self, in_channels, out_channels, dropout, bn_affine):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, affine=bn_affine)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.dropout(self.conv1(self.relu(self.bn1(x)))))


def load_weights(model, path, *, strict=True):
    """Load weights from a local file into ``model``, safely; return ``model``.

    Reads a ``state_dict`` saved with ``torch.save(model.state_dict(), path)``
    through ``torch.load(path, weights_only=True)``, which unpickles tensors
    and plain containers only (never code), or a ``.safetensors`` file
    through ``safetensors.torch.load_file`` (the ``safetensors`` package
    must be installed). Nothing is ever downloaded. A checkpoint dict
    holding the state dict under ``"state_dict"``, ``"model_state_dict"``
    or ``"model"`` is accepted, and the ``"module."`` prefix that
    ``nn.DataParallel`` adds to every name is removed. The tensors are read
    on the CPU and copied into the model's parameters and buffers where
    they are (``model.load_state_dict``).

    Parameters
    ----------
    model : torch.nn.Module
        The model, built with the architecture the weights were saved from;
        loaded in place.
    path : str or os.PathLike
        Local file: a ``torch.save`` file, or a ``.safetensors`` file.
    strict : bool, default=True
        Whether every parameter and buffer of ``model`` must be in the file
        and every entry of the file in ``model``. Shapes must match either
        way.

    Returns
    -------
    model : torch.nn.Module
        The same model, with the loaded weights.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file holds something other than tensors (a pickled model, for
        example), or its names or shapes do not match the model's.

    See Also
    --------
    WideResNet : The energy and outlier-exposure reference model.
    DenseNetBC : The ODIN and Unleashing-Mask reference model.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from sklearn_ood.torch import DigitsCNN, load_weights
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.pt")
    >>> torch.save(DigitsCNN(n_classes=5).state_dict(), path)
    >>> model = load_weights(DigitsCNN(n_classes=5), path).eval()
    >>> model(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 5])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No weights file at {path!r}. load_weights reads a local file only "
            "(it never downloads): save the weights there first, e.g. with "
            "torch.save(model.state_dict(), path)."
        )
    state = _read_state(path)
    state = _unwrap_state(state, path)
    state = _strip_prefix(state, model, "module.")
    _check_state(model, state, path, strict)
    model.load_state_dict(state, strict=strict)
    return model


def _read_state(path):
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(
                f"Reading {path!r} needs the safetensors package: pip install "
                "safetensors (or save the weights with torch.save instead)."
            ) from exc
        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"Could not read {path!r} as a file of tensors with "
            "torch.load(weights_only=True), which refuses anything but tensors "
            "and plain containers (a pickled model could run code). Save the "
            f"weights with torch.save(model.state_dict(), path). ({first})"
        ) from exc


def _unwrap_state(state, path):
    if isinstance(state, dict) and not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path!r} does not hold a state dict (names mapped to tensors), nor a "
            "checkpoint dict with one under 'state_dict', 'model_state_dict' or "
            "'model'."
        )
    return state


def _strip_prefix(state, model, prefix):
    own = model.state_dict()
    if (
        state
        and all(k.startswith(prefix) for k in state)
        and not any(k.startswith(prefix) for k in own)
    ):
        return OrderedDict((k[len(prefix) :], v) for k, v in state.items())
    return state


def _check_state(model, state, path, strict):
    own = model.state_dict()
    wrong = [
        f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    missing = [k for k in own if k not in state] if strict else []
    unexpected = [k for k in state if k not in own] if strict else []
    if not (wrong or missing or unexpected):
        return
    name = type(model).__name__
    lines = [f"The weights in {path!r} do not match the {name}:"]
    for what, keys in (
        ("shapes differ", wrong),
        ("missing from the file", missing),
        ("in the file but not in the model", unexpected),
    ):
        if keys:
            shown = ", ".join(keys[:5]) + (
                f", ... ({len(keys)} in all)" if len(keys) > 5 else ""
            )
            lines.append(f"  {what}: {shown}")
    if missing and all(k.endswith((".weight", ".bias")) for k in missing):
        norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        bn = {n for n, m in model.named_modules() if isinstance(m, norms)}
        if all(k.rsplit(".", 1)[0] in bn for k in missing):
            lines.append(
                "  Only batch-norm scales and shifts are missing: the weights come "
                "from a model with non-affine batch norm (e.g. DenseNetBC("
                "bn_affine=False), the Unleashing-Mask variant)."
            )
    lines.append(
        "Build the model with the architecture and arguments the weights were "
        "saved from"
        + ("." if not strict else ", or pass strict=False to load the names both have.")
    )
    raise ValueError("\n".join(lines))


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def _reference_init(model):
    """The WRN and DenseNet reference initialisation."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_out = math.prod(module.kernel_size) * module.out_channels
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


def _conv_block(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )
