"""MessagePack with named fields, both ways: dataclasses out, typed and checked dataclasses in.

Payloads are maps keyed by field name, exactly what the Rust SDK (rmp-serde) writes and
reads, so slices in any language share one log. Inputs are checked against the dataclass's
annotations, with errors that name the field: "field `qty`: expected integer, got string".
"""

import dataclasses
import enum
import typing
from typing import Annotated, Any, Union

import msgpack

from .errors import InvalidInput


class Range:
    """Bounds for an integer field: `Annotated[int, Range(0, 2**32 - 1)]`."""

    def __init__(self, low: int, high: int, name: str):
        self.low, self.high, self.name = low, high, name


U32 = Annotated[int, Range(0, 2**32 - 1, "u32")]
"""An unsigned 32-bit integer, as Rust's `u32`."""
U64 = Annotated[int, Range(0, 2**64 - 1, "u64")]
"""An unsigned 64-bit integer, as Rust's `u64`."""
I64 = Annotated[int, Range(-(2**63), 2**63 - 1, "i64")]


def plain(value: Any) -> Any:
    """A value made of dicts, lists and scalars: dataclasses become maps in field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def encode(value: Any) -> bytes:
    """MessagePack with named fields."""
    return msgpack.packb(plain(value), use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class _Mismatch(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def kind_of(value: Any) -> str:
    """The kind of a decoded value, in the words `describe` uses."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _split(annotation):
    """(base type, metadata, optional?) of an annotation."""
    optional = False
    meta = ()
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        annotation, *meta = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
    if origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else Any
        inner, inner_meta, _ = _split(annotation)
        return inner, tuple(meta) + inner_meta, optional
    return annotation, tuple(meta), optional


def kind(annotation) -> str:
    """The kind `describe` lists for a field: string, integer, number, bool, bytes, list, object, any; `?` if optional."""
    base, _, optional = _split(annotation)
    origin = typing.get_origin(base) or base
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        name = "|".join(str(m.value) for m in origin)
    else:
        name = {str: "string", int: "integer", float: "number", bool: "bool", bytes: "bytes",
                list: "list", tuple: "list", dict: "object"}.get(origin)
        if name is None:
            name = "object" if dataclasses.is_dataclass(origin) else "any"
    return name + ("?" if optional else "")


def fields_of(cls) -> list:
    """(name, kind) of each field of a dataclass; nothing for anything else."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return []
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, kind(hints.get(f.name, Any))) for f in dataclasses.fields(cls)]


_SPLITS: dict = {}


def _split_cached(annotation):
    try:
        return _SPLITS[annotation]
    except (KeyError, TypeError):
        pass
    split = _split(annotation)
    try:
        _SPLITS[annotation] = split
    except TypeError:
        pass  # unhashable annotation
    return split


def _unexpected(value: Any) -> str:
    """A value as serde names it in "invalid type" errors (what the Rust SDK reports)."""
    if value is None:
        return "unit value"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {json_quote(value)}"
    if isinstance(value, (bytes, bytearray)):
        return "byte array"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def json_quote(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def _check(value: Any, annotation) -> Any:
    base, meta, optional = _split_cached(annotation)
    if value is None and optional:
        return None
    if base is Any:
        return value
    origin = typing.get_origin(base) or base
    if origin is str:
        ok = isinstance(value, str)
        if not ok:
            raise _Mismatch(f"invalid type: {_unexpected(value)}, expected a string")
    elif origin is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok:
            for m in meta:
                if isinstance(m, Range) and not m.low <= value <= m.high:
                    raise _Mismatch(f"invalid value: integer `{value}`, expected {m.name}")
    elif origin is bool:
        ok = isinstance(value, bool)
        if not ok:
            raise _Mismatch(f"invalid type: {_unexpected(value)}, expected a boolean")
    elif origin is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif origin is bytes:
        ok = isinstance(value, (bytes, bytearray))
        value = bytes(value) if ok else value
    elif origin in (list, tuple):
        ok = isinstance(value, (list, tuple))
        if ok:
            args = typing.get_args(base)
            value = [_check(v, args[0]) for v in value] if args else list(value)
    elif origin is dict:
        ok = isinstance(value, dict)
    elif isinstance(origin, type) and issubclass(origin, enum.Enum):
        try:
            return origin(value)
        except ValueError:
            expected = kind(base).replace("|", ", ")
            raise _Mismatch(f"unknown variant `{value}`, expected one of {expected}") from None
    elif dataclasses.is_dataclass(origin):
        ok = isinstance(value, (dict, list))
        if ok:
            return _build(origin, value)
    else:
        ok = isinstance(value, origin) if isinstance(origin, type) else True
    if not ok:
        raise _Mismatch(f"expected {kind(annotation)}, got {kind_of(value)}")
    return value


_PLANS: dict = {}


def _plan(cls):
    """(name, annotation, has a default, optional) of each field, computed once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        plan = []
        for f in dataclasses.fields(cls):
            annotation = hints.get(f.name, Any)
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            plan.append((f.name, annotation, has_default, _split(annotation)[2]))
        _PLANS[cls] = plan
    return plan


def _build(cls, value):
    """A dataclass from a map of named fields (or an array in field order); unknown keys are ignored."""
    plan = _plan(cls)
    if isinstance(value, (list, tuple)):
        value = {name: v for (name, *_), v in zip(plan, value)}
    if not isinstance(value, dict):
        raise _Mismatch(f"expected an object with named fields, got {kind_of(value)}")
    args = {}
    for name, annotation, has_default, optional in plan:
        if name in value:
            try:
                args[name] = _check(value[name], annotation)
            except _Mismatch as e:
                raise _Mismatch(f"field `{name}`: {e.message}") from None
        elif has_default:
            continue
        elif optional:
            args[name] = None
        else:
            raise _Mismatch(f"missing field `{name}`")
    return cls(**args)


def _sample_value(annotation):
    base, _, _ = _split(annotation)
    origin = typing.get_origin(base) or base
    if isinstance(origin, type) and issubclass(origin, enum.Enum):
        return next(iter(origin))
    if dataclasses.is_dataclass(origin):
        return sample(origin)
    return {str: "sample", int: 1, float: 1.5, bool: True, bytes: b"\x01", list: [], tuple: [], dict: {}}.get(origin)


def sample(cls):
    """An instance of dataclass `cls` with a sample value in every field (for warming up)."""
    return cls(**{name: _sample_value(annotation) for name, annotation, _, _ in _plan(cls)})


def decode_as(cls, data: bytes):
    """Decodes MessagePack into `cls` (a dataclass); raises ValueError with a message naming the field."""
    try:
        value = unpack(data)
    except Exception as e:  # any malformed MessagePack
        raise ValueError(f"not MessagePack: {e}") from None
    try:
        return _build(cls, value)
    except _Mismatch as e:
        raise ValueError(e.message) from None


def decode_input(cls, data: bytes):
    """A command's input or a projection's params. No payload (empty or nil) is an empty map."""
    if cls is None:
        return None
    if not data or data == b"\xc0":
        data = b"\x80"
    try:
        return decode_as(cls, data)
    except ValueError as e:
        raise InvalidInput(str(e)) from None
