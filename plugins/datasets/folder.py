"""An image-folder tree, one subfolder per class (the dogs-vs-cats layout), split or pre-split."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from zoo import register
from zoo.data import DataBundle, DataInfo, channel_stats, stratified_split
from zoo.errors import ZooError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
VAL_NAMES, TEST_NAMES = ("val", "valid", "validation"), ("test",)


def load_image(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Decode one image file to a float CHW tensor in [0, 1] at `size` (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ZooError(f"cannot read image {path}: {e}") from None
    return data.view(size[0], size[1], channels).permute(2, 0, 1).float().div_(255.0)


class ImageFiles(Dataset):
    """Image files and their class indices, decoded on access."""

    def __init__(self, files: list[Path], labels: list[int], channels: int, size: tuple[int, int]):
        self.files, self.labels, self.channels, self.size = files, labels, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return load_image(self.files[i], self.channels, self.size), torch.tensor(self.labels[i])


def scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """Class names (subfolders, sorted) and every image file under each."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
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
            if f.suffix.lower() in EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(i)
    if len(classes) < 2:
        raise ZooError(f"{root} needs at least two class subfolders with images; found {classes or 'none'}")
    if not files:
        raise ZooError(f"no images ({', '.join(EXTENSIONS)}) under {root}")
    return classes, files, labels


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


@register.dataset("folder")
def folder(
    seed: int,
    root: str,
    size: int = 64,
    channels: Literal[1, 3] = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Images in ROOT/<class>/*.jpg (split by fraction), or ROOT/train|val|test/<class>/ (given splits)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ZooError(
            f"data.root={root!r}: folder does not exist (expected ROOT/<class>/<images> or ROOT/train/<class>/...)"
        )
    hw = (size, size)
    train_dir = base / "train"
    if train_dir.is_dir():
        classes, files, labels = scan(train_dir)
        parts = {"train": (files, labels)}
        for split, names in (("val", VAL_NAMES), ("test", TEST_NAMES)):
            d = _find(base, names)
            if d is not None:
                _, f, lab = scan(d, classes)
                parts[split] = (f, lab)
        missing = [s for s in ("val", "test") if s not in parts]
        if missing:  # carve the missing splits out of train, stratified
            f, lab = parts["train"]
            vf = val_fraction if "val" in missing else 0.0
            tf = test_fraction if "test" in missing else 0.0
            idx_train, idx_val, idx_test = _carve(lab, vf, tf, split_seed)
            parts["train"] = ([f[i] for i in idx_train], [lab[i] for i in idx_train])
            if "val" in missing:
                parts["val"] = ([f[i] for i in idx_val], [lab[i] for i in idx_val])
            if "test" in missing:
                parts["test"] = ([f[i] for i in idx_test], [lab[i] for i in idx_test])
    else:
        classes, files, labels = scan(base)
        tr, va, te = stratified_split(labels, val_fraction, test_fraction, split_seed)
        parts = {
            s: ([files[i] for i in idx], [labels[i] for i in idx])
            for s, idx in (("train", tr), ("val", va), ("test", te))
        }
    splits = {s: ImageFiles(f, lab, channels, hw) for s, (f, lab) in parts.items()}
    # mean/std from an evenly spaced sample of the training images: cheap, and stable across runs
    train = splits["train"]
    step = max(1, len(train) // max(1, stats_samples))
    sample = torch.stack([train[i][0] for i in range(0, len(train), step)])
    mean, std = channel_stats(sample)
    info = DataInfo("classification", tuple(classes), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])


def _carve(labels: list[int], val_fraction: float, test_fraction: float, seed: int):
    """Split indices into train/val/test where either held-out fraction may be zero."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(labels)))
    held = val_fraction + test_fraction
    if held <= 0:
        return idx, [], []
    if held >= 1:
        raise ZooError(f"data.val_fraction + data.test_fraction = {held} leaves nothing to train on")
    try:
        train, rest = train_test_split(idx, test_size=held, stratify=labels, random_state=seed)
        if val_fraction == 0 or test_fraction == 0:
            return sorted(train), (sorted(rest) if val_fraction else []), (sorted(rest) if test_fraction else [])
        val, test = train_test_split(
            rest, test_size=test_fraction / held, stratify=[labels[i] for i in rest], random_state=seed
        )
    except ValueError as e:
        raise ZooError(f"cannot split {len(labels)} images: {e}") from None
    return sorted(train), sorted(val), sorted(test)
