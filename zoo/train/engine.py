"""The training loop, top to bottom: train, validate, checkpoint, stop early, test.

Takes an Experiment (zoo.train.experiment: data, model, transfer, augmentations, built once from a validated
config) and writes into one run directory: checkpoints/{best,last}.pt (atomically), metrics.json and a
log line per epoch. Under torchrun every rank runs this loop on its share of the data (zoo.train.distributed);
rank 0 alone writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.data import Transformed, loader
from zoo.errors import ZooError
from zoo.model import ZooModel, deployed_info, set_train_mode
from zoo.train import distributed as dist
from zoo.train.accel import FULL, Accel, as_float32, cache_splits, data_loader, prepare_model, to_device
from zoo.train.checkpoint import (
    check_fits,
    differing_keys,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from zoo.train.experiment import Experiment, build_experiment, seed_everything
from zoo.train.tracking import tracker
from zoo.version import __version__

log = logging.getLogger("zoo")


def to_jsonable(value: Any) -> Any:
    """Tensors and numbers from torchmetrics as plain JSON values."""
    if isinstance(value, torch.Tensor):
        return round(value.item(), 6) if value.numel() == 1 else value.tolist()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def lr_factor(step: int, steps_per_epoch: int, tcfg: dict) -> float:
    """Linear warm-up, then cosine decay to zero, a step decay, or constant."""
    total = max(1, tcfg["max_epochs"] * steps_per_epoch)
    warm = tcfg["warmup_epochs"] * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if tcfg["scheduler"] == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    if tcfg["scheduler"] == "step":
        return tcfg["gamma"] ** ((step // steps_per_epoch) // tcfg["step_size"])
    return 1.0


@torch.no_grad()
def evaluate(model: ZooModel, data, device: torch.device, accel: Accel | None = None) -> dict:
    """Mean loss and the head's metrics over a loader (the forward pass in the run's precision, loss and
    metrics in float32)."""
    accel = accel or FULL
    model.eval()
    metrics = model.head.metrics().to(device)
    total, n = 0.0, 0
    for x, y in data:
        x, y = accel.batch(x.to(device, non_blocking=True)), to_device(y, device)
        with accel.autocast():
            out = model(x)
        out = as_float32(out)
        total += float(model.head.loss(out, y)) * len(x)
        n += len(x)
        metrics.update(out, y)
    result = {k: to_jsonable(v) for k, v in metrics.compute().items()}  # torchmetrics syncs the ranks' states
    total, n = dist.sum_all([total, n], device)
    result["loss"] = round(total / max(1, n), 6)
    return result


@torch.no_grad()
def feature_cache(model: ZooModel, data, batch_size: int, device: torch.device) -> tuple[list[torch.Tensor], Any]:
    """The frozen base's features for every training image (each level stacked), and the targets."""
    model.eval()
    levels, targets = None, []
    for x, y in loader(data, batch_size, False, 0, 0):
        feats = model.backbone(model.normalize(x.to(device)))
        levels = [[f] for f in feats] if levels is None else [acc + [f] for acc, f in zip(levels, feats)]
        targets.append(y)
    stacked = _drop_unread([torch.cat(level) for level in levels], model.head)
    ys = (
        torch.cat(targets).to(device)
        if isinstance(targets[0], torch.Tensor)
        else [t for batch in targets for t in batch]
    )
    return stacked, ys


def _drop_unread(stacked: list[torch.Tensor], head) -> list[torch.Tensor]:
    """The cached levels with those the head never reads emptied (zero channels): a classifier reads only the
    deepest map, and copying the shallow ones into every batch cost more than the head's own step. Which levels
    a head reads is found by asking autograd on two samples; a head that cannot say keeps them all."""
    probe = [f[:2].detach().clone().requires_grad_(True) for f in stacked]
    was_training = head.training
    try:
        head.eval()
        with torch.enable_grad():
            out = head(probe)
            parts = [out] if isinstance(out, torch.Tensor) else list(out.values() if isinstance(out, dict) else out)
            total = sum(p.float().sum() for p in parts if isinstance(p, torch.Tensor) and p.requires_grad)
            grads = torch.autograd.grad(total, probe, allow_unused=True)
    except Exception:  # a head that needs more than its features to run: keep every level
        return stacked
    finally:
        head.train(was_training)
    return [f if g is not None else f[:, :0] for f, g in zip(stacked, grads)]


