"""Issue 25, the CLI's last edges: Hydra's flags alone and together, empty values, numbers for bools, counts <= 0
and folder names in Czech, Cyrillic and Polish letters; each refused in one line (the same at `--cfg job` as at
run time) or working. The fuzz suite's families for them are tests/cli/fuzz_edges.py; the last tests here break a
declaration and watch those families fail."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil

import pytest

from tests.conftest import assert_one_line_error, zoo_in_process

NAMES = ["běh", "запуск", "próba_łódź"]  # Czech, Cyrillic, Polish


# ---- Hydra's flags -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, named",
    [
        (["--cfg", "job", "--info"], "--cfg and --info"),
        (["-m", "--shell-completion"], "-m/--multirun and --shell-completion"),
        (["--cfg", "job", "-m"], "-m/--multirun and --cfg"),
        (["--info", "searchpath", "-sc"], "--info and --shell-completion"),
        (["--shell-completion"], "--shell-completion takes one of"),
        (["-sc", "install=tcsh"], "install='tcsh'"),
        (["--info", "x"], "--info: invalid choice: 'x'"),
        (["--resolve"], "--resolve goes with --cfg"),
        (["--hydra-help", "--resolve"], "--resolve goes with --cfg"),
        (["--package", "trainer"], "--package 'trainer' goes with --cfg"),
        (["--cfg", "job", "--package", "..x"], "--package '..x' is not a key"),
        (["--cfg", "hydra", "--package", "trainer"], "--package 'trainer' is not a key"),
        (["-cp", "x"], "--config-path"),
        (["--config-name", "x", "--cfg", "job"], "--config-name"),
        (["--cfg", "job", "hydra.searchpath=[file:///no/such/folder]"], "hydra.searchpath entry"),
        (["--info", "defaults", "trainer.lr=x"], "trainer.lr=x"),
    ],
)
def test_hydra_flags_that_cannot_go_together_are_one_line_naming_them(tmp_path, args, named):
    assert_one_line_error(zoo_in_process("train", *args, cwd=tmp_path), named)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, out",
    [
        (["--cfg", "job", "--package", "trainer.lr"], "0.003\n"),
        (["--cfg", "job", "--package", "trainer", "--resolve"], "lr: 0.003\n"),
        (["--cfg", "all", "--package", "_global_"], "hydra:\n"),
        (["--cfg", "hydra", "--package", "hydra.job.name"], "train\n"),
    ],
)
def test_cfg_resolve_and_package_alone_and_together_print_the_node(tmp_path, args, out):
    proc = zoo_in_process("train", *args, cwd=tmp_path)
    assert proc.returncode == 0 and out in proc.stdout and not proc.stderr, proc


def test_hydra_searchpath_adds_a_config_folder_as_config_dir_does(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")
    for form in (f"[{tmp_path / 'conf'}]", f"[file://{tmp_path / 'conf'}]", f"['{tmp_path / 'conf'}']"):
        proc = zoo_in_process("train", "--cfg", "job", f"hydra.searchpath={form}", "experiment=mine", cwd=tmp_path)
        assert proc.returncode == 0 and "seed: 7" in proc.stdout, proc


@pytest.mark.slow
def test_hydra_app_flags_work_alone(tmp_path, capfd):
    """--info, --help and --shell-completion run in zoo's Hydra app (a child process) as Hydra documents."""
    for args, out in [
        (["--info", "searchpath"], "zoo-plugins://registry"),
        (["--help"], "== Configuration groups =="),
        (["--shell-completion", "install=bash"], "hydra_bash_completion"),
    ]:
        proc = zoo_in_process("train", *args, cwd=tmp_path)
        captured = capfd.readouterr()
        assert proc.returncode == 0 and out in captured.out, (args, captured)


# ---- empty values, numbers for bools, counts <= 0: --cfg job says what the run says -------------------------


def refused_alike(tmp_path, overrides: list[str], *fragments: str) -> None:
    shown = zoo_in_process("train", "--cfg", "job", *overrides, cwd=tmp_path)
    assert_one_line_error(shown, *fragments)
    ran = zoo_in_process("train", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert ran.stderr == shown.stderr and ran.returncode == 2 and not any(tmp_path.iterdir()), ran


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["trainer.monitor="], "trainer.monitor='' is empty; expected non-empty str"),
        (["trainer.monitor=' '"], "trainer.monitor=' ' is empty"),
        (["transfer=finetune", "transfer.weights="], "transfer.weights='' is empty"),
        (["transfer.weights=''"], "transfer.weights='' is empty"),
        (["aug.ops="], "aug.ops='' is not a mapping"),
        (["trainer.optimizer="], "trainer.optimizer='' is not one of"),
    ],
)
def test_an_empty_value_is_refused_at_cfg_job_as_at_run_time(tmp_path, overrides, line):
    refused_alike(tmp_path, overrides, line)


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["trainer.resume=2"], "trainer.resume=2 has the wrong type; expected bool"),
        (["trainer.progress=0"], "trainer.progress=0 has the wrong type"),
        (["trainer.compile=yes"], "trainer.compile='yes' has the wrong type"),
        (["transfer=frozen", "transfer.keep_head=1"], "transfer.keep_head=1 has the wrong type"),
    ],
)
def test_a_number_or_word_for_a_bool_is_refused_at_cfg_job_as_at_run_time(tmp_path, overrides, line):
    refused_alike(tmp_path, overrides, line)


