"""Registration: schemas from signatures, declared constraints, checks at registration, collisions, idempotence,
errors, and the registry's place in the layers (it imports nothing above it)."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Annotated, Literal, Optional
from unittest import mock

import pytest

from zoo import Length, Range, ZooError
from zoo.model import Backbone, FeatureInfo, probe_features
from zoo.plugin import loading, registry
from zoo.plugin.registry import PluginDefinitionError, Registry, param

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_every_kind_has_standard_plugins():
    for kind in registry.KINDS:
        plugins = list(registry.registries[kind])
        assert plugins, kind
        for p in plugins:
            assert p.summary and p.package == "zoo" and p.module.startswith("zoo_plugins.")


def test_schema_is_read_from_the_signature():
    cnn = registry.get("architecture", "cnn")
    params = {p.name: p for p in cnn.params}
    assert "in_channels" not in params  # context, filled in by zoo
    assert params["padding_mode"].choices == ("zeros", "reflect", "replicate", "circular", "symmetric")
    assert params["depth"].default == 3 and params["depth"].base is int
    hidden = {p.name: p for p in registry.get("head", "classification").params}["hidden"]
    assert hidden.is_list and hidden.default == []


def test_check_values_rejects_bad_values_with_the_key():
    cnn = registry.get("architecture", "cnn")
    with pytest.raises(ZooError, match=r"model.padding_mode='reflct' is not one of.*did you mean 'reflect'"):
        cnn.check_values({"padding_mode": "reflct"}, "model")
    with pytest.raises(ZooError, match=r"model.depth='x' has the wrong type; expected int"):
        cnn.check_values({"depth": "x"}, "model")
    with pytest.raises(ZooError, match=r"did you mean 'width'"):
        cnn.check_values({"widht": 3}, "model")


def test_an_unknown_key_names_the_plugin_not_the_key():
    flip = registry.get("augmentation", "hflip")
    with pytest.raises(ZooError) as e:
        flip.check_values({"pp": 0.5}, "aug.ops.hflip")
    assert str(e.value) == (
        "unknown key 'aug.ops.hflip.pp' for augmentation 'hflip'; did you mean 'p'? see: zoo list augmentation hflip"
    )
    with pytest.raises(ZooError, match=r"^unknown key 'transfer.weightz' for transfer 'scratch'; did you mean"):
        registry.get("transfer", "scratch").check_values({"weightz": "x"}, "transfer")
    from zoo.train.config import compose

    with pytest.raises(ZooError, match=r"^unknown key 'aug.ops.shift.fractoin' for augmentation 'shift'; did you"):
        compose(["aug.ops.shift.fractoin=0.1"])


def test_unknown_name_suggests_close_matches():
    with pytest.raises(
        ZooError, match=r"unknown architecture 'lenet'; did you mean 'lenet5'.*see: zoo list architecture"
    ):
        registry.get("architecture", "lenet")
    assert registry.get("architecture", "zoo:lenet5").name == "lenet5"


def _fresh(kind="augmentation"):
    return Registry(kind, registry.registries[kind]._check)


def test_untyped_parameter_is_refused_at_registration():
    reg = _fresh()

    def untyped(info, strength=1.0):
        """An op with an untyped parameter."""

    with pytest.raises(PluginDefinitionError, match="'strength' has no type annotation"):
        reg.add(untyped, "untyped")


def test_unserialisable_parameter_and_missing_docstring_are_refused():
    reg = _fresh()

    def bad(info, fn: object = None):
        """Takes an object."""

    def nodoc(info, p: float = 0.5):
        pass

    with pytest.raises(PluginDefinitionError, match="cannot be set from a config"):
        reg.add(bad, "bad")
    with pytest.raises(PluginDefinitionError, match="needs a docstring"):
        reg.add(nodoc, "nodoc")


def test_architecture_must_return_a_backbone():
    reg = _fresh("architecture")

    def not_annotated(in_channels: int, width: int = 3):
        """Returns something."""

    with pytest.raises(PluginDefinitionError, match="an architecture plugin must be a Backbone subclass"):
        reg.add(not_annotated, "x")

    def ok(in_channels: int, width: int = 3, mode: Literal["a", "b"] = "a", k: Optional[int] = None) -> Backbone:
        """Fine."""

    assert reg.add(ok, "ok").name == "ok"


def test_registration_is_idempotent_and_collisions_name_both_packages():
    reg = _fresh()

    def op(info, p: float = 0.5):
        """An op."""

    first = reg.add(op, "op")
    assert reg.add(op, "op") is first  # the same object again (a module re-imported)

    def other(info, p: float = 0.5):
        """Another op with the same name in the same package."""

    with pytest.raises(PluginDefinitionError, match="registered twice"):
        reg.add(other, "op")

    token = registry.current_package.set("zoo-acme")
    try:
        reg.add(other, "op")
    finally:
        registry.current_package.reset(token)
    with mock.patch.object(loading, "_loader", []):  # no plugin packages: only this registry's entries
        with pytest.raises(
            ZooError,
            match=r"registered by package 'tests' .* and by package 'zoo-acme' "
            r".*qualified name: 'tests:op' or 'zoo-acme:op'",
        ):
            reg.get("op")
        assert reg.get("zoo-acme:op").factory is other


# ---- declared constraints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation,described",
    [
        (Annotated[float, Range(0, 1)], "float in [0, 1]"),
        (Annotated[float, Range(0, 1, max_exclusive=True)], "float in [0, 1)"),
        (Annotated[float, Range(0, 1, min_exclusive=True)], "float in (0, 1]"),
        (Annotated[int, Range(1)], "int >= 1"),
        (Annotated[float, Range(0, min_exclusive=True)], "float > 0"),
        (Annotated[int, Range(max=64)], "int <= 64"),
        (Annotated[float, Range(max=1, max_exclusive=True)], "float < 1"),
        (Optional[Annotated[int, Range(1)]], "int >= 1 or null"),
        (Annotated[Optional[int], Range(1)], "int >= 1 or null"),
        (list[Annotated[int, Range(1)]], "list[int >= 1]"),
        (Annotated[list[int], Length(min=1)], "list[int] of length >= 1"),
        (
            Annotated[list[Annotated[float, Range(0.5, 2)]], Length(1, 3)],
            "list[float in [0.5, 2]] of length 1 to 3",
        ),
        (Annotated[list[str], Length(max=2)], "list[str] of length <= 2"),
        (Annotated[tuple[int, ...], Length(2, 2)], "list[int] of length 2"),
    ],
)
def test_declared_constraints_are_read_and_described(annotation, described):
    p = param("x", annotation)
    assert p.describe() == described
    assert p.annotation == annotation


@pytest.mark.parametrize(
    "annotation,value,message",
    [
        (Annotated[float, Range(0, 1)], 1.5, "aug.ops.hflip.p=1.5 must be in [0, 1]"),
        (Annotated[float, Range(0, 1)], -0.01, "aug.ops.hflip.p=-0.01 must be in [0, 1]"),
        (Annotated[float, Range(0, 1, max_exclusive=True)], 1.0, "aug.ops.hflip.p=1.0 must be in [0, 1)"),
        (Annotated[float, Range(0, 1, min_exclusive=True)], 0, "aug.ops.hflip.p=0 must be in (0, 1]"),
        (Annotated[int, Range(1)], 0, "aug.ops.hflip.p=0 must be at least 1"),
        (Annotated[float, Range(0, min_exclusive=True)], 0.0, "aug.ops.hflip.p=0.0 must be greater than 0"),
        (Annotated[int, Range(max=64)], 65, "aug.ops.hflip.p=65 must be at most 64"),
        (Annotated[float, Range(max=1, max_exclusive=True)], 1.0, "aug.ops.hflip.p=1.0 must be less than 1"),
        (Annotated[float, Range(0, 1e-3)], 0.5, "aug.ops.hflip.p=0.5 must be in [0, 0.001]"),
        (Optional[Annotated[int, Range(1)]], 0, "aug.ops.hflip.p=0 must be at least 1"),
        (list[Annotated[int, Range(1)]], [4, 0], "aug.ops.hflip.p[1]=0 must be at least 1"),
        (Annotated[list[int], Length(min=1)], [], "aug.ops.hflip.p=[] must have at least 1 item"),
        (Annotated[list[int], Length(max=2)], [1, 2, 3], "aug.ops.hflip.p=[1, 2, 3] must have at most 2 items"),
        (Annotated[list[int], Length(2, 3)], [1], "aug.ops.hflip.p=[1] must have 2 to 3 items"),
        (Annotated[list[int], Length(2, 2)], [1], "aug.ops.hflip.p=[1] must have exactly 2 items"),
        (float, math.nan, "aug.ops.hflip.p=nan must be a finite number"),
        (float, math.inf, "aug.ops.hflip.p=inf must be a finite number"),
        (Optional[float], -math.inf, "aug.ops.hflip.p=-inf must be a finite number"),
        (list[float], [1.0, math.nan], "aug.ops.hflip.p[1]=nan must be a finite number"),
        (float, 10**400, "must be a finite number"),
        (int, 2**63, f"aug.ops.hflip.p={2**63} must fit in 64 bits (-9223372036854775808 to 9223372036854775807)"),
        (int, -(2**63) - 1, "must fit in 64 bits"),
        (list[int], [1, "x"], "aug.ops.hflip.p[1]='x' has the wrong type; expected list[int]"),
    ],
)
def test_a_value_outside_its_declaration_is_one_line_naming_the_full_key(annotation, value, message):
    p = param("p", annotation)
    with pytest.raises(ZooError) as e:
        p.check(value, "aug.ops.hflip.p")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("aug.ops.hflip.p")


@pytest.mark.parametrize(
    "annotation,value,expected",
    [
        (Annotated[float, Range(0, 1)], 0, 0.0),
        (Annotated[float, Range(0, 1)], 1, 1.0),
        (Annotated[float, Range(0, 1, max_exclusive=True)], 0.999, 0.999),
        (Annotated[float, Range(0, 1, min_exclusive=True)], 1e-9, 1e-9),
        (Annotated[int, Range(1)], 1, 1),
        (Optional[Annotated[int, Range(1)]], None, None),
        (list[Annotated[int, Range(1)]], (1, 2), [1, 2]),
        (Annotated[list[int], Length(min=1)], [0], [0]),
        (int, 2**63 - 1, 2**63 - 1),
        (int, -(2**63), -(2**63)),
    ],
)
def test_a_value_inside_its_declaration_passes_coerced(annotation, value, expected):
    assert param("p", annotation).check(value, "k") == expected


def _op(**annotated):
    """A fresh augmentation factory whose one parameter `p` has the given annotation and default."""
    ((ann, default),) = annotated.values()

    def op(info, p=default):
        """An op."""

    op.__annotations__ = {"p": ann}
    return op


def test_plugins_enforce_their_declarations_before_the_factory_is_called():
    reg = _fresh()
    calls = []

    def flip(info, p: Annotated[float, Range(0, 1)] = 0.5, sizes: list[Annotated[int, Range(1)]] = (8,)):
        """Flips."""
        calls.append(p)

    plugin = reg.add(flip, "flip")
    assert list(plugin.params[0].constraints) == [Range(0, 1)]
    with pytest.raises(ZooError, match=r"^aug\.ops\.flip\.p=1\.5 must be in \[0, 1\]$"):
        plugin.build({"info": None}, {"p": 1.5}, where="aug.ops.flip")
    with pytest.raises(ZooError, match=r"^aug\.ops\.flip\.sizes\[0\]=0 must be at least 1$"):
        plugin.build({"info": None}, {"sizes": [0]}, where="aug.ops.flip")
    assert calls == []
    plugin.build({"info": None}, {"p": 1}, where="aug.ops.flip")
    assert calls == [1.0]


@pytest.mark.parametrize(
    "annotation,default,message",
    [
        (Annotated[float, Range(0, 1)], 1.5, r"default that does not fit its declaration: p=1\.5 must be in \[0, 1\]"),
        (Annotated[int, Range(1)], 0, r"p=0 must be at least 1"),
        (list[Annotated[int, Range(1)]], (1, 0), r"p\[1\]=0 must be at least 1"),
        (Annotated[list[int], Length(min=1)], (), r"p=\[\] must have at least 1 item"),
        (float, math.nan, r"p=nan must be a finite number"),
        (Annotated[float, "between 0 and 1"], 0.5, r"Annotated metadata 'between 0 and 1', which zoo does not know"),
        (Annotated[float, Range(0, 1), Range(0, 2)], 0.5, r"more than one Range"),
        (Annotated[str, Range(1)], "a", r"Range\(1\) on a str; Range bounds an int or float"),
        (Annotated[bool, Range(0)], False, r"on a bool"),
        (Annotated[Literal[1, 2], Range(1)], 1, r"on a Literal"),
        (Annotated[list[int], Range(1)], (), r"a Range bounds each item: list\[Annotated\[int, Range\(1\)\]\]"),
        (Annotated[int, Length(min=1)], 1, r"Length\(min=1, max=None\) on an int"),
    ],
)
def test_a_bad_declaration_is_refused_at_registration(annotation, default, message):
    with pytest.raises(PluginDefinitionError, match=r"test_registry\._op\.<locals>\.op: parameter 'p' .*" + message):
        _fresh().add(_op(p=(annotation, default)), "op")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: Range(), "needs a min, a max or both"),
        (lambda: Range(1, 0), "admits no value"),
        (lambda: Range(1, 1, max_exclusive=True), "admits no value"),
        (lambda: Range(min_exclusive=True, max=1), "exclusive bound needs a value"),
        (lambda: Range("0"), "must be an int, a float or None"),
        (lambda: Range(math.nan), "must be an int, a float or None"),
        (lambda: Range(True), "must be an int, a float or None"),
        (lambda: Length(), "needs a min, a max or both"),
        (lambda: Length(-1), "int >= 0"),
        (lambda: Length(3, 2), "admits no length"),
    ],
)
def test_a_malformed_constraint_is_refused_where_it_is_written(make, message):
    with pytest.raises(PluginDefinitionError, match=message):
        make()


def test_constraints_are_frozen_and_keyword_only_where_it_reads_better():
    r = Range(0, 1, max_exclusive=True)
    assert (r.min, r.max, r.min_exclusive, r.max_exclusive) == (0, 1, False, True)
    assert r == Range(0, 1, max_exclusive=True) and hash(r) == hash(Range(0, 1, max_exclusive=True))
    with pytest.raises(TypeError):
        Range(0, 1, False, True)  # the flags are keyword-only
    with pytest.raises(AttributeError):
        r.min = 2  # type: ignore[misc]
    assert repr(Range(1)) == "Range(1)" and repr(Range(max=1)) == "Range(max=1)"
    assert Length(min=1) == Length(1, None)


def test_zoo_list_shows_the_declared_range(capsys):
    from zoo.cli import list_plugins

    reg = _fresh()

    def flip(info, p: Annotated[float, Range(0, 1)] = 0.5, k: Optional[Annotated[int, Range(1)]] = None):
        """Flips."""

    reg.add(flip, "flip")
    with mock.patch.dict(registry.registries, {"augmentation": reg}):
        assert list_plugins.run(["augmentation", "flip"]) == 0
    out = capsys.readouterr().out
    assert "float in [0, 1]" in out and "int >= 1 or null" in out


# ---- backbones: checked on the class by name, feature_info when built -------------------------------------------


def test_a_backbone_setting_feature_info_in_a_helper_registers():
    """The old check read __init__'s bytecode for `feature_info` and refused this valid backbone."""
    from torch import nn

    class Helper(Backbone):
        """Sets feature_info from a helper."""

        def __init__(self, in_channels: int, width: Annotated[int, Range(1)] = 4):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
            self._describe(width)

        def _describe(self, width: int) -> None:
            self.feature_info = [FeatureInfo(width, 1)]

        def forward(self, x):
            return [self.conv(x)]

        def stages(self):
            return [self.conv]

    class AsProperty(Helper):
        """Reports feature_info from a property."""

        @property
        def feature_info(self):
            return [FeatureInfo(self.conv.out_channels, 1)]

        @feature_info.setter
        def feature_info(self, value):
            pass

    reg = _fresh("architecture")
    for cls in (Helper, AsProperty):
        plugin = reg.add(cls, cls.__name__.lower())
        backbone = plugin.build({"in_channels": 1}, {"width": 3})
        assert [f.channels for f in probe_features(backbone, 1, (8, 8), "model=x")] == [3]


