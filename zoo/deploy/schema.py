"""The export metadata's schema (`zoo.format`): build the metadata of an export and validate it.

zoo/format.schema.json (package data) is the contract any client, in any language, reads: every `zoo.*`
key of an exported model, with what it means. `metadata()` builds it, `validate()` checks it with the
jsonschema library (export and `zoo verify` do; the torch-free runtime checks the major version and the
required keys only, from the same file).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from zoo import tasks
from zoo.errors import ZooError

SCHEMA_FILE = Path(__file__).parents[1] / "runtime" / "format.schema.json"  # shipped with the runtime
FORMAT = "3.2"  # 3.1: "bands" inputs (any channel count, .npy arrays); 3.2: resize.fit "crop" (export.fit)
# ITU-R BT.601 luma weights (Pillow's convert("L") uses them too, rounding to integers; zoo's graph does not round)
LUMA = (0.299, 0.587, 0.114)
LUMA_FORMULA = "Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma, in float, not rounded)"
RESIZE_REFERENCE = (
    "ONNX Resize (mode=linear, antialias=1, exclude_outside=1, coordinate_transformation_mode=half_pixel), "
    "checked against "
    "torch.nn.functional.interpolate(mode='bilinear', antialias=True, align_corners=False)"
)

CROP_RULES = {
    "cover_rule": "cover = round(size / crop_pct) on each axis (height, width), computed once at export",
    "resized": (
        "for an input of H x W pixels (integer arithmetic): if cover[0] * W >= cover[1] * H the image is resized "
        "to cover[0] x floor(cover[0] * W / H), else to floor(cover[1] * H / W) x cover[1] (height x width): one "
        "factor for both axes, the aspect ratio kept; for a square cover, the shorter side becomes cover, as "
        "torchvision's Resize(int)"
    ),
    "offsets": (
        "top = round((resized height - size[0]) / 2), left = round((resized width - size[1]) / 2), halves rounded "
        "to even (d = the difference: floor(d / 2), plus 1 when d mod 4 = 3), as torchvision's center_crop; rows "
        "top to top + size[0] - 1 and columns left to left + size[1] - 1 are kept"
    ),
    "reference": "torchvision.transforms.v2.functional resize (shorter side, bilinear, antialias) then center_crop; "
    "zoo computes it as torch.nn.functional.interpolate(mode='bilinear', antialias=True) and slicing",
}

DECODE = {
    "output": "rgb8",
    "grayscale": "copied to R, G and B",
    "palette": "expanded through the palette (its transparency becomes alpha)",
    "alpha": "dropped: R, G and B are used as stored, not composited",
    "bit_depth_16": "each 16-bit sample v becomes v >> 8 (its high byte)",
    "orientation": "EXIF orientation is ignored: pixels are used as stored",
}

ARRAY_FILE = ".npy (numpy.save of one H x W x C array, C last; no pickles)"
ARRAY_SCALING = {
    "uint8": "uint8 only: v / 255 (in the graph)",
    "float32": "uint8: v / 255; uint16: v / 65535; float32 and float64: as stored, in [0, 1]",
}


def is_bands(channels: int) -> bool:
    """Data of a channel count images do not hold (not 1 or 3: multispectral, depth): served as H x W x C arrays,
    taken as stored, with no colour conversion (`color: bands`)."""
    return channels not in (1, 3)


def array_decode(form: str) -> dict[str, Any]:
    """How a file becomes the H x W x C array a model of bands takes (zoo.runtime.decoding.read_array)."""
    dtypes = ["uint8"] if form == "uint8" else ["uint8", "uint16", "float32", "float64"]
    return {"output": "array", "file": ARRAY_FILE, "layout": "HWC", "dtypes": dtypes, "scaling": ARRAY_SCALING[form]}


@functools.cache
def schema() -> dict:
    """The JSON Schema of format 3 (zoo/format.schema.json)."""
    return json.loads(SCHEMA_FILE.read_text())


def postprocessing(info, head_semantics: dict[str, Any]) -> dict[str, Any]:
    """The per-task meaning of the outputs: the task's own and the data's (units, background), both from the task
    table (zoo.tasks), then the head's (NMS)."""
    t = tasks.TABLE.get(info.task)
    out: dict[str, Any] = {"label_index_base": 0, **copy.deepcopy(t.semantics if t else {})}
    if t is not None and t.data_semantics is not None:
        out.update(t.data_semantics(info))
    out.update(head_semantics)
    return out


def crop_cover(size, crop_pct: float) -> tuple[int, int]:
    """`fit: crop`'s cover: round(size / crop_pct) per axis (torchvision's 224 / (224 / 232) = 232; timm's
    224 / 0.875 = 256)."""
    return round(int(size[0]) / crop_pct), round(int(size[1]) / crop_pct)


