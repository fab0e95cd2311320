"""What a person looks at: a sweep's table (`zoo report`) and augmented samples (`zoo augment`)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.train.config import compose, to_plain

SKIP_KEYS = ("seed",)
EXTRA_COLUMNS = ("train_seconds", "epoch_seconds")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def collect_runs(root: str | Path) -> list[dict]:
    """Every run under `root` (a folder with metrics.json and config.yaml): its flat config and metrics."""
    from omegaconf import OmegaConf

    root = Path(root)
    if not root.is_dir():
        raise ZooError(f"{str(root)!r} is not a folder (give a sweep directory, e.g. runs/multirun/DATE/TIME)")
    runs = []

    # Natural order (2 before 10): Hydra numbers a sweep's jobs in the order of its overrides, so the
    # table's rows come out in the order the sweep was written.
    def natural(p):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p.relative_to(root)))]

    for metrics_file in sorted(root.rglob("metrics.json"), key=natural):
        cfg_file = metrics_file.parent / "config.yaml"
        if not cfg_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        runs.append(
            {
                "dir": str(metrics_file.parent.relative_to(root)),
                "config": _flatten(OmegaConf.to_container(OmegaConf.load(cfg_file))),
                "metrics": metrics,
            }
        )
    if not runs:
        raise ZooError(f"no runs (metrics.json beside config.yaml) under {str(root)!r}")
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def varying_keys(runs: list[dict]) -> list[str]:
    """The settings that tell a sweep's runs apart, seeds aside: keys every run has and that differ between
    them (a plugin's own parameters, present only where it was chosen, follow from its name, a key itself)."""
    keys = sorted(set.intersection(*(set(r["config"]) for r in runs)))
    return [
        k
        for k in keys
        if k not in SKIP_KEYS and len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1
    ]


def report(root: str | Path) -> tuple[str, str]:
    """A sweep's runs grouped by the settings that vary (seeds pooled): markdown and CSV, mean ± std."""
    runs = collect_runs(root)
    varying = varying_keys(runs)
    metric_names = sorted(
        {k for r in runs for k, v in r["metrics"].get("test", {}).items() if isinstance(v, (int, float))}
    )
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r["config"].get(k) for k in varying), []).append(r)
    header = varying + ["runs"] + [f"test.{m}" for m in metric_names] + list(EXTRA_COLUMNS)
    rows_md, rows_csv = [], []
    for values, members in groups.items():
        cells_md, cells_csv = [str(v) for v in values] + [str(len(members))], [*values, len(members)]
        for m in metric_names:
            got = [
                r["metrics"]["test"][m]
                for r in members
                if isinstance(r["metrics"].get("test", {}).get(m), (int, float))
            ]
            mean, std = _mean_std(got)
            cells_md.append(f"{mean:.4f} ± {std:.4f}")
            cells_csv += [round(mean, 6)]
        for extra in EXTRA_COLUMNS:
            got = [r["metrics"][extra] for r in members if isinstance(r["metrics"].get(extra), (int, float))]
            mean, std = _mean_std(got) if got else (float("nan"), 0.0)
            cells_md.append(f"{mean:.3f} ± {std:.3f}")
            cells_csv += [round(mean, 6)]
        rows_md.append(cells_md)
        rows_csv.append(cells_csv)
    md = (
        "| "
        + " | ".join(header)
        + " |\n|"
        + "---|" * len(header)
        + "\n"
        + "".join("| " + " | ".join(r) + " |\n" for r in rows_md)
    )
    buf = io.StringIO()
    w = csv.writer(buf)
    csv_header = varying + ["runs"] + [f"test.{m}_mean" for m in metric_names] + [f"{e}_mean" for e in EXTRA_COLUMNS]
    w.writerow(csv_header)
    w.writerows(rows_csv)
    return md, buf.getvalue()


def augment_grid(overrides: list[str], samples: int, variants: int):
    """A PIL image: `samples` training images (rows), each as loaded and `variants` times augmented."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from zoo.data import Transformed, build_augmentations, build_data  # lazy: torch; `zoo report` needs none

    cfg = to_plain(compose(overrides))
    bundle = build_data(cfg, int(cfg["seed"]))
    sample_tf, batch_tf = build_augmentations(cfg["aug"], bundle.info, on_device=False)  # each op per sample
    torch.manual_seed(int(cfg["seed"]))
    n = min(samples, len(bundle.train))
    picks = torch.linspace(0, len(bundle.train) - 1, n).long().tolist()
    rows = []
    for i in picks:
        row = [bundle.train[i]] + [Transformed(bundle.train, sample_tf)[i] for _ in range(variants)]
        if batch_tf is not None:  # show Mixup/CutMix against another training image
            other = bundle.train[picks[(picks.index(i) + 1) % n]]
            images = torch.stack([row[-1][0], other[0]])
            targets = torch.stack([torch.as_tensor(row[-1][1]), torch.as_tensor(other[1])])
            mixed, _ = batch_tf(images, targets)
            row.append((mixed[0], row[-1][1]))
        rows.append(row)
    h, w = bundle.info.size
    scale = max(1, 96 // max(h, w))
    pad = 2
    cols = len(rows[0])
    canvas = Image.new("RGB", (cols * (w * scale + pad) + pad, n * (h * scale + pad) + pad), (40, 40, 40))
    for r, row in enumerate(rows):
        for c, (image, target) in enumerate(row):
            arr = (image.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr
            tile = Image.fromarray(arr.transpose(1, 2, 0)).resize((w * scale, h * scale), Image.NEAREST)
            if isinstance(target, dict) and "boxes" in target:  # detection: draw the boxes as they moved
                draw = ImageDraw.Draw(tile)
                for box in target["boxes"].tolist():
                    draw.rectangle([v * scale for v in box], outline=(255, 60, 60))
            elif hasattr(target, "ndim") and target.ndim == 2:  # segmentation: tint the mask
                mask = np.asarray(target, dtype=np.int64)
                colours = np.array(
                    [[0, 0, 0], [255, 80, 80], [80, 255, 80], [80, 80, 255], [255, 255, 80]], dtype=np.float32
                )
                overlay = colours[mask % len(colours)].repeat(scale, 0).repeat(scale, 1)
                base = np.asarray(tile, dtype=np.float32)
                tile = Image.fromarray(
                    np.where(
                        mask.repeat(scale, 0).repeat(scale, 1)[..., None] > 0, 0.6 * base + 0.4 * overlay, base
                    ).astype(np.uint8)
                )
            canvas.paste(tile, (pad + c * (w * scale + pad), pad + r * (h * scale + pad)))
    return canvas
