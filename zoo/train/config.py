"""Structured schemas, config-group entries generated from plugin signatures, and validation.

Every registered plugin becomes a Hydra config-group option (`model=lenet5`) whose node is a dataclass
made from the factory's signature, so `model.padding_mode=reflect` is type-checked with no YAML file.
YAML under conf/ holds presets only. Everything is validated before any work: unknown option names,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_type_hints

from zoo.errors import ZooError, close_matches, unknown
from zoo.plugin.registry import Param, Range
from zoo.tasks import EXTRAS

# config group -> plugin kind; `aug` holds a dict of augmentation ops instead of one plugin.
GROUPS = {"data": "dataset", "model": "architecture", "head": "head", "transfer": "transfer"}
ALL_GROUPS = ("data", "model", "head", "aug", "transfer", "trainer", "export", "experiment")


def declared(default: Any, *constraints: Any, check: Any = None) -> Any:
    """A schema field whose value zoo checks like a plugin parameter: `Range(...)` or `Literal[...]` (on each
    item of a list field); `check`, a function of (value, key) that raises ZooError, for a value no type and
    range describe (`auto` or a count)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"zoo": constraints, "check": check})
    return field(default=default, metadata={"zoo": constraints, "check": check})


def _auto_or_count(value: Any, key: str) -> None:
    if not (value == "auto" or (isinstance(value, str) and value.isdigit())):
        raise ZooError(f"{key}={value!r} must be auto or a whole number >= 0")


_POSITIVE, _AT_LEAST_0, _FRACTION = Range(0, min_exclusive=True), Range(0), Range(0, 1)


@dataclass
class TrainerConfig:
    """The training loop's settings (OmegaConf sees the plain types; check() enforces what `declared` adds)."""

    max_epochs: int = declared(30, _AT_LEAST_0)
    batch_size: int = declared(64, Range(1))
    eval_batch_size: int = declared(256, Range(1))
    optimizer: str = declared("adamw", Literal["adamw", "sgd"])
    lr: float = declared(3e-3, _POSITIVE)
    momentum: float = declared(0.9, Range(0, 1, max_exclusive=True))  # SGD momentum; 1 never forgets
    weight_decay: float = declared(1e-4, _AT_LEAST_0)  # L2 (decoupled in AdamW); not on biases and norm weights
    l1: float = declared(0.0, _AT_LEAST_0)  # L1 penalty on weights, added to the loss
    scheduler: str = declared("cosine", Literal["cosine", "step", "none"])
    warmup_epochs: int = declared(0, _AT_LEAST_0)
    step_size: int = declared(10, Range(1))  # step scheduler: epochs between decays
    gamma: float = declared(0.1, Range(0, 1, min_exclusive=True))  # step scheduler: decay factor
    grad_clip: float = declared(0.0, _AT_LEAST_0)  # max gradient norm; 0 = off
    monitor: str = "auto"  # a validation metric name, or auto (the head's own choice)
    patience: int = declared(0, _AT_LEAST_0)  # early stopping after this many epochs without improvement; 0 = off
    # DataLoader worker processes; auto: as many as pay on this device and data (zoo.train.accel.resolve_workers)
    num_workers: str = declared("auto", check=_auto_or_count)
    threads: int = declared(0, _AT_LEAST_0)  # CPU threads for torch's ops; 0 = torch's default. 1 per job in sweeps
    device: str = declared("auto", Literal["auto", "cpu", "cuda"])
    # autocast's compute precision; weights, checkpoints and exports stay float32. 16-mixed adds a GradScaler
    precision: str = declared("32", Literal["32", "bf16-mixed", "16-mixed"])
    channels_last: bool = False  # NHWC memory format for model and batches (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the model (a one-off compilation before the first steps)
    devices: int = declared(1, Range(1))  # N > 1: `zoo train` starts torchrun with N processes (DDP) on this machine
    progress: bool = True
    resume: bool = False  # continue from checkpoints/last.pt in the run directory, if there is one
    logger: str = declared("none", Literal["none", "csv", "tensorboard"])  # stream the scalars while training


