"""Thrift compact protocol codec, pure Python.

The twin of the compiled ``aiothrift._compact``: same API, same bytes, same
objects, same exceptions.  Both follow ``BinaryCodec``'s contract
(``docs/internals.md``): the same options, limits, order of checks and
exception classes; only the wire format differs.

Wire format (Apache ``TCompactProtocol``):

* message: ``0x82``, ``version | mtype << 5`` (version 1, mtype 0..7), seqid
  as an unsigned 32-bit varint (a negative seqid is written modulo 2**32),
  the name as a varint length and UTF-8 bytes;
* field header: ``delta << 4 | ctype`` when the field id is 1..15 above the
  previous one of the same struct, else ``ctype`` and the id as a zigzag
  varint; a bool field carries its value in ``ctype`` (1 true, 2 false);
* i16/i32/i64: zigzag varints; byte: one raw byte; double: 8 bytes
  little-endian; string/binary: varint length and the bytes;
* list/set: ``size << 4 | ctype`` when size < 15, else ``0xF0 | ctype`` and
  a varint size; map: a single ``0`` byte when empty, else a varint size and
  ``kctype << 4 | vctype``; a bool element is one byte, 1 true, 2 false.

Decoding rules specific to the compact protocol (the rest is BinaryCodec's):

* varints: more than 3 bytes for an i16 (field ids too), 5 for an i32, a
  size or a seqid, 10 for an i64, or a value that does not fit in 16, 32 or
  64 bits -> ``InvalidDataError`` (CVE-2026-43871: an unbounded varint is an
  infinite loop).  Running out of input first -> ``TruncatedError``.
* sizes (string/binary/name lengths, element counts) are unsigned varints
  that must fit in an i32: 2**31..2**32-1 -> ``NegativeSizeError`` (what a
  peer reading them as i32 sees), then the limits as for the binary codec.
  Bytes left are counted with the smallest compact encoding of each type:
  8 bytes for a double, 1 for anything else.
* a field header whose low nibble is 0 is STOP (as Apache's readers do); a
  type nibble that is not a compact type (13..15; UUID is not supported)
  -> ``InvalidDataError``.
* a bool element byte is ``True`` only when it is 1 (as every Apache reader
  does); a bool field takes its value from the header.
* message header: first byte not ``0x82`` or version not 1 ->
  ``BadVersionError``.  There is no unversioned compact header, so
  ``strict_read``/``strict_write`` are accepted for symmetry and ignored.
  ``encode_message`` accepts message types 0..7 (3 bits on the wire) and
  raises ``OverflowError`` for anything else.
"""

from __future__ import annotations

import struct
from operator import index as _index
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._codec_common import (
    CompilerBase,
    Decoder,
    Encoder,
    Options,
    as_double_error,
    check_limit,
    compiler_cache,
    depth_error,
)
from ._spec import (
    T_BINARY,
    T_BOOL,
    T_BYTE,
    T_DOUBLE,
    T_I16,
    T_I32,
    T_I64,
    T_LIST,
    T_MAP,
    T_SET,
    T_STRING,
    T_STRUCT,
    make_defaults,
    struct_info,
    wire_type,
)
from .errors import (
    BadVersionError,
    InvalidDataError,
    NegativeSizeError,
    SizeLimitError,
    TruncatedError,
)
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("CompactCodec", "CompactBufferedReader")

PROTOCOL_ID = 0x82
VERSION = 1
VERSION_MASK = 0x1F
TYPE_SHIFT = 5

# Compact type ids.
CT_STOP = 0
CT_TRUE = 1
CT_FALSE = 2
CT_BYTE = 3
CT_I16 = 4
CT_I32 = 5
CT_I64 = 6
CT_DOUBLE = 7
CT_BINARY = 8
CT_LIST = 9
CT_SET = 10
CT_MAP = 11
CT_STRUCT = 12

#: wire type (thriftpy2 id) -> compact type written for it; a bool element
#: (and the bool nibble of a container header) is written as TRUE.
CTYPE = {
    T_BOOL: CT_TRUE, T_BYTE: CT_BYTE, T_I16: CT_I16, T_I32: CT_I32, T_I64: CT_I64,
    T_DOUBLE: CT_DOUBLE, T_STRING: CT_BINARY, T_LIST: CT_LIST, T_SET: CT_SET,
    T_MAP: CT_MAP, T_STRUCT: CT_STRUCT,
}
#: compact type nibble -> wire type (thriftpy2 id), None when invalid.
TTYPE: Tuple[Optional[int], ...] = (
    None, T_BOOL, T_BOOL, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE,
    T_STRING, T_LIST, T_SET, T_MAP, T_STRUCT, None, None, None,
)
#: fewest bytes a value of a wire type takes in the compact encoding.
MIN_WIDTH = {
    T_BOOL: 1, T_BYTE: 1, T_DOUBLE: 8, T_I16: 1, T_I32: 1, T_I64: 1,
    T_STRING: 1, T_STRUCT: 1, T_MAP: 1, T_SET: 1, T_LIST: 1,
}

