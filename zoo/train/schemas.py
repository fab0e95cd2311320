"""The config's shape: zoo's own structured nodes (trainer, export), the top level, and a plugin's node.

Every registered plugin becomes a config-group option whose node is a dataclass made from the factory's
signature (`plugin_schema`), so `model.padding_mode=reflect` is type-checked with no YAML file. zoo's own nodes
declare their constraints on their fields with `declared(default, Range(...) or Literal[...])`; zoo.train.config
checks them with the registry's code, as it checks plugins' parameters.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from zoo.errors import ZooError
from zoo.params import REQUIRED, NonEmpty, Range
from zoo.tasks import EXTRAS

# config group -> plugin kind; `aug` holds a dict of augmentation ops instead of one plugin.
GROUPS = {"data": "dataset", "model": "architecture", "head": "head", "transfer": "transfer"}
ALL_GROUPS = ("data", "model", "head", "aug", "transfer", "trainer", "export", "experiment")


def declared(default: Any, *constraints: Any, check: Any = None) -> Any:
    """A schema field whose value zoo checks like a plugin parameter: `Range(...)` or `Literal[...]` (on each
    item of a list field); `check`, a function of (value, key) that raises ZooError, for a value no type and
    range describe (`auto` or a count)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"zoo": constraints, "check": check})
    return field(default=default, metadata={"zoo": constraints, "check": check})


def _auto_or_count(value: Any, key: str) -> None:
    if not (value == "auto" or (isinstance(value, str) and value.isdigit())):
        raise ZooError(f"{key}={value!r} must be auto or a whole number >= 0")


_POSITIVE, _AT_LEAST_0, _FRACTION = Range(0, min_exclusive=True), Range(0), Range(0, 1)


@dataclass
class TrainerConfig:
    """The training loop's settings (OmegaConf sees the plain types; check() enforces what `declared` adds)."""

    max_epochs: int = declared(30, _AT_LEAST_0)
    batch_size: int = declared(64, Range(1))
    eval_batch_size: int = declared(256, Range(1))
    optimizer: str = declared("adamw", Literal["adamw", "sgd"])
    lr: float = declared(3e-3, _POSITIVE)
    momentum: float = declared(0.9, Range(0, 1, max_exclusive=True))  # SGD momentum; 1 never forgets
    weight_decay: float = declared(1e-4, _AT_LEAST_0)  # L2 (decoupled in AdamW); not on biases and norm weights
    l1: float = declared(0.0, _AT_LEAST_0)  # L1 penalty on weights, added to the loss
    scheduler: str = declared("cosine", Literal["cosine", "step", "none"])
    warmup_epochs: int = declared(0, _AT_LEAST_0)
    step_size: int = declared(10, Range(1))  # step scheduler: epochs between decays
    gamma: float = declared(0.1, Range(0, 1, min_exclusive=True))  # step scheduler: decay factor
    grad_clip: float = declared(0.0, _AT_LEAST_0)  # max gradient norm; 0 = off
    monitor: str = declared("auto", NonEmpty())  # a validation metric name, or auto (the head's own choice)
    patience: int = declared(0, _AT_LEAST_0)  # early stopping after this many epochs without improvement; 0 = off
    # DataLoader worker processes; auto: as many as pay on this device and data (zoo.train.accel.resolve_workers)
    num_workers: str = declared("auto", check=_auto_or_count)
    threads: int = declared(0, _AT_LEAST_0)  # CPU threads for torch's ops; 0 = torch's default. 1 per job in sweeps
    device: str = declared("auto", Literal["auto", "cpu", "cuda"])
    # autocast's compute precision; weights, checkpoints and exports stay float32. 16-mixed adds a GradScaler
    precision: str = declared("32", Literal["32", "bf16-mixed", "16-mixed"])
    channels_last: bool = False  # NHWC memory format for model and batches (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the model (a one-off compilation before the first steps)
    devices: int = declared(1, Range(1))  # N > 1: `zoo train` starts torchrun with N processes (DDP) on this machine
    progress: bool = True
    resume: bool = False  # continue from checkpoints/last.pt in the run directory, if there is one
    logger: str = declared("none", Literal["none", "csv", "tensorboard"])  # stream the scalars while training


