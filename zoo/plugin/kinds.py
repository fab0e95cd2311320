"""The rules of each plugin kind: the context zoo gives its factory, what it must return, what else it may declare.

What each kind's factory must return is listed in zoo.plugin.registry's docstring; the checks here run when a
plugin registers (zoo.plugin.registry.Registry.add), on the factory itself, never calling it: a class's MRO or a
function's return annotation names the zoo.model base class, so nothing here imports zoo.model or torch.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from zoo import tasks
from zoo.errors import ZooError
from zoo.params import PluginDefinitionError, article

KINDS = ("architecture", "head", "augmentation", "transfer", "dataset", "interpretation")

CONTEXT = {
    "architecture": ("in_channels",),
    "head": ("feature_info", "info"),
    "augmentation": ("info",),
    "transfer": (),
    "dataset": ("seed",),
    "interpretation": (),
}

# Context a factory gets only when its signature names it: a head that reuses the backbone's own
# layers (timm's pretrained classifier) asks for `backbone`; other heads never see it.
OPTIONAL_CONTEXT = {"head": ("backbone",)}

RETURNS = {
    "architecture": "Backbone",
    "head": "Head",
    "augmentation": "transform",
    "transfer": "Transfer",
    "dataset": "DataBundle",
    "interpretation": "Explainer",
}

# what a kind may declare besides tasks=: an architecture's smallest input and budgets above zoo's (zoo.model), and
# weights_check(values, source) -> {"mean", "std", "size", "crop_pct"} | None, the pre-flight of its own weights
# (zoo.train.experiment.check_weights); a dataset's writer(bundle, output: Path) -> dict, which writes a DataBundle in
# that dataset's layout into the empty folder `output` and returns counts per split and class (zoo.report.convert),
# and its inventory(values) -> the files and labels zoo data check reads (zoo.train.datacheck)
# the declarations that are functions, and the form each must have
HOOKS = {
    "weights_check": "(values, source) -> dict or None",
    "inventory": "(values) -> dict or None",
    "writer": "(bundle, output: Path) -> dict",
}
EXTRA = {
    "architecture": ("min_size", "max_params", "max_activations", "weights_check"),
    "dataset": ("inventory", "writer"),  # zoo data check's list of files and labels; zoo data convert's writer
}


def check_extra(plugin: Any) -> None:
    """Declarations other than tasks= (an architecture's min_size) are checked when the plugin (a
    zoo.plugin.registry.Plugin) registers."""
    where = f"{plugin.module}.{getattr(plugin.factory, '__qualname__', plugin.name)}"
    allowed = EXTRA.get(plugin.kind, ())
    for key in plugin.extra:
        if key not in allowed:
            also = f"; {article(plugin.kind)} declares only tasks=" + "".join(f", {a}=" for a in allowed)
            raise PluginDefinitionError(f"{where}: register.{plugin.kind}() takes no {key}={also}")
    for key, form in HOOKS.items():
        if key in plugin.extra and not callable(plugin.extra[key]):
            raise PluginDefinitionError(f"{where}: {key}= must be a function {form}")
    for key in ("max_params", "max_activations"):
        value = plugin.extra.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise PluginDefinitionError(f"{where}: {key}={value!r} must be an int >= 1")
    size = plugin.extra.get("min_size")
    if size is None or callable(size):
        return
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise PluginDefinitionError(
            f"{where}: min_size={size!r} must be an int >= 1 (pixels) or a function of the parameters returning one"
        )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _derives(cls: Any, qualified: str) -> bool:
    """Whether `cls` is a class with `qualified` (e.g. zoo.model.Backbone) in its MRO: no import of it needed."""
    return inspect.isclass(cls) and any(_qualified(c) == qualified for c in cls.__mro__)


def check_returns(base_name: str) -> Callable[[Any], None]:
    """The registration check of a kind whose factory returns zoo.model's `base_name` (Backbone, Head, ...):
    a subclass, or a function annotated `-> base_name`; a Backbone class implements stages(), a Head class
    fits zoo.tasks' table."""
    qualified = f"zoo.model.{base_name}"

    def check(plugin: Any) -> None:
        f = plugin.factory
        if inspect.isclass(f):
            ok = _derives(f, qualified)
        else:
            try:
                ret = typing.get_type_hints(f).get("return")
            except Exception:
                ret = None
            ok = _derives(ret, qualified)
        if not ok:
            raise PluginDefinitionError(
                f"{plugin.module}.{getattr(f, '__qualname__', f)}: {article(plugin.kind)} plugin must be a "
                f"{base_name} subclass or a function annotated `-> {base_name}` (from zoo.model)"
            )
        if base_name == "Backbone" and inspect.isclass(f):
            _check_backbone_class(f, plugin)
        if base_name == "Head":
            _check_head_class(f if inspect.isclass(f) else ret, plugin)

    return check


def _check_backbone_class(cls: type, plugin: Any) -> None:
    """A Backbone class must implement stages(): checked on the class, unbuilt. feature_info is an instance
    attribute (set in __init__, a helper or a property), so zoo checks it when the backbone is built."""
    owner = next((c for c in cls.__mro__ if "stages" in vars(c)), None)
    if owner is None or _qualified(owner) == "zoo.model.Backbone":
        raise PluginDefinitionError(
            f"{plugin.module}.{cls.__qualname__}: a Backbone must implement stages() -> list[nn.Module], its "
            f"parameter groups shallow to deep (used to freeze and to set per-stage learning rates)"
        )


def _check_head_class(cls: type, plugin: Any) -> None:
    """A Head class that declares `task`/`output_names` as class attributes must fit zoo.tasks' table."""
    task, names = getattr(cls, "task", "") or "", tuple(getattr(cls, "output_names", ()) or ())
    where = f"{plugin.module}.{cls.__qualname__}"
    if task and plugin.tasks is not None and task not in plugin.tasks:
        raise PluginDefinitionError(f"{where}: a {task} head is registered for tasks {', '.join(plugin.tasks)}")
    try:
        for t in [task] if task else list(plugin.tasks or ()):
            if names:
                tasks.match(t, names, where)
            else:
                tasks.task(t, where)
    except ZooError as e:
        raise PluginDefinitionError(str(e)) from None
