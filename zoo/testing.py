"""Test helpers for plugin packages: `check_plugin(kind, name, **params)` is what a package's own tests call.

It builds the plugin in the smallest experiment its kind needs, through the same builder training uses
(zoo.train.experiment.build_experiment), runs one training step (zoo.train.engine.train_step), exports the model to ONNX
and checks its parity with PyTorch (zoo.deploy.export.export_model), and returns a PluginReport. What it builds:

- architecture: with the default head on a tiny generated data set of a task it serves (classification
  first), at its declared min_size or 32 pixels, whichever is larger
- head: on the default architecture, with generated data of its task
- augmentation: applied to a generated sample of a task it serves, then in one training step
- transfer: set up on the default model, its `weights` (when it takes them and none is given) a checkpoint
  check_plugin writes itself from a freshly built model
- dataset: built with `params`, then the default architecture and a head of its task

Any problem is a ZooError (a plugin's own exception, the one-line PluginError naming it); nothing is
written outside a temporary folder.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data import DataBundle, DataInfo, Transformed, build_data, loader
from zoo.deploy.export import export_model
from zoo.errors import ZooError
from zoo.model import ZooModel, build_model, deployed_info, set_train_mode
from zoo.plugin import registry
from zoo.tasks import TABLE, TASKS
from zoo.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from zoo.train.config import compose, to_plain
from zoo.train.engine import train_step
from zoo.train.experiment import build_experiment
from zoo.train.schemas import GROUPS

KIND_GROUP = {kind: group for group, kind in GROUPS.items()}


@dataclass(frozen=True)
class PluginReport:
    """What check_plugin built and measured: the plugin, the task and input size it ran at, the training
    step's loss, the exported outputs' names and their largest |ONNX - PyTorch| difference, and the weights
    report of a transfer strategy's setup (None for other kinds)."""

    kind: str
    name: str
    package: str
    task: str
    input_size: tuple[int, int]
    loss: float
    outputs: tuple[str, ...]
    parity: dict[str, float]
    weights: dict | None = None


class _Samples(Dataset):
    """A list of (image, target) pairs."""

    def __init__(self, samples: list):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


def _boxes(classes: int, size: int, g: torch.Generator) -> dict:
    from torchvision import tv_tensors

    x0, y0 = (torch.rand(2, generator=g) * size / 2).tolist()
    box = torch.tensor([[x0, y0, x0 + size / 3, y0 + size / 3]])
    boxes = tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=(size, size))
    return {"boxes": boxes, "labels": torch.randint(0, classes, (1,), generator=g)}


# a random training target of each kind in the task table (zoo.tasks: Task.target), as that task's datasets give it
TARGETS = {
    "index": lambda classes, size, g: torch.randint(0, classes, (), generator=g),
    "values": lambda classes, size, g: torch.rand(classes, generator=g),
    "mask": lambda classes, size, g: torch.randint(0, classes, (size, size), generator=g),
    "boxes": _boxes,
}
FIRST_TASK = TASKS[0]  # classification: what the default experiment trains, and what plugins are tried on first


def generated_data(task: str, size: int = 32, channels: int = 3, images: int = 24, seed: int = 0) -> DataBundle:
    """A tiny random DataBundle of `task` (zoo.tasks): `images` images split 2:1:1, three classes (or two
    regression targets), targets as that task's datasets give them."""
    g = torch.Generator().manual_seed(seed)
    values = task in TABLE and TABLE[task].target == "values"
    classes = ("a", "b") if values else ("a", "b", "c")
    info = DataInfo(task, classes, channels, (size, size), (0.5,) * channels, (0.29,) * channels)  # checks the task
    target = TARGETS[TABLE[task].target]
    samples = [(torch.rand(channels, size, size, generator=g), target(len(classes), size, g)) for _ in range(images)]
    a, b = images // 2, images * 3 // 4
    return DataBundle(info, _Samples(samples[:a]), _Samples(samples[a:b]), _Samples(samples[b:]))


def _head_for(task: str, default: str) -> str:
    """The default head when it serves `task`, else the first head that does (zoo's own first)."""
    if registry.get("head", default).supports(task):
        return default
    heads = sorted(registry.registries["head"], key=lambda p: p.package != registry.STANDARD_PACKAGE)
    found = [p.qualified_name for p in heads if p.tasks and task in p.tasks]
    if not found:
        raise ZooError(f"no installed head serves task {task!r}; see: zoo list head")
    return found[0]


