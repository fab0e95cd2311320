"""Generated glyphs on cluttered backgrounds: a transfer-learning protocol where pixels are not enough.

Each class is a glyph: two to four strokes (segments and arcs) drawn from its own random stream
(glyph_seed, class), like a letter of an invented alphabet. An image shows one glyph at a random place,
scale, rotation, stroke width and colour, over a textured background crossed by distractor strokes of
the same kind. Pixels alone say little about the class (raw-pixel nearest neighbour is near chance), but
a network that has learned strokes, junctions and curves on some glyphs reads new ones from few examples:
pretrain on one group of classes with many images (`experiment=transfer_pretrain`), then transfer to
other classes with a few shots each (`experiment=transfer_target data.shots=10`).

Image i of class c depends only on the parameters, generator_seed, c and i, so every run sees the same
pictures and nothing is cached on disk.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import numpy as np
import torch

from zoo import Length, Range, register
from zoo.data import DataBundle, DataInfo, channel_stats
from zoo.errors import ZooError
from zoo_plugins._shared import Fraction, check_fractions, split_indices

CLASSES = 40  # the alphabet: glyph c is the same shape whatever the image
CONTRAST = 0.35  # least mean absolute colour difference between a glyph and the background under it


def glyph_strokes(glyph_seed: int, cls: int) -> list[np.ndarray]:
    """Glyph `cls` as polylines in the unit square (each (K, 2) points, x and y in [0, 1]): 2 to 4 strokes,
    each a segment between points of a 4x4 lattice or an arc of a circle around one."""
    rng = np.random.default_rng([glyph_seed, cls, 7])
    lattice = np.linspace(0.1, 0.9, 4)
    strokes = []
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.65:
            a, b = rng.choice(lattice, size=2), rng.choice(lattice, size=2)
            while np.allclose(a, b):
                b = rng.choice(lattice, size=2)
            strokes.append(np.stack([a, b]))
        else:
            centre = rng.choice(lattice[1:3], size=2)
            radius = rng.uniform(0.2, 0.4)
            start = rng.uniform(0, 2 * math.pi)
            t = start + np.linspace(0, rng.uniform(0.6, 1.6) * math.pi, 9)
            pts = centre + radius * np.stack([np.cos(t), np.sin(t)], axis=1)
            strokes.append(np.clip(pts, 0.0, 1.0))
    return strokes


SUPERSAMPLE = 4  # strokes are drawn at 4x and box-filtered down: antialiased edges


def _coverage(size: int, polylines: list[np.ndarray], width: float) -> np.ndarray:
    """How much of each pixel (H, W) in [0, 1] the strokes of `width` pixels cover (pixel coordinates)."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    w = max(1, round(width * SUPERSAMPLE))
    for line in polylines:
        points = [(float(x) * SUPERSAMPLE, float(y) * SUPERSAMPLE) for x, y in line]
        draw.line(points, fill=255, width=w, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def _place(rng: np.random.Generator, strokes: list[np.ndarray], size: int, scale: float) -> list[np.ndarray]:
    """The strokes rotated (up to 20 degrees either way), scaled to `scale` of the image and put at a random
    place that keeps them inside it; in pixel coordinates."""
    theta = rng.uniform(-1, 1) * math.radians(20)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = [((s - 0.5) @ rot.T) * scale * size for s in strokes]
    lo = np.min([m.min(axis=0) for m in moved], axis=0)
    hi = np.max([m.max(axis=0) for m in moved], axis=0)
    offset = np.array(
        [rng.uniform(2 - lo[k], size - 2 - hi[k]) if hi[k] - lo[k] < size - 4 else size / 2 for k in (0, 1)]
    )
    return [m + offset for m in moved]


def _background(rng: np.random.Generator, c: int, size: int, px: np.ndarray) -> np.ndarray:
    """A textured background (C, H, W): a base colour, a gradient, stripes and blotches."""
    base = rng.uniform(0.15, 0.85, size=(c, 1, 1))
    phi, psi = rng.uniform(0, 2 * math.pi, size=2)
    x, y = px[..., 0] / size, px[..., 1] / size
    ramp = (x - 0.5) * math.cos(phi) + (y - 0.5) * math.sin(phi)
    wave = np.sin(2 * math.pi * rng.uniform(1, 5) * (x * math.cos(psi) + y * math.sin(psi)) + rng.uniform(0, 6.3))
    bg = base + ramp * rng.uniform(-0.35, 0.35, size=(c, 1, 1)) + wave * rng.uniform(0.0, 0.12, size=(c, 1, 1))
    for _ in range(int(rng.integers(0, 4))):  # soft blotches
        centre, radius = rng.uniform(0, size, size=2), rng.uniform(0.1, 0.3) * size
        blob = np.exp(-np.sum((px - centre) ** 2, axis=-1) / (2 * radius * radius))
        bg = bg + blob * rng.uniform(-0.3, 0.3, size=(c, 1, 1))
    return bg


def _ink(rng: np.random.Generator, c: int, under: np.ndarray) -> np.ndarray:
    """A colour at least CONTRAST from `under` (C,), or the farthest of 16 tries."""
    tries = rng.uniform(0, 1, size=(16, c))
    gaps = np.abs(tries - under).mean(axis=1)
    ok = np.nonzero(gaps >= CONTRAST)[0]
    return tries[ok[0] if len(ok) else int(gaps.argmax())]


def render_glyph(
    glyphs: list[list[np.ndarray]],
    cls: int,
    rng: np.random.Generator,
    size: int,
    channels: int,
    distractors: int,
) -> np.ndarray:
    """One image (C, H, W) uint8 of glyph `cls` among `distractors` strokes borrowed from other glyphs."""
    px = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="xy"), axis=-1)
    image = _background(rng, channels, size, px)
    for _ in range(distractors):  # single strokes of random glyphs, anywhere, thinner or as thick
        other = glyphs[int(rng.integers(len(glyphs)))]
        stroke = other[int(rng.integers(len(other)))]
        (line,) = _place(rng, [stroke], size, rng.uniform(0.3, 0.7))
        cover = _coverage(size, [line], rng.uniform(1.0, 2.5) * size / 64)
        colour = _ink(rng, channels, image.mean(axis=(1, 2)))
        image = image * (1 - cover) + colour[:, None, None] * cover
    lines = _place(rng, glyphs[cls], size, rng.uniform(0.5, 0.8))
    cover = _coverage(size, lines, rng.uniform(1.8, 3.2) * size / 64)
    under = (image * cover).sum(axis=(1, 2)) / max(float(cover.sum()), 1e-6)
    colour = _ink(rng, channels, under)
    image = image * (1 - cover) + colour[:, None, None] * cover
    image += rng.normal(0.0, 0.03, size=image.shape)
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def generate_glyphs(
    classes: list[int],
    per_class: int,
    size: int = 64,
    channels: int = 3,
    distractors: int = 4,
    generator_seed: int = 0,
    glyph_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images (N, C, H, W) uint8 of each glyph in `classes`, and labels 0..len(classes)-1 in order."""
    glyphs = [glyph_strokes(glyph_seed, c) for c in range(CLASSES)]
    images = np.empty((len(classes) * per_class, channels, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(len(classes)), per_class)
    for k, cls in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng([generator_seed, cls, i])
            images[k * per_class + i] = render_glyph(glyphs, cls, rng, size, channels, distractors)
    return images, labels


class GlyphImages(torch.utils.data.Dataset):
    """A split of generated glyphs held as uint8 (a quarter of float's memory), made float in [0, 1] per sample."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor):
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        return self.pixels[i].float().div_(255.0), self.labels[i]


def _pick_shots(train: list[int], labels: torch.Tensor, shots: int, classes: int, split_seed: int) -> list[int]:
    """`shots` training images of each class, drawn by split_seed (the same for every strategy and seed)."""
    order = torch.tensor(train)[torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))]
    picked = [order[labels[order] == c][:shots] for c in range(classes)]
    fewest = min(len(p) for p in picked)
    if fewest < shots:
        raise ZooError(
            f"data.shots={shots} is more than the training split has for some class ({fewest}); "
            "raise data.images_per_class or lower data.shots"
        )
    return sorted(torch.cat(picked).tolist())


