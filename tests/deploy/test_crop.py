"""The weights' centre crop carried into the export (`export.fit=crop`): the crop's geometry is torchvision's
(Resize of the shorter side, CenterCrop), the uint8 graph crops any input size and batch as PyTorch does, the
metadata states it and validates, the float32 form's client crops the same way, the crop_pct survives a
checkpoint, `zoo predict` agrees with torchvision's own `weights.transforms()`, the default fit is the documented
one, and bad values are one line."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from tests.conftest import export_task, task_info, zoo_in_process
from zoo.deploy import schema
from zoo.deploy.preprocess import Preprocess
from zoo.errors import ZooError
from zoo.runtime import Model
from zoo.runtime.decoding import crop_geometry, float_input


def torchvision_crop(x: torch.Tensor, size: int, cover: int) -> torch.Tensor:
    """torchvision's eval geometry on a float NCHW tensor: the shorter side resized to `cover`, the centre `size`."""
    return TF.center_crop(TF.resize(x, [cover], antialias=True), [size])


def test_the_geometry_is_torchvisions_resize_of_the_shorter_side_and_center_crop():
    from torchvision.transforms.v2.functional._geometry import (
        _center_crop_compute_crop_anchor,
        _compute_resized_output_size,
    )

    for cover, size in ((232, 224), (256, 224), (37, 32), (9, 7)):
        for h in range(size, size + 41, 3):
            for w in (size, size + 1, size + 2, size + 3, 2 * size + 5, h + 7):
                nh, nw = _compute_resized_output_size((h, w), [cover])
                top, left = _center_crop_compute_crop_anchor(size, size, nh, nw)
                assert crop_geometry(h, w, (size, size), (cover, cover)) == (nh, nw, top, left), (h, w, cover)
    assert crop_geometry(10, 10, (4, 4), (7, 7))[2:] == (2, 2)  # d = 3: round(1.5) = 2, halves to even
    assert crop_geometry(10, 10, (4, 4), (9, 9))[2:] == (2, 2)  # d = 5: round(2.5) = 2


def test_the_uint8_graph_crops_as_pytorch_and_torchvision_for_any_aspect_and_batch(tmp_path):
    import onnxruntime as ort

    from zoo.deploy.graph import trace_onnx

    module = Preprocess(3, (32, 32), schema.crop_cover((32, 32), 0.875)).eval()  # cover 37
    module.output_names, module.output_axes = ["x"], {}
    trace_onnx(module, torch.zeros(2, 40, 40, 3, dtype=torch.uint8), tmp_path / "p.onnx", 18, "image",
               {0: "batch", 1: "height", 2: "width"})  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for n, h, w in ((1, 32, 32), (3, 40, 50), (2, 50, 40), (1, 29, 97), (4, 97, 29), (2, 13, 17), (1, 300, 211)):
        pixels = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)
        got = session.run(None, {"image": pixels.numpy()})[0]
        with torch.no_grad():
            reference = module(pixels)
        expected = torchvision_crop(pixels.permute(0, 3, 1, 2).float(), 32, 37) / 255
        assert got.shape == (n, 3, 32, 32)
        assert np.abs(got - reference.numpy()).max() < 1e-5, (n, h, w)
        assert torch.allclose(reference, expected, atol=1e-6), (n, h, w)  # the same computation as torchvision's


