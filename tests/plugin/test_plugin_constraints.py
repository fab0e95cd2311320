"""The standard plugins declare their parameters' ranges (`Annotated[float, Range(0, 1)]`) and list lengths
(`Length(min=1)`), and the registry refuses a value just outside each one with one line naming the key, before
the factory is called."""

from __future__ import annotations

import pytest

from zoo import Range
from zoo.errors import ZooError
from zoo.plugin import registry

WHERE = {"architecture": "model", "head": "head", "transfer": "transfer", "dataset": "data"}


def _outside(r: Range, base: type) -> list:
    """Values just outside the range: at an excluded bound, or one step (1, or 0.01 for floats) past an included one."""
    step = 1 if base is int else 0.01
    values = []
    if r.min is not None:
        values.append(r.min if r.min_exclusive else r.min - step)
    if r.max is not None:
        values.append(r.max if r.max_exclusive else r.max + step)
    return values


def _cases():
    cases = []
    for kind in registry.KINDS:
        for plugin in registry.registries[kind]:
            if plugin.package != "zoo":
                continue
            for p in plugin.params:
                values = _outside(p.range, p.base) if p.range is not None else []
                if p.length is not None and p.length.min:  # one item too few
                    values.append([p.default[0]] * (p.length.min - 1) if p.default else [])
                for value in values:
                    cases.append(pytest.param(plugin, p, value, id=f"{kind}-{plugin.name}-{p.name}={value}"))
    return cases


CASES = _cases()


def test_the_standard_plugins_declare_ranges():
    declared = {(c.values[0].kind, c.values[0].name, c.values[1].name) for c in CASES}
    assert len(declared) > 60
    for key in [
        ("augmentation", "hflip", "p"),
        ("augmentation", "mixup", "alpha"),
        ("head", "classification", "dropout"),
        ("head", "classification", "hidden"),
        ("head", "detection", "iou_threshold"),
        ("head", "unet", "class_weights"),
        ("transfer", "finetune", "lr_scale"),
        ("dataset", "shapes", "num_images"),
        ("dataset", "digits", "shots"),
        ("architecture", "vgg", "pools"),
        ("dataset", "csv", "target_columns"),
    ]:
        assert key in declared, key


@pytest.mark.parametrize("plugin,param,value", CASES)
def test_a_value_just_outside_a_declared_range_is_a_one_line_error_naming_the_key(plugin, param, value):
    where = WHERE.get(plugin.kind, f"aug.ops.{plugin.name}")
    given = [value] if param.is_list and not isinstance(value, list) else value
    context = dict.fromkeys(plugin.context)  # never used: the value is refused before the factory is called
    with pytest.raises(ZooError) as e:
        plugin.build(context, {param.name: given}, where=where)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{where}.{param.name}") and str(value).strip("[]") in message, message
