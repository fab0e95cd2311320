"""`zoo bench inference|discovery|transfer|train`: side-by-side measurements in one run, reported as ratios.

Each benchmark is a part of the verb with its own options; `zoo bench inference` takes the runtime's session
options as `zoo predict` does (zoo.runtime.predict.runtime_options_spec).
"""

from __future__ import annotations

from typing import Annotated

from zoo.errors import ZooError, unknown
from zoo.params import Range
from zoo.runtime.predict import runtime_options_spec, runtime_split
from zoo.verbs import Option, Verb

OVERRIDES = "OVERRIDES...: the experiment, as zoo train composes it"
INFERENCE = Verb(
    "bench inference",
    "onnxruntime vs PyTorch on the same device, each export's precision",
    options=lambda: (
        Option("model", help="exports of one checkpoint (zoo export)", metavar="PATH[,PATH...]", required=True),
        Option("batch", help="batch sizes", default="1,32", metavar="N[,N...]"),
        Option("repeats", Annotated[int, Range(1, 100_000)], "timed runs per batch size", 10),
        *runtime_options_spec(),
    ),
    examples=("zoo bench inference model=exports/lenet/model.onnx,exports/lenet_int8/model.onnx batch=1,64",),
)
DISCOVERY = Verb(
    "bench discovery",
    "zoo list and a typo, cold and warm",
    options=(
        Option("packages", Annotated[int, Range(1, 10_000)], "plugin packages installed for the measurement", 20),
        Option("repeats", Annotated[int, Range(1, 1000)], "runs of each command", 5),
    ),
)
TRANSFER = Verb(
    "bench transfer",
    "head epochs of transfer=frozen vs cached",
    options=(Option("repeats", Annotated[int, Range(1, 1000)], "timed epochs of each", 5),),
    overrides=OVERRIDES,
)
TRAIN = Verb(
    "bench train",
    "training images/s: whole step, data pipeline, model step per precision",
    options=(
        Option("repeats", Annotated[int, Range(1, 1000)], "timed runs of each", 3),
        Option("batches", Annotated[int, Range(1)], "batches per run; default: one epoch"),
    ),
    overrides=OVERRIDES,
)
PARTS = {"inference": INFERENCE, "discovery": DISCOVERY, "transfer": TRANSFER, "train": TRAIN}
VERB = Verb("bench", "side-by-side measurements in one run, reported as ratios", parts=tuple(PARTS.values()))


def run(args: list[str]) -> int:
    """Run the benchmark the first argument names; print its lines as they come."""
    if not args or args[0] not in PARTS:
        raise (
            unknown("benchmark", args[0], PARTS)
            if args
            else ZooError(f"zoo bench needs a benchmark: {', '.join(PARTS)}")
        )
    name, args = args[0], args[1:]
    if name == "inference":
        return run_inference(args)
    if name == "discovery":
        kv = DISCOVERY.parse(args)
        from zoo.bench import discovery  # lazy: numpy, only once the arguments are valid

        lines = discovery(DISCOVERY.value(kv, "packages"), DISCOVERY.value(kv, "repeats"))
    elif name == "train":
        own, overrides = TRAIN.own(args)
        kv = TRAIN.parse(own)
        from zoo.bench import train  # lazy: numpy, only once the arguments are valid

        lines = train(overrides, TRAIN.value(kv, "repeats"), kv.get("batches"))
    else:
        own, overrides = TRANSFER.own(args)
        kv = TRANSFER.parse(own)
        from zoo.bench import transfer  # lazy: numpy, only once the arguments are valid

        lines = transfer(overrides, TRANSFER.value(kv, "repeats"))
    for line in lines:
        print(line)
    return 0


def run_inference(args: list[str]) -> int:
    """zoo bench inference: each export and PyTorch, at each batch size."""
    kv, options = runtime_split(INFERENCE.parse(args))
    if "model" not in kv:
        raise ZooError("zoo bench inference needs model=DIR/model.onnx[,DIR2/model.onnx...] (from zoo export)")
    from zoo.bench import inference, int_list  # lazy: numpy, only once the arguments are valid

    models = [m for m in kv["model"].split(",") if m]
    batches = int_list(INFERENCE.value(kv, "batch"), "batch")
    for line in inference(models, batches, INFERENCE.value(kv, "repeats"), INFERENCE.value(kv, "providers"), options):
        print(line)
    return 0
