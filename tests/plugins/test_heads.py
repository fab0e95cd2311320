"""The regression and segmentation heads: build on classic and timm backbones, train a step, export with parity;
segmentation at any input size; regression standardisation undone in the deployed model and the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import small_config
from zoo.data import DataBundle, DataInfo, TensorImages
from zoo.deploy.export import export_model
from zoo.deploy.graph import DeployModel
from zoo.errors import ZooError
from zoo.model import build_model
from zoo.runtime import Model
from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint
from zoo.train.engine import train

BACKBONES = [("cnn", {"width": 8}), ("timm", {"model_name": "test_resnet"})]
BACKBONE_IDS = ["cnn", "timm-test_resnet"]
SEG_HEADS = ["unet", "fpn"]
ECFG = {"opset": 18, "parity_tolerance": 1e-4, "input": "float32"}  # float batches in, as PyTorch takes them


def seg_info(channels: int = 3, size: int = 32) -> DataInfo:
    return DataInfo(
        "segmentation", ("background", "a", "b"), channels, (size, size), (0.5,) * channels, (0.25,) * channels
    )


def reg_info(channels: int = 3, outputs: int = 2) -> DataInfo:
    return DataInfo(
        "regression", tuple(f"t{i}" for i in range(outputs)), channels, (32, 32), (0.5,) * channels, (0.25,) * channels
    )


def cfg(data: str, model: str, mparams: dict, head: str, **hparams) -> dict:
    return {"data": {"name": data}, "model": {"name": model, **mparams}, "head": {"name": head, **hparams}}


def seg_batch(n: int = 4, size=(32, 32), channels: int = 3):
    """Bright squares on a dark background, labelled 1 (left half of the image) or 2 (right half)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, channels, *size, generator=g) * 0.2
    y = torch.zeros(n, *size, dtype=torch.long)
    for i in range(n):
        r, c = (
            int(torch.randint(0, size[0] - 10, (), generator=g)),
            int(torch.randint(0, size[1] - 10, (), generator=g)),
        )
        x[i, :, r : r + 10, c : c + 10] = 0.9
        y[i, r : r + 10, c : c + 10] = 1 if c + 5 < size[1] // 2 else 2
    return x, y


def run_onnx(path, x: torch.Tensor) -> dict:
    m = Model(path, providers="cpu")
    return dict(zip(m.output_names, m.session.run(None, {"input": x.numpy()})))


# ---- every head, on a classic and a timm backbone -----------------------------------------------------


def _case(head: str, model: str, mparams: dict):
    if head == "regression":
        info = reg_info()
        g = torch.Generator().manual_seed(0)
        x = torch.rand(6, 3, 32, 32, generator=g)
        y = torch.stack([x.mean(dim=(1, 2, 3)) * 40 + 10, x[:, 0].std(dim=(1, 2)) * 3 - 1], dim=1)
        c = cfg("digits_rotation", model, mparams, head)
    else:
        info = seg_info()
        x, y = seg_batch(4)
        c = cfg("shapes", model, mparams, head)
    return info, c, x, y


