"""Pascal VOC: ROOT/JPEGImages, ROOT/Annotations/*.xml boxes (`difficult` honoured), ROOT/ImageSets/Main/SPLIT.txt;
segmentation from ROOT/SegmentationClass/*.png palette masks (255: void, ignored); and its box writer.

A small reader of its own (xml.etree from the standard library): a VOC annotation is a few elements, and
supervision or datumaro would add a large dependency for them. Boxes: VOC's `bndbox` holds 1-based pixel
indices, xmax and ymax included, so the box in pixel-edge coordinates (XYXY, as COCO's) is
(xmin - 1, ymin - 1, xmax, ymax); the writer writes the inverse. Class order: ROOT/labels.txt (one name a line,
as the writer leaves it) or data.names when given, else VOC's 20 classes when every name is one of them, else
the names found, sorted. Subsets (data.classes, max_per_class, fraction) as the YOLO reader's `box_subset` takes
them; segmentation takes `fraction` only. `inventory` lists the files for `zoo data check`, leniently.
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
    ClassFraction,
    Fraction,
    PerClass,
    check_fractions,
    existing_folder,
    image_size,
    pair_files,
    sampled_stats,
    take_subset,
    text_lines,
)
from zoo_plugins.datasets.coco import CocoImages, box_records, boxes_only, count, put_image, split_items, unique_name
from zoo_plugins.datasets.masks import MaskPairs, MaskValues, check_classes, check_pair
from zoo_plugins.datasets.yolo import BoxClasses, box_subset, carve

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
    try:
        hw = (int(float(h)), int(float(w))) if w and h and float(w) > 0 and float(h) > 0 else None
    except ValueError:
        raise ZooError(f"{path}: <size> holds width {w!r} and height {h!r}; expected numbers of pixels") from None
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
        return text_lines(listed)
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
            ids[split] = [ln.split()[0] for ln in text_lines(file)]
    return ids


def detection_files(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    """JPEGImages and every split's annotation files, from ImageSets/Main (else every Annotations/*.xml)."""
    ann = existing_folder(str(root / "Annotations"), "root", "expected ROOT/Annotations/*.xml (Pascal VOC)")
    images = existing_folder(str(root / "JPEGImages"), "root", "expected ROOT/JPEGImages (Pascal VOC)")
    ids = split_ids(root, "Main") or {"train": sorted(p.stem for p in ann.glob("*.xml"))}
    if "train" not in ids or not ids["train"]:
        raise ZooError(f"{root}: no training images (ImageSets/Main/train.txt, or Annotations/*.xml)")
    return images, {s: [ann / f"{i}.xml" for i in v] for s, v in ids.items()}


def detection_parts(root: Path, names, use_difficult: bool) -> tuple[dict[str, list], list[str]]:
    """Every split's items and the class names, from Annotations/ and ImageSets/Main/."""
    images, files = detection_files(root)
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


# ---- zoo data check's inventory -------------------------------------------------------------------


def _image_or_none(images: Path, filename: str, stem: str, where: Path) -> Path | None:
    try:
        return find_image(images, filename, stem, where)
    except ZooError:  # a label file with no image: a finding
        return None


def _size(hw, image: Path | None):
    """The annotation's size, else the image's header (None when it cannot be read: the decode names it)."""
    if hw is not None or image is None:
        return hw
    try:
        return image_size(image)
    except ZooError:
        return None


def detection_inventory(root: Path, values: dict) -> dict:
    """Every annotation's image and boxes (as stated, unclipped), annotations whose image is missing, images without
    an annotation; an annotation that cannot be read, or a class name not among the classes, is a finding."""
    images, files = detection_files(root)
    problems, parsed = [], {}
    for f in sorted({f for fs in files.values() for f in fs}):
        if not f.is_file():
            problems.append((f, "is listed in ImageSets/Main but does not exist"))
            continue
        try:
            parsed[f] = parse_annotation(f)
        except ZooError as e:
            problems.append((f, str(e).removeprefix(f"cannot read {f}: ").removeprefix(f"{f}: ")))
    classes = class_order(root, values["names"], {o[0] for a in parsed.values() for o in a[2]})
    index, parts, used = {c: i for i, c in enumerate(classes)}, {}, set()
    for split, fs in files.items():
        items = []
        for f in (f for f in fs if f in parsed):
            filename, hw, objects = parsed[f]
            image = _image_or_none(images, filename, f.stem, f)
            used.add(image)
            boxes, labels = [], []
            for name, box, difficult in objects:
                if name not in index:
                    problems.append(
                        (f, f"class {name!r} is not one of the {len(classes)} classes: {', '.join(classes)}")
                    )
                elif values["use_difficult"] or not difficult:
                    boxes.append(box)
                    labels.append(index[name])
            items.append((image, _size(hw, image), boxes, labels, f))
        subset = values["classes"], values["max_per_class"], values["fraction"]
        parts[split], chosen = box_subset(items, classes, *subset, values["split_seed"])
    out = [
        {"split": s, "image": image, "size": hw, "source": f, "boxes": np.asarray(b).reshape(-1, 4).tolist(),
         "box_labels": list(map(int, lab))}
        for s, items in carve(parts, values["val_fraction"], values["test_fraction"], values["split_seed"]).items()
        for image, hw, b, lab, f in items
    ]  # fmt: skip
    _, lone, _ = pair_files(images, root / "Annotations", (".xml",))
    out += [{"split": "train", "image": f} for f in lone if f not in used]
    return {"task": "detection", "classes": [classes[i] for i in chosen], "items": out, "orphans": problems}


