"""The deployment contract (issue 12): zoo.format's schema, preprocessing inside the graph, golden vectors and
`zoo verify`, decoding rules, and the edges (empty batches, bad floats, folders with bad images, minimum sizes)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import HEADS, assert_one_line_error, task_info, zoo_in_process
from zoo.deploy import schema
from zoo.errors import ZooError
from zoo.runtime import Model, decode


def _metadata(folder) -> dict:
    proto = onnx.load(str(folder / "model.onnx"))
    return {p.key.removeprefix("zoo."): json.loads(p.value) for p in proto.metadata_props}


# ---- the schema ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [*HEADS, "float"])
def test_each_tasks_export_fits_the_schema_and_every_key_is_in_it(exports, task):
    meta = _metadata(exports[task])
    schema.validate(meta, task)  # raises on a misfit
    assert set(meta) <= set(schema.schema()["properties"])
    proto = onnx.load(str(exports[task] / "model.onnx"))
    for out in proto.graph.output:  # every dimension named by the metadata, none by the exporter
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert all(isinstance(d, int) or d in ("batch", "height", "width") for d in dims), (out.name, dims)
    post = meta["postprocessing"]
    assert post["label_index_base"] == 0
    if task == "detection":
        assert post["nms"]["score_threshold"] == pytest.approx(0.001) and post["nms"]["max_detections"] == 100
        assert post["box"]["format"] == "xyxy" and meta["preprocessing"]["resize"]["fit"] == "stretch"
    if task == "regression":
        assert post["units"] == ["degrees", None]
    if task == "segmentation":
        assert post["background_index"] == 0 and meta["preprocessing"]["resize"] is None
        assert meta["input"]["min_size"] == [4, 4]  # the cnn's declared min_size at depth 2


def test_a_misfit_is_one_line_naming_the_key():
    meta = _metadata_of_a_dict()
    meta["input"]["layout"] = "HWC"
    with pytest.raises(ZooError) as e:
        schema.validate(meta, "x")
    assert str(e.value).startswith("x: metadata key zoo.input.layout does not fit zoo.format 3.2: 'HWC' is not")
    meta = _metadata_of_a_dict()
    meta["quality"] = "high"  # a key the schema does not declare
    with pytest.raises(ZooError, match=r"x: the metadata does not fit zoo.format 3.2: .*'quality' was unexpected"):
        schema.validate(meta, "x")


def _metadata_of_a_dict() -> dict:
    from zoo.deploy.export import metadata

    info = task_info("classification")
    axes = ["batch", "class"]
    outputs = [{"name": "p", "role": "probabilities", "dtype": "float32", "axes": axes, "shape": ["batch", 3]}]
    return metadata(info, outputs, {}, {"opset": 18, "input": "uint8"})


def test_the_runtime_refuses_an_unknown_major_version_and_missing_keys(exports, tmp_path):
    src = exports["classification"] / "model.onnx"
    for changes, message in (
        ({"format": "4.0"}, "has zoo metadata format '4.0'; this zoo reads formats 1, 2, 3: upgrade zoo"),
        ({"postprocessing": None}, "its zoo metadata lacks zoo.postprocessing (zoo.format 3)"),
    ):
        proto = onnx.load(str(src))
        props = {p.key: p.value for p in proto.metadata_props}
        for k, v in changes.items():
            props.pop(f"zoo.{k}") if v is None else props.__setitem__(f"zoo.{k}", json.dumps(v))
        del proto.metadata_props[:]
        for k, v in props.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp_path / "m.onnx"))
        with pytest.raises(ZooError) as e:
            Model(tmp_path / "m.onnx", "cpu")
        assert message in str(e.value) and "\n" not in str(e.value)


# ---- preprocessing inside the graph ----------------------------------------------------------------------


def test_the_in_graph_resize_matches_pytorchs_antialiased_bilinear(tmp_path):
    """ONNX Resize (antialias=1) against F.interpolate(antialias=True): down by up to 7x, up, odd sizes, grey."""
    from zoo.deploy.preprocess import Preprocess

    worst = 0.0
    rng = np.random.default_rng(0)
    for channels, size in ((3, (32, 32)), (1, (21, 45))):
        pre = Preprocess(channels, size).eval()
        path = tmp_path / f"pre{channels}.onnx"
        torch.onnx.export(
            pre,
            (torch.zeros(1, 40, 40, 3, dtype=torch.uint8),),
            str(path),
            dynamo=False,
            opset_version=18,
            input_names=["image"],
            dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}},
        )
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for h, w in ((224, 160), (33, 17), (9, 250), (32, 32), (5, 7)):
            x = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
            got = session.run(None, {"image": x})[0]
            with torch.no_grad():
                want = pre(torch.from_numpy(x)).numpy()
            worst = max(worst, float(np.abs(got - want).max()))
    # measured 1.1e-6 (in [0, 1] units): float rounding, not a different filter; without exclude_outside=1, 0.07
    assert worst < 5e-6, worst


def test_pillow_takes_no_part_in_a_uint8_prediction(exports, tmp_path, monkeypatch):
    """The same decoded pixels, from a file through zoo's decoding and fed as an array, give the same outputs;
    Pillow's resize and convert are unavailable meanwhile, so its version cannot change the result."""
    from PIL import Image

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (45, 71, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "odd.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.png")

    def refuse(*args, **kwargs):
        raise AssertionError("Pillow resized or converted an image")

    monkeypatch.setattr(Image.Image, "resize", refuse)
    monkeypatch.setattr(Image.Image, "convert", refuse)
    for task in ("classification", "detection"):
        m = Model(exports[task] / "model.onnx", "cpu")
        from_file = m.predict_files([tmp_path / "odd.png"])[0]
        direct = m.predict(pixels[None], original_sizes=[(45, 71)])[0]
        assert {k: v for k, v in from_file.items() if k != "file"} == direct
    m = Model(exports["classification"] / "model.onnx", "cpu")
    grey = np.repeat(pixels[..., :1], 3, axis=2)
    from_file = m.run(m.preprocess([tmp_path / "grey.png"]))["probabilities"]
    assert np.array_equal(from_file, m.run(grey[None])["probabilities"])


