"""Image classification: pool the deepest features, optional hidden layers, a linear classifier."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo import register
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import FeatureInfo, Head


def pooled_mlp(last: FeatureInfo, pool: str, hidden: list[int], dropout: float, outputs: int) -> tuple[nn.Module, nn.Sequential]:
    """Pool (avg, max, or flatten at the probed size) the deepest features, then dropout-linear-ReLU
    hidden layers and a final linear layer: the shared body of the vector-output heads."""
    if any(h < 1 for h in hidden):
        raise ZooError(f"head.hidden={list(hidden)}: every hidden layer needs at least one unit")
    if pool == "flatten":
        h, w = last.size
        pooling, width = nn.Flatten(), last.channels * h * w
    else:
        pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1), nn.Flatten())
        width = last.channels
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers += [nn.Dropout(dropout), nn.Linear(width, outputs)]
    return pooling, nn.Sequential(*layers)


class ClassificationHead(Head):
    """Logits in training; class probabilities in the deployed model."""

    task = "classification"
    output_names = ("probabilities",)
    monitor, monitor_mode = "accuracy", "max"

    def __init__(self, feature_info: list[FeatureInfo], info: DataInfo, dropout: float, label_smoothing: float,
                 pool: str, hidden: list[int], topk: int):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ZooError(f"head.dropout={dropout} must be in [0, 1)")
        if not 0 <= label_smoothing < 1:
            raise ZooError(f"head.label_smoothing={label_smoothing} must be in [0, 1)")
        self.num_classes, self.label_smoothing, self.topk = info.num_classes, label_smoothing, topk
        self.pool, self.classifier = pooled_mlp(feature_info[-1], pool, hidden, dropout, self.num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.pool(features[-1]))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Soft targets (N, C) come from Mixup/CutMix; cross_entropy takes both forms.
        if targets.ndim == 2:
            targets = targets.float()
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def metrics(self):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

        c = self.num_classes
        metrics = {
            "accuracy": MulticlassAccuracy(num_classes=c, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes=c, average="macro"),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes=c),
        }
        k = min(self.topk, c - 1)
        if k > 1:
            metrics[f"top{k}_accuracy"] = MulticlassAccuracy(num_classes=c, top_k=k, average="micro")
        return MetricCollection(metrics)

    def postprocess(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.softmax(outputs, dim=1),)


@register.head("classification", tasks=("classification",))
def classification(feature_info: list, info: DataInfo, dropout: float = 0.0, label_smoothing: float = 0.0,
                   pool: Literal["avg", "max", "flatten"] = "avg", hidden: list[int] = (), topk: int = 5) -> Head:
    """Global pooling (or flatten), optional hidden layers, dropout and a linear classifier; label smoothing."""
    return ClassificationHead(feature_info, info, dropout, label_smoothing, pool, list(hidden), topk)
