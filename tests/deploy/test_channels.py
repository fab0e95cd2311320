"""Any number of input channels, end to end: a 5-band data set (data=multiband, and the same arrays read back by
data=arrays) trains a small cnn, exports in both input forms (color: bands), passes parity, golden vectors and
`zoo verify`, and `zoo predict` on .npy files agrees with PyTorch; bad arrays are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from zoo.data import DataInfo, build_data
from zoo.deploy import schema
from zoo.deploy.export import export, export_model
from zoo.deploy.verify import verify
from zoo.model import build_model
from zoo.runtime import Model
from zoo.train.checkpoint import load_checkpoint, model_from_checkpoint

BANDS = 5
OVERRIDES = {
    "data": "multiband",
    "data.channels": BANDS,
    "data.size": 16,
    "data.images": 200,
    "model.width": 8,
    "model.depth": 2,
    "aug": "none",
    "trainer.max_epochs": 2,
    "trainer.progress": "false",
}


@pytest.fixture(scope="module")
def band_run(tmp_path_factory) -> dict:
    """A 5-band run trained in this process, exported in the uint8 form (the default) and the float32 form, and
    its test split written as H x W x 5 uint8 .npy files (data.write)."""
    from zoo.train.engine import train

    root = tmp_path_factory.mktemp("bands")
    arrays = root / "arrays"
    cfg = small_config(**OVERRIDES, **{"data.write": str(arrays)})
    train(cfg, root / "run")
    best = root / "run" / "checkpoints" / "best.pt"
    for form in ("uint8", "float32"):
        export(best, root / form, {"input": form, "parity_samples": 8})
    return {"root": root, "best": best, "arrays": arrays, "cfg": cfg}


def _torch_probabilities(best: Path, x: torch.Tensor) -> np.ndarray:
    """What the checkpoint's PyTorch model gives for float N x C x H x W images in [0, 1]."""
    model, _ = model_from_checkpoint(load_checkpoint(best), str(best))
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["uint8", "float32"])
def test_a_5_band_export_says_what_it_takes_and_verifies(band_run, form):
    card = json.loads((band_run["root"] / form / "model.json").read_text())
    entry = card["input"]
    assert entry["channels"] == BANDS and entry["color"] == "bands"
    assert entry["layout"] == ("NHWC" if form == "uint8" else "NCHW")
    assert card["preprocessing"]["decode"]["output"] == "array"
    assert card["preprocessing"]["color_conversion"]["to"] == "bands"
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    model = Model(band_run["root"] / form / "model.onnx", providers="cpu")
    assert model.input.bands and model.input.extensions == (".npy",)
    shape = [d if isinstance(d, int) else -1 for d in model.session.get_inputs()[0].shape]
    assert shape == ([-1, -1, -1, BANDS] if form == "uint8" else [-1, BANDS, 16, 16])
    schema.validate(model.metadata, form)
    golden = sorted(p.name for p in (band_run["root"] / form / "golden").iterdir())
    assert golden[0] == "golden.json" and all(n.endswith(".npy") for n in golden[1:])
    assert verify(band_run["root"] / form) == ([], len(golden) - 1)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["uint8", "float32"])
def test_zoo_predict_on_npy_files_agrees_with_pytorch(band_run, form):
    files = sorted((band_run["arrays"] / "test").rglob("*.npy"))[:12]
    assert len(files) == 12
    proc = zoo_in_process(
        "predict", f"model={band_run['root'] / form / 'model.onnx'}", f"input={files[0].parent.parent}"
    )
    assert proc.returncode == 0, proc.stderr
    results = {Path(r["file"]): r for r in map(json.loads, proc.stdout.splitlines())}
    x = torch.stack([torch.from_numpy(np.load(f).transpose(2, 0, 1).astype(np.float32) / 255) for f in files])
    expected = _torch_probabilities(band_run["best"], x)
    labels = [f"band{k}" for k in range(BANDS)]
    for f, p in zip(files, expected):
        got = {t["label"]: t["score"] for t in results[f]["topk"]}
        assert np.allclose([got[name] for name in labels], p, atol=2e-6), (f, got, p)


