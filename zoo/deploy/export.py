"""Export a checkpoint to ONNX with its metadata, check it, and measure parity against PyTorch.

Writes OUTPUT/model.onnx (dynamic batch; normalisation and postprocess inside the graph) and
OUTPUT/model.json (the model card). Everything is built in a temporary folder beside OUTPUT and moved
in only once the checker and the parity check have passed: a failed export leaves nothing behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import tasks
from zoo.data import build_data
from zoo.deploy import schema
from zoo.deploy.graph import DeployModel, Ensemble, trace_onnx
from zoo.deploy.preprocess import (
    UINT8_MIN_OPSET,
    Preprocess,
    Served,
    as_pixels,
    name_output_dims,
    odd_sized,
    spell_out_reshapes,
)
from zoo.deploy.quantize import check_precision, convert
from zoo.deploy.verify import write_golden
from zoo.errors import ZooError, make_folder
from zoo.model import ZooModel
from zoo.plugin import registry
from zoo.runtime import Model
from zoo.tasks import EXTRA_ABOUT
from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint
from zoo.train.config import check_node
from zoo.train.schemas import ExportConfig
from zoo.version import __version__

CARD_FORMAT = "zoo.model-card/3"  # 3: the metadata of zoo.format 3 (postprocessing), golden vectors
REDACTED = "<from environment: not exported>"


def redact(config: dict, keys: list[str]) -> dict:
    """A copy of the config without values that came from ${oc.env:...}."""
    out = copy.deepcopy(config)
    for key in keys:
        node, parts = out, key.split(".")
        for p in parts[:-1]:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and parts[-1] in node:
            node[parts[-1]] = REDACTED
    return out


def parity_inputs(cfg: dict, info, n: int) -> tuple[torch.Tensor, str]:
    """Real images from the experiment's test split; random ones only if the data cannot be built."""
    try:
        test = build_data(cfg, int(cfg.get("seed", 0))).test
        k = min(n, len(test))
        if k > 0:
            return torch.stack([test[i][0] for i in range(k)]), f"test split of data={cfg['data']['name']} ({k} images)"
        reason = "empty test split"
    except (ZooError, OSError) as e:
        reason = str(e)
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, info.channels, *info.size, generator=g), f"random images ({reason})"


def output_entries(deploy, expected: tuple[torch.Tensor, ...]) -> list[dict[str, Any]]:
    """Each deployed output as the metadata lists it: its name, its role in the task (zoo.tasks), dtype, symbolic
    axes, and shape (the size of each fixed axis, the name of each dynamic one)."""
    entries = []
    for (name, out), tensor in zip(deploy.roles, expected):
        dynamic = out.dynamic_axes(deploy.dynamic_size)
        shape = [dynamic.get(i, int(n)) for i, n in enumerate(tensor.shape)]
        entries.append({"name": name, "role": out.role, "dtype": out.dtype, "axes": list(out.axes), "shape": shape})
        if name in getattr(deploy, "extras", ()):  # asked for with export.outputs, not part of the task's contract
            entries[-1].update(extra=True, about=EXTRA_ABOUT[out.role])
    return entries


def check_outputs(deploy, expected: tuple[torch.Tensor, ...], where: str) -> None:
    """The deployed outputs' count, dtypes and ranks against the task's table (zoo.tasks): one line on a misfit."""
    extras = len(getattr(deploy, "extras", ()))  # export.outputs, after the task's own
    own = deploy.output_names[: len(deploy.output_names) - extras]
    if len(expected) - extras != len(own):
        raise ZooError(
            f"{where}: postprocess returns {len(expected) - extras} output(s) but output_names names "
            f"{len(own)}: {tuple(own)}"
        )
    found = [(n, str(t.dtype).removeprefix("torch."), t.ndim) for n, t in zip(own, expected)]
    tasks.check_tensors(deploy.task, found, where)


