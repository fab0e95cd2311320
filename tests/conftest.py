"""Shared helpers: run the real CLI, small experiment configs, a trained-and-exported digits run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Under pytest-xdist each worker is a process of its own: one torch thread in each, and in the zoo
    processes they start, so two workers on two cores do not oversubscribe them (a 2x slowdown seen here).
    The zoo processes of one session share a plugin cache of their own (zoo.plugin.catalog), never the user's: the
    controller makes the folder before it starts the workers, which inherit it, and removes it at the end."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        import tempfile

        config.zoo_cache_dir = tempfile.mkdtemp(prefix="zoo-test-cache-")
        os.environ["ZOO_CACHE_DIR"] = config.zoo_cache_dir
    # Discover the plugin packages first, as every zoo command does: a test module importing zoo_plugins
    # directly would otherwise register the standard plugins before discovery could attribute them to zoo.
    from zoo.plugin import discovery

    discovery.discover()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)


# fixtures that train a real digits model (about 20 s on a 2-core machine): a test that needs one is slow
TRAINING_FIXTURES = {"digits_run", "digits_export", "digits_float_export"}


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ is an end-to-end test (`-m "not e2e"` leaves the tier out), and every test
    that needs a trained digits model is slow (`make test-quick` leaves both out)."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.e2e)
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
    """Remove the session's plugin cache (zoo.plugin.catalog) made in pytest_configure."""
    if getattr(config, "zoo_cache_dir", None):
        import shutil

        shutil.rmtree(config.zoo_cache_dir, ignore_errors=True)


