"""`zoo explain METHOD run=DIR|checkpoint=FILE output=DIR`: pictures of what a trained model sees.

METHOD is an interpretation plugin (`zoo list interpretation`); its parameters follow as PARAM=VALUE, read as
YAML reads them (numbers, booleans, lists), so the plugin gets typed values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import yaml

from zoo.errors import ZooError
from zoo.params import Range
from zoo.plugin import registry
from zoo.verbs import Option, Verb

VERB = Verb(
    "explain",
    "pictures of what a trained model sees (zoo list interpretation)",
    positionals=(("METHOD", "an interpretation plugin"),),
    options=(
        Option("run", help="a run directory (its best checkpoint)", metavar="DIR"),
        Option("checkpoint", help="a checkpoint file, instead of run=", metavar="FILE"),
        Option("output", help="where the pictures and summary.json go", metavar="DIR", required=True),
        Option("input", help="images to explain; default: the run's test split", metavar="FILE_OR_DIR"),
        Option("samples", Annotated[int, Range(1)], "how many images", 8),
    ),
    overrides="PARAM=VALUE...: the method's parameters (zoo list interpretation METHOD)",
    examples=("zoo explain gradcam run=runs/lenet output=explain/",),
)


def run(args: list[str]) -> int:
    """Explain, then print one JSON line: the method, the task, the files and the summary's path."""
    if not args or "=" in args[0]:
        raise ZooError("zoo explain needs a METHOD first, e.g. zoo explain gradcam run=runs/demo output=explain/")
    plugin = registry.get("interpretation", args[0])
    own, rest = VERB.own(args[1:])
    kv = VERB.parse(own)
    params = {k: parse_value(v) for k, v in dict(a.partition("=")[::2] for a in rest).items()}
    source = kv.get("run") or kv.get("checkpoint")
    if not source or "output" not in kv:
        raise ZooError("zoo explain needs run=DIR (or checkpoint=FILE) and output=DIR")
    from zoo.report.explain import explain  # lazy: torch, only once the arguments are valid

    record = explain(plugin.name, params, source, kv.get("input"), VERB.value(kv, "samples"), kv["output"])
    print(
        json.dumps(
            {k: record[k] for k in ("method", "task", "files")} | {"summary": str(Path(kv["output"]) / "summary.json")}
        )
    )
    return 0


def parse_value(text: str):
    """A PARAM=VALUE of zoo explain as YAML reads it (numbers, booleans, lists), so plugins get typed values."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
