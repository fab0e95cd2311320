"""What the standard plugins share: image files, splits, statistics and layers.

Internal to `zoo_plugins`: not a plugin API, and the core never imports it (zoo/runtime.py keeps a decoder
of its own, as it must not import torch). A third party's package uses `zoo.data.channel_stats` and its own
helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.ops import Conv2dNormActivation

from zoo import Length, Range
from zoo.data import channel_stats
from zoo.errors import ZooError
from zoo.model import FeatureInfo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MASK_MODES = ("1", "L", "P", "I", "I;16")  # single-channel modes whose pixel values are class indices

Norm = Literal["batch", "group", "layer", "instance", "none"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh"]
PaddingMode = Literal["zeros", "reflect", "replicate", "circular", "symmetric"]

# Constraints many plugins declare on a parameter (the registry enforces them before a factory is called)
Probability = Annotated[float, Range(0, 1)]
DropoutRate = Annotated[float, Range(0, 1, max_exclusive=True)]
Fraction = Annotated[float, Range(0, 1, min_exclusive=True, max_exclusive=True)]  # a val or test split's share


# ---- image files -----------------------------------------------------------------------------


def _opened(path: Path, what: str = "image"):
    """A PIL image open for reading (zoo.runtime.open_image): an image over the pixel limit, or one that cannot be
    read or decoded, is one ZooError naming the file."""
    from zoo.runtime import open_image

    return open_image(path, what)


def image_pixels(im, channels: int, size: tuple[int, int], reduce: bool = False) -> np.ndarray:
    """A PIL image as an (H, W, C) uint8 array with `channels` channels at `size` (bilinear). `reduce`: a JPEG not
    yet decoded and over twice the size decodes reduced (Pillow's draft: 1/2, 1/4 or 1/8 in the DCT, to no less
    than twice `size`, so the exact resize still averages 2x2 pixels or more into each); it changes `im`'s size,
    so only for an image the caller opened."""
    from PIL import Image

    if reduce and im.format == "JPEG" and im.width >= 4 * size[1] and im.height >= 4 * size[0]:
        im.draft("L" if channels == 1 else "RGB", (2 * size[1], 2 * size[0]))
    im = im.convert("L" if channels == 1 else "RGB")
    if (im.height, im.width) != size:
        im = im.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im).reshape(size[0], size[1], channels)


def as_float(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 pixels as a float CHW tensor in [0, 1]: converted in numpy, which runs single-threaded
    (torch's intra-op threads cost more than the work on one small image, ~10x on a busy machine)."""
    return torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))


