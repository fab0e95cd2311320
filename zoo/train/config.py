"""Compose and check an experiment's config: every problem is one ZooError line before any work.

Hydra composes zoo's conf/ presets, plugin packages' config folders and every registered plugin as a
config-group option (zoo.train.options, zoo.train.sources); the schemas are zoo.train.schemas, and a sweep's
overrides are expanded by zoo.train.sweeps. Everything is validated before any work: unknown option names,
unknown keys, wrong types, bad choices and values outside a declared range raise ZooError with one line
naming the bad value. zoo's own nodes (trainer, export) declare their constraints on their fields with
`declared(default, Range(...) or Literal[...])` and are checked by the registry's code, as plugins are.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, get_type_hints

from zoo.errors import ZooError, close_matches, unknown
from zoo.params import Param, Range, param
from zoo.plugin import registry
from zoo.train.options import conf_dir, group_options, searchpath_override
from zoo.train.schemas import (
    ALL_GROUPS,
    GROUPS,
    STRUCTURED,
    AugConfig,
    Config,
    ExportConfig,
    TrainerConfig,
    omegaconf_node,
)
from zoo.train.sweeps import parse_overrides, raw_values

_stored = {"done": False}


def store_configs() -> None:
    """Register zoo's schemas in Hydra's ConfigStore and the config sources of plugins and packages (once)."""
    if _stored["done"]:
        return
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from zoo.train.sources import PackageConfigSource, PluginConfigSource  # lazy: Hydra, only to compose

    Plugins.instance().register(PackageConfigSource)  # plugin packages' conf/ folders, their names their own
    Plugins.instance().register(PluginConfigSource)  # every plugin as a config-group option
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="trainer", name="base_trainer", node=omegaconf_node(TrainerConfig))
    cs.store(group="export", name="base_export", node=omegaconf_node(ExportConfig))
    cs.store(group="aug", name="base_aug", node=AugConfig)
    _stored["done"] = True


def _check_group_choices(parsed, extra_dirs: Sequence[str | Path] = ()) -> None:
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or "." in key or key.startswith("hydra"):
            continue
        if key in ALL_GROUPS:
            for v in raw_values(o):
                if v is None or v == "null":
                    continue
                options = group_options(key, extra_dirs)
                if v not in options:
                    shown = options if ":" in v else [o for o in options if ":" not in o]
                    raise unknown(key, v, shown, see=f"zoo list {GROUPS[key]}" if key in GROUPS else f"zoo list {key}")


def _check_keys(parsed, base_cfg) -> None:
    from omegaconf import OmegaConf

    for o in parsed:
        key = o.key_or_group
        if (
            o.is_add()
            or o.is_force_add()
            or o.is_delete()
            or key.startswith("hydra")
            or (key in ALL_GROUPS and o.package is None)
        ):
            continue
        parts = key.split(".")
        for i in range(1, len(parts) + 1):
            sub, parent = ".".join(parts[:i]), ".".join(parts[: i - 1])
            if parent.startswith("aug.ops."):
                # augmentation parameters: checked against the plugin's own schema
                plugin = registry.get("augmentation", parts[2])
                if len(parts) > 4 or parts[3] not in {p.name for p in plugin.params}:
                    raise plugin.unknown_key(".".join(parts[3:]), ".".join(parts[:3]))
                break
            node = OmegaConf.select(cfg=base_cfg, key=parent) if parent else base_cfg
            if not OmegaConf.is_dict(node):
                break
            if parts[i - 1] not in list(node.keys()):  # `in` is False for MISSING values
                options = [f"{parent}.{k}" if parent else str(k) for k in node]
                hint = close_matches(sub, options)
                msg = f"unknown config key '{sub}'"
                msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
                raise ZooError(msg + " see: zoo train --cfg job (or +KEY=VALUE to add a key)")


def _one_line(e: Exception) -> str:
    text = str(e)
    full_key = re.search(r"full_key:\s*(\S+)", text)
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    cause = e.__cause__
    if cause is not None and ("Could not override" in first or "Error merging" in first or not full_key):
        inner = str(cause).strip().splitlines()
        if inner:
            first = f"{first.rstrip('.')}: {inner[0]}"
            full_key = full_key or re.search(r"full_key:\s*(\S+)", str(cause))
    if full_key and full_key.group(1) not in first:
        first += f" (key: {full_key.group(1)})"
    return first


def _hydra_compose(overrides: list[str], with_hydra: bool):
    """One composition through Hydra's compose API (zoo's conf/ as the primary config folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="zoo"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=with_hydra)


