"""`zoo data convert`: build a data set from overrides, as `zoo train` does, and write it in another layout with
that layout's writer (the dataset plugin's `writer=`: `register.dataset(name, writer=fn)`).

Nothing of the user's is overwritten: an output folder that exists and holds anything is refused in one line;
the writer writes into a temporary folder beside it, renamed into place only when the writer has finished.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from zoo.errors import ZooError, make_folder
from zoo.plugin import registry


def writer_for(to: str):
    """The writer the dataset plugin `to` registers, or one line naming those that have one."""
    plugin = registry.get("dataset", to).resolve()
    writer = plugin.extra.get("writer")
    if writer is None:
        have = sorted(p.name for p in registry.registries["dataset"] if p.resolve().extra.get("writer"))
        raise ZooError(f"to={to}: the {to} dataset has no writer; layouts zoo can write: {', '.join(have)}")
    return plugin, writer


def convert(overrides: list[str], to: str, output: str) -> dict:
    """Write the data set `overrides` compose (data=..., data.*) in `to`'s layout into the new folder `output`.
    Returns a summary: the layout, the folder, the class names in order, and per split the images and boxes per
    class."""
    from zoo.data import build_data  # lazy: torch, when the command runs
    from zoo.train.config import compose, to_plain  # lazy: Hydra, when the command runs

    out = Path(output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ZooError(
            f"output={output!r} exists and is not empty; name a new or empty folder (nothing is overwritten)"
        )
    plugin, writer = writer_for(to)
    cfg = to_plain(compose(list(overrides)))
    bundle = build_data(cfg, int(cfg.get("seed", 0)))
    parent = make_folder(out.parent)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        with plugin.blame("in its writer"):
            counts = writer(bundle, temporary)
        if out.exists():
            out.rmdir()  # empty, as checked above
        temporary.rename(out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return {"to": to, "output": str(out), "classes": list(bundle.info.classes), "splits": counts}
