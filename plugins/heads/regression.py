"""Image regression: pool the deepest features, optional hidden layers, one linear output per target.

Targets are standardised for the loss with the mean and std of the training targets (`prepare`), and the
deployed model undoes it: `values` come out in the targets' own units, as do the metrics.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from zoo import Range, register
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import FeatureInfo, Head
from zoo_plugins._shared import DropoutRate, pooled_mlp

# ---- building blocks -------------------------------------------------------------------------


def training_targets(dataset) -> torch.Tensor:
    """All targets of a regression split as a float (N, K) tensor; read from the split's target tensor when
    it keeps one (`targets` or `values`), else by iterating it once."""
    for attr in ("targets", "values"):
        t = getattr(dataset, attr, None)
        if isinstance(t, torch.Tensor) and len(t) == len(dataset):
            return t.float().reshape(len(t), -1)
    rows = [torch.as_tensor(dataset[i][1], dtype=torch.float32).reshape(-1) for i in range(len(dataset))]
    return torch.stack(rows) if rows else torch.zeros(0, 0)


def _target_units():
    """A torchmetrics input transformer that maps standardised predictions back to target units."""
    from torchmetrics.wrappers import MetricInputTransformer

    class InTargetUnits(MetricInputTransformer):
        """Feeds the wrapped metric `pred * std + mean` and the targets as (N, K) floats."""

        def __init__(self, metric, mean: torch.Tensor, std: torch.Tensor):
            super().__init__(metric)
            self.register_buffer("mean", mean.detach().clone())
            self.register_buffer("std", std.detach().clone())

        def transform_pred(self, pred: torch.Tensor) -> torch.Tensor:
            return pred.float() * self.std + self.mean

        def transform_target(self, target: torch.Tensor) -> torch.Tensor:
            return target.float().reshape(len(target), -1)

    return InTargetUnits


class RegressionHead(Head):
    """Standardised values in training; values in the targets' units in the deployed model."""

    task = "regression"
    output_names = ("values",)
    monitor, monitor_mode = "mae", "min"

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        loss: str,
        huber_delta: float,
        dropout: float,
        hidden: list[int],
        pool: str,
        standardize: bool,
    ):
        super().__init__()
        self.num_outputs, self.loss_kind, self.huber_delta, self.standardize = (
            info.num_classes,
            loss,
            huber_delta,
            standardize,
        )
        # Target statistics: identity until prepare() / fit_targets() sees the training targets; buffers, so they
        # travel in checkpoints and are constants in the exported graph.
        self.register_buffer("target_mean", torch.zeros(self.num_outputs))
        self.register_buffer("target_std", torch.ones(self.num_outputs))
        self.pool, self.regressor = pooled_mlp(feature_info[-1], pool, hidden, dropout, self.num_outputs)

    def prepare(self, data) -> None:
        """Standardise with the statistics of the training split's targets."""
        self.fit_targets(training_targets(data.train))

    @torch.no_grad()
    def fit_targets(self, targets: torch.Tensor) -> None:
        """Set the target mean and std (per output) from training targets (N, K); no-op when standardize=False."""
        if not self.standardize:
            return
        t = torch.as_tensor(targets, dtype=torch.float32).reshape(len(targets), -1)
        if t.shape[1] != self.num_outputs:
            raise ZooError(
                f"the regression targets have {t.shape[1]} values per image but the data names {self.num_outputs}"
            )
        if len(t) == 0:
            return
        mean = t.mean(dim=0)
        std = t.std(dim=0) if len(t) > 1 else torch.ones_like(mean)
        std = torch.where(
            torch.isfinite(std) & (std > 1e-6), std, torch.ones_like(std)
        )  # a constant target: no scaling
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.regressor(self.pool(features[-1]))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = (targets.float().reshape(outputs.shape) - self.target_mean) / self.target_std
        if self.loss_kind == "l1":
            return F.l1_loss(outputs, z)
        if self.loss_kind == "huber":
            return F.huber_loss(outputs, z, delta=self.huber_delta)
        return F.mse_loss(outputs, z)

    def metrics(self):
        from torchmetrics import MetricCollection
        from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

        units = _target_units()
        mean, std = self.target_mean.cpu(), self.target_std.cpu()
        return MetricCollection(
            {
                "mae": units(MeanAbsoluteError(), mean, std),
                "rmse": units(MeanSquaredError(squared=False), mean, std),
                "r2": units(R2Score(), mean, std),
            },
            compute_groups=False,
        )

    def postprocess(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (outputs * self.target_std + self.target_mean,)


# ---- the registered head -------------------------------------------------------------------------


@register.head("regression", tasks=("regression",))
def regression(
    feature_info: list,
    info: DataInfo,
    loss: Literal["mse", "l1", "huber"] = "mse",
    huber_delta: Annotated[float, Range(0, min_exclusive=True)] = 1.0,
    dropout: DropoutRate = 0.0,
    hidden: list[Annotated[int, Range(1)]] = (),
    pool: Literal["avg", "max", "flatten"] = "avg",
    standardize: bool = True,
) -> Head:
    """Pooling, optional hidden layers and one linear output per target; MSE/L1/Huber on standardised targets."""
    return RegressionHead(feature_info, info, loss, huber_delta, dropout, list(hidden), pool, standardize)
