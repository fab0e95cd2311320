"""data=torchvision reads each standard set from small fake copies written here in the set's own on-disk
format (idx files, pickled batches, .mat files, annotation lists); data=dogs_vs_cats reads Kaggle's layout.
Nothing is downloaded."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.errors import ZooError
from zoo.plugin import registry


def build(name: str, **params):
    return registry.get("dataset", name).build({"seed": 0}, params, where="data")


@pytest.fixture
def any_md5(monkeypatch):
    """The fake copies have the real layout but not the real bytes: accept any checksum (torchvision checks
    CIFAR's and Flowers-102's files against the md5 of the published ones)."""
    import torchvision.datasets.utils

    monkeypatch.setattr(torchvision.datasets.utils, "check_md5", lambda *args, **kwargs: True)


def _jpg(path, rng, size=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(path)


# ---- writers, one per on-disk format ------------------------------------------------------------------------


def write_mnist(root, name: str, per_class: dict[str, int]) -> dict[str, np.ndarray]:
    """ROOT/<name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz: big-endian idx headers, uint8 data."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng, images = np.random.default_rng(0), {}
    for split, n in per_class.items():
        labels = np.repeat(np.arange(10, dtype=np.uint8), n)
        pixels = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        with gzip.open(raw / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, len(labels), 28, 28) + pixels.tobytes())
        with gzip.open(raw / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
        images[split] = pixels
    return images


def write_cifar(root, classes: int, train_per_class: int, test_per_class: int) -> list[str]:
    """cifar-10-batches-py/ (data_batch_1-5, test_batch, batches.meta) or cifar-100-python/ (train, test, meta):
    pickled dicts of (N, 3072) uint8 rows and label lists."""
    rng = np.random.default_rng(0)
    ten = classes == 10
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True)
    key = "labels" if ten else "fine_labels"
    names = [f"class {i}" for i in range(classes)]

    def batch(labels):
        return {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), key: list(labels)}

    train = np.repeat(np.arange(classes), train_per_class)
    test = np.repeat(np.arange(classes), test_per_class)
    files = {"test_batch" if ten else "test": batch(test)}
    if ten:
        files.update({f"data_batch_{i + 1}": batch(part) for i, part in enumerate(np.array_split(train, 5))})
        files["batches.meta"] = {"label_names": names}
    else:
        files.update({"train": batch(train), "meta": {"fine_label_names": names}})
    for name, content in files.items():
        with open(folder / name, "wb") as f:
            pickle.dump(content, f)
    return names


def write_flowers(root, splits: dict[str, list[int]]):
    """flowers-102/: jpg/image_00001.jpg..., imagelabels.mat (1-based class per image), setid.mat (1-based image
    ids of trnid, valid, tstid)."""
    from scipy.io import savemat

    base, rng = root / "flowers-102", np.random.default_rng(0)
    labels, ids, next_id = [], {}, 1
    for split, classes in splits.items():
        ids[split] = []
        for c in classes:
            _jpg(base / "jpg" / f"image_{next_id:05d}.jpg", rng)
            labels.append(c + 1)
            ids[split].append(next_id)
            next_id += 1
    savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(base / "setid.mat", {k: np.array([v]) for k, v in ids.items()})


PET_BREEDS = [("Abyssinian", 1), ("american_bulldog", 2), ("Bengal", 1)]  # (image name prefix, species)


def write_pets(root, trainval_per_class: int, test_per_class: int):
    """oxford-iiit-pet/: images/<Breed>_<n>.jpg; annotations/list.txt, trainval.txt, test.txt, whose lines are
    `image class-id species breed-id`, 1-based."""
    base, rng = root / "oxford-iiit-pet", np.random.default_rng(0)
    (base / "annotations").mkdir(parents=True)
    lines, n = {"trainval": [], "test": []}, 1
    for split, count in (("trainval", trainval_per_class), ("test", test_per_class)):
        for class_id, (breed, species) in enumerate(PET_BREEDS, 1):
            for _ in range(count):
                _jpg(base / "images" / f"{breed}_{n}.jpg", rng)
                lines[split].append(f"{breed}_{n} {class_id} {species} {class_id}")
                n += 1
    for split, rows in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    header = "#Image CLASS-ID SPECIES BREED ID\n"
    (base / "annotations" / "list.txt").write_text(header + "\n".join(lines["trainval"] + lines["test"]) + "\n")


# ---- the plugin reads each ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_mnist_sets_read_their_idx_files(tmp_path, name):
    import torchvision.datasets as tvd

    images = write_mnist(tmp_path, name, {"train": 4, "t10k": 2})
    b = build("torchvision", dataset=name, root=str(tmp_path), val_fraction=0.25)
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, 20)
    assert b.info.classes == tuple(getattr(tvd, name).classes) and len(b.info.classes) == 10
    assert b.info.channels == 1 and b.info.size == (28, 28)
    x, y = b.test[0]
    assert x.shape == (1, 28, 28) and torch.equal(x[0], torch.from_numpy(images["t10k"][0]).float() / 255) and y == 0
    assert sorted(int(b.val[i][1]) for i in range(len(b.val))) == list(range(10))  # stratified: one per class
    assert not set(b.train.indices) & set(b.val.indices)
    rgb = build("torchvision", dataset=name, root=str(tmp_path), val_fraction=0.25, size=32, channels=3)
    assert rgb.train[0][0].shape == (3, 32, 32) and len(rgb.info.mean) == 3


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_reads_its_pickled_batches(tmp_path, any_md5, classes):
    names = write_cifar(tmp_path, classes, train_per_class=4, test_per_class=1)
    name = f"CIFAR{classes}"
    b = build("torchvision", dataset=name, root=str(tmp_path), val_fraction=0.25)
    assert (len(b.train), len(b.val), len(b.test)) == (3 * classes, classes, classes)
    assert b.info.classes == tuple(names) and b.info.channels == 3 and b.info.size == (32, 32)
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1 and 0 <= int(y) < classes
    assert len(b.info.mean) == 3 and all(s > 0 for s in b.info.std)
    again = build("torchvision", dataset=name, root=str(tmp_path), val_fraction=0.25)
    assert again.val.indices == b.val.indices  # the carved val split is fixed by split_seed
    other = build("torchvision", dataset=name, root=str(tmp_path), val_fraction=0.25, split_seed=1)
    assert other.val.indices != b.val.indices


