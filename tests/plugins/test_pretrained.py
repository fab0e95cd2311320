"""transfer=pretrained with head=pretrained_classifier: a timm ImageNet classifier used as it is, with its own
1000 labels and input statistics, from a local copy of timm's weight file (no download), exported and served."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import assert_one_line_error, run_zoo, small_config
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import build_model
from zoo.train.checkpoint import load_checkpoint, load_weights
from zoo.train.engine import train

CLASSES = ("goldfish", "Tabby_Cat", "n01440764")  # a name, another name of a label in other case, a synset id


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A stand-in for timm's hub file of test_resnet: same format, seeded weights."""
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hub") / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet.r160_in1k", pretrained=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir()
        for i in range(6):
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8")).save(root / c / f"{i}.png")
    return root


def config(photos, weights, **more):
    return small_config(
        **{
            "data": "folder",
            "data.root": str(photos),
            "data.size": 48,
            "model": "timm",
            "model.model_name": "test_resnet",
            "head": "pretrained_classifier",
            "transfer": "pretrained",
            "transfer.weights": f"timm:{weights}",
            "trainer.max_epochs": 0,
            "trainer.progress": "false",
            **more,
        }
    )


def timm_reference(weights):
    import timm

    return timm.create_model("test_resnet", pretrained=True, pretrained_cfg_overlay={"file": str(weights)}).eval()


@pytest.fixture(scope="module")
def as_is(photos, weights, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return run, train(config(photos, weights), run)


@pytest.mark.slow
def test_the_classifier_is_timms_own_with_its_labels_and_statistics(as_is, weights):
    run, results = as_is
    ckpt = load_checkpoint(str(run))
    labels = ckpt["info"]["classes"]
    assert len(labels) == 1000 and labels[1] == "goldfish, Carassius auratus" and labels[281].startswith("tabby")
    assert ckpt["info"]["mean"] == [0.5, 0.5, 0.5] and ckpt["info"]["std"] == [
        0.5,
        0.5,
        0.5,
    ]  # test_resnet's, not the data's
    assert results["transfer"]["weights"]["new"] == []  # every tensor came from the weight file
    # metrics are over the dataset's three classes (their columns of the 1000), as for ImageNet subsets
    assert np.array(results["test"]["confusion_matrix"]).shape == (3, 3)

    from zoo.train.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(ckpt)[0].eval()
    x = torch.rand(4, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), timm_reference(weights)((x - 0.5) / 0.5), atol=1e-5)


