"""Issue 16's families, one explicit regression test each (the fuzz suite, tests/cli/test_fuzz.py, generates the rest):
numbers and sizes, data, CLI options and paths, hostile images, the catch-all at the CLI's edge, the user's
folder through a failed and a successful run, and a `zoo train` process killed by SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

from tests.cli.test_fuzz import png_claiming
from tests.conftest import ROOT, assert_one_line_error, zoo_in_process

TINY = [
    "seed=5",
    "data.classes=[0,1,2]",
    "model.width=4",
    "trainer.batch_size=32",
    "trainer.progress=false",
    "trainer.threads=1",  # bit-exact comparisons need one thread count in every process
]


def snapshot(d) -> dict:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---- numbers, sizes and data: refused before anything is written ------------------------------


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (["seed=100000000000000000000000"], "seed=100000000000000000000000 must fit in 64 bits"),
        (["seed=-1"], "seed=-1 must be at least 0"),
        (["model.growth=0"], "model.growth=0.0 with model.width=32 and model.depth=3 gives a block of 0 channels"),
        (["model.kernel_size=99"], "model=cnn with model.kernel_size=99 at 1x32x32 would have 100.7M parameters"),
        (["model.width=100000"], "over zoo's budget of 50.0M"),
        (["data.classes=[0]"], "data.classes=[0] must have at least 2 items"),
        (["trainer.lr=1e400"], "trainer.lr=inf must be a finite number"),
    ],
)
def test_numbers_and_sizes_out_of_bounds_are_one_line_before_anything_is_written(tmp_path, overrides, fragment):
    proc = zoo_in_process("train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, fragment)
    assert list(tmp_path.iterdir()) == []


def test_the_budget_counts_on_the_meta_device_and_an_architecture_may_raise_it():
    from zoo.model import ACTIVATION_BUDGET, PARAM_BUDGET, _activations, _meta_backbone
    from zoo.plugin import registry

    cnn = registry.get("architecture", "cnn")
    big = _meta_backbone(cnn, {"in_channels": 1}, cnn.check_values({"kernel_size": 99}, "model"))
    assert next(big.parameters()).device.type == "meta"  # nothing allocated, nothing initialised
    assert sum(p.numel() for p in big.parameters()) > PARAM_BUDGET
    small = _meta_backbone(cnn, {"in_channels": 1}, cnn.check_values({}, "model"))
    assert 0 < _activations(small, 1, (32, 32)) < ACTIVATION_BUDGET
    assert _activations(small, 1, (8192, 8192)) > ACTIVATION_BUDGET
    assert registry.get("architecture", "timm").extra["max_params"] > PARAM_BUDGET


def test_a_folder_with_an_empty_class_is_refused(tmp_path):
    from PIL import Image

    for i in range(6):
        (tmp_path / "data" / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 9, 0, 0)).save(tmp_path / "data" / "cat" / f"{i}.png")
    (tmp_path / "data" / "dog").mkdir()
    proc = zoo_in_process("train", "data=folder", f"data.root={tmp_path / 'data'}", "data.size=16", cwd=tmp_path)
    assert_one_line_error(proc, "has class folder(s) without images (dog)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---- hostile images -----------------------------------------------------------------------------


def test_a_decompression_bomb_is_one_line_naming_the_file_and_the_limit(tmp_path, monkeypatch):
    from zoo.runtime import DEFAULT_MAX_PIXELS, load_image

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    with pytest.raises(Exception) as e:
        load_image(bomb, 1, (32, 32))
    assert f"'{bomb}' is over zoo's limit of {DEFAULT_MAX_PIXELS} pixels per image" in str(e.value)
    wide = tmp_path / "wide.png"
    wide.write_bytes(png_claiming(12_000, 10_000))  # 120M pixels: over zoo's limit, under Pillow's error (179M)
    with pytest.raises(Exception, match="is 12000x10000 pixels, which is over zoo's limit"):
        load_image(wide, 1, (32, 32))
    monkeypatch.setenv("ZOO_MAX_PIXELS", "100")
    from PIL import Image

    Image.new("L", (11, 10)).save(tmp_path / "small.png")
    with pytest.raises(Exception, match="is 11x10 pixels, which is over zoo's limit of 100 pixels"):
        load_image(tmp_path / "small.png", 1, (32, 32))
    monkeypatch.setenv("ZOO_MAX_PIXELS", "lots")
    with pytest.raises(Exception, match="ZOO_MAX_PIXELS='lots' must be a whole number"):
        load_image(tmp_path / "small.png", 1, (32, 32))


def test_a_bomb_in_a_folder_data_set_is_refused_before_a_run_starts(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 20), (i * 9, 0, 0)).save(tmp_path / "data" / split / c / f"{i}.png")
    # in the training split, whose images the data set reads for its statistics when it is built
    (tmp_path / "data" / "train" / "cat" / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    args = ["data=folder", f"data.root={tmp_path / 'data'}", "data.size=16", "data.test_fraction=0"]
    proc = zoo_in_process("train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "bomb.png' is over zoo's limit of")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_predict_refuses_a_bomb_and_bad_options_in_one_line(tiny_export, tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    model = f"model={tiny_export}"
    assert_one_line_error(zoo_in_process("predict", model, f"input={tmp_path}"), "bomb.png' is over zoo's limit")
    for option, fragment in (("batch=0", "batch=0 must be at least 1"), ("batch=-1", "batch=-1 must be at least 1")):
        assert_one_line_error(zoo_in_process("predict", model, f"input={tmp_path}", option), fragment)
    assert_one_line_error(zoo_in_process("predict", model, f"input={tmp_path}", "topk=-3"), "topk=-3 must be at least")
    batch_list = "batch='0' must be a comma-separated list of integers >= 1"
    assert_one_line_error(zoo_in_process("bench", "inference", model, "batch=0"), batch_list)
    assert_one_line_error(zoo_in_process("augment", "output=x.png", "variants=1000"), "variants=1000 must be in")


# ---- paths the system refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["train", "hydra.run.dir={long}"],
        ["train", "--config-dir", "{long}"],
        ["export", "checkpoint={long}"],
        ["predict", "model={long}", "input=."],
        ["report", "{long}"],
        ["explain", "gradcam", "run={long}", "output=out"],
        ["new-plugin", "acme", "output={long}"],
    ],
)
def test_an_over_long_path_is_one_line_naming_the_argument(tmp_path, args):
    long = str(tmp_path / ("x" * 300) / "y")
    proc = zoo_in_process(*[a.format(long=long) for a in args], cwd=tmp_path)
    assert_one_line_error(proc, "too long (at most 255 bytes per name")
    assert list(tmp_path.iterdir()) == []


def test_a_path_through_a_file_or_to_a_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("mine")
    proc = zoo_in_process("train", f"hydra.run.dir={tmp_path / 'afile' / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "hydra.run.dir")
    proc = zoo_in_process("train", f"hydra.run.dir={tmp_path / 'afile'}", cwd=tmp_path)
    assert_one_line_error(proc, "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == "mine"


# ---- the catch-all at the CLI's edge ----------------------------------------------------------


def test_an_unexpected_exception_is_one_line_and_the_folders_it_created_go(tmp_path, monkeypatch, capsys):
    import zoo.deploy.export
    from zoo.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("something zoo did not expect\nsecond line")

    monkeypatch.setattr(zoo.deploy.export, "write_onnx", broken)  # after export made its output's parent folders
    ckpt = tmp_path / "c.pt"
    from tests.conftest import small_config
    from zoo.model import deployed_info
    from zoo.train.checkpoint import save_checkpoint
    from zoo.train.experiment import build_experiment

    cfg = small_config(**{"data.classes": "[0,1,2]", "model.width": 4})
    exp = build_experiment(cfg)
    save_checkpoint(
        ckpt, {"model": exp.model.state_dict(), "config": cfg, "info": deployed_info(exp.model, exp.info).to_dict()}
    )
    code = main(["export", f"checkpoint={ckpt}", f"output={tmp_path / 'a' / 'b' / 'out'}"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("zoo: internal error in zoo export: RuntimeError: something zoo did not expect;")
    assert err.rstrip().endswith("ZOO_DEBUG=1 shows the traceback")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # a/b/ and the temporary folder are gone
    monkeypatch.setenv("ZOO_DEBUG", "1")
    assert main(["export", f"checkpoint={ckpt}", f"output={tmp_path / 'out'}"]) == 3
    assert "Traceback" in capsys.readouterr().err


# ---- the user's folder: a failed run and a successful one leave it as it was ------------------


def users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    (mine / "data").mkdir()
    (mine / "data" / "table.csv").write_text("a,b\n1,2\n")
    return mine, snapshot(mine)


def test_a_run_that_fails_late_in_a_users_folder_removes_only_what_it_wrote(tmp_path, keep_threads):
    mine, before = users_folder(tmp_path)
    # the monitor is checked against the validation metrics at the end of the first epoch: after the run began
    proc = zoo_in_process("train", *TINY, "trainer.max_epochs=1", "trainer.monitor=nope", f"hydra.run.dir={mine}")
    assert_one_line_error(proc, "trainer.monitor='nope' is not a validation metric")
    assert snapshot(mine) == before


def test_an_internal_error_late_in_a_users_folder_removes_only_what_it_wrote(tmp_path, monkeypatch, keep_threads):
    import zoo.train.engine

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(zoo.train.engine, "train_step", broken)
    mine, before = users_folder(tmp_path)
    proc = zoo_in_process("train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={mine}")
    assert proc.returncode == 3 and proc.stderr.startswith("zoo: internal error in zoo train: ValueError: a bug;")
    assert snapshot(mine) == before
    created = tmp_path / "new" / "deeper" / "run"
    proc = zoo_in_process("train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={created}")
    assert proc.returncode == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.slow
def test_a_successful_run_in_a_users_folder_leaves_their_files_untouched(tmp_path, keep_threads):
    mine, before = users_folder(tmp_path)
    proc = zoo_in_process("train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={mine}")
    assert proc.returncode == 0, proc.stderr
    after = snapshot(mine)
    assert {k: v for k, v in after.items() if k in before} == before
    assert (mine / "metrics.json").is_file() and (mine / "checkpoints" / "best.pt").is_file()


# ---- SIGKILL, for real: a `zoo train` process killed at three points, then resumed --------------

KILLER = """
import io, os, signal, sys
import torch
import zoo.train.engine
where, argv = sys.argv[1], sys.argv[2:]
save, step, after_epoch_2 = zoo.train.engine.save_checkpoint, zoo.train.engine.train_step, []
real_torch_save = torch.save

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def torch_save(obj, f, *args, **kwargs):  # inside last.pt's write at epoch 3: half the bytes, then killed
    if where == "in_write" and str(f).endswith(".tmp") and ".last.pt." in str(f) and obj.get("epoch") == 3:
        buf = io.BytesIO()
        real_torch_save(obj, buf, *args, **kwargs)
        with open(f, "wb") as fh:
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        die()
    return real_torch_save(obj, f, *args, **kwargs)

