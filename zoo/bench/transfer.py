"""`zoo bench transfer`: head epochs on a frozen base with the base run on every batch or once into a feature
cache, interleaved; and the raw-pixel floors a classifier must beat."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from zoo.bench.common import interleaved
from zoo.errors import ZooError
from zoo.tasks import TABLE
from zoo.train.config import compose, to_plain


def transfer(overrides: list[str], repeats: int) -> Iterator[str]:
    """Head epochs on a frozen base, two ways, on one experiment's data, interleaved: the base runs on every
    batch (as transfer strategies that augment do), or it ran once into a feature cache (as strategies with
    `cache_features` do); and the cache's one-off cost."""
    import torch

    from zoo.data import Transformed  # lazy: torch, only once a benchmark runs
    from zoo.model import set_train_mode  # lazy: torch, as above
    from zoo.train.accel import data_loader  # lazy: torch, as above
    from zoo.train.engine import cached_batches, feature_cache, train_step  # lazy: torch, as above
    from zoo.train.experiment import build_experiment  # lazy: torch, as above

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

    runs = {name: (lambda path=path: epoch(*path)) for name, path in paths.items()}
    frozen, cached = interleaved(runs, repeats).values()  # a change in the machine's load hits both alike
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
    if TABLE[exp.data.info.task].target == "index":  # a class per image: raw-pixel classifiers are a floor
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
