"""Schema compilation shared by both codec implementations.

``thriftpy2.load`` gives every struct, exception and service args/result class
a ``thrift_spec`` dict ``{fid: (ttype, name, [subspec], required)}`` and a
``default_spec`` list.  Walking those dicts and tuples for every field of
every object is what makes thriftpy2's codecs slow, so each class is compiled
once, on first use, into a :class:`StructInfo` whose field types are plain
``TypeInfo`` tuples.  The pure-Python codec walks these directly; the compiled
codec turns them into C structures of its own.

A ``TypeInfo`` is ``(ttype, arg)`` where ``ttype`` is a thriftpy2 type id
(``BINARY`` = 18 included: it is written as ``STRING`` = 11 on the wire) and
``arg`` is ``None`` for base types, the element ``TypeInfo`` for lists and
sets, a ``(key, value)`` pair of ``TypeInfo`` for maps, and the class for
structs.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, NamedTuple, Optional, Tuple

__all__ = (
    "T_STOP", "T_BOOL", "T_BYTE", "T_DOUBLE", "T_I16", "T_I32", "T_I64",
    "T_STRING", "T_STRUCT", "T_MAP", "T_SET", "T_LIST", "T_BINARY",
    "WIRE_TYPES", "MIN_WIDTH", "wire_type", "StructInfo", "FieldInfo",
    "struct_info", "make_defaults",
)

T_STOP = 0
T_BOOL = 2
T_BYTE = 3
T_DOUBLE = 4
T_I16 = 6
T_I32 = 8
T_I64 = 10
T_STRING = 11
T_STRUCT = 12
T_MAP = 13
T_SET = 14
T_LIST = 15
T_BINARY = 18  # thriftpy2's own id; never written to the wire

#: Type ids that may appear on the wire, with the fewest bytes a value of that
#: type can take.  Skipping uses this to reject element types that are not
#: Thrift types and counts that could not fit in the bytes left.
MIN_WIDTH = {
    T_BOOL: 1, T_BYTE: 1, T_DOUBLE: 8, T_I16: 2, T_I32: 4, T_I64: 8,
    T_STRING: 4, T_STRUCT: 1, T_MAP: 4, T_SET: 5, T_LIST: 5,
}
WIRE_TYPES = frozenset(MIN_WIDTH)

TypeInfo = Tuple[int, Any]


def wire_type(ttype: int) -> int:
    """The type id written on the wire for a thriftpy2 type id."""
    return T_STRING if ttype == T_BINARY else ttype


class FieldInfo(NamedTuple):
    fid: int
    name: str
    type: TypeInfo
    required: bool


class StructInfo(NamedTuple):
    cls: type
    #: fields in declaration order (the order of positional service arguments)
    fields: Tuple[FieldInfo, ...]
    #: fid -> FieldInfo
    by_id: Dict[int, FieldInfo]
    #: names of the required fields, in declaration order
    required: Tuple[str, ...]
    #: name -> default value, in default_spec order
    defaults: Dict[str, Any]
    #: True when a default is a mutable object that must be copied per decode
    mutable_defaults: bool


_IMMUTABLE = (type(None), bool, int, float, str, bytes, frozenset)


def _type_info(ttype: int, sub: Any) -> TypeInfo:
    if ttype in (T_LIST, T_SET):
        if isinstance(sub, tuple):
            return (ttype, _type_info(sub[0], sub[1]))
        return (ttype, (sub, None))
    if ttype == T_MAP:
        k, v = sub
        kinfo = _type_info(k[0], k[1]) if isinstance(k, tuple) else (k, None)
        vinfo = _type_info(v[0], v[1]) if isinstance(v, tuple) else (v, None)
        return (ttype, (kinfo, vinfo))
    if ttype == T_STRUCT:
        return (ttype, sub)
    # Base types; an enum's subspec is its class, irrelevant on the wire.
    if ttype not in MIN_WIDTH and ttype != T_BINARY:
        raise TypeError("unsupported Thrift type id %r in thrift_spec" % (ttype,))
    return (ttype, None)


_cache: Dict[type, StructInfo] = {}


def struct_info(cls: type) -> StructInfo:
    """Compile (once per class) and return the :class:`StructInfo` of ``cls``."""
    info = _cache.get(cls)
    if info is not None:
        return info
    spec = getattr(cls, "thrift_spec", None)
    if not isinstance(spec, dict):
        raise TypeError("%r has no thrift_spec: not a thriftpy2 struct" % (cls,))
    fields = []
    for fid, fspec in spec.items():
        if len(fspec) == 3:
            ttype, name, required = fspec
            sub = None
        else:
            ttype, name, sub, required = fspec
        fields.append(FieldInfo(fid, name, _type_info(ttype, sub), bool(required)))
    default_spec = getattr(cls, "default_spec", None)
    if default_spec is None:
        defaults = {f.name: None for f in fields}
    else:
        defaults = dict(default_spec)
        # thriftpy2 keeps a binary field's IDL default as str; decoded binary
        # values are bytes, so a missing field must default to bytes as well.
        for f in fields:
            if f.type[0] == T_BINARY and isinstance(defaults.get(f.name), str):
                defaults[f.name] = defaults[f.name].encode("utf-8")
    info = StructInfo(
        cls=cls,
        fields=tuple(fields),
        by_id={f.fid: f for f in fields},
        required=tuple(f.name for f in fields if f.required),
        defaults=defaults,
        mutable_defaults=any(not isinstance(v, _IMMUTABLE) for v in defaults.values()),
    )
    _cache[cls] = info
    return info


def make_defaults(info: StructInfo) -> Dict[str, Any]:
    """A fresh attribute dict holding the defaults of a new decoded object.

    Mutable defaults (lists, dicts, structs) are deep-copied so decoded
    objects never share them, unlike the generated ``__init__``.
    """
    if info.mutable_defaults:
        return copy.deepcopy(info.defaults)
    return info.defaults.copy()
