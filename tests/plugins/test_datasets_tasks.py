"""Datasets for regression, segmentation and detection: generated shapes, rotated digits, and the COCO json,
mask-folder and CSV loaders, with their target formats, determinism and errors."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from zoo.data import Transformed, collate
from zoo.errors import ZooError
from zoo.plugin import registry

SMALL = {"num_images": 60, "size": 48, "max_size": 20}


def build(name: str, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


def _splits(bundle):
    return [bundle.train, bundle.val, bundle.test]


def _all_targets(bundle):
    return [ds[i][1] for ds in _splits(bundle) for i in range(len(ds))]


def _all_images(bundle):
    return torch.stack([ds[i][0] for ds in _splits(bundle) for i in range(len(ds))])


# ------------------------------------------------------------------------------------------------
# shapes


@pytest.fixture(scope="module")
def shapes3():
    """The same scenes as segmentation, detection and regression data (all five numeric targets)."""
    targets = ["count", "count_circle", "count_square", "count_triangle", "mean_size"]
    return {
        task: build("shapes", task=task, regression_targets=targets, **SMALL)
        for task in ("segmentation", "detection", "regression")
    }


def test_shapes_is_deterministic_by_generator_seed(shapes3):
    for task, bundle in shapes3.items():
        again = build(
            "shapes",
            task=task,
            regression_targets=["count", "count_circle", "count_square", "count_triangle", "mean_size"],
            **SMALL,
        )
        assert torch.equal(_all_images(bundle), _all_images(again))
        for a, b in zip(_all_targets(bundle), _all_targets(again)):
            if isinstance(a, dict):
                assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
            else:
                assert torch.equal(a, b)
        assert bundle.info == again.info
    other = build("shapes", task="segmentation", generator_seed=1, **SMALL)
    assert not torch.equal(_all_images(other), _all_images(shapes3["segmentation"]))


def test_shapes_targets_follow_the_contract(shapes3):
    seg, det, reg = shapes3["segmentation"], shapes3["detection"], shapes3["regression"]
    assert seg.info.task == "segmentation" and seg.info.classes == ("background", "circle", "square", "triangle")
    assert det.info.task == "detection" and det.info.classes == ("circle", "square", "triangle")
    assert reg.info.task == "regression"
    assert reg.info.classes == ("count", "count_circle", "count_square", "count_triangle", "mean_size")
    assert len(seg.train) + len(seg.val) + len(seg.test) == 60 and min(len(seg.val), len(seg.test)) >= 1
    for bundle in shapes3.values():
        assert bundle.info.size == (48, 48) and bundle.info.channels == 3 and len(bundle.info.mean) == 3
        images = _all_images(bundle)
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 48, 48)
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    for mask in _all_targets(seg):
        assert isinstance(mask, tv_tensors.Mask) and mask.shape == (48, 48) and mask.dtype == torch.int64
        assert int(mask.min()) >= 0 and int(mask.max()) <= 3
    for t in _all_targets(det):
        boxes, labels = t["boxes"], t["labels"]
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
        assert boxes.dtype == torch.float32 and tuple(boxes.canvas_size) == (48, 48) and boxes.shape == (len(labels), 4)
        assert labels.dtype == torch.int64 and labels.ndim == 1 and (labels >= 0).all() and (labels < 3).all()
        if len(boxes):
            assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
            assert float(boxes.min()) >= 0 and float(boxes.max()) <= 48
    for v in _all_targets(reg):
        assert v.dtype == torch.float32 and v.shape == (5,)


def test_shapes_masks_boxes_and_counts_agree(shapes3):
    seg, det, reg = (_all_targets(shapes3[t]) for t in ("segmentation", "detection", "regression"))
    objects = 0
    for mask, t, values in zip(seg, det, reg):
        boxes, labels = t["boxes"].long(), t["labels"]
        assert int(values[0]) == len(labels)  # the count is the number of boxes
        assert torch.equal(values[1:4].long(), torch.bincount(labels, minlength=3))
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            inside = mask[y0:y1, x0:x1] == label + 1
            # the box holds pixels of its class, and is tight: each of its four edges touches one
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        present = set(mask.unique().tolist()) - {0}
        assert {label + 1 for label in labels.tolist()} <= present
        if len(labels):
            assert 8 <= float(values[4]) <= 20  # mean size within [min_size, max_size]
        objects += len(labels)
    assert objects > 60  # several objects per image on average


def test_shapes_are_rasterised_to_their_true_areas_and_hidden_objects_are_not_counted():
    from zoo_plugins.datasets.shapes import generate_shapes, rasterise

    s = 20.0
    for kind, area in ((0, math.pi * s * s / 4), (1, s * s), (2, math.sqrt(3) / 4 * s * s)):
        for theta in (0.0, 0.4, 1.0):
            _, _, inside = rasterise(kind, 32.3, 31.7, s, theta, 64, 64)
            assert abs(int(inside.sum()) - area) < 0.06 * area, (kind, theta)
    crowded = generate_shapes(40, size=32, min_objects=8, max_objects=8, min_size=14, max_size=16)
    counts = crowded.values[:, 0]
    assert counts.max() <= 8 and counts.min() < 8  # some of the eight objects are mostly hidden: no box, not counted
    assert all(len(b) == c for b, c in zip(crowded.boxes, counts))


def test_shapes_grayscale_empty_scenes_and_collate():
    b = build("shapes", task="detection", channels=1, num_images=12, min_objects=0, max_objects=0)
    image, t = b.train[0]
    assert image.shape == (1, 64, 64) and b.info.channels == 1
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    images, targets = collate([b.train[i] for i in range(3)])
    assert images.shape == (3, 1, 64, 64) and len(targets) == 3


def test_shapes_regression_default_targets():
    b = build("shapes", task="regression", num_images=10)
    assert b.info.classes == ("count_circle", "count_square", "count_triangle", "mean_size")
    assert b.train[0][1].shape == (4,)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"min_size": 30, "max_size": 20}, "data.min_size=30 and data.max_size=20"),
        ({"max_size": 100}, "max_size <= data.size (64)"),
        ({"min_objects": 5, "max_objects": 2}, "data.min_objects=5 and data.max_objects=2"),
        ({"num_images": 2}, "data.num_images=2 must be in [3, 1000000]"),
        ({"val_fraction": 0.0}, "data.val_fraction=0.0 must be in (0, 1)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction + data.test_fraction = 1.0 leaves nothing"),
        ({"regression_targets": []}, "data.regression_targets=[] must have at least 1 item"),
        ({"regression_targets": ["count", "count"]}, "data.regression_targets=['count', 'count'] names a target twice"),
        ({"regression_targets": ["count", "area"]}, "data.regression_targets[1]='area' is not one of"),
        ({"task": "detecton"}, "did you mean 'detection'"),
    ],
)
def test_shapes_errors(params, message):
    with pytest.raises(ZooError, match=re.escape(message)) as e:
        build("shapes", **params)
    assert "\n" not in str(e.value)


def test_flip_through_transformed_moves_masks_and_boxes(shapes3):
    flip = v2.RandomHorizontalFlip(p=1.0)
    seg, det = shapes3["segmentation"], shapes3["detection"]
    image, mask = seg.train[0]
    out_image, out_mask = Transformed(seg.train, flip)[0]
    assert type(out_image) is torch.Tensor and isinstance(out_mask, tv_tensors.Mask)
    assert torch.equal(out_image, image.flip(-1)) and torch.equal(out_mask, mask.flip(-1))
    i = next(i for i in range(len(det.train)) if len(det.train[i][1]["labels"]))
    _, t = det.train[i]
    out_image, out_t = Transformed(det.train, flip)[i]
    w = det.info.size[1]
    expected = torch.stack([w - t["boxes"][:, 2], t["boxes"][:, 1], w - t["boxes"][:, 0], t["boxes"][:, 3]], dim=1)
    assert isinstance(out_t["boxes"], tv_tensors.BoundingBoxes) and torch.equal(out_t["labels"], t["labels"])
    assert torch.allclose(out_t["boxes"].as_subclass(torch.Tensor), expected)
    # the flipped box still frames the flipped object in the flipped mask
    out_mask = Transformed(seg.train, flip)[i][1]
    for (x0, y0, x1, y1), label in zip(out_t["boxes"].long().tolist(), out_t["labels"].tolist()):
        inside = out_mask[y0:y1, x0:x1] == label + 1
        assert inside[:, 0].any() and inside[:, -1].any()
    for ds in (Transformed(seg.train, flip), Transformed(det.train, flip)):
        images, targets = collate([ds[j] for j in range(4)])
        assert images.shape == (4, 3, 48, 48)
        if isinstance(targets, list):
            assert all(isinstance(x["boxes"], tv_tensors.BoundingBoxes) for x in targets)
        else:
            assert targets.shape == (4, 48, 48) and targets.dtype == torch.int64


# ------------------------------------------------------------------------------------------------
# digits_rotation


@pytest.fixture(scope="module")
def rotated():
    return build("digits_rotation")


def test_digits_rotation_targets_and_info(rotated):
    assert rotated.info.task == "regression" and rotated.info.classes == ("angle",)
    assert rotated.info.size == (32, 32) and rotated.info.channels == 1
    assert (len(rotated.train), len(rotated.val), len(rotated.test)) == (1167, 270, 360)
    image, angle = rotated.test[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert angle.shape == (1,) and angle.dtype == torch.float32
    angles = torch.cat([rotated.train.targets, rotated.val.targets, rotated.test.targets])
    assert float(angles.abs().max()) <= 45.0 and float(angles.std()) > 15.0  # spread over the range
    small = build("digits_rotation", max_angle=10.0, angle_seed=1, size=24)
    assert float(small.train.targets.abs().max()) <= 10.0 and small.train[0][0].shape == (1, 24, 24)


def test_digits_rotation_is_a_real_rotation_by_the_target_angle(rotated):
    from zoo_plugins._shared import split_indices
    from zoo_plugins.datasets.digits import load_digits_images, rotation_fit

    inner = rotation_fit(32, 45.0)
    x, y = load_digits_images(inner, 1)
    pad = 32 - inner
    upright = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    _, _, test = split_indices(len(y), 0.15, 0.2, 0, labels=y.tolist())
    assert float(upright[:, :, : pad // 2].abs().max()) == 0.0  # the digit sits inside a black border
    checked = 0
    for k, i in enumerate(test[:40]):
        image, angle = rotated.test[k]
        if abs(float(angle)) < 10:
            continue
        assert (image - upright[i]).abs().max() > 0.2  # rotated: not the upright digit
        again = TF.rotate(upright[i], float(angle), interpolation=InterpolationMode.BILINEAR)
        assert torch.allclose(image, again, atol=1e-6)  # and exactly the upright digit turned by the target angle
        checked += 1
    assert checked > 10


def test_digits_rotation_errors():
    with pytest.raises(ZooError, match=r"data.max_angle=0.0 must be in \(0, 180\]"):
        build("digits_rotation", max_angle=0.0)
    with pytest.raises(ZooError, match="data.size=10 is too small .* use data.size=12"):
        build("digits_rotation", size=10)


# ------------------------------------------------------------------------------------------------
# coco


def _png(path, w, h, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), colour).save(path)


CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 2, "name": "cat"}]


def _coco(tmp_path, n=6, **changes):
    """A folder of n 40x30 images and a COCO json: one cat and one dog per image (a 2-image val json too)."""
    images, annotations = [], []
    for i in range(n):
        _png(tmp_path / "img" / f"{i}.png", 40, 30)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 40, "height": 30})
        annotations.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 2, "bbox": [4, 3, 8, 6], "iscrowd": 0})
        annotations.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 7, "bbox": [20, 10, 20, 20]})
    d = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    for key, value in changes.items():
        d[key] = value(d[key])
    path = tmp_path / "train.json"
    path.write_text(json.dumps(d))
    return path


def test_coco_loads_scales_boxes_and_maps_categories(tmp_path):
    ann = _coco(tmp_path)
    b = build("coco", images=str(tmp_path / "img"), annotations=str(ann), size=32, val_fraction=0.2, test_fraction=0.2)
    assert b.info.task == "detection" and b.info.classes == ("cat", "dog")  # category names in id order
    assert (len(b.train), len(b.val), len(b.test)) == (4, 1, 1)
    image, t = b.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and float(image.max()) <= 1.0
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(t["boxes"].canvas_size) == (32, 32) and t["boxes"].dtype == torch.float32
    sx, sy = 32 / 40, 32 / 30
    expected = torch.tensor([[4 * sx, 3 * sy, 12 * sx, 9 * sy], [20 * sx, 10 * sy, 40 * sx, 30 * sy]])
    assert torch.allclose(t["boxes"].as_subclass(torch.Tensor), expected)
    assert t["labels"].tolist() == [0, 1] and t["labels"].dtype == torch.int64
    images, targets = collate([b.train[i] for i in range(2)])
    assert images.shape == (2, 3, 32, 32) and len(targets) == 2


def test_coco_given_val_and_test_files(tmp_path):
    ann = _coco(tmp_path)
    val = _coco(tmp_path / "v", n=2)
    test = _coco(tmp_path / "t", n=3)
    b = build(
        "coco",
        images=str(tmp_path / "img"),
        annotations=str(ann),
        val_annotations=str(val),
        val_images=str(tmp_path / "v" / "img"),
        test_annotations=str(test),
        test_images=str(tmp_path / "t" / "img"),
    )
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 3)
    assert b.val[0][0].shape == (3, 128, 128)


def _set_bbox(box):
    def change(annotations):
        annotations[3]["bbox"] = box
        return annotations

    return change


@pytest.mark.parametrize(
    "case,fragment",
    [
        ("missing_json", "file does not exist"),
        ("bad_json", "is not valid JSON: Expecting"),
        ("unknown_image_id", "annotation id 4 has image_id 99, which is not in the file's 'images'"),
        ("missing_image", "image '3.png' (id 4) is missing"),
        (
            "bbox_outside",
            "annotation id 4 has bbox [30, 10, 20, 20] (x, y, width, height) outside its image '1.png', which is 40x30",
        ),
        ("bbox_empty", "annotation id 4 (image '1.png') has bbox [20, 10, 0, 20] with non-positive width or height"),
        ("unknown_category", "annotation id 4 has unknown category_id 5; the categories are 2, 7"),
    ],
)
def test_coco_errors_name_the_file(tmp_path, case, fragment):
    changes = {}
    if case == "unknown_image_id":
        changes["annotations"] = lambda a: [*a[:3], {**a[3], "image_id": 99}, *a[4:]]
    elif case == "bbox_outside":
        changes["annotations"] = _set_bbox([30, 10, 20, 20])
    elif case == "bbox_empty":
        changes["annotations"] = _set_bbox([20, 10, 0, 20])
    elif case == "unknown_category":
        changes["annotations"] = lambda a: [*a[:3], {**a[3], "category_id": 5}, *a[4:]]
    ann = _coco(tmp_path, **changes)
    if case == "missing_json":
        ann = tmp_path / "nope.json"
    elif case == "bad_json":
        ann.write_text('{"images": [}')
    elif case == "missing_image":
        (tmp_path / "img" / "3.png").unlink()
    with pytest.raises(ZooError) as e:
        build("coco", images=str(tmp_path / "img"), annotations=str(ann))
    message = str(e.value)
    assert "\n" not in message and fragment in message, message
    assert str(ann) in message  # names the annotation file
    if case == "missing_image":
        assert str(tmp_path / "img" / "3.png") in message


def test_coco_bbox_within_one_pixel_is_clamped_and_image_size_is_checked(tmp_path):
    ann = _coco(tmp_path, annotations=_set_bbox([20.5, 10, 20, 20.4]))
    b = build("coco", images=str(tmp_path / "img"), annotations=str(ann), size=40, val_fraction=0.2, test_fraction=0.2)
    boxes = torch.cat([ds[i][1]["boxes"] for ds in _splits(b) for i in range(len(ds))])
    assert float(boxes[:, 2].max()) <= 40 and float(boxes[:, 3].max()) <= 40
    _png(tmp_path / "img" / "0.png", 50, 30)  # no longer the size the json says
    with pytest.raises(ZooError, match=r"0.png is 50x30 but .*train.json says 40x30"):  # when it is first read
        b = build("coco", images=str(tmp_path / "img"), annotations=str(ann), val_fraction=0.2, test_fraction=0.2)
        [ds[i] for ds in _splits(b) for i in range(len(ds))]


# ------------------------------------------------------------------------------------------------
# masks


def _mask_pairs(tmp_path, n=6, size=(30, 20)):
    """n images (w x h = size) with masks: left third class 1, right third class 2."""
    w, h = size
    for i in range(n):
        _png(tmp_path / "images" / f"im{i}{'.jpg' if i % 2 else '.png'}", w, h, colour=(10 * i, 100, 50))
        m = np.zeros((h, w), dtype=np.uint8)
        m[:, : w // 3] = 1
        m[:, 2 * w // 3 :] = 2
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(m).save(tmp_path / "masks" / f"im{i}.png")


def test_masks_load_pairs(tmp_path):
    _mask_pairs(tmp_path)
    b = build(
        "masks",
        images=str(tmp_path / "images"),
        masks=str(tmp_path / "masks"),
        classes=["background", "road", "car"],
        size=24,
        channels=1,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    assert b.info.task == "segmentation" and b.info.classes == ("background", "road", "car")
    assert (len(b.train), len(b.val), len(b.test)) == (4, 1, 1)
    image, mask = b.train[0]
    assert image.shape == (1, 24, 24) and image.dtype == torch.float32
    assert isinstance(mask, tv_tensors.Mask) and mask.shape == (24, 24) and mask.dtype == torch.int64
    assert mask[:, :6].eq(1).all() and mask[:, 18:].eq(2).all() and mask[:, 10:14].eq(0).all()
    out_image, out_mask = Transformed(b.train, v2.RandomHorizontalFlip(p=1.0))[0]
    assert torch.equal(out_mask, mask.flip(-1))
    images, masks = collate([b.train[i] for i in range(3)])
    assert masks.shape == (3, 24, 24)


def test_masks_errors_name_the_file(tmp_path):
    def run(classes=("background", "a", "b")):
        return build("masks", images=str(tmp_path / "images"), masks=str(tmp_path / "masks"), classes=list(classes))

    _mask_pairs(tmp_path)
    (tmp_path / "masks" / "im3.png").unlink()
    with pytest.raises(ZooError, match=r"image .*im3.jpg has no mask: expected .*masks/im3.png"):
        run()
    Image.fromarray(np.zeros((21, 30), dtype=np.uint8)).save(tmp_path / "masks" / "im3.png")
    with pytest.raises(ZooError, match=r"mask .*masks/im3.png is 30x21 but its image .*im3.jpg is 30x20"):
        run()
    m = np.zeros((20, 30), dtype=np.uint8)
    m[5, 5] = 3
    Image.fromarray(m).save(tmp_path / "masks" / "im3.png")
    with pytest.raises(ZooError, match=r"mask .*masks/im3.png has pixel value 3, but data.classes names 3 classes"):
        run()
    Image.new("RGB", (30, 20)).save(tmp_path / "masks" / "im3.png")
    with pytest.raises(ZooError, match=r"mask .*masks/im3.png has image mode RGB; expected a single-channel PNG"):
        run()
    with pytest.raises(ZooError, match=r"must start with 'background'"):
        run(classes=["road", "car"])


# ------------------------------------------------------------------------------------------------
# csv


def _table(tmp_path, rows=None):
    rows = rows or [(f"pics/{i}.png", str(i * 1.5), str(i)) for i in range(8)]
    for name, *_ in rows:
        if not (tmp_path / name).exists() and "missing" not in name:
            _png(tmp_path / name, 16, 12, colour=(20, 20, 200))
    text = "image, angle, count\n" + "\n".join(",".join(r) for r in rows) + "\n"
    (tmp_path / "labels.csv").write_text(text)
    return tmp_path / "labels.csv"


def test_csv_loads_images_and_targets(tmp_path):
    path = _table(tmp_path)
    b = build("csv", file=str(path), target_columns=["angle", "count"], size=20, val_fraction=0.25, test_fraction=0.25)
    assert b.info.task == "regression" and b.info.classes == ("angle", "count")
    assert (len(b.train), len(b.val), len(b.test)) == (4, 2, 2)
    image, target = b.train[0]
    assert image.shape == (3, 20, 20) and target.dtype == torch.float32 and target.shape == (2,)
    targets = sorted(tuple(t.tolist()) for t in _all_targets(b))
    assert targets == [(i * 1.5, float(i)) for i in range(8)]
    again = build(
        "csv", file=str(path), target_columns=["angle", "count"], size=20, val_fraction=0.25, test_fraction=0.25
    )
    assert torch.equal(torch.stack(_all_targets(again)), torch.stack(_all_targets(b)))  # a seeded split
    other = build(
        "csv",
        file=str(path),
        target_columns=["angle", "count"],
        size=20,
        val_fraction=0.25,
        test_fraction=0.25,
        split_seed=1,
    )
    assert not torch.equal(torch.stack(_all_targets(other)), torch.stack(_all_targets(b)))
    # image paths relative to another root
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "t.csv").write_text(path.read_text())
    b = build("csv", file=str(tmp_path / "elsewhere" / "t.csv"), root=str(tmp_path), target_columns=["count"])
    assert b.info.classes == ("count",) and b.train[0][1].shape == (1,)


def test_csv_errors_name_the_problem(tmp_path):
    path = _table(tmp_path)
    with pytest.raises(
        ZooError, match=r"labels.csv has no column 'angel'; did you mean 'angle'\? \(columns: image, angle, count\)"
    ):
        build("csv", file=str(path), target_columns=["angel"])
    with pytest.raises(ZooError, match=r"has no column 'img'.*columns: image, angle, count"):
        build("csv", file=str(path), image_column="img", target_columns=["angle"])
    with pytest.raises(ZooError, match=r"data.file='/no/such.csv': file does not exist"):
        build("csv", file="/no/such.csv", target_columns=["angle"])
    rows = [(f"pics/{i}.png", str(i), "1") for i in range(4)] + [("pics/0.png", "abc", "1")]
    path = _table(tmp_path, rows)
    with pytest.raises(
        ZooError, match=r"labels.csv: row 5 \(line 6\), column 'angle' has 'abc', which is not a number"
    ):
        build("csv", file=str(path), target_columns=["angle"])
    rows = [(f"pics/{i}.png", str(i), "1") for i in range(4)] + [("pics/missing.png", "1", "1")]
    path = _table(tmp_path, rows)
    with pytest.raises(ZooError, match=r"labels.csv: row 5 \(line 6\): image file .*pics/missing.png does not exist"):
        build("csv", file=str(path), target_columns=["angle"])


def test_new_datasets_are_registered_with_summaries():
    for name in ("shapes", "digits_rotation", "coco", "masks", "csv"):
        plugin = registry.get("dataset", name)
        assert plugin.summary and plugin.module.startswith("zoo_plugins.datasets.")
    params = {p.name: p for p in registry.get("dataset", "shapes").params}
    assert (
        params["task"].choices == ("segmentation", "detection", "regression") and params["generator_seed"].default == 0
    )
    assert math.isclose(registry.get("dataset", "digits_rotation").defaults()["max_angle"], 45.0)
