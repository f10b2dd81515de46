"""Image encoders in plain torch: ResNet-18 (CIFAR stem) and a small CNN for CPU runs.

* :class:`ResNet18` — He et al. 2016 with BasicBlocks ``[2, 2, 2, 2]`` and widths
  ``64, 128, 256, 512``. ``stem="cifar"`` (default) is the variant every CIFAR self-supervised
  benchmark uses (lightly, solo-learn): a 3x3 stride-1 convolution and no max-pool, so a 32x32
  input keeps 32x32 in the first stage; ``stem="imagenet"`` is the 7x7 stride-2 convolution +
  3x3 max-pool (STL-10 at 96x96 in part of the literature). ``in_channels=1`` adapts the first
  convolution to grayscale input (Fashion-MNIST). Output: the global-average-pooled ``[B, 512]``.
* :class:`SmallCNN` — four 3x3 conv-BN-ReLU layers (two stride-2), global average pooling;
  about 0.3 M parameters, about 15 M multiply-adds per 28x28 image: fast enough for CPU
  learning tests and benchmarks.

:func:`build_backbone` builds either by name; :func:`convert_sync_batchnorm` and
:func:`to_channels_last` are the two performance switches the vision configs expose.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..core.checks import check_choice

__all__ = ["ResNet18", "SmallCNN", "BasicBlock", "build_backbone", "convert_sync_batchnorm",
           "to_channels_last", "BACKBONES"]

BACKBONES: tuple[str, ...] = ("resnet18", "small_cnn")


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 feature extractor ``[B, C, H, W] -> [B, 512]``.

    Args:
        in_channels: 3 (RGB) or 1 (grayscale).
        stem: ``"cifar"`` (3x3 stride 1, no max-pool) or ``"imagenet"`` (7x7 stride 2 + max-pool).
        zero_init_residual: zero the last BN of every block (Goyal et al.; off by default).
    """

    out_dim = 512

    def __init__(self, in_channels: int = 3, stem: str = "cifar",
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        check_choice("stem", stem, ("cifar", "imagenet"))
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels!r}")
        if stem == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
                                      nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride),
                                        BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


class SmallCNN(nn.Module):
    """Small CNN ``[B, C, H, W] -> [B, 4 * width]`` for CPU runs.

    conv3x3(C -> w) -> conv3x3(w -> 2w, stride 2) -> conv3x3(2w -> 4w, stride 2) ->
    conv3x3(4w -> 4w), each followed by BN and ReLU, then global average pooling.

    Args:
        in_channels: input channels.
        width: ``w`` (default 32, i.e. a 128-d output).
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width: expected a positive int, got {width!r}")

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        w = width
        self.features = nn.Sequential(block(in_channels, w, 1), block(w, 2 * w, 2),
                                      block(2 * w, 4 * w, 2), block(4 * w, 4 * w, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 4 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def build_backbone(name: str, in_channels: int, **kwargs: Any) -> nn.Module:
    """``"resnet18"`` or ``"small_cnn"``; extra keyword arguments go to the class.

    The returned module has an ``out_dim`` attribute.
    """
    check_choice("backbone", name, BACKBONES)
    if name == "resnet18":
        return ResNet18(in_channels, **kwargs)
    return SmallCNN(in_channels, **kwargs)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm by :class:`torch.nn.SyncBatchNorm` (statistics over all processes;
    use under ``torchrun`` with CUDA). Returns the converted module."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Move a convolutional module's 4-D parameters to ``torch.channels_last`` memory format."""
    return module.to(memory_format=torch.channels_last)
