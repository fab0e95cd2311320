"""Checkpoint format 2: a header checked on load, and each malformed checkpoint refused in one line wherever zoo
reads one (load_checkpoint, zoo export, transfer.weights, trainer.resume), with nothing written."""

from __future__ import annotations

import random
import shutil

import pytest
import torch

from tests.conftest import assert_one_line_error, run_zoo, small_config
from zoo.cli import main
from zoo.errors import ZooError
from zoo.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, model_from_checkpoint, save_checkpoint
from zoo.train.engine import train
from zoo.train.experiment import build_experiment
from zoo.version import __version__

TINY = {
    "seed": 5,
    "data.classes": "[0,1,2]",
    "model.width": 4,
    "trainer.batch_size": 32,
    "trainer.max_epochs": 1,
    "trainer.progress": "false",
}
TINY_ARGS = [f"{k}={v}" for k, v in TINY.items()]

# each malformed kind and what its one line says
MALFORMED = {
    "truncated": "truncated or not a checkpoint file",
    "empty": "the file is empty",
    "random_bytes": "truncated or not a checkpoint file",
    "flipped_bytes": "is corrupted: its tensors' sha256 differs",
    "nan_weights": "non-finite weights (NaN or inf) in backbone.",
    "other_architecture": "holds another architecture (model=cnn)",
}


