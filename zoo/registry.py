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

Context parameters are filled in by zoo from the experiment, never from config. Registration is
checked when it happens: an untyped or unserialisable parameter is refused with a message for the
plugin's author. This module imports no torch.
"""

from __future__ import annotations

import contextvars
import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, unknown

PLUGIN_API_VERSION = 1

KINDS = ("architecture", "head", "augmentation", "transfer", "dataset")

CONTEXT = {
    "architecture": ("in_channels",),
    "head": ("feature_info", "info"),
    "augmentation": ("info",),
    "transfer": (),
    "dataset": ("seed",),
}

# Context a factory gets only when its signature names it: a head that reuses the backbone's own
# layers (timm's pretrained classifier) asks for `backbone`; other heads never see it.
OPTIONAL_CONTEXT = {"head": ("backbone",)}

RETURNS = {
    "architecture": "Backbone",
    "head": "Head",
    "augmentation": "transform",
    "transfer": "Transfer",
    "dataset": "DataBundle",
}

REQUIRED = object()  # marks a parameter with no default
_BASE_TYPES = (int, float, bool, str)

# Set by zoo.discovery while it imports a plugin package, so registrations are attributed to it.
current_package: contextvars.ContextVar[str | None] = contextvars.ContextVar("zoo_current_package", default=None)


class PluginDefinitionError(ZooError):
    """A plugin's author broke the contract: raised at registration, not when the plugin is used."""