def run_zoo(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """The zoo CLI in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zoo.cli", *args],
        cwd=cwd or ROOT,
        env=full_env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


_BATCH = """
import contextlib, io, json, sys
from zoo.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_zoo_batch(*calls: list[str], env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Several zoo commands, each through main() with its own captured output, in ONE fresh interpreter (with
    `env`, e.g. plugin packages on PYTHONPATH): what separate runs give for commands that print or fail, at one
    start-up's cost. Discovery warnings appear in the first call's output only."""
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _BATCH, json.dumps([list(c) for c in calls])],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.splitlines()[-1])
    return [subprocess.CompletedProcess(["zoo", *c], r[0], r[1], r[2]) for c, r in zip(calls, results)]


def zoo_in_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI's main() in this process: the same exit code and output as the console script, without an
    interpreter's start-up (most of a failing command's time); for commands that stop before any run."""
    import contextlib
    import io

    from zoo.cli import main

    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["zoo", *args], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one line on stderr starting 'zoo: error:', no traceback, containing each fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("zoo: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def small_config(**groups) -> dict:
    """A composed, validated plain config for digits at 32x32 with overrides given as key=value strings."""
    from zoo.train.config import compose, to_plain

    overrides = [f"{k}={v}" for k, v in groups.items()]
    return to_plain(compose(overrides))


def shared(tmp_path_factory, name: str, make, leaf: str) -> Path:
    """A folder `make(folder)` fills once for the whole session, whichever pytest-xdist worker asks first: the
    others wait on a lock and reuse it (each worker training its own digits run cost every run ~30 s of CPU).
    Tests only read what it holds. It is `leaf` in a folder of its own, as `mktemp` gave it before (a bench
    compares an export with its siblings)."""
    import shutil

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above every worker's own
    folder, done = root / "shared" / name / leaf, root / "shared" / f"{name}.done"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / "shared" / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed here left half-made
            make(folder)
            done.touch()
    return folder


def _zoo_ok(*args: str) -> None:
    proc = run_zoo(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A short digits run through `zoo train` (3 epochs): its run directory."""
    args = ("train", "seed=0", "trainer.max_epochs=3", "trainer.progress=false")
    return shared(tmp_path_factory, "digits_run", lambda run: _zoo_ok(*args, f"hydra.run.dir={run}"), "digits")


@pytest.fixture(scope="session")
def digits_export(digits_run, tmp_path_factory) -> Path:
    """The digits run exported through `zoo export`: the folder holding model.onnx and model.json."""
    best = f"checkpoint={digits_run}/checkpoints/best.pt"
    return shared(tmp_path_factory, "digits_export", lambda out: _zoo_ok("export", best, f"output={out}"), "digits")


@pytest.fixture(scope="session")
def digits_float_export(digits_run, tmp_path_factory) -> Path:
    """The digits run exported in the float32 input form (`export.input=float32`: N x C x H x W in [0, 1]),
    for what feeds tensors: IO binding, DLPack, CUDA graphs."""
    best = f"checkpoint={digits_run}/checkpoints/best.pt"
    make = lambda out: _zoo_ok("export", best, f"output={out}", "input=float32")  # noqa: E731
    return shared(tmp_path_factory, "digits_float_export", make, "digits_float")


# ---- one small export per task (the deployment contract's tests) --------------------------------------

HEADS = {
    "classification": "classification",
    "regression": "regression",
    "segmentation": "unet",
    "detection": "detection",
}


def task_info(task: str):
    """The DataInfo of a small RGB 32x32 dataset of `task` (units and background where the task has them)."""
    from zoo.data import DataInfo

    classes = {"regression": ("angle", "count"), "detection": ("a", "b")}.get(task, ("background", "a", "b"))
    units = ("degrees", None) if task == "regression" else ()
    background = 0 if task == "segmentation" else None
    return DataInfo(task, classes, 3, (32, 32), (0.5,) * 3, (0.25,) * 3, units, background)


def export_task(task: str, folder, head: dict | None = None, **ecfg):
    """A small cnn of `task` with its standard head, exported to `folder` (random parity images)."""
    import torch

    from zoo.deploy.export import export_model
    from zoo.model import build_model

    torch.manual_seed(0)
    info = task_info(task)
    model = {"name": "cnn", "width": 8, "depth": 2}
    cfg = {"data": {"name": "test"}, "model": model, "head": {"name": HEADS[task], **(head or {})}}
    model = build_model(cfg, info).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return export_model(model, info, cfg, folder, {"opset": 18, **ecfg}, x, "random")


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict:
    """One small export per task (uint8 form, the default), and the classification model in the float32 form.
    An untrained detector scores about 0.005: its threshold is set below, so there are boxes to compare."""
    root = tmp_path_factory.mktemp("contract")
    for task in HEADS:
        export_task(task, root / task, {"score_threshold": 0.001} if task == "detection" else None)
    export_task("classification", root / "float", input="float32")
    return {task: root / task for task in [*HEADS, "float"]}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A one-epoch run of a 4-wide CNN on three digit classes, trained in this process (a few seconds)."""
    from zoo.train.engine import train

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    over = {"data.classes": "[0,1,2]", "model.width": 4, "trainer.max_epochs": 1, "trainer.progress": "false"}
    train(small_config(**over), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def tiny_export(tiny_run) -> Path:
    """tiny_run's best checkpoint exported in this process: its model.onnx."""
    from zoo.deploy.export import export

    out = tiny_run.parent / "export"
    export(tiny_run / "checkpoints" / "best.pt", out, {"parity_samples": 8})
    return out / "model.onnx"


def pytest_terminal_summary(terminalreporter):
    """How many generated cases the fuzz suite (tests/cli/test_fuzz.py) tried, over every worker."""
    reports = terminalreporter.stats.get("passed", [])
    total = sum(v for r in reports for k, v in getattr(r, "user_properties", ()) if k == "fuzz_cases")
    if total:
        terminalreporter.write_line(f"fuzz: {total} generated cases held to the CLI's contract, 0 failed")


@pytest.fixture
def offline(monkeypatch):
    """No connection can be opened: whatever tries to download fails at once (tests of offline code paths)."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("sockets are blocked in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
