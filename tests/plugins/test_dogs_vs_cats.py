"""data=dogs_vs_cats: the labs' split (Google's cats_and_dogs_filtered.zip) unpacked from ROOT or downloaded into
it, offline in one line; and the labs' presets (experiment=vgg16_transfer, resnet50_transfer, xception_transfer)
compose, and stop in one line before any data is read when their weights cannot be had."""

from __future__ import annotations

import zipfile
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from zoo.errors import ZooError
from zoo.plugin import registry
from zoo_plugins.datasets import dogs_vs_cats as dvc

TRAIN, VALIDATION = 4, 5  # images per class in the test's archive (the real one: 1000 and 500)


def write_archive(path, rng) -> None:
    """A small cats_and_dogs_filtered.zip in the real layout, with tiny JPEGs."""
    with zipfile.ZipFile(path, "w") as z:
        for split, count in (("train", TRAIN), ("validation", VALIDATION)):
            for animal in ("cats", "dogs"):
                for i in range(count):
                    buf = BytesIO()
                    Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, "JPEG")
                    z.writestr(f"cats_and_dogs_filtered/{split}/{animal}/{animal[:-1]}.{i}.jpg", buf.getvalue())


def build(**params):
    return registry.get("dataset", "dogs_vs_cats").build({"seed": 0}, params, where="data")


def test_the_labs_archive_in_root_is_unpacked_and_split_offline(tmp_path, offline):
    write_archive(tmp_path / "cats_and_dogs_filtered.zip", np.random.default_rng(0))
    b = build(root=str(tmp_path), size=16, test_fraction=0.2)
    assert b.info.classes == ("cats", "dogs") and b.info.size == (16, 16)
    assert (len(b.train), len(b.val), len(b.test)) == (2 * TRAIN, 8, 2)  # test carved from validation/
    assert all(f.parts[-3] == "train" for f in b.train.files)
    assert all(f.parts[-3] == "validation" for f in b.val.files + b.test.files)
    assert sorted(b.test.labels) == [0, 1] and set(b.val.files).isdisjoint(b.test.files)  # stratified, apart
    again = build(root=str(tmp_path / "cats_and_dogs_filtered"), size=16, test_fraction=0.2)  # ROOT the folder
    assert [f.name for f in again.test.files] == [f.name for f in b.test.files]
    x, y = b.train[0]
    assert tuple(x.shape) == (3, 16, 16) and int(y) == 0


def test_nothing_there_offline_is_one_line_naming_the_url_and_the_folder(tmp_path, offline):
    root = tmp_path / "data"
    with pytest.raises(ZooError) as e:
        build(root=str(root))
    message = str(e.value)
    assert (
        "\n" not in message
        and dvc.URL in message
        and f"unpack it there (giving {root}/cats_and_dogs_filtered" in message
    )
    assert "cannot be reached" in message and not root.exists()
    with pytest.raises(ZooError, match=r"data.download=false; put cats_and_dogs_filtered.zip"):
        build(root=str(tmp_path), download=False)


def test_online_the_archive_is_downloaded_into_root(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    fetched = []

    def download_url(url, root, filename):  # what torchvision's download writes, without the network
        fetched.append((url, root, filename))
        write_archive(f"{root}/{filename}", np.random.default_rng(1))

    monkeypatch.setattr(dvc, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(tvu, "download_url", download_url)
    b = build(root=str(tmp_path / "data"), size=8)
    assert fetched == [(dvc.URL, str(tmp_path / "data"), "cats_and_dogs_filtered.zip")]
    assert len(b.train) == 2 * TRAIN and (tmp_path / "data" / "cats_and_dogs_filtered" / "validation" / "dogs").is_dir()


def test_kaggles_layout_is_still_read(tmp_path, offline):
    rng = np.random.default_rng(0)
    for i in range(5):
        for animal in ("cat", "dog"):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{animal}.{i}.jpg")
    b = build(root=str(tmp_path), size=8, val_fraction=0.2, test_fraction=0.2)
    assert b.info.classes == ("cat", "dog") and (len(b.train), len(b.val), len(b.test)) == (6, 2, 2)


# ---- the labs' presets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "model", "size"),
    [("vgg16_transfer", "vgg16", 224), ("resnet50_transfer", "resnet50", 224), ("xception_transfer", None, 299)],
)
def test_the_lab_presets_compose(preset, model, size):
    cfg = small_config(experiment=preset)
    assert cfg["data"]["name"] == "dogs_vs_cats" and cfg["data"]["size"] == size
    assert cfg["model"]["name"] == ("torchvision" if model else "timm")
    assert cfg["model"]["model_name"] == (model or "legacy_xception")
    t = cfg["transfer"]
    assert (t["name"], t["weights"], t["head_epochs"], cfg["trainer"]["max_epochs"]) == (
        "finetune",
        "pretrained",
        10,
        20,
    )
    assert cfg["trainer"]["lr"] * t["lr_scale"] == pytest.approx(1e-5)  # fine-tuning at a tenth of the head's rate


def test_a_lab_preset_offline_without_its_weights_stops_before_the_data(tmp_path, offline, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    data = tmp_path / "data"
    proc = zoo_in_process(
        "train", "experiment=xception_transfer", f"data.root={data}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_one_line_error(proc, "legacy_xception")
    assert not data.exists() and not (tmp_path / "run").exists()
