"""`zoo bench inference`: onnxruntime against PyTorch eager on the same device, for every export of one
checkpoint at each batch size, interleaved in one run."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.runtime import GPU_OPTIONS, Model, check_options, physical_cores, runtime_options, select_providers


@dataclass
class _Export:
    onnx: Path
    card: dict
    precision: str


@dataclass
class _Row:
    batch: int
    device: str
    name: str
    run: Callable[[], Any]
    baseline: bool = False
    times: list[float] = field(default_factory=list)
    delta: str = "-"


def _read_export(path: str | Path) -> _Export:
    if not Path(path).exists():
        raise ZooError(f"model={path} does not exist: give an export folder or its model.onnx (from zoo export)")
    onnx = Path(path) / "model.onnx" if Path(path).is_dir() else Path(path)
    card_path = onnx.with_name("model.json")
    if not card_path.is_file():
        raise ZooError(f"{card_path} not found: bench needs the model card beside model.onnx (from zoo export)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{card_path} is not a model card (not JSON: {e})") from None
    precision = card.get("precision", "fp32")  # fp32 unless the card records another
    return _Export(onnx, card, str(precision.get("precision", "fp32") if isinstance(precision, dict) else precision))


def _exports(paths: list[str]) -> list[_Export]:
    """Each export's ONNX file, card and precision, all of one checkpoint. One export given brings the exports of
    its checkpoint at other precisions in the folders beside it (exports/mine_int8 beside exports/mine)."""
    out = [_read_export(p) for p in paths]
    sources = {str(e.card.get("source", {}).get("checkpoint")) for e in out}
    if "None" in sources:
        raise ZooError("zoo bench inference compares an export with its checkpoint; an ensemble's export has none")
    if len(sources) > 1:
        raise ZooError(f"zoo bench inference compares exports of one checkpoint; these come from {sorted(sources)}")
    if len(out) == 1:
        for card_path in sorted(out[0].onnx.parent.parent.glob("*/model.json")):
            if card_path.parent == out[0].onnx.parent or not card_path.with_name("model.onnx").is_file():
                continue
            with contextlib.suppress(ZooError, OSError):
                other = _read_export(card_path.parent)
                same = str(other.card.get("source", {}).get("checkpoint")) in sources
                if same and other.precision not in {e.precision for e in out}:
                    out.append(other)
    return out


def _torch_rows(model: Any, x: np.ndarray, device: str) -> list[_Row]:
    """PyTorch eager on `device`: fp32 (the baseline), and on a GPU also fp16 channels_last."""
    import copy

    import torch

    batch = len(x)
    if device == "cpu":
        xt = torch.from_numpy(x)
        return [_Row(batch, device, "pytorch eager fp32", lambda: model(xt), baseline=True)]
    fp32 = copy.deepcopy(model).to(device)
    fp16 = copy.deepcopy(model).to(device).half().to(memory_format=torch.channels_last)
    x32 = torch.from_numpy(x).to(device)
    x16 = x32.half().contiguous(memory_format=torch.channels_last)

    def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            out = fn()
            torch.cuda.synchronize()
            return out

        return run

    return [
        _Row(batch, device, "pytorch eager fp32", synced(lambda: fp32(x32)), baseline=True),
        _Row(batch, device, "pytorch eager fp16 channels_last", synced(lambda: fp16(x16))),
    ]


def _label(e: _Export, exports: list[_Export]) -> str:
    """The export's precision, and its folder's name where another export has the same precision."""
    same = [o for o in exports if o.precision == e.precision]
    return e.precision if len(same) == 1 else f"{e.precision} [{e.onnx.parent.name}/{e.onnx.name}]"


def _ort_rows(exports: list[_Export], x: np.ndarray, device: str, providers: str, options: dict) -> list[_Row]:
    """onnxruntime for each export on `device`: on the CPU the session as configured (tuned by default); on a
    GPU numpy in and out, inputs and outputs on the device (IO binding), and a CUDA graph at this batch size."""
    batch = len(x)
    if device == "cpu":
        cpu = {k: v for k, v in options.items() if k not in GPU_OPTIONS}
        cpu.setdefault("spinning", "on")  # measured as a session serving alone would run (auto: on)
        rows = []
        for e in exports:
            m = Model(e.onnx, "cpu", **cpu)
            feed = m.as_input(x)  # the uint8 form's graph converts, resizes and scales the pixels itself
            rows.append(_Row(batch, device, f"onnxruntime {_label(e, exports)} (CPU)", lambda m=m, f=feed: m.run(f)))
        return rows
    import torch

    provider = providers if providers in ("cuda", "tensorrt") else "auto"
    gpu = {**options, "spinning": options.get("spinning", "on"), "cuda_graph": False}
    rows = []
    for e in exports:
        m = Model(e.onnx, provider, **gpu)
        g = Model(e.onnx, provider, **{**gpu, "cuda_graph": True})
        feed = m.as_input(x)  # the uint8 form's graph converts, resizes and scales the pixels itself
        xc = torch.from_numpy(feed).to(device)
        name = f"onnxruntime {_label(e, exports)} ({m.providers[0].removesuffix('ExecutionProvider')})"

        def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
            return lambda: (fn(), torch.cuda.synchronize())[0]

        rows += [
            _Row(batch, device, f"{name}, numpy in/out", lambda m=m, f=feed: m.run(f)),
            _Row(batch, device, f"{name}, I/O on the device", synced(lambda m=m, xc=xc: m.run(xc, device_output=True))),
        ]
        named = {d for d in g.session.get_inputs()[0].shape if isinstance(d, str)}  # sizes a captured input fixes
        if all(isinstance(d, int) or d in named for o in g.session.get_outputs() for d in o.shape):
            rows.append(
                _Row(batch, device, f"{name}, CUDA graph", synced(lambda g=g, xc=xc: g.run(xc, device_output=True)))
            )
    return rows


def _as_numpy(out: Any) -> list[np.ndarray]:
    values = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]
    arrays = []
    for v in values:
        if hasattr(v, "detach"):  # a torch tensor
            v = v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
        elif hasattr(v, "numpy") and not isinstance(v, np.ndarray):  # an OrtValue
            v = v.numpy()
        arrays.append(np.asarray(v))
    return arrays


def _delta(got: list[np.ndarray], expected: list[np.ndarray]) -> str:
    """Parity against PyTorch fp32 on the CPU: the largest |difference| of float outputs, and the fraction of
    integer outputs' elements that differ (a class mask, labels)."""
    parts = []
    floats = [np.abs(g.astype(np.float64) - e).max() for g, e in zip(got, expected) if e.dtype.kind == "f" and e.size]
    if floats:
        parts.append(f"{max(floats):.1e}")
    ints = [float((g != e).mean()) for g, e in zip(got, expected) if e.dtype.kind != "f" and e.size]
    if ints:
        parts.append(f"{max(ints):.2%} differ")
    return ", ".join(parts) or "-"


