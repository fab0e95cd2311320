"""U-Net decoder head for semantic segmentation: deep to shallow, each level concatenated as a skip.

Shares outputs, loss and metrics with every segmentation decoder (heads/segmentation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Optional

import torch
from torch import nn

from zoo import Length, Range, register
from zoo.data import DataInfo
from zoo.model import FeatureInfo, Head
from zoo_plugins._shared import DropoutRate, Norm, conv_norm_act
from zoo_plugins.heads.segmentation import SegmentationHead, resize

# ---- the module -------------------------------------------------------------------------------


class UNetDecoder(SegmentationHead):
    """Deep to shallow: resize to the next level's size, concatenate it, conv-norm-ReLU blocks; classify, resize."""

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        channels: list[int],
        convs: int,
        norm: str,
        dropout: float,
        probabilities: bool,
        ce_weight: float,
        dice_weight: float,
        class_weights: Optional[list[float]],
    ):
        super().__init__(feature_info, info, dropout, probabilities, ce_weight, dice_weight, class_weights)
        # the k-th block from the deepest level up has width channels[k]; the last width repeats for further levels
        blocks, cin = [], 0
        for k, level in enumerate(reversed(feature_info)):
            cin, cout = cin + level.channels, channels[min(k, len(channels) - 1)]
            blocks.append(nn.Sequential(*[conv_norm_act(cin if j == 0 else cout, cout, norm) for j in range(convs)]))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, self.num_classes, 1)

    def forward(self, features: list[torch.Tensor], size: Optional[Sequence] = None) -> torch.Tensor:
        out_size = self.output_size(features, size)
        x = None
        for block, skip in zip(self.blocks, reversed(features)):
            x = skip if x is None else torch.cat([resize(x, skip.shape[-2:]), skip], dim=1)
            x = block(x)
        return resize(self.classifier(self.dropout(x)), out_size)


# ---- the registered head ------------------------------------------------------------------------


@register.head("unet", tasks=("segmentation",))
def unet(
    feature_info: list,
    info: DataInfo,
    channels: Annotated[list[Annotated[int, Range(1)]], Length(min=1)] = (64, 32, 32, 16),
    convs: Annotated[int, Range(1)] = 2,
    norm: Norm = "batch",
    dropout: DropoutRate = 0.0,
    probabilities: bool = False,
    ce_weight: Annotated[float, Range(0)] = 1.0,
    dice_weight: Annotated[float, Range(0)] = 0.0,
    class_weights: Optional[list[Annotated[float, Range(0)]]] = None,
) -> Head:
    """U-Net decoder over every feature level (deepest first: resize, concatenate the skip, convs); cross-entropy, Dice.

    channels: the width of each decoder block from the deepest level up; the last one repeats for further levels.
    """
    return UNetDecoder(
        feature_info,
        info,
        list(channels),
        convs,
        norm,
        dropout,
        probabilities,
        ce_weight,
        dice_weight,
        None if class_weights is None else list(class_weights),
    )
