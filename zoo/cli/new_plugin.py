"""`zoo new-plugin NAME`: write a plugin package skeleton (zoo-NAME) that passes its own test."""

from __future__ import annotations

from zoo.errors import ZooError
from zoo.plugin.scaffold import new_plugin
from zoo.verbs import Option, Verb

VERB = Verb(
    "new-plugin",
    "write a plugin package skeleton (zoo-NAME) that passes its own test",
    positionals=(("NAME", "the package's name: zoo-NAME, import name zoo_NAME"),),
    options=(Option("output", help="the package's folder", default="zoo-NAME", metavar="DIR"),),
    examples=("zoo new-plugin acme output=plugins/",),
)


def run(args: list[str]) -> int:
    """Write the skeleton and say how to install and test it."""
    if not args or "=" in args[0]:
        raise ZooError("zoo new-plugin needs a NAME, e.g. zoo new-plugin acme")
    kv = VERB.parse(args[1:])
    path = new_plugin(args[0], kv.get("output"))
    print(f"wrote {path}/: pip install {path} && zoo list architecture   (its test: cd {path} && pytest)")
    return 0
