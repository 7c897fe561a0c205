"""Differential tests of the binary codec (hypothesis).

Random objects of ``tests/idl/codec_rich.thrift`` / ``codec_evolution.thrift``
go through the implementation under test and through a reference:

* ``impl`` compiled: the reference is the pure-Python twin.  Encoding must give
  the same bytes (or the same exception class); decoding valid, mutated
  (byte flips, insertions, deletions) and truncated input must give equal
  objects (same ``__dict__`` keys, order, types and values, NaN-aware) or the
  same exception class.
* ``impl`` python: the reference is thriftpy2's pure-Python binary encoder
  for valid objects, and decode(encode(x)) must re-encode to the same bytes.

In both cases decoding arbitrary bytes may only raise ``ProtocolError``.
"""

from __future__ import annotations

import struct

import pytest
import thriftpy2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.transport import TMemoryBuffer

from aiothrift._spec import (
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
    struct_info,
)
from aiothrift.errors import ProtocolError

from conftest import IDL_DIR, load_impl

rich = thriftpy2.load(str(IDL_DIR / "codec_rich.thrift"), module_name="codec_rich_thrift")
evo = thriftpy2.load(str(IDL_DIR / "codec_evolution.thrift"), module_name="codec_evolution_thrift")

SETTINGS = settings(max_examples=250, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

#: classes encoded from random objects
ROOTS = [rich.Rich, rich.Holder, rich.Defaults, rich.Node, evo.New]
#: classes any encoded bytes are decoded as (evolution: unknown fields, mismatches)
DECODE_AS = [rich.Rich, rich.Holder, rich.Defaults, rich.Node, rich.Empty, rich.Wide,
             rich.Required, rich.Unhashable, evo.New, evo.Old, evo.Mismatch, evo.ElemMismatch,
             evo.MapMismatch]

OPTION_SETS = [
    {},
    {"decode_response": False},
    {"max_string_size": 3, "max_container_size": 2, "max_depth": 4},
    {"max_depth": 2},
]


# ---------------------------------------------------------------- strategies

INT_RANGES = {T_BYTE: 8, T_I16: 16, T_I32: 32, T_I64: 64}


def value_strategy(tinfo, depth):
    """Valid values of one TypeInfo; recursion through structs bounded by ``depth``."""
    ttype, arg = tinfo
    if ttype == T_BOOL:
        return st.booleans()
    if ttype in INT_RANGES:
        bits = INT_RANGES[ttype]
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    if ttype == T_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2 ** 53), 2 ** 53)
    if ttype == T_STRING:
        return st.text(max_size=12) | st.binary(max_size=6)
    if ttype == T_BINARY:
        return st.binary(max_size=12)
    if ttype == T_LIST:
        return st.lists(value_strategy(arg, depth), max_size=4 if depth < 3 else 1)
    if ttype == T_SET:
        return st.sets(value_strategy(arg, depth), max_size=4)
    if ttype == T_MAP:
        return st.dictionaries(value_strategy(arg[0], depth), value_strategy(arg[1], depth),
                               max_size=3)
    if ttype == T_STRUCT:
        if depth >= 4:
            return st.none() if arg is not rich.Node else st.just(rich.Node(value=0, kids=[]))
        return st.deferred(lambda: struct_strategy(arg, depth + 1))
    raise AssertionError(ttype)


def struct_strategy(cls, depth=0, junk=False):
    info = struct_info(cls)
    fields = {}
    for f in info.fields:
        s = value_strategy(f.type, depth)
        if junk:
            s = s | JUNK
        fields[f.name] = st.none() | s
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


#: values of the wrong type for most fields (encode must fail alike)
JUNK = st.sampled_from([
    None, 1.5, "str", b"bytes", 2 ** 70, -(2 ** 40), [1, "x"], {"k": "v"}, {1: 2},
    (1, 2), rich.Inner(x=1), object(), [None], float("nan"), True,
])

objects = st.one_of(*(struct_strategy(cls) for cls in ROOTS))
junk_objects = st.one_of(*(struct_strategy(cls, junk=True) for cls in ROOTS))


