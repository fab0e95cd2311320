"""Explanations that deploy: `export.outputs=[embedding, cam]` adds the penultimate embedding and class-activation
maps to the ONNX graph, described in its metadata, checked for parity, and returned by `zoo predict` on request."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from zoo.data import build_data
from zoo.deploy.export import export, export_model, export_settings
from zoo.deploy.graph import DeployModel
from zoo.errors import ZooError
from zoo.model import build_model
from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint
from zoo_plugins.interpretation.embeddings import embed


@pytest.fixture(scope="module")
def explained_export(digits_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "explained"
    card = export(digits_run, out, {"outputs": ["embedding", "cam"]})
    return out, card


@pytest.mark.slow
def test_an_app_reading_only_the_onnx_file_finds_embedding_and_cam_through_the_metadata(explained_export, digits_run):
    out, card = explained_export
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    by_role = {e["role"]: e for e in meta["zoo.outputs"]}
    assert by_role["embedding"]["extra"] and by_role["cam"]["extra"] and "extra" not in by_role["probabilities"]
    assert by_role["cam"]["shape"][:2] == ["batch", len(meta["zoo.labels"])] and by_role["embedding"]["about"]

    model, info = model_from_checkpoint(load_checkpoint(digits_run))
    x = torch.stack([build_data(small_config(), 0).test[i][0] for i in range(8)])
    # what an app decodes: 8-bit RGB pixels, N x H x W x 3 (zoo.input); the graph turns them into the network's input
    pixels = (x * 255).round().to(torch.uint8)
    x = pixels.float() / 255
    feed = {session.get_inputs()[0].name: pixels.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).contiguous().numpy()}
    assert meta["zoo.input"]["dtype"] == "uint8" and meta["zoo.input"]["layout"] == "NHWC"
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    embedding, cam = got[by_role["embedding"]["name"]], got[by_role["cam"]["name"]]
    tolerance = card["parity"]["tolerance"]
    # the vectors zoo explain embeddings projects, from onnxruntime alone
    assert np.abs(embedding - embed(model.eval(), x)).max() <= tolerance
    # average pooling: a class's map averaged over its pixels is the class's logit, so softmax gives the probabilities
    logits = torch.from_numpy(cam).mean((2, 3))
    assert np.abs(torch.softmax(logits, 1).numpy() - got[by_role["probabilities"]["name"]]).max() <= 1e-5
    assert set(card["parity"]["max_abs_diff"]) == {"probabilities", "embedding", "cam"}
    assert max(card["parity"]["max_abs_diff"].values()) <= tolerance


def test_predict_returns_extra_outputs_on_request_and_refuses_those_the_model_lacks(
    explained_export, digits_export, tmp_path
):
    from PIL import Image

    out, card = explained_export
    image = tmp_path / "seven.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(image)
    proc = zoo_in_process("predict", f"model={out / 'model.onnx'}", f"input={image}", "outputs=[embedding,cam]")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    embedding, cam = card["outputs"][1], card["outputs"][2]
    assert len(row["embedding"]) == embedding["shape"][1] and np.array(row["cam"]).shape == tuple(cam["shape"][1:])
    plain = json.loads(zoo_in_process("predict", f"model={out / 'model.onnx'}", f"input={image}").stdout)
    assert "embedding" not in plain and plain["label"] == row["label"]
    assert_one_line_error(
        zoo_in_process("predict", f"model={digits_export / 'model.onnx'}", f"input={image}", "outputs=embedding"),
        "outputs=embedding: this model has no embedding output",
        "export.outputs=[embedding]",
    )
    assert_one_line_error(
        zoo_in_process("predict", f"model={out / 'model.onnx'}", f"input={image}", "outputs=embeding"),
        "did you mean 'embedding'",
    )


@pytest.mark.parametrize(
    "head,data",
    [({"name": "classification", "pool": "flatten"}, "digits"), ({"name": "classification", "hidden": [16]}, "digits")],
    ids=["flatten", "hidden-layer"],
)
def test_cam_for_a_head_without_global_pooling_is_one_line_and_writes_nothing(tmp_path, head, data):
    cfg = small_config(**{"model.width": 4, "model.depth": 2})
    cfg["head"] = {**cfg["head"], **head}
    info = build_data(cfg, 0).info
    model = build_model(cfg, info)
    ecfg = export_settings(cfg, {"outputs": ["cam"]})
    with pytest.raises(ZooError, match=r"export.outputs=\[cam\]: ClassificationHead gives no class-activation maps"):
        export_model(model, info, cfg, tmp_path / "out", ecfg, torch.rand(2, 1, 32, 32), "random")
    assert not list(tmp_path.iterdir())
    assert DeployModel(model, extras=["embedding"]).output_names == ("probabilities", "embedding")


def test_export_outputs_is_checked_like_any_setting(digits_run, tmp_path):
    assert_one_line_error(
        zoo_in_process("export", f"checkpoint={digits_run}", f"output={tmp_path / 'x'}", "outputs=[embeding]"),
        "export.outputs",
        "embeding",
    )
    assert not (tmp_path / "x").exists()
