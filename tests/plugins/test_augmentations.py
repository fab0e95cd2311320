"""Augmentations: each op on an image, and on boxes and masks where it claims support."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import tv_tensors

from zoo.data import BatchTransform, DataInfo, build_augmentations
from zoo.errors import ZooError
from zoo.model import FeatureInfo
from zoo.plugin import registry
from zoo.train.config import compose, to_plain

INFO = DataInfo("classification", ("a", "b"), 1, (32, 32), (0.5,), (0.25,))
INFO3 = DataInfo("classification", ("a", "b"), 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
# Parameters that make each op certain to act, so the test can see it did.
SURE = {
    "hflip": {"p": 1.0},
    "vflip": {"p": 1.0},
    "shift": {"fraction": 0.25},
    "rotation": {"degrees": 45.0},
    "zoom": {"min_scale": 1.5, "max_scale": 2.0},
    "shear": {"degrees": 30.0},
    "resized_crop": {"min_scale": 0.4, "max_scale": 0.6},
    "resolution": {"min_scale": 0.25, "max_scale": 0.3, "p": 1.0},
    "brightness": {"amount": 0.5},
    "contrast": {"amount": 0.5},
    "saturation": {"amount": 0.9},
    "hue": {"amount": 0.3},
    "noise": {"std": 0.1, "p": 1.0},
    "blur": {"kernel_size": 5, "min_sigma": 2.0, "max_sigma": 3.0, "p": 1.0},
    "cutout": {"min_area": 0.2, "max_area": 0.3, "p": 1.0},
    "randaugment": {"num_ops": 3, "magnitude": 15},
    "trivialaugment": {},
    "mixup": {"alpha": 1.0},
    "cutmix": {"alpha": 1.0},
}
# Colour-only ops: no-ops on 1-channel images (torchvision matches PIL there).
NEEDS_COLOUR = {"saturation", "hue"}
NAMES = registry.registries["augmentation"].names()


def _build(name: str, info: DataInfo = INFO, **params):
    plugin = registry.get("augmentation", name)
    return plugin.build({"info": info}, {**SURE.get(name, {}), **params}, where=f"aug.ops.{name}")


def _family(name: str) -> str:
    """geometric, photometric or mixing: the module the op lives in."""
    return registry.get("augmentation", name).module.rsplit(".", 1)[-1]


def _pixel_level(name: str) -> bool:
    plugin = registry.get("augmentation", name)
    return plugin.supports("segmentation") and plugin.supports("detection")


BACKGROUND, BAR = 0.1, 0.8  # channel 0; in 3 channels the bar is orange, so colour ops act on it


def _sample(channels: int = 1):
    colour = torch.tensor([BAR, 0.4, 0.2] if channels == 3 else [BAR])
    image = torch.full((channels, 32, 32), BACKGROUND)
    image[:, 4:12, 4:20] = colour[:, None, None]  # an off-centre bar on a dark background: every op changes it
    mask = tv_tensors.Mask((image[0] > 0.5).long())
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[4.0, 4.0, 20.0, 12.0]]), format="XYXY", canvas_size=(32, 32))
    return tv_tensors.Image(image), mask, boxes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_op_changes_the_image_and_keeps_shape_dtype_and_range(name, channels):
    info = INFO if channels == 1 else INFO3
    t = _build(name, info)
    torch.manual_seed(1)
    image, _, _ = _sample(channels)
    if isinstance(t, BatchTransform):
        images = torch.rand(4, channels, 32, 32)  # a batch of distinct images: any mix shows
        out, targets = t(images, torch.tensor([0, 1, 0, 1]))
        assert targets.shape == (4, 2)
    else:
        out, target = t(image, torch.tensor(1))  # a class target passes through untouched
        assert torch.equal(target, torch.tensor(1))
        images = image
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    if channels == 1 and name in NEEDS_COLOUR:
        assert torch.equal(out, images)  # documented no-op on grey images
    else:
        assert not torch.equal(out, images)


@pytest.mark.parametrize("name", [n for n in NAMES if _family(n) == "geometric"])
def test_op_moves_masks_and_boxes_with_the_image(name):
    assert _pixel_level(name)  # every geometric op claims masks and boxes
    t = _build(name)
    torch.manual_seed(1)
    image, mask, boxes = _sample()
    out_image, out_mask, out_boxes = t(image, mask, boxes)
    assert out_mask.dtype == mask.dtype and set(out_mask.unique().tolist()) <= {0, 1}  # nearest: class values stay
    # the mask is the image's bright pixels, wherever they went
    bright = out_image[0] > (BACKGROUND + BAR) / 2
    assert torch.equal(out_mask.bool(), bright) or (out_mask.bool() ^ bright).float().mean() < 0.02
    ys, xs = torch.nonzero(out_mask, as_tuple=True)
    assert len(xs), "the sample's bar left the image; choose SURE parameters that keep it in view"
    x0, y0, x1, y1 = out_boxes[0].tolist()
    assert x0 - 1.5 <= xs.min() and xs.max() + 1 <= x1 + 1.5 and y0 - 1.5 <= ys.min() and ys.max() + 1 <= y1 + 1.5


@pytest.mark.parametrize("name", [n for n in NAMES if _family(n) == "photometric" and _pixel_level(n)])
def test_photometric_op_leaves_masks_and_boxes_exactly_unchanged(name):
    t = _build(name, INFO3)
    torch.manual_seed(1)
    image, mask, boxes = _sample(3)
    labels = torch.tensor([1])
    out_image, out_mask, target = t(image, mask, {"boxes": boxes, "labels": labels})
    assert not torch.equal(out_image, image)
    assert torch.equal(out_mask, mask) and type(out_mask) is tv_tensors.Mask
    assert torch.equal(target["boxes"], boxes) and target["boxes"].canvas_size == boxes.canvas_size
    assert torch.equal(target["labels"], labels)


@pytest.mark.parametrize("name", [n for n in NAMES if not _pixel_level(n)])
def test_ops_without_pixel_level_support_are_refused_for_those_tasks(name):
    plugin = registry.get("augmentation", name)
    for task in ("segmentation", "detection"):
        if plugin.supports(task):
            continue
        info = DataInfo(task, ("a", "b"), 1, (32, 32), (0.5,), (0.25,))
        with pytest.raises(
            ZooError, match=rf"augmentation '{name}' does not support task '{task}'; it supports: classification"
        ):
            build_augmentations({"ops": {name: {}}}, info)


def test_pipeline_from_config_and_bad_parameters():
    sample, batch = build_augmentations({"ops": {"shift": {"fraction": 0.1}, "rotation": {}}}, INFO, on_device=False)
    assert sample is not None and batch is None
    assert build_augmentations({"ops": {}}, INFO) == (None, None)
    with pytest.raises(ZooError, match=r"aug.ops.hflip.p=1.5 must be in \[0, 1\]"):
        build_augmentations({"ops": {"hflip": {"p": 1.5}}}, INFO)


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("zoom", {"min_scale": 0.0}, "aug.ops.zoom.min_scale=0.0 must be greater than 0"),
        ("zoom", {"min_scale": 1.2, "max_scale": 1.1}, "aug.ops.zoom.max_scale=1.1 must be at least min_scale=1.2"),
        ("shear", {"degrees": 90.0}, "aug.ops.shear.degrees=90.0 must be in [0, 90)"),
        ("resized_crop", {"max_scale": 1.5}, "aug.ops.resized_crop.max_scale=1.5 must be in (0, 1]"),
        ("resized_crop", {"max_ratio": 0.5}, "aug.ops.resized_crop.max_ratio=0.5 must be at least 1"),
        ("resolution", {"p": -0.1}, "aug.ops.resolution.p=-0.1 must be in [0, 1]"),
        ("brightness", {"amount": -0.1}, "aug.ops.brightness.amount=-0.1 must be at least 0"),
        ("hue", {"amount": 0.6}, "aug.ops.hue.amount=0.6 must be in [0, 0.5]"),
        ("noise", {"std": 2.0}, "aug.ops.noise.std=2.0 must be in [0, 1]"),
        ("blur", {"kernel_size": 4}, "aug.ops.blur.kernel_size=4 must be an odd number"),
        ("blur", {"kernel_size": 33}, "aug.ops.blur.kernel_size=33 must be an odd number from 1 to the image size 32"),
        ("blur", {"min_sigma": 0.0}, "aug.ops.blur.min_sigma=0.0 must be greater than 0"),
        ("blur", {"min_sigma": 2.0, "max_sigma": 1.0}, "aug.ops.blur.max_sigma=1.0 must be at least min_sigma=2.0"),
        ("cutout", {"min_area": 0.0}, "aug.ops.cutout.min_area=0.0 must be in (0, 1)"),
        ("cutout", {"value": 2.0}, "aug.ops.cutout.value=2.0 must be in [0, 1]"),
        ("cutout", {"min_area": 0.3, "max_area": 0.2}, "aug.ops.cutout.max_area=0.2 must be at least min_area=0.3"),
        ("randaugment", {"magnitude": 31}, "aug.ops.randaugment.magnitude=31 must be in [0, 30]"),
        ("mixup", {"alpha": 0.0}, "aug.ops.mixup.alpha=0.0 must be greater than 0"),
        ("cutmix", {"p": 2.0}, "aug.ops.cutmix.p=2.0 must be in [0, 1]"),
    ],
)
def test_bad_parameters_are_one_line_errors_naming_the_key(name, params, message):
    with pytest.raises(ZooError) as e:
        build_augmentations({"ops": {name: params}}, INFO)
    assert message in str(e.value) and "\n" not in str(e.value)


# --- batch mixing: Mixup and CutMix --------------------------------------------------------------

N = 6
INFO6 = DataInfo("classification", tuple("abcdef"), 3, (16, 16), (0.5,) * 3, (0.25,) * 3)


def _batch():
    return torch.rand(N, 3, 16, 16), torch.arange(N)  # one image per class, so a target row names its sources


def _partner(row: torch.Tensor, i: int) -> int | None:
    """The other image a mixed row came from (None when it is unmixed)."""
    others = [j for j in torch.nonzero(row > 0).flatten().tolist() if j != i]
    return others[0] if others else None


@pytest.mark.parametrize("seed", range(4))
def test_mixup_makes_convex_combinations_and_soft_targets(seed):
    t = _build("mixup", INFO6)
    torch.manual_seed(seed)
    x, y = _batch()
    out, soft = t(x, y)
    assert soft.shape == (N, N) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(1), torch.ones(N)) and soft.min() >= 0
    lams = set()
    for i in range(N):
        j = _partner(soft[i], i)
        if j is None:
            assert torch.allclose(out[i], x[i])
            continue
        lam = float(soft[i, i])
        lams.add(round(lam, 5))
        assert torch.allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
    assert len(lams) <= 1  # one lambda for the whole batch


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_pastes_one_box_and_targets_match_its_area(seed):
    t = _build("cutmix", INFO6)
    torch.manual_seed(seed)
    x, y = _batch()
    out, soft = t(x, y)
    assert soft.shape == (N, N) and torch.allclose(soft.sum(1), torch.ones(N))
    boxes = set()
    for i in range(N):
        changed = (out[i] != x[i]).any(0)
        j = _partner(soft[i], i)
        if j is None:
            assert not changed.any()
            continue
        ys, xs = torch.nonzero(changed, as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        assert changed[y0:y1, x0:x1].all() and int(changed.sum()) == (y1 - y0) * (x1 - x0)  # a rectangle
        assert torch.equal(out[i][:, y0:y1, x0:x1], x[j][:, y0:y1, x0:x1])  # pasted from the partner
        assert math.isclose(float(soft[i, j]), changed.float().mean().item(), abs_tol=1e-6)  # lambda = pasted area
        boxes.add((y0, y1, x0, x1))
    assert len(boxes) <= 1  # one box for the whole batch


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_with_p0_leaves_the_batch_unchanged(name):
    t = _build(name, INFO6, p=0.0)
    torch.manual_seed(0)
    x, y = _batch()
    for _ in range(5):
        out, targets = t(x, y)
        assert torch.equal(out, x) and torch.equal(targets, y)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_accepts_soft_targets_and_the_classification_head_learns_from_them(name):
    t = _build(name, INFO6)
    torch.manual_seed(0)
    x, y = _batch()
    smooth = torch.nn.functional.one_hot(y, N).float() * 0.9 + 0.1 / N
    out, soft = t(x, smooth)
    assert soft.shape == (N, N) and torch.allclose(soft.sum(1), torch.ones(N))
    _, hard_mixed = t(x, y)
    head = registry.get("head", "classification").build(
        {"feature_info": [FeatureInfo(8, 4, (4, 4))], "info": INFO6}, {}
    )
    features = [torch.randn(N, 8, 4, 4, requires_grad=True)]
    for targets in (soft, hard_mixed, y):
        loss = head.loss(head(features), targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
    with pytest.raises(ValueError, match=r"class indices \(N,\) or soft targets \(N, 6\)"):
        _build(name, INFO6, p=1.0)(x, torch.zeros(N, 4))


@pytest.mark.parametrize("name", ["cutmix", "mixup"])
def test_mixing_is_refused_for_detection_with_a_clear_message(name):
    info = DataInfo("detection", ("a", "b"), 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ZooError) as e:
        build_augmentations({"ops": {"shift": {}, name: {}}}, info)
    assert str(e.value) == f"augmentation '{name}' does not support task 'detection'; it supports: classification"


def test_mixup_and_cutmix_together_make_one_batch_transform():
    sample, batch = build_augmentations({"ops": {"shift": {}, "mixup": {}, "cutmix": {}}}, INFO6)
    assert sample is None and isinstance(batch, BatchTransform)  # shift runs on the batch, then one of the two
    torch.manual_seed(0)
    x, y = _batch()
    out, soft = batch(x, y)
    assert out.shape == x.shape and torch.allclose(soft.sum(1), torch.ones(N))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["heavy", "mix"])
def test_presets_compose_and_train_one_epoch_on_digits(preset, tmp_path):
    from zoo.train.engine import train

    cfg = to_plain(compose([f"aug={preset}", "trainer.max_epochs=1", "model.width=8", "trainer.progress=false"]))
    assert "hflip" not in cfg["aug"]["ops"] and "vflip" not in cfg["aug"]["ops"]  # digits are handed
    results = train(cfg, tmp_path)
    assert (tmp_path / "metrics.json").exists()
    assert results["epochs"] == 1 and math.isfinite(results["history"][0]["train_loss"])


INFO5 = DataInfo("classification", tuple("abcde"), 5, (32, 32), (0.5,) * 5, (0.25,) * 5)
NEEDS_RGB = {"saturation", "hue", "randaugment", "trivialaugment"}  # torchvision's colour kernels: 1 or 3 channels


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_op_takes_five_bands_or_refuses_them_in_one_line(name):
    """Multispectral data (5 bands): an op works band-agnostically, or says in one line that it needs RGB;
    torchvision's own TypeError (a traceback) never reaches the user."""
    if name in NEEDS_RGB:
        with pytest.raises(ZooError, match=rf"aug.ops.{name} works on 1- or 3-channel images, but the data has 5"):
            _build(name, INFO5)
        return
    op = _build(name, INFO5)
    torch.manual_seed(0)
    x = torch.rand(5, 32, 32)
    if isinstance(op, BatchTransform):
        out = op(x[None].repeat(2, 1, 1, 1), torch.tensor([0, 1]))[0]
        assert out.shape == (2, 5, 32, 32)
    else:
        out = op(x)
        assert out.shape == (5, 32, 32)
        assert not torch.equal(out, x)  # it acted
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_band_contrast_blends_toward_the_mean_of_all_bands():
    from zoo_plugins.augmentations.photometric import BandJitter

    x = torch.rand(5, 8, 8)
    out = BandJitter("contrast", 0.5).transform(x, {"factor": 0.0})
    assert torch.allclose(out, x.mean().expand_as(x))
    mask = tv_tensors.Mask(torch.ones(8, 8, dtype=torch.int64))
    assert BandJitter("brightness", 0.5).transform(mask, {"factor": 0.0}) is mask
