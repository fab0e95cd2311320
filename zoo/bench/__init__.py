"""Benchmarks that compare side by side in one run and report ratios (never asserted in tests)."""

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


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and graph optimisation are not what we measure
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def int_list(text: str, key: str) -> list[int]:
    """'1,32' -> [1, 32]: a comma-separated list of integers >= 1 (one-line error otherwise)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ZooError(f"{key}={text!r} must be a comma-separated list of integers >= 1, e.g. {key}=1,32")
    return values


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
    from zoo.runtime import GPU_OPTIONS, Model

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

    from zoo.model import DeployModel
    from zoo.runtime import check_options, physical_cores, runtime_options, select_providers
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

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


def transfer(overrides: list[str], repeats: int) -> Iterator[str]:
    """Head epochs on a frozen base, two ways, on one experiment's data, interleaved: the base runs on every
    batch (as transfer strategies that augment do), or it ran once into a feature cache (as strategies with
    `cache_features` do); and the cache's one-off cost."""
    import torch

    from zoo.data import Transformed
    from zoo.model import set_train_mode
    from zoo.train.accel import data_loader
    from zoo.train.config import compose, to_plain
    from zoo.train.engine import cached_batches, feature_cache, train_step
    from zoo.train.experiment import build_experiment

    cfg = to_plain(compose(overrides))
    exp = build_experiment(cfg)
    if any(p.requires_grad for p in exp.model.backbone.parameters()):
        raise ZooError(
            f"zoo bench transfer compares head epochs on a frozen base, but transfer={cfg['transfer']['name']} "
            "trains the backbone; choose a transfer strategy that freezes it"
        )
    tcfg, seed, bs = cfg["trainer"], int(cfg["seed"]), cfg["trainer"]["batch_size"]
    start = time.perf_counter()
    cache = feature_cache(exp.model, exp.data.train, tcfg["eval_batch_size"], exp.device)
    cache_seconds = time.perf_counter() - start
    images = Transformed(exp.data.train, exp.sample_transform)
    paths = {  # name -> (batches, cached, batch transform)
        "frozen base, every batch": (lambda: data_loader(images, bs, True, tcfg, exp.device, seed, drop_last=True),
                                     False, exp.batch_transform),
        "cached features": (lambda: cached_batches(cache, bs, seed), True, None),
    }  # fmt: skip
    optimizer, l1 = exp.optimizer(), exp.l1_params()

    def epoch(batches, cached, batch_tf) -> None:
        set_train_mode(exp.model)
        for x, y in batches():
            train_step(exp.model, x, y, optimizer, tcfg, l1, cached, batch_tf, exp.device)

    for path in paths.values():
        epoch(*path)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):  # interleaved, so a change in the machine's load hits both alike
        for name, path in paths.items():
            t = time.perf_counter()
            epoch(*path)
            times[name].append(time.perf_counter() - t)
    frozen, cached = (float(np.median(t)) for t in times.values())
    yield (
        f"transfer head epochs: data={cfg['data']['name']} ({len(exp.data.train)} training images), "
        f"model={cfg['model']['name']}, head={cfg['head']['name']}, transfer={cfg['transfer']['name']}, batch {bs}, "
        f"median of {repeats} interleaved (threads: torch {torch.get_num_threads()})"
    )
    yield f"  {'frozen base, run on every batch':<42} {frozen * 1000:9.2f} ms/epoch   x1.00"
    ratio = f"x{frozen / cached:.1f} vs every batch"
    yield f"  {'cached features (base ran once)':<42} {cached * 1000:9.2f} ms/epoch   {ratio}"
    pays = cache_seconds / (frozen - cached) if frozen > cached else float("inf")
    after = f"pays for itself after {pays:.1f} epochs"
    yield f"  {'feature cache, filled once':<42} {cache_seconds * 1000:9.2f} ms         {after}"
    if exp.data.info.task == "classification":
        yield from pixel_floors(exp.data.train, exp.data.test)


def _flat(split) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*(split[i] for i in range(len(split))))
    return np.stack([np.asarray(x, dtype=np.float32).ravel() for x in images]), np.asarray([int(y) for y in labels])


def pixel_floors(train, test) -> Iterator[str]:
    """Test accuracy of 1-nearest-neighbour and logistic regression (on standardised pixels) on the raw pixels
    of the same training images: what a model must beat before its features can be said to add anything."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    (xa, ya), (xb, yb) = _flat(train), _flat(test)
    yield f"raw-pixel floors: {len(ya)} training images, {len(yb)} test images"
    fits = {
        "1-nearest-neighbour": KNeighborsClassifier(1),
        "logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    }
    for name, clf in fits.items():
        with threadpool_limits(1):  # BLAS threads fighting torch's for two cores cost 10x here
            score = clf.fit(xa, ya).score(xb, yb)
        yield f"  {name + ' on raw pixels':<42} test accuracy {score:.4f}"


def write_fake_package(site: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> None:
    """Install a one-module plugin package into `site` by hand: the module plus a dist-info with its
    `zoo.plugins` entry point (what pip would write), so discovery sees it once `site` is on sys.path."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{entry_name or module} = {module}\n")
    (info / "top_level.txt").write_text(module + "\n")


