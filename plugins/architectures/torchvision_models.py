"""Any classification model of torchvision's registry as a multi-scale Backbone: `model=torchvision
model.model_name=NAME`.

The feature levels come from torchvision's feature extraction (`create_feature_extractor`), chosen from the traced
graph, not from a table per family: the body is the graph up to the first node of the global pool or classifier
(`avgpool`, `adaptive_avg_pool2d`, `classifier`, `fc`, `head`, `heads`); within it, one level per output stride,
measured by running a probe through the graph on the meta device. A level is a node every path from the input
to the body's end passes through (a block's output, not a branch inside it), and among those at one stride the
one that closes the outermost module (ResNet's `layer1`, EfficientNet's `features.2`), the last where several do.
The layers after the deepest level (pool, classifier) are the model's own classifier (`head=pretrained_classifier`).

Weights (`model.weights=DEFAULT|IMAGENET1K_V1|...|FILE`) are torchvision's enums, loaded when a transfer strategy
asks for the architecture's own weights (`transfer.weights=pretrained` or `torchvision`): see torchvision_weights.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import warnings
from typing import Literal, Optional

import torch
import torchvision
from torch import fx, nn

from zoo import register
from zoo.errors import ZooError, unknown
from zoo.model import Backbone, FeatureInfo
from zoo.train.checkpoint import check_fits
from zoo_plugins.architectures import torchvision_weights as tvw
from zoo_plugins.architectures.timm_backbones import paths_by_stage, stage_module

# where the classifier starts: a global pool (a module, F.adaptive_avg_pool2d, or x.mean([2, 3]) in the root
# forward, as ShuffleNet and MNASNet do) or the classifier itself
HEAD = re.compile(r"^(avgpool|adaptive_avg_pool2d(_\d+)?|mean(_\d+)?|classifier|fc|head|heads)(\.|$)")
PROBES = ((512, 512), (448, 448))  # two sizes: a level's channels stay, its height and width follow the input


def classification_models() -> list[str]:
    """The names torchvision's registry holds for its classification models."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


# the registry checks a name before the factory runs, and `zoo list architecture torchvision` shows them
ModelName = Literal[tuple(classification_models())]


def check_name(name: str) -> None:
    if name not in classification_models():
        raise unknown(
            "torchvision model",
            name,
            classification_models(),
            see="zoo list architecture torchvision (the classification models of torchvision's registry)",
        )


@functools.cache
def build_kwargs(name: str) -> dict:
    """What the model is built with besides its defaults: no auxiliary classifiers (googlenet, inception_v3),
    torchvision's own initialisation asked for (no warning), and the input as given (`transform_input` off: the
    normalisation does it; see torchvision_weights.stats). Read from the model class's signature."""
    import inspect

    cls = type(on_meta(lambda: torchvision.models.get_model(name)))
    wanted = {"aux_logits": False, "init_weights": True, "transform_input": False}
    return {k: v for k, v in wanted.items() if k in inspect.signature(cls.__init__).parameters}


def on_meta(build) -> nn.Module:
    """`build()`'s model on the meta device (its structure, no memory); built on the CPU and moved there when its
    constructor computes with tensor values, which the meta device does not hold (RegNet's stage widths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                return build()
        except (NotImplementedError, RuntimeError):
            return build().to("meta")


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution of a model, the one that takes the image (its stem)."""
    return next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def full_model(name: str, in_channels: int) -> nn.Module:
    """torchvision's model, untrained, with its first convolution built for `in_channels`."""
    model = torchvision.models.get_model(name, **build_kwargs(name))
    if in_channels != 3:
        path, conv = first_conv(model)
        parent, _, leaf = path.rpartition(".")
        new = nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.bias is not None, conv.padding_mode,
        )  # fmt: skip
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model.eval()


def _trace(model: nn.Module) -> tuple[fx.GraphModule, dict]:
    """The model's eval graph and each node's qualified name, as torchvision's feature extraction names them."""
    from torchvision.models import feature_extraction as fe

    tracer = fe.NodePathTracer(**fe._set_default_tracer_kwargs(None))
    graph = tracer.trace(model.eval())
    return fx.GraphModule(tracer.root, graph), dict(tracer.node_to_qualname)


