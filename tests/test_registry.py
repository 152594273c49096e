from dataclasses import dataclass

import pytest

from samfx.contracts.errors import RegistryError
from samfx.contracts.registry import Registry


@dataclass
class Cfg:
    width: int = 4


def build_a(cfg, ctx):
    return "a"


def build_b(cfg, ctx):
    return "b"


def test_qualified_and_short_names_resolve():
    reg = Registry()
    reg.add("prompt_generator", "clicks", build_a, plugin="p1", schema=Cfg)
    assert reg.get("prompt_generator", "clicks").plugin == "p1"
    assert reg.get("prompt_generator", "p1/clicks").factory is build_a


def test_same_object_twice_is_harmless():
    reg = Registry()
    reg.add("loss", "dice", build_a, plugin="p1")
    reg.add("loss", "dice", build_a, plugin="p1")
    assert len(reg.of_kind("loss")) == 1


def test_different_objects_under_one_qualified_name_is_an_error():
    reg = Registry()
    reg.add("loss", "dice", build_a, plugin="p1")
    with pytest.raises(RegistryError, match=r"loss 'p1/dice' registered twice with different factories"):
        reg.add("loss", "dice", build_b, plugin="p1")


def test_ambiguous_short_name_names_both_plugins():
    reg = Registry()
    reg.add("loss", "dice", build_a, plugin="alpha")
    reg.add("loss", "dice", build_b, plugin="beta")
    with pytest.raises(RegistryError) as err:
        reg.get("loss", "dice")
    assert str(err.value) == ("loss 'dice' is registered by several plugins (alpha, beta); "
                              "use 'alpha/dice' or 'beta/dice', or disable one plugin with SAMFX_DISABLE_PLUGINS")
    assert reg.get("loss", "beta/dice").factory is build_b


def test_unknown_name_lists_nearest():
    reg = Registry()
    for name in ("clicks", "boxes", "apg"):
        reg.add("prompt_generator", name, build_a, plugin="p")
    with pytest.raises(RegistryError) as err:
        reg.get("prompt_generator", "click", where="model.prompt.name")
    assert str(err.value).startswith("model.prompt.name: unknown prompt_generator 'click'; nearest registered: clicks")


def test_bad_kind_and_schema_are_rejected():
    reg = Registry()
    with pytest.raises(RegistryError, match="unknown kind 'encoder'"):
        reg.add("encoder", "x", build_a, plugin="p")
    with pytest.raises(RegistryError, match="must be a dataclass"):
        reg.add("loss", "x", build_a, plugin="p", schema=dict)


def test_lazy_factory_import_error_names_component():
    reg = Registry()
    reg.add("loss", "ghost", "no_such_module_xyz:build", plugin="p")
    with pytest.raises(RegistryError, match=r"loss 'p/ghost': cannot import factory 'no_such_module_xyz:build'"):
        reg.get("loss", "ghost").load_factory()
