"""Object detection: a one-stage, anchor-free head (FCOS: Tian et al. 2019) over the backbone's feature levels.

The chosen levels are fused top-down in one width (a small feature pyramid); a classification tower and a box
tower, shared by every level, predict at each location the class scores, the distances (left, top, right, bottom)
from the location to the box's sides, and a centre-ness that demotes boxes predicted far from an object's centre.
A location learns an object when it lies inside its box, within `center_radius` strides of its centre, and its
largest distance to the sides fits the level (FCOS's scale ranges, 8 strides per level); the smallest box wins.
Losses: sigmoid focal loss (classes), GIoU weighted by the centre-ness target (boxes), binary cross-entropy
(centre-ness).

The deployed model decodes and runs class-aware non-maximum suppression inside the ONNX graph (the
`NonMaxSuppression` operator, batched), and returns a fixed number of rows per image:
boxes (N, K, 4) float32 XYXY input pixels, scores (N, K) float32, labels (N, K) int64, num_detections (N,) int64,
K = max_detections; rows past num_detections are padding (boxes 0, scores 0, labels -1). A detection's score
is class probability x centre-ness (FCOS's ranking score), so a location the classifier calls background
(p ~ 0.01) stays below any useful score_threshold whatever its untrained centre-ness.

Metrics (torchmetrics' COCO-style MeanAveragePrecision, over the split): `map_50` (AP at IoU 0.5), `map`
(AP averaged over IoU 0.5:0.95), `map_75`, `mar_100` (recall with up to 100 detections per image).
"""

from __future__ import annotations

import functools
import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from zoo import Range, register
from zoo.data import DataInfo
from zoo.errors import ZooError
from zoo.model import FeatureInfo, Head
from zoo_plugins._shared import Norm, conv_norm_act

RANGE_STRIDES = 8.0  # a level takes locations whose largest distance to the box's sides is up to 8 of its strides
MAX_LOG_DISTANCE = 10.0  # distances are exp(.) * stride: clamp the exponent so an early step cannot overflow


# ---- building blocks -------------------------------------------------------------------------


def as_float32(value: float) -> float:
    """The float32 value nearest `value`, as a Python float: PyTorch and onnxruntime then compare with one number."""
    return float(torch.tensor(value, dtype=torch.float32))


def nms_mask(
    boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float, score_threshold: float
) -> torch.Tensor:
    """Greedy class-aware NMS over a batch, as ONNX NonMaxSuppression selects: boxes (N, M, 4) XYXY, scores
    (N, C, M) -> a (N, C, M) float mask, 1 where (image, class, box) is kept.

    Per image and class: boxes scoring more than `score_threshold`, best first; a box is dropped when its IoU
    with a box already kept is more than `iou_threshold`; at most `max_per_class` are kept.
    """
    from torchvision.ops import nms

    keep = torch.zeros_like(scores)
    n, c, _ = scores.shape
    for i in range(n):
        for k in range(c):
            s = scores[i, k]
            idx = torch.nonzero(s > score_threshold).flatten()
            if idx.numel() == 0:
                continue
            kept = nms(boxes[i, idx].float(), s[idx].float(), iou_threshold)[:max_per_class]
            keep[i, k, idx[kept]] = 1.0
    return keep


