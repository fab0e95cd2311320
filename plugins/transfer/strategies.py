"""Transfer strategies: where the weights come from, what is frozen, and how fast each part learns.

Weight sources (`transfer.weights=`): `pretrained` (the default: the architecture's own published weights,
timm's hub for model=timm, torchvision's weights enum for model=torchvision; the internet once, then the cache),
`timm`/`timm:FILE`, a checkpoint file, or a previous run's directory (its best checkpoint). Across tasks and
class counts the matching backbone weights are loaded and the head starts fresh, unless `keep_head=true` keeps
the head trained in the source run (the lab's two steps: train the head on the frozen base, then fine-tune);
the run reports what was loaded, skipped and new.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import torch.nn.functional as F

from zoo import Range, register
from zoo.errors import ZooError
from zoo.model import Transfer, ZooModel, freeze
from zoo.params import NonEmpty
from zoo.train.checkpoint import load_weights
from zoo_plugins._shared import DropoutRate

log = logging.getLogger("zoo")

Weights = Annotated[str, NonEmpty()]  # a source, or `none`: an empty value names nothing
PRETRAINED = "pretrained"  # the architecture's own published weights, whichever hub or enum it takes them from


def load(model: ZooModel, weights: str, keep_head: bool, head_if_it_fits: bool = False) -> dict:
    """Load `weights` into `model` (zoo.load_weights), the head too with `keep_head`: then every head tensor must
    come from the source (same head, same class count), or one line says which do not fit; `head_if_it_fits`
    loads the head tensors that fit and leaves the rest fresh."""
    sources = getattr(model.backbone, "weight_sources", ())
    if weights == PRETRAINED and PRETRAINED not in sources and not Path(weights).exists():
        raise ZooError(
            f"transfer.weights=pretrained: {type(model.backbone).__name__} has no published weights of its own "
            "(model=timm and model=torchvision have); give transfer.weights=RUN_DIR or a checkpoint .pt file"
        )
    report = load_weights(model, weights, include_head=keep_head or head_if_it_fits)
    fresh = [k for k in report["new"] if k.startswith("head.")]
    if keep_head and fresh:
        raise ZooError(
            f"transfer.keep_head=true but the head in transfer.weights={weights} does not fit this run's head: "
            f"{len(fresh)} head tensor(s) not loaded, first {', '.join(fresh[:3])}; the head, its options and the "
            "class count (data.classes) must be the source run's, or drop transfer.keep_head"
        )
    return report


class Scratch(Transfer):
    """Random initialisation; every parameter trains at the base learning rate."""

    def __init__(self, weights: str):
        self.weights = weights

    def setup(self, model: ZooModel) -> None:
        if self.weights not in ("none", ""):
            log.info("transfer=scratch ignores transfer.weights=%s: it starts from random weights", self.weights)


class Pretrained(Transfer):
    """Load every matching weight, head included, and train everything (or nothing: max_epochs=0)."""

    def __init__(self, weights: str):
        self.weights = weights

    def setup(self, model: ZooModel) -> dict:
        report = load(model, self.weights, keep_head=False, head_if_it_fits=True)
        fresh = [k for k in report["new"] if k.startswith("head.")]
        if fresh:  # "as it is" only holds for what was loaded: say so, and how to keep a hub classifier whole
            hint = (
                "; head=pretrained_classifier keeps the architecture's published classifier and labels"
                if self.weights.startswith("timm") or self.weights == PRETRAINED
                else ""
            )
            log.warning(
                "transfer=pretrained: %d head tensors have no pretrained value and start "
                "fresh (train them: trainer.max_epochs>0)%s",
                len(fresh),
                hint,
            )
        return report


class FrozenBase(Transfer):
    """Load the backbone, freeze it whole, train a new head; optionally drop out the frozen features
    on their way into the head while training. With `keep_head` the source run's head goes on training."""

    def __init__(self, weights: str, cache: bool, dropout: float = 0.0, keep_head: bool = False):
        self.weights, self.cache_features, self.dropout, self.keep_head = weights, cache, dropout, keep_head

    def setup(self, model: ZooModel) -> dict:
        report = load(model, self.weights, self.keep_head)
        freeze(model.backbone)
        if self.dropout > 0:
            model.head.register_forward_pre_hook(self._drop_features)
        return report

    def _drop_features(self, head, args):
        if not head.training:  # evaluation and export see the features whole
            return None
        features = [F.dropout(f, self.dropout, training=True) for f in args[0]]
        return (features, *args[1:])


