"""A plain, non-editable install of the wheel works from any directory."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_into_a_fresh_venv_and_runs_from_elsewhere(tmp_path):
    import shutil

    # Build from a copy: setuptools writes build/ and egg-info beside the source, and a stale build/ leaks into wheels.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "outputs", "exports", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    wheel = next(wheels.glob("zoo-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True
    )
    # Dependencies (torch, hydra, ...) come from the test environment's site-packages, appended after the
    # fresh venv's own: zoo itself must come from the wheel, not from this checkout.
    fresh_site = next((env_dir / "lib").glob("python3*/site-packages"))
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import zoo, zoo_plugins, zoo.conf; print(zoo.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    assert str(fresh_site) in where.stdout and str(ROOT) not in where.stdout
    proc = subprocess.run([str(env_dir / "bin" / "zoo"), "list"], cwd=elsewhere, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "lenet5" in proc.stdout and "classification" in proc.stdout and "digits" in proc.stdout
    cfg = subprocess.run(
        [str(env_dir / "bin" / "zoo"), "train", "--cfg", "job", "model=resnet18"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert cfg.returncode == 0 and "model_name: resnet18" in cfg.stdout, cfg.stderr  # conf/ shipped in the wheel
