"""The standard image-classification sets, read by torchvision's own dataset classes from their own on-disk
formats: MNIST, Fashion-MNIST, CIFAR-10/100, Oxford Flowers-102, Oxford-IIIT Pets.

Each keeps its own test split (and Flowers-102 its own val split); a val split is otherwise carved out of
the training images, stratified and seeded. Nothing is downloaded unless `data.download=true`.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import torch
from torch.utils.data import Dataset

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    ClassFraction,
    Fraction,
    PerClass,
    SubsetClasses,
    chosen_classes,
    image_tensor,
    read_image,
    sampled_stats,
    split_indices,
    take_subset,
)


@dataclass(frozen=True)
class Standard:
    """How one of torchvision's sets is laid out and read."""

    channels: int  # its images' own channels
    size: int  # the side its images are resized to by default
    layout: str  # what ROOT holds once downloaded, for the message when it does not
    splits: tuple[str, str, Optional[str]]  # torchvision's names of train, test and (own) val; None: carved from train


STANDARD = {
    "MNIST": Standard(1, 28, "MNIST/raw/ with its four idx files (.gz or unpacked)", ("train", "test", None)),
    "FashionMNIST": Standard(
        1, 28, "FashionMNIST/raw/ with its four idx files (.gz or unpacked)", ("train", "test", None)
    ),
    "CIFAR10": Standard(
        3, 32, "cifar-10-batches-py/ (data_batch_1-5, test_batch, batches.meta)", ("train", "test", None)
    ),
    "CIFAR100": Standard(3, 32, "cifar-100-python/ (train, test, meta)", ("train", "test", None)),
    "Flowers102": Standard(3, 224, "flowers-102/ (jpg/, imagelabels.mat, setid.mat)", ("train", "test", "val")),
    "OxfordIIITPet": Standard(
        3, 224, "oxford-iiit-pet/ (images/, annotations/trainval.txt and test.txt)", ("trainval", "test", None)
    ),
}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Images(Dataset):
    """Some items of a torchvision dataset as float CHW tensors in [0, 1] at one size, with class indices."""

    cacheable = True  # the same item each time: zoo decodes the split once into memory where it fits

    def __init__(self, source: Dataset, indices: list[int], labels, channels: int, size: tuple[int, int]):
        """`labels`: each source index's class (a list over the source, or a dict of the chosen indices)."""
        self.source, self.indices, self.labels, self.channels, self.size = source, indices, labels, channels, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image = self.source[self.indices[i]][0]
        if isinstance(image, (str, Path)):  # Flowers-102 hands over the file (see _open), decoded here
            x = read_image(Path(image), self.channels, self.size)[0]
        else:
            x = image_tensor(image, self.channels, self.size)
        return x, torch.tensor(self.labels[self.indices[i]])


def _unpack_mnist(folder: Path) -> None:
    """torchvision reads MNIST's idx files unpacked: unpack the .gz copies that are there and are not yet."""
    for name in MNIST_FILES:
        packed, plain = folder / f"{name}.gz", folder / name
        if packed.is_file() and not plain.is_file():
            tmp = plain.with_name(f".{name}.tmp")
            with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(plain)


def _open(name: str, root: Path, split: str, download: bool, layout: str) -> Dataset:
    """torchvision's dataset `name`, one of its splits, from ROOT (downloading it there first if asked)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    kwargs = {"split": split} if name in ("Flowers102", "OxfordIIITPet") else {"train": split == "train"}
    if name == "Flowers102":  # hand over file names: the plugin decodes at its own size and channels
        kwargs["loader"] = str
    if name in ("MNIST", "FashionMNIST"):
        _unpack_mnist(root / name / "raw")
    try:
        return cls(str(root), download=download, **kwargs)
    except Exception as e:  # torchvision: RuntimeError("Dataset not found or corrupted"); offline: URLError...
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") else lines[0]  # MNIST: "Error downloading X:" ...
        if download:
            raise ZooError(f"data.download=true: cannot download {name} to {root}: {why}") from None
        if isinstance(e, RuntimeError):
            raise ZooError(
                f"data.root={root}: no {name} files there; download them with data.download=true (needs the "
                f"internet) or put {layout} there (files that fail torchvision's checksums count as missing)"
            ) from None
        raise ZooError(f"data.root={root}: cannot read {name}: {why}") from None


def _labels(ds: Dataset) -> list[int]:
    """Every item's class index, without decoding an image (Flowers-102 and Pets keep them in `_labels`)."""
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds._labels
    return [int(t) for t in labels]