@dataclass
class ExportConfig:
    """ONNX export settings."""

    opset: int = declared(18, Range(17))  # zoo exports opset 17 or newer; the uint8 input form needs 18
    # uint8: the graph takes decoded RGB pixels and resizes, converts and scales them itself (zoo.deploy.preprocess);
    # float32: the client resizes and scales to [0, 1] (the form of zoo's exports before zoo.format 3)
    input: str = declared("uint8", Literal["uint8", "float32"])
    parity_tolerance: float = declared(1e-4, _AT_LEAST_0)  # float outputs: max |ONNX - PyTorch| (relative above 1)
    parity_mismatch: float = declared(0.001, _FRACTION)  # integer outputs: the fraction of elements allowed to differ
    parity_samples: int = declared(64, Range(1))
    # fp32; fp16 (half-precision graph, float32 input and outputs); int8 (static QDQ quantization, gated by the
    # run's monitored test metric)
    precision: str = declared("fp32", Literal["fp32", "fp16", "int8"])
    max_metric_drop: float = declared(0.01, _AT_LEAST_0)  # int8: the most the monitored test metric may worsen
    calibration_samples: int = declared(256, Range(1))  # int8: train images that calibrate activation ranges
    calibration_method: str = declared("minmax", Literal["minmax", "entropy", "percentile"])
    # extra outputs after the task's own (zoo.tasks.EXTRAS): penultimate embeddings, class-activation maps
    outputs: list[str] = declared([], Literal[tuple(EXTRAS)])


# config node -> its schema: check() refuses keys the schema does not define (`+trainer.lrr=0.5`)
STRUCTURED = {"trainer": TrainerConfig, "export": ExportConfig}


@dataclass
class Config:
    """The top level: one node per group, plus the seed."""

    seed: int = 0
    data: Any = None
    model: Any = None
    head: Any = None
    aug: Any = None
    transfer: Any = None
    trainer: Any = None
    export: Any = None


@dataclass
class AugConfig:
    """An ordered dict of augmentation name -> its parameters."""

    ops: Any = field(default_factory=dict)


def conf_dir() -> Path:
    """The folder of zoo's own YAML presets (shipped in the wheel as zoo.conf)."""
    import zoo.conf

    return Path(zoo.conf.__file__).parent


def _omegaconf_type(p) -> Any:
    base = p.base
    t = list[base] if p.is_list else base  # type: ignore[valid-type]
    return Optional[t] if p.optional or p.default is None else t


def plugin_schema(plugin, name: str | None = None) -> type:
    """A dataclass for a plugin's node: `name` (how it was chosen) plus one typed field per parameter."""
    from omegaconf import MISSING

    from zoo.plugin.registry import REQUIRED

    fields: list = [("name", str, field(default=name or plugin.name))]
    for p in plugin.params:
        if p.default is REQUIRED:
            default = field(default=MISSING)
        elif isinstance(p.default, list):
            default = field(default_factory=lambda v=p.default: list(v))
        else:
            default = field(default=p.default)
        fields.append((p.name, _omegaconf_type(p), default))
    cls_name = re.sub(r"\W", "_", f"{plugin.kind}_{plugin.package}_{name or plugin.name}")
    return dataclasses.make_dataclass(cls_name, fields)


_stored = {"done": False}


def store_configs() -> None:
    """Register zoo's schemas in Hydra's ConfigStore and the config sources of plugins and packages (once)."""
    if _stored["done"]:
        return
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance().register(_package_source())  # plugin packages' conf/ folders, their names their own
    Plugins.instance().register(_plugin_source())  # every plugin as a config-group option
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="export", name="base_export", node=ExportConfig)
    cs.store(group="aug", name="base_aug", node=AugConfig)
    _stored["done"] = True


PLUGINS_SCHEME = "zoo-plugins"  # every registered plugin as a config-group option: zoo-plugins://registry


def plugin_option(group: str, name: str):
    """The plugin that config-group option `group/name` stands for, or None: a plain name is the first plugin
    registered under it (a name two third parties share is refused later, when it is resolved), a qualified
    form (`zoo-acme:net`, `acme:net`) always its own plugin."""
    from zoo.plugin import registry

    if group not in GROUPS:
        return None
    plugins = registry.registries[GROUPS[group]]
    if ":" not in name:
        return next(iter(plugins.registered(name)), None)
    try:
        return plugins.get(name)
    except ZooError:
        return None


