"""zoo.report.summary against torchvision's published figures, and the receptive field on hand-checkable stacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.report.summary import summarize

# torchvision's published figures (its weights' meta: num_params, and _ops, which counts multiply-accumulates)
PUBLISHED = {
    "alexnet": (61_100_840, 0.71e9),
    "vgg16": (138_357_544, 15.47e9),
    "resnet50": (25_557_032, 4.09e9),
    "googlenet": (6_624_904, 1.50e9),
    "squeezenet1_1": (1_235_496, 0.35e9),
}
BIG = {"vgg16", "resnet50", "googlenet"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in PUBLISHED])
def test_counts_equal_torchvisions_published_figures(name):
    import torchvision

    extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}  # published: no aux heads
    model = torchvision.models.get_model(name, weights=None, **extra)
    summary = summarize(model, (3, 224, 224), fields=False)
    params, macs = PUBLISHED[name]
    assert summary.params == params
    assert summary.trainable == params
    assert abs(summary.macs - macs) / macs < 0.02, summary.macs
    assert sum(r.params for r in summary.layers) == params  # rows add up to the total
    assert sum(r.macs for r in summary.layers) == summary.macs


def test_shared_parameters_count_once_and_frozen_ones_show():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv, nn.Conv2d(3, 2, 1))
    model[3].weight.requires_grad_(False)
    s = summarize(model, (3, 8, 8), fields=False)
    assert s.params == 84 + 8
    assert s.trainable == 84 + 2
    assert s.macs == 2 * 3 * 3 * 9 * 64 + 3 * 2 * 64  # the shared conv runs twice
    assert [r.name for r in s.layers] == ["0", "1", "3"]  # a module once, where it first ran
    assert s.layers[0].memory == 3 * 8 * 8 * 4


def fields(model, size=32):
    s = summarize(model, (1, size, size))
    return {r.name: r.field for r in s.layers}


def test_three_3x3_convs_see_7_pixels():
    f = fields(nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]))
    assert [f[k].size for k in "012"] == [(3, 3), (5, 5), (7, 7)]
    assert all(f[k].stride == (1, 1) for k in "012")


def test_pools_and_convs_compose_in_order():
    f = fields(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2)))
    assert f["1"].size == (4, 4) and f["1"].stride == (2, 2)  # 3 + (2 - 1) x 1
    f = fields(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1)))
    assert f["0"].size == (2, 2) and f["0"].stride == (2, 2)
    assert f["1"].size == (6, 6) and f["1"].stride == (2, 2)  # 2 + (3 - 1) x 2


def test_valid_convolutions_and_a_strided_one():
    f = fields(nn.Sequential(nn.Conv2d(1, 1, 5), nn.MaxPool2d(2), nn.Conv2d(1, 1, 5), nn.Conv2d(1, 1, 3, stride=2)))
    assert [f[k].size[0] for k in "0123"] == [5, 6, 14, 18]
    assert [f[k].stride[0] for k in "0123"] == [1, 2, 2, 4]


class Branches(nn.Module):
    """An inception-like block: a 1x1, a 5x5 and a 3x3 max pool side by side, concatenated, plus a residual."""

    def __init__(self):
        super().__init__()
        self.one = nn.Conv2d(1, 1, 1)
        self.five = nn.Conv2d(1, 1, 5, padding=2)
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.after = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.after(torch.cat([self.one(x), self.five(x), self.pool(x)], 1)) + x


def test_a_branch_counts_its_widest_path_and_a_max_pool_its_whole_window():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Branches())
    f = fields(model)
    assert f["1.one"].size == (3, 3)
    assert f["1.pool"].size == (5, 5)  # a max pool's gradient goes to one winner; its window is 3
    assert f["1.five"].size == (7, 7)
    assert f["1.after"].size == (9, 9)  # 7 + 2


def test_a_field_larger_than_the_input_is_marked():
    f = fields(nn.Sequential(*[nn.Conv2d(1, 1, 5, padding=2) for _ in range(4)]), size=12)
    assert f["3"].size == (12, 12) and f["3"].clipped
    assert not f["0"].clipped
