"""Find plugin packages through the `zoo.plugins` entry-point group and import each once.

No registration by forgotten import: every installed plugin package is imported the first time any
registry is asked a question. A package whose import fails costs one warning line and is forgotten;
every other plugin still works (`zoo list --errors` shows the full story). ZOO_DISABLE_PLUGIN_AUTOLOAD=1
turns off third-party packages; the standard plugins always load. Importing this module (zoo/__init__
does) installs `discover` as the registry's loader; it imports no torch. Commands that need only what
plugins declare (`zoo list`, composing a config) are answered from zoo.plugin.catalog's cache instead, and
`discover` runs only when a plugin's code is needed.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.plugin import registry
from zoo.plugin.registry import STANDARD_PACKAGE

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUP = "zoo.plugins"
AUTOLOAD_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class LoadError:
    """A plugin package that could not be loaded, and why."""

    package: str
    entry_point: str
    error: str
    traceback: str


@dataclass(frozen=True)
class LoadedPackage:
    """A plugin package that loaded, with the config folder it ships (if any)."""

    package: str
    module: str
    config_dir: str | None


_state = {"done": False, "running": False}
errors: list[LoadError] = []
loaded: list[LoadedPackage] = []


def plugin_entry_points() -> list[tuple[str, EntryPoint]]:
    """The `zoo.plugins` entry points, each with its distribution's name: zoo's first, then the others sorted."""
    from importlib import metadata  # here: a command the plugin cache answers never reads the metadata

    seen, out = set(), []
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
        if (dist, ep.value) in seen:
            continue
        seen.add((dist, ep.value))
        out.append((dist, ep))
    # The standard plugins first, then third parties in a stable order.
    out.sort(key=lambda d: (d[0] != STANDARD_PACKAGE, d[0], d[1].name))
    return out


def _config_dir(module) -> str | None:
    explicit = getattr(module, "ZOO_CONFIG_DIR", None)
    if explicit:
        return str(explicit)
    if getattr(module, "__file__", None):
        conf = Path(module.__file__).parent / "conf"
        if conf.is_dir():
            return str(conf)
    return None


def load_package(package: str, target: str, entry_point: str | None = None) -> None:
    """Import one plugin module on behalf of `package` (through its entry point `entry_point`); failures are
    recorded, never raised."""
    import importlib

    token = registry.current_package.set(package)
    entry_token = registry.current_entry_point.set(entry_point)
    try:
        module = importlib.import_module(target)
        need = getattr(module, "ZOO_PLUGIN_API", None)
        accepted = (
            {int(v) for v in (need if isinstance(need, (list, tuple, set)) else [need])} if need is not None else None
        )
        if accepted is not None and registry.PLUGIN_API_VERSION not in accepted:
            raise ImportError(
                f"it needs zoo plugin API {'/'.join(map(str, sorted(accepted)))}, this zoo provides "
                f"{registry.PLUGIN_API_VERSION}: install a version of {package} made for plugin API "
                f"{registry.PLUGIN_API_VERSION}, or a zoo that provides {'/'.join(map(str, sorted(accepted)))}"
            )
        if need is None and package != STANDARD_PACKAGE:
            v = registry.PLUGIN_API_VERSION
            registry.warn(
                f"plugin package {package!r} declares no ZOO_PLUGIN_API; it is loaded as if written "
                f"for plugin API {v}: set ZOO_PLUGIN_API = {v} in {target}"
            )
        loaded.append(LoadedPackage(package, target, _config_dir(module)))
    except Exception as e:  # isolate a broken package: one warning, the rest goes on
        for reg in registry.registries.values():
            reg.remove_package(package)
        first = f"{type(e).__name__}: {e}".splitlines()[0]
        errors.append(LoadError(package, target, first, traceback.format_exc()))
        if package == STANDARD_PACKAGE:
            raise
        registry.warn(f"plugin package {package!r} failed to load and was skipped ({first}); see: zoo list --errors")
    finally:
        registry.current_package.reset(token)
        registry.current_entry_point.reset(entry_token)


def discover() -> None:
    """Import every plugin package once (idempotent; cheap after the first call). While the registries serve
    zoo.plugin.catalog's cached records, nothing is imported: `registry.load_code()` ends that when code is needed."""
    if _state["done"] or _state["running"] or registry.serving_cache():
        return
    _state["running"] = True
    try:
        loaded.clear()  # what the catalog's cache said, replaced by what importing the packages does
        errors.clear()
        autoload = os.environ.get(AUTOLOAD_ENV, "").lower() not in ("1", "true", "yes")
        for package, ep in plugin_entry_points():
            if package != STANDARD_PACKAGE and not autoload:
                continue
            load_package(package, ep.value, ep.name)
        _state["done"] = True
    finally:
        _state["running"] = False


def discovered() -> bool:
    """Whether every plugin package has been imported in this process."""
    return _state["done"]


def config_dirs() -> list[str]:
    """Config folders shipped by loaded plugin packages, added to Hydra's search path."""
    discover()
    return [p.config_dir for p in loaded if p.config_dir]


registry.set_loader(discover)
