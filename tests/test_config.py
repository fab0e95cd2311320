"""Hydra composition: every preset composes, every plugin is an option, bad input is one clear error."""

from __future__ import annotations

import pytest

from zoo import registry
from zoo.config import GROUPS, compose, conf_dir, expand, group_options, to_plain
from zoo.errors import ZooError

PRESETS = sorted((d.name, f.stem) for d in conf_dir().iterdir() if d.is_dir() for f in d.glob("*.yaml"))


@pytest.mark.parametrize("group,name", PRESETS)
def test_every_preset_composes(group, name):
    cfg = to_plain(compose([f"{group}={name}"]))
    assert cfg["seed"] == 0 and cfg["data"]["name"]


@pytest.mark.parametrize("group,kind", sorted(GROUPS.items()))
def test_every_plugin_is_a_config_option_with_no_yaml(group, kind):
    for plugin in registry.registries[kind]:
        assert plugin.name in group_options(group)
        required = [p.name for p in plugin.params if p.default is registry.REQUIRED]
        extra = [f"{group}.{r}=/tmp" for r in required]
        cfg = to_plain(compose([f"{group}={plugin.name}", *extra]))
        assert cfg[group]["name"] == plugin.name
        assert set(cfg[group]) == {"name", *(p.name for p in plugin.params)}


def test_defaults_are_digits_classification():
    cfg = to_plain(compose([]))
    assert (cfg["data"]["name"], cfg["head"]["name"], cfg["transfer"]["name"]) == (
        "digits",
        "classification",
        "scratch",
    )


def test_plugin_parameters_override_and_presets_extend_plugins():
    cfg = to_plain(compose(["model=cnn", "model.padding_mode=reflect", "model.width=8"]))
    assert cfg["model"]["padding_mode"] == "reflect" and cfg["model"]["width"] == 8
    cfg = to_plain(compose(["model=resnet18"]))
    assert cfg["model"]["name"] == "timm" and cfg["model"]["model_name"] == "resnet18"


def test_augmentation_ops_are_added_and_removed_by_one_override():
    assert list(to_plain(compose(["~aug.ops.rotation"]))["aug"]["ops"]) == ["shift"]
    ops = to_plain(compose(["+aug.ops.hflip={p:0.3}"]))["aug"]["ops"]
    assert ops["hflip"] == {"p": 0.3}
    assert to_plain(compose(["aug=none"]))["aug"]["ops"] == {}


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=lenet"], "unknown model 'lenet'; did you mean 'lenet5'"),
        (["head=clasification"], "did you mean 'classification'"),
        (["model.widht=3"], "unknown config key 'model.widht'; did you mean 'model.width'"),
        (["foo=1"], "unknown config key 'foo'"),
        (["model.width=abc"], "model.width=abc"),
        (["trainer.lr=fast"], "could not be converted to Float"),
        (["seed=abc"], "seed=abc"),
        (["model.padding_mode=reflct"], "did you mean 'reflect'"),
        (["trainer.optimizer=adam"], "trainer.optimizer='adam' is not one of: adamw, sgd"),
        (["trainer.batch_size=0"], "trainer.batch_size=0 must be positive"),
        (["trainer.threads=-1"], "trainer.threads=-1 must be zero or more"),
        (["+aug.ops.blurr={}"], "unknown augmentation 'blurr'"),
        (["aug.ops.shift.fractoin=0.1"], "did you mean 'fraction'"),
        (["data=folder"], "data.root"),
        (["aug=heavyy"], "unknown aug 'heavyy'"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ZooError) as e:
        compose(overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_sweeps_expand_to_every_combination():
    combos = expand(["model=cnn,lenet5", "seed=0,1,2", "trainer.max_epochs=1"])
    assert len(combos) == 6 and ["model=lenet5", "seed=2", "trainer.max_epochs=1"] in combos
