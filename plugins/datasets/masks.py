"""Semantic segmentation from two folders: images, and single-channel PNG masks named like them.

Every pair is matched and checked (size, class values) when the dataset is built, so a bad file stops the
run before any training with one line naming it; images and masks are decoded when a sample is read.
`ignore_index` names a mask value that labels nothing (Cityscapes' and Pascal VOC's 255 "void"): the loss and
the metrics skip its pixels. `label_map` maps the values stored in the files to classes (Cityscapes' 34 label
ids to its 19 train ids: `data=cityscapes`); a value it maps past the classes is `ignore_index`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    Fraction,
    check_fractions,
    existing_folder,
    image_files,
    image_size,
    pair_files,
    read_image,
    read_mask,
    sampled_stats,
    split_indices,
)

# ---- building blocks -------------------------------------------------------------------------


class MaskValues:
    """How the values stored in mask files become class indices: a lookup table (`label_map`, value -> class,
    values past its end and entries past the classes -> `ignore_index`) and the ignored value."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, label_map: list[int] | None = None):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.table = None
        if label_map is not None:
            table = np.full(max(256, len(label_map)), -1 if ignore_index is None else ignore_index, dtype=np.int64)
            table[: len(label_map)] = label_map
            self.table = table

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return values if self.table is None else self.table[values]

    def check(self, values: np.ndarray, mask: Path) -> None:
        """Refuse a mask holding a value that is neither a class nor the ignored value, in one line naming it."""
        bad = (values < 0) | (values >= self.num_classes)
        if self.ignore_index is not None:
            bad &= values != self.ignore_index
        if bad.any():
            value = int(values[bad].max()) if self.table is None else "mapped past the classes"
            void = "" if self.ignore_index is not None else "; if it marks pixels to ignore, set data.ignore_index"
            raise ZooError(
                f"mask {mask} has pixel value {value}, but data.classes names {self.num_classes} classes "
                f"(values 0 to {self.num_classes - 1}){void}"
            )


def check_pair(image: Path, mask: Path, values: MaskValues) -> None:
    """One image and its mask: the same size, and only class values (or the ignored one) in the mask."""
    stored = read_mask(mask)
    ih, iw = image_size(image)
    if stored.shape != (ih, iw):
        raise ZooError(f"mask {mask} is {stored.shape[1]}x{stored.shape[0]} but its image {image} is {iw}x{ih}")
    if values.table is not None and stored.max() >= len(values.table):
        raise ZooError(f"mask {mask} has pixel value {int(stored.max())}, past data.label_map's table")
    values.check(values(stored), mask)


def pair_masks(
    image_dir: Path, mask_dir: Path, values: MaskValues, image_suffix: str = "", mask_suffix: str = ""
) -> list[tuple[Path, Path]]:
    """Match images to masks by relative path without extension (and without `image_suffix`/`mask_suffix`, as
    Cityscapes' x_leftImg8bit.png and x_gtFine_labelIds.png), and check each mask's size and values."""

    def key(path: Path, root: Path, suffix: str) -> str | None:
        k = str(path.relative_to(root).with_suffix(""))
        return k.removesuffix(suffix) if k.endswith(suffix) else None

    masks: dict[str, Path] = {}
    for m in image_files(mask_dir):
        k = key(m, mask_dir, mask_suffix)
        if k is None:
            continue
        if k in masks:
            raise ZooError(f"two masks for one image: {masks[k]} and {m}")
        masks[k] = m
    pairs, seen = [], {}
    for f in image_files(image_dir):
        k = key(f, image_dir, image_suffix)
        if k is None:
            continue
        if k not in masks:
            raise ZooError(f"image {f} has no mask: expected {mask_dir / k}{mask_suffix}.png")
        if k in seen:
            raise ZooError(f"two images for one mask {masks[k]}: {seen[k]} and {f}")
        seen[k] = f
        pairs.append((f, masks[k]))
    if not pairs:
        raise ZooError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) named *{image_suffix}.* under {image_dir}")
    for f, m in pairs:
        check_pair(f, m, values)
    return pairs


class MaskPairs(Dataset):
    """Image and class-index mask pairs, decoded and resized on access (bilinear image, nearest mask)."""

    cacheable = True  # the same item each time: zoo decodes the split once into memory where it fits

    def __init__(
        self, pairs: list[tuple[Path, Path]], channels: int, size: tuple[int, int], values: MaskValues | None = None
    ):
        self.pairs, self.channels, self.size, self.values = pairs, channels, size, values

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        image_file, mask_file = self.pairs[i]
        image, _ = read_image(image_file, self.channels, self.size)
        mask = read_mask(mask_file, self.size)
        if self.values is not None:
            mask = self.values(mask)
        return image, tv_tensors.Mask(torch.from_numpy(mask))


