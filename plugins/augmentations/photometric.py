"""Photometric augmentations: torchvision transforms.v2 that change pixel values, never geometry.

Masks and boxes pass through them unchanged. Images are float CHW in [0, 1] and stay in [0, 1].
Saturation and hue need colour: on 1-channel images they are no-ops (torchvision matches PIL there). On data of
another channel count (bands), brightness and contrast work band by band (BandJitter); saturation, hue and the
automatic policies, which need RGB, are refused in one line.
RandAugment and TrivialAugment also shear, translate and rotate, but torchvision applies them to the
image only and refuses masks and boxes, so they are offered for classification and regression only.
"""

from __future__ import annotations

import logging
from typing import Annotated

import torch
from torchvision import tv_tensors
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


def _is_bands(info: DataInfo) -> bool:
    """Data of other than 1 or 3 channels (multispectral, depth): torchvision's colour kernels refuse it."""
    return info.channels not in (1, 3)


def _colour_only(info: DataInfo, name: str) -> None:
    """One line for an operation that needs RGB (or grey) on data of another channel count."""
    if _is_bands(info):
        raise ZooError(
            f"aug.ops.{name} works on 1- or 3-channel images, but the data has {info.channels} channels; "
            "brightness, contrast, noise, blur and the geometric operations work on any channel count"
        )


class BandJitter(v2.Transform):
    """Brightness or contrast of an image of any channel count, as ColorJitter does for RGB: brightness scales
    every band by one factor; contrast blends each band with the mean of all bands (RGB's grey mean, taken over
    the bands). Masks and boxes pass through."""

    def __init__(self, name: str, amount: float):
        super().__init__()
        self.name, self.amount = name, amount

    def make_params(self, flat_inputs) -> dict:
        lo, hi = max(0.0, 1.0 - self.amount), 1.0 + self.amount
        return {"factor": float(torch.empty(1).uniform_(lo, hi))}

    def transform(self, inpt, params: dict):
        if isinstance(inpt, (tv_tensors.Mask, tv_tensors.BoundingBoxes)) or not isinstance(inpt, torch.Tensor):
            return inpt
        f = params["factor"]
        other = torch.zeros_like(inpt) if self.name == "brightness" else inpt.mean(dim=(-3, -2, -1), keepdim=True)
        return (inpt * f + other * (1.0 - f)).clamp_(0.0, 1.0)


def _jitter(info: DataInfo, name: str, amount: float, p: float, colour: bool = False) -> v2.Transform:
    """One ColorJitter property (`name`) by up to `amount`, with probability p."""
    if colour:
        _colour_only(info, name)
        _needs_colour(info, name)
    if _is_bands(info):
        return v2.RandomApply([BandJitter(name, amount)], p=p)
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
    _colour_only(info, "randaugment")
    return v2.RandomApply([v2.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=31)], p=p)


@register.augmentation("trivialaugment", tasks=IMAGE_LEVEL_TASKS)
def trivialaugment(info: DataInfo, p: Probability = 1.0) -> v2.Transform:
    """TrivialAugment (wide): one random operation at a random magnitude, with probability p."""
    _colour_only(info, "trivialaugment")
    return v2.RandomApply([v2.TrivialAugmentWide()], p=p)