def compose(overrides: list[str], *, with_hydra: bool = False, extra_dirs: Sequence[str | Path] = ()):
    """Compose and check the experiment config for `overrides` (no run), once; ZooError on any problem.

    `with_hydra` keeps the `hydra` node (run directory, logging). `extra_dirs` are config folders searched
    after zoo's own and the plugin packages'.
    """
    from hydra.core.global_hydra import GlobalHydra

    store_configs()
    for d in extra_dirs:
        if not Path(d).is_dir():
            raise ZooError(f"--config-dir {str(d)!r} is not a folder (it adds config groups and experiments)")
    parsed = parse_overrides(overrides)
    _check_group_choices(parsed, extra_dirs)
    extra = [o for o in [searchpath_override(extra_dirs)] if o]
    GlobalHydra.instance().clear()
    try:
        try:
            cfg = _hydra_compose(overrides + extra, with_hydra)
        except Exception as e:  # say which key is wrong and what is close, as Hydra's message does not
            groups = [o.input_line for o in parsed if _is_group_choice(o)]
            GlobalHydra.instance().clear()
            try:  # name the wrong key and what is close, when the groups alone compose
                _check_keys(parsed, _hydra_compose(groups + extra, False))
            except ZooError:
                raise
            except Exception:
                pass  # they do not (a config file that is not YAML): Hydra's own first line says why
            raise ZooError(_one_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
    _check_keys(parsed, cfg)
    check(job_config(cfg) if with_hydra else cfg)
    return cfg


def _is_group_choice(o) -> bool:
    key = o.key_or_group
    return key in ALL_GROUPS and "." not in key and not o.is_sweep_override() and not o.is_delete()


def job_config(cfg):
    """The config without its `hydra` node: what a job sees."""
    from omegaconf import OmegaConf, open_dict

    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    with open_dict(job):
        job.pop("hydra", None)
    return job


def to_plain(cfg) -> dict:
    """The resolved config as plain containers (what checkpoints and cards store)."""
    from omegaconf import OmegaConf

    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:
        raise ZooError(_one_line(e)) from None
    plain.pop("hydra", None)
    return plain


def env_keys(cfg, prefix: str = "") -> list[str]:
    """Keys whose values come from ${oc.env:...}: kept out of exported metadata and model cards."""
    from omegaconf import OmegaConf

    out = []
    container = OmegaConf.to_container(cfg, resolve=False) if not isinstance(cfg, (dict, list)) else cfg
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, (dict, list)):
            out += env_keys(v, key + ".")
        elif isinstance(v, str) and "oc.env" in v:
            out.append(key)
    return out


def check(cfg) -> dict:
    """Semantic checks Hydra cannot make: plugin names in presets, plugin parameters, choices, ranges."""
    plain = to_plain(cfg)
    _seed_param().check(plain.get("seed"), "seed")  # torch and numpy take seeds in [0, 2**63)
    for group, kind in GROUPS.items():
        node = dict(plain.get(group) or {})
        if "name" not in node:
            raise ZooError(
                f"config group {group!r} has no plugin selected; choose one with {group}=NAME (see: zoo list {kind})"
            )
        plugin = registry.get(kind, node.pop("name"))
        plugin.check_values(node, group)
    ops = (plain.get("aug") or {}).get("ops")
    ops = {} if ops is None else ops
    if not isinstance(ops, dict):  # `aug.ops=` is an empty text, not "no ops"
        raise ZooError(
            f"aug.ops={ops!r} is not a mapping of augmentation name -> parameters; for none: aug=none or aug.ops={{}}"
        )
    for op, params in ops.items():
        plugin = registry.get("augmentation", op)
        if params is not None and not isinstance(params, dict):
            raise ZooError(f"aug.ops.{op} must be a mapping of parameters (or {{}}), got {params!r}")
        plugin.check_values(dict(params or {}), f"aug.ops.{op}")
    for node in STRUCTURED:
        check_node(node, plain.get(node))
    return plain


@functools.cache
def _seed_param() -> Param:
    return param("seed", Annotated[int, Range(0)], 0, where="zoo.train.config.Config")


@functools.cache
def schema_params(schema: type) -> dict[str, Param]:
    """The Params of a structured schema's fields: each plain type plus what `declared` adds to it."""
    hints = get_type_hints(schema)
    params = {}
    for f in dataclasses.fields(schema):
        extra = f.metadata.get("zoo", ())
        literal = [c for c in extra if typing.get_origin(c) is Literal]
        hint = hints[f.name]
        if literal:
            ann = list[literal[0]] if typing.get_origin(hint) is list else literal[0]
        else:
            ann = Annotated[(hint, *extra)] if extra else hint
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        params[f.name] = param(f.name, ann, default, where=f"{schema.__module__}.{schema.__qualname__}")
    return params


def check_node(node: str, values: dict | None) -> None:
    """Check one structured node's plain values (`trainer`, `export`): no unknown keys, each value declared."""
    params = schema_params(STRUCTURED[node])
    values = values or {}
    for key in values:
        if key not in params:
            hint = [f"{node}.{h}" for h in close_matches(str(key), params)]
            msg = f"unknown config key '{node}.{key}'"
            raise ZooError(msg + (f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""))
    checks = {f.name: f.metadata.get("check") for f in dataclasses.fields(STRUCTURED[node])}
    for name, p in params.items():
        if name not in values:
            raise ZooError(f"{node}.{name} is required ({p.describe()}); set it with {node}.{name}=VALUE")
        p.check(values[name], f"{node}.{name}")
        if checks.get(name):
            checks[name](values[name], f"{node}.{name}")
