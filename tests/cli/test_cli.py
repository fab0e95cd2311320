"""The CLI end to end: train, export, predict, list; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.conftest import assert_one_line_error, run_zoo, zoo_in_process


@pytest.mark.slow
def test_train_writes_the_run_directory(digits_run):
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert 0.5 < metrics["test"]["accuracy"] <= 1.0 and "val" in metrics and metrics["train_seconds"] > 0
    assert (digits_run / "checkpoints" / "best.pt").is_file() and (digits_run / "checkpoints" / "last.pt").is_file()
    assert "name: digits" in (digits_run / "config.yaml").read_text()
    from PIL import Image

    for picture, min_width in (("curves.png", 800), ("confusion.png", 500), ("worst.png", 800)):
        with Image.open(digits_run / picture) as im:  # a real picture, big enough to read
            assert im.format == "PNG" and im.width >= min_width, (picture, im.size)


@pytest.mark.slow
def test_export_passes_the_checker_and_carries_metadata(digits_export):
    path = digits_export / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["zoo.task"] == "classification" and meta["zoo.labels"] == [str(i) for i in range(10)]
    assert meta["zoo.input"]["size"] == [32, 32] and meta["zoo.input"]["form"] == "uint8"
    assert meta["zoo.input"]["channels"] == 3 and meta["zoo.input"]["layout"] == "NHWC"  # RGB pixels in
    assert meta["zoo.preprocessing"]["color_conversion"] == {
        "to": "grayscale",
        "formula": "Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma, in float, not rounded)",
        "where": "graph",
    }
    assert len(meta["zoo.preprocessing"]["mean"]) == 1 and meta["zoo.version"]
    assert proto.opset_import[0].version >= 18
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    card = json.loads((digits_export / "model.json").read_text())
    assert card["parity"]["max_abs_diff"]["probabilities"] <= 1e-4 and "test split" in card["parity"]["inputs"]
    assert card["metrics"]["test"]["accuracy"] > 0.5 and card["labels"][3] == "3"


def test_onnx_and_pytorch_accuracy_are_equal(digits_run, digits_export):
    import torch
    from omegaconf import OmegaConf

    from zoo.data import build_data
    from zoo.deploy.graph import DeployModel
    from zoo.runtime import Model
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

    cfg = OmegaConf.to_container(OmegaConf.load(digits_run / "config.yaml"))
    test = build_data(cfg, 0).test
    model = Model(digits_export / "model.onnx", "cpu")  # like for like with PyTorch on the CPU, on any machine
    pixels = model.as_input(test.images.numpy())  # the uint8 form: the test images rounded to 8 bits
    probs = model.run(pixels)["probabilities"]
    torch_model = DeployModel(model_from_checkpoint(load_checkpoint(digits_run / "checkpoints" / "best.pt"))[0])
    with torch.no_grad():
        rounded = torch.from_numpy(pixels[..., :1].transpose(0, 3, 1, 2).astype(np.float32) / 255)
        expected = torch_model.eval()(rounded).numpy()
    assert np.abs(probs - expected).max() < 1e-4
    acc = float((probs.argmax(1) == test.targets.numpy()).mean())
    # 8-bit pixels against the float images PyTorch was tested on: the same accuracy, give or take an image
    metrics = json.loads((digits_run / "metrics.json").read_text())["test"]["accuracy"]
    assert acc == pytest.approx(metrics, abs=1.5 / len(probs))


def test_predict_prints_json_lines(digits_run, digits_export, tmp_path):
    from PIL import Image

    from zoo_plugins.datasets.digits import load_digits_images

    x, y = load_digits_images(32, 1)
    for i in range(3):
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    proc = run_zoo("predict", f"model={digits_export}/model.onnx", f"input={tmp_path}", "topk=2", "providers=cpu")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and all(len(r["topk"]) == 2 and r["label"] in "0123456789" for r in rows)
    assert rows[0]["score"] == rows[0]["topk"][0]["score"] and rows[0]["file"].endswith("0.png")


def test_list_shows_every_kind():
    proc = zoo_in_process("list")
    assert proc.returncode == 0
    for name in ("lenet5", "alexnet", "vgg", "cnn", "timm", "classification", "hflip", "scratch", "digits", "folder"):
        assert f" {name} " in proc.stdout
    one = zoo_in_process("list", "model", "cnn")
    assert "padding_mode" in one.stdout and "zeros|reflect|replicate|circular" in one.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "model=lenet"], ["unknown model 'lenet'", "did you mean 'lenet5'"]),
        (["train", "model.widht=3"], ["unknown config key 'model.widht'", "'model.width'"]),
        (["train", "trainer.max_epochs=ten"], ["trainer.max_epochs=ten"]),
        (["train", "data=folder", "data.root=/no/such/folder"], ["data.root='/no/such/folder': folder does not exist"]),
        (["train", "-m", "model=cnn,lenett"], ["unknown model 'lenett'"]),
        (["export", "checkpoint=/no/such.pt"], ["checkpoint '/no/such.pt' does not exist"]),
        (["export", "checkpoit=x"], ["did you mean 'checkpoint'"]),
        (["predict", "model=/no/such.onnx", "input=."], ["model='/no/such.onnx' does not exist"]),
        (["list", "modle"], ["unknown plugin kind 'modle'"]),
        (["trian"], ["unknown command 'trian'; did you mean 'train'"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(args, fragments, tmp_path):
    run_dir = tmp_path / "run"
    extra = [f"hydra.run.dir={run_dir}"] if args[0] == "train" else []
    assert_one_line_error(zoo_in_process(*args, *extra, cwd=tmp_path), *fragments)
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_bad_input_from_the_console_script_is_one_line_too(tmp_path):
    # the same path as above, through the real entry point once
    assert_one_line_error(run_zoo("train", "model=lenet", cwd=tmp_path), "unknown model 'lenet'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_hydra_flags_work():
    proc = zoo_in_process("train", "--cfg", "job", "model=lenet5", "model.activation=relu")
    assert proc.returncode == 0 and "activation: relu" in proc.stdout
    assert "== Configuration groups ==" in run_zoo("train", "--help").stdout


@pytest.mark.slow
def test_failed_export_leaves_nothing(digits_run, tmp_path):
    out = tmp_path / "out"
    proc = run_zoo("export", f"checkpoint={digits_run}", f"output={out}", "parity_tolerance=0")
    # a tolerance of zero may pass (bit-exact) or fail; either way nothing half-written remains
    if proc.returncode:
        assert_one_line_error(proc, "differs from PyTorch")
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "option,fragment",
    [
        ("parity_tolerance=nan", "export.parity_tolerance=nan must be a finite number"),
        ("parity_samples=0", "export.parity_samples=0 must be at least 1"),
        ("parity_mismatch=2", "export.parity_mismatch=2.0 must be in [0, 1]"),
    ],
)
def test_export_options_are_checked_like_the_config(digits_run, tmp_path, option, fragment):
    # the parity gate cannot be switched off by a value the config itself would refuse
    out = tmp_path / "out"
    assert_one_line_error(zoo_in_process("export", f"checkpoint={digits_run}", f"output={out}", option), fragment)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_config_dir_adds_experiments_but_cannot_replace_zoos_config(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - base_config\nseed: 99\n")  # would replace zoo's whole config
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  lr: 0.123\n")
    proc = zoo_in_process("train", "--cfg", "job", "--config-dir", str(tmp_path), "experiment=mine")
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.123" in proc.stdout and "seed: 0" in proc.stdout and "name: digits" in proc.stdout
    assert_one_line_error(zoo_in_process("train", "--config-dir", str(tmp_path / "nope")), "is not a folder")


@pytest.mark.parametrize("sweep", [False, True])
def test_no_callable_named_by_a_config_runs(tmp_path, sweep):
    marker = tmp_path / "marker"
    args = [
        "+hydra.callbacks.x._target_=builtins.open",
        f"+hydra.callbacks.x.file={marker}",
        "+hydra.callbacks.x.mode=w",
    ]
    if sweep:
        args += ["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = zoo_in_process("train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "hydra.callbacks.x._target_='builtins.open' is not run")
    assert list(tmp_path.iterdir()) == []  # no marker, no run


def test_a_run_never_overwrites_what_a_folder_holds(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own\n")
    (mine / "notes.txt").write_text("keep\n")
    proc = zoo_in_process("train", "trainer.max_epochs=1", f"hydra.run.dir={mine}", cwd=tmp_path)
    assert_one_line_error(proc, "already holds config.yaml: choose a new folder, or trainer.resume=true")
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "notes.txt"]
    assert (mine / "config.yaml").read_text() == "my own\n"
