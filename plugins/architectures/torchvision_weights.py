"""torchvision's weights for `model=torchvision`: its weight enums (`model.weights=DEFAULT|IMAGENET1K_V1|...`) or a
state-dict FILE, what they expect of the input, and their categories.

An enum's file comes through torchvision's own builder (`get_model(name, weights=...)`, which puts aux classifiers
and old key names right), so it lives where torchvision keeps it: `$TORCH_HOME/hub/checkpoints/<the url's last
part>`. Online, torchvision downloads it there once; offline, a file already there is used, and a missing one is
one line naming the file and the folder. Whether the host answers is asked once, in a few seconds at most.

Input statistics: the enum's `transforms()` (ImageClassification: mean, std, crop size, and the centre crop as
crop_pct = crop_size / resize_size, e.g. 224 / 232, which the export's `fit=crop` puts in its graph). googlenet and
inception_v3 were trained with `transform_input`, which turns ImageNet-normalised input into (x - 0.5) / 0.5; zoo
builds them without it and normalises with mean = std = 0.5 instead, the same function of the pixels. With N != 3 input
channels the first convolution's RGB weights are adapted by timm's `adapt_input_conv` rule (summed to one channel,
or tiled and rescaled to N) and the statistics folded to their channel mean, as for `model=timm`.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from zoo.errors import ZooError

log = logging.getLogger("zoo")

SOURCES = ("pretrained", "torchvision")
SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def weights_enum(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name)


def resolve(name: str, weights: str):
    """(the enum member, None) for an enum member's name; (None, the file) for a FILE; one line otherwise."""
    members = weights_enum(name).__members__
    if weights in members:
        return members[weights], None
    path = Path(weights).expanduser()
    if path.is_file():
        return None, path
    if "/" in weights or "\\" in weights or path.suffix in SUFFIXES:
        raise ZooError(f"model.weights={weights}: no such file (a state dict of torchvision's {name})")
    raise ZooError(
        f"model.weights={weights!r} is neither a weight of torchvision's {name} ({', '.join(members)}) nor a file"
    )


def cache_file(member) -> Path:
    """Where torchvision keeps (or would download) an enum's file."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(member.url).path).name


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Can this machine open a connection to the host of `url`? (A few seconds at most, not a minute of retries.)"""
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_available(name: str, weights: str) -> None:
    """The weights can be had without building anything: a FILE exists, the enum's file is in the cache, or its
    host answers. One line naming the file and the folder to put it in if not."""
    member, _ = resolve(name, weights)
    if member is None or cache_file(member).is_file() or reachable(member.url):
        return
    file = cache_file(member)
    raise ZooError(
        f"cannot load torchvision's {name} weights {member}: {urlparse(member.url).hostname} cannot be reached and "
        f"{file.name} is not in {file.parent}; copy it there (from {member.url}) or give model.weights=FILE"
    )


def _default_member(name: str, weights: str):
    member, _ = resolve(name, weights)
    return member or weights_enum(name).DEFAULT


def stats(name: str, weights: str, channels: int) -> dict:
    """The mean, std, crop size and centre crop (crop_pct = crop_size / resize_size) the weights expect (a FILE:
    those of the DEFAULT weights), for `channels`."""
    from zoo_plugins.architectures.torchvision_models import build_kwargs

    t = _default_member(name, weights).transforms()
    mean, std = list(t.mean), list(t.std)
    if "transform_input" in build_kwargs(name):  # trained with transform_input: (x - 0.5) / 0.5 (module docs)
        mean, std = [0.5] * 3, [0.5] * 3
    if channels != 3:  # the first convolution's RGB weights are folded (adapt_input_conv): so are the statistics
        mean, std = [sum(mean) / 3] * channels, [sum(std) / 3] * channels
    crop_pct = int(t.crop_size[0]) / int(t.resize_size[0])
    return {"mean": mean, "std": std, "size": int(t.crop_size[0]), "crop_pct": crop_pct}


def categories(name: str, weights: str) -> list[str]:
    """The weights' category names (a FILE: those of the DEFAULT weights), the labels of their classifier."""
    return list(_default_member(name, weights).meta["categories"])


def state_dict(name: str, weights: str, channels: int, conv: str) -> dict:
    """The weights as a state dict of the whole model (aux classifiers dropped), the first convolution (`conv`,
    its module path) adapted to `channels` input channels."""
    import torch
    import torchvision

    member, file = resolve(name, weights)
    if member is not None:
        check_available(name, weights)
        try:
            state = torchvision.models.get_model(name, weights=member, progress=False).state_dict()
        except Exception as e:  # a damaged cached file, a download cut off
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ZooError(
                f"cannot load torchvision's {name} weights {member} ({cache_file(member)}): {first}"
            ) from None
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception:  # not a pickle, or one holding more than tensors (torch's advice to unpickle it: no)
            raise ZooError(
                f"model.weights={file}: not a state dict file (a torch file of tensors, as "
                "torch.save(model.state_dict()) writes)"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ZooError(f"model.weights={file}: not a state dict (names to tensors) of torchvision's {name}")
    state = {k: v for k, v in state.items() if not k.split(".")[0].lower().startswith("aux")}
    key = f"{conv}.weight"
    if channels != 3 and key in state and state[key].shape[1] == 3:
        from timm.models import adapt_input_conv

        state[key] = adapt_input_conv(channels, state[key])
    return state


def check_keys(name: str, weights: str, state: dict, own: dict) -> None:
    """One line naming the first tensors of `own` (a module's state) that `state` lacks or holds in another shape."""
    misfits = [
        f"{k} ({'missing' if k not in state else f'{list(state[k].shape)}, here {list(v.shape)}'})"
        for k, v in own.items()
        if k not in state or state[k].shape != v.shape
    ]
    if misfits:
        raise ZooError(
            f"model.weights={weights} does not hold torchvision's {name}: {len(misfits)} tensor(s) do not fit, "
            f"first: {', '.join(misfits[:3])}"
        )


def weights_check(values: dict, source: str) -> Optional[dict]:
    """The pre-flight check (`register.architecture(..., weights_check=)`): None when `source` is not one of
    model=torchvision's; else, without building the model or downloading, that the weights can be had (one line
    if not), and the {"mean", "std", "size", "crop_pct"} they expect. `values`: the model node's values
    (`model_name`, `weights`; `in_channels` folds the statistics)."""
    if source not in SOURCES:
        return None
    from zoo_plugins.architectures.torchvision_models import check_name

    name, weights = values.get("model_name", "resnet18"), values.get("weights", "DEFAULT")
    check_name(name)
    check_available(name, weights)
    return stats(name, weights, int(values.get("in_channels", 3)))
