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


# ---- the same ops on a whole batch ------------------------------------------------------------------
# zoo runs the trailing ops of a pipeline that have `batched(images, targets)` after the loader, on the batch
# where it is (the GPU), with a draw per sample from torch's global generator (so a run repeats and resumes).
# Image and mask move together; boxes do not, so detection keeps the per-sample ops.
BATCHED_TASKS = ("classification", "regression", "segmentation")


class _Batchable(v2.Transform):
    """A per-sample transform (`sample`, used as it is) that also runs on a whole batch: `batched`."""

    def __init__(self, sample: v2.Transform, batched):
        super().__init__()
        self.sample, self._batched = sample, batched

    def forward(self, *inputs):
        return self.sample(*inputs)

    def batched(self, images: torch.Tensor, targets):
        """The op on a batch (N, C, H, W) and its targets (masks (N, H, W) move with the images)."""
        return self._batched(images, targets)


def _per_sample(info: DataInfo, sample: v2.Transform, batched) -> v2.Transform:
    return _Batchable(sample, batched) if info.task in BATCHED_TASKS else sample


def _chosen(n: int, p: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n) < p).to(device, non_blocking=True)


def _flip_batch(dim: int, p: float):
    def flip(images: torch.Tensor, targets):
        on = _chosen(len(images), p, images.device)
        images = torch.where(on.view(-1, 1, 1, 1), images.flip(dim), images)
        if isinstance(targets, torch.Tensor) and targets.ndim == 3:  # segmentation masks
            targets = torch.where(on.view(-1, 1, 1), targets.flip(dim), targets)
        return images, targets

    return flip


def affine_theta(angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """affine_grid's matrices (N, 2, 3) for an affine about the image centre as torchvision's: rotate `angle`
    degrees counter-clockwise (as `F.rotate`; `F.affine` takes clockwise angles), scale, then translate (N, 2)
    pixels (x, y)."""
    a = torch.deg2rad(angle.double())
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    inv = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # output -> input, pixels
    shift = -(inv @ translate.double().unsqueeze(-1)).squeeze(-1)
    half = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    theta = inv * half.view(1, 1, 2) / half.view(1, 2, 1)  # in affine_grid's [-1, 1] coordinates
    return torch.cat([theta, (shift / half).unsqueeze(-1)], -1).float()


def mask_fill(info: DataInfo) -> int:
    """What a mask holds where a warp brings in pixels from outside the image: the ignore index when the data has
    one (those pixels label nothing), else 0 (background), as torchvision fills."""
    return 0 if info.ignore_index is None else int(info.ignore_index)


def fills(info: DataInfo) -> dict:
    """torchvision's `fill` for an affine transform: zeros for the image, mask_fill for a segmentation mask."""
    return {tv_tensors.Mask: mask_fill(info), "others": 0}


def warp(images: torch.Tensor, targets, theta: torch.Tensor, fill: int = 0):
    """Images (nearest, zero fill, as torchvision's affine) and segmentation masks (`fill` outside) through affine
    matrices."""
    import torch.nn.functional as nnf

    theta = theta.to(images.device, non_blocking=True)
    grid = nnf.affine_grid(theta, list(images.shape), align_corners=False).to(images.dtype)
    images = nnf.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if isinstance(targets, torch.Tensor) and targets.ndim == 3:  # masks: nearest, `fill` outside
        masks = nnf.grid_sample(targets[:, None].to(grid.dtype) - fill, grid, mode="nearest", align_corners=False)
        targets = (masks[:, 0] + fill).round().to(targets.dtype)  # shifted so the zeros brought in become `fill`
    return images, targets


def _affine_batch(
    p: float, degrees: float = 0.0, translate: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), fill: int = 0
):
    def affine(images: torch.Tensor, targets):
        n, h, w = len(images), images.shape[-2], images.shape[-1]
        on = torch.rand(n) < p
        angle = (torch.rand(n) * 2 - 1) * degrees if degrees else torch.zeros(n)
        shift = torch.zeros(n, 2)
        if translate:  # whole pixels, as RandomAffine draws them
            shift = ((torch.rand(n, 2) * 2 - 1) * torch.tensor([translate * w, translate * h])).round()
        factor = torch.empty(n).uniform_(*scale) if scale != (1.0, 1.0) else torch.ones(n)
        angle, factor = torch.where(on, angle, 0.0), torch.where(on, factor, 1.0)
        shift = torch.where(on[:, None], shift, 0.0)
        return warp(images, targets, affine_theta(angle, shift, factor, h, w), fill)

    return affine


def _scale_order(name: str, min_scale: float, max_scale: float) -> None:
    if max_scale < min_scale:
        raise ZooError(f"aug.ops.{name}.max_scale={max_scale} must be at least min_scale={min_scale}")


@register.augmentation("hflip", tasks=ALL_TASKS)
def hflip(info: DataInfo, p: Probability = 0.5) -> v2.Transform:
    """Mirror left-right with probability p (not for data whose meaning has a handedness, like digits)."""
    return _per_sample(info, v2.RandomHorizontalFlip(p), _flip_batch(-1, p))


@register.augmentation("vflip", tasks=ALL_TASKS)
def vflip(info: DataInfo, p: Probability = 0.5) -> v2.Transform:
    """Mirror top-bottom with probability p (aerial and microscopy images)."""
    return _per_sample(info, v2.RandomVerticalFlip(p), _flip_batch(-2, p))


@register.augmentation("shift", tasks=ALL_TASKS)
def shift(
    info: DataInfo, fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.1, p: Probability = 1.0
) -> v2.Transform:
    """Translate by up to `fraction` of the width and height, with probability p."""
    sample = v2.RandomApply([v2.RandomAffine(degrees=0.0, translate=(fraction, fraction), fill=fills(info))], p=p)
    return _per_sample(info, sample, _affine_batch(p, translate=fraction, fill=mask_fill(info)))


@register.augmentation("rotation", tasks=ALL_TASKS)
def rotation(info: DataInfo, degrees: Annotated[float, Range(0)] = 15.0, p: Probability = 1.0) -> v2.Transform:
    """Rotate by a random angle in [-degrees, degrees], with probability p."""
    sample = v2.RandomApply([v2.RandomRotation(degrees, fill=fills(info))], p=p)
    return _per_sample(info, sample, _affine_batch(p, degrees=degrees, fill=mask_fill(info)))


@register.augmentation("zoom", tasks=ALL_TASKS)
def zoom(info: DataInfo, min_scale: Scale = 0.9, max_scale: Scale = 1.1, p: Probability = 1.0) -> v2.Transform:
    """Zoom about the centre by a random factor in [min_scale, max_scale], with probability p."""
    _scale_order("zoom", min_scale, max_scale)
    sample = v2.RandomApply([v2.RandomAffine(degrees=0.0, scale=(min_scale, max_scale), fill=fills(info))], p=p)
    return _per_sample(info, sample, _affine_batch(p, scale=(min_scale, max_scale), fill=mask_fill(info)))


@register.augmentation("shear", tasks=ALL_TASKS)
def shear(
    info: DataInfo, degrees: Annotated[float, Range(0, 90, max_exclusive=True)] = 10.0, p: Probability = 1.0
) -> v2.Transform:
    """Shear along x and y by random angles in [-degrees, degrees], with probability p."""
    shear = (-degrees, degrees, -degrees, degrees)
    return v2.RandomApply([v2.RandomAffine(degrees=0.0, shear=shear, fill=fills(info))], p=p)


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
