"""Generated shapes: circles, squares and triangles on textured backgrounds, for segmentation, detection and regression.

Every image is drawn from its own random stream (generator_seed, index), so the same parameters give
bit-identical images and targets, and nothing is cached on disk. Objects are rasterised exactly (a
pixel belongs to a shape when its centre is inside it), so masks, boxes and counts agree by
construction: the mask shows the top-most object at each pixel; a box is the tight extent of an
object's visible pixels, in pixel-edge coordinates (XYXY, x1 = last column + 1); an object with less
than `min_visible` of its pixels visible gets no box and is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo import Length, Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import Fraction, check_fractions, sampled_stats, split_indices

SHAPES = ("circle", "square", "triangle")
TARGETS = ("count", "count_circle", "count_square", "count_triangle", "mean_size")
Target = Literal["count", "count_circle", "count_square", "count_triangle", "mean_size"]
GRID = 5  # the smooth background noise is a GRID x GRID lattice, upsampled
CONTRAST = 0.3  # least mean absolute colour difference between an object and what it is drawn over


# ----------------------------------------------------------------------------------------------------
# building blocks


@dataclass(frozen=True)
class ShapeScenes:
    """Generated images and every target: images (N, C, H, W) uint8, masks (N, H, W) uint8 (0 = background,
    1 + shape index), boxes and labels per image, and `values` (N, len(TARGETS)) float32."""

    images: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    values: np.ndarray


def _upsample(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of bilinear upsampling (align_corners=False)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - (pos - lo))
    np.add.at(m, (np.arange(n_out), hi), pos - lo)
    return m


def _background(
    rng: np.random.Generator, c: int, h: int, w: int, up_h: np.ndarray, up_w: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """A textured background (C, H, W) in [0, 1]: a base colour, smooth noise, a gradient and sometimes stripes."""
    base = rng.uniform(0.2, 0.8, size=(c, 1, 1))
    noise = up_h @ rng.uniform(-1, 1, size=(c, GRID, GRID)) @ up_w.T * rng.uniform(0.04, 0.16)
    phi = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - w / 2) * math.cos(phi) + (yy - h / 2) * math.sin(phi)) / max(h, w)
    bg = base + noise + ramp * rng.uniform(-0.3, 0.3, size=(c, 1, 1))
    if rng.random() < 0.4:
        psi, freq = rng.uniform(0, math.pi), rng.uniform(2, 6)
        wave = np.sin(
            2 * math.pi * freq * (xx * math.cos(psi) + yy * math.sin(psi)) / max(h, w) + rng.uniform(0, 2 * math.pi)
        )
        bg = bg + wave * rng.uniform(0.03, 0.1) * rng.uniform(0.5, 1.0, size=(c, 1, 1))
    return bg


def _circumradius(kind: int, s: float) -> float:
    return (s / 2, s / math.sqrt(2), s / math.sqrt(3))[kind]


def rasterise(kind: int, cx: float, cy: float, s: float, theta: float, h: int, w: int) -> tuple[int, int, np.ndarray]:
    """The pixels whose centres lie inside a shape: (y0, x0, boolean window). `s` is the circle's diameter,
    the square's side or the equilateral triangle's side; `theta` its rotation in radians."""
    r = _circumradius(kind, s)
    x0, x1 = max(0, int(math.floor(cx - r))), min(w, int(math.ceil(cx + r)) + 1)
    y0, y1 = max(0, int(math.floor(cy - r))), min(h, int(math.ceil(cy + r)) + 1)
    xs = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    ys = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    if kind == 0:
        inside = xs * xs + ys * ys <= r * r
    elif kind == 1:
        u = xs * math.cos(theta) + ys * math.sin(theta)
        v = ys * math.cos(theta) - xs * math.sin(theta)
        inside = (np.abs(u) <= s / 2) & (np.abs(v) <= s / 2)
    else:  # inside when on the inner side of the three edges, each at the inradius r/2 from the centre
        inside = np.ones((y1 - y0, x1 - x0), dtype=bool)
        for k in range(3):
            a = theta - math.pi / 2 + k * 2 * math.pi / 3  # direction of vertex k (theta = 0: apex up)
            inside &= xs * math.cos(a) + ys * math.sin(a) >= -r / 2
    return y0, x0, inside


def _colour(rng: np.random.Generator, c: int, under: list[np.ndarray]) -> np.ndarray:
    """A random colour that differs by at least CONTRAST from every colour in `under`, or the best of 16 tries."""
    best, best_gap = None, -1.0
    for _ in range(16):
        colour = rng.uniform(0, 1, size=c)
        gap = min(float(np.abs(colour - u).mean()) for u in under)
        if gap >= CONTRAST:
            return colour
        if gap > best_gap:
            best, best_gap = colour, gap
    return best


def _scene(
    rng: np.random.Generator,
    c: int,
    h: int,
    w: int,
    grids: tuple,
    min_objects: int,
    max_objects: int,
    min_size: int,
    max_size: int,
    min_visible: float,
):
    """One image (C, H, W) float, its owner map (which object each pixel shows, -1 for none), and its objects."""
    image = _background(rng, c, h, w, *grids)
    owner = np.full((h, w), -1, dtype=np.int16)
    objects = []  # (kind, size, cx, cy, r, y0, x0, window, colour)
    for k in range(int(rng.integers(min_objects, max_objects + 1))):
        kind = int(rng.integers(len(SHAPES)))
        s = float(rng.uniform(min_size, max_size))
        theta = float(rng.uniform(0, (0.0, math.pi / 2, 2 * math.pi / 3)[kind]))
        r = _circumradius(kind, s)
        mx, my = min(r, w / 2), min(r, h / 2)
        for _ in range(10):  # prefer a place that does not bury an earlier object; overlap is still allowed
            cx, cy = float(rng.uniform(mx, w - mx)), float(rng.uniform(my, h - my))
            if all(math.hypot(cx - o[2], cy - o[3]) >= 0.6 * (r + o[4]) for o in objects):
                break
        y0, x0, inside = rasterise(kind, cx, cy, s, theta, h, w)
        wy, wx = inside.shape
        region = image[:, y0 : y0 + wy, x0 : x0 + wx]
        under = [region[:, inside].mean(axis=1)] if inside.any() else [image.mean(axis=(1, 2))]
        under += [o[8] for o in objects if math.hypot(cx - o[2], cy - o[3]) < r + o[4]]
        colour = _colour(rng, c, under)
        region[:, inside] = colour[:, None]
        owner[y0 : y0 + wy, x0 : x0 + wx][inside] = k
        objects.append((kind, s, cx, cy, r, y0, x0, inside, colour))
    image += rng.normal(0.0, 0.02, size=image.shape)  # sensor noise, so no region is one flat colour
    boxes, labels, sizes = [], [], []
    for k, (kind, s, _, _, _, y0, x0, inside, _) in enumerate(objects):
        wy, wx = inside.shape
        visible = owner[y0 : y0 + wy, x0 : x0 + wx] == k
        drawn = int(inside.sum())
        if drawn == 0 or visible.sum() < min_visible * drawn:
            continue  # mostly hidden: neither boxed nor counted
        ys, xs = np.nonzero(visible)
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
        labels.append(kind)
        sizes.append(s)
    kinds = np.asarray([o[0] for o in objects], dtype=np.int64)
    mask = np.where(owner >= 0, kinds[np.maximum(owner, 0)] + 1 if len(kinds) else 0, 0).astype(np.uint8)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(SHAPES))
    values = [len(labels), *counts.tolist(), float(np.mean(sizes)) if sizes else 0.0]
    return image, mask, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64), values


def generate_shapes(
    num_images: int,
    size: int = 64,
    channels: int = 3,
    min_objects: int = 1,
    max_objects: int = 6,
    min_size: int = 8,
    max_size: int = 24,
    min_visible: float = 0.3,
    generator_seed: int = 0,
) -> ShapeScenes:
    """Draw `num_images` scenes; image i depends only on the parameters, generator_seed and i."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    grids = (_upsample(GRID, h), _upsample(GRID, w), yy, xx)
    images = np.empty((num_images, channels, h, w), dtype=np.uint8)
    masks = np.empty((num_images, h, w), dtype=np.uint8)
    boxes, labels, values = [], [], np.empty((num_images, len(TARGETS)), dtype=np.float32)
    for i in range(num_images):
        rng = np.random.default_rng([generator_seed, i])
        image, masks[i], b, lab, values[i] = _scene(
            rng, channels, h, w, grids, min_objects, max_objects, min_size, max_size, min_visible
        )
        images[i] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        boxes.append(b)
        labels.append(lab)
    return ShapeScenes(images, masks, boxes, labels, values)


