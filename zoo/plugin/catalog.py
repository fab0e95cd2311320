"""The plugin catalog: what every plugin declares, cached on disk, so questions about plugins import no plugin.

`zoo list`, `zoo train ... --cfg job` and every override error need plugins' declarations only (names, kinds,
packages, summaries, parameters with their types, defaults, ranges, lengths and choices, tasks, min_size, the
packages' config folders), not their code; importing the plugin packages costs torch and torchvision (seconds).
Discovery imports them once and `serve()` writes what it learnt into one JSON file; the next command reads it
back into the registries as records (`Plugin.cached`) and imports no plugin module. A record's `build()` and
`resolve()` import the packages for real (`registry.load_code`), so training still runs the real code.

The file is valid while its fingerprint holds: the Python and its prefix, the search path, whether third-party
autoloading is on, zoo's version, every distribution's metadata folder on the search path (name and version,
`entry_points.txt` and `METADATA` times and sizes: a pip install or uninstall changes them), and every `.py`
file of zoo and of the plugin packages with its time and size (an edit in an editable install changes them).
Anything else, a corrupt file included, rebuilds it silently. Where: $ZOO_CACHE_DIR, else
$XDG_CACHE_HOME/zoo, else ~/.cache/zoo; one file per environment and search path, written to a temporary file
and renamed (two processes racing each write a whole file). `zoo list --refresh` rebuilds it. Imports no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from zoo.params import NonEmpty
from zoo.plugin import discovery, registry
from zoo.plugin.registry import FUNCTION, REQUIRED, Length, Param, Plugin, Range
from zoo.version import __version__

FORMAT = 1  # of the file; a zoo that writes another format ignores this one
CACHE_ENV = "ZOO_CACHE_DIR"
KEEP = 32  # cache files kept in the folder (one per environment and search path), the newest
_BASES = {t.__name__: t for t in (int, float, bool, str)}
_METADATA_DIRS = (".dist-info", ".egg-info")
_PATH_FILES = (".egg-link", ".pth")


def cache_dir() -> Path:
    """Where the cache files live: $ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"


def _search_path() -> list[str]:
    return [os.path.abspath(p or os.curdir) for p in sys.path]


