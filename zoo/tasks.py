"""The tasks zoo serves and, for each, its output contract: one table the whole core reads.

A head names its deployed outputs as it likes (`Head.output_names`); they are matched by position to the
task's roles below, required roles first, then optional ones. The export checks each output's dtype and
rank against its role and writes the roles into the ONNX metadata; the runtime finds outputs by role, so
no part of zoo depends on a plugin's output names. Standard library only: the torch-free runtime imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zoo.errors import ZooError, unknown

TASKS = ("classification", "regression", "segmentation", "detection")

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


@dataclass(frozen=True)
class Task:
    """A task's output contract: ordered outputs, `predict`'s JSON keys per image, whether ensembles average it."""

    name: str
    outputs: tuple[Output, ...]
    predict_keys: tuple[str, ...]
    averageable: bool = False

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


_BATCH_SIZE = ("batch", "height", "width")

TABLE: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "classification",
            (Output("probabilities", "float32", ("batch", "class"), half_tolerance=5e-3),),
            predict_keys=("label", "index", "score", "topk"),
            averageable=True,
        ),
        Task(
            "regression",
            (Output("values", "float32", ("batch", "value")),),
            predict_keys=("values",),
            averageable=True,
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
        ),
    )
}


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
