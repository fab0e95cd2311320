"""Classic CNNs as multi-scale Backbones: LeNet-5, AlexNet, VGG and a configurable plain conv stack.

Each works on 1- or 3-channel input of any size >= 32, returns one feature map per stage (shallow to
deep), and reports the stages for freezing and per-stage learning rates.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from torch import nn

from zoo import Range, register
from zoo.errors import ZooError
from zoo.model import Backbone, FeatureInfo
from zoo_plugins._shared import DropoutRate, Norm, conv_norm_act, norm_layer

# ---- building blocks -------------------------------------------------------------------------


class StagedBackbone(Backbone):
    """A backbone that is a sequence of stages, each returning one feature map."""

    def __init__(self, stages: list[nn.Module], channels: list[int], strides: list[int]):
        super().__init__()
        self.blocks = nn.ModuleList(stages)
        self.feature_info = [FeatureInfo(c, s) for c, s in zip(channels, strides)]

    def forward(self, x):
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def stages(self) -> list[nn.Module]:
        return list(self.blocks)


def _w(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


# ---- the registered architectures --------------------------------------------------------------


@register.architecture("lenet5", min_size=32)  # three 5x5 convs, two 2x2 pools
def lenet5(
    in_channels: int,
    activation: Literal["tanh", "relu"] = "tanh",
    pool: Literal["avg", "max"] = "avg",
    width: float = 1.0,
) -> Backbone:
    """LeNet-5 (LeCun 1998): conv 6@5x5, pool, conv 16@5x5, pool, conv 120@5x5; pair it with head.hidden=[84]."""
    act = nn.Tanh if activation == "tanh" else nn.ReLU
    pool_layer = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
    c1, c3, c5 = _w(6, width), _w(16, width), _w(120, width)
    stages = [
        nn.Sequential(nn.Conv2d(in_channels, c1, 5), act(), pool_layer(2)),
        nn.Sequential(nn.Conv2d(c1, c3, 5), act(), pool_layer(2)),
        nn.Sequential(nn.Conv2d(c3, c5, 5), act()),
    ]
    return StagedBackbone(stages, [c1, c3, c5], [2, 4, 4])


@register.architecture("alexnet", min_size=8)  # stem=imagenet needs 31
def alexnet(
    in_channels: int,
    width: float = 0.5,
    stem: Literal["small", "imagenet"] = "small",
    norm: Norm = "none",
    dropout: DropoutRate = 0.0,
) -> Backbone:
    """AlexNet's five convs (64-192-384-256-256 x width); stem=small: a 5x5/1 stem for small images, not 11x11/4."""
    c = [_w(x, width) for x in (64, 192, 384, 256, 256)]
    if stem == "imagenet":
        first = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 11, stride=4, padding=2),
            norm_layer(norm, c[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
        )
        s0 = 8
    else:
        first = nn.Sequential(conv_norm_act(in_channels, c[0], norm, 5), nn.MaxPool2d(2))
        s0 = 2
    drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
    stages = [
        first,
        nn.Sequential(conv_norm_act(c[0], c[1], norm, 5), nn.MaxPool2d(2)),
        nn.Sequential(
            conv_norm_act(c[1], c[2], norm, 3),
            conv_norm_act(c[2], c[3], norm, 3),
            conv_norm_act(c[3], c[4], norm, 3),
            drop,
            nn.MaxPool2d(2),
        ),
    ]
    return StagedBackbone(stages, [c[0], c[1], c[4]], [s0, s0 * 2, s0 * 4])


VGG_LAYOUTS = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


@register.architecture("vgg", min_size=lambda pools: 2**pools)
def vgg(
    in_channels: int,
    depth: Literal[11, 13, 16, 19] = 11,
    width: float = 0.25,
    norm: Norm = "batch",
    pools: Annotated[int, Range(1, 5)] = 5,  # VGG has five stages
) -> Backbone:
    """VGG (Simonyan & Zisserman 2014) in its 11/13/16/19-layer layouts, 3x3 convs, with a width multiplier."""
    stages, channels, strides, cin = [], [], [], in_channels
    for i, stage in enumerate(VGG_LAYOUTS[depth]):
        layers = []
        for cout in stage:
            layers.append(conv_norm_act(cin, _w(cout, width), norm, 3))
            cin = _w(cout, width)
        if i < pools:
            layers.append(nn.MaxPool2d(2))
        stages.append(nn.Sequential(*layers))
        channels.append(cin)
        strides.append(2 ** min(i + 1, pools))
    return StagedBackbone(stages, channels, strides)


def _power(x: float, n: int) -> float:
    try:
        return x**n
    except OverflowError:
        return math.inf


@register.architecture("cnn", min_size=lambda depth: 2**depth)
def cnn(
    in_channels: int,
    depth: Annotated[int, Range(1)] = 3,
    width: Annotated[int, Range(1)] = 32,
    growth: float = 2.0,
    kernel_size: Annotated[int, Range(1)] = 3,
    convs_per_block: Annotated[int, Range(1)] = 1,
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros",
    norm: Norm = "batch",
    dropout: DropoutRate = 0.0,
    pool: Literal["max", "avg", "stride"] = "max",
) -> Backbone:
    """A plain conv stack: depth blocks of convs_per_block conv-norm-ReLU and a downsampling; channels x growth each."""
    if kernel_size % 2 == 0:
        raise ZooError(f"model.kernel_size={kernel_size} must be odd (same padding needs a centre)")
    stages, channels, cin = [], [], in_channels
    sizes = [width * _power(growth, i) for i in range(min(depth, 10_000))]
    if not 0.5 <= min(sizes) <= max(sizes) < 2**31:  # 2**31: what a tensor's channel axis takes
        bad = min(sizes) if min(sizes) < 0.5 else max(sizes)
        raise ZooError(
            f"model.growth={growth} with model.width={width} and model.depth={depth} gives a block of "
            f"{bad:.3g} channels; every block needs from 1 to 2**31 - 1"
        )
    for i in range(depth):
        cout = int(round(width * growth**i))
        layers = []
        for j in range(convs_per_block):
            if pool == "stride" and j == 0:  # the first conv downsamples; its layers sit in the stage itself
                layers += conv_norm_act(cin, cout, norm, kernel_size, stride=2, padding_mode=padding_mode)
            else:
                layers.append(conv_norm_act(cin, cout, norm, kernel_size, padding_mode=padding_mode))
            cin = cout
        if pool != "stride":
            layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        stages.append(nn.Sequential(*layers))
        channels.append(cout)
    return StagedBackbone(stages, channels, [2 ** (i + 1) for i in range(depth)])
