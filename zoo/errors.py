"""The one error type a user sees, and the close-match helper every message uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, no traceback."""


def close_matches(name: str, options: Iterable[str], n: int = 3) -> list[str]:
    """Return up to n options that look like `name` (typos, missing suffixes)."""
    options = sorted(set(options))
    found = difflib.get_close_matches(name, options, n=n, cutoff=0.6)
    if not found:  # 'lenet' -> 'lenet5', 'resnet' -> 'resnet18': a prefix is a strong hint
        found = [o for o in options if o.startswith(name) or name.startswith(o)][:n]
    return found


def unknown(what: str, name: str, options: Iterable[str], see: str | None = None) -> ZooError:
    """Build the standard 'unknown X; did you mean Y?' error."""
    options = sorted(set(options))
    matches = close_matches(name, options)
    msg = f"unknown {what} {name!r}"
    if matches:
        msg += "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
    elif len(options) <= 12:
        msg += "; valid: " + ", ".join(options) if options else "; none are available"
    if see:
        msg += (" " if msg.endswith("?") else "; ") + f"see: {see}"
    return ZooError(msg)
