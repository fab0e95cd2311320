"""Pascal VOC: ROOT/JPEGImages, ROOT/Annotations/*.xml boxes (`difficult` honoured), ROOT/ImageSets/Main/SPLIT.txt;
segmentation from ROOT/SegmentationClass/*.png palette masks (255: void, ignored); and its box writer.

A small reader of its own (xml.etree from the standard library): a VOC annotation is a few elements, and
supervision or datumaro would add a large dependency for them. Boxes: VOC's `bndbox` holds 1-based pixel
indices, xmax and ymax included, so the box in pixel-edge coordinates (XYXY, as COCO's) is
(xmin - 1, ymin - 1, xmax, ymax); the writer writes the inverse. Class order: ROOT/labels.txt (one name a line,
as the writer leaves it) or data.names when given, else VOC's 20 classes when every name is one of them, else
the names found, sorted.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    Fraction,
    check_fractions,
    existing_folder,
    image_size,
    sampled_stats,
    split_indices,
)
from zoo_plugins.datasets.coco import CocoImages, box_records, boxes_only, count, put_image, split_items, unique_name
from zoo_plugins.datasets.masks import MaskPairs, MaskValues, check_classes, check_pair

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
SPLITS = ("train", "val", "test")

# ---- reading ---------------------------------------------------------------------------------


def parse_annotation(path: Path) -> tuple[str, tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """One VOC xml: (filename, (height, width) or None, [(class name, XYXY pixel-edge box, difficult)])."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ZooError(f"cannot read {path}: {e}") from None
    filename = (root.findtext("filename") or "").strip()
    w, h = root.findtext("size/width"), root.findtext("size/height")
    hw = (int(float(h)), int(float(w))) if w and h and float(w) > 0 and float(h) > 0 else None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise ZooError(f"{path}: object {name!r} needs a bndbox with numbers xmin, ymin, xmax, ymax") from None
        if not name or not all(map(math.isfinite, (xmin, ymin, xmax, ymax))):
            raise ZooError(f"{path}: an object needs a name and a finite bndbox")
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
        objects.append((name, [xmin - 1, ymin - 1, xmax, ymax], difficult))
    return filename, hw, objects


def find_image(folder: Path, filename: str, stem: str, where: Path) -> Path:
    """The image an annotation names (its filename, else its stem with any image extension)."""
    if filename and (folder / filename).is_file():
        return folder / filename
    for ext in IMAGE_EXTENSIONS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise ZooError(f"{where}: its image {filename or stem} is not in {folder}")


