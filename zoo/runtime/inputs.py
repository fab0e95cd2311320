"""What an export's graph takes, read from its metadata (`input`, `preprocessing`): the input's form, channels
and sizes, the checks made before onnxruntime sees a batch, and images (files or pixels) turned into batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.runtime.decoding import as_rgb8, decode, float_input


@dataclass(frozen=True)
class ModelInput:
    """The graph's input: its name and shape (onnxruntime's), its form (uint8: pixels in, preprocessing inside the
    graph; float32: preprocessed by the client), channels, the size the network works at, whether it takes any
    size, the channels the network sees, and the smallest and largest images it accepts."""

    name: str
    shape: Sequence[Any]
    form: str
    channels: int
    size: tuple
    dynamic_size: bool
    net_channels: int
    min_size: tuple
    max_size: tuple | None

    @classmethod
    def read(cls, metadata: dict[str, Any], graph_input: Any) -> ModelInput:
        """From zoo's metadata and the session's first input (onnxruntime's NodeArg)."""
        meta_in = metadata["input"]
        form: str = meta_in.get("form", "float32")  # uint8: pixels in, preprocessing inside the graph
        size = tuple(meta_in["size"])  # the size the network works at
        # the network takes the image at its own size (no resize anywhere), as segmentation does
        resize = metadata.get("preprocessing", {}).get("resize", "absent")
        dynamic_size = resize is None if resize != "absent" else "height" in meta_in.get("dynamic", [])
        net_channels = 1 if meta_in.get("color") == "grayscale" else 3
        if form == "uint8":
            to = metadata["preprocessing"]["color_conversion"]["to"]
            net_channels = 1 if to == "grayscale" else 3
        default_min = [32, 32] if dynamic_size else list(size)  # formats 1 and 2 said so in prose
        return cls(
            name=graph_input.name,
            shape=graph_input.shape,
            form=form,
            channels=int(meta_in["channels"]),  # of the graph's input (3 for the uint8 form)
            size=size,
            dynamic_size=dynamic_size,
            net_channels=net_channels,
            min_size=tuple(meta_in.get("min_size") or default_min),
            max_size=tuple(meta_in["max_size"]) if meta_in.get("max_size") else None,
        )

    def shape_text(self) -> str:
        """The input's form in words, for error messages."""
        if self.form == "uint8":
            return "uint8 [N, H, W, 3] (RGB pixels, any height and width)"
        h, w = ("H", "W") if self.dynamic_size else self.size
        return f"float32 [N, {self.channels}, {h}, {w}] (pixels in [0, 1])"

    def check_size(self, height: int, width: int, what: str) -> None:
        """Refuse an image smaller than the metadata's min_size (or larger than its max_size) in one line."""
        (lo_h, lo_w), hi = self.min_size, self.max_size
        if height < lo_h or width < lo_w or (hi is not None and (height > hi[0] or width > hi[1])):
            limit = f"at least {lo_h}x{lo_w}" + (f" and at most {hi[0]}x{hi[1]}" if hi else "")
            raise ZooError(f"{what} is {height}x{width} (height x width); this model takes {limit}")

    def check(self, batch: np.ndarray) -> None:
        """Refuse what onnxruntime would not check (dynamic dims, values) or would explain badly."""
        expected = self.shape_text()
        name = repr(self.name)
        if not isinstance(batch, np.ndarray):
            raise ZooError(f"input must be a numpy array {expected}, got {type(batch).__name__}")
        dtype = np.uint8 if self.form == "uint8" else np.float32
        if batch.dtype != dtype:
            raise ZooError(f"input {name} must be {expected}, got {batch.dtype}")
        if batch.ndim != 4:
            raise ZooError(f"input {name} must have rank 4: {expected}, got shape {list(batch.shape)}")
        channel_axis, (h_axis, w_axis) = (3, (1, 2)) if self.form == "uint8" else (1, (2, 3))
        if batch.shape[channel_axis] != self.channels:
            raise ZooError(f"input {name} must be {expected}, got shape {list(batch.shape)}")
        for axis, dim in ((h_axis, self.shape[h_axis]), (w_axis, self.shape[w_axis])):
            if isinstance(dim, int) and batch.shape[axis] != dim:
                raise ZooError(f"input {name} must be {expected}, got shape {list(batch.shape)}")
        self.check_size(batch.shape[h_axis], batch.shape[w_axis], f"input {name} (shape {list(batch.shape)})")
        if self.form == "float32" and batch.size:
            finite = np.isfinite(batch)
            if not finite.all():
                where = [int(i) for i in np.argwhere(~finite)[0]]
                raise ZooError(f"input {name} holds {batch[tuple(where)]} at {where}; pixels must be finite, in [0, 1]")
            lo, hi = float(batch.min()), float(batch.max())
            if lo < 0 or hi > 1:
                hint = "; divide 0-255 pixels by 255" if hi > 1 else ""
                raise ZooError(f"input {name} holds values in [{lo:g}, {hi:g}]; pixels must be in [0, 1]{hint}")

    def prepare(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """One image (a file, or HxW / HxWxC uint8 or uint16 pixels) as one item of the input form, with its
        original (height, width); an image outside the metadata's sizes is refused in one line."""
        if isinstance(image, np.ndarray):
            rgb, what = as_rgb8(image), f"an image array of shape {list(image.shape)}"
        else:
            rgb, what = decode(image), f"image {str(image)!r}"
        original = (rgb.shape[0], rgb.shape[1])
        if self.form == "uint8":
            self.check_size(*original, what)
            return rgb, original
        if self.dynamic_size:
            self.check_size(*original, what)
        return float_input(rgb, self.net_channels, None if self.dynamic_size else self.size), original

    def as_input(self, images: np.ndarray) -> np.ndarray:
        """Float32 N x C x H x W images in [0, 1] (1 or 3 channels) in the input form: the uint8 form takes them
        rounded to 8 bits, N x H x W x 3 RGB (grey copied to R, G and B)."""
        if self.form != "uint8":
            return images
        pixels = np.clip(np.round(np.asarray(images, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
        if pixels.shape[1] == 1:
            pixels = np.repeat(pixels, 3, axis=1)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))

    def preprocess(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Files or HxW / HxWxC uint8 arrays -> one batch (uint8 form: the images must share one size; float32
        form: resized to the network's size unless it takes any)."""
        items = [self.prepare(im)[0] for im in images]
        if len({a.shape for a in items}) > 1:
            raise ZooError(
                f"a batch holds images of one size; got {sorted({a.shape[:2] for a in items})}: "
                "run them one at a time (or predict_files, which groups them)"
            )
        return np.stack(items)

    def network_size(self, batch: np.ndarray) -> tuple[int, int]:
        """The (height, width) the network saw: its fixed size, or the batch's own when it takes any."""
        if not self.dynamic_size:
            return int(self.size[0]), int(self.size[1])
        return tuple(batch.shape[1:3]) if self.form == "uint8" else tuple(batch.shape[2:4])

    def batch_size_axes(self, batch: np.ndarray) -> dict[str, int]:
        """The sizes of the symbolic axes batch, height and width for `batch` (the metadata's output shapes)."""
        h, w = (batch.shape[1:3]) if self.form == "uint8" else batch.shape[2:4]
        return {"batch": len(batch), "height": h, "width": w}
