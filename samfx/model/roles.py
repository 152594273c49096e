"""The one table of a model's component roles: attribute, parameter prefix, registry kind, recipe slot,
the names stages use in ``trainable``, and what a base checkpoint may lack. Trainable selection,
checkpoint loading and ``samfx show`` read it instead of knowing the prefixes themselves.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from samfx.model.segmentation import SegmentationModel


@dataclass(frozen=True)
class Role:
    """One kind of component in a :class:`SegmentationModel`.

    ``many``: a ModuleDict of named components (``<attribute>.<key>.*`` parameters, trainable name
    ``<member>:<key>``, all of them ``<group>``); otherwise one module (``<attribute>.*``, name
    ``<attribute>``). ``base_optional``: missing from a base checkpoint (SAM's file) by design."""

    attribute: str
    kind: str
    slot: str
    many: bool = False
    member: str = ""
    group: str = ""
    base_optional: bool = False


ROLES: tuple[Role, ...] = (
    Role("image_encoder", "image_encoder", "model.image_encoder"),
    Role("prompt_encoder", "prompt_encoder", "model.prompt_encoder"),
    Role("mask_decoder", "mask_decoder", "model.mask_decoder"),
    Role("prompt_generators", "prompt_generator", "model.prompt", many=True, member="prompt", group="prompt",
         base_optional=True),
    Role("adapters", "adapter", "model.adapters", many=True, member="adapter", group="adapters",
         base_optional=True),
    Role("temporal", "temporal_module", "model.temporal", base_optional=True),
)


@dataclass(frozen=True)
class Part:
    """One built component: its trainable name, parameter prefix (ending in '.') and module."""

    name: str
    prefix: str
    role: Role
    module: nn.Module


def parts(model: SegmentationModel) -> Iterator[Part]:
    """Every component of `model`, in table order (absent optional ones skipped)."""
    for role in ROLES:
        obj = getattr(model, role.attribute, None)
        if obj is None:
            continue
        if role.many:
            for key, module in obj.items():
                yield Part(f"{role.member}:{key}", f"{role.attribute}.{key}.", role, module)
        else:
            yield Part(role.attribute, f"{role.attribute}.", role, obj)


def component_modules(model: SegmentationModel) -> dict[str, nn.Module]:
    """Components by the names stages use in ``trainable`` (``image_encoder``, ``prompt:apg``, ...)."""
    return {p.name: p.module for p in parts(model)}


def prefix_of(model: SegmentationModel, name: str) -> str | None:
    """The parameter prefix of trainable name `name`: a component or a group (``prompt``, ``adapters``)."""
    for role in ROLES:
        if role.many and name == role.group:
            return f"{role.attribute}."
    return next((p.prefix for p in parts(model) if p.name == name), None)


def group_names() -> list[str]:
    return [r.group for r in ROLES if r.many]


def optional_prefixes() -> tuple[str, ...]:
    """Prefixes of the roles samfx adds to a base model (prompt generators, adapters, temporal)."""
    return tuple(f"{r.attribute}." for r in ROLES if r.base_optional)


def allowed_missing_from_base(model: SegmentationModel) -> list[str]:
    """Key prefixes a base checkpoint of the model's family may lack: whole optional roles, and the
    parameters each component adds on top of its family (``new_parameter_prefixes``)."""
    out = list(optional_prefixes())
    for part in parts(model):
        new = getattr(part.module, "new_parameter_prefixes", None)
        if not part.role.base_optional and callable(new):
            out += [part.prefix + p for p in new()]
    return out
