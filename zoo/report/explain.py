"""`zoo explain METHOD`: an interpretation plugin looks at a trained model and draws what it sees.

The subject is a run (its best checkpoint) or a checkpoint file; the images are files or folders given
with `input=`, or the first `samples` test images of the run's own data. The pictures and a
summary.json are made in a temporary folder and moved into `output` only when the method succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.data import DataBundle, DataInfo, build_data
from zoo.errors import ZooError, make_folder
from zoo.model import ZooModel
from zoo.plugin import registry
from zoo.runtime import list_images, load_image
from zoo.train.checkpoint import checkpoint_file, load_checkpoint, model_from_checkpoint


@dataclass
class Subject:
    """What an interpretation method looks at: the model (eval mode), its DataInfo and config, and the
    images to explain (N, C, H, W in [0, 1]) with a name each."""

    model: ZooModel
    info: DataInfo
    cfg: dict
    images: torch.Tensor
    names: list[str]
    targets: list[Any] | None = None  # the images' labels, when they come from the run's data
    _data: list[DataBundle] = field(default_factory=list, repr=False)

    def data(self) -> DataBundle:
        """The run's own data (train/val/test), built once on request."""
        if not self._data:
            self._data.append(build_data(self.cfg, int(self.cfg.get("seed", 0))))
        return self._data[0]


def load_subject(source: str, inputs: str | None, samples: int) -> Subject:
    """The model of a run directory or checkpoint file, and the images to explain."""
    ckpt = load_checkpoint(source)
    model, info = model_from_checkpoint(ckpt)
    subject = Subject(model.eval(), info, ckpt["config"], torch.empty(0), [])
    if inputs is not None:
        files = list_images(inputs)[:samples]
        arrays = [torch.from_numpy(load_image(f, info.channels, info.size)) for f in files]
        subject.images, subject.names = torch.stack(arrays), [f.stem for f in files]
        return subject
    test = subject.data().test
    n = min(samples, len(test))
    pairs = [test[i] for i in range(n)]
    subject.images = torch.stack([p[0] for p in pairs]) if pairs else torch.empty(0)
    subject.names = [f"test{i:04d}" for i in range(n)]
    subject.targets = [p[1] for p in pairs]
    return subject


def explain(method: str, params: dict[str, Any], source: str, inputs: str | None, samples: int, output: str) -> dict:
    """Run interpretation plugin `method` on a run or checkpoint; write its PNGs and summary.json to `output`."""
    plugin = registry.get("interpretation", method)
    explainer = plugin.build({}, params, where=f"explain.{method}")
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ZooError(f"output={output!r} exists and is not a folder")
    subject = load_subject(source, inputs, samples)
    if not plugin.supports(subject.info.task):
        raise ZooError(
            f"zoo explain {method} does not explain {subject.info.task} models; it explains: {', '.join(plugin.tasks)}"
        )
    make_folder(out.parent)  # a failed command removes the folders it created (zoo.cli)
    tmp = out.parent / f".{out.name}.explain-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with torch.enable_grad(), plugin.blame("in explain(subject, output)"):
            summary = explainer.explain(subject, tmp)
        record = {
            "method": method,
            "params": plugin.check_values(params, f"explain.{method}"),
            "checkpoint": str(checkpoint_file(source)),
            "task": subject.info.task,
            "images": subject.names,
            **(summary or {}),
        }
        (tmp / "summary.json").write_text(json.dumps(record, indent=2))
        make_folder(out)
        written = []
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
            written.append(str(out / f.name))
        return {**record, "files": written}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def layers(source: str) -> list[tuple[str, str, str]]:
    """The model of a run or checkpoint, module by module: dotted name (what `layer=` takes), type, and the
    output shape for one image at the run's input size (`-` for a module the forward does not run)."""
    model, info = model_from_checkpoint(load_checkpoint(source))
    model.eval()
    named = [(n, m) for n, m in model.named_modules() if n]
    shapes: dict[str, str] = {}

    def hook(name: str):
        def record(module, args, out) -> None:
            if name not in shapes:  # a module run twice keeps its first output
                shapes[name] = _shape(out)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in named]
    try:
        with torch.no_grad():
            model(torch.zeros(1, info.channels, *info.size))
    finally:
        for h in handles:
            h.remove()
    return [(n, type(m).__name__, shapes.get(n, "-")) for n, m in named]


def _shape(out: Any) -> str:
    """An output's shape without the batch: `16x8x8`, a list of them in brackets, or its type."""
    if isinstance(out, torch.Tensor):
        return "x".join(str(d) for d in out.shape[1:]) or "scalar"
    if isinstance(out, (list, tuple)):
        return "[" + ", ".join(_shape(o) for o in out) + "]"
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in out.items()) + "}"
    return type(out).__name__
