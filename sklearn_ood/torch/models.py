"""Reference architectures that run offline on the data bundled with the tests."""

from torch import nn

__all__ = ["DigitsCNN"]


class DigitsCNN(nn.Module):
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

    Examples
    --------
    >>> import torch
    >>> from sklearn_ood.torch import DigitsCNN
    >>> model = DigitsCNN(n_classes=5).eval()
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 5])
    """

    def __init__(self, n_classes=10, width=16, in_channels=1, dropout=0.0):
        super().__init__()
        self.block1 = _conv_block(in_channels, width)
        self.block2 = nn.Sequential(*_conv_block(width, 2 * width), nn.MaxPool2d(2))
        self.block3 = _conv_block(2 * width, 4 * width)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * width, n_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(self.dropout(self.pool(x)))


def _conv_block(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )
