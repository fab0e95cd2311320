"""data=webdataset: tar shards written from any reader and read back as a stream, each DDP rank and loader worker
reading its own shards (no sample twice in an epoch); and a folder too big for the cache budget is streamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, small_config
from zoo.data import DataBundle, DataInfo, TensorImages, Transformed, build_data, loader
from zoo.errors import ZooError
from zoo.train.distributed import train_sampler

SIZE = 8


def numbered(n: int, classes: int = 3, start: int = 0) -> TensorImages:
    """n RGB images whose first two pixels spell their number (exact in uint8, so PNG keeps it), with classes."""
    g = torch.Generator().manual_seed(start)
    pixels = torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=g)
    ids = torch.arange(start, start + n)
    pixels[:, 0, 0, 0], pixels[:, 0, 0, 1] = ids // 256, ids % 256
    return TensorImages(pixels.float() / 255, ids % classes)


def number_of(image: torch.Tensor) -> int:
    pixels = (image[0, 0, :2] * 255).round().long()
    return int(pixels[0] * 256 + pixels[1])


def write(folder: Path, train: int, val: int = 20, test: int = 10, shard_size: int = 24, fmt: str = "png") -> Path:
    from zoo.plugin import registry

    info = DataInfo("classification", ("a", "b", "c"), 3, (SIZE, SIZE), (0.5,) * 3, (0.25,) * 3)
    bundle = DataBundle(info, numbered(train), numbered(val, start=1000), numbered(test, start=2000))
    writer = registry.get("dataset", "webdataset").extra["writer"]
    counts = writer(bundle, folder, shard_size=shard_size, image_format=fmt)
    assert counts["train"]["images"] == train and counts["val"]["images"] == val  # a writer's counts
    return folder


def test_shards_written_from_a_bundle_read_back_exactly_with_their_data_info(tmp_path):
    out = write(tmp_path / "shards", train=60, val=20, test=10, shard_size=25)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"]["train"] == [["train-000000.tar", 25], ["train-000001.tar", 25], ["train-000002.tar", 10]]
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "test-000000.tar", "train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"
    ]  # fmt: skip
    data = build_data({"data": {"name": "webdataset", "urls": str(out)}}, seed=0)
    assert data.info.classes == ("a", "b", "c") and data.info.size == (SIZE, SIZE) and data.info.mean == (0.5,) * 3
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 10)
    source = numbered(20, start=1000)
    read = list(data.val)  # evaluation reads in order, every sample once
    assert [number_of(x) for x, _ in read] == list(range(1000, 1020))
    assert all(torch.equal(x, source[i][0]) and int(y) == int(source[i][1]) for i, (x, y) in enumerate(read))


def test_a_brace_pattern_with_meta_beside_it_and_jpeg_shards(tmp_path):
    out = write(tmp_path / "s", train=48, shard_size=12, fmt="jpg")
    cfg = {"name": "webdataset", "urls": f"{out}/train-{{000000..000002}}.tar", "val_urls": f"{out}/val-000000.tar"}
    data = build_data({"data": cfg}, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (36, 12, 0)  # three of the four training shards
    x, y = next(iter(data.val))
    assert x.shape == (3, SIZE, SIZE) and y.dtype == torch.int64
    means = (x.mean(dim=(1, 2)) - numbered(1, start=1000)[0][0].mean(dim=(1, 2))).abs()
    assert means.max() < 0.03 and not torch.equal(x, numbered(1, start=1000)[0][0])  # JPEG keeps each block's mean


def test_missing_meta_and_unknown_shards_are_one_line(tmp_path):
    with pytest.raises(ZooError, match="meta.json"):
        build_data({"data": {"name": "webdataset", "urls": str(tmp_path / "x-{0..3}.tar")}}, seed=0)
    out = write(tmp_path / "s", train=24)
    with pytest.raises(ZooError, match="neither in meta.json's counts nor a local file"):
        build_data({"data": {"name": "webdataset", "urls": f"{out}/train-{{000000..000005}}.tar"}}, seed=0)


def epoch_numbers(data, epoch: int, workers: int, batch: int = 8) -> tuple[list[int], int]:
    """The numbers of the images one epoch of training reads through zoo's loader, and its reported length."""
    train = Transformed(data.train, None)
    sampler = train_sampler(train, 7)
    sampler.set_epoch(epoch)
    batches = loader(train, batch, True, workers, 0, drop_last=True, sampler=sampler)
    return [number_of(x) for xs, _ in batches for x in xs], len(batches)


def test_workers_read_their_own_shards_whole_batches_alike_and_each_epoch_in_a_new_order(tmp_path):
    data = build_data({"data": {"name": "webdataset", "urls": str(write(tmp_path / "s", train=240))}}, seed=0)
    first, n = epoch_numbers(data, 0, workers=2)
    # 10 shards of 24 to 2 workers: each is dealt 5 shards, 120 samples, 15 whole batches
    assert len(first) == len(set(first)) == 240 and n == 30
    second, _ = epoch_numbers(data, 1, workers=2)
    assert sorted(second) == sorted(first) and second != first
    assert epoch_numbers(data, 1, workers=2)[0] == second  # an epoch's order follows from (seed, epoch)


