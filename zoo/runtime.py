"""Serve an exported zoo model with onnxruntime alone: no torch, no zoo plugins.

The ONNX file carries what a client needs in its metadata (task, labels, input size and channels,
preprocessing, each output's role). `Model` reads it, picks TensorRT/CUDA only where a GPU is really
usable (else the CPU, without onnxruntime's CUDA load errors), checks inputs before onnxruntime sees
them, and turns outputs, found by their role in the task (zoo.tasks), into per-task predictions.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import tasks
from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
METADATA_PREFIX = "zoo."
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
METADATA_FORMATS = (1, 2)  # the major versions of zoo's metadata this runtime reads


def gpu_usable() -> bool:
    """True when the CUDA driver loads and reports at least one device (checked without torch)."""
    names = (
        ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda")]
    )
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except AttributeError:
            return False
    return False


def _tensorrt_loadable() -> bool:
    for name in ("libnvinfer.so.10", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def select_providers(requested: str = "auto") -> list[str]:
    """Execution providers to ask onnxruntime for, best first; CPU is always the last resort."""
    import onnxruntime as ort

    if requested not in PROVIDER_CHOICES:
        raise ZooError(f"providers={requested!r} is not one of: {', '.join(PROVIDER_CHOICES)}")
    requested = os.environ.get("ZOO_PROVIDERS", requested) if requested == "auto" else requested
    available = set(ort.get_available_providers())
    if requested == "cpu" or not gpu_usable():
        if requested in ("cuda", "tensorrt"):
            raise ZooError(f"providers={requested} but no usable GPU was found; use providers=auto or cpu")
        return ["CPUExecutionProvider"]
    wanted = []
    if requested in ("auto", "tensorrt") and _tensorrt_loadable():
        wanted.append("TensorrtExecutionProvider")
    wanted.append("CUDAExecutionProvider")
    chosen = [p for p in wanted if p in available] + ["CPUExecutionProvider"]
    if requested in ("cuda", "tensorrt") and len(chosen) == 1:
        raise ZooError(f"providers={requested} but this onnxruntime has no GPU provider (install onnxruntime-gpu)")
    return chosen


def read_metadata(props: dict[str, str]) -> dict[str, Any]:
    """zoo's metadata from an ONNX model's metadata_props (values are JSON)."""
    out = {}
    for k, v in props.items():
        if k.startswith(METADATA_PREFIX):
            try:
                out[k[len(METADATA_PREFIX) :]] = json.loads(v)
            except json.JSONDecodeError:
                out[k[len(METADATA_PREFIX) :]] = v
    return out


def output_roles(meta: dict[str, Any], graph_outputs: Sequence[str], where: str) -> dict[str, str]:
    """{role: output name} from zoo metadata. Format 2 lists each output's role; format 1 lists names only,
    matched by position to the task's roles (zoo.tasks). A major format this runtime does not know is refused."""
    fmt = meta.get("format", 1)
    try:
        major = int(str(fmt).split(".")[0])
    except ValueError:
        major = None
    if major not in METADATA_FORMATS:
        raise ZooError(
            f"{where} has zoo metadata format {fmt!r}; this zoo reads formats "
            f"{', '.join(map(str, METADATA_FORMATS))}: upgrade zoo to serve it"
        )
    task, listed = meta.get("task"), meta.get("outputs") or list(graph_outputs)
    if task not in tasks.TABLE:  # a task this zoo does not know: outputs by name only
        return {}
    if major == 1:
        return tasks.roles_by_position(task, [str(n) for n in listed], where)
    roles = {str(e["role"]): str(e["name"]) for e in listed if isinstance(e, dict) and "role" in e and "name" in e}
    for out in tasks.task(task).required:
        if out.role not in roles:
            raise ZooError(f"{where}: its metadata gives no output for the {task} role {out.role!r}")
    absent = [n for n in roles.values() if n not in graph_outputs]
    if absent:
        raise ZooError(f"{where}: its metadata names output(s) {absent} that the graph lacks ({list(graph_outputs)})")
    return roles


def load_image(path: str | Path, channels: int, size: Sequence[int] | None) -> np.ndarray:
    """Decode an image to float32 CHW in [0, 1], resized to (height, width) unless size is None."""
    return _load(path, channels, size)[0]


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