def checkpoint(path, payload):
    save(path, payload)
    if path.name == "last.pt" and payload["epoch"] == 2:
        if where == "between_epochs":
            die()
        after_epoch_2.append(0)

def train_step(*args, **kwargs):
    if after_epoch_2:
        after_epoch_2.append(1)
        if where == "mid_epoch" and len(after_epoch_2) == 4:  # the third step of epoch 3
            die()
    return step(*args, **kwargs)

torch.save = torch_save
zoo.train.engine.save_checkpoint, zoo.train.engine.train_step = checkpoint, train_step
from zoo.cli import main
sys.exit(main(argv))
"""


def comparable(run_dir) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    timing = ("train_seconds", "epoch_seconds", "feature_cache_seconds")
    m = {k: v for k, v in m.items() if k not in timing}
    m["history"] = [{k: v for k, v in h.items() if k not in timing} for h in m["history"]]
    return m


@pytest.mark.slow
def test_a_zoo_train_killed_by_sigkill_resumes_to_the_uninterrupted_result(tmp_path, keep_threads):
    args = [*TINY, "trainer.max_epochs=3"]
    whole = tmp_path / "whole"
    assert zoo_in_process("train", *args, f"hydra.run.dir={whole}").returncode == 0
    expected = comparable(whole)
    best = torch.load(whole / "checkpoints" / "best.pt", weights_only=True)["model"]
    for where in ("between_epochs", "in_write", "mid_epoch"):
        run = tmp_path / where
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, where, "train", *args, f"hydra.run.dir={run}"],
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == -signal.SIGKILL, (where, proc.returncode, proc.stderr[-2000:])
        assert not (run / "metrics.json").exists()
        assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2, where
        left = [p.name for p in run.rglob("*.tmp")]  # a killed write leaves its temporary file, nothing else does
        assert len(left) == (where == "in_write") and all(re.fullmatch(r"\.last\.pt\.\d+\.tmp", n) for n in left)
        resumed = zoo_in_process("train", *args, "trainer.resume=true", f"hydra.run.dir={run}")
        assert resumed.returncode == 0, (where, resumed.stderr[-2000:])
        assert comparable(run) == expected, where
        mine = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"]
        assert all(torch.equal(mine[k], best[k]) for k in best), where
        assert not list(run.rglob("*.tmp")), where  # the killed write's leftover is cleaned on the next start


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`zoo list architecture torchvision | head -1`: the pipe closes while zoo still writes; no `zoo: error:
    Broken pipe` and no traceback, the shell's exit for a tool SIGPIPE stopped (141)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo.cli", "list", "architecture", "torchvision"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=0,
    )  # fmt: skip
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert err == "" and proc.returncode == 141, (proc.returncode, err)
