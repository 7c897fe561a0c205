"""Thrift binary protocol codec, pure Python.

The twin of the compiled ``aiothrift._binary``: same API, same bytes, same
objects, same exceptions (see ``docs/internals.md``).  It is used on PyPy and
with ``AIOTHRIFT_NO_EXTENSIONS=1``.

Speed comes from compiling each struct class once per set of options into
closures (``_spec.struct_info`` + the ``_compile_*`` functions below), packing
fixed-width containers in bulk with ``struct``, and decoding from one ``bytes``
object with ``unpack_from`` offsets, never slicing the input per value.
"""

from __future__ import annotations

import struct
from operator import index as _index
from typing import Any, Callable, Tuple

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
    MIN_WIDTH,
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
    WIRE_TYPES,
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
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("BinaryCodec",)

VERSION_1 = 0x80010000
VERSION_MASK = 0xFFFF0000

_S_I8 = struct.Struct("!b")
_S_I16 = struct.Struct("!h")
_S_I32 = struct.Struct("!i")
_S_I64 = struct.Struct("!q")
_S_DOUBLE = struct.Struct("!d")
_S_LIST_HDR = struct.Struct("!Bi")
_S_MAP_HDR = struct.Struct("!BBi")
_S_FIELD_HDR = struct.Struct("!Bh")

_pack_i32 = _S_I32.pack
_unpack_i16 = _S_I16.unpack_from
_unpack_i32 = _S_I32.unpack_from
_unpack_list_hdr = _S_LIST_HDR.unpack_from
_unpack_map_hdr = _S_MAP_HDR.unpack_from

# Fixed-width wire types: (struct code for bulk packing, width, name, lo, hi).
_FIXED = {
    T_BYTE: ("b", 1, "byte", -(1 << 7), (1 << 7) - 1),
    T_I16: ("h", 2, "i16", -(1 << 15), (1 << 15) - 1),
    T_I32: ("i", 4, "i32", -(1 << 31), (1 << 31) - 1),
    T_I64: ("q", 8, "i64", -(1 << 63), (1 << 63) - 1),
    T_DOUBLE: ("d", 8, "double", None, None),
}
_SKIP_WIDTH = {T_BOOL: 1, T_BYTE: 1, T_I16: 2, T_I32: 4, T_I64: 8, T_DOUBLE: 8}

def _as_int_error(v: Any, name: str, lo: int, hi: int) -> Exception:
    """The exception for a value that ``struct`` refused as ``name``."""
    try:
        v = _index(v)
    except TypeError:
        return TypeError("%s expected an integer, got %s" % (name, type(v).__name__))
    return OverflowError("%s out of range: %d not in [%d, %d]" % (name, v, lo, hi))