@dataclass(frozen=True)
class Param:
    """One configurable parameter of a plugin, read from its signature."""

    name: str
    annotation: Any
    default: Any
    choices: tuple | None = None
    optional: bool = False
    is_list: bool = False

    @property
    def base(self) -> type:
        """The scalar type (int, float, bool or str) of the value or of its items."""
        return _scalar_of(self.annotation)

    def describe(self) -> str:
        """A short human form of the type, for error messages and `zoo list`."""
        if self.choices:
            t = "|".join(str(c) for c in self.choices)
        else:
            t = self.base.__name__
        if self.is_list:
            t = f"list[{t}]"
        return f"{t} or null" if self.optional else t


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

    @property
    def qualified_name(self) -> str:
        """`package:name`, the unambiguous form used when two packages register one name."""
        return f"{self.package}:{self.name}"

    @property
    def qualifiers(self) -> set[str]:
        """Names that select this plugin's package in `package:name`: the distribution
        (`zoo-acme`), the same without its `zoo-` prefix (`acme`) and the top-level module."""
        return {self.package, self.package.removeprefix("zoo-"), self.module.split(".")[0]}

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

    def check_values(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Validate config values against the schema; return them ready to pass to the factory."""
        params = {p.name: p for p in self.params}
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in params:
                raise unknown(
                    f"key '{where}.{key}' for {self.kind}", key, params, see=f"zoo list {self.kind} {self.name}"
                )
            out[key] = _coerce(params[key], value, f"{where}.{key}")
        for p in self.params:
            if p.name not in out:
                if p.default is REQUIRED:
                    raise ZooError(f"{where}.{p.name} is required ({p.describe()}); set it with {where}.{p.name}=VALUE")
                out[p.name] = p.default
        return out

    def build(self, context: dict[str, Any], values: dict[str, Any], where: str | None = None) -> Any:
        """Call the factory with checked config values plus the context it asks for."""
        kwargs = self.check_values(values, where or self.kind)
        missing = [c for c in self.context if c not in context]
        if missing:
            raise RuntimeError(f"zoo did not provide context {missing} to {self.kind} {self.name!r}")
        kwargs.update({c: context[c] for c in self.context})
        return self.factory(**kwargs)


def _coerce(p: Param, value: Any, key: str) -> Any:
    if value is None:
        if p.optional:
            return None
        raise ZooError(f"{key}=null is not allowed; expected {p.describe()}")
    if p.is_list:
        if not isinstance(value, (list, tuple)):
            raise ZooError(f"{key}={value!r} is not a list; expected {p.describe()}")
        return [_coerce_scalar(p, v, key) for v in value]
    return _coerce_scalar(p, value, key)


def _coerce_scalar(p: Param, value: Any, key: str) -> Any:
    base = p.base
    ok = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ZooError(f"{key}={value!r} has the wrong type; expected {p.describe()}")
    if p.choices is not None and value not in p.choices:
        from zoo.errors import close_matches

        hint = close_matches(str(value), [str(c) for c in p.choices])
        msg = f"{key}={value!r} is not one of: " + ", ".join(str(c) for c in p.choices)
        raise ZooError(msg + (f"; did you mean {hint[0]!r}?" if hint else ""))
    return value


def _scalar_of(annotation: Any) -> type:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        return _scalar_of(next(a for a in args if a is not type(None)))
    if origin in (list, tuple):
        return _scalar_of(args[0])
    if origin is typing.Literal:
        return type(args[0])
    return annotation


def _param(factory: Callable, name: str, parameter: inspect.Parameter, hints: dict) -> Param:
    where = f"{factory.__module__}.{getattr(factory, '__qualname__', factory)}"
    if name not in hints:
        raise PluginDefinitionError(
            f"{where}: parameter {name!r} has no type annotation; annotate it (int, float, bool, str, Literal[...], list[...] or Optional[...])"
        )
    ann = hints[name]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    optional = False
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise PluginDefinitionError(
                f"{where}: parameter {name!r} has type {ann}; only Optional[X] unions are supported"
            )
        optional, ann = True, rest[0]
        origin, args = typing.get_origin(ann), typing.get_args(ann)
    is_list = False
    if origin in (list, tuple):
        if (
            not args
            or (origin is tuple and (len(args) != 2 or args[1] is not Ellipsis))
            or (origin is list and len(args) != 1)
        ):
            raise PluginDefinitionError(
                f"{where}: parameter {name!r} has type {hints[name]}; use list[int|float|str|bool] or tuple[X, ...]"
            )
        is_list, ann = True, args[0]
        origin, args = typing.get_origin(ann), typing.get_args(ann)
    choices = None
    if origin is typing.Literal:
        if not args or len({type(a) for a in args}) != 1 or type(args[0]) not in _BASE_TYPES:
            raise PluginDefinitionError(
                f"{where}: parameter {name!r}: Literal choices must all be int, float, bool or str"
            )
        choices = tuple(args)
    elif ann not in _BASE_TYPES:
        raise PluginDefinitionError(
            f"{where}: parameter {name!r} has type {hints[name]!r}, which cannot be set from a config; use int, float, bool, str, Literal[...], list[...] or Optional[...]"
        )
    default = REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default
    p = Param(name, hints[name], default, choices, optional, is_list)
    if default is not REQUIRED:
        if isinstance(default, tuple):
            default = list(default)
            p = Param(name, hints[name], default, choices, optional, is_list)
        try:
            _coerce(p, default, name)
        except ZooError as e:
            raise PluginDefinitionError(f"{where}: default of {name!r} does not match its annotation: {e}") from None
    return p


def read_params(factory: Callable, context: tuple[str, ...]) -> tuple[Param, ...]:
    """Read the configurable parameters from a factory's signature (context names excluded)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception as e:  # an annotation that does not resolve is the author's to fix
        raise PluginDefinitionError(
            f"{factory.__module__}.{factory.__qualname__}: type annotations do not resolve: {e}"
        ) from None
    sig = inspect.signature(factory)
    params = []
    for name, parameter in sig.parameters.items():
        if name in context or name == "self":
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise PluginDefinitionError(
                f"{factory.__module__}.{factory.__qualname__}: *args/**kwargs cannot be configured; list the parameters with types"
            )
        if name in ("name", "_target_"):
            raise PluginDefinitionError(
                f"{factory.__module__}.{factory.__qualname__}: parameter name {name!r} is reserved by zoo; rename it"
            )
        params.append(_param(factory, name, parameter, hints))
    return tuple(params)


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
                f"{factory.__module__}.{factory.__qualname__}: a plugin needs a docstring; its first line is the summary `zoo list` shows"
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
        )
        if self._check:
            self._check(plugin)
        entries = self._plugins.setdefault(name, [])
        for other in entries:
            if other.factory is factory or _same_definition(other.factory, factory):
                return other  # the same module imported again (Hydra re-runs modules): idempotent
            if other.package == plugin.package:
                raise PluginDefinitionError(
                    f"{self.kind} {name!r} is registered twice in package {plugin.package!r}: by {other.module} and by {plugin.module}"
                )
        from zoo.discovery import STANDARD_PACKAGE

        if any(o.package == STANDARD_PACKAGE for o in entries):
            import sys

            # A third party never silently replaces a standard plugin: zoo's keeps the plain name.
            print(
                f"zoo: warning: package {plugin.package!r} registers {self.kind} {name!r}, which zoo already provides; "
                f"{name!r} stays zoo's, theirs is {plugin.qualified_name!r}",
                file=sys.stderr,
            )
        entries.append(plugin)
        return plugin

    def get(self, name: str) -> Plugin:
        """Look up a plugin by name or `package:name`, with close matches when it is unknown."""
        from zoo.discovery import discover

        discover()
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
            from zoo.discovery import STANDARD_PACKAGE

            standard = [p for p in entries if p.package == STANDARD_PACKAGE]
            if standard:  # a third-party package never silently replaces a standard plugin
                return standard[0]
            who = " and by ".join(f"package {p.package!r} ({p.module})" for p in entries)
            raise ZooError(
                f"{self.kind} {name!r} is registered by {who}; choose one with a qualified name: "
                + " or ".join(repr(p.qualified_name) for p in entries)
            )
        return entries[0]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        from zoo.discovery import discover

        discover()
        return sorted(self._plugins)

    def __iter__(self) -> Iterator[Plugin]:
        from zoo.discovery import discover

        discover()
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