_I16_MIN, _I16_MAX = -(1 << 15), (1 << 15) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

_S_DOUBLE = struct.Struct("<d")
_pack_double = _S_DOUBLE.pack
_unpack_double = _S_DOUBLE.unpack_from
_pack_frame = struct.Struct("!i").pack

# --------------------------------------------------------------------- varints

def _write_varint(out: bytearray, n: int) -> None:
    """Append the varint of ``n`` (0 <= n < 2**64)."""
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    _write_varint(out, n)
    return bytes(out)


def _read_varint(data: bytes, pos: int, max_bytes: int, bits: int) -> Tuple[int, int]:
    """(value, new pos) of an unsigned varint of at most ``max_bytes`` bytes.

    Reading past the end raises ``IndexError`` (-> ``TruncatedError``).
    """
    result = 0
    shift = 0
    for i in range(max_bytes):
        b = data[pos + i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >> bits:
                raise InvalidDataError("varint overflows %d bits" % bits)
            return result, pos + i + 1
        shift += 7
    raise InvalidDataError("varint longer than %d bytes" % max_bytes)


def _read_u32(data: bytes, pos: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    return _read_varint(data, pos, 5, 32)


def _read_size(data: bytes, pos: int) -> Tuple[int, int]:
    """A varint size, as the i32 a peer reads (negative when >= 2**31)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    n, pos = _read_varint(data, pos, 5, 32)
    if n > _I32_MAX:
        n -= 1 << 32
    return n, pos


def _read_i16(data: bytes, pos: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 3, 16)
    return (n >> 1) ^ -(n & 1), pos


def _read_i32(data: bytes, pos: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 5, 32)
    return (n >> 1) ^ -(n & 1), pos


def _read_i64(data: bytes, pos: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 10, 64)
    return (n >> 1) ^ -(n & 1), pos


def _read_byte(data: bytes, pos: int) -> Tuple[int, int]:
    b = data[pos]
    return b - 256 if b > 127 else b, pos + 1


_READ_INT = {T_BYTE: _read_byte, T_I16: _read_i16, T_I32: _read_i32, T_I64: _read_i64}


# Decoders (data, pos, depth) of the scalar types, one call each.

def _dec_byte(data: bytes, pos: int, depth: int) -> Tuple[int, int]:
    b = data[pos]
    return b - 256 if b > 127 else b, pos + 1


def _dec_i16(data: bytes, pos: int, depth: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 3, 16)
    return (n >> 1) ^ -(n & 1), pos


def _dec_i32(data: bytes, pos: int, depth: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 5, 32)
    return (n >> 1) ^ -(n & 1), pos


def _dec_i64(data: bytes, pos: int, depth: int) -> Tuple[int, int]:
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n, pos = _read_varint(data, pos, 10, 64)
    return (n >> 1) ^ -(n & 1), pos


def _dec_double(data: bytes, pos: int, depth: int) -> Tuple[float, int]:
    return _unpack_double(data, pos)[0], pos + 8


def _dec_bool(data: bytes, pos: int, depth: int) -> Tuple[bool, int]:
    return data[pos] == CT_TRUE, pos + 1


_SCALAR_DECODERS: Dict[int, Decoder] = {
    T_BOOL: _dec_bool, T_BYTE: _dec_byte, T_I16: _dec_i16, T_I32: _dec_i32, T_I64: _dec_i64,
    T_DOUBLE: _dec_double,
}


# --------------------------------------------------------------------- encode

def _as_int(v: Any, name: str) -> int:
    try:
        return _index(v)
    except TypeError:
        raise TypeError("%s expected an integer, got %s" % (name, type(v).__name__)) from None


def _range_error(name: str, v: int, lo: int, hi: int) -> OverflowError:
    return OverflowError("%s out of range: %d not in [%d, %d]" % (name, v, lo, hi))


def _string_bytes(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8")
    try:
        return memoryview(v)
    except TypeError:
        raise TypeError(
            "string/binary expected str or a bytes-like object, got %s" % type(v).__name__
        ) from None


def _encode_bool(out: bytearray, v: Any, depth: int) -> None:
    out.append(CT_TRUE if v else CT_FALSE)


def _encode_byte(out: bytearray, v: Any, depth: int) -> None:
    if type(v) is not int:
        v = _as_int(v, "byte")
    if not -128 <= v <= 127:
        raise _range_error("byte", v, -128, 127)
    out.append(v & 0xFF)


def _encode_i16(out: bytearray, v: Any, depth: int) -> None:
    if type(v) is not int:
        v = _as_int(v, "i16")
    if not _I16_MIN <= v <= _I16_MAX:
        raise _range_error("i16", v, _I16_MIN, _I16_MAX)
    n = (v << 1) ^ (v >> 15)
    if n < 0x80:
        out.append(n)
    else:
        _write_varint(out, n)


def _encode_i32(out: bytearray, v: Any, depth: int) -> None:
    if type(v) is not int:
        v = _as_int(v, "i32")
    if not _I32_MIN <= v <= _I32_MAX:
        raise _range_error("i32", v, _I32_MIN, _I32_MAX)
    n = (v << 1) ^ (v >> 31)
    if n < 0x80:
        out.append(n)
    else:
        _write_varint(out, n)


def _encode_i64(out: bytearray, v: Any, depth: int) -> None:
    if type(v) is not int:
        v = _as_int(v, "i64")
    if not _I64_MIN <= v <= _I64_MAX:
        raise _range_error("i64", v, _I64_MIN, _I64_MAX)
    n = (v << 1) ^ (v >> 63)
    if n < 0x80:
        out.append(n)
    else:
        _write_varint(out, n)


def _encode_double(out: bytearray, v: Any, depth: int) -> None:
    try:
        out += _pack_double(v)
    except struct.error:
        raise as_double_error(v) from None


def _encode_string(out: bytearray, v: Any, depth: int) -> None:
    b = _string_bytes(v)
    n = len(b) if isinstance(b, bytes) else b.nbytes
    if n > _I32_MAX:
        raise OverflowError("string/binary of %d bytes is too long for Thrift" % n)
    if n < 0x80:
        out.append(n)
    else:
        _write_varint(out, n)
    out += b


_SCALAR_ENCODERS: Dict[int, Encoder] = {
    T_BOOL: _encode_bool, T_BYTE: _encode_byte, T_I16: _encode_i16, T_I32: _encode_i32,
    T_I64: _encode_i64, T_DOUBLE: _encode_double, T_STRING: _encode_string,
    T_BINARY: _encode_string,
}


def _container_changed() -> RuntimeError:
    return RuntimeError("container changed size during encoding")


class _Compiler(CompilerBase):
    """The compact protocol's closures (see ``_codec_common.CompilerBase``)."""

    # -- encoders ----------------------------------------------------------

    def encoder(self, tinfo: Tuple[int, Any]) -> Encoder:
        ttype, arg = tinfo
        enc = _SCALAR_ENCODERS.get(ttype)
        if enc is not None:
            return enc
        if ttype == T_LIST or ttype == T_SET:
            return self._list_encoder(arg)
        if ttype == T_MAP:
            return self._map_encoder(arg)
        if ttype == T_STRUCT:
            return self._lazy_struct_encoder(arg)
        raise TypeError("unsupported Thrift type id %r" % (ttype,))

    def struct_encoder(self, cls: type) -> Encoder:
        enc = self.struct_encoders.get(cls)
        if enc is not None:
            return enc
        info = struct_info(cls)
        max_depth = self.opts.max_depth
        fields = []
        for f in info.fields:
            wtype = wire_type(f.type[0])
            # The long header (type byte + zigzag id) for a field whose id is
            # not 1..15 above the previous one; ``None`` ctype: a bool field,
            # whose type nibble is its value.
            zz = (f.fid << 1) ^ (f.fid >> 15) if _I16_MIN <= f.fid <= _I16_MAX else None
            if zz is None:
                raise TypeError("field id %d of %s is not an i16" % (f.fid, cls.__name__))
            fields.append((
                f.name, f.fid, None if wtype == T_BOOL else CTYPE[wtype], _varint_bytes(zz),
                self.encoder(f.type), f.required,
            ))
        fields_t = tuple(fields)
        cls_name = cls.__name__

        def encode(out: bytearray, obj: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            if not isinstance(obj, cls):
                raise TypeError("expected %s, got %s" % (cls_name, type(obj).__name__))
            d = getattr(obj, "__dict__", None)
            last = 0
            for name, fid, ctype, long_id, fenc, required in fields_t:
                v = d.get(name) if d is not None else getattr(obj, name, None)
                if v is None:
                    if required:
                        raise InvalidDataError(
                            "required field %r of %s is unset" % (name, cls_name))
                    continue
                if ctype is None:
                    ct = CT_TRUE if v else CT_FALSE
                    delta = fid - last
                    if 0 < delta <= 15:
                        out.append(delta << 4 | ct)
                    else:
                        out.append(ct)
                        out += long_id
                    last = fid
                    continue
                delta = fid - last
                if 0 < delta <= 15:
                    out.append(delta << 4 | ctype)
                else:
                    out.append(ctype)
                    out += long_id
                last = fid
                fenc(out, v, depth)
            out.append(0)

        self.struct_encoders[cls] = encode
        return encode

    def _list_encoder(self, einfo: Tuple[int, Any]) -> Encoder:
        etype = einfo[0]
        ctype = CTYPE[wire_type(etype)]
        max_depth = self.opts.max_depth
        eenc = self.encoder(einfo)

        def header(out: bytearray, n: int) -> None:
            if n < 15:
                out.append(n << 4 | ctype)
            else:
                out.append(0xF0 | ctype)
                _write_varint(out, n)

        if etype == T_DOUBLE:
            def encode(out: bytearray, v: Any, depth: int) -> None:
                depth += 1
                if depth > max_depth:
                    raise depth_error(max_depth)
                n = len(v)
                header(out, n)
                try:
                    out += struct.pack("<%dd" % n, *v)
                except struct.error:
                    for e in v:
                        eenc(bytearray(), e, depth)
                    raise _container_changed() from None
            return encode

        if etype == T_BOOL:
            def encode(out: bytearray, v: Any, depth: int) -> None:
                depth += 1
                if depth > max_depth:
                    raise depth_error(max_depth)
                n = len(v)
                header(out, n)
                items = bytes([CT_TRUE if e else CT_FALSE for e in v])
                if len(items) != n:
                    raise _container_changed()
                out += items
            return encode

        def encode(out: bytearray, v: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            n = len(v)
            header(out, n)
            count = 0
            for e in v:
                eenc(out, e, depth)
                count += 1
            if count != n:
                raise _container_changed()
        return encode

    def _map_encoder(self, arg: Tuple[Any, Any]) -> Encoder:
        kinfo, vinfo = arg
        kv_type = CTYPE[wire_type(kinfo[0])] << 4 | CTYPE[wire_type(vinfo[0])]
        kenc, venc = self.encoder(kinfo), self.encoder(vinfo)
        max_depth = self.opts.max_depth

        def encode(out: bytearray, v: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            n = len(v)
            if n == 0:
                out.append(0)
            else:
                _write_varint(out, n)
                out.append(kv_type)
            count = 0
            for k, val in v.items():
                kenc(out, k, depth)
                venc(out, val, depth)
                count += 1
            if count != n:
                raise _container_changed()
        return encode

    # -- decoders ----------------------------------------------------------

    def decoder(self, tinfo: Tuple[int, Any]) -> Decoder:
        ttype, arg = tinfo
        dec = _SCALAR_DECODERS.get(ttype)
        if dec is not None:
            return dec
        if ttype == T_STRING or ttype == T_BINARY:
            return self._string_decoder(ttype == T_STRING and self.opts.decode_response)
        if ttype == T_LIST or ttype == T_SET:
            return self._list_decoder(arg, ttype == T_SET)
        if ttype == T_MAP:
            return self._map_decoder(arg)
        if ttype == T_STRUCT:
            return self._lazy_struct_decoder(arg)
        raise TypeError("unsupported Thrift type id %r" % (ttype,))

    def _string_decoder(self, as_text: bool) -> Decoder:
        max_size = self.opts.max_string_size

        def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
            n, pos = _read_size(data, pos)
            if n < 0:
                raise NegativeSizeError("negative string/binary length %d" % n)
            if n > max_size:
                raise SizeLimitError(
                    "string/binary of %d bytes exceeds max_string_size=%d" % (n, max_size))
            end = pos + n
            if end > len(data):
                raise TruncatedError("string/binary of %d bytes but only %d left" % (n, len(data) - pos))
            raw = data[pos:end]
            if as_text:
                try:
                    return raw.decode("utf-8"), end
                except UnicodeDecodeError:
                    pass  # thriftpy2 semantics: not UTF-8 -> hand back the bytes
            return raw, end
        return decode

    def _list_decoder(self, einfo: Tuple[int, Any], as_set: bool) -> Decoder:
        etype = einfo[0]
        ewire = wire_type(etype)
        min_width = MIN_WIDTH[ewire]
        max_depth = self.opts.max_depth
        check_count = self._check_count
        edec = self.decoder(einfo)
        what = "set" if as_set else "list"
        reader = _READ_INT.get(etype)

        def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            b = data[pos]
            pos += 1
            n = b >> 4
            if n == 15:
                n, pos = _read_size(data, pos)
            check_count(n, what)
            if n:
                _check_elem_type(b & 0x0F, ewire, what)
                if n * min_width > len(data) - pos:
                    raise TruncatedError("%s of %d elements cannot fit in %d bytes"
                                         % (what, n, len(data) - pos))
            if etype == T_DOUBLE:
                items: Any = list(struct.unpack_from("<%dd" % n, data, pos))
                pos += 8 * n
            elif etype == T_BOOL:
                items = [x == CT_TRUE for x in data[pos:pos + n]]
                pos += n
            elif reader is not None:
                items = []
                append = items.append
                for _ in range(n):
                    v, pos = reader(data, pos)
                    append(v)
            else:
                items = []
                append = items.append
                for _ in range(n):
                    v, pos = edec(data, pos, depth)
                    append(v)
            if as_set:
                try:
                    return set(items), pos
                except TypeError:
                    raise InvalidDataError("unhashable set element") from None
            return items, pos
        return decode

    def _map_decoder(self, arg: Tuple[Any, Any]) -> Decoder:
        kinfo, vinfo = arg
        kwire, vwire = wire_type(kinfo[0]), wire_type(vinfo[0])
        min_width = MIN_WIDTH[kwire] + MIN_WIDTH[vwire]
        kdec, vdec = self.decoder(kinfo), self.decoder(vinfo)
        max_depth = self.opts.max_depth
        check_count = self._check_count

        def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            n, pos = _read_size(data, pos)
            kv = 0
            if n:
                kv = data[pos]
                pos += 1
            check_count(n, "map")
            if n:
                _check_elem_type(kv >> 4, kwire, "map key")
                _check_elem_type(kv & 0x0F, vwire, "map value")
                if n * min_width > len(data) - pos:
                    raise TruncatedError("map of %d entries cannot fit in %d bytes"
                                         % (n, len(data) - pos))
            result = {}
            try:
                for _ in range(n):
                    k, pos = kdec(data, pos, depth)
                    result[k], pos = vdec(data, pos, depth)
            except TypeError:
                raise InvalidDataError("unhashable map key") from None
            return result, pos
        return decode

    def struct_decoder(self, cls: type) -> Callable[..., Any]:
        dec = self.struct_decoders.get(cls)
        if dec is not None:
            return dec
        info = struct_info(cls)
        max_depth = self.opts.max_depth
        by_id = {
            f.fid: (wire_type(f.type[0]), f.name, self.decoder(f.type))
            for f in info.fields
        }
        required = info.required
        fresh = info.defaults.copy if not info.mutable_defaults else (lambda: make_defaults(info))
        new = cls.__new__
        skip = self.skip
        cls_name = cls.__name__

        def decode(data: bytes, pos: int, depth: int, target: Any) -> Tuple[Any, int]:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            d = fresh() if target is None else {}
            seen = [] if required else None
            last = 0
            while True:
                b = data[pos]
                pos += 1
                ct = b & 0x0F
                if ct == CT_STOP:
                    break
                if b >> 4:
                    fid = last + (b >> 4)
                else:
                    fid, pos = _read_i16(data, pos)
                last = fid
                ftype = TTYPE[ct]
                f = by_id.get(fid)
                if f is None or f[0] != ftype:
                    if ftype is None:
                        raise InvalidDataError("invalid field type id %d (field %d)" % (ct, fid))
                    if ftype != T_BOOL:  # a bool field's value is its header
                        pos = skip(data, pos, ftype, depth)
                    continue
                if ftype == T_BOOL:
                    d[f[1]] = ct == CT_TRUE
                else:
                    d[f[1]], pos = f[2](data, pos, depth)
                if seen is not None:
                    seen.append(f[1])
            if seen is not None:
                for name in required:
                    if name not in seen:
                        raise InvalidDataError("required field %r of %s is missing" % (name, cls_name))
            if target is None:
                obj = new(cls)
                obj.__dict__ = d
                return obj, pos
            for name, v in d.items():
                setattr(target, name, v)
            return target, pos

        self.struct_decoders[cls] = decode
        return decode

    def skip(self, data: bytes, pos: int, ttype: int, depth: int) -> int:
        """Position after one value of wire type ``ttype`` starting at ``pos``.

        A bool here is a container element (one byte); bool fields have no
        payload and are never skipped.
        """
        if ttype == T_BOOL or ttype == T_BYTE or ttype == T_DOUBLE:
            pos += 8 if ttype == T_DOUBLE else 1
            if pos > len(data):
                raise TruncatedError("input ends inside a value")
            return pos
        if ttype == T_I16:
            return _read_i16(data, pos)[1]
        if ttype == T_I32:
            return _read_i32(data, pos)[1]
        if ttype == T_I64:
            return _read_i64(data, pos)[1]
        if ttype == T_STRING:
            n, pos = _read_size(data, pos)
            if n < 0:
                raise NegativeSizeError("negative string/binary length %d" % n)
            if n > self.opts.max_string_size:
                raise SizeLimitError("string/binary of %d bytes exceeds max_string_size=%d"
                                     % (n, self.opts.max_string_size))
            pos += n
            if pos > len(data):
                raise TruncatedError("input ends inside a string")
            return pos
        max_depth = self.opts.max_depth
        depth += 1
        if depth > max_depth:
            raise depth_error(max_depth)
        if ttype == T_STRUCT:
            while True:
                b = data[pos]
                pos += 1
                ct = b & 0x0F
                if ct == CT_STOP:
                    return pos
                if not b >> 4:
                    pos = _read_i16(data, pos)[1]
                ftype = TTYPE[ct]
                if ftype is None:
                    raise InvalidDataError("invalid field type id %d" % ct)
                if ftype != T_BOOL:
                    pos = self.skip(data, pos, ftype, depth)
        if ttype == T_LIST or ttype == T_SET:
            b = data[pos]
            pos += 1
            n = b >> 4
            if n == 15:
                n, pos = _read_size(data, pos)
            self._check_count(n, "list")
            if not n:
                return pos
            t = TTYPE[b & 0x0F]
            if t is None:
                raise InvalidDataError("invalid element type id %d" % (b & 0x0F))
            if n * MIN_WIDTH[t] > len(data) - pos:
                raise TruncatedError("list of %d elements cannot fit in %d bytes" % (n, len(data) - pos))
            if t == T_BOOL or t == T_BYTE or t == T_DOUBLE:
                return pos + n * MIN_WIDTH[t]
            for _ in range(n):
                pos = self.skip(data, pos, t, depth)
            return pos
        if ttype == T_MAP:
            n, pos = _read_size(data, pos)
            kv = 0
            if n:
                kv = data[pos]
                pos += 1
            self._check_count(n, "map")
            if not n:
                return pos
            kt, vt = TTYPE[kv >> 4], TTYPE[kv & 0x0F]
            if kt is None or vt is None:
                raise InvalidDataError("invalid map key/value type ids %d/%d" % (kv >> 4, kv & 0x0F))
            if n * (MIN_WIDTH[kt] + MIN_WIDTH[vt]) > len(data) - pos:
                raise TruncatedError("map of %d entries cannot fit in %d bytes" % (n, len(data) - pos))
            for _ in range(n):
                pos = self.skip(data, pos, kt, depth)
                pos = self.skip(data, pos, vt, depth)
            return pos
        raise InvalidDataError("invalid type id %d" % ttype)  # pragma: no cover


_compiler = compiler_cache(_Compiler)


def _check_elem_type(ct: int, expected: int, what: str) -> None:
    t = TTYPE[ct]
    if t != expected:
        if t is None:
            raise InvalidDataError("invalid %s type id %d" % (what, ct))
        raise InvalidDataError("%s type id %d does not match the schema's %d"
                               % (what, ct, CTYPE[expected]))


def _check_offset(data: bytes, offset: Any) -> int:
    offset = _index(offset)
    if offset < 0:
        raise ValueError("offset must be >= 0, got %d" % offset)
    return offset


class CompactCodec:
    """Encoder/decoder of Thrift's compact protocol for thriftpy2 structs.

    :param strict_read: accepted for symmetry with ``BinaryCodec``; the
        compact protocol has a single, versioned, message header.
    :param strict_write: accepted for symmetry with ``BinaryCodec``.
    :param decode_response: decode ``string`` values to ``str`` (else ``bytes``).
    :param max_string_size: largest string/binary accepted when decoding.
    :param max_container_size: largest list/set/map count accepted when decoding.
    :param max_depth: deepest nesting of structs and containers (both ways).
    """

    __slots__ = ("strict_read", "strict_write", "decode_response", "max_string_size",
                 "max_container_size", "max_depth", "_compiler")

    def __init__(
        self,
        *,
        strict_read: bool = True,
        strict_write: bool = True,
        decode_response: bool = True,
        max_string_size: int = DEFAULT_MAX_STRING_SIZE,
        max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.strict_read = bool(strict_read)
        self.strict_write = bool(strict_write)
        self.decode_response = bool(decode_response)
        self.max_string_size = check_limit("max_string_size", max_string_size, 0)
        self.max_container_size = check_limit("max_container_size", max_container_size, 0)
        self.max_depth = check_limit("max_depth", max_depth, 1)
        self._compiler = _compiler(Options(
            self.decode_response, self.max_string_size, self.max_container_size, self.max_depth))

    def encode_struct(self, obj: Any) -> bytes:
        """Encode a struct, exception or service args/result object."""
        out = bytearray()
        self._compiler.struct_encoder(type(obj))(out, obj, 0)
        return bytes(out)

    def encode_message(self, name: str, mtype: int, seqid: int, obj: Any,
                       framed: bool = False) -> bytes:
        """Encode a whole message: header, then ``obj``; framed adds the length prefix."""
        mtype = _index(mtype)
        if not 0 <= mtype <= 7:
            raise OverflowError("message type out of range for the compact protocol: %d" % mtype)
        seqid = _index(seqid)
        if not _I32_MIN <= seqid <= _I32_MAX:
            raise OverflowError("seqid out of range: %d" % seqid)
        if not isinstance(name, str):
            raise TypeError("message name must be str, got %s" % type(name).__name__)
        bname = name.encode("utf-8")
        out = bytearray(b"\0\0\0\0") if framed else bytearray()
        out.append(PROTOCOL_ID)
        out.append(VERSION | mtype << TYPE_SHIFT)
        _write_varint(out, seqid & 0xFFFFFFFF)
        _write_varint(out, len(bname))
        out += bname
        self._compiler.struct_encoder(type(obj))(out, obj, 0)
        if framed:
            n = len(out) - 4
            if n > _I32_MAX:
                raise OverflowError("message of %d bytes is too long for a frame" % n)
            out[0:4] = _pack_frame(n)
        return bytes(out)

    def decode_struct(self, cls_or_obj: Any, data: Any, offset: int = 0) -> Any:
        """Decode one struct from ``data`` starting at ``offset``.

        :param cls_or_obj: a struct class (a new object is built without running
            ``__init__``) or an instance (decoded fields are set on it).
        """
        if isinstance(cls_or_obj, type):
            cls, target = cls_or_obj, None
        else:
            cls, target = type(cls_or_obj), cls_or_obj
        if type(data) is not bytes:
            data = bytes(data)
        offset = _check_offset(data, offset)
        try:
            return self._compiler.struct_decoder(cls)(data, offset, 0, target)[0]
        except (struct.error, IndexError):
            raise TruncatedError("input ends inside a struct") from None

    def decode_message_begin(self, data: Any) -> Tuple[str, int, int, int]:
        """Decode a message header: ``(name, mtype, seqid, body_offset)``."""
        if type(data) is not bytes:
            data = bytes(data)
        try:
            if data[0] != PROTOCOL_ID:
                raise BadVersionError("bad compact protocol id 0x%02x" % data[0])
            b = data[1]
            if b & VERSION_MASK != VERSION:
                raise BadVersionError("bad compact protocol version %d" % (b & VERSION_MASK))
            mtype = b >> TYPE_SHIFT
            seqid, pos = _read_u32(data, 2)
            if seqid > _I32_MAX:
                seqid -= 1 << 32
            n, pos = _read_size(data, pos)
            if n < 0:
                raise NegativeSizeError("negative message name length %d" % n)
            if n > self.max_string_size:
                raise SizeLimitError("message name of %d bytes exceeds max_string_size=%d"
                                     % (n, self.max_string_size))
            end = pos + n
            if end > len(data):
                raise TruncatedError("input ends inside a message name")
            try:
                name = data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidDataError("message name is not valid UTF-8") from None
            return name, mtype, seqid, end
        except IndexError:
            raise TruncatedError("input ends inside a message header") from None


# --------------------------------------------------------------------- reader

# Scanner frames: [kind, remaining, type1, type2].
_F_STRUCT = 0
_F_LIST = 1   # remaining elements of type1
_F_MAP = 2    # remaining keys+values; even remaining -> next is a key (type1)

_NEED_MORE = -1


class CompactBufferedReader:
    """Splits an unframed compact-protocol byte stream into whole messages.

    The end of a message is found by walking its encoding once with a
    resumable scanner: the state (a stack of open structs and containers, the
    bytes of a string still to come) is kept across :meth:`feed` calls, and
    each call only looks at bytes not scanned before (a token split between
    two calls, at most 16 bytes, is read again).  The limits and errors are
    the decoder's; a message longer than ``max_frame_size`` raises
    ``SizeLimitError`` as soon as that is known.  Incomplete data is never an
    error: the reader waits for more.  After ``feed`` raised, the reader is
    broken: every later call raises the same class of error again.

    :param max_frame_size: largest message accepted, in bytes.
    :param strict_read: accepted for symmetry with ``BufferedReader``.
    """

    __slots__ = ("max_frame_size", "max_string_size", "max_container_size", "max_depth",
                 "strict_read", "_buf", "_start", "_pos", "_skip", "_stack", "_in_body",
                 "_error")

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_string_size: int = DEFAULT_MAX_STRING_SIZE,
        max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        strict_read: bool = True,
    ) -> None:
        self.max_frame_size = check_limit("max_frame_size", max_frame_size, 0)
        self.max_string_size = check_limit("max_string_size", max_string_size, 0)
        self.max_container_size = check_limit("max_container_size", max_container_size, 0)
        self.max_depth = check_limit("max_depth", max_depth, 0)
        self.strict_read = bool(strict_read)
        self._buf = bytearray()   # the current (incomplete) message and what follows
        self._start = 0           # where the current message starts in _buf
        self._pos = 0             # scan position in _buf
        self._skip = 0            # bytes of a string/fixed-width run still to pass
        self._stack: List[list] = []
        self._in_body = False     # the message header has been read
        self._error: Optional[Tuple[type, str]] = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf) - self._start

    def feed(self, data: Any) -> List[bytes]:
        """Add ``data``; return the messages it completes, in order."""
        if self._error is not None:
            cls, msg = self._error
            raise cls("the reader is broken by an earlier error: %s" % msg)
        buf = self._buf
        buf += data
        out: List[bytes] = []
        try:
            while True:
                end = self._scan()
                if end == _NEED_MORE:
                    if len(buf) - self._start > self.max_frame_size:
                        raise SizeLimitError("message exceeds max_frame_size=%d" % self.max_frame_size)
                    break
                if end - self._start > self.max_frame_size:
                    raise SizeLimitError("message exceeds max_frame_size=%d" % self.max_frame_size)
                out.append(bytes(buf[self._start:end]))
                self._start = end
                if end == len(buf):
                    break
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise
        # Drop the bytes of the messages handed out, once per call (not per
        # message: many small messages in one chunk stay linear).
        if self._start:
            del buf[:self._start]
            self._pos -= self._start
            self._start = 0
        return out

    def _frame_budget(self, pos: int, n: int) -> None:
        """A declared ``n`` bytes starting at ``pos`` must fit in a message."""
        if pos - self._start + n > self.max_frame_size:
            raise SizeLimitError("message exceeds max_frame_size=%d" % self.max_frame_size)

    def _scan(self) -> int:
        """Scan on from ``_pos``; the end of the message, or ``_NEED_MORE``."""
        buf = self._buf
        size = len(buf)
        stack = self._stack
        pos = self._pos
        try:
            while True:
                if self._skip:
                    if size - pos < self._skip:
                        self._skip -= size - pos
                        pos = size
                        return _NEED_MORE
                    pos += self._skip
                    self._skip = 0
                if not self._in_body:
                    pos = self._header(buf, pos)
                    self._in_body = True
                    if self.max_depth < 1:  # the message's struct is level 1
                        raise depth_error(self.max_depth)
                    stack.append([_F_STRUCT, 0, 0, 0])
                    continue
                if not stack:
                    self._in_body = False
                    return pos
                frame = stack[-1]
                kind = frame[0]
                if kind == _F_STRUCT:
                    b = buf[pos]
                    p = pos + 1
                    ct = b & 0x0F
                    if ct == CT_STOP:
                        stack.pop()
                        pos = p
                        continue
                    if not b >> 4:
                        p = _read_i16(buf, p)[1]
                    t = TTYPE[ct]
                    if t is None:
                        raise InvalidDataError("invalid field type id %d" % ct)
                    if t != T_BOOL:
                        p = self._start_value(buf, p, t, len(stack))
                    pos = p
                    continue
                if frame[1] == 0:
                    stack.pop()
                    continue
                if kind == _F_LIST:
                    t = frame[2]
                    width = 8 if t == T_DOUBLE else 1 if t == T_BOOL or t == T_BYTE else 0
                    if width:
                        # a run of fixed-width elements: passed in one step
                        self._skip = frame[1] * width
                        self._frame_budget(pos, self._skip)
                        frame[1] = 0
                        continue
                else:
                    t = frame[2] if frame[1] % 2 == 0 else frame[3]
                pos = self._start_value(buf, pos, t, len(stack))
                frame[1] -= 1
        except IndexError:
            return _NEED_MORE
        finally:
            self._pos = pos

    def _header(self, buf: bytearray, pos: int) -> int:
        """Position after a message header up to its name length (then skipped)."""
        if buf[pos] != PROTOCOL_ID:
            raise BadVersionError("bad compact protocol id 0x%02x" % buf[pos])
        b = buf[pos + 1]
        if b & VERSION_MASK != VERSION:
            raise BadVersionError("bad compact protocol version %d" % (b & VERSION_MASK))
        p = _read_u32(buf, pos + 2)[1]
        n, p = _read_size(buf, p)
        if n < 0:
            raise NegativeSizeError("negative message name length %d" % n)
        if n > self.max_string_size:
            raise SizeLimitError("message name of %d bytes exceeds max_string_size=%d"
                                 % (n, self.max_string_size))
        self._frame_budget(p, n)
        self._skip = n
        return p

    def _check_count(self, n: int, what: str) -> None:
        if n < 0:
            raise NegativeSizeError("negative %s size %d" % (what, n))
        if n > self.max_container_size:
            raise SizeLimitError("%s of %d elements exceeds max_container_size=%d"
                                 % (what, n, self.max_container_size))

    def _start_value(self, buf: bytearray, pos: int, t: int, depth: int) -> int:
        """Read the first token of a value of wire type ``t`` at ``pos``.

        ``depth`` is the level of the struct or container holding the value.
        Raises ``IndexError`` (nothing changed) when the token is incomplete.
        """
        if t == T_I32:
            return _read_i32(buf, pos)[1]
        if t == T_I64:
            return _read_i64(buf, pos)[1]
        if t == T_I16:
            return _read_i16(buf, pos)[1]
        if t == T_BYTE or t == T_BOOL or t == T_DOUBLE:
            self._skip = 8 if t == T_DOUBLE else 1
            return pos
        if t == T_STRING:
            n, p = _read_size(buf, pos)
            if n < 0:
                raise NegativeSizeError("negative string/binary length %d" % n)
            if n > self.max_string_size:
                raise SizeLimitError("string/binary of %d bytes exceeds max_string_size=%d"
                                     % (n, self.max_string_size))
            self._frame_budget(p, n)
            self._skip = n
            return p
        if depth + 1 > self.max_depth:
            raise depth_error(self.max_depth)
        if t == T_STRUCT:
            self._stack.append([_F_STRUCT, 0, 0, 0])
            return pos
        if t == T_LIST or t == T_SET:
            b = buf[pos]
            p = pos + 1
            n = b >> 4
            if n == 15:
                n, p = _read_size(buf, p)
            self._check_count(n, "list")
            et = 0
            if n:
                et = TTYPE[b & 0x0F]
                if et is None:
                    raise InvalidDataError("invalid element type id %d" % (b & 0x0F))
                self._frame_budget(p, n * MIN_WIDTH[et])
            self._stack.append([_F_LIST, n, et, 0])
            return p
        # T_MAP
        n, p = _read_size(buf, pos)
        kv = 0
        if n:
            kv = buf[p]
            p += 1
        self._check_count(n, "map")
        kt = vt = 0
        if n:
            kt, vt = TTYPE[kv >> 4], TTYPE[kv & 0x0F]
            if kt is None or vt is None:
                raise InvalidDataError("invalid map key/value type ids %d/%d" % (kv >> 4, kv & 0x0F))
            self._frame_budget(p, n * (MIN_WIDTH[kt] + MIN_WIDTH[vt]))
        self._stack.append([_F_MAP, 2 * n, kt, vt])
        return p