def tiny(**over) -> dict:
    return small_config(**{**TINY, **over})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch run: its last.pt is what each malformed file is made from."""
    d = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny(), d)
    return d


def make(kind: str, run, dst):
    """A malformed copy of the run's last.pt at `dst`."""
    src = run / "checkpoints" / "last.pt"
    data, ckpt = src.read_bytes(), load_checkpoint(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        dst.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        dst.write_bytes(b"")
    elif kind == "random_bytes":
        dst.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "flipped_bytes":  # 64 bytes inside the largest tensor's storage: torch.load does not notice
        big = max(ckpt["model"].values(), key=lambda t: t.numel())
        at = data.find(big.numpy().tobytes())
        assert at > 0
        flipped = bytearray(data)
        for i in range(at + 8, at + 72):
            flipped[i] ^= 0x5A
        dst.write_bytes(bytes(flipped))
        assert torch.load(dst, weights_only=True)["format"] == CHECKPOINT_FORMAT
    elif kind == "nan_weights":  # a diverged run: a valid file, checksum and all
        name = next(k for k in ckpt["model"] if k.startswith("backbone.") and k.endswith("weight"))
        ckpt["model"][name][0] = float("nan")
        save_checkpoint(dst, ckpt)
    elif kind == "other_architecture":  # this run's config, another architecture's tensors
        ckpt["model"] = build_experiment(tiny(**{"model.width": 8})).model.state_dict()
        save_checkpoint(dst, ckpt)
    return dst


def test_a_checkpoint_carries_a_header_that_describes_it(run):
    ckpt = load_checkpoint(run)
    header = ckpt["header"]
    assert ckpt["format"] == CHECKPOINT_FORMAT == "zoo.train.checkpoint/2"
    assert (header["zoo_version"], header["architecture"], header["task"]) == (__version__, "cnn", "classification")
    assert header["tensors"] == {k: list(v.shape) for k, v in ckpt["model"].items()}
    assert len(header["sha256"]) == 64


def test_a_version_1_checkpoint_still_loads_and_resumes(run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(run, d)
    for name in ("best.pt", "last.pt"):
        old = torch.load(d / "checkpoints" / name, weights_only=True)
        old = {k: v for k, v in old.items() if k not in ("header", "rng", "step")}
        torch.save({**old, "format": "zoo.train.checkpoint/1"}, d / "checkpoints" / name)
    model, _ = model_from_checkpoint(load_checkpoint(d))
    assert not model.training
    results = train(tiny(**{"trainer.max_epochs": 2, "trainer.resume": "true"}), d)
    assert [h["epoch"] for h in results["history"]] == [1, 2]


@pytest.mark.parametrize("kind", MALFORMED)
def test_load_checkpoint_says_in_one_line_what_is_wrong(run, tmp_path, kind):
    path = make(kind, run, tmp_path / "x.pt")
    with pytest.raises(ZooError) as e:
        model_from_checkpoint(load_checkpoint(path), str(path))
    assert MALFORMED[kind] in str(e.value) and "\n" not in str(e.value)
    if kind == "other_architecture":  # the first tensors that do not fit, by name
        assert "backbone." in str(e.value) and "saved [8" in str(e.value)


@pytest.mark.parametrize("kind", MALFORMED)
def test_export_refuses_a_malformed_checkpoint_and_writes_nothing(run, tmp_path, capsys, kind):
    path, out = make(kind, run, tmp_path / "x.pt"), tmp_path / "export"
    assert main(["export", f"checkpoint={path}", f"output={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: ") and "\n" not in err and MALFORMED[kind] in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", MALFORMED)
def test_transfer_weights_refuses_a_malformed_checkpoint_and_writes_nothing(run, tmp_path, capsys, kind):
    path, d = make(kind, run, tmp_path / "x.pt"), tmp_path / "new_run"
    args = [*TINY_ARGS, "transfer=finetune", f"transfer.weights={path}", f"hydra.run.dir={d}"]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: ") and "\n" not in err and MALFORMED[kind] in err
    assert not d.exists()


def snapshot(d) -> dict:
    return {p.relative_to(d): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


@pytest.mark.slow
@pytest.mark.parametrize("kind", MALFORMED)
def test_resume_refuses_a_malformed_last_checkpoint_and_writes_nothing(run, tmp_path, capsys, kind):
    d = tmp_path / "run"
    shutil.copytree(run, d)
    make(kind, run, d / "checkpoints" / "last.pt")
    before = snapshot(d)
    assert main(["train", *TINY_ARGS, "trainer.max_epochs=2", "trainer.resume=true", f"hydra.run.dir={d}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: trainer.resume=true: ") and "\n" not in err and MALFORMED[kind] in err
    assert snapshot(d) == before


def test_resume_refuses_another_runs_last_checkpoint(run, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(run, d)
    before = snapshot(d)
    args = [*TINY_ARGS, "model.width=8", "data.classes=[0,1]", "trainer.resume=true", f"hydra.run.dir={d}"]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not this run's own: its config differs in data.classes, model.width;" in err and "\n" not in err
    assert snapshot(d) == before


@pytest.mark.slow
def test_the_cli_gives_one_line_and_exit_2_for_a_corrupted_checkpoint(run, tmp_path):
    flipped = make("flipped_bytes", run, tmp_path / "flipped.pt")
    proc = run_zoo("export", f"checkpoint={flipped}", f"output={tmp_path / 'out'}")
    assert_one_line_error(proc, "is corrupted")
    d = tmp_path / "run"
    shutil.copytree(run, d)
    make("truncated", run, d / "checkpoints" / "last.pt")
    proc = run_zoo("train", *TINY_ARGS, "trainer.resume=true", f"hydra.run.dir={d}")
    assert_one_line_error(proc, "trainer.resume=true: cannot read checkpoint", "truncated")
    assert not (tmp_path / "out").exists() and not (d / "config.yaml").exists()


def test_foreign_and_newer_files_are_refused_in_one_line(tmp_path):
    cases = {
        "plain.pt": ({"weights": torch.zeros(1)}, "is not a zoo checkpoint"),
        "strings.pt": (
            {"format": "zoo.train.checkpoint/1", "model": {"a": "x"}, "config": {}, "info": {}},
            "not tensors",
        ),
        "newer.pt": ({"format": "zoo.train.checkpoint/9"}, "is a zoo.train.checkpoint/9 checkpoint; this zoo"),
        "headless.pt": ({"format": CHECKPOINT_FORMAT, "model": {}, "config": {}, "info": {}}, "header is missing"),
    }
    for name, (payload, fragment) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(ZooError, match=fragment) as e:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(e.value)
