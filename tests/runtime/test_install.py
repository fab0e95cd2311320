"""A plain, non-editable install of the wheel works from any directory; the runtime-only one needs no torch."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_runtime_only_install_serves_an_export_without_torch(digits_export, tmp_path):
    """runtime/ builds zoo-runtime from zoo/'s own files; in a fresh venv holding it, onnxruntime, numpy and
    Pillow only (no torch), `zoo-predict` answers as `zoo predict` does. pip fetches the three packages through
    its configured index (a local mirror here; about 10 s in all)."""
    import shutil

    from PIL import Image

    from tests.conftest import zoo_in_process

    source = tmp_path / "source"  # a copy: setuptools writes build/ and egg-info beside the sources
    for part in ("zoo", "runtime"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source / "runtime")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(wheels.glob("zoo_runtime-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # pip runs from this interpreter, installing into the venv (--python)
    py = env_dir / "bin" / "python"
    install = [*pip, "--python", str(py), "install", "-q", "--no-deps", str(wheel), "onnxruntime", "numpy", "pillow"]
    done = subprocess.run(install, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 30), 80 * i, np.uint8)).save(images / f"{i}.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    torchless = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, cwd=elsewhere)
    assert torchless.returncode != 0 and "No module named 'torch'" in torchless.stderr
    args = [f"model={digits_export / 'model.onnx'}", f"input={images}", "topk=3"]
    served = subprocess.run(
        [str(env_dir / "bin" / "zoo-predict"), *args], capture_output=True, text=True, cwd=elsewhere
    )
    assert served.returncode == 0, served.stderr
    full = zoo_in_process("predict", *args)
    assert full.returncode == 0 and served.stdout == full.stdout and len(served.stdout.splitlines()) == 3
    refused = subprocess.run(
        [str(env_dir / "bin" / "zoo-predict"), *args, "threads=-1"], capture_output=True, text=True
    )
    assert (
        refused.returncode == 2 and refused.stderr.strip() == "zoo: error: threads='-1' must be an integer in [0, 4096]"
    )


def test_the_runtime_only_distribution_ships_every_module_serving_imports():
    """What `import zoo.runtime` loads (the package's __init__ and runtime, and what they import) is in
    runtime/pyproject.toml's py-modules, without the fresh venv the test above builds."""
    import ast

    import tomllib

    shipped = {m.removeprefix("zoo.") for m in tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())
               ["tool"]["setuptools"]["py-modules"]}  # fmt: skip
    needed, todo = set(), ["__init__", "runtime", "cli"]
    while todo:
        name = todo.pop()
        needed.add(name)
        tree = ast.parse((ROOT / "zoo" / f"{name}.py").read_text())
        # the package's __getattr__ and the CLI's other commands import torch-land lazily: their top level counts
        nodes = tree.body if name in ("__init__", "cli") else ast.walk(tree)
        for node in nodes:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "zoo":
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                part = n.split(".")[1] if n.startswith("zoo.") else None
                if part and (ROOT / "zoo" / f"{part}.py").is_file() and part not in needed:
                    todo.append(part)
    assert needed - {"__init__"} <= shipped, sorted(needed - {"__init__"} - shipped)