def inference(
    models: list[str], batches: list[int], repeats: int, providers: str = "auto", options: dict | None = None
) -> Iterator[str]:
    """onnxruntime against PyTorch eager on the same device (CPU with CPU, CUDA with CUDA), for every export
    given (each precision) at each batch size, interleaved in one run: median latency, throughput, the ratio
    to PyTorch fp32 on that device, and the parity delta against PyTorch fp32."""
    import torch

    from zoo.deploy.graph import DeployModel  # lazy: torch, only once a benchmark runs
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint  # lazy: torch, as above

    if repeats < 1:
        raise ZooError(f"repeats={repeats} must be >= 1")
    options = dict(options or {})
    opts = runtime_options(options)  # every option checked before anything is built
    gpu_providers = [p for p in select_providers(providers) if p != "CPUExecutionProvider"]
    if gpu_providers and not torch.cuda.is_available():
        if providers != "auto":
            raise ZooError(f"providers={providers}: this PyTorch has no CUDA, so there is no baseline on the GPU")
        gpu_providers = []
    if not gpu_providers:
        check_options(opts, ["CPUExecutionProvider"])  # GPU options with no GPU row to apply them to
    devices = (["cpu"] if providers in ("auto", "cpu") else []) + (["cuda"] if gpu_providers else [])
    exports = _exports(models)
    first = exports[0].card
    model = DeployModel(model_from_checkpoint(load_checkpoint(first["source"]["checkpoint"]))[0]).eval()
    threads, before = opts.threads or physical_cores(), torch.get_num_threads()
    torch.set_num_threads(threads)  # like with like: PyTorch gets the threads onnxruntime's session gets
    try:
        rows, source = _measure(model, exports, batches, devices, repeats, providers, options)
    finally:
        torch.set_num_threads(before)
    yield from _report(rows, exports, first, repeats, threads)
    yield f"  inputs: {source}"


