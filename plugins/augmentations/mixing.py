"""Batch mixing augmentations (Mixup, CutMix): zoo.data.BatchTransforms for classification.

Each mixes a batch with a shuffled copy of itself by a ratio lambda ~ Beta(alpha, alpha) and returns
soft targets (N, num_classes), the same mix of the two images' labels. Integer class targets (N,) and
already-soft targets (N, C) are both accepted. A batch that is not mixed (probability 1 - p) comes back
exactly as it went in. Classification only: a mixed mask or a box list has no meaning here.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F

from zoo import Range, register
from zoo.data import BatchTransform, DataInfo
from zoo_plugins._shared import Probability

CLASSIFICATION = ("classification",)
Alpha = Annotated[float, Range(0, min_exclusive=True)]  # of the Beta(alpha, alpha) the mixing ratio is drawn from


def soft_targets(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices (N,) as one-hot float (N, num_classes); soft targets (N, num_classes) as float."""
    if targets.ndim == 1 and not targets.is_floating_point():
        return F.one_hot(targets.long(), num_classes).float()
    if targets.ndim == 2 and targets.shape[1] == num_classes:
        return targets.float()
    raise ValueError(
        f"mixing needs class indices (N,) or soft targets (N, {num_classes}); "
        f"got {targets.dtype} of shape {tuple(targets.shape)}"
    )


class _Mixing(BatchTransform):
    """The shared part: decide whether to mix, draw lambda and a permutation, mix the targets."""

    def __init__(self, num_classes: int, alpha: float, p: float):
        self.num_classes, self.alpha, self.p = num_classes, alpha, p

    def mix(self, images: torch.Tensor, perm: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        """Mix images with images[perm]; return them and the fraction that is still the original."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, targets: torch.Tensor):
        if float(torch.rand(())) >= self.p:  # p=0 never mixes, p=1 always does
            return images, targets
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        perm = torch.randperm(len(images), device=images.device)
        mixed, lam = self.mix(images, perm, lam)
        soft = soft_targets(targets, self.num_classes).to(images.device)
        return mixed, lam * soft + (1.0 - lam) * soft[perm]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, p={self.p})"


class Mixup(_Mixing):
    """Each image becomes lam * itself + (1 - lam) * another image of the batch."""

    def mix(self, images, perm, lam):
        return lam * images + (1.0 - lam) * images[perm], lam


class CutMix(_Mixing):
    """A box of area about (1 - lam) from another image of the batch is pasted into each image.

    The box is clipped at the border, so lambda is recomputed from the area actually pasted.
    """

    def mix(self, images, perm, lam):
        h, w = images.shape[-2:]
        r = math.sqrt(1.0 - lam)
        ch, cw = int(h * r), int(w * r)
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(cy - ch // 2, 0), min(cy - ch // 2 + ch, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx - cw // 2 + cw, w)
        out = images.clone()
        out[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
        return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


@register.augmentation("mixup", tasks=CLASSIFICATION)
def mixup(info: DataInfo, alpha: Alpha = 0.2, p: Probability = 1.0) -> BatchTransform:
    """Mixup: blend images pairwise by lambda ~ Beta(alpha, alpha), with probability p."""
    return Mixup(info.num_classes, alpha, p)


@register.augmentation("cutmix", tasks=CLASSIFICATION)
def cutmix(info: DataInfo, alpha: Alpha = 1.0, p: Probability = 1.0) -> BatchTransform:
    """CutMix: paste a box of another image, area 1 - lambda ~ Beta(alpha, alpha), probability p."""
    return CutMix(info.num_classes, alpha, p)
