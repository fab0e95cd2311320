"""Export precisions: fp16 (half-precision graph, float32 I/O, parity per role) and int8 (static QDQ quantization
gated by the run's monitored test metric)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import assert_one_line_error, zoo_in_process
from zoo import tasks
from zoo.errors import ZooError


@pytest.mark.slow
@pytest.mark.parametrize(
    "arg, fragments",
    [
        ("precision=fp8", ("precision", "fp8", "fp16", "int8")),
        ("max_metric_drop=-0.5", ("max_metric_drop", "-0.5")),
        ("calibration_samples=0", ("calibration_samples", "0")),
        ("calibration_method=kl", ("calibration_method", "kl", "entropy")),
    ],
)
def test_bad_precision_settings_are_one_line_and_write_nothing(digits_run, tmp_path, arg, fragments):
    out = tmp_path / "export"
    proc = zoo_in_process("export", f"checkpoint={digits_run}", f"output={out}", arg)
    assert_one_line_error(proc, *fragments)
    assert list(tmp_path.iterdir()) == []


def _export(tmp_path, digits_run, **settings):
    from zoo.deploy.export import export

    out = tmp_path / "export"
    card = export(digits_run / "checkpoints" / "best.pt", out, settings)
    return out, card


@pytest.mark.slow
def test_int8_export_is_quantized_gated_and_served_by_the_runtime(digits_run, tmp_path):
    from zoo.runtime import Model

    out, card = _export(tmp_path, digits_run, precision="int8", calibration_samples=64)
    record = card["precision"]
    assert record["precision"] == "int8"
    assert record["calibration"]["count"] == 64 and record["calibration"]["method"] == "minmax"
    metric = record["metric"]
    assert metric["name"] == "accuracy" and metric["split"] == "test (360 images)"
    assert metric["drop"] == pytest.approx(metric["fp32"] - metric["int8"], abs=1e-5)
    assert metric["drop"] <= 0.01
    # the fp32 side of the gate is the checkpoint's own test accuracy (metrics.json, measured by the engine)
    trained = json.loads((digits_run / "metrics.json").read_text())["test"]["accuracy"]
    assert metric["fp32"] == pytest.approx(trained, abs=1e-6)

    proto = onnx.load(str(out / "model.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert [o.name for o in proto.graph.output] == ["probabilities"]  # the scored raw outputs are cut off
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["zoo.precision"]) == record and "zoo.task" in meta

    model = Model(out / "model.onnx", providers="cpu")
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    probs = model.run(x)["probabilities"]
    assert probs.dtype == np.float32 and probs.shape == (3, 10)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)  # the softmax stays float: probabilities are not quantized

    onnx_file = str(out / "model.onnx")
    proc = zoo_in_process("bench", "inference", f"model={onnx_file}", "batch=4", "repeats=2")
    assert proc.returncode == 0, proc.stderr
    listed = [r for r in proc.stdout.splitlines() if r.strip().startswith("int8:")]
    assert len(listed) == 1 and "test accuracy" in listed[0] and "drop" in listed[0], proc.stdout
    assert "inputs: " in proc.stdout and "random" not in proc.stdout.splitlines()[-1]  # the run's own test images


def test_int8_gate_refuses_a_broken_calibration_and_leaves_nothing(digits_run, tmp_path, monkeypatch):
    import zoo.deploy.quantize

    # constant images: every activation range collapses, so the int8 graph can no longer tell digits apart
    def constant(train, count, seed):
        return torch.full((count, *train[0][0].shape), 0.5)

    monkeypatch.setattr(zoo.deploy.quantize, "calibration_images", constant)
    out = tmp_path / "export"
    args = ("precision=int8", "calibration_samples=32")
    proc = zoo_in_process("export", f"checkpoint={digits_run}", f"output={out}", *args)
    assert_one_line_error(proc, "test accuracy", "export.max_metric_drop=0.01", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_fp16_export_keeps_float32_io_and_passes_its_parity_gate(digits_run, tmp_path):
    import onnxruntime as ort

    out, card = _export(tmp_path, digits_run, precision="fp16")
    record = card["precision"]
    assert record["precision"] == "fp16" and record["io"] == "float32"
    parity = record["parity"]
    assert parity["tolerance"] == {"probabilities": 5e-3}
    assert 0 < parity["measured"]["probabilities"] <= 5e-3  # half precision really changed the numbers
    assert parity["provider"] == "CPUExecutionProvider" and "fp16 targets GPUs" in parity["note"]

    proto = onnx.load(str(out / "model.onnx"))
    halves = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert halves, "the weights are float16"
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"]


def test_fp16_parity_is_gated_per_role():
    from zoo.deploy.quantize import half_parity

    roles = tasks.match("segmentation", ["mask", "probs"])
    deploy = SimpleNamespace(roles=roles, task="segmentation")
    mask = torch.zeros(2, 8, 8, dtype=torch.int64)
    probs = torch.full((2, 3, 8, 8), 1 / 3)
    near = {"mask": mask.numpy().copy(), "probs": probs.numpy() + 1e-3}
    assert half_parity(deploy, near, (mask, probs))["tolerance"] == {"mask": 1e-2, "probs": 5e-3}
    flipped = {**near, "mask": mask.numpy().copy()}
    flipped["mask"][0, :2, :] = 1  # 16 of 128 pixels: 12.5% > 1%
    with pytest.raises(ZooError, match=r"'mask' \(role mask\) differs .* in 12\.50% of its elements.*allows 0\.01"):
        half_parity(deploy, flipped, (mask, probs))
    off = {**near, "probs": probs.numpy() + 0.02}
    with pytest.raises(ZooError, match=r"'probs' \(role probabilities\) differs .* by 0\.02 .*allows 0\.005"):
        half_parity(deploy, off, (mask, probs))


def test_int8_of_an_ensemble_is_refused_in_one_line(digits_run, tmp_path):
    ckpts = f"{digits_run}/checkpoints/best.pt,{digits_run}/checkpoints/last.pt"
    out = tmp_path / "export"
    proc = zoo_in_process("export", f"checkpoint={ckpts}", f"output={out}", "precision=int8")
    assert_one_line_error(proc, "precision=int8", "ensemble", "fp32 or fp16")
    assert list(tmp_path.iterdir()) == []
