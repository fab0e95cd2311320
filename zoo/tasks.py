"""The tasks zoo serves and, for each, its output contract: one table the whole core reads.

A head names its deployed outputs as it likes (`Head.output_names`); they are matched by position to the
task's roles below, required roles first, then optional ones. The export checks each output's dtype and
rank against its role and writes the roles into the ONNX metadata; the runtime finds outputs by role, so
no part of zoo depends on a plugin's output names.

Each task's entry is all that zoo knows of the task: its outputs (dtype, axes, fp16 tolerance), what a
training sample's target is (`target`, how zoo.testing generates one and zoo.data augments it), what the
outputs mean in the export's metadata (`semantics`, `data_semantics`: zoo.deploy.schema writes them), and
how `predict` turns them into per-image JSON (`formatter`: the runtime calls it). Adding a task is one entry.
Standard library at import (numpy only inside the formatters): the torch-free runtime imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError, unknown

# Axes that follow the input image: dynamic in the export only when the model takes any height and width.
SIZE_AXES = ("height", "width")


@dataclass(frozen=True)
class Output:
    """One deployed output of a task: its role, dtype, symbolic axes, and which of them the export keeps dynamic."""

    role: str
    dtype: str  # "float32" or "int64"
    axes: tuple[str, ...]  # symbolic: batch, class, value, height, width, detection, or a fixed size such as "4"
    dynamic: tuple[str, ...] = ("batch",)
    optional: bool = False
    # fp16 exports' parity against PyTorch fp32: float outputs' max |diff| (relative above 1), integer outputs'
    # fraction of elements that differ (a near-tie flips an argmax more often in half precision)
    half_tolerance: float = 1e-2

    @property
    def rank(self) -> int:
        """The number of axes."""
        return len(self.axes)

    def dynamic_axes(self, dynamic_size: bool) -> dict[int, str]:
        """ONNX dynamic axes {position: name}; height and width only when the model takes any input size."""
        return {i: a for i, a in enumerate(self.axes) if a in self.dynamic and (dynamic_size or a not in SIZE_AXES)}


# A formatter: (outputs by role, one batch; labels; top k; per image (height, width) scales from the network's
# input to the original image, or None) -> one JSON-ready dict per image, as `zoo predict` prints it.
Formatter = Callable[[dict[str, Any], Sequence[str], int, "Sequence[tuple[float, float]] | None"], list[dict]]


@dataclass(frozen=True)
class Task:
    """A task's contract: ordered outputs, `predict`'s JSON keys per image and how they are made (`formatter`),
    whether ensembles average it, its training target's kind, and what the outputs mean (zoo.format's
    postprocessing: the task's own `semantics`, plus `data_semantics(info)` from the data set)."""

    name: str
    outputs: tuple[Output, ...]
    predict_keys: tuple[str, ...]
    formatter: Formatter = field(repr=False)
    target: str  # a sample's target: "index" (a class), "values" (a vector), "mask" (H x W classes), "boxes"
    averageable: bool = False
    semantics: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    data_semantics: Callable[[Any], dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    @property
    def required(self) -> tuple[Output, ...]:
        """The outputs every head of the task must give, in order."""
        return tuple(o for o in self.outputs if not o.optional)

    @property
    def optional(self) -> tuple[Output, ...]:
        """The outputs a head may add after the required ones, in order."""
        return tuple(o for o in self.outputs if o.optional)

    @property
    def roles(self) -> tuple[str, ...]:
        """Role names, required first, in the order output names are matched to them."""
        return tuple(o.role for o in self.required + self.optional)

    def describe(self) -> str:
        """The roles as one line, optional ones in brackets: 'mask [probabilities]'."""
        return " ".join(o.role for o in self.required) + "".join(f" [{o.role}]" for o in self.optional)


def _label(labels: Sequence[str], i: int) -> str:
    return labels[i] if 0 <= i < len(labels) else str(i)


def _classification(out: dict[str, Any], labels: Sequence[str], topk: int, scales=None) -> list[dict]:
    """The top k labels per image, best first, and the best one's label, index and score."""
    import numpy as np

    probs = out["probabilities"]
    k = max(1, min(topk, probs.shape[1]))
    results = []
    for row in probs:
        order = np.argsort(-row)[:k]
        top = [{"label": _label(labels, i), "score": round(float(row[i]), 6)} for i in order]
        results.append({"label": top[0]["label"], "index": int(order[0]), "score": top[0]["score"], "topk": top})
    return results


def _regression(out: dict[str, Any], labels: Sequence[str], topk: int, scales=None) -> list[dict]:
    """Each image's values by label."""
    values = out["values"]
    return [
        {"values": {_label(labels, j): round(float(values[i, j]), 6) for j in range(values.shape[1])}}
        for i in range(values.shape[0])
    ]


def _segmentation(out: dict[str, Any], labels: Sequence[str], topk: int, scales=None) -> list[dict]:
    """Each image's mask size, the fraction of its pixels per label present, and the mask itself (an array)."""
    import numpy as np

    results = []
    for mask in out["mask"]:
        counts = np.bincount(mask.ravel(), minlength=len(labels))
        fractions = {_label(labels, c): round(float(counts[c]) / mask.size, 6) for c in np.nonzero(counts)[0]}
        results.append({"size": list(mask.shape), "pixels": fractions, "mask": mask})
    return results


def _detection(out: dict[str, Any], labels: Sequence[str], topk: int, scales=None) -> list[dict]:
    """Each image's detections (label, index, score, xyxy box), boxes scaled by `scales` when given."""
    results = []
    for i in range(len(out["num_detections"])):
        k = int(out["num_detections"][i])
        sy, sx = (1.0, 1.0) if scales is None else scales[i]
        dets = []
        for box, score, label in zip(out["boxes"][i][:k], out["scores"][i][:k], out["labels"][i][:k]):
            x0, y0, x1, y1 = (float(v) for v in box)
            dets.append(
                {
                    "label": _label(labels, int(label)),
                    "index": int(label),
                    "score": round(float(score), 6),
                    "box": [round(x0 * sx, 2), round(y0 * sy, 2), round(x1 * sx, 2), round(y1 * sy, 2)],
                }
            )
        results.append({"detections": dets})
    return results


def _regression_units(info: Any) -> dict[str, Any]:
    units = list(getattr(info, "units", ()) or ())
    return {"units": units if len(units) == len(info.classes) else [None] * len(info.classes)}


def _segmentation_background(info: Any) -> dict[str, Any]:
    return {"background_index": getattr(info, "background", None)}


_BATCH_SIZE = ("batch", "height", "width")

TABLE: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "classification",
            (Output("probabilities", "float32", ("batch", "class"), half_tolerance=5e-3),),
            predict_keys=("label", "index", "score", "topk"),
            formatter=_classification,
            target="index",
            averageable=True,
            semantics={"probabilities": "softmax over labels: one row per image sums to 1"},
        ),
        Task(
            "regression",
            (Output("values", "float32", ("batch", "value")),),
            predict_keys=("values",),
            formatter=_regression,
            target="values",
            averageable=True,
            data_semantics=_regression_units,
        ),
        Task(
            "segmentation",
            (
                Output("mask", "int64", ("batch", "height", "width"), _BATCH_SIZE),
                Output(
                    "probabilities",
                    "float32",
                    ("batch", "class", "height", "width"),
                    _BATCH_SIZE,
                    optional=True,
                    half_tolerance=5e-3,
                ),
            ),
            predict_keys=("size", "pixels"),  # plus "mask_file" when masks are written
            formatter=_segmentation,
            target="mask",
            semantics={"mask": "the label index of each pixel, at the height and width the network saw"},
            data_semantics=_segmentation_background,
        ),
        Task(
            "detection",
            (
                Output("boxes", "float32", ("batch", "detection", "4")),
                Output("scores", "float32", ("batch", "detection"), half_tolerance=5e-3),
                Output("labels", "int64", ("batch", "detection")),
                Output("num_detections", "int64", ("batch",)),
            ),
            predict_keys=("detections",),  # each: label, index, score, box; plus "drawn_file" when drawn
            formatter=_detection,
            target="boxes",
            semantics={
                "box": {
                    "format": "xyxy",
                    "units": "pixels of the network's input (input.size, [height, width]), continuous: 0 is the "
                    "left or top edge of the first pixel",
                    "to_original": "x * original_width / input.size[1], y * original_height / input.size[0] "
                    "(the resize stretches, so each axis scales on its own)",
                },
                "padding": "rows past num_detections: boxes 0, scores 0, labels -1",
            },
        ),
    )
}
TASKS = tuple(TABLE)


