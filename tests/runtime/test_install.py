"""A plain, non-editable install of the wheel works from any directory; the runtime-only one needs no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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


SERVING_LEAVES_OUT = ("zoo.plugin", "zoo.train", "zoo.deploy", "zoo.cli", "zoo.report", "zoo.bench")


def _zoo_module_file(name: str) -> Path | None:
    """The file of zoo module `name` (zoo.x.y) in this checkout, or None when it is not one."""
    parts = name.split(".")
    if parts[0] != "zoo":
        return None
    base = ROOT.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def serving_modules() -> set[str]:
    """Every zoo module `import zoo.runtime` may load, by walking imports from each module of zoo/runtime/ (at any
    depth: a function-level import runs in the runtime-only install too). The package's own __init__ counts by its
    top level: its lazy public names (register, load_weights) are the full distribution's, not serving's."""
    needed: set[str] = set()
    todo = ["zoo"] + [f"zoo.runtime.{f.stem}" if f.stem != "__init__" else "zoo.runtime" for f in
                      (ROOT / "zoo" / "runtime").glob("*.py")]  # fmt: skip
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        tree = ast.parse(_zoo_module_file(name).read_text())
        for node in tree.body if name == "zoo" else ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                parents = [".".join(n.split(".")[:i]) for i in range(1, n.count(".") + 2)]
                todo += [p for p in parents if _zoo_module_file(p) is not None and p not in needed]
    return needed


def test_the_runtime_only_distribution_ships_what_serving_imports_and_nothing_else():
    """runtime/pyproject.toml's packages and py-modules are exactly what `import zoo.runtime` may load (the walk
    above): the zoo.runtime package and the torch-free base modules it imports, nothing of the other wings."""
    import tomllib

    needed = serving_modules()
    assert not [m for m in needed if m.startswith(SERVING_LEAVES_OUT)], sorted(needed)
    setup = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["packages"] == ["zoo.runtime"] and setup["package-data"] == {"zoo.runtime": ["format.schema.json"]}
    base = {m for m in needed if not m.startswith("zoo.runtime") and m != "zoo"}
    assert set(setup["py-modules"]) == base, f"py-modules should be {sorted(base)}"


def _runtime_wheel(tmp_path: Path) -> Path:
    """zoo-runtime's wheel, built from a copy (setuptools writes build/ and egg-info beside the sources) in pip's
    build isolation: runtime/ asks for setuptools >= 68, which pip fetches through its configured index."""
    import shutil

    source = tmp_path / "source"
    for part in ("zoo", "runtime"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source / "runtime")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return next(wheels.glob("zoo_runtime-*.whl"))


@pytest.mark.slow
def test_the_runtime_only_install_serves_an_export_without_torch(digits_export, tmp_path):
    """runtime/ builds zoo-runtime from zoo/'s own files: the wheel holds exactly zoo/runtime/ (its modules and
    format.schema.json) and the base modules serving imports. In a fresh venv holding it, onnxruntime, numpy and
    Pillow only (no torch), `import zoo.runtime` loads no other wing, an export's metadata is checked against the
    schema the wheel ships, and `zoo-predict` answers as `zoo predict` does. pip fetches the three packages
    through its configured index (a local mirror here; about 10 s in all)."""
    import json
    import zipfile

    from PIL import Image

    from tests.conftest import zoo_in_process

    wheel = _runtime_wheel(tmp_path)
    runtime_files = {f"zoo/runtime/{f.name}" for f in (ROOT / "zoo" / "runtime").iterdir() if f.is_file()}
    runtime_files = {f for f in runtime_files if f.endswith((".py", ".schema.json"))}
    base = {str(_zoo_module_file(m).relative_to(ROOT)) for m in serving_modules() if not m.startswith("zoo.runtime")}
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("zoo_runtime-")}
    assert shipped == runtime_files | base, sorted(shipped ^ (runtime_files | base))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # pip runs from this interpreter, installing into the venv (--python)
    py = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip"]
    install = [*pip, "--python", str(py), "install", "-q", "--no-deps", str(wheel), "onnxruntime", "numpy", "pillow"]
    done = subprocess.run(install, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    torchless = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, cwd=elsewhere)
    assert torchless.returncode != 0 and "No module named 'torch'" in torchless.stderr
    model = digits_export / "model.onnx"
    check = f"""
import json, sys
import zoo.runtime
from zoo.runtime import Model, check_metadata, SCHEMA_FILE
from zoo.errors import ZooError
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith({SERVING_LEAVES_OUT!r}))
m = Model({str(model)!r}, "cpu")  # reads the metadata and checks it against the schema the wheel ships
schema = json.loads(SCHEMA_FILE.read_text())
refused = []
for key in [k for k in schema["required"] if k != "format"]:  # without format: format 1, no keys required
    try:
        check_metadata({{k: v for k, v in m.metadata.items() if k != key}}, "model")
    except ZooError as e:
        refused.append(str(e))
print(json.dumps({{"loaded": loaded, "schema": str(SCHEMA_FILE), "refused": refused, "task": m.task}}))
"""
    probe = subprocess.run([str(py), "-c", check], capture_output=True, text=True, cwd=elsewhere)
    assert probe.returncode == 0, probe.stderr[-2000:]
    seen = json.loads(probe.stdout)
    assert seen["loaded"] == [] and seen["task"] == "classification"
    assert seen["schema"].startswith(str(env_dir)) and str(ROOT) not in seen["schema"]  # the wheel's own copy
    required = json.loads((ROOT / "zoo" / "runtime" / "format.schema.json").read_text())["required"]
    lacking = [f"model: its zoo metadata lacks zoo.{k} (zoo.format 3)" for k in required if k != "format"]
    assert seen["refused"] == lacking and len(lacking) >= 8
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 30), 80 * i, np.uint8)).save(images / f"{i}.png")
    args = [f"model={model}", f"input={images}", "topk=3"]
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
