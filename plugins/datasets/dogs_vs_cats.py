"""Dogs vs. Cats, in the two layouts people have it in: the labs' lab-sized split (Google's
`cats_and_dogs_filtered.zip`: train/{cats,dogs} 1000 each, validation/{cats,dogs} 500 each), downloaded into
data.root when it is not there, and Kaggle's full set (train/cat.0.jpg, train/dog.0.jpg, ...).

Both are read by the folder reader's code (zoo_plugins.datasets.folder): class folders for the lab's split,
class names in file names for Kaggle's.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from zoo import Range, register
from zoo.data import DataBundle, DataInfo
from zoo.errors import ZooError, make_folder
from zoo_plugins._shared import (
    IMAGE_EXTENSIONS,
    ClassFraction,
    PerClass,
    SubsetClasses,
    chosen_classes,
    sampled_stats,
    split_indices,
    take_subset,
)
from zoo_plugins.datasets.folder import ImageFiles, scan

URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
ARCHIVE = Path(urlparse(URL).path).name  # cats_and_dogs_filtered.zip
FOLDER = ARCHIVE.removesuffix(".zip")  # what it unpacks into: train/ and validation/, each with cats/ and dogs/


def reachable(url: str = URL, timeout: float = 3.0) -> bool:
    """Can this machine open a connection to the server of `url`? (A few seconds at most.)"""
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def scan_named(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted) and every image file in `folder` named <class>.<anything> (cat.123.jpg)."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ZooError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    unnamed = next((f.name for f in files if "." not in f.stem), None)
    if unnamed is not None:
        raise ZooError(f"{folder / unnamed} has no class in its name; expected <class>.<n>.jpg, e.g. cat.123.jpg")
    names = [f.stem.split(".")[0] for f in files]
    classes = sorted(set(names))
    if len(classes) < 2:
        raise ZooError(f"{folder} needs images of at least two classes (<class>.<n>.jpg); found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, files, [index[n] for n in names]


def lab_split(base: Path) -> Path | None:
    """The folder holding the lab's train/ and validation/ class folders: ROOT/cats_and_dogs_filtered or ROOT."""
    return next((d for d in (base / FOLDER, base) if (d / "train").is_dir() and (d / "validation").is_dir()), None)


def kaggle_folder(base: Path) -> Path | None:
    """The folder of Kaggle's named images (<class>.<n>.jpg): ROOT/train or ROOT; None when it holds no images."""
    folder = base / "train" if (base / "train").is_dir() else base
    if folder.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir()):
        return folder
    return None


def fetch(base: Path, root: str, download: bool) -> Path:
    """Unpack the lab's archive into ROOT (a copy already in ROOT, or downloaded there); one line when it cannot
    be had: what to fetch and where to unpack it."""
    from torchvision.datasets.utils import download_url, extract_archive

    where = f"put {ARCHIVE} ({URL}) into {base} or unpack it there (giving {base / FOLDER}/train/cats/...)"
    if not (base / ARCHIVE).is_file():
        if not download:
            raise ZooError(f"data.root={root}: no Dogs vs. Cats images there and data.download=false; {where}")
        if not reachable():
            raise ZooError(f"data.root={root}: no Dogs vs. Cats images there and {urlparse(URL).hostname} cannot be "
                           f"reached to download them; {where}")  # fmt: skip
        try:
            download_url(URL, str(make_folder(base)), ARCHIVE)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ZooError(f"data.root={root}: cannot download {URL}: {first}; {where}") from None
    try:
        extract_archive(str(base / ARCHIVE), str(base))
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ZooError(f"data.root={root}: cannot unpack {base / ARCHIVE}: {first}; {where}") from None
    found = lab_split(base)
    if found is None:
        raise ZooError(f"data.root={root}: {ARCHIVE} did not hold {FOLDER}/train and {FOLDER}/validation; {where}")
    return found


@register.dataset("dogs_vs_cats")
def dogs_vs_cats(
    seed: int,
    root: str = "~/data",
    download: bool = True,
    size: Annotated[int, Range(8)] = 64,
    channels: Literal[1, 3] = 3,
    val_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    test_fraction: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.15,
    split_seed: int = 0,
    stats_samples: int = 256,
    classes: SubsetClasses = None,
    max_per_class: PerClass = None,
    fraction: ClassFraction = None,
) -> DataBundle:
    """Dogs vs. Cats: the labs' 2000/1000 split (downloaded into ROOT), or Kaggle's ROOT/train/cat.0.jpg, ...

    The lab's split (ROOT/cats_and_dogs_filtered/ or ROOT with train/ and validation/): train/ trains, and
    test_fraction of validation/ (stratified, split_seed) is held out as the test split; the rest validates.
    Kaggle's images (its test1/ has no labels): val and test carved out of train/ by their fractions.
    Neither in ROOT: Google's cats_and_dogs_filtered.zip is downloaded there (download=false: refused).
    classes, max_per_class and fraction (of each class, seeded by split_seed) cut each folder before it is split:
    data=dogs_vs_cats_lab takes Kaggle's 25,000 down to the labs' 2,000/1,000/1,000.
    """
    base = Path(root).expanduser()
    hw = (size, size)
    lab = lab_split(base) if base.is_dir() else None
    named = kaggle_folder(base) if lab is None and base.is_dir() else None
    if lab is None and named is None:
        lab = fetch(base, root, download)

    def cut(files, labels):
        return take_subset(files, labels, chosen, max_per_class, fraction, split_seed)

    if lab is not None:
        every, files, labels = scan(lab / "train")
        _, held_files, held = scan(lab / "validation", every)
        chosen = chosen_classes(every, classes)
        (files, labels), (held_files, held) = cut(files, labels), cut(held_files, held)
        val, _, test = split_indices(len(held), 0.0, test_fraction, split_seed, labels=held)
        parts = [(files, labels), *(([held_files[i] for i in idx], [held[i] for i in idx]) for idx in (val, test))]
    else:
        every, files, labels = scan_named(named)
        chosen = chosen_classes(every, classes)
        files, labels = cut(files, labels)
        tr, va, te = split_indices(len(labels), val_fraction, test_fraction, split_seed, labels=labels)
        parts = [([files[i] for i in idx], [labels[i] for i in idx]) for idx in (tr, va, te)]
    splits = [ImageFiles(f, lab_, channels, hw) for f, lab_ in parts]
    mean, std = sampled_stats(splits[0], stats_samples)
    names = tuple(every[i] for i in chosen)
    return DataBundle(DataInfo("classification", names, channels, hw, mean, std), *splits)
