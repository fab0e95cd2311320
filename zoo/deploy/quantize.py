"""Export precisions other than fp32: `export.precision=fp16|int8`, each behind its own gate.

zoo.deploy.export writes and checks the fp32 graph first; `convert` then rewrites it in the export's temporary
folder, so a refused conversion leaves nothing behind, as a failed export always did.

- fp16: onnxruntime's float16 converter with `keep_io_types=True`: the graph computes in half precision,
  its input and outputs stay float32, so clients do not change. Parity against the fp32 PyTorch model is
  gated per output role by the tolerance the task table declares (`Output.half_tolerance`, zoo.tasks).
- int8: onnxruntime's static quantization (QDQ, per-channel int8 weights), calibrated on images of the
  run's own train split. The gate is the run's monitored test metric: the head's own metrics (through the
  engine's `evaluate`) score the int8 graph's raw head outputs on the test split, against the fp32 PyTorch
  model's; a drop beyond `export.max_metric_drop` refuses the export. The graph scored is the one served:
  it is quantized with the raw outputs as extra graph outputs, which are cut off afterwards.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data import build_data, loader
from zoo.deploy.graph import trace_onnx
from zoo.errors import ZooError
from zoo.model import ZooModel
from zoo.runtime import Model
from zoo.train.engine import evaluate
from zoo.train.experiment import metric_mode

log = logging.getLogger("zoo")

RAW_PREFIX = "zoo_raw_"  # the raw head outputs the int8 gate scores; never in a served graph
QUANT_FORMAT = "QDQ"


def convert(model, deploy, cfg: dict, ecfg: dict, onnx_path: Path, x: torch.Tensor, expected: tuple) -> dict:
    """Rewrite the checked fp32 graph at `onnx_path` at `ecfg['precision']`; return what the card and the
    metadata record about it (`{"precision": "fp32"}` when nothing changes)."""
    precision = ecfg["precision"]
    if precision == "fp16":
        record = to_fp16(deploy, onnx_path, x, expected)
    elif precision == "int8":
        record = to_int8(model, deploy, cfg, ecfg, onnx_path, x)
    else:
        return {"precision": "fp32"}
    _set_metadata(onnx_path, record)
    return record


def check_precision(model, ecfg: dict) -> None:
    """Refuse, before any work, a precision this model cannot have."""
    if ecfg["precision"] == "int8" and not isinstance(model, ZooModel):
        raise ZooError("export.precision=int8 is gated by one model's test metric; export an ensemble as fp32 or fp16")
    if ecfg["precision"] != "fp32" and ecfg["input"] == "uint8":
        # the conversions rewrite and score the network's graph on float32 images; the uint8 form's in-graph
        # preprocessing is not quantized yet, so a reduced-precision export takes the float32 form
        log.info(
            f"export.precision={ecfg['precision']}: the export takes the float32 input form (export.input=float32)"
        )
        ecfg["input"] = "float32"


# ---- fp16 --------------------------------------------------------------------------------------


def to_fp16(deploy, onnx_path: Path, x: torch.Tensor, expected: tuple) -> dict:
    """Half-precision arithmetic with float32 input and outputs, gated by each role's declared tolerance."""
    import onnx
    from onnxruntime.quantization.onnx_model import ONNXModel
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter's notes on values clipped to the fp16 range
        half = ONNXModel(convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True))
    half.topological_sort()  # the converter appends the input's cast after the nodes that read it
    onnx.save(half.model, str(onnx_path))
    served = Model(onnx_path, providers="auto")
    got = served.run(x.numpy())
    provider = served.providers[0]
    diffs = half_parity(deploy, got, expected)
    note = (
        f"half-precision arithmetic on {provider}"
        if provider != "CPUExecutionProvider"
        else "checked on the CPU, where onnxruntime runs float16 nodes in float32 between casts it inserts (no "
        "float16 kernels there): this checks the graph and its float16 weights; fp16 targets GPUs (CUDA, TensorRT)"
    )
    return {"precision": "fp16", "io": "float32", "parity": {"provider": provider, "note": note, **diffs}}


def half_parity(deploy, got: dict, expected: tuple) -> dict:
    """Each output against PyTorch fp32 within its role's `half_tolerance` (zoo.tasks): float outputs by
    |diff| (relative above 1), integer outputs by the fraction of elements that differ."""
    measured, tolerances = {}, {}
    for (name, role), e in zip(deploy.roles, expected):
        e, g = e.numpy().astype(np.float64), got[name].astype(np.float64)
        if g.shape != e.shape:
            raise ZooError(f"export.precision=fp16: output {name!r} has shape {list(g.shape)}, PyTorch {list(e.shape)}")
        d = np.abs(g - e)
        floating = role.dtype.startswith("float")
        value = float((d / np.maximum(1.0, np.abs(e))).max() if floating else (d > 0).mean()) if d.size else 0.0
        measured[name], tolerances[name] = value, role.half_tolerance
        if not value <= role.half_tolerance:
            off = f"by {value:.3g} (max |diff|" if floating else f"in {value:.2%} of its elements ("
            raise ZooError(
                f"export.precision=fp16: output {name!r} (role {role.role}) differs from PyTorch fp32 {off}; the "
                f"{deploy.task} task allows {role.half_tolerance}); export fp32 instead; nothing was written"
            )
    return {"measured": measured, "tolerance": tolerances}