def cached_batches(cache, batch_size: int, seed: int):
    """Shuffled batches of cached features: (list of feature levels, targets); this rank's share of each."""
    feats, ys = cache
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(feats[0]), generator=g)
    world = dist.world_size()
    for idx in order.split(batch_size):
        if len(idx) < 2 * world and len(order) > 1:
            continue  # batch norm in the head cannot train on a single sample
        idx = idx[dist.rank() :: world].to(feats[0].device)
        yield [f[idx] for f in feats], (ys[idx] if isinstance(ys, torch.Tensor) else [ys[i] for i in idx.tolist()])


def train_step(
    model: ZooModel,
    x: Any,
    y: Any,
    optimizer,
    tcfg: dict,
    l1_params: list,
    cached: bool,
    batch_tf,
    device: torch.device,
    metric=None,
    accel: Accel | None = None,
) -> float:
    """One optimizer step on a batch of images (or, `cached`, of cached backbone features); the loss. `metric`
    (a torchmetrics Metric) is updated with the batch's outputs: the training split's metric. `accel`: the
    forward pass under autocast at the run's precision, the step through its GradScaler (float32 without)."""
    accel = accel or FULL
    if cached:
        with accel.autocast():
            outputs = model.head(x)
    else:
        x, y = x.to(device, non_blocking=True), to_device(y, device)
        if batch_tf is not None:  # batch augmentation, on the device
            before = y
            x, y = batch_tf(x, y)
            if _mixed(before, y):  # Mixup, CutMix: soft targets a metric cannot score
                metric = None
        with accel.autocast():
            outputs = model(accel.batch(x))
    outputs = as_float32(outputs)
    loss = model.head.loss(outputs, y)
    if metric is not None:
        with torch.no_grad():
            metric.update(outputs.detach(), y)
    if l1_params:  # L1 on weights (not biases or norms): pushes them to exactly zero
        loss = loss + tcfg["l1"] * sum(p.abs().sum() for p in l1_params)
    optimizer.zero_grad(set_to_none=True)
    accel.step(loss, optimizer, model.parameters(), tcfg["grad_clip"])
    return loss.item()


def _mixed(before: Any, after: Any) -> bool:
    """Whether a batch transform changed the targets' form (hard labels made soft by Mixup or CutMix), rather
    than moving images (flips, shifts, rotations, whose targets stay as they were or move with them)."""
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        return before.dtype != after.dtype or before.shape != after.shape
    return False


