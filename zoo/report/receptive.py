"""Receptive field and stride of every layer, in input pixels, from the gradient of one output unit.

For each layer output (N, C, H, W) the units at the centre, and one step right and down of it, are pulled back
to the input with autograd: the input pixels with a non-zero gradient are the unit's receptive field, and how
far it moves between the two units is the layer's stride (its jump). The model runs with every
weight replaced by a positive constant (`torch.func.functional_call`; the model itself is not touched) and a
positive input, so every path from a pixel to the unit adds a positive amount: nothing cancels, no ReLU is in
its dead zone, and a branch (residual, inception, concatenation) counts as the union of its paths. What the
gradient alone would get wrong is changed for this pass only (`_Surrogates`):

- a max pool passes its gradient to one winner per window; it keeps its value but passes the gradient of an
  average pool over the same window as well, so the whole window counts;
- a normalisation whose statistics are taken over the image (group, instance, layer norm) and a global
  pooling (squeeze-and-excitation's gate, a head's pooling) make every unit depend on every pixel; the
  receptive field as the lectures define it counts the windows only, so their statistics and global
  pools are held constant.

Limits: the field is measured inside this input: one that reaches a border is reported with `+` (the input
holds less of it than the layer would see of a larger one); a max pool with dilation counts one winner; a
gradient below float32's range (more than about 80 stacked 3x3 layers) reads as outside. Outputs other than
(N, C, H, W), a channels-last (N, H, W, C) one told apart by its position in execution, are left blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

MAX_POOLS = {"max_pool1d": F.avg_pool1d, "max_pool2d": F.avg_pool2d, "max_pool3d": F.avg_pool3d}
IMAGE_STATISTICS = {"group_norm", "instance_norm", "layer_norm"}
GLOBAL_POOLS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "amax", "adaptive_avg_pool1d"}
POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


@dataclass(frozen=True)
class Field:
    """A layer's receptive field (rows, columns) and stride (rows, columns) in input pixels; `clipped`: the
    field reached the input's border, so it is at least this."""

    size: tuple[int, int]
    stride: tuple[int, int]
    clipped: bool = False


class _Surrogates(TorchFunctionMode):
    """The receptive-field pass's changes to the gradient (the module docstring says why); values unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is None or not x.requires_grad:
            return out
        if name in MAX_POOLS:
            return _pool_with_window_gradient(MAX_POOLS[name], out, args, kwargs)
        if name in IMAGE_STATISTICS and isinstance(out, torch.Tensor) and out.shape == x.shape:
            return out.detach() + (x - x.detach())  # pointwise: the statistics held constant
        if name in GLOBAL_POOLS and isinstance(out, torch.Tensor) and _is_global(x, out):
            return out.detach()
        return out


def _is_global(x: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether `out` pools `x`'s spatial dimensions (2 and up) down to one value each."""
    return x.dim() >= 3 and out.dim() == x.dim() and all(s == 1 for s in out.shape[2:]) and x.shape[2:].numel() > 1


def _pool_with_window_gradient(avg: Callable, out, args, kwargs):
    """A max pool's output whose gradient also reaches every pixel of its window (an average pool's)."""
    bound = dict(zip(POOL_ARGS, args)) | kwargs
    dilation = bound.get("dilation", 1)
    if any(d != 1 for d in (dilation if isinstance(dilation, (tuple, list)) else [dilation])):
        return out  # average pools have no dilation: one winner per window (a documented limit)
    x = bound["input"]
    window = avg(
        x,
        bound["kernel_size"],
        bound.get("stride") or bound["kernel_size"],
        bound.get("padding", 0),
        ceil_mode=bound.get("ceil_mode", False),
    )
    extra = window - window.detach()
    if isinstance(out, tuple):  # return_indices=True
        return (out[0] + extra, *out[1:])
    return out + extra


