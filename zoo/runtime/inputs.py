"""What an export's graph takes, read from its metadata (`input`, `preprocessing`): the input's form, channels
and sizes, the checks made before onnxruntime sees a batch, and images (files or pixels) turned into batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.runtime.decoding import (
    ARRAY_EXTENSIONS,
    ARRAY_SCALE,
    IMAGE_EXTENSIONS,
    array_input,
    as_rgb8,
    check_array,
    decode,
    float_input,
    read_array,
)

FITS = ("stretch", "crop")  # zoo.format's resize.fit values this runtime serves (crop since 3.2)


@dataclass(frozen=True)
class ModelInput:
    """The graph's input: its name and shape (onnxruntime's), its form (uint8: pixels in, preprocessing inside the
    graph; float32: preprocessed by the client), channels, the size the network works at, whether it takes any
    size, the channels the network sees, and the smallest and largest images it accepts. `bands`: the input is
    C-channel arrays (`color: bands`, any C but 1 and 3: multispectral, depth), read from `.npy` files as they are
    stored, no colour conversion. `cover`: the float32 form's client fits an image by a centre crop (resize.fit
    crop): resized to cover it, keeping the aspect ratio, then the centre `size` (decoding.crop_geometry)."""

    name: str
    shape: Sequence[Any]
    form: str
    channels: int
    size: tuple
    dynamic_size: bool
    net_channels: int
    min_size: tuple
    max_size: tuple | None
    bands: bool = False
    cover: tuple | None = None

    @classmethod
    def read(cls, metadata: dict[str, Any], graph_input: Any) -> ModelInput:
        """From zoo's metadata and the session's first input (onnxruntime's NodeArg)."""
        meta_in = metadata["input"]
        form: str = meta_in.get("form", "float32")  # uint8: pixels in, preprocessing inside the graph
        size = tuple(meta_in["size"])  # the size the network works at
        # the network takes the image at its own size (no resize anywhere), as segmentation does
        resize = metadata.get("preprocessing", {}).get("resize", "absent")
        dynamic_size = resize is None if resize != "absent" else "height" in meta_in.get("dynamic", [])
        bands = meta_in.get("color") == "bands"  # arrays of any channel count, taken as stored
        net_channels = int(meta_in["channels"]) if bands else 1 if meta_in.get("color") == "grayscale" else 3
        if form == "uint8" and not bands:
            to = metadata["preprocessing"]["color_conversion"]["to"]
            net_channels = 1 if to == "grayscale" else 3
        default_min = [32, 32] if dynamic_size else list(size)  # formats 1 and 2 said so in prose
        fit = resize.get("fit", "stretch") if isinstance(resize, dict) else "stretch"
        if fit not in FITS:  # a fit this runtime does not know would be served as a stretch: wrong, silently
            raise ZooError(
                f"the export fits images by resize.fit={fit!r}, which this zoo-runtime does not know (it knows "
                f"{', '.join(FITS)}); upgrade zoo-runtime"
            )
        crop = resize.get("crop") if fit == "crop" else None
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
            bands=bands,
            cover=tuple(int(v) for v in crop["cover"]) if crop else None,
        )

    @property
    def extensions(self) -> tuple[str, ...]:
        """The files this model takes: images, or `.npy` arrays for a model of bands."""
        return ARRAY_EXTENSIONS if self.bands else IMAGE_EXTENSIONS

    @property
    def array_dtypes(self) -> tuple[str, ...]:
        """The dtypes of the arrays a model of bands takes: uint8 for the uint8 form (the graph scales them), any
        dtype zoo scales to [0, 1] for the float32 form (zoo.runtime.decoding.ARRAY_SCALE)."""
        return ("uint8",) if self.form == "uint8" else tuple(ARRAY_SCALE)

    def load(self, path: str | Path) -> np.ndarray:
        """What a file gives before preprocessing: an image's RGB uint8 pixels, or for a model of bands the
        array a `.npy` holds, checked against what the model takes."""
        if not self.bands:
            return decode(path)
        if Path(path).suffix.lower() not in ARRAY_EXTENSIONS:
            raise ZooError(
                f"input {str(path)!r} is not a .npy file; this model takes {self.channels}-channel arrays as .npy "
                f"files (H x W x {self.channels}, {' or '.join(self.array_dtypes)})"
            )
        return check_array(read_array(path), self.channels, self.array_dtypes, f"input array {str(path)!r}")

    def shape_text(self) -> str:
        """The input's form in words, for error messages."""
        if self.form == "uint8":
            if self.bands:
                return f"uint8 [N, H, W, {self.channels}] ({self.channels}-channel arrays, any height and width)"
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
        original (height, width); an image outside the metadata's sizes is refused in one line. A model of bands
        takes H x W x C arrays (or `.npy` files of them) instead."""
        if self.bands:
            return self._prepare_array(image)
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
        return float_input(rgb, self.net_channels, None if self.dynamic_size else self.size, self.cover), original

    def _prepare_array(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """A model of bands: an H x W x C array (or a `.npy` file) as one item of the input form."""
        if isinstance(image, np.ndarray):
            what = f"an array of shape {list(image.shape)}"
            a = check_array(image, self.channels, self.array_dtypes, what)
        else:
            a, what = self.load(image), f"input array {str(image)!r}"
        original = (a.shape[0], a.shape[1])
        if self.form == "uint8" or self.dynamic_size:
            self.check_size(*original, what)
        if self.form == "uint8":
            return np.ascontiguousarray(a), original
        return array_input(a, None if self.dynamic_size else self.size, self.cover), original

    def as_input(self, images: np.ndarray) -> np.ndarray:
        """Float32 N x C x H x W images in [0, 1] in the input form: the uint8 form takes them rounded to 8 bits,
        N x H x W x C (1 channel: grey copied to R, G and B; a model of bands: its C channels as they are)."""
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
