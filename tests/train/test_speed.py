"""Training speed: precision, memory format and compile; the loaders that feed the device; augmentation on the
batch; splits decoded once; `zoo bench train`. Nothing here needs a GPU or asserts a time."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from tests.conftest import assert_one_line_error, small_config, zoo_in_process
from zoo.data import BatchTransform, DataBundle, DataInfo, InMemory, TensorImages, Transformed, build_augmentations
from zoo.errors import ZooError
from zoo.plugin import registry
from zoo.train.accel import Accel, cache_splits, prepare_model, resolve_workers

TINY = {"model.width": 4, "model.depth": 2, "data.shots": 8, "trainer.max_epochs": 1, "trainer.progress": "false"}
CLS = DataInfo("classification", ("a", "b"), 1, (24, 40), (0.5,), (0.25,))
SEG = DataInfo("segmentation", ("bg", "fg"), 1, (24, 40), (0.5,), (0.25,))
DET = DataInfo("detection", ("bg", "fg"), 1, (24, 40), (0.5,), (0.25,))


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision,channels_last", [("32", False), ("bf16-mixed", True), ("16-mixed", False)]
)  # 16-mixed runs on CPUs too (torch's CPU autocast and GradScaler), slowly where the CPU has no fp16 units
def test_each_precision_trains_and_exports_float32_with_parity(precision, channels_last, tmp_path):
    from zoo.deploy.export import export
    from zoo.train.checkpoint import load_checkpoint
    from zoo.train.engine import train

    over = {**TINY, "trainer.precision": precision, "trainer.channels_last": str(channels_last).lower()}
    cfg = small_config(**over)
    results = train(cfg, tmp_path / "run")
    assert math.isfinite(results["history"][0]["train_loss"]) and results["test"]["accuracy"] > 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())  # weights stay fp32
    card = export(tmp_path / "run" / "checkpoints" / "best.pt", tmp_path / "export")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4


def test_the_fp16_step_goes_through_a_grad_scaler_and_bf16_autocasts_on_cpu():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.rand(4, 1, 8, 8)
    for precision, dtype in [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]:
        accel = Accel(precision, torch.device("cpu"))
        with accel.autocast():
            assert model(x).dtype == dtype
    assert Accel("16-mixed", torch.device("cpu")).scaler is not None
    assert Accel("bf16-mixed", torch.device("cpu")).scaler is None and Accel("32", "cpu").dtype is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.precision=fp8", "trainer.precision='fp8' is not one of: 32, bf16-mixed, 16-mixed"),
        ("trainer.num_workers=-1", "trainer.num_workers='-1' must be auto or a whole number >= 0"),
        ("trainer.num_workers=many", "trainer.num_workers='many' must be auto or a whole number >= 0"),
        ("+trainer.amp=true", "unknown config key 'trainer.amp'"),  # once accepted and silently ignored
        ("trainer.channels_last=maybe", "trainer.channels_last"),
    ],
)
def test_bad_trainer_speed_settings_are_refused_in_one_line(override, message):
    assert_one_line_error(zoo_in_process("train", override), message)


def test_channels_last_and_compile_change_the_model_in_place_only(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    params, keys = list(model.parameters()), list(model.state_dict())
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(self))
    prepare_model(model, {"channels_last": True, "compile": True})
    assert compiled == [model] and list(model.parameters()) == params and list(model.state_dict()) == keys
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    prepare_model(model, {"channels_last": False, "compile": False})
    assert compiled == [model]


def test_num_workers_auto_uses_workers_only_where_they_pay():
    images = TensorImages(torch.rand(4, 1, 8, 8), torch.zeros(4))
    augmented = Transformed(images, lambda x, y: (x, y))
    files = type("Files", (Dataset,), {"__len__": lambda self: 4})()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_workers("3", images, cpu) == 3 and resolve_workers(0, files, cuda) == 0
    assert resolve_workers("auto", images, cpu, cores=2) == 0  # this CI machine: in memory, two cores
    assert resolve_workers("auto", files, cpu, cores=2) == 0  # workers would take the model's cores
    assert resolve_workers("auto", files, cpu, cores=32) == 4
    assert resolve_workers("auto", Transformed(images, None), cuda, cores=16) == 0  # nothing to do per sample
    assert resolve_workers("auto", augmented, cuda, cores=16) == 8
    assert resolve_workers("auto", files, cuda, cores=4) == 4


# ---- augmentation on the batch --------------------------------------------------------------------------


def _op(name: str, info: DataInfo, **params):
    return registry.get("augmentation", name).build({"info": info}, params, where=f"aug.ops.{name}")


def test_batched_affine_is_torchvisions_affine():
    from zoo_plugins.augmentations.geometric import affine_theta, warp

    x = torch.rand(5, 3, 24, 40)
    angle = torch.tensor([0.0, 12.0, -30.0, 45.0, 90.0])
    shift = torch.tensor([[0.0, 0.0], [2.0, -3.0], [0.0, 0.0], [-1.0, 4.0], [0.0, 0.0]])
    scale = torch.tensor([1.0, 1.0, 1.2, 0.9, 1.0])
    out, _ = warp(x, torch.zeros(5), affine_theta(angle, shift, scale, 24, 40))
    for i in range(5):
        ref = F.affine(  # F.affine's angle is clockwise, F.rotate's (and RandomRotation's) counter-clockwise
            x[i], angle=-float(angle[i]), translate=shift[i].int().tolist(), scale=float(scale[i]), shear=[0.0, 0.0]
        )
        assert (out[i] == ref).float().mean() > 0.99  # nearest neighbours; a rounding tie may go the other way
    turned, _ = warp(x[:1], None, affine_theta(torch.tensor([12.0]), torch.zeros(1, 2), torch.ones(1), 24, 40))
    assert (turned[0] == F.rotate(x[0], 12.0, interpolation=InterpolationMode.NEAREST)).float().mean() > 0.99


@pytest.mark.parametrize("name,params", [("rotation", {"degrees": 30.0}), ("shift", {"fraction": 0.2}),
                                         ("zoom", {"min_scale": 0.7, "max_scale": 1.3}), ("hflip", {}),
                                         ("vflip", {})])  # fmt: skip
def test_batched_ops_draw_per_sample_move_masks_and_repeat_from_the_seed(name, params):
    op = _op(name, SEG, **params)
    image = torch.zeros(1, 24, 40)
    image[:, 4:14, 6:20] = 1.0
    images, masks = image.repeat(16, 1, 1, 1), image[0].long().repeat(16, 1, 1)
    torch.manual_seed(0)
    out, moved = op.batched(images, masks)
    assert out.shape == images.shape and moved.dtype == torch.long
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1  # each sample its own draw
    assert torch.equal(out[:, 0].long(), moved)  # the mask moved with its image
    torch.manual_seed(0)
    assert torch.equal(op.batched(images, masks)[0], out)  # the global generator: a run repeats
    off, _ = _op(name, SEG, **params, p=0.0).batched(images, masks)
    assert torch.equal(off, images)


def test_trailing_batchable_ops_run_on_the_batch_and_detection_keeps_them_per_sample():
    sample, batch = build_augmentations({"ops": {"shift": {}, "rotation": {}}}, CLS)
    assert sample is None and isinstance(batch, BatchTransform)
    x = torch.rand(8, 1, 24, 40)
    assert batch(x, torch.zeros(8))[0].shape == x.shape
    # an op with no batched form after them keeps the pipeline's order: all of it per sample
    sample, batch = build_augmentations({"ops": {"shift": {}, "brightness": {}}}, CLS)
    assert sample is not None and batch is None
    sample, batch = build_augmentations({"ops": {"brightness": {}, "shift": {}}}, CLS)
    assert sample is not None and isinstance(batch, BatchTransform)
    assert not hasattr(_op("rotation", DET), "batched")
    assert build_augmentations({"ops": {"shift": {}}}, DET)[1] is None


# ---- splits decoded once ---------------------------------------------------------------------------------


class _Files(Dataset):
    cacheable = True

    def __init__(self, n: int):
        self.n, self.reads = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads += 1
        return torch.full((1, 4, 4), float(i)), i % 2


def test_cacheable_splits_are_decoded_once_when_they_fit():
    info = DataInfo("classification", ("a", "b"), 1, (4, 4), (0.5,), (0.25,))
    data = DataBundle(info, _Files(6), _Files(3), TensorImages(torch.rand(2, 1, 4, 4), torch.zeros(2)))
    assert cache_splits(data, budget=10) == [] and not isinstance(data.train, InMemory)  # 9 x 64 bytes: no room
    train, before = data.train, data.train.reads
    assert cache_splits(data, budget=2**20) == ["train", "val"]
    reads = train.reads
    assert isinstance(data.train, InMemory) and data.train.in_memory and reads - before == 1 + 6  # size, then all
    assert [data.train[i][1] for i in range(6)] == [0, 1, 0, 1, 0, 1] and float(data.train[5][0][0, 0, 0]) == 5.0
    assert train.reads == reads  # served from memory


# ---- zoo bench train --------------------------------------------------------------------------------------


def test_bench_train_shows_whole_step_pipeline_and_model_step_for_each_cpu_precision():
    proc = zoo_in_process(
        "bench", "train", "repeats=1", "batches=1", "model.width=4", "data.shots=8", "trainer.device=cpu"
    )  # the CPU's precisions, on any machine (auto takes CUDA where there is one, and adds 16-mixed)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("training step: data=digits") and "workers 0" in lines[0]
    assert "| precision | whole step img/s | data pipeline img/s | model step img/s |" in lines[1]
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines[3:]}
    assert set(rows) == {"32", "bf16-mixed"}
    for cells in rows.values():
        assert all(float(c) > 0 for c in cells[:3]) and cells[3].strip().startswith("x")
    assert_one_line_error(zoo_in_process("bench", "train", "repeats=x"), "repeats")
    # no run at all printed a table of nan, and negative batches a table of negative rates
    assert_one_line_error(zoo_in_process("bench", "train", "repeats=0"), "repeats=0 must be in [1, 1000]")
    assert_one_line_error(zoo_in_process("bench", "train", "batches=-1"), "batches=-1 must be at least 1")


def test_accel_refuses_an_unknown_precision():
    with pytest.raises(ZooError, match="trainer.precision='fp8' is not one of 32, bf16-mixed, 16-mixed"):
        Accel("fp8", torch.device("cpu"))


@pytest.mark.slow
def test_bench_train_on_an_image_folder_measures_torchvisions_imagefolder_beside_it(tmp_path):
    """A folder of class folders: the data pipeline is also measured against torchvision's ImageFolder +
    DataLoader over the same files, with the run's own ops and workers, as a ratio; digits (no folder) has no
    such line, as the test above shows."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.jpg")
    proc = zoo_in_process(
        "bench", "train", "repeats=1", "batches=2", "model.width=4", "data=folder", f"data.root={tmp_path}",
        "data.size=16", "trainer.batch_size=4", "trainer.device=cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.splitlines()[-1]
    assert line.startswith("data pipeline (held in memory, as this run holds it) vs torchvision's ImageFolder")
    assert str(tmp_path) in line and float(line.rsplit(" x", 1)[1].split()[0]) > 0
