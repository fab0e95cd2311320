"""The blocks `cnn` stacks (block=plain|residual|bottleneck|inception|separable) and the arithmetic of their
sizes: each is conv-norm-activation units from zoo_plugins._shared.conv_norm_act (torchvision's
Conv2dNormActivation), so every block takes the same padding, padding mode, norm and activation options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from zoo.errors import ZooError
from zoo_plugins._shared import activation_layer, conv_norm_act


@dataclass(frozen=True)
class ConvSpec:
    """What every conv of a block shares: the norm, the activation, how it pads."""

    norm: str = "batch"
    activation: str = "relu"
    padding: str = "same"
    padding_mode: str = "zeros"

    def __call__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, act: bool = True, groups: int = 1):
        return conv_norm_act(
            cin,
            cout,
            self.norm,
            kernel,
            stride,
            self.padding_mode,
            padding=self.padding,
            activation=self.activation if act else None,
            groups=groups,
        )


class Residual(nn.Module):
    """body(x) + shortcut(x), then the activation: ResNet's unit. The shortcut is the identity, or a 1x1 conv with
    its norm (stride as the body's) where the channels or the size change."""

    def __init__(self, body: nn.Module, cin: int, cout: int, stride: int, spec: ConvSpec):
        super().__init__()
        self.body = body
        same = cin == cout and stride == 1
        self.shortcut = nn.Identity() if same else spec(cin, cout, 1, stride, act=False)
        self.act = activation_layer(spec.activation)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class Inception(nn.Module):
    """GoogLeNet's inception module: 1x1, 1x1-3x3, 1x1-5x5 and 3x3 max pool-1x1 branches, concatenated on the
    channels (GoogLeNet's 3a shares: 1/4, 1/2, 1/8, 1/8 of the output; reductions 3/4 and 1/2 of their branch)."""

    def __init__(self, cin: int, cout: int, stride: int, spec: ConvSpec):
        super().__init__()
        b1, b5, bp = max(1, cout // 4), max(1, cout // 8), max(1, cout // 8)
        b3 = cout - b1 - b5 - bp
        r3, r5 = max(1, b3 * 3 // 4), max(1, b5 // 2)
        self.branch1 = spec(cin, b1, 1, stride)
        self.branch3 = nn.Sequential(spec(cin, r3, 1), spec(r3, b3, 3, stride))
        self.branch5 = nn.Sequential(spec(cin, r5, 1), spec(r5, b5, 5, stride))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride, padding=1), spec(cin, bp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


def unit(block: str, cin: int, cout: int, kernel: int, stride: int, spec: ConvSpec) -> nn.Module:
    """One unit of a block: plain conv; residual (two kxk convs); bottleneck (1x1 down to cout/4, kxk, 1x1 up);
    inception (the four-branch module); separable (depthwise kxk, then pointwise 1x1: Xception, MobileNet)."""
    if block == "plain":
        return spec(cin, cout, kernel, stride)
    if block == "residual":
        return Residual(
            nn.Sequential(spec(cin, cout, kernel, stride), spec(cout, cout, kernel, act=False)), cin, cout, stride, spec
        )
    if block == "bottleneck":
        mid = max(1, cout // 4)
        body = nn.Sequential(spec(cin, mid, 1), spec(mid, mid, kernel, stride), spec(mid, cout, 1, act=False))
        return Residual(body, cin, cout, stride, spec)
    if block == "inception":
        return Inception(cin, cout, stride, spec)
    return nn.Sequential(spec(cin, cin, kernel, stride, groups=cin), spec(cin, cout, 1))


def check_block(block: str, padding: str, width: int) -> None:
    """What relates the block to the other options, in one line each."""
    if padding == "valid" and block in ("residual", "bottleneck", "inception"):
        raise ZooError(
            f"model.padding=valid does not fit model.block={block}: its branches add or concatenate maps of one size; "
            "use padding=same, or block=plain|separable"
        )
    if block == "inception" and width < 4:
        raise ZooError(f"model.width={width} is too narrow for model.block=inception: its four branches need >= 4")


BIG = 2**31  # more pixels a side than any image: the answer once the need passes it


def smallest_input(
    depth: int,
    kernel_size: int,
    convs_per_block: int,
    padding: str,
    padding_mode: str,
    stride: int,
    pool: str,
    block: str,
) -> int:
    """The smallest input side a cnn of these settings takes, worked back from one pixel at the deepest block:
    a conv needs (out - 1) * stride + kernel - 2 * pad pixels, and at least what its padding mode mirrors
    (inception's 5x5 branch pads 2); a 2x2 pool twice its output."""
    pad = kernel_size // 2 if padding == "same" else 0
    mirror = max(pad, 2 if block == "inception" else 0)
    # the side a conv's input needs for its padding: reflect mirrors without the edge (pad + 1), symmetric and
    # circular with it (pad), replicate and zeros need nothing
    floor = max(1, {"reflect": mirror + 1, "symmetric": mirror, "circular": mirror}.get(padding_mode, 1))
    first = stride * 2 if pool == "stride" else stride
    need = 1
    for _ in range(depth):
        before = need
        if pool in ("max", "avg"):
            need *= 2
        if convs_per_block > 1:  # the convs after the first: their inputs are padded too
            need = max(need + (convs_per_block - 1) * (kernel_size - 1 - 2 * pad), floor)
        need = max((need - 1) * first + kernel_size - 2 * pad, floor)
        if need >= BIG:
            return BIG
        if need == before:  # every deeper block needs no more: steady
            break
    return need


def block_stride(stride: int, pool: str) -> int:
    """How much one block downsamples: its first conv's stride, times 2 for a pool (or a pool moved into it)."""
    return stride * (1 if pool == "none" else 2)


def overflow_free(x: float, n: int) -> float:
    try:
        return x**n
    except OverflowError:
        return math.inf


# ---- LeNet-5's C3 connection table -----------------------------------------------------------------


def c3_connections() -> list[tuple[int, ...]]:
    """For each of C3's 16 maps, the S2 maps it reads (LeCun et al. 1998, table I): maps 0-5 take 3 contiguous
    inputs, 6-11 take 4 contiguous, 12-14 take 4 in two pairs, 15 takes all 6: 60 connections in all."""
    three = [tuple((i + k) % 6 for k in range(3)) for i in range(6)]
    four = [tuple((i + k) % 6 for k in range(4)) for i in range(6)]
    split = [(0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5)]
    return [*three, *four, *split, tuple(range(6))]


class Mask(nn.Module):
    """A parametrization (torch.nn.utils.parametrize) multiplying a weight by a fixed 0/1 mask: the weight the
    module uses, trains and exports is always zero where the mask is."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight):
        return weight * self.mask


def table_conv(table: list[tuple[int, ...]], kernel: int) -> nn.Conv2d:
    """A convolution whose output map i sees only the input maps table[i]: a masked Conv2d."""
    from torch.nn.utils import parametrize

    cin = 1 + max(max(t) for t in table)
    conv = nn.Conv2d(cin, len(table), kernel)
    mask = torch.zeros(len(table), cin, 1, 1, device=conv.weight.device)
    for out, ins in enumerate(table):
        mask[out, list(ins)] = 1.0
    with torch.no_grad():
        conv.weight.mul_(mask)
    parametrize.register_parametrization(conv, "weight", Mask(mask.expand_as(conv.weight).clone()))
    return conv
