"""Predictions as `zoo predict` gives them: per-image results in the task's JSON form (the task table's
formatter, zoo.tasks), image files in batches of one size, mask PNGs (segmentation) and images with their boxes
drawn (detection)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import tasks
from zoo.errors import ZooError
from zoo.runtime.decoding import open_image

PALETTE = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (145, 30, 180),
    (70, 240, 240),
    (245, 130, 48),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
]


def per_task(
    task: str,
    out: dict[str, np.ndarray],
    labels: Sequence[str],
    topk: int,
    scales: Sequence[tuple[float, float]] | None,
) -> list[dict]:
    """One result per image from outputs by role, in `task`'s JSON form (zoo.tasks: Task.formatter)."""
    return tasks.TABLE[task].formatter(out, labels, topk, scales)


def by_name(out: dict[str, np.ndarray], output_names: Sequence[str], n: int) -> list[dict]:
    """One result per image holding every output by name (a task this zoo does not know)."""
    return [{name: out[name][i].tolist() for name in output_names} for i in range(n)]


def add_extras(results: list[dict], out: dict[str, np.ndarray], extras: Sequence[str]) -> list[dict]:
    """The extra outputs (embedding, cam) as nested lists under their role, rounded to 6 decimals."""
    for role in extras:
        for r, value in zip(results, out[role]):
            r[role] = np.round(value.astype(np.float64), 6).tolist()
    return results


def batches(
    prepare: Any, paths: Sequence[str | Path], batch_size: int, errors: list[str] | None
) -> Iterator[tuple[list, np.ndarray, list[tuple[int, int]]]]:
    """(files, batch, original sizes) in order: consecutive images of one prepared shape, up to batch_size.
    `prepare(path)` gives an item and its original size; with `errors` a file it refuses is noted and skipped."""
    group: list[tuple[str | Path, np.ndarray, tuple[int, int]]] = []
    for p in paths:
        try:
            item, original = prepare(p)
        except ZooError as e:
            if errors is None:
                raise
            errors.append(str(e))
            continue
        if group and (len(group) >= batch_size or group[0][1].shape != item.shape):
            yield [g[0] for g in group], np.stack([g[1] for g in group]), [g[2] for g in group]
            group = []
        group.append((p, item, original))
    if group:
        yield [g[0] for g in group], np.stack([g[1] for g in group]), [g[2] for g in group]


def file_result(path: str | Path, r: dict, masks_dir: str | Path | None, draw_dir: str | Path | None) -> dict:
    """An image file's result: its mask written as a PNG (and dropped from the result), its boxes drawn."""
    if "mask" in r:
        mask = r.pop("mask")
        if masks_dir is not None:
            r["mask_file"] = str(write_mask(mask, Path(masks_dir) / (Path(path).stem + "_mask.png")))
    if draw_dir is not None and "detections" in r:
        r["drawn_file"] = str(draw_boxes(path, r["detections"], Path(draw_dir) / (Path(path).stem + "_boxes.png")))
    return {"file": str(path), **r}


def write_mask(mask: np.ndarray, path: Path) -> Path:
    """A mask as a palette PNG: pixel value = class index; the palette only makes it visible."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette([c for rgb in PALETTE for c in rgb] + [255, 255, 255] * (256 - len(PALETTE)))
    image.save(path)
    return path


def draw_boxes(source: str | Path, detections: list[dict], path: Path) -> Path:
    """The image `source` with its detections drawn (box, label, score), saved to `path`."""
    from PIL import ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    with open_image(source) as im:
        im = im.convert("RGB")
        draw = ImageDraw.Draw(im)
        for d in detections:
            colour = PALETTE[1 + d["index"] % (len(PALETTE) - 1)]
            draw.rectangle(d["box"], outline=colour, width=max(1, round(min(im.size) / 100)))
            draw.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=colour)
        im.save(path)
    return path