def _measure(
    model: Any,
    exports: list[_Export],
    batches: list[int],
    devices: list[str],
    repeats: int,
    providers: str,
    options: dict,
) -> tuple[list[_Row], str]:
    """Every row at every batch size on the export's own test images (speed depends on the pixels), checked
    against PyTorch fp32 once, then timed interleaved; and where the images came from."""
    import torch

    card = exports[0].card
    rows: list[_Row] = []
    with torch.inference_mode():
        for batch in batches:
            x, source = _real_images(_network_channels(card), tuple(card["input"]["size"]), card.get("config"), batch)
            if card["input"].get("dtype") == "uint8":  # both sides see the same 8-bit pixels: parity, not rounding
                x = (np.round(x * 255) / 255).astype(np.float32)
            expected = _as_numpy(model(torch.from_numpy(x)))
            for device in devices:
                new = _torch_rows(model, x, device) + _ort_rows(exports, x, device, providers, options)
                for row in new:
                    row.delta = "-" if row.baseline and device == "cpu" else _delta(_as_numpy(row.run()), expected)
                    row.run()  # warm-up: first-call allocations, graph capture and kernel choice are not measured
                rows += new
        for _ in range(repeats):  # interleaved, so a change in the machine's load hits every row alike
            for row in rows:
                t = time.perf_counter()
                row.run()
                row.times.append(time.perf_counter() - t)
    return rows, source


def _network_channels(card: dict) -> int:
    """The channels the network takes: the uint8 form's graph takes RGB and converts (zoo.format's
    color_conversion), the float form takes the network's own."""
    to = card.get("preprocessing", {}).get("color_conversion", {}).get("to")
    return {"grayscale": 1, "rgb": 3}.get(to, card["input"]["channels"])


def _described(config: dict) -> str:
    model = config.get("model", {})
    return " ".join(str(v) for v in (model.get("name"), model.get("model_name")) if v)


def _report(rows: list[_Row], exports: list[_Export], card: dict, repeats: int, threads: int) -> Iterator[str]:
    import onnxruntime
    import torch

    size = "x".join(str(v) for v in card["input"]["size"])
    yield (
        f"inference: {_described(card['config'])} ({card['task']}), input {card['input']['channels']}x{size}, "
        f"median of {repeats} interleaved runs; threads {threads} (onnxruntime intra-op and torch); "
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}"
    )
    for e in exports:
        metric = e.card.get("precision", {}).get("metric") if isinstance(e.card.get("precision"), dict) else None
        scored = f"; test {metric['name']} {metric.get(e.precision)} (drop {metric.get('drop')})" if metric else ""
        yield f"  {e.precision}: {e.onnx}{scored}"
    yield f"  {'':<52} {'latency':>10} {'throughput':>14} {'vs pytorch':>11}  parity |delta| vs pytorch fp32"
    group = None
    for row in rows:
        if (row.batch, row.device) != group:
            group = (row.batch, row.device)
            base = float(np.median(next(r for r in rows if (r.batch, r.device) == group and r.baseline).times))
            yield f"  batch {row.batch}, {row.device}"
        t = float(np.median(row.times))
        yield (
            f"    {row.name:<50} {t * 1000:7.2f} ms {row.batch / t:10.0f} img/s {'x%.2f' % (base / t):>11}  {row.delta}"
        )


def _real_images(channels: int, size: tuple[int, int], cfg: Any, batch: int) -> tuple[np.ndarray, str]:
    """A batch of the export's own test images (its config names the data), repeated up to `batch`; random
    pixels only when the data cannot be built here. Speed can depend on the values: on random pixels the
    digits CNN's fp32 graph ran 2x slower and its int8 graph 10x faster than on digits."""
    from types import SimpleNamespace

    from zoo.deploy.export import parity_inputs  # lazy: torch, only once a benchmark runs

    info = SimpleNamespace(channels=channels, size=size)
    if not isinstance(cfg, dict) or "data" not in cfg:
        x = np.random.default_rng(0).random((batch, channels, *size), dtype=np.float32)
        return x, "random pixels (the export names no data)"
    images, source = parity_inputs(cfg, info, batch)
    reps = -(-batch // len(images))
    return np.ascontiguousarray(images.numpy().repeat(reps, axis=0)[:batch]), source