def _autoload() -> bool:
    return os.environ.get(discovery.AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")


def cache_file() -> Path:
    """This environment's cache file: one per Python prefix, search path and autoload setting."""
    key = json.dumps([sys.prefix, _search_path(), _autoload()])
    return cache_dir() / f"plugins-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}"


def _installed(entry: str, h) -> None:
    """The distributions on one search-path entry: their metadata folders' names (name and version), when their
    entry points and metadata were written, and the .pth/.egg-link files that point at editable sources."""
    if not os.path.isdir(entry):
        h.update(f"{entry}={_stat(entry)}\n".encode())
        return
    try:
        names = sorted(e.name for e in os.scandir(entry) if e.name.endswith(_METADATA_DIRS + _PATH_FILES))
    except OSError:
        return
    for name in names:
        path = os.path.join(entry, name)
        if name.endswith(_PATH_FILES):
            h.update(f"{name}={_stat(path)}\n".encode())
        else:
            eps, meta = (os.path.join(path, f) for f in ("entry_points.txt", "METADATA"))
            h.update(f"{name}={_stat(eps)},{_stat(meta)}\n".encode())


def _sources(root: str, h) -> None:
    """Every .py file under a package folder (or the one module file), with its time and size."""
    if not os.path.isdir(root):
        h.update(f"{root}={_stat(root)}\n".encode())
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        h.update(f"{os.path.relpath(folder, root)}/\n".encode())
        for f in sorted(files):
            if f.endswith(".py"):
                h.update(f"{f}={_stat(os.path.join(folder, f))}\n".encode())


def fingerprint(roots: list[str]) -> str:
    """What the cache is valid for (see the module's docstring); `roots`: zoo's and the plugin packages' sources."""
    h = hashlib.sha256(json.dumps([FORMAT, sys.version, sys.prefix, _autoload(), __version__, roots]).encode())
    for entry in _search_path():
        _installed(entry, h)
    for root in roots:
        _sources(root, h)
    return h.hexdigest()


def source_roots() -> list[str]:
    """zoo's own folder and each plugin package's top-level folder (or module file), found without importing."""
    roots = [str(Path(registry.__file__).parents[1])]  # zoo/, every wing
    for _, ep in discovery.plugin_entry_points():
        try:
            spec = importlib.util.find_spec(ep.value.split(":")[0].split(".")[0])
        except (ImportError, ValueError):
            continue
        if spec is not None:
            roots += list(spec.submodule_search_locations or []) or [spec.origin] * bool(spec.origin)
    return sorted(set(roots), key=roots.index)


# ---- records: a plugin as JSON, and back through the registry's own readers --------------------------------


def param_record(p: Param) -> dict:
    """A parameter's declaration as plain data."""
    rng, length = p.range, p.length
    return {
        "name": p.name,
        "type": p.base.__name__,
        "choices": list(p.choices) if p.choices else None,
        "optional": p.optional,
        "list": p.is_list,
        "range": [rng.min, rng.max, rng.min_exclusive, rng.max_exclusive] if rng else None,
        "length": [length.min, length.max] if length else None,
        "non_empty": p.non_empty,
        "default": None if p.default is REQUIRED else p.default,
        "required": p.default is REQUIRED,
    }


def param_from(r: dict, where: str) -> Param:
    """The Param a record describes, read by `registry.param` from the annotation it stands for."""
    t: Any = Literal[tuple(r["choices"])] if r["choices"] else _BASES[r["type"]]
    if r["range"]:
        low, high, low_x, high_x = r["range"]
        t = Annotated[t, Range(low, high, min_exclusive=low_x, max_exclusive=high_x)]
    if r.get("non_empty"):
        t = Annotated[t, NonEmpty()]
    if r["list"]:
        t = list[t]
        if r["length"]:
            t = Annotated[t, Length(*r["length"])]
    if r["optional"]:
        t = Optional[t]
    return registry.param(r["name"], t, REQUIRED if r["required"] else r["default"], where)


def plugin_record(p: Plugin) -> dict:
    """Everything zoo asks a plugin without running it, as plain data."""
    declared = p.extra.get("min_size")
    of_defaults = None
    if callable(declared):
        with contextlib.suppress(Exception):  # the function fails: the cached record asks the real plugin
            of_defaults = p.min_size()
    return {
        "kind": p.kind,
        "name": p.name,
        "summary": p.summary,
        "package": p.package,
        "module": p.module,
        "entry_point": p.entry_point,
        "context": list(p.context),
        "tasks": list(p.tasks) if p.tasks is not None else None,
        "min_size": FUNCTION if callable(declared) else declared,
        "min_size_of_defaults": of_defaults,
        "params": [param_record(q) for q in p.params],
    }


def plugin_from(r: dict) -> Plugin:
    """A cached record: the Plugin without its factory (`resolve()` imports it)."""
    if r["kind"] not in registry.registries or not all(isinstance(r[k], str) for k in ("name", "package", "module")):
        raise ValueError(f"not a plugin record: {r!r}")
    params = tuple(param_from(q, f"{r['module']} (zoo's plugin cache)") for q in r["params"])
    extra = {} if r["min_size"] is None else {"min_size": r["min_size"]}
    if r["min_size"] == FUNCTION:
        extra["min_size_of_defaults"] = r["min_size_of_defaults"]
    tasks = tuple(r["tasks"]) if r["tasks"] is not None else None
    return Plugin(
        r["kind"], r["name"], None, r["summary"], r["package"], r["module"], params, tuple(r["context"]), tasks,
        extra, r["entry_point"], cached=True,
    )  # fmt: skip


# ---- the file -----------------------------------------------------------------------------------------------


def snapshot(roots: list[str], stamp: str) -> dict:
    """What discovery learnt in this process, and the fingerprint `stamp` taken before it imported anything."""
    packages = {p.package for p in discovery.loaded}
    plugins = [p for kind in registry.KINDS for p in registry.registries[kind] if p.package in packages]
    return {
        "format": FORMAT,
        "fingerprint": stamp,
        "roots": roots,
        "plugins": [plugin_record(p) for p in plugins],
        "packages": [asdict(p) for p in discovery.loaded],
        "errors": [asdict(e) for e in discovery.errors],
        "warnings": list(registry.issued),
    }


def write(path: Path, data: dict) -> None:
    """Write the cache atomically (a temporary file renamed); a folder that cannot be written means no cache."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".plugins-", suffix=".tmp", delete=False) as f:
            tmp = f.name
            json.dump(data, f)
        os.replace(tmp, path)
        tmp = None
        old = sorted(path.parent.glob("plugins-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]
        for stale in old:
            stale.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def read(path: Path) -> tuple[list[Plugin], dict] | None:
    """The cached records and the rest of the file when it is whole and its fingerprint holds; else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["format"] != FORMAT or data["fingerprint"] != fingerprint([str(r) for r in data["roots"]]):
            return None
        plugins = [plugin_from(r) for r in data["plugins"]]
        data["packages"] = [discovery.LoadedPackage(**p) for p in data["packages"]]
        data["errors"] = [discovery.LoadError(**e) for e in data["errors"]]
        data["warnings"] = [str(w) for w in data["warnings"]]
        return plugins, data
    except Exception:  # missing, unreadable, corrupt, from another zoo: rebuilt
        return None


def serve(refresh: bool = False) -> bool:
    """Fill the registries from the cache when it is valid (no plugin module imported), else import every plugin
    package (discovery) and write the cache for the next command; True when the cache served. `refresh` rebuilds
    it whatever it holds. Nothing happens once plugin packages are imported or the cache already serves."""
    if discovery.discovered() or registry.serving_cache():
        return registry.serving_cache()
    path = cache_file()
    found = None if refresh else read(path)
    if found is not None:
        plugins, data = found
        discovery.loaded[:] = data["packages"]
        discovery.errors[:] = data["errors"]
        registry.serve_cached(plugins, data["warnings"])
        return True
    roots = source_roots()
    stamp = fingerprint(roots)  # before the imports: a file edited meanwhile makes the next command rebuild
    discovery.discover()
    write(path, snapshot(roots, stamp))
    return False
