"""`zoo summary`: a model counted layer by layer, at one input size.

Per layer (leaf modules and any module with parameters or operations of its own, by dotted name, in the order
they first run): output shape, parameters (trainable or not; a shared parameter counted once, where it is first
used), multiply-accumulates, the output's memory at float32 for one image, and receptive field and stride in
input pixels (zoo.report.receptive). Totals at the end.

Shapes, parameters and memory come from forward hooks; multiply-accumulates from torch's own
`torch.utils.flop_counter.FlopCounterMode`, per module, halved: it counts a multiply and an add as two FLOPs for
convolutions and matrix products, the operations it has formulas for (pooling, normalisation and activations
count nothing, as in torchvision's published figures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zoo.report.receptive import Field, receptive_fields

MB = 2**20  # a megabyte as the lectures count one (VGG16's 528 MB of float32 weights)


@dataclass
class Layer:
    """One row of the table."""

    name: str
    kind: str  # the module's class
    shape: tuple[int, ...] | None  # output, for one image
    params: int = 0
    trainable: int = 0
    macs: int = 0
    memory: int = 0  # bytes of the output at float32
    field: Field | None = None
    order: int = 0


@dataclass
class Summary:
    """A model counted: its rows and totals."""

    input_shape: tuple[int, ...]  # (C, H, W)
    layers: list[Layer]
    params: int
    trainable: int
    macs: int
    memory: int  # bytes of every row's output at float32, one image
    size: int  # bytes of the parameters and buffers as stored

    def to_dict(self) -> dict:
        """Plain data (`zoo summary --json`)."""
        return asdict(self)


def _own_params(module: nn.Module, seen: set[int]) -> tuple[int, int]:
    """(all, trainable) parameters held by `module` itself and not counted before."""
    total = trainable = 0
    for p in module.parameters(recurse=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def _flops_by_name(counter: FlopCounterMode, model: nn.Module) -> dict[str, int]:
    """FLOPs per dotted module name ('' the model), from the counter's names (the root's class first)."""
    root = type(model).__name__
    out = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key.removeprefix(root + ".")
        out[name] = sum(ops.values())
    return out


def _own_flops(flops: dict[str, int], name: str) -> int:
    """A module's FLOPs less those of the modules it called (its nearest descendants the counter saw: a
    ModuleList is never called itself)."""
    prefix = f"{name}." if name else ""
    inner = [k for k in flops if k.startswith(prefix) and k != name]
    nearest = [k for k in inner if not any(k.startswith(o + ".") for o in inner if o != k)]
    return flops.get(name, 0) - sum(flops[k] for k in nearest)


def summarize(model: nn.Module, input_shape: tuple[int, int, int], fields: bool = True) -> Summary:
    """Count `model` on one image of `input_shape` (C, H, W) on the CPU; `fields`: measure receptive fields."""
    names = {m: n for n, m in model.named_modules()}
    first: dict[nn.Module, tuple[int, torch.Tensor | None]] = {}

    def keep(module, _inputs, output):
        if module not in first:
            out = output if isinstance(output, torch.Tensor) else None
            first[module] = (len(first), out)

    handles = [m.register_forward_hook(keep) for m in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    flops = _flops_by_name(counter, model)
    seen: set[int] = set()
    layers = []
    for module, (order, out) in sorted(first.items(), key=lambda kv: kv[1][0]):
        name = names[module]
        own = _own_flops(flops, name)
        params, trainable = _own_params(module, seen)
        if list(module.children()) and not params and not own:
            continue  # a container: its layers are the rows
        shape = tuple(out.shape[1:]) if out is not None else None
        memory = out[0].numel() * 4 if out is not None and out.dim() > 0 else 0
        layers.append(Layer(name or type(model).__name__, type(module).__name__, shape, params, trainable, own // 2,
                            memory, None, order))  # fmt: skip
    rest = _own_params_left(model, seen)
    if rest[0]:  # parameters no forward used: counted, in a row of their own
        layers.append(Layer("(not used in forward)", "-", None, *rest, order=len(first)))
    if fields:
        by_name = {names[m]: m for m in first}
        measured = receptive_fields(model, {row.name: by_name[row.name] for row in layers if row.name in by_name},
                                    input_shape)  # fmt: skip
        for row in layers:
            row.field = measured.get(row.name)
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return Summary(
        tuple(input_shape),
        layers,
        sum(r.params for r in layers),
        sum(r.trainable for r in layers),
        counter.get_total_flops() // 2,
        sum(r.memory for r in layers),
        size,
    )


def _own_params_left(model: nn.Module, seen: set[int]) -> tuple[int, int]:
    total = trainable = 0
    for m in model.modules():
        a, b = _own_params(m, seen)
        total, trainable = total + a, trainable + b
    return total, trainable


# ---- the table ------------------------------------------------------------------------------------------


def _count(n: float) -> str:
    """1,234,567 as `1.23M`, 15,470,000,000 as `15.47G`."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def _field_text(f: Field | None) -> tuple[str, str]:
    if f is None:
        return "-", "-"
    size = f"{f.size[0]}" if f.size[0] == f.size[1] else f"{f.size[0]}x{f.size[1]}"
    stride = f"{f.stride[0]}" if f.stride[0] == f.stride[1] else f"{f.stride[0]}x{f.stride[1]}"
    stride = "-" if 0 in f.stride else stride  # a one-unit output has no step to measure
    return size + ("+" if f.clipped else ""), stride


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)

    def text(self, header: list[str]) -> str:
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(len(header))]
        lines = [header, ["-" * w for w in widths], *self.rows]
        return "\n".join(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in lines
        )


