"""More than one process on CPU (gloo): a torchrun run trains as one process does, survives being killed,
and only rank 0 writes; trainer.devices=N starts torchrun; the samplers deal the data out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, assert_one_line_error, small_config, zoo_in_process
from zoo.train.distributed import Shard, train_sampler
from zoo.train.engine import train

# Converges to ~98% in a few seconds; SGD and group norm, so that two processes averaging their half-batch
# gradients compute what one process does with the whole batch (batch norm's statistics would be per rank,
# and Adam turns float-level differences of near-zero gradients into whole steps).
SAME_MATH = [
    "seed=1",
    "data.size=16",
    "aug=none",
    "model.norm=group",
    "model.width=16",
    "trainer.optimizer=sgd",
    "trainer.lr=0.05",
    "trainer.batch_size=32",
    "trainer.max_epochs=8",
    "trainer.progress=false",
]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_two_processes_train_as_one_survive_a_kill_and_only_rank_0_writes(tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    first = subprocess.Popen(
        [*torchrun, "-m", "zoo.cli", "train", *SAME_MATH, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        last, deadline = run / "checkpoints" / "last.pt", time.monotonic() + 240
        while not last.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), first.stderr.read().decode()[-3000:] if first.poll() is not None else "no last.pt"
    finally:
        for pid in [*_children(first.pid), first.pid]:  # the ranks (each in a session of its own), then torchrun
            os.kill(pid, signal.SIGKILL)
        first.wait()
        first.stderr.close()
    assert not (run / "metrics.json").exists(), "the run finished before it was killed; the test needs more epochs"
    killed_at = torch.load(last, weights_only=True)["epoch"]

    resumed = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "train", *SAME_MATH, "trainer.devices=2", "trainer.resume=true"]
        + [f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 9))
    # each rank tested half of the split; torchmetrics synced them: the whole split is counted, once
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 360
    log = (run / "train.log").read_text()
    assert f"resumed from {last} at epoch {killed_at}" in log, log
    # rank 0 alone logs and writes: each epoch's line once, nothing outside the run folder
    assert all(log.count(f"epoch {e}/8 ") == 1 for e in range(1, 9)), log
    assert log.count("test accuracy") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert {p.name for p in run.iterdir()} == {
        ".hydra", "checkpoints", "config.yaml", "train.log", "metrics.json", "curves.png", "confusion.png", "worst.png"
    }  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    saved = torch.load(last, weights_only=True)
    assert len(saved["rng_ranks"]) == 2, "each rank's random streams, for an exact resume"
    assert not torch.equal(saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"])

    one = train(small_config(**dict(o.split("=", 1) for o in SAME_MATH)), tmp_path / "one")
    assert one["test"]["accuracy"] > 0.9
    assert abs(metrics["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.005, (metrics["test"], one["test"])


def test_each_global_batch_holds_the_same_images_in_any_world_size():
    data = torch.utils.data.TensorDataset(torch.arange(40))
    one = train_sampler(data, 7)  # one process: the whole permutation
    one.set_epoch(3)
    whole = list(one)
    halves = []
    for rank in range(2):
        s = torch.utils.data.DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        s.set_epoch(3)
        halves.append(list(s))
    for b in range(5):  # global batch 8 = 4 per rank
        assert sorted(whole[8 * b : 8 * b + 8]) == sorted(halves[0][4 * b : 4 * b + 4] + halves[1][4 * b : 4 * b + 4])
    one.set_epoch(4)
    assert list(one) != whole
    shards = [list(Shard(10, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10)) and [len(Shard(10, r, 3)) for r in range(3)] == [4, 3, 3]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["trainer.devices=0"], ["trainer.devices=0 must be"]),
        (["trainer.devices=3", "trainer.batch_size=64"], ["trainer.batch_size=64 is the global batch", "among 3"]),
        (["-m", "seed=0,1", "trainer.devices=2"], ["trainer.devices=2 starts torchrun for a single run"]),
    ],
)
def test_devices_are_checked_before_any_process_starts(tmp_path, args, fragments):
    proc = zoo_in_process("train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "run").exists()
