"""Transfer strategies freeze and unfreeze exactly what they promise; weights load across class counts;
ensembles export as the average of their members; sweeps are tabulated; augmented samples are drawn."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, run_zoo, small_config, zoo_in_process
from zoo.data import build_data
from zoo.errors import ZooError
from zoo.model import build_model, set_train_mode
from zoo.plugin import registry
from zoo.train.engine import train

FAST = {"trainer.max_epochs": 2, "trainer.progress": "false", "model.width": 8}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A digits 0-4 run: the weight source."""
    run = tmp_path_factory.mktemp("source")
    train(small_config(**FAST, **{"data.classes": "[0,1,2,3,4]"}), run)
    return run


def strategy(name: str, **params):
    return registry.get("transfer", name).build({}, params, where="transfer")


def target_model(source_dir=None):
    cfg = small_config(**FAST, **{"data.classes": "[5,6,7,8,9]", "data.shots": 10})
    bundle = build_data(cfg, 0)
    return build_model(cfg, bundle.info), bundle, cfg


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def step(model, bundle, lr=0.1):
    """One SGD step on trainable parameters, in zoo's train mode (frozen stages in eval)."""
    set_train_mode(model)
    x = torch.stack([bundle.train[i][0] for i in range(8)])
    y = torch.stack([bundle.train[i][1] for i in range(8)])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.head.loss(model(x), y).backward()
    opt.step()


@pytest.mark.slow
def test_loading_across_class_counts_keeps_backbone_and_renews_head(source):
    model, _, _ = target_model()
    head_before = snapshot(model.head)
    report = strategy("frozen", weights=str(source)).setup(model)
    src = torch.load(source / "checkpoints" / "best.pt", weights_only=True)["model"]
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, src[f"backbone.{k}"])
    assert torch.equal(model.normalize.mean, src["normalize.mean"])
    assert all(torch.equal(v, model.head.state_dict()[k]) for k, v in head_before.items())  # head stays fresh
    assert report["loaded"] == len(model.backbone.state_dict()) + 2
    assert report["new"] == sorted(f"head.{k}" for k in head_before)


def test_pretrained_loads_the_head_when_it_fits(source):
    cfg = small_config(**FAST, **{"data.classes": "[0,1,2,3,4]"})
    model = build_model(cfg, build_data(cfg, 0).info)
    report = strategy("pretrained", weights=str(source)).setup(model)
    src = torch.load(source / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(v, src[k]) for k, v in model.state_dict().items())
    assert report["new"] == [] and report["skipped"] == []


@pytest.mark.parametrize("name", ["frozen", "feature_extraction"])
def test_frozen_base_never_changes(source, name):
    model, bundle, _ = target_model()
    strategy(name, weights=str(source)).setup(model)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    before_backbone, before_head = snapshot(model.backbone), snapshot(model.head)
    step(model, bundle)
    after = model.backbone.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before_backbone.items())  # weights and batch-norm statistics
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in before_head.items())


def test_frozen_drops_out_base_features_only_while_training(source):
    model, bundle, _ = target_model()
    strategy("frozen", weights=str(source), dropout=0.5).setup(model)
    x = torch.stack([bundle.train[i][0] for i in range(4)])
    set_train_mode(model)
    assert not torch.allclose(model(x), model(x))  # features dropped at random going into the head
    model.eval()
    assert torch.equal(model(x), model(x))
    plain, _, _ = target_model()
    strategy("frozen", weights=str(source), dropout=0.0).setup(plain)
    set_train_mode(plain)
    assert torch.equal(plain(x), plain(x))
    with pytest.raises(ZooError, match=r"transfer.dropout=1.0 must be in \[0, 1\)"):
        strategy("frozen", weights=str(source), dropout=1.0)


