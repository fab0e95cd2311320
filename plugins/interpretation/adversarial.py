"""Adversarial examples: how little a change to the pixels flips a classifier's answer. FGSM (one step of
size epsilon along the sign of the loss's gradient) and PGD (projected gradient descent: several smaller
steps, each projected back into the L-infinity ball of radius epsilon) come from captum (`captum.robust`);
zoo gives them the model's cross-entropy on its logits and the images in [0, 1], where the model normalises
inside, so the perturbed images stay images (clamped to [0, 1]).

Two pictures: the explained images, each with its perturbation (magnified: mid-grey is no change, black and
white are -epsilon and +epsilon) and the adversarial image, with the prediction and its probability before
and after; and the accuracy on the test split against epsilon, which is also a table in summary.json and on
the terminal (stderr, so stdout stays the one JSON line of `zoo explain`)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from zoo import Length, Range, ZooError, register
from zoo.data import loader
from zoo.model import Explainer
from zoo_plugins._shared import figure, label_of, show_image

METHODS = {"fgsm": "FGSM", "pgd": "PGD"}


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each image's cross-entropy (captum's default loss, -log, expects probabilities; the model gives logits)."""
    return F.cross_entropy(logits, target, reduction="none")


def logits_of(model: nn.Module):
    """The model's forward, checked to give one (N, classes) tensor of scores."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ZooError("explain.adversarial attacks models whose raw output is one (N, classes) tensor of logits")
        return out

    return forward


class Adversarial(Explainer):
    """FGSM and PGD (captum.robust) on the images explained, and test accuracy against epsilon."""

    def __init__(
        self,
        method: str,
        epsilons: list[float],
        example_epsilon: float,
        steps: int,
        step_size: Optional[float],
        max_images: int,
    ):
        self.methods = list(METHODS) if method == "both" else [method]
        self.epsilons = sorted({float(e) for e in epsilons})
        self.example_epsilon, self.steps, self.step_size = example_epsilon, steps, step_size
        self.max_images = max_images

    def step(self, epsilon: float) -> float:
        """PGD's step size: as declared, or 2.5 epsilon / steps (Madry et al.: the ball's far side in reach)."""
        return self.step_size if self.step_size is not None else 2.5 * epsilon / self.steps

    def attack(self, model: nn.Module, method: str, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
        """Adversarial versions of the images x (in [0, 1]) against the labels y, at most epsilon away in each pixel."""
        from captum.robust import FGSM, PGD

        if epsilon == 0:
            return x.clone()
        forward = logits_of(model)
        with warnings.catch_warnings():  # captum sets requires_grad on each step's input itself, and says so
            warnings.filterwarnings("ignore", "Input Tensor 0 did not already require gradients")
            if method == "fgsm":
                return FGSM(forward, cross_entropy, 0.0, 1.0).perturb(x, epsilon, y).detach()
            pgd = PGD(forward, cross_entropy, 0.0, 1.0)
            return pgd.perturb(x, epsilon, self.step(epsilon), self.steps, y).detach()

    def curve(self, subject, model: nn.Module) -> tuple[dict[str, list[float]], int]:
        """Test-split accuracy per method at each epsilon, over the first max_images test images."""
        correct = {m: np.zeros(len(self.epsilons)) for m in self.methods}
        seen = 0
        for x, y in loader(subject.data().test, 128, False, 0, 0):
            x, y = x[: self.max_images - seen], torch.as_tensor(y).long()[: self.max_images - seen]
            for m in self.methods:
                for i, eps in enumerate(self.epsilons):
                    with torch.no_grad():
                        correct[m][i] += (model(self.attack(model, m, x, y, eps)).argmax(1) == y).sum().item()
            seen += len(x)
            if seen >= self.max_images:
                break
        if not seen:
            raise ZooError("explain.adversarial: the run's test split is empty; there is no accuracy to measure")
        return {m: [round(float(c) / seen, 4) for c in correct[m]] for m in self.methods}, seen

    def explain(self, subject, output: Path) -> dict:
        model = subject.model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # gradients for the pixels only
        accuracy, scored = self.curve(subject, model)
        examples = self.examples(subject, model, output / "adversarial_examples.png")
        self.draw_curve(accuracy, scored, output / "adversarial_accuracy.png")
        print(self.table(accuracy, scored), file=sys.stderr)
        return {
            "epsilons": self.epsilons,
            "accuracy": accuracy,
            "test_images": scored,
            "pgd": {"steps": self.steps, "step_size": self.step_size or "2.5 * epsilon / steps"},
            "example_epsilon": self.example_epsilon,
            "examples": examples,
        }

    def examples(self, subject, model: nn.Module, path: Path) -> list[dict]:
        """The explained images, each attacked at example_epsilon by each method: perturbation and result."""
        x, eps = subject.images, self.example_epsilon
        with torch.no_grad():
            before = F.softmax(model(x), 1)
        known = subject.targets is not None and all(torch.as_tensor(t).numel() == 1 for t in subject.targets)
        y = torch.as_tensor([int(t) for t in subject.targets]) if known else before.argmax(1)  # else its own answer
        after = {}
        for m in self.methods:
            adv = self.attack(model, m, x, y, eps)
            with torch.no_grad():
                after[m] = (adv, F.softmax(model(adv), 1))
        classes = subject.info.classes
        fig = figure(2.0 * (1 + 2 * len(self.methods)) + 0.4, 2.3 * len(x))
        axes = fig.subplots(len(x), 1 + 2 * len(self.methods), squeeze=False)
        records = []
        for i in range(len(x)):
            p = int(before[i].argmax())
            truth = f" (true {label_of(classes, int(y[i]))})" if known else ""
            _show(axes[i, 0], x[i], f"{subject.names[i]}{truth}\n{label_of(classes, p)}: {float(before[i, p]):.2f}")
            record: dict = {"image": subject.names[i], "before": {"label": label_of(classes, p)}}
            record["before"]["score"] = float(before[i, p])
            for j, m in enumerate(self.methods):
                adv, probs = after[m]
                q = int(probs[i].argmax())
                delta = (adv[i] - x[i]) / (2 * eps) + 0.5 if eps > 0 else torch.full_like(x[i], 0.5)
                _show(axes[i, 1 + 2 * j], delta, f"{METHODS[m]} perturbation\n(±{eps:g} as black/white)")
                title = f"{METHODS[m]} ε={eps:g}\n{label_of(classes, q)}: {float(probs[i, q]):.2f}"
                _show(axes[i, 2 + 2 * j], adv[i], title + (" (flipped)" if q != p else ""))
                record[m] = {"label": label_of(classes, q), "score": float(probs[i, q])}
            records.append(record)
        fig.suptitle(f"adversarial examples at ε={eps:g} (pixels in [0, 1]): prediction and probability before, after")
        fig.savefig(path)
        return records

    def draw_curve(self, accuracy: dict[str, list[float]], scored: int, path: Path) -> None:
        """Test accuracy against epsilon, one line per method."""
        fig = figure(6.4, 4.4)
        ax = fig.subplots()
        for m, acc in accuracy.items():
            ax.plot(self.epsilons, acc, marker="o", label=METHODS[m] + (f" ({self.steps} steps)" if m == "pgd" else ""))
        ax.set(xlabel="ε (largest change of a pixel in [0, 1])", ylabel="test accuracy", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"accuracy under attack, {scored} test images")
        fig.savefig(path)

    def table(self, accuracy: dict[str, list[float]], scored: int) -> str:
        """The accuracy-vs-epsilon table as text."""
        head = f"{'epsilon':>8}  " + "  ".join(f"{METHODS[m]:>6}" for m in accuracy)
        rows = [
            f"{eps:>8g}  " + "  ".join(f"{accuracy[m][i]:>6.3f}" for m in accuracy)
            for i, eps in enumerate(self.epsilons)
        ]
        return "\n".join([f"test accuracy under attack ({scored} images)", head, *rows])


def _show(ax, image: torch.Tensor, title: str) -> None:
    """An image (C, H, W) in [0, 1]; more channels than three show the first (any channel count attacks)."""
    a = image.detach().float().cpu().numpy()
    show_image(ax, a if a.shape[0] in (1, 3) else a[:1], title)


Epsilon = Annotated[float, Range(0, 1)]


@register.interpretation("adversarial", tasks=("classification",))
def adversarial(
    method: Literal["fgsm", "pgd", "both"] = "both",
    epsilons: Annotated[list[Epsilon], Length(min=1, max=32)] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    example_epsilon: Epsilon = 0.1,
    steps: Annotated[int, Range(1, 1000)] = 10,
    step_size: Optional[Annotated[float, Range(0, 1, min_exclusive=True)]] = None,
    max_images: Annotated[int, Range(1, 100000)] = 256,
) -> Explainer:
    """FGSM and PGD adversarial examples (captum.robust) and test accuracy against epsilon (max_images)."""
    return Adversarial(method, list(epsilons), example_epsilon, steps, step_size, max_images)