def _task_of(plugin: registry.Plugin) -> str:
    factory = plugin.resolve().factory  # a record from the plugin cache has none until its code is imported
    declared = getattr(factory, "task", "") if isinstance(factory, type) else ""
    if declared:
        return declared
    if plugin.tasks and FIRST_TASK not in plugin.tasks:
        return plugin.tasks[0]
    return FIRST_TASK


def _config(kind: str, name: str, params: dict) -> dict:
    """The default experiment's plain config with the plugin chosen and `params` set: no augmentation but the
    one under test, batches of 8, on the CPU (where the parity check runs)."""
    cfg = to_plain(compose([]))
    cfg["aug"] = {"ops": {name: dict(params)} if kind == "augmentation" else {}}
    if kind != "augmentation":
        cfg[KIND_GROUP[kind]] = {"name": name, **params}
    cfg["trainer"].update(batch_size=8, device="cpu", max_epochs=1)
    return cfg


def _write_checkpoint(cfg: dict, data: DataBundle, folder: Path) -> str:
    """A checkpoint of a freshly built model of `cfg`, for a transfer strategy to load."""
    source = {**cfg, "transfer": to_plain(compose([]))["transfer"]}
    model = build_model(source, data.info)
    path = folder / "source.pt"
    payload = {"format": CHECKPOINT_FORMAT, "config": source, "info": data.info.to_dict(), "model": model.state_dict()}
    save_checkpoint(path, payload)
    return str(path)


def _one_step(experiment, plugin: registry.Plugin) -> tuple[float, torch.Tensor]:
    """One training step on a batch (through the sample augmentations); the loss and test images."""
    train = Transformed(experiment.data.train, experiment.sample_transform)
    with plugin.blame("on a training sample") if plugin.kind == "augmentation" else contextlib.nullcontext():
        image, _ = train[0]
        shape = (experiment.info.channels, *experiment.info.size)
        if not isinstance(image, torch.Tensor) or tuple(image.shape) != shape:
            got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ZooError(f"augmentation {plugin.name!r} turned a {shape} image into {got}")
        x, y = next(iter(loader(train, experiment.cfg["trainer"]["batch_size"], True, 0, 0, drop_last=True)))
    experiment.transfer.on_epoch_start(0, experiment.model)
    set_train_mode(experiment.model)
    tcfg = experiment.cfg["trainer"]
    loss = train_step(
        experiment.model, x, y, experiment.optimizer(), tcfg, experiment.l1_params(), False,
        experiment.batch_transform, experiment.device,
    )  # fmt: skip
    if not math.isfinite(loss):
        raise ZooError(f"{plugin.kind} {plugin.name!r}: the training step's loss is {loss}")
    test = experiment.data.test
    return loss, torch.stack([test[i][0] for i in range(min(8, len(test)))])


def check_plugin(kind: str, name: str, **params: Any) -> PluginReport:
    """Build plugin `name` of `kind` with `params` in a small experiment, train one step, export it and check
    ONNX parity; return the report (see the module's docstring for what each kind is built with)."""
    plugin = registry.get(kind, name)
    cfg = _config(kind, name, params)
    if kind == "dataset":
        data = build_data(cfg, int(cfg["seed"]))
    else:
        task = _task_of(plugin) if kind in ("architecture", "head", "augmentation") else FIRST_TASK
        model = dict(cfg["model"])
        least = registry.get("architecture", model.pop("name")).min_size(model)
        data = generated_data(task, size=max(32, least or 0))
        cfg["data"] = {"name": "generated", "size": data.info.size[0]}
    if kind != "head":
        cfg["head"] = {"name": _head_for(data.info.task, cfg["head"]["name"])}
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as tmp:
        if kind == "transfer" and "weights" in {p.name for p in plugin.params} and "weights" not in params:
            cfg["transfer"]["weights"] = _write_checkpoint(cfg, data, Path(tmp))
        experiment = build_experiment(cfg, data)
        loss, x = _one_step(experiment, plugin)
        model: ZooModel = experiment.model.cpu().eval()
        card = export_model(model, deployed_info(model, data.info), cfg, Path(tmp) / "onnx", cfg["export"], x, kind)
    return PluginReport(
        kind,
        plugin.name,
        plugin.package,
        data.info.task,
        tuple(data.info.size),
        round(loss, 6),
        tuple(o["name"] for o in card["outputs"]),
        card["parity"]["max_abs_diff"],
        experiment.weights if kind == "transfer" else None,
    )