def _cuts(nodes: list[fx.Node]) -> set[fx.Node]:
    """The nodes of a topologically ordered graph that no edge jumps over: every path passes through them."""
    pos = {n: i for i, n in enumerate(nodes)}
    cuts, reach = set(), -1
    for i, n in enumerate(nodes):
        if n.op in ("placeholder", "get_attr", "output"):
            continue
        if 0 < reach <= i:
            cuts.add(n)
        reach = max([reach, i, *(pos.get(u, len(nodes)) for u in n.users)])
    return cuts


def _outermost(node: fx.Node, names: dict, order: list[fx.Node]) -> int:
    """How few parts of its qualified name a node closes: 1 when it is the last node of its top-level module."""
    parts = names[node].split(".")
    for depth in range(1, len(parts) + 1):
        prefix = parts[:depth]
        later = order[order.index(node) + 1 :]
        if not any(names.get(n, "").split(".")[:depth] == prefix for n in later):
            return depth
    return len(parts)


def _shapes(gm: fx.GraphModule, names: dict, in_channels: int) -> list[dict]:
    """Each node's output shape at the two probe sizes, run on the meta device (no memory, no compute)."""
    from torch.fx.passes.shape_prop import ShapeProp

    out = []
    for size in PROBES:
        with contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints the traceback of a failing node itself
            ShapeProp(gm).propagate(torch.zeros(1, in_channels, *size, device="meta"))
        out.append({names[n]: getattr(n.meta.get("tensor_meta"), "shape", None) for n in gm.graph.nodes if n in names})
    return out


def find_levels(name: str, in_channels: int) -> tuple[list[str], list[FeatureInfo], str]:
    """The return nodes of the feature levels (shallow to deep), their FeatureInfo, and the first head node."""
    gm, names = _trace(on_meta(lambda: full_model(name, in_channels)))
    order = [n for n in gm.graph.nodes if n.op != "output"]
    end = next((i for i, n in enumerate(order) if HEAD.match(names.get(n, ""))), None)
    if end is None:
        raise ZooError(f"model.model_name={name}: zoo finds no global pool or classifier in torchvision's {name} graph")
    body = order[:end]
    try:
        big, small = _shapes(gm, names, in_channels)
    except Exception as e:  # e.g. a vision transformer asserts its one input size
        cause = e.__cause__ or e  # ShapeProp wraps the node's own error in one naming the fx node
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ZooError(
            f"torchvision's {name} takes no input but its own size ({first}); zoo's backbones take any"
        ) from None
    best: dict[int, tuple[int, fx.Node]] = {}
    cuts = _cuts(body)
    for n in body:
        q = names.get(n)
        a, b = big.get(q), small.get(q)
        if n not in cuts or a is None or b is None or len(a) != 4 or len(b) != 4 or a[1] != b[1]:
            continue  # not a feature map (a vector, a token sequence) or channels-last
        strides = {2 ** round(math.log2(PROBES[0][i] / a[2 + i])) for i in range(2) if a[2 + i]}
        if len(strides) != 1 or a[2] == b[2]:
            continue
        stride, depth = strides.pop(), _outermost(n, names, body)
        if stride not in best or depth <= best[stride][0]:
            best[stride] = (depth, n)
    last = next((n for n in reversed(body) if n.op != "get_attr"), None)
    if not best or max(best.items())[1][1] is not last:
        raise ZooError(
            f"torchvision's {name} gives no feature map just before its classifier (a transformer over tokens?); "
            f"zoo's backbones give feature maps: use model=timm or another torchvision model"
        )
    levels = sorted(best.items())
    return (
        [names[n] for _, (_, n) in levels],
        [FeatureInfo(int(big[names[n]][1]), s) for s, (_, n) in levels],
        (names[order[end]]),
    )


def classifier_graph(model: nn.Module, last: str) -> fx.GraphModule:
    """The layers after node `last` (the deepest level) as one module that takes that level's map."""
    gm, names = _trace(model)
    order = list(gm.graph.nodes)
    start = next(i for i, n in enumerate(order) if names.get(n) == last)
    graph, env = fx.Graph(), {}
    env[order[start]] = graph.placeholder("features")
    for n in order[start + 1 :]:
        for arg in n.all_input_nodes:
            if arg not in env and arg.op == "get_attr":
                env[arg] = graph.node_copy(arg, lambda m: env[m])
            elif arg not in env:
                raise ZooError(f"torchvision's {type(model).__name__}: its classifier reads more than the last level")
        env[n] = graph.node_copy(n, lambda m: env[m])
    return fx.GraphModule(model, graph, "Classifier")


