"""Checkpoints and weight sources: saving (atomic, with a verifiable header), loading (tensors and plain data
only, checked before use), and loading weights into a model from a checkpoint, a run directory, or a source
the architecture itself knows.

Format `zoo.train.checkpoint/2` carries a header: the zoo version, the architecture (the model config's name), the
task, every model tensor's name and shape, and a sha256 over all the file's tensors (name, dtype, shape and
bytes, in name order), computed on save and verified on load: torch.load reads a file with flipped bytes
inside a tensor without complaint, the checksum does not. Format 1 (no header) still loads, unverified.

A weight source other than a file or a run directory (a hub name, a copy of a hub's weight file) is the
architecture plugin's business: zoo asks `Backbone.load_source(source)` first and reads the source as a
checkpoint only when the backbone does not claim it. This module names no plugin.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import ZooModel, build_model
from zoo.version import __version__

CHECKPOINT_FORMAT = "zoo.train.checkpoint/2"
READABLE_FORMATS = ("zoo.train.checkpoint/1", CHECKPOINT_FORMAT)  # 1 has no header: nothing to verify
STALE_TMP = re.compile(r"^\.(last|best)\.pt\.\d+\.tmp$")  # what save_checkpoint leaves when killed mid-write


def _tensors(value: Any, name: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a payload, with its dotted path (dict keys, list positions)."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{name}.{k}" if name else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{name}.{i}")


def tensor_digest(payload: dict) -> str:
    """sha256 over every tensor outside the header, in name order: its name, dtype, shape and bytes."""
    h = hashlib.sha256()
    body = {k: v for k, v in payload.items() if k != "header"}
    for name, t in sorted(_tensors(body), key=lambda item: item[0]):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _header(payload: dict) -> dict:
    return {
        "zoo_version": __version__,
        "architecture": ((payload.get("config") or {}).get("model") or {}).get("name"),  # a weights-only file has none
        "task": (payload.get("info") or {}).get("task"),
        "tensors": {k: list(v.shape) for k, v in payload["model"].items()},
        "sha256": tensor_digest(payload),
    }


def save_checkpoint(path: Path, payload: dict) -> None:
    """Add the format and header, write to a temporary file and rename: a crash never leaves half a checkpoint."""
    payload = {**payload, "format": CHECKPOINT_FORMAT}
    payload["header"] = _header(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def remove_stale_temporaries(ckpt_dir: Path) -> list[Path]:
    """Delete the temporary files a killed checkpoint write left in `ckpt_dir` (only those); return them."""
    stale = [p for p in ckpt_dir.glob(".*.tmp") if STALE_TMP.match(p.name)] if ckpt_dir.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint argument names: the file itself, or a run directory's best checkpoint."""
    p = Path(path)
    return p / "checkpoints" / "best.pt" if p.is_dir() else p


def load_checkpoint(path: str | Path) -> dict:
    """Load a zoo checkpoint (tensors and plain data only: weights_only=True, no unsafe fallback) and check it
    first: readable, a zoo checkpoint, its header and checksum (format 2), finite weights; one line if not."""
    p = checkpoint_file(path)
    if not p.is_file():
        raise ZooError(f"checkpoint {str(path)!r} does not exist (give a .pt file or a run directory)")
    if p.stat().st_size == 0:
        raise ZooError(f"cannot read checkpoint {p}: the file is empty (a write that never finished?)")
    try:
        with warnings.catch_warnings():  # a file's odd pickle protocol: the checks below say what matters
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if first.startswith("Weights only load failed"):
            first = "it holds objects other than tensors and plain data, which zoo never loads"
        raise ZooError(f"cannot read checkpoint {p}: truncated or not a checkpoint file ({first[:200]})") from None
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if isinstance(fmt, str) and fmt.startswith("zoo.train.checkpoint/") and fmt not in READABLE_FORMATS:
        raise ZooError(f"{p} is a {fmt} checkpoint; this zoo ({__version__}) reads {', '.join(READABLE_FORMATS)}")
    if fmt not in READABLE_FORMATS or not all(isinstance(ckpt.get(k), dict) for k in ("model", "config", "info")):
        raise ZooError(f"{p} is not a zoo checkpoint (no format {CHECKPOINT_FORMAT!r} with model, config and info)")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise ZooError(f"{p} is not a zoo checkpoint (its model holds values that are not tensors)")
    if fmt == CHECKPOINT_FORMAT:
        _verify_header(p, ckpt)
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ZooError(f"checkpoint {p} has non-finite weights (NaN or inf) in {', '.join(bad[:3])}{more}")
    return ckpt


def _verify_header(p: Path, ckpt: dict) -> None:
    header = ckpt.get("header")
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), dict):
        raise ZooError(f"checkpoint {p} is corrupted: its header is missing or unreadable")
    shapes = {k: list(v.shape) for k, v in ckpt["model"].items() if isinstance(v, torch.Tensor)}
    if shapes != header["tensors"] or len(shapes) != len(ckpt["model"]):
        differ = [k for k in {**header["tensors"], **ckpt["model"]} if header["tensors"].get(k) != shapes.get(k)]
        raise ZooError(f"checkpoint {p} is corrupted: its tensors do not match its header ({', '.join(differ[:3])})")
    if tensor_digest(ckpt) != header.get("sha256"):
        raise ZooError(
            f"checkpoint {p} is corrupted: its tensors' sha256 differs from the one written with them "
            "(bytes changed after it was saved)"
        )


