"""zoo.report.convert.convert (what `zoo data convert` runs): COCO -> YOLO -> VOC -> COCO keeps every box within
1e-3 relative and the class names and order; counts per split and class; nothing of the user's is overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ZooError
from zoo.report.convert import convert

CLASSES = ["zebra", "apple", "cat"]  # not alphabetical: the order must survive


def coco_set(root, seed=0):
    """Three splits of images of two sizes with 0-3 boxes each at fractional pixel positions; category ids 7, 9, 11."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 7 + 2 * i, "name": c} for i, c in enumerate(CLASSES)]
    files = {}
    for split, n in (("train", 8), ("val", 3), ("test", 3)):
        images, anns = [], []
        for k in range(n):
            w, h = (48, 36) if k % 2 else (37, 53)
            name = f"{split}_{k}.{'jpg' if k % 3 else 'png'}"
            (root / "img").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "img" / name)
            images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
            for _ in range(k % 4):
                x, y = rng.uniform(0, w - 10), rng.uniform(0, h - 10)
                bw, bh = rng.uniform(1.5, w - x), rng.uniform(1.5, h - y)
                cat = int(rng.integers(3))
                anns.append(
                    {"id": len(anns) + 1, "image_id": k + 1, "category_id": 7 + 2 * cat, "bbox": [x, y, bw, bh]}
                )
        files[split] = root / f"{split}.json"
        files[split].write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return files


def coco_overrides(images: dict, annotations: dict) -> list[str]:
    return [
        "data=coco",
        f"data.images={images['train']}",
        f"data.annotations={annotations['train']}",
        f"data.val_images={images['val']}",
        f"data.val_annotations={annotations['val']}",
        f"data.test_images={images['test']}",
        f"data.test_annotations={annotations['test']}",
    ]


def boxes_by_file(annotations: dict) -> dict:
    """{file name: sorted [(class name, x1, y1, x2, y2)]} over every split's json."""
    out = {}
    for path in annotations.values():
        d = json.loads(path.read_text())
        names = {c["id"]: c["name"] for c in d["categories"]}
        files = {im["id"]: im["file_name"] for im in d["images"]}
        for name in files.values():
            out.setdefault(name, [])
        for a in d["annotations"]:
            x, y, w, h = a["bbox"]
            out[files[a["image_id"]]].append((names[a["category_id"]], x, y, x + w, y + h))
    return {k: sorted(v) for k, v in out.items()}


def test_coco_to_yolo_to_voc_to_coco_keeps_every_box_and_the_classes(tmp_path):
    given = coco_set(tmp_path / "src")
    first = coco_overrides(dict.fromkeys(given, tmp_path / "src" / "img"), given)
    yolo = convert(first, "yolo", str(tmp_path / "yolo"))
    assert yolo["classes"] == CLASSES
    assert {s: v["images"] for s, v in yolo["splits"].items()} == {"train": 8, "val": 3, "test": 3}
    voc = convert(["data=yolo", f"data.root={tmp_path / 'yolo'}"], "voc", str(tmp_path / "voc"))
    assert voc["classes"] == CLASSES and voc["splits"] == yolo["splits"]
    back = convert(["data=voc", f"data.root={tmp_path / 'voc'}"], "coco", str(tmp_path / "back"))
    assert back["classes"] == CLASSES and back["splits"] == yolo["splits"]
    out = tmp_path / "back"
    final = {s: out / "annotations" / f"{s}.json" for s in given}
    for s in given:  # category ids 1.. in class order
        cats = json.loads(final[s].read_text())["categories"]
        assert [(c["id"], c["name"]) for c in cats] == [(i + 1, c) for i, c in enumerate(CLASSES)]
    before, after = boxes_by_file(given), boxes_by_file(final)
    assert before.keys() == after.keys() and sum(map(len, before.values())) == 18
    for name, boxes in before.items():
        assert [b[0] for b in boxes] == [a[0] for a in after[name]], name
        got, want = np.array([a[1:] for a in after[name]]), np.array([b[1:] for b in boxes])
        assert np.all(np.abs(got - want) <= 1e-3 * np.maximum(np.abs(want), 1.0)), name
    # the files are copied as they were, and the final COCO reads back with the same counts
    assert (out / "images" / "train" / "train_1.jpg").read_bytes() == (tmp_path / "src/img/train_1.jpg").read_bytes()
    again = convert(coco_overrides({s: out / "images" / s for s in given}, final), "yolo", str(tmp_path / "y2"))
    assert again["splits"] == yolo["splits"]


def test_a_generated_set_is_written_at_its_size(tmp_path):
    over = ["data=shapes", "data.task=detection", "data.num_images=10", "data.size=32", "data.max_size=12"]
    summary = convert(over, "voc", str(tmp_path / "voc"))
    assert summary["classes"] == ["circle", "square", "triangle"]
    assert sum(v["images"] for v in summary["splits"].values()) == 10
    assert (tmp_path / "voc" / "labels.txt").read_text().split() == summary["classes"]
    with Image.open(next((tmp_path / "voc" / "JPEGImages").iterdir())) as im:
        assert im.size == (32, 32)


def test_refusals_are_one_line_and_overwrite_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    over = ["data=shapes", "data.task=detection", "data.num_images=6", "data.size=32", "data.max_size=12"]
    with pytest.raises(ZooError, match="output=.* exists and is not empty"):
        convert(over, "yolo", str(out))
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    with pytest.raises(ZooError, match="to=digits: the digits dataset has no writer; layouts zoo can write: .*coco"):
        convert(over, "digits", str(tmp_path / "new"))
    with pytest.raises(ZooError, match="to=yolo writes boxes; this data set is for segmentation"):
        convert(["data=shapes", "data.num_images=6", "data.size=32", "data.max_size=12"], "yolo", str(tmp_path / "n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