class TorchvisionBackbone(Backbone):
    """torchvision's model up to its global pool, one feature level per output stride; stages are its levels."""

    weight_sources = ("pretrained", "torchvision")

    def __init__(self, name: str, weights: str, in_channels: int):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        check_name(name)
        self.name, self.weights, self.in_channels = name, weights, in_channels
        self.return_nodes, self.feature_info, self._head_node = find_levels(name, in_channels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # train and eval graphs differ in dropout nodes: not in the body
            self.body = create_feature_extractor(
                full_model(name, in_channels), return_nodes={n: str(i) for i, n in enumerate(self.return_nodes)}
            )
        self.input_size: Optional[tuple[int, int]] = None  # the first input's size: build_model's probe

    def forward(self, x):
        if self.input_size is None:
            self.input_size = (int(x.shape[-2]), int(x.shape[-1]))
        return list(self.body(x).values())

    def stages(self) -> list[nn.Module]:
        """The body's modules by feature level, shallow to deep: a module belongs to the level its call precedes."""
        graph = self.body.eval_graph if hasattr(self.body, "eval_graph") else self.body.graph
        output = next(n for n in graph.nodes if n.op == "output")
        ends = set(output.args[0].values())
        level, stage_of_target = 0, {}
        for n in graph.nodes:
            if n.op in ("call_module", "get_attr"):
                stage_of_target.setdefault(n.target, level)
            level += n in ends
        stage_of = {}
        for p, _ in self.body.named_parameters():
            owner = max((t for t in stage_of_target if p == t or p.startswith(t + ".")), key=len, default=None)
            stage_of[p] = stage_of_target[owner] if owner is not None else 0
        count = len(self.return_nodes)
        return [stage_module(self.body, paths) for paths in paths_by_stage(self.body, stage_of, count) if paths]

    def load_source(self, source: str) -> Optional[dict]:
        """`pretrained`/`torchvision`: the weights `model.weights` names (torchvision's cache, its download, or a
        FILE); returns the mean, std and crop size they expect. None for any other source."""
        if source not in self.weight_sources:
            return None
        state = tvw.state_dict(self.name, self.weights, self.in_channels, first_conv(self.body)[0])
        if tvw.resolve(self.name, self.weights)[0] is None:  # a FILE: the whole of this model, not only the body's part
            whole = on_meta(lambda: full_model(self.name, self.in_channels)).state_dict()
            check_fits(state, whole, f"model.weights={self.weights}", f"torchvision model_name={self.name}")
        own = self.body.state_dict()
        tvw.check_keys(self.name, self.weights, state, own)
        self.body.load_state_dict({k: state[k] for k in own})
        stats = tvw.stats(self.name, self.weights, self.in_channels)
        if self.input_size is not None and stats["size"] not in self.input_size:
            tvw.log.warning(
                "model=torchvision model.model_name=%s: the weights were trained at %dx%d crops, this run's inputs are "
                "%dx%d (data.size=%d matches them)", self.name, stats["size"], stats["size"], *self.input_size,
                stats["size"],
            )  # fmt: skip
        return stats

    def classifier(self) -> tuple[nn.Module, list[str], list[str]]:
        """torchvision's own classifier (the graph after the deepest level) and the weights' category names."""
        labels = tvw.categories(self.name, self.weights)
        return classifier_graph(full_model(self.name, self.in_channels), self.return_nodes[-1]), labels, labels

    def load_classifier_source(self, tail: nn.Module, source: str) -> bool:
        """Load the classifier's part of the weights `source` names (as `load_source` reads it) into `tail`."""
        if source not in self.weight_sources:
            return False
        state = tvw.state_dict(self.name, self.weights, self.in_channels, first_conv(self.body)[0])
        own = tail.state_dict()
        tvw.check_keys(self.name, self.weights, state, own)
        tail.load_state_dict({k: state[k] for k in own})
        return True


@register.architecture("torchvision", max_params=1_000_000_000, weights_check=tvw.weights_check)
def torchvision_backbone(in_channels: int, model_name: ModelName = "resnet18", weights: str = "DEFAULT") -> Backbone:
    """Any classification model of torchvision (googlenet, squeezenet1_1, resnet50...): model.model_name=NAME.

    Feature maps per output stride through torchvision's feature extraction; stages are those levels. Weights:
    model.weights=DEFAULT, an enum member (IMAGENET1K_V1, IMAGENET1K_V2...) or a state-dict FILE, loaded by
    transfer.weights=pretrained; their mean, std, crop size and categories become the run's.
    """
    return TorchvisionBackbone(model_name, weights, in_channels)