def test_scratch_trains_everything():
    model, bundle, _ = target_model()
    strategy("scratch").setup(model)
    before = snapshot(model)
    step(model, bundle)
    params = dict(model.named_parameters())
    assert all(p.requires_grad for p in params.values())
    assert all(not torch.equal(before[k], p) for k, p in params.items())


def test_finetune_phases_unfreeze_the_deepest_stages_at_a_smaller_rate(source):
    model, bundle, _ = target_model()
    t = strategy("finetune", weights=str(source), head_epochs=2, unfreeze_stages=1, lr_scale=0.1, layer_decay=0.5)
    t.setup(model)
    stages = model.backbone.stages()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert t.on_epoch_start(1, model) is False
    assert t.on_epoch_start(2, model) is True
    assert all(p.requires_grad for p in stages[-1].parameters())
    assert not any(p.requires_grad for s in stages[:-1] for p in s.parameters())
    groups = t.param_groups(model, 1.0)
    assert [g["lr"] for g in groups] == [1.0, pytest.approx(0.1)]
    shallow = snapshot(stages[0])
    deep = {k: v.clone() for k, v in stages[-1].state_dict().items()}
    step(model, bundle)
    assert all(torch.equal(v, stages[0].state_dict()[k]) for k, v in shallow.items())
    assert any(not torch.equal(v, stages[-1].state_dict()[k]) for k, v in deep.items())
    t2 = strategy("finetune", weights=str(source), head_epochs=0, unfreeze_stages=-1, layer_decay=0.5)
    model2, _, _ = target_model()
    t2.setup(model2)
    assert all(p.requires_grad for p in model2.parameters())
    lrs = [g["lr"] for g in t2.param_groups(model2, 1.0)]
    assert lrs == [1.0] + [pytest.approx(0.1 * 0.5**d) for d in range(len(model2.backbone.stages()))]


def test_feature_extraction_run_reports_its_cache(source, tmp_path):
    cfg = small_config(
        **FAST,
        **{
            "data.classes": "[5,6,7,8,9]",
            "data.shots": 10,
            "transfer": "feature_extraction",
            "transfer.weights": str(source),
        },
    )
    results = train(cfg, tmp_path)
    assert results["feature_cache_seconds"] > 0 and results["epoch_seconds"] > 0
    assert results["transfer"]["weights"]["source"] == str(source)
    assert json.loads((tmp_path / "metrics.json").read_text())["transfer"]["name"] == "feature_extraction"


def test_weight_source_errors(tmp_path):
    model, _, _ = target_model()
    with pytest.raises(ZooError, match=r"^transfer.weights='/no/such/run' is not a checkpoint file or a run directory"):
        strategy("finetune", weights="/no/such/run").setup(model)
    # model=cnn has no weight source of its own: a hub name is read as a path, and refused as one
    with pytest.raises(ZooError, match=r"^transfer.weights='timm' is not a checkpoint file or a run directory$"):
        strategy("frozen", weights="timm").setup(model)
    with pytest.raises(ZooError, match=r"'timm:/some/file.pth' is not a checkpoint file or a run directory"):
        strategy("frozen", weights="timm:/some/file.pth").setup(model)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ZooError, match="cannot read checkpoint"):
        strategy("frozen", weights=str(tmp_path / "junk.pt")).setup(model)


@pytest.mark.slow
def test_ensemble_export_is_the_average_of_its_members(source, tmp_path):
    other = tmp_path / "other"
    train(small_config(**FAST, **{"data.classes": "[0,1,2,3,4]", "seed": 1}), other)
    out = tmp_path / "ens"
    proc = run_zoo("export", f"checkpoint={source}/checkpoints/best.pt,{other}", f"output={out}")
    assert proc.returncode == 0, proc.stderr
    from zoo.deploy.graph import DeployModel
    from zoo.runtime import Model
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

    x = torch.rand(16, 1, 32, 32).mul(255).round().div(255)  # 8-bit pixels: the default (uint8) export's input
    members = [DeployModel(model_from_checkpoint(load_checkpoint(p))[0]).eval() for p in (source, other)]
    with torch.no_grad():
        mean = torch.stack([m(x) for m in members]).mean(0).numpy()
    served = Model(out / "model.onnx", "cpu")
    got = served.run(served.as_input(x.numpy()))["probabilities"]
    assert np.abs(got - mean).max() <= 1e-4
    assert json.loads((out / "model.json").read_text())["source"]["ensemble"][1] == str(other)
    mismatch = zoo_in_process("export", f"checkpoint={source},{tmp_path / 'x'}", f"output={tmp_path / 'bad'}")
    assert_one_line_error(mismatch, "does not exist")


