"""Serve an exported zoo model with onnxruntime alone: no torch, no zoo plugins.

The ONNX file carries what a client needs in its metadata (task, labels, input size and channels,
preprocessing, each output's role). `Model` reads it, picks TensorRT/CUDA only where a GPU is really
usable (else the CPU, without onnxruntime's CUDA load errors), checks inputs before onnxruntime sees
them, and turns outputs, found by their role in the task (zoo.tasks), into per-task predictions.

The modules, one job each: options (providers, RuntimeOptions, onnxruntime's session options), metadata
(zoo's keys, output roles, the shipped schema's checks), decoding (images by zoo.format's rules), inputs (what the
graph takes, checked), binding (DLPack inputs, CUDA graphs), results (per-task JSON, masks, drawn boxes) and
session (Model). Every public name is importable from `zoo.runtime` itself.

The names are looked up on first use (PEP 562): `zoo --help` reads the predict verb's options without
loading numpy or onnxruntime.
"""

import importlib
from typing import Any

# public name -> the module of this wing that defines it
_WHERE = {
    "CPU": "zoo.runtime.options",
    "CUDA": "zoo.runtime.options",
    "DEFAULT_MAX_PIXELS": "zoo.runtime.decoding",
    "GPU_OPTIONS": "zoo.runtime.options",
    "GPU_PROVIDERS": "zoo.runtime.options",
    "IMAGE_EXTENSIONS": "zoo.runtime.decoding",
    "LUMA": "zoo.runtime.decoding",
    "MAX_COUNT": "zoo.runtime.options",
    "METADATA_FORMATS": "zoo.runtime.metadata",
    "METADATA_PREFIX": "zoo.runtime.metadata",
    "OPTION_CHOICES": "zoo.runtime.options",
    "OPTION_NAMES": "zoo.runtime.options",
    "PALETTE": "zoo.runtime.results",
    "PROVIDER_CHOICES": "zoo.runtime.options",
    "PROVIDER_NAMES": "zoo.runtime.options",
    "SCHEMA_FILE": "zoo.runtime.metadata",
    "TENSORRT": "zoo.runtime.options",
    "TENSORRT_OPTIONS": "zoo.runtime.options",
    "Model": "zoo.runtime.session",
    "ModelInput": "zoo.runtime.inputs",
    "RuntimeOptions": "zoo.runtime.options",
    "as_rgb8": "zoo.runtime.decoding",
    "check_metadata": "zoo.runtime.metadata",
    "check_options": "zoo.runtime.options",
    "decode": "zoo.runtime.decoding",
    "float_input": "zoo.runtime.decoding",
    "gpu_usable": "zoo.runtime.options",
    "list_images": "zoo.runtime.decoding",
    "load_image": "zoo.runtime.decoding",
    "max_pixels": "zoo.runtime.decoding",
    "open_image": "zoo.runtime.decoding",
    "output_roles": "zoo.runtime.metadata",
    "physical_cores": "zoo.runtime.options",
    "provider_config": "zoo.runtime.options",
    "read_metadata": "zoo.runtime.metadata",
    "rgb8": "zoo.runtime.decoding",
    "runtime_options": "zoo.runtime.options",
    "select_providers": "zoo.runtime.options",
    "session_options": "zoo.runtime.options",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """A public name of the runtime, from the module that defines it, imported when first asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module 'zoo.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