def metadata(
    info,
    outputs: list[dict],
    cfg: dict,
    ecfg: dict,
    dynamic_size: bool = False,
    min_size: int | None = None,
    head_semantics: dict | None = None,
    crop_pct: float | None = None,
) -> dict[str, Any]:
    """What any onnxruntime client needs, as JSON values under `zoo.` keys: zoo.format (zoo/format.schema.json);
    `crop_pct`: the export fits images by a centre crop (export.fit=crop, `crop_fraction`)."""
    form = ecfg.get("input", "float32")
    return {
        "format": schema.FORMAT,
        "version": __version__,
        "task": info.task,
        "labels": list(info.classes),
        "input": schema.input_entry(info, form, dynamic_size, min_size),
        "preprocessing": schema.preprocessing(info, form, dynamic_size, crop_pct),
        "outputs": outputs,
        "postprocessing": schema.postprocessing(info, head_semantics or {}),
        "opset": ecfg["opset"],
        "config": cfg,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_settings(cfg: dict, overrides: dict | None) -> dict:
    """The run's export settings (defaults for keys older checkpoints lack), then the command line's, checked
    against the declared schema (a parity gate switched off by `nan` or a zero sample count is refused)."""
    settings = {**asdict(ExportConfig()), **cfg.get("export", {}), **(overrides or {})}
    check_node("export", settings)
    return settings


def export(checkpoint: str | Path, output: str | Path, overrides: dict | None = None) -> dict:
    """Export `checkpoint` to OUTPUT/model.onnx and OUTPUT/model.json; return the model card."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    ecfg = export_settings(cfg, overrides)
    model, info = model_from_checkpoint(ckpt, str(checkpoint))
    x, source = parity_inputs(cfg, info, int(ecfg["parity_samples"]))
    ckpt_path = Path(checkpoint)
    metrics_file = (ckpt_path if ckpt_path.is_dir() else ckpt_path.parent.parent) / "metrics.json"
    metrics = {}
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        metrics = {s: {k: v for k, v in m.get(s, {}).items() if not isinstance(v, list)} for s in ("test", "val")}
    elif "val" in ckpt:
        metrics = {"val": {k: v for k, v in ckpt["val"].items() if not isinstance(v, list)}}
    return export_model(
        model,
        info,
        cfg,
        output,
        ecfg,
        x,
        source,
        metrics=metrics,
        source={"checkpoint": str(checkpoint), "epoch": ckpt.get("epoch")},
        env_keys=ckpt.get("env_keys", []),
    )


def export_ensemble(checkpoints: list[str], output: str | Path, overrides: dict | None = None) -> dict:
    """Export several checkpoints of one task and label set as one ONNX model averaging their outputs."""
    ckpts = [load_checkpoint(c) for c in checkpoints]
    models, infos = zip(*(model_from_checkpoint(c, str(p)) for c, p in zip(ckpts, checkpoints)))
    first = infos[0]
    for path, info in zip(checkpoints[1:], infos[1:]):
        if (info.task, info.classes, info.channels, info.size) != (
            first.task,
            first.classes,
            first.channels,
            first.size,
        ):
            raise ZooError(
                f"{path} does not match {checkpoints[0]}: an ensemble needs one task, label set, channel count and "
                f"input size ({info.task} {list(info.classes)} {info.channels}x{info.size} vs "
                f"{first.task} {list(first.classes)} {first.channels}x{first.size})"
            )
    cfg = ckpts[0]["config"]
    ecfg = export_settings(cfg, overrides)
    x, source = parity_inputs(cfg, first, int(ecfg["parity_samples"]))
    card = export_model(
        Ensemble(list(models), first.task),
        first,
        cfg,
        output,
        ecfg,
        x,
        source,
        source={"ensemble": [str(c) for c in checkpoints]},
        env_keys=ckpts[0].get("env_keys", []),
    )
    return card


def compare_outputs(got: dict, expected: dict, ecfg: dict) -> tuple[dict, dict, str | None]:
    """ONNX vs PyTorch outputs. Float outputs: |diff| within parity_tolerance, relative to the value
    where it is above 1 (regression in large units). Integer outputs (class masks, labels): the fraction
    of elements that differ within parity_mismatch, since a near-tie may flip an argmax. Returns the max
    |diff| per output, the mismatch fraction per integer output, and what failed (or None)."""
    diffs, mismatch, failure = {}, {}, None
    tol, frac = ecfg["parity_tolerance"], ecfg["parity_mismatch"]
    for name, e in expected.items():
        g = got[name]
        if g.shape != e.shape:
            return diffs, mismatch, f"ONNX output {name!r} has shape {list(g.shape)}, PyTorch {list(e.shape)}"
        if e.size == 0:
            diffs[name] = 0.0
            continue
        d = np.abs(g.astype(np.float64) - e.astype(np.float64))
        diffs[name] = float(d.max())
        if np.issubdtype(e.dtype, np.floating):
            scaled = float((d / np.maximum(1.0, np.abs(e))).max())
            if scaled > tol and failure is None:
                failure = (
                    f"ONNX output {name!r} differs from PyTorch by {diffs[name]:.3g} (> export.parity_tolerance={tol})"
                )
        else:
            mismatch[name] = float((d > 0).mean())
            if mismatch[name] > frac and failure is None:
                failure = (
                    f"ONNX output {name!r} differs from PyTorch in {mismatch[name]:.3%} of its elements "
                    f"(> export.parity_mismatch={frac})"
                )
    return diffs, mismatch, failure


def export_model(
    model,
    info,
    cfg: dict,
    output: str | Path,
    ecfg: dict,
    x: torch.Tensor,
    inputs_source: str,
    metrics: dict | None = None,
    source: dict | None = None,
    env_keys: list[str] | None = None,
) -> dict:
    """Export a ZooModel (or an Ensemble): ONNX + metadata, checker, parity on `x`, golden vectors, model card;
    atomic."""
    ecfg = export_settings({}, ecfg)
    check_precision(model, ecfg)
    check_opset(ecfg)
    if not isinstance(model, ZooModel) and ecfg["outputs"]:
        raise ZooError(f"export.outputs={ecfg['outputs']}: extra outputs are exported for one model, not an ensemble")
    deploy = (DeployModel(model, info.task, ecfg["outputs"]) if isinstance(model, ZooModel) else model).eval()
    crop_pct = crop_fraction(deploy, info, ecfg)
    graph, batches = served(deploy, info, ecfg["input"], x, crop_pct)
    with torch.no_grad():
        expected = [_as_tuple(graph(b)) for b in batches]
    check_outputs(deploy, expected[0], f"head={cfg['head']['name']}")

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ZooError(f"output={str(output)!r} exists and is not a folder")
    make_folder(output.parent)  # a failed export removes the folders it created (zoo.cli)
    tmp = output.parent / f".{output.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        onnx_path = tmp / "model.onnx"
        outputs = output_entries(deploy, expected[0])
        semantics = _head_of(deploy).output_semantics() if _head_of(deploy) is not None else {}
        meta = metadata(
            info,
            outputs,
            redact(cfg, env_keys or []),
            ecfg,
            deploy.dynamic_size,
            architecture_min_size(cfg),
            semantics,
            crop_pct,
        )
        schema.validate(meta, "zoo export")
        write_onnx(graph, batches[0], onnx_path, ecfg["opset"], meta, f"zoo {info.task} model: {_described(cfg)}")
        parity = check_parity(onnx_path, batches, expected, list(deploy.output_names), ecfg, inputs_source)
        if ecfg["precision"] != "fp32":  # zoo.deploy.quantize rewrites the checked float32 graph: fp16, int8
            meta["precision"] = convert(model, deploy, cfg, ecfg, onnx_path, batches[0], expected[0])
        golden = write_golden(tmp, onnx_path, batches)
        card = model_card(meta, onnx_path, parity, metrics, source)
        card["golden"] = golden
        (tmp / "model.json").write_text(json.dumps(card, indent=2))
        # Move into place only now that everything passed.
        make_folder(output)
        shutil.rmtree(output / "golden", ignore_errors=True)  # an earlier export's vectors: zoo's own files
        for f in ("model.onnx", "model.json", "golden"):
            os.replace(tmp / f, output / f)
        return card
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def check_opset(ecfg: dict) -> None:
    """The opset the input form needs: one line when export.opset is too old."""
    if ecfg["opset"] < 17:
        raise ZooError(f"export.opset={ecfg['opset']} is too old; zoo exports opset 17 or newer")
    if ecfg["input"] == "uint8" and ecfg["opset"] < UINT8_MIN_OPSET:
        raise ZooError(
            f"export.opset={ecfg['opset']} has no antialiased Resize, which export.input=uint8 puts in the graph; "
            f"use export.opset={UINT8_MIN_OPSET} or newer, or export.input=float32"
        )


MIN_CROP_PCT = 0.25  # the smallest centre crop zoo fits by: pretrained weights use 0.75 to 1


def crop_fraction(deploy, info, ecfg: dict) -> float | None:
    """The centre crop's fraction when the export fits images by cropping (export.fit, `zoo.format` resize.fit crop),
    else None (the whole image resized). `auto` crops when export.crop_pct is given, or when the model is used as
    its weights are: it carries their crop_pct (DataInfo.crop_pct) and its head is their classifier with its own
    labels, so it sees what it was evaluated on; a model trained on zoo's data saw whole images resized, so it is
    served that way. `crop` needs a fraction (the model's or export.crop_pct's) and a fixed-size network whose
    outputs do not refer to the image's geometry; one line otherwise."""
    fit, given, carried = ecfg.get("fit", "auto"), ecfg.get("crop_pct") or None, info.crop_pct  # 0: not given
    own_labels = bool(getattr(_head_of(deploy), "labels", None))
    if fit == "resize" or (fit == "auto" and given is None and not (carried is not None and own_labels)):
        return None
    task = tasks.TABLE.get(info.task)
    geometric = task is not None and (
        "box" in task.semantics or any(a in tasks.SIZE_AXES for o in task.outputs for a in o.axes)
    )
    if deploy.dynamic_size or geometric:
        why = "takes images at their own size" if deploy.dynamic_size else "gives outputs placed on the image"
        raise ZooError(f"export.fit={fit}: a {info.task} model that {why} is not cropped; use export.fit=resize")
    if given is None and carried is None:
        raise ZooError(
            f"export.fit={fit}: this model's weights carry no centre crop; give export.crop_pct=FRACTION in (0, 1] "
            "(size / the side before the crop: 0.875 is 224 of 256), or use export.fit=resize"
        )
    fraction = float(given if given is not None else carried)
    if fraction < MIN_CROP_PCT:  # the cover grows as 1 / crop_pct: 0.001 asks for a 262 GB resize
        raise ZooError(
            f"export.crop_pct={fraction:g} would resize images to {1 / fraction:.0f} times the network's size before "
            f"the crop; give a fraction from {MIN_CROP_PCT} to 1 (0.875 is 224 of 256)"
        )
    return fraction


def served(
    deploy, info, form: str, x: torch.Tensor, crop_pct: float | None = None
) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """The graph to export and its parity batches: for the uint8 form, Preprocess + the deployed model, fed
    the images as uint8 pixels at the network's size and at an odd size (the in-graph resize both ways; with
    `crop_pct`, the centre crop both ways: taller and wider than the network's aspect); for the float32 form, the
    deployed model and `x`."""
    if form != "uint8":
        return deploy, [x]
    pixels = as_pixels(x)
    size = None if deploy.dynamic_size else tuple(info.size)
    cover = schema.crop_cover(size, crop_pct) if crop_pct is not None and size is not None else None
    graph = Served(Preprocess(info.channels, size, cover), deploy).eval()
    return graph, [pixels, odd_sized(pixels, grow_only=deploy.dynamic_size)]


def _head_of(deploy):
    """The (first) head behind a deployed model or an ensemble, for what it declares about its outputs."""
    inner = getattr(deploy, "model", None) or getattr(deploy, "members", [None])[0]
    inner = getattr(inner, "model", inner)
    return getattr(inner, "head", None)


def architecture_min_size(cfg: dict) -> int | None:
    """The smallest input side the configured architecture declares (`min_size=` at registration), or None."""
    try:
        mcfg = dict(cfg["model"])
        arch = registry.get("architecture", mcfg.pop("name"))
        return arch.min_size(arch.check_values(mcfg, "model"))
    except (ZooError, KeyError, TypeError):
        return None


def check_parity(
    onnx_path: Path, batches: list[torch.Tensor], expected: list[tuple], names: list[str], ecfg: dict, inputs: str
) -> dict:
    """The same inputs through onnxruntime (CPU) and PyTorch, every batch; one line on a misfit, else the record."""
    model = Model(onnx_path, providers="cpu")
    diffs: dict[str, float] = {}
    mismatch: dict[str, float] = {}
    for batch, exp in zip(batches, expected):
        got = model.run(batch.numpy())
        d, m, failure = compare_outputs(got, {n: e.numpy() for n, e in zip(names, exp)}, ecfg)
        if failure:
            raise ZooError(f"{failure}; nothing was written")
        for table, new in ((diffs, d), (mismatch, m)):
            for k, v in new.items():
                table[k] = max(table.get(k, 0.0), v)
    sizes = " and ".join(f"{b.shape[1]}x{b.shape[2]}" for b in batches)
    return {
        "max_abs_diff": diffs,
        "tolerance": ecfg["parity_tolerance"],
        "mismatch_fraction": mismatch,
        "mismatch_tolerance": ecfg["parity_mismatch"],
        "inputs": inputs + (f"; as uint8 pixels at {sizes}" if ecfg["input"] == "uint8" else ""),
        "provider": "CPUExecutionProvider",
    }


def _described(cfg: dict) -> str:
    return f"{cfg['model']['name']} + {cfg['head']['name']} on {cfg['data']['name']}"


def write_onnx(deploy, x: torch.Tensor, path: Path, opset: int, meta: dict, doc: str) -> None:
    """Trace `deploy` to ONNX at `path` (dynamic batch, and size where the head allows), add the `zoo.*`
    metadata, and pass onnx.checker's full check."""
    import onnx

    nhwc = meta["input"]["layout"] == "NHWC"
    axis = {"batch": 0, "height": 1 if nhwc else 2, "width": 2 if nhwc else 3}
    trace_onnx(deploy, x, path, opset, meta["input"]["name"], {axis[a]: a for a in meta["input"]["dynamic"]})
    proto = onnx.load(str(path))
    name_output_dims(proto, meta["outputs"])
    spell_out_reshapes(proto)  # the graph then runs on an empty batch too (parity checks the result below)
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=f"zoo.{k}", value=json.dumps(v))
    proto.producer_name, proto.producer_version, proto.doc_string = "zoo", __version__, doc
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ZooError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None


def model_card(meta: dict, onnx_path: Path, parity: dict, metrics: dict | None, source: dict | None) -> dict:
    """model.json: what the export holds, how it was checked, and where it came from."""
    return {
        "format": CARD_FORMAT,
        "zoo_version": __version__,
        "task": meta["task"],
        "labels": meta["labels"],
        "input": meta["input"],
        "preprocessing": meta["preprocessing"],
        "outputs": meta["outputs"],
        "postprocessing": meta["postprocessing"],
        "metrics": metrics or {},
        "parity": parity,
        "precision": meta.get("precision", {"precision": "fp32"}),
        "onnx": {
            "file": "model.onnx",
            "opset": meta["opset"],
            "sha256": _sha256(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "checker": "onnx.checker full_check passed",
        },
        "source": source or {},
        "config": meta["config"],
    }
