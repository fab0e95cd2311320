"""Images in, by zoo.format's decode rules: a file opened within the pixel limit, decoded to RGB uint8 pixels,
and the float32 input form's preprocessing (BT.601 grey, Pillow's resize, /255). Training, `zoo verify` and the
plugins decode through these too, so every part of zoo sees the same pixels. Data of any other channel count
(multispectral bands, depth) comes as arrays, H x W x C in `.npy` files: `read_array` and `array_input`."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARRAY_EXTENSIONS = (".npy",)  # H x W x C arrays (numpy.save), for channel counts images do not hold
ARRAY_SCALE = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0, "float64": 1.0}  # dtype -> divisor to [0, 1]
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as zoo.format states (and zoo.deploy.preprocess puts in the graph)


def load_image(
    path: str | Path, channels: int, size: Sequence[int] | None, cover: Sequence[int] | None = None
) -> np.ndarray:
    """Decode an image to float32 CHW in [0, 1] (the float32 input form), resized to (height, width) unless
    size is None (with `cover`: resized to cover it, then its centre cropped; see `crop_geometry`)."""
    return float_input(decode(path), channels, size, cover)


def crop_geometry(height: int, width: int, size: Sequence[int], cover: Sequence[int]) -> tuple[int, int, int, int]:
    """zoo.format's `fit: crop` for an image of height x width: (resized height, resized width, top, left).
    The image is resized by one factor, keeping its aspect ratio, to the smallest size that covers `cover`
    (round(size / crop_pct) per axis); the axis that sets the factor gets its cover exactly, the other
    floor(cover * other / this) in integers (torchvision's Resize of the shorter side). The crop of `size` then
    starts at round((resized - size) / 2) per axis, halves to even (Python's round, torchvision's center_crop):
    floor(d / 2), plus 1 when d mod 4 == 3."""
    (h, w), (ch, cw) = (int(v) for v in size), (int(v) for v in cover)
    if ch * width >= cw * height:  # the height sets the factor (for a square cover: the shorter side)
        nh, nw = ch, ch * width // height
    else:
        nh, nw = cw * height // width, cw
    return nh, nw, round((nh - h) / 2), round((nw - w) / 2)


def centre_crop(x: np.ndarray, size: Sequence[int] | None, cover: Sequence[int] | None) -> np.ndarray:
    """HxWxC float32 resized as `resize_planes` does to cover `cover` (keeping the aspect ratio), then its centre
    `size` (zoo.format's `fit: crop`, `crop_geometry`); without `cover`, the resize to `size` alone."""
    if size is None or cover is None:
        return resize_planes(x, size)
    nh, nw, top, left = crop_geometry(x.shape[0], x.shape[1], size, cover)
    return resize_planes(x, (nh, nw))[top : top + int(size[0]), left : left + int(size[1])]


DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (about 9459x9459): no image here needs more


def max_pixels() -> int:
    """The most pixels (width x height) zoo decodes in one image: ZOO_MAX_PIXELS, else DEFAULT_MAX_PIXELS. The
    header is read first, so an image that claims more is refused before a byte of it is decoded."""
    text = os.environ.get("ZOO_MAX_PIXELS", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**63:
        raise ZooError(f"ZOO_MAX_PIXELS={text!r} must be a whole number of pixels >= 1")
    return value


@contextlib.contextmanager
def open_image(path: str | Path, what: str = "image"):
    """A PIL image open for reading, its size checked against `max_pixels()` (a decompression bomb is one line
    naming the file and the limit); any failure to read or decode it is one ZooError naming the file."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # Pillow's own check refuses at twice its value: never below zoo's limit
    over = f"is over zoo's limit of {limit} pixels per image (ZOO_MAX_PIXELS raises it)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd files; zoo's own limit decides, below
            with Image.open(path) as im:
                if im.width * im.height > limit:
                    raise ZooError(f"{what} {str(path)!r} is {im.width}x{im.height} pixels, which {over}")
                yield im
    except Image.DecompressionBombError:
        raise ZooError(f"{what} {str(path)!r} {over}") from None
    except FileNotFoundError:
        raise ZooError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, struct.error) as e:  # malformed files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ZooError(f"cannot read {what} {str(path)!r}: {first}") from None


def decode(path: str | Path) -> np.ndarray:
    """An image file as height x width x 3 RGB uint8, by zoo.format's decode rules: grey copied to R, G and B,
    a palette expanded, alpha dropped (not composited), 16-bit samples to their high byte (v >> 8, not clipped).
    Pillow only decodes: no resize or colour conversion of its own takes part, except from colour spaces
    other than grey, palette and RGB (CMYK, YCbCr), which Pillow converts to RGB."""
    with open_image(path, "input image") as im:
        return rgb8(im)


def rgb8(im) -> np.ndarray:
    """A PIL image's pixels as height x width x 3 RGB uint8 (the decode rules of `decode`)."""
    mode = im.mode
    if mode in ("P", "PA"):
        im, mode = im.convert("RGBA"), "RGBA"  # a palette lookup: exact, whatever Pillow's version
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.int64)
        return as_rgb8(np.clip(a >> 8, 0, 255).astype(np.uint8))
    if mode in ("L", "LA", "1", "RGB", "RGBA", "RGBX"):
        a = np.asarray(im.convert("L") if mode == "1" else im)
        return as_rgb8(a)
    return np.asarray(im.convert("RGB"))


def as_rgb8(a: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx2 (grey, alpha), HxWx3 or HxWx4 (alpha last) pixels as HxWx3 uint8 RGB; uint16 samples
    to their high byte. Anything else is refused in one line."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    if a.dtype != np.uint8:
        raise ZooError(f"pixels must be uint8 or uint16, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ZooError(f"pixels must be HxW, HxWx1 to HxWx4 (grey, grey+alpha, RGB, RGBA), got shape {list(a.shape)}")
    a = a[..., :1] if a.shape[2] <= 2 else a[..., :3]
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def float_input(
    rgb: np.ndarray, channels: int, size: Sequence[int] | None, cover: Sequence[int] | None = None
) -> np.ndarray:
    """The float32 form's preprocessing of HxWx3 RGB uint8: BT.601 grey in float (one channel), resize of each
    channel as a float ('F') image by Pillow's BILINEAR unless size is None (with `cover`: to cover it, then the
    centre `size`: `centre_crop`), /255; CHW float32 in [0, 1]."""
    x = rgb.astype(np.float32)
    if channels == 1:
        x = (x @ np.asarray(LUMA, dtype=np.float32))[..., None]
    return (centre_crop(x, size, cover) / 255.0).astype(np.float32).transpose(2, 0, 1)


def resize_planes(x: np.ndarray, size: Sequence[int] | None) -> np.ndarray:
    """HxWxC float32 resized channel by channel as float ('F') images by Pillow's BILINEAR to (height, width),
    unless size is None or the array is that size already."""
    from PIL import Image

    if size is None or tuple(x.shape[:2]) == (size[0], size[1]):
        return x
    planes = [Image.fromarray(np.ascontiguousarray(x[..., c]), mode="F") for c in range(x.shape[2])]
    return np.stack([np.asarray(p.resize((size[1], size[0]), Image.BILINEAR)) for p in planes], axis=2)


def read_array(path: str | Path, what: str = "input array") -> np.ndarray:
    """A `.npy` file's array (numpy.load, no pickles), its first two axes within `max_pixels()` (read from the
    header first); a file that cannot be read is one ZooError naming it."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise ZooError(f"{what} {str(path)!r} does not exist") from None
    except (OSError, ValueError, EOFError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ZooError(f"cannot read {what} {str(path)!r} as a .npy array: {first}") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        raise ZooError(f"cannot read {what} {str(path)!r} as a .npy array: it holds several (an .npz archive)")
    if a.ndim >= 2 and a.shape[0] * a.shape[1] > max_pixels():
        raise ZooError(
            f"{what} {str(path)!r} is {a.shape[1]}x{a.shape[0]} pixels, which is over zoo's limit of "
            f"{max_pixels()} pixels per image (ZOO_MAX_PIXELS raises it)"
        )
    return np.array(a)


def check_array(a: np.ndarray, channels: int, dtypes: Sequence[str], what: str) -> np.ndarray:
    """An H x W x C array (H x W for one channel) of one of `dtypes`, C == channels, float values finite and in
    [0, 1]; returned as H x W x C. Anything else is one line naming `what` and what is taken."""
    takes = f"H x W x {channels} arrays of {' or '.join(dtypes)}"
    if a.ndim == 2 and channels == 1:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] != channels:
        raise ZooError(f"{what} has shape {list(a.shape)}; this model takes {takes}")
    if str(a.dtype) not in dtypes:
        raise ZooError(f"{what} is {a.dtype}; this model takes {takes}")
    bad = a.dtype.kind == "f" and a.size and (not np.isfinite(a).all() or float(a.min()) < 0 or float(a.max()) > 1)
    if bad:
        raise ZooError(f"{what} holds values outside [0, 1] (or not finite); float arrays must be in [0, 1]")
    return a


def array_input(a: np.ndarray, size: Sequence[int] | None, cover: Sequence[int] | None = None) -> np.ndarray:
    """The float32 form's preprocessing of an H x W x C array (checked by `check_array`): scaled to [0, 1] by its
    dtype (uint8 / 255, uint16 / 65535, float as stored), each channel resized as a float ('F') image by Pillow's
    BILINEAR unless size is None (with `cover`: `centre_crop`); C x H x W float32. Training on arrays (the arrays
    dataset) uses it too."""
    x = centre_crop(a.astype(np.float32), size, cover) / ARRAY_SCALE[str(a.dtype)]  # float_input's order: the same bits
    return np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1))


def list_images(path: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """One image file, or every image file under a folder (sorted); `extensions`: the files a model takes (a
    model of arrays takes ARRAY_EXTENSIONS)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in extensions and f.is_file())
        if not files:
            raise ZooError(f"no images ({', '.join(extensions)}) under {str(path)!r}")
        return files
    raise ZooError(f"input={str(path)!r} does not exist (give an image file or a folder of images)")
