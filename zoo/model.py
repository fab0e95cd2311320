"""The Backbone / Head / Transfer contracts, and ZooModel = normalisation + backbone + head."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from zoo import tasks
from zoo.errors import ZooError
from zoo.plugin import registry


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

    weight_sources: tuple[str, ...] = ()  # the forms of transfer.weights load_source() takes, for error messages

    def load_source(self, source: str) -> dict | None:
        """Load the weights `source` names when it is one of this architecture's own sources (a hub, a
        local copy of a hub's file); return the input statistics they expect ({"mean", "std"}, or {} for
        none), or None when `source` is not one of them (zoo then reads it as a checkpoint or run directory)."""
        return None


class Head(nn.Module):
    """A task head built from the backbone's feature_info and the dataset's DataInfo.

    `forward(features)` gives the raw outputs the loss needs; `postprocess(outputs)` gives the deployed
    model's outputs, and is exported in the same ONNX graph. `output_names` are the head's own names for
    them, matched by position to the roles of its task in zoo.tasks (required roles first, then optional);
    dtypes, ranks and dynamic axes come from that table.
    """

    task: str = ""
    output_names: tuple[str, ...] = ()
    dynamic_size: bool = False  # True: the exported model takes any height and width (segmentation)
    wants_input_size: bool = False  # True: forward(features, size) also gets the input's (h, w) (dense outputs)

    def prepare(self, data) -> None:
        """Look at the training data (a zoo.data.DataBundle) once before training, e.g. for target
        statistics kept as buffers; called by the engine, not on export (buffers travel in checkpoints)."""

    def load_source(self, source: str) -> bool:
        """Load this head's part of the weights a backbone source names (a head that is the backbone's own
        pretrained classifier); True when it loaded them. Other heads start fresh."""
        return False

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss for a batch."""
        raise NotImplementedError

    def metrics(self):
        """A torchmetrics MetricCollection that takes `update(outputs, targets)`."""
        raise NotImplementedError

    def postprocess(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """What the deployed model returns."""
        raise NotImplementedError

    def output_semantics(self) -> dict[str, Any]:
        """What the deployed outputs mean beyond the task's table, for the export metadata's `postprocessing`
        (zoo.format): e.g. a detector's NMS settings {"nms": {"score_threshold": ..., ...}}. Default: nothing."""
        return {}

    def cam_weights(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(weight (K, C), bias (K,)) of the one linear map this head applies to the globally pooled deepest
        feature map (C channels) to give its K scores, or None when it is not such a head (hidden layers, no
        global pooling): class-activation maps (`export.outputs=[cam]`) apply it at each location."""
        return None

    monitor: str = "loss"
    monitor_mode: str = "min"


class Transfer:
    """A transfer strategy: weights in, what is frozen, parameter groups and learning rates, phases.

    Set `cache_features = True` when the whole backbone stays frozen and unaugmented: the engine then
    computes its features once and trains the head on the cache.
    """

    cache_features: bool = False

    def setup(self, model: ZooModel) -> dict | None:
        """Load weights and freeze what the strategy freezes, before training starts; may return a
        report (what was loaded) that the run records in metrics.json."""
        return None

    def param_groups(self, model: ZooModel, lr: float) -> list[dict]:
        """Optimizer parameter groups: dicts with 'params' and 'lr' (trainable parameters only)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def on_epoch_start(self, epoch: int, model: ZooModel) -> bool:
        """Change phase at the start of `epoch`; return True when the optimizer must be rebuilt."""
        return False


class Explainer:
    """An interpretation method (`zoo explain METHOD`): looks at a trained model and draws what it sees.

    `explain(subject, output)` writes PNG files into the folder `output` and returns a JSON-able summary;
    `subject` (zoo.report.explain.Subject) holds the model in eval mode, its DataInfo, the images to explain
    (N, C, H, W in [0, 1], with their names) and the run's data on request. Declare the tasks a method
    can explain with `register.interpretation(name, tasks=(...))`.
    """

    def explain(self, subject, output) -> dict:
        """Write the pictures into `output`; return what they show as plain data."""
        raise NotImplementedError


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
        features = self.backbone(self.normalize(x))
        if self.head.wants_input_size:  # dense heads: outputs at the input's size, which features cannot always tell
            return self.head(features, x.shape[-2:])
        return self.head(features)


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
        raise ZooError(
            f"{where} cannot take a {channels}x{size[0]}x{size[1]} input: {str(e).splitlines()[0]}"
        ) from None
    finally:
        backbone.train(was_training)
    if len(feats) != len(info):
        raise ZooError(
            f"{where}: the backbone returned {len(feats)} feature maps but reports {len(info)} in feature_info"
        )
    out = []
    for i, (f, fi) in enumerate(zip(feats, info)):
        if f.shape[1] != fi.channels:
            raise ZooError(f"{where}: feature level {i} has {f.shape[1]} channels but feature_info says {fi.channels}")
        out.append(replace(fi, size=(int(f.shape[2]), int(f.shape[3]))))
    return out


def check_architecture(cfg: dict, task: str | None, size) -> None:
    """The architecture `cfg['model']` names serves `task` and takes inputs of `size` ((h, w) or one int), as
    it declared when it registered (`tasks=`, `min_size=`); either may be None (not known yet): one line if not."""
    mcfg = dict(cfg["model"])
    arch = registry.get("architecture", mcfg.pop("name"))
    if task is not None and not arch.supports(task):
        raise ZooError(
            f"model={arch.name} does not serve task {task!r} of data={cfg['data']['name']}; "
            f"it serves: {', '.join(arch.tasks)}"
        )
    least = arch.min_size(arch.check_values(mcfg, "model")) if size is not None else None
    if least is not None:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if min(h, w) < least:
            raise ZooError(
                f"model={arch.name} needs inputs of at least {least}x{least} pixels but data={cfg['data']['name']} "
                f"gives {h}x{w}; use a larger size or another model (see: zoo list architecture {arch.name})"
            )


PARAM_BUDGET = 50_000_000  # parameters in a backbone; an architecture may declare more (max_params=)
ACTIVATION_BUDGET = 2**28  # values one image's pass through a backbone produces (1 GiB of float32; max_activations=)


def _meta_backbone(arch, context: dict, values: dict):
    """The backbone built on PyTorch's meta device (shapes without memory or initialisation), or None where the
    plugin cannot be built that way (its real build is then the one that counts)."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what the build would warn of, it warns of again when it is real
            return arch.factory(**values, **{c: context[c] for c in arch.context})
    except Exception:
        return None


def _activations(backbone: nn.Module, channels: int, size: tuple[int, int]) -> int | None:
    """How many values every module's output holds in one image's forward pass, on the meta device; None when
    the backbone does not run there."""
    total = [0]

    def count(_module, _inputs, output) -> None:
        outs = output if isinstance(output, (list, tuple)) else [output]
        total[0] += sum(o.numel() for o in outs if isinstance(o, torch.Tensor))

    hooks = [m.register_forward_hook(count) for m in backbone.modules()]
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, channels, *size, device="meta"))
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def check_budget(arch, mcfg: dict, info) -> None:
    """Refuse, before building it, a backbone far larger than zoo builds (`model.kernel_size=99` makes a 100M
    parameter cnn that runs minutes an epoch): its parameters and one image's activations, counted on the meta
    device, against PARAM_BUDGET and ACTIVATION_BUDGET or what the architecture declares (`max_params=`,
    `max_activations=`)."""
    values = arch.check_values(mcfg, "model")
    backbone = _meta_backbone(arch, {"in_channels": info.channels}, values)
    if backbone is None:
        return
    changed = [f"model.{k}={v}" for k, v in values.items() if v != arch.defaults().get(k)]
    given = f" with {', '.join(changed)}" if changed else ""
    limits = (
        ("parameters", sum(p.numel() for p in backbone.parameters()), "max_params", PARAM_BUDGET),
        ("activation values per image", None, "max_activations", ACTIVATION_BUDGET),
    )
    for what, count, key, default in limits:
        count = count if count is not None else _activations(backbone, info.channels, tuple(info.size))
        budget = int(arch.extra.get(key) or default)
        if count is not None and count > budget:
            raise ZooError(
                f"model={arch.name}{given} at {info.channels}x{info.size[0]}x{info.size[1]} would have "
                f"{count / 1e6:.1f}M {what}, over zoo's budget of {budget / 1e6:.1f}M for it; choose smaller "
                f"settings (see: zoo list architecture {arch.name})"
            )


def build_model(cfg: dict, info) -> ZooModel:
    """Build backbone and head from a plain config dict (`model`, `head` nodes) and a DataInfo."""
    mcfg, hcfg = dict(cfg["model"]), dict(cfg["head"])
    arch = registry.get("architecture", mcfg.pop("name"))
    check_architecture(cfg, info.task, tuple(info.size))
    check_budget(arch, mcfg, info)
    backbone = arch.build({"in_channels": info.channels}, mcfg, where="model")
    with arch.blame("on a probe input"):
        backbone.feature_info = probe_features(backbone, info.channels, tuple(info.size), f"model={arch.name}")
    head_plugin = registry.get("head", hcfg.pop("name"))
    if not head_plugin.supports(info.task):
        raise ZooError(f"head={head_plugin.name} does not serve task {info.task!r} of data={cfg['data']['name']}")
    head = head_plugin.build(
        {"feature_info": list(backbone.feature_info), "info": info, "backbone": backbone}, hcfg, where="head"
    )
    if head.task and head.task != info.task:
        raise ZooError(
            f"head={head_plugin.name} is a {head.task} head but data={cfg['data']['name']} is a {info.task} dataset"
        )
    tasks.match(head.task or info.task, head.output_names, f"head={head_plugin.name}")  # its outputs fit the task
    return ZooModel(backbone, head, info.mean, info.std)


def deployed_info(model: ZooModel, info):
    """The DataInfo a trained model carries into checkpoints and exports: its head's own labels when it
    has them (a pretrained classifier), and the input statistics and centre crop (`crop_pct`, set by
    zoo.train.checkpoint when it loads weights that state one) of the weights it holds."""
    labels = getattr(model.head, "labels", None)
    stats = [tuple(round(v, 6) for v in t.flatten().tolist()) for t in (model.normalize.mean, model.normalize.std)]
    crop = getattr(model, "crop_pct", None)
    crop = info.crop_pct if crop is None else crop
    return replace(info, classes=tuple(labels) if labels else info.classes, mean=stats[0], std=stats[1], crop_pct=crop)


def freeze(module: nn.Module, frozen: bool = True) -> None:
    """Set requires_grad on every parameter of `module`."""
    for p in module.parameters():
        p.requires_grad_(not frozen)


def set_train_mode(model: ZooModel) -> None:
    """model.train(), except that fully frozen backbone stages stay in eval mode: their batch-norm
    statistics stay those of the weights they were loaded with."""
    model.train()
    trainable = {p.requires_grad for p in model.backbone.parameters()}
    if trainable == {False}:  # frozen whole (frozen base, a fine-tune's head phase): no need to ask for stages
        model.backbone.eval()
    if len(trainable) < 2:
        return
    for stage in model.backbone.stages():
        params = list(stage.parameters())
        if params and not any(p.requires_grad for p in params):
            stage.eval()
