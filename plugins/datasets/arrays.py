"""Arrays on disk, for data of any channel count (multispectral bands, depth, several sensors): a `.npy` file per
image, H x W x C (the channel axis last, as the export's uint8 form and `zoo predict` take them), in a subfolder
per class.

Values: uint8 (divided by 255), uint16 (by 65535), or float32/float64 already in [0, 1]; scale other float data
to [0, 1] before saving. Each array is resized to data.size channel by channel (Pillow's bilinear on float
images), exactly as the runtime's float32 form does for a served model (zoo.runtime.decoding.array_input).
`.tif` files of more than four bands need the tifffile package, which zoo does not depend on: save them as .npy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
from torch.utils.data import Dataset

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.runtime.decoding import ARRAY_EXTENSIONS, ARRAY_SCALE, array_input, check_array, read_array
from zoo_plugins._shared import existing_folder, sampled_stats
from zoo_plugins.datasets.folder import find_splits


class ArrayFiles(Dataset):
    """`.npy` arrays and their class indices, read on access: C x H x W float tensors in [0, 1] at `size`."""

    cacheable = True  # the same item each time: zoo reads the split once into memory where it fits

    def __init__(self, files: list[Path], labels: list[int], channels: int, size: tuple[int, int]):
        self.files, self.labels, self.channels, self.size = files, labels, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        f = self.files[i]
        what = f"data array {str(f)!r}"
        a = check_array(read_array(f, "data array"), self.channels, tuple(ARRAY_SCALE), what)
        return torch.from_numpy(array_input(a, self.size)), torch.tensor(self.labels[i])


@register.dataset("arrays")
def arrays(
    seed: int,
    root: str,
    channels: Annotated[int, Range(1, 1024)],
    size: Annotated[int, Range(8)] = 64,
    val_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    test_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """H x W x C .npy arrays in ROOT/<class>/ (split by fraction) or ROOT/train|val|test/<class>/: any channel count.

    An array of another channel count, rank or dtype is one line naming the file.
    """
    base = existing_folder(root, "root", "expected ROOT/<class>/<name>.npy or ROOT/train/<class>/...")
    hw = (size, size)
    classes, parts = find_splits(base, val_fraction, test_fraction, split_seed, ARRAY_EXTENSIONS)
    splits = {s: ArrayFiles(f, lab, channels, hw) for s, (f, lab) in parts.items()}
    mean, std = sampled_stats(splits["train"], stats_samples)  # per band (zoo.data.channel_stats)
    info = DataInfo("classification", tuple(classes), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
