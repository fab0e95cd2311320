"""Feature-pyramid head for semantic segmentation: levels summed top-down in one width, then merged
(a feature pyramid with a semantic branch, as in Panoptic FPN).

Shares outputs, loss and metrics with every segmentation decoder (heads/segmentation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Optional

import torch
from torch import nn

from zoo import Range, register
from zoo.data import DataInfo
from zoo.model import FeatureInfo, Head
from zoo_plugins._shared import DropoutRate, Norm, conv_norm_act
from zoo_plugins.heads.segmentation import SegmentationHead, resize

# ---- the module -------------------------------------------------------------------------------


class FPNDecoder(SegmentationHead):
    """Lateral 1x1 convs to one width, top-down sum, a conv per level, levels resized to the finest and summed."""

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        channels: int,
        segment_channels: int,
        norm: str,
        dropout: float,
        probabilities: bool,
        ce_weight: float,
        dice_weight: float,
        class_weights: Optional[list[float]],
    ):
        super().__init__(feature_info, info, dropout, probabilities, ce_weight, dice_weight, class_weights)
        self.lateral = nn.ModuleList(nn.Conv2d(f.channels, channels, 1) for f in feature_info)
        self.smooth = nn.ModuleList(conv_norm_act(channels, segment_channels, norm) for _ in feature_info)
        self.fuse = conv_norm_act(segment_channels, segment_channels, norm)
        self.classifier = nn.Conv2d(segment_channels, self.num_classes, 1)

    def forward(self, features: list[torch.Tensor], size: Optional[Sequence] = None) -> torch.Tensor:
        out_size = self.output_size(features, size)
        finest = features[0].shape[-2:]
        top, merged = None, None
        for i in reversed(range(len(features))):
            p = self.lateral[i](features[i])
            top = p if top is None else p + resize(top, p.shape[-2:])
            s = resize(self.smooth[i](top), finest)
            merged = s if merged is None else merged + s
        return resize(self.classifier(self.dropout(self.fuse(merged))), out_size)


# ---- the registered head ------------------------------------------------------------------------


@register.head("fpn", tasks=("segmentation",))
def fpn(
    feature_info: list,
    info: DataInfo,
    channels: Annotated[int, Range(1)] = 64,
    segment_channels: Annotated[int, Range(1)] = 32,
    norm: Norm = "batch",
    dropout: DropoutRate = 0.0,
    probabilities: bool = False,
    ce_weight: Annotated[float, Range(0)] = 1.0,
    dice_weight: Annotated[float, Range(0)] = 0.0,
    class_weights: Optional[list[Annotated[float, Range(0)]]] = None,
) -> Head:
    """Feature pyramid (lateral 1x1, top-down sum), a semantic branch merging every level; cross-entropy (+ Dice)."""
    return FPNDecoder(
        feature_info,
        info,
        channels,
        segment_channels,
        norm,
        dropout,
        probabilities,
        ce_weight,
        dice_weight,
        None if class_weights is None else list(class_weights),
    )
