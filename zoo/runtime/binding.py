"""IO binding: DLPack tensors (torch, CuPy, JAX) bound as inputs without a copy, and one captured CUDA graph
replayed over fixed device buffers (cuda_graph=true)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from zoo.errors import ZooError

ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
DLPACK_CPU = (1, 3)  # kDLCPU, kDLCUDAHost: memory the CPU reads


def input_value(batch: Any, check: Callable[[np.ndarray], None], device: str, device_id: int, provider: str) -> Any:
    """A checked input for IO binding: a numpy array, or an OrtValue sharing a DLPack tensor's memory. Tensors
    the CPU can read are checked like arrays (`check`); device tensors by dtype and shape (their values stay
    there). `device`, `device_id` and `provider`: the session's ("cpu" or "cuda", the GPU, its first provider)."""
    import onnxruntime as ort

    if isinstance(batch, np.ndarray) or not hasattr(batch, "__dlpack__"):
        check(batch)
        return np.ascontiguousarray(batch)
    device_type, batch_device = (int(v) for v in batch.__dlpack_device__())
    if device_type not in DLPACK_CPU and (device == "cpu" or batch_device != device_id):
        raise ZooError(
            f"input is on device {batch_device} of DLPack device type {device_type}, but this session runs on "
            f"{provider} (device_id={device_id}); move the input there"
        )
    try:
        if device_type in DLPACK_CPU:
            check(np.from_dlpack(batch))
        value = ort.OrtValue.from_dlpack(batch)
    except (TypeError, ValueError, RuntimeError, BufferError) as e:
        why = (
            "it is not contiguous (e.g. tensor.contiguous() first)"
            if "contiguous" in str(e)
            else str(e).strip().splitlines()[0]
        )
        raise ZooError(f"input {type(batch).__name__} cannot be passed through DLPack: {why}") from None
    if device_type not in DLPACK_CPU:  # a zero-stride stand-in of its dtype and shape: no copy to the host
        dtype = ORT_DTYPES.get(value.data_type(), np.void)
        check(np.broadcast_to(np.zeros((), dtype), tuple(value.shape())))
    return value


class CudaGraph:
    """cuda_graph=true: the input is copied into one fixed device buffer and outputs land in fixed ones, as a
    captured CUDA graph replays the addresses it recorded; the first run captures it, for its input's shape."""

    def __init__(self, session: Any, input_name: str, device: str, device_id: int, value: Any):
        import onnxruntime as ort

        self.session = session
        self.shape = list(value.shape) if isinstance(value, np.ndarray) else list(value.shape())
        dtype = value.dtype if isinstance(value, np.ndarray) else ORT_DTYPES[value.data_type()]
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(self.shape, dtype, device, device_id)
        inp = session.get_inputs()[0]  # output axes named as the input's take the captured input's sizes
        sizes = {name: size for name, size in zip(inp.shape, self.shape) if isinstance(name, str)}
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(input_name, self.input)
        self.names, self.outputs = [], []
        for out in session.get_outputs():
            dims = [d if isinstance(d, int) else sizes.get(d) for d in out.shape]
            if None in dims:
                raise ZooError(
                    f"cuda_graph=true needs outputs of a fixed shape; output {out.name!r} has axes {out.shape} "
                    "that depend on the data"
                )
            self.outputs.append(
                ort.OrtValue.ortvalue_from_shape_and_type(dims, ORT_DTYPES[out.type], device, device_id)
            )
            self.binding.bind_ortvalue_output(out.name, self.outputs[-1])
            self.names.append(out.name)

    def run(self, value: Any, device_output: bool) -> dict[str, Any]:
        """Copy `value` (a numpy array or an OrtValue of the captured shape) in, replay, return outputs by name."""
        shape = list(value.shape) if isinstance(value, np.ndarray) else list(value.shape())
        if shape != self.shape:
            raise ZooError(
                f"cuda_graph=true serves the one input shape it captured, {self.shape}; got {shape} "
                "(open another Model for another shape)"
            )
        try:
            self.input.update_inplace(value)  # numpy: host to device; OrtValue: device to device
        except TypeError:
            raise ZooError(
                "cuda_graph=true with a device tensor needs onnxruntime >= 1.23 (OrtValue.update_inplace from an "
                "OrtValue); pass a numpy array"
            ) from None
        self.session.run_with_iobinding(self.binding)
        return dict(zip(self.names, self.outputs if device_output else [o.numpy() for o in self.outputs]))
