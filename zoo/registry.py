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

Declared constraints (`from zoo import Range, Length`), enforced whenever a value is checked:

    p: Annotated[float, Range(0, 1)] = 0.5                                  # 0 <= p <= 1
    dropout: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.0        # 0 <= dropout < 1
    lr_scale: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.1       # 0 < lr_scale <= 1
    depth: Annotated[int, Range(1)] = 3                                     # depth >= 1
    size: Optional[Annotated[int, Range(1)]] = None                         # null, or >= 1
    widths: list[Annotated[int, Range(1)]] = (8, 16)                        # each item >= 1
    hidden: Annotated[list[Annotated[int, Range(1)]], Length(min=1)] = (64,)  # at least one item, each >= 1

`Range(min=None, max=None, *, min_exclusive=False, max_exclusive=False)` bounds an int or float (an
omitted bound is open); `Length(min=None, max=None)` bounds the number of items of a list. A Range on a
list itself, a Length on a scalar, a Range on str/bool/Literal are refused at registration. Every float
must be finite and every int must fit in int64. The one-line errors name the full key:

    aug.ops.hflip.p=1.5 must be in [0, 1]
    head.dropout=1.0 must be in [0, 1)
    transfer.lr_scale=0.0 must be in (0, 1]
    model.depth=0 must be at least 1              (Range(1));  `must be greater than 0` for Range(0, min_exclusive=True)
    model.width=99 must be at most 64             (Range(max=64)); `must be less than 1` with max_exclusive
    head.hidden[1]=0 must be at least 1           (an item of a list)
    head.hidden=[] must have at least 1 item      (Length(min=1)); `at most N items`, `1 to 3 items`
    head.dropout=nan must be a finite number
    model.width=9223372036854775808 must fit in 64 bits (-9223372036854775808 to 9223372036854775807)

`Param.describe()` (what `zoo list KIND NAME` shows) includes the range: `float in [0, 1]`, `int >= 1`,
`float > 0`, `list[int >= 1] of length >= 1`, `int >= 1 or null`. This module imports no torch and no
other zoo module but zoo.errors and zoo.tasks (the task table a head is checked against): plugin packages
are loaded through `set_loader` (zoo.discovery installs it), and return types are checked by qualified
class name.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, close_matches, unknown

PLUGIN_API_VERSION = 2  # 2: Backbone.load_source(source) replaced load_pretrained(file); heads' outputs by task role
STANDARD_PACKAGE = "zoo"  # the distribution that ships the standard plugins (zoo.discovery re-exports it)
INT64 = (-(2**63), 2**63 - 1)

KINDS = ("architecture", "head", "augmentation", "transfer", "dataset", "interpretation")

CONTEXT = {
    "architecture": ("in_channels",),
    "head": ("feature_info", "info"),
    "augmentation": ("info",),
    "transfer": (),
    "dataset": ("seed",),
    "interpretation": (),
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
    "interpretation": "Explainer",
}

REQUIRED = object()  # marks a parameter with no default
FUNCTION = "function"  # a cached record's min_size when the plugin declared a function of its parameters
_BASE_TYPES = (int, float, bool, str)

# Set by zoo.discovery while it imports a plugin package, so registrations are attributed to it.
current_package: contextvars.ContextVar[str | None] = contextvars.ContextVar("zoo_current_package", default=None)
# ... and the name of its entry point (`acme` in `acme = zoo_acme`), one more qualifier of its plugins.
current_entry_point: contextvars.ContextVar[str | None] = contextvars.ContextVar("zoo_entry_point", default=None)


_loader: list[Callable[[], None]] = []
# Whether the registries hold records read from zoo.catalog's cache (plugins' declarations, no code) instead of
# what importing the plugin packages registered; `load_code()` swaps them for the real ones when code is needed.
_serving: dict[str, bool] = {"cache": False}
issued: list[str] = []  # the warnings discovery printed in this process (the catalog's cache replays them)
_replayed: set[str] = set()  # warnings already printed from the cache: not printed again when the code loads


def set_loader(load: Callable[[], None]) -> None:
    """Install the function that imports every plugin package on the first question (zoo.discovery's)."""
    _loader[:] = [load]


