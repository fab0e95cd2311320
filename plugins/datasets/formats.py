"""Users' own data in common formats: COCO detection json, image + mask folders, a CSV of images and numbers.

Annotations are read and checked when the dataset is built, so a bad file stops the run before any
training with one line naming it; images are decoded when a sample is read.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo import register
from zoo.data import DataBundle, DataInfo, channel_stats
from zoo.errors import ZooError, close_matches
from zoo_plugins.datasets.folder import EXTENSIONS

MASK_MODES = ("1", "L", "P", "I", "I;16")  # single-channel modes whose pixel values are class indices


# ----------------------------------------------------------------------------------------------------
# building blocks


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse split fractions outside (0, 1) or that leave nothing to train on."""
    for key, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < v < 1.0:
            raise ZooError(f"data.{key}={v} must be between 0 and 1")
    if val_fraction + test_fraction >= 1.0:
        raise ZooError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves nothing to train on"
        )


def random_split(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Indices of a seeded (not stratified) train/val/test split; a zero fraction gives an empty split."""
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ZooError(
            f"cannot split {n} images into train/val/test with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one image"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val + n_test :]), sorted(perm[:n_val]), sorted(perm[n_val : n_val + n_test])


def read_image(path: Path, channels: int, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode an image to a float CHW tensor in [0, 1] at `size` (bilinear), with its original (height, width)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            original = (im.height, im.width)
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise ZooError(f"cannot read image {path}: {e}") from None
    return data.view(size[0], size[1], channels).permute(2, 0, 1).float().div_(255.0), original


def image_size(path: Path) -> tuple[int, int]:
    """An image file's (height, width), from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError) as e:
        raise ZooError(f"cannot read image {path}: {e}") from None


def read_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a class-index mask (single-channel PNG) to an integer array, resized (nearest) to `size` if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:
                raise ZooError(
                    f"mask {path} has image mode {im.mode}; expected a single-channel PNG whose pixel values "
                    f"are class indices (mode {', '.join(MASK_MODES)})"
                )
            if size is not None and (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.NEAREST)
            return np.asarray(im).astype(np.int64)
    except (OSError, UnidentifiedImageError) as e:
        raise ZooError(f"cannot read mask {path}: {e}") from None


def _image_files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file())


def check_size(size: int) -> None:
    """Refuse an input size too small to be an image."""
    if size < 8:
        raise ZooError(f"data.size={size} must be at least 8 pixels")