def image_tensor(im, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """A PIL image as a float CHW tensor in [0, 1] with `channels` channels at `size` (bilinear)."""
    return as_float(image_pixels(im, channels, size))


def read_image(path: Path, channels: int, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode an image to a float CHW tensor in [0, 1] at `size` (bilinear), with its original (height, width)."""
    with _opened(path) as im:
        original = (im.height, im.width)  # before a JPEG's draft reduces it
        return as_float(image_pixels(im, channels, size, reduce=True)), original


def read_pixels(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Decode an image to a uint8 CHW tensor at `size` (bilinear): what a split held in memory keeps."""
    with _opened(path) as im:
        pixels = image_pixels(im, channels, size, reduce=True)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def image_size(path: Path) -> tuple[int, int]:
    """An image file's (height, width), from its header only."""
    with _opened(path) as im:
        return im.height, im.width


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a class-index mask (single-channel PNG) to an integer array, resized (nearest) to `size` if given."""
    from PIL import Image

    with _opened(path, "mask") as im:
        if im.mode not in MASK_MODES:
            raise ZooError(
                f"mask {path} has image mode {im.mode}; expected a single-channel PNG whose pixel values "
                f"are class indices (mode {', '.join(MASK_MODES)})"
            )
        if size is not None and (im.height, im.width) != size:
            im = im.resize((size[1], size[0]), Image.NEAREST)
        return np.asarray(im).astype(np.int64)


def image_files(root: Path) -> list[Path]:
    """Every image file under `root`, recursively, sorted."""
    return sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())


def text_lines(path: Path) -> list[str]:
    """A text file's non-empty lines, stripped (a split list, a labels file); one line naming the file when it
    cannot be read or is not UTF-8."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def existing_folder(value: str, key: str, note: str) -> Path:
    """`data.<key>` as a folder that exists; else one line saying what it should hold (`note`)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ZooError(f"data.{key}={value!r}: folder does not exist ({note})")
    return path


def pair_files(
    image_dir: Path, label_dir: Path, label_suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Images and their label files (a mask, a .txt, an .xml) matched by relative path without extension:
    (pairs, images with no label file, label files with no image), each sorted; nothing is opened."""
    labels = {
        str(f.relative_to(label_dir).with_suffix("")): f
        for f in sorted(label_dir.rglob("*"))
        if f.suffix.lower() in label_suffixes and f.is_file()
    }
    pairs, lone = [], []
    for f in image_files(image_dir):
        key = str(f.relative_to(image_dir).with_suffix(""))
        (pairs.append((f, labels.pop(key))) if key in labels else lone.append(f))
    return pairs, lone, sorted(labels.values())


# ---- splits ----------------------------------------------------------------------------------


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse val and test fractions that leave nothing to train on (the range of each is declared)."""
    if val_fraction + test_fraction >= 1.0:
        raise ZooError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves nothing to train on"
        )


def split_indices(
    count: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: Sequence[int] | None = None,
    joint_hold_out: bool = False,
) -> tuple[list[int], list[int], list[int]]:
    """Sorted indices of a train/val/test split of `count` items, fixed by `seed`; a zero fraction gives an empty
    split (for splits given separately).

    Without `labels`, a seeded shuffle in which every split with a fraction above zero gets at least one item.
    With them, stratified (every class in proportion): the test split is drawn first and the val split from the
    rest; `joint_hold_out` draws both as one held-out set, then divides it (how the folder plugin has always
    carved them out of ROOT/train/, kept so that its splits stay the same).
    """
    check_fractions(val_fraction, test_fraction)
    if labels is None:
        n_val = max(1, round(count * val_fraction)) if val_fraction > 0 else 0
        n_test = max(1, round(count * test_fraction)) if test_fraction > 0 else 0
        if count - n_val - n_test < 1:
            raise ZooError(
                f"cannot split {count} images into train/val/test with val_fraction={val_fraction} and "
                f"test_fraction={test_fraction}: every split needs at least one image"
            )
        perm = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
        return sorted(perm[n_val + n_test :]), sorted(perm[:n_val]), sorted(perm[n_val : n_val + n_test])

    from sklearn.model_selection import train_test_split

    def draw(idx: list[int], fraction: float) -> tuple[list[int], list[int]]:
        """(kept, drawn) of `idx`, stratified; both in the order the next draw must see them."""
        if fraction <= 0:
            return idx, []
        return train_test_split(idx, test_size=fraction, stratify=[labels[i] for i in idx], random_state=seed)

    idx = list(range(count))
    try:
        if joint_hold_out and val_fraction > 0 and test_fraction > 0:
            held = val_fraction + test_fraction
            train, rest = draw(idx, held)
            val, test = draw(rest, test_fraction / held)
        else:
            rest, test = draw(idx, test_fraction)
            train, val = draw(rest, val_fraction / (1 - test_fraction))
    except ValueError as e:  # too few images in a class to stratify
        raise ZooError(f"cannot split {count} images into train/val/test: {e}") from None
    return sorted(train), sorted(val), sorted(test)


# ---- subsets (data.classes, data.max_per_class, data.fraction) ------------------------------------

# A reader's subset parameters, declared alike by every reader that takes them
SubsetClasses = Optional[Annotated[list[str], Length(min=2)]]  # names or indices; OmegaConf gives both as text
PerClass = Optional[Annotated[int, Range(1)]]
ClassFraction = Optional[Annotated[float, Range(0, 1, min_exclusive=True)]]


def chosen_classes(names: Sequence[str], wanted: Sequence[str | int] | None) -> list[int]:
    """Indices into `names` of `data.classes` (names, or indices as numbers or text), in the order given; every
    class when None. A class named twice or not at all is one line naming what is valid."""
    if wanted is None:
        return list(range(len(names)))
    index = {str(n): i for i, n in enumerate(names)}
    picked = []
    for w in wanted:
        w = str(w)
        i = index.get(w, int(w) if w.isdigit() and int(w) < len(names) else None)
        if i is None:
            shown = ", ".join(str(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
            raise ZooError(f"data.classes: {w!r} is neither a class name nor an index below {len(names)}; "
                           f"the classes are {shown}")  # fmt: skip
        if i in picked:
            raise ZooError(f"data.classes={list(wanted)} names class {names[i]!r} twice")
        picked.append(i)
    return picked


def take_subset(
    items: Sequence,
    labels: Sequence[int],
    chosen: Sequence[int],
    max_per_class: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> tuple[list, list[int]]:
    """The items of the `chosen` classes (old indices, in their new order), their labels renumbered 0..k-1; of
    each class a seeded random `fraction` (at least one item) and then at most `max_per_class`. The draw of a
    class depends only on `seed`, the class and its items, so the same seed keeps the same files whatever else
    is chosen; the items keep their order."""
    new = {old: i for i, old in enumerate(chosen)}
    if max_per_class is None and fraction is None:
        keep = [i for i, y in enumerate(labels) if int(y) in new]
    else:
        keep = []
        for old in chosen:
            members = [i for i, y in enumerate(labels) if int(y) == old]
            take = len(members) if fraction is None else max(1, round(len(members) * fraction))
            take = take if max_per_class is None else min(take, max_per_class)
            g = torch.Generator().manual_seed(seed * 1_000_003 + old)
            keep += [members[j] for j in torch.randperm(len(members), generator=g)[:take].tolist()]
        keep.sort()
    return [items[i] for i in keep], [new[int(labels[i])] for i in keep]


# ---- statistics ------------------------------------------------------------------------------


def sampled_stats(split: Dataset, samples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of an evenly spaced sample of about `samples` of a split's images: cheap, and
    the same from one run to the next."""
    step = max(1, len(split) // max(1, samples))
    return channel_stats(torch.stack([split[i][0] for i in range(0, len(split), step)]))


# ---- layers ----------------------------------------------------------------------------------


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm; GroupNorm (up to 8 groups that divide the channels); layer norm for conv maps as GroupNorm with
    one group (over channels and space, per image); InstanceNorm with affine weights; or nothing."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "tanh": nn.Tanh,
}


def activation_layer(kind: str) -> nn.Module:
    """A fresh activation module by name (Activation's choices)."""
    return ACTIVATIONS[kind]()


class SymmetricPad(nn.Module):
    """Pad height and width by mirroring with the edge pixel included (numpy's "symmetric": 2 1 | 1 2 3 | 3 2),
    which torch's padding modes lack ("reflect" leaves the edge out); exports to ONNX as slices and concats."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        p = self.pad
        if p == 0:
            return x
        x = torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)
        return torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)


def conv_norm_act(
    cin: int,
    cout: int,
    norm: str,
    kernel: int = 3,
    stride: int = 1,
    padding_mode: str = "zeros",
    *,
    padding: str = "same",
    activation: str | None = "relu",
    groups: int = 1,
) -> nn.Sequential:
    """conv -> norm -> activation (torchvision's Conv2dNormActivation); the conv has no bias when a norm follows.
    padding="same" pads kernel // 2 (the size kept at stride 1), "valid" pads nothing; padding_mode="symmetric"
    puts a SymmetricPad before an unpadded conv; activation=None ends at the norm."""
    pad = kernel // 2 if padding == "same" else 0
    symmetric = padding_mode == "symmetric" and pad > 0
    mode = "zeros" if padding_mode == "symmetric" else padding_mode
    block = Conv2dNormActivation(
        cin,
        cout,
        kernel,
        stride,
        padding=0 if symmetric else pad,
        groups=groups,
        norm_layer=None if norm == "none" else partial(norm_layer, norm),
        activation_layer=None if activation is None else ACTIVATIONS[activation],
        inplace=None,
        bias=norm == "none",
    )
    block[0].padding_mode = mode  # Conv2d pads by its mode in forward; torchvision's wrapper does not pass it
    return nn.Sequential(SymmetricPad(pad), *block) if symmetric else block


def pooled_mlp(
    last: FeatureInfo, pool: str, hidden: list[int], dropout: float, outputs: int
) -> tuple[nn.Module, nn.Sequential]:
    """Pool (avg, max, or flatten at the probed size) the deepest features, then dropout-linear-ReLU
    hidden layers and a final linear layer: the shared body of the vector-output heads."""
    if pool == "flatten":
        h, w = last.size
        pooling, width = nn.Flatten(), last.channels * h * w
    else:
        pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1), nn.Flatten())
        width = last.channels
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers += [nn.Dropout(dropout), nn.Linear(width, outputs)]
    return pooling, nn.Sequential(*layers)


# ---- pictures (interpretation plugins) ------------------------------------------------------------


def figure(width: float, height: float):
    """A matplotlib Figure from the object API: no pyplot state, no display."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def show_image(ax, image: np.ndarray, title: str = "") -> None:
    """A CHW image in [0, 1] on `ax`: grey for one channel, colour for three, the mean of the bands in grey for
    any other count (multispectral data has no one true colour picture); no axes."""
    hwc = image.transpose(1, 2, 0)
    if hwc.shape[-1] not in (1, 3):
        hwc = hwc.mean(axis=-1, keepdims=True)
    ax.imshow(hwc[..., 0] if hwc.shape[-1] == 1 else hwc.clip(0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def overlay(ax, image: np.ndarray, heat: np.ndarray, title: str = ""):
    """A heat map (H, W, normalised to [0, 1] here) over the image, half transparent; returns the artist."""
    show_image(ax, image, title)
    span = float(heat.max() - heat.min())
    shown = ax.imshow(
        (heat - heat.min()) / span if span > 0 else np.zeros_like(heat), cmap="jet", alpha=0.5, vmin=0, vmax=1
    )
    return shown


def label_of(classes: Sequence[str], index: int) -> str:
    """A class's name, or its index when the model's labels do not reach it."""
    return str(classes[index]) if 0 <= index < len(classes) else str(index)
