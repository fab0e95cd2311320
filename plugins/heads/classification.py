"""Image classification: pool the deepest features, optional hidden layers, a linear classifier; or the
backbone's own pretrained classifier (timm's or torchvision's ImageNet head) with its own labels."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Range, register
from zoo.data import DataInfo
from zoo.errors import ZooError, unknown
from zoo.model import Backbone, FeatureInfo, Head
from zoo_plugins._shared import DropoutRate, pooled_mlp


class ClassificationHead(Head):
    """Logits in training; class probabilities in the deployed model."""

    task = "classification"
    output_names = ("probabilities",)
    monitor, monitor_mode = "accuracy", "max"
    global_linear = False  # one linear layer on globally pooled features: class-activation maps exist

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        dropout: float,
        label_smoothing: float,
        pool: str,
        hidden: list[int],
        topk: int,
    ):
        super().__init__()
        self._scoring(info.num_classes, label_smoothing, topk)
        self.pool, self.classifier = pooled_mlp(feature_info[-1], pool, hidden, dropout, self.num_classes)
        self.global_linear = pool != "flatten" and not hidden

    def _scoring(self, num_classes: int, label_smoothing: float, topk: int) -> None:
        """What the loss and the metrics need: the class count they score, label smoothing, top-k."""
        self.num_classes, self.label_smoothing, self.topk = num_classes, label_smoothing, topk

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.pool(features[-1]))

    def cam_weights(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The classifier's weight and bias when it is one linear layer on globally pooled features."""
        if not self.global_linear:
            return None
        linear = self.classifier[-1]
        return linear.weight, linear.bias

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
def classification(
    feature_info: list,
    info: DataInfo,
    dropout: DropoutRate = 0.0,
    label_smoothing: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.0,
    pool: Literal["avg", "max", "flatten"] = "avg",
    hidden: list[Annotated[int, Range(1)]] = (),
    topk: Annotated[int, Range(1)] = 5,
) -> Head:
    """Global pooling (or flatten), optional hidden layers, dropout and a linear classifier; label smoothing."""
    return ClassificationHead(feature_info, info, dropout, label_smoothing, pool, list(hidden), topk)


def _words(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def label_columns(classes: tuple[str, ...], labels: tuple[str, ...], synsets: tuple[str, ...]) -> list[int]:
    """Each dataset class's column among a pretrained classifier's labels: by synset id (n01443537), or by
    any of a label's comma-separated names ('tabby', 'tabby cat'), case and '_' aside."""
    if tuple(classes) == tuple(labels):
        return list(range(len(labels)))
    index: dict[str, int] = {}
    for i, (label, synset) in enumerate(zip(labels, synsets)):
        for key in [synset, *label.split(",")]:
            index.setdefault(_words(key), i)
    columns = []
    for c in classes:
        if _words(c) not in index:
            raise unknown(
                "pretrained label",
                c,
                sorted(index),
                see="class folders must be named as the pretrained labels (or their synset ids); "
                "for new labels use head=classification",
            )
        columns.append(index[_words(c)])
    return columns


class _OnColumns(nn.Module):
    """A MetricCollection updated on the dataset's columns of wider outputs."""

    def __init__(self, metrics, columns: torch.Tensor):
        super().__init__()
        self.inner, self.columns = metrics, columns

    def update(self, outputs, targets):
        self.inner.update(outputs[:, self.columns.to(outputs.device)], targets)

    def compute(self):
        return self.inner.compute()


class PretrainedClassifierHead(ClassificationHead):
    """The backbone's own classifier and labels (e.g. timm's or torchvision's 1000 ImageNet classes). The deployed model
    gives probabilities over all its labels; loss and metrics use the columns of the dataset's classes
    (the convention of ImageNet subsets such as ImageNet-R), so class folders name labels it knows."""

    def __init__(self, backbone: Backbone, info: DataInfo, label_smoothing: float, topk: int):
        Head.__init__(self)
        if not hasattr(backbone, "classifier"):
            raise ZooError(
                "head=pretrained_classifier needs a backbone with a classifier of its own (model=timm, "
                f"model=torchvision); "
                f"{type(backbone).__name__} has none: use head=classification"
            )
        self.tail, labels, synsets = backbone.classifier()
        self.labels = tuple(labels)
        self._backbone = [backbone]  # not a submodule: the model owns it
        columns = label_columns(info.classes, self.labels, tuple(synsets))
        self.register_buffer("columns", torch.tensor(columns), persistent=False)
        self._scoring(len(columns), label_smoothing, topk)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.tail(features[-1])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().loss(outputs[:, self.columns], targets)

    def metrics(self):
        return _OnColumns(super().metrics(), self.columns)

    def load_source(self, source: str) -> bool:
        """The classifier's pretrained weights, from the source the backbone loads its own from."""
        return self._backbone[0].load_classifier_source(self.tail, source)


@register.head("pretrained_classifier", tasks=("classification",))
def pretrained_classifier(
    feature_info: list,
    info: DataInfo,
    backbone: Backbone,
    label_smoothing: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.0,
    topk: Annotated[int, Range(1)] = 5,
) -> Head:
    """The backbone's own classifier with its own labels (timm's, torchvision's); data classes name labels it has."""
    return PretrainedClassifierHead(backbone, info, label_smoothing, topk)
