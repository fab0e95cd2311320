"""zoo.testing.check_plugin, the helper a plugin package's own tests call, and the rest of the author API."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zoo
from zoo import ZooError
from zoo.testing import check_plugin


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, name, params, task",
    [
        ("architecture", "lenet5", {}, "classification"),
        ("head", "regression", {}, "regression"),
        ("head", "fpn", {}, "segmentation"),
        ("augmentation", "hflip", {"p": 1.0}, "classification"),
        ("augmentation", "mixup", {}, "classification"),
        ("transfer", "finetune", {}, "classification"),
    ],
)
def test_check_plugin_builds_trains_a_step_and_exports_with_parity(kind, name, params, task):
    report = check_plugin(kind, name, **params)
    assert (report.kind, report.name, report.package, report.task) == (kind, name, "zoo", task)
    assert report.loss > 0 and report.outputs and max(report.parity.values()) <= 1e-4
    if kind == "transfer":  # set up on a checkpoint check_plugin wrote itself
        assert report.weights["loaded"] > 0 and report.weights["source"].endswith("source.pt")


def test_check_plugin_refuses_bad_values_in_one_line():
    with pytest.raises(ZooError, match=r"^aug.ops.hflip.p=1.5 must be in \[0, 1\]$"):
        check_plugin("augmentation", "hflip", p=1.5)
    with pytest.raises(ZooError, match=r"^unknown key 'model.widht' for architecture 'lenet5'; did you mean"):
        check_plugin("architecture", "lenet5", widht=2.0)


@pytest.mark.slow
def test_the_author_api_is_exported_and_zoo_imports_no_torch():
    assert zoo.ZooError is ZooError and issubclass(zoo.PluginError, ZooError)
    code = "import sys, zoo; assert 'torch' not in sys.modules; zoo.load_weights; assert 'torch' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from zoo.train.checkpoint import load_weights

    assert zoo.load_weights is load_weights