@st.composite
def mutated(draw, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and buf:
            buf[pos] = draw(st.sampled_from([0, 1, 2, 11, 12, 13, 14, 15, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=5))
        elif buf:
            del buf[pos:pos + draw(st.integers(1, 5))]
    return bytes(buf)


# ---------------------------------------------------------------- comparison

def canon(v):
    """Comparable form of a decoded value: NaN-aware, type-strict, dict-order-strict."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", int(v))
    if isinstance(v, float):
        return ("float", struct.pack("!d", v))
    if isinstance(v, (str, bytes)):
        return (type(v).__name__, v)
    if isinstance(v, list):
        return ("list", tuple(canon(e) for e in v))
    if isinstance(v, (set, frozenset)):
        return ("set", frozenset(canon(e) for e in v))
    if isinstance(v, dict):
        return ("dict", tuple((canon(k), canon(e)) for k, e in v.items()))
    if v is None:
        return ("none",)
    if hasattr(v, "thrift_spec"):
        return ("struct", type(v).__name__,
                tuple((k, canon(e)) for k, e in v.__dict__.items()))
    raise AssertionError("unexpected decoded value %r" % (v,))


def outcome(fn):
    """("ok", comparable result) or ("error", exception class)."""
    try:
        result = fn()
    except RecursionError:  # pragma: no cover - would be a bug in either
        raise
    except Exception as e:  # noqa: BLE001 - the class is what is compared
        return ("error", type(e))
    if isinstance(result, (bytes, tuple)):
        return ("ok", result)
    return ("ok", canon(result))


def tp2_encode(obj) -> bytes:
    buf = TMemoryBuffer()
    obj.write(TBinaryProtocol(buf))
    return buf.getvalue()


PY = load_impl("python")


def codecs(impl, **options):
    """(codec under test, reference codec or None)."""
    mine = impl.binary.BinaryCodec(**options)
    ref = PY.binary.BinaryCodec(**options) if impl.name != "python" else None
    return mine, ref


def check_decode(impl, data: bytes, classes=DECODE_AS, option_sets=OPTION_SETS):
    for options in option_sets:
        mine, ref = codecs(impl, **options)
        for cls in classes:
            got = outcome(lambda: mine.decode_struct(cls, data))
            if got[0] == "error":
                assert issubclass(got[1], ProtocolError), (cls, options, got, data)
            if ref is not None:
                assert got == outcome(lambda: ref.decode_struct(cls, data)), (cls, options, data)
            elif got[0] == "ok" and cls in ROOTS and not options:
                # python twin: what it decodes re-encodes to the same value
                obj = mine.decode_struct(cls, data)
                assert canon(mine.decode_struct(cls, mine.encode_struct(obj))) == canon(obj)


# ---------------------------------------------------------------- tests

@SETTINGS
@given(obj=objects)
def test_encode_and_decode_valid(impl, obj):
    mine, ref = codecs(impl)
    data = mine.encode_struct(obj)
    if ref is not None:
        assert data == ref.encode_struct(obj)
    else:
        assert data == tp2_encode(obj)
    cls = type(obj)
    # re-encoding what was decoded gives the same value (set order may differ)
    decoded = mine.decode_struct(cls, data)
    assert canon(mine.decode_struct(cls, mine.encode_struct(decoded))) == canon(decoded)
    check_decode(impl, data, classes=[cls, rich.Empty, evo.Old, rich.Wide], option_sets=[{}])


@SETTINGS
@given(obj=objects, strict=st.booleans(), framed=st.booleans(),
       seqid=st.integers(-(2 ** 31), 2 ** 31 - 1), mtype=st.integers(0, 127),
       name=st.text(max_size=8))
def test_messages(impl, obj, strict, framed, seqid, mtype, name):
    mine, ref = codecs(impl, strict_write=strict, strict_read=strict)
    msg = mine.encode_message(name, mtype, seqid, obj, framed=framed)
    if ref is not None:
        assert msg == ref.encode_message(name, mtype, seqid, obj, framed=framed)
    body = msg[4:] if framed else msg
    got_name, got_mtype, got_seqid, offset = mine.decode_message_begin(body)
    assert (got_name, got_mtype, got_seqid) == (name, mtype, seqid)
    assert canon(mine.decode_struct(type(obj), body, offset)) == canon(mine.decode_struct(type(obj), body[offset:]))


@SETTINGS
@given(obj=junk_objects, max_depth=st.sampled_from([64, 3]))
def test_encode_junk(impl, obj, max_depth):
    mine, ref = codecs(impl, max_depth=max_depth)
    got = outcome(lambda: mine.encode_struct(obj))
    if ref is not None:
        assert got == outcome(lambda: ref.encode_struct(obj))
    elif got[0] == "ok":
        mine.decode_struct(type(obj), got[1])


@SETTINGS
@given(data=st.data())
def test_decode_mutated(impl, data):
    obj = data.draw(objects)
    encoded = PY.binary.BinaryCodec().encode_struct(obj)
    check_decode(impl, data.draw(mutated(encoded)))


@SETTINGS
@given(data=st.data())
def test_decode_truncated(impl, data):
    obj = data.draw(objects)
    encoded = PY.binary.BinaryCodec().encode_struct(obj)
    cut = data.draw(st.integers(0, len(encoded)))
    check_decode(impl, encoded[:cut], classes=[type(obj), rich.Empty, evo.Old])


@SETTINGS
@given(raw=st.binary(max_size=64))
def test_decode_random_bytes(impl, raw):
    check_decode(impl, raw)


@SETTINGS
@given(data=st.data())
def test_decode_message_begin_mutated(impl, data):
    strict = data.draw(st.booleans())
    msg = PY.binary.BinaryCodec(strict_write=strict).encode_message(
        data.draw(st.text(max_size=6)), data.draw(st.integers(0, 127)),
        data.draw(st.integers(-(2 ** 31), 2 ** 31 - 1)), rich.Empty())
    msg = data.draw(mutated(msg) | st.binary(max_size=20))
    for strict_read in (True, False):
        mine, ref = codecs(impl, strict_read=strict_read, max_string_size=8)
        got = outcome(lambda: mine.decode_message_begin(msg))
        if got[0] == "error":
            assert issubclass(got[1], ProtocolError)
        if ref is not None:
            assert got == outcome(lambda: ref.decode_message_begin(msg))


@pytest.mark.parametrize("cls", ROOTS)
def test_decode_into_instance_matches(impl, cls):
    """Decoding into an instance sets the same attributes in both implementations."""
    mine, ref = codecs(impl)
    obj = PY.binary.BinaryCodec().decode_struct(cls, b"\x00")
    data = PY.binary.BinaryCodec().encode_struct(obj)
    a = cls.__new__(cls)
    mine.decode_struct(a, data)
    if ref is not None:
        b = cls.__new__(cls)
        ref.decode_struct(b, data)
        assert canon(a) == canon(b)
