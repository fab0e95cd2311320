"""Datasets: digits split and scaling, image folders in both layouts, and their errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.errors import ZooError
from zoo.plugin import registry


def build(name: str, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


@pytest.mark.slow
def test_digits_split_is_stratified_fixed_and_scaled():
    a, b = build("digits"), build("digits", split_seed=0)
    assert (len(a.train), len(a.val), len(a.test)) == (1167, 270, 360)
    assert torch.equal(a.test.images, b.test.images)
    counts = Counter(a.test.targets.tolist())
    total = Counter(a.train.targets.tolist()) + Counter(a.val.targets.tolist()) + counts
    assert all(abs(counts[c] - 0.2 * total[c]) <= 1 for c in total)  # stratified: each class in proportion
    assert a.info.size == (32, 32) and a.info.channels == 1 and a.info.classes == tuple("0123456789")
    assert float(a.train.images.min()) >= 0.0 and float(a.train.images.max()) <= 1.0
    other = build("digits", split_seed=1)
    assert not torch.equal(a.test.images, other.test.images)
    rgb = build("digits", size=48, channels=3)
    assert rgb.train[0][0].shape == (3, 48, 48) and len(rgb.info.mean) == 3


def _tree(root, classes=("cat", "dog"), n=8, ext=".png"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((20, 30, 3)) * 255).astype(np.uint8)).save(root / c / f"{i}{ext}")


def test_folder_split_by_fraction(tmp_path):
    _tree(tmp_path, n=10)
    b = build("folder", root=str(tmp_path), size=32, val_fraction=0.2, test_fraction=0.2)
    assert b.info.classes == ("cat", "dog")
    assert len(b.train) + len(b.val) + len(b.test) == 20
    image, label = b.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label in (0, 1)
    none = build("folder", root=str(tmp_path), size=32, val_fraction=0.2, test_fraction=0.0)
    assert (len(none.train), len(none.val), len(none.test)) == (16, 4, 0)  # a zero fraction: no such split
    with pytest.raises(ZooError, match=r"data.val_fraction=1.0 must be in \[0, 1\)"):
        build("folder", root=str(tmp_path), val_fraction=1.0)


def test_folder_given_splits(tmp_path):
    _tree(tmp_path / "train", n=6)
    _tree(tmp_path / "val", n=2, ext=".jpg")
    _tree(tmp_path / "test", n=3)
    b = build("folder", root=str(tmp_path), size=32, channels=1)
    assert (len(b.train), len(b.val), len(b.test)) == (12, 4, 6)
    assert b.val[0][0].shape == (1, 32, 32)


def test_folder_carves_a_missing_test_split(tmp_path):
    _tree(tmp_path / "train", n=10)
    _tree(tmp_path / "val", n=2)
    b = build("folder", root=str(tmp_path), size=32, test_fraction=0.2)
    assert (len(b.train), len(b.val), len(b.test)) == (16, 4, 4)


def test_folder_errors(tmp_path):
    with pytest.raises(ZooError, match="data.root='/no/such/folder': folder does not exist"):
        build("folder", root="/no/such/folder")
    (tmp_path / "only").mkdir()
    _tree(tmp_path / "one", classes=("cat",))
    with pytest.raises(ZooError, match="needs at least two class subfolders"):
        build("folder", root=str(tmp_path / "one"))
    bad = tmp_path / "bad"
    _tree(bad, n=4)
    (bad / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ZooError, match="cannot read image .*broken.png"):
        b = build("folder", root=str(bad), size=16, val_fraction=0.25, test_fraction=0.25, stats_samples=100)
        (
            [b.train[i] for i in range(len(b.train))]
            + [b.val[i] for i in range(len(b.val))]
            + [b.test[i] for i in range(len(b.test))]
        )


def test_shuffled_split_is_seeded_and_leaves_no_split_empty():
    from zoo_plugins._shared import check_fractions, split_indices

    a = split_indices(20, 0.15, 0.25, seed=0)
    assert [len(x) for x in a] == [12, 3, 5] and sorted(a[0] + a[1] + a[2]) == list(range(20))
    assert split_indices(20, 0.15, 0.25, seed=0) == a and split_indices(20, 0.15, 0.25, seed=1) != a
    assert [len(x) for x in split_indices(5, 0.05, 0.05, seed=0)] == [3, 1, 1]  # a small fraction still gets one
    assert split_indices(10, 0.2, 0.0, seed=0)[2] == []  # zero: an empty split, for splits given separately
    with pytest.raises(ZooError, match="cannot split 2 images into train/val/test"):
        split_indices(2, 0.3, 0.3, seed=0)
    with pytest.raises(ZooError, match="data.val_fraction \\+ data.test_fraction = 1.0 leaves nothing to train on"):
        check_fractions(0.5, 0.5)
    with pytest.raises(ZooError, match=r"data.test_fraction=1.5 must be in \(0, 1\)"):  # declared by the datasets
        build("digits", test_fraction=1.5)


def test_stratified_split_keeps_classes_in_proportion_and_allows_a_zero_fraction():
    from zoo_plugins._shared import split_indices

    labels = [0] * 20 + [1] * 40
    for joint in (False, True):
        train, val, test = split_indices(60, 0.25, 0.25, 0, labels=labels, joint_hold_out=joint)
        assert sorted(train + val + test) == list(range(60))
        assert [sum(labels[i] for i in s) for s in (val, test)] == [10, 10]  # two thirds of each split is class 1
        assert split_indices(60, 0.25, 0.25, 0, labels=labels, joint_hold_out=joint) == (train, val, test)
    assert (
        split_indices(60, 0.25, 0.0, 0, labels=labels)[2] == [] and split_indices(60, 0, 0.5, 0, labels=labels)[1] == []
    )
    with pytest.raises(ZooError, match="cannot split 3 images into train/val/test"):
        split_indices(3, 0.3, 0.3, 0, labels=[0, 1, 2])
    with pytest.raises(ZooError, match="leaves nothing to train on"):
        split_indices(60, 0.5, 0.5, 0, labels=labels)


# ---- the pipeline: what a split in memory holds, what streaming decodes ----------------------------------


def _jpegs(root, n: int, side: int = 64) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("ab"[i % 2])
        d.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((side, side), Image.BILINEAR).save(d / f"{i}.jpg", quality=90)


def test_a_split_in_memory_holds_one_uint8_copy_and_gives_the_streamed_floats(tmp_path):
    from zoo.data import InMemory

    _jpegs(tmp_path, 10, side=16)
    split = build("folder", root=str(tmp_path), size=16, val_fraction=0.2, test_fraction=0.2).train
    cached = InMemory(split)
    assert cached.images.dtype == torch.uint8 and cached.images.shape == (len(split), 3, 16, 16)
    assert cached.listed == [] and InMemory.estimate(split) == len(split) * 3 * 16 * 16  # a byte a value
    for i in range(len(split)):
        image, label = cached[i]
        assert image.dtype == torch.float32 and torch.equal(image, split[i][0]) and int(label) == int(split[i][1])


def test_a_split_in_memory_keeps_floats_that_are_not_whole_255ths_as_they_are():
    from zoo.data import InMemory

    class Floats(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((1, 2, 2), (i * 51 if i < 2 else 0.5) / 255.0), i

    cached = InMemory(Floats())
    assert cached.images is None and [x.dtype for x in cached.listed] == [torch.uint8, torch.uint8, torch.float32]
    assert [float(cached[i][0][0, 0, 0]) * 255 for i in range(3)] == pytest.approx([0, 51, 0.5])


def test_a_large_jpeg_decodes_reduced_to_within_a_pixel_of_the_full_decode(tmp_path):
    from zoo_plugins._shared import read_image

    _jpegs(tmp_path, 1, side=256)
    file = next(tmp_path.rglob("*.jpg"))
    reduced, original = read_image(file, 3, (32, 32))
    with Image.open(file) as im:
        full = torch.from_numpy(np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR))).permute(2, 0, 1)
    assert original == (256, 256) and reduced.shape == (3, 32, 32)
    assert float((reduced * 255 - full.float()).abs().mean()) < 4.0  # the draft's reduced decode, then the exact resize
    with Image.open(file) as im:
        im.draft("RGB", (64, 64))
        assert im.size == (64, 64)  # Pillow reduces it 1/4 in the DCT: what read_image asks for
