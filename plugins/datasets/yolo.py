"""The Ultralytics YOLO layout: ROOT/images/SPLIT/*.jpg, ROOT/labels/SPLIT/*.txt (one `class cx cy w h` line per
object, normalised to [0, 1]; a polygon `class x1 y1 x2 y2 ...` gives its box), ROOT/data.yaml with `names`; and
its writer.

A small reader of its own (plain text and PyYAML, already in through Hydra) rather than supervision or datumaro:
the format is a few lines of parsing, and those libraries would add a large dependency for them. Every label
file is read and checked when the dataset is built (one line naming the file and line); an image without a
label file has no objects, as in Ultralytics. `inventory` lists the same files for `zoo data check`, reading
the label files leniently so that every defect is a finding of its own.

Subsets of a box layout (`box_subset`, also the VOC reader's): an image's class, for max_per_class and
fraction, is the most common class of its boxes (of the chosen classes; a tie: the lower class id); images
without boxes (background) are a group of their own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np

from zoo import Length, Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    ClassFraction,
    Fraction,
    PerClass,
    check_fractions,
    chosen_classes,
    existing_folder,
    image_files,
    image_size,
    sampled_stats,
    split_indices,
    take_subset,
    text_lines,
)
from zoo_plugins.datasets.coco import CocoImages, box_records, boxes_only, count, put_image, split_items, unique_name

SPLITS = ("train", "val", "test")
BoxClasses = Optional[Annotated[list[str], Length(min=1)]]  # data.classes: one class is a detector too

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


def parse_line(line: str) -> tuple[float, list[float]] | None:
    """One label line: its class and normalised XYXY box (a polygon: its extent); None when blank; a ValueError
    saying what is wrong."""
    fields = line.split()
    if not fields:
        return None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise ValueError(f"{line.strip()!r} is not numbers (class cx cy w h)") from None
    if len(values) == 5:
        cx, cy, bw, bh = values[1:]
        box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
    elif len(values) >= 7 and len(values) % 2 == 1:  # a polygon: its box
        box = [min(values[1::2]), min(values[2::2]), max(values[1::2]), max(values[2::2])]
    else:
        raise ValueError(f"{len(values)} numbers; expected 5 (class cx cy w h) or a polygon")
    if not all(math.isfinite(v) for v in values) or values[0] != int(values[0]):
        raise ValueError(f"class {fields[0]} is not an integer class id (or a number is not finite)")
    return values[0], box


def read_labels(file: Path, hw: tuple[int, int], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One label file: XYXY boxes in the image's pixels and class indices; a bad line is one ZooError."""
    h, w = hw
    boxes, labels = [], []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ZooError(f"cannot read {file}: {e}") from None
    for n, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line)
        except ValueError as e:
            raise ZooError(f"{file}:{n}: {e}") from None
        if parsed is None:
            continue
        cls, (x1, y1, x2, y2) = parsed
        fields = line.split()
        if not 0 <= cls < len(names):
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


def lenient_labels(file: Path, hw: tuple[int, int] | None, problems: list) -> tuple[list, list]:
    """A label file as zoo data check reads it: every parsed box in pixels, unclipped, with its class id, whatever
    its range; a line that does not parse is a (file:line, what) in `problems`."""
    h, w = hw or (1, 1)  # an unreadable image: its boxes stay normalised (the image is a finding of its own)
    boxes, labels = [], []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        problems.append((file, f"unreadable label file: {e}"))
        return boxes, labels
    for n, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line)
        except ValueError as e:
            problems.append((f"{file}:{n}", str(e)))
            continue
        if parsed is not None:
            cls, (x1, y1, x2, y2) = parsed
            boxes.append([x1 * w, y1 * h, x2 * w, y2 * h])
            labels.append(int(cls))
    return boxes, labels


