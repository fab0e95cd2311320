"""Geometric augmentations: torchvision transforms.v2, so masks and boxes move with the image."""

from __future__ import annotations

from typing import Annotated

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from zoo import Range, register
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import Probability

ALL_TASKS = ("classification", "regression", "segmentation", "detection")
Scale = Annotated[float, Range(0, min_exclusive=True)]
UnitScale = Annotated[float, Range(0, 1, min_exclusive=True)]  # a share of the image: at most all of it


class _Resolution(v2.Transform):
    """Down-sample by a random factor and up-sample back: the image loses detail, keeps its size.

    The image goes down with antialiasing and back up bilinearly. Masks and boxes are unchanged: the
    geometry is the same, and re-sampling a mask (even nearest) only coarsens the label. On a bar at
    scale 0.3, the untouched mask disagrees with the degraded image's bright pixels on 0.8% of them,
    a nearest-exact round trip on 4.3%, torchvision's default nearest (off by half a pixel) on 9%.
    """

    def __init__(self, min_scale: float, max_scale: float):
        super().__init__()
        self.min_scale, self.max_scale = min_scale, max_scale

    def make_params(self, flat_inputs: list) -> dict:
        u = float(torch.rand(()))
        return {"scale": self.min_scale + (self.max_scale - self.min_scale) * u}

    def transform(self, inpt, params: dict):
        if isinstance(inpt, (tv_tensors.Mask, tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)):
            return inpt
        h, w = F.get_size(inpt)
        low = [max(1, round(h * params["scale"])), max(1, round(w * params["scale"]))]
        if low == [h, w]:
            return inpt
        bilinear = v2.InterpolationMode.BILINEAR
        return F.resize(
            F.resize(inpt, low, interpolation=bilinear, antialias=True), [h, w], interpolation=bilinear, antialias=True
        )


def _scale_order(name: str, min_scale: float, max_scale: float) -> None:
    if max_scale < min_scale:
        raise ZooError(f"aug.ops.{name}.max_scale={max_scale} must be at least min_scale={min_scale}")


@register.augmentation("hflip", tasks=ALL_TASKS)
def hflip(info: DataInfo, p: Probability = 0.5) -> v2.Transform:
    """Mirror left-right with probability p (not for data whose meaning has a handedness, like digits)."""
    return v2.RandomHorizontalFlip(p)


@register.augmentation("vflip", tasks=ALL_TASKS)
def vflip(info: DataInfo, p: Probability = 0.5) -> v2.Transform:
    """Mirror top-bottom with probability p (aerial and microscopy images)."""
    return v2.RandomVerticalFlip(p)


@register.augmentation("shift", tasks=ALL_TASKS)
def shift(
    info: DataInfo, fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.1, p: Probability = 1.0
) -> v2.Transform:
    """Translate by up to `fraction` of the width and height, with probability p."""
    return v2.RandomApply([v2.RandomAffine(degrees=0.0, translate=(fraction, fraction))], p=p)


@register.augmentation("rotation", tasks=ALL_TASKS)
def rotation(info: DataInfo, degrees: Annotated[float, Range(0)] = 15.0, p: Probability = 1.0) -> v2.Transform:
    """Rotate by a random angle in [-degrees, degrees], with probability p."""
    return v2.RandomApply([v2.RandomRotation(degrees)], p=p)


@register.augmentation("zoom", tasks=ALL_TASKS)
def zoom(info: DataInfo, min_scale: Scale = 0.9, max_scale: Scale = 1.1, p: Probability = 1.0) -> v2.Transform:
    """Zoom about the centre by a random factor in [min_scale, max_scale], with probability p."""
    _scale_order("zoom", min_scale, max_scale)
    return v2.RandomApply([v2.RandomAffine(degrees=0.0, scale=(min_scale, max_scale))], p=p)


@register.augmentation("shear", tasks=ALL_TASKS)
def shear(
    info: DataInfo, degrees: Annotated[float, Range(0, 90, max_exclusive=True)] = 10.0, p: Probability = 1.0
) -> v2.Transform:
    """Shear along x and y by random angles in [-degrees, degrees], with probability p."""
    return v2.RandomApply([v2.RandomAffine(degrees=0.0, shear=(-degrees, degrees, -degrees, degrees))], p=p)


@register.augmentation("resized_crop", tasks=ALL_TASKS)
def resized_crop(
    info: DataInfo,
    min_scale: UnitScale = 0.6,
    max_scale: UnitScale = 1.0,
    max_ratio: Annotated[float, Range(1)] = 1.333,
    p: Probability = 1.0,
) -> v2.Transform:
    """Crop min_scale..max_scale of the area (aspect up to max_ratio), resize to the input size."""
    _scale_order("resized_crop", min_scale, max_scale)
    crop = v2.RandomResizedCrop(
        list(info.size), scale=(min_scale, max_scale), ratio=(1.0 / max_ratio, max_ratio), antialias=True
    )
    return v2.RandomApply([crop], p=p)


@register.augmentation("resolution", tasks=ALL_TASKS)
def resolution(
    info: DataInfo, min_scale: UnitScale = 0.25, max_scale: UnitScale = 0.75, p: Probability = 0.5
) -> v2.Transform:
    """Low-resolution camera: down-sample by min_scale..max_scale and back up, probability p."""
    _scale_order("resolution", min_scale, max_scale)
    return v2.RandomApply([_Resolution(min_scale, max_scale)], p=p)
