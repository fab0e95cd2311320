"""The deployed graph: a ZooModel plus its head's postprocess, outputs matched to the task's roles (zoo.tasks),
with the extra outputs an export asks for (embedding, class-activation maps); several models averaged as one
graph (Ensemble); and the one exporter call that traces either to ONNX (trace_onnx)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from zoo import tasks
from zoo.errors import ZooError
from zoo.model import Head, ZooModel


def _last_linear(head: nn.Module) -> nn.Linear | None:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def explained_forward(model: ZooModel, x: torch.Tensor, embedding: bool = False):
    """(the head's raw outputs, the backbone's features, the penultimate embedding (N, D) or None): one pass.
    The embedding is what enters the head's last linear layer, or (a head with none) the deepest feature map
    averaged over its pixels."""
    features = model.backbone(model.normalize(x))
    captured: list[torch.Tensor] = []
    linear = _last_linear(model.head) if embedding else None
    hook = linear.register_forward_pre_hook(lambda m, args: captured.append(args[0])) if linear is not None else None
    try:
        raw = model.head(features, x.shape[-2:]) if model.head.wants_input_size else model.head(features)
    finally:
        if hook is not None:
            hook.remove()
    if not embedding:
        return raw, features, None
    return raw, features, captured[0].flatten(1) if captured else features[-1].mean((2, 3))


def class_activation_maps(head: Head, deepest: torch.Tensor) -> torch.Tensor:
    """(N, K, h, w): the head's classifier (`cam_weights`) applied at each location of the deepest feature map."""
    weight, bias = head.cam_weights()
    return nn.functional.conv2d(deepest, weight[:, :, None, None], bias)


class DeployModel(nn.Module):
    """The exported graph: ZooModel plus the head's postprocess; outputs matched to the task's roles (zoo.tasks),
    then the extra outputs asked for (`extras`, zoo.tasks.EXTRAS: embedding, cam) named as their roles."""

    def __init__(self, model: ZooModel, task: str | None = None, extras: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.task = task or model.head.task
        self.output_names = tuple(model.head.output_names)
        self.dynamic_size = model.head.dynamic_size
        self.roles = tasks.match(self.task, self.output_names, f"{type(model.head).__name__}")
        self.extras = tuple(dict.fromkeys(extras))
        for name in self.extras:
            tasks.extra(name)
            if name in self.output_names:
                raise ZooError(f"export.outputs={name}: the head already names an output {name!r}")
        if "cam" in self.extras and model.head.cam_weights() is None:
            raise ZooError(
                f"export.outputs=[cam]: {type(model.head).__name__} gives no class-activation maps; a head whose "
                "scores are one linear layer on globally pooled features does (e.g. no hidden layers, pool=avg)"
            )
        self.output_names += self.extras
        self.roles += [(name, tasks.EXTRAS[name]) for name in self.extras]
        self.output_axes = {name: out.dynamic_axes(self.dynamic_size) for name, out in self.roles}

    def forward(self, x: torch.Tensor):
        if not self.extras:
            out = self.model.head.postprocess(self.model(x))
            return out[0] if len(out) == 1 else out
        raw, features, embedding = explained_forward(self.model, x, "embedding" in self.extras)
        found = {"embedding": embedding}
        if "cam" in self.extras:
            found["cam"] = class_activation_maps(self.model.head, features[-1])
        return (*self.model.head.postprocess(raw), *(found[name] for name in self.extras))


class Ensemble(nn.Module):
    """Several trained models of one task and label set as one graph that averages their outputs."""

    def __init__(self, models: list[ZooModel], task: str | None = None):
        super().__init__()
        task = task or models[0].head.task
        if not tasks.task(task).averageable:
            raise ZooError(
                f"ensembles average their members' outputs, which task {task!r} cannot "
                f"(tasks that average: {', '.join(tasks.averageable())})"
            )
        self.members = nn.ModuleList(DeployModel(m, task) for m in models)
        self.task = task
        self.output_names = self.members[0].output_names
        self.dynamic_size = self.members[0].dynamic_size
        self.roles = self.members[0].roles
        self.output_axes = self.members[0].output_axes

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o).mean(dim=0) for o in zip(*outs))
        return torch.stack(outs).mean(dim=0)


def trace_onnx(
    module, x: torch.Tensor, path: str | os.PathLike, opset: int, input_name: str, input_axes: dict[int, str]
) -> None:
    """TorchScript-trace `module` (its `output_names` and `output_axes`) on two images of `x` to ONNX at `path`:
    the one exporter call behind every graph zoo writes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            (x[:2],),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=list(module.output_names),
            dynamic_axes={input_name: input_axes, **module.output_axes},
        )
