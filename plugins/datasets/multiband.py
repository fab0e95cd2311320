"""Generated N-channel images (a stand-in for multispectral data, no download): which band holds the bright square?

Each image has `channels` bands of smooth noise; one band, the class, holds a bright square and another, at
random, a fainter one. Class k is "band k", so telling the classes of bands past the third apart needs those
bands: a model that reads only R, G and B cannot. Values are multiples of 1/255 (8-bit data), so the export's
uint8 form loses nothing. `write=DIR` also saves every image as DIR/<split>/<class>/<index>.npy (H x W x C uint8),
the layout data=arrays reads and `zoo predict` takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch

from zoo import Range, register
from zoo.data import DataBundle, DataInfo, TensorImages, channel_stats
from zoo.errors import make_folder
from zoo_plugins._shared import Fraction, check_fractions, split_indices

BRIGHT, FAINT = 0.45, 0.2  # what the class's square and the distractor's add to their bands


def band_images(channels: int, size: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (N, C, H, W) uint8 and their labels (the band of the bright square), from `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % channels
    rng.shuffle(labels)
    coarse = rng.uniform(0.1, 0.4, size=(count, channels, 4, 4))
    x = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bilinear").numpy()
    x = x + rng.normal(0, 0.03, size=x.shape)
    for i, k in enumerate(labels):
        others = [b for b in range(channels) if b != k]
        for band, add in [(k, BRIGHT)] + ([(int(rng.choice(others)), FAINT)] if others else []):
            side = int(rng.integers(max(2, size // 4), max(3, size // 2) + 1))
            y0, x0 = rng.integers(0, size - side + 1, size=2)
            x[i, band, y0 : y0 + side, x0 : x0 + side] += add
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8), labels.astype(np.int64)


def write_arrays(folder: Path, images: np.ndarray, labels: np.ndarray, splits: dict[str, list[int]]) -> None:
    """Every image as FOLDER/<split>/band<k>/<index>.npy, H x W x C uint8."""
    for split, idx in splits.items():
        for i in idx:
            d = folder / split / f"band{labels[i]}"
            make_folder(d)
            np.save(d / f"{i:05d}.npy", np.ascontiguousarray(images[i].transpose(1, 2, 0)), allow_pickle=False)


@register.dataset("multiband")
def multiband(
    seed: int,
    channels: Annotated[int, Range(2, 64)] = 5,
    size: Annotated[int, Range(8, 512)] = 16,
    images: Annotated[int, Range(20, 100_000)] = 400,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.2,
    generator_seed: int = 0,
    split_seed: int = 0,
    write: Optional[str] = None,
) -> DataBundle:
    """Generated `channels`-band images, class = the band holding the bright square (needs every band to tell)."""
    check_fractions(val_fraction, test_fraction)
    pixels, labels = band_images(channels, size, images, generator_seed)
    train, val, test = split_indices(len(labels), val_fraction, test_fraction, split_seed, labels=labels.tolist())
    if write is not None:
        write_arrays(Path(write), pixels, labels, {"train": train, "val": val, "test": test})
    x, y = torch.from_numpy(pixels).float().div_(255.0), torch.from_numpy(labels)
    mean, std = channel_stats(x[train])  # per band
    info = DataInfo("classification", tuple(f"band{k}" for k in range(channels)), channels, (size, size), mean, std)
    return DataBundle(
        info, TensorImages(x[train], y[train]), TensorImages(x[val], y[val]), TensorImages(x[test], y[test])
    )
