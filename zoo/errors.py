"""The one error type a user sees, and the close-match helper every message uses."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable
from pathlib import Path


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


# ---- what a failing command leaves behind ----------------------------------------------------

_created: list[Path] = []  # folders the running command created, outermost first


def make_folder(path: str | Path) -> Path:
    """`mkdir -p` that remembers the folders it created: when the command then fails, the CLI's edge removes
    those of them that are empty again (`remove_created`), never a folder that was there before."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    _created.extend(reversed(missing))
    return path


def forget_created() -> None:
    """A command starts (or has succeeded): what it created is the user's from now on."""
    _created.clear()


def remove_created() -> None:
    """Remove the folders this command created that are empty (what it wrote in them is already cleaned up by
    the command itself), deepest first; a file is never deleted here."""
    for p in reversed(_created):
        with contextlib.suppress(OSError):
            p.rmdir()
    _created.clear()


def describe_os_error(e: OSError, args: Iterable[str] = ()) -> str:
    """One line for an OSError about a path (too long, not permitted, a folder where a file belongs...): the
    argument that names the path when one of `args` does, the path (shortened) and what is wrong with it."""
    import errno
    import os

    name = e.filename if e.filename is not None else None
    reasons = {
        errno.ENAMETOOLONG: "a name in it is too long (at most {limit} bytes per name, {plimit} per path)",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "it is a folder, where a file is expected",
        errno.ENOTDIR: "a part of it is a file, where a folder is expected",
        errno.ENOENT: "it does not exist",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the file system is read-only",
        errno.ELOOP: "too many symbolic links",
    }
    reason = reasons.get(e.errno, e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0])
    if e.errno == errno.ENAMETOOLONG:
        limits = {}
        for key, fallback in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
            try:
                limits[key] = os.pathconf("/", key)
            except (OSError, ValueError, AttributeError):
                limits[key] = fallback
        reason = reason.format(limit=limits["PC_NAME_MAX"], plimit=limits["PC_PATH_MAX"])
    if name is None:
        return reason
    text = os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)
    shown = repr(text) if len(text) <= 80 else f"'{text[:40]}...{text[-20:]}' ({len(text)} characters)"
    given = next((a for a in args if "=" in a and a.partition("=")[2] and text.startswith(a.partition("=")[2])), None)
    where = f"{given.partition('=')[0]}: " if given else ""
    return f"{where}path {shown}: {reason}"
