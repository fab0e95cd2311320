"""Arrays in the runtime (no torch): .npy files read within the pixel limit, checked against what a model of bands
takes, scaled by dtype and resized channel by channel as the float32 form of images is; a model's input read
from metadata that says `color: bands`."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.runtime.decoding import array_input, check_array, float_input, list_images, read_array
from zoo.runtime.inputs import ModelInput


def test_read_array_gives_the_array_and_refuses_what_is_not_one_in_one_line(tmp_path, monkeypatch):
    a = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(read_array(tmp_path / "a.npy"), a)
    (tmp_path / "text.npy").write_text("not an array")
    np.savez(tmp_path / "two.npy", a=a, b=a)  # an archive under a .npy name
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, fragment in [
        ("missing.npy", "does not exist"),
        ("text.npy", "as a .npy array"),
        ("two.npy.npz", "an .npz archive"),
        ("objects.npy", "as a .npy array"),
    ]:
        with pytest.raises(ZooError, match=fragment) as e:
            read_array(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("ZOO_MAX_PIXELS", "19")
    with pytest.raises(ZooError, match="over zoo's limit of 19 pixels"):
        read_array(tmp_path / "a.npy")


@pytest.mark.parametrize(
    "array,dtypes,fragment",
    [
        (np.zeros((8, 8, 4), np.uint8), ("uint8",), "has shape [8, 8, 4]; this model takes H x W x 5 arrays of uint8"),
        (np.zeros((5, 8, 8), np.uint8), ("uint8",), "has shape [5, 8, 8]"),  # C x H x W: the channel axis is last
        (np.zeros((8, 8), np.uint8), ("uint8",), "has shape [8, 8]"),
        (np.zeros((8, 8, 5), np.uint16), ("uint8",), "is uint16; this model takes H x W x 5 arrays of uint8"),
        (np.full((8, 8, 5), -0.1, np.float32), ("float32",), "values outside [0, 1]"),
        (np.full((8, 8, 5), np.nan, np.float32), ("float32",), "not finite"),
    ],
)
def test_check_array_names_what_is_wrong_and_what_is_taken(array, dtypes, fragment):
    with pytest.raises(ZooError) as e:
        check_array(array, 5, dtypes, "input array 'x.npy'")
    assert str(e.value).startswith("input array 'x.npy' ") and fragment in str(e.value)


def test_one_channel_arrays_may_drop_the_channel_axis():
    assert check_array(np.zeros((3, 4), np.uint8), 1, ("uint8",), "a").shape == (3, 4, 1)


def test_array_input_scales_by_dtype_and_resizes_as_the_float_form_of_images_does():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    assert np.array_equal(array_input(rgb, (8, 8)), float_input(rgb, 3, (8, 8)))  # one resize for images and arrays
    wide = rng.integers(0, 65536, size=(6, 7, 5), dtype=np.uint16)
    out = array_input(wide, None)
    assert out.shape == (5, 6, 7) and out.dtype == np.float32
    assert np.allclose(out, wide.transpose(2, 0, 1) / 65535, atol=1e-7)
    floats = rng.random((6, 7, 2))
    assert np.allclose(array_input(floats, None), floats.transpose(2, 0, 1), atol=1e-7)


def test_list_images_lists_the_files_a_model_takes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2, 5), np.uint8))
    (tmp_path / "b.png").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path, (".npy",))] == ["a.npy"]
    assert [p.name for p in list_images(tmp_path)] == ["b.png"]  # image models: as before
    with pytest.raises(ZooError, match=r"no images \(.tif\) under"):
        list_images(tmp_path, (".tif",))


class _Arg:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def _bands_input(form: str) -> ModelInput:
    entry = {"form": form, "channels": 5, "color": "bands", "size": [8, 8], "dynamic": ["batch"]}
    entry |= {"min_size": [1, 1] if form == "uint8" else [8, 8], "max_size": None if form == "uint8" else [8, 8]}
    pre = {"resize": {"size": [8, 8]}, "color_conversion": {"to": "bands"}}
    shape = ["batch", "height", "width", 5] if form == "uint8" else ["batch", 5, 8, 8]
    return ModelInput.read({"input": entry, "preprocessing": pre}, _Arg("image", shape))


def test_a_model_of_bands_takes_arrays_as_stored_in_the_uint8_form():
    m = _bands_input("uint8")
    assert m.bands and m.net_channels == 5 and m.extensions == (".npy",) and m.array_dtypes == ("uint8",)
    assert "uint8 [N, H, W, 5]" in m.shape_text()
    a = np.random.default_rng(0).integers(0, 256, size=(11, 9, 5), dtype=np.uint8)
    item, original = m.prepare(a)
    assert np.array_equal(item, a) and original == (11, 9)  # the graph resizes and scales
    m.check(item[None])
    images = np.random.default_rng(1).random((2, 5, 8, 8)).astype(np.float32)
    assert m.as_input(images).shape == (2, 8, 8, 5)


def test_a_model_of_bands_in_the_float32_form_resizes_and_scales_on_the_client():
    m = _bands_input("float32")
    a = np.random.default_rng(0).integers(0, 65536, size=(11, 9, 5), dtype=np.uint16)
    item, original = m.prepare(a)
    assert item.shape == (5, 8, 8) and original == (11, 9) and item.dtype == np.float32
    m.check(item[None])
    with pytest.raises(ZooError, match="is int8"):
        m.prepare(a.astype(np.int8))
