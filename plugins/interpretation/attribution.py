"""Attributions: which pixels a prediction rests on. Saliency (vanilla gradients, SmoothGrad, Integrated
Gradients), Grad-CAM or Grad-CAM++ on a layer's activations, and occlusion sensitivity, computed by captum
(Grad-CAM++'s weighting is the only glue: captum has none).

What is explained is a score per image: the predicted class's logit (classification, or `target=`),
each predicted value (regression), each class's logits summed over the pixels (segmentation: one map
per class), or each detected box's score (detection: the deployed model's detections, up to `boxes`
per image; a box's score under a changed input is the best score of a same-class detection, weighted by
its overlap with the box). Each method draws one row per image: the image, then a heat map over it per score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch import nn

from zoo import Range, ZooError, register
from zoo.deploy.graph import DeployModel
from zoo.errors import unknown
from zoo.model import Explainer
from zoo_plugins._shared import figure, label_of, overlay, show_image

EXPLAINABLE = ("classification", "regression", "segmentation", "detection")  # a score per image, class or box


def scores_of(model: nn.Module):
    """The (N, K) scores an attribution explains: the model's logits or values, or its dense (N, C, H, W)
    logits summed over the pixels, one score per class."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if not isinstance(out, torch.Tensor):
            raise ZooError("attributions explain models whose raw output is one tensor of scores")
        return out.flatten(2).sum(-1) if out.ndim == 4 else out

    return forward


@torch.no_grad()
def detections(model: nn.Module, x: torch.Tensor, most: int) -> list[list[dict]]:
    """Each image's first `most` detections from the deployed model (its outputs found by role, zoo.tasks):
    box (x0, y0, x1, y1), label index and score."""
    out = _by_role(DeployModel(model).eval(), x)
    found = []
    for i in range(len(x)):
        k = min(most, int(out["num_detections"][i]))
        found.append(
            [
                {
                    "box": out["boxes"][i, j].tolist(),
                    "index": int(out["labels"][i, j]),
                    "score": float(out["scores"][i, j]),
                }
                for j in range(k)
            ]
        )
    return found