def train_metric(exp: Experiment, name: str):
    """The monitored metric alone, to accumulate on training batches: None when it is the loss or not an entry
    of the head's MetricCollection. Batches whose targets a batch transform mixed (Mixup, CutMix) skip it."""
    from torchmetrics import MetricCollection

    if name == "loss":
        return None
    metrics = exp.model.head.metrics()
    if not isinstance(metrics, MetricCollection) or name not in metrics:
        return None
    return metrics[name].to(exp.device)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle: a function of (seed, epoch) alone, so a resumed run draws the same batches."""
    return (seed * 1_000_003 + epoch) % 2**63


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


@dataclass
class Progress:
    """Where a run stands after an epoch: what last.pt holds, so a resumed run goes on from there."""

    epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = -1
    stale: int = 0
    history: list[dict] = field(default_factory=list)


def train(
    experiment: Experiment | dict, run_dir: str | Path, env_keys: list[str] | None = None, resumed: dict | None = None
) -> dict:
    """Train an Experiment (or the one a plain, validated config builds); return what metrics.json holds.
    `resumed`: last.pt as `resume_checkpoint` loaded and checked it (else it is loaded here)."""
    exp = experiment if isinstance(experiment, Experiment) else build_experiment(experiment)
    tcfg, model, seed = exp.cfg["trainer"], exp.model, int(exp.cfg["seed"])
    _log_start(exp)
    bs, accel = tcfg["batch_size"], Accel.of(tcfg, exp.device)
    cache_splits(exp.data)
    prepare_model(model, tcfg)
    train_set = Transformed(exp.data.train, exp.sample_transform)
    sampler = dist.train_sampler(train_set, epoch_seed(seed, 0))  # set_epoch(e) draws from epoch_seed(seed, e)
    train_loader = _loader(exp, train_set, dist.local_batch(bs), True, drop_last=True, sampler=sampler)
    run = Run(exp, Path(run_dir), _eval_loader(exp, exp.data.val), env_keys)
    saved = resumed if resumed is not None else dist.on_main(lambda: resume_checkpoint(exp, run.run_dir))
    for stale in remove_stale_temporaries(run.ckpt_dir) if dist.is_main() else []:
        log.info(f"removed {stale}, left by a checkpoint write that was killed")  # the rename never happened

    started, cache, cache_seconds = time.perf_counter(), None, 0.0
    if exp.transfer.cache_features and tcfg["max_epochs"] > 0:
        # cache features once: the frozen base gives the same output every epoch (so no augmentation here)
        cache = feature_cache(model, exp.data.train, tcfg["eval_batch_size"], exp.device)
        cache_seconds = time.perf_counter() - started
        log.info(
            f"features of {len(exp.data.train)} training images cached in {cache_seconds:.1f}s; "
            "the head trains on the cache"
        )
    optimizer, progress = exp.optimizer(), Progress()
    if saved is not None:  # last.pt's weights, optimizer, progress and random streams: the run goes on as it was
        optimizer, progress = _resume(run, saved, len(train_loader))
    elif dist.rank() > 0:  # each rank its own augmentation draws (the model is rank 0's: DDP broadcasts it)
        seed_everything(epoch_seed(seed, 0) + 7919 * dist.rank())
    if tcfg["max_epochs"] == 0:  # use the weights as they are: evaluate, save, export
        val = evaluate(model, run.val_loader, exp.device, accel)
        if dist.is_main():
            state = {**run.payload, "model": model.state_dict(), "epoch": 0, "val": val}
            save_checkpoint(run.ckpt_dir / "best.pt", state)
    l1_params, net = exp.l1_params(), dist.wrap(model, exp.device, cache is not None)
    for epoch in range(progress.epoch, tcfg["max_epochs"]):
        if exp.transfer.on_epoch_start(epoch, model):  # a new phase: new trainable set, new optimizer
            optimizer, l1_params = exp.optimizer(), exp.l1_params()
            del net  # DDP averages what was trainable when it was built
            net = dist.wrap(model, exp.device, cache is not None)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            log.info(f"phase change at epoch {epoch + 1}: {trainable} trainable parameters")
        set_train_mode(model)
        train_loader.generator.manual_seed(epoch_seed(seed, epoch))  # this epoch's order, whatever came before
        sampler.set_epoch(epoch)
        metric = train_metric(exp, run.monitor)  # before the timer: its first call imports torchmetrics
        epoch_start, total, seen = time.perf_counter(), 0.0, 0
        for x, y in _batches(cache, train_loader, bs, seed, epoch, tcfg):
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(progress.step, len(train_loader), tcfg)
            loss = train_step(
                net,
                x,
                y,
                optimizer,
                tcfg,
                l1_params,
                cache is not None,
                exp.batch_transform,
                exp.device,
                metric=metric,
                accel=accel,
            )
            total, seen, progress.step = total + loss * len(y), seen + len(y), progress.step + 1
        total, seen = dist.sum_all([total, seen], exp.device)  # the loss over every rank's images
        train_time = time.perf_counter() - epoch_start
        trained = {"train_loss": total / max(1, seen)} | (
            {f"train_{run.monitor}": metric.compute()} if metric is not None and metric.update_count else {}
        )
        if _end_of_epoch(run, progress, epoch, trained, train_time, optimizer):
            break
    return _finish(run, progress, time.perf_counter() - started, cache_seconds)


def _batches(cache, train_loader, bs: int, seed: int, epoch: int, tcfg: dict):
    """One epoch's training batches: of cached features or from the loader; a progress bar on a terminal."""
    batches = cached_batches(cache, bs, seed + epoch) if cache is not None else train_loader
    if tcfg["progress"] and sys.stderr.isatty() and dist.is_main():
        from tqdm import tqdm

        desc = f"epoch {epoch + 1}/{tcfg['max_epochs']}"
        batches = tqdm(batches, desc=desc, leave=False, file=sys.stderr, total=len(train_loader))
    return batches


def _loader(exp: Experiment, ds, batch_size: int, shuffle: bool = False, drop_last: bool = False, sampler=None):
    """A loader of one of the run's splits, fed as its device wants (zoo.train.accel.data_loader), in `sampler`'s
    order where one is given (training's under torchrun, a rank's share)."""
    tcfg, seed = exp.cfg["trainer"], int(exp.cfg["seed"])
    return data_loader(ds, batch_size, shuffle, tcfg, exp.device, seed, drop_last=drop_last, sampler=sampler)


