"""The task table (zoo/tasks.py): it covers every task, every standard head fits it, misfits are refused in one
line, the runtime reads outputs by role (old format-1 exports too), and a third party's segmentation head with
outputs of its own names trains, exports and serves through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, run_zoo
from zoo import tasks
from zoo.data import DataInfo
from zoo.deploy.export import export_model
from zoo.deploy.graph import DeployModel
from zoo.errors import ZooError
from zoo.model import Head, build_model
from zoo.plugin import registry
from zoo.plugin.discovery import STANDARD_PACKAGE

ECFG = {"opset": 18, "parity_tolerance": 1e-4, "input": "float32"}  # float batches in, as PyTorch takes them


def info_for(task: str, classes: tuple[str, ...] = ("background", "a", "b")) -> DataInfo:
    return DataInfo(task, classes, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)


# ---- the table -----------------------------------------------------------------------------------------


def test_the_table_covers_every_task():
    from zoo.data import TASKS

    assert TASKS is tasks.TASKS and set(tasks.TABLE) == set(TASKS)
    for name, t in tasks.TABLE.items():
        assert t.name == name and t.required and t.predict_keys
        assert [o.role for o in t.outputs] == list(t.roles)  # required roles come first
        assert len(set(t.roles)) == len(t.roles)
        for o in t.outputs:
            assert o.dtype in ("float32", "int64") and o.axes[0] == "batch" and set(o.dynamic) <= set(o.axes)
    assert tasks.averageable() == ("classification", "regression")


def test_tasks_module_needs_no_torch_or_numpy():
    code = (
        "import sys; sys.modules['torch'] = sys.modules['numpy'] = None; import zoo.tasks; print(len(zoo.tasks.TABLE))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "4", proc.stderr


@pytest.mark.parametrize(
    "task,names,message",
    [
        ("detection", ("boxes", "scores", "labels"), "a detection head gives 4 output(s)"),
        ("segmentation", ("a", "b", "c"), "a segmentation head gives 1 to 2 output(s)"),
        ("classification", (), "a classification head gives 1 output(s)"),
        ("segmentation", ("m", "m"), "output names must be unique; 'm' repeats"),
        ("regression", ("my values",), "output name 'my values' must be an identifier"),
        ("segmentaton", ("mask",), "unknown task 'segmentaton'; did you mean 'segmentation'?"),
    ],
)
def test_misfit_outputs_are_one_line(task, names, message):
    with pytest.raises(ZooError) as e:
        tasks.match(task, names, "head=mine")
    assert str(e.value).startswith("head=mine: ") and message in str(e.value) and "\n" not in str(e.value)


def test_output_names_are_matched_by_position():
    pairs = tasks.match("segmentation", ("segmap", "class_scores"))
    assert [(n, o.role) for n, o in pairs] == [("segmap", "mask"), ("class_scores", "probabilities")]
    assert tasks.roles_by_position("detection", ["b", "s", "l", "n"]) == {
        "boxes": "b",
        "scores": "s",
        "labels": "l",
        "num_detections": "n",
    }


# ---- every standard head fits the table ------------------------------------------------------------------


def _standard_heads() -> list[str]:
    return [p.name for p in registry.registries["head"] if p.package == STANDARD_PACKAGE]


def _build(head: str, **params):
    plugin = registry.get("head", head)
    task = plugin.tasks[0]
    if head == "pretrained_classifier":
        model, info = {"name": "timm", "model_name": "test_resnet"}, info_for(task, ("goldfish",))
    else:
        model, info = {"name": "cnn", "width": 8, "depth": 2}, info_for(task)
    cfg = {"data": {"name": "test"}, "model": model, "head": {"name": head, **params}}
    return build_model(cfg, info).eval(), info, cfg


def _head_cases() -> list:
    """Every standard head with its defaults, and the segmentation heads with their optional output too."""
    cases = [pytest.param(h, {}, id=h) for h in _standard_heads()]
    optional = [h for h in _standard_heads() if registry.get("head", h).tasks == ("segmentation",)]
    return cases + [pytest.param(h, {"probabilities": True}, id=f"{h}-probabilities") for h in optional]


@pytest.mark.parametrize("head,params", _head_cases())
def test_every_standard_head_fits_its_task(head, params):
    torch.manual_seed(0)
    model, info, _ = _build(head, **params)
    deploy = DeployModel(model)
    with torch.no_grad():
        out = deploy(torch.rand(2, 3, 32, 32))
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(model.head.output_names)
    roles = tasks.match(info.task, model.head.output_names)
    for tensor, (name, role) in zip(out, roles):
        assert str(tensor.dtype) == f"torch.{role.dtype}" and tensor.ndim == role.rank, (name, role)
        assert tensor.shape[0] == 2  # the batch axis first
    assert [o.role for _, o in roles][: len(tasks.task(info.task).required)] == [
        o.role for o in tasks.task(info.task).required
    ]


# ---- misfits are refused: at registration, at build, at export --------------------------------------------


class TwoBoxes(Head):
    """Detection with too few outputs."""

    task = "detection"
    output_names = ("boxes", "scores")

    def __init__(self, feature_info: list, info: DataInfo):
        super().__init__()


def two_boxes(feature_info: list, info: DataInfo) -> TwoBoxes:
    """The same class, behind a factory annotated with it."""
    return TwoBoxes(feature_info, info)


def test_a_head_class_with_the_wrong_output_count_is_refused_at_registration():
    reg = registry.Registry("head", registry._check_returns("Head"))
    with pytest.raises(registry.PluginDefinitionError) as e:
        reg.add(TwoBoxes, "two_boxes", tasks=("detection",))
    msg = str(e.value)
    assert "TwoBoxes: a detection head gives 4 output(s)" in msg and "\n" not in msg
    assert "boxes scores labels num_detections" in msg

    with pytest.raises(registry.PluginDefinitionError, match="a detection head gives 4 output"):
        reg.add(two_boxes, "two_boxes_factory", tasks=("detection",))

    class Mislabelled(Head):
        """Says segmentation, registered for classification."""

        task = "segmentation"
        output_names = ("mask",)

        def __init__(self, feature_info: list, info: DataInfo):
            super().__init__()

    with pytest.raises(
        registry.PluginDefinitionError, match="a segmentation head is registered for tasks classification"
    ):
        reg.add(Mislabelled, "mislabelled", tasks=("classification",))


def test_a_head_instance_with_the_wrong_output_count_is_refused_at_build(monkeypatch):
    heads = registry.registries["head"]
    monkeypatch.setattr(heads, "_plugins", {k: list(v) for k, v in heads._plugins.items()})

    class ThreeOutputs(Head):
        """Segmentation naming three outputs at build time."""

        def __init__(self):
            super().__init__()
            self.task, self.output_names = "segmentation", ("mask", "probabilities", "extra")

    def three(feature_info: list, info: DataInfo) -> Head:
        """A head whose instance names three outputs."""
        return ThreeOutputs()

    heads.add(three, "three_outputs", tasks=("segmentation",))  # the class declares nothing: only the build can tell
    cfg = {
        "data": {"name": "test"},
        "model": {"name": "cnn", "width": 8, "depth": 2},
        "head": {"name": "three_outputs"},
    }
    with pytest.raises(ZooError) as e:
        build_model(cfg, info_for("segmentation"))
    assert str(e.value).startswith("head=three_outputs: a segmentation head gives 1 to 2 output(s)")
    assert "\n" not in str(e.value)


def test_export_refuses_an_output_of_the_wrong_dtype_and_writes_nothing(tmp_path):
    model, info, cfg = _build("unet")
    original = model.head.postprocess
    model.head.postprocess = lambda outputs: (original(outputs)[0].float(),)  # a float mask
    with pytest.raises(ZooError) as e:
        export_model(model, info, cfg, tmp_path / "x", ECFG, torch.rand(2, 3, 32, 32), "random")
    assert str(e.value) == (
        "head=unet: output 'mask' (role mask) is float32 of rank 3; "
        "a segmentation model's mask is int64 of rank 3 (batch, height, width)"
    )
    assert not (tmp_path / "x").exists()


# ---- the runtime reads outputs by role -------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory):
    """A small unet export with both segmentation outputs: its folder."""
    torch.manual_seed(0)
    model, info, cfg = _build("unet", probabilities=True)
    out = tmp_path_factory.mktemp("seg") / "x"
    export_model(model, info, cfg, out, ECFG, torch.rand(2, 3, 32, 32), "random")
    return out


def _rewrite_metadata(src, dst, **changes):
    import onnx

    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update({f"zoo.{k}": json.dumps(v) for k, v in changes.items()})
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(dst))
    return dst


def test_metadata_format_3_lists_roles(seg_export):
    import onnx

    meta = {p.key: json.loads(p.value) for p in onnx.load(str(seg_export / "model.onnx")).metadata_props}
    assert meta["zoo.format"] == "3.2"
    assert meta["zoo.outputs"] == [
        {
            "name": "mask",
            "role": "mask",
            "dtype": "int64",
            "axes": ["batch", "height", "width"],
            "shape": ["batch", "height", "width"],
        },
        {
            "name": "probabilities",
            "role": "probabilities",
            "dtype": "float32",
            "axes": ["batch", "class", "height", "width"],
            "shape": ["batch", 3, "height", "width"],
        },
    ]
    card = json.loads((seg_export / "model.json").read_text())
    assert card["format"] == "zoo.model-card/3" and card["outputs"] == meta["zoo.outputs"]


def test_a_format_1_export_is_read_by_position(seg_export, tmp_path):
    from zoo.runtime import Model

    old = _rewrite_metadata(
        seg_export / "model.onnx", tmp_path / "old.onnx", format=1, outputs=["mask", "probabilities"]
    )
    m = Model(old, "cpu")
    assert m.roles == {"mask": "mask", "probabilities": "probabilities"}
    r = m.predict(np.random.default_rng(0).random((1, 3, 40, 36), dtype=np.float32))[0]
    assert r["mask"].shape == (40, 36) and set(tasks.task("segmentation").predict_keys) <= set(r)
    # outputs as plain data, without onnx: format 1 named them only
    meta = {"format": 1, "task": "detection", "outputs": ["b", "s", "l", "n"]}
    from zoo.runtime import output_roles

    assert output_roles(meta, ["b", "s", "l", "n"], "m.onnx")["num_detections"] == "n"


def test_an_unknown_major_format_is_refused_in_one_line(seg_export, tmp_path):
    from zoo.runtime import Model, output_roles

    future = _rewrite_metadata(seg_export / "model.onnx", tmp_path / "future.onnx", format=4)
    with pytest.raises(ZooError) as e:
        Model(future, "cpu")
    assert "has zoo metadata format 4; this zoo reads formats 1, 2, 3: upgrade zoo" in str(e.value)
    assert "\n" not in str(e.value)
    entries = [{"name": "m", "role": "mask"}]
    assert output_roles({"format": "2.1", "task": "segmentation", "outputs": entries}, ["m"], "x") == {"mask": "m"}
    with pytest.raises(ZooError, match="gives no output for the segmentation role 'mask'"):
        output_roles({"format": 2, "task": "segmentation", "outputs": []}, ["m"], "x")


# ---- acceptance: a third party's segmentation head, outputs named its own way, through the CLI ---------------

SEGMAP = '''"""A segmentation head whose outputs have names of its own, matched to the task's roles by position."""