def _plugin_source() -> type:
    """The Hydra config source of plugin options (scheme zoo-plugins://): `model=lenet5` is a node made from the
    plugin's signature (plugin_schema), built when Hydra loads it. Hydra's ConfigStore would convert every
    option of every installed package on each command; this converts the few a composition uses."""
    from hydra.core.object_type import ObjectType
    from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
    from omegaconf import OmegaConf

    from zoo.plugin import registry

    class PluginConfigSource(ConfigSource):
        @staticmethod
        def scheme() -> str:
            return PLUGINS_SCHEME

        def _option(self, config_path: str):
            group, _, name = self._normalize_file_name(config_path.strip("/")).removesuffix(".yaml").rpartition("/")
            return plugin_option(group, name), name

        def load_config(self, config_path: str) -> ConfigResult:
            plugin, name = self._option(config_path)
            if plugin is None:
                raise ConfigLoadError(f"Config not found : {self.full_path()}/{config_path}")
            node = OmegaConf.structured(plugin_schema(plugin, name))
            return ConfigResult(config=node, path=self.full_path(), provider=plugin.package, header={"package": None})

        def available(self) -> bool:
            return True

        def is_group(self, config_path: str) -> bool:
            return config_path.strip("/") in ("", *GROUPS)

        def is_config(self, config_path: str) -> bool:
            return self._option(config_path)[0] is not None

        def list(self, config_path: str, results_filter) -> list[str]:
            group = config_path.strip("/")
            if group == "":
                return sorted(GROUPS) if results_filter in (None, ObjectType.GROUP) else []
            if group not in GROUPS or results_filter not in (None, ObjectType.CONFIG):
                return []
            return sorted({n for p in registry.registries[GROUPS[group]] for n in (p.name, *p.qualified_names)})

    return PluginConfigSource


PACKAGE_SCHEME = "zoo-package"  # a plugin package's conf/ on Hydra's search path: zoo-package:///abs/conf


def own_name(kind: str, name: str, package: str) -> str:
    """`name` as package `package`'s own configs mean it: its own plugin of that kind, by the qualified name
    (`zoo-acme:net`) when another package registers the name too; otherwise `name` unchanged."""
    from zoo.plugin import registry

    if not isinstance(name, str) or ":" in name:
        return name
    entries = registry.registries[kind].registered(name)
    own = [p for p in entries if p.package == package]
    return own[0].qualified_name if own and len(entries) > 1 else name


def _own_defaults(defaults: list, group: str, package: str) -> list:
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


def _own_config(cfg: dict, group: str, header: dict, package: str) -> dict:
    """A package config (preset or experiment) whose bare plugin names, in its defaults list and as keys of
    `aug.ops`, mean the package's own plugins whatever else is installed."""
    if isinstance(cfg.get("defaults"), list):
        cfg["defaults"] = _own_defaults(cfg["defaults"], group, package)
    node = cfg if group == "aug" else cfg.get("aug") if header.get("package") == "_global_" else None
    ops = node.get("ops") if isinstance(node, dict) else None
    if isinstance(ops, dict):
        node["ops"] = {own_name("augmentation", k, package): v for k, v in ops.items()}
    return cfg


