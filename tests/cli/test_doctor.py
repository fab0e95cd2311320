"""`zoo doctor`: what this machine gives zoo, from the functions training and serving use, on any machine."""

from __future__ import annotations

import json

import onnxruntime as ort
import torch

from tests.conftest import assert_one_line_error, zoo_in_process
from zoo.cli.doctor import lines
from zoo.runtime.options import CPU, CUDA, select_providers


def test_doctor_reports_what_training_and_serving_will_use_here():
    proc = zoo_in_process("doctor", "--json")
    assert proc.returncode == 0 and not proc.stderr, proc
    r = json.loads(proc.stdout)
    assert r["torch"]["version"] == torch.__version__ and len(r["torch"]["devices"]) == torch.cuda.device_count()
    assert r["onnxruntime"]["available"] == ort.get_available_providers()
    assert r["onnxruntime"]["auto"] == select_providers("auto")  # what a session with providers=auto takes
    assert r["plugins"]["packages"]["zoo"] > 30 and r["plugins"]["failed"] == {}
    text = zoo_in_process("doctor")
    assert text.returncode == 0
    for row in ("zoo", "python", "cores", "torch", "onnxruntime", "serving", "tensorrt", "plugins"):
        assert any(line.split()[0] == row for line in text.stdout.splitlines()), row


def _report(devices: list[str], auto: list[str], gpu: bool, failed: dict) -> dict:
    return {
        "zoo": {"version": "9", "plugin_api": 2, "path": "/z"},
        "python": {"version": "3.11", "executable": "/py", "platform": "Linux"},
        "cores": {"physical_usable": 8, "logical": 16},
        "torch": {"version": "2", "cuda": "13.0", "cudnn": 91000, "devices": devices, "bf16": True, "threads": 8},
        "onnxruntime": {"version": "1", "available": [CUDA, CPU], "gpu_usable": gpu, "tensorrt_loadable": False,
                        "auto": auto},
        "plugins": {"packages": {"zoo": 51, "zoo-acme": 3}, "failed": failed},
    }  # fmt: skip


def test_doctor_says_why_a_session_runs_on_the_cpu_and_which_packages_failed():
    gpu = "\n".join(lines(_report(["NVIDIA H200 (139 GiB)"], [CUDA, CPU], True, {})))
    assert "CUDA 13.0, cuDNN 91000, bf16 yes: NVIDIA H200 (139 GiB)" in gpu
    assert f"providers=auto takes {CUDA}, {CPU}\n" in gpu and "failed: none" in gpu
    cpu = "\n".join(lines(_report([], [CPU], False, {"zoo-broken": "ImportError: no module named x"})))
    assert "no CUDA device: training runs on the CPU" in cpu and f"takes {CPU} (no usable GPU)" in cpu
    assert "zoo (51), zoo-acme (3); failed: zoo-broken: ImportError: no module named x" in cpu


def test_doctor_refuses_an_unknown_argument_in_one_line():
    assert_one_line_error(zoo_in_process("doctor", "--jsn"), "unknown argument for zoo doctor '--jsn'", "--json")
