"""Any timm model as a multi-scale Backbone, through timm's `features_only` mode.

Weights are not a parameter of the architecture: a transfer strategy asks for them
(`Backbone.load_source`), so rebuilding a model from a checkpoint never downloads anything.
They come from the hub (`transfer.weights=timm`) or from a local copy of timm's weight file
(`transfer.weights=timm:FILE`, for machines that cannot reach the hub).
"""

from __future__ import annotations

import re
import socket
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Optional

from torch import nn

from zoo import register
from zoo.errors import ZooError, unknown
from zoo.model import Backbone, FeatureInfo
from zoo_plugins._shared import DropoutRate


def _check_name(model_name: str) -> None:
    import timm

    if not timm.is_model(model_name.split(".")[0]):
        raise unknown(
            "timm model",
            model_name,
            timm.list_models(),
            see="python -c \"import timm; print(timm.list_models('*resnet*'))\"",
        )


HUB_HOST = "huggingface.co"
MATCH_LAST = 99999  # the group id timm's group_matchers give what follows the blocks (final norm or conv, head)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can this machine open a connection to the weight hub? (A few seconds at most, not a minute.)"""
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def _hub_access():
    """Download when the hub answers; otherwise only look in the local cache, at once, instead of
    waiting out huggingface_hub's retries. Yields why the hub is off, or None."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    why = "HF_HUB_OFFLINE is set" if saved else (None if hub_reachable() else f"{HUB_HOST} cannot be reached")
    constants.HF_HUB_OFFLINE = why is not None
    try:
        yield why
    finally:
        constants.HF_HUB_OFFLINE = saved


def create_pretrained(model_name: str, file: Optional[str] = None, **kwargs) -> nn.Module:
    """timm's model with its pretrained weights, from `file` (a local copy of the hub's weight file)
    or from the hub; one clear line when neither works."""
    import timm

    if file is not None:
        if not Path(file).expanduser().is_file():
            raise ZooError(
                f"transfer.weights=timm:{file}: no such file (a copy of timm's weight file for {model_name!r})"
            )
        try:
            return timm.create_model(
                model_name, pretrained=True, pretrained_cfg_overlay={"file": str(Path(file).expanduser())}, **kwargs
            )
        except Exception as e:  # wrong model's file, not a weight file
            raise ZooError(
                f"transfer.weights=timm:{file} does not hold {model_name!r} weights: {str(e).splitlines()[0]}"
            ) from None
    with _hub_access() as offline:
        try:
            return timm.create_model(model_name, pretrained=True, **kwargs)
        except Exception as e:  # offline, unknown tag, hub refused
            why = (
                f"{offline} and they are not in the local cache; copy the weight file to this machine and give "
                f"transfer.weights=timm:FILE"
                if offline
                else str(e).splitlines()[0]
            )
            raise ZooError(f"cannot load timm's pretrained weights for {model_name!r}: {why}") from None


def pretrained_stats(model: nn.Module, channels: int) -> Optional[dict]:
    """The mean and std the pretrained weights expect, for `channels` input channels, and the centre crop they were
    evaluated with (pretrained_cfg's crop_pct, e.g. 0.875: 224 of 256) when the config states one."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        return None
    mean, std = list(cfg["mean"]), list(cfg["std"])
    if len(mean) != channels:  # timm folds RGB first-layer weights into in_chans channels; so fold the stats
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    crop = cfg.get("crop_pct")
    return {"mean": mean, "std": std, **({"crop_pct": float(crop)} if crop else {})}


def _timm_file(source: str) -> Optional[str]:
    """The weight file a `timm` / `timm:FILE` source names ("" for the hub), or None for other sources."""
    if source in ("timm", "pretrained"):  # pretrained: the architecture's own published weights, timm's here
        return ""
    if source.startswith("timm:"):
        if not source[len("timm:") :]:
            raise ZooError("transfer.weights=timm: names no file; give transfer.weights=timm:FILE or timm (the hub)")
        return source[len("timm:") :]
    return None


# ---- stages: timm's own grouping of a model's blocks, mapped onto its feature net ----------------


class _Params(nn.Module):
    """Parameters that sit directly on a module whose children fall into several stages (a ViT's position
    embedding beside its blocks), held so that the stage they belong to can list them."""

    def __init__(self, params: dict[str, nn.Parameter]):
        super().__init__()
        for name, p in params.items():
            self.register_parameter(name.replace(".", "_"), p)


def stage_module(body: nn.Module, paths: tuple[str, ...]) -> nn.Module:
    """One stage: the body's modules named by `paths`; a path `name#param` names a single parameter."""
    modules, loose = [], {}
    for path in paths:
        if "#" in path:
            owner, name = path.split("#")
            loose[f"{owner}.{name}" if owner else name] = body.get_submodule(owner).get_parameter(name)
        else:
            modules.append(body.get_submodule(path))
    if loose:
        modules.append(_Params(loose))
    return nn.ModuleList(modules)


def _timm_groups(model_name: str, in_channels: int, coarse: bool) -> tuple[Optional[dict[str, int]], object]:
    """timm's group of each parameter of the full model (by name: its layer id, shallow to deep), from the
    model's own `group_matcher`, and the matcher; (None, None) for a model that declares none. The model is built
    on the meta device: its structure only, no memory and no initialisation."""
    import timm
    import torch
    from timm.models import group_parameters

    with torch.device("meta"):
        full = timm.create_model(model_name, pretrained=False, in_chans=in_channels)
    if getattr(full, "group_matcher", None) is None:
        return None, None
    try:
        matcher = full.group_matcher(coarse=coarse)
    except (NotImplementedError, AssertionError):  # e.g. RDNet has no coarse grouping
        return None, None
    return group_parameters(full, matcher, reverse=True), matcher


def _full_names(feature_names: list[str], full_names) -> dict[str, str]:
    """Each feature-net parameter's name in the full model. timm's feature nets keep the full model's names,
    join the first two parts of a flattened Sequential with "_" (`stages_0.` for `stages.0.`), or hold the
    model under a prefix (`model.`, `body.`)."""
    exact = set(full_names)
    flat = {n.replace(".", "_", 1): n for n in full_names if "." in n}
    found = {}
    for name in feature_names:
        for candidate in (name, name.split(".", 1)[-1]):
            full = candidate if candidate in exact else flat.get(candidate)
            if full is not None:
                found[name] = full
                break
    return found


def _stage_paths(body: nn.Module, model_name: str, in_channels: int, stage_groups: str) -> tuple:
    """The stages as tuples of module paths in `body` (see `stage_module`), shallow to deep."""
    no_groups = (
        f"model.model_name={model_name} has no block structure that timm groups (no group_matcher"
        f"{'' if stage_groups == 'blocks' else ' for stages; try model.stage_groups=blocks'}), so it has no "
        "stages to unfreeze one by one: use transfer.unfreeze_stages=-1, transfer=frozen or another model"
    )
    layer_of, matcher = _timm_groups(model_name, in_channels, coarse=stage_groups == "stages")
    if layer_of is None:
        raise ZooError(no_groups)
    names = [n for n, _ in body.named_parameters()]
    full = _full_names(names, layer_of)
    if len(full) != len(names):
        lost = next(n for n in names if n not in full)
        raise ZooError(f"model.model_name={model_name}: the feature net's parameter {lost!r} is not in timm's model")
    by_id: dict[int, list[str]] = {}
    for n in names:
        by_id.setdefault(layer_of[full[n]], []).append(n)
    groups = [by_id[k] for k in sorted(by_id)]
    if isinstance(matcher, dict):  # timm's usual form: {"stem": regex, "blocks": regex or [(regex, suffix)]}
        stem, blocks = matcher.get("stem"), matcher.get("blocks") or []
        blocks = [(blocks, None)] if isinstance(blocks, str) else list(blocks)
        in_block = [re.compile(r) for r, suffix in blocks if suffix != (MATCH_LAST,)]
        if stem is not None and len(groups) > 1 and all(re.match(stem, full[n]) for n in groups[0]):
            groups[:2] = [groups[0] + groups[1]]  # the stem joins the first block: too small to unfreeze alone
        while len(groups) > 1 and not any(r.match(full[n]) for r in in_block for n in groups[-1]):
            groups[-2:] = [groups[-2] + groups[-1]]  # so does a final norm or conv after the blocks (DenseNet's)
    if len(groups) < 2:
        raise ZooError(no_groups)
    return paths_by_stage(body, {n: i for i, g in enumerate(groups) for n in g}, len(groups))


def paths_by_stage(body: nn.Module, stage_of: dict[str, int], count: int) -> tuple[tuple[str, ...], ...]:
    """The `count` stages as tuples of module paths in `body` (see `stage_module`), from each parameter's stage:
    the largest modules whose parameters all fall in one stage, and single parameters where they do not."""
    paths: list[list[str]] = [[] for _ in range(count)]

    def place(module: nn.Module, prefix: str) -> None:
        below = {stage_of[prefix + n] for n, _ in module.named_parameters()}
        if not below:
            return
        if len(below) == 1:
            paths[below.pop()].append(prefix.rstrip("."))
            return
        for n, _ in module.named_parameters(recurse=False):
            paths[stage_of[prefix + n]].append(f"{prefix.rstrip('.')}#{n}")
        for n, child in module.named_children():
            place(child, f"{prefix}{n}.")

    place(body, "")
    return tuple(tuple(p) for p in paths)


class TimmBackbone(Backbone):
    """Wraps timm's feature net: its feature levels, and its blocks grouped into stages as timm groups them."""

    weight_sources = ("timm", "timm:FILE", "pretrained")

    def __init__(
        self,
        model_name: str,
        in_channels: int,
        out_indices: Optional[list[int]],
        drop_path_rate: float,
        stage_groups: str = "stages",
    ):
        super().__init__()
        import timm

        _check_name(model_name)
        self.model_name, self.in_channels, self.stage_groups = model_name, in_channels, stage_groups
        self._stage_paths: Optional[tuple] = None  # what stages() holds, worked out on its first call
        self._kwargs = {"features_only": True, "in_chans": in_channels}
        if out_indices is not None:
            self._kwargs["out_indices"] = tuple(out_indices)
        if drop_path_rate > 0:
            self._kwargs["drop_path_rate"] = drop_path_rate
        try:
            self.body = timm.create_model(model_name, pretrained=False, **self._kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise ZooError(
                f"timm cannot build {model_name!r} as a feature backbone: {str(e).splitlines()[0]}"
            ) from None
        fi = self.body.feature_info
        self.feature_info = [FeatureInfo(c, r) for c, r in zip(fi.channels(), fi.reduction())]

    def forward(self, x):
        return list(self.body(x))

    def stages(self) -> list[nn.Module]:
        """timm's own groups of this model (its `group_matcher`: ResNet's layer1-4, EfficientNet's and MobileNet's
        block stacks, ConvNeXt's stages, Xception's blocks; one group per block with model.stage_groups=blocks),
        shallow to deep, the stem joined to the first."""
        if self._stage_paths is None:
            self._stage_paths = _stage_paths(self.body, self.model_name, self.in_channels, self.stage_groups)
        return [stage_module(self.body, paths) for paths in self._stage_paths]

    def load_source(self, source: str) -> Optional[dict]:
        """`timm` (or `pretrained`): timm's pretrained weights from the hub (once, then its cache); `timm:FILE`: from
        a local copy of the hub's weight file. Returns the mean/std they expect; None for any other source."""
        file = _timm_file(source)
        if file is None:
            return None
        pretrained = create_pretrained(self.model_name, file or None, **self._kwargs)
        self.body.load_state_dict(pretrained.state_dict())
        return pretrained_stats(pretrained, self.in_channels) or {}

    def classifier(self) -> tuple[nn.Module, list[str], list[str]]:
        """timm's own classifier for this model: the layers after the deepest feature level (final
        convs and norms, pooling, the linear layer) as one module on that level; its label names and
        their synset ids."""
        import timm
        from timm.data import ImageNetInfo, infer_imagenet_subset
        from timm.models import FeatureListNet

        if not isinstance(self.body, FeatureListNet):  # e.g. vision transformers: their head pools tokens
            raise ZooError(
                f"{self.model_name!r} has no classifier that follows its feature levels; use head=classification"
            )
        full = timm.create_model(self.model_name, pretrained=False, in_chans=self.in_channels)
        modules = [m["module"] for m in full.feature_info]
        if self._kwargs.get("out_indices") is not None and max(self._kwargs["out_indices"]) != len(modules) - 1:
            raise ZooError(
                "timm's classifier needs the deepest feature level: "
                f"drop model.out_indices or include {len(modules) - 1}"
            )
        names = [name for name, _ in full.named_children()]
        last = modules[-1].split(".")[0]
        if last not in names:
            raise ZooError(
                f"{self.model_name!r} has no classifier that follows its feature levels; use head=classification"
            )
        tail = nn.Sequential(OrderedDict((n, getattr(full, n)) for n in names[names.index(last) + 1 :]))
        subset = infer_imagenet_subset(full)
        if subset is None:
            raise ZooError(
                f"{self.model_name!r} was not trained on an ImageNet label set that zoo knows; use head=classification"
            )
        label_set = ImageNetInfo(subset)
        return tail, list(label_set.label_descriptions()), list(label_set.label_names())

    def load_classifier_source(self, tail: nn.Module, source: str) -> bool:
        """Load timm's pretrained weights named by `source` (as `load_source` reads it) into a module made by
        `classifier()`; False for a source that is not timm's."""
        file = _timm_file(source)
        if file is None:
            return False
        full = create_pretrained(self.model_name, file or None, in_chans=self.in_channels)
        keep = {k: v for k, v in full.state_dict().items() if k.split(".")[0] in dict(tail.named_children())}
        tail.load_state_dict(keep)
        return True


def _in_cache(cfg) -> bool:
    """Whether timm's weight file for a pretrained cfg is already on this machine (Hugging Face's or torch's cache)."""
    import torch
    from huggingface_hub import try_to_load_from_cache

    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, n), str) for n in names)
    return bool(cfg.url) and (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).is_file()


