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

    from zoo.config import compose, to_plain
    from zoo.data import Transformed, loader
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
        "frozen base, every batch": (lambda: loader(images, bs, True, tcfg["num_workers"], seed, drop_last=True), False,
                                     exp.batch_transform),
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


def precisions(paths: list[str], batch: int, repeats: int) -> Iterator[str]:
    """Several exports of one model (fp32, fp16, int8) on onnxruntime's CPU provider, interleaved: latency,
    throughput, the ratio to the first, and what each card measured (int8's test-metric drop, fp16's parity)."""
    from zoo.runtime import Model

    models = [Model(p, providers="cpu") for p in paths]
    first = models[0]
    for path, m in zip(paths[1:], models[1:]):
        if (m.channels, m.size) != (first.channels, first.size):
            raise ZooError(
                f"{path} takes {m.channels}x{list(m.size)} and {paths[0]} {first.channels}x{list(first.size)}: "
                "zoo bench precision compares exports of one model"
            )
    x, source = _real_images(first, batch)
    for m in models:
        m.run(x)  # warm-up
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):  # interleaved, so a change in the machine's load hits every export alike
        for m, t in zip(models, times):
            start = time.perf_counter()
            m.run(x)
            t.append(time.perf_counter() - start)
    medians = [float(np.median(t)) for t in times]
    yield (
        f"precision, batch {batch}, {first.size[0]}x{first.size[1]}, onnxruntime CPU, median of {repeats} interleaved; "
        f"inputs: {source}"
    )
    for path, m, t in zip(paths, models, medians):
        record = m.metadata.get("precision", {"precision": "fp32"})
        metric = record.get("metric")
        checked = (
            f"test {metric['name']} {metric['fp32']:.4f} -> {metric['int8']:.4f} (drop {metric['drop']:.4f})"
            if metric
            else ("parity " + str(record["parity"]["measured"]) if "parity" in record else "")
        )
        yield (
            f"  {record['precision']:<5} {path:<40} {t * 1000:9.2f} ms {batch / t:9.0f} img/s   "
            f"x{medians[0] / t:.2f} vs first   {checked}"
        )


def _real_images(model, batch: int) -> tuple[np.ndarray, str]:
    """A batch of the export's own test images (its config names the data), repeated up to `batch`; random
    pixels only when the data cannot be built here. Speed can depend on the values: on random pixels the
    digits CNN's fp32 graph ran 2x slower and its int8 graph 10x faster than on digits."""
    from types import SimpleNamespace

    from zoo.export import parity_inputs

    info = SimpleNamespace(channels=model.channels, size=tuple(model.size))
    cfg = model.metadata.get("config")
    if not isinstance(cfg, dict) or "data" not in cfg:
        x = np.random.default_rng(0).random((batch, model.channels, *model.size), dtype=np.float32)
        return x, "random pixels (the export names no data)"
    images, source = parity_inputs(cfg, info, batch)
    reps = -(-batch // len(images))
    return np.ascontiguousarray(images.numpy().repeat(reps, axis=0)[:batch]), source
