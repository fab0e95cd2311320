"""Acme's zoo plugins: one of each kind. Importing this module registers them."""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from zoo import register
from zoo.data import DataBundle, DataInfo, TensorImages, channel_stats
from zoo.model import Backbone, Explainer, FeatureInfo, Head, Transfer

ZOO_PLUGIN_API = 2  # the zoo plugin API this package is written for


@register.architecture("acme_net")
class AcmeNet(Backbone):
    """Two conv stages, each returning a feature map."""

    def __init__(self, in_channels: int, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.deep = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.feature_info = [FeatureInfo(width, 2), FeatureInfo(2 * width, 4)]

    def forward(self, x):
        shallow = self.stem(x)
        return [shallow, self.deep(shallow)]

    def stages(self):
        return [self.stem, self.deep]


@register.head("acme_linear", tasks=("classification",))
class AcmeLinear(Head):
    """Average-pool the deepest features, then one linear layer."""

    task = "classification"
    output_names = ("probabilities",)
    monitor, monitor_mode = "accuracy", "max"

    def __init__(self, feature_info: list, info: DataInfo, dropout: float = 0.0):
        super().__init__()
        self.num_classes = info.num_classes
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_info[-1].channels, info.num_classes))

    def forward(self, features):
        return self.fc(features[-1].mean(dim=(2, 3)))

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def metrics(self):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        return MetricCollection({"accuracy": MulticlassAccuracy(num_classes=self.num_classes, average="micro")})

    def postprocess(self, outputs):
        return (outputs.softmax(dim=1),)


@register.augmentation("acme_invert", tasks=("classification", "regression", "segmentation", "detection"))
def acme_invert(info: DataInfo, p: float = 0.5) -> v2.Transform:
    """Invert pixel values (x -> 1 - x) with probability p."""
    return v2.RandomInvert(p)


class FreezeStem(Transfer):
    """Train everything but the first stage."""

    def setup(self, model):
        for param in model.backbone.stages()[0].parameters():
            param.requires_grad_(False)


@register.transfer("acme_freeze_stem")
def acme_freeze_stem() -> Transfer:
    """Freeze the backbone's first stage; train the rest from scratch."""
    return FreezeStem()


@register.dataset("acme_bars")
def acme_bars(seed: int, size: int = 32, images: int = 300, generator_seed: int = 0) -> DataBundle:
    """Horizontal or vertical bars on noise: a two-class toy dataset, generated."""
    g = torch.Generator().manual_seed(generator_seed)
    x = torch.rand(images, 1, size, size, generator=g) * 0.3
    y = torch.randint(0, 2, (images,), generator=g)
    for i in range(images):
        at = int(torch.randint(2, size - 6, (), generator=g))
        if y[i] == 0:
            x[i, 0, at : at + 4, :] = 1.0
        else:
            x[i, 0, :, at : at + 4] = 1.0
    a, b = int(images * 0.7), int(images * 0.85)
    mean, std = channel_stats(x[:a])
    info = DataInfo("classification", ("horizontal", "vertical"), 1, (size, size), mean, std)
    return DataBundle(info, TensorImages(x[:a], y[:a]), TensorImages(x[a:b], y[a:b]), TensorImages(x[b:], y[b:]))


@register.interpretation("acme_contrast", tasks=("classification",))
class ContrastDrop(Explainer):
    """How much each image's top class probability drops when its contrast is scaled by `factor`."""

    def __init__(self, factor: float = 0.5):
        self.factor = factor

    def explain(self, subject, output):
        from matplotlib.figure import Figure

        x = subject.images
        dull = x.mean(dim=(1, 2, 3), keepdim=True) + self.factor * (x - x.mean(dim=(1, 2, 3), keepdim=True))
        with torch.no_grad():
            before = subject.model(x).softmax(1)
            after = subject.model(dull).softmax(1)
        top = before.argmax(1)
        drop = (before.gather(1, top[:, None]) - after.gather(1, top[:, None]))[:, 0].tolist()
        fig = Figure(figsize=(6, 3), layout="constrained")
        ax = fig.subplots()
        ax.bar(subject.names, drop)
        ax.set(ylabel="drop in top probability", title=f"contrast x{self.factor}")
        fig.savefig(output / "contrast.png")
        return {"drop": [round(d, 4) for d in drop]}