# ---- int8 --------------------------------------------------------------------------------------


class Graph:
    """An ONNX graph with raw head outputs, standing in for a ZooModel in zoo.train.engine.evaluate: called on a
    batch, it returns the head's raw outputs (a tensor, or a tuple as the head's forward gives them)."""

    def __init__(self, path: Path, head, raw_names: list[str], single: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.head, self.raw_names, self.single = head, raw_names, single

    def eval(self) -> Graph:
        return self

    def __call__(self, x: torch.Tensor):
        outs = self.session.run(self.raw_names, {"input": x.numpy()})
        tensors = tuple(torch.from_numpy(o) for o in outs)
        return tensors[0] if self.single else tensors


class RawOutputs(torch.nn.Module):
    """The deployed graph with the head's raw outputs appended (what the metrics score), for quantization."""

    def __init__(self, deploy, raw_count: int):
        super().__init__()
        self.deploy = deploy
        self.raw_names = [f"{RAW_PREFIX}{i}" for i in range(raw_count)]
        self.output_names = (*deploy.output_names, *self.raw_names)
        self.dynamic_size = deploy.dynamic_size
        self.output_axes = {**deploy.output_axes, **{n: {0: "batch"} for n in self.raw_names}}

    def forward(self, x: torch.Tensor):
        seen = []  # the ZooModel's output inside the deployed graph: the same nodes, not a second copy
        hook = self.deploy.model.register_forward_hook(lambda module, args, output: seen.append(output))
        try:
            out = self.deploy(x)
        finally:
            hook.remove()
        return (*(out if isinstance(out, tuple) else (out,)), *_flat(seen[0]))


def _flat(raw) -> tuple[torch.Tensor, ...]:
    if isinstance(raw, torch.Tensor):
        return (raw,)
    if isinstance(raw, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in raw):
        return tuple(raw)
    raise ZooError(
        f"export.precision=int8 scores the head's raw outputs, which must be a tensor or a tuple of tensors; "
        f"this head's forward returns {type(raw).__name__}; export fp32 or fp16"
    )


class Calibration:
    """A CalibrationDataReader (onnxruntime's protocol: get_next, rewind) over images of the run's train split,
    already at the model's size and in [0, 1] (the normalisation is inside the graph), in batches."""

    def __init__(self, images: torch.Tensor, batch: int = 32):
        self.batches = [{"input": images[i : i + batch].numpy()} for i in range(0, len(images), batch)]
        self.position = 0

    def get_next(self) -> dict | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def calibration_images(train, count: int, seed: int) -> torch.Tensor:
    """`count` images of the train split (all when it has fewer), a seeded choice without repeats."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    return torch.stack([train[int(i)][0] for i in order])


def monitored(model, cfg: dict) -> tuple[str, str]:
    """The run's monitored metric (trainer.monitor, or the head's own) and whether it is minimised or maximised."""
    name = cfg["trainer"].get("monitor", "auto")
    name = model.head.monitor if name == "auto" else name
    return name, metric_mode(model, name)


def to_int8(model, deploy, cfg: dict, ecfg: dict, onnx_path: Path, x: torch.Tensor) -> dict:
    """Static int8 quantization calibrated on the run's train split, refused when the monitored test metric
    drops more than export.max_metric_drop."""
    seed = int(cfg.get("seed", 0))
    data = build_data(cfg, seed)
    if len(data.train) == 0 or len(data.test) == 0:
        raise ZooError("export.precision=int8 calibrates on the train split and scores the test split; one is empty")
    with torch.no_grad():
        raw = model.eval()(x[:2])
    wrapper = RawOutputs(deploy, len(_flat(raw))).eval()
    calib = calibration_images(data.train, int(ecfg["calibration_samples"]), seed)
    folder = onnx_path.parent
    float_graph, int8_graph = folder / "raw.fp32.onnx", folder / "raw.int8.onnx"
    kept: list[str] = []
    try:
        _write_raw(wrapper, x, float_graph, int(ecfg["opset"]))
        kept = postprocess_nodes(float_graph, wrapper.raw_names)
        _quantize(float_graph, int8_graph, calib, ecfg, kept)
        name, mode = monitored(model, cfg)
        batches = loader(data.test, int(cfg["trainer"]["eval_batch_size"]), False, 0, seed)
        before = evaluate(model, batches, torch.device("cpu"))
        graph = Graph(int8_graph, model.head, wrapper.raw_names, isinstance(raw, torch.Tensor))
        after = evaluate(graph, batches, torch.device("cpu"))
        if name not in before:
            raise ZooError(f"trainer.monitor={name!r} is not a test metric; valid: {', '.join(sorted(before))}")
        fp32, int8 = float(before[name]), float(after[name])
        drop = fp32 - int8 if mode == "max" else int8 - fp32
        limit = float(ecfg["max_metric_drop"])
        if not drop <= limit:  # also refuses a NaN metric
            raise ZooError(
                f"export.precision=int8: test {name} goes from {fp32:.4f} (fp32) to {int8:.4f} (int8), a drop of "
                f"{drop:.4f} > export.max_metric_drop={limit}; try a larger export.calibration_samples or another "
                "export.calibration_method, or export fp32; nothing was written"
            )
        _serve_graph(int8_graph, onnx_path, list(deploy.output_names))
    finally:
        for f in (float_graph, int8_graph):
            f.unlink(missing_ok=True)
    return {
        "precision": "int8",
        "io": "float32",
        "quantization": {"tool": "onnxruntime.quantization.quantize_static", "format": QUANT_FORMAT,
                         "weights": "int8, per channel", "activations": "uint8, per tensor",
                         "float": f"the head's postprocess ({len(kept)} node(s))"},
        "calibration": {"count": len(calib), "method": ecfg["calibration_method"],
                        "images": f"train split of data={cfg['data']['name']} (seed {seed})"},
        "metric": {"name": name, "mode": mode, "split": f"test ({len(data.test)} images)", "fp32": round(fp32, 6),
                   "int8": round(int8, 6), "drop": round(drop, 6), "max_drop": limit},
    }  # fmt: skip


def _write_raw(wrapper: RawOutputs, x: torch.Tensor, path: Path, opset: int) -> None:
    """Trace the wrapper as zoo.deploy.export traces the deployed model (the same exporter, opset and axes)."""
    input_axes = {0: "batch", 2: "height", 3: "width"} if wrapper.dynamic_size else {0: "batch"}
    trace_onnx(wrapper, x, path, opset, "input", input_axes)


def postprocess_nodes(path: Path, raw_names: list[str]) -> list[str]:
    """The nodes that the raw head outputs do not need: the head's postprocess (softmax, argmax, NMS), which
    stays in float so served probabilities and boxes keep their precision."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    needed, todo = set(), list(raw_names)
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in needed:
            needed.add(node.name)
            todo.extend(node.input)
    return [node.name for node in graph.node if node.name not in needed]


