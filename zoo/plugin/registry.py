"""One small registry per plugin kind.

A plugin is a factory (function or class) with typed keyword arguments and a docstring whose first
line is its summary. Registering it records kind, name, summary, the package it came from and a
parameter schema read from its signature, so it is selectable and tunable by Hydra override with no
YAML file. What each kind's factory must return:

- architecture -> zoo.model.Backbone           (context: in_channels)
- head         -> zoo.model.Head               (context: feature_info, info; backbone if asked for)
- augmentation -> a torchvision transforms.v2 transform, or a zoo.data.BatchTransform (context: info)
- transfer     -> zoo.model.Transfer
- dataset      -> zoo.data.DataBundle          (context: seed)
- interpretation -> zoo.model.Explainer        (`zoo explain METHOD`; it gets the model and images when it runs)

Context parameters are filled in by zoo from the experiment, never from config. Registration is
checked when it happens: an untyped or unserialisable parameter, a default outside its own declared
range, or Annotated metadata zoo does not know is refused with a message for the plugin's author.

Parameters are read and checked by zoo.params (Range, Length, Param, param); each kind's rules (its context,
what it returns, what else it may declare) are in zoo.plugin.kinds; how the registries get their plugins (the
loader discovery installs, records served from the catalog's cache, warnings) is zoo.plugin.loading. Every name
of those modules that code reads here (`registry.KINDS`, `registry.load_code`, ...) is still importable here.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, close_matches, unknown
from zoo.params import (  # noqa: F401  (Range, Length, Param, param: re-exported for plugin code)
    CONSTRAINTS,
    REQUIRED,
    Length,
    Param,
    PluginDefinitionError,
    Range,
    coerce,
    param,
    read_params,
)
from zoo.plugin.kinds import CONTEXT, EXTRA, KINDS, OPTIONAL_CONTEXT, RETURNS, check_extra  # noqa: F401  (re-exported)
from zoo.plugin.kinds import check_returns as _check_returns
from zoo.plugin.loading import (  # noqa: F401  (re-exported: discovery, catalog and tests use them here)
    current_entry_point,
    current_package,
    issued,
    load,
    load_code,
    registries,
    serve_cached,
    serving_cache,
    set_loader,
    warn,
)
from zoo.version import PLUGIN_API_VERSION  # noqa: F401  (re-exported: discovery and scaffold read it here)

STANDARD_PACKAGE = "zoo"  # the distribution that ships the standard plugins (zoo.plugin.discovery re-exports it)

FUNCTION = "function"  # a cached record's min_size when the plugin declared a function of its parameters


class PluginError(ZooError):
    """A plugin raised an exception of its own while zoo built or checked it: one line naming the plugin, its
    package and the exception's first line (`ZOO_DEBUG=1` prints the traceback, kept as `__cause__`)."""