def test_a_crop_export_states_it_validates_and_predicts_as_pytorch(tmp_path):
    card = export_task("classification", tmp_path / "out", crop_pct=0.875)  # given: auto crops
    resize = card["preprocessing"]["resize"]
    assert resize["fit"] == "crop" and resize["crop"]["crop_pct"] == 0.875 and resize["crop"]["cover"] == [37, 37]
    assert "mod 4 = 3" in resize["crop"]["offsets"] and "floor(cover[0] * W / H)" in resize["crop"]["resized"]
    assert card["parity"]["inputs"].endswith("at 32x32 and 49x25")  # taller and wider than the network's aspect
    meta = {k: v for k, v in card.items() if k in schema.schema()["properties"]}
    meta.update(format=schema.FORMAT, version="x", opset=18)
    schema.validate(meta, "test")
    for broken in ({**resize, "fit": "stretch"}, {k: v for k, v in resize.items() if k != "crop"}):
        with pytest.raises(ZooError, match="does not fit zoo.format"):  # crop and fit crop go together
            schema.validate({**meta, "preprocessing": {**meta["preprocessing"], "resize": broken}}, "test")

    torch.manual_seed(0)  # export_task's model, again
    from zoo.model import build_model

    cfg = {
        "data": {"name": "test"},
        "model": {"name": "cnn", "width": 8, "depth": 2},
        "head": {"name": "classification"},
    }
    model = build_model(cfg, task_info("classification")).eval()
    served = Model(tmp_path / "out" / "model.onnx", providers="cpu")
    g = torch.Generator().manual_seed(2)
    for n, h, w in ((3, 45, 60), (2, 61, 33), (1, 32, 32)):
        pixels = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)
        x = torchvision_crop(pixels.permute(0, 3, 1, 2).float() / 255, 32, 37)
        with torch.no_grad():
            expected = model.head.postprocess(model(x))[0].numpy()
        np.testing.assert_allclose(served.run(pixels.numpy())["probabilities"], expected, atol=1e-5)
    from zoo.runtime.inputs import ModelInput

    unknown_fit = {**served.metadata["preprocessing"], "resize": {**resize, "fit": "letterbox"}}  # a later format's
    with pytest.raises(ZooError, match="resize.fit='letterbox', which this zoo-runtime does not know"):
        ModelInput.read({**served.metadata, "preprocessing": unknown_fit}, served.session.get_inputs()[0])


def test_the_float32_forms_client_crops_as_the_graph(tmp_path):
    export_task("classification", tmp_path / "u8", crop_pct=0.875)
    export_task("classification", tmp_path / "f32", crop_pct=0.875, input="float32")
    u8, f32 = (Model(tmp_path / f / "model.onnx", providers="cpu") for f in ("u8", "f32"))
    assert f32.input.cover == (37, 37) and "then take the centre height 32" in " ".join(
        json.loads((tmp_path / "f32" / "model.json").read_text())["preprocessing"]["steps"]
    )
    rgb = np.asarray(Image.effect_mandelbrot((71, 50), (-2, -1.2, 1, 1.2), 60).convert("RGB"))  # smooth, 50 x 71
    item, original = f32.input.prepare(rgb)
    assert item.shape == (3, 32, 32) and original == (50, 71)
    reference = torchvision_crop(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255, 32, 37)[0].numpy()
    assert np.abs(item - reference).max() < 0.02  # Pillow's BILINEAR on 'F' images against torch's antialias
    p_f32 = f32.run(item[None])["probabilities"]
    p_u8 = u8.run(rgb[None])["probabilities"]
    assert np.abs(p_f32 - p_u8).max() < 1e-3
    assert np.array_equal(float_input(rgb, 3, (32, 32), (37, 37)), item)


