"""Preprocessing inside the exported graph: decoded uint8 pixels in, the network's float input out.

The uint8 input form (`export.input=uint8`, the default) takes N x H x W x 3 RGB uint8 images of any height
and width, the rows of pixels every decoder gives, and does the rest inside the graph: colour conversion
(BT.601 luma for a grayscale network, in float), the resize to the network's size (ONNX `Resize`, linear,
`antialias=1`, half-pixel centres; PyTorch's `F.interpolate(bilinear, antialias=True)` is its reference) and
the scaling to [0, 1]; the network then normalises as before. A client decodes and feeds pixels, and no image
library's resize or colour conversion (whose results change between versions) takes part in a prediction.
Data of any other channel count (`color: bands`, zoo.deploy.schema.is_bands) comes in as N x H x W x C uint8
arrays and passes through the same resize and scaling with no colour conversion.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.deploy.schema import LUMA
from zoo.runtime.decoding import crop_geometry

UINT8_MIN_OPSET = 18  # Resize's antialias attribute


class AntialiasResize(torch.autograd.Function):
    """Bilinear resize with antialiasing to a fixed (height, width): F.interpolate in PyTorch, in the graph
    ONNX Resize with antialias=1 on the last two axes (opset 18), which the TorchScript exporter does not
    write for F.interpolate(antialias=True) by itself. exclude_outside=1 matters: with 0, onnxruntime repeats
    the edge pixel for the filter's taps past the border when downscaling, and differs from PyTorch (and
    Pillow) by up to 0.07 of the range at the image's edges (measured on noise)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)

    @staticmethod
    def symbolic(g, x, height: int, width: int):
        sizes = g.op("Constant", value_t=torch.tensor([height, width], dtype=torch.int64))
        return g.op(
            "Resize",
            x,
            g.op("Constant", value_t=torch.tensor([], dtype=torch.float32)),  # roi: unused
            g.op("Constant", value_t=torch.tensor([], dtype=torch.float32)),  # scales: sizes are given instead
            sizes,
            mode_s="linear",
            antialias_i=1,
            exclude_outside_i=1,  # taps past the edge weigh 0, the rest renormalised: as PyTorch and Pillow do
            axes_i=[2, 3],
            coordinate_transformation_mode_s="half_pixel",
        )