def _by_role(deploy: DeployModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = deploy(x)
    out = out if isinstance(out, tuple) else (out,)
    return {role.role: o for (_, role), o in zip(deploy.roles, out)}


def box_scores(model: nn.Module, boxes: list[dict]):
    """(B, T) scores of the T boxes detected in one image, for any batch of variants of that image: the best
    score of a detection of the box's class, weighted by its overlap (IoU) with the box; 0 when none is left."""
    from torchvision.ops import box_iou

    deploy = DeployModel(model).eval()
    ref = torch.tensor([b["box"] for b in boxes], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([b["index"] for b in boxes], dtype=torch.int64)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = _by_role(deploy, x)
        columns = []
        for i in range(len(x)):
            iou = box_iou(out["boxes"][i].detach(), ref.to(x.device))  # (K, T): a weight, not what is explained
            same = out["labels"][i][:, None] == labels.to(x.device)[None, :]
            columns.append((out["scores"][i][:, None] * iou * same).max(0).values)
        return torch.stack(columns)

    return forward


class Attribution(Explainer):
    """What the attribution methods share: the scores and targets to explain, and the picture of the maps."""

    name = "attribution"

    def __init__(self, target: Optional[int], boxes: int = 3):
        self.target, self.boxes = target, boxes

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

    def attribute(self, forward, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, H, W) attributions of the scores `forward(x)[:, target]` (target (N,)) for the images x;
        `model` is the network behind `forward` (layer methods look inside it)."""
        raise NotImplementedError

    def maps(self, subject) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The attribution maps (N, T, H, W), the targets (N, T) and the scores (N, K) of the subject's images."""
        model = subject.model.eval()
        x = subject.images.clone()
        forward = scores_of(model)
        with torch.no_grad():
            scores = forward(x)
        targets = self.targets(subject, scores)
        columns = [self.attribute(forward, model, x, torch.as_tensor(targets[:, t])) for t in range(targets.shape[1])]
        maps = torch.stack(columns, 1).detach().float().cpu().numpy()
        return maps, targets, scores.cpu().numpy()

    def box_maps(self, subject) -> tuple[list[list[np.ndarray]], list[list[dict]]]:
        """Detection: per image, a map per detected box (its first `boxes` detections), and the detections."""
        model = subject.model.eval()
        with torch.no_grad():
            found = detections(model, subject.images, self.boxes)
        maps = []
        for i, boxes in enumerate(found):
            x = subject.images[i : i + 1].clone()
            forward = box_scores(model, boxes) if boxes else None
            row = [self.attribute(forward, model, x, torch.tensor([t]))[0] for t in range(len(boxes))]
            maps.append([m.detach().float().cpu().numpy() for m in row])
        return maps, found

    def explain(self, subject, output: Path) -> dict:
        classes, task = subject.info.classes, subject.info.task
        if task == "detection":
            maps, found = self.box_maps(subject)
            rows = [
                [(m, f"{label_of(classes, d['index'])}: {d['score']:.2f}", d["box"]) for m, d in zip(row, dets)]
                for row, dets in zip(maps, found)
            ]
            summary = {"detections": [[{**d, "label": label_of(classes, d["index"])} for d in r] for r in found]}
        else:
            maps, targets, scores = self.maps(subject)
            rows = [
                [(maps[i, t], f"{label_of(classes, int(k))}: {scores[i, k]:.2f}", None) for t, k in enumerate(row)]
                for i, row in enumerate(targets)
            ]
            summary = {"targets": [[label_of(classes, int(k)) for k in row] for row in targets]}
        self.draw(subject, rows, output / f"{self.name}.png")
        return summary

    def draw(self, subject, rows: list[list[tuple]], path: Path) -> None:
        """One row per image: the image, then each (map, title, box or None) as a heat map over it."""
        from matplotlib.patches import Rectangle

        images = subject.images.numpy()
        cols = 1 + max([len(r) for r in rows] + [1])
        fig = figure(2.2 * cols + 0.6, 2.3 * len(rows))
        axes = fig.subplots(len(rows), cols, squeeze=False)
        shown = None
        for i, row in enumerate(rows):
            truth = f"\ntrue {label_of(subject.info.classes, int(subject.targets[i]))}" if _is_class(subject, i) else ""
            show_image(axes[i, 0], images[i], f"{subject.names[i]}{truth}")
            for j in range(1, cols):
                axes[i, j].axis("off")
            if not row and subject.info.task == "detection":
                axes[i, 1].set_title("no detection", fontsize=8)
            for j, (heat, title, box) in enumerate(row):
                shown = overlay(axes[i, 1 + j], images[i], heat, title)
                if box is not None:
                    x0, y0, x1, y1 = box
                    axes[i, 1 + j].add_patch(
                        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="white")
                    )
        if shown is not None:
            fig.colorbar(shown, ax=axes[:, -1].tolist(), shrink=0.6, label="attribution (each map scaled to [0, 1])")
        what = "each detected box's score (box in white)" if subject.info.task == "detection" else "each score"
        fig.suptitle(f"{self.title()}: what {what} rests on")
        fig.savefig(path)

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

    def __init__(self, method: str, samples: int, noise: float, steps: int, target: Optional[int], boxes: int = 3):
        super().__init__(target, boxes)
        self.method, self.samples, self.noise, self.steps = method, samples, noise, steps

    def attribute(self, forward, model, x, target):
        from captum.attr import IntegratedGradients, NoiseTunnel
        from captum.attr import Saliency as Gradients

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
    """Grad-CAM: a layer's activations weighted by the mean gradient of the score, ReLU, upsampled; or
    Grad-CAM++: weighted by the positive gradients, each scaled by its second- and third-order terms
    (Chattopadhyay et al. 2018), which spreads the map over several instances of a class."""

    name = "gradcam"

    def __init__(self, layer: Optional[str], target: Optional[int], method: str = "gradcam", boxes: int = 3):
        super().__init__(target, boxes)
        self.layer, self.method = layer, method

    def conv(self, model: nn.Module) -> tuple[str, nn.Module]:
        """The layer to explain: `layer` by name (any module whose output is a feature map), or the
        backbone's last convolution."""
        modules = dict(model.named_modules())
        if self.layer is None:
            deep = [n for n, m in modules.items() if n.startswith("backbone.") and isinstance(m, nn.Conv2d)]
            if not deep:
                raise ZooError("explain.gradcam needs a convolution in the backbone; name a layer with layer=NAME")
            return deep[-1], modules[deep[-1]]
        if not self.layer or self.layer not in modules:
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            see = "zoo list layers run=DIR"
            raise unknown("layer for explain.gradcam.layer", self.layer, convs or modules, see=see)
        return self.layer, modules[self.layer]

    def attribute(self, forward, model, x, target):
        from captum.attr import LayerAttribution, LayerGradCam

        name, layer = self.conv(model)
        if self.method == "gradcam++":
            cam = grad_cam_plus_plus(forward, layer, x, target)
        else:
            cam = LayerGradCam(forward, layer).attribute(x, target=target, relu_attributions=True)
        if not isinstance(cam, torch.Tensor) or cam.ndim != 4:
            raise ZooError(f"explain.gradcam.layer={name}: its output is not a feature map (N, C, H, W)")
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[:, 0]

    def title(self) -> str:
        return "Grad-CAM++" if self.method == "gradcam++" else "Grad-CAM"


def grad_cam_plus_plus(forward, layer: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) Grad-CAM++ of the scores forward(x)[:, target] over `layer`'s activations A, from captum's
    activations and gradients g: weights = sum over pixels of relu(g) * g^2 / (2 g^2 + sum(A) g^3) (the
    closed form for an exponential of the score), map = relu(sum over channels of weights * A)."""
    from captum.attr import LayerActivation, LayerGradientXActivation

    acts = LayerActivation(forward, layer).attribute(x)
    grads = LayerGradientXActivation(forward, layer, multiply_by_inputs=False).attribute(x, target=target)
    if not isinstance(acts, torch.Tensor) or acts.ndim != 4:
        return acts
    g2, g3 = grads.pow(2), grads.pow(3)
    denominator = 2 * g2 + acts.sum((2, 3), keepdim=True) * g3
    alpha = torch.where(grads != 0, g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator)), 0)
    weights = (alpha * grads.clamp_min(0)).sum((2, 3), keepdim=True)
    return (weights * acts).sum(1, keepdim=True).clamp_min(0)


class Occlusion(Attribution):
    """How much each score drops when a window of the image is blacked out, slid over the image."""

    name = "occlusion"

    def __init__(self, window: int, stride: int, target: Optional[int], boxes: int = 3):
        super().__init__(target, boxes)
        self.window, self.stride = window, stride

    def attribute(self, forward, model, x, target):
        from captum.attr import Occlusion as Sliding

        c, h, w = x.shape[1:]
        win = (c, min(self.window, h), min(self.window, w))
        a = Sliding(forward).attribute(
            x,
            target=target,
            sliding_window_shapes=win,
            strides=(c, self.stride, self.stride),
            baselines=0.0,
            perturbations_per_eval=16 if len(x) == 1 else 1,
        )
        return a.sum(1).clamp_min(0)  # where hiding the pixels lowers the score


Boxes = Annotated[int, Range(1, 20)]  # detection: the detected boxes explained per image, best first


@register.interpretation("saliency", tasks=EXPLAINABLE)
def saliency(
    method: Literal["vanilla", "smoothgrad", "integrated_gradients"] = "integrated_gradients",
    samples: Annotated[int, Range(1, 256)] = 16,
    noise: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.15,
    steps: Annotated[int, Range(2, 1000)] = 32,
    target: Optional[Annotated[int, Range(0)]] = None,
    boxes: Boxes = 3,
) -> Explainer:
    """Saliency maps: input gradients (vanilla), SmoothGrad (samples noisy copies) or Integrated Gradients."""
    return Saliency(method, samples, noise, steps, target, boxes)


@register.interpretation("gradcam", tasks=EXPLAINABLE)
def gradcam(
    layer: Optional[str] = None,
    target: Optional[Annotated[int, Range(0)]] = None,
    method: Literal["gradcam", "gradcam++"] = "gradcam",
    boxes: Boxes = 3,
) -> Explainer:
    """Grad-CAM or Grad-CAM++ over a layer (layer=NAME; default the backbone's last convolution)."""
    return GradCAM(layer, target, method, boxes)


@register.interpretation("occlusion", tasks=EXPLAINABLE)
def occlusion(
    window: Annotated[int, Range(1)] = 8,
    stride: Annotated[int, Range(1)] = 4,
    target: Optional[Annotated[int, Range(0)]] = None,
    boxes: Boxes = 3,
) -> Explainer:
    """Occlusion sensitivity: how much each score drops when a window x window patch is blacked out."""
    return Occlusion(window, stride, target, boxes)
