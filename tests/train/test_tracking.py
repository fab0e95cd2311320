"""trainer.logger=csv|tensorboard streams what metrics.json's history holds while the run trains, and the run's
figures as images; the history holds the monitored metric on the training batches too (curves.png draws both)."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from zoo.cli.train import run_in
from zoo.train.engine import train
from zoo.train.experiment import build_experiment

SMALL = {"model.width": 4, "model.depth": 2, "trainer.progress": "false", "data.shots": 20, "data.size": 16}


def _small(**more) -> dict:
    return small_config(**{**SMALL, **more})


def test_csv_logger_writes_each_epoch_what_the_history_holds_with_the_training_metric(tmp_path, monkeypatch):
    import zoo.train.tracking

    seen = []  # metrics.csv as it stood after each epoch: written while training, not at the end
    original = zoo.train.tracking.CsvTracker.epoch

    def spy(self, history):
        original(self, history)
        seen.append(len(list(csv.DictReader((self.run_dir / "metrics.csv").open()))))

    monkeypatch.setattr(zoo.train.tracking.CsvTracker, "epoch", spy)
    results = train(_small(**{"trainer.max_epochs": 2, "trainer.logger": "csv"}), tmp_path)
    assert seen == [1, 2]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [{k: float(v) for k, v in r.items()} for r in rows] == [{k: float(v) for k, v in h.items()} for h in history]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert all(0 <= h["train_accuracy"] <= 1 for h in results["history"])
    assert not list(tmp_path.glob(".*"))  # each write renamed into place


@pytest.mark.slow
def test_tensorboard_logger_streams_scalars_and_the_figures(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _small(**{"trainer.max_epochs": 2, "trainer.logger": "tensorboard"})
    results = run_in(build_experiment(cfg), tmp_path, [], created=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    for key in ("train/loss", "train/accuracy", "val/accuracy", "val/loss", "test/accuracy"):
        assert key in tags["scalars"], tags["scalars"]
    accuracy = [(e.step, round(e.value, 6)) for e in events.Scalars("val/accuracy")]
    assert accuracy == [(h["epoch"], h["val_accuracy"]) for h in results["history"]]
    assert {"figures/curves", "figures/confusion", "figures/worst"} <= set(tags["images"])


def test_no_logger_writes_nothing_extra_and_a_bad_one_is_one_line(tmp_path):
    train(_small(**{"trainer.max_epochs": 1}), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.csv").exists() and not (tmp_path / "run" / "tensorboard").exists()
    assert_one_line_error(
        zoo_in_process("train", "trainer.logger=wandb", f"hydra.run.dir={tmp_path / 'bad'}"), "trainer.logger"
    )
    assert not (tmp_path / "bad").exists()
