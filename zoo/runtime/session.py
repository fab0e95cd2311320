"""`Model`: an exported zoo model on onnxruntime. It opens the session on the providers this machine can use,
reads the metadata (task, labels, input, each output's role), checks inputs before onnxruntime sees them, runs
batches (plainly, through IO binding, or as a CUDA graph) and gives per-task predictions."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo import tasks
from zoo.errors import ZooError
from zoo.runtime.binding import CudaGraph, input_value
from zoo.runtime.inputs import ModelInput
from zoo.runtime.metadata import check_metadata, output_roles, read_metadata
from zoo.runtime.options import (
    CUDA,
    GPU_PROVIDERS,
    check_options,
    provider_config,
    runtime_options,
    select_providers,
    session_options,
)
from zoo.runtime.results import add_extras, batches, by_name, file_result, per_task

_open_sessions: weakref.WeakSet = weakref.WeakSet()  # the zoo Models alive in this process


class Model:
    """An exported zoo model on onnxruntime."""

    def __init__(self, path: str | Path, providers: str = "auto", **options: Any):
        """`providers`: auto|cpu|cuda|tensorrt; `options`: RuntimeOptions' fields (threads=, io_binding=,
        cuda_graph=, prefer_nhwc=, trt_cache=, ...), the keys `zoo predict` and `zoo bench inference` take."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ZooError(
                f"model={str(path)!r} does not exist (export one with: zoo export checkpoint=RUN/checkpoints/best.pt)"
            )
        self.options = runtime_options(options)
        ort.set_default_logger_severity(3)  # no provider-load warnings on machines without a GPU
        wanted = select_providers(providers)
        check_options(self.options, wanted)
        if CUDA in wanted and hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):  # CUDA/cuDNN from the nvidia-* wheels, where present
                ort.preload_dlls()
        self.session = self._open_session(ort, path, wanted)
        self.device = "cuda" if self.session.get_providers()[0] in GPU_PROVIDERS else "cpu"
        self._graph: CudaGraph | None = None  # cuda_graph: captured on the first run
        _open_sessions.add(self)
        self.providers = self.session.get_providers()
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "task" not in self.metadata:
            raise ZooError(f"{path} has no zoo metadata (zoo.task); was it exported by `zoo export`?")
        self.task: str = self.metadata["task"]
        self.labels: list[str] = list(self.metadata.get("labels", []))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.roles: dict[str, str] = output_roles(self.metadata, self.output_names, str(path))  # role -> output name
        check_metadata(self.metadata, str(path))
        self.input = ModelInput.read(self.metadata, self.session.get_inputs()[0])
        self.input_name, self.input_shape = self.input.name, self.input.shape
        self.form: str = self.input.form  # uint8: pixels in, preprocessing inside the graph
        self.channels = self.input.channels  # of the graph's input (3 for the uint8 form)
        self.size = self.input.size  # the size the network works at
        self.dynamic_size = self.input.dynamic_size  # the network takes the image at its own size (no resize)
        self.net_channels = self.input.net_channels
        self.min_size, self.max_size = self.input.min_size, self.input.max_size
        self.extras = [role for role in self.roles if role in tasks.EXTRAS]  # exported with export.outputs

    def check_size(self, height: int, width: int, what: str) -> None:
        """Refuse an image smaller than the metadata's min_size (or larger than its max_size) in one line."""
        self.input.check_size(height, width, what)

    def check_extras(self, wanted: Sequence[str]) -> None:
        """Refuse, in one line, extra outputs (`outputs=embedding,cam`) that zoo does not know or this model lacks."""
        for role in wanted:
            tasks.extra(role, "outputs")
            if role not in self.extras:
                has = ", ".join(self.extras) or "none"
                raise ZooError(
                    f"outputs={role}: this model has no {role} output (its extra outputs: {has}); "
                    f"export it with export.outputs=[{role}]"
                )

    def _open_session(self, ort: Any, path: Path, wanted: list[str]) -> Any:
        """The InferenceSession, with the optimized graph saved to a new file when asked (written beside its
        target and renamed, so a failed start leaves nothing half-written and no file is overwritten)."""
        opts = self.options
        so = session_options(opts, shared=len(_open_sessions) > 0)
        target = Path(opts.optimized_model) if opts.optimized_model else None
        if target is not None:
            if target.exists():
                raise ZooError(f"optimized_model={str(target)!r} exists; name a new file (zoo overwrites none)")
            target.parent.mkdir(parents=True, exist_ok=True)
            so.optimized_model_filepath = str(target.with_name(f".{target.name}.tmp-{os.getpid()}"))
        if opts.trt_cache:
            cache = Path(opts.trt_cache)
            if cache.exists() and not cache.is_dir():
                raise ZooError(f"trt_cache={opts.trt_cache!r} is a file; give a folder for TensorRT's engines")
            cache.mkdir(parents=True, exist_ok=True)
        try:
            session = ort.InferenceSession(str(path), sess_options=so, providers=provider_config(wanted, opts))
            if target is not None:
                os.replace(so.optimized_model_filepath, target)
        except Exception as e:
            raise ZooError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
        finally:
            if target is not None:
                Path(so.optimized_model_filepath).unlink(missing_ok=True)
        return session

    def check_input(self, batch: np.ndarray) -> None:
        """Refuse what onnxruntime would not check (dynamic dims, values) or would explain badly."""
        self.input.check(batch)

    def run(self, batch: Any, device_output: bool | None = None) -> dict[str, Any]:
        """Run a batch in the graph's input form (metadata `input`: uint8 N x H x W x 3 RGB pixels, or float32
        N x C x H x W in [0, 1]); returns outputs by name (an empty batch gives empty outputs). `batch` is a
        numpy array or any DLPack tensor (torch, CuPy, JAX) on the CPU or on this session's GPU, bound without a
        copy. Outputs are numpy arrays, or with `device_output` (default: the session's option) OrtValues on the
        session's device, which DLPack hands to any framework without a copy (`torch.from_dlpack(value)`)."""
        device_output = self.options.device_output if device_output is None else device_output
        opts = self.options
        if isinstance(batch, np.ndarray) and not (opts.io_binding or opts.cuda_graph or device_output):
            self.check_input(batch)
            empty = self._empty_outputs(batch) if len(batch) == 0 else None
            if empty is not None:
                return empty
            return dict(zip(self.output_names, self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})))
        provider = self.session.get_providers()[0]
        value = input_value(batch, self.check_input, self.device, opts.device_id, provider)
        if opts.cuda_graph:
            if self._graph is None:
                self._graph = CudaGraph(self.session, self.input_name, self.device, opts.device_id, value)
            return self._graph.run(value, device_output)
        binding = self.session.io_binding()
        if isinstance(value, np.ndarray):
            binding.bind_cpu_input(self.input_name, value)
        else:
            binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device if device_output else "cpu", opts.device_id)
        self.session.run_with_iobinding(binding)
        if device_output:
            return dict(zip(self.output_names, binding.get_outputs()))
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))

    def _empty_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray] | None:
        """The outputs of a batch of 0 images, from the metadata's shapes (graphs need not run on an empty batch:
        a reshape of 0 elements with an inferred axis is undefined in ONNX)."""
        entries = {e.get("name"): e for e in self.metadata.get("outputs", []) if isinstance(e, dict)}
        if not all(n in entries and "shape" in entries[n] for n in self.output_names):
            return None
        sizes = self.input.batch_size_axes(batch)
        out = {}
        for n in self.output_names:
            shape = [d if isinstance(d, int) else sizes.get(d) for d in entries[n]["shape"]]
            if any(d is None for d in shape):
                return None
            out[n] = np.zeros(shape, dtype=np.dtype(entries[n]["dtype"]))
        return out

    def run_roles(self, batch: Any, device_output: bool | None = None) -> dict[str, Any]:
        """Run a preprocessed batch; returns outputs by their role in the task (zoo.tasks), e.g. "probabilities"."""
        out = self.run(batch, device_output)
        return {role: out[name] for role, name in self.roles.items()}

    def prepare(self, image: str | Path | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """One image (a file, or HxW / HxWxC uint8 or uint16 pixels) as one item of the graph's input form,
        with its original (height, width); an image outside the metadata's sizes is refused in one line."""
        return self.input.prepare(image)

    def as_input(self, images: np.ndarray) -> np.ndarray:
        """Float32 N x C x H x W images in [0, 1] (1 or 3 channels, e.g. a dataset's tensors) in the graph's input
        form: the uint8 form takes them rounded to 8 bits, N x H x W x 3 RGB (grey copied to R, G and B)."""
        return self.input.as_input(images)

    def preprocess(self, images: Iterable[str | Path | np.ndarray]) -> np.ndarray:
        """Files or HxW / HxWxC uint8 arrays -> the batch the graph takes (uint8 form: the images must share
        one size; float32 form: resized to the network's size unless it takes any)."""
        return self.input.preprocess(images)

    def predict(
        self,
        batch: np.ndarray,
        topk: int = 5,
        original_sizes: Sequence[tuple[int, int]] | None = None,
        extras: Sequence[str] = (),
    ) -> list[dict]:
        """Per-image predictions for a preprocessed batch, in the task's JSON form (segmentation masks
        come back as arrays under "mask"; detection boxes in `original_sizes` pixels when given), plus the
        extra outputs named in `extras` (embedding, cam) as nested lists under their role."""
        self.check_extras(extras)
        if not self.roles:  # a task this zoo does not know: every output by name
            return by_name(self.run(batch, device_output=False), self.output_names, len(batch))
        out = self.run_roles(batch, device_output=False)
        scales = None
        if original_sizes is not None:  # boxes are in pixels of the network's input (zoo.format)
            h, w = self.input.network_size(batch)
            scales = [(original[0] / h, original[1] / w) for original in original_sizes]
        return add_extras(per_task(self.task, out, self.labels, topk, scales), out, extras)

    def predict_files(
        self,
        paths: Sequence[str | Path],
        topk: int = 5,
        batch_size: int = 32,
        masks_dir: str | Path | None = None,
        draw_dir: str | Path | None = None,
        errors: list[str] | None = None,
        extras: Sequence[str] = (),
    ) -> list[dict]:
        """Predict image files, batched (images of one size together where the graph takes one size per batch);
        optionally write mask PNGs (segmentation) or the images with their boxes drawn (detection). With
        `errors` (a list), a file that cannot be read or is refused is reported there as one line and skipped."""
        out = []
        for chunk, batch, originals in batches(self.prepare, paths, batch_size, errors):
            for p, r in zip(chunk, self.predict(batch, topk, originals, extras)):
                out.append(file_result(p, r, masks_dir, draw_dir))
        return out
