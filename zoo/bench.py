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
