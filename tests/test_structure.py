"""The house's shape, checked: zoo/ in wings whose imports a table allows (no cycle, nothing upward, lazy
imports only where commented), rooms of bounded size, a core that names no standard plugin, tests in tiers,
and `zoo train` composing its config and building its data once."""

from __future__ import annotations

import ast
import logging
import re
from functools import cache
from pathlib import Path

import pytest

from zoo import tasks
from zoo.plugin import registry

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "zoo"

# The wing of each module: its subpackage, or for a module at zoo/'s top level the role it plays.
BASE = {"zoo", "zoo.errors", "zoo.version", "zoo.tasks", "zoo.params", "zoo.verbs"}  # torch-free, below all
CONTRACTS = {"zoo.model", "zoo.data"}  # what plugin authors subclass and return
# A wing may import the wings listed here (and itself); docs/architecture.md draws the same table.
BELOW = {
    "base": set(),
    "plugin": {"base"},
    "runtime": {"base"},  # torch-free and alone: exactly what the runtime-only wheel ships
    "contracts": {"base", "plugin", "runtime"},
    "train": {"base", "plugin", "runtime", "contracts"},
    "deploy": {"base", "plugin", "runtime", "contracts", "train"},
    "report": {"base", "plugin", "runtime", "contracts", "train", "deploy"},
    "bench": {"base", "plugin", "runtime", "contracts", "train", "deploy"},
    "testing": {"base", "plugin", "runtime", "contracts", "train", "deploy"},
    "cli": {"base", "plugin", "runtime", "contracts", "train", "deploy", "report", "bench", "testing"},
}
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 500, 250, 80  # lines
LAZY = "# lazy:"  # the comment a function-level import of zoo's own code carries, saying why it is not at the top


def wing(module: str) -> str:
    """The wing a zoo module belongs to."""
    if module in BASE:
        return "base"
    if module in CONTRACTS:
        return "contracts"
    if module == "zoo.testing":
        return "testing"
    return module.split(".")[1]


@cache
def modules() -> dict[str, Path]:
    """Every module of zoo/ by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@cache
def tree(module: str) -> ast.Module:
    """A module's syntax tree."""
    return ast.parse(modules()[module].read_text())


def _target(imported: str, name: str | None) -> str | None:
    """The zoo module an import names: `from zoo.train import config` is zoo.train.config, `from zoo import
    register` is zoo itself."""
    for candidate in (f"{imported}.{name}" if name else None, imported):
        if candidate in modules():
            return candidate
    return None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported zoo module, line, inside a function) for every import of zoo's own code in `module`."""
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(tree(module), package)


def imports_in(t: ast.Module, package: str) -> list[tuple[str, int, bool]]:
    """The imports of zoo's own modules in a syntax tree of a module of `package`, absolute or relative."""
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((t, child.lineno, in_function) for a in child.names if (t := _target(a.name, None)))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1] + [base]).strip(".")
                found.extend((t, child.lineno, in_function) for a in child.names if (t := _target(base, a.name)))
            walk(child, inner)

    walk(t, False)
    return sorted(set(found), key=lambda f: (f[1], f[0]))


def test_the_import_walk_sees_imports_inside_functions_and_relative_ones():
    code = "import zoo.errors\ndef f():\n    from zoo.train import engine\n    from . import accel\n"
    code += "    from .. import model\n"
    assert imports_in(ast.parse(code), "zoo.train") == [
        ("zoo.errors", 1, False), ("zoo.train.engine", 3, True), ("zoo.train.accel", 4, True), ("zoo.model", 5, True)
    ]  # fmt: skip


def test_every_module_is_in_a_wing_of_the_table():
    assert {wing(m) for m in modules()} <= set(BELOW), sorted({wing(m) for m in modules()} - set(BELOW))


