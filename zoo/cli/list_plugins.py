"""`zoo list [KIND [NAME]]`: a table of plugins (kind, name, summary, package), or one plugin's parameters.

Read from the plugin cache (zoo.plugin.catalog): no plugin module and no torch is imported.
"""

from __future__ import annotations

import json

from zoo.errors import unknown
from zoo.plugin import catalog, discovery, registry
from zoo.verbs import Verb

KIND_ALIASES = {
    "interpretations": "interpretation",
    "explain": "interpretation",
    "model": "architecture",
    "models": "architecture",
    "architectures": "architecture",
    "heads": "head",
    "aug": "augmentation",
    "augmentations": "augmentation",
    "data": "dataset",
    "datasets": "dataset",
    "transfers": "transfer",
}

VERB = Verb(
    "list",
    f"list plugins (kinds: {', '.join(registry.KINDS)}); --refresh rebuilds the plugin cache",
    positionals=(("[KIND [NAME]]", "a kind of plugin, then one plugin of it: its parameters, types and defaults"),),
    flags=(
        ("--errors", "the plugin packages that failed to load, with their tracebacks"),
        ("--refresh", "rebuild the plugin cache first"),
    ),
    examples=("zoo list architecture", "zoo list head classification"),
)


def run(args: list[str]) -> int:
    """Print the table, or one plugin's parameters."""
    show_errors, refresh = "--errors" in args, "--refresh" in args
    args = [a for a in args if a not in ("--errors", "--refresh")]
    kinds = list(registry.KINDS)
    if args:
        kind = KIND_ALIASES.get(args[0], args[0])
        if kind not in registry.registries:
            raise unknown("plugin kind", args[0], kinds + list(KIND_ALIASES))
        kinds = [kind]
    catalog.serve(refresh)  # from the plugin cache: no plugin module, no torch
    if len(args) >= 2:
        show_plugin(registry.get(kinds[0], args[1]))
        return 0
    rows = [(p.kind, p.name, p.summary, p.package) for k in kinds for p in registry.registries[k]]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "", "package")]) for i in range(4)]
    summary_w = max(20, min(90, 160 - widths[0] - widths[1] - widths[3]))
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'summary':<{summary_w}}  package")
    for kind, name, summary, package in rows:
        s = summary if len(summary) <= summary_w else summary[: summary_w - 3] + "..."
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {s:<{summary_w}}  {package}")
    if discovery.errors:
        print(
            f"\n{len(discovery.errors)} plugin package(s) failed to load"
            + ("" if show_errors else "; see: zoo list --errors")
        )
        if show_errors:
            for e in discovery.errors:
                print(f"\n--- {e.package} ({e.entry_point}): {e.error}\n{e.traceback}")
    return 0


def show_plugin(p) -> None:
    """One plugin: where it comes from, what it does, its tasks, minimum input size and parameters."""
    print(f"{p.kind} {p.name}  ({p.package}, {p.module})\n  {p.summary}")
    if p.tasks:
        print(f"  tasks: {', '.join(p.tasks)}")
    if p.min_size() is not None:
        print(f"  min input size: {p.min_size()}x{p.min_size()} (with the defaults)")
    for prm in p.params:
        default = "required" if prm.default is registry.REQUIRED else json.dumps(prm.default)
        print(f"  {prm.name:<18} {prm.describe():<34} default {default}")