def _string_bytes(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8")
    try:
        mv = memoryview(v)
    except TypeError:
        raise TypeError(
            "string/binary expected str or a bytes-like object, got %s" % type(v).__name__
        ) from None
    return mv if mv.c_contiguous else mv.tobytes()


# --------------------------------------------------------------------- encode

def _count(v: Any) -> int:
    n = len(v)
    if n > 0x7FFFFFFF:
        raise OverflowError("container of %d elements is too long for Thrift" % n)
    return n


def _encode_bool(out: bytearray, v: Any, depth: int) -> None:
    out.append(1 if v else 0)


def _encode_string(out: bytearray, v: Any, depth: int) -> None:
    b = _string_bytes(v)
    n = len(b) if isinstance(b, bytes) else b.nbytes
    if n > 0x7FFFFFFF:
        raise OverflowError("string/binary of %d bytes is too long for Thrift" % n)
    out += _pack_i32(n)
    out += b


def _fixed_encoder(ttype: int) -> Encoder:
    code, _, name, lo, hi = _FIXED[ttype]
    pack = struct.Struct("!" + code).pack
    if ttype == T_DOUBLE:
        def encode(out: bytearray, v: Any, depth: int) -> None:
            try:
                out += pack(v)
            except struct.error:
                raise as_double_error(v) from None
    else:
        def encode(out: bytearray, v: Any, depth: int) -> None:
            try:
                out += pack(v)
            except struct.error:
                raise _as_int_error(v, name, lo, hi) from None
    return encode


class _Compiler(CompilerBase):
    """The binary protocol's closures (see ``_codec_common.CompilerBase``)."""

    # -- encoders ----------------------------------------------------------

    def encoder(self, tinfo: Tuple[int, Any]) -> Encoder:
        ttype, arg = tinfo
        if ttype == T_BOOL:
            return _encode_bool
        if ttype in _FIXED:
            return _fixed_encoder(ttype)
        if ttype == T_STRING or ttype == T_BINARY:
            return _encode_string
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
        fields = tuple(
            (f.name, _S_FIELD_HDR.pack(wire_type(f.type[0]), f.fid), self.encoder(f.type), f.required)
            for f in info.fields
        )
        cls_name = cls.__name__

        def encode(out: bytearray, obj: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            if not isinstance(obj, cls):
                raise TypeError("expected %s, got %s" % (cls_name, type(obj).__name__))
            d = getattr(obj, "__dict__", None)
            for name, hdr, fenc, required in fields:
                v = d.get(name) if d is not None else getattr(obj, name, None)
                if v is None:
                    if required:
                        raise InvalidDataError(
                            "required field %r of %s is unset" % (name, cls_name))
                    continue
                out += hdr
                fenc(out, v, depth)
            out.append(0)

        self.struct_encoders[cls] = encode
        return encode

    def _list_encoder(self, einfo: Tuple[int, Any]) -> Encoder:
        etype = einfo[0]
        ewire = wire_type(etype)
        max_depth = self.opts.max_depth
        pack_hdr = _S_LIST_HDR.pack
        eenc = self.encoder(einfo)

        if etype in _FIXED:
            code = _FIXED[etype][0]

            def encode(out: bytearray, v: Any, depth: int) -> None:
                depth += 1
                if depth > max_depth:
                    raise depth_error(max_depth)
                n = _count(v)
                out += pack_hdr(ewire, n)
                try:
                    out += struct.pack("!%d%s" % (n, code), *v)
                except struct.error:
                    # Find the offending element so the exception is the one the
                    # element encoder (and the compiled codec) raises.
                    for e in v:
                        eenc(bytearray(), e, depth)
                    raise RuntimeError("container changed size during encoding") from None
            return encode

        if etype == T_BOOL:
            def encode(out: bytearray, v: Any, depth: int) -> None:
                depth += 1
                if depth > max_depth:
                    raise depth_error(max_depth)
                out += pack_hdr(ewire, _count(v))
                out += bytes([1 if e else 0 for e in v])
            return encode

        def encode(out: bytearray, v: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            out += pack_hdr(ewire, _count(v))
            for e in v:
                eenc(out, e, depth)
        return encode

    def _map_encoder(self, arg: Tuple[Any, Any]) -> Encoder:
        kinfo, vinfo = arg
        kwire, vwire = wire_type(kinfo[0]), wire_type(vinfo[0])
        kenc, venc = self.encoder(kinfo), self.encoder(vinfo)
        max_depth = self.opts.max_depth
        pack_hdr = _S_MAP_HDR.pack

        def encode(out: bytearray, v: Any, depth: int) -> None:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            out += pack_hdr(kwire, vwire, _count(v))
            for k, val in v.items():
                kenc(out, k, depth)
                venc(out, val, depth)
        return encode

    # -- decoders ----------------------------------------------------------

    def decoder(self, tinfo: Tuple[int, Any]) -> Decoder:
        ttype, arg = tinfo
        if ttype == T_BOOL:
            def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
                return data[pos] != 0, pos + 1
            return decode
        if ttype in _FIXED:
            s = struct.Struct("!" + _FIXED[ttype][0])
            unpack, width = s.unpack_from, s.size

            def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
                return unpack(data, pos)[0], pos + width
            return decode
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
            n = _unpack_i32(data, pos)[0]
            pos += 4
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
        bulk = "!%d" + _FIXED[etype][0] if etype in _FIXED else None

        def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
            depth += 1
            if depth > max_depth:
                raise depth_error(max_depth)
            t, n = _unpack_list_hdr(data, pos)
            pos += 5
            check_count(n, what)
            if n:
                _check_elem_type(t, ewire, what)
                if n * min_width > len(data) - pos:
                    raise TruncatedError("%s of %d elements cannot fit in %d bytes"
                                         % (what, n, len(data) - pos))
            if bulk is not None:
                items = struct.unpack_from(bulk % n, data, pos)
                pos += n * min_width
            elif etype == T_BOOL:
                items = [b != 0 for b in data[pos:pos + n]]
                pos += n
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
            return list(items) if bulk is not None else items, pos
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
            kt, vt, n = _unpack_map_hdr(data, pos)
            pos += 6
            check_count(n, "map")
            if n:
                _check_elem_type(kt, kwire, "map key")
                _check_elem_type(vt, vwire, "map value")
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
            while True:
                ftype = data[pos]
                if ftype == 0:
                    pos += 1
                    break
                fid = _unpack_i16(data, pos + 1)[0]
                pos += 3
                f = by_id.get(fid)
                if f is None or f[0] != ftype:
                    if ftype not in WIRE_TYPES:
                        raise InvalidDataError("invalid field type id %d (field %d)" % (ftype, fid))
                    pos = skip(data, pos, ftype, depth)
                    continue
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
        """Position after one value of wire type ``ttype`` starting at ``pos``."""
        width = _SKIP_WIDTH.get(ttype)
        if width is not None:
            pos += width
            if pos > len(data):
                raise TruncatedError("input ends inside a value")
            return pos
        if ttype == T_STRING:
            n = _unpack_i32(data, pos)[0]
            pos += 4
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
                ftype = data[pos]
                if ftype == 0:
                    return pos + 1
                if ftype not in WIRE_TYPES:
                    raise InvalidDataError("invalid field type id %d" % ftype)
                pos = self.skip(data, pos + 3, ftype, depth)
        if ttype == T_LIST or ttype == T_SET:
            t, n = _unpack_list_hdr(data, pos)
            pos += 5
            self._check_count(n, "list")
            if not n:
                return pos
            if t not in WIRE_TYPES:
                raise InvalidDataError("invalid element type id %d" % t)
            if n * MIN_WIDTH[t] > len(data) - pos:
                raise TruncatedError("list of %d elements cannot fit in %d bytes" % (n, len(data) - pos))
            width = _SKIP_WIDTH.get(t)
            if width is not None:
                return pos + n * width
            for _ in range(n):
                pos = self.skip(data, pos, t, depth)
            return pos
        if ttype == T_MAP:
            kt, vt, n = _unpack_map_hdr(data, pos)
            pos += 6
            self._check_count(n, "map")
            if not n:
                return pos
            if kt not in WIRE_TYPES or vt not in WIRE_TYPES:
                raise InvalidDataError("invalid map key/value type ids %d/%d" % (kt, vt))
            if n * (MIN_WIDTH[kt] + MIN_WIDTH[vt]) > len(data) - pos:
                raise TruncatedError("map of %d entries cannot fit in %d bytes" % (n, len(data) - pos))
            for _ in range(n):
                pos = self.skip(data, pos, kt, depth)
                pos = self.skip(data, pos, vt, depth)
            return pos
        raise InvalidDataError("invalid type id %d" % ttype)


_compiler = compiler_cache(_Compiler)


def _check_elem_type(t: int, expected: int, what: str) -> None:
    if t != expected:
        if t not in WIRE_TYPES:
            raise InvalidDataError("invalid %s type id %d" % (what, t))
        raise InvalidDataError("%s type id %d does not match the schema's %d" % (what, t, expected))


class BinaryCodec:
    """Encoder/decoder of Thrift's binary protocol for thriftpy2 structs.

    :param strict_read: reject message headers without a version.
    :param strict_write: write message headers with a version.
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
        if not 0 <= mtype <= 127:
            raise OverflowError("message type out of range: %d" % mtype)
        seqid = _index(seqid)
        if not -(1 << 31) <= seqid < (1 << 31):
            raise OverflowError("seqid out of range: %d" % seqid)
        out = bytearray(b"\0\0\0\0") if framed else bytearray()
        if not isinstance(name, str):
            raise TypeError("message name must be str, got %s" % type(name).__name__)
        bname = name.encode("utf-8")
        if self.strict_write:
            out += struct.pack("!ii", (VERSION_1 | mtype) - (1 << 32), len(bname))
            out += bname
            out += _pack_i32(seqid)
        else:
            out += _pack_i32(len(bname))
            out += bname
            out += struct.pack("!bi", mtype, seqid)
        self._compiler.struct_encoder(type(obj))(out, obj, 0)
        if framed:
            out[0:4] = _pack_i32(len(out) - 4)
        return bytes(out)

    def decode_struct(self, cls_or_obj: Any, data: Any, offset: int = 0) -> Any:
        """Decode one struct from ``data`` starting at ``offset``.

        :param cls_or_obj: a struct class (a new object is built without running
            ``__init__``) or an instance (decoded fields are set on it).
        """
        if offset < 0:
            raise ValueError("offset must be >= 0, got %r" % (offset,))
        if isinstance(cls_or_obj, type):
            cls, target = cls_or_obj, None
        else:
            cls, target = type(cls_or_obj), cls_or_obj
        if type(data) is not bytes:
            data = bytes(memoryview(data))  # bytes-like only (bytes(5) would be 5 zeros)
        try:
            return self._compiler.struct_decoder(cls)(data, offset, 0, target)[0]
        except (struct.error, IndexError):
            raise TruncatedError("input ends inside a struct") from None

    def decode_message_begin(self, data: Any) -> Tuple[str, int, int, int]:
        """Decode a message header: ``(name, mtype, seqid, body_offset)``."""
        if type(data) is not bytes:
            data = bytes(memoryview(data))
        try:
            sz = _unpack_i32(data, 0)[0]
            if sz < 0:
                if (sz & VERSION_MASK) != VERSION_1:
                    raise BadVersionError("bad protocol version 0x%08x" % (sz & 0xFFFFFFFF))
                mtype = sz & 0xFF
                name, pos = self._read_name(data, 4)
                seqid = _unpack_i32(data, pos)[0]
                return name, mtype, seqid, pos + 4
            if self.strict_read:
                raise BadVersionError("message header has no protocol version (strict_read)")
            name, pos = self._read_name(data, 0)
            mtype = _S_I8.unpack_from(data, pos)[0]
            seqid = _unpack_i32(data, pos + 1)[0]
            return name, mtype, seqid, pos + 5
        except (struct.error, IndexError):
            raise TruncatedError("input ends inside a message header") from None

    def _read_name(self, data: bytes, pos: int) -> Tuple[str, int]:
        n = _unpack_i32(data, pos)[0]
        pos += 4
        if n < 0:
            raise NegativeSizeError("negative message name length %d" % n)
        if n > self.max_string_size:
            raise SizeLimitError("message name of %d bytes exceeds max_string_size=%d"
                                 % (n, self.max_string_size))
        end = pos + n
        if end > len(data):
            raise TruncatedError("input ends inside a message name")
        try:
            return data[pos:end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise InvalidDataError("message name is not valid UTF-8") from None
