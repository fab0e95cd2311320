"""Photometric augmentations: torchvision transforms.v2 that change pixel values, never geometry.

Masks and boxes pass through them unchanged. Images are float CHW in [0, 1] and stay in [0, 1].
Saturation and hue need colour: on 1-channel images they are no-ops (torchvision matches PIL there).
RandAugment and TrivialAugment also shear, translate and rotate, but torchvision applies them to the
image only and refuses masks and boxes, so they are offered for classification and regression only.
"""

from __future__ import annotations

import logging
from typing import Annotated

from torchvision.transforms import v2

from zoo import Range, register
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import Probability

ALL_TASKS = ("classification", "regression", "segmentation", "detection")
IMAGE_LEVEL_TASKS = ("classification", "regression")  # the target does not live on the pixel grid

Amount = Annotated[float, Range(0)]
log = logging.getLogger("zoo")


def _needs_colour(info: DataInfo, name: str) -> None:
    if info.channels == 1:
        log.warning("aug.ops.%s has no effect on 1-channel images (data has 1 channel)", name)


def _jitter(info: DataInfo, name: str, amount: float, p: float, colour: bool = False) -> v2.Transform:
    """One ColorJitter property (`name`) by up to `amount`, with probability p."""
    if colour:
        _needs_colour(info, name)
    return v2.RandomApply([v2.ColorJitter(**{name: amount})], p=p)


@register.augmentation("brightness", tasks=ALL_TASKS)
def brightness(info: DataInfo, amount: Amount = 0.2, p: Probability = 1.0) -> v2.Transform:
    """Scale brightness by a random factor in [1 - amount, 1 + amount], with probability p."""
    return _jitter(info, "brightness", amount, p)


@register.augmentation("contrast", tasks=ALL_TASKS)
def contrast(info: DataInfo, amount: Amount = 0.2, p: Probability = 1.0) -> v2.Transform:
    """Scale contrast by a random factor in [1 - amount, 1 + amount], with probability p."""
    return _jitter(info, "contrast", amount, p)


@register.augmentation("saturation", tasks=ALL_TASKS)
def saturation(info: DataInfo, amount: Amount = 0.2, p: Probability = 1.0) -> v2.Transform:
    """Scale saturation by a factor in [1 - amount, 1 + amount], probability p; needs colour."""
    return _jitter(info, "saturation", amount, p, colour=True)


@register.augmentation("hue", tasks=ALL_TASKS)
def hue(info: DataInfo, amount: Annotated[float, Range(0, 0.5)] = 0.05, p: Probability = 1.0) -> v2.Transform:
    """Shift hue by a fraction in [-amount, amount] of the wheel, probability p; needs colour."""
    return _jitter(info, "hue", amount, p, colour=True)


@register.augmentation("noise", tasks=ALL_TASKS)
def noise(info: DataInfo, std: Annotated[float, Range(0, 1)] = 0.05, p: Probability = 0.5) -> v2.Transform:
    """Add Gaussian pixel noise of standard deviation std, clamped to [0, 1], with probability p."""
    return v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=std, clip=True)], p=p)


@register.augmentation("blur", tasks=ALL_TASKS)
def blur(
    info: DataInfo,
    kernel_size: Annotated[int, Range(1)] = 3,
    min_sigma: Annotated[float, Range(0, min_exclusive=True)] = 0.1,
    max_sigma: float = 1.0,
    p: Probability = 0.5,
) -> v2.Transform:
    """Gaussian blur: kernel_size kernel, sigma in [min_sigma, max_sigma], with probability p."""
    if kernel_size % 2 == 0 or kernel_size > min(info.size):  # odd: a centre pixel; and it must fit the image
        raise ZooError(
            f"aug.ops.blur.kernel_size={kernel_size} must be an odd number from 1 to the image size {min(info.size)}"
        )
    if max_sigma < min_sigma:
        raise ZooError(f"aug.ops.blur.max_sigma={max_sigma} must be at least min_sigma={min_sigma}")
    return v2.RandomApply([v2.GaussianBlur(kernel_size, sigma=(min_sigma, max_sigma))], p=p)


@register.augmentation("cutout", tasks=IMAGE_LEVEL_TASKS)
def cutout(
    info: DataInfo,
    min_area: Annotated[float, Range(0, 1, min_exclusive=True, max_exclusive=True)] = 0.02,
    max_area: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    max_ratio: Annotated[float, Range(1)] = 3.3,
    value: Annotated[float, Range(0, 1)] = 0.0,
    p: Probability = 0.5,
) -> v2.Transform:
    """Erase a random rectangle (min_area..max_area of the image) to `value`, with probability p.

    Not offered for segmentation or detection: the erased pixels would keep their mask classes and an
    erased object its box, so the model would be taught to see what is not there.
    """
    if max_area < min_area:
        raise ZooError(f"aug.ops.cutout.max_area={max_area} must be at least min_area={min_area}")
    return v2.RandomErasing(p=p, scale=(min_area, max_area), ratio=(1.0 / max_ratio, max_ratio), value=value)


@register.augmentation("randaugment", tasks=IMAGE_LEVEL_TASKS)
def randaugment(
    info: DataInfo,
    num_ops: Annotated[int, Range(1)] = 2,
    magnitude: Annotated[int, Range(0, 30)] = 9,
    p: Probability = 1.0,
) -> v2.Transform:
    """RandAugment: num_ops random operations at magnitude 0-30, with probability p."""
    return v2.RandomApply([v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=31)], p=p)


@register.augmentation("trivialaugment", tasks=IMAGE_LEVEL_TASKS)
def trivialaugment(info: DataInfo, p: Probability = 1.0) -> v2.Transform:
    """TrivialAugment (wide): one random operation at a random magnitude, with probability p."""
    return v2.RandomApply([v2.TrivialAugmentWide()], p=p)