def check_fits(state: dict, own: dict, what: str, architecture: str) -> None:
    """One line naming the first tensors of `state` that do not fit a model's state `own` (another architecture)."""
    misfits = [
        f"{k} (saved {list(v.shape)}, here {list(own[k].shape)})" if k in own else f"{k} (not in this model)"
        for k, v in state.items()
        if k not in own or own[k].shape != v.shape
    ] + [f"{k} (not in the checkpoint)" for k in own if k not in state]
    if misfits:
        raise ZooError(
            f"{what} holds another architecture (model={architecture}): {len(misfits)} tensor(s) do not fit "
            f"this model, first: {', '.join(misfits[:3])}"
        )


def differing_keys(saved: dict, current: dict, nodes: tuple[str, ...]) -> list[str]:
    """The dotted config keys under `nodes` whose values differ between two plain configs."""

    def flat(value: Any, name: str) -> dict:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(sub, f"{name}.{key}").items()}
        return {name: value}

    a = {k: v for n in nodes for k, v in flat(saved.get(n), n).items()}
    b = {k: v for n in nodes for k, v in flat(current.get(n), n).items()}
    return sorted(k for k in {**a, **b} if a.get(k, "<absent>") != b.get(k, "<absent>"))


def rng_state() -> dict:
    """Every random stream a run draws from (Python, NumPy, torch CPU and CUDA), as tensors and plain data."""
    import numpy as np

    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        # a run that never touched CUDA drew nothing from it (and asking would start it on a CPU run)
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng(state: dict) -> None:
    """Put back what `rng_state` saved, so the next draw is the one the saved run would have made."""
    import numpy as np

    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_from_checkpoint(ckpt: dict, where: str = "the checkpoint") -> tuple[ZooModel, DataInfo]:
    """Rebuild the model a checkpoint was trained with and load its weights (one line if they do not fit)."""
    info = DataInfo.from_dict(ckpt["info"])
    model = build_model(ckpt["config"], info)
    check_fits(ckpt["model"], model.state_dict(), where, ckpt["config"]["model"]["name"])
    model.load_state_dict(ckpt["model"])
    model.crop_pct = info.crop_pct  # the weights' centre crop (deployed_info), carried on as _own_source records it
    return model.eval(), info


def load_weights(model: ZooModel, source: str, include_head: bool = False) -> dict:
    """Load weights from `source` into `model`; return what was loaded, skipped and new (the report zoo prints
    and records in metrics.json: `{"source", "loaded": count, "skipped": [...], "new": [...]}`). Public as
    `zoo.load_weights`, for a transfer strategy's `setup`.

    A source the backbone knows (`Backbone.load_source`, e.g. a hub) loads the backbone, the input
    statistics its weights expect and, with `include_head`, a head that is part of those weights. Any other
    source is a checkpoint file or a run directory: across tasks and class counts every tensor whose name and
    shape match is loaded (the backbone, the input normalisation it was trained with, and the head when
    `include_head` and it fits); the rest keeps its fresh initialisation.
    """
    stats = model.backbone.load_source(source)
    if stats is not None:
        return _own_source(model, source, stats, include_head)
    p = checkpoint_file(source)
    if not p.is_file():
        known = getattr(model.backbone, "weight_sources", ())
        also = f"; {type(model.backbone).__name__} also loads: {', '.join(known)}" if known else ""
        raise ZooError(f"transfer.weights={source!r} is not a checkpoint file or a run directory{also}")
    ckpt = load_checkpoint(p)
    state, own = ckpt["model"], model.state_dict()
    # across tasks and class counts only the head differs: a backbone that does not fit whole is another one
    check_fits(
        {k: v for k, v in state.items() if k.startswith("backbone.")},
        {k: v for k, v in own.items() if k.startswith("backbone.")},
        f"transfer.weights={str(source)!r}",
        ckpt["config"]["model"]["name"],
    )
    keep, skipped = {}, []
    for k, v in state.items():
        wanted = k.startswith(("backbone.", "normalize.")) or (include_head and k.startswith("head."))
        if wanted and k in own and own[k].shape == v.shape:
            keep[k] = v
        elif wanted or k.startswith("head."):
            skipped.append(k if k in own else f"{k} (not in this model)")
    model.load_state_dict(keep, strict=False)
    new = sorted(k for k in own if k not in keep)
    return {"source": str(source), "loaded": len(keep), "skipped": sorted(skipped), "new": new}


def _own_source(model: ZooModel, source: str, stats: dict, include_head: bool) -> dict:
    """The report for weights the backbone loaded itself; its input statistics go into the model's Normalize, and
    the centre crop they were evaluated with (`crop_pct`, if they say) onto the model, which deployed_info puts
    into the DataInfo that checkpoints and exports carry."""
    loaded = [f"backbone.{k}" for k in model.backbone.state_dict()]
    if stats:  # the pretrained weights expect their own input statistics
        model.normalize.mean.copy_(torch.tensor(stats["mean"]).view_as(model.normalize.mean))
        model.normalize.std.copy_(torch.tensor(stats["std"]).view_as(model.normalize.std))
        loaded += ["normalize.mean", "normalize.std"]
    if stats and stats.get("crop_pct") is not None:
        model.crop_pct = float(stats["crop_pct"])
    if include_head and model.head.load_source(source):  # a head that is the backbone's own classifier
        loaded += [f"head.{k}" for k in model.head.state_dict()]
    new = sorted(k for k in model.state_dict() if k not in set(loaded))
    return {"source": source, "loaded": len(loaded), "skipped": [], "new": new}