# Outputs an export adds on request (`export.outputs=[embedding, cam]`) after its task's own, whatever the task:
# what the model sees in each image, for apps that retrieve or draw heat maps from onnxruntime alone. The
# output is named as its role; the metadata marks it `extra` and says what it holds (`about`).
EXTRAS: dict[str, Output] = {
    "embedding": Output("embedding", "float32", ("batch", "feature")),
    "cam": Output("cam", "float32", ("batch", "class", "cam_height", "cam_width")),
}
EXTRA_ABOUT = {
    "embedding": "penultimate features: the input of the head's last linear layer, or (a head with none) the "
    "deepest feature map averaged over its pixels; what zoo explain embeddings projects",
    "cam": "class-activation maps at the deepest feature map's resolution (cam_height x cam_width, input size / "
    "stride): the classifier's weights and bias applied at each location; with average pooling a class's mean "
    "over the map is its logit; upsample to the input size (bilinear) to overlay",
}


def extra(name: str, where: str = "export.outputs") -> Output:
    """The extra output `name` (EXTRAS); an unknown one is one line with close matches."""
    if name not in EXTRAS:
        e = unknown("extra output", name, EXTRAS)
        raise ZooError(f"{where}: {e}")
    return EXTRAS[name]


def task(name: str, where: str | None = None) -> Task:
    """The contract of task `name`; an unknown task is one line with close matches (prefixed by `where`)."""
    if name not in TABLE:
        e = unknown("task", name, TASKS)
        raise ZooError(f"{where}: {e}" if where else str(e))
    return TABLE[name]


