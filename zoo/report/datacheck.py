"""`zoo data check`'s summary table (printed, and summary.md) and picture (data_check.png): class counts per
split, box sizes, and a grid of training samples with their labels drawn (matplotlib's object API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.errors import make_folder
from zoo.report.figures import _figure, _save
from zoo.train.datacheck import ERROR, WARNING, Survey

SPLITS = ("train", "val", "test")


def table(found: Survey) -> list[str]:
    """A markdown table: a row per class, a column per split (images, or boxes for detection)."""
    splits = [s for s in SPLITS if s in found.counts] + sorted(s for s in found.counts if s not in SPLITS)
    rows = ["| class | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for i, name in enumerate(found.classes):
        rows.append(f"| {name} | " + " | ".join(str(found.counts[s][i]) for s in splits) + " |")
    return rows


def summary(found: Survey, name: str) -> list[str]:
    """The closing lines of zoo data check: counts of findings, then the table."""
    errors = sum(f.level == ERROR for f in found.findings)
    warnings = sum(f.level == WARNING for f in found.findings)
    verdict = "clean" if not found.findings else f"{errors} error(s), {warnings} warning(s)"
    head = f"data={name}: {found.images} images, {len(found.classes)} classes, {found.task or '?'}: {verdict}"
    return [head, *(table(found) if found.classes else [])]


def _image(sample) -> np.ndarray:
    """A sample's image as HWC floats in [0, 1]: a file decoded, or a CHW tensor."""
    if isinstance(sample, (str, Path)):
        from PIL import Image

        with Image.open(sample) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    x = np.asarray(sample, dtype=np.float32)
    x = x.transpose(1, 2, 0)
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]


def _draw(ax, image, target, classes) -> None:
    """One sample: its image, and its class as the title, its boxes, or its mask over it."""
    from matplotlib.patches import Rectangle

    pixels = _image(image)
    ax.imshow(pixels.clip(0, 1))
    ax.axis("off")
    if isinstance(target, dict):
        for (x0, y0, x1, y1), c in zip(target["boxes"], target["labels"]):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", linewidth=1))
            ax.text(x0, y0, classes[c] if 0 <= c < len(classes) else str(c), color="yellow", fontsize=6)
    elif isinstance(target, (str, Path)):
        from PIL import Image

        with Image.open(target) as m:
            ax.imshow(np.asarray(m.resize((pixels.shape[1], pixels.shape[0]), Image.NEAREST)), alpha=0.4, cmap="tab20")
    elif target is not None and np.ndim(target) == 2:
        ax.imshow(np.asarray(target), alpha=0.4, cmap="tab20")
    elif target is not None and np.ndim(target) == 0:
        c = int(target)
        ax.set_title(classes[c] if 0 <= c < len(classes) else str(c), fontsize=7)


def picture(found: Survey, name: str, path: Path) -> Path:
    """Class counts (train), box sizes (detection), and up to 16 training samples with their labels."""
    fig = _figure(12, 7)
    grid = fig.add_gridspec(4, 6)
    counts = fig.add_subplot(grid[:2, :2])
    train = found.counts.get("train", {})
    counts.barh(range(len(found.classes)), [train.get(i, 0) for i in range(len(found.classes))])
    counts.set_yticks(range(len(found.classes)), [str(c) for c in found.classes], fontsize=7)
    counts.set_title(f"data={name}: training samples per class", fontsize=9)
    sizes = fig.add_subplot(grid[2:, :2])
    if found.box_sizes:
        w, h = zip(*found.box_sizes)
        sizes.scatter(w, h, s=4)
        sizes.set_xlabel("box width (px)")
        sizes.set_ylabel("box height (px)")
    else:
        sizes.axis("off")
    for n, (image, target) in enumerate(found.samples[:16]):
        try:
            _draw(fig.add_subplot(grid[n // 4, 2 + n % 4]), image, target, found.classes)
        except (OSError, ValueError):  # a broken file is a finding already; the picture goes on without it
            continue
    return _save(fig, path)


def write(found: Survey, name: str, output: str) -> list[Path]:
    """summary.md (the findings and the table) and data_check.png in OUTPUT."""
    folder = make_folder(Path(output).expanduser())
    text = [f"# zoo data check: data={name}", "", *(f"- {f.line()}" for f in found.findings), "", *summary(found, name)]
    (folder / "summary.md").write_text("\n".join(text) + "\n")
    return [folder / "summary.md", picture(found, name, folder / "data_check.png")]