def test_a_backbone_without_feature_info_registers_and_fails_when_built():
    from torch import nn

    class NoInfo(Backbone):
        """Forgets feature_info."""

        def __init__(self, in_channels: int):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 8, 3)

        def stages(self):
            return [self.conv]

    plugin = _fresh("architecture").add(NoInfo, "noinfo")
    backbone = plugin.build({"in_channels": 1}, {})
    with pytest.raises(ZooError, match=r"^model=noinfo: the backbone does not report feature_info"):
        probe_features(backbone, 1, (8, 8), "model=noinfo")


def test_a_backbone_class_must_implement_stages():
    class NoStages(Backbone):
        """Forgets stages."""

        def __init__(self, in_channels: int):
            super().__init__()

    class Inherits(NoStages):
        """Still no stages."""

    for cls in (NoStages, Inherits):
        with pytest.raises(PluginDefinitionError, match=r"a Backbone must implement stages\(\)"):
            _fresh("architecture").add(cls, "x")


def test_return_types_are_checked_by_qualified_name_along_the_mro():
    from zoo.model import Head, Transfer

    class Lookalike:  # named like zoo's, but not zoo.model.Backbone
        """Not a backbone."""

    Lookalike.__qualname__ = "Backbone"

    def fake(in_channels: int):
        """Returns a lookalike."""

    fake.__annotations__["return"] = Lookalike

    with pytest.raises(PluginDefinitionError, match="an architecture plugin must be a Backbone subclass"):
        _fresh("architecture").add(fake, "fake")

    def head(feature_info: list, info: object):
        """A head."""

    head.__annotations__["return"] = Head

    class Strategy(Transfer):
        """A strategy."""

    assert _fresh("head").add(head, "h").name == "h"
    assert _fresh("transfer").add(Strategy, "s").name == "s"

    def wrong(lr: float = 0.1):
        """Returns a head, not a strategy."""

    wrong.__annotations__["return"] = Head
    with pytest.raises(PluginDefinitionError, match="a transfer plugin must be a Transfer subclass"):
        _fresh("transfer").add(wrong, "w")


# ---- layers: tests/test_structure.py checks every module of zoo/; here, what only the registry promises ----


def test_the_registry_and_discovery_import_no_torch_and_the_loader_is_installed():
    code = (
        "import sys\nfrom zoo.plugin import registry, discovery, kinds, loading\n"
        "assert loading._loader == [discovery.discover], loading._loader\n"
        "assert discovery.STANDARD_PACKAGE == registry.STANDARD_PACKAGE == 'zoo'\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'omegaconf', 'hydra'))\n"
        "assert not heavy and 'zoo.model' not in sys.modules, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_every_registry_question_loads_plugin_packages_through_the_hook():
    reg = _fresh()
    calls = []
    with mock.patch.object(loading, "_loader", [lambda: calls.append(1)]):
        reg.names()
        list(reg)
        with pytest.raises(ZooError):
            reg.get("nothing")
    assert calls == [1, 1, 1]