ZOO_PLUGIN_API = 2

import torch
import torch.nn.functional as F
from torch import nn

from zoo import register
from zoo.model import Head


@register.head("segmap", tasks=("segmentation",))
class Segmap(Head):
    """A 1x1 conv on the shallowest features, upsampled to the input size."""

    task = "segmentation"
    output_names = ("segmap", "class_scores")
    monitor, monitor_mode = "miou", "max"
    dynamic_size = True
    wants_input_size = True

    def __init__(self, feature_info: list, info):
        super().__init__()
        self.num_classes, self.size = info.num_classes, tuple(info.size)
        self.conv = nn.Conv2d(feature_info[0].channels, info.num_classes, 1)

    def forward(self, features, size=None):
        size = self.size if size is None else size
        return F.interpolate(self.conv(features[0]), size=(size[0], size[1]), mode="bilinear", align_corners=False)

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets.as_subclass(torch.Tensor).long())

    def metrics(self):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassJaccardIndex

        return MetricCollection({"miou": MulticlassJaccardIndex(num_classes=self.num_classes, average="macro")})

    def postprocess(self, outputs):
        return outputs.argmax(dim=1), outputs.softmax(dim=1)
'''

BAD = '''"""A detection head naming two outputs."""
from zoo import register
from zoo.model import Head