def weights_check(values: dict, source: str) -> Optional[dict]:
    """The pre-flight check (`register.architecture(..., weights_check=)`): None when `source` is not one of
    model=timm's; else, without building the model or downloading, that the weights can be had (a `timm:FILE`
    exists, the hub answers, or they are in the local cache; one line if not) and the {"mean", "std", "size",
    "crop_pct"} they expect. `values`: the model node's values (`model_name`; `in_channels` folds the statistics)."""
    import timm

    file = _timm_file(source)
    if file is None:
        return None
    name = values.get("model_name", "resnet18")
    _check_name(name)
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        raise ZooError(f"timm has no pretrained weights for {name!r}; use transfer=scratch or another model")
    if file and not Path(file).expanduser().is_file():
        raise ZooError(f"transfer.weights=timm:{file}: no such file (a copy of timm's weight file for {name!r})")
    if not file and not _in_cache(cfg):
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else (None if hub_reachable() else "")
        if why is not None:
            raise ZooError(
                f"cannot load timm's pretrained weights for {name!r}: {why or HUB_HOST + ' cannot be reached'} and "
                f"they are not in the local cache; copy the weight file to this machine and give transfer.weights="
                f"timm:FILE"
            )
    channels = int(values.get("in_channels", 3))
    stats = pretrained_stats(type("Cfg", (), {"pretrained_cfg": cfg.to_dict()})(), channels) or {}
    return {**stats, "size": int(cfg.input_size[-1])}


@register.architecture("timm", max_params=1_000_000_000, weights_check=weights_check)  # a named hub model
def timm_backbone(
    in_channels: int,
    model_name: str = "resnet18",
    out_indices: Optional[list[int]] = None,
    drop_path_rate: DropoutRate = 0.0,
    stage_groups: Literal["stages", "blocks"] = "stages",
) -> Backbone:
    """Any timm model (ResNet, MobileNet, EfficientNet, ConvNeXt...) via features_only; model.model_name=NAME.

    Its stages (what transfer.unfreeze_stages counts and layer_decay scales) are timm's own groups: `stages`
    (ResNet's layer1-4, EfficientNet's block stacks) or `blocks` (one per residual block, timm's layer-decay
    groups); the stem belongs to the first.
    """
    return TimmBackbone(model_name, in_channels, out_indices, drop_path_rate, stage_groups)