def _load() -> None:
    for load in _loader:
        load()


def warn(message: str) -> None:
    """One `zoo: warning: ...` line on stderr about a plugin package, remembered for the catalog's cache."""
    issued.append(message)
    if message not in _replayed:
        print(f"zoo: warning: {message}", file=sys.stderr)


def serving_cache() -> bool:
    """Whether the registries hold the catalog's cached records (declarations only, no plugin module imported)."""
    return _serving["cache"]


def serve_cached(plugins: list[Plugin], warnings: list[str]) -> None:
    """Answer every question from `plugins`, records read from the catalog's cache (`cached=True`), until code
    is needed; print the `warnings` discovery printed when the cache was written, as it would print them now."""
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
    _load()


class PluginDefinitionError(ZooError):
    """A plugin's author broke the contract: raised at registration, not when the plugin is used."""


class PluginError(ZooError):
    """A plugin raised an exception of its own while zoo built or checked it: one line naming the plugin, its
    package and the exception's first line (`ZOO_DEBUG=1` prints the traceback, kept as `__cause__`)."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _num(x: float) -> str:
    """A bound as people write it: 1 not 1.0, 0.0001 not 1e-04."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


@dataclass(frozen=True)
class Range:
    """Bounds on an int or float parameter, `Annotated[float, Range(0, 1)]`; an omitted bound is open."""

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = field(default=False, kw_only=True)
    max_exclusive: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        for bound in (self.min, self.max):
            if bound is not None and (not _is_number(bound) or math.isnan(bound)):
                raise PluginDefinitionError(f"{self}: a bound must be an int, a float or None, not {bound!r}")
        if self.min is None and self.max is None:
            raise PluginDefinitionError("Range() needs a min, a max or both")
        if (self.min_exclusive and self.min is None) or (self.max_exclusive and self.max is None):
            raise PluginDefinitionError(f"{self}: an exclusive bound needs a value")
        both = self.min is not None and self.max is not None
        if both and (self.min > self.max or (self.min == self.max and (self.min_exclusive or self.max_exclusive))):
            raise PluginDefinitionError(f"{self} admits no value")

    def __repr__(self) -> str:
        args = [repr(self.min)] if self.max is None else [f"max={self.max!r}"] if self.min is None else []
        args = args or [repr(self.min), repr(self.max)]
        args += [f"{k}=True" for k in ("min_exclusive", "max_exclusive") if getattr(self, k)]
        return f"Range({', '.join(args)})"

    def contains(self, value: float) -> bool:
        """Whether `value` is inside the range."""
        if self.min is not None and (value < self.min or (self.min_exclusive and value == self.min)):
            return False
        return not (self.max is not None and (value > self.max or (self.max_exclusive and value == self.max)))

    def text(self) -> str:
        """The range in words, after 'must be': `in [0, 1]`, `at least 1`, `greater than 0`, `less than 1`."""
        if self.min is not None and self.max is not None:
            left, right = "(" if self.min_exclusive else "[", ")" if self.max_exclusive else "]"
            return f"in {left}{_num(self.min)}, {_num(self.max)}{right}"
        if self.min is not None:
            return f"{'greater than' if self.min_exclusive else 'at least'} {_num(self.min)}"
        return f"{'less than' if self.max_exclusive else 'at most'} {_num(self.max)}"

    def short(self) -> str:
        """The range after a type name: `in [0, 1]`, `>= 1`, `> 0`, `<= 64`, `< 1`."""
        if self.min is not None and self.max is not None:
            return self.text()
        if self.min is not None:
            return f"{'>' if self.min_exclusive else '>='} {_num(self.min)}"
        return f"{'<' if self.max_exclusive else '<='} {_num(self.max)}"


