"""Semantic segmentation from two folders: images, and single-channel PNG masks named like them.

Every pair is matched and checked (size, class values) when the dataset is built, so a bad file stops the
run before any training with one line naming it; images and masks are decoded when a sample is read.
"""

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


def pair_masks(image_dir: Path, mask_dir: Path, num_classes: int) -> list[tuple[Path, Path]]:
    """Match images to masks by relative path without extension, and check each mask's size and values."""
    masks: dict[str, Path] = {}
    for m in image_files(mask_dir):
        key = str(m.relative_to(mask_dir).with_suffix(""))
        if key in masks:
            raise ZooError(f"two masks for one image: {masks[key]} and {m}")
        masks[key] = m
    pairs = []
    for f in image_files(image_dir):
        key = str(f.relative_to(image_dir).with_suffix(""))
        if key not in masks:
            raise ZooError(f"image {f} has no mask: expected {mask_dir / key}.png")
        pairs.append((f, masks[key]))
    if not pairs:
        raise ZooError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {image_dir}")
    seen: dict[str, Path] = {}
    for f, m in pairs:
        key = str(f.relative_to(image_dir).with_suffix(""))
        if key in seen:
            raise ZooError(f"two images for one mask {m}: {seen[key]} and {f}")
        seen[key] = f
        values = read_mask(m)
        ih, iw = image_size(f)
        if values.shape != (ih, iw):
            raise ZooError(f"mask {m} is {values.shape[1]}x{values.shape[0]} but its image {f} is {iw}x{ih}")
        top = int(values.max())
        if top >= num_classes:
            raise ZooError(
                f"mask {m} has pixel value {top}, but data.classes names {num_classes} classes "
                f"(values 0 to {num_classes - 1})"
            )
    return pairs


class MaskPairs(Dataset):
    """Image and class-index mask pairs, decoded and resized on access (bilinear image, nearest mask)."""

    cacheable = True  # the same item each time: zoo decodes the split once into memory where it fits

    def __init__(self, pairs: list[tuple[Path, Path]], channels: int, size: tuple[int, int]):
        self.pairs, self.channels, self.size = pairs, channels, size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        image_file, mask_file = self.pairs[i]
        image, _ = read_image(image_file, self.channels, self.size)
        return image, tv_tensors.Mask(torch.from_numpy(read_mask(mask_file, self.size)))


# ---- the registered dataset -------------------------------------------------------------------


def _inventory(values: dict) -> dict:
    """zoo data check's list of image/mask pairs and of the files that pair with nothing, nothing decoded."""
    image_dir = existing_folder(values["images"], "images", "expected a folder of images")
    mask_dir = existing_folder(values["masks"], "masks", "expected a folder of single-channel PNG masks")
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
    size: Annotated[int, Range(8)] = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Semantic segmentation from IMAGES/x.jpg + MASKS/x.png (pixel value = index into classes, 0 = background)."""
    check_fractions(val_fraction, test_fraction)
    classes = list(classes)
    if len(classes) < 2 or classes[0] != "background":
        raise ZooError(
            f"data.classes={classes}: pixel value 0 is the background, so the list must start with 'background' "
            f"and name at least one class, e.g. data.classes=[background,{','.join(classes) or 'object'}]"
        )
    if len(set(classes)) != len(classes):
        raise ZooError(f"data.classes={classes} names a class twice")
    image_dir = existing_folder(images, "images", "expected a folder of images")
    mask_dir = existing_folder(masks, "masks", "expected a folder of single-channel PNG masks named like the images")
    pairs = pair_masks(image_dir, mask_dir, len(classes))
    tr, va, te = split_indices(len(pairs), val_fraction, test_fraction, split_seed)
    hw = (size, size)
    train, val, test = (MaskPairs([pairs[i] for i in idx], channels, hw) for idx in (tr, va, te))
    mean, std = sampled_stats(train, stats_samples)
    info = DataInfo("segmentation", tuple(classes), channels, hw, mean, std, background=0)  # pixel value 0
    return DataBundle(info, train, val, test)
