"""Subsets for every reader: data.classes (names or indices, in the order given, renumbered 0..k-1),
data.max_per_class and data.fraction (of each class), the same files for the same data.split_seed; and the lab
presets (data=dogs_vs_cats_lab, data=flowers_3) compose and cut as they say. Images are generated here."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from tests.plugins.test_standard_datasets import any_md5, write_flowers  # noqa: F401  (a fixture, used by name)
from zoo.data import build_data
from zoo.errors import ZooError
from zoo.plugin import registry


def build(name: str, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


def _jpg(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 10, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def three_classes(tmp_path):
    """ROOT/{ant,bee,cat}/ with 12, 10 and 8 images."""
    for c, n in (("ant", 12), ("bee", 10), ("cat", 8)):
        for i in range(n):
            _jpg(tmp_path / c / f"{c}{i:02d}.jpg", i * 9)
    return tmp_path


def _files(bundle) -> list[str]:
    return sorted(f.name for s in (bundle.train, bundle.val, bundle.test) for f in s.files)


def _counts(bundle) -> Counter:
    return Counter(bundle.info.classes[y] for s in (bundle.train, bundle.val, bundle.test) for y in s.labels)


def test_folder_classes_by_name_and_index_keep_the_order_given(three_classes):
    b = build("folder", root=str(three_classes), classes=["cat", "ant"], size=8)
    assert b.info.classes == ("cat", "ant")
    assert _counts(b) == {"cat": 8, "ant": 12}
    assert all(f.parent.name == b.info.classes[y] for s in (b.train, b.val, b.test) for f, y in zip(s.files, s.labels))
    by_index = build("folder", root=str(three_classes), classes=["2", "0"], size=8)
    assert by_index.info.classes == ("cat", "ant") and _files(by_index) == _files(b)


def test_folder_max_per_class_gives_exact_counts_the_same_files_for_a_seed(three_classes):
    b = build("folder", root=str(three_classes), max_per_class=6, size=8, split_seed=3)
    assert _counts(b) == {"ant": 6, "bee": 6, "cat": 6}
    again = build("folder", root=str(three_classes), max_per_class=6, size=8, split_seed=3)
    assert _files(again) == _files(b)
    other = build("folder", root=str(three_classes), max_per_class=6, size=8, split_seed=4)
    assert _files(other) != _files(b)
    fewer = build("folder", root=str(three_classes), fraction=0.5, size=8, split_seed=3)
    assert _counts(fewer) == {"ant": 6, "bee": 5, "cat": 4}


def test_folder_subset_of_given_splits_cuts_each(three_classes, tmp_path_factory):
    root = tmp_path_factory.mktemp("given")
    for split, n in (("train", 9), ("val", 5), ("test", 4)):
        for c in ("x", "y"):
            for i in range(n):
                _jpg(root / split / c / f"{i}.jpg", i)
    b = build("folder", root=str(root), max_per_class=4, size=8)
    assert (len(b.train), len(b.val), len(b.test)) == (8, 8, 8)


def test_a_class_not_there_is_one_line_naming_the_classes(three_classes):
    with pytest.raises(ZooError, match=r"'dog' is neither a class name nor an index below 3; the classes are ant, bee"):
        build("folder", root=str(three_classes), classes=["ant", "dog"])
    with pytest.raises(ZooError, match="names class 'ant' twice"):
        build("folder", root=str(three_classes), classes=["ant", "0"])
    with pytest.raises(ZooError, match="max_per_class=0 must be"):
        build("folder", root=str(three_classes), max_per_class=0)


def test_digits_max_per_class_and_classes():
    b = build("digits", size=8, classes=[3, 1, 4], max_per_class=30)
    labels = [int(y) for s in (b.train, b.val, b.test) for y in s.targets]
    assert b.info.classes == ("3", "1", "4") and Counter(labels) == {0: 30, 1: 30, 2: 30}
    again = build("digits", size=8, classes=[3, 1, 4], max_per_class=30)
    assert (again.train.images == b.train.images).all()


def _kaggle(root, per_class: int) -> None:
    for c in ("cat", "dog"):
        for i in range(per_class):
            _jpg(root / "train" / f"{c}.{i}.jpg", i % 250)


def test_dogs_vs_cats_lab_preset_composes_and_cuts_kaggle_to_half_half(tmp_path):
    from zoo.train.config import compose, to_plain

    _kaggle(tmp_path, 30)
    cfg = to_plain(compose(["data=dogs_vs_cats_lab", f"data.root={tmp_path}", "data.max_per_class=20", "data.size=8"]))
    b = build_data(cfg, 0)
    assert (len(b.train), len(b.val), len(b.test)) == (20, 10, 10)  # 2,000/1,000/1,000 at max_per_class=2000
    for split in (b.train, b.val, b.test):
        assert Counter(split.labels)[0] == len(split) // 2
    assert to_plain(compose(["data=dogs_vs_cats_lab"]))["data"]["max_per_class"] == 2000


def test_flowers_3_preset_reads_three_classes_in_its_order(tmp_path, any_md5):  # noqa: F811
    from zoo.train.config import compose, to_plain

    daisy, sunflower, rose, other = 48, 53, 73, 0
    write_flowers(tmp_path, {"trnid": [daisy, rose, sunflower, other, rose], "valid": [sunflower, other],
                             "tstid": [rose, daisy, other]})  # fmt: skip
    cfg = to_plain(compose(["data=flowers_3", f"data.root={tmp_path}", "data.size=8"]))
    b = build_data(cfg, 0)
    assert b.info.classes == ("oxeye daisy", "sunflower", "rose")
    assert [int(b.train[i][1]) for i in range(len(b.train))] == [0, 2, 1, 2]
    assert (len(b.val), len(b.test)) == (1, 2)


def test_torchvision_max_per_class_before_val_is_carved(tmp_path):
    from tests.plugins.test_standard_datasets import write_mnist

    write_mnist(tmp_path, "MNIST", {"train": 8, "t10k": 3})
    b = build("torchvision", dataset="MNIST", root=str(tmp_path), classes=["1", "0"], max_per_class=4,
              val_fraction=0.25)  # fmt: skip
    assert b.info.classes == ("1 - one", "0 - zero")
    assert (len(b.train), len(b.val), len(b.test)) == (6, 2, 6)
    assert sorted(b.train.labels[i] for i in b.train.indices + b.val.indices) == [0] * 4 + [1] * 4
