"""The Backbone / Head / Transfer contracts, and ZooModel = normalisation + backbone + head."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
from torch import nn

from zoo.errors import ZooError


@dataclass(frozen=True)
class FeatureInfo:
    """One feature level of a backbone: channels, stride (input size / feature size), and the
    spatial size it has at the experiment's input size (filled in by zoo after a probe)."""

    channels: int
    stride: int
    size: tuple[int, int] | None = None


class Backbone(nn.Module):
    """A feature extractor: `forward(x) -> list[Tensor]` of feature maps, shallow to deep.

    Subclasses set `self.feature_info` (one FeatureInfo per returned map, same order) and implement
    `stages()`, the parameter groups shallow to deep used for freezing and per-stage learning rates.
    """

    feature_info: list[FeatureInfo]

    def stages(self) -> list[nn.Module]:
        """Modules whose parameters form each stage, shallow to deep."""
        raise NotImplementedError

    def load_pretrained(self) -> None:
        """Load the architecture's own pretrained weights (from a hub); not all backbones have them."""
        raise ZooError(f"{type(self).__name__} has no pretrained weights of its own; give a checkpoint as the weight source")


class Head(nn.Module):
    """A task head built from the backbone's feature_info and the dataset's DataInfo.

    `forward(features)` gives the raw outputs the loss needs; `postprocess(outputs)` gives the deployed
    model's outputs (named by `output_names`), and is exported in the same ONNX graph.
    """

    task: str = ""
    output_names: tuple[str, ...] = ()

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss for a batch."""
        raise NotImplementedError

    def metrics(self):
        """A torchmetrics MetricCollection that takes `update(outputs, targets)`."""
        raise NotImplementedError

    def postprocess(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """What the deployed model returns."""
        raise NotImplementedError

    monitor: str = "loss"
    monitor_mode: str = "min"


class Transfer:
    """A transfer strategy: weights in, what is frozen, parameter groups and learning rates, phases."""

    def setup(self, model: "ZooModel") -> None:
        """Load weights and freeze what the strategy freezes, before training starts."""

    def param_groups(self, model: "ZooModel", lr: float) -> list[dict]:
        """Optimizer parameter groups: dicts with 'params' and 'lr' (trainable parameters only)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def on_epoch_start(self, epoch: int, model: "ZooModel") -> bool:
        """Change phase at the start of `epoch`; return True when the optimizer must be rebuilt."""
        return False


class Normalize(nn.Module):
    """(x - mean) / std inside the graph, so every client feeds plain [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ZooModel(nn.Module):
    """normalise -> backbone -> head; forward returns the head's raw outputs."""

    def __init__(self, backbone: Backbone, head: Head, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(self.backbone(self.normalize(x)))


class DeployModel(nn.Module):
    """The exported graph: ZooModel plus the head's postprocess."""

    def __init__(self, model: ZooModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model.head.postprocess(self.model(x))
        return out[0] if len(out) == 1 else out


def probe_features(backbone: Backbone, channels: int, size: tuple[int, int], where: str) -> list[FeatureInfo]:
    """Run one input through the backbone to check feature_info and record each level's size."""
    info = getattr(backbone, "feature_info", None)
    if not info or not all(isinstance(f, FeatureInfo) for f in info):
        raise ZooError(f"{where}: the backbone does not report feature_info (a list of zoo.model.FeatureInfo)")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            feats = backbone(torch.zeros(1, channels, *size))
    except RuntimeError as e:
        raise ZooError(f"{where} cannot take a {channels}x{size[0]}x{size[1]} input: {str(e).splitlines()[0]}") from None
    finally:
        backbone.train(was_training)
    if len(feats) != len(info):
        raise ZooError(f"{where}: the backbone returned {len(feats)} feature maps but reports {len(info)} in feature_info")
    out = []
    for i, (f, fi) in enumerate(zip(feats, info)):
        if f.shape[1] != fi.channels:
            raise ZooError(f"{where}: feature level {i} has {f.shape[1]} channels but feature_info says {fi.channels}")
        out.append(replace(fi, size=(int(f.shape[2]), int(f.shape[3]))))
    return out


def build_model(cfg: dict, info) -> ZooModel:
    """Build backbone and head from a plain config dict (`model`, `head` nodes) and a DataInfo."""
    from zoo import registry

    mcfg, hcfg = dict(cfg["model"]), dict(cfg["head"])
    arch = registry.get("architecture", mcfg.pop("name"))
    backbone = arch.build({"in_channels": info.channels}, mcfg, where="model")
    backbone.feature_info = probe_features(backbone, info.channels, tuple(info.size), f"model={arch.name}")
    head_plugin = registry.get("head", hcfg.pop("name"))
    if not head_plugin.supports(info.task):
        raise ZooError(f"head={head_plugin.name} does not serve task {info.task!r} of data={cfg['data']['name']}")
    head = head_plugin.build({"feature_info": list(backbone.feature_info), "info": info}, hcfg, where="head")
    if head.task and head.task != info.task:
        raise ZooError(f"head={head_plugin.name} is a {head.task} head but data={cfg['data']['name']} is a {info.task} dataset")
    return ZooModel(backbone, head, info.mean, info.std)