# ---- decoding ------------------------------------------------------------------------------------------


def test_decoding_rules_16_bit_alpha_palette(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (13, 9), dtype=np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 256 + 200).save(tmp_path / "g16.png")  # 16-bit: high byte, no clip
    assert np.array_equal(decode(tmp_path / "g16.png"), np.repeat(grey[..., None], 3, axis=2))
    rgba = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")  # alpha dropped, not composited
    assert np.array_equal(decode(tmp_path / "rgba.png"), rgba[..., :3])
    palette = Image.fromarray(rgba[..., :3]).quantize(8)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(decode(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))
    la = np.dstack([grey, 255 - grey])
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    assert np.array_equal(decode(tmp_path / "la.png"), np.repeat(grey[..., None], 3, axis=2))


def test_a_16_bit_png_predicts_as_its_8_bit_twin(exports, tmp_path):
    from PIL import Image

    grey = np.random.default_rng(6).integers(0, 256, (30, 34), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "a8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "a16.png")
    for task in ("classification", "float"):
        r8, r16 = Model(exports[task] / "model.onnx", "cpu").predict_files([tmp_path / "a8.png", tmp_path / "a16.png"])
        assert r8["topk"] == r16["topk"]


# ---- golden vectors ----------------------------------------------------------------------------------------


def test_verify_passes_then_names_each_mismatch(exports, tmp_path):
    for task in (*HEADS, "float"):
        ok = zoo_in_process("verify", str(exports[task]))
        # 6 samples: 3 at the network's size and 3 at an odd one; the float32 form has the 4 images at its size
        want = "4" if task == "float" else "6"
        assert ok.returncode == 0 and ok.stdout.startswith(f"{want} golden sample(s) checked, 0 failure(s)"), ok
    copy = tmp_path / "x"
    shutil.copytree(exports["detection"], copy)
    golden = json.loads((copy / "golden" / "golden.json").read_text())
    kinds = {s["kind"] for s in golden["samples"]}
    assert {"rgb8", "palette", "rgba"} <= kinds  # colour images: grey kinds are written for grey pixels only
    golden["samples"][0]["outputs"]["scores"]["data"][0] += 0.01
    golden["samples"][1]["decoded"]["sha256"] = "0" * 64
    (copy / "golden" / "golden.json").write_text(json.dumps(golden))
    bad = zoo_in_process("verify", str(copy))
    lines = bad.stderr.splitlines()
    assert bad.returncode == 2 and len(lines) == 2, bad.stderr
    assert "sample_0.png: output 'scores' differs by 0.01" in lines[0] and "sample_1.png: decoded pixels" in lines[1]
    shutil.rmtree(copy / "golden")
    assert_one_line_error(zoo_in_process("verify", str(copy)), "holds no golden/golden.json")


# ---- edges --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [*HEADS, "float"])
def test_a_batch_of_zero_images_gives_empty_outputs(exports, task):
    m = Model(exports[task] / "model.onnx", "cpu")
    empty = np.zeros((0, 32, 32, 3), np.uint8) if m.form == "uint8" else np.zeros((0, 3, 32, 32), np.float32)
    out = m.run(empty)
    meta = {e["name"]: e for e in m.metadata["outputs"]}
    for name, value in out.items():
        assert value.shape[0] == 0 and len(value.shape) == len(meta[name]["shape"])
        assert value.dtype == meta[name]["dtype"]
    assert m.predict(empty) == []
    # the graph itself too, without the runtime's shortcut (a reshape inferring an axis from 0 elements failed)
    import onnxruntime as ort

    session = ort.InferenceSession(str(exports[task] / "model.onnx"), providers=["CPUExecutionProvider"])
    graph = dict(zip(m.output_names, session.run(None, {m.input_name: empty})))
    assert {k: v.shape for k, v in graph.items()} == {k: v.shape for k, v in out.items()}


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda x: x.__setitem__((0, 0, 3, 4), np.nan), "holds nan at [0, 0, 3, 4]; pixels must be finite, in [0, 1]"),
        (lambda x: x.__setitem__((1, 2, 0, 0), np.inf), "holds inf at [1, 2, 0, 0]"),
        (lambda x: x.__imul__(255), "pixels must be in [0, 1]; divide 0-255 pixels by 255"),
        (lambda x: x.__isub__(0.5), "holds values in [-0.49981, 0.499944]; pixels must be in [0, 1]"),
    ],
)
def test_the_float_form_refuses_nan_inf_and_values_outside_0_1(exports, change, message):
    m = Model(exports["float"] / "model.onnx", "cpu")
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    change(x)
    with pytest.raises(ZooError) as e:
        m.run(x)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_predict_on_a_folder_predicts_the_valid_images_and_names_each_invalid_one(exports, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for name, size in (("a.png", (40, 36)), ("b.png", (3, 50)), ("c.png", (33, 33))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "d.png").write_bytes(b"not a png")
    proc = zoo_in_process("predict", f"model={exports['segmentation']}/model.onnx", f"input={tmp_path}")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 2 and [r["file"][-5:] for r in rows] == ["a.png", "c.png"]
    assert rows[0]["size"] == [40, 36]
    errors = proc.stderr.splitlines()
    assert len(errors) == 2 and "Traceback" not in proc.stderr
    assert "b.png' is 3x50 (height x width); this model takes at least 4x4" in errors[0]
    assert errors[1].startswith("zoo: error: cannot read input image") and "d.png" in errors[1]


def test_bench_inference_gives_pytorch_the_networks_channels(digits_export):
    """The grey digits network behind an RGB uint8 graph: PyTorch takes 1 channel, onnxruntime the pixels."""
    proc = zoo_in_process("bench", "inference", f"model={digits_export}/model.onnx", "batch=4", "repeats=1")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("    ")]
    assert any(r.strip().startswith("pytorch") for r in rows) and any("onnxruntime" in r for r in rows), proc.stdout