def _folder(value: str, key: str, what: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ZooError(f"data.{key}={value!r}: folder does not exist (expected {what})")
    return path


def _stats(split: Dataset, samples: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # mean/std from an evenly spaced sample of the training images: cheap, and stable across runs
    step = max(1, len(split) // max(1, samples))
    return channel_stats(torch.stack([split[i][0] for i in range(0, len(split), step)]))


# ----------------------------------------------------------------------------------------------------
# COCO detection json


def _read_json(path: Path, key: str) -> dict:
    if not path.is_file():
        raise ZooError(f"data.{key}={str(path)!r}: file does not exist (expected a COCO detection json)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {path}: {e}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ZooError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    missing = [
        k for k in ("images", "annotations", "categories") if not isinstance(d, dict) or not isinstance(d.get(k), list)
    ]
    if missing:
        raise ZooError(
            f"{path} is not a COCO detection json: it needs the lists 'images', 'annotations' and "
            f"'categories'; missing or not a list: {', '.join(missing)}"
        )
    return d


def _categories(d: dict, path: Path) -> dict[int, str]:
    cats: dict[int, str] = {}
    for c in d["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or not isinstance(c.get("name"), str):
            raise ZooError(f"{path}: category {c!r} needs an integer 'id' and a string 'name'")
        if c["id"] in cats:
            raise ZooError(f"{path}: category id {c['id']} is listed twice ({cats[c['id']]!r} and {c['name']!r})")
        cats[c["id"]] = c["name"]
    if not cats:
        raise ZooError(f"{path}: 'categories' is empty; a detection dataset needs at least one category")
    return dict(sorted(cats.items()))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_coco(
    d: dict, path: Path, folder: Path, cat_ids: dict[int, int]
) -> list[tuple[Path, tuple[int, int], np.ndarray, np.ndarray]]:
    """Check one parsed COCO json (read from `path`) against its image folder: (image path, (height, width),
    XYXY boxes in pixels, labels) per image."""
    images: dict[int, dict] = {}
    for im in d["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise ZooError(f"{path}: image entry {str(im)[:80]} needs an integer 'id' and a string 'file_name'")
        if im["id"] in images:
            raise ZooError(
                f"{path}: image id {im['id']} is listed twice ({images[im['id']]['file_name']!r} and {im['file_name']!r})"
            )
        file = folder / im["file_name"]
        if not file.is_file():
            raise ZooError(f"{path}: image {im['file_name']!r} (id {im['id']}) is missing: {file} does not exist")
        if _number(im.get("width")) and _number(im.get("height")):
            hw = (int(im["height"]), int(im["width"]))
        else:
            hw = image_size(file)
        images[im["id"]] = {"file_name": im["file_name"], "file": file, "hw": hw, "boxes": [], "labels": []}
    names = ", ".join(str(c) for c in cat_ids)
    for a in d["annotations"]:
        if not isinstance(a, dict):
            raise ZooError(f"{path}: annotation {str(a)[:80]} is not an object")
        aid = a.get("id", "?")
        if not isinstance(a.get("image_id"), int) or a["image_id"] not in images:
            raise ZooError(
                f"{path}: annotation id {aid} has image_id {a.get('image_id')!r}, which is not in the file's 'images'"
            )
        if not isinstance(a.get("category_id"), int) or a["category_id"] not in cat_ids:
            raise ZooError(
                f"{path}: annotation id {aid} has unknown category_id {a.get('category_id')!r}; the categories are {names}"
            )
        if a.get("iscrowd", 0):
            continue  # a crowd region is not one object: left out, as COCO's own detectors do
        im = images[a["image_id"]]
        h, w = im["hw"]
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            raise ZooError(
                f"{path}: annotation id {aid} (image {im['file_name']!r}) has bbox {bbox!r}; expected [x, y, width, height]"
            )
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            raise ZooError(
                f"{path}: annotation id {aid} (image {im['file_name']!r}) has bbox {bbox} with non-positive width or height"
            )
        if x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:  # one pixel of tolerance for rounding
            raise ZooError(
                f"{path}: annotation id {aid} has bbox {bbox} (x, y, width, height) outside its image "
                f"{im['file_name']!r}, which is {w}x{h}"
            )
        im["boxes"].append([max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)])
        im["labels"].append(cat_ids[a["category_id"]])
    return [
        (
            im["file"],
            im["hw"],
            np.asarray(im["boxes"], dtype=np.float32).reshape(-1, 4),
            np.asarray(im["labels"], dtype=np.int64),
        )
        for _, im in sorted(images.items())
    ]


class CocoImages(Dataset):
    """Images with boxes and labels from a COCO json; images decoded and resized on access, boxes scaled with them."""

    def __init__(self, items: list, source: Path, channels: int, size: tuple[int, int]):
        self.items, self.source, self.channels, self.size = items, source, channels, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        file, hw, boxes, labels = self.items[i]
        image, original = read_image(file, self.channels, self.size)
        if original != hw:
            raise ZooError(f"image {file} is {original[1]}x{original[0]} but {self.source} says {hw[1]}x{hw[0]}")
        scale = torch.tensor([self.size[1] / hw[1], self.size[0] / hw[0]] * 2)
        b = torch.from_numpy(boxes) * scale
        return image, {
            "boxes": tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=self.size),
            "labels": torch.from_numpy(labels.copy()),
        }


# ----------------------------------------------------------------------------------------------------
# image + mask folders


def pair_masks(image_dir: Path, mask_dir: Path, num_classes: int) -> list[tuple[Path, Path]]:
    """Match images to masks by relative path without extension, and check each mask's size and values."""
    masks: dict[str, Path] = {}
    for m in _image_files(mask_dir):
        key = str(m.relative_to(mask_dir).with_suffix(""))
        if key in masks:
            raise ZooError(f"two masks for one image: {masks[key]} and {m}")
        masks[key] = m
    pairs = []
    for f in _image_files(image_dir):
        key = str(f.relative_to(image_dir).with_suffix(""))
        if key not in masks:
            raise ZooError(f"image {f} has no mask: expected {mask_dir / key}.png")
        pairs.append((f, masks[key]))
    if not pairs:
        raise ZooError(f"no images ({', '.join(EXTENSIONS)}) under {image_dir}")
    seen: dict[str, Path] = {}
    for f, m in pairs:
        key = str(f.relative_to(image_dir).with_suffix(""))
        if key in seen:
            raise ZooError(f"two images for one mask {m}: {seen[key]} and {f}")
        seen[key] = f
        values = read_mask(m)
        ih, iw = image_size(f)
        if values.shape != (ih, iw):
            raise ZooError(f"mask {m} is {values.shape[1]}x{values.shape[0]} but its image {f} is {iw}x{ih}")
        top = int(values.max())
        if top >= num_classes:
            raise ZooError(
                f"mask {m} has pixel value {top}, but data.classes names {num_classes} classes (values 0 to {num_classes - 1})"
            )
    return pairs


class MaskPairs(Dataset):
    """Image and class-index mask pairs, decoded and resized on access (bilinear image, nearest mask)."""

    def __init__(self, pairs: list[tuple[Path, Path]], channels: int, size: tuple[int, int]):
        self.pairs, self.channels, self.size = pairs, channels, size

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        from torchvision import tv_tensors

        image_file, mask_file = self.pairs[i]
        image, _ = read_image(image_file, self.channels, self.size)
        return image, tv_tensors.Mask(torch.from_numpy(read_mask(mask_file, self.size)))


# ----------------------------------------------------------------------------------------------------
# CSV of image paths and numeric targets


def read_table(path: Path, image_column: str, target_columns: list[str], root: Path) -> tuple[list[Path], torch.Tensor]:
    """Image paths and a float32 (N, K) target matrix from a CSV with a header row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise ZooError(f"{path} is empty; expected a header row naming the columns")
            for col in [image_column, *target_columns]:
                if col not in header:
                    hint = close_matches(col, header)
                    raise ZooError(
                        f"{path} has no column {col!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" (columns: {', '.join(header)})"
                    )
            where = [header.index(c) for c in target_columns]
            at = header.index(image_column)
            files, values = [], []
            for row_number, row in enumerate(reader, start=1):
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                row = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
                numbers = []
                for col, j in zip(target_columns, where):
                    try:
                        v = float(row[j])
                    except ValueError:
                        v = math.nan
                    if not math.isfinite(v):
                        raise ZooError(
                            f"{path}: row {row_number} (line {reader.line_num}), column {col!r} has {row[j]!r}, which is not a number"
                        )
                    numbers.append(v)
                if not row[at]:
                    raise ZooError(
                        f"{path}: row {row_number} (line {reader.line_num}) has no image in column {image_column!r}"
                    )
                file = root / row[at]
                if not file.is_file():
                    raise ZooError(
                        f"{path}: row {row_number} (line {reader.line_num}): image file {file} does not exist"
                    )
                files.append(file)
                values.append(numbers)
    except OSError as e:
        raise ZooError(f"cannot read {path}: {e}") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise ZooError(f"{path} is not a readable CSV file: {e}") from None
    if not files:
        raise ZooError(f"{path} has a header but no rows")
    return files, torch.tensor(values, dtype=torch.float32)


class TableImages(Dataset):
    """Image files and their float target vectors, decoded on access."""

    def __init__(self, files: list[Path], targets: torch.Tensor, channels: int, size: tuple[int, int]):
        self.files, self.targets, self.channels, self.size = files, targets, channels, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return read_image(self.files[i], self.channels, self.size)[0], self.targets[i].clone()


# ----------------------------------------------------------------------------------------------------
# registered datasets


@register.dataset("coco")
def coco_json(
    seed: int,
    images: str,
    annotations: str,
    val_annotations: Optional[str] = None,
    test_annotations: Optional[str] = None,
    val_images: Optional[str] = None,
    test_images: Optional[str] = None,
    size: int = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """COCO-json object detection: boxes resized with the images to size x size; splits given or by fraction."""
    check_fractions(val_fraction, test_fraction)
    check_size(size)
    image_dir = _folder(images, "images", "the folder the json's file_name entries are relative to")
    train_json = Path(annotations).expanduser()
    d = _read_json(train_json, "annotations")
    cats = _categories(d, train_json)
    cat_ids = {cid: i for i, cid in enumerate(cats)}  # category ids (any integers) -> contiguous labels, in id order
    parts = {"train": (read_coco(d, train_json, image_dir, cat_ids), train_json)}
    for split, ann, folder in (("val", val_annotations, val_images), ("test", test_annotations, test_images)):
        if ann is None:
            continue
        path = Path(ann).expanduser()
        d = _read_json(path, f"{split}_annotations")
        other = _categories(d, path)
        if other != cats:
            raise ZooError(f"{path}: its categories {other} differ from those of {train_json}: {cats}")
        where = _folder(folder, f"{split}_images", "a folder of images") if folder else image_dir
        parts[split] = (read_coco(d, path, where, cat_ids), path)
    missing = [s for s in ("val", "test") if s not in parts]
    if missing:  # carve the missing splits out of train, by a seeded shuffle
        items, source = parts["train"]
        tr, va, te = random_split(
            len(items),
            val_fraction if "val" in missing else 0.0,
            test_fraction if "test" in missing else 0.0,
            split_seed,
        )
        parts["train"] = ([items[i] for i in tr], source)
        for s, idx in (("val", va), ("test", te)):
            if s in missing:
                parts[s] = ([items[i] for i in idx], source)
    hw = (size, size)
    splits = {s: CocoImages(items, source, channels, hw) for s, (items, source) in parts.items()}
    mean, std = _stats(splits["train"], stats_samples)
    info = DataInfo("detection", tuple(cats.values()), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])


@register.dataset("masks")
def mask_folders(
    seed: int,
    images: str,
    masks: str,
    classes: list[str] = ("background", "foreground"),
    size: int = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Semantic segmentation from IMAGES/x.jpg + MASKS/x.png (pixel value = index into classes, 0 = background)."""
    check_fractions(val_fraction, test_fraction)
    check_size(size)
    classes = list(classes)
    if len(classes) < 2 or classes[0] != "background":
        raise ZooError(
            f"data.classes={classes}: pixel value 0 is the background, so the list must start with 'background' "
            f"and name at least one class, e.g. data.classes=[background,{','.join(classes) or 'object'}]"
        )
    if len(set(classes)) != len(classes):
        raise ZooError(f"data.classes={classes} names a class twice")
    image_dir = _folder(images, "images", "a folder of images")
    mask_dir = _folder(masks, "masks", "a folder of single-channel PNG masks named like the images")
    pairs = pair_masks(image_dir, mask_dir, len(classes))
    tr, va, te = random_split(len(pairs), val_fraction, test_fraction, split_seed)
    hw = (size, size)
    train, val, test = (MaskPairs([pairs[i] for i in idx], channels, hw) for idx in (tr, va, te))
    mean, std = _stats(train, stats_samples)
    return DataBundle(DataInfo("segmentation", tuple(classes), channels, hw, mean, std), train, val, test)


@register.dataset("csv")
def csv_table(
    seed: int,
    file: str,
    image_column: str = "image",
    target_columns: list[str] = ("target",),
    root: Optional[str] = None,
    size: int = 64,
    channels: Literal[1, 3] = 3,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Regression from a CSV: an image path column and numeric target columns; split by a seeded shuffle."""
    check_fractions(val_fraction, test_fraction)
    check_size(size)
    path = Path(file).expanduser()
    if not path.is_file():
        raise ZooError(f"data.file={file!r}: file does not exist (expected a CSV with a header row)")
    targets = list(target_columns)
    if not targets:
        raise ZooError("data.target_columns=[] is empty; name one or more numeric columns of the CSV")
    if len(set(targets)) != len(targets):
        raise ZooError(f"data.target_columns={targets} names a column twice")
    base = Path(root).expanduser() if root is not None else path.parent
    if not base.is_dir():
        raise ZooError(f"data.root={root!r}: folder does not exist (image paths in the CSV are relative to it)")
    files, values = read_table(path, image_column, targets, base)
    tr, va, te = random_split(len(files), val_fraction, test_fraction, split_seed)
    hw = (size, size)
    train, val, test = (TableImages([files[i] for i in idx], values[idx], channels, hw) for idx in (tr, va, te))
    mean, std = _stats(train, stats_samples)
    return DataBundle(DataInfo("regression", tuple(targets), channels, hw, mean, std), train, val, test)
