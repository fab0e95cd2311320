"""The detection head: builds on classic and timm backbones, trains (images without boxes too), decodes to the
deployed contract, suppresses duplicates exactly as ONNX NonMaxSuppression does, exports with NMS inside the graph,
and gives the same detections in onnxruntime as in PyTorch after a little training on shapes."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from zoo.data import collate
from zoo.deploy.export import export_model
from zoo.deploy.graph import DeployModel
from zoo.errors import ZooError
from zoo.model import build_model
from zoo.plugin import registry
from zoo.runtime import Model
from zoo_plugins.heads.detection import ClassNMS, nms_mask

SIZE = 32
BACKBONES = [("cnn", {}), ("timm", {"model_name": "test_resnet"})]
IDS = [name for name, _ in BACKBONES]
EXPORT = {"opset": 18, "parity_tolerance": 1e-4, "input": "float32"}  # float batches in, as PyTorch takes them


@pytest.fixture(scope="module")
def shapes():
    """A few generated 32x32 scenes with boxes (3 channels, so timm and classic backbones both take them)."""
    return registry.get("dataset", "shapes").build(
        {"seed": 0},
        {"task": "detection", "size": SIZE, "num_images": 48, "min_size": 6, "max_size": 14, "max_objects": 4},
        where="data",
    )


def cfg(name: str, params: dict, **head) -> dict:
    return {"data": {"name": "shapes"}, "model": {"name": name, **params}, "head": {"name": "detection", **head}}


def batch(ds, n: int, start: int = 0):
    return collate([ds[i] for i in range(start, start + n)])


def empty(target: dict) -> dict:
    return {"boxes": target["boxes"][:0], "labels": target["labels"][:0]}


def train_steps(model, ds, steps: int, bs: int = 16, lr: float = 3e-3):
    """A few AdamW steps on `ds`: enough for scores to separate objects from background."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randperm(len(ds), generator=g)[:bs].tolist()
        x, y = collate([ds[i] for i in idx])
        loss = model.head.loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ---- building and training ---------------------------------------------------------------------


@pytest.mark.parametrize("name,params", BACKBONES, ids=IDS)
def test_builds_and_trains_a_step_with_an_image_without_boxes(shapes, name, params):
    torch.manual_seed(0)
    model = build_model(cfg(name, params), shapes.info)
    head = model.head
    assert head.task == "detection" and head.monitor == "map_50" and head.monitor_mode == "max"
    assert head.output_names == ("boxes", "scores", "labels", "num_detections") and head.dynamic_size is False
    assert DeployModel(model).output_axes == {n: {0: "batch"} for n in head.output_names}  # from zoo.tasks
    x, y = batch(shapes.train, 4)
    y[1] = empty(y[1])
    model.train()
    cls, dist, ctr = model(x)
    a = len(head.points)
    assert cls.shape == (4, a, 3) and dist.shape == (4, a, 4) and ctr.shape == (4, a)
    loss = head.loss((cls, dist, ctr), y)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0  # reaches the backbone
    # a batch with no boxes at all: only the classification loss, still finite and differentiable
    model.zero_grad()
    loss = head.loss(model(x), [empty(t) for t in y])
    loss.backward()
    assert torch.isfinite(loss) and loss > 0


def test_every_object_gets_locations_of_its_class(shapes):
    model = build_model(cfg("cnn", {}), shapes.info)
    _, y = batch(shapes.train, 8)
    labels, boxes = model.head.assign(y)
    for i, t in enumerate(y):
        for box, label in zip(t["boxes"], t["labels"]):
            taken = (boxes[i] == box).all(dim=1) & (labels[i] == label)
            assert taken.any(), (
                i,
                box,
                label,
            )  # every object is learned somewhere (unless fully covered by a smaller one)
    labels, _ = model.head.assign([empty(t) for t in y])
    assert (labels == 3).all()  # all background


@pytest.mark.parametrize(
    "name,params",
    [("lenet5", {}), ("alexnet", {"width": 0.125}), ("vgg", {"width": 0.0625})],
    ids=["lenet5", "alexnet", "vgg"],
)
def test_classic_backbones(shapes, name, params):
    model = build_model(cfg(name, params), shapes.info)
    x, y = batch(shapes.train, 2)
    loss = model.head.loss(model(x), y)
    assert torch.isfinite(loss)
    out = model.eval().head.postprocess(model(x))
    assert out[0].shape == (2, 100, 4)


