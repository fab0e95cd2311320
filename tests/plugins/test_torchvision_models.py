"""model=torchvision: torchvision's classification models as multi-scale backbones, their weights from a test-made
cache file (no download: sockets are blocked), trained a step, exported with parity and served; the weights'
preprocessing and categories carried into the export; N input channels; the offline and bad-value lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.data import DataInfo
from zoo.deploy.export import export_model
from zoo.errors import ZooError
from zoo.model import build_model, deployed_info
from zoo.plugin import registry
from zoo.train.checkpoint import load_weights

ACCEPTANCE = [
    "googlenet",
    "squeezenet1_1",
    "inception_v3",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "resnet50",
    "convnext_tiny",
]
SMALLEST = {"inception_v3": 75}  # its stem has no padding; the others run at 32x32
TRANSFORM_INPUT = ("googlenet", "inception_v3")  # trained with transform_input: mean = std = 0.5 (module docs)
ECFG = {"opset": 18, "parity_tolerance": 1e-4, "input": "float32"}


def info(channels: int = 3, size: int = 32, classes=tuple("abcd")) -> DataInfo:
    return DataInfo("classification", classes, channels, (size, size), (0.5,) * channels, (0.25,) * channels)


def cfg(name: str, head: str = "classification", **model) -> dict:
    return {
        "data": {"name": "test"},
        "model": {"name": "torchvision", "model_name": name, **model},
        "head": {"name": head},
    }


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def cached_weights(name: str, seed: int = 123) -> tuple[dict, object]:
    """A state dict in the place and format of torchvision's file for `name`'s DEFAULT weights (aux classifiers
    included, as torchvision's builder loads them), seeded and perturbed so that loading it shows."""
    import torchvision

    from zoo_plugins.architectures.torchvision_weights import cache_file

    member = torchvision.models.get_model_weights(name).DEFAULT
    torch.manual_seed(seed)
    aux = {"aux_logits": True, "init_weights": False} if name in TRANSFORM_INPUT else {}
    state = torchvision.models.get_model(name, **aux).state_dict()
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    path = cache_file(member)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state, member


def train_step(model, x: torch.Tensor) -> None:
    y = torch.arange(len(x)) % model.head.num_classes
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    loss = model.head.loss(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


@pytest.mark.slow
@pytest.mark.parametrize("name", ACCEPTANCE)
def test_loads_cached_weights_trains_exports_and_predicts(name, torch_home, offline, tmp_path):
    from zoo.runtime import Model

    state, member = cached_weights(name)
    size = SMALLEST.get(name, 32)
    torch.manual_seed(0)
    model = build_model(cfg(name), info(3, size))
    report = load_weights(model, "pretrained")
    body = model.backbone.body.state_dict()
    assert body and all(torch.equal(v, state[k]) for k, v in body.items())  # the cache file's, every tensor
    assert report["new"] and all(k.startswith("head.") for k in report["new"])
    t = member.transforms()
    mean, std = ([0.5] * 3, [0.5] * 3) if name in TRANSFORM_INPUT else (list(t.mean), list(t.std))
    assert model.normalize.mean.flatten().tolist() == pytest.approx(mean)
    assert model.normalize.std.flatten().tolist() == pytest.approx(std)

    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    train_step(model, x)
    model.eval()
    served_info = deployed_info(model, info(3, size))
    card = export_model(model, served_info, cfg(name), tmp_path / "out", ECFG, x, "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["preprocessing"]["mean"] == pytest.approx(mean) and meta["preprocessing"]["std"] == pytest.approx(std)

    served = Model(tmp_path / "out" / "model.onnx", providers="cpu")
    probs = served.run(x.numpy())["probabilities"]
    with torch.no_grad():
        expected = model.head.postprocess(model(x))[0].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_levels_are_one_per_stride_and_stages_cover_the_body():
    model = build_model(cfg("resnet18"), info())
    backbone = model.backbone
    assert backbone.return_nodes == ["relu", "layer1.1.relu_1", "layer2.1.relu_1", "layer3.1.relu_1", "layer4.1.relu_1"]
    assert [(f.channels, f.stride) for f in backbone.feature_info] == [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)]
    body = backbone.body
    ids = lambda m: {id(p) for p in m.parameters()}  # noqa: E731
    stages = [ids(s) for s in backbone.stages()]
    assert stages == [ids(body.conv1) | ids(body.bn1), ids(body.layer1), ids(body.layer2), ids(body.layer3), ids(
        body.layer4
    )]  # fmt: skip


@pytest.mark.slow
def test_the_classifier_as_it_is_gives_torchvisions_logits_and_categories(torch_home, offline, tmp_path, caplog):
    import torchvision

    state, member = cached_weights("squeezenet1_1")
    model = build_model(cfg("squeezenet1_1", "pretrained_classifier"), info(3, 64, ("goldfish", "tench")))
    with caplog.at_level("WARNING", logger="zoo"):
        report = load_weights(model, "pretrained", include_head=True)
    assert "the weights were trained at 224x224 crops, this run's inputs are 64x64 (data.size=224" in caplog.text
    assert report["new"] == []  # the body, the statistics and the classifier all came from the file
    reference = torchvision.models.get_model("squeezenet1_1").eval()
    reference.load_state_dict(state)
    x = torch.rand(3, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        expected = reference(
            torchvision.transforms.v2.functional.normalize(
                x, list(member.transforms().mean), list(member.transforms().std)
            )
        )
        assert torch.allclose(model(x), expected, atol=1e-5)  # fmt: skip
    served_info = deployed_info(model, info(3, 64, ("goldfish", "tench")))
    export_model(model, served_info, cfg("squeezenet1_1", "pretrained_classifier"), tmp_path / "o", ECFG, x, "random")
    labels = json.loads((tmp_path / "o" / "model.json").read_text())["labels"]
    assert labels == member.meta["categories"] and labels[1] == "goldfish"


def test_offline_without_the_cached_file_is_one_line_naming_file_and_folder(torch_home, offline):
    from zoo_plugins.architectures.torchvision_weights import weights_check

    model = build_model(cfg("squeezenet1_1"), info())
    for attempt in (lambda: load_weights(model, "pretrained"), lambda: weights_check({"model_name": "squeezenet1_1"},
                                                                                     "torchvision")):  # fmt: skip
        with pytest.raises(ZooError) as e:
            attempt()
        line = str(e.value)
        assert (
            "\n" not in line
            and "squeezenet1_1-b8a52dc0.pth" in line
            and str(torch_home / "hub" / "checkpoints") in line
        )


def test_weights_check_reads_statistics_without_building(torch_home, offline):
    from zoo_plugins.architectures.torchvision_weights import weights_check

    cached_weights("squeezenet1_1")
    check = registry.get("architecture", "torchvision").resolve().extra["weights_check"]
    assert check({"model_name": "squeezenet1_1"}, "runs/earlier") is None  # not one of its sources
    assert check is weights_check
    assert check({"model_name": "squeezenet1_1"}, "pretrained") == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "size": 224, "crop_pct": 0.875,
    }  # fmt: skip
    import torchvision

    from zoo_plugins.architectures.torchvision_weights import cache_file

    cache_file(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1).touch()  # present is all it asks, offline
    googlenet = weights_check({"model_name": "googlenet", "weights": "IMAGENET1K_V1", "in_channels": 1}, "pretrained")
    assert googlenet == {
        "mean": [0.5],
        "std": [0.5],
        "size": 224,
        "crop_pct": 0.875,
    }  # transform_input's (x - 0.5) / 0.5, one channel


@pytest.mark.slow
def test_weights_from_a_file_and_bad_values_in_one_line(tmp_path, offline):
    import torchvision

    torch.manual_seed(5)
    state = torchvision.models.get_model("squeezenet1_1").state_dict()
    torch.save(state, tmp_path / "mine.pth")
    model = build_model(cfg("squeezenet1_1", weights=str(tmp_path / "mine.pth")), info())
    load_weights(model, "torchvision")
    assert all(torch.equal(v, state[k]) for k, v in model.backbone.body.state_dict().items())
    for weights, fragment in [
        (
            "IMAGENET1K_V9",
            "model.weights='IMAGENET1K_V9' is neither a weight of torchvision's squeezenet1_1 (IMAGENET1K_V1",
        ),
        (str(tmp_path / "none.pth"), "no such file"),
    ]:
        model = build_model(cfg("squeezenet1_1", weights=weights), info())
        with pytest.raises(ZooError, match=fragment.replace("(", r"\(")):
            load_weights(model, "pretrained")
    deeper = {**state, "features.13.weight": torch.zeros(8)}  # a deeper model's file holds all of this one too
    for name, saved, fragment in (
        ("other.pth", {"features.0.weight": torch.zeros(1)}, r"holds another architecture .* do not fit"),
        ("deeper.pth", deeper, r"1 tensor\(s\) do not fit this model, first: features.13.weight \(not in this model\)"),
        ("objects.pth", {"features.0.weight": object()}, r"not a state dict file \(a torch file of tensors"),
    ):
        torch.save(saved, tmp_path / name)
        model = build_model(cfg("squeezenet1_1", weights=str(tmp_path / name)), info())
        with pytest.raises(ZooError, match=fragment) as e:
            load_weights(model, "pretrained")
        assert "weights_only" not in str(e.value)  # torch's advice to unpickle an untrusted file is not passed on


@pytest.mark.slow
def test_any_channel_count_builds_and_adapts_the_first_convolution(torch_home, offline):
    from timm.models import adapt_input_conv

    state, _ = cached_weights("squeezenet1_1")
    model = build_model(cfg("squeezenet1_1"), info(5))
    conv = model.backbone.body.get_submodule("features.0")
    assert conv.in_channels == 5
    assert model(torch.rand(2, 5, 32, 32)).shape == (2, 4)
    stats = load_weights(model, "pretrained")
    assert "normalize.mean" not in stats["new"]
    assert torch.equal(conv.weight, adapt_input_conv(5, state["features.0.weight"]))
    assert model.normalize.mean.flatten().tolist() == pytest.approx([sum([0.485, 0.456, 0.406]) / 3] * 5)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ZooError, match="model.model_name='resnet51' is not one of: alexnet, .*did you mean 'resnet50'"):
        build_model(cfg("resnet51"), info())
    with pytest.raises(ZooError, match="torchvision's vit_b_16 takes no input but its own size"):
        build_model(cfg("vit_b_16"), info(3, 224))


def test_timm_takes_pretrained_as_its_own_weights_and_checks_them_first(tmp_path):
    from zoo_plugins.architectures.timm_backbones import TimmBackbone, weights_check

    assert "pretrained" in TimmBackbone.weight_sources
    check = registry.get("architecture", "timm").resolve().extra["weights_check"]
    assert check is weights_check and check({"model_name": "test_resnet"}, str(tmp_path)) is None
    with pytest.raises(ZooError, match="transfer.weights=timm:/no/such.pth: no such file"):
        check({"model_name": "test_resnet"}, "timm:/no/such.pth")
    (tmp_path / "w.pth").write_bytes(b"")
    assert check({"model_name": "test_resnet", "in_channels": 1}, f"timm:{tmp_path / 'w.pth'}") == {
        "mean": [0.5], "std": [0.5], "size": 160, "crop_pct": 0.95,
    }  # fmt: skip