def test_true_and_false_are_the_bools(tmp_path):
    proc = zoo_in_process("train", "--cfg", "job", "trainer.resume=true", "trainer.progress=false", cwd=tmp_path)
    assert proc.returncode == 0 and "resume: true" in proc.stdout and "progress: false" in proc.stdout, proc


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["head.topk=0"], "head.topk=0 must be at least 1"),
        (["head.topk=-3"], "head.topk=-3 must be at least 1"),
        (["transfer=finetune", "transfer.unfreeze_stages=-2"], "transfer.unfreeze_stages=-2 must be at least -1"),
        (["export.opset=99"], "export.opset=99 must be in [17, 20]"),
    ],
)
def test_a_count_below_one_is_refused_at_cfg_job_as_at_run_time(tmp_path, overrides, line):
    refused_alike(tmp_path, overrides, line)


@pytest.mark.parametrize(
    "args, line",
    [
        (["export", "checkpoint=x.pt", "opset=99"], "opset=99 must be in [17, 20]"),
        (["export", "checkpoint=x.pt", "export.opset=16"], "opset=16 must be in [17, 20]"),
        (["export", "checkpoint=x.pt", "parity_samples=0"], "parity_samples=0 must be at least 1"),
        (["export", "checkpoint=x.pt", "precision=fp8"], "precision='fp8' is not one of"),
        (["export", "checkpoint=x.pt", "outputs=embedding,nope"], "outputs[1]='nope' is not one of"),
        (["predict", "model=x.onnx", "input=.", "topk=0"], "topk=0 must be at least 1"),
    ],
)
def test_export_and_predict_options_are_checked_by_their_declared_range(tmp_path, args, line):
    assert_one_line_error(zoo_in_process(*args, cwd=tmp_path), line)


# ---- folder names in Czech, Cyrillic and Polish letters ------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_run_folder_named_in_any_letters_composes_as_given(tmp_path, name):
    for value in (name, f"runs/{name}/x", f"{tmp_path / name}"):
        proc = zoo_in_process("train", "--cfg", "hydra", "--package", "hydra.run.dir", f"hydra.run.dir={value}")
        assert proc.returncode == 0 and proc.stdout == f"{value}\n", proc


def test_a_value_hydra_cannot_read_unquoted_says_how_to_write_it(tmp_path):
    for value in ("a,běh", "[запуск", "próba'x"):
        assert_one_line_error(zoo_in_process("train", f"hydra.run.dir={value}", cwd=tmp_path), "write hydra.run.dir='")


@pytest.mark.slow
def test_train_export_and_predict_in_folders_named_in_any_letters(tmp_path, tiny_run):
    """A run in `běh`, its checkpoint exported from `запуск` to `próba_łódź`, images predicted from `běh`."""
    run_dir = tmp_path / NAMES[0]
    over = ["data.classes=[0,1,2]", "model.width=4", "trainer.max_epochs=1", "trainer.progress=false"]
    proc = zoo_in_process("train", *over, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0 and (run_dir / "checkpoints" / "best.pt").is_file(), proc
    with contextlib.suppress(Exception):  # the run's logging holds train.log open
        import logging

        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
    source = tmp_path / NAMES[1] / "best.pt"
    source.parent.mkdir()
    shutil.copy(tiny_run / "checkpoints" / "best.pt", source)
    out = tmp_path / NAMES[2]
    proc = zoo_in_process("export", f"checkpoint={source}", f"output={out}", "parity_samples=4", cwd=tmp_path)
    assert proc.returncode == 0 and (out / "model.onnx").is_file(), proc
    images = tmp_path / "obrázky"
    shutil.copytree(out / "golden", images)
    proc = zoo_in_process("predict", f"model={out / 'model.onnx'}", f"input={images}", "topk=1", cwd=tmp_path)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and rows and all("obrázky" in r["file"] for r in rows), proc


# ---- a broken declaration makes the fuzz families fail -------------------------------------------------------


@contextlib.contextmanager
def without_range(kind: str, name: str, param: str):
    """Plugin `name`'s parameter declared without its Range while the block runs."""
    from zoo.plugin import catalog, registry

    catalog.serve()
    plugin = registry.get(kind, name)
    before = plugin.params
    broken = tuple(dataclasses.replace(p, constraints=()) if p.name == param else p for p in before)
    object.__setattr__(plugin, "params", broken)  # a frozen record: set for the test only
    try:
        yield
    finally:
        object.__setattr__(plugin, "params", before)


@pytest.mark.slow
def test_removing_a_range_makes_the_fuzz_family_fail(tmp_path):
    from tests.cli import test_fuzz  # the suite first: its families' module imports its contract from there

    fuzz_non_positive_counts = test_fuzz.fuzz_non_positive_counts

    assert_one_line_error(zoo_in_process("train", "--cfg", "job", "head.topk=0", cwd=tmp_path), "head.topk=0")
    with without_range("head", "classification", "topk"):
        assert zoo_in_process("train", "--cfg", "job", "head.topk=0", cwd=tmp_path).returncode == 0  # broken indeed
        with pytest.raises(AssertionError, match="head.topk") as failed:  # the first explicit example's contract
            fuzz_non_positive_counts(tmp_path)
    assert "head.topk=0" in str(failed.value), failed.value
