"""Looking at the network itself: the kernels a convolution learned, and the feature maps each backbone
stage computes for an image (its most active channels)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
from torch import nn

from zoo import Range, ZooError, register
from zoo.errors import unknown
from zoo.model import Explainer
from zoo_plugins._shared import figure, show_image


def _normalised(a: np.ndarray) -> np.ndarray:
    span = float(a.max() - a.min())
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


class Filters(Explainer):
    """A convolution's kernels as a grid: RGB where the layer reads three channels, else each input
    channel's kernels in turn (up to `limit` tiles); each tile scaled to its own range."""

    def __init__(self, layer: Optional[str], limit: int):
        self.layer, self.limit = layer, limit

    def explain(self, subject, output: Path) -> dict:
        convs = {name: m for name, m in subject.model.named_modules() if isinstance(m, nn.Conv2d)}
        if not convs:
            raise ZooError("explain.filters: the model has no convolution")
        name = self.layer or next(iter(convs))
        if name not in convs:
            raise unknown("convolution for explain.filters.layer", name, convs, see="zoo list layers run=DIR")
        w = convs[name].weight.detach().float().cpu().numpy()  # (out, in / groups, k, k)
        if w.shape[1] == 3:
            tiles = [_normalised(k).transpose(1, 2, 0) for k in w[: self.limit]]
        else:
            tiles = [_normalised(k) for kernel in w for k in kernel][: self.limit]
        cols = min(16, len(tiles))
        rows = math.ceil(len(tiles) / cols)
        fig = figure(max(4.0, 0.8 * cols + 0.5), max(2.0, 0.8 * rows + 0.6))  # room for the title
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes:
            ax.axis("off")
        for ax, tile in zip(axes, tiles):
            ax.imshow(tile, cmap=None if tile.ndim == 3 else "gray", interpolation="nearest")
        fig.suptitle(
            f"{name}: {w.shape[0]} kernels of {w.shape[1]} channel(s), {w.shape[2]}x{w.shape[3]} "
            f"(black low, white high)"
        )
        fig.savefig(output / "filters.png")
        return {"layer": name, "kernels": list(w.shape), "layers": list(convs)}


class FeatureMaps(Explainer):
    """Each backbone stage's output for each image: its `channels` most active channels."""

    def __init__(self, channels: int):
        self.channels = channels

    def explain(self, subject, output: Path) -> dict:
        model = subject.model.eval()
        with torch.no_grad():
            features = model.backbone(model.normalize(subject.images))
        files, stages = [], []
        for i, image in enumerate(subject.images.numpy()):
            k = min(self.channels, max(f.shape[1] for f in features))
            fig = figure(1.4 * (k + 1), 1.5 * len(features) + 0.5)
            axes = fig.subplots(len(features), k + 1, squeeze=False)
            for s, f in enumerate(features):
                maps = f[i].float().cpu().numpy()
                top = np.argsort(-maps.mean(axis=(1, 2)))[:k]
                show_image(axes[s, 0], image, f"stage {s + 1}\n{maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]}")
                for j in range(k):
                    axes[s, j + 1].axis("off")
                    if j < len(top):
                        axes[s, j + 1].imshow(maps[top[j]], cmap="viridis")
                        axes[s, j + 1].set_title(f"ch {top[j]}", fontsize=7)
                if i == 0:
                    stages.append({"channels": int(maps.shape[0]), "size": list(maps.shape[1:])})
            fig.suptitle(f"{subject.names[i]}: each stage's most active channels")
            path = output / f"feature_maps_{subject.names[i]}.png"
            fig.savefig(path)
            files.append(path.name)
        return {"stages": stages, "pictures": files}


@register.interpretation("filters")
def filters(layer: Optional[str] = None, limit: Annotated[int, Range(1, 1024)] = 64) -> Explainer:
    """A convolution's learned kernels as an image grid (layer=NAME; default the first convolution)."""
    return Filters(layer, limit)


@register.interpretation("feature_maps")
def feature_maps(channels: Annotated[int, Range(1, 64)] = 8) -> Explainer:
    """The activations of each backbone stage for each image: its most active channels, stage by stage."""
    return FeatureMaps(channels)