def test_bad_parameters_are_clear_errors(shapes):
    with pytest.raises(ZooError, match="head.iou_threshold"):
        build_model(cfg("cnn", {}, iou_threshold=0.0), shapes.info)
    with pytest.raises(ZooError, match="head.max_detections"):
        build_model(cfg("cnn", {}, max_detections=0), shapes.info)


# ---- decoding and NMS --------------------------------------------------------------------------


def perfect_outputs(head, targets):
    """Raw outputs that decode to exactly the targets: at each object's nearest location, its class and box."""
    n, a, c = len(targets), len(head.points), head.num_classes
    cls = torch.full((n, a, c), -12.0)
    dist = torch.ones(n, a, 4)
    ctr = torch.full((n, a), -12.0)
    for i, t in enumerate(targets):
        used = set()
        for box, label in zip(t["boxes"].as_subclass(torch.Tensor), t["labels"]):
            centre = (box[:2] + box[2:]) / 2
            order = ((head.points - centre).abs().max(dim=1).values / head.point_strides).argsort()
            j = next(int(k) for k in order if int(k) not in used)
            used.add(j)
            p = head.points[j]
            cls[i, j, label] = 12.0
            ctr[i, j] = 12.0
            dist[i, j] = torch.cat([p - box[:2], box[2:] - p])
    return cls, dist, ctr


def test_decoding_follows_the_contract(shapes):
    model = build_model(cfg("cnn", {}, max_detections=7), shapes.info).eval()
    head = model.head
    _, y = batch(shapes.test, 3)
    y[2] = empty(y[2])
    boxes, scores, labels, num = head.postprocess(perfect_outputs(head, y))
    assert boxes.shape == (3, 7, 4) and boxes.dtype == torch.float32
    assert scores.shape == (3, 7) and scores.dtype == torch.float32
    assert labels.shape == (3, 7) and labels.dtype == torch.int64
    assert num.shape == (3,) and num.dtype == torch.int64
    for i, t in enumerate(y):
        k = int(num[i])
        assert k == len(t["labels"])
        assert (scores[i, :k] > 0.99).all() and (scores[i, :k][:-1] >= scores[i, :k][1:]).all()
        assert (boxes[i, k:] == 0).all() and (scores[i, k:] == 0).all() and (labels[i, k:] == -1).all()  # padding
        got = sorted(zip(labels[i, :k].tolist(), boxes[i, :k].round(decimals=3).tolist()))
        want = sorted(zip(t["labels"].tolist(), t["boxes"].as_subclass(torch.Tensor).round(decimals=3).tolist()))
        assert got == want  # boxes in input pixels, XYXY
    metric = head.metrics()
    metric.update(perfect_outputs(head, y), y)
    result = metric.compute()
    assert (
        {"map", "map_50"} <= set(result)
        and float(result["map_50"]) == pytest.approx(1.0)
        and float(result["map"]) == pytest.approx(1.0)
    )


def test_more_rows_than_candidates_is_padding(shapes):
    model = build_model(cfg("cnn", {}, pre_nms_topk=2, max_detections=50), shapes.info).eval()
    boxes, scores, labels, num = model.head.postprocess(model(batch(shapes.test, 2)[0]))
    assert boxes.shape == (2, 50, 4) and (num <= 2 * 3).all() and (labels[:, 6:] == -1).all()


def test_nms_removes_a_duplicate_and_keeps_separate_boxes():
    boxes = torch.tensor([[[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]]], dtype=torch.float32)
    scores = torch.tensor(
        [
            [
                [0.9, 0.8, 0.7, 0.0],  # class 0: box 1 duplicates box 0 (IoU 0.82); box 2 is elsewhere
                [0.0, 0.0, 0.0, 0.3],
            ]
        ]
    )  # class 1: where class 0's best box is, but another class: kept
    keep = nms_mask(boxes, scores, 100, 0.5, 0.05)
    assert keep.tolist() == [[[1, 0, 1, 0], [0, 0, 0, 1]]]
    assert nms_mask(boxes, scores, 100, 0.9, 0.05)[0, 0].tolist() == [1, 1, 1, 0]  # under the IoU threshold: both kept
    assert nms_mask(boxes, scores, 1, 0.5, 0.05)[0, 0].tolist() == [1, 0, 0, 0]  # at most one per class
    assert nms_mask(boxes, scores, 100, 0.5, 0.7)[0, 0].tolist() == [1, 0, 0, 0]  # score must be above the threshold


