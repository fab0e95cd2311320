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
import functools
import json
import math
import os
import struct
import sys
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from zoo import tasks
from zoo.errors import ZooError, unknown

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
METADATA_PREFIX = "zoo."
PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
METADATA_FORMATS = (1, 2, 3)  # the major versions of zoo's metadata this runtime reads
SCHEMA_FILE = Path(__file__).with_name("format.schema.json")  # format 3's keys (zoo.deploy.schema validates fully)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as zoo.format states (and zoo.deploy.preprocess puts in the graph)


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


CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDER_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
GPU_PROVIDERS = (TENSORRT, CUDA)


def select_providers(
    requested: str = "auto",
    available: Sequence[str] | None = None,
    gpu: bool | None = None,
    tensorrt: bool | None = None,
) -> list[str]:
    """Execution providers to ask onnxruntime for, best first; CPU is always the last resort. A provider asked
    for by name that cannot run here is refused in one line naming the ones that can. `available` (onnxruntime's
    list), `gpu` (a usable GPU) and `tensorrt` (TensorRT's libraries load) default to this machine's."""
    if requested not in PROVIDER_CHOICES:
        raise ZooError(f"providers={requested!r} is not one of: {', '.join(PROVIDER_CHOICES)}")
    if requested == "auto":
        requested = os.environ.get("ZOO_PROVIDERS", "auto")
        if requested not in PROVIDER_CHOICES:
            raise ZooError(f"ZOO_PROVIDERS={requested!r} is not one of: {', '.join(PROVIDER_CHOICES)}")
    if requested == "cpu":
        return [CPU]
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    gpu = gpu_usable() if gpu is None else gpu
    tensorrt = (gpu and TENSORRT in available and _tensorrt_loadable()) if tensorrt is None else tensorrt
    usable = [p for p in GPU_PROVIDERS if gpu and p in available and (p != TENSORRT or tensorrt)]
    if requested == "auto":
        return usable + [CPU]
    name = PROVIDER_NAMES[requested]
    if name not in usable:
        why = (
            "no usable GPU was found"
            if not gpu
            else "this onnxruntime lacks it, install onnxruntime-gpu"
            if name not in available
            else "TensorRT's libraries (libnvinfer) do not load"
        )
        raise ZooError(f"providers={requested}: {name} cannot run here: {why}; available: {', '.join(usable + [CPU])}")
    return usable[usable.index(name) :] + [CPU]


# ---- session options: one set of keys for Model(...), `zoo predict` and `zoo bench inference` ----------------

OPTION_CHOICES = {
    "spinning": ("auto", "on", "off"),
    "optimization": ("disable", "basic", "extended", "all"),
    "cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
}
GPU_OPTIONS = ("cuda_graph", "prefer_nhwc", "cudnn_conv_algo_search", "trt_cache", "trt_fp16")
TENSORRT_OPTIONS = ("trt_cache", "trt_fp16")
MAX_COUNT = 4096  # threads and device ids: onnxruntime takes C ints, and no machine has more


@dataclass(frozen=True)
class RuntimeOptions:
    """How a session runs. CPU sessions are tuned by default: intra-op threads = the physical cores this process
    may use, thread spinning on unless another zoo session is open in this process, every graph optimization."""

    threads: int = 0  # intra-op threads; 0 = the physical cores this process may use
    spinning: str = "auto"  # worker threads spin between ops; auto = off when several sessions share the process
    optimization: str = "all"  # onnxruntime's graph optimization level
    optimized_model: str = ""  # save the optimized graph to this new file (a faster start next time)
    io_binding: bool = False  # bind inputs and outputs (DLPack tensors in without a copy) instead of session.run
    device_output: bool = False  # outputs stay on the session's device as OrtValues (DLPack: torch.from_dlpack)
    cuda_graph: bool = False  # capture one CUDA graph and replay it: one fixed input shape per session
    device_id: int = 0  # the GPU
    prefer_nhwc: bool = False  # CUDA: channels-last kernels
    cudnn_conv_algo_search: str = "EXHAUSTIVE"  # CUDA: how cuDNN picks convolution algorithms
    trt_cache: str = ""  # TensorRT: a folder of built engines, reused across sessions
    trt_fp16: bool = False  # TensorRT: allow half-precision kernels


OPTION_NAMES = tuple(f.name for f in fields(RuntimeOptions))


