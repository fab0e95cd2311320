"""Any timm model as a multi-scale Backbone, through timm's `features_only` mode.

Weights are not a parameter of the architecture: a transfer strategy asks for them
(`Backbone.load_pretrained`), so rebuilding a model from a checkpoint never downloads anything.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from zoo import register
from zoo.errors import ZooError, unknown
from zoo.model import Backbone, FeatureInfo


def _check_name(model_name: str) -> None:
    import timm

    if not timm.is_model(model_name.split(".")[0]):
        raise unknown("timm model", model_name, timm.list_models(), see="python -c \"import timm; print(timm.list_models('*resnet*'))\"")


class TimmBackbone(Backbone):
    """Wraps timm's FeatureListNet: its feature levels, and its children grouped into stages."""

    def __init__(self, model_name: str, in_channels: int, out_indices: Optional[list[int]], drop_path_rate: float):
        super().__init__()
        import timm

        _check_name(model_name)
        self.model_name, self.in_channels = model_name, in_channels
        self._kwargs = {"features_only": True, "in_chans": in_channels}
        if out_indices is not None:
            self._kwargs["out_indices"] = tuple(out_indices)
        if drop_path_rate > 0:
            self._kwargs["drop_path_rate"] = drop_path_rate
        try:
            self.body = timm.create_model(model_name, pretrained=False, **self._kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise ZooError(f"timm cannot build {model_name!r} as a feature backbone: {str(e).splitlines()[0]}") from None
        fi = self.body.feature_info
        self.feature_info = [FeatureInfo(c, r) for c, r in zip(fi.channels(), fi.reduction())]

    def forward(self, x):
        return list(self.body(x))

    def stages(self) -> list[nn.Module]:
        # Children up to and including each feature-returning module form one stage.
        returns = set(getattr(self.body, "return_layers", {}) or {})
        stages, current = [], []
        for name, child in self.body.named_children():
            current.append(child)
            if name in returns:
                stages.append(nn.ModuleList(current))
                current = []
        if current:
            stages.append(nn.ModuleList(current))
        return stages

    def load_pretrained(self) -> None:
        """Download timm's pretrained weights for this model (needs the internet once)."""
        import timm

        try:
            pretrained = timm.create_model(self.model_name, pretrained=True, **self._kwargs)
        except Exception as e:  # offline, unknown tag, hub refused
            raise ZooError(f"cannot load timm's pretrained weights for {self.model_name!r} "
                           f"(is this machine online? hub weights need a download): {str(e).splitlines()[0]}") from None
        self.body.load_state_dict(pretrained.state_dict())


@register.architecture("timm")
def timm_backbone(in_channels: int, model_name: str = "resnet18", out_indices: Optional[list[int]] = None,
                  drop_path_rate: float = 0.0) -> Backbone:
    """Any timm model (ResNet, MobileNet, EfficientNet, ConvNeXt, Xception...) via features_only; model.model_name=NAME."""
    return TimmBackbone(model_name, in_channels, out_indices, drop_path_rate)
