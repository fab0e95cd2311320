"""Registration: schemas from signatures, checks at registration, collisions, idempotence, errors."""

from __future__ import annotations

from typing import Literal, Optional

import pytest

from zoo import registry
from zoo.errors import ZooError
from zoo.model import Backbone
from zoo.registry import PluginDefinitionError, Registry


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
    assert params["padding_mode"].choices == ("zeros", "reflect", "replicate", "circular")
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

    with pytest.raises(PluginDefinitionError, match="must be a Backbone subclass"):
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
    from unittest import mock

    with mock.patch("zoo.discovery.discover"):
        with pytest.raises(
            ZooError,
            match=r"registered by package 'tests' .* and by package 'zoo-acme' .*qualified name: 'tests:op' or 'zoo-acme:op'",
        ):
            reg.get("op")
        assert reg.get("zoo-acme:op").factory is other