@pytest.mark.slow
@pytest.mark.parametrize("model,mparams", BACKBONES, ids=BACKBONE_IDS)
@pytest.mark.parametrize("head", ["regression", *SEG_HEADS])
def test_head_trains_with_gradients_reaching_the_backbone(head, model, mparams):
    torch.manual_seed(0)
    info, c, x, y = _case(head, model, mparams)
    m = build_model(c, info)
    if head == "regression":
        m.head.fit_targets(y)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    losses = []
    for step in range(4):
        opt.zero_grad()
        loss = m.head.loss(m(x), y)
        loss.backward()
        if step == 0:
            first = next(p for p in m.backbone.stages()[0].parameters() if p.requires_grad)
            assert first.grad is not None and first.grad.abs().sum() > 0  # the loss reaches the shallowest stage
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("model,mparams", BACKBONES, ids=BACKBONE_IDS)
@pytest.mark.parametrize("head", ["regression", *SEG_HEADS])
def test_head_exports_with_parity(head, model, mparams, tmp_path):
    torch.manual_seed(0)
    info, c, x, y = _case(head, model, mparams)
    m = build_model(c, info)
    if head == "regression":
        m.head.fit_targets(y)
    card = export_model(m.eval(), info, c, tmp_path / "x", ECFG, x, "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    role = "values" if head == "regression" else "mask"
    assert [(o["name"], o["role"]) for o in card["outputs"]] == [(role, role)]
    got = run_onnx(tmp_path / "x" / "model.onnx", x)
    if head == "regression":
        assert got["values"].dtype == np.float32 and got["values"].shape == (len(x), 2)
        assert card["input"]["dynamic"] == ["batch"]
    else:
        assert got["mask"].dtype == np.int64 and got["mask"].shape == (len(x), 32, 32)
        assert card["input"]["dynamic"] == ["batch", "height", "width"]


# ---- segmentation ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model,mparams", BACKBONES, ids=BACKBONE_IDS)
@pytest.mark.parametrize("head", SEG_HEADS)
def test_segmentation_onnx_takes_another_height_and_width(head, model, mparams, tmp_path):
    torch.manual_seed(0)
    c = cfg("shapes", model, mparams, head, probabilities=True)
    m = build_model(c, seg_info()).eval()
    x, _ = seg_batch(3)
    export_model(m, seg_info(), c, tmp_path / "x", ECFG, x, "random")
    for h, w in ((48, 40), (45, 37)):  # a larger size, and one that is no multiple of the backbone's stride
        other, _ = seg_batch(2, size=(h, w))
        got = run_onnx(tmp_path / "x" / "model.onnx", other)
        with torch.no_grad():
            mask, probs = DeployModel(m)(other)
        assert got["mask"].shape == (2, h, w) and got["probabilities"].shape == (2, 3, h, w)
        np.testing.assert_allclose(got["probabilities"], probs.numpy(), atol=1e-4)
        assert (got["mask"] == mask.numpy()).mean() > 0.999  # argmax may flip only at float-level ties
        np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("head", SEG_HEADS)
@pytest.mark.parametrize(
    "model,mparams",
    [
        ("cnn", {"width": 8}),
        ("lenet5", {}),
        ("vgg", {"width": 0.0625}),
        ("alexnet", {"width": 0.125}),
        ("timm", {"model_name": "test_resnet"}),
    ],
    ids=["cnn", "lenet5", "vgg", "alexnet", "timm"],
)
def test_segmentation_logits_at_the_training_size_and_at_multiples_of_the_stride(head, model, mparams):
    m = build_model(cfg("shapes", model, mparams, head), seg_info()).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
        assert m(torch.rand(1, 3, 64, 96)).shape == (1, 3, 64, 96)


@pytest.mark.parametrize(
    "model,mparams",
    [("cnn", {"width": 8}), ("lenet5", {}), ("timm", {"model_name": "test_resnet"})],
    ids=["cnn", "lenet5", "timm"],
)
def test_segmentation_logits_at_any_input_size(model, mparams):
    # 45x37 is no multiple of any stride, and lenet5's valid convolutions crop: the model tells the head the input size
    for head in SEG_HEADS:
        m = build_model(cfg("shapes", model, mparams, head), seg_info()).eval()
        assert m.head.wants_input_size
        with torch.no_grad():
            assert m(torch.rand(1, 3, 45, 37)).shape == (1, 3, 45, 37)
            features = m.backbone(m.normalize(torch.rand(2, 3, 32, 32)))
            assert m.head(features).shape == (2, 3, 32, 32)  # no size given (cached features): the training size


@pytest.mark.parametrize("head", SEG_HEADS)
def test_segmentation_works_on_a_single_level_backbone(head):
    m = build_model(cfg("shapes", "cnn", {"depth": 1, "width": 8}, head), seg_info())
    assert len(m.backbone.feature_info) == 1
    x, y = seg_batch(2)
    loss = m.head.loss(m(x), y)
    loss.backward()
    assert torch.isfinite(loss) and m(x).shape == (2, 3, 32, 32)


def test_segmentation_parameters():
    info = seg_info()
    m = build_model(
        cfg(
            "shapes",
            "cnn",
            {"width": 8},
            "unet",
            channels=[16],
            convs=1,
            norm="group",
            dropout=0.2,
            dice_weight=1.0,
            class_weights=[0.5, 1.0, 1.0],
            probabilities=True,
        ),
        info,
    )
    assert (
        m.head.output_names == ("mask", "probabilities") and m.head.monitor == "miou" and m.head.monitor_mode == "max"
    )
    assert m.head.dynamic_size and DeployModel(m).output_axes == {
        "mask": {0: "batch", 1: "height", 2: "width"},
        "probabilities": {0: "batch", 2: "height", 3: "width"},
    }
    x, y = seg_batch(2)
    assert torch.isfinite(m.head.loss(m(x), y))
    m = build_model(
        cfg("shapes", "cnn", {"width": 8}, "fpn", channels=16, segment_channels=8, ce_weight=0.0, dice_weight=1.0), info
    )
    assert 0 <= m.head.loss(m(x), y).item() <= 1  # Dice loss alone
    with pytest.raises(ZooError, match="class_weights"):
        build_model(cfg("shapes", "cnn", {"width": 8}, "unet", class_weights=[1.0, 2.0]), info)
    with pytest.raises(ZooError, match="ce_weight"):
        build_model(cfg("shapes", "cnn", {"width": 8}, "fpn", ce_weight=0.0), info)


def test_segmentation_metrics_are_miou_dice_and_pixel_accuracy():
    m = build_model(cfg("shapes", "cnn", {"width": 8}, "unet"), seg_info())
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2, :2] = 1  # 4 pixels of class 1
    target[0, 3, 3] = 2  # 1 pixel of class 2
    pred = target.clone()
    pred[0, 0, 2] = 1  # one background pixel taken for class 1
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    metrics = m.head.metrics()
    metrics.update(logits, target)
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert set(got) == {"miou", "dice", "pixel_accuracy"}
    iou = [10 / 11, 4 / 5, 1.0]  # background, class 1, class 2
    dice = [2 * 10 / 21, 2 * 4 / 9, 1.0]
    assert got["miou"] == pytest.approx(sum(iou) / 3, abs=1e-6)
    assert got["dice"] == pytest.approx(sum(dice) / 3, abs=1e-6)
    assert got["pixel_accuracy"] == pytest.approx(15 / 16, abs=1e-6)