@dataclass
class ExportConfig:
    """ONNX export settings."""

    # zoo exports opset 17 to 20 (torch's TorchScript exporter writes up to 20); the uint8 input form needs 18
    opset: int = declared(18, Range(17, 20))
    # uint8: the graph takes decoded RGB pixels and resizes, converts and scales them itself (zoo.deploy.preprocess);
    # float32: the client resizes and scales to [0, 1] (the form of zoo's exports before zoo.format 3)
    input: str = declared("uint8", Literal["uint8", "float32"])
    parity_tolerance: float = declared(1e-4, _AT_LEAST_0)  # float outputs: max |ONNX - PyTorch| (relative above 1)
    parity_mismatch: float = declared(0.001, _FRACTION)  # integer outputs: the fraction of elements allowed to differ
    parity_samples: int = declared(64, Range(1))  # test images the parity check and the golden vectors use
    # fp32; fp16 (half-precision graph, float32 input and outputs); int8 (static QDQ quantization, gated by the
    # run's monitored test metric)
    precision: str = declared("fp32", Literal["fp32", "fp16", "int8"])
    max_metric_drop: float = declared(0.01, _AT_LEAST_0)  # int8: the most the monitored test metric may worsen
    calibration_samples: int = declared(256, Range(1))  # int8: train images that calibrate activation ranges
    # int8: how onnxruntime picks activation ranges from the calibration images
    calibration_method: str = declared("minmax", Literal["minmax", "entropy", "percentile"])
    # extra outputs after the task's own (zoo.tasks.EXTRAS): penultimate embeddings, class-activation maps
    outputs: list[str] = declared([], Literal[tuple(EXTRAS)])
    # how the uint8 graph (or the float32 form's client) fits an image to the network's size: resize (the whole image,
    # stretched), crop (resized keeping the aspect ratio to cover size / crop_pct, then the centre: the eval transform
    # of torchvision's and timm's weights); auto: crop for a model used as its weights are (their own classifier and
    # labels, and a crop_pct with them) or when export.crop_pct is given, else resize (zoo.deploy.export.crop_cover)
    fit: str = declared("auto", Literal["auto", "resize", "crop"])
    # fit=crop: size / the side before the crop (224 / 256 = 0.875), in (0, 1]; 0: the weights' own (none given)
    crop_pct: float = declared(0.0, _FRACTION)


# config node -> its schema: check() refuses keys the schema does not define (`+trainer.lrr=0.5`)
STRUCTURED = {"trainer": TrainerConfig, "export": ExportConfig}


@dataclass
class Config:
    """The top level: one node per group, plus the seed."""

    seed: int = 0
    data: Any = None
    model: Any = None
    head: Any = None
    aug: Any = None
    transfer: Any = None
    trainer: Any = None
    export: Any = None


@dataclass
class AugConfig:
    """An ordered dict of augmentation name -> its parameters."""

    ops: Any = field(default_factory=dict)


def omegaconf_node(schema: type) -> type:
    """`schema` as OmegaConf is given it: a bool field untyped, so OmegaConf's lenient conversion (2, 'yes' and
    'on' to true) never runs and zoo's check refuses a number where a bool belongs (`trainer.resume=2`)."""
    hints = typing.get_type_hints(schema)
    if bool not in hints.values():
        return schema
    fields = [(f.name, Any if hints[f.name] is bool else hints[f.name], f) for f in dataclasses.fields(schema)]
    return dataclasses.make_dataclass(schema.__name__, fields, namespace={"__doc__": schema.__doc__})


def _omegaconf_type(p) -> Any:
    base = Any if p.base is bool else p.base  # a bool is checked by zoo, not converted by OmegaConf (above)
    t = list[base] if p.is_list else base  # type: ignore[valid-type]
    return Optional[t] if p.optional or p.default is None else t


def plugin_schema(plugin, name: str | None = None) -> type:
    """A dataclass for a plugin's node: `name` (how it was chosen) plus one typed field per parameter."""
    from omegaconf import MISSING

    fields: list = [("name", str, field(default=name or plugin.name))]
    for p in plugin.params:
        if p.default is REQUIRED:
            default = field(default=MISSING)
        elif isinstance(p.default, list):
            default = field(default_factory=lambda v=p.default: list(v))
        else:
            default = field(default=p.default)
        fields.append((p.name, _omegaconf_type(p), default))
    cls_name = re.sub(r"\W", "_", f"{plugin.kind}_{plugin.package}_{name or plugin.name}")
    return dataclasses.make_dataclass(cls_name, fields)
