"""Classic CNNs as multi-scale Backbones: LeNet-5, AlexNet, VGG and a configurable conv stack (`cnn`).

Each works on any number of input channels, returns one feature map per stage (shallow to deep), and reports
the stages for freezing and per-stage learning rates. The faithful forms (`lenet5 c3_table=true`, `alexnet
variant=original`, `vgg norm=none width=1` with the FC-4096 head: model=vgg16_classic) are the papers' layers;
the defaults stay small and fast. The blocks and their size arithmetic are in blocks.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from torch import nn

from zoo import Range, register
from zoo.errors import ZooError
from zoo.model import Backbone, FeatureInfo
from zoo_plugins._shared import Activation, DropoutRate, Norm, PaddingMode, activation_layer, conv_norm_act, norm_layer
from zoo_plugins.architectures.blocks import (
    ConvSpec,
    block_stride,
    c3_connections,
    check_block,
    overflow_free,
    smallest_input,
    table_conv,
    unit,
)

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
    activation: Activation = "tanh",
    pool: Literal["avg", "max"] = "avg",
    width: float = 1.0,
    c3_table: bool = False,
) -> Backbone:
    """LeNet-5 (LeCun 1998): conv 6@5x5, pool, conv 16@5x5, pool, conv 120@5x5; pair it with head.hidden=[84].
    c3_table=true: C3 sees S2's maps through the paper's table (60 of 96 connections), at width 1 only."""
    if c3_table and width != 1:
        raise ZooError(f"model.c3_table=true is LeNet's table of 6 to 16 maps: it needs model.width=1, not {width}")
    pool_layer = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
    c1, c3, c5 = _w(6, width), _w(16, width), _w(120, width)
    c3_conv = table_conv(c3_connections(), 5) if c3_table else nn.Conv2d(c1, c3, 5)
    stages = [
        nn.Sequential(nn.Conv2d(in_channels, c1, 5), activation_layer(activation), pool_layer(2)),
        nn.Sequential(c3_conv, activation_layer(activation), pool_layer(2)),
        nn.Sequential(nn.Conv2d(c3, c5, 5), activation_layer(activation)),
    ]
    return StagedBackbone(stages, [c1, c3, c5], [2, 4, 4])


def _alexnet_original(in_channels: int, activation: str) -> Backbone:
    """The paper's five convs (Krizhevsky et al. 2012; one tower, no two-GPU grouping): 96@11x11/4, 256@5x5,
    384-384-256@3x3, each of the first two followed by local response normalisation (size 5, alpha 1e-4,
    beta 0.75, k 2), and overlapping 3x3/2 max pools. Its FC-4096 layers and their dropout are the head's."""

    def lrn():
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

    def conv(cin, cout, kernel, stride=1):
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding=2 if kernel > 3 else 1), activation_layer(activation)
        )

    stages = [
        nn.Sequential(conv(in_channels, 96, 11, 4), lrn(), nn.MaxPool2d(3, 2)),
        nn.Sequential(conv(96, 256, 5), lrn(), nn.MaxPool2d(3, 2)),
        nn.Sequential(conv(256, 384, 3), conv(384, 384, 3), conv(384, 256, 3), nn.MaxPool2d(3, 2)),
    ]
    return StagedBackbone(stages, [96, 256, 256], [8, 16, 32])


def _alexnet_min_size(variant: str, stem: str) -> int:
    return 63 if variant == "original" else 31 if stem == "imagenet" else 8


