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
