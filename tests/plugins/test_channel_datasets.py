"""Datasets of any channel count: data=multiband (generated bands whose class only all the bands tell) and
data=arrays (H x W x C .npy files per class), with per-band statistics and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import small_config
from zoo.data import build_data, channel_stats
from zoo.errors import ZooError
from zoo_plugins.datasets.multiband import band_images


def test_multiband_images_are_8_bit_balanced_repeatable_and_labelled_by_the_bright_band():
    pixels, labels = band_images(5, 16, 200, seed=3)
    assert pixels.shape == (200, 5, 16, 16) and pixels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [40] * 5
    again, same = band_images(5, 16, 200, seed=3)
    assert np.array_equal(again, pixels) and np.array_equal(same, labels)
    assert not np.array_equal(band_images(5, 16, 200, seed=4)[0], pixels)
    # the band with the brightest pixel is the class: a rule that reads every band scores (nearly) all ...
    brightest = pixels.reshape(200, 5, -1).max(axis=2).argmax(axis=1)
    assert (brightest == labels).mean() >= 0.95
    # ... while the first three bands alone cannot tell the bands past them apart: their images look alike there
    rgb = pixels[:, :3].reshape(200, 3, -1).max(axis=2).astype(float)
    assert abs(rgb[labels == 3].mean() - rgb[labels == 4].mean()) < 5


def test_multiband_builds_n_channel_data_with_per_band_statistics():
    bundle = build_data(small_config(data="multiband", **{"data.channels": 7, "data.images": 70}), 0)
    info = bundle.info
    assert info.channels == 7 and info.classes == tuple(f"band{k}" for k in range(7))
    x = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    assert x.shape[1:] == (7, 16, 16) and (info.mean, info.std) == channel_stats(x)


def _write(root, classes=("a", "b"), per_class=4, shape=(10, 12, 4), dtype=np.uint8):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 256, size=shape).astype(dtype) if dtype == np.uint8 else rng.random(shape).astype(dtype)
            np.save(root / c / f"{i}.npy", a)


def _arrays(root, channels=4, **over):
    over = {"data.root": str(root), "data.channels": channels, "data.size": 8, **over}
    return build_data(small_config(data="arrays", **over), 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_arrays_dataset_reads_h_w_c_files_resized_with_per_band_statistics(tmp_path, dtype):
    _write(tmp_path, per_class=10, dtype=dtype)
    bundle = _arrays(tmp_path, **{"data.val_fraction": 0.2, "data.test_fraction": 0.2})
    assert bundle.info.classes == ("a", "b") and bundle.info.channels == 4
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20
    image, label = bundle.train[0]
    assert image.shape == (4, 8, 8) and image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
    x = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    assert (bundle.info.mean, bundle.info.std) == channel_stats(x)


def test_a_wrong_array_is_one_line_naming_the_file(tmp_path):
    _write(tmp_path, per_class=10)
    np.save(tmp_path / "a" / "0.npy", np.zeros((10, 12, 3), np.uint8))  # the first training image: read for stats
    with pytest.raises(ZooError) as e:
        _arrays(tmp_path, **{"data.val_fraction": 0.0, "data.test_fraction": 0.0})
    assert "0.npy" in str(e.value) and "has shape [10, 12, 3]; this model takes H x W x 4 arrays" in str(e.value)


@pytest.mark.parametrize(
    "over,fragment",
    [({"data.channels": 0}, "data.channels=0"), ({"data.root": "/nonexistent/x"}, "folder does not exist")],
)
def test_bad_arrays_settings_are_one_line(tmp_path, over, fragment):
    _write(tmp_path)
    with pytest.raises(ZooError, match=fragment):
        _arrays(tmp_path, **over)