@register.architecture("alexnet", min_size=_alexnet_min_size)
def alexnet(
    in_channels: int,
    variant: Literal["small", "original"] = "small",
    width: float = 0.5,
    stem: Literal["small", "imagenet"] = "small",
    norm: Norm = "none",
    dropout: DropoutRate = 0.0,
    activation: Activation = "relu",
) -> Backbone:
    """AlexNet's five convs: variant=small (64-192-384-256-256 x width) or original (96@11x11/4, LRN, 3x3/2 pools).

    variant=small's stem=small is a 5x5/1 stem for small images, not 11x11/4; variant=original is the paper's
    layers (width, stem, norm, dropout do not apply), with model=alexnet_original for its FC-4096 head."""
    if variant == "original":
        return _alexnet_original(in_channels, activation)
    c = [_w(x, width) for x in (64, 192, 384, 256, 256)]

    def cna(cin, cout, kernel):
        return conv_norm_act(cin, cout, norm, kernel, activation=activation)

    if stem == "imagenet":
        first = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 11, stride=4, padding=2),
            norm_layer(norm, c[0]),
            activation_layer(activation),
            nn.MaxPool2d(3, 2, padding=1),
        )
        s0 = 8
    else:
        first = nn.Sequential(cna(in_channels, c[0], 5), nn.MaxPool2d(2))
        s0 = 2
    drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
    stages = [
        first,
        nn.Sequential(cna(c[0], c[1], 5), nn.MaxPool2d(2)),
        nn.Sequential(cna(c[1], c[2], 3), cna(c[2], c[3], 3), cna(c[3], c[4], 3), drop, nn.MaxPool2d(2)),
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
    activation: Activation = "relu",
    padding_mode: PaddingMode = "zeros",
) -> Backbone:
    """VGG (Simonyan & Zisserman 2014) in its 11/13/16/19-layer layouts, 3x3 convs, with a width multiplier.

    norm=none width=1 is the paper's (model=vgg16_classic adds its FC-4096 head: 138,357,544 parameters at 224)."""
    spec = ConvSpec(norm, activation, "same", padding_mode)
    stages, channels, strides, cin = [], [], [], in_channels
    for i, stage in enumerate(VGG_LAYOUTS[depth]):
        layers = []
        for cout in stage:
            layers.append(spec(cin, _w(cout, width), 3))
            cin = _w(cout, width)
        if i < pools:
            layers.append(nn.MaxPool2d(2))
        stages.append(nn.Sequential(*layers))
        channels.append(cin)
        strides.append(2 ** min(i + 1, pools))
    return StagedBackbone(stages, channels, strides)


@register.architecture("cnn", min_size=smallest_input)
def cnn(
    in_channels: int,
    depth: Annotated[int, Range(1)] = 3,
    width: Annotated[int, Range(1)] = 32,
    growth: float = 2.0,
    kernel_size: Annotated[int, Range(1)] = 3,
    convs_per_block: Annotated[int, Range(1)] = 1,
    padding: Literal["same", "valid"] = "same",
    stride: Annotated[int, Range(1, 8)] = 1,
    padding_mode: PaddingMode = "zeros",
    norm: Norm = "batch",
    activation: Activation = "relu",
    block: Literal["plain", "residual", "bottleneck", "inception", "separable"] = "plain",
    dropout: DropoutRate = 0.0,
    pool: Literal["max", "avg", "stride", "none"] = "max",
) -> Backbone:
    """A conv stack: depth blocks of convs_per_block units (conv-norm-act, or residual ... separable) and a pool.

    Channels x growth each block; stride on each block's first conv (pool=stride: x2 there instead of a pool)."""
    if kernel_size % 2 == 0 and padding == "same":
        raise ZooError(f"model.kernel_size={kernel_size} must be odd with model.padding=same (it needs a centre)")
    stages, channels, cin = [], [], in_channels
    sizes = [width * overflow_free(growth, i) for i in range(min(depth, 10_000))]
    if not 0.5 <= min(sizes) <= max(sizes) < 2**31:  # 2**31: what a tensor's channel axis takes
        bad = min(sizes) if min(sizes) < 0.5 else max(sizes)
        raise ZooError(
            f"model.growth={growth} with model.width={width} and model.depth={depth} gives a block of "
            f"{bad:.3g} channels; every block needs from 1 to 2**31 - 1"
        )
    check_block(block, padding, min(int(round(s)) for s in sizes))
    spec = ConvSpec(norm, activation, padding, padding_mode)
    first = stride * 2 if pool == "stride" else stride
    for i in range(depth):
        cout = int(round(width * growth**i))
        layers = []
        for j in range(convs_per_block):
            s = first if j == 0 else 1
            if block == "plain" and pool == "stride" and j == 0:  # the downsampling conv's layers sit in the stage
                layers += spec(cin, cout, kernel_size, s)
            else:
                layers.append(unit(block, cin, cout, kernel_size, s, spec))
            cin = cout
        if pool in ("max", "avg"):
            layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        stages.append(nn.Sequential(*layers))
        channels.append(cout)
    step = block_stride(stride, pool)
    return StagedBackbone(stages, channels, [step ** (i + 1) for i in range(depth)])
