"""The YOLO and Pascal VOC readers on small data sets written here in their layouts: boxes in pixels scaled with
the images, class order, splits, `difficult`, polygons, VOC segmentation's void label, one-line errors naming the
file; and each trains its task for an epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import small_config
from zoo.errors import ZooError
from zoo.plugin import registry

W, H = 40, 30  # every generated image is 40 wide, 30 high


def build(name: str, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def yolo_set(root, n=(6, 2, 2), names="{0: cat, 1: dog}", lines=None):
    """images/{train,val,test}/iK.png with labels/SPLIT/iK.txt: a cat box at (4, 3)-(24, 18) px, a dog as a polygon;
    the last training image has no label file."""
    for split, count in zip(("train", "val", "test"), n):
        for k in range(count):
            _image(root / "images" / split / f"i{k}.png", k)
            if split == "train" and k == count - 1:
                continue
            text = lines or "0 0.35 0.35 0.5 0.5\n1 0.5 0.5 0.75 0.5 0.75 0.9 0.5 0.9\n"
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"i{k}.txt").write_text(text)
    (root / "data.yaml").write_text(
        f"path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames: {names}\n"
    )
    return root


def test_yolo_reads_boxes_in_pixels_scaled_with_the_images(tmp_path):
    b = build("yolo", root=str(yolo_set(tmp_path)), size=20)
    assert b.info.task == "detection" and b.info.classes == ("cat", "dog")
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 2)
    file, hw, boxes, labels = b.train.items[0]
    assert hw == (H, W) and labels.tolist() == [0, 1]
    np.testing.assert_allclose(boxes, [[4, 3, 24, 18], [20, 15, 30, 27]], atol=1e-4)  # the polygon's extent
    image, target = b.train[0]
    assert image.shape == (3, 20, 20)
    np.testing.assert_allclose(target["boxes"][0], [2, 2, 12, 12], atol=1e-4)  # x * 20/40, y * 20/30
    assert len(b.train.items[-1][2]) == 0  # no label file: no objects


def test_yolo_names_as_a_list_and_splits_carved_from_train(tmp_path):
    root = yolo_set(tmp_path, n=(10, 0, 0), names="[cat, dog]")
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    b = build("yolo", root=str(root), val_fraction=0.2, test_fraction=0.2)
    assert b.info.classes == ("cat", "dog") and (len(b.train), len(b.val), len(b.test)) == (6, 2, 2)
    again = build("yolo", root=str(root), val_fraction=0.2, test_fraction=0.2)
    assert [i[0] for i in again.val.items] == [i[0] for i in b.val.items]


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("2 0.5 0.5 0.2 0.2", "class 2 is not a class id 0 to 1"),
        ("0 0.9 0.5 0.4 0.2", "reaches outside the image"),
        ("0 0.5 0.5 0 0.2", "is empty"),
        ("0 0.5 0.5", "3 numbers"),
        ("cat 0.5 0.5 0.2 0.2", "is not numbers"),
    ],
)
def test_yolo_bad_label_lines_name_the_file_and_line(tmp_path, line, fragment):
    root = yolo_set(tmp_path, lines=f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(ZooError, match=rf"labels/train/i0.txt:2: .*{fragment}"):
        build("yolo", root=str(root))


def test_yolo_missing_yaml_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ZooError, match="data.yaml does not exist"):
        build("yolo", root=str(tmp_path))


def _xml(name, objects, w=W, h=H):
    objs = "".join(
        f"<object><name>{c}</name><difficult>{int(d)}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for c, b, d in objects
    )
    return (
        f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height></size>{objs}</annotation>"
    )


def voc_set(root, n=10, splits=True):
    """JPEGImages/00K.jpg, Annotations/00K.xml (a cat, and a difficult dog), ImageSets/Main/{train,val,test}.txt."""
    (root / "Annotations").mkdir(parents=True)
    for k in range(n):
        _image(root / "JPEGImages" / f"{k:03d}.jpg", k)
        objects = [("cat", (5, 4, 24, 18), False), ("dog", (10, 10, 30, 25), True)]
        (root / "Annotations" / f"{k:03d}.xml").write_text(_xml(f"{k:03d}.jpg", objects))
    if splits:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        for split, ids in (("train", range(0, 6)), ("val", range(6, 8)), ("test", range(8, n))):
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{k:03d}\n" for k in ids))
    return root


def test_voc_reads_one_based_boxes_and_leaves_difficult_out(tmp_path):
    root = voc_set(tmp_path)
    b = build("voc", root=str(root))
    assert b.info.classes[:3] == ("aeroplane", "bicycle", "bird") and len(b.info.classes) == 20  # VOC's own 20
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 2)
    _, hw, boxes, labels = b.train.items[0]
    assert hw == (H, W) and labels.tolist() == [b.info.classes.index("cat")]
    np.testing.assert_allclose(boxes, [[4, 3, 24, 18]])  # 1-based, max included -> pixel edges
    kept = build("voc", root=str(root), use_difficult=True)
    assert kept.train.items[0][3].tolist() == [7, 11]  # cat, dog
    (root / "labels.txt").write_text("dog\ncat\n")
    assert build("voc", root=str(root)).info.classes == ("dog", "cat")


def test_voc_errors_name_the_file(tmp_path):
    root = voc_set(tmp_path)
    (root / "Annotations" / "003.xml").write_text(_xml("003.jpg", [("cat", (5, 4, 60, 18), False)]))
    with pytest.raises(ZooError, match=r"003.xml: the cat box .* is outside its 40x30 image"):
        build("voc", root=str(root))
    (root / "Annotations" / "003.xml").write_text("<annotation><object>")
    with pytest.raises(ZooError, match=r"cannot read .*003.xml"):
        build("voc", root=str(root))
    (root / "Annotations" / "003.xml").write_text(_xml("003.jpg", [("zebra", (5, 4, 20, 18), False)]))
    with pytest.raises(ZooError, match=r"003.xml: class 'zebra' is not one of the 2 classes"):
        build("voc", root=str(root), names=["cat", "dog"])


def voc_segmentation_set(root, n=8):
    """JPEGImages + SegmentationClass palette PNGs: a cat (class 8) square with a void (255) border."""
    (root / "SegmentationClass").mkdir(parents=True)
    palette = [0] * 768
    palette[8 * 3 : 8 * 3 + 3] = [64, 0, 0]
    palette[255 * 3 : 256 * 3] = [224, 224, 192]
    for k in range(n):
        _image(root / "JPEGImages" / f"{k:03d}.jpg", k)
        m = np.zeros((H, W), np.uint8)
        m[5:20, 5:25] = 255
        m[6:19, 6:24] = 8
        im = Image.fromarray(m, mode="P")
        im.putpalette(palette)
        im.save(root / "SegmentationClass" / f"{k:03d}.png")
    return root


def test_voc_segmentation_reads_palette_masks_with_void_ignored(tmp_path):
    root = voc_segmentation_set(tmp_path)
    b = build("voc", root=str(root), task="segmentation", size=H, val_fraction=0.25, test_fraction=0.25)
    assert b.info.task == "segmentation" and b.info.ignore_index == 255 and b.info.background == 0
    assert b.info.classes[0] == "background" and b.info.classes[8] == "cat" and len(b.info.classes) == 21
    _, mask = b.train[0]
    assert set(mask.unique().tolist()) == {0, 8, 255}
    with pytest.raises(ZooError, match=r"SegmentationClass/000.png has pixel value 255, .*set data.ignore_index"):
        build("voc", root=str(root), task="segmentation", ignore_index=None)


# ---- each reader trains its task -------------------------------------------------------------

TRAIN = {"model.width": 8, "model.depth": 2, "aug": "none", "trainer.max_epochs": 1, "trainer.batch_size": 4}
TRAIN |= {"trainer.progress": "false"}


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["yolo", "voc", "voc_segmentation"])
def test_each_layout_trains_its_task(tmp_path, layout):
    from zoo.train.engine import train

    data = tmp_path / "data"
    if layout == "yolo":
        over = {"data": "yolo", "data.root": str(yolo_set(data, n=(8, 4, 4))), "head": "detection"}
    elif layout == "voc":
        over = {"data": "voc", "data.root": str(voc_set(data, n=16)), "head": "detection"}
    else:
        root = voc_segmentation_set(data, n=12)
        over = {"data": "voc", "data.root": str(root), "data.task": "segmentation", "head": "unet"}
    torch.manual_seed(0)
    results = train(small_config(**over, **{"data.size": 32}, **TRAIN), tmp_path / "run")
    assert len(results["history"]) == 1 and np.isfinite(results["history"][0]["train_loss"])
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