@dataclass(frozen=True)
class Length:
    """Bounds on the number of items of a list parameter, `Annotated[list[int], Length(min=1)]`."""

    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        for bound in (self.min, self.max):
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 0):
                raise PluginDefinitionError(f"{self}: a bound must be an int >= 0 or None, not {bound!r}")
        if self.min is None and self.max is None:
            raise PluginDefinitionError("Length() needs a min, a max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PluginDefinitionError(f"{self} admits no length")

    def contains(self, n: int) -> bool:
        """Whether a list of `n` items fits."""
        return (self.min is None or n >= self.min) and (self.max is None or n <= self.max)

    def text(self) -> str:
        """The length in words, after 'must have': `at least 1 item`, `at most 3 items`, `1 to 3 items`."""
        if self.min is not None and self.max is not None:
            many = "item" if self.max == 1 else "items"
            return f"exactly {self.min} {many}" if self.min == self.max else f"{self.min} to {self.max} {many}"
        if self.min is not None:
            return f"at least {self.min} {'item' if self.min == 1 else 'items'}"
        return f"at most {self.max} {'item' if self.max == 1 else 'items'}"

    def short(self) -> str:
        """The length after a list type: `length >= 1`, `length <= 3`, `length 1 to 3`."""
        if self.min is not None and self.max is not None:
            return f"length {self.min}" if self.min == self.max else f"length {self.min} to {self.max}"
        return f"length >= {self.min}" if self.min is not None else f"length <= {self.max}"


CONSTRAINTS = (Range, Length)


@dataclass(frozen=True)
class Param:
    """One configurable parameter of a plugin, read from its signature."""

    name: str
    annotation: Any
    default: Any
    choices: tuple | None = None
    optional: bool = False
    is_list: bool = False
    constraints: tuple = ()  # Range (on the value, or on each item of a list) and Length (on a list)

    @property
    def base(self) -> type:
        """The scalar type (int, float, bool or str) of the value or of its items."""
        return _scalar_of(self.annotation)

    @property
    def range(self) -> Range | None:
        """The declared Range of the value (or of each item), if any."""
        return next((c for c in self.constraints if isinstance(c, Range)), None)

    @property
    def length(self) -> Length | None:
        """The declared Length of a list, if any."""
        return next((c for c in self.constraints if isinstance(c, Length)), None)

    def describe(self) -> str:
        """A short human form of the type, for error messages and `zoo list`: `float in [0, 1]`, `int >= 1`."""
        if self.choices:
            t = "|".join(str(c) for c in self.choices)
        else:
            t = self.base.__name__
        if self.range is not None:
            t = f"{t} {self.range.short()}"
        if self.is_list:
            t = f"list[{t}]" + (f" of {self.length.short()}" if self.length is not None else "")
        return f"{t} or null" if self.optional else t

    def check(self, value: Any, key: str) -> Any:
        """Check one value against type and constraints (ZooError naming `key`); return it coerced."""
        return _coerce(self, value, key)


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
    # a record read from zoo.catalog's cache: declarations only, `factory` None until `resolve()` imports the code
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
            out[key] = _coerce(params[key], value, f"{where}.{key}")
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


def _coerce(p: Param, value: Any, key: str) -> Any:
    if value is None:
        if p.optional:
            return None
        raise ZooError(f"{key}=null is not allowed; expected {p.describe()}")
    if p.is_list:
        if not isinstance(value, (list, tuple)):
            raise ZooError(f"{key}={value!r} is not a list; expected {p.describe()}")
        if p.length is not None and not p.length.contains(len(value)):
            raise ZooError(f"{key}={list(value)!r} must have {p.length.text()}")
        return [_coerce_scalar(p, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return _coerce_scalar(p, value, key)


def _coerce_scalar(p: Param, value: Any, key: str) -> Any:
    base, given = p.base, value
    ok = isinstance(value, base) and not (base is not bool and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value, ok = float(value), True
        except OverflowError:
            raise ZooError(f"{key}={value!r} must be a finite number") from None
    if not ok:
        raise ZooError(f"{key}={value!r} has the wrong type; expected {p.describe()}")
    if base is float and not math.isfinite(value):
        raise ZooError(f"{key}={value!r} must be a finite number")
    if base is int and not INT64[0] <= value <= INT64[1]:
        raise ZooError(f"{key}={value!r} must fit in 64 bits ({INT64[0]} to {INT64[1]})")
    if p.choices is not None and value not in p.choices:
        hint = close_matches(str(value), [str(c) for c in p.choices])
        msg = f"{key}={value!r} is not one of: " + ", ".join(str(c) for c in p.choices)
        raise ZooError(msg + (f"; did you mean {hint[0]!r}?" if hint else ""))
    if p.range is not None and not p.range.contains(value):
        raise ZooError(f"{key}={given!r} must be {p.range.text()}")
    return value


def _scalar_of(annotation: Any) -> type:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _scalar_of(args[0])
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return _scalar_of(next(a for a in args if a is not type(None)))
    if origin in (list, tuple):
        return _scalar_of(args[0])
    if origin is typing.Literal:
        return type(args[0])
    return annotation


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _unwrap(annotation: Any) -> tuple[Any, tuple]:
    """`Annotated[X, m1, m2]` -> (X, (m1, m2)); anything else -> (it, ())."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0], tuple(annotation.__metadata__)
    return annotation, ()


TYPES_HINT = "int, float, bool, str, Literal[...], list[...], Optional[...] or Annotated[..., Range(...)]"


def param(name: str, annotation: Any, default: Any = REQUIRED, where: str = "zoo") -> Param:
    """Read one Param from a type annotation and default: plugin signatures and zoo's own config fields."""

    def refuse(msg: str) -> PluginDefinitionError:
        return PluginDefinitionError(f"{where}: parameter {name!r} {msg}")

    ann, outer = _unwrap(annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    optional = False
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise refuse(f"has type {annotation}; only Optional[X] unions are supported")
        optional = True
        ann, more = _unwrap(rest[0])
        outer += more
        origin, args = typing.get_origin(ann), typing.get_args(ann)
    is_list, items = False, outer
    if origin in (list, tuple):
        if (
            not args
            or (origin is tuple and (len(args) != 2 or args[1] is not Ellipsis))
            or (origin is list and len(args) != 1)
        ):
            raise refuse(f"has type {annotation}; use list[int|float|str|bool] or tuple[X, ...]")
        is_list = True
        ann, items = _unwrap(args[0])
        origin, args = typing.get_origin(ann), typing.get_args(ann)
    choices = None
    if origin is typing.Literal:
        if not args or len({type(a) for a in args}) != 1 or type(args[0]) not in _BASE_TYPES:
            raise refuse("is a Literal whose choices are not all int, float, bool or str")
        choices = tuple(args)
    elif ann not in _BASE_TYPES:
        raise refuse(f"has type {annotation!r}, which cannot be set from a config; use {TYPES_HINT}")
    base = type(args[0]) if choices else ann
    constraints: list = []
    for meta, on_list in [(outer, True), (items, False)] if is_list else [(outer, False)]:
        for m in meta:
            if not isinstance(m, CONSTRAINTS):
                raise refuse(
                    f"has Annotated metadata {m!r}, which zoo does not know; use zoo.Range(...) on a number "
                    f"or zoo.Length(...) on a list"
                )
            if any(type(c) is type(m) for c in constraints):
                raise refuse(f"declares more than one {type(m).__name__}; combine them into one")
            if isinstance(m, Length) and not on_list:
                raise refuse(f"has {m!r} on {_a(base.__name__)}; Length bounds the number of items of a list")
            if isinstance(m, Range) and on_list:
                raise refuse(f"has {m!r} on a list; a Range bounds each item: list[Annotated[{base.__name__}, {m!r}]]")
            if isinstance(m, Range) and (choices or base not in (int, float)):
                what = _a("Literal" if choices else base.__name__)
                raise refuse(f"has {m!r} on {what}; Range bounds an int or float")
            constraints.append(m)
    if isinstance(default, tuple):
        default = list(default)
    p = Param(name, annotation, default, choices, optional, is_list, tuple(constraints))
    if default is not REQUIRED:
        try:
            _coerce(p, default, name)
        except ZooError as e:
            raise refuse(f"has a default that does not fit its declaration: {e}") from None
    return p


def _param(factory: Callable, name: str, parameter: inspect.Parameter, hints: dict) -> Param:
    where = f"{factory.__module__}.{getattr(factory, '__qualname__', factory)}"
    if name not in hints:
        raise PluginDefinitionError(f"{where}: parameter {name!r} has no type annotation; annotate it ({TYPES_HINT})")
    default = REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default
    return param(name, hints[name], default, where)


def read_params(factory: Callable, context: tuple[str, ...]) -> tuple[Param, ...]:
    """Read the configurable parameters from a factory's signature (context names excluded)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)
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
                f"{factory.__module__}.{factory.__qualname__}: *args/**kwargs cannot be configured; "
                f"list the parameters with types"
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
        _check_extra(plugin)
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
        _load()
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
        _load()
        return list(self._plugins.get(name, []))

    def names(self) -> list[str]:
        """All registered names, sorted."""
        _load()
        return sorted(self._plugins)

    def __iter__(self) -> Iterator[Plugin]:
        _load()
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


# what a kind may declare besides tasks=: an architecture's smallest input and budgets above zoo's (zoo.model)
EXTRA = {"architecture": ("min_size", "max_params", "max_activations")}


def _check_extra(plugin: Plugin) -> None:
    """Declarations other than tasks= (an architecture's min_size) are checked when the plugin registers."""
    where = f"{plugin.module}.{getattr(plugin.factory, '__qualname__', plugin.name)}"
    allowed = EXTRA.get(plugin.kind, ())
    for key in plugin.extra:
        if key not in allowed:
            also = f"; {_a(plugin.kind)} declares only tasks=" + "".join(f", {a}=" for a in allowed)
            raise PluginDefinitionError(f"{where}: register.{plugin.kind}() takes no {key}={also}")
    for key in ("max_params", "max_activations"):
        value = plugin.extra.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise PluginDefinitionError(f"{where}: {key}={value!r} must be an int >= 1")
    size = plugin.extra.get("min_size")
    if size is None or callable(size):
        return
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PluginDefinitionError(
            f"{where}: min_size={size!r} must be an int >= 1 (pixels) or a function of the parameters returning one"
        )


def _same_definition(a: Callable, b: Callable) -> bool:
    """A module executed twice defines new objects for the same plugin: treat them as one."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None),
        getattr(b, "__qualname__", None),
    )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _derives(cls: Any, qualified: str) -> bool:
    """Whether `cls` is a class with `qualified` (e.g. zoo.model.Backbone) in its MRO: no import of it needed."""
    return inspect.isclass(cls) and any(_qualified(c) == qualified for c in cls.__mro__)


def _check_returns(base_name: str) -> Callable[[Plugin], None]:
    qualified = f"zoo.model.{base_name}"

    def check(plugin: Plugin) -> None:
        f = plugin.factory
        if inspect.isclass(f):
            ok = _derives(f, qualified)
        else:
            try:
                ret = typing.get_type_hints(f).get("return")
            except Exception:
                ret = None
            ok = _derives(ret, qualified)
        if not ok:
            raise PluginDefinitionError(
                f"{plugin.module}.{getattr(f, '__qualname__', f)}: {_a(plugin.kind)} plugin must be a "
                f"{base_name} subclass or a function annotated `-> {base_name}` (from zoo.model)"
            )
        if base_name == "Backbone" and inspect.isclass(f):
            _check_backbone_class(f, plugin)
        if base_name == "Head":
            _check_head_class(f if inspect.isclass(f) else ret, plugin)

    return check


def _check_backbone_class(cls: type, plugin: Plugin) -> None:
    """A Backbone class must implement stages(): checked on the class, unbuilt. feature_info is an instance
    attribute (set in __init__, a helper or a property), so zoo checks it when the backbone is built."""
    owner = next((c for c in cls.__mro__ if "stages" in vars(c)), None)
    if owner is None or _qualified(owner) == "zoo.model.Backbone":
        raise PluginDefinitionError(
            f"{plugin.module}.{cls.__qualname__}: a Backbone must implement stages() -> list[nn.Module], its "
            f"parameter groups shallow to deep (used to freeze and to set per-stage learning rates)"
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
    "interpretation": Registry("interpretation", _check_returns("Explainer")),
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
