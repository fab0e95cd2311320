"""How the registries get their plugins: the loader, records served from the catalog's cache, and who registers.

zoo.plugin.discovery installs the loader (`set_loader`) that imports every plugin package the first time a
registry is asked a question, and sets `current_package`/`current_entry_point` while it imports one, so its
registrations are attributed to it. zoo.plugin.catalog may instead fill the registries with records read from
its cache (`serve_cached`): plugins' declarations, no code, until `load_code()` imports the packages for real.
Discovery's warnings go through `warn` and are remembered in `issued`, which the catalog's cache replays.
This module sits below zoo.plugin.registry: `registries` is the registry of each kind, which that module fills
when it is imported.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import Any

# Set by zoo.plugin.discovery while it imports a plugin package, so registrations are attributed to it.
current_package: contextvars.ContextVar[str | None] = contextvars.ContextVar("zoo_current_package", default=None)
# ... and the name of its entry point (`acme` in `acme = zoo_acme`), one more qualifier of its plugins.
current_entry_point: contextvars.ContextVar[str | None] = contextvars.ContextVar("zoo_entry_point", default=None)

# kind -> its zoo.plugin.registry.Registry; filled by zoo.plugin.registry (one object: registry.registries)
registries: dict[str, Any] = {}

_loader: list[Callable[[], None]] = []
# Whether the registries hold records read from zoo.plugin.catalog's cache (plugins' declarations, no code) instead of
# what importing the plugin packages registered; `load_code()` swaps them for the real ones when code is needed.
_serving: dict[str, bool] = {"cache": False}
issued: list[str] = []  # the warnings discovery printed in this process (the catalog's cache replays them)
_replayed: set[str] = set()  # warnings already printed from the cache: not printed again when the code loads


def set_loader(load: Callable[[], None]) -> None:
    """Install the function that imports every plugin package on the first question (zoo.plugin.discovery's)."""
    _loader[:] = [load]


def load() -> None:
    """Run the installed loader (it imports the plugin packages once; later calls return at once)."""
    for loader in _loader:
        loader()


def warn(message: str) -> None:
    """One `zoo: warning: ...` line on stderr about a plugin package, remembered for the catalog's cache."""
    issued.append(message)
    if message not in _replayed:
        print(f"zoo: warning: {message}", file=sys.stderr)


def serving_cache() -> bool:
    """Whether the registries hold the catalog's cached records (declarations only, no plugin module imported)."""
    return _serving["cache"]


def serve_cached(plugins: list, warnings: list[str]) -> None:
    """Answer every question from `plugins`, records read from the catalog's cache (zoo.plugin.registry.Plugin
    with `cached=True`), until code is needed; print the `warnings` discovery printed when the cache was
    written, as it would print them now."""
    for plugin in plugins:
        registries[plugin.kind]._plugins.setdefault(plugin.name, []).append(plugin)
    _serving["cache"] = True
    for message in warnings:
        warn(message)
        _replayed.add(message)


def load_code() -> None:
    """Import every plugin package for real (the loader), replacing records served from the cache."""
    if _serving["cache"]:
        for reg in registries.values():
            reg._plugins = {n: kept for n, ps in reg._plugins.items() if (kept := [p for p in ps if not p.cached])}
        _serving["cache"] = False
    load()
