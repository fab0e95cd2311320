"""`zoo predict` and `zoo-predict`: run an exported model with onnxruntime alone; one JSON line per image.

`main` is the runtime-only wheel's `zoo-predict` console script and `zoo predict` (zoo.cli) runs the same
`run`. The runtime's session options are RuntimeOptions' fields, read from there (`runtime_options_spec`),
so a new field is a new `zoo predict` and `zoo bench inference` option, with its help, without an edit here.
No torch, no plugins.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from typing import Annotated

from zoo.errors import ZooError
from zoo.params import Range
from zoo.runtime.options import OPTION_CHOICES, PROVIDER_CHOICES, RuntimeOptions
from zoo.verbs import Option, Verb, dataclass_options, names, run_verb

COUNT = Range(1)  # a batch, a number of results or samples: at least one
PROVIDERS = Option(
    "providers",
    help="where the model runs: auto picks TensorRT, CUDA or the CPU, whichever really works here",
    default="auto",
    metavar="|".join(PROVIDER_CHOICES),
    aliases=("provider",),
)


def runtime_options_spec() -> tuple[Option, ...]:
    """providers=, then RuntimeOptions' fields as options (text: zoo.runtime checks them): `zoo predict` and
    `zoo bench inference` take the same keys."""
    return (PROVIDERS, *dataclass_options(RuntimeOptions, as_text=True, choices=OPTION_CHOICES))


def runtime_split(kv: dict) -> tuple[dict, dict]:
    """Parsed arguments as (the verb's own, the runtime's session options)."""
    runtime = {f.name for f in fields(RuntimeOptions)}
    return {k: v for k, v in kv.items() if k not in runtime}, {k: v for k, v in kv.items() if k in runtime}


def options() -> tuple[Option, ...]:
    """model=, input=, what to write, then the runtime's options."""
    return (
        Option("model", help="an exported model.onnx (zoo export)", metavar="PATH", required=True),
        Option(
            "input",
            help="an image, or a folder of images (a model of N-channel bands: .npy arrays, H x W x C)",
            metavar="FILE_OR_DIR",
            required=True,
        ),
        Option("topk", Annotated[int, COUNT], "classification: the best classes per image", 5),
        Option("batch", Annotated[int, COUNT], "images per onnxruntime call", 32),
        Option("masks", help="segmentation: write each image's mask PNG here", metavar="DIR"),
        Option("draw", help="detection: write each image with its detected boxes here", metavar="DIR"),
        Option("outputs", names, "extra outputs the export added with export.outputs", metavar="embedding,cam"),
        *runtime_options_spec(),
    )


VERB = Verb(
    "predict",
    "run an exported model with onnxruntime; one JSON line per image",
    options=options,
    examples=(
        "zoo predict model=exports/lenet/model.onnx input=images/ topk=3",
        "zoo predict model=exports/seg/model.onnx input=images/ masks=masks/ threads=4",
    ),
)


def run(args: list[str]) -> int:
    """Predict every image; an unreadable or refused image is one line on stderr and exit 2, the others are
    still predicted."""
    from zoo.runtime.decoding import list_images  # lazy: numpy, only when predicting (not for `zoo --help`)
    from zoo.runtime.session import Model  # lazy: numpy and onnxruntime, only when predicting

    kv, options = runtime_split(VERB.parse(args))
    for need in ("model", "input"):
        if need not in kv:
            raise ZooError(f"zoo predict needs {need}=PATH")
    model = Model(kv["model"], VERB.value(kv, "providers"), **options)
    model.check_extras(kv.get("outputs", []))  # embedding, cam: extra outputs the export added
    files = list_images(kv["input"], model.input.extensions)  # images, or .npy arrays for a model of bands
    # what the model gives is declared by its outputs' roles (zoo.tasks), whatever the head named them
    if "masks" in kv and "mask" not in model.roles:
        raise ZooError(f"masks=DIR writes segmentation masks, but this {model.task} model gives no mask output")
    if "draw" in kv and "boxes" not in model.roles:
        raise ZooError(f"draw=DIR draws detected boxes, but this {model.task} model gives no boxes output")
    errors: list[str] = []
    for r in model.predict_files(
        files,
        topk=VERB.value(kv, "topk"),
        batch_size=VERB.value(kv, "batch"),
        masks_dir=kv.get("masks"),
        draw_dir=kv.get("draw"),
        errors=errors if len(files) > 1 else None,
        extras=kv.get("outputs", []),
    ):
        print(json.dumps(r))
    for e in errors:
        print(f"zoo: error: {e}", file=sys.stderr)
    return 2 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """The `zoo-predict` console script: `zoo predict` without the rest of zoo."""
    return run_verb(VERB, run, list(sys.argv[1:] if argv is None else argv))
