"""The weights' pre-flight: an architecture's `weights_check` runs before any data is read or downloaded, stops an
offline run without its weights in one line, and a data.size other than the weights' own is one warning."""

from __future__ import annotations

import logging

import pytest

import zoo.train.experiment as experiment
from tests.conftest import small_config
from zoo.errors import ZooError
from zoo.model import Backbone
from zoo.plugin import registry
from zoo.plugin.registry import register

NAME = "preflight_net"
seen: list[tuple[dict, str]] = []


def check(values: dict, source: str) -> dict | None:
    """Own weights are `pretrained`; `width=3` stands for "not in the cache, offline"."""
    seen.append((values, source))
    if source != "pretrained":
        return None
    if values["width"] == 3:
        raise ZooError("preflight_net's weights are not in the cache and the hub cannot be reached; put FILE in DIR")
    return {"mean": [0.5], "std": [0.25], "size": 224}


@pytest.fixture
def arch():
    """A throwaway architecture with a weights_check, registered for one test (the cnn builds it)."""
    cnn = registry.get("architecture", "cnn").resolve()

    def preflight_net(in_channels: int, width: int = 8) -> Backbone:
        """A cnn whose weights are checked before the data is built."""
        return cnn.factory(in_channels=in_channels, width=width)

    plugin = register.architecture(NAME, weights_check=check)(preflight_net)
    seen.clear()
    yield plugin
    registry.registries["architecture"]._plugins.pop(NAME, None)


def config(width: int, weights: str, **over) -> dict:
    cfg = small_config(transfer="finetune", **{"transfer.weights": weights, "model.width": 8}, **over)
    cfg["model"] = {"name": NAME, "width": width}
    return cfg


def test_offline_weights_stop_the_run_before_the_data_is_built(arch, monkeypatch):
    built = []
    monkeypatch.setattr(experiment, "build_data", lambda *a, **k: built.append(a) or pytest.fail("data was built"))
    with pytest.raises(ZooError, match=r"^preflight_net's weights are not in the cache"):
        experiment.build_experiment(config(3, "pretrained"))
    assert built == [] and seen == [({"width": 3}, "pretrained")]  # the model config's checked values


def test_a_size_other_than_the_weights_is_one_warning_and_the_stats_come_back(arch, caplog):
    with caplog.at_level(logging.WARNING, logger="zoo"):
        expected = experiment.check_weights(config(8, "pretrained"))
    assert expected == {"mean": [0.5], "std": [0.25], "size": 224}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "trained at 224x224 but data.size gives 32x32" in warned[0], warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zoo"):
        experiment.check_weights(config(8, "pretrained", **{"data.size": 224}))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_other_sources_and_architectures_without_a_check_pass_through(arch, tmp_path):
    assert experiment.check_weights(config(3, str(tmp_path))) is None  # a run directory: not the arch's own
    assert seen == [({"width": 3}, str(tmp_path))]
    assert experiment.check_weights(small_config(transfer="finetune")) is None  # model=cnn declares no check
    assert experiment.check_weights(config(3, "none")) is None and len(seen) == 1  # no weights asked for


def test_weights_check_is_a_declaration_the_registry_keeps(arch):
    assert registry.get("architecture", NAME).resolve().extra["weights_check"] is check
