"""The training loop: outputs, repeatability, early stopping, optimizers and schedules, safe checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import small_config
from zoo.errors import ZooError
from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint
from zoo.train.engine import lr_factor, train


def quick(**over) -> dict:
    base = {"trainer.max_epochs": 1, "trainer.progress": "false", "model.width": 8}
    return small_config(**{**base, **over})


@pytest.mark.slow
def test_train_writes_metrics_and_checkpoints(tmp_path):
    results = train(quick(**{"trainer.max_epochs": 2}), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == results["test"]["accuracy"] > 0.3
    assert {"accuracy", "f1_macro", "top5_accuracy", "confusion_matrix", "loss"} <= set(metrics["test"])
    assert len(metrics["test"]["confusion_matrix"]) == 10 and metrics["val"] and metrics["train_seconds"] > 0
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(tmp_path / "checkpoints" / name, weights_only=True)  # plain data only
        assert ckpt["config"]["model"]["name"] == "cnn" and isinstance(ckpt["config"], dict)
    assert "optimizer" in torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_same_seed_same_result(tmp_path):
    a = train(quick(seed=3), tmp_path / "a")
    b = train(quick(seed=3), tmp_path / "b")
    assert a["test"]["loss"] == b["test"]["loss"]
    wa = torch.load(tmp_path / "a/checkpoints/best.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b/checkpoints/best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_early_stopping_stops(tmp_path):
    # lr so small that nothing improves after the first epoch
    results = train(
        quick(
            **{
                "trainer.max_epochs": 10,
                "trainer.patience": 2,
                "trainer.lr": 1e-9,
                "trainer.monitor": "loss",
                "trainer.scheduler": "none",
            }
        ),
        tmp_path,
    )
    assert results["epochs"] < 10


@pytest.mark.slow
@pytest.mark.parametrize(
    "over",
    [
        {"trainer.optimizer": "sgd", "trainer.scheduler": "step", "trainer.step_size": 1, "trainer.lr": 0.05},
        # the warm-up takes the whole first epoch: a second one trains at full rate
        {"trainer.l1": 1e-4, "trainer.grad_clip": 1.0, "trainer.warmup_epochs": 1, "trainer.max_epochs": 2},
        {"head.label_smoothing": 0.1, "head.dropout": 0.3, "head.hidden": "[16]"},
        {"model": "lenet5", "head.pool": "flatten", "head.hidden": "[84]"},
    ],
)
def test_trainer_options_train(tmp_path, over):
    results = train(
        quick(**over) if "model" not in over else small_config(**{"trainer.max_epochs": 1, **over}), tmp_path
    )
    assert results["test"]["accuracy"] > 0.1


@pytest.mark.slow
def test_l1_shrinks_weights(tmp_path):
    plain = train(quick(**{"trainer.max_epochs": 2}), tmp_path / "plain")
    sparse = train(quick(**{"trainer.max_epochs": 2, "trainer.l1": 1e-3}), tmp_path / "l1")

    def size(d):
        return sum(
            v.abs().sum()
            for k, v in torch.load(d / "checkpoints/last.pt", weights_only=True)["model"].items()
            if k.endswith("weight") and v.ndim > 1
        )

    assert plain and sparse and size(tmp_path / "l1") < size(tmp_path / "plain")


def test_schedules():
    t = {"max_epochs": 10, "warmup_epochs": 1, "scheduler": "cosine", "step_size": 3, "gamma": 0.5}
    assert lr_factor(0, 10, t) == pytest.approx(0.1)
    assert lr_factor(10, 10, t) == pytest.approx(1.0)
    assert lr_factor(99, 10, t) < 0.01
    t = {**t, "scheduler": "step", "warmup_epochs": 0}
    assert [lr_factor(e * 10, 10, t) for e in (0, 3, 6)] == [1.0, 0.5, 0.25]


def test_bad_monitor_is_a_clear_error(tmp_path):
    with pytest.raises(ZooError, match="trainer.monitor='acc' is not a validation metric; valid: accuracy"):
        train(quick(**{"trainer.monitor": "acc"}), tmp_path)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    train(quick(), tmp_path)
    model, info = model_from_checkpoint(load_checkpoint(tmp_path))  # a run directory means its best.pt
    assert info.classes[0] == "0" and not model.training
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ZooError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ZooError, match="is not a zoo checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path):
    train(quick(**{"trainer.max_epochs": 1}), tmp_path)
    results = train(quick(**{"trainer.max_epochs": 3, "trainer.resume": "true"}), tmp_path)
    assert results["epochs"] == 3 and [h["epoch"] for h in results["history"]] == [1, 2, 3]
    assert torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)["epoch"] == 3


def test_threads_setting_limits_torch(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that the setting has something to change, whatever the machine's default
    try:
        train(quick(**{"trainer.threads": 1}), tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---- resume continues the same run -----------------------------------------------------------


def tiny(**over) -> dict:
    """Three digit classes, a 4-wide CNN: a 4-epoch run in a few seconds."""
    base = {
        "seed": 5,
        "data.classes": "[0,1,2]",
        "model.width": 4,
        "trainer.batch_size": 32,
        "trainer.max_epochs": 4,
        "trainer.progress": "false",
    }
    return small_config(**{**base, **over})


def comparable(run_dir) -> dict:
    """What an interrupted and resumed run must reproduce: metrics.json without timings, and best.pt's weights."""
    m = json.loads((run_dir / "metrics.json").read_text())
    timing = ("train_seconds", "epoch_seconds", "feature_cache_seconds")
    m = {k: v for k, v in m.items() if k not in timing}
    m["history"] = [{k: v for k, v in h.items() if k not in timing} for h in m["history"]]
    m["best_weights"] = load_checkpoint(run_dir)["model"]
    return m


