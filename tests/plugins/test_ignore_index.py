"""Segmentation's ignore index: the loss and mIoU/Dice/pixel accuracy skip pixels labelled it; the masks reader
takes it, refuses a mask value past the classes without it in one line naming the file, and maps Cityscapes' label
ids to train ids (data=cityscapes, on files generated in Cityscapes' folder layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import small_config
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import build_model
from zoo.plugin import registry

VOID = 255


def head(ignore_index, name="unet", **params):
    info = DataInfo("segmentation", ("background", "a", "b"), 3, (32, 32), (0.5,) * 3, (0.25,) * 3, (), 0, ignore_index)
    cfg = {"data": {"name": "x"}, "model": {"name": "cnn", "width": 4, "depth": 2}, "head": {"name": name, **params}}
    torch.manual_seed(0)
    return build_model(cfg, info).head


@pytest.mark.parametrize("name", ["unet", "fpn"])
def test_loss_skips_ignored_pixels(name):
    h = head(VOID, name, dice_weight=0.5)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    void = torch.zeros(2, 8, 8, dtype=torch.bool)
    void[:, :3] = True
    a, b = target.clone(), target.clone()
    a[void], b[void] = VOID, VOID
    b_logits = logits.clone()
    b_logits[:, :, :3] = torch.randn(2, 3, 3, 8, generator=g)  # what the model says on void pixels changes nothing
    assert torch.isfinite(h.loss(logits, a))
    torch.testing.assert_close(h.loss(logits, a), h.loss(b_logits, b))
    assert not torch.isclose(h.loss(logits, a), h.loss(logits, target))
    everything = torch.full_like(target, VOID)
    assert h.loss(logits, everything).item() == 0.0
    with pytest.raises((IndexError, RuntimeError)):  # without an ignore index, 255 is no class
        head(None, name).loss(logits, a)


def test_metrics_skip_ignored_pixels():
    h = head(VOID)
    target = torch.tensor([[[0, 1], [2, VOID]]])
    right = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 1]]]), 3).permute(0, 3, 1, 2).float()
    metrics = h.metrics()
    metrics.update(right, target)
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values == {"miou": 1.0, "dice": 1.0, "pixel_accuracy": 1.0}


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def cityscapes(root, cities=("aachen", "bremen"), n=3):
    """leftImg8bit/{train,val}/CITY/CITY_00000K_000019_leftImg8bit.png and gtFine's *_gtFine_labelIds.png whose rows
    hold label ids 0 (unlabeled), 7 (road), 26 (car), 33 (bicycle) and 24 (person)."""
    ids = np.array([0, 7, 26, 33, 24], np.uint8).repeat(4)[:, None].repeat(24, axis=1)  # 20 x 24
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for city in cities:
            for k in range(n):
                stem = f"{city}_{k:06d}_000019"
                _png(
                    root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                    rng.integers(0, 255, (20, 24, 3), np.uint8),
                )
                _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
                _png(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", np.zeros((20, 24, 3), np.uint8))
    return root


def test_cityscapes_preset_maps_label_ids_to_train_ids(tmp_path):
    from zoo.data import build_data

    cfg = small_config(data="cityscapes", **{"data.root": str(cityscapes(tmp_path)), "data.size": 24})
    bundle = build_data(cfg, 0)
    info = bundle.info
    assert len(info.classes) == 19 and info.classes[0] == "road" and info.classes[-1] == "bicycle"
    assert info.ignore_index == VOID and info.background is None
    assert len(bundle.val) == 6 and len(bundle.train) + len(bundle.test) == 6
    image, mask = bundle.val[0]
    assert image.shape == (3, 24, 24)
    rows = [int(mask[int(r * 24 / 20)][0]) for r in (1, 5, 9, 13, 17)]
    assert rows == [VOID, 0, 13, 18, 11]  # unlabeled -> void, road 0, car 13, bicycle 18, person 11


def test_a_mask_value_past_the_classes_without_an_ignore_index_is_one_line(tmp_path):
    for k in range(4):
        _png(tmp_path / "images" / f"im{k}.png", np.zeros((10, 12, 3), np.uint8))
        m = np.zeros((10, 12), np.uint8)
        m[2:5, 2:5] = 1
        m[0] = VOID if k == 2 else 0
        _png(tmp_path / "masks" / f"im{k}.png", m)
    build = registry.get("dataset", "masks").build
    params = {"images": str(tmp_path / "images"), "masks": str(tmp_path / "masks"), "val_fraction": 0.25}
    params["test_fraction"] = 0.25
    with pytest.raises(ZooError, match=r"mask .*im2.png has pixel value 255, .* set data.ignore_index"):
        build({"seed": 0}, params, where="data")
    bundle = build({"seed": 0}, {**params, "ignore_index": VOID}, where="data")
    assert bundle.info.ignore_index == VOID
    with pytest.raises(ZooError, match=r"data.ignore_index=1 is a class \('foreground'\)"):
        build({"seed": 0}, {**params, "ignore_index": 1}, where="data")


@pytest.mark.slow
def test_a_run_with_void_pixels_trains_and_scores_finite(tmp_path):
    from zoo.train.engine import train

    over = {"data": "cityscapes", "data.root": str(cityscapes(tmp_path / "cs")), "data.size": 32, "head": "unet"}
    over |= {"model.width": 4, "model.depth": 2, "aug": "none", "trainer.max_epochs": 1, "trainer.batch_size": 2}
    results = train(small_config(**over, **{"trainer.progress": "false"}), tmp_path / "run")
    row = results["history"][0]
    assert np.isfinite(row["train_loss"]) and 0 <= row["val_miou"] <= 1


@pytest.mark.parametrize("name,params", [("rotation", {"degrees": 45.0}), ("shift", {"fraction": 0.4}),
                                         ("zoom", {"min_scale": 0.5, "max_scale": 0.6}),
                                         ("shear", {"degrees": 40.0})])  # fmt: skip
def test_a_warp_fills_a_mask_with_the_ignore_index_where_it_brings_in_nothing(name, params):
    """Pixels a rotation, shift, zoom or shear brings in from outside the image label nothing: they take the
    data's ignore index (255), not class 0, on the per-sample path and on the batched one."""
    from torchvision import tv_tensors

    info = DataInfo("segmentation", ("bg", "a"), 3, (32, 32), (0.5,) * 3, (0.25,) * 3, ignore_index=255)
    op = registry.get("augmentation", name).build({"info": info}, {**params, "p": 1.0}, where=f"aug.ops.{name}")
    torch.manual_seed(0)
    image, mask = torch.rand(3, 32, 32), tv_tensors.Mask(torch.ones(32, 32, dtype=torch.int64))
    _, out = op(image, mask)
    assert set(out.unique().tolist()) == {1, 255}
    if hasattr(op, "batched"):
        _, batch = op.batched(torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.int64))
        assert set(batch.unique().tolist()) == {1, 255}
