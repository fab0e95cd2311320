"""`zoo doctor [--json]`: what this machine gives zoo, in one screen: versions, the devices torch and
onnxruntime see, the providers a session would take, the cores, and the plugin packages that loaded or failed.

The first thing to run on a new machine (a GPU box, a CI runner, a container) and to paste into a bug report:
every line comes from the same functions training and serving use (zoo.runtime's provider choice, the plugin
discovery), so what it says is what `zoo train` and `zoo predict` will do here.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from zoo.errors import unknown
from zoo.plugin import catalog, discovery, registry
from zoo.runtime.options import CPU, gpu_usable, physical_cores, select_providers, tensorrt_loadable
from zoo.verbs import Verb
from zoo.version import PLUGIN_API_VERSION, __version__

VERB = Verb(
    "doctor",
    "what this machine gives zoo: versions, devices, the providers a session takes, cores, plugin packages",
    flags=(("--json", "the same as one JSON object (for scripts and bug reports)"),),
    examples=("zoo doctor", "zoo doctor --json > machine.json"),
)


def _torch() -> dict[str, Any]:
    import torch  # the devices training will use

    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "devices": [f"{d.name} ({d.total_memory / 2**30:.0f} GiB)" for d in devices],
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "threads": torch.get_num_threads(),
    }


def _onnxruntime() -> dict[str, Any]:
    import onnxruntime as ort  # the providers serving will use

    available = ort.get_available_providers()
    return {
        "version": ort.__version__,
        "available": available,
        "gpu_usable": gpu_usable(),
        "tensorrt_loadable": tensorrt_loadable(),
        "auto": select_providers("auto", available=available),
    }


def _plugins() -> dict[str, Any]:
    catalog.serve(False)  # as `zoo list` does: what the cache or the packages declare
    counts: dict[str, int] = {}
    for kind in registry.KINDS:
        for plugin in registry.registries[kind]:
            counts[plugin.package] = counts.get(plugin.package, 0) + 1
    return {"packages": counts, "failed": {e.package: e.error for e in discovery.errors}}


def report() -> dict[str, Any]:
    """Everything `zoo doctor` says, as plain data."""
    return {
        "zoo": {"version": __version__, "plugin_api": PLUGIN_API_VERSION, "path": str(Path(__file__).parents[1])},
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "cores": {"physical_usable": physical_cores(), "logical": os.cpu_count()},
        "torch": _torch(),
        "onnxruntime": _onnxruntime(),
        "plugins": _plugins(),
    }


def lines(r: dict[str, Any]) -> list[str]:
    """The report as aligned lines for people."""
    t, o, p = r["torch"], r["onnxruntime"], r["plugins"]
    gpu = (
        f"CUDA {t['cuda']}, cuDNN {t['cudnn']}, bf16 {'yes' if t['bf16'] else 'no'}: " + ", ".join(t["devices"])
        if t["devices"]
        else "no CUDA device: training runs on the CPU"
    )
    why_cpu = "" if o["auto"][0] != CPU else " (no usable GPU)" if not o["gpu_usable"] else " (no GPU provider)"
    failed = "; ".join(f"{k}: {v}" for k, v in p["failed"].items()) or "none"
    rows = [
        ("zoo", f"{r['zoo']['version']} (plugin API {r['zoo']['plugin_api']}) at {r['zoo']['path']}"),
        ("python", f"{r['python']['version']} at {r['python']['executable']} ({r['python']['platform']})"),
        ("cores", f"{r['cores']['physical_usable']} physical usable, {r['cores']['logical']} logical"),
        ("torch", f"{t['version']}, {t['threads']} threads; {gpu}"),
        ("onnxruntime", f"{o['version']}; providers built in: {', '.join(o['available'])}"),
        ("serving", f"providers=auto takes {', '.join(o['auto'])}{why_cpu}"),
        ("tensorrt", "its libraries load" if o["tensorrt_loadable"] else "its libraries (libnvinfer) do not load"),
        ("plugins", ", ".join(f"{k} ({n})" for k, n in sorted(p["packages"].items())) + f"; failed: {failed}"),
    ]
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def run(args: list[str]) -> int:
    """Print the report (exit 0: a machine without a GPU is a fine machine)."""
    for a in args:
        if a != "--json":
            raise unknown("argument for zoo doctor", a, ["--json"])
    r = report()
    print(json.dumps(r, indent=1) if "--json" in args else "\n".join(lines(r)))
    return 0
