"""Benchmarks that compare side by side in one run and report ratios (never asserted in tests)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator

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
    for providers in (["cpu"] + (["cuda"] if gpu_usable() else [])):
        m = Model(model_path, providers)
        rows.append((f"onnxruntime ({m.providers[0]})", _time(lambda: m.run(x), repeats)))
    yield f"inference, batch {batch}, {h}x{w}, median of {repeats} (threads: torch {torch.get_num_threads()})"
    for name, t in rows:
        yield f"  {name:<42} {t * 1000:9.2f} ms   {batch / t:10.0f} img/s   x{base / t:.2f} vs pytorch"


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
            write_fake_package(site, f"zoo-bench{i}", f"zoo_bench{i}",
                               "from zoo import register\n\n\n"
                               f"@register.augmentation('bench_op{i}')\n"
                               "def op(info, p: float = 0.5, strength: float = 1.0) -> object:\n"
                               f"    \"\"\"Benchmark op {i}.\"\"\"\n    return None\n")

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