BENCH_PACKAGE = """ZOO_PLUGIN_API = 2
from typing import Annotated, Literal

from torch import nn

from zoo import Length, Range, register
from zoo.model import Backbone, FeatureInfo


@register.architecture("bench_net{i}", tasks=("classification",), min_size=8)
class BenchNet(Backbone):
    \"\"\"Benchmark package {i}'s network: one conv stage.\"\"\"

    def __init__(
        self, in_channels: int, width: Annotated[int, Range(1, 512)] = 8, act: Literal["relu", "gelu"] = "relu"
    ):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.GELU() if act == "gelu" else nn.ReLU())
        self.feature_info = [FeatureInfo(width, 1)]

    def forward(self, x):
        return [self.body(x)]

    def stages(self):
        return [self.body]


@register.augmentation("bench_op{i}")
def op(info, p: Annotated[float, Range(0, 1)] = 0.5, sizes: Annotated[list[int], Length(min=1)] = (8,)) -> object:
    \"\"\"Benchmark package {i}'s augmentation.\"\"\"
    return None
"""


def discovery(packages: int, repeats: int) -> Iterator[str]:
    """`zoo list` and a mistyped `zoo train model.widht=3`, each in a fresh process with `packages` generated
    plugin packages on the search path: cold (the plugin cache rebuilt: every package imported) and warm (served
    from the cache), beside `python -c pass` and `import torch` as the machine's yardsticks."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    from zoo.plugin.catalog import CACHE_ENV

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        site, cache = Path(tmp) / "site", Path(tmp) / "cache"
        site.mkdir()
        for i in range(packages):
            write_fake_package(site, f"zoo-bench{i}", f"zoo_bench{i}", BENCH_PACKAGE.format(i=i))
        env = {k: v for k, v in os.environ.items() if k != "ZOO_DISABLE_PLUGIN_AUTOLOAD"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
        env[CACHE_ENV] = str(cache)
        zoo = [sys.executable, "-m", "zoo.cli"]
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], 0, ""),
            "python -c 'import torch'": ([sys.executable, "-c", "import torch"], 0, ""),
            "zoo list": ([*zoo, "list"], 0, f"bench_net{packages - 1}" if packages else "architecture"),
            "zoo train model.widht=3": ([*zoo, "train", "model.widht=3"], 2, "unknown config key 'model.widht'"),
        }

        def run(name: str) -> tuple[float, float]:
            command, code, expect = commands[name]
            before, t = _children_cpu(), time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            elapsed, cpu = time.perf_counter() - t, _children_cpu() - before
            if done.returncode != code or expect not in done.stdout + done.stderr:
                raise ZooError(f"{name} went wrong during the benchmark: {(done.stderr.strip() or done.stdout)[-300:]}")
            return elapsed, cpu

        times: dict[str, list[tuple[float, float]]] = {}
        for _ in range(repeats):  # interleaved, so a change in the machine's load hits every row alike
            for name in commands:
                cold = name.startswith("zoo")
                if cold:
                    shutil.rmtree(cache, ignore_errors=True)  # cold: the cache is rebuilt
                times.setdefault(name + " (cold)" * cold, []).append(run(name))
                if cold:
                    times.setdefault(name + " (warm)", []).append(run(name))
    median = {name: np.median(np.array(t), axis=0) for name, t in times.items()}
    yield f"discovery: {packages} plugin packages installed, median of {repeats} interleaved runs, each a new process"
    yield f"  {'':<48} {'wall':>7}   {'cpu':>7}   (cpu: user+sys, about the wall time on a quiet machine)"
    rows = [(n, n, "the machine's yardstick") for n in list(commands)[:2]]
    for name in list(commands)[2:]:
        cold, warm = median[name + " (cold)"][0], median[name + " (warm)"][0]
        rows += [(name + " (cold)", name + " (cold: cache rebuilt)", "")]
        rows += [(name + " (warm)", name + " (warm: from the cache)", f"x{cold / warm:.1f} faster than cold")]
    for key, label, note in rows:
        yield f"  {label:<48} {median[key][0]:5.2f} s   {median[key][1]:5.2f} s   {note}".rstrip()
    worst = max(median[n + " (warm)"][0] for n in list(commands)[2:])
    verdict = "met" if worst <= 1.0 else "not met here (a busy machine? compare the cpu column and the yardsticks)"
    yield f"  target: warm <= 1.0 s on a quiet machine (acceptance: with 20 plugin packages): {verdict}"


def _children_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's finished children; 0 where unknown."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _real_images(channels: int, size: tuple[int, int], cfg: Any, batch: int) -> tuple[np.ndarray, str]:
    """A batch of the export's own test images (its config names the data), repeated up to `batch`; random
    pixels only when the data cannot be built here. Speed can depend on the values: on random pixels the
    digits CNN's fp32 graph ran 2x slower and its int8 graph 10x faster than on digits."""
    from types import SimpleNamespace

    from zoo.deploy.export import parity_inputs

    info = SimpleNamespace(channels=channels, size=size)
    if not isinstance(cfg, dict) or "data" not in cfg:
        x = np.random.default_rng(0).random((batch, channels, *size), dtype=np.float32)
        return x, "random pixels (the export names no data)"
    images, source = parity_inputs(cfg, info, batch)
    reps = -(-batch // len(images))
    return np.ascontiguousarray(images.numpy().repeat(reps, axis=0)[:batch]), source


def _bench_precisions(device) -> list[str]:
    """The precisions a device runs fast: 32 and bf16-mixed on CPUs; on GPUs 16-mixed too, and bf16 where
    the GPU has it."""
    import torch

    if device.type != "cuda":
        return ["32", "bf16-mixed"]
    return ["32"] + (["bf16-mixed"] if torch.cuda.is_bf16_supported() else []) + ["16-mixed"]


def train(overrides: list[str], repeats: int, batches: int | None = None) -> Iterator[str]:
    """Images per second of the training step three ways, interleaved, for each precision the device runs: the
    whole step (loader, batch augmentation, forward, backward, optimizer), the data pipeline alone (loader and
    batch augmentation on the device, no model) and the model step alone (one batch, held on the device)."""
    import torch

    from zoo.data import Transformed
    from zoo.model import set_train_mode
    from zoo.train.accel import Accel, cache_splits, data_loader, prepare_model, resolve_workers, to_device
    from zoo.train.config import compose, to_plain
    from zoo.train.engine import train_step
    from zoo.train.experiment import build_experiment

    cfg = to_plain(compose(overrides))
    exp = build_experiment(cfg)
    tcfg, seed, bs, device = cfg["trainer"], int(cfg["seed"]), cfg["trainer"]["batch_size"], exp.device
    cache_splits(exp.data)
    prepare_model(exp.model, tcfg)
    images = Transformed(exp.data.train, exp.sample_transform)
    data = data_loader(images, bs, True, tcfg, device, seed, drop_last=True)
    n = min(len(data), batches or len(data))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    optimizer, l1 = exp.optimizer(), exp.l1_params()
    set_train_mode(exp.model)

    def batches_of_loader():
        for i, (x, y) in enumerate(data):
            if i == n:
                return
            yield x, y

    def on_device(x, y):
        x, y = to_device(x, device), to_device(y, device)
        return exp.batch_transform(x, y) if exp.batch_transform is not None else (x, y)

    def pipeline() -> None:
        for x, y in batches_of_loader():
            on_device(x, y)
        sync()

    fixed = on_device(*next(iter(data)))  # the model step alone: one batch, augmented once, held on the device

    def model_step(accel) -> None:
        for _ in range(n):
            train_step(exp.model, *fixed, optimizer, tcfg, l1, False, None, device, accel=accel)
        sync()

    def whole(accel) -> None:
        for x, y in batches_of_loader():
            train_step(exp.model, x, y, optimizer, tcfg, l1, False, exp.batch_transform, device, accel=accel)
        sync()

    runs = {"data pipeline": pipeline}
    for p in _bench_precisions(device):
        accel = Accel(p, device, tcfg["channels_last"])
        runs[f"whole {p}"], runs[f"model {p}"] = (lambda a=accel: whole(a)), (lambda a=accel: model_step(a))
    times = _interleaved(runs, repeats)
    workers = resolve_workers(tcfg["num_workers"], images, device)
    yield (
        f"training step: data={cfg['data']['name']} ({len(exp.data.train)} training images), "
        f"model={cfg['model']['name']}, head={cfg['head']['name']}, batch {bs}, {n} batches, {device} "
        f"(threads: torch {torch.get_num_threads()}), workers {workers}, median of {repeats} interleaved"
    )
    yield from _train_table(times, n * bs)


def _interleaved(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, after one warm-up each, interleaved so a change in load hits all alike."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}


def _train_table(times: dict[str, float], images: int) -> Iterator[str]:
    rate = {name: images / t for name, t in times.items()}
    pipe = rate["data pipeline"]
    precisions = [name.split(" ", 1)[1] for name in rate if name.startswith("whole ")]
    base = rate["whole 32"]
    yield (
        "| precision | whole step img/s | data pipeline img/s | model step img/s | pipeline / model | bound by "
        "| whole vs 32 |"
    )
    yield "|---|---:|---:|---:|---:|---|---:|"
    for p in precisions:
        model, ratio = rate[f"model {p}"], pipe / rate[f"model {p}"]
        bound = "model" if ratio >= 1.2 else "data" if ratio <= 1 / 1.2 else "both"
        yield (
            f"| {p} | {rate[f'whole {p}']:.0f} | {pipe:.0f} | {model:.0f} | x{ratio:.2f} | {bound} "
            f"| x{rate[f'whole {p}'] / base:.2f} |"
        )
