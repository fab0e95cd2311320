"""DataInfo, the dataset contract, and the plumbing that puts transforms and loaders around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from zoo.errors import ZooError
from zoo.plugin import registry
from zoo.tasks import TABLE, TASKS  # TASKS re-exported: the task list lives in zoo.tasks beside the output table


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: task, class names, channels, input size, mean/std."""

    task: str
    classes: tuple[str, ...]
    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    units: tuple[str | None, ...] = ()  # regression: each value's unit, e.g. ("degrees",); () where unknown
    background: int | None = None  # segmentation: the mask value that means no object; None when every label is one
    ignore_index: int | None = None  # segmentation: the mask value that labels nothing (Cityscapes' 255 "void");
    # the loss and the metrics skip its pixels. None: every mask value is a class
    crop_pct: float | None = None  # the centre crop the weights were evaluated with (size / shorter side before
    # it, as torchvision's and timm's eval transforms: 224 / 256 = 0.875); None: the image is resized to size whole

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")

    @property
    def num_classes(self) -> int:
        """Number of classes (or of outputs, for regression)."""
        return len(self.classes)

    def to_dict(self) -> dict:
        """Plain data for checkpoints and model cards."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> DataInfo:
        """Inverse of to_dict."""
        return cls(
            d["task"],
            tuple(d["classes"]),
            int(d["channels"]),
            tuple(d["size"]),
            tuple(d["mean"]),
            tuple(d["std"]),
            tuple(d.get("units") or ()),
            d.get("background"),
            d.get("ignore_index"),
            d.get("crop_pct"),
        )


@dataclass
class DataBundle:
    """What a dataset plugin returns: DataInfo and the train/val/test splits.

    Each split yields `(image, target)`: image a float CHW tensor in [0, 1] at `info.size`; target a
    class index (classification), float vector (regression), HxW class mask (segmentation), or a dict of
    boxes and labels (detection).
    """

    info: DataInfo
    train: Dataset
    val: Dataset
    test: Dataset


class TensorImages(Dataset):
    """Images held in memory as one float tensor (N, C, H, W) in [0, 1], with targets."""

    in_memory = True  # nothing to decode per item: zoo.train.accel's `num_workers=auto` uses no workers for it

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        assert images.ndim == 4 and len(images) == len(targets)
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


class InMemory(Dataset):
    """A split decoded once: every item of `base` read at construction and kept, its images in one uint8 tensor
    (N, C, H, W) where they are 8-bit pixels of one shape (a quarter of float32's memory), made float per item.
    For datasets that decode files on access and declare `cacheable = True`; a dataset with `pixels(i)` (the item
    with its image as uint8 CHW) is read through it, others through `__getitem__` (kept as uint8 where that is
    exact, else as they come). The decoding runs in `workers` loader processes."""

    in_memory = True

    def __init__(self, base: Dataset, workers: int = 0):
        self.base, self.images, self.targets = base, None, []
        order = DataLoader(
            _Pixels(base), batch_size=64, num_workers=workers if len(base) > 256 else 0, collate_fn=_stacked
        )  # in order: item i is the i-th read; a batch's images come back as one tensor (one shared-memory block)
        listed: list = []
        for images, targets in order:
            i, n = len(self.targets), len(targets)
            first = images[0]
            if self.images is None and not listed and _byte_image(first):
                self.images = torch.empty((len(base), *first.shape), dtype=torch.uint8)
            if self.images is not None and not (isinstance(images, torch.Tensor) and _fits(images, self.images)):
                listed, self.images = list(self.images[:i]), None  # mixed shapes or kinds: a list of them
            if self.images is not None:
                self.images[i : i + n] = images
            else:
                listed.extend(images)
            self.targets.extend(targets)
        self.listed = listed  # the images when they are not one uint8 tensor (empty otherwise)

    @staticmethod
    def estimate(base: Dataset) -> int:
        """Bytes the split takes in memory, from its first image."""
        if len(base) == 0:
            return 0
        image = _Pixels(base)[0][0]
        return len(base) * (image.numel() * image.element_size() if isinstance(image, torch.Tensor) else 2**20)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        image = self.images[i] if self.images is not None else self.listed[i]
        return (image.float().div_(255.0) if image.dtype == torch.uint8 else image), self.targets[i]


def _byte_image(image: Any) -> bool:
    return isinstance(image, torch.Tensor) and image.dtype == torch.uint8


def _fits(images: torch.Tensor, store: torch.Tensor) -> bool:
    return images.dtype == torch.uint8 and images.shape[1:] == store.shape[1:]


def _stacked(batch: list) -> tuple[Any, list]:
    """A cache build's batch: uint8 images of one shape stacked, else listed; targets listed."""
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    if all(_byte_image(x) and x.shape == images[0].shape for x in images):
        return torch.stack(images), targets
    return images, targets


class _Pixels(Dataset):
    """A cacheable split's items with their images as uint8 where that loses nothing: `base.pixels(i)` where the
    dataset has it, else its float image in [0, 1] as uint8 when every value is a whole number of 255ths."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        if callable(getattr(self.base, "pixels", None)):
            return self.base.pixels(i)
        image, target = self.base[i]
        if isinstance(image, torch.Tensor) and image.is_floating_point():
            pixels = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
            if torch.equal(pixels.float().div_(255.0), image):
                return pixels, target
        return image, target


class Transformed(Dataset):
    """A split with a sample transform applied to (image, target); of a stream (an IterableDataset), a
    `TransformedStream`."""

    def __new__(cls, base: Dataset, transform: Callable | None):
        if cls is Transformed and isinstance(base, IterableDataset):
            return TransformedStream(base, transform)
        return super().__new__(cls)

    def __init__(self, base: Dataset, transform: Callable | None):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return _transform(self.transform, *self.base[i])


def _transform(transform: Callable | None, image: torch.Tensor, target: Any):
    if transform is None:
        return image, target
    from torchvision import tv_tensors

    image, target = transform(tv_tensors.Image(image), target)
    return image.as_subclass(torch.Tensor), target


class Stream(IterableDataset):
    """A split read as a stream (tar shards, say): it orders and splits itself among ranks and loader workers.

    `__len__` is the samples this rank yields in an epoch; `set_epoch(epoch, seed)` fixes the epoch's order (the
    same on every rank); `plan(batch_size, workers, drop_last)` is called by `loader` before it iterates, so a
    training stream can yield the same number of whole batches on every rank (DDP steps together)."""

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """The order of `epoch`, from `seed` (a no-op for a stream in a fixed order)."""

    def plan(self, batch_size: int, workers: int, drop_last: bool) -> None:
        """How the loader reads it: its batch, its worker processes, whether partial batches are dropped."""


class TransformedStream(Stream):
    """A stream with a sample transform applied to each (image, target)."""

    def __init__(self, base: IterableDataset, transform: Callable | None):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        return (_transform(self.transform, image, target) for image, target in self.base)

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        if isinstance(self.base, Stream):
            self.base.set_epoch(epoch, seed)

    def plan(self, batch_size: int, workers: int, drop_last: bool) -> None:
        if isinstance(self.base, Stream):
            self.base.plan(batch_size, workers, drop_last)


class BatchTransform:
    """A transform on a whole batch (Mixup, CutMix): `__call__(images, targets) -> (images, targets)`.

    Targets it returns may be soft (N, num_classes); the head's loss must accept them.
    """

    def __call__(self, images: torch.Tensor, targets: torch.Tensor):
        raise NotImplementedError


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of an (N, C, H, W) tensor, std floored so it never divides by ~0."""
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def build_data(cfg: dict, seed: int) -> DataBundle:
    """Build the dataset plugin named in `cfg['data']`."""
    dcfg = dict(cfg["data"])
    plugin = registry.get("dataset", dcfg.pop("name"))
    bundle = plugin.build({"seed": seed}, dcfg, where="data")
    if not isinstance(bundle, DataBundle):
        raise ZooError(
            f"dataset {plugin.name!r} of package {plugin.package!r} returned {type(bundle).__name__}, "
            "not a zoo.data.DataBundle"
        )
    return bundle


