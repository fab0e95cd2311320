"""Every preset backbone splits into stages, shallow to deep, as its own family groups its blocks; fine-tuning
the deepest stage unfreezes that stage and the head, nothing else. Built offline (pretrained=False) at 32x32."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import small_config
from zoo.data import build_data
from zoo.errors import ZooError
from zoo.model import build_model, set_train_mode
from zoo.plugin import registry
from zoo.train.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from zoo.train.experiment import build_experiment

TIMM_PRESETS = ["resnet18", "mobilenetv3_small_100", "efficientnet_b0", "convnext_atto", "xception41"]
PRESETS = [*TIMM_PRESETS, "vgg16"]
SMALL = {"data.channels": 3, "data.size": 32, "trainer.progress": "false"}


def preset_config(preset: str, **overrides) -> dict:
    return small_config(model=preset, **SMALL, **overrides)


def ids(module) -> set[int]:
    return {id(p) for p in module.parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_stages_partition_the_backbone_into_proper_shares(preset):
    cfg = preset_config(preset)
    backbone = build_model(cfg, build_data(cfg, 0).info).backbone
    stages = backbone.stages()
    assert len(stages) >= 3, [sum(p.numel() for p in s.parameters()) for s in stages]
    sets = [ids(s) for s in stages]
    assert all(sets), "an empty stage"
    assert sum(len(s) for s in sets) == len(set().union(*sets)), "stages overlap"
    assert set().union(*sets) == ids(backbone), "stages miss parameters"
    total = sum(p.numel() for p in backbone.parameters())
    shares = [sum(p.numel() for p in s.parameters()) / total for s in stages]
    assert all(0 < s < 1 for s in shares), shares


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_finetune_one_stage_trains_only_the_deepest_stage_and_the_head(preset, tmp_path):
    source = preset_config(preset, seed=1)
    info = build_data(source, 0).info
    trained = build_model(source, info)
    ckpt = tmp_path / "source.pt"
    save_checkpoint(
        ckpt, {"format": CHECKPOINT_FORMAT, "config": source, "info": info.to_dict(), "model": trained.state_dict()}
    )
    cfg = preset_config(
        preset,
        transfer="finetune",
        **{"transfer.weights": str(ckpt), "transfer.unfreeze_stages": 1, "transfer.head_epochs": 0},
    )
    exp = build_experiment(cfg)
    model, stages = exp.model, exp.model.backbone.stages()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == ids(stages[-1]) | ids(model.head)
    loaded = trained.backbone.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in model.backbone.state_dict().items())
    groups = exp.transfer.param_groups(model, 1.0)
    assert [g["lr"] for g in groups] == [1.0, pytest.approx(0.1)]
    set_train_mode(model)  # the frozen stages keep their batch-norm statistics
    assert not any(m.training for s in stages[:-1] for part in s for m in part.modules())
    assert all(m.training for part in stages[-1] for m in part.modules())


def test_timm_stage_groups_follow_timms_own_grouping():
    """resnet18: layer1-4 as stages, or one stage per residual block; the stem joins the first."""
    cfg = preset_config("resnet18")
    info = build_data(cfg, 0).info
    backbone = build_model(cfg, info).backbone
    body, stages = backbone.body, backbone.stages()
    stem = ids(body.conv1) | ids(body.bn1)
    assert [ids(s) for s in stages] == [stem | ids(body.layer1), ids(body.layer2), ids(body.layer3), ids(body.layer4)]
    backbone = build_model(preset_config("resnet18", **{"model.stage_groups": "blocks"}), info).backbone
    body, blocks = backbone.body, backbone.stages()
    assert len(blocks) == 8
    assert ids(blocks[0]) == ids(body.conv1) | ids(body.bn1) | ids(body.layer1[0]) and ids(blocks[-1]) == ids(
        body.layer4[1]
    )


def test_layer_decay_scales_each_stage():
    cfg = preset_config("convnext_atto")
    model = build_model(cfg, build_data(cfg, 0).info)
    t = registry.get("transfer", "finetune").build(
        {}, {"weights": "none", "head_epochs": 0, "unfreeze_stages": 3, "layer_decay": 0.5}, where="transfer"
    )
    t.on_epoch_start(0, model)
    lrs = [g["lr"] for g in t.param_groups(model, 1.0)]
    assert lrs == [1.0, pytest.approx(0.1), pytest.approx(0.05), pytest.approx(0.025)]


def test_a_model_without_block_groups_says_so_in_one_line():
    from zoo_plugins.architectures.timm_backbones import TimmBackbone

    backbone = TimmBackbone("pit_ti_224", 3, None, 0.0)  # timm declares no group_matcher for PiT
    with pytest.raises(ZooError, match=r"^model.model_name=pit_ti_224 has no block structure that timm groups") as e:
        backbone.stages()
    assert "\n" not in str(e.value) and "unfreeze_stages=-1" in str(e.value)