def test_too_few_shards_for_the_readers_is_one_line(tmp_path):
    data = build_data({"data": {"name": "webdataset", "urls": str(write(tmp_path / "s", train=24))}}, seed=0)
    with pytest.raises(ZooError, match="cannot give each of 2 readers"):
        epoch_numbers(data, 0, workers=2)


RANKS = """
import json, sys
import torch
from zoo.data import Transformed, build_data
from zoo.train import distributed as dist
from zoo.train.accel import data_loader

dist.init("cpu", 1)
data = build_data({"data": {"name": "webdataset", "urls": sys.argv[1]}}, seed=0)
train = Transformed(data.train, None)
sampler = dist.train_sampler(train, 3)
tcfg = {"num_workers": 2}
loader = data_loader(train, dist.local_batch(16), True, tcfg, torch.device("cpu"), 0, drop_last=True, sampler=sampler)
number = lambda x: int(round(float(x[0, 0, 0]) * 255) * 256 + round(float(x[0, 0, 1]) * 255))
seen = {}
for epoch in (0, 1):
    sampler.set_epoch(epoch)
    seen[epoch] = [[number(x) for x in xs] for xs, _ in loader]
val = data_loader(data.val, 8, False, tcfg, torch.device("cpu"), 0, sampler=dist.eval_sampler(data.val))
seen["val"] = [number(x) for xs, _ in val for x in xs]
seen["len"] = len(loader)
everyone = dist.gather(seen)
if dist.is_main():
    open(sys.argv[2], "w").write(json.dumps(everyone))
dist.shutdown()
"""


@pytest.mark.slow
def test_two_ddp_processes_on_gloo_read_each_sample_at_most_once_an_epoch(tmp_path):
    shards = write(tmp_path / "s", train=264, val=30, shard_size=24)  # 11 shards: 4 readers get 2 or 3
    script, out = tmp_path / "ranks.py", tmp_path / "seen.json"
    script.write_text(RANKS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, str(script), str(shards), str(out)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads(out.read_text())
    for epoch in ("0", "1"):
        batches = [r[epoch] for r in ranks]
        assert len(batches[0]) == len(batches[1]) == ranks[0]["len"] > 0  # DDP steps together
        assert all(len(b) == 8 for rank in batches for b in rank)
        numbers = [n for rank in batches for b in rank for n in b]
        # each reader is dealt at least 2 shards (48 samples, 6 batches): 4 readers x 48, none twice
        assert len(numbers) == len(set(numbers)) == 192 and set(numbers) <= set(range(264))
    assert ranks[0]["0"] != ranks[0]["1"]
    val = [n for r in ranks for n in r["val"]]
    assert sorted(val) == list(range(1000, 1030))  # evaluation: every sample on one rank, once


@pytest.mark.slow
def test_training_reads_shards(tmp_path):
    from zoo.train.engine import train
    from zoo_plugins.datasets.shards import write_shards

    digits = build_data(small_config(), 0)
    write_shards(digits, shards := tmp_path / "shards", shard_size=200)
    over = {"data": "webdataset", "data.urls": str(shards), "model.width": 8, "trainer.max_epochs": 2}
    result = train(small_config(**over, **{"trainer.progress": "false"}), tmp_path / "run")
    assert result["epochs"] == 2 and result["test"]["accuracy"] > 0.3  # chance is 0.1
    assert sum(map(sum, result["test"]["confusion_matrix"])) == len(digits.test)


STREAM = """
import json, sys
from zoo.data import Transformed, build_data, loader
from zoo.train.accel import cache_splits

def mib(key):
    return next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith(key))

data = build_data({"data": {"name": "folder", "root": sys.argv[1], "size": 192, "stats_samples": 4}}, seed=0)
before = mib("VmRSS:")
streamed = cache_splits(data, budget=2**20)  # a budget the splits do not fit: they stay files, decoded per batch
for split in (data.train, data.val, data.test):
    for _ in loader(Transformed(split, None), 16, True, 0, 0):
        pass
streaming = mib("VmHWM:") - before
cached = cache_splits(data, budget=2**40)
print(json.dumps({"streamed": streamed, "streaming": streaming, "cached": cached, "cache": mib("VmRSS:") - before}))
"""


@pytest.mark.slow
def test_a_folder_over_the_cache_budget_is_streamed_in_bounded_memory(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(400):  # decoded at 192 x 192: 177 MiB as float32, 44 MiB as uint8
        folder = tmp_path / "pets" / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", STREAM, str(tmp_path / "pets")], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["streamed"] == [] and seen["cached"] == ["train", "val", "test"]
    # streamed: a few batches in memory at a time, well under the decoded set, which the cache does hold
    assert seen["streaming"] < 40 and seen["cache"] > seen["streaming"] + 15, seen


@pytest.mark.slow
def test_zoo_train_under_torchrun_reads_shards_and_tests_every_sample_once(tmp_path):
    from zoo_plugins.datasets.shards import write_shards

    write_shards(build_data(small_config(), 0), shards := tmp_path / "shards", shard_size=100)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = ["data=webdataset", f"data.urls={shards}", "model.width=8", "trainer.max_epochs=1", "trainer.num_workers=2"]
    proc = subprocess.run(
        [*torchrun, "-m", "zoo.cli", "train", *args, "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 360  # each rank its own test shards, all of them