def build_augmentations(
    aug_cfg: dict, info: DataInfo, on_device: bool = True
) -> tuple[Callable | None, BatchTransform | None]:
    """The sample pipeline (a transforms.v2 Compose) and the batch transform, from `aug.ops`. `on_device`: the
    trailing sample ops that offer `batched(images, targets)` run on the whole batch after the loader, where the
    batch is (the GPU), ahead of Mixup or CutMix; else every op runs per sample in the loader."""
    from torchvision.transforms import v2

    sample, batch = [], []
    for op_name, params in (aug_cfg.get("ops") or {}).items():
        plugin = registry.get("augmentation", op_name)
        if not plugin.supports(info.task):
            raise ZooError(
                f"augmentation {op_name!r} does not support task {info.task!r}; it supports: {', '.join(plugin.tasks)}"
            )
        t = plugin.build({"info": info}, dict(params or {}), where=f"aug.ops.{op_name}")
        (batch if isinstance(t, BatchTransform) else sample).append(t)
    if len(batch) > 1:
        batch = [_RandomChoiceBatch(batch)]
    first = len(sample)
    while on_device and first and callable(getattr(sample[first - 1], "batched", None)):
        first -= 1  # the trailing ops that can run on a whole batch: after the loader, on the device
    if sample[first:]:
        batch.insert(0, _BatchedOps(sample[first:]))
        sample = sample[:first]
    if sample and TABLE[info.task].target == "boxes":
        # boxes pushed (partly) out of the image: clip them, and drop those left empty with their labels
        sample += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return (v2.Compose(sample) if sample else None), (_Chain(batch) if len(batch) > 1 else batch[0] if batch else None)