def test_no_import_goes_up_or_sideways_between_wings_not_even_inside_a_function():
    wrong = []
    for module in modules():
        for target, line, _ in imports(module):
            if wing(target) != wing(module) and wing(target) not in BELOW[wing(module)]:
                wrong.append(f"{modules()[module].relative_to(ROOT)}:{line}: {module} ({wing(module)}) imports "
                             f"{target} ({wing(target)})")  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = {m: {t for t, _, _ in imports(m) if t != m} for m in modules()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_a_function_level_import_of_zoos_own_code_says_why():
    uncommented = []
    for module, path in modules().items():
        lines = path.read_text().splitlines()
        for _, line, inner in imports(module):
            if inner and LAZY not in lines[line - 1]:
                uncommented.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
    assert not uncommented, f"move these to the top, or say why with `{LAZY} ...`:\n" + "\n".join(uncommented)


def test_the_core_imports_no_plugin_package():
    for module in modules():
        for node in ast.walk(tree(module)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "zoo_plugins" for n in names), module


def test_rooms_are_small_modules_classes_and_functions():
    big = []
    for module, path in modules().items():
        rel = path.relative_to(ROOT)
        if (n := len(path.read_text().splitlines())) > MAX_MODULE:
            big.append(f"{rel}: {n} lines (at most {MAX_MODULE})")
        for node in ast.walk(tree(module)):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            sized = isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            if sized and (n := node.end_lineno - node.lineno + 1) > limit:
                big.append(f"{rel}:{node.lineno} {node.name}: {n} lines (at most {limit})")
    assert not big, "\n".join(big)


def _docs_and_help(t: ast.Module) -> set[int]:
    """Docstrings, and the help a verb or option declares: documentation may name standard plugins."""
    ids = set()
    for node in ast.walk(t):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg in {"help", "summary", "examples", "example", "usage"}:
            ids.update(id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in {"USAGE", "EXAMPLE", "EXAMPLES"}
                                                for t in node.targets):  # fmt: skip
            ids.update(id(n) for n in ast.walk(node.value) if isinstance(n, ast.Constant))
        # a verb's or option's declaration (zoo.verbs): its summary and help are what `zoo VERB --help` prints
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"Verb", "Option"}:
            ids.update(id(a) for a in node.args if isinstance(a, ast.Constant))
    return ids


def test_the_core_names_no_standard_plugin():
    names = {p.name for kind in registry.KINDS for p in registry.registries[kind] if p.package == "zoo"}
    assert len(names) > 30, names  # the standard plugins, attributed to zoo
    names -= set(tasks.TASKS)  # a task's name is the core's own word, even where a head shares it
    names -= {"masks"}  # `zoo predict masks=DIR` is the command's own option, not the dataset of that name
    names -= {"csv"}  # `trainer.logger=csv` is a file format the engine writes, not the dataset of that name
    named = re.compile(r"\b(?:data|model|head|transfer|aug|ops)[=.](" + "|".join(map(re.escape, names)) + r")\b")
    found = []
    for module, path in modules().items():
        t = tree(module)
        skip = _docs_and_help(t)
        for node in ast.walk(t):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in skip else None
            if isinstance(text, str) and (text in names or named.search(text)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_task_knowledge_lives_in_the_task_table_alone():
    """No module but zoo/tasks.py branches on a task's name: what differs by task is a field of its entry."""
    found = []
    for module, path in modules().items():
        if module == "zoo.tasks":
            continue
        t = tree(module)
        skip = _docs_and_help(t)
        found += [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in ast.walk(t)
                  if isinstance(n, ast.Constant) and n.value in tasks.TASKS and id(n) not in skip]  # fmt: skip
    assert not found, "\n".join(found)


TIERS = {"plugin", "runtime", "train", "deploy", "plugins", "report", "cli", "e2e"}


def test_tests_live_in_tiers_named_for_what_they_test():
    tests = ROOT / "tests"
    loose = [p.name for p in tests.glob("test_*.py") if p.name not in {"test_structure.py", "test_docs.py"}]
    assert not loose, f"put these in a tier folder ({', '.join(sorted(TIERS))}): {loose}"
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders <= TIERS, folders - TIERS
    by_issue = [str(p.relative_to(ROOT)) for p in tests.rglob("test_*.py") if re.search(r"issue|_\d+\.py$", p.name)]
    assert not by_issue, by_issue


@pytest.mark.slow
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
