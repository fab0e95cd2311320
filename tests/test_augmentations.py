"""Augmentations: each op on an image, and on boxes and masks where it claims support."""
from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from zoo import registry
from zoo.data import DataInfo, build_augmentations
from zoo.errors import ZooError

INFO = DataInfo("classification", ("a", "b"), 1, (32, 32), (0.5,), (0.25,))
# Parameters that make each op certain to act, so the test can see it did.
SURE = {"hflip": {"p": 1.0}, "vflip": {"p": 1.0}, "shift": {"fraction": 0.25}, "rotation": {"degrees": 45.0}}
NAMES = registry.registries["augmentation"].names()


def _sample():
    image = torch.zeros(1, 32, 32)
    image[:, 4:12, 4:20] = 1.0  # an off-centre bar: every op moves it
    mask = tv_tensors.Mask((image[0] > 0).long())
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[4.0, 4.0, 20.0, 12.0]]), format="XYXY", canvas_size=(32, 32))
    return tv_tensors.Image(image), mask, boxes


@pytest.mark.parametrize("name", NAMES)
def test_op_changes_the_image_and_keeps_shape(name):
    plugin = registry.get("augmentation", name)
    t = plugin.build({"info": INFO}, SURE.get(name, {}), where=f"aug.ops.{name}")
    torch.manual_seed(1)
    image, _, _ = _sample()
    out = t(image)
    assert out.shape == image.shape and not torch.equal(out, image)


@pytest.mark.parametrize("name", NAMES)
def test_op_moves_masks_and_boxes_with_the_image(name):
    plugin = registry.get("augmentation", name)
    if not (plugin.supports("segmentation") and plugin.supports("detection")):
        pytest.skip(f"{name} does not claim segmentation and detection support")
    t = plugin.build({"info": INFO}, SURE.get(name, {}), where=f"aug.ops.{name}")
    torch.manual_seed(1)
    image, mask, boxes = _sample()
    out_image, out_mask, out_boxes = t(image, mask, boxes)
    # the mask is the image's bright pixels, wherever they went
    assert torch.equal(out_mask.bool(), out_image[0] > 0.5) or (out_mask.bool() ^ (out_image[0] > 0.5)).float().mean() < 0.02
    ys, xs = torch.nonzero(out_mask, as_tuple=True)
    x0, y0, x1, y1 = out_boxes[0].tolist()
    assert x0 - 1.5 <= xs.min() and xs.max() + 1 <= x1 + 1.5 and y0 - 1.5 <= ys.min() and ys.max() + 1 <= y1 + 1.5


def test_pipeline_from_config_and_bad_parameters():
    sample, batch = build_augmentations({"ops": {"shift": {"fraction": 0.1}, "rotation": {}}}, INFO)
    assert sample is not None and batch is None
    assert build_augmentations({"ops": {}}, INFO) == (None, None)
    with pytest.raises(ZooError, match=r"aug.ops.hflip.p=1.5 must be a probability"):
        build_augmentations({"ops": {"hflip": {"p": 1.5}}}, INFO)
