"""Pictures beside the numbers: every run's learning curves, and for heads that score a confusion matrix
its picture and a grid of the test images the model got most wrong; a sweep's curves side by side.

matplotlib's object API (Figure, no pyplot): no global state, no display needed, safe in parallel jobs.
Every file is written to a temporary name and renamed, as checkpoints are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zoo.report.visual import collect_runs, varying_keys

WORST = 16  # images in the worst-classified grid


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def curves(history: list[dict], monitor: str, path: Path, title: str = "", higher_is_better: bool = True) -> Path:
    """Training and validation loss per epoch, and the monitored metric per epoch, on the training batches
    (where the engine accumulated it: `train_METRIC` in the history) and on validation, with its best epoch."""
    epochs = [h["epoch"] for h in history]
    metric = f"val_{monitor}"
    panels = 1 if monitor == "loss" or not any(metric in h for h in history) else 2
    fig = _figure(5.0 * panels, 3.6)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", ms=3, label="train")
    if any("val_loss" in h for h in history):
        ax.plot(epochs, [h.get("val_loss", np.nan) for h in history], marker="o", ms=3, label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    if panels == 2:
        ax = axes[1]
        if any(f"train_{monitor}" in h for h in history):
            trained = [h.get(f"train_{monitor}", np.nan) for h in history]
            ax.plot(epochs, trained, marker="o", ms=3, color="tab:blue", label="train")
        values = [h.get(metric, np.nan) for h in history]
        ax.plot(epochs, values, marker="o", ms=3, color="tab:orange", label="validation")
        best = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
        ax.scatter([epochs[best]], [values[best]], s=80, facecolors="none", edgecolors="black", label="best validation")
        ax.set(xlabel="epoch", ylabel=monitor, title=monitor)
        ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str = "test confusion matrix") -> Path:
    """The confusion matrix as a picture: rows the true class, columns the predicted one, counts written in."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(m)
    side = min(12.0, 2.5 + 0.45 * n)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    shown = ax.imshow(m, cmap="Blues")
    fig.colorbar(shown, ax=ax, shrink=0.8, label="images")
    ticks = list(range(n))
    ax.set_xticks(ticks, labels[:n], rotation=90 if max((len(str(x)) for x in labels), default=0) > 3 else 0)
    ax.set_yticks(ticks, labels[:n])
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (accuracy {np.trace(m) / max(1, m.sum()):.4f})")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    dark = m[i, j] > m.max() / 2
                    ax.text(
                        j, i, str(m[i, j]), ha="center", va="center", fontsize=8, color="white" if dark else "black"
                    )
    return _save(fig, path)


def worst_classified(images: np.ndarray, truth: np.ndarray, probs: np.ndarray, labels: list[str], path: Path) -> Path:
    """The test images whose true class got the lowest probability, with what the model said instead."""
    true_p = probs[np.arange(len(truth)), truth]
    order = np.argsort(true_p)[:WORST]
    cols = 4
    rows = max(1, int(np.ceil(len(order) / cols)))
    fig = _figure(2.3 * cols, 2.5 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, order):
        image = images[i].transpose(1, 2, 0)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image.clip(0, 1), cmap="gray", vmin=0, vmax=1)
        pred = int(probs[i].argmax())
        ax.set_title(
            f"true {labels[truth[i]]} ({true_p[i]:.2f})\nsaid {labels[pred]} ({probs[i, pred]:.2f})", fontsize=8
        )
    fig.suptitle("worst-classified test images: the true class's probability, and the prediction")
    return _save(fig, path)


def run_figures(experiment, run_dir: Path, results: dict) -> list[Path]:
    """The pictures of a finished run, beside metrics.json: curves.png always; confusion.png and worst.png
    when the head scores a confusion matrix and its task gives class probabilities."""
    cfg = experiment.cfg
    title = f"{cfg['model']['name']} + {cfg['head']['name']} on {cfg['data']['name']}"
    name, mode = experiment.monitor()
    written = []
    if results["history"]:
        written.append(curves(results["history"], name, run_dir / "curves.png", title, higher_is_better=mode == "max"))
    matrix = results["test"].get("confusion_matrix")
    labels = [str(c) for c in experiment.info.classes]
    if isinstance(matrix, list) and matrix:
        written.append(confusion(matrix, labels, run_dir / "confusion.png"))
        probs = _test_probabilities(experiment)
        if probs is not None:
            written.append(worst_classified(*probs, labels, run_dir / "worst.png"))
    return written


def _test_probabilities(experiment) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Test images, their class indices and the deployed model's class probabilities (None when the task
    has no probabilities output)."""
    import torch

    from zoo.data import loader  # lazy: torch, only for a run's test images (`zoo report` draws without it)
    from zoo.deploy.graph import DeployModel  # lazy: torch, as above

    deploy = DeployModel(experiment.model, experiment.info.task).eval()
    # the output whose role is one probability per class and image (zoo.tasks), whatever the head calls it
    per_class = [i for i, (_, out) in enumerate(deploy.roles) if out.role == "probabilities" and len(out.axes) == 2]
    if not per_class:
        return None
    position = per_class[0]
    images, truth, probs = [], [], []
    with torch.no_grad():
        for x, y in loader(experiment.data.test, 256, False, 0, 0):
            out = deploy(x.to(experiment.device))
            out = out if isinstance(out, tuple) else (out,)
            images.append(x.numpy())
            truth.append(torch.as_tensor(y).reshape(-1).numpy())
            probs.append(out[position].float().cpu().numpy())
    if not images:
        return None
    return np.concatenate(images), np.concatenate(truth).astype(np.int64), np.concatenate(probs)


def sweep_curves(root: str | Path) -> Path:
    """report.png for `zoo report DIR`: every run's validation curves side by side, one colour per setting
    that varies (the runs of one setting, other seeds, share it)."""
    runs = [r for r in collect_runs(root) if r["metrics"].get("history")]
    varying = varying_keys(runs) if len(runs) > 1 else []
    monitors = sorted({r["metrics"].get("monitor", "loss") for r in runs})
    fig = _figure(11.0, 4.0)
    axes = fig.subplots(1, 2)
    colours, seen = {}, set()
    for r in runs:
        label = ", ".join(f"{k}={r['config'][k]}" for k in varying) or r["dir"]
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        history, metric = r["metrics"]["history"], f"val_{r['metrics'].get('monitor', 'loss')}"
        epochs = [h["epoch"] for h in history]
        first = label not in seen
        seen.add(label)
        values = [h.get(metric, np.nan) for h in history]
        axes[0].plot(epochs, values, color=colour, alpha=0.8, label=label if first else None)
        axes[1].plot(epochs, [h.get("val_loss", np.nan) for h in history], color=colour, alpha=0.8)
    axes[0].set(xlabel="epoch", ylabel=" / ".join(monitors), title=f"validation {' / '.join(monitors)}")
    axes[1].set(xlabel="epoch", ylabel="loss", title="validation loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="outside lower center", ncols=min(4, max(1, len(colours))), fontsize=8)
    fig.suptitle(f"{len(runs)} runs of {Path(root).name}")
    return _save(fig, Path(root) / "report.png")