def _check_returns(base_name: str) -> Callable[[Plugin], None]:
    def check(plugin: Plugin) -> None:
        import zoo.model as m

        base = getattr(m, base_name)
        f = plugin.factory
        if inspect.isclass(f):
            ok = issubclass(f, base)
        else:
            try:
                ret = typing.get_type_hints(f).get("return")
            except Exception:
                ret = None
            ok = inspect.isclass(ret) and issubclass(ret, base)
        if not ok:
            raise PluginDefinitionError(
                f"{plugin.module}.{getattr(f, '__qualname__', f)}: a {plugin.kind} plugin must be a {base_name} subclass "
                f"or a function annotated `-> {base_name}` (from zoo.model)"
            )
        if base_name == "Backbone" and inspect.isclass(f):
            _check_backbone_class(f, plugin)
        if base_name == "Head":
            _check_head_class(f if inspect.isclass(f) else ret, plugin)

    return check


def _check_backbone_class(cls: type, plugin: Plugin) -> None:
    """A Backbone class must set feature_info and implement stages(): checked on the class, unbuilt."""
    import zoo.model as m

    where = f"{plugin.module}.{cls.__qualname__}"
    chain = [c for c in cls.__mro__ if c is not m.Backbone and issubclass(c, m.Backbone)]
    sets_info = any(
        "feature_info" in vars(c)
        or "feature_info" in getattr(vars(c).get("__init__"), "__code__", compile("", "", "exec")).co_names
        for c in chain
    )
    if not sets_info:
        raise PluginDefinitionError(
            f"{where}: a Backbone must report feature_info; set self.feature_info = "
            f"[FeatureInfo(channels, stride), ...] in __init__, one per feature map forward() returns"
        )
    if not any("stages" in vars(c) for c in chain):
        raise PluginDefinitionError(
            f"{where}: a Backbone must implement stages() -> list[nn.Module], its parameter groups "
            f"shallow to deep (used to freeze and to set per-stage learning rates)"
        )


def _check_head_class(cls: type, plugin: Plugin) -> None:
    """A Head class that declares `task`/`output_names` as class attributes must fit zoo.tasks' table."""
    from zoo import tasks

    task, names = getattr(cls, "task", "") or "", tuple(getattr(cls, "output_names", ()) or ())
    where = f"{plugin.module}.{cls.__qualname__}"
    if task and plugin.tasks is not None and task not in plugin.tasks:
        raise PluginDefinitionError(f"{where}: a {task} head is registered for tasks {', '.join(plugin.tasks)}")
    try:
        for t in [task] if task else list(plugin.tasks or ()):
            if names:
                tasks.match(t, names, where)
            else:
                tasks.task(t, where)
    except ZooError as e:
        raise PluginDefinitionError(str(e)) from None


registries: dict[str, Registry] = {
    "architecture": Registry("architecture", _check_returns("Backbone")),
    "head": Registry("head", _check_returns("Head")),
    "augmentation": Registry("augmentation"),
    "transfer": Registry("transfer", _check_returns("Transfer")),
    "dataset": Registry("dataset"),
}


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
