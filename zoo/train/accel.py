"""How a run uses its device: autocast precision and its gradient scaler, memory format, torch.compile, and
the loaders that feed the device (worker count, pinned memory, splits decoded once into memory).

The engine and `zoo bench train` build through these, so what the benchmark measures is what training runs.
Weights stay float32 whatever the precision: autocast computes in bf16 or fp16 where it is safe, the optimizer
updates float32 weights, and checkpoints and exports hold float32 tensors.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data import InMemory, Transformed, loader
from zoo.errors import ZooError

log = logging.getLogger("zoo")

PRECISIONS = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Accel:
    """A run's precision (autocast dtype, GradScaler for fp16) and memory format on its device."""

    def __init__(self, precision: str, device: torch.device, channels_last: bool = False):
        if precision not in PRECISIONS:
            raise ZooError(f"trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
        self.precision, self.device, self.channels_last = precision, torch.device(device), channels_last
        self.dtype = PRECISIONS[precision]
        # fp16's narrow range underflows small gradients: scale the loss up, unscale before the step
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype is torch.float16 else None

    @classmethod
    def of(cls, tcfg: dict, device: torch.device) -> Accel:
        """The trainer config's precision and memory format."""
        return cls(str(tcfg.get("precision", "32")), device, bool(tcfg.get("channels_last", False)))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the run's precision (nothing at 32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Images (on the device already) in the run's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, grad_clip: float) -> None:
        """Backward and optimizer step; with fp16, through the GradScaler (gradients unscaled before clipping)."""
        if self.scaler is None:
            loss.backward()
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(optimizer)  # skipped when the scaled gradients overflowed
        self.scaler.update()


FULL = Accel("32", torch.device("cpu"))  # the default: float32, contiguous, no autocast


def as_float32(outputs: Any) -> Any:
    """Outputs made under autocast as float32 (tensors inside lists, tuples and dicts too): heads compute their
    loss and metrics in float32 whatever the precision of the forward pass."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() and outputs.dtype != torch.float32 else outputs
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(as_float32(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: as_float32(v) for k, v in outputs.items()}
    return outputs


def to_device(value: Any, device: torch.device) -> Any:
    """A batch's images or targets (tensors, or detection's list of dicts of tensors) onto the device,
    non-blocking (from pinned memory, the copy overlaps the host's work)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list):
        return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in value]
    return value


def prepare_model(model: torch.nn.Module, tcfg: dict) -> None:
    """Memory format and compilation, in place: parameters keep their identity, names and float32 values, so
    optimizers, checkpoints and exports see the same model."""
    if tcfg.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    if tcfg.get("compile"):
        model.compile()  # nn.Module.compile: compiles the forward in place, state_dict keys unchanged


def cpu_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_workers(setting: Any, ds: Dataset, device: torch.device, cores: int | None = None) -> int:
    """trainer.num_workers: a number as given; `auto`, workers where they pay. On CUDA, min(cores, 8), or 0 when
    the split is held in memory and nothing is left to do per sample (augmentation runs on the batch on the
    device). On CPU, worker processes take the cores the model's step runs on: none when the split is in memory
    or the machine has fewer than 8 cores, else cores // 4 (at most 4) to decode and augment files."""
    if str(setting) != "auto":
        return int(setting)
    cores = cores or cpu_cores()
    base = ds.base if isinstance(ds, Transformed) else ds
    in_memory = bool(getattr(base, "in_memory", False))
    per_sample = isinstance(ds, Transformed) and ds.transform is not None
    if torch.device(device).type == "cuda":
        return 0 if in_memory and not per_sample else min(cores, 8)
    return 0 if in_memory or cores < 8 else min(cores // 4, 4)


def data_loader(ds: Dataset, batch_size: int, shuffle: bool, tcfg: dict, device: torch.device, seed: int, **kw):
    """A loader of a split for this run's device: workers as trainer.num_workers resolves, pinned memory on
    CUDA (so copies to the device can be non-blocking)."""
    workers = resolve_workers(tcfg.get("num_workers", "auto"), ds, device)
    pin = torch.device(device).type == "cuda"
    return loader(ds, batch_size, shuffle, workers, seed, pin_memory=pin, **kw)


CACHE_SHARE = 0.25  # of the memory available when a run starts, at most, for splits decoded once


def cache_splits(data, budget: int | None = None, workers: int | None = None) -> list[str]:
    """Decode once, into memory, each split whose dataset declares `cacheable = True` (it decodes on access and
    gives the same item each time), when the splits together fit `budget` bytes (a quarter of the available
    memory by default), in `workers` loader processes (default: one per core, at most 8); the names of the
    splits cached."""
    names = [s for s in ("train", "val", "test") if getattr(getattr(data, s), "cacheable", False)]
    if not names:
        return []
    budget = int(available_memory() * CACHE_SHARE) if budget is None else budget
    need = sum(InMemory.estimate(getattr(data, s)) for s in names)
    if need > budget:
        log.info(f"splits not cached in memory: they need ~{need / 2**20:.0f} MiB, more than {budget / 2**20:.0f} MiB")
        return []
    workers = min(cpu_cores(), 8) if workers is None else workers
    for s in names:
        setattr(data, s, InMemory(getattr(data, s), workers))
    log.info(f"{', '.join(names)} decoded once into memory (~{need / 2**20:.0f} MiB)")
    return names


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable), or 2 GiB where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * 2**30
