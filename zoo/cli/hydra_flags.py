"""Hydra's own flags and override forms on `zoo train`'s command line, checked before anything runs.

Each Hydra flag, alone or with others, either does what Hydra documents or is one `zoo: error:` line naming
the flag (Hydra itself answers some combinations with a traceback or argparse's usage). Two override forms
are made to work: a value with letters outside ASCII (a user's own folder name, `hydra.run.dir=běh`) is
quoted for Hydra's grammar, which reads them only in quotes; and `hydra.searchpath=[DIR,...]` adds config
folders as `--config-dir` does (zoo's own search path is zoo's, so it is not replaced).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.errors import ZooError
from zoo.train.sweeps import parse_overrides

INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")  # Hydra's --info
MODES = (
    ("multirun", "-m/--multirun"),
    ("cfg", "--cfg"),
    ("info", "--info"),
    ("shell_completion", "--shell-completion"),
)
SHELLS = ("bash", "fish", "zsh")  # Hydra's completion plugins
COMPLETION = ("install", "uninstall", "query")  # what --shell-completion does, one of them: install=bash
UNQUOTABLE = "'\"\\,()[]"  # a value holding one of these is a sweep, a list or already quoted: left to Hydra


def check_flags(args: argparse.Namespace) -> None:
    """Refuse, in one line naming the flags, what Hydra cannot do together. --help and --hydra-help come
    first, as in Hydra (they answer whatever else is given)."""
    if args.help:
        return
    if args.resolve and not args.cfg:
        raise ZooError(
            "--resolve goes with --cfg (it resolves the interpolations --cfg prints): zoo train --cfg job --resolve"
        )
    if args.hydra_help:
        return
    given = [flag for attr, flag in MODES if getattr(args, attr)]
    if len(given) > 1:
        raise ZooError(
            f"{given[0]} and {given[1]} cannot go together: Hydra does one of -m, --cfg, --info and "
            "--shell-completion at a time"
        )
    if args.package is not None and not args.cfg:
        raise ZooError(
            f"--package {args.package!r} goes with --cfg (it picks the node --cfg prints): --cfg job --package trainer"
        )


def check_completion(overrides: list[str]) -> None:
    """`--shell-completion` takes exactly one of install=SHELL, uninstall=SHELL or query=LINE, as Hydra's does."""
    given = {o.partition("=")[0]: o.partition("=")[2] for o in overrides}
    picked = [k for k in COMPLETION if k in given]
    how = f"install={'|'.join(SHELLS)}, uninstall=SHELL or query=LINE"
    if len(picked) != 1:
        raise ZooError(f"--shell-completion takes one of {how}; got {' '.join(overrides) or 'none'}")
    if picked[0] != "query" and given[picked[0]] not in SHELLS:
        raise ZooError(f"--shell-completion {picked[0]}={given[picked[0]]!r} is not one of: {', '.join(SHELLS)}")


def hydra_quoted(override: str) -> str:
    """`key=value` as Hydra's grammar reads it: a value with letters outside ASCII (`hydra.run.dir=běh`,
    `запуск`, `próba_łódź`) quoted, since Hydra's lexer takes them only in quotes; anything else as given. A
    value that cannot be quoted here (it holds quotes, commas, brackets) is one line saying how to write it."""
    key, sep, value = override.partition("=")
    if not sep or value.isascii() or not key.isascii():
        return override
    quoted = override if any(c in value for c in UNQUOTABLE) else f"{key}='{value}'"
    try:
        parse_overrides([quoted])
    except ZooError:
        raise ZooError(
            f"{key}={value!r}: Hydra reads letters outside ASCII only in quotes; write {key}='...', with \\' "
            "for a quote inside"
        ) from None
    return quoted


def searchpath_dirs(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the overrides without `hydra.searchpath=[...]`, the folders it names): zoo's own search path holds its
    config, the plugin packages' and the plugins, so a user's entries are added to it as --config-dir's are.
    An entry that is not a folder is one line."""
    kept, dirs = [], []
    for text in overrides:
        if text.partition("=")[0].lstrip("+~") != "hydra.searchpath":
            kept.append(text)
            continue
        (o,) = parse_overrides([text])
        value = None if o.is_delete() or o.is_sweep_override() else o.value()
        if not isinstance(value, list):
            raise ZooError(f"{text!r}: hydra.searchpath takes a list of config folders, hydra.searchpath=[DIR,...]")
        for entry in map(str, value):
            path = entry.removeprefix("file://")
            if "://" in path or not Path(path).is_dir():
                raise ZooError(
                    f"hydra.searchpath entry {entry!r} is not a config folder (file://DIR or DIR; zoo's own config "
                    "and plugin packages' are searched already)"
                )
            dirs.append(path)
    return kept, dirs