class CentreCrop(torch.autograd.Function):
    """`export.fit=crop`: the image resized by one factor, keeping its aspect ratio, to cover (cover_h, cover_w),
    then its centre (height, width): torchvision's eval transform (Resize of the shorter side, CenterCrop) with
    zoo's resize. The sizes and offsets are `zoo.runtime.decoding.crop_geometry`'s; in PyTorch F.interpolate and
    slicing, in the graph computed from the input's shape (Shape, integer arithmetic, Where), then the same
    antialiased Resize as AntialiasResize and a Slice, so any input size and batch is cropped as PyTorch does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, height: int, width: int, cover_h: int, cover_w: int) -> torch.Tensor:
        nh, nw, top, left = crop_geometry(int(x.shape[-2]), int(x.shape[-1]), (height, width), (cover_h, cover_w))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        return x[..., top : top + height, left : left + width]

    @staticmethod
    def symbolic(g, x, height: int, width: int, cover_h: int, cover_w: int):
        def const(*values, dtype=torch.int64):
            return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

        shape = g.op("Shape", x)
        h = g.op("Slice", shape, const(2), const(3))  # [H]
        w = g.op("Slice", shape, const(3), const(4))  # [W]
        ch, cw = const(cover_h), const(cover_w)
        by_height = g.op("GreaterOrEqual", g.op("Mul", ch, w), g.op("Mul", cw, h))  # crop_geometry's test
        nh = g.op("Where", by_height, ch, g.op("Div", g.op("Mul", cw, h), w))  # integer Div: floor, all positive
        nw = g.op("Where", by_height, g.op("Div", g.op("Mul", ch, w), h), cw)
        resized = g.op(
            "Resize",
            x,
            const(dtype=torch.float32),  # roi: unused
            const(dtype=torch.float32),  # scales: sizes are given instead
            g.op("Concat", nh, nw, axis_i=0),
            mode_s="linear",
            antialias_i=1,
            exclude_outside_i=1,
            axes_i=[2, 3],
            coordinate_transformation_mode_s="half_pixel",
        )
        spare = g.op("Cast", g.op("Sub", g.op("Concat", nh, nw, axis_i=0), const(height, width)), to_i=1)  # float
        starts = g.op("Cast", g.op("Round", g.op("Div", spare, const(2.0, dtype=torch.float32))), to_i=7)  # half even
        ends = g.op("Add", starts, const(height, width))
        return g.op("Slice", resized, starts, ends, const(2, 3))


class Preprocess(nn.Module):
    """uint8 (N, H, W, 3) RGB, or (N, H, W, C) bands -> float32 (N, channels, h, w) in [0, 1]; resized to `size`
    unless it is None; with `cover` (export.fit=crop), resized to cover it keeping the aspect ratio, then the
    centre `size` taken (CentreCrop)."""

    def __init__(self, channels: int, size: tuple[int, int] | None, cover: tuple[int, int] | None = None):
        super().__init__()
        self.channels, self.size, self.cover = channels, size, cover
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        if self.channels == 1:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        if self.size is not None and self.cover is not None:
            x = CentreCrop.apply(x, int(self.size[0]), int(self.size[1]), int(self.cover[0]), int(self.cover[1]))
        elif self.size is not None:
            x = AntialiasResize.apply(x, int(self.size[0]), int(self.size[1]))
        return x / 255.0


class Served(nn.Module):
    """The exported graph of the uint8 form: Preprocess, then the deployed model (same outputs and names)."""

    def __init__(self, preprocess: Preprocess, deploy: nn.Module):
        super().__init__()
        self.preprocess, self.deploy = preprocess, deploy
        self.task, self.output_names, self.roles = deploy.task, deploy.output_names, deploy.roles
        self.dynamic_size, self.output_axes = deploy.dynamic_size, deploy.output_axes

    def forward(self, image: torch.Tensor):
        return self.deploy(self.preprocess(image))


def as_pixels(x: torch.Tensor) -> torch.Tensor:
    """Float NCHW images in [0, 1] as the uint8 form's input, rounded: (N, H, W, 3) RGB (grey copied), or
    (N, H, W, C) for bands."""
    x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous()


def odd_sized(pixels: torch.Tensor, grow_only: bool = False) -> torch.Tensor:
    """The same uint8 NHWC images at an odd size, larger on one axis and smaller on the other (nearest
    neighbour, so no new pixel values): parity then covers the in-graph resize in both directions. With
    `grow_only` (a network that takes any size, and has a least one), larger on both axes."""
    h, w = pixels.shape[1:3]
    size = (h * 3 // 2 + 1, (w * 5 // 4 + 1) if grow_only else max(1, (w * 3) // 4 + 1))
    x = F.interpolate(pixels.permute(0, 3, 1, 2).float(), size=size, mode="nearest")
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def name_output_dims(proto, outputs: list[dict]) -> None:
    """Give every graph output's dimensions the metadata's names and sizes (the exporter leaves names such as
    `Whereboxes_dim_1` where shape inference lost track)."""
    shapes = {e["name"]: e["shape"] for e in outputs}
    for out in proto.graph.output:
        shape = shapes.get(out.name)
        dims = out.type.tensor_type.shape.dim
        if shape is None or len(dims) != len(shape):
            continue
        for dim, value in zip(dims, shape):
            if isinstance(value, int):
                dim.Clear()
                dim.dim_value = value
            else:
                dim.Clear()
                dim.dim_param = str(value)


def spell_out_reshapes(proto) -> int:
    """Reshape nodes that infer an axis (-1) where shape inference knows every output axis but the batch: their
    target replaced by the constant [0, d1, d2, ...] (0 copies the batch), so the graph runs on an empty batch
    (ONNX cannot infer an axis from 0 elements: PyTorch's GroupNorm and flatten exports failed at batch 0).
    Returns how many changed."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)  # through Shape ops too
    shapes = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    changed = 0
    for node in (n for n in proto.graph.node if n.op_type == "Reshape"):
        src, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not src or not out or not isinstance(src[0], str) or out[0] != src[0]:
            continue  # the batch axis must pass through as the first axis, under its symbolic name
        unknown = [i for i, d in enumerate(out) if i > 0 and not (isinstance(d, int) and d > 0)]
        if len(unknown) == 1 and all(isinstance(d, int) and d > 0 for d in src[1:]):  # the inferred axis
            known = int(np.prod([d for i, d in enumerate(out) if i > 0 and i != unknown[0]]))
            out = [*out]
            out[unknown[0]] = int(np.prod(src[1:])) // known if int(np.prod(src[1:])) % known == 0 else None
        if not all(isinstance(d, int) and d > 0 for d in out[1:]):
            continue
        name = f"{node.name or node.output[0]}/spelled_shape"
        proto.graph.initializer.append(numpy_helper.from_array(np.array([0, *out[1:]], dtype=np.int64), name))
        node.input[1] = name
        changed += 1
    _drop_unused(proto.graph)
    return changed


def _drop_unused(graph) -> None:
    """Remove nodes none of whose outputs is used (the replaced targets' computations), until none is left."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)