def split_images(entry, base: Path, where: Path) -> list[Path]:
    """A data.yaml split: a folder of images, a .txt list of image paths, or a list of either."""
    found: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = (base / str(item)).expanduser()
        if path.is_dir():
            found += image_files(path)
        elif path.suffix == ".txt" and path.is_file():
            found += [(path.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in text_lines(path)]
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


# ---- subsets and carved splits (the VOC reader's too) ----------------------------------------------


def box_subset(items: list, names, classes, max_per_class, fraction, seed: int) -> tuple[list, list[int]]:
    """Items (image, size, boxes, labels, ...) of a box layout cut to data.classes, max_per_class and fraction:
    boxes of the chosen classes only, labels renumbered in their order, an image left with no boxes dropped
    unless it had none; then per image class (see the module's docstring) a seeded draw (take_subset). Items
    whose labels are None (no label file) count as background. Returns (items, the chosen old class ids)."""
    chosen = chosen_classes(names, classes)
    if classes is None and max_per_class is None and fraction is None:
        return list(items), chosen
    new = {old: i for i, old in enumerate(chosen)}
    background = len(names)  # a group id no class has, so its draw is seeded apart from every class
    kept, strata = [], []
    for item in items:
        if item[3] is None:
            kept.append(item)
            strata.append(background)
            continue
        old = np.asarray(item[3], np.int64).reshape(-1)
        keep = np.isin(old, chosen)
        if len(old) and not keep.any():
            continue  # none of its boxes is of a chosen class
        boxes = np.asarray(item[2], np.float32).reshape(-1, 4)[keep]
        labels = np.asarray([new[int(v)] for v in old[keep]], np.int64)
        kept.append((item[0], item[1], boxes, labels, *item[4:]))
        strata.append(int(np.bincount(old[keep]).argmax()) if keep.any() else background)
    picked, _ = take_subset(kept, strata, [*chosen, background], max_per_class, fraction, seed)
    return picked, chosen


def carve(parts: dict[str, list], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list]:
    """The val and test splits not given, carved out of train by a seeded shuffle."""
    missing = [s for s in ("val", "test") if s not in parts]
    if missing:
        items = parts["train"]
        fractions = [val_fraction if "val" in missing else 0.0, test_fraction if "test" in missing else 0.0]
        tr, va, te = split_indices(len(items), *fractions, seed)
        parts["train"] = [items[i] for i in tr]
        for s, idx in (("val", va), ("test", te)):
            if s in missing:
                parts[s] = [items[i] for i in idx]
    return parts


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


def layout(root: str, yaml_file: str) -> tuple[Path, Path, list[str], dict[str, list[Path]]]:
    """(ROOT, its data.yaml, the class names, {split: image files}) as data.yaml names the splits (relative to its
    `path`, else its folder), else ROOT/images/{train,val,test}."""
    folder = existing_folder(root, "root", "expected a YOLO data set: images/, labels/ and data.yaml")
    where = folder / yaml_file
    meta = read_yaml(where)
    names = class_names(meta, where)
    base = where.parent / str(meta.get("path") or ".")
    files = {}
    for split in SPLITS:
        entry = meta.get(split)
        if entry is None and (folder / "images" / split).is_dir():
            entry = str((folder / "images" / split).resolve())
        if entry is not None:
            files[split] = split_images(entry, base, where)
    if "train" not in files:
        raise ZooError(f"{where}: no train split (a `train:` entry, or the folder {folder / 'images' / 'train'})")
    return folder, where, names, files


def inventory(values: dict) -> dict:
    """zoo data check's list of every image, its label file and boxes (in pixels, from the image's header), and the
    label files no image uses; a line that does not parse is a finding of its own."""
    folder, _, names, files = layout(values["root"], values["yaml_file"])
    problems: list = []
    parts, used = {}, set()
    for split, images in files.items():
        items = []
        for f in images:
            label = label_file(f)
            used.add(label.resolve())
            try:
                hw = image_size(f)
            except ZooError:  # unreadable: the check's decode names it
                hw = None
            boxes, labels = lenient_labels(label, hw, problems) if label.is_file() else (None, None)
            items.append((f, hw, boxes, labels, label))
        subset = values["classes"], values["max_per_class"], values["fraction"]
        parts[split], chosen = box_subset(items, names, *subset, values["split_seed"])
    parts = carve(parts, values["val_fraction"], values["test_fraction"], values["split_seed"])
    out = []
    for split, items in parts.items():
        for f, hw, boxes, labels, label in items:
            item = {"split": split, "image": f, "size": hw, "source": label}
            if labels is not None:
                item.update(boxes=np.asarray(boxes).reshape(-1, 4).tolist(), box_labels=list(map(int, labels)))
            out.append(item)
    lone = sorted(f for f in (folder / "labels").rglob("*.txt") if f.resolve() not in used and f.name != "classes.txt")
    out += [{"split": next((p for p in f.parts if p in SPLITS), "train"), "source": f} for f in lone]
    return {"task": "detection", "classes": [names[i] for i in chosen], "items": out, "orphans": problems}


@register.dataset("yolo", writer=write_yolo, inventory=inventory)
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
    classes: BoxClasses = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """YOLO layout (Ultralytics): ROOT/images/SPLIT, ROOT/labels/SPLIT/*.txt, ROOT/data.yaml; boxes at size x size.

    Splits as data.yaml names them (relative to its `path`, else its folder), else ROOT/images/{train,val,test};
    a missing val or test split is carved out of train by val_fraction/test_fraction. classes (names or indices),
    max_per_class and fraction (per image class: the most common of its boxes) take a subset of each split given,
    seeded by split_seed."""
    check_fractions(val_fraction, test_fraction)
    _, where, names, files = layout(root, yaml_file)
    parts = {}
    for split, images in files.items():
        parts[split], chosen = box_subset(
            read_split(images, names), names, classes, max_per_class, fraction, split_seed
        )
    parts = carve(parts, val_fraction, test_fraction, split_seed)
    hw = (size, size)
    splits = {s: CocoImages(items, where, channels, hw) for s, items in parts.items()}
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo("detection", tuple(names[i] for i in chosen), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