@pytest.mark.slow
def test_the_float32_form_takes_16_bit_and_float_arrays_and_resizes_them(band_run):
    model = Model(band_run["root"] / "float32" / "model.onnx", providers="cpu")
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65536, size=(24, 20, BANDS), dtype=np.uint16)
    floats = (wide / 65535).astype(np.float64)
    a, b = model.prepare(wide)[0], model.prepare(floats)[0]
    assert a.shape == (BANDS, 16, 16) and np.allclose(a, b, atol=1e-6)
    x = torch.from_numpy(a[None])
    probs = model.predict(a[None], topk=BANDS)[0]
    got = [{t["label"]: t["score"] for t in probs["topk"]}[f"band{k}"] for k in range(BANDS)]
    assert np.allclose(got, _torch_probabilities(band_run["best"], x)[0], atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "form,array,fragments",
    [
        ("uint8", np.zeros((16, 16, 3), np.uint8), ["has shape [16, 16, 3]", "H x W x 5 arrays of uint8"]),
        ("uint8", np.zeros((16, 16, 5), np.float32), ["is float32", "H x W x 5 arrays of uint8"]),
        ("uint8", np.zeros((2, 16, 16, 5), np.uint8), ["has shape [2, 16, 16, 5]"]),
        ("float32", np.zeros((16, 16, 5), np.int32), ["is int32", "uint8 or uint16 or float32 or float64"]),
        ("float32", np.full((16, 16, 5), 2.0, np.float32), ["values outside [0, 1]"]),
        ("uint8", None, ["is not a .npy file", "5-channel arrays as .npy files"]),
    ],
)
def test_a_bad_array_is_one_line_naming_the_file_and_what_the_export_takes(band_run, tmp_path, form, array, fragments):
    path = tmp_path / ("bad.npy" if array is not None else "bad.png")
    if array is None:
        from PIL import Image

        Image.new("RGB", (16, 16)).save(path)
    else:
        np.save(path, array)
    proc = zoo_in_process("predict", f"model={band_run['root'] / form / 'model.onnx'}", f"input={path}")
    assert_one_line_error(proc, str(path), *fragments)


@pytest.mark.slow
def test_the_arrays_dataset_reads_what_multiband_wrote_as_the_same_images(band_run):
    over = {"data": "arrays", "data.root": str(band_run["arrays"]), "data.channels": BANDS, "data.size": 16}
    written = build_data(small_config(**over), 0)
    generated = build_data(band_run["cfg"], 0)
    assert written.info.channels == BANDS and len(written.info.mean) == BANDS
    assert written.info.classes == generated.info.classes
    assert len(written.test) == len(generated.test)
    # the same test images (a file per image, in the order of their indices within each class folder)
    a = sorted((float(x.sum()), int(y)) for x, y in (written.test[i] for i in range(len(written.test))))
    b = sorted((float(x.sum()), int(y)) for x, y in (generated.test[i] for i in range(len(generated.test))))
    assert np.allclose([s for s, _ in a], [s for s, _ in b], atol=1e-3) and [y for _, y in a] == [y for _, y in b]


@pytest.mark.slow
@pytest.mark.parametrize("channels", [2, 4, 8])
def test_any_channel_count_exports_with_parity_in_both_forms(tmp_path, channels):
    torch.manual_seed(0)
    info = DataInfo("classification", ("a", "b"), channels, (16, 16), (0.5,) * channels, (0.25,) * channels)
    cfg = {
        "data": {"name": "test"},
        "model": {"name": "cnn", "width": 4, "depth": 2},
        "head": {"name": "classification"},
    }
    model = build_model(cfg, info).eval()
    x = torch.rand(3, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    for form in ("uint8", "float32"):
        card = export_model(model, info, cfg, tmp_path / form, {"opset": 18, "input": form}, x, "random")
        assert card["input"]["channels"] == channels and card["input"]["color"] == "bands"
        assert verify(tmp_path / form)[0] == []


# ---- the metadata of bands, without training ---------------------------------------------------------------


@pytest.mark.parametrize("channels", [2, 4, 5, 12])
@pytest.mark.parametrize("form", ["uint8", "float32"])
def test_bands_metadata_fits_the_schema(channels, form):
    info = DataInfo("classification", ("a", "b"), channels, (16, 16), (0.5,) * channels, (0.25,) * channels)
    entry = schema.input_entry(info, form, False, None)
    pre = schema.preprocessing(info, form, False)
    meta = {"format": schema.FORMAT, "version": "0", "task": info.task, "labels": ["a", "b"], "input": entry}
    meta |= {"preprocessing": pre, "outputs": [{"name": "p", "role": "probabilities", "dtype": "float32"}]}
    meta["outputs"][0] |= {"axes": ["batch", "class"], "shape": ["batch", 2]}
    meta |= {"postprocessing": {"label_index_base": 0}, "opset": 18}
    schema.validate(meta, "bands")
    assert entry["channels"] == channels and entry["color"] == "bands" and pre["color_conversion"]["to"] == "bands"
    assert pre["decode"]["dtypes"] == (["uint8"] if form == "uint8" else ["uint8", "uint16", "float32", "float64"])
    meta["preprocessing"]["decode"]["output"] = "rgb8"  # neither an image's decoding nor an array's
    with pytest.raises(Exception, match="zoo.preprocessing.decode"):
        schema.validate(meta, "bands")


@pytest.mark.parametrize("channels", [1, 3])
def test_images_metadata_is_as_it_was(channels):
    info = DataInfo("classification", ("a", "b"), channels, (16, 16), (0.5,) * channels, (0.25,) * channels)
    uint8, float32 = schema.input_entry(info, "uint8", False, None), schema.input_entry(info, "float32", False, None)
    assert (uint8["channels"], uint8["color"]) == (3, "rgb")
    assert (float32["channels"], float32["color"]) == (channels, "grayscale" if channels == 1 else "rgb")
    for form in ("uint8", "float32"):
        pre = schema.preprocessing(info, form, False)
        assert pre["decode"] == schema.DECODE and pre["steps"][0] == "decode to RGB uint8 (see decode)"
        assert pre["color_conversion"]["to"] == ("grayscale" if channels == 1 else "rgb")
