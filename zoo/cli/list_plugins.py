"""`zoo list [KIND [NAME]]`: a table of plugins (kind, name, summary, package), or one plugin's parameters;
`zoo list layers run=DIR`: a trained model's layers, the names `layer=` of zoo explain takes.

Read from the plugin cache (zoo.plugin.catalog): no plugin module and no torch is imported (but for layers).
"""

from __future__ import annotations

import json
import textwrap

from zoo.errors import ZooError, unknown
from zoo.plugin import catalog, discovery, registry
from zoo.verbs import Option, Verb

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
    positionals=(
        (
            "[KIND [NAME] | layers]",
            "a kind of plugin, then one plugin of it: its parameters, types and defaults; or layers, with run= or "
            "checkpoint=: a trained model's layers (name, type, output shape), the names layer=NAME takes",
        ),
    ),
    options=(
        Option("run", help="zoo list layers: a run directory (its best checkpoint)", metavar="DIR"),
        Option("checkpoint", help="zoo list layers: a checkpoint file, instead of run=", metavar="FILE"),
    ),
    flags=(
        ("--errors", "the plugin packages that failed to load, with their tracebacks"),
        ("--refresh", "rebuild the plugin cache first"),
    ),
    examples=("zoo list architecture", "zoo list head classification", "zoo list layers run=runs/demo"),
)


def run(args: list[str]) -> int:
    """Print the table, or one plugin's parameters."""
    show_errors, refresh = "--errors" in args, "--refresh" in args
    args = [a for a in args if a not in ("--errors", "--refresh")]
    if (args and args[0] == "layers") or any("=" in a for a in args):
        return show_layers(args)
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
        described = prm.describe()
        if len(described) <= 60:
            print(f"  {prm.name:<18} {described:<34} default {default}")
            continue
        # a long choice (torchvision's 80 model names): the default first, then the choices wrapped under it
        print(f"  {prm.name:<18} {'one of:':<34} default {default}")
        for line in textwrap.wrap(described.replace("|", " "), 96):
            print(f"      {line}")


def show_layers(args: list[str]) -> int:
    """`zoo list layers run=DIR|checkpoint=FILE`: a trained model's modules, one line each."""
    if not args or args[0] != "layers":
        VERB.parse([a for a in args if "=" in a])  # a stranger is an unknown argument, with close matches
        raise ZooError(f"zoo list {' '.join(args)}: run= and checkpoint= go with layers only: zoo list layers run=DIR")
    kv = VERB.parse(args[1:])
    source = kv.get("run") or kv.get("checkpoint")
    if not source or len(kv) != 1:
        raise ZooError("zoo list layers needs one of run=DIR or checkpoint=FILE, e.g. zoo list layers run=runs/demo")
    from zoo.report.explain import layers  # lazy: torch, only for a model's layers

    rows = layers(source)
    widths = [max(len(r[i]) for r in rows + [("layer", "type", "")]) for i in range(2)]
    print(f"{'layer':<{widths[0]}}  {'type':<{widths[1]}}  output (one image)")
    for name, kind, shape in rows:
        print(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape}")
    return 0
