"""How a session runs: the execution providers a machine can use (a usable GPU found without torch, TensorRT's
libraries), RuntimeOptions (one set of keys for Model(...), `zoo predict` and `zoo bench inference`), each
checked in one line, and onnxruntime's provider and session options made from them."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, unknown

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")


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


def tensorrt_loadable() -> bool:
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
    tensorrt = (gpu and TENSORRT in available and tensorrt_loadable()) if tensorrt is None else tensorrt
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
GPU_OPTIONS = ("cuda_graph", "prefer_nhwc", "cudnn_conv_algo_search", "gpu_mem_limit", "trt_cache", "trt_fp16")
TENSORRT_OPTIONS = ("trt_cache", "trt_fp16")
MAX_COUNT = 4096  # threads and device ids: onnxruntime takes C ints, and no machine has more


@dataclass(frozen=True)
class RuntimeOptions:
    """How a session runs. CPU sessions are tuned by default: intra-op threads = the physical cores this process
    may use, thread spinning on unless another zoo session is open in this process, every graph optimization."""

    # intra-op threads; 0 = the physical cores this process may use (affinity, one per core, cgroup quota)
    threads: int = 0
    # idle workers spin for the next op; auto = off once another zoo session is open in this process (set off
    # when several processes serve on one machine)
    spinning: str = "auto"
    optimization: str = "all"  # onnxruntime's graph optimization level
    # save the optimized graph to this new file (never overwrites one): a faster start next time
    optimized_model: str = field(default="", metadata={"metavar": "FILE"})
    # bind inputs and outputs instead of session.run: any DLPack tensor (torch, CuPy, JAX) is taken without a
    # copy, on the CPU or on the session's GPU
    io_binding: bool = False
    # outputs stay on the session's device as OrtValues: torch.from_dlpack(out["probabilities"])
    device_output: bool = False
    # capture one CUDA graph and replay it: one fixed input shape per session; the outputs are fixed buffers,
    # valid until the next run
    cuda_graph: bool = False
    device_id: int = 0  # the GPU
    prefer_nhwc: bool = False  # CUDA: channels-last kernels
    cudnn_conv_algo_search: str = "EXHAUSTIVE"  # CUDA: how cuDNN picks convolution algorithms
    # CUDA: the most GPU memory the session's arena may take, in GiB; 0 = no limit (several models on one GPU)
    gpu_mem_limit: int = 0
    # TensorRT: a folder of built engines (and timing caches), reused across sessions
    trt_cache: str = field(default="", metadata={"metavar": "DIR"})
    trt_fp16: bool = False  # TensorRT: allow half-precision kernels


OPTION_NAMES = tuple(f.name for f in fields(RuntimeOptions))


def _option_value(name: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        import numpy as np  # a numpy bool is a bool here; numpy loads only when an option is checked

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
            if opts.gpu_mem_limit:
                cuda["gpu_mem_limit"] = str(opts.gpu_mem_limit * 2**30)  # bytes, as onnxruntime takes it
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