def _option_value(name: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ZooError(f"{name}={value!r} must be true or false")
    if kind is int:
        try:
            number = int(value) if isinstance(value, str) or not isinstance(value, (bool, float)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not 0 <= number <= MAX_COUNT:
            raise ZooError(f"{name}={value!r} must be an integer in [0, {MAX_COUNT}]")
        return number
    if value is None:
        return default
    if name == "spinning" and (isinstance(value, bool) or str(value).lower() in ("true", "false")):
        value = "on" if str(value).lower() == "true" else "off"  # spinning=True reads as on
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    choices = OPTION_CHOICES.get(name)
    if not isinstance(value, str) and not choices:
        raise ZooError(f"{name}={value!r} must be a string")
    if choices and value not in choices:
        raise ZooError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def runtime_options(values: dict[str, Any] | RuntimeOptions | None = None) -> RuntimeOptions:
    """RuntimeOptions from keyword arguments or `key=value` strings, each checked (one-line errors)."""
    if isinstance(values, RuntimeOptions):
        return values
    defaults = RuntimeOptions()
    checked = {}
    for name, value in (values or {}).items():
        if name not in OPTION_NAMES:
            raise unknown("runtime option", name, OPTION_NAMES)
        checked[name] = _option_value(name, value, getattr(defaults, name))
    return RuntimeOptions(**checked)


def physical_cores() -> int:
    """Physical cores this process may use: its CPU affinity, one per core (hyper-threads share one), and at
    most the container's CPU quota (cgroup v2 or v1)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    count = max(1, len(cores))
    for quota_file, period_file in (
        ("/sys/fs/cgroup/cpu.max", None),
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ):
        try:
            parts = Path(quota_file).read_text().split()
            quota, period = parts[0], (parts[1] if period_file is None else Path(period_file).read_text().strip())
            if quota not in ("max", "-1"):
                count = min(count, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError, IndexError):
            continue
    return count


def check_options(opts: RuntimeOptions, providers: list[str]) -> None:
    """Refuse options the chosen providers would ignore: a GPU option on a CPU session, TensorRT's without it."""
    defaults = RuntimeOptions()
    for name in GPU_OPTIONS:
        if getattr(opts, name) == getattr(defaults, name):
            continue
        if providers[0] == CPU:
            raise ZooError(f"{name}= applies to the CUDA and TensorRT providers, but this session runs on {CPU}")
        if name in TENSORRT_OPTIONS and TENSORRT not in providers:
            raise ZooError(f"{name}= applies to {TENSORRT}, but this session runs on {', '.join(providers)}")


def provider_config(providers: list[str], opts: RuntimeOptions) -> list[str | tuple[str, dict[str, str]]]:
    """onnxruntime's `providers=` argument: each provider with the options it is given (strings, as the C API
    takes them). Only options that are asked for are set, so an older onnxruntime is not handed keys it lacks."""
    out: list[str | tuple[str, dict[str, str]]] = []
    for p in providers:
        if p == CUDA:
            cuda = {"device_id": str(opts.device_id), "cudnn_conv_algo_search": opts.cudnn_conv_algo_search}
            if opts.prefer_nhwc:
                cuda["prefer_nhwc"] = "1"
            if opts.cuda_graph and providers[0] == CUDA:  # the graph is TensorRT's own when TensorRT leads
                cuda["enable_cuda_graph"] = "1"
            out.append((p, cuda))
        elif p == TENSORRT:
            trt = {"device_id": str(opts.device_id)}
            if opts.trt_fp16:
                trt["trt_fp16_enable"] = "True"
            if opts.trt_cache:
                trt.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(opts.trt_cache))
                trt.update(trt_timing_cache_enable="True", trt_timing_cache_path=str(opts.trt_cache))
            if opts.cuda_graph:
                trt["trt_cuda_graph_enable"] = "True"
            out.append((p, trt))
        else:
            out.append(p)
    return out


def session_options(opts: RuntimeOptions, shared: bool = False) -> Any:
    """onnxruntime.SessionOptions for `opts`; `shared`: other zoo sessions are open in this process (spinning
    `auto` turns spinning off then, so idle workers do not take cores from the others)."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = levels[opts.optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = opts.threads or physical_cores()
    so.inter_op_num_threads = 1
    spin = opts.spinning == "on" or (opts.spinning == "auto" and not shared)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return so


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
_DLPACK_CPU = (1, 3)  # kDLCPU, kDLCUDAHost: memory the CPU reads
_open_sessions: weakref.WeakSet = weakref.WeakSet()  # the zoo Models alive in this process


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


@functools.cache
def _required_keys() -> tuple[list[str], list[str]]:
    """The keys zoo.format's schema requires at the top and in `input`: the file is read once per process."""
    schema = json.loads(SCHEMA_FILE.read_text())
    return schema["required"], schema["$defs"]["input"]["required"]


def check_metadata(meta: dict[str, Any], where: str) -> None:
    """Format 3 and later: the keys zoo.format's schema requires, at the top and in `input` (the full check,
    with jsonschema, is zoo.deploy.schema's, run by export and `zoo verify`)."""
    if int(str(meta.get("format", 1)).split(".")[0]) < 3 or not SCHEMA_FILE.is_file():
        return  # the runtime-only distribution ships modules, not the schema file: the version check stands
    top, inputs = _required_keys()
    for keys, node, prefix in ((top, meta, "zoo."), (inputs, meta.get("input"), "zoo.input.")):
        missing = [k for k in keys if not isinstance(node, dict) or k not in node]
        if missing:
            raise ZooError(f"{where}: its zoo metadata lacks {', '.join(prefix + k for k in missing)} (zoo.format 3)")


def load_image(path: str | Path, channels: int, size: Sequence[int] | None) -> np.ndarray:
    """Decode an image to float32 CHW in [0, 1] (the float32 input form), resized to (height, width) unless
    size is None."""
    return float_input(decode(path), channels, size)


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


def float_input(rgb: np.ndarray, channels: int, size: Sequence[int] | None) -> np.ndarray:
    """The float32 form's preprocessing of HxWx3 RGB uint8: BT.601 grey in float (one channel), resize of each
    channel as a float ('F') image by Pillow's BILINEAR unless size is None, /255; CHW float32 in [0, 1]."""
    from PIL import Image

    x = rgb.astype(np.float32)
    if channels == 1:
        x = (x @ np.asarray(LUMA, dtype=np.float32))[..., None]
    if size is not None and tuple(x.shape[:2]) != (size[0], size[1]):
        planes = [Image.fromarray(np.ascontiguousarray(x[..., c]), mode="F") for c in range(x.shape[2])]
        x = np.stack([np.asarray(p.resize((size[1], size[0]), Image.BILINEAR)) for p in planes], axis=2)
    return (x / 255.0).astype(np.float32).transpose(2, 0, 1)


def _load(path: str | Path, channels: int, size: Sequence[int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    rgb = decode(path)
    return float_input(rgb, channels, size), (rgb.shape[0], rgb.shape[1])


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

    def __init__(self, path: str | Path, providers: str = "auto", **options: Any):
        """`providers`: auto|cpu|cuda|tensorrt; `options`: RuntimeOptions' fields (threads=, io_binding=,
        cuda_graph=, prefer_nhwc=, trt_cache=, ...), the keys `zoo predict` and `zoo bench inference` take."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ZooError(
                f"model={str(path)!r} does not exist (export one with: zoo export checkpoint=RUN/checkpoints/best.pt)"
            )
        self.options = runtime_options(options)
        ort.set_default_logger_severity(3)  # no provider-load warnings on machines without a GPU
        wanted = select_providers(providers)
        check_options(self.options, wanted)
        if CUDA in wanted and hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):  # CUDA/cuDNN from the nvidia-* wheels, where present
                ort.preload_dlls()
        self.session = self._open_session(ort, path, wanted)
        self.device = "cuda" if self.session.get_providers()[0] in GPU_PROVIDERS else "cpu"
        self._graph: tuple | None = None  # cuda_graph: (input shape, input OrtValue, output OrtValues, binding)
        _open_sessions.add(self)
        self.providers = self.session.get_providers()
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "task" not in self.metadata:
            raise ZooError(f"{path} has no zoo metadata (zoo.task); was it exported by `zoo export`?")
        self.task: str = self.metadata["task"]
        self.labels: list[str] = list(self.metadata.get("labels", []))
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.roles: dict[str, str] = output_roles(self.metadata, self.output_names, str(path))  # role -> output name
        check_metadata(self.metadata, str(path))
        meta_in = self.metadata["input"]
        self.form: str = meta_in.get("form", "float32")  # uint8: pixels in, preprocessing inside the graph
        self.channels = int(meta_in["channels"])  # of the graph's input (3 for the uint8 form)
        self.size = tuple(meta_in["size"])  # the size the network works at
        # the network takes the image at its own size (no resize anywhere), as segmentation does
        resize = self.metadata.get("preprocessing", {}).get("resize", "absent")
        self.dynamic_size = resize is None if resize != "absent" else "height" in meta_in.get("dynamic", [])
        self.net_channels = 1 if meta_in.get("color") == "grayscale" else 3
        if self.form == "uint8":
            to = self.metadata["preprocessing"]["color_conversion"]["to"]
            self.net_channels = 1 if to == "grayscale" else 3
        default_min = [32, 32] if self.dynamic_size else list(self.size)  # formats 1 and 2 said so in prose
        self.min_size = tuple(meta_in.get("min_size") or default_min)
        self.max_size = tuple(meta_in["max_size"]) if meta_in.get("max_size") else None

        self.extras = [role for role in self.roles if role in tasks.EXTRAS]  # exported with export.outputs

    def _shape_text(self) -> str:
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

    def check_extras(self, wanted: Sequence[str]) -> None:
        """Refuse, in one line, extra outputs (`outputs=embedding,cam`) that zoo does not know or this model lacks."""
        for role in wanted:
            tasks.extra(role, "outputs")
            if role not in self.extras:
                has = ", ".join(self.extras) or "none"
                raise ZooError(
                    f"outputs={role}: this model has no {role} output (its extra outputs: {has}); "
                    f"export it with export.outputs=[{role}]"
                )

    def _open_session(self, ort: Any, path: Path, wanted: list[str]) -> Any:
        """The InferenceSession, with the optimized graph saved to a new file when asked (written beside its
        target and renamed, so a failed start leaves nothing half-written and no file is overwritten)."""
        opts = self.options
        so = session_options(opts, shared=len(_open_sessions) > 0)
        target = Path(opts.optimized_model) if opts.optimized_model else None
        if target is not None:
            if target.exists():
                raise ZooError(f"optimized_model={str(target)!r} exists; name a new file (zoo overwrites none)")
            target.parent.mkdir(parents=True, exist_ok=True)
            so.optimized_model_filepath = str(target.with_name(f".{target.name}.tmp-{os.getpid()}"))
        if opts.trt_cache:
            cache = Path(opts.trt_cache)
            if cache.exists() and not cache.is_dir():
                raise ZooError(f"trt_cache={opts.trt_cache!r} is a file; give a folder for TensorRT's engines")
            cache.mkdir(parents=True, exist_ok=True)
        try:
            session = ort.InferenceSession(str(path), sess_options=so, providers=provider_config(wanted, opts))
            if target is not None:
                os.replace(so.optimized_model_filepath, target)
        except Exception as e:
            raise ZooError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
        finally:
            if target is not None:
                Path(so.optimized_model_filepath).unlink(missing_ok=True)
        return session

    def check_input(self, batch: np.ndarray) -> None:
        """Refuse what onnxruntime would not check (dynamic dims, values) or would explain badly."""
        expected = self._shape_text()
        name = repr(self.input_name)
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
        for axis, dim in ((h_axis, self.input_shape[h_axis]), (w_axis, self.input_shape[w_axis])):
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

    def run(self, batch: Any, device_output: bool | None = None) -> dict[str, Any]:
        """Run a batch in the graph's input form (metadata `input`: uint8 N x H x W x 3 RGB pixels, or float32
        N x C x H x W in [0, 1]); returns outputs by name (an empty batch gives empty outputs). `batch` is a
        numpy array or any DLPack tensor (torch, CuPy, JAX) on the CPU or on this session's GPU, bound without a
        copy. Outputs are numpy arrays, or with `device_output` (default: the session's option) OrtValues on the
        session's device, which DLPack hands to any framework without a copy (`torch.from_dlpack(value)`)."""
        device_output = self.options.device_output if device_output is None else device_output
        opts = self.options
        if isinstance(batch, np.ndarray) and not (opts.io_binding or opts.cuda_graph or device_output):
            self.check_input(batch)
            empty = self._empty_outputs(batch) if len(batch) == 0 else None
            if empty is not None:
                return empty
            return dict(zip(self.output_names, self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})))
        value = self._input_value(batch)
        if opts.cuda_graph:
            return self._run_graph(value, device_output)
        binding = self.session.io_binding()
        if isinstance(value, np.ndarray):
            binding.bind_cpu_input(self.input_name, value)
        else:
            binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device if device_output else "cpu", opts.device_id)
        self.session.run_with_iobinding(binding)
        if device_output:
            return dict(zip(self.output_names, binding.get_outputs()))
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def _input_value(self, batch: Any) -> Any:
        """A checked input for IO binding: a numpy array, or an OrtValue sharing a DLPack tensor's memory. Tensors
        the CPU can read are checked like arrays; device tensors by dtype and shape (their values stay there)."""
        import onnxruntime as ort

        if isinstance(batch, np.ndarray) or not hasattr(batch, "__dlpack__"):
            self.check_input(batch)
            return np.ascontiguousarray(batch)
        device_type, device_id = (int(v) for v in batch.__dlpack_device__())
        if device_type not in _DLPACK_CPU and (self.device == "cpu" or device_id != self.options.device_id):
            raise ZooError(
                f"input is on device {device_id} of DLPack device type {device_type}, but this session runs on "
                f"{self.session.get_providers()[0]} (device_id={self.options.device_id}); move the input there"
            )
        try:
            if device_type in _DLPACK_CPU:
                self.check_input(np.from_dlpack(batch))
            value = ort.OrtValue.from_dlpack(batch)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:
            why = (
                "it is not contiguous (e.g. tensor.contiguous() first)"
                if "contiguous" in str(e)
                else str(e).strip().splitlines()[0]
            )
            raise ZooError(f"input {type(batch).__name__} cannot be passed through DLPack: {why}") from None
        if device_type not in _DLPACK_CPU:  # a zero-stride stand-in of its dtype and shape: no copy to the host
            dtype = _ORT_DTYPES.get(value.data_type(), np.void)
            self.check_input(np.broadcast_to(np.zeros((), dtype), tuple(value.shape())))
        return value

    def _run_graph(self, value: Any, device_output: bool) -> dict[str, Any]:
        """cuda_graph: the input is copied into one fixed device buffer and outputs land in fixed ones, as a
        captured CUDA graph replays the addresses it recorded; the first run captures it."""
        shape = list(value.shape) if isinstance(value, np.ndarray) else list(value.shape())
        if self._graph is None:
            self._graph = self._graph_buffers(shape, value)
        captured, graph_input, outputs, binding = self._graph
        if shape != captured:
            raise ZooError(
                f"cuda_graph=true serves the one input shape it captured, {captured}; got {shape} "
                "(open another Model for another shape)"
            )
        try:
            graph_input.update_inplace(value)  # numpy: host to device; OrtValue: device to device
        except TypeError:
            raise ZooError(
                "cuda_graph=true with a device tensor needs onnxruntime >= 1.23 (OrtValue.update_inplace from an "
                "OrtValue); pass a numpy array"
            ) from None
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, outputs if device_output else [o.numpy() for o in outputs]))

    def _graph_buffers(self, shape: list[int], value: Any) -> tuple:
        import onnxruntime as ort

        dtype = value.dtype if isinstance(value, np.ndarray) else _ORT_DTYPES[value.data_type()]
        device, index = self.device, self.options.device_id
        graph_input = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, index)
        inp = self.session.get_inputs()[0]  # output axes named as the input's take the captured input's sizes
        sizes = {name: size for name, size in zip(inp.shape, shape) if isinstance(name, str)}
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, graph_input)
        outputs = []
        for out in self.session.get_outputs():
            dims = [d if isinstance(d, int) else sizes.get(d) for d in out.shape]
            if None in dims:
                raise ZooError(
                    f"cuda_graph=true needs outputs of a fixed shape; output {out.name!r} has axes {out.shape} "
                    "that depend on the data"
                )
            outputs.append(ort.OrtValue.ortvalue_from_shape_and_type(dims, _ORT_DTYPES[out.type], device, index))
            binding.bind_ortvalue_output(out.name, outputs[-1])
        return shape, graph_input, outputs, binding

    def _empty_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray] | None:
        """The outputs of a batch of 0 images, from the metadata's shapes (graphs need not run on an empty batch:
        a reshape of 0 elements with an inferred axis is undefined in ONNX)."""
        entries = {e.get("name"): e for e in self.metadata.get("outputs", []) if isinstance(e, dict)}
        if not all(n in entries and "shape" in entries[n] for n in self.output_names):
            return None
        h, w = (batch.shape[1:3]) if self.form == "uint8" else batch.shape[2:4]
        sizes = {"batch": 0, "height": h, "width": w}
        out = {}
        for n in self.output_names:
            shape = [d if isinstance(d, int) else sizes.get(d) for d in entries[n]["shape"]]
            if any(d is None for d in shape):
                return None
            out[n] = np.zeros(shape, dtype=np.dtype(entries[n]["dtype"]))
        return out

    def run_roles(self, batch: Any, device_output: bool | None = None) -> dict[str, Any]:
        """Run a preprocessed batch; returns outputs by their role in the task (zoo.tasks), e.g. "probabilities"."""
        out = self.run(batch, device_output)
        return {role: out[name] for role, name in self.roles.items()}

    def prepare(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """One image (a file, or HxW / HxWxC uint8 or uint16 pixels) as one item of the graph's input form,
        with its original (height, width); an image outside the metadata's sizes is refused in one line."""
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
        """Float32 N x C x H x W images in [0, 1] (1 or 3 channels, e.g. a dataset's tensors) in the graph's input
        form: the uint8 form takes them rounded to 8 bits, N x H x W x 3 RGB (grey copied to R, G and B)."""
        if self.form != "uint8":
            return images
        pixels = np.clip(np.round(np.asarray(images, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
        if pixels.shape[1] == 1:
            pixels = np.repeat(pixels, 3, axis=1)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))

    def preprocess(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Files or HxW / HxWxC uint8 arrays -> the batch the graph takes (uint8 form: the images must share
        one size; float32 form: resized to the network's size unless it takes any)."""
        items = [self.prepare(im)[0] for im in images]
        if len({a.shape for a in items}) > 1:
            raise ZooError(
                f"a batch holds images of one size; got {sorted({a.shape[:2] for a in items})}: "
                "run them one at a time (or predict_files, which groups them)"
            )
        return np.stack(items)

    def predict(
        self,
        batch: np.ndarray,
        topk: int = 5,
        original_sizes: Sequence[tuple[int, int]] | None = None,
        extras: Sequence[str] = (),
    ) -> list[dict]:
        """Per-image predictions for a preprocessed batch, in the task's JSON form (segmentation masks
        come back as arrays under "mask"; detection boxes in `original_sizes` pixels when given), plus the
        extra outputs named in `extras` (embedding, cam) as nested lists under their role."""
        self.check_extras(extras)
        if not self.roles:  # a task this zoo does not know: every output by name
            return self._by_name(batch)
        out = self.run_roles(batch, device_output=False)
        results = self._per_task(out, batch, topk, original_sizes)
        for role in extras:
            for r, value in zip(results, out[role]):
                r[role] = np.round(value.astype(np.float64), 6).tolist()
        return results

    def _per_task(self, out: dict, batch: np.ndarray, topk: int, original_sizes) -> list[dict]:
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
                if original_sizes is not None:  # boxes are in pixels of the network's input (zoo.format)
                    h, w = self._network_size(batch)
                    sy, sx = original_sizes[i][0] / h, original_sizes[i][1] / w
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

    def _network_size(self, batch: np.ndarray) -> tuple[int, int]:
        """The (height, width) the network saw: its fixed size, or the batch's own when it takes any."""
        if not self.dynamic_size:
            return int(self.size[0]), int(self.size[1])
        return tuple(batch.shape[1:3]) if self.form == "uint8" else tuple(batch.shape[2:4])

    def _by_name(self, batch: np.ndarray) -> list[dict]:
        out = self.run(batch, device_output=False)
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
        errors: list[str] | None = None,
        extras: Sequence[str] = (),
    ) -> list[dict]:
        """Predict image files, batched (images of one size together where the graph takes one size per batch);
        optionally write mask PNGs (segmentation) or the images with their boxes drawn (detection). With
        `errors` (a list), a file that cannot be read or is refused is reported there as one line and skipped."""
        results = []
        for chunk, batch, originals in self._batches(paths, batch_size, errors):
            for p, r in zip(chunk, self.predict(batch, topk, originals, extras)):
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

    def _batches(self, paths: Sequence[str | Path], batch_size: int, errors: list[str] | None):
        """(files, batch, original sizes) in order: consecutive images of one prepared shape, up to batch_size."""
        group: list[tuple[str | Path, np.ndarray, tuple[int, int]]] = []
        for p in paths:
            try:
                item, original = self.prepare(p)
            except ZooError as e:
                if errors is None:
                    raise
                errors.append(str(e))
                continue
            if group and (len(group) >= batch_size or group[0][1].shape != item.shape):
                yield [g[0] for g in group], np.stack([g[1] for g in group]), [g[2] for g in group]
                group = []
            group.append((p, item, original))
        if group:
            yield [g[0] for g in group], np.stack([g[1] for g in group]), [g[2] for g in group]

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