def test_the_default_fit_is_crop_only_for_a_model_used_as_its_weights_are(tmp_path):
    from zoo.deploy.export import crop_fraction

    class Head:
        labels = ("tench", "goldfish")

    class Deploy:
        dynamic_size = False
        model = type("Inner", (), {"head": Head()})()

    plain = type("Plain", (), {"dynamic_size": False, "model": type("Inner", (), {"head": object()})()})()
    bare = task_info("classification")
    carried = dataclasses.replace(bare, crop_pct=0.9)
    assert crop_fraction(Deploy(), carried, {"fit": "auto"}) == 0.9  # its weights' classifier and crop: crop
    assert crop_fraction(plain, carried, {"fit": "auto"}) is None  # trained on zoo's (whole, resized) images
    assert crop_fraction(Deploy(), bare, {"fit": "auto"}) is None  # no crop with the weights
    assert crop_fraction(plain, bare, {"fit": "auto", "crop_pct": 0.5}) == 0.5  # asked for
    assert crop_fraction(Deploy(), carried, {"fit": "resize"}) is None
    assert crop_fraction(plain, carried, {"fit": "crop", "crop_pct": 0}) == 0.9  # 0: not given, the weights' own
    assert crop_fraction(plain, carried, {"fit": "crop", "crop_pct": 0.8}) == 0.8  # export.crop_pct wins
    card = export_task("classification", tmp_path / "plain")
    assert card["preprocessing"]["resize"]["fit"] == "stretch" and "crop" not in card["preprocessing"]["resize"]


def test_bad_values_are_one_line(tmp_path):
    from zoo.deploy.export import export_settings

    for bad, fragment in (
        ({"fit": "letterbox"}, "export.fit"),
        ({"crop_pct": -0.5}, "export.crop_pct"),
        ({"crop_pct": 1.5}, "export.crop_pct"),
    ):
        with pytest.raises(ZooError, match=fragment) as e:
            export_settings({}, bad)
        assert "\n" not in str(e.value)
    assert export_settings({}, {"crop_pct": 1})["crop_pct"] == 1  # 1: the whole shorter side
    assert export_settings({}, {})["crop_pct"] == 0  # 0: the weights' own, if they carry one
    for task, ecfg, fragment in (
        ("classification", {"fit": "crop"}, "export.fit=crop: this model's weights carry no centre crop"),
        ("segmentation", {"fit": "crop", "crop_pct": 0.875}, "use export.fit=resize"),
        ("detection", {"crop_pct": 0.875}, "use export.fit=resize"),
        ("classification", {"fit": "crop", "crop_pct": 0.001}, r"1000 times the network's size .* from 0.25 to 1"),
    ):
        with pytest.raises(ZooError, match=fragment) as e:
            export_task(task, tmp_path / task, **ecfg)
        assert "\n" not in str(e.value) and not (tmp_path / task).exists()