class _NMSOnly(torch.nn.Module):
    def forward(self, boxes, scores):
        return ClassNMS.apply(boxes, scores, 5, 0.5, 0.25)


def test_nms_selects_as_onnxruntime_does(tmp_path):
    import onnxruntime as ort

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(4, 60, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 4 + torch.rand(4, 60, 2, generator=g) * 12], dim=2)
    scores = torch.rand(4, 3, 60, generator=g)
    scores[0, 0, :3] = 0.25  # exactly at the threshold: dropped by both
    path = tmp_path / "nms.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the PyTorch side of the function
        torch.onnx.export(
            _NMSOnly(),
            (boxes[:2], scores[:2]),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["boxes", "scores"],
            output_names=["keep"],
            dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}, "keep": {0: "n"}},
        )
    assert "NonMaxSuppression" in {node.op_type for node in onnx.load(str(path)).graph.node}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"boxes": boxes.numpy(), "scores": scores.numpy()}
    )[0]
    want = _NMSOnly()(boxes, scores).numpy()
    assert want.sum() > 20 and want[0, 0, :3].sum() == 0
    np.testing.assert_array_equal(got, want)


# ---- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,params", BACKBONES, ids=IDS)
def test_exports_with_nms_in_the_graph(shapes, name, params, tmp_path):
    torch.manual_seed(0)
    c = cfg(name, params)
    model = build_model(c, shapes.info).eval()
    x = batch(shapes.test, 4)[0]
    card = export_model(model, shapes.info, c, tmp_path / "x", EXPORT, x, "random")
    assert max(card["parity"]["max_abs_diff"].values()) <= 1e-4
    path = tmp_path / "x" / "model.onnx"
    assert "NonMaxSuppression" in {node.op_type for node in onnx.load(str(path)).graph.node}
    runtime = Model(path, "cpu")
    for n in (1, 3):
        out = runtime.run(x[:n].numpy())
        assert set(out) == {"boxes", "scores", "labels", "num_detections"}
        assert out["boxes"].shape == (n, 100, 4) and out["boxes"].dtype == np.float32
        assert out["scores"].shape == (n, 100) and out["scores"].dtype == np.float32
        assert out["labels"].shape == (n, 100) and out["labels"].dtype == np.int64
        assert out["num_detections"].shape == (n,) and out["num_detections"].dtype == np.int64


@pytest.mark.slow
def test_trained_model_detects_the_same_in_onnxruntime(shapes, tmp_path):
    torch.manual_seed(0)
    c = cfg("cnn", {"width": 16})
    model = train_steps(build_model(c, shapes.info), shapes.train, steps=40)
    x = torch.stack([shapes.test[i][0] for i in range(len(shapes.test))])
    export_model(model, shapes.info, c, tmp_path / "x", EXPORT, x, "test split")
    got = Model(tmp_path / "x" / "model.onnx", "cpu").run(x.numpy())
    with torch.no_grad():
        boxes, scores, labels, num = (t.numpy() for t in model.head.postprocess(model(x)))
    assert (num > 0).all() and (num < 100).all()  # real detections, and padding
    np.testing.assert_array_equal(got["num_detections"], num)
    np.testing.assert_array_equal(got["labels"], labels)
    np.testing.assert_allclose(got["boxes"], boxes, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["scores"], scores, atol=1e-4, rtol=0)
    # the runtime's per-image form reads the same rows
    pred = Model(tmp_path / "x" / "model.onnx", "cpu").predict(x[:2].numpy())
    assert [len(p["detections"]) for p in pred] == num[:2].tolist()


def test_experiment_preset_composes():
    from zoo.train.config import compose, to_plain

    c = to_plain(compose(["experiment=shapes_detection"]))
    assert c["data"]["name"] == "shapes" and c["data"]["task"] == "detection"
    assert c["head"]["name"] == "detection" and c["head"]["max_detections"] == 100
