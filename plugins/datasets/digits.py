"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans, no download."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import torch
import torch.nn.functional as F

from zoo import Length, Range, register
from zoo.data import DataBundle, DataInfo, TensorImages, channel_stats
from zoo.errors import ZooError
from zoo_plugins._shared import ClassFraction, Fraction, PerClass, check_fractions, split_indices, take_subset


def load_digits_images(size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float images in [0, 1], upsampled (bilinear) to size x size, and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    return x.contiguous(), torch.tensor(d.target, dtype=torch.long)


def rotation_fit(size: int, max_angle: float) -> int:
    """The side the 8x8 scan is upsampled to so that, rotated by up to max_angle degrees, it stays in a size x size
    frame."""
    a = math.radians(min(abs(max_angle), 45.0))  # a square's extent grows by |cos| + |sin|, most (sqrt 2) at 45 degrees
    return int(size / (math.cos(a) + math.sin(a)))


@register.dataset("digits")
def digits(
    seed: int,
    size: Annotated[int, Range(8)] = 32,  # the scans are 8x8
    channels: Literal[1, 3] = 1,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.2,
    split_seed: int = 0,
    classes: Optional[Annotated[list[Annotated[int, Range(0, 9)]], Length(min=2)]] = None,  # one class: nothing to tell
    shots: Optional[Annotated[int, Range(1)]] = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """Handwritten digits (scikit-learn, 1,797 images), stratified split, upsampled; some classes, N shots per class.

    max_per_class and fraction (of each class, seeded by split_seed) cut the images before they are split.
    """
    check_fractions(val_fraction, test_fraction)
    x, y = load_digits_images(size, channels)
    keep = list(range(10)) if classes is None else list(classes)
    if len(set(keep)) != len(keep):
        raise ZooError(f"data.classes={classes} names a digit twice")
    if classes is not None:  # relabel the chosen digits 0..k-1, in the order given
        chosen = torch.isin(y, torch.tensor(keep))
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(keep)] = torch.arange(len(keep))
        x, y = x[chosen], remap[y[chosen]]
    if max_per_class is not None or fraction is not None:
        kept, labels = take_subset(range(len(y)), y.tolist(), range(len(keep)), max_per_class, fraction, split_seed)
        x, y = x[kept], torch.tensor(labels, dtype=torch.long)
    train, val, test = split_indices(len(y), val_fraction, test_fraction, split_seed, labels=y.tolist())
    if shots is not None:  # a few labelled images per class; val and test stay whole
        train_t = torch.tensor(train)
        order = train_t[torch.randperm(len(train_t), generator=torch.Generator().manual_seed(split_seed))]
        picked = [order[y[order] == c][:shots] for c in range(len(keep))]
        if min(len(p) for p in picked) < shots:
            raise ZooError(
                f"data.shots={shots} is more than the training split has for some class ({min(len(p) for p in picked)})"
            )
        train = sorted(torch.cat(picked).tolist())
    mean, std = channel_stats(x[train])
    info = DataInfo("classification", tuple(str(c) for c in keep), channels, (size, size), mean, std)
    return DataBundle(
        info, TensorImages(x[train], y[train]), TensorImages(x[val], y[val]), TensorImages(x[test], y[test])
    )


@register.dataset("digits_rotation")
def digits_rotation(
    seed: int,
    size: int = 32,
    channels: Literal[1, 3] = 1,
    max_angle: Annotated[float, Range(0, 180, min_exclusive=True)] = 45.0,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.2,
    split_seed: int = 0,
    angle_seed: int = 0,
) -> DataBundle:
    """Digits rotated by a known random angle in [-max_angle, max_angle] degrees, counter-clockwise: regress it."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    check_fractions(val_fraction, test_fraction)
    inner = rotation_fit(size, max_angle)
    if inner < 8:
        need = next(n for n in range(size, 64) if rotation_fit(n, max_angle) >= 8)
        raise ZooError(
            f"data.size={size} is too small to rotate the 8x8 scans by up to {max_angle} degrees inside the frame; "
            f"use data.size={need} or more"
        )
    x, y = load_digits_images(inner, channels)
    pad = size - inner  # the shrunken digit sits in the middle of a black frame, so no rotation cuts it
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    g = torch.Generator().manual_seed(angle_seed)
    angles = ((torch.rand(len(x), generator=g, dtype=torch.float64) * 2 - 1) * max_angle).float()
    x = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.BILINEAR) for img, a in zip(x, angles)])
    x = x.clamp_(0.0, 1.0).contiguous()
    targets = angles.unsqueeze(1)
    # stratified by digit: every digit in every split
    train, val, test = split_indices(len(y), val_fraction, test_fraction, split_seed, labels=y.tolist())
    mean, std = channel_stats(x[train])
    info = DataInfo("regression", ("angle",), channels, (size, size), mean, std, units=("degrees",))
    return DataBundle(
        info,
        TensorImages(x[train], targets[train]),
        TensorImages(x[val], targets[val]),
        TensorImages(x[test], targets[test]),
    )
