"""`zoo new-plugin NAME`: a ready-to-install plugin package that passes its own test as generated."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from zoo.errors import ZooError

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "zoo-{name}"
version = "0.1.0"
description = "{name}: plugins for zoo"
dependencies = ["zoo"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."zoo.plugins"]
{name} = "zoo_{name}"

[tool.setuptools]
packages = ["zoo_{name}"]

[tool.setuptools.package-data]
zoo_{name} = ["conf/*/*.yaml"]
"""

MODULE = '''"""zoo-{name}: importing this module registers its plugins with zoo."""
from torch import nn

from zoo import register
from zoo.model import Backbone, FeatureInfo

ZOO_PLUGIN_API = {api}  # the zoo plugin API this package is written for


def block(cin: int, cout: int) -> nn.Sequential:
    """conv 3x3 -> batch norm -> ReLU -> 2x2 max pool."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))


@register.architecture("{name}_net")
class {cls}Net(Backbone):
    """{cls}Net: `depth` conv blocks, channels doubling from `width`; one feature map per block."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3):
        super().__init__()
        channels = [width * 2 ** i for i in range(depth)]
        self.blocks = nn.ModuleList(block(cin, cout) for cin, cout in zip([in_channels] + channels, channels))
        self.feature_info = [FeatureInfo(c, 2 ** (i + 1)) for i, c in enumerate(channels)]

    def forward(self, x):
        features = []
        for b in self.blocks:
            x = b(x)
            features.append(x)
        return features

    def stages(self):
        return list(self.blocks)
'''

PRESET = """# model={name}_net_wide: {name}_net with twice the channels
defaults:
  - {name}_net
  - _self_
width: 32
"""

EXPERIMENT = """# @package _global_
# experiment={name}_demo: {name}_net on zoo's digits
defaults:
  - override /data: digits
  - override /model: {name}_net

trainer:
  max_epochs: 5
"""

TEST = '''"""zoo-{name}'s own test: its plugins are discovered, build, train a step, compose, and export with parity."""
import torch

from zoo import registry
from zoo.config import compose, to_plain
from zoo.data import DataInfo
from zoo.export import export_model
from zoo.model import build_model

INFO = DataInfo("classification", tuple("0123456789"), 1, (32, 32), (0.5,), (0.25,))


def test_registered_by_this_package():
    plugin = registry.get("architecture", "{name}_net")
    assert plugin.package == "zoo-{name}"


def test_builds_and_trains_a_step():
    model = build_model({{"data": {{"name": "digits"}}, "model": {{"name": "{name}_net"}}, "head": {{"name": "classification"}}}}, INFO)
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = model.head.loss(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_presets_compose():
    assert to_plain(compose(["model={name}_net_wide"]))["model"] == {{"name": "{name}_net", "width": 32, "depth": 3}}
    cfg = to_plain(compose(["experiment={name}_demo"]))
    assert cfg["model"]["name"] == "{name}_net" and cfg["trainer"]["max_epochs"] == 5


def test_exports_with_parity(tmp_path):
    cfg = to_plain(compose(["model={name}_net"]))
    model = build_model(cfg, INFO).eval()
    card = export_model(model, INFO, cfg, tmp_path / "onnx", cfg["export"], torch.rand(8, 1, 32, 32), "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
'''

README = """# zoo-{name}

Plugins for [zoo](https://example.invalid/zoo): the architecture `{name}_net`, the preset `model={name}_net_wide`
and the experiment `experiment={name}_demo`.

```bash
pip install .                     # zoo finds it through the `zoo.plugins` entry point
zoo list architecture             # shows {name}_net, package zoo-{name}
zoo train experiment={name}_demo
pip install '.[test]' && pytest
```
"""


def new_plugin(name: str, output: str | Path | None = None) -> Path:
    """Write the package `zoo-NAME` into `output` (default ./zoo-NAME); refuse to overwrite."""
    from zoo.registry import PLUGIN_API_VERSION

    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
        raise ZooError(
            f"plugin package name {name!r} must be lower-case letters, digits and '_', starting with a letter (e.g. acme)"
        )
    target = Path(output) if output else Path(f"zoo-{name}")
    if target.exists():
        raise ZooError(f"{target} already exists; choose another output=DIR or remove it")
    cls = "".join(part.capitalize() for part in name.split("_"))
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"zoo_{name}/__init__.py": MODULE,
        f"zoo_{name}/conf/model/{name}_net_wide.yaml": PRESET,
        f"zoo_{name}/conf/experiment/{name}_demo.yaml": EXPERIMENT,
        f"tests/test_zoo_{name}.py": TEST,
    }
    tmp = target.parent / f".{target.name}.new-{os.getpid()}"
    try:
        for rel, template in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.format(name=name, cls=cls, api=PLUGIN_API_VERSION))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