def _positive(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every floating parameter and buffer as a positive float32 constant: a weight (out, in, k, k) 1/(in k), so
    that values grow by k a layer and a field's edge shrinks by 1/k (float32's range holds about 80 layers);
    biases 0.1, scales 1, running means 0, running variances and stds 1."""
    out = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if not t.is_floating_point():
            continue
        leaf = name.rpartition(".")[2]
        if leaf.endswith("mean"):
            value = 0.0
        elif leaf.endswith(("var", "std")):
            value = 1.0
        elif t.dim() >= 2:
            value = 1.0 / (t.shape[1] * math.sqrt(math.prod(t.shape[2:])))
        else:
            value = 0.1 if leaf == "bias" else 1.0
        out[name] = torch.full(t.shape, value)
    return out


def receptive_fields(model: nn.Module, modules: dict[str, nn.Module], input_shape: tuple[int, ...]) -> dict:
    """{name: Field} for each of `modules` (name -> module of `model`) whose output is an image (N, C, H, W) of
    a single-image pass at `input_shape` (C, H, W); the module's first call is the one measured."""
    outputs: dict[str, torch.Tensor] = {}
    same_as: dict[str, str] = {}  # a pointwise layer -> the layer whose output it takes
    made_by: dict[int, str] = {}

    def hook(name):
        def keep(module, inputs, output):
            if name in outputs or not isinstance(output, torch.Tensor):
                return
            source = made_by.get(id(inputs[0])) if inputs and isinstance(inputs[0], torch.Tensor) else None
            if source is not None and _pointwise(module) and inputs[0].shape == output.shape:
                same_as[name] = source
            else:
                outputs[name] = output
            made_by[id(output)] = name

        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    x = torch.ones(2, *input_shape, requires_grad=True)  # one image per unit measured
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), _Surrogates():
            torch.func.functional_call(model, _positive(model), (x,), strict=False)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    fields, last = {}, tuple(input_shape[1:])
    for name, out in outputs.items():  # in execution order
        layout = _layout(out, last)
        if layout is None or not out.requires_grad:
            continue
        last = tuple(out.shape[2:]) if layout == "nchw" else tuple(out.shape[1:3])
        fields[name] = _field(out, x, layout)
    for name, source in same_as.items():
        while source in same_as:
            source = same_as[source]
        if source in fields:
            fields[name] = fields[source]
    return fields


def _pointwise(module: nn.Module) -> bool:
    """A layer that changes no pixel's neighbourhood (an activation, a batch norm, dropout): no window anywhere in
    it and no weight of two or more dimensions. Its field is its input's, so it is not measured again."""
    if any(hasattr(m, "kernel_size") for m in module.modules()):
        return False
    return all(p.dim() < 2 for p in module.parameters())


def _layout(out: torch.Tensor, last: tuple[int, ...]) -> str | None:
    """`nchw`, `nhwc` (its rows and columns are the last image's, and not in NCHW's place) or None."""
    if out.dim() != 4:
        return None
    if tuple(out.shape[1:3]) == last and tuple(out.shape[2:]) != last:
        return "nhwc"
    return "nchw"


def _field(out: torch.Tensor, x: torch.Tensor, layout: str) -> Field:
    """The field of the central unit of image 0 and of the unit one step down and right in image 1."""
    spatial = (2, 3) if layout == "nchw" else (1, 2)
    h, w = (out.shape[d] for d in spatial)
    centre = (h // 2, w // 2)
    step = (min(centre[0] + 1, h - 1), min(centre[1] + 1, w - 1))
    seed = torch.zeros_like(out)
    for image, (i, j) in enumerate((centre, step)):
        index = [image, slice(None), slice(None), slice(None)]
        index[spatial[0]], index[spatial[1]] = i, j
        seed[tuple(index)] = 1.0
    (grad,) = torch.autograd.grad(out, x, seed, retain_graph=True)
    boxes = [_box(grad[k]) for k in range(2)]
    if boxes[0] is None:
        return Field((0, 0), (0, 0))
    size = tuple(boxes[0][a][1] - boxes[0][a][0] + 1 for a in range(2))
    limits = x.shape[2:]
    clipped = any(boxes[0][a][0] == 0 or boxes[0][a][1] == limits[a] - 1 for a in range(2))
    stride = tuple(_jump(boxes, a, limits[a], step[a] - centre[a], limits[a] / (h, w)[a]) for a in range(2))
    return Field(size, stride, clipped)


def _box(grad: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The (first, last) row and column where `grad` (C, H, W) is non-zero, or None."""
    mask = grad.abs().sum(0) > 0
    if not mask.any():
        return None
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def _jump(boxes, axis: int, limit: int, moved: int, ratio: float) -> int:
    """How far the field moves for one step of the layer's output: from an edge neither field touches a border
    at, else (the field fills the input) the ratio of input to output size; 0 (no stride to speak of) when the
    output is one unit along this axis, where the ratio would only be the input's size."""
    if moved == 0:
        return 0
    if boxes[1] is None:
        return max(1, round(ratio))
    (a0, a1), (b0, b1) = boxes[0][axis], boxes[1][axis]
    if a0 > 0 and b0 > 0:
        return b0 - a0
    if a1 < limit - 1 and b1 < limit - 1:
        return b1 - a1
    return max(1, round(ratio))
