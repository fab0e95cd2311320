"""`zoo augment output=FILE.png [OVERRIDES...]`: a grid of augmented training samples, what the model will see."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from zoo.errors import ZooError, make_folder
from zoo.params import Range
from zoo.verbs import Option, Verb

VERB = Verb(
    "augment",
    "a grid of augmented training samples: what the model will see",
    options=(
        Option("output", help="the picture to write", metavar="FILE.png", required=True),
        Option("samples", Annotated[int, Range(1, 256)], "rows: training images", 8),
        Option("variants", Annotated[int, Range(0, 64)], "augmented variants of each image, after it", 7),
    ),
    overrides="OVERRIDES...: the experiment, as zoo train composes it (data=, aug=, aug.ops.NAME.PARAM=...)",
    examples=("zoo augment output=aug.png aug=heavy",),
)


def run(args: list[str]) -> int:
    """Compose the experiment's data and augmentations, write the grid (replaced whole)."""
    own, overrides = VERB.own(args)
    kv = VERB.parse(own)
    if "output" not in kv or not kv["output"].lower().endswith(".png"):
        raise ZooError("zoo augment needs output=FILE.png")
    from zoo.report.visual import augment_grid  # lazy: torch, only once the arguments are valid

    image = augment_grid(overrides, VERB.value(kv, "samples"), VERB.value(kv, "variants"))
    out = Path(kv["output"])
    make_folder(out.parent)
    tmp = out.with_name(f".{out.name}.tmp.png")
    image.save(tmp)
    tmp.replace(out)
    print(f"wrote {out}: {image.size[0]}x{image.size[1]} (each row: the image as loaded, then augmented variants)")
    return 0
