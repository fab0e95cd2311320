"""The transfer protocol's data: generated glyphs whose classes raw pixels cannot separate, pretrain and target
classes disjoint, a few shots per class drawn the same for every strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo import ZooError
from zoo.bench import pixel_floors
from zoo.data import build_data
from zoo.plugin import registry
from zoo_plugins.datasets.glyphs import CLASSES, generate_glyphs, glyph_strokes


def build(seed: int = 0, **params):
    return build_data({"data": {"name": "glyphs", **params}}, seed=seed)


def test_an_image_depends_only_on_its_class_and_index():
    a, la = generate_glyphs([3, 5], 4, size=32)
    b, lb = generate_glyphs([5], 4, size=32)
    assert np.array_equal(a[4:], b) and la.tolist() == [0] * 4 + [1] * 4 and lb.tolist() == [0] * 4
    c, _ = generate_glyphs([5], 4, size=32, generator_seed=1)
    assert not np.array_equal(b, c)  # another draw of the same glyph
    assert a.dtype == np.uint8 and a.shape == (8, 3, 32, 32) and a.std() > 20  # drawn, not blank


def test_every_glyph_is_its_own_shape():
    shapes = {tuple(np.round(np.concatenate(glyph_strokes(0, c)).ravel(), 3)) for c in range(CLASSES)}
    assert len(shapes) == CLASSES
    assert glyph_strokes(0, 7)[0].tolist() == glyph_strokes(0, 7)[0].tolist()
    assert glyph_strokes(1, 7)[0].tolist() != glyph_strokes(0, 7)[0].tolist()


def test_shots_per_class_with_whole_val_and_test():
    data = build(classes=[30, 31, 32], images_per_class=20, shots=4, size=32)
    labels = [int(data.train[i][1]) for i in range(len(data.train))]
    assert sorted(labels) == [0] * 4 + [1] * 4 + [2] * 4
    assert len(data.val) + len(data.test) == 60 - round(60 * 0.55)  # 15% + 30% of 60, stratified
    assert data.info.classes == ("glyph30", "glyph31", "glyph32") and data.info.size == (32, 32)
    image, _ = data.train[0]
    assert image.dtype == torch.float32 and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    again = build(classes=[30, 31, 32], images_per_class=20, shots=4, size=32, seed=5)
    assert torch.equal(
        torch.stack([again.train[i][0] for i in range(12)]), torch.stack([data.train[i][0] for i in range(12)])
    )


@pytest.mark.slow
def test_raw_pixels_cannot_tell_the_target_glyphs_apart():
    """The protocol's premise, at 10 shots on the ten target glyphs: raw-pixel 1-NN and logistic regression stay
    near chance (0.1), far under the 0.55 bar."""
    data = build(classes=list(range(30, 40)), images_per_class=30, shots=10, test_fraction=0.5)
    lines = list(pixel_floors(data.train, data.test))
    scores = [float(line.rsplit(" ", 1)[1]) for line in lines[1:]]
    assert "100 training images" in lines[0] and len(scores) == 2
    assert max(scores) <= 0.3, lines


@pytest.mark.parametrize(
    "params, message",
    [
        ({"classes": [1, 1, 2]}, r"data.classes=\[1, 1, 2\] names a glyph twice"),
        ({"classes": [1, 2], "images_per_class": 5, "shots": 4}, r"data.shots=4 is more than the training split has"),
        ({"classes": [1, 40]}, r"data.classes.*40.*\[0, 39\]"),
    ],
)
def test_glyphs_errors(params, message):
    with pytest.raises(ZooError, match=message):
        build(size=32, **params)


def test_glyphs_is_registered_with_its_schema():
    plugin = registry.get("dataset", "glyphs")
    assert plugin.summary and plugin.module == "zoo_plugins.datasets.glyphs"
    assert registry.get("dataset", "glyphs").defaults()["classes"] == list(range(30))


@pytest.mark.slow
def test_glyphs_trains_from_a_base_and_exports_with_parity(tmp_path):
    """The protocol end to end at a toy scale: a base on two glyphs, feature extraction from it on two others
    (the cache keeps only the deepest map, the one a pooled classifier reads), an export within tolerance."""
    from tests.conftest import small_config, zoo_in_process
    from zoo.train.engine import feature_cache
    from zoo.train.experiment import build_experiment

    tiny = ["data=glyphs", "data.size=32", "data.images_per_class=12", "model.depth=2", "model.width=8"]
    tiny += ["trainer.max_epochs=1", "trainer.progress=false"]
    base = tmp_path / "base"
    proc = zoo_in_process("train", *tiny, "data.classes=[0,1]", f"hydra.run.dir={base}")
    assert proc.returncode == 0, proc.stderr
    target = ["data.classes=[30,31]", "data.shots=3", "transfer=feature_extraction", f"transfer.weights={base}"]
    run = tmp_path / "target"
    proc = zoo_in_process("train", *tiny, *target, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr
    proc = zoo_in_process("export", f"checkpoint={run}", f"output={tmp_path / 'export'}")
    assert proc.returncode == 0, proc.stderr
    card = __import__("json").loads((tmp_path / "export" / "model.json").read_text())
    assert max(card["parity"]["max_abs_diff"].values()) <= card["parity"]["tolerance"]

    exp = build_experiment(small_config(**dict(o.split("=", 1) for o in tiny + target)))
    levels, labels = feature_cache(exp.model, exp.data.train, 8, exp.device)
    assert [f.shape[1] for f in levels] == [0, exp.model.backbone.feature_info[-1].channels] and len(labels) == 6