def assert_same_run(a: dict, b: dict) -> None:
    wa, wb = a.pop("best_weights"), b.pop("best_weights")
    assert a == b
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup (a BaseException, so no except ZooError sees it)."""


def kill(monkeypatch, where: str) -> None:
    """Make the next run die at `where`: after epoch 2's checkpoints, inside epoch 3's last.pt write (leaving its
    temporary file, as a killed torch.save does), or in the middle of epoch 3."""
    import zoo.train.engine

    save, step, steps_after_epoch_2 = zoo.train.engine.save_checkpoint, zoo.train.engine.train_step, []

    def killing_save(path, payload):
        if where == "in_write" and path.name == "last.pt" and payload["epoch"] == 3:
            (path.parent / ".last.pt.99999.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
            raise Killed
        save(path, payload)
        if path.name == "last.pt" and payload["epoch"] == 2:
            if where == "between_epochs":
                raise Killed
            steps_after_epoch_2.append(0)

    def killing_step(*args, **kwargs):
        if steps_after_epoch_2:
            steps_after_epoch_2.append(1)
            if where == "mid_epoch" and len(steps_after_epoch_2) == 4:  # the third step of epoch 3
                raise Killed
        return step(*args, **kwargs)

    monkeypatch.setattr(zoo.train.engine, "save_checkpoint", killing_save)
    monkeypatch.setattr(zoo.train.engine, "train_step", killing_step)


def killed_then_resumed(monkeypatch, over: dict, run) -> None:
    """Train `over` in `run`, killed between two epochs, then resume it there."""
    with monkeypatch.context() as m:
        kill(m, "between_epochs")
        with pytest.raises(Killed):
            train(tiny(**over), run)
    train(tiny(**over, **{"trainer.resume": "true"}), run)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    train(tiny(), run)
    return comparable(run)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["between_epochs", "in_write", "mid_epoch"])
def test_a_killed_run_resumed_ends_as_if_never_killed(tmp_path, monkeypatch, uninterrupted, where):
    with monkeypatch.context() as m:
        kill(m, where)
        with pytest.raises(Killed):
            train(tiny(), tmp_path)
    assert not (tmp_path / "metrics.json").exists()
    assert list((tmp_path / "checkpoints").glob("*.tmp")) == (
        [] if where != "in_write" else [tmp_path / "checkpoints" / ".last.pt.99999.tmp"]
    )
    train(tiny(**{"trainer.resume": "true"}), tmp_path)
    assert_same_run(comparable(tmp_path), dict(uninterrupted))
    assert not list(tmp_path.rglob("*.tmp"))  # the killed write's leftover is cleaned on the next start


@pytest.mark.slow
def test_two_epochs_then_resumed_to_four_is_the_four_epoch_run(tmp_path):
    # the schedule must not depend on max_epochs (cosine decays over it), so this one runs without one
    flat = {"trainer.scheduler": "none"}
    train(tiny(**flat), tmp_path / "whole")
    train(tiny(**flat, **{"trainer.max_epochs": 2}), tmp_path / "parts")
    train(tiny(**flat, **{"trainer.resume": "true"}), tmp_path / "parts")
    assert_same_run(comparable(tmp_path / "parts"), comparable(tmp_path / "whole"))


def test_each_epoch_draws_its_own_order_whatever_came_before(tmp_path):
    from zoo.train.engine import epoch_seed

    assert epoch_seed(5, 0) != epoch_seed(5, 1) and epoch_seed(2**63 - 1, 7) < 2**63
    train(tiny(**{"trainer.max_epochs": 1}), tmp_path)
    last = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)
    assert {"python", "numpy", "torch", "cuda"} <= set(last["rng"]) and last["step"] > 0


@pytest.mark.slow
def test_resume_with_loader_workers_ends_as_if_never_killed(tmp_path, monkeypatch):
    # workers draw augmentations from their own streams, seeded from the loader's generator when they start
    over = {"trainer.num_workers": 1, "trainer.max_epochs": 3}
    train(tiny(**over), tmp_path / "whole")
    killed_then_resumed(monkeypatch, over, tmp_path / "killed")
    assert_same_run(comparable(tmp_path / "killed"), comparable(tmp_path / "whole"))


@pytest.mark.slow
def test_resume_after_a_transfer_phase_change_ends_as_if_never_killed(tmp_path, monkeypatch):
    # finetune unfreezes at epoch 2: the resumed run replays the phase, so its optimizer's groups are the saved ones
    train(tiny(**{"trainer.max_epochs": 1}), tmp_path / "source")
    over = {
        "transfer": "finetune",
        "transfer.weights": str(tmp_path / "source"),
        "transfer.head_epochs": 1,
        "trainer.max_epochs": 3,
    }
    train(tiny(**over), tmp_path / "whole")
    killed_then_resumed(monkeypatch, over, tmp_path / "killed")
    assert_same_run(comparable(tmp_path / "killed"), comparable(tmp_path / "whole"))
