"""zoo data check flags each seeded defect with its file named and nothing on the clean fixtures; zoo train's
cheap checks stop a run before its first epoch. Every data set is generated here (Pillow) in a layout a reader
takes today: class folders, image/mask folders, a COCO json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, zoo_in_process
from zoo.train.datacheck import ERROR, WARNING, survey

RNG = np.random.default_rng(0)


def _png(path, size=(40, 40), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if mode == "RGB" else size
    Image.fromarray(RNG.integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


def folder_set(root, per_class=(8, 8)):
    for c, n in zip("ab", per_class):
        for i in range(n):
            _png(root / c / f"{c}{i}.png")
    return ["data=folder", f"data.root={root}", "data.size=16"]


def mask_set(root, n=8):
    for i in range(n):
        _png(root / "images" / f"{i}.png", (20, 20))
        mask = np.zeros((20, 20), np.uint8)
        mask[5:12, 5:12] = 1
        Image.fromarray(mask).save(root / "masks" / f"{i}.png") if (root / "masks").is_dir() else (
            (root / "masks").mkdir(),
            Image.fromarray(mask).save(root / "masks" / f"{i}.png"),
        )
    return ["data=masks", f"data.images={root / 'images'}", f"data.masks={root / 'masks'}", "data.size=16",
            "data.classes=[background,thing]"]  # fmt: skip


def coco_set(root, n=6, bbox=(2, 2, 10, 8), category=1):
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 24} for i in range(n)]
    for i in range(n):
        _png(root / "images" / f"{i}.png", (24, 32))
    anns = [{"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [3, 3, 12, 10]} for i in range(n)]
    anns[0] = {**anns[0], "bbox": list(bbox), "category_id": category}
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "dot"}]}
    (root / "train.json").write_text(json.dumps(doc))
    return ["data=coco", f"data.images={root / 'images'}", f"data.annotations={root / 'train.json'}", "data.size=16"]


def check(*args):
    return zoo_in_process("data", "check", *args)


def findings(proc, level=None):
    return [line for line in proc.stdout.splitlines() if line.startswith((level or ERROR, level or WARNING))]


@pytest.mark.parametrize("layout", [folder_set, mask_set, coco_set])
def test_clean_fixtures_report_nothing_and_exit_0(tmp_path, layout):
    proc = check(*layout(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert findings(proc) == [] and "clean" in proc.stdout


def _truncate(path):
    Image.fromarray(RNG.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path.with_suffix(".jpg"), quality=95)
    path.unlink()
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
    return path.with_suffix(".jpg")


FOLDER_DEFECTS = {  # name -> (seed the defect into ROOT, returning the file; what the line says; level)
    "unreadable image": (lambda r: (r / "a" / "a0.png").write_bytes(b"not an image") and r / "a" / "a0.png",
                         "unreadable", ERROR),
    "truncated image": (lambda r: _truncate(r / "a" / "a1.png"), "truncated", ERROR),
    "smaller than the model takes": (lambda r: _png(r / "b" / "b0.png", (4, 4)), "smaller than the model", WARNING),
    "duplicate file": (lambda r: shutil.copy(r / "a" / "a2.png", r / "b" / "b9.png") and r / "b" / "b9.png",
                       "same content as", None),
}  # fmt: skip


@pytest.mark.parametrize("defect", FOLDER_DEFECTS)
def test_folder_defects_are_named_with_their_file(tmp_path, defect):
    seed, words, level = FOLDER_DEFECTS[defect]
    args = folder_set(tmp_path)
    bad = seed(tmp_path)
    proc = check(*args)
    lines = findings(proc)
    assert len(lines) == 1 and str(bad) in lines[0] and words in lines[0], proc.stdout
    if level is not None:
        assert lines[0].startswith(level) and proc.returncode == (2 if level == ERROR else 0)


def test_class_imbalance_is_a_warning_over_the_declared_ratio(tmp_path):
    args = folder_set(tmp_path, per_class=(12, 4))
    assert findings(check(*args)) == []
    lines = findings(check(*args, "imbalance=0.5"))
    assert len(lines) == 1 and lines[0].startswith(f"{WARNING}: train: class imbalance: 'a' has 8, 'b' 2"), lines


def _mask(values, mode="L"):
    im = Image.fromarray(values.astype(np.uint8), mode="L")
    if mode == "P":
        im = im.convert("P")
        im.putpalette([0, 0, 0, 200, 0, 0] + [v for i in range(2, 256) for v in (i, i, i)])
    return im


MASK_DEFECTS = {
    "255 without an ignore index": (lambda r: _mask(np.full((20, 20), 255)).save(r / "masks" / "3.png") or
                                    r / "masks" / "3.png", "no ignore index"),
    "palette indices not class ids": (lambda r: _mask(np.full((20, 20), 7), "P").save(r / "masks" / "4.png") or
                                      r / "masks" / "4.png", "palette PNG whose palette indices [7]"),
    "class id past the class count": (lambda r: _mask(np.full((20, 20), 2)).save(r / "masks" / "5.png") or
                                      r / "masks" / "5.png", "mask value 2 past the class count"),
    "label file with no image": (lambda r: (r / "images" / "6.png").unlink() or r / "masks" / "6.png",
                                 "label file with no image"),
    "image with no label": (lambda r: (r / "masks" / "7.png").unlink() or r / "images" / "7.png",
                            "image with no label"),
}  # fmt: skip


@pytest.mark.parametrize("defect", MASK_DEFECTS)
def test_mask_defects_are_named_with_their_file(tmp_path, defect):
    seed, words = MASK_DEFECTS[defect]
    args = mask_set(tmp_path)
    bad = seed(tmp_path)
    proc = check(*args)
    lines = findings(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout
    assert lines[0].startswith(ERROR) and str(bad) in lines[0] and words in lines[0], lines[0]


@pytest.mark.parametrize(
    "bbox, category, words",
    [((20, 2, 20, 8), 1, "outside its image"), ((2, 2, 0, 8), 1, "non-positive width"),
     ((2, 2, 10, 8), 7, "unknown category_id 7")],
    ids=["box outside the image", "empty box", "class id past the class count"],
)  # fmt: skip
def test_box_defects_are_named_with_their_file(tmp_path, bbox, category, words):
    proc = check(*coco_set(tmp_path, bbox=bbox, category=category))
    lines = findings(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout
    assert str(tmp_path / "train.json") in lines[0] and words in lines[0], lines[0]


def test_train_stops_before_the_first_epoch_on_a_255_mask(tmp_path):
    from zoo.train.config import compose, to_plain

    args = mask_set(tmp_path)
    _mask(np.full((20, 20), 255)).save(tmp_path / "masks" / "2.png")
    found = survey(to_plain(compose(args)), cheap=True)  # zoo train's own check, without the reader's
    assert [f.where for f in found.findings] == [str(tmp_path / "masks" / "2.png")]
    run = tmp_path / "run"
    proc = zoo_in_process("train", *args, "model=cnn", "head=unet", f"hydra.run.dir={run}")
    assert_one_line_error(proc, str(tmp_path / "masks" / "2.png"), "255")
    assert not run.exists()


def test_check_needs_data_and_refuses_bad_options(tmp_path):
    assert_one_line_error(check("imbalance=0.3"), "needs data=NAME")
    assert_one_line_error(check("data=folder", "imbalance=1.5"), "imbalance=1.5 must be")
    missing = check("data=folder", f"data.root={tmp_path / 'none'}")  # the reader's refusal is a finding
    assert missing.returncode == 2 and findings(missing)[0].startswith("error: data=folder: data.root=")
    assert_one_line_error(zoo_in_process("data", "inspect"), "unknown part of zoo data 'inspect'")