@register.head("twobox", tasks=("detection",))
class TwoBox(Head):
    """Too few outputs."""

    task = "detection"
    output_names = ("boxes", "scores")

    def __init__(self, feature_info: list, info):
        super().__init__()
'''


@pytest.mark.slow
def test_a_third_party_segmentation_head_with_its_own_output_names_trains_exports_and_predicts(tmp_path):
    from PIL import Image

    from zoo.bench import write_fake_package

    site, run, out, masks = tmp_path / "site", tmp_path / "run", tmp_path / "onnx", tmp_path / "masks"
    write_fake_package(site, "zoo-segmap", "zoo_segmap", SEGMAP)
    env = {"PYTHONPATH": str(site)}
    proc = run_zoo(
        "train",
        "data=shapes",
        "data.num_images=24",
        "data.size=32",
        "head=segmap",
        "model=cnn",
        "model.depth=2",
        "model.width=8",
        "aug=none",
        "trainer.max_epochs=1",
        "trainer.progress=false",
        f"hydra.run.dir={run}",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "miou" in json.loads((run / "metrics.json").read_text())["test"]
    proc = run_zoo("export", f"checkpoint={run}", f"output={out}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "model.json").read_text())
    assert [(o["name"], o["role"]) for o in card["outputs"]] == [("segmap", "mask"), ("class_scores", "probabilities")]

    image = tmp_path / "in" / "shape.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    proc = run_zoo("predict", f"model={out / 'model.onnx'}", f"input={image}", f"masks={masks}", "providers=cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert set(tasks.task("segmentation").predict_keys) <= set(row) and row["size"] == [40, 48]
    with Image.open(row["mask_file"]) as mask:
        assert mask.size == (48, 40)  # any input size: height and width are dynamic, as the table says
    draw = run_zoo("predict", f"model={out / 'model.onnx'}", f"input={image}", f"draw={tmp_path / 'd'}")
    assert_one_line_error(draw, "draw=DIR draws detected boxes, but this segmentation model gives no boxes output")

    # a head with the wrong output count costs its package one warning line, naming the package and the fix
    write_fake_package(tmp_path / "bad", "zoo-twobox", "zoo_twobox", BAD)
    proc = run_zoo("list", "head", env={"PYTHONPATH": str(tmp_path / "bad")})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr
    assert "'zoo-twobox'" in lines[0] and "TwoBox: a detection head gives 4 output(s)" in lines[0]


def test_ensembles_ask_the_table_whether_a_task_averages():
    from zoo.deploy.graph import Ensemble

    model, _, _ = _build("unet")
    with pytest.raises(ZooError, match=r"'segmentation' cannot \(tasks that average: classification, regression\)"):
        Ensemble([model, model])
    model, _, _ = _build("regression")
    ensemble = Ensemble([model, model]).eval()
    assert [o.role for _, o in ensemble.roles] == ["values"] and ensemble.output_axes == {"values": {0: "batch"}}