def render(summary: Summary) -> str:
    """The table and its totals, as `zoo summary` prints them."""
    table = _Table()
    for r in summary.layers:
        frozen = r.params - r.trainable
        rf, stride = _field_text(r.field)
        table.rows.append(
            [
                r.name,
                r.kind,
                "x".join(map(str, r.shape)) if r.shape else "-",
                f"{r.params:,}" + (f" ({frozen:,} frozen)" if frozen else ""),
                _count(r.macs),
                f"{r.memory / 1e3:,.1f}K",
                rf,
                stride,
            ]
        )
    header = ["layer", "type", "output", "params", "MACs", "memory", "RF", "stride"]
    c, h, w = summary.input_shape
    totals = [
        f"input: {c}x{h}x{w} (one image)",
        f"parameters: {summary.params:,} ({summary.trainable:,} trainable, "
        f"{summary.params - summary.trainable:,} frozen)",
        f"multiply-accumulates: {_count(summary.macs)} ({summary.macs:,})",
        f"activation memory: {summary.memory / MB:.2f} MB (every layer's output at float32)",
        f"model size: {summary.size / MB:.2f} MB (parameters and buffers as stored)",
    ]
    return table.text(header) + "\n\n" + "\n".join(totals) + "\n"


# ---- what is counted: a config's model or a run's ----------------------------------------------------------


def model_of_config(overrides: list[str]):
    """The model `zoo train OVERRIDES` would train, built as it builds it (data, model, transfer strategy: what
    it freezes shows as frozen) on the CPU, and its input shape (C, H, W)."""
    from zoo.train.config import compose, to_plain  # lazy: Hydra, only when a config is summarised
    from zoo.train.experiment import build_experiment  # lazy: the one builder training uses

    plain = to_plain(compose(overrides))
    plain["trainer"]["device"] = "cpu"
    experiment = build_experiment(plain)
    info = experiment.info
    return experiment.model, (info.channels, *info.size)


def model_of_run(source: str):
    """A trained run's (or checkpoint's) model and its input shape (C, H, W)."""
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint  # lazy: only for run=

    model, info = model_from_checkpoint(load_checkpoint(source))
    return model, (info.channels, *info.size)