@dataclass(frozen=True)
class Plugin:
    """A registered plugin: its factory and everything zoo knows about it without calling it."""

    kind: str
    name: str
    factory: Callable
    summary: str
    package: str
    module: str
    params: tuple[Param, ...]
    context: tuple[str, ...]
    tasks: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    entry_point: str | None = None  # the name of the `zoo.plugins` entry point that loaded it
    # a record read from the catalog's cache: declarations only, `factory` None until `resolve()` imports the code
    cached: bool = field(default=False, compare=False)

    @property
    def qualified_name(self) -> str:
        """`package:name`, the unambiguous form used when two packages register one name."""
        return f"{self.package}:{self.name}"

    @property
    def qualifiers(self) -> set[str]:
        """Names that select this plugin's package in `package:name`: the distribution (`zoo-acme`), the same
        without its `zoo-` prefix (`acme`), the top-level module (`zoo_acme`) and the entry point's name."""
        names = {self.package, self.package.removeprefix("zoo-"), self.module.split(".")[0], self.entry_point}
        return {n for n in names if n}

    @property
    def qualified_names(self) -> list[str]:
        """Every `qualifier:name` form of this plugin."""
        return sorted(f"{q}:{self.name}" for q in self.qualifiers)

    def defaults(self) -> dict[str, Any]:
        """The configurable parameters and their defaults (REQUIRED where there is none)."""
        return {p.name: p.default for p in self.params}

    def supports(self, task: str) -> bool:
        """Whether this plugin declares support for `task` (None means every task)."""
        return self.tasks is None or task in self.tasks

    def min_size(self, values: dict[str, Any] | None = None) -> int | None:
        """The smallest input height and width an architecture declares it takes (`min_size=` when it
        registers: an int, or a function of its parameters such as `lambda depth: 2**depth`), for `values`
        (checked parameter values; the defaults where missing); None when it declares none."""
        declared = self.extra.get("min_size")
        if self.cached and declared == FUNCTION:  # a function: its value for the defaults is in the cache
            known = self.extra.get("min_size_of_defaults")
            return known if values is None and known is not None else self.resolve().min_size(values)
        if not callable(declared):
            return declared
        args = {**self.defaults(), **(values or {})}
        wanted = inspect.signature(declared).parameters
        with self.blame("in its min_size function"):
            return int(declared(**{k: v for k, v in args.items() if k in wanted}))

    def check_values(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Validate config values against the schema; return them ready to pass to the factory."""
        params = {p.name: p for p in self.params}
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in params:
                raise self.unknown_key(key, where)
            out[key] = coerce(params[key], value, f"{where}.{key}")
        for p in self.params:
            if p.name not in out:
                if p.default is REQUIRED:
                    raise ZooError(f"{where}.{p.name} is required ({p.describe()}); set it with {where}.{p.name}=VALUE")
                out[p.name] = p.default
        return out

    def unknown_key(self, key: str, where: str) -> ZooError:
        """The error for a key this plugin does not take: names the key, the plugin, close matches and where
        to see its parameters (`unknown key 'aug.ops.hflip.pp' for augmentation 'hflip'; did you mean 'p'?`)."""
        names = [p.name for p in self.params]
        msg = f"unknown key '{where}.{key}' for {self.kind} {self.name!r}"
        matches = close_matches(str(key), names)
        if matches:
            msg += "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
        elif names:
            msg += "; it takes: " + ", ".join(names) + ";"
        else:
            msg += ", which takes no parameters;"
        return ZooError(f"{msg} see: zoo list {self.kind} {self.name}")

    def build(self, context: dict[str, Any], values: dict[str, Any], where: str | None = None) -> Any:
        """Call the factory with checked config values plus the context it asks for."""
        if self.cached:
            return self.resolve().build(context, values, where)
        kwargs = self.check_values(values, where or self.kind)
        missing = [c for c in self.context if c not in context]
        if missing:
            raise RuntimeError(f"zoo did not provide context {missing} to {self.kind} {self.name!r}")
        kwargs.update({c: context[c] for c in self.context})
        with self.blame("while being built"):
            return self.factory(**kwargs)

    def resolve(self) -> Plugin:
        """The plugin with its code: itself, or for a record served from the catalog's cache the plugin its
        package registers when it is imported (every plugin package is imported then, as discovery does)."""
        if not self.cached:
            return self
        load_code()
        for plugin in registries[self.kind].registered(self.name):
            if plugin.package == self.package:
                return plugin
        raise ZooError(
            f"{self.kind} {self.name!r} of package {self.package!r} was in zoo's plugin cache but the package no "
            f"longer registers it; rebuild the cache: zoo list --refresh"
        )

    @contextlib.contextmanager
    def blame(self, doing: str) -> Iterator[None]:
        """Turn any exception but a ZooError raised inside into the one-line PluginError naming this plugin and
        its package, `doing` saying when (`while being built`, `in setup(model)`); the original is its cause."""
        try:
            yield
        except ZooError:
            raise
        except Exception as e:
            lines = str(e).strip().splitlines()
            first = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
            raise PluginError(
                f"{self.kind} {self.name!r} of package {self.package!r} raised {first} ({doing}; "
                f"ZOO_DEBUG=1 shows the traceback)"
            ) from e


class Registry:
    """The plugins of one kind, by name; a name registered twice by different objects is an error."""

    def __init__(self, kind: str, check: Callable[[Plugin], None] | None = None):
        self.kind = kind
        self._plugins: dict[str, list[Plugin]] = {}
        self._check = check

    def register(
        self, name: str | None = None, *, tasks: tuple[str, ...] | list[str] | None = None, **extra: Any
    ) -> Callable:
        """Decorator: register a factory under `name` (default: its __name__)."""

        def deco(factory: Callable) -> Callable:
            self.add(factory, name or factory.__name__, tasks=tasks, **extra)
            return factory

        return deco

    def add(self, factory: Callable, name: str, tasks=None, **extra: Any) -> Plugin:
        """Register a factory; idempotent for the same object, an error for a different one."""
        if not name.replace("_", "").replace("-", "").isalnum() or ":" in name:
            raise PluginDefinitionError(f"{self.kind} name {name!r} must be letters, digits, '_' or '-'")
        doc = inspect.getdoc(factory) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        if not summary:
            raise PluginDefinitionError(
                f"{factory.__module__}.{factory.__qualname__}: a plugin needs a docstring; "
                f"its first line is the summary `zoo list` shows"
            )
        package = current_package.get() or factory.__module__.split(".")[0]
        asked = inspect.signature(factory).parameters
        context = CONTEXT[self.kind] + tuple(c for c in OPTIONAL_CONTEXT.get(self.kind, ()) if c in asked)
        plugin = Plugin(
            self.kind,
            name,
            factory,
            summary,
            package,
            factory.__module__,
            read_params(factory, context),
            context,
            tuple(tasks) if tasks is not None else None,
            dict(extra),
            current_entry_point.get() if current_package.get() else None,
        )
        check_extra(plugin)
        if self._check:
            self._check(plugin)
        entries = self._plugins.setdefault(name, [])
        for other in entries:
            if other.factory is factory or _same_definition(other.factory, factory):
                return other  # the same module imported again (Hydra re-runs modules): idempotent
            if other.package == plugin.package:
                raise PluginDefinitionError(
                    f"{self.kind} {name!r} is registered twice in package {plugin.package!r}: "
                    f"by {other.module} and by {plugin.module}"
                )
        if any(o.package == STANDARD_PACKAGE for o in entries):
            # A third party never silently replaces a standard plugin: zoo's keeps the plain name.
            warn(
                f"package {plugin.package!r} registers {self.kind} {name!r}, which zoo already provides; "
                f"{name!r} stays zoo's, theirs is {plugin.qualified_name!r}"
            )
        entries.append(plugin)
        return plugin

    def get(self, name: str) -> Plugin:
        """Look up a plugin by name or `package:name`, with close matches when it is unknown."""
        load()
        if ":" in name:
            package, _, short = name.partition(":")
            for p in self._plugins.get(short, []):
                if package in p.qualifiers:
                    return p
            raise unknown(
                self.kind,
                name,
                [p.qualified_name for ps in self._plugins.values() for p in ps],
                see=f"zoo list {self.kind}",
            )
        entries = self._plugins.get(name)
        if not entries:
            raise unknown(self.kind, name, self._plugins, see=f"zoo list {self.kind}")
        if len(entries) > 1:
            standard = [p for p in entries if p.package == STANDARD_PACKAGE]
            if standard:  # a third-party package never silently replaces a standard plugin
                return standard[0]
            who = " and by ".join(f"package {p.package!r} ({p.module})" for p in entries)
            raise ZooError(
                f"{self.kind} {name!r} is registered by {who}; choose one with a qualified name: "
                + " or ".join(repr(p.qualified_name) for p in entries)
            )
        return entries[0]

    def registered(self, name: str) -> list[Plugin]:
        """Every plugin registered under the plain `name`, whichever package (none: an empty list)."""
        load()
        return list(self._plugins.get(name, []))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        load()
        return sorted(self._plugins)

    def __iter__(self) -> Iterator[Plugin]:
        load()
        for name in sorted(self._plugins):
            yield from self._plugins[name]

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except ZooError:
            return False

    def remove_package(self, package: str) -> None:
        """Forget every plugin of `package` (used when its import fails half-way)."""
        for name in list(self._plugins):
            self._plugins[name] = [p for p in self._plugins[name] if p.package != package]
            if not self._plugins[name]:
                del self._plugins[name]


def _same_definition(a: Callable, b: Callable) -> bool:
    """A module executed twice defines new objects for the same plugin: treat them as one."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    )


registries.update(
    {
        "architecture": Registry("architecture", _check_returns("Backbone")),
        "head": Registry("head", _check_returns("Head")),
        "augmentation": Registry("augmentation"),
        "transfer": Registry("transfer", _check_returns("Transfer")),
        "dataset": Registry("dataset"),
        "interpretation": Registry("interpretation", _check_returns("Explainer")),
    }
)


class _Register:
    """`@register.architecture("name")`, `@register.head(...)`, and so on."""

    def __getattr__(self, kind: str) -> Callable:
        if kind not in registries:
            raise AttributeError(f"no plugin kind {kind!r}; kinds are {', '.join(KINDS)}")
        return registries[kind].register


register = _Register()


def get(kind: str, name: str) -> Plugin:
    """Look up one plugin of one kind."""
    if kind not in registries:
        raise unknown("plugin kind", kind, KINDS)
    return registries[kind].get(name)


def declared_hook(kind: str, node: dict, key: str, where: str) -> tuple[Plugin, Any, dict] | None:
    """The function a plugin declared as `key` when it registered (an architecture's weights_check, a dataset's
    inventory), for the config node that names it (`node["name"]`): (the plugin, the function, the node's other
    values checked against the plugin's parameters), or None when it declared none."""
    values = dict(node)
    plugin = get(kind, values.pop("name")).resolve()  # a record served from the plugin cache holds no functions
    hook = plugin.extra.get(key)
    if hook is None:
        return None
    return plugin, hook, plugin.check_values(values, where)
