"""Geometric augmentations: torchvision transforms.v2, so masks and boxes move with the image."""
from __future__ import annotations

from torchvision.transforms import v2

from zoo import register
from zoo.data import DataInfo
from zoo.errors import ZooError

ALL_TASKS = ("classification", "regression", "segmentation", "detection")


def _p(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ZooError(f"aug.ops.{name}.p={p} must be a probability in [0, 1]")


@register.augmentation("hflip", tasks=ALL_TASKS)
def hflip(info: DataInfo, p: float = 0.5) -> v2.Transform:
    """Mirror left-right with probability p (not for data whose meaning has a handedness, like digits)."""
    _p(p, "hflip")
    return v2.RandomHorizontalFlip(p)


@register.augmentation("vflip", tasks=ALL_TASKS)
def vflip(info: DataInfo, p: float = 0.5) -> v2.Transform:
    """Mirror top-bottom with probability p (aerial and microscopy images)."""
    _p(p, "vflip")
    return v2.RandomVerticalFlip(p)


@register.augmentation("shift", tasks=ALL_TASKS)
def shift(info: DataInfo, fraction: float = 0.1, p: float = 1.0) -> v2.Transform:
    """Translate by up to `fraction` of the width and height, with probability p."""
    _p(p, "shift")
    if not 0.0 <= fraction < 1.0:
        raise ZooError(f"aug.ops.shift.fraction={fraction} must be in [0, 1)")
    return v2.RandomApply([v2.RandomAffine(degrees=0.0, translate=(fraction, fraction))], p=p)


@register.augmentation("rotation", tasks=ALL_TASKS)
def rotation(info: DataInfo, degrees: float = 15.0, p: float = 1.0) -> v2.Transform:
    """Rotate by a random angle in [-degrees, degrees], with probability p."""
    _p(p, "rotation")
    if degrees < 0:
        raise ZooError(f"aug.ops.rotation.degrees={degrees} must be zero or more")
    return v2.RandomApply([v2.RandomRotation(degrees)], p=p)
