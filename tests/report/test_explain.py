"""zoo explain: every interpretation method runs on a trained digits run and on a shapes segmentation and detection
run, writes readable pictures and a summary; and the sanity checks a method must pass to be trusted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import assert_one_line_error, run_zoo, small_config
from zoo.data import DataInfo, channel_stats
from zoo.model import build_model
from zoo.plugin import registry
from zoo.report.explain import Subject, explain
from zoo.train.engine import train, train_step
from zoo.train.experiment import make_optimizer
from zoo_plugins.interpretation.attribution import GradCAM, Saliency

METHODS = ("filters", "feature_maps", "saliency", "gradcam", "occlusion", "embeddings")


def _png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_each_method_explains_the_digits_run(digits_run, tmp_path, method):
    params = {"max_images": 100} if method == "embeddings" else {}
    record = explain(method, params, str(digits_run), None, 3, str(tmp_path / "out"))
    pictures = [f for f in record["files"] if f.endswith(".png")]
    assert pictures and all(min(_png(p)) >= 200 for p in pictures)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["method"] == method and summary["images"] == ["test0000", "test0001", "test0002"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # built aside, moved in whole


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("seg")
    cfg = small_config(
        **{
            "data": "shapes",
            "data.num_images": 24,
            "data.size": 32,
            "head": "unet",
            "model.width": 8,
            "model.depth": 2,
            "aug": "none",
            "trainer.max_epochs": 1,
            "trainer.progress": "false",
        }
    )
    train(cfg, run)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion", "feature_maps", "filters", "embeddings"])
def test_segmentation_is_explained_per_class(segmentation_run, tmp_path, method):
    params = {"split": "train"} if method == "embeddings" else {}
    record = explain(method, params, str(segmentation_run), None, 2, str(tmp_path / "out"))
    assert all(min(_png(f)) >= 200 for f in record["files"] if f.endswith(".png"))
    if method in ("gradcam", "saliency", "occlusion"):
        assert record["targets"] == [["background", "circle", "square", "triangle"]] * 2  # one map per class


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    """A small shapes detection run whose model, one epoch in, keeps low-scoring boxes (score_threshold 0.001)."""
    run = tmp_path_factory.mktemp("det")
    cfg = small_config(
        **{
            "data": "shapes",
            "data.task": "detection",
            "data.num_images": 24,
            "data.size": 32,
            "head": "detection",
            "head.width": 8,
            "head.tower_depth": 1,
            "head.score_threshold": 0.001,
            "head.max_detections": 4,
            "head.pre_nms_topk": 32,
            "model.width": 8,
            "model.depth": 3,
            "aug": "none",
            "trainer.max_epochs": 1,
            "trainer.batch_size": 8,
            "trainer.progress": "false",
        }
    )
    train(cfg, run)
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,params",
    [
        ("gradcam", {}),
        ("gradcam", {"method": "gradcam++", "boxes": 2}),
        ("saliency", {"method": "vanilla"}),
        ("occlusion", {"window": 16, "stride": 8, "boxes": 1}),
        ("feature_maps", {}),
        ("filters", {}),
        ("embeddings", {"split": "train"}),
    ],
    ids=["gradcam", "gradcam++", "saliency", "occlusion", "feature_maps", "filters", "embeddings"],
)
def test_detection_is_explained_per_detected_box(detection_run, tmp_path, method, params):
    record = explain(method, params, str(detection_run), None, 2, str(tmp_path / "out"))
    assert all(min(_png(f)) >= 200 for f in record["files"] if f.endswith(".png"))
    if method in ("gradcam", "saliency", "occlusion"):
        boxes = params.get("boxes", 3)
        assert [len(d) for d in record["detections"]] == [boxes, boxes]  # every image keeps boxes at threshold 0.001
        assert {"box", "label", "score", "index"} <= set(record["detections"][0][0])


def test_a_box_score_at_the_image_itself_is_the_detection_score(detection_run):
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint
    from zoo_plugins.interpretation.attribution import box_scores, detections

    model, _ = model_from_checkpoint(load_checkpoint(detection_run))
    x = torch.rand(1, 3, 32, 32)
    found = detections(model.eval(), x, 3)[0]
    with torch.no_grad():
        scores = box_scores(model, found)(x.repeat(2, 1, 1, 1))
    assert np.allclose(scores.numpy(), [[d["score"] for d in found]] * 2, atol=1e-6)


def test_an_exception_inside_a_method_is_one_line_naming_it_and_leaves_nothing(digits_run, tmp_path, monkeypatch):
    from zoo.errors import ZooError
    from zoo_plugins.interpretation.inspection import Filters

    def broken(self, subject, output):
        (output / "half.png").write_bytes(b"half-written")
        raise RuntimeError("out of ink")

    monkeypatch.setattr(Filters, "explain", broken)
    with pytest.raises(ZooError, match=r"^interpretation 'filters' of package 'zoo' raised RuntimeError: out of ink"):
        explain("filters", {}, str(digits_run), None, 2, str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


def test_a_method_refuses_a_task_it_cannot_explain(tmp_path):
    from zoo.errors import ZooError

    run = tmp_path / "regression"  # untrained weights, saved as they are: what a refusal needs
    overrides = {"data": "shapes", "data.task": "regression", "data.num_images": 12, "head": "regression"}
    train(small_config(**overrides, **{"model.width": 4, "trainer.max_epochs": 0, "trainer.progress": "false"}), run)
    with pytest.raises(ZooError, match="zoo explain embeddings does not explain regression models; it explains"):
        explain("embeddings", {}, str(run), None, 2, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cli_writes_pictures_and_refuses_bad_options_in_one_line(digits_run, tmp_path, capsys):
    from zoo.cli import main

    proc = run_zoo("explain", "gradcam", f"run={digits_run}", f"output={tmp_path / 'cam'}", "samples=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["method"] == "gradcam" and (tmp_path / "cam" / "gradcam.png").is_file()
    bad = tmp_path / "bad"
    assert_one_line_error(run_zoo("explain", "gradcm", f"run={digits_run}", f"output={bad}"), "did you mean 'gradcam'")
    for args, fragment in (
        (["saliency", "method=smooth"], "explain.saliency.method='smooth' is not one of"),
        (["gradcam", "layer=backbone.nope"], "unknown layer for explain.gradcam.layer 'backbone.nope'"),
        (["occlusion", "window=0"], "explain.occlusion.window=0 must be at least 1"),
        (["filters", "samples=0"], "samples=0 must be at least 1"),
    ):
        capsys.readouterr()
        assert main(["explain", args[0], f"run={digits_run}", f"output={bad}", *args[1:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
    assert not bad.exists()


# ---- sanity checks: a method that fails these explains nothing -------------------------------------------------


def _marked(n: int, size: int = 32, patch: int = 8, seed: int = 0):
    """Noise images whose class is decided by one marked patch alone (a vertical or a horizontal bar in it),
    at a random place; and the patch's region (with a 2-pixel margin): where the answer is."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 0.2
    y = torch.randint(0, 2, (n,), generator=g)
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = (int(v) for v in torch.randint(0, size - patch, (2,), generator=g))
        bar = torch.zeros(patch, patch)
        if y[i] == 0:
            bar[:, patch // 2 - 1 : patch // 2 + 1] = 1.0
        else:
            bar[patch // 2 - 1 : patch // 2 + 1, :] = 1.0
        x[i, 0, r : r + patch, c : c + patch] = torch.maximum(x[i, 0, r : r + patch, c : c + patch], bar)
        regions[i, max(0, r - 2) : r + patch + 2, max(0, c - 2) : c + patch + 2] = True
    return x, y, regions.numpy()


@pytest.fixture(scope="module")
def marked_model():
    torch.manual_seed(0)
    x, y, regions = _marked(560)
    info = DataInfo("classification", ("vertical", "horizontal"), 1, (32, 32), *channel_stats(x[:500]))
    cfg = {
        "data": {"name": "digits"},
        "model": {"name": "cnn", "width": 16, "depth": 3},
        "head": {"name": "classification"},
    }
    model = build_model(cfg, info)
    tcfg = {"lr": 3e-3, "weight_decay": 1e-4, "optimizer": "adamw", "momentum": 0.9, "l1": 0, "grad_clip": 0}
    optimizer = make_optimizer(model, registry.get("transfer", "scratch").build({}, {}), tcfg)
    for _ in range(6):
        model.train()
        for idx in torch.randperm(500).split(32):
            train_step(model, x[idx], y[idx], optimizer, tcfg, [], False, None, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        assert (model(x[500:]).argmax(1) == y[500:]).float().mean() >= 0.95  # it learned where to look
    return model, info, cfg, x[500:], regions[500:]


def _mass_inside(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    m = np.clip(maps, 0, None)
    return (m * regions).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1e-12)


@pytest.mark.slow
def test_attributions_concentrate_on_the_region_that_decides_the_class(marked_model):
    model, info, cfg, x, regions = marked_model
    subject = Subject(model, info, cfg, x[:40], [str(i) for i in range(40)])
    cam = GradCAM("backbone.blocks.1.0.0", None).maps(subject)[0][:, 0]  # an 8x8 map; the last conv is 4x4
    plus = GradCAM("backbone.blocks.1.0.0", None, "gradcam++").maps(subject)[0][:, 0]
    ig = Saliency("integrated_gradients", 16, 0.15, 32, None).maps(subject)[0][:, 0]
    assert _mass_inside(cam, regions[:40]).mean() >= 0.7  # the region is 14% of the image
    assert _mass_inside(plus, regions[:40]).mean() >= 0.7
    assert _mass_inside(ig, regions[:40]).mean() >= 0.7


def test_saliency_changes_when_the_weights_are_randomized(marked_model):
    from scipy.stats import spearmanr

    model, info, cfg, x, _ = marked_model
    subject = Subject(model, info, cfg, x[:12], [str(i) for i in range(12)])
    trained = Saliency("integrated_gradients", 16, 0.15, 32, 0).maps(subject)[0][:, 0]
    torch.manual_seed(1)
    random_model = build_model(cfg, info).eval()  # the same architecture, weights never trained
    randomized = Saliency("integrated_gradients", 16, 0.15, 32, 0).maps(Subject(random_model, info, cfg, x[:12], []))[
        0
    ][:, 0]
    rho = [spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(trained, randomized)]
    assert np.mean(rho) < 0.5, rho


@pytest.mark.slow
def test_embeddings_of_the_trained_digits_model_separate_classes(tmp_path):
    run = tmp_path / "digits"
    train(small_config(**{"trainer.max_epochs": 8, "trainer.progress": "false"}), run)
    record = explain("embeddings", {"split": "test"}, str(run), None, 4, str(tmp_path / "out"))
    assert record["knn_accuracy"]["tsne"] >= 0.9 and record["knn_accuracy"]["pca"] > 0.3


# ---- embeddings from any layer ------------------------------------------------------------------------------


def _digits_cnn():
    info = DataInfo("classification", tuple("0123456789"), 1, (32, 32), (0.5,), (0.25,))
    cfg = {
        "data": {"name": "digits"},
        "model": {"name": "cnn", "width": 8, "depth": 3},
        "head": {"name": "classification"},
    }
    torch.manual_seed(0)
    return build_model(cfg, info).eval(), info, cfg


def test_embeddings_from_a_named_layer_are_its_output_pooled():
    from zoo_plugins.interpretation.embeddings import embed

    model, _, _ = _digits_cnn()
    x = torch.rand(5, 1, 32, 32)
    seen = []
    model.backbone.blocks[1].register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        logits = model(x)
    expected = seen[0].mean((2, 3)).numpy()  # (5, 16, 8, 8) averaged over its pixels
    assert np.allclose(embed(model, x, "backbone.blocks.1"), expected, atol=1e-6)
    assert np.allclose(embed(model, x, "head.classifier.1"), logits.numpy(), atol=1e-5)  # a vector as it is
    default = embed(model, x)  # penultimate, as before: what enters the last linear layer
    assert default.shape == (5, model.head.classifier[1].in_features)


@pytest.mark.parametrize(
    "layer,fragment",
    [
        (
            "backbone.block.1",
            "unknown layer for explain.embeddings.layer 'backbone.block.1'; did you mean 'backbone.blocks.1'",
        ),
        ("backbone", "explain.embeddings.layer=backbone gives a list, not a batch of features"),
        ("", "unknown layer for explain.embeddings.layer ''"),
    ],
)
def test_a_bad_embedding_layer_is_one_line(layer, fragment):
    from zoo.errors import ZooError
    from zoo_plugins.interpretation.embeddings import embed

    model, _, _ = _digits_cnn()
    with pytest.raises(ZooError) as e:
        embed(model, torch.rand(2, 1, 32, 32), layer)
    assert str(e.value).startswith(fragment) and "\n" not in str(e.value), str(e.value)


@pytest.mark.slow
def test_the_digits_runs_embeddings_come_from_a_middle_layer(digits_run, tmp_path):
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(digits_run))
    params = {"layer": "backbone.blocks.1", "max_images": 60}
    record = explain("embeddings", params, str(digits_run), None, 2, str(tmp_path / "out"))
    assert record["layer"] == "backbone.blocks.1" and record["points"] == 60
    assert record["dimensions"] == model.backbone.blocks[1][0][0].out_channels  # that stage's channels, pooled


# ---- zoo list layers: the names layer= takes ----------------------------------------------------------------


@pytest.mark.slow
def test_zoo_list_layers_names_every_module_with_its_type_and_output_shape(tiny_run, capsys):
    from zoo.cli import main
    from zoo.report.explain import layers
    from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

    rows = layers(str(tiny_run))
    model, _ = model_from_checkpoint(load_checkpoint(tiny_run))
    assert [r[0] for r in rows] == [n for n, _ in model.named_modules() if n]
    found = {name: (kind, shape) for name, kind, shape in rows}
    width = model.backbone.blocks[0][0][0].out_channels
    assert found["backbone.blocks.0.0.0"] == ("Conv2d", f"{width}x32x32")  # digits at 32x32, size kept
    assert found["backbone.blocks.0"][1] == f"{width}x16x16"  # after the pool
    assert found["head.classifier.1"] == ("Linear", "3")  # three classes
    assert found["backbone"][1].startswith(f"[{width}x16x16, ")  # the feature maps, one per stage
    assert main(["list", "layers", f"run={tiny_run}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["layer", "type", "output", "(one", "image)"] and len(out) == len(rows) + 1
    assert out[1 + [r[0] for r in rows].index("head.classifier.1")].split() == ["head.classifier.1", "Linear", "3"]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["layers"], "zoo list layers needs one of run=DIR or checkpoint=FILE"),
        (["layers", "run=/nonexistent/run"], "/nonexistent/run"),
        (["layers", "rn=x"], "unknown argument for zoo list 'rn'; did you mean 'run'?"),
        (["model", "run=x"], "zoo list model run=x: run= and checkpoint= go with layers only"),
    ],
)
def test_zoo_list_layers_refuses_bad_input_in_one_line(capsys, args, fragment):
    from zoo.cli import main

    assert main(["list", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
