"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 scans, no download."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from zoo import register
from zoo.data import DataBundle, DataInfo, TensorImages, channel_stats, stratified_split
from zoo.errors import ZooError


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


@register.dataset("digits")
def digits(seed: int, size: int = 32, channels: Literal[1, 3] = 1, val_fraction: float = 0.15,
           test_fraction: float = 0.2, split_seed: int = 0) -> DataBundle:
    """Handwritten digits 0-9 (scikit-learn, 1,797 images), stratified split fixed by split_seed, upsampled to size."""
    if size < 8:
        raise ZooError(f"data.size={size} must be at least 8 (the scans are 8x8)")
    x, y = load_digits_images(size, channels)
    train, val, test = stratified_split(y.tolist(), val_fraction, test_fraction, split_seed)
    mean, std = channel_stats(x[train])
    info = DataInfo("classification", tuple(str(i) for i in range(10)), channels, (size, size), mean, std)
    return DataBundle(info, TensorImages(x[train], y[train]), TensorImages(x[val], y[val]), TensorImages(x[test], y[test]))
