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

    batches_of_loader = _feeder(data, n)

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
    reference = _torchvision_loader(cfg, exp, bs, data.num_workers)
    if reference is not None:  # the same folder through torchvision's ImageFolder and DataLoader, the same ops
        reference_batches = _feeder(reference, n)

        def torchvision_pipeline() -> None:
            for x, y in reference_batches():
                on_device(x, y)
            sync()

        runs["torchvision pipeline"] = torchvision_pipeline
    for p in _bench_precisions(device):
        accel = Accel(p, device, tcfg["channels_last"])
        runs[f"whole {p}"], runs[f"model {p}"] = (lambda a=accel: whole(a)), (lambda a=accel: model_step(a))
    times = interleaved(runs, repeats)
    yield (
        f"training step: data={cfg['data']['name']} ({len(exp.data.train)} training images), "
        f"model={cfg['model']['name']}, head={cfg['head']['name']}, batch {bs}, {n} batches, {device} "
        f"(threads: torch {torch.get_num_threads()}), workers {data.num_workers}, median of {repeats} interleaved"
    )
    yield from _train_table(times, n * bs)
    if reference is not None:
        yield _reference_line(times, reference, exp, data.num_workers)


def _reference_line(times: dict[str, float], reference, exp, workers: int) -> str:
    """The data pipeline against torchvision's, as a ratio of images per second, saying how zoo held the split."""
    held = "held in memory, as this run holds it" if getattr(exp.data.train, "in_memory", False) else "streamed"
    return (
        f"data pipeline ({held}) vs torchvision's ImageFolder + DataLoader streaming {reference.dataset.root} (Pillow "
        f"decode, resize to {tuple(exp.data.info.size)}, the run's own augmentations, {workers} workers): "
        f"x{times['torchvision pipeline'] / times['data pipeline']:.2f} the images per second"
    )


def _feeder(loader, n: int):
    """`n` batches of `loader` per call, from one iterator kept across calls (its workers start once an epoch, as
    training's do); a new epoch where the last one ends."""
    feed = {"it": iter(loader)}

    def batches():
        for _ in range(n):
            try:
                yield next(feed["it"])
            except StopIteration:  # the epoch is over: a new one, as training starts it
                feed["it"] = iter(loader)
                yield next(feed["it"])

    return batches


def _torchvision_loader(cfg: dict, exp, batch_size: int, workers: int):
    """torchvision's ImageFolder + DataLoader over the run's image folder (data.root, or its train/ folder), decoding
    with Pillow, resizing to the run's size and applying the run's own per-sample ops, with the same workers and
    batch size: the reference a folder pipeline is measured against. None where the data is not such a folder."""
    from pathlib import Path

    root = cfg["data"].get("root")
    folder = Path(str(root)).expanduser() if root else None
    if folder is None or not folder.is_dir():
        return None
    folder = folder / "train" if (folder / "train").is_dir() else folder
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    info = exp.data.info
    steps = [v2.Grayscale() if info.channels == 1 else v2.RGB(), v2.PILToTensor()]
    steps += [v2.Resize(tuple(info.size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
    steps += [exp.sample_transform] if exp.sample_transform is not None else []
    try:
        images = datasets.ImageFolder(str(folder), transform=v2.Compose(steps))
    except (FileNotFoundError, RuntimeError):  # not class folders of images
        return None
    return torch.utils.data.DataLoader(
        images, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0
    )


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