def crop_entry(size, crop_pct: float) -> dict[str, Any]:
    """The metadata's `resize.crop`: the fraction, the cover it gives for `size`, and the rules a client follows."""
    return {"crop_pct": float(crop_pct), "cover": list(crop_cover(size, crop_pct)), **CROP_RULES}


def preprocessing(info, form: str, dynamic_size: bool, crop_pct: float | None = None) -> dict[str, Any]:
    """From a file to the graph's input: decoding, colour, resize, scale; `where` says who does each step. With
    `crop_pct` (export.fit=crop) the resize keeps the aspect ratio and the centre is cropped (`resize.crop`)."""
    where = "graph" if form == "uint8" else "client"
    grey, bands, c = info.channels == 1, is_bands(info.channels), info.channels
    h, w = (int(s) for s in info.size)
    resize = None
    if not dynamic_size:
        resize = {
            "size": [h, w],
            "order": "height, width",
            "fit": "stretch" if crop_pct is None else "crop",
            "mode": "linear",
            "antialias": True,
            "coordinate_transformation": "half_pixel",
            "exclude_outside": True,
            "where": where,
            "reference": RESIZE_REFERENCE
            if form == "uint8"
            else "Pillow Image.resize(BILINEAR) of each channel as a float32 ('F') image",
        }
        if crop_pct is not None:
            resize["crop"] = crop_entry((h, w), crop_pct)
    steps = [f"read an H x W x {c} array (see decode)" if bands else "decode to RGB uint8 (see decode)"]
    if form == "uint8":
        what = f"N x H x W x {c} uint8 (arrays" if bands else "N x H x W x 3 uint8 (images"
        steps += [f"add a batch axis: {what} of one size per batch)", "run"]
    else:
        steps += [
            "scale to [0, 1] by its dtype (see decode)"
            if bands
            else "convert to grayscale by the formula, in float"
            if grey
            else "keep RGB",
            "keep the image's size"
            if dynamic_size
            else f"resize to height {h}, width {w} (see resize)"
            if crop_pct is None
            else f"resize keeping the aspect ratio to cover {list(crop_cover((h, w), crop_pct))}, then take the centre "
            f"height {h}, width {w} (see resize.crop)",
            *([] if bands else ["divide by 255"]),
            "HWC -> CHW, add a batch axis: N x C x H x W float32",
            "run",
        ]
    return {
        "decode": array_decode(form) if bands else dict(DECODE),
        "color_conversion": {
            "to": "bands" if bands else "grayscale" if grey else "rgb",
            "formula": LUMA_FORMULA if grey else None,
            "where": where,
        },
        "resize": resize,
        "scale": 1 / 255,
        "mean": list(info.mean),
        "std": list(info.std),
        "steps": steps,
    }


def input_entry(info, form: str, dynamic_size: bool, min_size: int | None) -> dict[str, Any]:
    """The graph input: its form, layout, dtype, colour, range, working size and the sizes it accepts."""
    least = max(1, int(min_size or 1))
    if form == "uint8":
        dynamic = ["batch", "height", "width"]
        # resized inside the graph: any size of at least one pixel, unless the network sees the image as it is
        smallest = [least, least] if dynamic_size else [1, 1]
        return {
            "name": "image",
            "form": "uint8",
            "layout": "NHWC",
            "dtype": "uint8",
            "channels": info.channels if is_bands(info.channels) else 3,
            "color": "bands" if is_bands(info.channels) else "rgb",
            "range": [0, 255],
            "size": list(info.size),
            "dynamic": dynamic,
            "min_size": smallest,
            "max_size": None,
        }
    return {
        "name": "input",
        "form": "float32",
        "layout": "NCHW",
        "dtype": "float32",
        "channels": info.channels,
        "color": "grayscale" if info.channels == 1 else "bands" if is_bands(info.channels) else "rgb",
        "range": [0.0, 1.0],
        "size": list(info.size),
        "dynamic": ["batch", "height", "width"] if dynamic_size else ["batch"],
        "min_size": [least, least] if dynamic_size else list(info.size),
        "max_size": None if dynamic_size else list(info.size),
    }


def validate(meta: dict[str, Any], where: str) -> None:
    """Check export metadata against format.schema.json: one line naming the first misfit and its path."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(meta), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = ".".join(str(p) for p in e.absolute_path)
        message = e.message if len(e.message) <= 200 else e.message[:200] + "..."
        what = f"metadata key zoo.{path}" if path else "the metadata"
        raise ZooError(f"{where}: {what} does not fit zoo.format {FORMAT}: {message}")