class ClassNMS(torch.autograd.Function):
    """`nms_mask` in PyTorch; in the exported graph, ONNX NonMaxSuppression (selected (batch, class, box)
    triples) scattered into the same (N, C, M) mask."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
        return nms_mask(boxes, scores, max_per_class, iou_threshold, score_threshold)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold, score_threshold):
        max_out = g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64))
        iou = g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        thr = g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32))
        # center_point_box=0 reads [y1, x1, y2, x2]; XYXY works as well: IoU does not change when x and y swap
        selected = g.op("NonMaxSuppression", boxes, scores, max_out, iou, thr, center_point_box_i=0)
        zeros = g.op("ConstantOfShape", g.op("Shape", scores), value_t=torch.tensor([0.0], dtype=torch.float32))
        ones = g.op(
            "ConstantOfShape",
            g.op("Shape", selected, start_i=0, end_i=1),
            value_t=torch.tensor([1.0], dtype=torch.float32),
        )
        return g.op("ScatterND", zeros, selected, ones)


def level_plan(
    feature_info: list[FeatureInfo], image_size: tuple[int, int], min_stride: int, num_levels: int
) -> tuple[list[int], int]:
    """Which backbone levels the head uses: (levels, count). The levels, fine to coarse, feed the top-down pyramid;
    the first `count` of them are predicted on. They start at the first level whose stride (input size / its size at
    the training size) is at least `min_stride`; of consecutive levels with one size, the deepest stands for them."""
    distinct = [
        i for i, f in enumerate(feature_info) if i + 1 == len(feature_info) or feature_info[i + 1].size != f.size
    ]
    stride = {
        i: max(image_size[0] / feature_info[i].size[0], image_size[1] / feature_info[i].size[1]) for i in distinct
    }
    coarse = [i for i in distinct if stride[i] >= min_stride - 1e-6] or [distinct[-1]]
    levels = [i for i in distinct if i >= coarse[0]]
    return levels, min(num_levels, len(levels))


class FCOSHead(Head):
    """Class logits, box distances and centre-ness at every location of each level in training;
    boxes, scores, labels and num_detections after NMS in the deployed model."""

    task = "detection"
    output_names = ("boxes", "scores", "labels", "num_detections")
    monitor, monitor_mode = "map_50", "max"
    dynamic_size = False  # the location grid is fixed by the training input size

    def __init__(
        self,
        feature_info: list[FeatureInfo],
        info: DataInfo,
        width: int,
        tower_depth: int,
        norm: str,
        min_stride: int,
        num_levels: int,
        center_radius: float,
        focal_alpha: float,
        focal_gamma: float,
        score_threshold: float,
        iou_threshold: float,
        pre_nms_topk: int,
        max_detections: int,
    ):
        super().__init__()
        if not feature_info or any(f.size is None for f in feature_info):
            raise ZooError(
                "head=detection needs the backbone's feature sizes (FeatureInfo.size); "
                "build it with zoo.model.build_model"
            )
        self.num_classes = info.num_classes
        self.center_radius, self.focal_alpha, self.focal_gamma = center_radius, focal_alpha, focal_gamma
        self.score_threshold, self.iou_threshold = as_float32(score_threshold), as_float32(iou_threshold)
        self.pre_nms_topk, self.max_detections = pre_nms_topk, max_detections

        self.image_size = tuple(int(s) for s in info.size)
        chain, count = level_plan(feature_info, self.image_size, min_stride, num_levels)
        self.levels = chain  # backbone levels feeding the pyramid, fine to coarse
        self.num_out = count  # the first `count` of them carry predictions
        self.sizes = [tuple(int(s) for s in feature_info[i].size) for i in chain]
        if any(min(s) < 1 for s in self.sizes):
            raise ZooError(f"head=detection: a feature level is empty at input size {self.image_size}")
        self.lateral = nn.ModuleList(nn.Conv2d(feature_info[i].channels, width, 1) for i in chain)

        def tower() -> nn.Sequential:
            layers = []
            for _ in range(tower_depth):
                layers += conv_norm_act(width, width, norm)
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_pred = nn.Conv2d(width, self.num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(width, 4, 3, padding=1)
        self.ctr_pred = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(count))
        for m in [*self.cls_tower, *self.box_tower, self.cls_pred, self.box_pred, self.ctr_pred]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_pred.bias, -math.log((1 - 0.01) / 0.01))  # every location starts at p = 0.01

        # The location grid, fixed by the input size: centres of each output level's cells, in input pixels.
        h_in, w_in = self.image_size
        points, strides, ranges, bounds = [], [], [], [0.0]
        self.level_strides = []  # input pixels per cell of each output level
        for j in range(count):
            h, w = self.sizes[j]
            sy, sx = h_in / h, w_in / w
            stride = (sx + sy) / 2
            ys, xs = torch.meshgrid((torch.arange(h) + 0.5) * sy, (torch.arange(w) + 0.5) * sx, indexing="ij")
            points.append(torch.stack([xs.flatten(), ys.flatten()], dim=1))
            strides.append(torch.full((h * w,), stride))
            bounds.append(RANGE_STRIDES * stride if j + 1 < count else math.inf)
            ranges.append(torch.tensor([[bounds[j], bounds[j + 1]]]).expand(h * w, 2))
            self.level_strides.append(stride)
        self.register_buffer("points", torch.cat(points).float(), persistent=False)  # (A, 2) x, y
        self.register_buffer("point_strides", torch.cat(strides).float(), persistent=False)  # (A,)
        self.register_buffer("point_ranges", torch.cat(ranges).float(), persistent=False)  # (A, 2) lo, hi

    # -- training outputs ----------------------------------------------------------------------

    def forward(self, features: list[torch.Tensor]):
        """(class logits (N, A, C), box distances l-t-r-b in pixels (N, A, 4), centre-ness logits (N, A)),
        A the locations of every output level, fine to coarse, row-major."""
        feats = [features[i] for i in self.levels]
        if not torch.jit.is_tracing():
            for f, s in zip(feats, self.sizes):
                if tuple(f.shape[-2:]) != s:
                    raise ZooError(
                        f"head=detection was built for {self.image_size[0]}x{self.image_size[1]} inputs "
                        f"(feature size {s}), got a feature map of {tuple(f.shape[-2:])}"
                    )
        p = [lat(f) for lat, f in zip(self.lateral, feats)]
        for i in range(len(p) - 2, -1, -1):  # top-down: each level gains the context of the coarser ones
            p[i] = p[i] + F.interpolate(p[i + 1], size=self.sizes[i], mode="nearest")
        cls, dist, ctr = [], [], []
        for j in range(self.num_out):
            c, b = self.cls_tower(p[j]), self.box_tower(p[j])
            cls.append(self.cls_pred(c).flatten(2).transpose(1, 2))
            d = (self.box_pred(b) * self.scales[j]).clamp(max=MAX_LOG_DISTANCE).exp() * self.level_strides[j]
            dist.append(d.flatten(2).transpose(1, 2))
            ctr.append(self.ctr_pred(b).flatten(1))
        return torch.cat(cls, dim=1), torch.cat(dist, dim=1), torch.cat(ctr, dim=1)

    # -- targets and loss ----------------------------------------------------------------------

    def assign(self, targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per location: the class it must predict (num_classes = background) (N, A), and its object's box (N, A, 4).

        The whole batch at once: objects are padded to the most any image has (no Python loop per image)."""
        pts, strides, ranges = self.points, self.point_strides, self.point_ranges
        n, a, bg, device = len(targets), len(pts), self.num_classes, pts.device
        most = max((len(t["labels"]) for t in targets), default=0)
        if most == 0:
            return torch.full((n, a), bg, dtype=torch.int64, device=device), pts.new_zeros(n, a, 4)
        b, lab = pts.new_zeros(n, most, 4), torch.full((n, most), bg, dtype=torch.int64, device=device)
        for i, t in enumerate(targets):
            k = len(t["labels"])
            if k:
                b[i, :k] = t["boxes"].as_subclass(torch.Tensor).to(device, torch.float32).reshape(-1, 4)
                lab[i, :k] = t["labels"].as_subclass(torch.Tensor).to(device, torch.int64).reshape(-1)
        real = lab < bg  # (N, n): padding objects take no location
        x, y = pts[None, :, 0, None], pts[None, :, 1, None]  # (1, A, 1)
        bx = b[:, None]  # (N, 1, n, 4)
        ltrb = torch.stack([x - bx[..., 0], y - bx[..., 1], bx[..., 2] - x, bx[..., 3] - y], dim=3)  # (N, A, n, 4)
        inside = (ltrb.min(dim=3).values > 0) & real[:, None]
        cx, cy = (bx[..., 0] + bx[..., 2]) / 2, (bx[..., 1] + bx[..., 3]) / 2
        radius = strides[None, :, None] * self.center_radius
        dx, dy = (x - cx).abs(), (y - cy).abs()
        reach = ltrb.max(dim=3).values
        fits = (reach >= ranges[None, :, 0:1]) & (reach <= ranges[None, :, 1:2])
        ok = inside & (dx < radius) & (dy < radius) & fits
        # an object no location took (tiny, or between two levels' ranges): the inside location nearest its centre
        missing = real & ~ok.any(dim=1)
        if missing.any():
            d = (torch.maximum(dx, dy) / strides[None, :, None]).masked_fill(~inside, math.inf)
            best = d.argmin(dim=1)  # (N, n)
            take = missing & torch.isfinite(d.gather(1, best[:, None]).squeeze(1))
            img, obj = take.nonzero(as_tuple=True)
            ok[img, best[img, obj], obj] = True
        area = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))[:, None].expand(-1, a, -1).masked_fill(~ok, math.inf)
        smallest, which = area.min(dim=2)  # (N, A): the smallest object a location may take
        positive = torch.isfinite(smallest)
        labels = torch.where(positive, lab.gather(1, which), torch.full_like(which, bg))
        boxes = b.gather(1, which[..., None].expand(-1, -1, 4))
        return labels, boxes

    def loss(self, outputs, targets: list[dict]) -> torch.Tensor:
        from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

        cls, dist, ctr = outputs
        labels, boxes = self.assign(targets)
        positive = labels < self.num_classes
        num_pos = positive.sum().clamp_min(1).float()
        onehot = F.one_hot(labels, self.num_classes + 1)[..., : self.num_classes].to(cls.dtype)
        cls_loss = sigmoid_focal_loss(cls, onehot, self.focal_alpha, self.focal_gamma, reduction="sum") / num_pos
        if not positive.any():
            return cls_loss + 0.0 * (dist.sum() + ctr.sum())  # keep every output in the graph
        pts = self.points[None].expand(len(labels), -1, -1)[positive]
        d, t = dist[positive], boxes[positive]
        pred = torch.cat([pts - d[:, :2], pts + d[:, 2:]], dim=1)
        ltrb = torch.cat([pts - t[:, :2], t[:, 2:] - pts], dim=1).clamp_min(0)
        lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
        centerness = (
            (lr.min(1).values / lr.max(1).values.clamp_min(1e-6))
            * (tb.min(1).values / tb.max(1).values.clamp_min(1e-6))
        ).sqrt()
        box_loss = (
            generalized_box_iou_loss(pred, t, reduction="none") * centerness
        ).sum() / centerness.sum().clamp_min(1e-6)
        ctr_loss = F.binary_cross_entropy_with_logits(ctr[positive], centerness, reduction="sum") / num_pos
        return cls_loss + box_loss + ctr_loss

    # -- decoding ------------------------------------------------------------------------------

    def postprocess(self, outputs) -> tuple[torch.Tensor, ...]:
        cls, dist, ctr = outputs
        n_loc, c = cls.shape[1], cls.shape[2]
        h, w = self.image_size
        scores = cls.sigmoid() * ctr.sigmoid().unsqueeze(2)  # (N, A, C)
        pts = self.points.to(dist.dtype)
        boxes = torch.cat([pts - dist[..., :2], pts + dist[..., 2:]], dim=2)
        limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        boxes = torch.minimum(boxes.clamp_min(0.0), limit)
        m = min(self.pre_nms_topk, n_loc)
        if m < n_loc:  # candidates: the locations whose best class scores highest
            _, idx = scores.max(dim=2).values.topk(m, dim=1)
            boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
            scores = scores.gather(1, idx[..., None].expand(-1, -1, c))
        scores = scores.transpose(1, 2).contiguous()  # (N, C, M)
        keep = ClassNMS.apply(boxes.contiguous(), scores, self.max_detections, self.iou_threshold, self.score_threshold)
        k = min(self.max_detections, c * m)
        ranked = torch.where(keep > 0, scores, torch.full_like(scores, -1.0)).flatten(1)
        top, order = ranked.topk(k, dim=1)
        valid = keep.flatten(1).gather(1, order) > 0
        label = torch.div(order, m, rounding_mode="floor")
        box = boxes.gather(1, (order - label * m)[..., None].expand(-1, -1, 4))
        out_boxes = torch.where(valid[..., None], box, torch.zeros_like(box))
        out_scores = torch.where(valid, top, torch.zeros_like(top))
        out_labels = torch.where(valid, label, torch.full_like(label, -1))
        num = valid.to(torch.int64).sum(dim=1)
        if k < self.max_detections:  # fewer candidates than rows: pad
            pad = self.max_detections - k
            out_boxes = F.pad(out_boxes, (0, 0, 0, pad))
            out_scores = F.pad(out_scores, (0, pad))
            out_labels = F.pad(out_labels, (0, pad), value=-1)
        return out_boxes, out_scores, out_labels, num

    def output_semantics(self) -> dict:
        """The decoding the deployed graph does, for the export's metadata."""
        return {
            "nms": {
                "score_threshold": self.score_threshold,
                "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "pre_nms_topk": self.pre_nms_topk,
                "class_aware": True,
            }
        }

    def detections(self, outputs) -> list[dict]:
        """Per image, the kept detections as torchmetrics takes them: boxes, scores, labels."""
        boxes, scores, labels, num = self.postprocess(outputs)
        return [
            {"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n]}
            for i, n in enumerate(num.tolist())
        ]

    def metrics(self):
        return detection_map(self.detections)


@functools.cache
def _detection_map_class():
    from torchmetrics.detection import MeanAveragePrecision

    class DetectionMAP(MeanAveragePrecision):
        """COCO mean average precision from the head's raw outputs: `update(outputs, targets)` decodes and
        runs NMS (the deployed path), `compute()` gives map, map_50, map_75 and mar_100."""

        keys = ("map", "map_50", "map_75", "mar_100")

        def __init__(self, decode):
            super().__init__(box_format="xyxy", iou_type="bbox")
            self._decode = decode  # a plain attribute: the head is not part of the metric's state

        def update(self, outputs, targets: list[dict]) -> None:  # type: ignore[override]
            preds = self._decode(outputs)
            truth = [
                {
                    "boxes": t["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4),
                    "labels": t["labels"].as_subclass(torch.Tensor).long().reshape(-1),
                }
                for t in targets
            ]
            super().update(preds, truth)

        def compute(self) -> dict:
            result = super().compute()
            return {k: result[k] for k in self.keys}

    return DetectionMAP


def detection_map(decode) -> torchmetrics.Metric:  # noqa: F821
    """A torchmetrics Metric: COCO mAP of the detections `decode(outputs)` gives (torchmetrics imported only here)."""
    return _detection_map_class()(decode)


# ---- the registered head -------------------------------------------------------------------------


@register.head("detection", tasks=("detection",))
def detection(
    feature_info: list,
    info: DataInfo,
    width: Annotated[int, Range(1)] = 64,
    tower_depth: Annotated[int, Range(0)] = 2,
    norm: Norm = "group",
    min_stride: int = 4,
    num_levels: Annotated[int, Range(1)] = 3,
    center_radius: Annotated[float, Range(0, min_exclusive=True)] = 1.5,
    focal_alpha: Annotated[float, Range(0, 1)] = 0.25,
    focal_gamma: Annotated[float, Range(0)] = 2.0,
    score_threshold: Annotated[float, Range(0, 1, max_exclusive=True)] = 0.05,
    iou_threshold: Annotated[float, Range(0, 1, min_exclusive=True)] = 0.6,
    pre_nms_topk: Annotated[int, Range(1)] = 1000,
    max_detections: Annotated[int, Range(1)] = 100,
) -> Head:
    """Anchor-free one-stage detector (FCOS) on a feature pyramid; decoding and NMS inside the exported graph.

    min_stride/num_levels: predict on up to num_levels backbone levels, from the first of stride >= min_stride.
    score_threshold/iou_threshold/pre_nms_topk/max_detections: decoding, as in the deployed model.
    """
    return FCOSHead(
        feature_info,
        info,
        width,
        tower_depth,
        norm,
        min_stride,
        num_levels,
        center_radius,
        focal_alpha,
        focal_gamma,
        score_threshold,
        iou_threshold,
        pre_nms_topk,
        max_detections,
    )
