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

    from zoo.catalog import CACHE_ENV

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
