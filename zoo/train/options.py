"""Where a config's options come from: zoo's conf/, plugin packages' config folders, and the plugins themselves.

Every registered plugin is a config-group option (`model=lenet5`), served by the Hydra config source
zoo.train.sources.PluginConfigSource (scheme zoo-plugins://); a plugin package's conf/ folder is read by
PackageConfigSource (scheme zoo-package://), where a bare plugin name means the package's own plugin
(`own_name`). This module imports no Hydra: the sources do, when zoo.train.config.store_configs registers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import zoo.conf
from zoo.errors import ZooError
from zoo.plugin import registry
from zoo.plugin.discovery import config_dirs
from zoo.train.schemas import GROUPS


def conf_dir() -> Path:
    """The folder of zoo's own YAML presets (shipped in the wheel as zoo.conf)."""
    return Path(zoo.conf.__file__).parent


PLUGINS_SCHEME = "zoo-plugins"  # every registered plugin as a config-group option: zoo-plugins://registry


def plugin_option(group: str, name: str):
    """The plugin that config-group option `group/name` stands for, or None: a plain name is the first plugin
    registered under it (a name two third parties share is refused later, when it is resolved), a qualified
    form (`zoo-acme:net`, `acme:net`) always its own plugin."""
    if group not in GROUPS:
        return None
    plugins = registry.registries[GROUPS[group]]
    if ":" not in name:
        return next(iter(plugins.registered(name)), None)
    try:
        return plugins.get(name)
    except ZooError:
        return None


PACKAGE_SCHEME = "zoo-package"  # a plugin package's conf/ on Hydra's search path: zoo-package:///abs/conf


def own_name(kind: str, name: str, package: str) -> str:
    """`name` as package `package`'s own configs mean it: its own plugin of that kind, by the qualified name
    (`zoo-acme:net`) when another package registers the name too; otherwise `name` unchanged."""
    if not isinstance(name, str) or ":" in name:
        return name
    entries = registry.registries[kind].registered(name)
    own = [p for p in entries if p.package == package]
    return own[0].qualified_name if own and len(entries) > 1 else name


def own_defaults(defaults: list, group: str, package: str) -> list:
    """A package config's defaults list with bare plugin names made the package's own (see own_name)."""
    out = []
    for entry in defaults:
        if isinstance(entry, str) and group in GROUPS and entry != "_self_" and "/" not in entry:
            entry = own_name(GROUPS[group], entry, package)
        elif isinstance(entry, dict) and len(entry) == 1:
            (key, value), where = next(iter(entry.items())), group
            target = str(key).split()[-1].split("@")[0]  # `override /model@pkg` -> /model
            target = target[1:] if target.startswith("/") else f"{where}/{target}".strip("/")
            if target in GROUPS:
                entry = {key: own_name(GROUPS[target], value, package)}
        out.append(entry)
    return out


def own_config(cfg: dict, group: str, header: dict, package: str) -> dict:
    """A package config (preset or experiment) whose bare plugin names, in its defaults list and as keys of
    `aug.ops`, mean the package's own plugins whatever else is installed."""
    if isinstance(cfg.get("defaults"), list):
        cfg["defaults"] = own_defaults(cfg["defaults"], group, package)
    node = cfg if group == "aug" else cfg.get("aug") if header.get("package") == "_global_" else None
    ops = node.get("ops") if isinstance(node, dict) else None
    if isinstance(ops, dict):
        node["ops"] = {own_name("augmentation", k, package): v for k, v in ops.items()}
    return cfg


def search_dirs() -> list[Path]:
    """zoo's conf/ and every plugin package's config folder, in search order."""
    return [conf_dir()] + [Path(d) for d in config_dirs()]


def searchpath_override(extra_dirs: Sequence[str | Path] = ()) -> str:
    """The `hydra.searchpath` override that adds plugin packages' config folders and `extra_dirs` (a user's
    own groups and experiments) after zoo's own, and last the plugins themselves (zoo-plugins://)."""
    extra = [f"{PACKAGE_SCHEME}://{Path(d).resolve()}" for d in search_dirs()[1:]]
    extra += [f"file://{Path(d).resolve()}" for d in extra_dirs]
    extra += [f"{PLUGINS_SCHEME}://registry"]
    return "hydra.searchpath=[" + ",".join(f"'{e}'" for e in extra) + "]"


def group_options(group: str, extra_dirs: Sequence[str | Path] = ()) -> list[str]:
    """Every option of a config group: plugin names, their qualified names, and YAML presets."""
    names = set()
    if group in GROUPS:
        for p in registry.registries[GROUPS[group]]:
            names.update({p.name, *p.qualified_names})
    names.discard("")
    for d in [*search_dirs(), *map(Path, extra_dirs)]:
        gd = d / group
        if gd.is_dir():
            names.update(f.stem for f in gd.glob("*.yaml") if not f.stem.startswith("base_"))
    return sorted(names)
