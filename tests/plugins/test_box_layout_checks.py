"""The YOLO and Pascal VOC readers' subsets (data.classes, max_per_class, fraction: exact counts, the same files
for the same seed) and their `zoo data check` inventories: each seeded defect is one finding naming its file,
and the clean generated layouts report nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, zoo_in_process
from zoo.plugin import registry
from zoo.train.datacheck import ERROR, WARNING

W, H = 40, 30
RNG = np.random.default_rng(0)
CAT, DOG = "0 0.35 0.35 0.5 0.5", "1 0.6 0.6 0.3 0.4"


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def yolo_set(root, per_split=(8, 4, 4)):
    """images/SPLIT/iK.png, labels/SPLIT/iK.txt: even K a cat (and a dog for K % 4 == 0), odd K a dog; the
    last training image an empty label file (background)."""
    for split, n in zip(("train", "val", "test"), per_split):
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            _image(root / "images" / split / f"i{k}.png")
            lines = [CAT, DOG] if k % 4 == 0 else [CAT] if k % 2 == 0 else [DOG]
            lines = [] if split == "train" and k == n - 1 else lines
            (root / "labels" / split / f"i{k}.txt").write_text("".join(x + "\n" for x in lines))
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: [cat, dog]\n"
    )
    return ["data=yolo", f"data.root={root}", "data.size=16"]


def _xml(name, objects):
    objs = "".join(
        f"<object><name>{c}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for c, b, d in objects
    )
    return (
        f"<annotation><filename>{name}</filename><size><width>{W}</width><height>{H}</height></size>{objs}</annotation>"
    )


def voc_set(root, n=12):
    """JPEGImages/vK.png, Annotations/vK.xml (cats on even K, dogs on odd, a difficult cat on K % 3 == 0),
    ImageSets/Main/{train,val,test}.txt, labels.txt; SegmentationClass/vK.png masks (1 and 255) for segmentation."""
    (root / "Annotations").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for k in range(n):
        _image(root / "JPEGImages" / f"v{k}.png")
        objects = [("cat" if k % 2 == 0 else "dog", (5, 4, 25, 20), False)]
        objects += [("cat", (2, 2, 10, 10), True)] if k % 3 == 0 else []
        (root / "Annotations" / f"v{k}.xml").write_text(_xml(f"v{k}.png", objects))
        mask = np.zeros((H, W), np.uint8)
        mask[5:15, 5:20], mask[0, :] = 1, 255
        Image.fromarray(mask).save(root / "SegmentationClass" / f"v{k}.png")
    for sets in ("Main", "Segmentation"):
        (root / "ImageSets" / sets).mkdir(parents=True)
        for split, ids in (("train", range(0, 8)), ("val", range(8, 10)), ("test", range(10, 12))):
            (root / "ImageSets" / sets / f"{split}.txt").write_text("".join(f"v{k}\n" for k in ids))
    (root / "labels.txt").write_text("cat\ndog\n")
    return ["data=voc", f"data.root={root}", "data.size=16"]


def voc_segmentation(root):
    return [*voc_set(root), "data.task=segmentation", "data.names=[cat]"]


def check(*args):
    return zoo_in_process("data", "check", *args)


def findings(proc):
    return [line for line in proc.stdout.splitlines() if line.startswith((ERROR, WARNING))]


def build(name, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


@pytest.mark.parametrize("layout", [yolo_set, voc_set, voc_segmentation])
def test_clean_layouts_report_nothing_and_exit_0(tmp_path, layout):
    proc = check(*layout(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(proc) == [] and "clean" in proc.stdout


def _yolo_defect(root, defect):
    """Seed one defect; return the file its finding must name and words it must hold."""
    labels = root / "labels" / "train"
    if defect == "label file with no image":
        (labels / "ghost.txt").write_text(CAT + "\n")
        return labels / "ghost.txt", "label file with no image"
    if defect == "image with no label":
        (labels / "i1.txt").unlink()
        return root / "images" / "train" / "i1.png", "image with no label"
    line, words = {
        "box outside the image": ("0 0.9 0.5 0.4 0.2", "outside its image"),
        "empty box": ("0 0.5 0.5 0 0.2", "is empty"),
        "class id past the class count": ("2 0.5 0.5 0.2 0.2", "class id 2 past the class count"),
        "a line that is not numbers": ("cat 0.5 0.5 0.2 0.2", "is not numbers"),
    }[defect]
    (labels / "i1.txt").write_text(f"{DOG}\n{line}\n")
    return labels / "i1.txt", words


YOLO_DEFECTS = ["label file with no image", "image with no label", "box outside the image", "empty box",
                "class id past the class count", "a line that is not numbers"]  # fmt: skip


@pytest.mark.parametrize("defect", YOLO_DEFECTS)
def test_yolo_defects_are_named_with_their_file(tmp_path, defect):
    args = yolo_set(tmp_path)
    bad, words = _yolo_defect(tmp_path, defect)
    proc = check(*args)
    lines = findings(proc)
    assert len(lines) == 1 and str(bad) in lines[0] and words in lines[0], proc.stdout
    warning_only = defect == "image with no label"  # a detector's unlabelled image is background
    assert lines[0].startswith(WARNING if warning_only else ERROR)
    assert proc.returncode == (0 if warning_only else 2)


def _voc_defect(root, defect):
    ann = root / "Annotations"
    if defect == "label file with no image":
        (root / "JPEGImages" / "v3.png").unlink()
        return ann / "v3.xml", "label file with no image"
    if defect == "image with no label":
        _image(root / "JPEGImages" / "extra.png")
        return root / "JPEGImages" / "extra.png", "image with no label"
    obj, words = {
        "box outside the image": (("dog", (20, 10, 60, 20), False), "outside its image"),
        "empty box": (("dog", (20, 10, 18, 20), False), "is empty"),  # VOC: max included, so 20..20 is a pixel
        "class not among the classes": (("horse", (5, 5, 10, 10), False), "'horse' is not one of the 2 classes"),
    }[defect]
    (ann / "v1.xml").write_text(_xml("v1.png", [obj]))
    return ann / "v1.xml", words


VOC_DEFECTS = ["label file with no image", "image with no label", "box outside the image", "empty box",
               "class not among the classes"]  # fmt: skip


@pytest.mark.parametrize("defect", VOC_DEFECTS)
def test_voc_defects_are_named_with_their_file(tmp_path, defect):
    args = voc_set(tmp_path)
    bad, words = _voc_defect(tmp_path, defect)
    proc = check(*args)
    lines = findings(proc)
    assert len(lines) == 1 and str(bad) in lines[0] and words in lines[0], proc.stdout
    assert proc.returncode == (0 if defect == "image with no label" else 2)


@pytest.mark.parametrize(
    "value, extra, words",
    [(7, [], "mask value 7 past the class count"), (255, ["data.ignore_index=null"], "holds 255")],
    ids=["value outside the classes", "255 without an ignore index"],
)
def test_voc_masks_outside_the_classes_are_named(tmp_path, value, extra, words):
    args = voc_segmentation(tmp_path)
    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 3:9] = value
    Image.fromarray(mask).save(tmp_path / "SegmentationClass" / "v2.png")
    if extra:  # every mask holds 255; only v2's is seeded
        for k in range(12):
            if k != 2:
                Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "SegmentationClass" / f"v{k}.png")
    proc = check(*args, *extra)
    lines = findings(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout
    assert str(tmp_path / "SegmentationClass" / "v2.png") in lines[0] and words in lines[0], lines[0]


# ---- subsets -----------------------------------------------------------------------------------------


def _files(split):
    return [item[0].name for item in split.items]


def test_yolo_classes_keep_only_their_boxes_and_the_background(tmp_path):
    yolo_set(tmp_path, (8, 4, 4))
    b = build("yolo", root=str(tmp_path), classes=["dog"])
    assert b.info.classes == ("dog",)
    # train: dogs on i0, i1, i3, i4, i5 (i7 is background, kept); cats-only i2, i6 dropped
    assert _files(b.train) == ["i0.png", "i1.png", "i3.png", "i4.png", "i5.png", "i7.png"]
    assert all(set(item[3].tolist()) <= {0} for item in b.train.items)
    assert [len(item[2]) for item in b.train.items] == [1, 1, 1, 1, 1, 0]
    by_index = build("yolo", root=str(tmp_path), classes=["1", "0"])
    assert by_index.info.classes == ("dog", "cat") and len(by_index.train) == 8


def test_yolo_max_per_class_gives_exact_counts_and_the_same_files_for_a_seed(tmp_path):
    yolo_set(tmp_path, (16, 8, 8))
    b = build("yolo", root=str(tmp_path), max_per_class=3, split_seed=1)
    primary = [int(np.bincount(item[3]).argmax()) for item in b.train.items if len(item[3])]
    assert sorted(primary) == [0, 0, 0, 1, 1, 1] and len(b.train) == 7  # and the one background image
    assert (len(b.val), len(b.test)) == (6, 6)
    assert _files(build("yolo", root=str(tmp_path), max_per_class=3, split_seed=1).train) == _files(b.train)
    others = {tuple(_files(build("yolo", root=str(tmp_path), max_per_class=3, split_seed=s).train)) for s in range(4)}
    assert len(others) > 1  # the seed chooses
    half = build("yolo", root=str(tmp_path), fraction=0.5, split_seed=1)
    assert len(half.val) == 4  # 4 cats and 4 dogs in val -> 2 + 2


def test_voc_subsets_count_exactly_and_segmentation_takes_a_fraction(tmp_path):
    voc_set(tmp_path)
    b = build("voc", root=str(tmp_path), classes=["dog"], max_per_class=2, split_seed=3)
    assert b.info.classes == ("dog",) and len(b.train) == 2 and len(b.val) == len(b.test) == 1
    assert all(item[3].tolist() == [0] for item in b.train.items)
    again = build("voc", root=str(tmp_path), classes=["dog"], max_per_class=2, split_seed=3)
    assert _files(again.train) == _files(b.train)
    cats = build("voc", root=str(tmp_path), classes=["cat"], use_difficult=True)
    assert len(cats.train) == 5  # v0, v2, v4, v6 and v3 (its difficult cat)
    seg = build("voc", root=str(tmp_path), task="segmentation", names=["cat"], fraction=0.5)
    assert (len(seg.train), len(seg.val), len(seg.test)) == (4, 1, 1)
    with pytest.raises(Exception, match="for segmentation use data.fraction"):
        build("voc", root=str(tmp_path), task="segmentation", names=["cat"], max_per_class=2)


# ---- what the review found: each a traceback or an internal error before ---------------------------------------


def test_class_ids_past_the_names_are_findings_not_a_crash_of_the_imbalance_check(tmp_path):
    """Labels using class 7 of two names most often: each line is a finding naming its file, and the imbalance
    check counts only real classes (it indexed the names with 7: an internal error)."""
    args = yolo_set(tmp_path)
    for k in range(6):
        (tmp_path / "labels" / "train" / f"i{k}.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    proc = check(*args, "imbalance=0.5")
    assert proc.returncode == 2 and "internal error" not in proc.stderr, proc.stderr
    assert sum("i0.txt" in line for line in findings(proc)) == 1


def test_a_voc_size_that_is_not_a_number_is_one_line_naming_the_xml(tmp_path):
    args = voc_set(tmp_path)
    xml = tmp_path / "Annotations" / "v0.xml"
    xml.write_text(xml.read_text().replace(f"<width>{W}</width>", "<width>abc</width>"))
    found = check(*args)  # zoo data check: a finding naming the file, exit 2
    assert found.returncode == 2 and any(f"{xml}: <size> holds width 'abc'" in line for line in findings(found))
    converted = zoo_in_process("data", "convert", *args, "to=yolo", f"output={tmp_path / 'out'}")
    assert_one_line_error(converted, f"{xml}: <size> holds width 'abc'")


def test_split_lists_that_are_not_text_are_one_line_naming_the_file(tmp_path):
    args = yolo_set(tmp_path)
    (tmp_path / "train.txt").write_bytes(b"\xff\xfe images/train/i0.png\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: train.txt\nval: images/val\nnames: [cat, dog]\n")
    assert_one_line_error(zoo_in_process("data", "convert", *args, "to=coco", f"output={tmp_path / 'o'}"), "train.txt")
    voc = voc_set(tmp_path / "voc")
    (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").write_bytes(b"\xff\xfe\x00v8\n")
    assert_one_line_error(zoo_in_process("data", "convert", *voc, "to=coco", f"output={tmp_path / 'o2'}"), "val.txt")
