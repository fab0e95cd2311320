"""`zoo bench train`: images per second of the training step, the data pipeline alone and the model step
alone, interleaved, for each precision the device runs."""

from __future__ import annotations

from collections.abc import Iterator

from zoo.bench.common import interleaved
from zoo.train.config import compose, to_plain


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

    from zoo.data import Transformed  # lazy: torch, only once a benchmark runs
    from zoo.model import set_train_mode  # lazy: torch, as above
    from zoo.train.accel import (  # lazy: torch, as above
        Accel,
        cache_splits,
        data_loader,
        prepare_model,
        resolve_workers,
        to_device,
    )
    from zoo.train.engine import train_step  # lazy: torch, as above
    from zoo.train.experiment import build_experiment  # lazy: torch, as above

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

    feed = {"it": iter(data)}  # one iterator across the timed runs: its workers start once an epoch, as training's

    def batches_of_loader():
        for _ in range(n):
            try:
                yield next(feed["it"])
            except StopIteration:  # the epoch is over: a new one, as training starts it
                feed["it"] = iter(data)
                yield next(feed["it"])

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
            train_step(exp.model, *fixed, optimizer, tcfg, l1, False, None, device, accel=accel)
        sync()

    def whole(accel) -> None:
        for x, y in batches_of_loader():
            train_step(exp.model, x, y, optimizer, tcfg, l1, False, exp.batch_transform, device, accel=accel)
        sync()

    runs = {"data pipeline": pipeline}
    for p in _bench_precisions(device):
        accel = Accel(p, device, tcfg["channels_last"])
        runs[f"whole {p}"], runs[f"model {p}"] = (lambda a=accel: whole(a)), (lambda a=accel: model_step(a))
    times = interleaved(runs, repeats)
    workers = resolve_workers(tcfg["num_workers"], images, device)
    yield (
        f"training step: data={cfg['data']['name']} ({len(exp.data.train)} training images), "
        f"model={cfg['model']['name']}, head={cfg['head']['name']}, batch {bs}, {n} batches, {device} "
        f"(threads: torch {torch.get_num_threads()}), workers {workers}, median of {repeats} interleaved"
    )
    yield from _train_table(times, n * bs)


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