class Run:
    """One run's fixed parts: its experiment, folders, validation loader, monitored metric and the plain data
    every checkpoint carries (config, DataInfo of the deployed model, versions)."""

    def __init__(self, exp: Experiment, run_dir: Path, val_loader, env_keys: list[str] | None):
        self.exp, self.run_dir, self.ckpt_dir, self.val_loader = exp, run_dir, run_dir / "checkpoints", val_loader
        self.monitor, self.mode = exp.monitor()
        self.tracker = tracker(exp.cfg["trainer"].get("logger", "none"), run_dir)
        info = deployed_info(exp.model, exp.info).to_dict()
        self.payload = {
            "zoo_version": __version__,
            "config": exp.cfg,
            "info": info,
            "env_keys": list(env_keys or []),
        }


def _eval_loader(exp: Experiment, ds):
    """An evaluation split in order; under torchrun, this rank's share of it."""
    return _loader(exp, ds, exp.cfg["trainer"]["eval_batch_size"], sampler=dist.eval_sampler(ds))


def _log_start(exp: Experiment) -> None:
    cfg, data = exp.cfg, exp.data
    if exp.weights:
        w = exp.weights
        log.info(
            f"weights from {w['source']}: {w['loaded']} tensors loaded, {len(w['skipped'])} skipped, "
            f"{len(w['new'])} new"
        )
    millions = sum(p.numel() for p in exp.model.parameters()) / 1e6
    log.info(
        f"data={cfg['data']['name']} ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test) "
        f"model={cfg['model']['name']} head={cfg['head']['name']}: {millions:.2f}M parameters, {exp.device}"
    )


def _end_of_epoch(run: Run, progress: Progress, epoch: int, trained: dict, train_time: float, optimizer) -> bool:
    """Validate, log, save best.pt (when the monitored metric improved) and last.pt; True to stop early.
    `trained`: the epoch's train_loss (and train_METRIC, the monitored metric on the training batches)."""
    exp, name, tcfg = run.exp, run.monitor, run.exp.cfg["trainer"]
    val = evaluate(exp.model, run.val_loader, exp.device, Accel.of(tcfg, exp.device))
    if name not in val:
        raise ZooError(f"trainer.monitor={name!r} is not a validation metric; valid: {', '.join(sorted(val))}")
    scalars = {f"val_{k}": v for k, v in val.items() if not isinstance(v, list)}
    train_loss = trained["train_loss"]
    progress.history.append(
        {
            "epoch": epoch + 1,
            **{k: to_jsonable(float(v)) for k, v in trained.items()},
            "train_seconds": round(train_time, 3),
            **scalars,
        }
    )
    improved = _improved(val[name], progress.best, run.mode)
    log.info(
        f"epoch {epoch + 1}/{tcfg['max_epochs']}  loss {train_loss:.4f}  val {name} {val[name]:.4f}"
        f"{' *' if improved else ''}  ({train_time:.1f}s)"
    )
    state = {**run.payload, "model": exp.model.state_dict(), "epoch": epoch + 1, "val": val}
    progress.epoch = epoch + 1
    if improved:
        progress.best, progress.best_epoch, progress.stale = val[name], epoch + 1, 0
        if dist.is_main():
            save_checkpoint(run.ckpt_dir / "best.pt", state)
    else:
        progress.stale += 1
    streams = dist.gather(rng_state())  # after validation: what the next epoch starts from, on every rank
    kept = {
        "best": progress.best,
        "best_epoch": progress.best_epoch,
        "stale": progress.stale,
        "history": progress.history,
        "step": progress.step,
        "rng": streams[0],
        **({"rng_ranks": streams} if len(streams) > 1 else {}),
    }
    if dist.is_main():
        save_checkpoint(run.ckpt_dir / "last.pt", {**state, "optimizer": optimizer.state_dict(), **kept})
        run.tracker.epoch(progress.history)  # trainer.logger: csv, tensorboard
    if tcfg["patience"] and progress.stale >= tcfg["patience"]:
        log.info(
            f"early stop: val {name} has not improved for {progress.stale} epochs "
            f"(best {progress.best:.4f} at epoch {progress.best_epoch})"
        )
        return True
    return False