# ---- torchvision's weights, end to end: their crop_pct through a checkpoint into the export ----------------


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.slow
def test_zoo_predict_on_a_crop_export_agrees_with_torchvisions_own_transforms(offline_torch_home, tmp_path):
    """torchvision's transforms on a uint8 image round its resized pixels to uint8; zoo's graph does not, so the
    network's input differs by at most 0.5 / 255 / std (0.0087 here) and the probabilities by about 3e-3 (measured
    up to 2.5e-3 on noise and blurred noise; a stretched export differs by 1.6e-2 or more). On the float image
    (no rounding) they agree to the printed digits."""
    import torchvision

    from tests.plugins.test_torchvision_models import cached_weights
    from zoo.data import DataInfo
    from zoo.deploy.export import export
    from zoo.model import build_model, deployed_info
    from zoo.train.checkpoint import load_weights, model_from_checkpoint, save_checkpoint
    from zoo_plugins.architectures.torchvision_weights import cache_file

    state, member = cached_weights("squeezenet1_1")
    state["classifier.1.weight"] = state["classifier.1.weight"] * 30  # peaked probabilities, so pixels show
    torch.save(state, cache_file(member))
    cfg = {
        "data": {"name": "test"},
        "model": {"name": "torchvision", "model_name": "squeezenet1_1"},
        "head": {"name": "pretrained_classifier"},
        "export": {"parity_samples": 2},
    }
    info = DataInfo("classification", ("goldfish", "tench"), 3, (224, 224), (0.5,) * 3, (0.25,) * 3)
    model = build_model(cfg, info)
    load_weights(model, "pretrained", include_head=True)
    assert model.crop_pct == pytest.approx(224 / 256)
    saved = deployed_info(model, info)
    save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "config": cfg, "info": saved.to_dict()})
    rebuilt, back = model_from_checkpoint(torch.load(tmp_path / "best.pt", weights_only=True))
    assert back.crop_pct == pytest.approx(0.875) and deployed_info(rebuilt, back).crop_pct == pytest.approx(0.875)

    card = export(tmp_path / "best.pt", tmp_path / "out")  # export.fit=auto: the weights' classifier, so crop
    assert card["preprocessing"]["resize"]["crop"]["cover"] == [256, 256]
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4

    smooth = np.asarray(Image.effect_mandelbrot((300, 260), (-2.2, -1.3, 0.8, 1.3), 80).convert("RGB"))
    noise = np.random.default_rng(0).integers(0, 256, (230, 310, 3), dtype=np.uint8)
    reference = torchvision.models.get_model("squeezenet1_1").eval()
    reference.load_state_dict(state)
    transforms, pre = member.transforms(), Preprocess(3, (224, 224), (256, 256))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (transforms.mean, transforms.std))
    for name, rgb in (("smooth", smooth), ("noise", noise)):
        Image.fromarray(rgb).save(tmp_path / f"{name}.png")
        proc = zoo_in_process("predict", f"model={tmp_path / 'out' / 'model.onnx'}", f"input={tmp_path}/{name}.png")
        assert proc.returncode == 0, proc.stderr
        scores = {t["label"]: t["score"] for t in json.loads(proc.stdout.splitlines()[0])["topk"]}
        image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
        with torch.no_grad():
            zoo_input = (pre(image.permute(1, 2, 0)[None]) - mean) / std
            for tv_input, pixels, probs in (
                (transforms(image)[None], 0.5 / 255 / min(transforms.std) + 1e-5, 5e-3),  # uint8: rounded
                (transforms(image.float() / 255)[None], 1e-5, 1e-5),
            ):
                assert (zoo_input - tv_input).abs().max() <= pixels, name
                p = reference(tv_input).softmax(-1)[0]
                top = p.topk(5)
                expected = {member.meta["categories"][i]: float(v) for v, i in zip(top.values, top.indices)}
                assert next(iter(scores)) == next(iter(expected)), (name, scores, expected)
                both = [k for k in expected if k in scores]  # a near-tie at the fifth place may differ
                assert len(both) >= 4 and all(abs(scores[k] - expected[k]) <= probs for k in both), (name, scores)


def test_zoo_export_takes_fit_and_crop_pct_and_refuses_bad_ones_in_one_line(tiny_run, tmp_path):
    from tests.conftest import assert_one_line_error

    best = f"checkpoint={tiny_run}"
    assert_one_line_error(zoo_in_process("export", best, f"output={tmp_path / 'a'}", "fit=crop"), "export.crop_pct=")
    assert_one_line_error(zoo_in_process("export", best, f"output={tmp_path / 'b'}", "fit=letterbox"), "export.fit")
    assert_one_line_error(zoo_in_process("export", best, f"output={tmp_path / 'c'}", "crop_pct=2"), "export.crop_pct")
    assert not any((tmp_path / f).exists() for f in "abc")
    proc = zoo_in_process("export", best, f"output={tmp_path / 'd'}", "crop_pct=0.8")
    assert proc.returncode == 0, proc.stderr
    resize = json.loads((tmp_path / "d" / "model.json").read_text())["preprocessing"]["resize"]
    assert resize["fit"] == "crop" and resize["crop"]["cover"] == [40, 40]  # 32 / 0.8
    digits = [
        tmp_path / "d" / "golden" / f for f in sorted(os.listdir(tmp_path / "d" / "golden")) if f.endswith(".png")
    ]
    proc = zoo_in_process("predict", f"model={tmp_path / 'd' / 'model.onnx'}", f"input={digits[0]}")
    assert proc.returncode == 0 and json.loads(proc.stdout)["label"], proc.stderr
