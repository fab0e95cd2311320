"""The core's shape, checked: no import cycles and no import against the layers, a core that names no
standard plugin, short functions, and `zoo train` composing its config and building its data once."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest

from zoo import tasks
from zoo.plugin import registry

CORE = Path(__file__).resolve().parents[1] / "zoo"

# A module imports only modules of its own layer or below (DESIGN.md, "Layers, no cycles"); runtime stands
# alone: it imports no torch, and of zoo only the modules below that need none either.
LAYERS = {
    "errors": 0, "tasks": 0,
    "registry": 1, "schema": 1,
    "discovery": 2, "catalog": 2, "data": 2, "model": 2, "checkpoint": 2, "distributed": 2, "preprocess": 2,
    "config": 3, "experiment": 3, "engine": 3, "tracking": 3, "accel": 3,
    "export": 4, "quantize": 4, "bench": 4, "visual": 4, "figures": 4, "explain": 4, "scaffold": 4, "testing": 4,
    "verify": 4,
    "launch": 5, "hydra_app": 5, "cli": 5, "demo": 6,
    "runtime": 2,
}  # fmt: skip
RUNTIME_MAY_IMPORT = {"errors", "tasks"}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in CORE.glob("*.py") if p.stem != "__init__"}


def _zoo_imports(tree: ast.Module) -> set[str]:
    """Every zoo module a module imports, at the top or inside a function, absolute or relative."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "zoo" + ("." + node.module if node.module else "") if node.level else node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n.split(".")[1] for n in names if n.startswith("zoo.") and n.split(".")[1] in LAYERS)
    return found


def test_the_import_walk_sees_imports_inside_functions_and_relative_ones():
    tree = ast.parse(
        "def f():\n    from zoo.plugin.discovery import discover\n    import zoo.model as m\n    from . import engine\n"
    )
    assert _zoo_imports(tree) == {"discovery", "model", "engine"}


def test_every_core_module_has_a_layer():
    assert set(_modules()) == set(LAYERS), "a new module in zoo/: give it a layer here and in DESIGN's list"


def test_no_import_goes_up_a_layer_and_none_makes_a_cycle():
    graph = {name: _zoo_imports(tree) - {name} for name, tree in _modules().items()}
    for name, imports in graph.items():
        for other in imports:
            assert LAYERS[other] <= LAYERS[name], (
                f"zoo.{name} (layer {LAYERS[name]}) imports zoo.{other} ({LAYERS[other]})"
            )
    assert graph["runtime"] <= RUNTIME_MAY_IMPORT, graph["runtime"]
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _help_texts(tree: ast.Module) -> set[int]:
    """String constants assigned to a module-level USAGE: the CLI's help text is documentation too."""
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "USAGE" for t in node.targets):
            ids.update(id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant))
    return ids


def test_the_core_names_no_standard_plugin():
    names = {p.name for kind in registry.KINDS for p in registry.registries[kind] if p.package == "zoo"}
    assert len(names) > 30, names  # the standard plugins, attributed to zoo
    names -= set(tasks.TASKS)  # a task's name is the core's own word, even where a head shares it
    names -= {"masks"}  # `zoo predict masks=DIR` is the command's own option, not the dataset of that name
    names -= {"csv"}  # `trainer.logger=csv` is a file format the engine writes, not the dataset of that name
    named = re.compile(r"\b(?:data|model|head|transfer|aug|ops)[=.](" + "|".join(map(re.escape, names)) + r")\b")
    found = []
    for name, tree in _modules().items():
        skip = _docstrings(tree) | _help_texts(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in skip else None
            if isinstance(text, str) and (text in names or named.search(text)):
                found.append(f"zoo/{name}.py:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_no_function_in_the_core_is_over_80_lines():
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"zoo/{name}.py:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def test_zoo_train_composes_once_and_builds_the_data_once(tmp_path, monkeypatch):
    import zoo.train.config
    import zoo.train.experiment
    from zoo.cli.train import single_run

    calls = {"compose": 0, "data": 0}
    compose, build_data = zoo.train.config._hydra_compose, zoo.train.experiment.build_data

    def counting_compose(*args, **kwargs):
        calls["compose"] += 1
        return compose(*args, **kwargs)

    def counting_build_data(*args, **kwargs):
        calls["data"] += 1
        return build_data(*args, **kwargs)

    monkeypatch.setattr(zoo.train.config, "_hydra_compose", counting_compose)
    monkeypatch.setattr(zoo.train.experiment, "build_data", counting_build_data)
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        overrides = ["data.classes=[0,1]", "model.width=4", "model.depth=2", "trainer.max_epochs=1",
                     "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
        assert single_run(overrides) == 0
    finally:  # the run configured logging as Hydra does; give pytest its own back
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
    assert calls == {"compose": 1, "data": 1}
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.parametrize("flag", ["--cfg", "-c"])
def test_train_flags_may_follow_the_overrides(flag):
    from zoo.cli.train import parse_args

    args = parse_args(["model=lenet5", flag, "job", "model.activation=relu", "-m"])
    assert args.overrides == ["model=lenet5", "model.activation=relu"] and args.cfg == "job" and args.multirun