@pytest.mark.slow
def test_exported_classifier_serves_imagenet_labels(as_is, weights, tmp_path):
    run, _ = as_is
    out = tmp_path / "export"
    # fit=resize: the image whole, as the reference below sees it (the default crops it, as timm's eval transform
    # does: tests/deploy/test_crop.py)
    proc = run_zoo("export", f"checkpoint={run}", f"output={out}", "fit=resize")
    assert proc.returncode == 0, proc.stderr[-2000:]
    from zoo.runtime import Model

    served = Model(out / "model.onnx")
    assert served.metadata["preprocessing"]["resize"]["fit"] == "stretch"
    assert len(served.labels) == 1000 and served.labels[0] == "tench, Tinca tinca"
    x = np.random.default_rng(1).random((2, 3, 48, 48), dtype=np.float32)
    x = np.round(x * 255) / np.float32(255)  # 8-bit pixels: what the default (uint8) export takes
    probs = served.run(served.as_input(x))["probabilities"]
    with torch.no_grad():
        ref = torch.softmax(timm_reference(weights)((torch.from_numpy(x) - 0.5) / 0.5), 1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    cropped = tmp_path / "export-auto"  # by default a classifier used as its weights are takes their centre crop
    assert run_zoo("export", f"checkpoint={run}", f"output={cropped}").returncode == 0
    resize = Model(cropped / "model.onnx").metadata["preprocessing"]["resize"]
    assert resize["fit"] == "crop" and resize["crop"]["crop_pct"] == pytest.approx(0.95)  # timm's resnet cfg


def test_finetuning_the_classifier_trains_on_its_dataset_columns(photos, weights, tmp_path):
    cfg = config(photos, weights, **{"trainer.max_epochs": 1, "trainer.batch_size": 4, "aug": "mix"})
    before = timm_reference(weights).fc.weight.detach().clone()
    train(cfg, tmp_path)
    after = load_checkpoint(str(tmp_path))["model"]["head.tail.fc.weight"]
    changed = (after - before).abs().sum(dim=1) > 0
    assert changed[[1, 281, 0]].all()  # the dataset's labels moved; soft Mixup/CutMix targets went to their columns


def test_labels_match_by_any_name_or_synset_and_refuse_unknown_ones(weights):
    from zoo_plugins.heads.classification import label_columns

    labels = ("tench, Tinca tinca", "goldfish, Carassius auratus", "tabby, tabby cat")
    synsets = ("n01440764", "n01443537", "n02123045")
    assert label_columns(("Goldfish", "tabby_cat", "n01440764"), labels, synsets) == [1, 2, 0]
    with pytest.raises(ZooError, match="unknown pretrained label 'goldfsh'; did you mean 'goldfish'"):
        label_columns(("goldfsh",), labels, synsets)


def _info(classes=("goldfish",)):
    return DataInfo("classification", classes, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)


def test_backbones_without_a_classifier_of_their_own_are_refused():
    cfg = {"data": {"name": "folder"}, "model": {"name": "cnn"}, "head": {"name": "pretrained_classifier"}}
    with pytest.raises(ZooError, match="needs a backbone with a classifier of its own"):
        build_model(cfg, _info())
    cfg["model"] = {"name": "timm", "model_name": "test_resnet", "out_indices": [1, 2]}
    with pytest.raises(ZooError, match="needs the deepest feature level"):
        build_model(cfg, _info())


@pytest.mark.slow
def test_missing_weight_file_is_one_line_and_leaves_no_run(photos, tmp_path):
    args = [
        "train",
        "data=folder",
        f"data.root={photos}",
        "model=timm",
        "model.model_name=test_resnet",
        "head=pretrained_classifier",
        "transfer=pretrained",
        "transfer.weights=timm:/no/such.pth",
        "trainer.max_epochs=0",
    ]
    run = tmp_path / "run"
    assert_one_line_error(run_zoo(*args, f"hydra.run.dir={run}"), "transfer.weights=timm:/no/such.pth: no such file")
    assert not run.exists()
    mine = tmp_path / "mine"  # a folder that holds something of the user's keeps it all
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_one_line_error(run_zoo(*args, f"hydra.run.dir={mine}"), "no such file")
    assert (mine / "notes.txt").read_text() == "keep"


def test_unreachable_hub_fails_at_once_naming_the_offline_route(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from zoo_plugins.architectures import timm_backbones

    monkeypatch.setattr(timm_backbones, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # not in a local cache either
    with pytest.raises(ZooError, match="huggingface.co cannot be reached .* transfer.weights=timm:FILE"):
        timm_backbones.create_pretrained("test_resnet")


def test_pretrained_with_a_new_head_says_what_starts_fresh(weights, caplog):
    from zoo.plugin import registry

    model = build_model(
        {
            "data": {"name": "digits"},
            "model": {"name": "timm", "model_name": "test_resnet"},
            "head": {"name": "classification"},
        },
        DataInfo("classification", tuple("0123"), 1, (32, 32), (0.5,), (0.25,)),
    )
    strategy = registry.get("transfer", "pretrained").build({}, {"weights": f"timm:{weights}"}, where="transfer")
    with caplog.at_level("WARNING", logger="zoo"):
        report = strategy.setup(model)
    assert report["new"] == ["head.classifier.1.bias", "head.classifier.1.weight"]
    assert "2 head tensors have no pretrained value" in caplog.text and "head=pretrained_classifier" in caplog.text
    assert model.normalize.mean.flatten().tolist() == [0.5]  # timm's RGB statistics folded to one channel


def test_a_weight_source_no_backbone_knows_is_read_as_a_checkpoint_and_refused_in_one_line(tmp_path):
    model = build_model(
        {"data": {"name": "digits"}, "model": {"name": "cnn"}, "head": {"name": "classification"}},
        DataInfo("classification", tuple("0123"), 1, (32, 32), (0.5,), (0.25,)),
    )
    with pytest.raises(ZooError, match=r"^transfer.weights='timm' is not a checkpoint file or a run directory$"):
        load_weights(model, "timm", include_head=False)
    timm_model = build_model(
        {
            "data": {"name": "digits"},
            "model": {"name": "timm", "model_name": "test_resnet"},
            "head": {"name": "classification"},
        },
        DataInfo("classification", tuple("0123"), 3, (32, 32), (0.5,) * 3, (0.25,) * 3),
    )
    with pytest.raises(
        ZooError, match=r"'hub' is not a checkpoint file or a run directory; .* also loads: timm, timm:FILE"
    ):
        load_weights(timm_model, "hub", include_head=False)
    with pytest.raises(ZooError, match=r"transfer.weights=timm: names no file"):
        load_weights(timm_model, "timm:", include_head=False)
