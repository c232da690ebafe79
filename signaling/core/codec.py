"""JSON forms of the core's frozen dataclasses, driven by their type hints.

Events are stored in the ledger this way; commands and decisions cross between nodes this
way. One codec for both means a field added to a command needs no serializer of its own.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Resolved field types of a class; cached: resolving them dominated replay and export."""
    hints = _FIELD_TYPES.get(cls)
    if hints is None:
        hints = _FIELD_TYPES[cls] = typing.get_type_hints(cls)
    return hints


def encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(encode(v) for v in value)
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def decode(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        return decode(next(a for a in args if a is not type(None)), value)
    if origin is frozenset:
        return frozenset(decode(args[0], v) for v in value)
    if origin is tuple:
        return tuple(decode(args[0], v) for v in value)
    if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, Any]):
        return {k: decode(args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        inner = field_types(hint)
        return hint(**{k: decode(inner[k], v) for k, v in value.items()})
    return value