def box_item(path: Path, images: Path, names: list[str], use_difficult: bool):
    """(image, (height, width), XYXY boxes in pixels, labels) of one annotation, checked against its image."""
    filename, hw, objects = parse_annotation(path)
    file = find_image(images, filename, path.stem, path)
    hw = hw or image_size(file)
    h, w = hw
    boxes, labels = [], []
    for name, (x1, y1, x2, y2), difficult in objects:
        if name not in names:
            raise ZooError(f"{path}: class {name!r} is not one of the {len(names)} classes: {', '.join(names)}")
        if x2 <= x1 or y2 <= y1:
            raise ZooError(f"{path}: the {name} box ({x1 + 1}, {y1 + 1}, {x2}, {y2}) is empty")
        if x1 < -1 or y1 < -1 or x2 > w + 1 or y2 > h + 1:  # one pixel of tolerance, as for COCO
            raise ZooError(f"{path}: the {name} box ({x1 + 1}, {y1 + 1}, {x2}, {y2}) is outside its {w}x{h} image")
        if difficult and not use_difficult:
            continue  # VOC's own evaluation leaves them out; data.use_difficult=true trains on them
        boxes.append([max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)])
        labels.append(names.index(name))
    return file, hw, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def class_order(root: Path, given: Optional[list[str]], found: set[str]) -> list[str]:
    """The class names in order (see the module's docstring)."""
    if given:
        return list(given)
    listed = root / "labels.txt"
    if listed.is_file():
        return [ln.strip() for ln in listed.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def split_ids(root: Path, sets: str) -> dict[str, list[str]]:
    """ImageSets/SETS/{train,val,test}.txt (trainval.txt as train when train.txt is missing): the ids per split."""
    ids = {}
    for split in SPLITS:
        file = root / "ImageSets" / sets / f"{split}.txt"
        if split == "train" and not file.is_file():
            file = root / "ImageSets" / sets / "trainval.txt"
        if file.is_file():
            ids[split] = [ln.split()[0] for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return ids


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


def detection_parts(root: Path, names, use_difficult: bool) -> tuple[dict[str, list], list[str]]:
    """Every split's items and the class names, from Annotations/ and ImageSets/Main/."""
    ann = existing_folder(str(root / "Annotations"), "root", "expected ROOT/Annotations/*.xml (Pascal VOC)")
    images = existing_folder(str(root / "JPEGImages"), "root", "expected ROOT/JPEGImages (Pascal VOC)")
    ids = split_ids(root, "Main") or {"train": sorted(p.stem for p in ann.glob("*.xml"))}
    if "train" not in ids or not ids["train"]:
        raise ZooError(f"{root}: no training images (ImageSets/Main/train.txt, or Annotations/*.xml)")
    files = {s: [ann / f"{i}.xml" for i in v] for s, v in ids.items()}
    for f in (f for fs in files.values() for f in fs):
        if not f.is_file():
            raise ZooError(f"{root}: image id {f.stem} is listed in ImageSets/Main but {f} does not exist")
    found = {o[0] for fs in files.values() for f in fs for o in parse_annotation(f)[2]}
    classes = class_order(root, names, found)
    return {s: [box_item(f, images, classes, use_difficult) for f in fs] for s, fs in files.items()}, classes


def segmentation_parts(root: Path, values: MaskValues) -> dict[str, list]:
    """Every split's (image, mask) pairs, from SegmentationClass/ and ImageSets/Segmentation/."""
    masks = existing_folder(str(root / "SegmentationClass"), "root", "expected ROOT/SegmentationClass/*.png")
    images = existing_folder(str(root / "JPEGImages"), "root", "expected ROOT/JPEGImages (Pascal VOC)")
    ids = split_ids(root, "Segmentation") or {"train": sorted(p.stem for p in masks.glob("*.png"))}
    parts = {}
    for split, v in ids.items():
        pairs = [(find_image(images, "", i, masks / f"{i}.png"), masks / f"{i}.png") for i in v]
        for image, mask in pairs:
            check_pair(image, mask, values)
        parts[split] = pairs
    return parts


# ---- writing ---------------------------------------------------------------------------------


def _num(v: float) -> str:
    return str(round(v)) if abs(v - round(v)) < 1e-6 else f"{v:.4f}"


def annotation_xml(name: str, hw: tuple[int, int], depth: int, boxes, labels, classes) -> str:
    """One VOC annotation (bndbox 1-based, max included: the inverse of the reader)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for key, value in (("width", hw[1]), ("height", hw[0]), ("depth", depth)):
        ET.SubElement(size, key).text = str(value)
    for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[int(label)]
        for key in ("pose", "truncated", "difficult"):
            ET.SubElement(obj, key).text = "Unspecified" if key == "pose" else "0"
        box = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, key).text = _num(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(bundle: DataBundle, output: Path) -> dict:
    """OUTPUT/JPEGImages/*, OUTPUT/Annotations/*.xml, OUTPUT/ImageSets/Main/SPLIT.txt and OUTPUT/labels.txt (the
    class names in order, which VOC's files do not keep)."""
    boxes_only(bundle, "voc")
    classes, counts, used = bundle.info.classes, {}, set()
    (output / "Annotations").mkdir(parents=True)
    (output / "ImageSets" / "Main").mkdir(parents=True)
    for split, ds in split_items(bundle):
        ids = []
        for r in box_records(ds):
            name = unique_name(r.name, used)  # one JPEGImages folder for every split
            put_image(r, output / "JPEGImages" / name)
            xml = annotation_xml(name, r.hw, bundle.info.channels, r.boxes, r.labels, classes)
            (output / "Annotations" / f"{Path(name).stem}.xml").write_text(xml, encoding="utf-8")
            ids.append(Path(name).stem)
            count(counts, split, classes, r.labels)
        (output / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    (output / "labels.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
    return counts


# ---- the registered dataset -------------------------------------------------------------------


@register.dataset("voc", writer=write_voc)
def voc(
    seed: int,
    root: str,
    task: Literal["detection", "segmentation"] = "detection",
    names: Optional[list[str]] = None,
    use_difficult: bool = False,
    ignore_index: Optional[Annotated[int, Range(0, 255)]] = 255,
    size: Annotated[int, Range(8)] = 128,
    channels: Literal[1, 3] = 3,
    val_fraction: Fraction = 0.15,
    test_fraction: Fraction = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
) -> DataBundle:
    """Pascal VOC: Annotations/*.xml boxes (difficult left out unless use_difficult) or SegmentationClass masks.

    Splits from ImageSets/Main (or ImageSets/Segmentation) train/val/test.txt; those missing are carved out of
    train. Segmentation: classes are background + names (VOC's 20 by default); mask value 255 is ignored."""
    check_fractions(val_fraction, test_fraction)
    folder = existing_folder(root, "root", "expected a Pascal VOC folder: JPEGImages, Annotations, ImageSets")
    hw = (size, size)
    if task == "detection":
        parts, classes = detection_parts(folder, names, use_difficult)
        parts = carve(parts, val_fraction, test_fraction, split_seed)
        splits = {s: CocoImages(items, folder / "Annotations", channels, hw) for s, items in parts.items()}
        extra = {}
    else:
        classes = ["background", *(names or VOC_CLASSES)]
        check_classes(classes, True)
        values = MaskValues(len(classes), ignore_index)
        parts = carve(segmentation_parts(folder, values), val_fraction, test_fraction, split_seed)
        splits = {s: MaskPairs(pairs, channels, hw, values) for s, pairs in parts.items()}
        extra = {"background": 0, "ignore_index": ignore_index}
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo(task, tuple(classes), channels, hw, mean, std, **extra)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
