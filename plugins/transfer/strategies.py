"""Transfer strategies: where the weights come from, what is frozen, and how fast each part learns.

Weight sources (`transfer.weights=`): `timm` (the architecture's hub weights; needs the internet once),
a checkpoint file, or a previous run's directory (its best checkpoint). Across tasks and class counts
the matching backbone weights are loaded and the head starts fresh; the run reports what was loaded,
skipped and new.
"""

from __future__ import annotations

import logging
from typing import Annotated

import torch.nn.functional as F

from zoo import Range, register
from zoo.model import Transfer, ZooModel, freeze
from zoo.train.checkpoint import load_weights
from zoo_plugins._shared import DropoutRate

log = logging.getLogger("zoo")


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
        report = load_weights(model, self.weights, include_head=True)
        fresh = [k for k in report["new"] if k.startswith("head.")]
        if fresh:  # "as it is" only holds for what was loaded: say so, and how to keep a hub classifier whole
            hint = (
                "; head=pretrained_classifier keeps timm's own classifier and labels"
                if self.weights.startswith("timm")
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
    on their way into the head while training."""

    def __init__(self, weights: str, cache: bool, dropout: float = 0.0):
        self.weights, self.cache_features, self.dropout = weights, cache, dropout

    def setup(self, model: ZooModel) -> dict:
        report = load_weights(model, self.weights, include_head=False)
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
    shallower stage scaled again by `layer_decay`."""

    def __init__(self, weights: str, head_epochs: int, unfreeze_stages: int, lr_scale: float, layer_decay: float):
        self.weights, self.head_epochs, self.unfreeze_stages = weights, head_epochs, unfreeze_stages
        self.lr_scale, self.layer_decay = lr_scale, layer_decay
        self.unfrozen: list = []

    def _deepest(self, model: ZooModel) -> list:
        if self.unfreeze_stages < 0 and self.layer_decay == 1.0:  # all of it at one rate: stages do not matter
            return [model.backbone]
        stages = model.backbone.stages()
        k = len(stages) if self.unfreeze_stages < 0 else min(self.unfreeze_stages, len(stages))
        return stages[len(stages) - k :]

    def setup(self, model: ZooModel) -> dict:
        self._deepest(model)  # a backbone without stages says so now, not when the head phase ends
        report = load_weights(model, self.weights, include_head=False)
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
def scratch(weights: str = "none") -> Transfer:
    """Train from random initialisation: nothing loaded or frozen (weights is ignored, for sweeps over strategies)."""
    return Scratch(weights)


@register.transfer("pretrained")
def pretrained(weights: str = "timm") -> Transfer:
    """Use a trained model as it is: load every matching weight (head too); trainer.max_epochs=0 only evaluates."""
    return Pretrained(weights)


@register.transfer("feature_extraction")
def feature_extraction(weights: str = "timm") -> Transfer:
    """Frozen base whose features are computed once and cached; a new head trains on the cache (fast, no augmenting)."""
    return FrozenBase(weights, cache=True)


@register.transfer("frozen")
def frozen(weights: str = "timm", dropout: DropoutRate = 0.2) -> Transfer:
    """A new head on a frozen base (in eval mode), trained on augmented images with dropout on the base's features."""
    return FrozenBase(weights, cache=False, dropout=dropout)


@register.transfer("finetune")
def finetune(
    weights: str = "timm",
    head_epochs: Annotated[int, Range(0)] = 3,
    unfreeze_stages: int = 2,
    lr_scale: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.1,
    layer_decay: Annotated[float, Range(0, 1, min_exclusive=True)] = 1.0,
) -> Transfer:
    """Head only for head_epochs, then unfreeze the deepest stages (-1: all) at lr * lr_scale, with layer-wise decay."""
    return FineTune(weights, head_epochs, unfreeze_stages, lr_scale, layer_decay)
