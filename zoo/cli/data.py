"""`zoo data check|convert`: a data set read whole and checked (one line per finding, a summary table and a
picture), or written out in another layout.

`check` exits 0 when nothing would make a run fail or learn the wrong thing and 2 otherwise; warnings (an
imbalance, a duplicate within a split, an image smaller than the model's input) are reported and exit 0.
"""

from __future__ import annotations

from typing import Annotated

from zoo.errors import ZooError, make_folder, unknown
from zoo.params import Range
from zoo.verbs import Option, Verb

OVERRIDES = "OVERRIDES...: data=NAME and its data.* overrides (and model=..., whose smallest input is checked)"
CHECK = Verb(
    "data check",
    "read a data set whole: one line per finding (file, what is wrong); exit 2 when a run would fail",
    options=(
        Option("imbalance", Annotated[float, Range(0, 1)], "smallest/largest class count below which to warn", 0.1),
        Option(
            "output", help="a folder for the summary table (summary.md) and picture (data_check.png)", metavar="DIR"
        ),
    ),  # fmt: skip
    overrides=OVERRIDES,
    examples=("zoo data check data=folder data.root=~/data/pets output=checks/pets",),
)
CONVERT = Verb(
    "data convert",
    "write a data set in another layout, keeping class names and order",
    options=(
        Option(
            "to", help="the layout to write: a dataset whose plugin declares a writer", metavar="NAME", required=True
        ),
        Option("output", help="the folder to write it into", metavar="DIR", required=True),
    ),  # fmt: skip
    overrides=OVERRIDES,
    examples=("zoo data convert data=coco data.images=imgs data.annotations=train.json to=yolo output=yolo_set",),
)
PARTS = {"check": CHECK, "convert": CONVERT}
VERB = Verb("data", "check a data set, or convert it to another layout", parts=tuple(PARTS.values()))


def run(args: list[str]) -> int:
    """Run the part the first argument names."""
    if not args or args[0] not in PARTS:
        raise unknown("part of zoo data", args[0], PARTS) if args else ZooError("zoo data needs a part: check, convert")
    name, args = args[0], args[1:]
    verb = PARTS[name]
    own, overrides = verb.own(args)
    kv = verb.parse(own)
    if not any(o.startswith("data=") for o in overrides):
        raise ZooError(f"zoo data {name} needs data=NAME (and its data.* overrides); see zoo list dataset")
    return check(overrides, kv) if name == "check" else convert(overrides, kv)


def check(overrides: list[str], kv: dict) -> int:
    """zoo data check: the findings, the summary, the picture; exit 2 on an error."""
    from zoo.train.config import compose, to_plain  # lazy: Hydra, only once the arguments are valid
    from zoo.train.datacheck import lines, survey  # lazy: numpy and the registry's code, as above

    cfg = to_plain(compose(overrides))
    if kv.get("output"):  # a folder that cannot be made says so before the data set is read
        make_folder(kv["output"])
    found = survey(cfg, imbalance=CHECK.value(kv, "imbalance"))
    for line in lines(found):
        print(line)
    from zoo.report.datacheck import summary, write  # lazy: matplotlib, only for the picture

    for line in summary(found, cfg["data"]["name"]):
        print(line)
    if kv.get("output"):
        for path in write(found, cfg["data"]["name"], kv["output"]):
            print(f"wrote {path}")
    return 2 if found.failed else 0


def writers() -> list[str]:
    """The datasets whose plugin declares a writer (zoo data convert's to=)."""
    from zoo.plugin import registry  # lazy: the plugins' code, only for convert

    registry.load_code()
    return sorted({p.name for p in registry.registries["dataset"] if p.extra.get("writer")})


def convert(overrides: list[str], kv: dict) -> int:
    """zoo data convert: checks `to=` against the writers, then zoo.report.convert writes the set."""
    to, output = kv.get("to"), kv.get("output")
    if not to or not output:
        raise ZooError("zoo data convert needs to=NAME and output=DIR")
    names = writers()
    if to not in names:
        raise unknown("layout for to=", to, names) if names else ZooError(f"to={to!r}: no dataset declares a writer")
    from zoo.report.convert import convert as write_set  # lazy: torch and the plugins, once the arguments are valid

    done = write_set(overrides, to, output)
    print(f"wrote {len(done['classes'])} classes in the {done['to']} layout to {done['output']}")
    for split, counts in done["splits"].items():
        detail = ", ".join(f"{k} {v if not isinstance(v, dict) else sum(v.values())}" for k, v in counts.items())
        print(f"  {split}: {detail}")
    return 0
