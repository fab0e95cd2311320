"""Command-line overrides parsed as Hydra parses them, and a sweep's overrides expanded into its jobs' lists."""

from __future__ import annotations

import itertools

from zoo.errors import ZooError


def parse_overrides(overrides: list[str]):
    """Hydra's parse of command-line overrides; a ZooError line when they do not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        raise ZooError(f"cannot parse overrides: {str(e).splitlines()[0]}") from None


def interval_ends(o) -> list | None:
    """An interval sweep's two ends (a sweeper such as Optuna's samples between them), else None: a range
    checks every value between two ends that pass it."""
    from hydra.core.override_parser.types import IntervalSweep

    value = o.value()
    return [value.start, value.end] if isinstance(value, IntervalSweep) else None


def raw_values(o) -> list:
    """The raw values of an override (each value of a sweep; an interval's ends), unescaped."""
    if o.is_sweep_override():
        return [str(v) for v in interval_ends(o) or o.sweep_iterator()]
    return [str(o.value())] if o.value() is not None else [None]


def expand(overrides: list[str], limit: int = 256) -> list[list[str]]:
    """The override lists of a sweep (`-m` with a,b,c values, choice(...), range(...), and an interval's two
    ends): the cartesian product, capped."""
    parsed = parse_overrides(overrides)
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            values = interval_ends(o) or o.sweep_string_iterator()
            choices.append([f"{key}={v}" for v in values])
        else:
            choices.append([o.input_line])
    combos = []
    for combo in itertools.product(*choices):
        combos.append(list(combo))
        if len(combos) >= limit:
            break
    return combos