def _load(path: str | Path, channels: int, size: Sequence[int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image

    with open_image(path, "input image") as im:
        original = (im.size[1], im.size[0])
        im = im.convert("L" if channels == 1 else "RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return (arr[None] if channels == 1 else arr.transpose(2, 0, 1)), original


PALETTE = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (145, 30, 180),
    (70, 240, 240),
    (245, 130, 48),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
]


def list_images(path: str | Path) -> list[Path]:
    """One image file, or every image file under a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if not files:
            raise ZooError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(path)!r}")
        return files
    raise ZooError(f"input={str(path)!r} does not exist (give an image file or a folder of images)")


class Model:
    """An exported zoo model on onnxruntime."""

    def __init__(self, path: str | Path, providers: str = "auto"):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ZooError(
                f"model={str(path)!r} does not exist (export one with: zoo export checkpoint=RUN/checkpoints/best.pt)"
            )
        ort.set_default_logger_severity(3)  # no provider-load warnings on machines without a GPU
        options = ort.SessionOptions()
        options.log_severity_level = 3
        wanted = select_providers(providers)
        if "CUDAExecutionProvider" in wanted and hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):  # CUDA/cuDNN from the nvidia-* wheels, where present
                ort.preload_dlls()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
        except Exception as e:
            raise ZooError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "task" not in self.metadata:
            raise ZooError(f"{path} has no zoo metadata (zoo.task); was it exported by `zoo export`?")
        self.task: str = self.metadata["task"]
        self.labels: list[str] = list(self.metadata.get("labels", []))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape
        self.channels = int(self.metadata["input"]["channels"])
        self.size = tuple(self.metadata["input"]["size"])
        self.dynamic_size = "height" in self.metadata["input"].get("dynamic", [])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.roles: dict[str, str] = output_roles(self.metadata, self.output_names, str(path))  # role -> output name

    def check_input(self, batch: np.ndarray) -> None:
        """Refuse what onnxruntime would not check (dynamic dims) or would explain badly."""
        expected = f"float32 [N, {self.channels}, {self.size[0]}, {self.size[1]}]"
        if not isinstance(batch, np.ndarray):
            raise ZooError(f"input must be a numpy array {expected}, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise ZooError(
                f"input {self.input_name!r} must be float32 (pixels in [0, 1]), got {batch.dtype}; expected {expected}"
            )
        if batch.ndim != 4:
            raise ZooError(f"input {self.input_name!r} must have rank 4 {expected}, got shape {list(batch.shape)}")
        if batch.shape[1] != self.channels:
            raise ZooError(
                f"input {self.input_name!r} must have {self.channels} channel(s), got shape {list(batch.shape)}; "
                f"expected {expected}"
            )
        if self.dynamic_size and min(batch.shape[2:]) < 32:
            raise ZooError(f"input {self.input_name!r} must be at least 32x32, got shape {list(batch.shape)}")
        for axis, dim in ((2, self.input_shape[2]), (3, self.input_shape[3])):
            if isinstance(dim, int) and batch.shape[axis] != dim:
                raise ZooError(
                    f"input {self.input_name!r} must be {self.size[0]}x{self.size[1]}, got shape {list(batch.shape)}"
                )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a preprocessed batch (float32 NCHW in [0, 1]); returns outputs by name."""
        self.check_input(batch)
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})))

    def run_roles(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a preprocessed batch; returns outputs by their role in the task (zoo.tasks), e.g. "probabilities"."""
        out = self.run(batch)
        return {role: out[name] for role, name in self.roles.items()}

    def preprocess(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Files or HxW / HxWxC uint8 arrays -> the float32 NCHW batch the model takes."""
        arrays = []
        for im in images:
            if isinstance(im, np.ndarray):
                from PIL import Image

                arr = im if im.dtype == np.uint8 else (np.clip(im, 0, 1) * 255).astype(np.uint8)
                pil = (
                    Image.fromarray(arr)
                    .convert("L" if self.channels == 1 else "RGB")
                    .resize((self.size[1], self.size[0]), Image.BILINEAR)
                )
                a = np.asarray(pil, dtype=np.float32) / 255.0
                arrays.append(a[None] if self.channels == 1 else a.transpose(2, 0, 1))
            else:
                arrays.append(load_image(im, self.channels, self.size))
        return np.stack(arrays).astype(np.float32)

    def predict(
        self, batch: np.ndarray, topk: int = 5, original_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[dict]:
        """Per-image predictions for a preprocessed batch, in the task's JSON form (segmentation masks
        come back as arrays under "mask"; detection boxes in `original_sizes` pixels when given)."""
        if not self.roles:  # a task this zoo does not know: every output by name
            return self._by_name(batch)
        out = self.run_roles(batch)
        n = len(batch)
        if self.task == "classification":
            probs = out["probabilities"]
            k = max(1, min(topk, probs.shape[1]))
            results = []
            for row in probs:
                order = np.argsort(-row)[:k]
                top = [{"label": self._label(i), "score": round(float(row[i]), 6)} for i in order]
                results.append(
                    {"label": top[0]["label"], "index": int(order[0]), "score": top[0]["score"], "topk": top}
                )
            return results
        if self.task == "regression":
            values = out["values"]
            return [
                {"values": {self._label(j): round(float(values[i, j]), 6) for j in range(values.shape[1])}}
                for i in range(n)
            ]
        if self.task == "segmentation":
            results = []
            for mask in out["mask"]:
                counts = np.bincount(mask.ravel(), minlength=len(self.labels))
                fractions = {self._label(c): round(float(counts[c]) / mask.size, 6) for c in np.nonzero(counts)[0]}
                results.append({"size": list(mask.shape), "pixels": fractions, "mask": mask})
            return results
        if self.task == "detection":
            results = []
            for i in range(n):
                k = int(out["num_detections"][i])
                sy, sx = (1.0, 1.0)
                if original_sizes is not None:
                    sy, sx = original_sizes[i][0] / batch.shape[2], original_sizes[i][1] / batch.shape[3]
                dets = []
                for box, score, label in zip(out["boxes"][i][:k], out["scores"][i][:k], out["labels"][i][:k]):
                    x0, y0, x1, y1 = (float(v) for v in box)
                    dets.append(
                        {
                            "label": self._label(int(label)),
                            "index": int(label),
                            "score": round(float(score), 6),
                            "box": [round(x0 * sx, 2), round(y0 * sy, 2), round(x1 * sx, 2), round(y1 * sy, 2)],
                        }
                    )
                results.append({"detections": dets})
            return results
        return self._by_name(batch)

    def _by_name(self, batch: np.ndarray) -> list[dict]:
        out = self.run(batch)
        return [{name: out[name][i].tolist() for name in self.output_names} for i in range(len(batch))]

    def _label(self, i: int) -> str:
        return self.labels[i] if 0 <= i < len(self.labels) else str(i)

    def predict_files(
        self,
        paths: Sequence[str | Path],
        topk: int = 5,
        batch_size: int = 32,
        masks_dir: str | Path | None = None,
        draw_dir: str | Path | None = None,
    ) -> list[dict]:
        """Predict image files, batched (one at a time, at its own size, for size-agnostic models);
        optionally write mask PNGs (segmentation) or the images with their boxes drawn (detection)."""
        results = []
        step = 1 if self.dynamic_size else batch_size
        for start in range(0, len(paths), step):
            chunk = paths[start : start + step]
            loaded = [_load(p, self.channels, None if self.dynamic_size else self.size) for p in chunk]
            batch = np.stack([a for a, _ in loaded]).astype(np.float32)
            for p, (_, _original), r in zip(chunk, loaded, self.predict(batch, topk, [o for _, o in loaded])):
                if "mask" in r:
                    mask = r.pop("mask")
                    if masks_dir is not None:
                        r["mask_file"] = str(self._write_mask(mask, Path(masks_dir) / (Path(p).stem + "_mask.png")))
                if draw_dir is not None and "detections" in r:
                    r["drawn_file"] = str(
                        self._draw(p, r["detections"], Path(draw_dir) / (Path(p).stem + "_boxes.png"))
                    )
                results.append({"file": str(p), **r})
        return results

    def _write_mask(self, mask: np.ndarray, path: Path) -> Path:
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette([c for rgb in PALETTE for c in rgb] + [255, 255, 255] * (256 - len(PALETTE)))
        image.save(path)  # pixel value = class index; the palette only makes it visible
        return path

    def _draw(self, source: str | Path, detections: list[dict], path: Path) -> Path:
        from PIL import ImageDraw

        path.parent.mkdir(parents=True, exist_ok=True)
        with open_image(source) as im:
            im = im.convert("RGB")
            draw = ImageDraw.Draw(im)
            for d in detections:
                colour = PALETTE[1 + d["index"] % (len(PALETTE) - 1)]
                draw.rectangle(d["box"], outline=colour, width=max(1, round(min(im.size) / 100)))
                draw.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=colour)
            im.save(path)
        return path
