"""Clients beyond Python (issue 12): examples/node (onnxruntime-node) reads an export's metadata, decodes PNGs by
zoo.format's rules and prints what `zoo predict` prints; on every task and the digits export, on images of odd
sizes, grey, RGB, palette, RGBA and 16-bit PNGs, it must agree: identical labels and masks, scores within 1e-5,
boxes IoU >= 0.999. Skipped, with the reason in one line, where node or its packages cannot be had."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HEADS
from zoo.runtime import Model

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
TOL = 1e-5


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """The Node example's command line, its packages installed from the npm registry once (node_modules)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm is not on PATH (install Node.js 18 or newer to run examples/node)")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        # ONNXRUNTIME_NODE_INSTALL=skip: the CPU library ships in the package; no download of GPU binaries
        env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.skip(f"npm install in examples/node failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return [node, str(NODE_DIR / "predict.js")]


def images(folder: Path) -> list[Path]:
    """PNGs of odd sizes in every form the decoding rules cover."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(11)

    def smooth(h, w):  # noise, blurred by upsampling: a picture more than a test pattern
        small = rng.integers(0, 256, (max(2, h // 6), max(2, w // 6), 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))

    made = {
        "rgb_33x47.png": Image.fromarray(smooth(33, 47)),
        "grey_61x29.png": Image.fromarray(smooth(61, 29)[..., 0]),
        "grey16_45x45.png": Image.fromarray(smooth(45, 45)[..., 1].astype(np.uint16) * 257),
        "palette_37x53.png": Image.fromarray(smooth(37, 53)).quantize(32),
        "rgba_50x31.png": Image.fromarray(np.dstack([smooth(50, 31), rng.integers(0, 256, (50, 31), np.uint8)])),
        "rgb_96x80.png": Image.fromarray(smooth(96, 80)),
    }
    for name, im in made.items():
        im.save(folder / name)
    return sorted(folder / n for n in made)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 1.0 if union <= 0 else inter / union


def expected(model: Model, files: list[Path]) -> list[dict]:
    """zoo predict's rows, with each segmentation mask's sha256 (int64, C order) added."""
    rows = model.predict_files(files, topk=3)
    if model.task == "segmentation":
        for row, f in zip(rows, files):
            item, original = model.prepare(f)
            mask = model.predict(item[None], original_sizes=[original])[0]["mask"]
            row["mask_sha256"] = hashlib.sha256(np.ascontiguousarray(mask, dtype=np.int64).tobytes()).hexdigest()
    return rows


def agree(want: dict, got: dict) -> None:
    """A client's row against zoo predict's: identical labels and masks, scores within 1e-5, boxes IoU >= 0.999."""
    where = want["file"]
    if "topk" in want:
        assert (got["label"], got["index"]) == (want["label"], want["index"]), where
        assert [t["label"] for t in got["topk"]] == [t["label"] for t in want["topk"]], where
        for a, b in zip(got["topk"], want["topk"]):
            assert abs(a["score"] - b["score"]) <= TOL, (where, a, b)
    elif "values" in want:
        assert got["values"].keys() == want["values"].keys(), where
        for k, v in want["values"].items():
            assert abs(got["values"][k] - v) <= TOL * max(1.0, abs(v)), (where, k)
    elif "pixels" in want:
        assert got["size"] == want["size"] and got["mask_sha256"] == want["mask_sha256"], where
        assert got["pixels"] == want["pixels"], where
    else:
        assert len(got["detections"]) == len(want["detections"]), where
        for a, b in zip(got["detections"], want["detections"]):
            assert (a["label"], a["index"]) == (b["label"], b["index"]), where
            assert abs(a["score"] - b["score"]) <= TOL and _iou(a["box"], b["box"]) >= 0.999, (where, a, b)


@pytest.mark.slow
def test_the_node_client_agrees_with_zoo_predict_on_every_task(node_client, digits_export, exports, tmp_path):
    files = images(tmp_path / "images")
    for name, folder in {"digits": digits_export, **{task: exports[task] for task in HEADS}}.items():
        model = Model(folder / "model.onnx", "cpu")
        want = expected(model, files)
        proc = subprocess.run(
            [*node_client, str(folder / "model.onnx"), *map(str, files), "--topk=3", "--mask-hash"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, (name, proc.stderr)
        got = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [g["file"] for g in got] == [w["file"] for w in want], name
        for w, g in zip(want, got):
            agree(w, g)
        if name == "detection":
            assert sum(len(w["detections"]) for w in want) > 0  # boxes were compared, not only empty lists