@pytest.mark.slow
def test_a_sweep_runs_every_combination_and_report_tabulates_it(tmp_path):
    # Hydra's joblib launcher: two jobs at a time, each given its share of the cores (trainer.threads)
    proc = run_zoo(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.width=4,8",
        "seed=0,1",
        "trainer.max_epochs=1",
        "trainer.progress=false",
        "data.classes=[0,1,2,3]",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.parent.name for p in tmp_path.glob("*/metrics.json")) == ["0", "1", "2", "3"]
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"- trainer.threads={threads}" in (tmp_path / "3" / ".hydra" / "overrides.yaml").read_text()
    rep = run_zoo("report", str(tmp_path))
    assert rep.returncode == 0, rep.stderr
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[0].startswith("| model.width | runs | test.accuracy")
    assert len(lines) == 4 and all(" ± " in line for line in lines[2:]) and "| 2 |" in lines[2]
    assert (tmp_path / "report.csv").read_text().splitlines()[0].startswith("model.width,runs,test.accuracy_mean")
    assert (tmp_path / "report.png").stat().st_size > 10_000 and "report.png" in rep.stdout
    assert_one_line_error(zoo_in_process("report", str(tmp_path / "nothing")), "is not a folder")


@pytest.mark.slow
def test_bench_transfer_compares_head_epochs_side_by_side(source):
    proc = run_zoo(
        "bench",
        "transfer",
        "repeats=1",
        "data.classes=[5,6,7,8,9]",
        "data.shots=10",
        "model.width=8",
        "transfer=frozen",
        f"transfer.weights={source}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "data=digits (50 training images)" in lines[0] and "median of 1 interleaved" in lines[0]
    assert "transfer=frozen" in lines[0] and "run on every batch" in lines[1] and "x1.00" in lines[1]
    assert "cached features" in lines[2] and "vs every batch" in lines[2] and "pays for itself after" in lines[3]
    assert_one_line_error(
        zoo_in_process("bench", "transfer", "repeats=1"),
        "transfer=scratch trains the backbone; choose a transfer strategy",
    )


def test_the_transfer_experiments_compose_and_run(source, tmp_path):
    pre = small_config(experiment="digits_pretrain")
    assert pre["data"]["classes"] == [0, 1, 2, 3, 4] and pre["data"]["shots"] is None
    cfg = small_config(
        **{
            "experiment": "digits_transfer",
            "transfer.weights": str(source),
            "model.width": 8,
            "trainer.max_epochs": 1,
            "trainer.progress": "false",
        }
    )
    assert (cfg["transfer"]["name"], cfg["data"]["classes"], cfg["data"]["shots"]) == ("finetune", [5, 6, 7, 8, 9], 20)
    results = train(cfg, tmp_path)
    assert results["transfer"]["weights"]["source"] == str(source) and len(results["test"]["confusion_matrix"]) == 5


def test_report_rows_follow_the_sweeps_job_order(tmp_path):
    from zoo.report.visual import report

    for job in range(12):  # jobs 0..11: "10" must not sort before "2"
        d = tmp_path / str(job)
        d.mkdir()
        (d / "config.yaml").write_text(f"seed: {job % 2}\ntransfer:\n  name: s{job // 2}\n")
        (d / "metrics.json").write_text(json.dumps({"test": {"accuracy": job / 12}}))
    md, _ = report(tmp_path)
    assert [line.split(" | ")[0].strip("| ") for line in md.splitlines()[2:]] == [f"s{i}" for i in range(6)]


@pytest.mark.slow
def test_augment_writes_a_png(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    proc = run_zoo("augment", f"output={out}", "aug=heavy", "samples=3", "variants=2")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size[1] > 3 * 32
    assert_one_line_error(zoo_in_process("augment", f"output={out}", "aug=hevy"), "unknown aug 'hevy'")


# ---- two steps across runs: the head on the frozen base, then fine-tuning with that head ------------------------


@pytest.mark.slow
def test_two_step_transfer_keeps_the_step_one_head_bit_for_bit(source, tmp_path):
    over = {**FAST, "trainer.max_epochs": 1, "data.classes": "[5,6,7,8,9]", "data.shots": 10}
    step1 = tmp_path / "step1"  # step 1: a new head on the source run's frozen base
    train(small_config(**over, transfer="feature_extraction", **{"transfer.weights": str(source)}), step1)
    trained = torch.load(step1 / "checkpoints" / "best.pt", weights_only=True)["model"]
    # step 2 as it starts: trainer.max_epochs=0 saves the model as set up, before any optimizer step
    start = {**over, "trainer.max_epochs": 0, "transfer": "finetune", "transfer.weights": str(step1)}
    kept, fresh = tmp_path / "kept", tmp_path / "fresh"
    results = train(small_config(**start, **{"transfer.keep_head": "true"}), kept)
    train(small_config(**start), fresh)
    heads = {run: torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"] for run in (kept, fresh)}
    head_keys = [k for k in trained if k.startswith("head.")]
    assert head_keys and all(torch.equal(heads[kept][k], trained[k]) for k in trained)  # head and base, bit for bit
    assert results["transfer"]["weights"]["new"] == []
    changed = [k for k in head_keys if trained[k].is_floating_point() and not torch.equal(heads[fresh][k], trained[k])]
    assert any(k.endswith("weight") for k in changed)  # without keep_head the head starts afresh


def test_keep_head_refuses_a_head_that_does_not_fit_in_one_line(source):
    cfg = small_config(**FAST, **{"data.classes": "[5,6,7]", "data.shots": 10})
    model = build_model(cfg, build_data(cfg, 0).info)
    with pytest.raises(ZooError, match=r"^transfer.keep_head=true but the head in transfer.weights=.* does not fit"):
        strategy("finetune", weights=str(source), keep_head=True).setup(model)
    with pytest.raises(ZooError) as refused:
        strategy("frozen", weights=str(source), keep_head=True).setup(model)
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(r"2 head tensor\(s\) not loaded, first head\.\S+bias, head\.\S+weight;", message)


@pytest.mark.parametrize("name", ["frozen", "feature_extraction", "finetune"])
def test_keep_head_loads_the_source_head_into_every_strategy_that_freezes(source, name):
    cfg = small_config(**FAST, **{"data.classes": "[0,1,2,3,4]", "data.shots": 10})
    model = build_model(cfg, build_data(cfg, 0).info)
    strategy(name, weights=str(source), keep_head=True).setup(model)
    src = torch.load(source / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(v, src[f"head.{k}"]) for k, v in model.head.state_dict().items())
    assert not any(p.requires_grad for p in model.backbone.parameters())  # the head's phase comes first


def test_the_default_source_is_the_architectures_own_weights():
    for name in ("pretrained", "feature_extraction", "frozen", "finetune"):
        assert registry.get("transfer", name).defaults()["weights"] == "pretrained"
    model, _, _ = target_model()  # model=cnn publishes no weights: one line saying what to give instead
    with pytest.raises(ZooError, match=r"^transfer.weights=pretrained: .* has no published weights of its own"):
        strategy("finetune").setup(model)
