"""Golden vectors: sample images beside model.onnx with what the export gives for them, and `zoo verify`.

`zoo export` writes EXPORT/golden/: a few PNGs (the parity images, at the network's size and at an odd size,
stored as 8-bit grey or RGB, 16-bit, palette and RGBA files so that every decoding rule of zoo.format is
exercised) and golden.json: for each file, the decoded pixels' and the graph input's shape and sha256, every
output (dtype, shape, values) and `zoo predict`'s JSON. A client in any language checks itself against them;
`zoo verify EXPORT` checks an export (and this machine's onnxruntime, Pillow and numpy) the same way.
Torch-free: onnxruntime, numpy, Pillow and jsonschema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from zoo.deploy import schema
from zoo.errors import ZooError
from zoo.runtime import Model

GOLDEN_FORMAT = "zoo.golden/1"
SCORE_TOLERANCE = 1e-5  # float outputs: |diff|, relative to the value where it is above 1
KINDS = ("grey8", "rgb8", "grey16", "palette", "rgba")


def sha256(a: np.ndarray) -> str:
    """The sha256 of an array's bytes in C order (uint8 pixels; float32 little-endian)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _save(rgb: np.ndarray, kind: str, path: Path) -> str:
    """Write HxWx3 uint8 pixels as a PNG of `kind` (grey kinds only for grey pixels; RGB otherwise) and return
    the kind written; decoding it by zoo.format's rules gives `rgb` back, except for a palette of a colour image
    (quantised: golden.json holds what decoding gives)."""
    from PIL import Image

    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    if kind == "grey16" and grey:
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)  # v * 257 >> 8 == v
    elif kind == "palette":
        Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path)
    elif kind == "rgba":
        alpha = (np.arange(rgb.shape[0] * rgb.shape[1]) * 37 % 256).astype(np.uint8).reshape(rgb.shape[:2])
        Image.fromarray(np.dstack([rgb, alpha])).save(path)  # alpha varies; decoding drops it
    elif kind == "grey8" and grey:
        Image.fromarray(rgb[..., 0]).save(path)
    else:
        Image.fromarray(rgb).save(path)
        return "rgb8"
    return kind


def _pixels(batch) -> list[np.ndarray]:
    """A parity batch as HxWx3 uint8 images (uint8 NHWC as it is; float NCHW in [0, 1] rounded)."""
    a = batch.numpy()
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in a]


def _arrays(batch) -> list[np.ndarray]:
    """A parity batch of a model of bands as the H x W x C arrays its golden .npy files hold: uint8 NHWC as it
    is, float NCHW as float32 (data that need not be 8-bit)."""
    a = batch.numpy()
    return list(a) if a.dtype == np.uint8 else list(np.ascontiguousarray(a.transpose(0, 2, 3, 1), dtype=np.float32))


def _record(model, path: Path) -> dict[str, Any]:
    """What the export gives for one file: decoded pixels (a model of bands: the array), graph input, outputs,
    predict JSON."""
    rgb = model.input.load(path)
    item, original = model.prepare(path)
    batch = item[None]
    outputs = model.run(batch)
    prediction = model.predict(batch, original_sizes=[original])[0]
    prediction.pop("mask", None)
    return {
        "decoded": {"shape": list(rgb.shape), "sha256": sha256(rgb)},
        "input": {"shape": list(batch.shape), "dtype": str(batch.dtype), "sha256": sha256(batch)},
        "outputs": {
            n: {"dtype": str(v.dtype), "shape": list(v.shape), "data": v.ravel().tolist()} for n, v in outputs.items()
        },
        "predict": prediction,
    }


def write_golden(folder: Path, onnx_path: Path, batches: list, count: int = 6) -> dict[str, Any]:
    """Write folder/golden/ (sample PNGs + golden.json) from the parity batches; returns a summary for the card."""
    model = Model(onnx_path, providers="cpu")
    out = folder / "golden"
    out.mkdir()
    bands = model.input.bands  # N-channel arrays: .npy samples instead of images
    images = [im for b in batches for im in (_arrays(b) if bands else _pixels(b))[: -(-count // len(batches))]]
    samples = []
    for i, rgb in enumerate(images):
        path = out / f"sample_{i}.{'npy' if bands else 'png'}"
        if bands:
            np.save(path, rgb, allow_pickle=False)
        kind = "array" if bands else _save(rgb, KINDS[i % len(KINDS)], path)
        samples.append({"file": f"golden/{path.name}", "kind": kind, **_record(model, path)})
    (out / "golden.json").write_text(
        json.dumps({"format": GOLDEN_FORMAT, "tolerance": SCORE_TOLERANCE, "samples": samples}, indent=1)
    )
    return {"file": "golden/golden.json", "samples": len(samples), "tolerance": SCORE_TOLERANCE}


def _compare(name: str, got: np.ndarray, want: dict, tol: float) -> str | None:
    expected = np.asarray(want["data"], dtype=np.float64).reshape(want["shape"])
    if list(got.shape) != list(want["shape"]):
        return f"output {name!r} has shape {list(got.shape)}, golden {want['shape']}"
    if got.size == 0:
        return None
    d = np.abs(got.astype(np.float64) - expected)
    if np.issubdtype(got.dtype, np.floating):
        worst = float((d / np.maximum(1.0, np.abs(expected))).max())
        return f"output {name!r} differs by {worst:.3g} (> {tol})" if worst > tol else None
    wrong = int((d > 0).sum())
    return f"output {name!r} differs in {wrong} of {got.size} elements" if wrong else None


def verify(export_dir: str | Path) -> tuple[list[str], int]:
    """Check EXPORT/model.onnx against EXPORT/golden/golden.json: (one line per failure, samples checked)."""
    root = Path(export_dir)
    golden_file = root / "golden" / "golden.json"
    if not (root / "model.onnx").is_file():
        raise ZooError(f"{str(root)!r} holds no model.onnx (give the folder `zoo export` wrote)")
    if not golden_file.is_file():
        raise ZooError(f"{str(root)!r} holds no golden/golden.json (exports by zoo 0.x before zoo.format 3 have none)")
    golden = json.loads(golden_file.read_text())
    if golden.get("format") != GOLDEN_FORMAT:
        raise ZooError(f"{golden_file} is format {golden.get('format')!r}; this zoo reads {GOLDEN_FORMAT}")
    model = Model(root / "model.onnx", providers="cpu")
    failures = []
    try:
        schema.validate(model.metadata, str(root / "model.onnx"))
    except ZooError as e:
        failures.append(str(e))
    tol = float(golden.get("tolerance", SCORE_TOLERANCE))
    for s in golden["samples"]:
        where = s["file"]
        try:
            rgb = model.input.load(root / s["file"])
            batch = model.prepare(root / s["file"])[0][None]
        except ZooError as e:
            failures.append(f"{where}: {e}")
            continue
        if sha256(rgb) != s["decoded"]["sha256"]:
            failures.append(f"{where}: decoded pixels differ from the golden ones (sha256 of {list(rgb.shape)} uint8)")
        if sha256(batch) != s["input"]["sha256"]:
            failures.append(f"{where}: the graph input differs from the golden one (sha256 of {list(batch.shape)})")
        outputs = model.run(batch)
        for name, want in s["outputs"].items():
            problem = _compare(name, outputs[name], want, tol) if name in outputs else "is not in the graph"
            if problem:
                failures.append(f"{where}: {problem}")
    return failures, len(golden["samples"])