def resume_checkpoint(exp: Experiment, run_dir: str | Path) -> dict | None:
    """With trainer.resume, the run directory's last.pt, loaded and checked: readable, intact, finite, and this
    run's own (same data, model and head config, tensors that fit); None when there is nothing to resume."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if not (exp.cfg["trainer"]["resume"] and (last.is_file() or last.is_symlink())):
        return None
    try:
        saved = load_checkpoint(last)
    except ZooError as e:
        raise ZooError(f"trainer.resume=true: {e}") from None
    differ = differing_keys(saved["config"], exp.cfg, ("data", "model", "head"))
    if differ:
        more = f" (+{len(differ) - 3} more)" if len(differ) > 3 else ""
        raise ZooError(
            f"trainer.resume=true: {last} is not this run's own: its config differs in {', '.join(differ[:3])}{more}; "
            "resume with the run's config, or train in another hydra.run.dir"
        )
    if not {"optimizer", "epoch", "history", "best", "best_epoch", "stale"} <= set(saved):
        raise ZooError(f"trainer.resume=true: {last} holds no training state (optimizer, epoch, history)")
    check_fits(saved["model"], exp.model.state_dict(), f"trainer.resume=true: {last}", saved["config"]["model"]["name"])
    return saved


def _resume(run: Run, saved: dict, steps_per_epoch: int) -> tuple[Any, Progress]:
    """The optimizer and progress saved in last.pt, the model's weights and the random streams restored."""
    exp, epoch = run.exp, saved["epoch"]
    optimizer = exp.optimizer()
    for e in range(epoch):  # replay phase changes so the optimizer's groups match the saved ones
        if exp.transfer.on_epoch_start(e, exp.model):
            optimizer = exp.optimizer()
    exp.model.load_state_dict(saved["model"])
    try:
        optimizer.load_state_dict(saved["optimizer"])
    except (ValueError, KeyError) as e:
        raise ZooError(
            f"trainer.resume=true: the optimizer state in {run.ckpt_dir / 'last.pt'} does not fit this run's "
            f"parameter groups (were transfer or trainer.optimizer changed?): {str(e).splitlines()[0]}"
        ) from None
    step = saved.get("step", epoch * steps_per_epoch)  # format 1 did not save it
    progress = Progress(epoch, step, saved["best"], saved["best_epoch"], saved["stale"], saved["history"])
    streams = saved.get("rng_ranks") or [saved.get("rng")]
    if len(streams) == dist.world_size() and streams[0] is not None:  # this rank's own streams, as they were
        restore_rng(streams[dist.rank()])
    elif streams[0] is not None:  # saved by another world size (or format 1, none): the same run, not bit for bit
        restore_rng(streams[0])
        if dist.rank() > 0:
            seed_everything(epoch_seed(int(exp.cfg["seed"]), epoch) + 7919 * dist.rank())
    log.info(
        f"resumed from {run.ckpt_dir / 'last.pt'} at epoch {epoch} "
        f"(best val {run.monitor} {progress.best:.4f} at epoch {progress.best_epoch})"
    )
    return optimizer, progress


def _finish(run: Run, progress: Progress, train_seconds: float, cache_seconds: float) -> dict:
    """Reload the best epoch's weights (not the last one's), test them, and write metrics.json."""
    exp, ckpt_dir, tcfg = run.exp, run.ckpt_dir, run.exp.cfg["trainer"]

    def best_weights() -> dict:
        if not (ckpt_dir / "best.pt").is_file():
            raise ZooError(
                f"nothing was trained: {ckpt_dir / 'last.pt'} is already at trainer.max_epochs={tcfg['max_epochs']}"
            )
        best = load_checkpoint(ckpt_dir / "best.pt")
        return {"model": best["model"], "val": best["val"]}

    best = dist.on_main(best_weights)  # read by rank 0, the same weights on every rank
    exp.model.load_state_dict(best["model"])
    accel = Accel.of(tcfg, exp.device)
    epoch_times = [h["train_seconds"] for h in progress.history]
    results = {
        "test": evaluate(exp.model, _eval_loader(exp, exp.data.test), exp.device, accel),
        "val": best["val"],  # evaluated when these weights were saved: not again
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": round(sum(epoch_times) / len(epoch_times), 4) if epoch_times else 0.0,
        "feature_cache_seconds": round(cache_seconds, 3),
        "epochs": len(progress.history),
        "best_epoch": progress.best_epoch,
        "monitor": run.monitor,
        "transfer": {"name": exp.cfg["transfer"]["name"], "weights": exp.weights},
        "history": progress.history,
    }
    if dist.is_main():
        tmp = run.run_dir / ".metrics.json.tmp"
        tmp.write_text(json.dumps(results, indent=2))
        os.replace(tmp, run.run_dir / "metrics.json")
        run.tracker.finish(results["test"], len(progress.history))
        run.tracker.close()
    log.info("test %s", "  ".join(f"{k} {v:.4f}" for k, v in results["test"].items() if isinstance(v, float)))
    return results