def test_segmentation_trains_and_exports_through_the_engine(tmp_path):
    c = small_config(
        data="shapes",
        **{
            "data.task": "segmentation",
            "data.num_images": 24,
            "data.size": 32,
            "data.max_size": 12,
            "model.width": 8,
            "head": "fpn",
            "aug": "none",
            "trainer.max_epochs": 1,
            "trainer.batch_size": 8,
            "trainer.progress": "false",
        },
    )
    results = train(c, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"miou", "dice", "pixel_accuracy", "loss"} <= set(metrics["test"]) and results["monitor"] == "miou"
    model, info = model_from_checkpoint(load_checkpoint(tmp_path / "run"))
    assert model.head.dynamic_size and info.task == "segmentation"


# ---- regression ----------------------------------------------------------------------------------------


def test_regression_values_are_in_target_units_in_the_export_and_the_metrics(tmp_path):
    torch.manual_seed(0)
    info = reg_info()
    c = cfg("digits_rotation", "cnn", {"width": 8}, "regression", hidden=[16], dropout=0.1, pool="max", loss="huber")
    m = build_model(c, info)
    targets = torch.stack([torch.linspace(-45, 45, 50), torch.linspace(80, 120, 50)], dim=1)
    m.head.fit_targets(targets)
    mean, std = targets.mean(dim=0), targets.std(dim=0)
    assert torch.allclose(m.head.target_mean, mean) and torch.allclose(m.head.target_std, std)
    m.eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        raw = m(x)
        values = DeployModel(m)(x)
    assert torch.allclose(values, raw * std + mean)
    export_model(m, info, c, tmp_path / "x", ECFG, x, "random")
    np.testing.assert_allclose(
        run_onnx(tmp_path / "x" / "model.onnx", x)["values"], values.numpy(), rtol=1e-5, atol=1e-3
    )

    # metrics take the raw (standardised) outputs and report target units
    y = targets[:8]
    metrics = m.head.metrics()
    metrics.update((y - mean) / std + 0.5, y)  # off by half a standard deviation on every output
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert set(got) == {"mae", "rmse", "r2"} and m.head.monitor == "mae" and m.head.monitor_mode == "min"
    assert got["mae"] == pytest.approx(float((0.5 * std).mean()), rel=1e-4)
    assert got["rmse"] == pytest.approx(float(((0.5 * std) ** 2).mean().sqrt()), rel=1e-4)
    metrics.reset()
    metrics.update((y - mean) / std, y)
    assert float(metrics.compute()["r2"]) == pytest.approx(1.0, abs=1e-5)
    # the loss compares in standardised units: zero for a perfect prediction
    assert float(m.head.loss((y - mean) / std, y)) == pytest.approx(0.0, abs=1e-6)


def test_regression_without_prepare_or_standardisation_is_the_identity():
    info = reg_info(outputs=1)
    m = build_model(cfg("digits_rotation", "cnn", {"width": 8}, "regression"), info)
    assert float(m.head.target_mean) == 0.0 and float(m.head.target_std) == 1.0
    m = build_model(cfg("digits_rotation", "cnn", {"width": 8}, "regression", standardize=False), info)
    m.head.fit_targets(torch.tensor([[10.0], [30.0]]))
    assert float(m.head.target_mean) == 0.0 and float(m.head.target_std) == 1.0
    m = build_model(cfg("digits_rotation", "cnn", {"width": 8}, "regression"), info)
    m.head.fit_targets(torch.tensor([[5.0], [5.0], [5.0]]))  # a constant target: shifted, not scaled
    assert float(m.head.target_mean) == 5.0 and float(m.head.target_std) == 1.0


def test_regression_prepare_reads_the_training_targets():
    info = reg_info(outputs=2)
    m = build_model(cfg("digits_rotation", "cnn", {"width": 8}, "regression"), info)
    y = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    split = TensorImages(torch.rand(3, 3, 32, 32), y)
    m.head.prepare(DataBundle(info, split, split, split))
    assert torch.allclose(m.head.target_mean, torch.tensor([3.0, 30.0]))
    assert torch.allclose(m.head.target_std, torch.tensor([2.0, 20.0]))


@pytest.mark.slow
def test_regression_trains_through_the_engine_and_keeps_its_statistics(tmp_path):
    c = small_config(
        data="digits_rotation",
        head="regression",
        aug="none",
        **{"model.width": 8, "trainer.max_epochs": 1, "trainer.progress": "false"},
    )
    results = train(c, tmp_path / "run")
    assert {"mae", "rmse", "r2", "loss"} <= set(results["test"]) and results["monitor"] == "mae"
    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "run"))
    assert 5.0 < float(model.head.target_std) < 60.0  # angles in [-45, 45] degrees: the std came from the data
