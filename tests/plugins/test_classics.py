"""The faithful classics (alexnet variant=original, model=vgg16_classic, lenet5 c3_table=true) and the conv
options of `cnn`: each option trains a step and exports with parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.plugins.test_architectures import ECFG, cfg, info, small_config_from
from zoo.data import DataInfo
from zoo.deploy.export import export_model
from zoo.errors import ZooError
from zoo.model import build_model, probe_features
from zoo.plugin import registry


def imagenet_info(channels: int = 3, size: int = 224) -> DataInfo:
    return DataInfo(
        "classification", tuple(map(str, range(1000))), channels, (size, size), (0.5,) * channels, (0.25,) * channels
    )


def meta_model(overrides: list[str], data: DataInfo):
    """The composed preset built on the meta device: shapes and counts, no memory."""
    with torch.device("meta"):
        return build_model(small_config_from(overrides), data)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def backbone(name: str, channels: int = 3, **params):
    return registry.get("architecture", name).build({"in_channels": channels}, params, where="model")


# ---- AlexNet as the paper draws it -------------------------------------------------------------------


def test_alexnet_original_has_the_papers_layers():
    net = backbone("alexnet", variant="original")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (96, (11, 11), (4, 4)),
        (256, (5, 5), (1, 1)),
        (384, (3, 3), (1, 1)),
        (384, (3, 3), (1, 1)),
        (256, (3, 3), (1, 1)),
    ]
    lrns = [m for m in net.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrns] == [(5, 1e-4, 0.75, 2.0)] * 2
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(m.kernel_size, m.stride) for m in pools] == [(3, 2)] * 3  # overlapping: kernel > stride
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d, nn.BatchNorm2d)) for m in net.modules())


def test_alexnet_original_preset_puts_the_fc_layers_and_their_dropout_in_the_head():
    model = meta_model(["model=alexnet_original"], imagenet_info())
    head = small_config_from(["model=alexnet_original"])["head"]
    assert (head["hidden"], head["dropout"], head["pool"]) == ([4096, 4096], 0.5, "flatten")
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    assert [m.p for m in model.head.modules() if isinstance(m, nn.Dropout)] == [0.5] * 3
    assert count(model) == 62_378_344  # the size its preset and docs state


def test_alexnet_default_stays_small_and_the_original_refuses_small_inputs():
    assert registry.get("architecture", "alexnet").min_size({"variant": "original"}) == 63
    probe_features(backbone("alexnet", variant="original"), 3, (63, 63), "alexnet")
    with pytest.raises(ZooError, match="model=alexnet needs inputs of at least 63x63"):
        build_model(cfg("alexnet", {"variant": "original"}), info(3, 62))
    assert count(backbone("alexnet")) < 1_000_000


@pytest.mark.slow
def test_alexnet_original_trains_a_step_and_exports_lrn_with_parity(tmp_path):
    torch.manual_seed(0)
    config = cfg("alexnet", {"variant": "original"}) | {
        "head": {"name": "classification", "hidden": [32], "pool": "flatten"}
    }
    data = info(3, 67)
    model = build_model(config, data)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = model.head.loss(model(torch.rand(4, 3, 67, 67)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    model.eval()
    card = export_model(model, data, config, tmp_path / "out", ECFG, torch.rand(2, 3, 67, 67), "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4


# ---- VGG-16 as the paper draws it ----------------------------------------------------------------------


def test_vgg16_classic_composes_its_head_and_has_torchvisions_138m_parameters():
    composed = small_config_from(["model=vgg16_classic"])
    assert composed["head"]["hidden"] == [4096, 4096] and composed["head"]["pool"] == "flatten"
    assert composed["head"]["dropout"] == 0.5
    assert composed["model"] == {"name": "vgg", "depth": 16, "width": 1.0, "norm": "none", "pools": 5,
                                 "activation": "relu", "padding_mode": "zeros"}  # fmt: skip
    assert small_config_from(["model=vgg16_classic", "head.hidden=[10]"])["head"]["hidden"] == [10]  # CLI wins
    model = meta_model(["model=vgg16_classic"], imagenet_info())
    assert count(model) == 138_357_544  # torchvision's vgg16
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_the_default_vgg16_preset_stays_small():
    composed = small_config_from(["model=vgg16"])
    assert composed["head"]["hidden"] == [] and composed["model"]["norm"] == "batch"
    assert count(backbone("vgg", 1, depth=16)) == 921_552  # what conf/model/vgg16.yaml states


# ---- LeNet-5's C3 table ----------------------------------------------------------------------------


def test_lenet5_c3_table_has_sixty_connections_held_at_zero_elsewhere_through_training():
    torch.manual_seed(0)
    model = build_model(small_config_from(["model=lenet5_c3"]) | {"data": {"name": "digits"}}, info(1))
    c3 = model.backbone.blocks[1][0]
    live = c3.weight.detach().abs().sum((2, 3)) != 0
    assert live.sum() == 60 and live.shape == (16, 6)
    assert live.sum(1).tolist() == [3] * 6 + [4] * 9 + [6]
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    x, y = torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        opt.zero_grad()
        model.head.loss(model(x), y).backward()
        opt.step()
    after = c3.weight.detach()
    assert torch.count_nonzero(after[~live]) == 0
    assert torch.count_nonzero(after[live].abs().sum((1, 2)) == 0) == 0  # the table's own weights moved, none zero


@pytest.mark.slow
def test_lenet5_c3_table_exports_the_masked_weights(tmp_path):
    torch.manual_seed(0)
    params = {"c3_table": True}
    model = build_model(cfg("lenet5", params), info(1))
    with torch.no_grad():
        model.backbone.blocks[1][0].parametrizations.weight.original.normal_()  # nothing zero in what is stored
    model.eval()
    x = torch.rand(3, 1, 32, 32)
    card = export_model(model, info(1), cfg("lenet5", params), tmp_path / "out", ECFG, x, "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(tmp_path / "out" / "model.onnx").graph
    c3 = [numpy_helper.to_array(t) for t in graph.initializer if tuple(t.dims) == (16, 6, 5, 5)]
    assert len(c3) == 1 and int((np.abs(c3[0]).sum((2, 3)) != 0).sum()) == 60  # the masked weights, folded in


def test_lenet5_c3_table_needs_width_one():
    with pytest.raises(ZooError, match=r"^model.c3_table=true .* needs model.width=1, not 0.5$"):
        build_model(cfg("lenet5", {"c3_table": True, "width": 0.5}), info(1))


# ---- conv options -------------------------------------------------------------------------------------


OPTIONS = [
    {"padding": "valid"},
    {"padding": "valid", "block": "separable", "kernel_size": 4, "depth": 2},
    {"stride": 2, "pool": "none"},
    {"stride": 2, "convs_per_block": 2, "depth": 2},
    *({"activation": a} for a in ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh")),
    *(
        {"block": b, "convs_per_block": 2, "width": 8}
        for b in ("plain", "residual", "bottleneck", "inception", "separable")
    ),
    *({"norm": n} for n in ("batch", "group", "layer", "instance", "none")),
    *({"padding_mode": m, "kernel_size": 5} for m in ("zeros", "reflect", "replicate", "circular", "symmetric")),
    {
        "block": "residual",
        "padding_mode": "symmetric",
        "norm": "layer",
        "activation": "gelu",
        "stride": 2,
        "pool": "none",
    },
]
OPTION_IDS = ["-".join(f"{k}={v}" for k, v in o.items()) for o in OPTIONS]


@pytest.mark.slow
@pytest.mark.parametrize("params", OPTIONS, ids=OPTION_IDS)
def test_each_conv_option_trains_a_step_and_exports(params, tmp_path):
    torch.manual_seed(0)
    params = {"width": 8, **params}
    model = build_model(cfg("cnn", params), info(3))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    loss = model.head.loss(model(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) >= len(before) // 2
    model.eval()
    card = export_model(model, info(3), cfg("cnn", params), tmp_path / "out", ECFG, torch.rand(3, 3, 32, 32), "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4


def test_the_options_build_what_they_name():
    convs = [m for m in backbone("cnn", padding="valid").modules() if isinstance(m, nn.Conv2d)]
    assert {c.padding for c in convs} == {(0, 0)}
    convs = [m for m in backbone("cnn", stride=2, convs_per_block=2).modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 1] * 3  # the first conv of each block
    assert isinstance(backbone("cnn", activation="leaky_relu").blocks[0][0][-1], nn.LeakyReLU)
    norms = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "group": nn.GroupNorm}
    for norm, kind in norms.items():
        assert isinstance(backbone("cnn", norm=norm).blocks[0][0][1], kind)
    layer = backbone("cnn", norm="layer").blocks[0][0][1]
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1  # layer norm for conv maps
    sep = [m for m in backbone("cnn", block="separable").modules() if isinstance(m, nn.Conv2d)]
    assert sep[0].groups == 3 and sep[1].kernel_size == (1, 1)  # depthwise, then pointwise
    inception = backbone("cnn", block="inception", width=32).blocks[0][0]
    assert [b(torch.rand(1, 3, 8, 8)).shape[1] for b in (inception.branch1, inception.branch3, inception.branch5,
                                                         inception.branch_pool)] == [8, 16, 4, 4]  # fmt: skip


def test_symmetric_padding_repeats_the_edge_pixel_as_numpy_does():
    from zoo_plugins._shared import SymmetricPad

    x = torch.arange(20.0).view(1, 1, 4, 5)
    for pad in (1, 2, 3):
        assert np.array_equal(SymmetricPad(pad)(x)[0, 0].numpy(), np.pad(x[0, 0].numpy(), pad, mode="symmetric"))


@pytest.mark.parametrize(
    "params, smallest",
    [
        ({}, 8),
        ({"padding": "valid"}, 22),  # (((1*2+2)*2+2)*2 - ... : each valid 3x3 conv eats 2 pixels
        ({"padding": "valid", "kernel_size": 5, "depth": 2}, 16),
        ({"stride": 2, "pool": "none"}, 1),  # stride-2 same-padded convs take 1 pixel to 1
        ({"stride": 2}, 43),  # ((1 * 2 - 1) * 2 + 1) * 2 ... : pool, then the stride-2 conv, per block
        ({"pool": "none"}, 1),
        ({"padding_mode": "reflect", "pool": "none", "kernel_size": 5}, 3),
        ({"block": "inception", "padding_mode": "reflect", "pool": "none"}, 3),
        # strided with a mirroring pad: only a conv's input must hold the pad (replicate: any), not its output
        ({"padding_mode": "replicate", "stride": 2, "pool": "none", "depth": 4, "kernel_size": 5}, 1),
        ({"padding_mode": "reflect", "stride": 2, "pool": "none", "depth": 4, "kernel_size": 5}, 17),
        ({"padding_mode": "symmetric", "stride": 2, "pool": "none", "depth": 4, "kernel_size": 5}, 9),
        ({"padding_mode": "circular", "stride": 2, "pool": "none", "depth": 4, "kernel_size": 5}, 9),
        ({"padding_mode": "reflect", "convs_per_block": 2, "pool": "none", "kernel_size": 5}, 3),
    ],
)
def test_the_smallest_input_follows_padding_stride_and_pool(params, smallest):
    plugin = registry.get("architecture", "cnn")
    assert plugin.min_size(params) == smallest
    probe_features(backbone("cnn", 1, **params), 1, (smallest, smallest), "cnn")
    if smallest > 1:
        with pytest.raises((RuntimeError, ValueError, ZooError)):
            probe_features(backbone("cnn", 1, **params), 1, (smallest - 1, smallest - 1), "cnn")


def test_options_that_do_not_fit_together_are_one_line():
    with pytest.raises(ZooError, match=r"^model.padding=valid does not fit model.block=residual"):
        build_model(cfg("cnn", {"padding": "valid", "block": "residual"}), info(1))
    with pytest.raises(ZooError, match=r"^model.kernel_size=4 must be odd with model.padding=same"):
        build_model(cfg("cnn", {"kernel_size": 4}), info(1))
    with pytest.raises(
        ZooError, match=r"^model.block='dense' is not one of: plain, residual, bottleneck, inception, separable$"
    ):
        build_model(cfg("cnn", {"block": "dense"}), info(1))


@pytest.mark.parametrize(
    "name, params",
    [("cnn", {"block": "bottleneck"}), ("alexnet", {"variant": "original"}), ("lenet5", {"c3_table": True}),
     ("vgg", {"width": 0.0625, "padding_mode": "symmetric"})],
)  # fmt: skip
def test_the_classics_take_any_channel_count(name, params):
    size = 64 if params.get("variant") == "original" else 32
    net = backbone(name, 5, **params)
    feats = net(torch.rand(2, 5, size, size))
    assert feats[-1].shape[0] == 2 and torch.isfinite(feats[-1]).all()
