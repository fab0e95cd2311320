"""zoo.runtime: no torch, provider choice, input checks before onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from zoo.errors import ZooError


@pytest.mark.slow
def test_runtime_imports_no_torch(digits_export):
    code = (
        "import sys; sys.modules['torch'] = None; import zoo.runtime, numpy as np; "
        f"m = zoo.runtime.Model(r'{digits_export / 'model.onnx'}'); "
        "r = m.predict(np.zeros((2, 32, 32, 3), np.uint8)); "
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]; print(r[0]['label'], m.providers)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "CPUExecutionProvider" in proc.stdout
    assert proc.stderr == ""  # no onnxruntime CUDA load errors on a machine without a GPU


def test_bare_import_succeeds_without_torch():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; import zoo.runtime"], capture_output=True
    )
    assert proc.returncode == 0, proc.stderr


def test_providers_fall_back_to_cpu_without_a_gpu():
    from zoo.runtime import gpu_usable, select_providers

    if gpu_usable():
        pytest.skip("this machine has a GPU")
    assert select_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ZooError, match="no usable GPU"):
        select_providers("cuda")
    with pytest.raises(ZooError, match="providers='gpu' is not one of"):
        select_providers("gpu")


@pytest.mark.parametrize(
    "batch,message",
    [
        (np.zeros((2, 32, 32, 3), np.float32), r"must be uint8 \[N, H, W, 3\].*got float32"),
        (np.zeros((32, 32, 3), np.uint8), "must have rank 4"),
        (np.zeros((2, 32, 32, 1), np.uint8), r"must be uint8 .*got shape \[2, 32, 32, 1\]"),
        (np.zeros((2, 3, 32, 32), np.uint8), r"got shape \[2, 3, 32, 32\]"),
        ([[0.0]], "must be a numpy array"),
    ],
)
def test_inputs_are_checked_before_onnxruntime(digits_export, batch, message):
    from zoo.runtime import Model

    m = Model(digits_export / "model.onnx", "cpu")
    with pytest.raises(ZooError, match=message):
        m.run(batch)


def test_preprocess_reads_files_and_arrays(digits_export, tmp_path):
    from PIL import Image

    from zoo.runtime import Model

    m = Model(digits_export / "model.onnx", "cpu")
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(tmp_path / "rgb.png")  # the graph resizes it
    batch = m.preprocess([tmp_path / "rgb.png", np.zeros((64, 48), np.uint8)])
    assert batch.shape == (2, 64, 48, 3) and batch.dtype == np.uint8  # pixels, as decoded
    assert batch[0].max() == 200 and batch[1].max() == 0
    assert len(m.predict(batch, topk=3)[0]["topk"]) == 3
    with pytest.raises(ZooError, match="a batch holds images of one size"):
        m.preprocess([tmp_path / "rgb.png", np.zeros((10, 10), np.uint8)])
    with pytest.raises(ZooError, match="does not exist"):
        m.preprocess([tmp_path / "missing.png"])


def test_a_non_zoo_model_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from zoo.runtime import Model

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(
        helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "plain.onnx"
    )
    with pytest.raises(ZooError, match="has no zoo metadata"):
        Model(tmp_path / "plain.onnx")


def test_parity_compares_floats_by_value_and_integers_by_mismatch_fraction():
    from zoo.deploy.export import compare_outputs

    ecfg = {"parity_tolerance": 1e-4, "parity_mismatch": 0.01}
    mask = np.zeros((1, 10, 10), dtype=np.int64)
    flipped = mask.copy()
    flipped[0, 0, 0] = 2  # one pixel of 100 at a near-tie: within 1%
    big = np.array([[12345.0]], dtype=np.float32)
    diffs, mismatch, failure = compare_outputs(
        {"mask": flipped, "values": big + 0.5}, {"mask": mask, "values": big}, ecfg
    )
    assert failure is None and mismatch == {"mask": 0.01} and diffs["values"] == 0.5  # 0.5 in 12345 is 4e-5 relative
    flipped[0, 0, 1] = 1
    _, _, failure = compare_outputs({"mask": flipped}, {"mask": mask}, ecfg)
    assert (
        failure == "ONNX output 'mask' differs from PyTorch in 2.000% of its elements (> export.parity_mismatch=0.01)"
    )
    _, _, failure = compare_outputs({"p": np.array([0.5002])}, {"p": np.array([0.5])}, ecfg)
    assert failure.startswith("ONNX output 'p' differs from PyTorch by 0.0002")


def test_every_public_runtime_name_is_the_object_its_module_defines_even_with_every_module_loaded():
    """zoo.runtime's names are looked up lazily; a module of the wing named like a public name would shadow it
    once imported (importing `zoo.runtime.decode` set `zoo.runtime.decode` to the module, not the function)."""
    import importlib
    import pkgutil

    import zoo.runtime

    for info in pkgutil.iter_modules(zoo.runtime.__path__):
        importlib.import_module(f"zoo.runtime.{info.name}")
    for name, where in zoo.runtime._WHERE.items():
        assert getattr(zoo.runtime, name) is getattr(importlib.import_module(where), name), name