def _package_source() -> type:
    """The Hydra config source that reads a plugin package's conf/ folder (scheme zoo-package://): files as
    Hydra's own file source reads them, except that a bare name of a plugin the package registers, and another
    package too, means the package's own (`- net` in its model preset is `zoo-acme:net`)."""
    from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
    from omegaconf import OmegaConf

    from zoo.plugin.discovery import loaded

    class PackageConfigSource(ConfigSource):
        @staticmethod
        def scheme() -> str:
            return PACKAGE_SCHEME

        def _full(self, config_path: str) -> Path:
            return Path(self.path) / config_path

        def load_config(self, config_path: str) -> ConfigResult:
            path = self._full(self._normalize_file_name(config_path))
            if not path.is_file():
                raise ConfigLoadError(f"Config not found : {path}")
            text = path.read_text(encoding="utf-8")
            header = ConfigSource._get_header_dict(text[:512])
            cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=False) or {}
            here = Path(self.path).resolve()
            package = next((p.package for p in loaded if p.config_dir and Path(p.config_dir).resolve() == here), "")
            group = config_path.rpartition("/")[0]
            if package and isinstance(cfg, dict):
                cfg = _own_config(cfg, group, header, package)
            return ConfigResult(
                config=OmegaConf.create(cfg), path=self.full_path(), provider=self.provider, header=header
            )

        def available(self) -> bool:
            return self.is_group("")

        def is_group(self, config_path: str) -> bool:
            return self._full(config_path).is_dir()

        def is_config(self, config_path: str) -> bool:
            return self._full(self._normalize_file_name(config_path)).is_file()

        def list(self, config_path: str, results_filter) -> list[str]:
            files: list[str] = []
            for entry in sorted(self._full(config_path).iterdir()):
                self._list_add_result(files, f"{config_path}/{entry.name}".lstrip("/"), entry.name, results_filter)
            return sorted(set(files))

    return PackageConfigSource


def search_dirs() -> list[Path]:
    """zoo's conf/ and every plugin package's config folder, in search order."""
    from zoo.plugin.discovery import config_dirs

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
    from zoo.plugin import registry

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


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        raise ZooError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None


def _interval(o) -> list | None:
    """An interval sweep's two ends (a sweeper such as Optuna's samples between them), else None: a range
    checks every value between two ends that pass it."""
    from hydra.core.override_parser.types import IntervalSweep

    value = o.value()
    return [value.start, value.end] if isinstance(value, IntervalSweep) else None


def _values(o) -> list:
    """The raw values of an override (each value of a sweep; an interval's ends), unescaped."""
    if o.is_sweep_override():
        return [str(v) for v in _interval(o) or o.sweep_iterator()]
    return [str(o.value())] if o.value() is not None else [None]


def expand(overrides: list[str], limit: int = 256) -> list[list[str]]:
    """The override lists of a sweep (`-m` with a,b,c values, choice(...), range(...), and an interval's two
    ends): the cartesian product, capped."""
    import itertools

    parsed = _parse(overrides)
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            values = _interval(o) or o.sweep_string_iterator()
            choices.append([f"{key}={v}" for v in values])
        else:
            choices.append([o.input_line])
    combos = []
    for combo in itertools.product(*choices):
        combos.append(list(combo))
        if len(combos) >= limit:
            break
    return combos


def _check_group_choices(parsed, extra_dirs: Sequence[str | Path] = ()) -> None:
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or "." in key or key.startswith("hydra"):
            continue
        if key in ALL_GROUPS:
            for v in _values(o):
                if v is None or v == "null":
                    continue
                options = group_options(key, extra_dirs)
                if v not in options:
                    shown = options if ":" in v else [o for o in options if ":" not in o]
                    raise unknown(key, v, shown, see=f"zoo list {GROUPS[key]}" if key in GROUPS else f"zoo list {key}")


def _known_keys(cfg, path: str) -> list[str]:
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, path) if path else cfg
    try:
        return [str(k) for k in node] if node is not None else []
    except AttributeError:
        return []


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
                from zoo.plugin import registry

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
    parsed = _parse(overrides)
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
    from zoo.plugin import registry

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
    ops = (plain.get("aug") or {}).get("ops") or {}
    if not isinstance(ops, dict):
        raise ZooError("aug.ops must be a mapping of augmentation name -> parameters")
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
    from zoo.plugin import registry

    return registry.param("seed", Annotated[int, Range(0)], 0, where="zoo.train.config.Config")


@functools.cache
def schema_params(schema: type) -> dict[str, Param]:
    """The Params of a structured schema's fields: each plain type plus what `declared` adds to it."""
    from zoo.plugin import registry

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
        params[f.name] = registry.param(f.name, ann, default, where=f"{schema.__module__}.{schema.__qualname__}")
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