def averageable() -> tuple[str, ...]:
    """The tasks whose outputs an ensemble can average."""
    return tuple(t.name for t in TABLE.values() if t.averageable)


def match(task_name: str, output_names: Sequence[str], where: str = "head") -> list[tuple[str, Output]]:
    """Check a head's task and output names against the table; return (name, Output) pairs, matched by position.

    The names must be unique Python identifiers, as many as the task's required roles, and at most as many
    as its required and optional roles together.
    """
    t = task(task_name, where)
    names = list(output_names)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier():
            raise ZooError(f"{where}: output name {n!r} must be an identifier (letters, digits, '_')")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ZooError(f"{where}: output names must be unique; {', '.join(map(repr, repeated))} repeats")
    lo, hi = len(t.required), len(t.outputs)
    if not lo <= len(names) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise ZooError(
            f"{where}: a {task_name} head gives {want} output(s), matched by position to the roles "
            f"{t.describe()}; it names {len(names)}: {tuple(names)}"
        )
    roles = t.required + t.optional
    return list(zip(names, roles))


def check_tensors(task_name: str, outputs: Sequence[tuple[str, str, int]], where: str = "head") -> None:
    """Check deployed outputs, each (name, dtype, rank), against the task's roles; one line naming the first misfit."""
    pairs = match(task_name, [name for name, _, _ in outputs], where)
    for (name, role), (_, dtype, rank) in zip(pairs, outputs):
        if dtype != role.dtype or rank != role.rank:
            raise ZooError(
                f"{where}: output {name!r} (role {role.role}) is {dtype} of rank {rank}; a {task_name} model's "
                f"{role.role} is {role.dtype} of rank {role.rank} ({', '.join(role.axes)})"
            )


def roles_by_position(task_name: str, output_names: Sequence[str], where: str = "outputs") -> dict[str, str]:
    """{role: output name} for outputs named in the table's order (format-1 exports, which name no roles)."""
    return {role.role: name for name, role in match(task_name, output_names, where)}
