"""More than one process: DDP through torchrun, and rank 0's say over what is read and written.

`torchrun --nproc_per_node=N -m zoo.cli train ...` (or `zoo train trainer.devices=N`, which starts
torchrun) runs one process per device; each builds the same experiment from the same seed, trains on its
share of every global batch and averages gradients with DistributedDataParallel (nccl on CUDA, gloo on
CPU). Validation and test split their images among the ranks; torchmetrics syncs the metrics and losses
are all-reduced, so every rank sees the same numbers and takes the same decisions (best epoch, early stop).
Only rank 0 touches the run folder: what it decides or reads there (the folder itself, a checkpoint, an
error) reaches the others through `on_main`. Outside torchrun the world is one process and nothing here
does anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, IterableDataset, Sampler

from zoo.data import Stream
from zoo.errors import ZooError

T = TypeVar("T")
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets


def launched_world() -> int:
    """How many processes torchrun started for this run (WORLD_SIZE), 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that logs and writes."""
    return rank() == 0


def init(device: str, devices: int) -> None:
    """Join torchrun's process group: nccl on CUDA (each process on its LOCAL_RANK's device), gloo on CPU.
    `devices` (trainer.devices) must be 1 or torchrun's processes per node."""
    world = launched_world()
    if world <= 1 or active():
        return
    local, per_node = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if devices not in (1, per_node):
        raise ZooError(
            f"trainer.devices={devices} but torchrun started {per_node} processes per node; "
            "leave trainer.devices at 1 under torchrun, or match --nproc_per_node"
        )
    if device != "cpu" and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ZooError(
                f"torchrun process {local} of this node has no GPU: {torch.cuda.device_count()} visible; "
                "use --nproc_per_node at most the GPU count"
            )
        torch.cuda.set_device(local)  # "cuda" now means this process's own device
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    """Leave the process group (each rank, once its part is done)."""
    if active():
        dist.destroy_process_group()


def on_main(fn: Callable[[], T]) -> T:
    """fn() on rank 0 only; its result, or its ZooError, on every rank (so no rank waits for a rank that
    failed). Single process: just fn()."""
    if not active():
        return fn()
    box: list[Any] = [None]
    failure: BaseException | None = None
    if is_main():
        try:
            box = [("ok", fn())]
        except Exception as e:
            failure, box = e, [("error", str(e).splitlines()[0] if str(e) else type(e).__name__)]
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    status, value = box[0]
    if status == "error":
        raise ZooError(value)
    return value


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank ([obj] in one process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def sum_all(values: list[float], device: torch.device) -> list[float]:
    """The sums over all ranks of a few numbers (losses and counts)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def local_batch(batch_size: int) -> int:
    """Each rank's share of the global batch (trainer.batch_size is the global batch, whatever the world)."""
    world = world_size()
    if batch_size % world:
        raise ZooError(
            f"trainer.batch_size={batch_size} is the global batch and must split evenly among {world} processes"
        )
    return batch_size // world


def train_sampler(ds: Dataset, seed: int) -> DistributedSampler | StreamEpochs:
    """The training order: a permutation drawn from `seed + epoch` (set_epoch), dealt out rank by rank, so
    the images of global batch b are the same in any world size and a resumed run draws the same batches. A
    stream (an IterableDataset) deals itself out: its set_epoch gets the epoch (`StreamEpochs`)."""
    if isinstance(ds, IterableDataset):
        return StreamEpochs(ds, seed)
    return DistributedSampler(ds, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)


class StreamEpochs:
    """What the engine holds as a stream's sampler: `set_epoch(e)` hands the epoch and the run's seed to the
    stream (zoo.data.Stream), which orders its shards the same way on every rank and reads this rank's own."""

    def __init__(self, ds: IterableDataset, seed: int):
        self.ds, self.seed = ds, seed

    def set_epoch(self, epoch: int) -> None:
        if isinstance(self.ds, Stream):
            self.ds.set_epoch(epoch, self.seed)

    def __len__(self) -> int:
        return len(self.ds)


class Shard(Sampler[int]):
    """Every world-th index from this rank's own: each evaluation image on one rank only, none repeated."""

    def __init__(self, n: int, rank: int, world: int):
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return max(0, math.ceil((self.n - self.rank) / self.world))


def eval_sampler(ds: Dataset) -> Shard | None:
    """This rank's share of an evaluation split, None in one process (the plain loader) and for a stream, which
    reads this rank's own shards."""
    return Shard(len(ds), rank(), world_size()) if active() and not isinstance(ds, IterableDataset) else None


class _DDP(torch.nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that still reads as the module it wraps (`.head`, `.backbone`)."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class _CachedHead:
    """What the training step sees of a model whose head trains on cached features: the head, wrapped."""

    def __init__(self, model: torch.nn.Module, head: torch.nn.Module):
        self.head, self.parameters = head, model.parameters


def wrap(model: torch.nn.Module, device: torch.device, cached: bool = False) -> Any:
    """The model the training step runs: itself in one process; else in DDP, its gradients averaged over the
    ranks (only the head, `cached`, when it trains on cached features). Built again at a transfer phase
    change: DDP syncs the parameters that were trainable when it was built."""
    if not active():
        return model
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    if cached:
        return _CachedHead(model, _DDP(model.head, device_ids=ids))
    return _DDP(model, device_ids=ids)
