"""The Ultralytics YOLO layout: ROOT/images/SPLIT/*.jpg, ROOT/labels/SPLIT/*.txt (one `class cx cy w h` line per
object, normalised to [0, 1]; a polygon `class x1 y1 x2 y2 ...` gives its box), ROOT/data.yaml with `names`; and
its writer.

A small reader of its own (plain text and PyYAML, already in through Hydra) rather than supervision or datumaro:
the format is a few lines of parsing, and those libraries would add a large dependency for them. Every label
file is read and checked when the dataset is built (one line naming the file and line); an image without a
label file has no objects, as in Ultralytics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    Fraction,
    check_fractions,
    existing_folder,
    image_files,
    image_size,
    sampled_stats,
    split_indices,
)
from zoo_plugins.datasets.coco import CocoImages, box_records, boxes_only, count, put_image, split_items, unique_name

SPLITS = ("train", "val", "test")

# ---- reading ---------------------------------------------------------------------------------


def read_yaml(path: Path) -> dict:
    """data.yaml as a mapping, or one line naming the file."""
    import yaml

    if not path.is_file():
        raise ZooError(
            f"{path} does not exist: a YOLO data set needs its data.yaml (names: [...], train: images/train)"
        )
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ZooError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise ZooError(f"{path} is not a YAML mapping (expected keys names, train, val)")
    return meta


def class_names(meta: dict, path: Path) -> list[str]:
    """`names` as a list in class-id order: a list, or a mapping {0: name, 1: name, ...}."""
    names = meta.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ZooError(f"{path}: names has ids {sorted(names)}; expected 0 to {len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) for n in names):
        raise ZooError(f"{path}: names must be a non-empty list of class names or a mapping id -> name, not {names!r}")
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ZooError(f"{path}: names {names} lists a class twice")
    return names


def label_file(image: Path) -> Path:
    """Where Ultralytics looks for an image's labels: its last `images` folder replaced by `labels`, .txt."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(file: Path, hw: tuple[int, int], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One label file: XYXY boxes in the image's pixels and class indices; a bad line is one ZooError."""
    h, w = hw
    boxes, labels = [], []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {file}: {e}") from None
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ZooError(f"{file}:{n}: {line.strip()!r} is not numbers (class cx cy w h)") from None
        cls = values[0]
        if len(values) == 5:
            cx, cy, bw, bh = values[1:]
            x1, y1, x2, y2 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
        elif len(values) >= 7 and len(values) % 2 == 1:  # a polygon: its box
            x1, x2, y1, y2 = min(values[1::2]), max(values[1::2]), min(values[2::2]), max(values[2::2])
        else:
            raise ZooError(f"{file}:{n}: {len(values)} numbers; expected 5 (class cx cy w h) or a polygon")
        if not all(math.isfinite(v) for v in values) or cls != int(cls) or not 0 <= cls < len(names):
            raise ZooError(
                f"{file}:{n}: class {fields[0]} is not a class id 0 to {len(names) - 1} ({len(names)} names)"
            )
        if x2 <= x1 or y2 <= y1:
            raise ZooError(f"{file}:{n}: the box {' '.join(fields[1:5])} is empty (zero width or height)")
        tol = 1e-3  # rounding in the writer's normalised numbers
        if x1 < -tol or y1 < -tol or x2 > 1 + tol or y2 > 1 + tol:
            raise ZooError(f"{file}:{n}: the box {' '.join(fields[1:5])} reaches outside the image ([0, 1])")
        boxes.append([max(0.0, x1) * w, max(0.0, y1) * h, min(1.0, x2) * w, min(1.0, y2) * h])
        labels.append(int(cls))
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def split_images(entry, base: Path, where: Path) -> list[Path]:
    """A data.yaml split: a folder of images, a .txt list of image paths, or a list of either."""
    found: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = (base / str(item)).expanduser()
        if path.is_dir():
            found += image_files(path)
        elif path.suffix == ".txt" and path.is_file():
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            found += [(path.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
        else:
            raise ZooError(f"{where}: split {item!r} is neither a folder nor a .txt list ({path} does not exist)")
    missing = [f for f in found if not f.is_file()]
    if missing:
        raise ZooError(f"{where}: image {missing[0]} is listed but does not exist")
    if not found:
        raise ZooError(f"{where}: split {entry!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def read_split(images: list[Path], names: list[str]) -> list:
    """(image, (height, width), XYXY boxes in pixels, labels) per image; no label file: no objects."""
    items = []
    for f in images:
        hw = image_size(f)
        labels = label_file(f)
        if labels.is_file():
            boxes, classes = read_labels(labels, hw, names)
        else:
            boxes, classes = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        items.append((f, hw, boxes, classes))
    return items


# ---- writing ---------------------------------------------------------------------------------


def write_yolo(bundle: DataBundle, output: Path) -> dict:
    """OUTPUT/images/SPLIT/*, OUTPUT/labels/SPLIT/*.txt (`class cx cy w h`, normalised) and OUTPUT/data.yaml with
    the names in class order and the splits."""
    import yaml

    boxes_only(bundle, "yolo")
    classes, counts, meta = bundle.info.classes, {}, {"path": "."}
    for split, ds in split_items(bundle):
        used: set[str] = set()
        for r in box_records(ds):
            name = unique_name(r.name, used)
            put_image(r, output / "images" / split / name)
            h, w = r.hw
            lines = [
                f"{int(c)} {(x1 + x2) / 2 / w:.8g} {(y1 + y2) / 2 / h:.8g} {(x2 - x1) / w:.8g} {(y2 - y1) / h:.8g}"
                for (x1, y1, x2, y2), c in zip(r.boxes.tolist(), r.labels.tolist())
            ]
            label = output / "labels" / split / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            count(counts, split, classes, r.labels)
        meta[split] = f"images/{split}"
    meta["names"] = dict(enumerate(classes))
    (output / "data.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return counts


# ---- the registered dataset -------------------------------------------------------------------


@register.dataset("yolo", writer=write_yolo)
def yolo(
    seed: int,
    root: str,
    yaml_file: str = "data.yaml",
    size: Annotated[int, Range(8)] = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """YOLO layout (Ultralytics): ROOT/images/SPLIT, ROOT/labels/SPLIT/*.txt, ROOT/data.yaml; boxes at size x size.

    Splits as data.yaml names them (relative to its `path`, else its folder), else ROOT/images/{train,val,test};
    a missing val or test split is carved out of train by val_fraction/test_fraction."""
    check_fractions(val_fraction, test_fraction)
    folder = existing_folder(root, "root", "expected a YOLO data set: images/, labels/ and data.yaml")
    where = folder / yaml_file
    meta = read_yaml(where)
    names = class_names(meta, where)
    base = where.parent / str(meta.get("path") or ".")
    parts = {}
    for split in SPLITS:
        entry = meta.get(split)
        if entry is None and (folder / "images" / split).is_dir():
            entry = str((folder / "images" / split).resolve())
        if entry is not None:
            parts[split] = read_split(split_images(entry, base, where), names)
    if "train" not in parts:
        raise ZooError(f"{where}: no train split (a `train:` entry, or the folder {folder / 'images' / 'train'})")
    missing = [s for s in ("val", "test") if s not in parts]
    if missing:  # carve the missing splits out of train, by a seeded shuffle
        items = parts["train"]
        fractions = [val_fraction if "val" in missing else 0.0, test_fraction if "test" in missing else 0.0]
        tr, va, te = split_indices(len(items), *fractions, split_seed)
        parts["train"] = [items[i] for i in tr]
        for s, idx in (("val", va), ("test", te)):
            if s in missing:
                parts[s] = [items[i] for i in idx]
    hw = (size, size)
    splits = {s: CocoImages(items, where, channels, hw) for s, items in parts.items()}
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo("detection", tuple(names), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
