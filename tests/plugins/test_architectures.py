"""Every registered architecture builds on 1 and 3 channels, takes a training step, and exports with parity."""

from __future__ import annotations

import pytest
import torch

from zoo.data import DataInfo
from zoo.deploy.export import export_model
from zoo.errors import ZooError
from zoo.model import Backbone, build_model, probe_features
from zoo.plugin import registry

# Small settings per architecture; an architecture missing here still runs, with its defaults.
SMALL = {
    "alexnet": {"width": 0.125},
    "vgg": {"width": 0.0625},
    "timm": {"model_name": "test_resnet"},
}
# More timm families (tiny test models shipped with timm: no download).
EXTRA = [
    ("timm", {"model_name": "test_efficientnet"}),
    ("timm", {"model_name": "test_convnext"}),
    ("cnn", {"padding_mode": "reflect", "norm": "group"}),
    ("cnn", {"padding_mode": "circular", "norm": "none", "pool": "stride"}),
    ("cnn", {"padding_mode": "replicate", "dropout": 0.2, "pool": "avg", "kernel_size": 5}),
    ("vgg", {"depth": 16, "width": 0.0625, "norm": "group"}),
    ("alexnet", {"stem": "imagenet", "width": 0.125}),
    ("lenet5", {"activation": "relu", "pool": "max"}),
]
CASES = [(name, SMALL.get(name, {})) for name in registry.registries["architecture"].names()] + EXTRA
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in CASES]

ECFG = {"opset": 18, "parity_tolerance": 1e-4, "input": "float32"}  # float batches in, as PyTorch takes them


def info(channels: int, size: int = 32) -> DataInfo:
    return DataInfo("classification", tuple("abcd"), channels, (size, size), (0.5,) * channels, (0.25,) * channels)


def cfg(name: str, params: dict) -> dict:
    return {"data": {"name": "digits"}, "model": {"name": name, **params}, "head": {"name": "classification"}}


@pytest.mark.slow
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_builds_and_trains_a_step(name, params, channels):
    torch.manual_seed(0)
    model = build_model(cfg(name, params), info(channels))
    assert isinstance(model.backbone, Backbone)
    fi = model.backbone.feature_info
    assert len(fi) >= 1 and all(f.size is not None for f in fi)
    assert [f.stride for f in fi] == sorted(f.stride for f in fi)  # shallow to deep
    stages = model.backbone.stages()
    staged = {id(p) for s in stages for p in s.parameters()}
    assert staged == {id(p) for p in model.backbone.parameters()}  # stages cover the whole backbone
    x, y = torch.rand(4, channels, 32, 32), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = model.head.loss(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed >= len(before) // 2


@pytest.mark.slow
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_exports_with_parity(name, params, tmp_path):
    torch.manual_seed(0)
    i = info(3 if name == "timm" else 1)
    model = build_model(cfg(name, params), i).eval()
    x = torch.rand(6, i.channels, 32, 32)
    card = export_model(model, i, cfg(name, params), tmp_path / "out", ECFG, x, "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    assert (tmp_path / "out" / "model.onnx").is_file()


def test_larger_inputs_work():
    for name, params in CASES[:5]:
        build_model(cfg(name, params), info(1, 48))


def test_input_too_small_for_the_architecture_is_a_clear_error():
    # the declared minimum (min_size=2**depth) refuses it before the backbone is built
    with pytest.raises(ZooError, match="model=cnn needs inputs of at least 128x128 pixels but data=.* gives 32x32"):
        build_model(cfg("cnn", {"depth": 7}), info(1))


def test_unknown_timm_model_suggests_names():
    with pytest.raises(ZooError, match="unknown timm model 'resnet19'; did you mean"):
        build_model(cfg("timm", {"model_name": "resnet19"}), info(3))


@pytest.mark.slow
def test_timm_pretrained_weights_fail_clearly_offline():
    # huggingface_hub reads HF_HUB_OFFLINE at import, so the check runs in a fresh interpreter.
    import os
    import subprocess
    import sys

    code = (
        "from tests.plugins.test_architectures import cfg, info; from zoo.model import build_model; "
        "m = build_model(cfg('timm', {'model_name': 'resnet18'}), info(3)); m.backbone.load_source('timm')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert (
        "ZooError: cannot load timm's pretrained weights for 'resnet18': HF_HUB_OFFLINE is set and they are not in "
        "the local cache; copy the weight file to this machine and give transfer.weights=timm:FILE"
    ) in proc.stderr


@pytest.mark.parametrize(
    "name, params, smallest", [("lenet5", {}, 32), ("cnn", {"depth": 4}, 16), ("vgg", {"pools": 4}, 16)]
)
def test_an_architecture_declares_its_smallest_input_and_is_refused_below_it_before_the_data(name, params, smallest):
    from unittest import mock

    from zoo.train.experiment import build_experiment

    plugin = registry.get("architecture", name)
    assert plugin.min_size(params) == smallest
    overrides = [f"model={name}", f"data.size={smallest - 1}", *(f"model.{k}={v}" for k, v in params.items())]
    refused = rf"^model={name} needs inputs of at least {smallest}x{smallest} pixels"
    built = AssertionError("the data was built")
    with mock.patch("zoo.train.experiment.build_data", side_effect=built), pytest.raises(ZooError, match=refused):
        build_experiment(small_config_from(overrides))
    # the size the declaration names is one the architecture really takes
    backbone = plugin.build({"in_channels": 1}, params, where="model")
    probe_features(backbone, 1, (smallest, smallest), name)


def small_config_from(overrides: list[str]) -> dict:
    from zoo.train.config import compose, to_plain

    return to_plain(compose(overrides))


def test_an_architecture_declaration_is_checked_when_it_registers():
    from zoo.plugin.registry import PluginDefinitionError, Registry

    fresh = Registry("architecture", registry.registries["architecture"]._check)

    class Net(Backbone):
        """A net."""

        def __init__(self, in_channels: int):
            super().__init__()

        def stages(self):
            return []

    with pytest.raises(PluginDefinitionError, match="min_size=0 must be an int >= 1"):
        fresh.add(Net, "net", min_size=0)
    with pytest.raises(PluginDefinitionError, match="takes no max_size="):
        fresh.add(Net, "net", max_size=3)
