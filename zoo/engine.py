"""The training loop, top to bottom: build, train, validate, checkpoint, stop early, test.

Reads a plain config dict (validated by zoo.config) and writes into one run directory:
checkpoints/{best,last}.pt (atomically), metrics.json and a log line per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from zoo import __version__, registry
from zoo.data import DataInfo, Transformed, build_augmentations, build_data, loader
from zoo.errors import ZooError
from zoo.model import ZooModel, build_model, deployed_info, set_train_mode

log = logging.getLogger("zoo")
CHECKPOINT_FORMAT = "zoo.checkpoint/1"
MINIMIZE = ("loss", "mae", "mse", "rmse")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """auto -> cuda when usable, else cpu; asking for cuda without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ZooError("trainer.device=cuda but no CUDA device is usable here; use trainer.device=auto or cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def to_jsonable(value: Any) -> Any:
    """Tensors and numbers from torchmetrics as plain JSON values."""
    if isinstance(value, torch.Tensor):
        return round(value.item(), 6) if value.numel() == 1 else value.tolist()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write to a temporary file and rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load a zoo checkpoint (tensors and plain data only: weights_only=True, no unsafe fallback)."""
    p = Path(path)
    if p.is_dir():  # a run directory: its best checkpoint
        p = p / "checkpoints" / "best.pt"
    if not p.is_file():
        raise ZooError(f"checkpoint {str(path)!r} does not exist (give a .pt file or a run directory)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ZooError(f"cannot read checkpoint {p}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ZooError(f"{p} is not a zoo checkpoint (no format {CHECKPOINT_FORMAT!r})")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> tuple[ZooModel, DataInfo]:
    """Rebuild the model a checkpoint was trained with and load its weights."""
    info = DataInfo.from_dict(ckpt["info"])
    model = build_model(ckpt["config"], info)
    model.load_state_dict(ckpt["model"])
    return model.eval(), info


def make_optimizer(model: ZooModel, transfer, tcfg: dict) -> torch.optim.Optimizer:
    """Parameter groups from the transfer strategy, each split so biases and norms get no weight decay."""
    groups = []
    for g in transfer.param_groups(model, tcfg["lr"]):
        params = [p for p in g["params"] if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for ps, wd in ((decay, tcfg["weight_decay"]), (no_decay, 0.0)):
            if ps:
                groups.append({**g, "params": ps, "weight_decay": wd, "base_lr": g["lr"]})
    if not groups:
        raise ZooError("nothing to train: the transfer strategy froze every parameter")
    if tcfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=tcfg["lr"], momentum=tcfg["momentum"], nesterov=tcfg["momentum"] > 0)
    return torch.optim.AdamW(groups, lr=tcfg["lr"])


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
def evaluate(model: ZooModel, data, device: torch.device) -> dict:
    """Mean loss and the head's metrics over a loader."""
    model.eval()
    metrics = model.head.metrics().to(device)
    total, n = 0.0, 0
    for x, y in data:
        x, y = x.to(device), _to(y, device)
        out = model(x)
        total += float(model.head.loss(out, y)) * len(x)
        n += len(x)
        metrics.update(out, y)
    result = {k: to_jsonable(v) for k, v in metrics.compute().items()}
    result["loss"] = round(total / max(1, n), 6)
    return result


def _to(y: Any, device: torch.device) -> Any:
    if isinstance(y, torch.Tensor):
        return y.to(device)
    if isinstance(y, list):
        return [{k: v.to(device) for k, v in t.items()} for t in y]
    return y


@torch.no_grad()
def feature_cache(model: ZooModel, data, batch_size: int, device: torch.device) -> tuple[list[torch.Tensor], Any]:
    """The frozen base's features for every training image (each level stacked), and the targets."""
    model.eval()
    levels, targets = None, []
    for x, y in loader(data, batch_size, False, 0, 0):
        feats = model.backbone(model.normalize(x.to(device)))
        levels = [[f] for f in feats] if levels is None else [acc + [f] for acc, f in zip(levels, feats)]
        targets.append(y)
    stacked = [torch.cat(level) for level in levels]
    ys = (
        torch.cat(targets).to(device)
        if isinstance(targets[0], torch.Tensor)
        else [t for batch in targets for t in batch]
    )
    return stacked, ys


def cached_batches(cache, batch_size: int, seed: int):
    """Shuffled batches of cached features: (list of feature levels, targets)."""
    feats, ys = cache
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(feats[0]), generator=g)
    for idx in order.split(batch_size):
        if len(idx) < 2 and len(order) > 1:
            continue  # batch norm in the head cannot train on a single sample
        idx = idx.to(feats[0].device)
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
) -> float:
    """One optimizer step on a batch of images (or, `cached`, of cached backbone features); the loss."""
    if cached:
        outputs = model.head(x)
    else:
        x, y = x.to(device, non_blocking=True), _to(y, device)
        if batch_tf is not None:
            x, y = batch_tf(x, y)
        outputs = model(x)
    loss = model.head.loss(outputs, y)
    if l1_params:  # L1 on weights (not biases or norms): pushes them to exactly zero
        loss = loss + tcfg["l1"] * sum(p.abs().sum() for p in l1_params)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if tcfg["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
    optimizer.step()
    return loss.item()


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(cfg: dict, run_dir: str | Path, env_keys: list[str] | None = None) -> dict:
    """Train the experiment `cfg` (a plain, validated config dict); return what metrics.json holds."""
    run_dir = Path(run_dir)
    tcfg, seed = cfg["trainer"], int(cfg["seed"])
    if tcfg["threads"]:  # several jobs on one machine: torch's default of a thread per core oversubscribes it
        torch.set_num_threads(tcfg["threads"])
    seed_everything(seed)
    device = pick_device(tcfg["device"])

    bundle = build_data(cfg, seed)
    info = bundle.info
    model = build_model(cfg, info)
    model.head.prepare(bundle)
    tparams = dict(cfg["transfer"])
    transfer = registry.get("transfer", tparams.pop("name")).build({}, tparams, where="transfer")
    weights_report = transfer.setup(model)
    if weights_report:
        log.info(
            "weights from %s: %d tensors loaded, %d skipped, %d new",
            weights_report["source"],
            weights_report["loaded"],
            len(weights_report["skipped"]),
            len(weights_report["new"]),
        )
    model.to(device)
    sample_tf, batch_tf = build_augmentations(cfg["aug"], info)

    bs, workers = tcfg["batch_size"], tcfg["num_workers"]
    train_loader = loader(Transformed(bundle.train, sample_tf), bs, True, workers, seed, drop_last=True)
    val_loader = loader(bundle.val, tcfg["eval_batch_size"], False, workers, seed)
    test_loader = loader(bundle.test, tcfg["eval_batch_size"], False, workers, seed)
    if len(bundle.train) == 0 or len(bundle.val) == 0:
        raise ZooError(f"data={cfg['data']['name']} has an empty train or val split")

    head = model.head
    monitor = head.monitor if tcfg["monitor"] == "auto" else tcfg["monitor"]
    mode = head.monitor_mode if monitor == head.monitor else ("min" if monitor in MINIMIZE else "max")
    steps_per_epoch = len(train_loader)
    optimizer = make_optimizer(model, transfer, tcfg)
    l1_params = [p for p in model.parameters() if p.ndim > 1] if tcfg["l1"] > 0 else []
    ckpt_dir = run_dir / "checkpoints"
    base = {
        "format": CHECKPOINT_FORMAT,
        "zoo_version": __version__,
        "config": cfg,
        "info": deployed_info(model, info).to_dict(),
        "env_keys": list(env_keys or []),
    }
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "data=%s (%d train / %d val / %d test) model=%s head=%s: %.2fM parameters, %s",
        cfg["data"]["name"],
        len(bundle.train),
        len(bundle.val),
        len(bundle.test),
        cfg["model"]["name"],
        cfg["head"]["name"],
        n_params / 1e6,
        device,
    )

    best, best_epoch, stale, step, history = None, -1, 0, 0, []
    show_bar = tcfg["progress"] and sys.stderr.isatty()
    started = time.perf_counter()
    cache, cache_seconds = None, 0.0
    if transfer.cache_features and tcfg["max_epochs"] > 0:
        # cache features once: the frozen base gives the same output every epoch (so no augmentation here)
        t = time.perf_counter()
        cache = feature_cache(model, bundle.train, tcfg["eval_batch_size"], device)
        cache_seconds = time.perf_counter() - t
        log.info(
            "features of %d training images cached in %.1fs; the head trains on the cache",
            len(bundle.train),
            cache_seconds,
        )
    start = 0
    if tcfg["resume"] and (ckpt_dir / "last.pt").is_file():
        last = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=True)
        for e in range(last["epoch"]):  # replay phase changes so the optimizer's groups match the saved ones
            if transfer.on_epoch_start(e, model):
                optimizer = make_optimizer(model, transfer, tcfg)
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        start, best, best_epoch, stale, history = (
            last["epoch"],
            last["best"],
            last["best_epoch"],
            last["stale"],
            last["history"],
        )
        step = start * steps_per_epoch
        log.info(
            "resumed from %s at epoch %d (best val %s %.4f at epoch %d)",
            ckpt_dir / "last.pt",
            start,
            monitor,
            best,
            best_epoch,
        )
    if tcfg["max_epochs"] == 0:  # use the weights as they are: evaluate, save, export
        save_checkpoint(
            ckpt_dir / "best.pt",
            {**base, "model": model.state_dict(), "epoch": 0, "val": evaluate(model, val_loader, device)},
        )
    for epoch in range(start, tcfg["max_epochs"]):
        if transfer.on_epoch_start(epoch, model):  # a new phase: new trainable set, new optimizer
            optimizer = make_optimizer(model, transfer, tcfg)
            log.info(
                "phase change at epoch %d: %d trainable parameters",
                epoch + 1,
                sum(p.numel() for p in model.parameters() if p.requires_grad),
            )
        set_train_mode(model)
        epoch_start, total, seen = time.perf_counter(), 0.0, 0
        batches = cached_batches(cache, bs, seed + epoch) if cache is not None else train_loader
        if show_bar:
            from tqdm import tqdm

            batches = tqdm(
                batches,
                desc=f"epoch {epoch + 1}/{tcfg['max_epochs']}",
                leave=False,
                file=sys.stderr,
                total=steps_per_epoch,
            )
        for x, y in batches:
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(step, steps_per_epoch, tcfg)
            loss = train_step(model, x, y, optimizer, tcfg, l1_params, cache is not None, batch_tf, device)
            total, seen, step = total + loss * len(x), seen + len(x), step + 1
        train_time = time.perf_counter() - epoch_start
        val = evaluate(model, val_loader, device)
        if monitor not in val:
            raise ZooError(f"trainer.monitor={monitor!r} is not a validation metric; valid: {', '.join(sorted(val))}")
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(total / max(1, seen), 6),
                "train_seconds": round(train_time, 3),
                **{f"val_{k}": v for k, v in val.items() if not isinstance(v, list)},
            }
        )
        improved = _improved(val[monitor], best, mode)
        log.info(
            "epoch %d/%d  loss %.4f  val %s %.4f%s  (%.1fs)",
            epoch + 1,
            tcfg["max_epochs"],
            total / max(1, seen),
            monitor,
            val[monitor],
            " *" if improved else "",
            train_time,
        )
        state = {**base, "model": model.state_dict(), "epoch": epoch + 1, "val": val}
        if improved:
            best, best_epoch, stale = val[monitor], epoch + 1, 0
            save_checkpoint(ckpt_dir / "best.pt", state)
        else:
            stale += 1
        save_checkpoint(
            ckpt_dir / "last.pt",
            {
                **state,
                "optimizer": optimizer.state_dict(),
                "best": best,
                "best_epoch": best_epoch,
                "stale": stale,
                "history": history,
            },
        )
        if tcfg["patience"] and stale >= tcfg["patience"]:
            log.info(
                "early stop: val %s has not improved for %d epochs (best %.4f at epoch %d)",
                monitor,
                stale,
                best,
                best_epoch,
            )
            break
    train_seconds = time.perf_counter() - started

    # Report the best epoch's weights, not the last one's.
    if not (ckpt_dir / "best.pt").is_file():
        raise ZooError(
            f"nothing was trained: {ckpt_dir / 'last.pt'} is already at trainer.max_epochs={tcfg['max_epochs']}"
        )
    model.load_state_dict(torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=True)["model"])
    epoch_times = [h["train_seconds"] for h in history]
    results = {
        "test": evaluate(model, test_loader, device),
        "val": evaluate(model, val_loader, device),
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": round(sum(epoch_times) / len(epoch_times), 4) if epoch_times else 0.0,
        "feature_cache_seconds": round(cache_seconds, 3),
        "epochs": len(history),
        "best_epoch": best_epoch,
        "monitor": monitor,
        "transfer": {"name": cfg["transfer"]["name"], "weights": weights_report},
        "history": history,
    }
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, run_dir / "metrics.json")
    log.info("test %s", "  ".join(f"{k} {v:.4f}" for k, v in results["test"].items() if isinstance(v, float)))
    return results
