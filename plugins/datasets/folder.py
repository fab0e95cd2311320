"""Image files on disk: a subfolder per class (split or pre-split); Dogs vs. Cats reads its layouts through this code
(zoo_plugins.datasets.dogs_vs_cats)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch
from torch.utils.data import Dataset

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    ClassFraction,
    PerClass,
    SubsetClasses,
    chosen_classes,
    existing_folder,
    read_image,
    read_pixels,
    sampled_stats,
    split_indices,
    take_subset,
)

VAL_NAMES, TEST_NAMES = ("val", "valid", "validation"), ("test",)


class ImageFiles(Dataset):
    """Image files and their class indices, decoded on access."""

    cacheable = True  # the same item each time: zoo decodes the split once into memory where it fits

    def __init__(self, files: list[Path], labels: list[int], channels: int, size: tuple[int, int]):
        self.files, self.labels, self.channels, self.size = files, labels, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return read_image(self.files[i], self.channels, self.size)[0], torch.tensor(self.labels[i])

    def pixels(self, i: int):
        """Item i with its image as uint8 CHW (what zoo.data.InMemory keeps: a quarter of float32's memory)."""
        return read_pixels(self.files[i], self.channels, self.size), torch.tensor(self.labels[i])


def scan(
    root: Path, classes: list[str] | None = None, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> tuple[list[str], list[Path], list[int]]:
    """Class names (subfolders, sorted) and every image file (every file of `extensions`) under each."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    given = classes is not None  # a val or test split may lack a class of the training split
    classes = classes or found
    missing = [c for c in found if c not in classes]
    if missing:
        raise ZooError(f"{root} has class folders {missing} that the training split does not have")
    files, labels = [], []
    for i, c in enumerate(classes):
        d = root / c
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in extensions and f.is_file():
                files.append(f)
                labels.append(i)
    empty = [c for i, c in enumerate(classes) if i not in set(labels)] if not given else []
    if empty and len(classes) - len(empty) >= 1:
        raise ZooError(
            f"{root} has class folder(s) without images ({', '.join(empty)}); a class needs images to learn from"
        )
    if len(classes) < 2:
        raise ZooError(f"{root} needs at least two class subfolders with images; found {classes or 'none'}")
    if not files:
        raise ZooError(f"no images ({', '.join(extensions)}) under {root}")
    return classes, files, labels


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def find_splits(
    base: Path,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    subset: tuple = (None, None, None),
) -> tuple[list[str], dict[str, tuple[list[Path], list[int]]]]:
    """Class names and {split: (files, labels)} of BASE/<class>/ (split by fraction, stratified) or
    BASE/train|val|test/<class>/ (given splits; a missing one carved out of train).

    `subset`: (data.classes, data.max_per_class, data.fraction), taken from each split the layout gives and from
    the images before the missing splits are carved out of them (so the carved splits keep their fractions)."""
    wanted, max_per_class, fraction = subset
    train_dir = base / "train"
    if train_dir.is_dir():
        every, files, labels = scan(train_dir, extensions=extensions)
        chosen = chosen_classes(every, wanted)
        parts = {"train": take_subset(files, labels, chosen, max_per_class, fraction, split_seed)}
        for which, names in (("val", VAL_NAMES), ("test", TEST_NAMES)):
            d = _find(base, names)
            if d is not None:
                _, f, lab = scan(d, every, extensions)
                parts[which] = take_subset(f, lab, chosen, max_per_class, fraction, split_seed)
        missing = [s for s in ("val", "test") if s not in parts]
        if missing:  # carve the missing splits out of train, stratified
            f, lab = parts["train"]
            vf = val_fraction if "val" in missing else 0.0
            tf = test_fraction if "test" in missing else 0.0
            idx_train, idx_val, idx_test = split_indices(len(lab), vf, tf, split_seed, labels=lab, joint_hold_out=True)
            parts["train"] = ([f[i] for i in idx_train], [lab[i] for i in idx_train])
            if "val" in missing:
                parts["val"] = ([f[i] for i in idx_val], [lab[i] for i in idx_val])
            if "test" in missing:
                parts["test"] = ([f[i] for i in idx_test], [lab[i] for i in idx_test])
    else:
        every, files, labels = scan(base, extensions=extensions)
        chosen = chosen_classes(every, wanted)
        files, labels = take_subset(files, labels, chosen, max_per_class, fraction, split_seed)
        tr, va, te = split_indices(len(labels), val_fraction, test_fraction, split_seed, labels=labels)
        parts = {
            s: ([files[i] for i in idx], [labels[i] for i in idx])
            for s, idx in (("train", tr), ("val", va), ("test", te))
        }
    return [every[i] for i in chosen], parts


def inventory(values: dict) -> dict:
    """zoo data check's list of every image and its class (zoo.train.datacheck.Item's keys), nothing decoded."""
    base = existing_folder(values["root"], "root", "expected ROOT/<class>/<images> or ROOT/train/<class>/...")
    subset = (values["classes"], values["max_per_class"], values["fraction"])
    names, parts = find_splits(
        base, values["val_fraction"], values["test_fraction"], values["split_seed"], subset=subset
    )
    items = [
        {"split": s, "image": f, "label": y} for s, (files, labels) in parts.items() for f, y in zip(files, labels)
    ]
    return {"task": "classification", "classes": names, "items": items}


@register.dataset("folder", inventory=inventory)
def folder(
    seed: int,
    root: str,
    size: Annotated[int, Range(8)] = 64,
    channels: Literal[1, 3] = 3,
    val_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    test_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
    classes: SubsetClasses = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """Images in ROOT/<class>/*.jpg (split by fraction), or ROOT/train|val|test/<class>/ (given splits).

    A split neither given as a folder nor carved out of the images (its fraction 0) is empty. classes (names or
    indices, in the order wanted), max_per_class and fraction (of each class) take a subset, seeded by split_seed.
    """
    base = existing_folder(root, "root", "expected ROOT/<class>/<images> or ROOT/train/<class>/...")
    hw = (size, size)
    names, parts = find_splits(base, val_fraction, test_fraction, split_seed, subset=(classes, max_per_class, fraction))
    splits = {s: ImageFiles(f, lab, channels, hw) for s, (f, lab) in parts.items()}
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo("classification", tuple(names), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
