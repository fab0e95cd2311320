"""Checkpoints and weight sources: saving (atomic), loading (tensors and plain data only), and loading
weights into a model from a checkpoint, a run directory, or a source the architecture itself knows.

A weight source other than a file or a run directory (a hub name, a copy of a hub's weight file) is the
architecture plugin's business: zoo asks `Backbone.load_source(source)` first and reads the source as a
checkpoint only when the backbone does not claim it. This module names no plugin.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import ZooModel, build_model

CHECKPOINT_FORMAT = "zoo.checkpoint/1"


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write to a temporary file and rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint argument names: the file itself, or a run directory's best checkpoint."""
    p = Path(path)
    return p / "checkpoints" / "best.pt" if p.is_dir() else p


def load_checkpoint(path: str | Path) -> dict:
    """Load a zoo checkpoint (tensors and plain data only: weights_only=True, no unsafe fallback)."""
    p = checkpoint_file(path)
    if not p.is_file():
        raise ZooError(f"checkpoint {str(path)!r} does not exist (give a .pt file or a run directory)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ZooError(f"cannot read checkpoint {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ZooError(f"{p} is not a zoo checkpoint (no format {CHECKPOINT_FORMAT!r})")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> tuple[ZooModel, DataInfo]:
    """Rebuild the model a checkpoint was trained with and load its weights."""
    info = DataInfo.from_dict(ckpt["info"])
    model = build_model(ckpt["config"], info)
    model.load_state_dict(ckpt["model"])
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
    state = load_checkpoint(p)["model"]
    own = model.state_dict()
    keep, skipped = {}, []
    for k, v in state.items():
        wanted = k.startswith(("backbone.", "normalize.")) or (include_head and k.startswith("head."))
        if wanted and k in own and own[k].shape == v.shape:
            keep[k] = v
        elif wanted or k.startswith("head."):
            skipped.append(k if k in own else f"{k} (not in this model)")
    if not any(k.startswith("backbone.") for k in keep):
        raise ZooError(f"no backbone weights in {source!r} fit this model (was it trained with another architecture?)")
    model.load_state_dict(keep, strict=False)
    new = sorted(k for k in own if k not in keep)
    return {"source": str(source), "loaded": len(keep), "skipped": sorted(skipped), "new": new}


def _own_source(model: ZooModel, source: str, stats: dict, include_head: bool) -> dict:
    """The report for weights the backbone loaded itself; its input statistics go into the model's Normalize."""
    loaded = [f"backbone.{k}" for k in model.backbone.state_dict()]
    if stats:  # the pretrained weights expect their own input statistics
        model.normalize.mean.copy_(torch.tensor(stats["mean"]).view_as(model.normalize.mean))
        model.normalize.std.copy_(torch.tensor(stats["std"]).view_as(model.normalize.std))
        loaded += ["normalize.mean", "normalize.std"]
    if include_head and model.head.load_source(source):  # a head that is the backbone's own classifier
        loaded += [f"head.{k}" for k in model.head.state_dict()]
    new = sorted(k for k in model.state_dict() if k not in set(loaded))
    return {"source": source, "loaded": len(loaded), "skipped": [], "new": new}
