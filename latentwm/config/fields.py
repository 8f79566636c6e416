"""Config sections as dataclasses (latentwm.config): building them, and the schema made from them.

`setting(default, doc, **constraints)` declares a field once: its default, its documentation and
its JSON-schema constraints (minimum, enum, ...). `from_dict` builds a section from its plain
dict the same way in a Snakemake job and in a script run by hand: unknown keys and values outside
the constraints fail with one line naming the key. `schema()` is the JSON schema Snakemake
validates config.yaml against; `python -m latentwm.config > schemas/config.schema.yaml` writes it
(a test fails when the committed file differs). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from typing import Any, TypeVar

from latentwm.core.errors import PipelineError

T = TypeVar("T")
# JSON-schema bound -> (test, symbol)
CONSTRAINTS = {
    "minimum": (operator.ge, ">="),
    "exclusiveMinimum": (operator.gt, ">"),
    "maximum": (operator.le, "<="),
    "exclusiveMaximum": (operator.lt, "<"),
}


def setting(default: Any = dataclasses.MISSING, doc: str = "", **schema: Any):
    """A dataclass field with its documentation and schema constraints; a callable default is a
    factory (a nested section or a list)."""
    meta = {"doc": doc, "schema": schema}
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _item_class(hint):
    """The dataclass of a `list[Section]` hint, else None."""
    if typing.get_origin(hint) is list:
        (arg,) = typing.get_args(hint)
        return arg if dataclasses.is_dataclass(arg) else None
    return None


def _check(where: str, value: Any, schema: dict) -> None:
    """One line for a value outside its field's constraints (None passes: it means unset)."""
    if value is None or isinstance(value, (dict, list, tuple)):
        return
    if "enum" in schema and value not in schema["enum"]:
        raise PipelineError(f"config key {where} is {value!r}; expected one of: {', '.join(map(str, schema['enum']))}")
    for key, (test, op) in CONSTRAINTS.items():
        bound = schema.get(key)
        if bound is not None and not isinstance(value, str) and not test(value, bound):
            raise PipelineError(f"config key {where} is {value!r}; expected a value {op} {bound}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting keys it does not know and values outside the
    constraints. `where` is the config path used in error messages, e.g. "tokenizer.model"."""
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
        hint, key = hints[name], f"{where}.{name}" if where else name
        item = _item_class(hint)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            # a section whose own factory sets other defaults (the dynamics stage's training
            # steps) starts from those, not from the class's
            factory = fields[name].default_factory
            base = to_dict(factory()) if factory not in (dataclasses.MISSING, hint) else {}
            value = from_dict(hint, {**base, **value}, key)
        elif item is not None and isinstance(value, list):
            value = [v if isinstance(v, item) else from_dict(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        elif isinstance(value, list) and tuple in (typing.get_origin(hint), *map(typing.get_origin, typing.get_args(hint))):
            value = tuple(value)
        _check(key, value, fields[name].metadata.get("schema", {}))
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj) -> dict[str, Any]:
    """Plain dict of a (nested) dataclass, safe for json and for weights_only checkpoints."""
    return dataclasses.asdict(obj)


# --- the JSON schema, generated -----------------------------------------------------------------

JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", tuple: "array", list: "array"}


def _json_type(hint) -> list[str]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return [t for arg in typing.get_args(hint) for t in _json_type(arg)]
    if hint is type(None):
        return ["null"]
    return [JSON_TYPES[typing.get_origin(hint) or hint]]


def _doc(cls) -> str:
    return " ".join((cls.__doc__ or "").split())


def section_schema(cls, defaults=None, fill: bool = True) -> dict:
    """Object schema of dataclass `cls`; `defaults` (an instance) overrides the class defaults, as a
    section's default_factory does (the dynamics stage's own training steps). `fill`: the section
    itself defaults to {} when absent (so Snakemake fills in its keys' defaults)."""
    defaults = defaults if defaults is not None else _instance(cls)
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    if _doc(cls):
        out["description"] = _doc(cls)
    out.update(type="object", additionalProperties=False)
    required = [f.name for f in dataclasses.fields(cls) if _required(f)]
    if required:
        out["required"] = required
    elif fill:
        out["default"] = {}
    out["properties"] = {f.name: _field_schema(f, hints[f.name], defaults) for f in dataclasses.fields(cls)}
    return out


def _required(f) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _instance(cls):
    return None if any(_required(f) for f in dataclasses.fields(cls)) else cls()


def _field_schema(f, hint, defaults) -> dict:
    meta = f.metadata
    # a None default means "unset" (a preset or the data decides): no default, so that
    # Snakemake's validate never fills one in
    value = getattr(defaults, f.name) if defaults is not None and f.default is not None else None
    if dataclasses.is_dataclass(hint):
        out = section_schema(hint, value)
        if meta.get("doc"):
            out["description"] = meta["doc"]
        return out
    out: dict[str, Any] = {}
    schema = dict(meta.get("schema", {}))
    if "enum" not in schema:
        kinds = _json_type(hint)
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    item = _item_class(hint)
    if item is not None:
        schema["items"] = section_schema(item)
        value = [to_dict(v) for v in value] if value is not None else None
    elif isinstance(value, tuple):
        value = list(value)
    out.update(schema)
    if defaults is not None and value is not None:
        out["default"] = value
    if meta.get("doc"):
        out["description"] = meta["doc"]
    return out
SAFE_NAME = "^[A-Za-z0-9][A-Za-z0-9_]*$"
