"""Benchmarks that compare side by side in one run and report ratios (never asserted in tests)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def inference(model_path: str, batch: int, repeats: int) -> Iterator[str]:
    """Median latency of one batch: PyTorch eager (CPU) vs onnxruntime on each usable provider."""
    import torch

    from zoo.checkpoint import load_checkpoint, model_from_checkpoint
    from zoo.model import DeployModel
    from zoo.runtime import Model, gpu_usable

    card_path = Path(model_path).with_name("model.json")
    if not card_path.is_file():
        raise ZooError(f"{card_path} not found: bench needs the model card beside model.onnx (from zoo export)")
    card = json.loads(card_path.read_text())
    torch_model = DeployModel(model_from_checkpoint(load_checkpoint(card["source"]["checkpoint"]))[0]).eval()
    h, w = card["input"]["size"]
    x = np.random.default_rng(0).random((batch, card["input"]["channels"], h, w), dtype=np.float32)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        base = _time(lambda: torch_model(xt), repeats)
    rows = [("pytorch eager (cpu)", base)]
    for providers in ["cpu"] + (["cuda"] if gpu_usable() else []):
        m = Model(model_path, providers)
        rows.append((f"onnxruntime ({m.providers[0]})", _time(lambda m=m: m.run(x), repeats)))
    yield f"inference, batch {batch}, {h}x{w}, median of {repeats} (threads: torch {torch.get_num_threads()})"
    for name, t in rows:
        yield f"  {name:<42} {t * 1000:9.2f} ms   {batch / t:10.0f} img/s   x{base / t:.2f} vs pytorch"


def transfer(overrides: list[str], repeats: int) -> Iterator[str]:
    """Head epochs on a frozen base, two ways, on one experiment's data, interleaved: the base runs on every
    batch (as transfer strategies that augment do), or it ran once into a feature cache (as strategies with
    `cache_features` do); and the cache's one-off cost."""
    import torch

    from zoo.accel import data_loader
    from zoo.config import compose, to_plain
    from zoo.data import Transformed
    from zoo.engine import cached_batches, feature_cache, train_step
    from zoo.experiment import build_experiment
    from zoo.model import set_train_mode

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


def discovery(packages: int, repeats: int) -> Iterator[str]:
    """`zoo list` with no third-party packages vs with `packages` small ones: the added cost."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        empty, site = Path(tmp) / "empty", Path(tmp) / "site"
        empty.mkdir()
        for i in range(packages):
            write_fake_package(
                site,
                f"zoo-bench{i}",
                f"zoo_bench{i}",
                "ZOO_PLUGIN_API = 2\nfrom zoo import register\n\n\n"
                f"@register.augmentation('bench_op{i}')\n"
                "def op(info, p: float = 0.5, strength: float = 1.0) -> object:\n"
                f'    """Benchmark op {i}."""\n    return None\n',
            )

        def run(path: Path) -> float:
            env = {k: v for k, v in os.environ.items() if k != "ZOO_DISABLE_PLUGIN_AUTOLOAD"}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - t
            if done.returncode != 0:
                raise ZooError(f"zoo list failed during the benchmark: {done.stderr.strip().splitlines()[-1:]}")
            if path == site and f"bench_op{packages - 1}" not in done.stdout:
                raise ZooError("the generated plugin packages were not discovered")
            return elapsed

        run(empty), run(site)  # warm the file cache
        base, loaded = [], []
        for _ in range(repeats):  # interleaved, so drift on a busy machine hits both sides alike
            base.append(run(empty))
            loaded.append(run(site))
        b, with_packages = float(np.median(base)), float(np.median(loaded))
    yield f"discovery: `zoo list`, median of {repeats} interleaved runs"
    yield f"  no plugin packages          {b * 1000:8.0f} ms"
    added = with_packages - b
    yield f"  {packages:>3} plugin packages         {with_packages * 1000:8.0f} ms   x{with_packages / b:.2f}"
    yield (
        f"  added cost                  {added * 1000:8.0f} ms   ({added * 1000 / max(1, packages):.1f} ms a package; "
        "target: <= 300 ms for 50)"
    )


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

    from zoo.accel import Accel, cache_splits, data_loader, prepare_model, resolve_workers, to_device
    from zoo.config import compose, to_plain
    from zoo.data import Transformed
    from zoo.engine import train_step
    from zoo.experiment import build_experiment
    from zoo.model import set_train_mode

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
            train_step(exp.model, *fixed, optimizer, tcfg, l1, False, None, device, accel)
        sync()

    def whole(accel) -> None:
        for x, y in batches_of_loader():
            train_step(exp.model, x, y, optimizer, tcfg, l1, False, exp.batch_transform, device, accel)
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