@register.dataset("glyphs")
def glyphs(
    seed: int,
    classes: Annotated[list[Annotated[int, Range(0, CLASSES - 1)]], Length(min=2)] = tuple(range(30)),
    images_per_class: Annotated[int, Range(3, 100_000)] = 100,
    shots: Optional[Annotated[int, Range(1)]] = None,
    size: Annotated[int, Range(32, 512)] = 64,
    channels: Literal[1, 3] = 3,
    distractors: Annotated[int, Range(0, 20)] = 4,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.3,
    split_seed: int = 0,
    generator_seed: int = 0,
    glyph_seed: int = 0,
) -> DataBundle:
    """Invented glyphs (40 classes) on cluttered backgrounds: pretrain on some, learn others from a few shots."""
    check_fractions(val_fraction, test_fraction)
    keep = list(classes)
    if len(set(keep)) != len(keep):
        raise ZooError(f"data.classes={keep} names a glyph twice")
    pixels, labels = generate_glyphs(keep, images_per_class, size, channels, distractors, generator_seed, glyph_seed)
    x, y = torch.from_numpy(pixels), torch.from_numpy(labels)
    train, val, test = split_indices(len(y), val_fraction, test_fraction, split_seed, labels=labels.tolist())
    if shots is not None:  # a few labelled images per class; val and test stay whole
        train = _pick_shots(train, y, shots, len(keep), split_seed)
    mean, std = channel_stats(x[train].float().div_(255.0))
    info = DataInfo("classification", tuple(f"glyph{c}" for c in keep), channels, (size, size), mean, std)
    return DataBundle(info, *(GlyphImages(x[idx], y[idx]) for idx in (train, val, test)))
