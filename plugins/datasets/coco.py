"""COCO detection json: images with boxes and labels, the boxes resized with the images; and its writer.

The json is read and checked when the dataset is built, so a bad file stops the run before any training
with one line naming it; images are decoded when a sample is read. Every box reader (coco, yolo, voc) holds
its boxes in the images' original pixels (`CocoImages.items`), so a writer (`zoo data convert`) writes them
unscaled, and copies the image files as they are.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    Fraction,
    check_fractions,
    existing_folder,
    image_size,
    read_image,
    sampled_stats,
    split_indices,
)

# ---- building blocks -------------------------------------------------------------------------


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
                f"{path}: image id {im['id']} is listed twice "
                f"({images[im['id']]['file_name']!r} and {im['file_name']!r})"
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
                f"{path}: annotation id {aid} has unknown category_id {a.get('category_id')!r}; "
                f"the categories are {names}"
            )
        if a.get("iscrowd", 0):
            continue  # a crowd region is not one object: left out, as COCO's own detectors do
        im = images[a["image_id"]]
        h, w = im["hw"]
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            raise ZooError(
                f"{path}: annotation id {aid} (image {im['file_name']!r}) has bbox {bbox!r}; "
                "expected [x, y, width, height]"
            )
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            raise ZooError(
                f"{path}: annotation id {aid} (image {im['file_name']!r}) has bbox {bbox} "
                "with non-positive width or height"
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


# ---- writing box layouts (zoo data convert) ---------------------------------------------------


@dataclass
class BoxRecord:
    """One image of a split as a writer takes it: boxes XYXY in the image's own pixels, labels as class indices;
    the original file to copy, or (a dataset that holds no files) its pixels, CHW in [0, 1]."""

    name: str
    hw: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    file: Path | None = None
    image: torch.Tensor | None = None


def box_records(split: Dataset) -> Iterator[BoxRecord]:
    """Every image of a split with its boxes in original pixels: read from a box reader's items (through torch
    Subsets, as subsets take them), else decoded from the split's items at their size, written as PNG."""
    base, index = split, list(range(len(split)))
    while isinstance(base, Subset):
        index = [base.indices[i] for i in index]
        base = base.dataset
    if isinstance(base, CocoImages):
        for i in index:
            file, hw, boxes, labels = base.items[i]
            yield BoxRecord(file.name, hw, boxes, labels, file=file)
        return
    for i in range(len(split)):
        image, target = split[i]
        boxes = target["boxes"].as_subclass(torch.Tensor).numpy().astype(np.float64)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        yield BoxRecord(f"{i:06d}.png", hw, boxes, target["labels"].numpy(), image=image)


def boxes_only(bundle: DataBundle, to: str) -> None:
    """Refuse a dataset without boxes, in one line."""
    if bundle.info.task != "detection":
        raise ZooError(f"to={to} writes boxes; this data set is for {bundle.info.task}, not detection")


def unique_name(name: str, used: set[str]) -> str:
    """`name`, or `stem_N.ext` when a file of that stem is already written (labels are named by stem)."""
    stem, ext, n = Path(name).stem, Path(name).suffix, 1
    candidate = stem
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate + ext


def put_image(record: BoxRecord, dest: Path) -> None:
    """The image file copied as it is, or the decoded pixels written as PNG."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if record.file is not None:
        shutil.copyfile(record.file, dest)
        return
    from PIL import Image

    pixels = (record.image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(dest)


def split_items(bundle: DataBundle) -> Iterator[tuple[str, Dataset]]:
    """The bundle's non-empty splits by name."""
    for name in ("train", "val", "test"):
        split = getattr(bundle, name)
        if len(split):
            yield name, split


def count(counts: dict, split: str, classes: tuple[str, ...], labels: np.ndarray) -> None:
    """Add one image and its boxes to a writer's summary: per split, images and boxes per class."""
    entry = counts.setdefault(split, {"images": 0, "boxes": dict.fromkeys(classes, 0)})
    entry["images"] += 1
    for label in labels.tolist():
        entry["boxes"][classes[int(label)]] += 1


def write_coco(bundle: DataBundle, output: Path) -> dict:
    """COCO json per split: OUTPUT/images/SPLIT/*, OUTPUT/annotations/SPLIT.json; category ids 1.. in class
    order. Read back with data=coco images=OUTPUT/images/train annotations=OUTPUT/annotations/train.json (and
    val_/test_ pairs)."""
    boxes_only(bundle, "coco")
    classes, counts = bundle.info.classes, {}
    categories = [{"id": i + 1, "name": c, "supercategory": "none"} for i, c in enumerate(classes)]
    for split, ds in split_items(bundle):
        images, annotations, used = [], [], set()
        for k, r in enumerate(box_records(ds), 1):
            name = unique_name(r.name, used)
            put_image(r, output / "images" / split / name)
            images.append({"id": k, "file_name": name, "height": r.hw[0], "width": r.hw[1]})
            for (x1, y1, x2, y2), label in zip(r.boxes.tolist(), r.labels.tolist()):
                w, h = x2 - x1, y2 - y1
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": k,
                        "category_id": int(label) + 1,
                        "bbox": [x1, y1, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            count(counts, split, classes, r.labels)
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (output / "annotations").mkdir(parents=True, exist_ok=True)
        (output / "annotations" / f"{split}.json").write_text(json.dumps(doc), encoding="utf-8")
    return counts


# ---- the registered dataset -------------------------------------------------------------------


@register.dataset("coco", writer=write_coco)
def coco_json(
    seed: int,
    images: str,
    annotations: str,
    val_annotations: Optional[str] = None,
    test_annotations: Optional[str] = None,
    val_images: Optional[str] = None,
    test_images: Optional[str] = None,
    size: Annotated[int, Range(8)] = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """COCO-json object detection: boxes resized with the images to size x size; splits given or by fraction."""
    check_fractions(val_fraction, test_fraction)
    image_dir = existing_folder(images, "images", "expected the folder the json's file_name entries are relative to")
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
        where = existing_folder(folder, f"{split}_images", "expected a folder of images") if folder else image_dir
        parts[split] = (read_coco(d, path, where, cat_ids), path)
    missing = [s for s in ("val", "test") if s not in parts]
    if missing:  # carve the missing splits out of train, by a seeded shuffle
        items, source = parts["train"]
        tr, va, te = split_indices(
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
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo("detection", tuple(cats.values()), channels, hw, mean, std)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