def segmentation_inventory(root: Path, values: dict) -> dict:
    """Every listed id's image and mask (either may be missing: a finding), and masks no list names."""
    masks = existing_folder(str(root / "SegmentationClass"), "root", "expected ROOT/SegmentationClass/*.png")
    images = existing_folder(str(root / "JPEGImages"), "root", "expected ROOT/JPEGImages (Pascal VOC)")
    listed = split_ids(root, "Segmentation")
    ids = listed or {"train": sorted(p.stem for p in masks.glob("*.png"))}
    problems, parts = [], {}
    for split, v in ids.items():
        pairs = [(_image_or_none(images, "", i, masks), masks / f"{i}.png") for i in v]
        problems += [(m, "neither the image nor this mask exists") for im, m in pairs if im is None and not m.is_file()]
        pairs = [(im, m if m.is_file() else None) for im, m in pairs if im is not None or m.is_file()]
        parts[split] = seg_fraction(pairs, values)
    parts = carve(parts, values["val_fraction"], values["test_fraction"], values["split_seed"])
    out = [{"split": s, "image": im, "mask": m} for s, pairs in parts.items() for im, m in pairs]
    named = {i for v in listed.values() for i in v}
    out += [{"split": "train", "mask": m} for m in sorted(masks.glob("*.png")) if listed and m.stem not in named]
    classes = ["background", *(values["names"] or VOC_CLASSES)]
    return {"task": "segmentation", "classes": classes, "items": out, "orphans": problems,
            "ignore_index": values["ignore_index"]}  # fmt: skip


def inventory(values: dict) -> dict:
    """zoo data check's list of a VOC folder's files and labels, nothing decoded."""
    folder = existing_folder(values["root"], "root", "expected a Pascal VOC folder: JPEGImages, Annotations, ImageSets")
    if values["task"] == "detection":
        return detection_inventory(folder, values)
    return segmentation_inventory(folder, values)


def seg_fraction(pairs: list, values: dict) -> list:
    """Segmentation's subset: a seeded `fraction` of the pairs (classes and max_per_class pick boxes' classes)."""
    if values["classes"] is not None or values["max_per_class"] is not None:
        raise ZooError(
            "data.classes and data.max_per_class take a subset of VOC's boxes (data.task=detection); "
            "for segmentation use data.fraction"
        )
    if values["fraction"] is None:
        return pairs
    return take_subset(pairs, [0] * len(pairs), [0], None, values["fraction"], values["split_seed"])[0]


# ---- the registered dataset -------------------------------------------------------------------


@register.dataset("voc", writer=write_voc, inventory=inventory)
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
    classes: BoxClasses = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """Pascal VOC: Annotations/*.xml boxes (difficult left out unless use_difficult) or SegmentationClass masks.

    Splits from ImageSets/Main (or ImageSets/Segmentation) train/val/test.txt; those missing are carved out of
    train. Segmentation: classes are background + names (VOC's 20 by default); mask value 255 is ignored.
    classes (names or indices), max_per_class and fraction take a subset of each split given (per image class: the
    most common of its boxes; segmentation: fraction only), seeded by split_seed."""
    check_fractions(val_fraction, test_fraction)
    folder = existing_folder(root, "root", "expected a Pascal VOC folder: JPEGImages, Annotations, ImageSets")
    hw = (size, size)
    subset = {"classes": classes, "max_per_class": max_per_class, "fraction": fraction, "split_seed": split_seed}
    if task == "detection":
        parts, every = detection_parts(folder, names, use_difficult)
        for split, items in parts.items():
            parts[split], chosen = box_subset(items, every, classes, max_per_class, fraction, split_seed)
        parts = carve(parts, val_fraction, test_fraction, split_seed)
        splits = {s: CocoImages(items, folder / "Annotations", channels, hw) for s, items in parts.items()}
        names_kept, extra = [every[i] for i in chosen], {}
    else:
        names_kept = ["background", *(names or VOC_CLASSES)]
        check_classes(names_kept, True)
        values = MaskValues(len(names_kept), ignore_index)
        parts = {s: seg_fraction(p, subset) for s, p in segmentation_parts(folder, values).items()}
        parts = carve(parts, val_fraction, test_fraction, split_seed)
        splits = {s: MaskPairs(pairs, channels, hw, values) for s, pairs in parts.items()}
        extra = {"background": 0, "ignore_index": ignore_index}
    mean, std = sampled_stats(splits["train"], stats_samples)
    info = DataInfo(task, tuple(names_kept), channels, hw, mean, std, **extra)
    return DataBundle(info, splits["train"], splits["val"], splits["test"])
