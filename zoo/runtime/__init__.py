"""Serve an exported zoo model with onnxruntime alone: no torch, no zoo plugins.

The ONNX file carries what a client needs in its metadata (task, labels, input size and channels,
preprocessing, each output's role). `Model` reads it, picks TensorRT/CUDA only where a GPU is really
usable (else the CPU, without onnxruntime's CUDA load errors), checks inputs before onnxruntime sees
them, and turns outputs, found by their role in the task (zoo.tasks), into per-task predictions.

The modules, one job each: options (providers, RuntimeOptions, onnxruntime's session options), metadata
(zoo's keys, output roles, the shipped schema's checks), decode (images by zoo.format's rules), inputs (what the
graph takes, checked), binding (DLPack inputs, CUDA graphs), results (per-task JSON, masks, drawn boxes) and
session (Model). Every public name is importable from `zoo.runtime` itself.
"""

from zoo.runtime.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    LUMA,
    as_rgb8,
    decode,
    float_input,
    list_images,
    load_image,
    max_pixels,
    open_image,
    rgb8,
)
from zoo.runtime.inputs import ModelInput
from zoo.runtime.metadata import (
    METADATA_FORMATS,
    METADATA_PREFIX,
    SCHEMA_FILE,
    check_metadata,
    output_roles,
    read_metadata,
)
from zoo.runtime.options import (
    CPU,
    CUDA,
    GPU_OPTIONS,
    GPU_PROVIDERS,
    MAX_COUNT,
    OPTION_CHOICES,
    OPTION_NAMES,
    PROVIDER_CHOICES,
    PROVIDER_NAMES,
    TENSORRT,
    TENSORRT_OPTIONS,
    RuntimeOptions,
    check_options,
    gpu_usable,
    physical_cores,
    provider_config,
    runtime_options,
    select_providers,
    session_options,
)
from zoo.runtime.results import PALETTE
from zoo.runtime.session import Model

__all__ = [
    "CPU",
    "CUDA",
    "DEFAULT_MAX_PIXELS",
    "GPU_OPTIONS",
    "GPU_PROVIDERS",
    "IMAGE_EXTENSIONS",
    "LUMA",
    "MAX_COUNT",
    "METADATA_FORMATS",
    "METADATA_PREFIX",
    "OPTION_CHOICES",
    "OPTION_NAMES",
    "PALETTE",
    "PROVIDER_CHOICES",
    "PROVIDER_NAMES",
    "SCHEMA_FILE",
    "TENSORRT",
    "TENSORRT_OPTIONS",
    "Model",
    "ModelInput",
    "RuntimeOptions",
    "as_rgb8",
    "check_metadata",
    "check_options",
    "decode",
    "float_input",
    "gpu_usable",
    "list_images",
    "load_image",
    "max_pixels",
    "open_image",
    "output_roles",
    "physical_cores",
    "provider_config",
    "read_metadata",
    "rgb8",
    "runtime_options",
    "select_providers",
    "session_options",
]
