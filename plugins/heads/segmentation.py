"""Semantic segmentation: what every decoder head shares (outputs, loss, metrics, resizing); the decoders
are `unet` (heads/unet.py) and `fpn` (heads/fpn.py).

A decoder resizes to each skip's size and finally to the input's, so any height and width >= 32 works,
whatever the backbone's strides, and the exported model takes any height and width.

Metrics, over all pixels of the split (not averaged per image): `miou` is the mean over every class,
background included (the PASCAL VOC convention), of intersection / union; `dice` the mean per-class Dice
(F1) score, background included; `pixel_accuracy` the fraction of pixels labelled right. Pixels labelled the
data's `ignore_index` (255 "void" in Cityscapes and VOC) are left out of the loss and of every metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import FeatureInfo, Head

# ---- building blocks -------------------------------------------------------------------------


def resize(x: torch.Tensor, size: Sequence) -> torch.Tensor:
    """Bilinear resize to `size` (h, w); a no-op when the size already matches."""
    if not torch.jit.is_tracing() and tuple(x.shape[-2:]) == tuple(int(s) for s in size):
        return x
    return F.interpolate(x, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def _scale(n, ratio: float):
    """round(n * ratio) for a Python int, or for a traced size (a tensor while exporting: the graph stays dynamic)."""
    if isinstance(n, torch.Tensor):
        return (n.to(torch.float64) * ratio).round().to(torch.int64)
    return int(round(n * ratio))


def soft_dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int, eps: float = 1.0, ignore_index: int | None = None
) -> torch.Tensor:
    """1 - the mean over classes of the soft Dice score of the softmax against the one-hot mask (over the batch);
    pixels labelled `ignore_index` count for nothing."""
    probs = logits.float().softmax(dim=1)
    if ignore_index is not None:
        valid = targets != ignore_index
        targets = targets.where(valid, 0)
        probs = probs * valid.unsqueeze(1)
    onehot = F.one_hot(targets, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    if ignore_index is not None:
        onehot = onehot * valid.unsqueeze(1)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


class SegmentationHead(Head):
    """Shared by the decoders: logits (N, C, H, W) at the input size in training; the argmax class mask
    (and, when asked, the per-pixel class probabilities) in the deployed model."""

    task = "segmentation"
    monitor, monitor_mode = "miou", "max"
    dynamic_size = True
    wants_input_size = True  # forward(features, size): the input's (h, w), which the features cannot always tell

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        dropout: float,
        probabilities: bool,
        ce_weight: float,
        dice_weight: float,
        class_weights: Optional[list[float]],
    ):
        super().__init__()
        where = type(self).__name__
        if not feature_info:
            raise ZooError(f"{where}: the backbone returns no feature maps")
        if ce_weight + dice_weight == 0:
            raise ZooError(f"head.ce_weight={ce_weight} and head.dice_weight={dice_weight} must not both be 0")
        self.num_classes = info.num_classes
        self.ignore_index = info.ignore_index  # a mask value that labels nothing: no loss, not in the metrics
        if class_weights is not None:
            if len(class_weights) != self.num_classes:
                raise ZooError(
                    f"head.class_weights={list(class_weights)} needs one weight per class "
                    f"({self.num_classes}: {', '.join(info.classes)})"
                )
            self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))
        else:
            self.class_weights = None
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.output_names = ("mask", "probabilities") if probabilities else ("mask",)
        first = feature_info[0]
        sizes = first.size or tuple(s // first.stride for s in info.size)
        self.level_ratio = tuple(
            s / max(1, n) for s, n in zip(info.size, sizes)
        )  # input size / shallowest level's size
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def output_size(self, features: list[torch.Tensor], size: Optional[Sequence] = None) -> Sequence:
        """The input's (h, w): as the model gives it (`wants_input_size`); else estimated from the shallowest level,
        scaled by input size / level size at the training size (exact at the training size and wherever the input
        is a multiple of the backbone's stride)."""
        if size is not None:
            return size
        return tuple(_scale(n, r) for n, r in zip(features[0].shape[-2:], self.level_ratio))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.as_subclass(torch.Tensor).long()
        loss = outputs.new_zeros(())
        ignore = self.ignore_index
        if ignore is not None and not targets.ne(ignore).any():
            return outputs.sum() * 0.0  # every pixel ignored: nothing to learn (cross-entropy's mean would be NaN)
        if self.ce_weight > 0:
            ce = F.cross_entropy(
                outputs.float(), targets, weight=self.class_weights, ignore_index=-100 if ignore is None else ignore
            )
            loss = loss + self.ce_weight * ce
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * soft_dice_loss(outputs, targets, self.num_classes, ignore_index=ignore)
        return loss

    def metrics(self):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassJaccardIndex

        c, ignore = self.num_classes, self.ignore_index  # torchmetrics leaves the ignored pixels out
        return MetricCollection(
            {
                "miou": MulticlassJaccardIndex(num_classes=c, average="macro", ignore_index=ignore),
                "dice": MulticlassF1Score(
                    num_classes=c, average="macro", multidim_average="global", ignore_index=ignore
                ),
                "pixel_accuracy": MulticlassAccuracy(
                    num_classes=c, average="micro", multidim_average="global", ignore_index=ignore
                ),
            },
            compute_groups=False,
        )

    def postprocess(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = outputs.argmax(dim=1)
        if len(self.output_names) == 2:
            return mask, outputs.softmax(dim=1)
        return (mask,)
