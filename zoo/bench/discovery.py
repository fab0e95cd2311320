"""`zoo bench discovery`: `zoo list` and a mistyped `zoo train`, each a fresh process, with generated plugin
packages installed, cold and warm; and the one-module plugin packages it installs (tests install them too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.plugin.catalog import CACHE_ENV


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
