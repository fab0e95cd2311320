"""Declared parameters: Range, Length, Param and their checks, shared by every wing that takes settings.

A plugin's signature, zoo's own trainer/export fields, a CLI verb's options and the runtime's session options
declare their values the same way, and are checked and coerced by the same code here. This module is in zoo's
base layer (it imports only zoo.errors), so the torch-free runtime uses it as the plugin system does.

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
`float > 0`, `list[int >= 1] of length >= 1`, `int >= 1 or null`, `non-empty str`.

`NonEmpty()` marks a str where emptiness means nothing (`Annotated[str, NonEmpty()]`): `trainer.monitor=`
is `trainer.monitor='' is empty; expected non-empty str`. A bool is a bool: `trainer.resume=2` has the wrong
type (zoo.train.schemas gives OmegaConf untyped nodes for bools, so its lenient 2 -> true never happens).

This module imports no torch and no other zoo module but zoo.errors; what a plugin kind must return is
checked by zoo.plugin.kinds.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, close_matches

INT64 = (-(2**63), 2**63 - 1)


REQUIRED = object()  # marks a parameter with no default


_BASE_TYPES = (int, float, bool, str)


class PluginDefinitionError(ZooError):
    """A plugin's author broke the contract: raised at registration, not when the plugin is used."""


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


@dataclass(frozen=True)
class NonEmpty:
    """A text that must say something, `Annotated[str, NonEmpty()]`: an empty or blank value is refused where
    emptiness means nothing (a metric's name, a weight source), so `key=` is one line, not a silent default."""

    def __repr__(self) -> str:
        return "NonEmpty()"


CONSTRAINTS = (Range, Length, NonEmpty)


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
    def non_empty(self) -> bool:
        """Whether the value (or each item) is declared NonEmpty."""
        return any(isinstance(c, NonEmpty) for c in self.constraints)

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
        if self.non_empty:
            t = f"non-empty {t}"
        if self.is_list:
            t = f"list[{t}]" + (f" of {self.length.short()}" if self.length is not None else "")
        return f"{t} or null" if self.optional else t

    def check(self, value: Any, key: str) -> Any:
        """Check one value against type and constraints (ZooError naming `key`); return it coerced."""
        return coerce(self, value, key)


def coerce(p: Param, value: Any, key: str) -> Any:
    """Check `value` against `p` (ZooError naming `key`) and return it coerced."""
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
    if p.non_empty and not value.strip():
        raise ZooError(f"{key}={value!r} is empty; expected {p.describe()}")
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


def article(noun: str) -> str:
    """`a float`, `an int`."""
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
                raise refuse(f"has {m!r} on {article(base.__name__)}; Length bounds the number of items of a list")
            if isinstance(m, Range) and on_list:
                raise refuse(f"has {m!r} on a list; a Range bounds each item: list[Annotated[{base.__name__}, {m!r}]]")
            if isinstance(m, Range) and (choices or base not in (int, float)):
                what = article("Literal" if choices else base.__name__)
                raise refuse(f"has {m!r} on {what}; Range bounds an int or float")
            if isinstance(m, NonEmpty) and (choices or base is not str or (is_list and on_list)):
                raise refuse(f"has {m!r} on {article(base.__name__)}; NonEmpty marks a str (on a list: Length(min=1))")
            constraints.append(m)
    if isinstance(default, tuple):
        default = list(default)
    p = Param(name, annotation, default, choices, optional, is_list, tuple(constraints))
    if default is not REQUIRED:
        try:
            coerce(p, default, name)
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
