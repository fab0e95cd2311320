"""zoo.runtime's session options: IO binding through DLPack, provider options passed through, tuned CPU
sessions, the same keys on `zoo predict` and `zoo bench inference`, which compares like with like."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import assert_one_line_error, zoo_in_process
from zoo.errors import ZooError
from zoo.runtime import (
    CPU,
    CUDA,
    TENSORRT,
    Model,
    check_options,
    physical_cores,
    provider_config,
    runtime_options,
    select_providers,
    session_options,
)

EVERY_PROVIDER = [TENSORRT, CUDA, CPU]


@pytest.mark.slow
def test_io_binding_takes_dlpack_tensors_in_and_gives_arrays_or_device_values_out(digits_float_export, monkeypatch):
    path = digits_float_export / "model.onnx"
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    expected = Model(path, "cpu").run(x)["probabilities"]
    bound = Model(path, "cpu", io_binding=True)
    monkeypatch.setattr(bound.session, "run", None)  # only run_with_iobinding may serve it
    got = bound.run(torch.from_numpy(x))
    assert isinstance(got["probabilities"], np.ndarray)
    np.testing.assert_allclose(got["probabilities"], expected, atol=1e-6)
    # a torch tensor in with the default options is bound too (DLPack, no copy), and device outputs come back
    # as OrtValues any framework takes through DLPack
    on_device = Model(path, "cpu").run(torch.from_numpy(x), device_output=True)["probabilities"]
    assert isinstance(on_device, ort.OrtValue) and on_device.device_name() == "cpu"
    np.testing.assert_allclose(torch.from_dlpack(on_device).numpy(), expected, atol=1e-6)
    assert bound.predict(torch.from_numpy(x))[0]["index"] == int(expected[0].argmax())


class _CudaTensor:
    """A DLPack producer that says its memory is on CUDA device 0 (no GPU is touched: it is refused first)."""

    def __dlpack__(self, stream=None):
        raise AssertionError("a device tensor must be refused before it is read")

    def __dlpack_device__(self):
        return (2, 0)


@pytest.mark.parametrize(
    "batch,message",
    [
        (torch.ones(2, 1, 32, 32, requires_grad=True), "cannot be passed through DLPack: Can't export tensors"),
        (torch.ones(2, 1, 32, 32).transpose(2, 3), "it is not contiguous"),
        (torch.ones(2, 1, 32, 32, dtype=torch.float64), "must be float32"),
        (torch.ones(2, 3, 32, 32), "must be float32 [N, 1, 32, 32] (pixels in [0, 1]), got shape [2, 3, 32, 32]"),
        (_CudaTensor(), "input is on device 0 of DLPack device type 2, but this session runs on CPUExecutionProvider"),
    ],
)
def test_dlpack_inputs_are_checked_in_one_line(digits_float_export, batch, message):
    with pytest.raises(ZooError, match=re.escape(message)):
        Model(digits_float_export / "model.onnx", "cpu", io_binding=True).run(batch)


def test_provider_options_are_built_as_asked_and_only_as_asked():
    chosen = select_providers("tensorrt", available=EVERY_PROVIDER, gpu=True, tensorrt=True)
    assert chosen == EVERY_PROVIDER
    opts = runtime_options(
        {"trt_cache": "engines", "trt_fp16": "true", "cuda_graph": True, "prefer_nhwc": "1", "device_id": "1"}
    )
    trt, cuda, cpu = provider_config(chosen, opts)
    assert trt == (
        TENSORRT,
        {
            "device_id": "1",
            "trt_fp16_enable": "True",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": "engines",
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": "engines",
            "trt_cuda_graph_enable": "True",
        },
    )
    # TensorRT leads, so the CUDA graph is TensorRT's; CUDA (its fallback) keeps its own options
    assert cuda == (CUDA, {"device_id": "1", "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1"})
    assert cpu == CPU
    graph = provider_config([CUDA, CPU], runtime_options({"cuda_graph": True, "cudnn_conv_algo_search": "HEURISTIC"}))
    assert graph[0] == (CUDA, {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC", "enable_cuda_graph": "1"})
    assert provider_config([CUDA, CPU], runtime_options()) == [
        (CUDA, {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}),
        CPU,
    ]
    assert select_providers("auto", available=EVERY_PROVIDER, gpu=True, tensorrt=False) == [CUDA, CPU]
    assert select_providers("auto", available=EVERY_PROVIDER, gpu=False) == [CPU]


def test_gpu_mem_limit_caps_the_cuda_arena_and_is_refused_where_it_means_nothing():
    """gpu_mem_limit (GiB) reaches CUDA's provider options in bytes, under TensorRT too (CUDA is its fallback);
    on a CPU session it is refused in one line, like every GPU option; on the command line it is declared."""
    limited = runtime_options({"gpu_mem_limit": "2"})
    assert provider_config([CUDA, CPU], limited)[0][1]["gpu_mem_limit"] == str(2 * 2**30)
    assert provider_config([TENSORRT, CUDA, CPU], limited)[1][1]["gpu_mem_limit"] == str(2 * 2**30)
    assert "gpu_mem_limit" not in provider_config([CUDA, CPU], runtime_options())[0][1]
    with pytest.raises(ZooError, match="gpu_mem_limit= applies to the CUDA and TensorRT providers"):
        check_options(limited, [CPU])
    with pytest.raises(ZooError, match=r"gpu_mem_limit='-1' must be an integer in \[0, 4096\]"):
        runtime_options({"gpu_mem_limit": "-1"})
    proc = zoo_in_process("predict", "--help")
    assert "gpu_mem_limit=N" in proc.stdout and "in GiB; 0 = no limit" in proc.stdout


def test_model_hands_the_provider_options_to_onnxruntime(digits_float_export, monkeypatch, tmp_path):
    seen = {}

    def session(path, sess_options=None, providers=None):
        seen.update(providers=providers, threads=sess_options.intra_op_num_threads)
        raise RuntimeError("no GPU here")

    monkeypatch.setattr("zoo.runtime.session.select_providers", lambda requested: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: None, raising=False)
    cache = tmp_path / "engines"
    with pytest.raises(ZooError, match="onnxruntime cannot load .*: no GPU here"):
        Model(digits_float_export / "model.onnx", "tensorrt", trt_cache=str(cache), trt_fp16=True, threads=3)
    assert seen["providers"][0][1]["trt_engine_cache_path"] == str(cache) and cache.is_dir()
    assert seen["providers"][0][1]["trt_fp16_enable"] == "True" and seen["threads"] == 3


@pytest.mark.parametrize(
    "requested,kwargs,message",
    [
        ("cuda", {"available": [CPU], "gpu": True}, "CUDAExecutionProvider cannot run here: this onnxruntime lacks it"),
        ("tensorrt", {"available": EVERY_PROVIDER, "gpu": True, "tensorrt": False}, "(libnvinfer) do not load"),
        ("tensorrt", {"available": EVERY_PROVIDER, "gpu": False}, "no usable GPU was found; available: CPUExec"),
    ],
)
def test_a_missing_provider_is_one_line_naming_it_and_the_available_ones(requested, kwargs, message):
    with pytest.raises(ZooError, match=re.escape(message)):
        select_providers(requested, **kwargs)


def test_missing_providers_and_bad_options_are_one_line_errors_on_the_command_line(digits_float_export, tmp_path):
    from zoo.runtime import gpu_usable

    model = f"model={digits_float_export / 'model.onnx'}"
    if not gpu_usable():
        proc = zoo_in_process("predict", model, f"input={tmp_path}", "provider=tensorrt")
        assert_one_line_error(proc, "TensorrtExecutionProvider cannot run here", "available: CPUExecutionProvider")
        gpu_only = zoo_in_process("bench", "inference", model, "cuda_graph=true")
        assert_one_line_error(gpu_only, "cuda_graph= applies to the CUDA and TensorRT providers")
    assert_one_line_error(zoo_in_process("predict", model, f"input={tmp_path}", "thread=2"), "did you mean 'threads'")
    assert_one_line_error(zoo_in_process("bench", "inference", model, "spinning=sometimes"), "auto, on, off")
    assert_one_line_error(zoo_in_process("bench", "inference", model, "batch=1,0"), "integers >= 1")
    missing = tmp_path / "no-such-export"  # named as given (it read '/model.json not found' before)
    assert_one_line_error(zoo_in_process("bench", "inference", f"model={missing}"), f"model={missing} does not exist")


def test_cpu_sessions_are_tuned_by_default(digits_float_export, tmp_path):
    import os

    so = session_options(runtime_options())
    assert so.intra_op_num_threads == physical_cores() and 1 <= physical_cores() <= os.cpu_count()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert session_options(runtime_options(), shared=True).get_session_config_entry(
        "session.intra_op.allow_spinning"
    ) == "0"  # fmt: skip
    assert session_options(runtime_options({"spinning": "on"}), shared=True).get_session_config_entry(
        "session.intra_op.allow_spinning"
    ) == "1"  # fmt: skip
    first = Model(digits_float_export / "model.onnx", "cpu")
    second = Model(digits_float_export / "model.onnx", "cpu")  # another session open in this process: no spinning
    assert second.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert first.session.get_session_options().intra_op_num_threads == physical_cores()
    saved = tmp_path / "opt" / "model.optimized.onnx"
    Model(digits_float_export / "model.onnx", "cpu", optimized_model=str(saved), optimization="extended")
    assert saved.is_file() and sorted(p.name for p in saved.parent.iterdir()) == [saved.name]
    assert ort.InferenceSession(str(saved), providers=[CPU]).get_inputs()[0].name == "input"
    with pytest.raises(ZooError, match="exists; name a new file"):
        Model(digits_float_export / "model.onnx", "cpu", optimized_model=str(saved))


def test_predict_takes_the_runtime_options_and_answers_the_same(digits_float_export, tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((32, 32), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    model = f"model={digits_float_export / 'model.onnx'}"
    # both on the CPU, like for like: on a GPU machine providers=auto takes CUDA, whose sums round differently
    plain = zoo_in_process("predict", model, f"input={tmp_path}", "providers=cpu")
    tuned = zoo_in_process("predict", model, f"input={tmp_path}", "provider=cpu", "threads=1", "io_binding=true")
    assert plain.returncode == tuned.returncode == 0, tuned.stderr
    assert plain.stdout == tuned.stdout and len(plain.stdout.splitlines()) == 3


@pytest.mark.slow
def test_bench_inference_compares_pytorch_and_onnxruntime_on_the_cpu_for_each_export(digits_float_export, tmp_path):
    import json
    import shutil

    # an int8 export of the same checkpoint beside it (its card as zoo export writes one; the graph is fp32's)
    exports = tmp_path / "exports"
    shutil.copytree(digits_float_export, exports / "digits")
    shutil.copytree(digits_float_export, exports / "digits_int8")
    card = json.loads((exports / "digits_int8" / "model.json").read_text())
    card["precision"] = {"precision": "int8", "metric": {"name": "accuracy", "int8": 0.9, "drop": 0.004}}
    (exports / "digits_int8" / "model.json").write_text(json.dumps(card))
    threads = torch.get_num_threads()
    # providers=cpu: on a GPU machine auto adds CUDA rows; this test reads the CPU's
    proc = zoo_in_process(
        "bench", "inference", f"model={exports / 'digits'}", "batch=1,3", "repeats=2", "providers=cpu"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"threads {physical_cores()} (onnxruntime intra-op and torch)" in lines[0]
    assert lines[2].strip().startswith("int8: ") and "test accuracy 0.9 (drop 0.004)" in lines[2]
    assert [line.strip() for line in lines if line.strip().startswith("batch")] == ["batch 1, cpu", "batch 3, cpu"]
    rows = [line for line in lines if " ms " in line]
    assert len(rows) == 6  # per batch: PyTorch fp32 on the CPU, then the fp32 and int8 exports on the CPU
    assert all("pytorch eager fp32" in row and row.rstrip().endswith("x1.00  -") for row in rows[::3])
    assert [r.strip().split("  ")[0] for r in rows[1:3]] == ["onnxruntime fp32 (CPU)", "onnxruntime int8 (CPU)"]
    for row in rows[1:3] + rows[4:6]:
        ratio, delta = re.search(r"x(\d+\.\d+)\s+(\S+)$", row).groups()
        assert float(ratio) > 0 and float(delta) < 1e-4  # parity against PyTorch fp32 on the same input
    assert torch.get_num_threads() == threads  # the bench gave torch the session's threads, then put them back
    card["source"]["checkpoint"] = "elsewhere.pt"
    (exports / "digits_int8" / "model.json").write_text(json.dumps(card))
    mixed = zoo_in_process("bench", "inference", f"model={exports / 'digits'},{exports / 'digits_int8'}")
    assert_one_line_error(mixed, "compares exports of one checkpoint")


def test_the_cuda_graph_path_serves_from_fixed_buffers_and_one_shape(digits_float_export):
    """cuda_graph's IO path (fixed input and output buffers, the input copied in place, one shape) run on CPU
    buffers: no GPU here, so the session itself is a plain CPU one, but the path is the one a GPU takes."""
    import dataclasses

    m = Model(digits_float_export / "model.onnx", "cpu")
    expected = m.run(x := np.random.default_rng(1).random((2, 1, 32, 32), dtype=np.float32))["probabilities"]
    m.options = dataclasses.replace(m.options, cuda_graph=True)
    first = m.run(x, device_output=True)["probabilities"]
    np.testing.assert_allclose(m.run(torch.from_numpy(x))["probabilities"], expected, atol=1e-6)
    again = m.run(x[::-1].copy(), device_output=True)["probabilities"]
    assert again.data_ptr() == first.data_ptr()  # the same output buffer, replayed
    np.testing.assert_allclose(again.numpy(), expected[::-1], atol=1e-6)
    with pytest.raises(ZooError, match=re.escape("serves the one input shape it captured, [2, 1, 32, 32]; got [3")):
        m.run(np.zeros((3, 1, 32, 32), np.float32))