class ShapeImages(Dataset):
    """A split of generated scenes, yielding (image, target) in the format of its task."""

    in_memory = True  # generated into arrays: nothing to decode per item

    def __init__(self, scenes: ShapeScenes, index: list[int], task: str, targets: list[int]):
        self.pixels = torch.from_numpy(scenes.images[index])  # uint8, made float in [0, 1] per sample
        self.masks = torch.from_numpy(scenes.masks[index])
        self.boxes = [torch.from_numpy(scenes.boxes[i]) for i in index]
        self.labels = [torch.from_numpy(scenes.labels[i]) for i in index]
        self.values = torch.from_numpy(scenes.values[index][:, targets])
        self.task = task

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        image = self.pixels[i].float().div_(255.0)
        if self.task == "segmentation":
            return image, tv_tensors.Mask(self.masks[i].long())
        if self.task == "detection":
            boxes = tv_tensors.BoundingBoxes(self.boxes[i].clone(), format="XYXY", canvas_size=tuple(image.shape[-2:]))
            return image, {"boxes": boxes, "labels": self.labels[i].clone()}
        return image, self.values[i].clone()


# ----------------------------------------------------------------------------------------------------
# registered dataset


@register.dataset("shapes")
def shapes(
    seed: int,
    task: Literal["segmentation", "detection", "regression"] = "segmentation",
    size: Annotated[int, Range(16)] = 64,
    num_images: Annotated[int, Range(3, 1_000_000)] = 2000,  # train, val and test need one each
    min_objects: Annotated[int, Range(0, 100)] = 1,
    max_objects: Annotated[int, Range(0, 100)] = 6,
    min_size: Annotated[int, Range(4)] = 8,
    max_size: Annotated[int, Range(4)] = 24,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    generator_seed: int = 0,
    min_visible: Annotated[float, Range(0, 1)] = 0.3,
    regression_targets: Annotated[list[Target], Length(min=1)] = (
        "count_circle",
        "count_square",
        "count_triangle",
        "mean_size",
    ),
    stats_samples: int = 512,
) -> DataBundle:
    """Generated circles, squares and triangles on textured backgrounds: masks, boxes or counts, by generator_seed."""
    check_fractions(val_fraction, test_fraction)
    if min_objects > max_objects:
        raise ZooError(f"data.min_objects={min_objects} and data.max_objects={max_objects} must satisfy min <= max")
    if not min_size <= max_size <= size:
        raise ZooError(
            f"data.min_size={min_size} and data.max_size={max_size} "
            f"must satisfy min_size <= max_size <= data.size ({size})"
        )
    names = list(regression_targets)
    if len(set(names)) != len(names):
        raise ZooError(f"data.regression_targets={names} names a target twice")
    scenes = generate_shapes(
        num_images, size, channels, min_objects, max_objects, min_size, max_size, min_visible, generator_seed
    )
    # every image is an independent draw, so a seeded shuffle split is as good as any
    tr, va, te = split_indices(num_images, val_fraction, test_fraction, generator_seed)
    cols = [TARGETS.index(n) for n in names]
    train, val, test = (ShapeImages(scenes, idx, task, cols) for idx in (tr, va, te))
    mean, std = sampled_stats(train, stats_samples)
    classes = {"segmentation": ("background", *SHAPES), "detection": SHAPES, "regression": tuple(names)}[task]
    units = {"count": "objects", "mean_size": "pixels"}  # count_circle and the others count objects too
    info = DataInfo(
        task,
        classes,
        channels,
        (size, size),
        mean,
        std,
        units=tuple(units.get(n, "objects") for n in names) if task == "regression" else (),
        background=0 if task == "segmentation" else None,
    )
    return DataBundle(info, train, val, test)