class FineTune(Transfer):
    """Head only for `head_epochs`, then the deepest `unfreeze_stages` stages at lr * lr_scale, each
    shallower stage scaled again by `layer_decay`. With `keep_head` the head is the source run's, as trained there
    (step 2 of the lab's two: fine-tune what step 1 trained), instead of a fresh one."""

    def __init__(
        self, weights: str, head_epochs: int, unfreeze_stages: int, lr_scale: float, layer_decay: float, keep_head=False
    ):
        self.weights, self.head_epochs, self.unfreeze_stages = weights, head_epochs, unfreeze_stages
        self.lr_scale, self.layer_decay, self.keep_head = lr_scale, layer_decay, keep_head
        self.unfrozen: list = []

    def _deepest(self, model: ZooModel) -> list:
        if self.unfreeze_stages < 0 and self.layer_decay == 1.0:  # all of it at one rate: stages do not matter
            return [model.backbone]
        stages = model.backbone.stages()
        k = len(stages) if self.unfreeze_stages < 0 else min(self.unfreeze_stages, len(stages))
        return stages[len(stages) - k :]

    def setup(self, model: ZooModel) -> dict:
        self._deepest(model)  # a backbone without stages says so now, not when the head phase ends
        report = load(model, self.weights, self.keep_head)
        freeze(model.backbone)
        if self.head_epochs == 0:
            self.on_epoch_start(0, model)
        return report

    def on_epoch_start(self, epoch: int, model: ZooModel) -> bool:
        if epoch != self.head_epochs or self.unfrozen:
            return False
        self.unfrozen = self._deepest(model)
        for stage in self.unfrozen:
            freeze(stage, False)
        return True

    def param_groups(self, model: ZooModel, lr: float) -> list[dict]:
        groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr}]
        for depth, stage in enumerate(reversed(self.unfrozen)):  # deepest first
            groups.append({"params": list(stage.parameters()), "lr": lr * self.lr_scale * self.layer_decay**depth})
        return groups


@register.transfer("scratch")
def scratch(weights: Weights = "none") -> Transfer:
    """Train from random initialisation: nothing loaded or frozen (weights is ignored, for sweeps over strategies)."""
    return Scratch(weights)


@register.transfer("pretrained")
def pretrained(weights: Weights = PRETRAINED) -> Transfer:
    """Use a trained model as it is: load every matching weight (head too); trainer.max_epochs=0 only evaluates."""
    return Pretrained(weights)


@register.transfer("feature_extraction")
def feature_extraction(weights: Weights = PRETRAINED, keep_head: bool = False) -> Transfer:
    """Frozen base whose features are computed once and cached; a new head (keep_head: the source run's) trains on
    the cache (fast, no augmenting)."""
    return FrozenBase(weights, cache=True, keep_head=keep_head)


@register.transfer("frozen")
def frozen(weights: Weights = PRETRAINED, dropout: DropoutRate = 0.2, keep_head: bool = False) -> Transfer:
    """A new head (keep_head: the source run's) on a frozen base (in eval mode), trained on augmented images with
    dropout on the base's features."""
    return FrozenBase(weights, cache=False, dropout=dropout, keep_head=keep_head)


@register.transfer("finetune")
def finetune(
    weights: Weights = PRETRAINED,
    head_epochs: Annotated[int, Range(0)] = 3,
    unfreeze_stages: Annotated[int, Range(-1)] = 2,
    lr_scale: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.1,
    layer_decay: Annotated[float, Range(0, 1, min_exclusive=True)] = 1.0,
    keep_head: bool = False,
) -> Transfer:
    """Head only for head_epochs, then unfreeze the deepest stages (-1: all) at lr * lr_scale, with layer-wise decay;
    keep_head=true starts from the head trained in the weights' run (step 2 of a two-step transfer)."""
    return FineTune(weights, head_epochs, unfreeze_stages, lr_scale, layer_decay, keep_head)