def test_flowers102_keeps_its_own_three_splits_and_names(tmp_path, any_md5):
    import torchvision.datasets as tvd

    write_flowers(tmp_path, {"trnid": [0, 0, 1, 1, 2], "valid": [0, 1, 2], "tstid": [0, 1, 2, 2]})
    b = build("torchvision", dataset="Flowers102", root=str(tmp_path), size=16)
    assert (len(b.train), len(b.val), len(b.test)) == (5, 3, 4)
    assert b.info.classes == tuple(tvd.Flowers102.classes) and len(b.info.classes) == 102
    assert b.info.classes[0] == "pink primrose"
    assert [int(b.test[i][1]) for i in range(4)] == [0, 1, 2, 2]
    assert b.train[0][0].shape == (3, 16, 16) and b.info.size == (16, 16)


def test_oxford_pets_reads_its_annotation_lists(tmp_path):
    write_pets(tmp_path, trainval_per_class=4, test_per_class=2)
    b = build("torchvision", dataset="OxfordIIITPet", root=str(tmp_path), size=16, val_fraction=0.25)
    assert (len(b.train), len(b.val), len(b.test)) == (9, 3, 6)
    assert b.info.classes == ("Abyssinian", "American Bulldog", "Bengal")
    assert sorted(int(b.test[i][1]) for i in range(6)) == [0, 0, 1, 1, 2, 2]
    gray = build("torchvision", dataset="OxfordIIITPet", root=str(tmp_path), size=16, channels=1, val_fraction=0.25)
    assert gray.train[0][0].shape == (1, 16, 16)


@pytest.mark.parametrize(
    "name,layout",
    [
        ("MNIST", "MNIST/raw/"),
        ("FashionMNIST", "FashionMNIST/raw/"),
        ("CIFAR10", "cifar-10-batches-py/"),
        ("CIFAR100", "cifar-100-python/"),
        ("Flowers102", "flowers-102/"),
        ("OxfordIIITPet", "oxford-iiit-pet/"),
    ],
)
def test_missing_files_without_download_is_one_line(tmp_path, name, layout):
    for root in (tmp_path, tmp_path / "absent"):
        with pytest.raises(ZooError) as e:
            build("torchvision", dataset=name, root=str(root))
        message = str(e.value)
        assert message.startswith(f"data.root={root}: no {name} files there") and "\n" not in message
        assert "download them with data.download=true (needs the internet)" in message and layout in message


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
    """download=true on a machine that cannot reach the files (simulated: nothing goes out)."""
    import urllib.error

    import torchvision.datasets as tvd

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(ZooError, match=r"^data.download=true: cannot download CIFAR10 to .*name resolution") as e:
        build("torchvision", dataset="CIFAR10", root=str(tmp_path), download=True)
    assert "\n" not in str(e.value)


def test_unknown_set_lists_the_choices(tmp_path):
    with pytest.raises(ZooError, match=r"data.dataset='SVHN' is not one of: MNIST, FashionMNIST"):
        build("torchvision", dataset="SVHN", root=str(tmp_path))


# ---- Kaggle's Dogs vs. Cats ---------------------------------------------------------------------------------


def test_dogs_vs_cats_reads_class_names_from_file_names(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        _jpg(tmp_path / "train" / f"cat.{i}.jpg", rng)
        _jpg(tmp_path / "train" / f"dog.{i + 100}.jpg", rng)
    _jpg(tmp_path / "test1" / "1.jpg", rng)  # Kaggle's unlabelled test images are not read
    b = build("dogs_vs_cats", root=str(tmp_path), size=16, val_fraction=0.2, test_fraction=0.2)
    assert b.info.classes == ("cat", "dog")
    assert (len(b.train), len(b.val), len(b.test)) == (12, 4, 4)
    assert sorted(int(b.test[i][1]) for i in range(4)) == [0, 0, 1, 1]  # stratified
    assert all(f.parent.name == "train" for f in b.train.files)
    assert all(b.train.labels[i] == ("dog" in b.train.files[i].name) for i in range(12))
    direct = build("dogs_vs_cats", root=str(tmp_path / "train"), size=16)  # ROOT may be train/ itself
    assert len(direct.train) + len(direct.val) + len(direct.test) == 20
    _jpg(tmp_path / "train" / "7.jpg", rng)
    with pytest.raises(ZooError, match=r"7.jpg has no class in its name; expected <class>.<n>.jpg"):
        build("dogs_vs_cats", root=str(tmp_path))
