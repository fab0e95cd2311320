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

    from zoo.engine import load_checkpoint, model_from_checkpoint
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
        rows.append((f"onnxruntime ({m.providers[0]})", _time(lambda: m.run(x), repeats)))
    yield f"inference, batch {batch}, {h}x{w}, median of {repeats} (threads: torch {torch.get_num_threads()})"
    for name, t in rows:
        yield f"  {name:<42} {t * 1000:9.2f} ms   {batch / t:10.0f} img/s   x{base / t:.2f} vs pytorch"


def transfer(overrides: list[str], repeats: int) -> Iterator[str]:
    """Head epochs of transfer=frozen (the base runs every step) against transfer=feature_extraction (the
    base ran once, into a cache), on one experiment's data, interleaved; the cache's one-off cost."""
    import torch

    from zoo import registry
    from zoo.config import compose, to_plain
    from zoo.data import Transformed, build_augmentations, build_data, loader
    from zoo.engine import cached_batches, feature_cache, make_optimizer, pick_device, train_step
    from zoo.model import build_model, set_train_mode

    cfg = to_plain(compose(overrides))
    weights = cfg["transfer"].get("weights")
    if weights in (None, "", "none"):
        raise ZooError(
            "zoo bench transfer needs transfer.weights=SOURCE (timm, timm:FILE, a checkpoint or a run directory)"
        )
    tcfg, seed = cfg["trainer"], int(cfg["seed"])
    if tcfg["threads"]:
        torch.set_num_threads(tcfg["threads"])
    device = pick_device(tcfg["device"])
    bundle = build_data(cfg, seed)
    sample_tf, batch_tf = build_augmentations(cfg["aug"], bundle.info)
    bs = tcfg["batch_size"]
    epochs = {}
    for name in ("frozen", "feature_extraction"):
        torch.manual_seed(seed)
        model = build_model(cfg, bundle.info)
        model.head.prepare(bundle)
        strategy = registry.get("transfer", name).build({}, {"weights": weights}, where="transfer")
        strategy.setup(model)
        model.to(device)
        optimizer = make_optimizer(model, strategy, tcfg)
        l1 = [p for p in model.parameters() if p.ndim > 1 and p.requires_grad] if tcfg["l1"] > 0 else []
        if name == "frozen":

            def batches():
                return loader(Transformed(bundle.train, sample_tf), bs, True, tcfg["num_workers"], seed, drop_last=True)

            cached, tf = False, batch_tf
        else:
            start = time.perf_counter()
            cache = feature_cache(model, bundle.train, tcfg["eval_batch_size"], device)
            cache_seconds = time.perf_counter() - start

            def batches(cache=cache):
                return cached_batches(cache, bs, seed)

            cached, tf = True, None

        def epoch(model=model, optimizer=optimizer, l1=l1, batches=batches, cached=cached, tf=tf):
            set_train_mode(model)
            for x, y in batches():
                train_step(model, x, y, optimizer, tcfg, l1, cached, tf, device)

        epoch()  # warm-up
        epochs[name] = epoch
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(repeats):  # interleaved, so a change in the machine's load hits both alike
        for name, epoch in epochs.items():
            t = time.perf_counter()
            epoch()
            times[name].append(time.perf_counter() - t)
    frozen, cached = (float(np.median(times[n])) for n in ("frozen", "feature_extraction"))
    yield (
        f"transfer head epochs: data={cfg['data']['name']} ({len(bundle.train)} training images), model={cfg['model']['name']}, "
        f"head={cfg['head']['name']}, batch {bs}, median of {repeats} interleaved (threads: torch {torch.get_num_threads()})"
    )
    yield f"  {'frozen (base runs every step)':<42} {frozen * 1000:9.2f} ms/epoch   x1.00"
    yield f"  {'feature_extraction (cached features)':<42} {cached * 1000:9.2f} ms/epoch   x{frozen / cached:.1f} vs frozen"
    pays = cache_seconds / (frozen - cached) if frozen > cached else float("inf")
    yield f"  {'feature cache, filled once':<42} {cache_seconds * 1000:9.2f} ms         pays for itself after {pays:.1f} epochs"


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
                "from zoo import register\n\n\n"
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
        b, l = float(np.median(base)), float(np.median(loaded))
    yield f"discovery: `zoo list`, median of {repeats} interleaved runs"
    yield f"  no plugin packages          {b * 1000:8.0f} ms"
    yield f"  {packages:>3} plugin packages         {l * 1000:8.0f} ms   x{l / b:.2f}"
    yield f"  added cost                  {(l - b) * 1000:8.0f} ms   ({(l - b) * 1000 / max(1, packages):.1f} ms a package; target: <= 300 ms for 50)"