def _quantize(source: Path, target: Path, images: torch.Tensor, ecfg: dict, float_nodes: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}  # fmt: skip
    logging.disable(logging.WARNING)  # its advice to pre-process: measured, it made resnet18 no faster here
    try:
        quantize_static(
            str(source),
            str(target),
            Calibration(images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations, s8 weights: x86's fast path (s8s8 ran 2x slower)
            weight_type=QuantType.QInt8,
            calibrate_method=methods[ecfg["calibration_method"]],
            calibration_providers=["CPUExecutionProvider"],
            nodes_to_exclude=float_nodes,
        )
    except ZooError:
        raise
    except Exception as e:  # onnxruntime's tools raise plain exceptions on graphs they cannot quantize
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ZooError(f"export.precision=int8: onnxruntime cannot quantize this graph: {first}") from None
    finally:
        logging.disable(logging.NOTSET)


def _serve_graph(int8_graph: Path, served: Path, outputs: list[str]) -> None:
    """The int8 graph without its raw outputs, with the served graph's metadata, producer and doc string."""
    import onnx
    import onnx.utils

    original = onnx.load(str(served))
    onnx.utils.extract_model(str(int8_graph), str(served), ["input"], outputs, check_model=False)
    proto = onnx.load(str(served))
    proto.metadata_props.extend(original.metadata_props)
    proto.producer_name, proto.producer_version = original.producer_name, original.producer_version
    proto.doc_string = original.doc_string
    onnx.save(proto, str(served))


def _set_metadata(onnx_path: Path, record: dict[str, Any]) -> None:
    """`zoo.precision` in the graph's metadata, then onnx.checker's full check of the rewritten graph."""
    import onnx

    proto = onnx.load(str(onnx_path))
    kept = [p for p in proto.metadata_props if p.key != "zoo.precision"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key="zoo.precision", value=json.dumps(record))
    onnx.save(proto, str(onnx_path))
    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ZooError(f"the {record['precision']} graph fails onnx.checker: {str(e).splitlines()[0]}") from None
