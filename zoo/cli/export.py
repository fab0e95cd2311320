"""`zoo export`: a checkpoint (several: an averaging ensemble) to DIR/model.onnx, model.json and golden/.

Its settings are ExportConfig's fields (zoo.train.schemas), read from there: the same keys as `export.*` in a
training config, checked by the exporter as the config's are.
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.errors import ZooError
from zoo.train.schemas import ExportConfig
from zoo.verbs import Option, Verb, dataclass_options


def options() -> tuple[Option, ...]:
    """checkpoint= and output=, then ExportConfig's fields."""
    return (
        Option(
            "checkpoint",
            help="a .pt file or a run directory; several, comma-separated: an averaging ensemble",
            metavar="PATH[,PATH...]",
            required=True,
        ),
        Option("output", help="the export folder", default="exports/RUN_NAME", metavar="DIR"),
        *dataclass_options(ExportConfig),
    )


VERB = Verb(
    "export",
    "export a checkpoint (several: an averaging ensemble) to DIR/model.onnx + model.json + golden/ (sample images "
    "and the outputs they give)",
    options=options,
    key_prefix="export.",
    examples=(
        "zoo export checkpoint=runs/lenet output=exports/lenet",
        "zoo export checkpoint=runs/lenet precision=int8 outputs=embedding,cam",
    ),
)


def run(args: list[str]) -> int:
    """Export, then print one JSON line: the files, the task, the opset, the parity and the precision."""
    kv = VERB.parse(args)
    if "checkpoint" not in kv:
        raise ZooError("zoo export needs checkpoint=PATH (a .pt file or a run directory)")
    checkpoints = [c for c in kv.pop("checkpoint").split(",") if c]
    if not checkpoints:
        raise ZooError("zoo export needs checkpoint=PATH (a .pt file or a run directory), got an empty one")
    ckpt = Path(checkpoints[0])
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent.parent
    output = Path(kv.pop("output", Path("exports") / (run_dir.name + ("_ensemble" if len(checkpoints) > 1 else ""))))
    from zoo.deploy.export import export, export_ensemble  # lazy: torch, only once the arguments are valid

    card = export(ckpt, output, kv) if len(checkpoints) == 1 else export_ensemble(checkpoints, output, kv)
    worst = max(card["parity"]["max_abs_diff"].values())
    print(
        json.dumps(
            {
                "onnx": str(output / "model.onnx"),
                "card": str(output / "model.json"),
                "task": card["task"],
                "opset": card["onnx"]["opset"],
                "parity_max_abs_diff": worst,
                "parity_inputs": card["parity"]["inputs"],
                "precision": card["precision"]["precision"],
                **({"metric": card["precision"]["metric"]} if "metric" in card["precision"] else {}),
            }
        )
    )
    return 0