@register.dataset("torchvision")
def torchvision_dataset(
    seed: int,
    dataset: Literal["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "Flowers102", "OxfordIIITPet"] = "CIFAR10",
    root: str = "~/data",
    download: bool = False,
    size: Optional[Annotated[int, Range(8)]] = None,
    channels: Optional[Literal[1, 3]] = None,
    val_fraction: Fraction = 0.1,
    split_seed: int = 0,
    stats_samples: Annotated[int, Range(1)] = 256,
    classes: SubsetClasses = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """A standard set on torchvision's classes (MNIST, FashionMNIST, CIFAR10/100, Flowers102, OxfordIIITPet).

    size: the side images are resized to (default: 28 for the MNISTs, 32 for CIFAR, 224 for Flowers and Pets);
    channels: 1 or 3 (default: the set's own). The set's own test split; val carved from train by val_fraction
    (stratified, split_seed) unless the set has its own (Flowers-102). classes (names or indices, in the order
    wanted), max_per_class and fraction (of each class, seeded by split_seed) cut each split the set gives, and
    the training images before val is carved out of them.
    """
    spec = STANDARD[dataset]
    base = Path(root).expanduser()
    if not download and not base.is_dir():
        raise ZooError(
            f"data.root={root}: no {dataset} files there (no such folder); download them with data.download=true "
            f"(needs the internet) or put {spec.layout} there"
        )
    channels = channels or spec.channels
    hw = (size or spec.size,) * 2
    train_name, test_name, val_name = spec.splits
    train_ds = _open(dataset, base, train_name, download, spec.layout)
    test_ds = _open(dataset, base, test_name, False, spec.layout)
    every = [str(c) for c in train_ds.classes]
    chosen = chosen_classes(every, classes)
    train_labels, test_labels = _labels(train_ds), _labels(test_ds)
    beyond = max(test_labels, default=-1)
    if beyond >= len(every):
        raise ZooError(f"data.root={root}: {dataset}'s test split has class {beyond}, which train does not name")

    def images(ds: Dataset, labels: list[int], indices: list[int] | None = None) -> Images:
        """The chosen items of one split, relabelled 0..k-1 (Images reads labels by the source's index)."""
        indices = list(range(len(labels))) if indices is None else indices
        kept, new = take_subset(indices, [labels[i] for i in indices], chosen, max_per_class, fraction, split_seed)
        return Images(ds, kept, dict(zip(kept, new)), channels, hw)

    if val_name is not None:
        val_ds = _open(dataset, base, val_name, False, spec.layout)
        val_labels = _labels(val_ds)
        if max(val_labels, default=-1) >= len(every):
            raise ZooError(f"data.root={root}: {dataset}'s val split has a class that train does not name")
        train, val = images(train_ds, train_labels), images(val_ds, val_labels)
    else:
        pool = images(train_ds, train_labels)
        labels = [pool.labels[i] for i in pool.indices]
        idx_train, idx_val, _ = split_indices(len(labels), val_fraction, 0.0, split_seed, labels=labels)
        train = Images(train_ds, [pool.indices[i] for i in idx_train], pool.labels, channels, hw)
        val = Images(train_ds, [pool.indices[i] for i in idx_val], pool.labels, channels, hw)
    test = images(test_ds, test_labels)
    mean, std = sampled_stats(train, stats_samples)
    info = DataInfo("classification", tuple(every[i] for i in chosen), channels, hw, mean, std)
    return DataBundle(info, train, val, test)
