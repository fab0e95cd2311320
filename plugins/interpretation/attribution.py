"""Attributions: which pixels a prediction rests on. Saliency (vanilla gradients, SmoothGrad, Integrated
Gradients), Grad-CAM on a convolution's activations, and occlusion sensitivity, computed by captum.

What is explained is a score per image: the predicted class's logit (classification, or `target=`),
each predicted value (regression), each class's logits summed over the pixels (segmentation: one map
per class). Each method draws one row per image: the image, then a heat map over it per score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch import nn

from zoo import Range, ZooError, register
from zoo.errors import unknown
from zoo.model import Explainer
from zoo_plugins._shared import figure, label_of, overlay, show_image

EXPLAINABLE = ("classification", "regression", "segmentation")  # one score per image or per class


def scores_of(model: nn.Module):
    """The (N, K) scores an attribution explains: the model's logits or values, or its dense (N, C, H, W)
    logits summed over the pixels, one score per class."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise ZooError("attributions explain models whose raw output is one tensor of scores")
        return out.flatten(2).sum(-1) if out.ndim == 4 else out

    return forward


class Attribution(Explainer):
    """What the attribution methods share: the scores and targets to explain, and the picture of the maps."""

    name = "attribution"

    def __init__(self, target: Optional[int]):
        self.target = target

    def targets(self, subject, scores: torch.Tensor) -> np.ndarray:
        """(N, T) score indices to explain per image: the chosen class, the predicted class, or every score."""
        n, k = scores.shape
        if self.target is not None:
            if not 0 <= self.target < k:
                raise ZooError(f"explain.{self.name}.target={self.target} must be a score index from 0 to {k - 1}")
            return np.full((n, 1), self.target)
        if subject.info.task == "classification":
            return scores.argmax(1, keepdim=True).cpu().numpy()
        return np.tile(np.arange(k), (n, 1))

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, H, W) attributions of the scores `target` (N,) for the images x."""
        raise NotImplementedError

    def maps(self, subject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The attribution maps (N, T, H, W), the targets (N, T) and the scores (N, K) of the subject's images."""
        model = subject.model.eval()
        x = subject.images.clone()
        with torch.no_grad():
            scores = scores_of(model)(x)
        targets = self.targets(subject, scores)
        columns = [self.attribute(model, x, torch.as_tensor(targets[:, t])) for t in range(targets.shape[1])]
        maps = torch.stack(columns, 1).detach().float().cpu().numpy()
        return maps, targets, scores.cpu().numpy()

    def explain(self, subject, output: Path) -> dict:
        maps, targets, scores = self.maps(subject)
        images, classes = subject.images.numpy(), subject.info.classes
        rows, cols = len(images), 1 + targets.shape[1]
        fig = figure(2.2 * cols + 0.6, 2.3 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        shown = None
        for i in range(rows):
            truth = f"\ntrue {label_of(classes, int(subject.targets[i]))}" if _is_class(subject, i) else ""
            show_image(axes[i, 0], images[i], f"{subject.names[i]}{truth}")
            for t in range(targets.shape[1]):
                k = int(targets[i, t])
                shown = overlay(axes[i, 1 + t], images[i], maps[i, t], f"{label_of(classes, k)}: {scores[i, k]:.2f}")
        fig.colorbar(shown, ax=axes[:, -1].tolist(), shrink=0.6, label="attribution (each map scaled to [0, 1])")
        fig.suptitle(f"{self.title()}: what each score rests on")
        fig.savefig(output / f"{self.name}.png")
        return {"targets": [[label_of(classes, int(k)) for k in row] for row in targets]}

    def title(self) -> str:
        """The method's name as the picture shows it."""
        return self.name


def _is_class(subject, i: int) -> bool:
    t = subject.targets[i] if subject.targets is not None else None
    return subject.info.task == "classification" and t is not None and torch.as_tensor(t).numel() == 1


class Saliency(Attribution):
    """|d score / d pixel|, summed over channels: vanilla, SmoothGrad (averaged over noisy copies) or
    Integrated Gradients (from a black image)."""

    name = "saliency"

    def __init__(self, method: str, samples: int, noise: float, steps: int, target: Optional[int]):
        super().__init__(target)
        self.method, self.samples, self.noise, self.steps = method, samples, noise, steps

    def attribute(self, model, x, target):
        from captum.attr import IntegratedGradients, NoiseTunnel
        from captum.attr import Saliency as Gradients

        forward = scores_of(model)
        if self.method == "integrated_gradients":
            a = IntegratedGradients(forward).attribute(x, baselines=0.0, target=target, n_steps=self.steps)
        elif self.method == "smoothgrad":
            a = NoiseTunnel(Gradients(forward)).attribute(
                x, nt_type="smoothgrad", nt_samples=self.samples, stdevs=self.noise, target=target, abs=True
            )
        else:
            a = Gradients(forward).attribute(x, target=target, abs=True)
        return a.abs().sum(1)

    def title(self) -> str:
        return f"saliency ({self.method.replace('_', ' ')})"


class GradCAM(Attribution):
    """Grad-CAM: a convolution's activations weighted by the mean gradient of the score, ReLU, upsampled."""

    name = "gradcam"

    def __init__(self, layer: Optional[str], target: Optional[int]):
        super().__init__(target)
        self.layer = layer

    def conv(self, model: nn.Module) -> tuple[str, nn.Module]:
        """The convolution to explain: `layer` by name, or the backbone's last one."""
        convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        if self.layer is None:
            deep = [n for n in convs if n.startswith("backbone.")]
            if not deep:
                raise ZooError("explain.gradcam needs a convolution in the backbone; name one with layer=NAME")
            return deep[-1], convs[deep[-1]]
        if self.layer not in convs:
            raise unknown("convolution for explain.gradcam.layer", self.layer, convs)
        return self.layer, convs[self.layer]

    def attribute(self, model, x, target):
        from captum.attr import LayerAttribution, LayerGradCam

        _, conv = self.conv(model)
        cam = LayerGradCam(scores_of(model), conv).attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[:, 0]

    def title(self) -> str:
        return "Grad-CAM"


class Occlusion(Attribution):
    """How much each score drops when a window of the image is blacked out, slid over the image."""

    name = "occlusion"

    def __init__(self, window: int, stride: int, target: Optional[int]):
        super().__init__(target)
        self.window, self.stride = window, stride

    def attribute(self, model, x, target):
        from captum.attr import Occlusion as Sliding

        c, h, w = x.shape[1:]
        win = (c, min(self.window, h), min(self.window, w))
        a = Sliding(scores_of(model)).attribute(
            x, target=target, sliding_window_shapes=win, strides=(c, self.stride, self.stride), baselines=0.0
        )
        return a.sum(1).clamp_min(0)  # where hiding the pixels lowers the score


@register.interpretation("saliency", tasks=EXPLAINABLE)
def saliency(
    method: Literal["vanilla", "smoothgrad", "integrated_gradients"] = "integrated_gradients",
    samples: Annotated[int, Range(1, 256)] = 16,
    noise: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.15,
    steps: Annotated[int, Range(2, 1000)] = 32,
    target: Optional[Annotated[int, Range(0)]] = None,
) -> Explainer:
    """Saliency maps: input gradients (vanilla), SmoothGrad (samples noisy copies) or Integrated Gradients."""
    return Saliency(method, samples, noise, steps, target)


@register.interpretation("gradcam", tasks=EXPLAINABLE)
def gradcam(layer: Optional[str] = None, target: Optional[Annotated[int, Range(0)]] = None) -> Explainer:
    """Grad-CAM over a convolution (layer=NAME; default the backbone's last): where the score comes from."""
    return GradCAM(layer, target)


@register.interpretation("occlusion", tasks=EXPLAINABLE)
def occlusion(
    window: Annotated[int, Range(1)] = 8,
    stride: Annotated[int, Range(1)] = 4,
    target: Optional[Annotated[int, Range(0)]] = None,
) -> Explainer:
    """Occlusion sensitivity: how much each score drops when a window x window patch is blacked out."""
    return Occlusion(window, stride, target)
