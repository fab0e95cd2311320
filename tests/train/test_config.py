"""Hydra composition: every preset composes, every plugin is an option, bad input is one clear error."""

from __future__ import annotations

import dataclasses
import math

import pytest

from zoo.errors import ZooError
from zoo.plugin import registry
from zoo.train import config
from zoo.train.config import check_node, compose, schema_params, to_plain
from zoo.train.options import conf_dir, group_options
from zoo.train.schemas import GROUPS, STRUCTURED
from zoo.train.sweeps import expand

PRESETS = sorted((d.name, f.stem) for d in conf_dir().iterdir() if d.is_dir() for f in d.glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("group,name", PRESETS)
def test_every_preset_composes(group, name):
    cfg = to_plain(compose([f"{group}={name}"]))
    assert cfg["seed"] == 0 and cfg["data"]["name"]


@pytest.mark.slow
@pytest.mark.parametrize("group,kind", sorted(GROUPS.items()))
def test_every_plugin_is_a_config_option_with_no_yaml(group, kind):
    for plugin in registry.registries[kind]:
        assert plugin.name in group_options(group)
        required = [p for p in plugin.params if p.default is registry.REQUIRED]
        extra = [f"{group}.{p.name}={'3' if p.base is int else '/tmp'}" for p in required]  # a folder, a count
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


@pytest.mark.slow
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
        (["trainer.optimizer=adam"], "trainer.optimizer='adam' is not one of: adamw, sgd; did you mean 'adamw'?"),
        (["trainer.scheduler=cosin"], "trainer.scheduler='cosin' is not one of: cosine, step, none"),
        (["trainer.device=gpu"], "trainer.device='gpu' is not one of: auto, cpu, cuda"),
        (["trainer.batch_size=0"], "trainer.batch_size=0 must be at least 1"),
        (["trainer.eval_batch_size=-3"], "trainer.eval_batch_size=-3 must be at least 1"),
        (["trainer.threads=-1"], "trainer.threads=-1 must be at least 0"),
        (["trainer.lr=0"], "trainer.lr=0.0 must be greater than 0"),
        (["trainer.lr=nan"], "trainer.lr=nan must be a finite number"),
        (["trainer.lr=inf"], "trainer.lr=inf must be a finite number"),
        (["trainer.weight_decay=-inf"], "trainer.weight_decay=-inf must be a finite number"),
        (["trainer.momentum=5"], "trainer.momentum=5.0 must be in [0, 1)"),
        (["trainer.gamma=0"], "trainer.gamma=0.0 must be in (0, 1]"),
        (["trainer.step_size=0"], "trainer.step_size=0 must be at least 1"),
        (["trainer.patience=-1"], "trainer.patience=-1 must be at least 0"),
        (["trainer.max_epochs=9223372036854775808"], "must fit in 64 bits"),
        (["export.parity_tolerance=nan"], "export.parity_tolerance=nan must be a finite number"),
        (["export.parity_mismatch=2"], "export.parity_mismatch=2.0 must be in [0, 1]"),
        (["export.parity_samples=0"], "export.parity_samples=0 must be at least 1"),
        (["export.opset=3"], "export.opset=3 must be in [17, 20]"),
        (["+trainer.lrr=0.5"], "unknown config key 'trainer.lrr'; did you mean 'trainer.lr'?"),
        (["+export.opsett=18"], "unknown config key 'export.opsett'; did you mean 'export.opset'?"),
        (["+trainer.zzz=1"], "unknown config key 'trainer.zzz'"),
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


def test_the_value_table_is_gone_and_every_setting_is_declared_on_its_field():
    for name in ("CHOICES", "POSITIVE", "NON_NEGATIVE"):
        assert not hasattr(config, name), name
    declared = {(node, f.name) for node, schema in STRUCTURED.items() for f in dataclasses.fields(schema)}
    described = {(node, n): p.describe() for node, s in STRUCTURED.items() for n, p in schema_params(s).items()}
    assert set(described) == declared
    assert described[("trainer", "optimizer")] == "adamw|sgd"
    assert described[("trainer", "scheduler")] == "cosine|step|none"
    assert described[("trainer", "device")] == "auto|cpu|cuda"
    assert described[("trainer", "lr")] == "float > 0"
    assert described[("trainer", "batch_size")] == "int >= 1"
    assert described[("trainer", "momentum")] == "float in [0, 1)"
    assert described[("trainer", "gamma")] == "float in (0, 1]"
    assert described[("export", "parity_mismatch")] == "float in [0, 1]"
    assert described[("export", "parity_samples")] == "int >= 1"
    unchecked = {k for k, d in described.items() if d in ("int", "float")}
    assert not unchecked, f"numbers without a declared range: {sorted(unchecked)}"


def test_structured_nodes_are_checked_like_plugin_parameters():
    """The same registry code path, so the same messages, with or without Hydra in between."""
    defaults = {f.name: f.default for f in dataclasses.fields(config.TrainerConfig)}
    check_node("trainer", defaults)
    with pytest.raises(ZooError, match=r"^trainer\.lr=nan must be a finite number$"):
        check_node("trainer", {**defaults, "lr": math.nan})
    with pytest.raises(ZooError, match=r"^trainer\.momentum=1\.0 must be in \[0, 1\)$"):
        check_node("trainer", {**defaults, "momentum": 1.0})
    with pytest.raises(ZooError, match=r"^unknown config key 'trainer\.lrr'; did you mean 'trainer\.lr'\?$"):
        check_node("trainer", {**defaults, "lrr": 0.5})
    lost = {k: v for k, v in defaults.items() if k != "lr"}
    with pytest.raises(ZooError, match=r"^trainer\.lr is required \(float > 0\); set it with trainer\.lr=VALUE$"):
        check_node("trainer", lost)


def test_settings_inside_their_range_compose():
    cfg = to_plain(
        compose(
            [
                "trainer.lr=1e-6",
                "trainer.momentum=0",
                "trainer.gamma=1",
                "trainer.optimizer=sgd",
                "trainer.device=cpu",
                "export.parity_mismatch=0",
                "export.parity_tolerance=0",
                "export.parity_samples=1",
            ]
        )
    )
    assert cfg["trainer"]["gamma"] == 1.0 and cfg["export"]["parity_samples"] == 1
    assert cfg["trainer"]["optimizer"] == "sgd"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["+aug.ops.hflip={p:1.5}"], "aug.ops.hflip.p=1.5 must be in [0, 1]"),
        (["aug.ops.shift.fraction=nan"], "aug.ops.shift.fraction=nan must be a finite number"),
        (["transfer=finetune", "transfer.lr_scale=0"], "transfer.lr_scale=0.0 must be in (0, 1]"),
        (["head.dropout=nan"], "head.dropout=nan must be a finite number"),
        (["model=cnn", "model.depth=0"], "model.depth=0 must be at least 1"),
    ],
)
def test_plugin_parameters_outside_their_declaration_are_one_line_errors(overrides, message):
    with pytest.raises(ZooError) as e:
        compose(overrides)
    assert str(e.value) == message


def test_plugin_parameters_declared_out_of_range_are_refused_by_compose():
    bad = [(p.name, p.range) for p in registry.get("architecture", "cnn").params if p.range is not None]
    assert len(bad) >= 2
    for name, r in bad[:2]:
        value = r.min - 1 if r.min is not None else r.max + 1
        with pytest.raises(ZooError) as e:
            compose(["model=cnn", f"model.{name}={value}"])
        assert str(e.value).startswith(f"model.{name}=") and "must be" in str(e.value)


def test_the_config_sources_are_module_level_classes_that_a_job_process_imports_by_name():
    import pickle

    from hydra.core.plugins import Plugins
    from hydra.plugins.config_source import ConfigSource

    from zoo.train import sources

    config.store_configs()
    registered = Plugins.instance().discover(ConfigSource)
    for cls in (sources.PluginConfigSource, sources.PackageConfigSource):
        assert "<locals>" not in cls.__qualname__ and cls in registered
        assert pickle.loads(pickle.dumps(cls)) is cls  # what a launcher's job process unpickles
