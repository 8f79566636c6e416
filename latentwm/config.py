"""Config dataclasses from plain dicts: unknown keys fail loudly, nested dataclasses recurse."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from .errors import PipelineError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting keys it does not know.

    `where` is the config path used in error messages, e.g. "tokenizer.model".
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PipelineError(
            f"config key {where + '.' if where else ''}{unknown[0]} is unknown; "
            f"expected one of: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{name}" if where else name)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj) -> dict[str, Any]:
    """Plain dict of a (nested) dataclass, safe for json and for weights_only checkpoints."""
    return dataclasses.asdict(obj)
