"""One Experiment: a validated config built into data, model, transfer, augmentations and optimizer.

Training (zoo.train.engine), the benchmarks (zoo.bench) and the pre-flight check of `zoo train` all build through
`build_experiment`, so what they run cannot drift apart. Nothing here writes to disk.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from zoo.data import BatchTransform, DataBundle, DataInfo, build_augmentations, build_data
from zoo.errors import ZooError
from zoo.model import Transfer, ZooModel, build_model, check_architecture
from zoo.plugin import registry
from zoo.train.accel import resolve_workers
from zoo.train.datacheck import check_before_training

log = logging.getLogger("zoo")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """auto -> cuda when usable, else cpu; asking for cuda without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ZooError("trainer.device=cuda but no CUDA device is usable here; use trainer.device=auto or cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def make_optimizer(model: ZooModel, transfer: Transfer, tcfg: dict) -> torch.optim.Optimizer:
    """Parameter groups from the transfer strategy, each split so biases and norms get no weight decay."""
    groups = []
    for g in transfer.param_groups(model, tcfg["lr"]):
        params = [p for p in g["params"] if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for ps, wd in ((decay, tcfg["weight_decay"]), (no_decay, 0.0)):
            if ps:
                groups.append({**g, "params": ps, "weight_decay": wd, "base_lr": g["lr"]})
    if not groups:
        raise ZooError("nothing to train: the transfer strategy froze every parameter")
    if tcfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=tcfg["lr"], momentum=tcfg["momentum"], nesterov=tcfg["momentum"] > 0)
    return torch.optim.AdamW(groups, lr=tcfg["lr"])


def metric_mode(model: ZooModel, name: str) -> str:
    """'min' or 'max': whether a lower or a higher value of validation metric `name` is better, as the head's
    torchmetrics declare it (`higher_is_better`); the loss is minimised."""
    head = model.head
    if name == "loss":
        return "min"
    if name == head.monitor:
        return head.monitor_mode
    metrics = head.metrics()
    members = dict(metrics.items()) if hasattr(metrics, "items") else {type(metrics).__name__: metrics}
    # an exact name; or the metric whose compute() returns `name` among several values (map -> map_75)
    owner = members.get(name)
    owner = owner or next((m for k, m in members.items() if name.startswith(f"{k}_")), None)
    owner = owner or (next(iter(members.values())) if len(members) == 1 else None)
    better = getattr(getattr(owner, "wrapped_metric", owner), "higher_is_better", None)
    if better is None:
        valid = ["loss", *(k for k, m in members.items() if getattr(m, "higher_is_better", None) is not None)]
        raise ZooError(f"trainer.monitor={name!r} is not a validation metric; valid: {', '.join(sorted(valid))}")
    return "max" if better else "min"


def _height_width(size) -> tuple[int, int] | None:
    """(h, w) of a size given as an int, [s], [h, w] or [c, h, w]; None for anything else."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, (list, tuple)) and 1 <= len(size) <= 3 and all(isinstance(v, int) for v in size):
        return (size[0], size[0]) if len(size) == 1 else (size[-2], size[-1])
    return None


def check_weights(cfg: dict) -> dict | None:
    """The pre-flight of the transfer's weights, before any data is read or downloaded: the architecture's
    `weights_check` (declared when it registers) says in one line when its own weights cannot be had here
    (offline, not in the cache), and returns the input {"mean", "std", "size"} they expect; None when the
    architecture declares no check or the source is not its own (a run directory, a checkpoint). A data.size
    that differs from the weights' size is worth one warning, not a refusal."""
    source = cfg["transfer"].get("weights")
    if source in (None, "", "none"):
        return None
    declared = registry.declared_hook("architecture", cfg["model"], "weights_check", "model")
    if declared is None:
        return None
    arch, check, values = declared
    with arch.blame("in its weights_check"):
        expected = check(values, str(source))
    wanted, given = _height_width((expected or {}).get("size")), _height_width(cfg["data"].get("size"))
    if wanted and given and wanted != given:
        log.warning(
            "transfer.weights=%s: model=%s's weights were trained at %dx%d but data.size gives %dx%d; they may do "
            "better at their own size (data.size=%d)",
            source, arch.name, *wanted, *given, wanted[0],
        )  # fmt: skip
    return expected


@dataclass
class Experiment:
    """What one run trains: its plain config, data, model (on its device), transfer strategy with the weights
    report of its setup, and the sample and batch augmentations."""

    cfg: dict
    data: DataBundle
    model: ZooModel
    transfer: Transfer
    weights: dict | None
    sample_transform: Callable | None
    batch_transform: BatchTransform | None
    device: torch.device

    @property
    def info(self) -> DataInfo:
        """The dataset's DataInfo."""
        return self.data.info

    def optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer over what is trainable now (a transfer phase change calls for a new one)."""
        return make_optimizer(self.model, self.transfer, self.cfg["trainer"])

    def l1_params(self) -> list[torch.nn.Parameter]:
        """The trainable weights (not biases or norms) the L1 penalty applies to; empty when trainer.l1 is 0."""
        if not self.cfg["trainer"]["l1"] > 0:
            return []
        return [p for p in self.model.parameters() if p.ndim > 1 and p.requires_grad]

    def monitor(self) -> tuple[str, str]:
        """The validation metric that picks the best checkpoint and stops early, and 'min' or 'max'."""
        name = self.cfg["trainer"]["monitor"]
        name = self.model.head.monitor if name == "auto" else name
        return name, metric_mode(self.model, name)


def build_experiment(cfg: dict, data: DataBundle | None = None) -> Experiment:
    """Build the experiment a plain, validated config describes: seed, data (once; `data` when given, as
    zoo.testing gives its generated data), model, transfer strategy (its weights loaded and its parts frozen),
    augmentations, all on the configured device."""
    tcfg, seed = cfg["trainer"], int(cfg["seed"])
    if tcfg["threads"]:  # several jobs on one machine: torch's default of a thread per core oversubscribes it
        torch.set_num_threads(tcfg["threads"])
    seed_everything(seed)
    device = pick_device(tcfg["device"])
    size = cfg["data"].get("size")  # a dataset's `size` parameter, where it has one, is its input size
    pair = isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)
    fits = isinstance(size, int) or pair
    check_architecture(cfg, None, size if fits else None)  # before the data is built: it may take long
    check_weights(cfg)  # so are the weights: an offline run without them stops before any download
    if data is None:
        data = build_data(cfg, seed)
        check_before_training(cfg, data)  # the cheap data checks: a bad label stops here, not in an epoch
    if len(data.train) == 0 or len(data.val) == 0:
        raise ZooError(f"data={cfg['data']['name']} has an empty train or val split")
    model = build_model(cfg, data.info)
    with registry.get("head", cfg["head"]["name"]).blame("in prepare(data)"):
        model.head.prepare(data)
    params = dict(cfg["transfer"])
    transfer = registry.get("transfer", params.pop("name"))
    strategy = transfer.build({}, params, where="transfer")
    with transfer.blame("in setup(model)"):
        weights = strategy.setup(model)
    # the batchable ops (flips, affine warps) run on the batch where it trains (the GPU), or in the main process
    # when nothing else would run them; on a CPU with loader workers they run per sample in the workers, which
    # otherwise sit idle while the main process warps float batches (as torchvision's loaders do)
    setting = tcfg.get("num_workers", "auto")
    # auto: a split zoo may hold in memory (cacheable) gets no workers once cached (zoo.train.accel), so its ops
    # stay on the batch; the cache is decided after this, when training starts
    cached = str(setting) == "auto" and getattr(data.train, "cacheable", False)
    workers = 0 if cached else resolve_workers(setting, data.train, device)
    sample_tf, batch_tf = build_augmentations(cfg["aug"], data.info, on_device=device.type == "cuda" or workers == 0)
    return Experiment(cfg, data, model.to(device), strategy, weights, sample_tf, batch_tf, device)