class _BatchedOps(BatchTransform):
    """Sample augmentations run on a whole batch, where it is (the device), each drawing per sample: their
    `batched(images, targets)`."""

    def __init__(self, ops: list):
        self.ops = ops

    def __call__(self, images, targets):
        for op in self.ops:
            images, targets = op.batched(images, targets)
        return images, targets


class _Chain(BatchTransform):
    """Batch transforms one after the other (the batched sample ops, then Mixup or CutMix)."""

    def __init__(self, transforms: list[BatchTransform]):
        self.transforms = transforms

    def __call__(self, images, targets):
        for t in self.transforms:
            images, targets = t(images, targets)
        return images, targets


class _RandomChoiceBatch(BatchTransform):
    """Several batch transforms (Mixup and CutMix): one, chosen at random, per batch."""

    def __init__(self, options: list[BatchTransform]):
        self.options = options

    def __call__(self, images, targets):
        i = int(torch.randint(len(self.options), ()).item())
        return self.options[i](images, targets)


def collate(batch: list) -> tuple[torch.Tensor, Any]:
    """Stack images; stack tensor targets, keep dict targets (detection) as a list."""
    images = torch.stack([b[0] for b in batch])
    targets = [b[1] for b in batch]
    if isinstance(targets[0], dict):
        return images, targets
    return images, torch.stack([torch.as_tensor(t) for t in targets])


def loader(
    ds: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    drop_last: bool = False,
    pin_memory: bool = False,
    sampler=None,
) -> DataLoader:
    """A DataLoader with zoo's collate and a seeded shuffle (or `sampler`'s order: training's, a rank's share);
    `pin_memory` for non-blocking copies to a GPU."""
    g = torch.Generator()
    g.manual_seed(seed)
    # a shuffled loader's workers start afresh each epoch, seeded from its generator: the epoch's random draws in
    # them then follow from the generator's seed alone, and a resumed run repeats them (a stream's workers take
    # the epoch's order, set_epoch, with them)
    persistent = workers > 0 and not shuffle
    if isinstance(ds, IterableDataset):  # a stream orders and splits itself (zoo.data.Stream): no sampler
        if isinstance(ds, Stream):
            ds.plan(batch_size, workers, drop_last)
        shuffle, sampler = False, None
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=g,
        pin_memory=pin_memory,
        drop_last=drop_last and len(sampler if sampler is not None else ds) > batch_size,
        persistent_workers=persistent,
    )