def check_classes(classes: list[str], background: bool) -> None:
    """Class names for masks: distinct, and with `background`, 'background' first (pixel value 0)."""
    if background and (len(classes) < 2 or classes[0] != "background"):
        raise ZooError(
            f"data.classes={classes}: pixel value 0 is the background, so the list must start with 'background' "
            f"and name at least one class, e.g. data.classes=[background,{','.join(classes) or 'object'}] "
            "(data.background=false when every value is an object class, as Cityscapes' train ids)"
        )
    if len(classes) < 2:
        raise ZooError(f"data.classes={classes}: segmentation needs at least two classes")
    if len(set(classes)) != len(classes):
        raise ZooError(f"data.classes={classes} names a class twice")


# ---- the registered dataset -------------------------------------------------------------------


def _inventory(values: dict) -> dict:
    """zoo data check's list of image/mask pairs and of the files that pair with nothing, nothing decoded; None
    (checked through the built splits, as the reader pairs and maps them) for a layout with its own pairing rules:
    name suffixes, a label map (stored values are not classes), separate val folders."""
    if values.get("label_map") is not None or values.get("image_suffix") or values.get("mask_suffix"):
        return None
    if values.get("val_images") is not None:
        return None
    base = Path(values["root"]).expanduser() if values.get("root") else Path()
    image_dir = existing_folder(str(base / values["images"]), "images", "expected a folder of images")
    mask_dir = existing_folder(str(base / values["masks"]), "masks", "expected a folder of single-channel PNG masks")
    pairs, lone_images, lone_masks = pair_files(image_dir, mask_dir)
    cut = split_indices(len(pairs), values["val_fraction"], values["test_fraction"], values["split_seed"])
    items = [{"split": s, "image": pairs[i][0], "mask": pairs[i][1]} for s, idx in zip(("train", "val", "test"), cut)
             for i in idx]  # fmt: skip
    items += [{"split": "train", "image": f} for f in lone_images] + [{"split": "train", "mask": m} for m in lone_masks]
    return {"task": "segmentation", "classes": list(values["classes"]), "items": items,
            "ignore_index": values.get("ignore_index")}  # fmt: skip


@register.dataset("masks", inventory=_inventory)
def mask_folders(
    seed: int,
    images: str,
    masks: str,
    classes: list[str] = ("background", "foreground"),
    root: Optional[str] = None,
    val_images: Optional[str] = None,
    val_masks: Optional[str] = None,
    image_suffix: str = "",
    mask_suffix: str = "",
    background: bool = True,
    ignore_index: Optional[Annotated[int, Range(0, 65535)]] = None,
    label_map: Optional[list[Annotated[int, Range(0, 65535)]]] = None,
    size: Annotated[int, Range(8)] = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Semantic segmentation from IMAGES/x.jpg + MASKS/x.png (pixel value = index into classes, 0 = background).

    root: the folder images, masks, val_images and val_masks are relative to. ignore_index: the mask value that
    labels nothing (255 for Cityscapes and VOC). label_map: value stored in a file -> class (the rest: ignored)."""
    check_fractions(val_fraction, test_fraction)
    classes = list(classes)
    check_classes(classes, background)
    if ignore_index is not None and ignore_index < len(classes):
        raise ZooError(
            f"data.ignore_index={ignore_index} is a class ({classes[ignore_index]!r}); use a value >= "
            f"{len(classes)}, e.g. 255"
        )
    base = Path(root).expanduser() if root else Path()
    if root and not base.is_dir():
        raise ZooError(f"data.root={root!r}: folder does not exist (expected the folder the data's paths are in)")
    values = MaskValues(len(classes), ignore_index, None if label_map is None else list(label_map))

    def folders(split: str, im: str, ms: str) -> list[tuple[Path, Path]]:
        image_dir = existing_folder(str(base / im), f"{split}images", "expected a folder of images")
        note = "expected a folder of single-channel PNG masks named like the images"
        mask_dir = existing_folder(str(base / ms), f"{split}masks", note)
        return pair_masks(image_dir, mask_dir, values, image_suffix, mask_suffix)

    pairs = folders("", images, masks)
    if (val_images is None) != (val_masks is None):
        raise ZooError("data.val_images and data.val_masks go together: give both, or neither to carve val from train")
    hw = (size, size)
    if val_images is not None:
        tr, _, te = split_indices(len(pairs), 0.0, test_fraction, split_seed)
        val = MaskPairs(folders("val_", val_images, val_masks), channels, hw, values)
        train, test = (MaskPairs([pairs[i] for i in idx], channels, hw, values) for idx in (tr, te))
    else:
        tr, va, te = split_indices(len(pairs), val_fraction, test_fraction, split_seed)
        train, val, test = (MaskPairs([pairs[i] for i in idx], channels, hw, values) for idx in (tr, va, te))
    mean, std = sampled_stats(train, stats_samples)
    info = DataInfo(
        "segmentation",
        tuple(classes),
        channels,
        hw,
        mean,
        std,
        background=0 if background else None,
        ignore_index=ignore_index,
    )
    return DataBundle(info, train, val, test)
