"""Sweeps on Hydra's own sweepers and launchers: an Optuna search whose objective is the monitored metric,
the direction zoo gives it, what their configs may name, and what zoo adds to a sweep's overrides."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import assert_one_line_error, run_zoo, zoo_in_process
from zoo.cli.train import check_hydra_targets, sweep_overrides
from zoo.train.config import compose
from zoo.train.sweeps import expand

TINY = ["trainer.max_epochs=1", "trainer.progress=false", "data.classes=[0,1,2,3]", "data.size=16"]


@pytest.mark.slow
def test_an_optuna_search_maximises_validation_accuracy_and_report_tabulates_it(tmp_path):
    proc = run_zoo(
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.sampler.seed=0",
        "trainer.lr=tag(log,interval(0.0005,0.05))",
        "model.width=choice(4,8)",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(tmp_path.glob("*/metrics.json"))
    assert len(jobs) == 6
    val = [json.loads(m.read_text())["val"]["accuracy"] for m in jobs]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    # each job returned its validation accuracy, and the study maximised it (zoo set the direction)
    assert best["best_value"] == pytest.approx(max(val), abs=1e-6) and max(val) > min(val)
    assert "hydra.sweeper.direction=maximize" in (tmp_path / "0" / ".hydra" / "hydra.yaml").read_text()
    rep = zoo_in_process("report", str(tmp_path))
    assert rep.returncode == 0, rep.stderr
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert "model.width" in lines[0] and "trainer.lr" in lines[0] and len(lines) == 2 + 6
    assert (tmp_path / "report.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["hydra.sweeper.sampler._target_=builtins.exec"], ["hydra.sweeper.sampler._target_='builtins.exec' is not"]),
        (["hydra.sweeper.custom_search_space=os.system"], ["hydra.sweeper.custom_search_space='os.system' is not"]),
        (["hydra.sweeper.direction=minimize"], ["hydra.sweeper.direction=minimize, but each job returns validation"]),
        (["trainer.lr=interval(0.01,-1)"], ["trainer.lr=-1"]),  # an interval's ends are checked
    ],
)
def test_what_an_optuna_sweep_may_name_and_set_is_checked_first(tmp_path, args, fragments):
    proc = zoo_in_process(
        "train", "-m", "hydra/sweeper=optuna", "seed=0,1", *args, f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path
    )
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "s").exists()


def test_hydras_own_launchers_and_sweepers_are_trusted():
    for choice in ("hydra/launcher=joblib", "hydra/launcher=submitit_slurm", "hydra/sweeper=optuna"):
        cfg = compose([choice], with_hydra=True)
        check_hydra_targets(cfg.hydra)  # their targets, and what their own configs name (Optuna's samplers)
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"


def test_zoo_gives_the_sweeper_its_direction_and_parallel_jobs_their_cores():
    optuna = compose(["hydra/sweeper=optuna", "hydra/launcher=joblib"], with_hydra=True)
    added = sweep_overrides(optuna, {("loss", "min")}, ["hydra/sweeper=optuna"])
    assert added == ["hydra.sweeper.direction=minimize", "trainer.threads=1"]  # n_jobs=-1: a job per core
    basic = compose([], with_hydra=True)
    assert sweep_overrides(basic, {("accuracy", "max")}, []) == []
    assert sweep_overrides(optuna, {("accuracy", "max")}, ["trainer.threads=3"]) == ["hydra.sweeper.direction=maximize"]
    ends = expand(["model.width=int(interval(4,16))", "seed=0"])  # a sweeper samples between them: both checked
    assert ends == [["model.width=4", "seed=0"], ["model.width=16", "seed=0"]]


@pytest.mark.slow
def test_a_bug_in_a_sweep_job_is_one_line_not_hydras_traceback(tmp_path):
    """A sweep job runs in zoo's Hydra app, not behind the CLI's catch-all: an exception that is zoo's fault (here
    the training loop, replaced by one that raises) is still one line, exit 3, and the job's folder goes."""
    import os

    from tests.conftest import ROOT

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import zoo.train.engine\n\n\ndef broken(*args, **kwargs):\n    raise RuntimeError('boom in the loop')\n\n\n"
        "zoo.train.engine.train = broken\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}
    proc = run_zoo("train", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "zoo: internal error in zoo train -m (a sweep job): RuntimeError: boom in the loop; "
        "ZOO_DEBUG=1 shows the traceback"
    )
    assert not (tmp_path / "sweep" / "0" / "checkpoints").exists()
