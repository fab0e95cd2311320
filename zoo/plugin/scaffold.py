"""`zoo new-plugin NAME`: a ready-to-install plugin package that passes its own test as generated.

The package's files are templates in zoo/templates/plugin/ (NAME in a path is the package's name).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from zoo.errors import ZooError
from zoo.version import PLUGIN_API_VERSION

TEMPLATES = Path(__file__).parent / "templates" / "plugin"  # FILE.tmpl, formatted with name, cls and api


def new_plugin(name: str, output: str | Path | None = None) -> Path:
    """Write the package `zoo-NAME` into `output` (default ./zoo-NAME); refuse to overwrite."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise ZooError(
            f"plugin package name {name!r} must be lower-case letters, digits and '_', "
            "starting with a letter (e.g. acme)"
        )
    target = Path(output) if output else Path(f"zoo-{name}")
    if target.exists():
        raise ZooError(f"{target} already exists; choose another output=DIR or remove it")
    cls = "".join(part.capitalize() for part in name.split("_"))
    files = {
        str(t.relative_to(TEMPLATES)).removesuffix(".tmpl").replace("NAME", name): t.read_text()
        for t in sorted(TEMPLATES.rglob("*.tmpl"))
    }
    tmp = target.parent / f".{target.name}.new-{os.getpid()}"
    try:
        for rel, template in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.format(name=name, cls=cls, api=PLUGIN_API_VERSION))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
