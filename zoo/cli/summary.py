"""`zoo summary OVERRIDES...` or `zoo summary run=DIR`: a model counted layer by layer (zoo.report.summary).

OVERRIDES are `zoo train`'s (`model=vgg16 data.size=224`): the model is built as training builds it, on the CPU,
at the input size the config gives. `run=DIR` counts a trained run's model (its best checkpoint).
"""

from __future__ import annotations

import json

from zoo.errors import ZooError
from zoo.verbs import Option, Verb

VERB = Verb(
    "summary",
    "a model layer by layer: output shape, parameters, multiply-accumulates, memory, receptive field and stride",
    options=(
        Option("run", help="a run directory or checkpoint file to count, instead of OVERRIDES", metavar="DIR"),
        Option("fields", bool, "measure each layer's receptive field and stride (a backward pass a layer)", True),
    ),
    flags=(("--json", "one JSON object instead of the table (for scripts)"),),
    overrides="OVERRIDES...: zoo train's (model=... head=... data=... data.size=224); not with run=",
    examples=(
        "zoo summary model=cnn",
        "zoo summary model=vgg16 data.size=224 data.channels=3",
        "zoo summary run=runs/lenet --json",
    ),
)


def run(args: list[str]) -> int:
    """Count the model and print the table and totals (or, with --json, one JSON object)."""
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    own, overrides = VERB.own(args)
    kv = VERB.parse(own)
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise ZooError(f"zoo summary: unknown flag {flags[0]!r}; flags: --json")
    if "run" in kv and overrides:
        raise ZooError(f"zoo summary takes run=DIR or OVERRIDES, not both (got run= and {overrides[0]!r})")
    from zoo.report.summary import model_of_config, model_of_run, render, summarize  # lazy: torch, once valid

    model, shape = model_of_run(kv["run"]) if "run" in kv else model_of_config(overrides)
    summary = summarize(model, shape, fields=VERB.value(kv, "fields"))
    print(json.dumps(summary.to_dict()) if as_json else render(summary), end="\n" if as_json else "")
    return 0
