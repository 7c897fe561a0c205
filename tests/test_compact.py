"""The compact protocol codec and reader: wire format, limits, errors.

Every test runs on both implementations (``_compact`` and ``_compact_py``,
chosen through the ``impl`` fixture).  The contract is ``BinaryCodec``'s
(docs/internals.md) with the compact wire format; the rules specific to the
compact protocol are listed in the docstring of ``aiothrift._compact_py``.
Byte-exactness against real peers is in ``test_compact_vectors.py``; the
hypothesis differential tests (compiled vs Python, reader vs decoder) are at
the end of this file.
"""

from __future__ import annotations

import importlib
import io
import math
import random
import struct

import pytest
import thriftpy2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import peers
from aiothrift import _compat
from aiothrift.errors import (
    BadVersionError,
    DepthLimitError,
    InvalidDataError,
    NegativeSizeError,
    ProtocolError,
    SizeLimitError,
    TruncatedError,
)
from aiothrift.limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

AT = peers.tp2_module("alltypes")

# Types the alltypes IDL does not have: recursion, unhashable set elements and
# map keys, required fields with defaults, wide and negative field ids.
LOCAL_IDL = """
struct Node { 1: i32 v, 2: list<Node> kids, 3: optional Node child }
struct Weird { 1: set<list<i32>> s, 2: map<list<i32>, i32> m, 3: list<set<i32>> ls }
struct Req { 1: required i32 a, 2: optional i32 b, 3: required list<i32> c = [1] }
struct Wide { 1: i32 a, 300: i32 b, 32767: i32 c, -5: i32 d, 2: bool e, -32768: bool f }
struct Defaults { 1: list<i32> l = [1, 2], 2: map<string, list<i32>> m = {"a": [1]}, 3: i32 x = 7 }
"""
CT = thriftpy2.load_fp(io.StringIO(LOCAL_IDL), module_name="compact_local_thrift")


def H(text: str) -> bytes:  # noqa: N802
    """Bytes from spaced hex."""
    return bytes.fromhex(text.replace(" ", ""))


def P(x, y):  # noqa: N802
    return AT.Point(x=x, y=y)


@pytest.fixture
def compact(impl):
    """The compact module of the implementation under test."""
    name = "aiothrift._compact" if impl.name == "compiled" else "aiothrift._compact_py"
    return importlib.import_module(name)


def test_implementation_is_the_one_asked_for(impl, compact):
    expected = "aiothrift._compact" if impl.name == "compiled" else "aiothrift._compact_py"
    assert compact.__name__ == expected
    if impl.name == "compiled":
        assert compact.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_compat_selects_compact_like_binary():
    expected = "aiothrift._compact_py" if _compat.NO_EXTENSIONS else "aiothrift._compact"
    assert _compat.compact.__name__ == expected
    assert _compat.compact.__name__.endswith("_py") == _compat.binary.__name__.endswith("_py")


def test_protocol_facade():
    import aiothrift

    assert "TCompactProtocol" in aiothrift.__all__
    proto = aiothrift.TCompactProtocol(None, max_string_size=5, max_depth=3)
    assert type(proto.codec) is _compat.compact.CompactCodec
    assert (proto.codec.max_string_size, proto.codec.max_depth) == (5, 3)
    reader = proto.make_reader(framed=False, max_frame_size=100)
    assert type(reader) is _compat.compact.CompactBufferedReader
    assert (reader.max_frame_size, reader.max_string_size, reader.max_depth) == (100, 5, 3)
    assert type(proto.make_reader(framed=True)) is _compat.framing.FramedReader
    data = aiothrift.serialize(P(1, -2), protocol_cls=aiothrift.TCompactProtocol)
    assert data == H("15 02 15 03 00")
    assert aiothrift.deserialize(AT.Point, data, protocol_cls=aiothrift.TCompactProtocol) == P(1, -2)
    with pytest.raises(SizeLimitError):
        aiothrift.deserialize(AT.AllTypes, H("78 03 61 62 63 00"),
                              protocol_cls=aiothrift.TCompactProtocol, max_string_size=2)


def test_stub_matches_both_modules():
    import ast
    import pathlib

    import aiothrift

    stub = ast.parse((pathlib.Path(aiothrift.__file__).parent / "_compact.pyi").read_text())
    classes = {n.name: {m.name for m in n.body if isinstance(m, ast.FunctionDef)}
               for n in stub.body if isinstance(n, ast.ClassDef)}
    assert set(classes) == {"CompactCodec", "CompactBufferedReader"}
    for modname in ("aiothrift._compact_py",) + (() if _compat.NO_EXTENSIONS else ("aiothrift._compact",)):
        mod = importlib.import_module(modname)
        assert set(mod.__all__) == set(classes)
        for cls, methods in classes.items():
            for meth in methods:
                assert hasattr(getattr(mod, cls), meth), (modname, cls, meth)


# ---------------------------------------------------------------- API

def test_defaults_and_options(compact):
    c = compact.CompactCodec()
    assert (c.strict_read, c.strict_write, c.decode_response) == (True, True, True)
    assert (c.max_string_size, c.max_container_size, c.max_depth) == (
        DEFAULT_MAX_STRING_SIZE, DEFAULT_MAX_CONTAINER_SIZE, DEFAULT_MAX_DEPTH)
    c = compact.CompactCodec(strict_read=False, strict_write=0, decode_response=False,
                             max_string_size=0, max_container_size=0, max_depth=1)
    assert (c.strict_read, c.strict_write, c.decode_response) == (False, False, False)
    assert (c.max_string_size, c.max_container_size, c.max_depth) == (0, 0, 1)


@pytest.mark.parametrize("option, bad", [
    ("max_string_size", -1), ("max_container_size", -1), ("max_depth", 0),
])
def test_bad_limits(compact, option, bad):
    with pytest.raises(ValueError):
        compact.CompactCodec(**{option: bad})
    with pytest.raises(TypeError):
        compact.CompactCodec(**{option: 1.5})


def test_options_are_keyword_only(compact):
    with pytest.raises(TypeError):
        compact.CompactCodec(True)
    with pytest.raises(TypeError):
        compact.CompactBufferedReader(100)


def test_reader_defaults(compact):
    r = compact.CompactBufferedReader()
    assert (r.max_frame_size, r.max_string_size, r.max_container_size, r.max_depth) == (
        DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_STRING_SIZE, DEFAULT_MAX_CONTAINER_SIZE,
        DEFAULT_MAX_DEPTH)
    assert r.strict_read is True
    assert r.buffered == 0
    with pytest.raises(ValueError):
        compact.CompactBufferedReader(max_frame_size=-1)


# ---------------------------------------------------------------- golden vectors

# Written out by hand from the compact protocol specification
# (doc/specs/thrift-compact-protocol.md), not from any implementation.
GOLDEN = [
    ("point", lambda: P(1, -2), "15 02 15 03 00"),
    ("empty", AT.Empty, "00"),
    ("bool-true", lambda: AT.AllTypes(a_bool=True), "11 00"),
    ("bool-false", lambda: AT.AllTypes(a_bool=False), "12 00"),
    ("byte", lambda: AT.AllTypes(a_byte=-128), "23 80 00"),
    ("i16", lambda: AT.AllTypes(a_i16=-2), "34 03 00"),
    ("i16-min", lambda: AT.AllTypes(a_i16=-2**15), "34 ff ff 03 00"),
    ("i32-max", lambda: AT.AllTypes(a_i32=2**31 - 1), "45 fe ff ff ff 0f 00"),
    ("i32-min", lambda: AT.AllTypes(a_i32=-2**31), "45 ff ff ff ff 0f 00"),
    ("i64-max", lambda: AT.AllTypes(a_i64=2**63 - 1), "56 fe ff ff ff ff ff ff ff ff 01 00"),
    ("i64-min", lambda: AT.AllTypes(a_i64=-2**63), "56 ff ff ff ff ff ff ff ff ff 01 00"),
    ("i64-64", lambda: AT.AllTypes(a_i64=64), "56 80 01 00"),
    ("double-le", lambda: AT.AllTypes(a_double=1.5), "67 00 00 00 00 00 00 f8 3f 00"),
    ("double-neg-zero", lambda: AT.AllTypes(a_double=-0.0), "67 00 00 00 00 00 00 00 80 00"),
    ("string", lambda: AT.AllTypes(a_string="🌍"), "78 04 f0 9f 8c 8d 00"),
    ("string-128", lambda: AT.AllTypes(a_string="x" * 128), "78 80 01" + " 78" * 128 + " 00"),
    ("binary", lambda: AT.AllTypes(a_binary=b"\xff"), "88 01 ff 00"),
    ("enum", lambda: AT.AllTypes(a_enum=AT.Color.NEGATIVE), "95 0d 00"),
    ("struct", lambda: AT.AllTypes(a_struct=AT.Point(y=3)), "dc 25 06 00 00"),
    # the field id of the outer struct is restored after a nested struct
    ("nested-fid-restored", lambda: AT.AllTypes(a_struct=P(1, 2), a_tree=AT.Tree()),
     "dc 15 02 15 04 00 1c 00 00"),
    # delta 15 is the largest short header; 16 and more: type byte + zigzag id
    ("delta-15", lambda: AT.AllTypes(a_i64=0, l_bool=[]), "56 00 f9 01 00"),
    ("delta-19", lambda: AT.AllTypes(a_i32=1, l_i32=[1]), "45 02 09 2e 15 02 00"),
    ("list-empty", lambda: AT.AllTypes(l_i32=[]), "09 2e 05 00"),
    ("list-bool", lambda: AT.AllTypes(l_bool=[True, False]), "09 28 21 01 02 00"),
    ("list-14", lambda: AT.AllTypes(l_byte=[0] * 14), "09 2a e3" + " 00" * 14 + " 00"),
    ("list-15", lambda: AT.AllTypes(l_byte=[1] * 15), "09 2a f3 0f" + " 01" * 15 + " 00"),
    ("list-double", lambda: AT.AllTypes(l_double=[-2.0]),
     "09 32 17 00 00 00 00 00 00 00 c0 00"),
    ("set-string", lambda: AT.AllTypes(s_string={"a"}), "0a 5c 18 01 61 00"),
    ("map-empty", lambda: AT.AllTypes(m_string_i32={}), "0b 78 00 00"),
    ("map-one", lambda: AT.AllTypes(m_string_i32={"a": 1}), "0b 78 01 85 01 61 02 00"),
    ("map-bool-byte", lambda: AT.AllTypes(m_bool_byte={True: -1}), "0b 82 01 01 13 01 ff 00"),
    ("map-map", lambda: AT.AllTypes(mm_string_i64={"a": {}}), "0b a4 01 01 8b 01 61 00 00"),
    ("list-list", lambda: AT.AllTypes(ll_i32=[[], [7]]), "09 a0 01 29 05 15 0e 00"),
    ("result-fid-0", lambda: AT.AllTypesService.echo_i32_result(success=0), "05 00 00 00"),
    ("void-result", AT.AllTypesService.ping_result, "00"),
    # declaration order with wide and negative ids (thriftpy2 writes in this order)
    ("wide-ids", lambda: CT.Wide(a=1, b=2, c=3, d=4, e=True, f=False),
     "15 02 05 d8 04 04 05 fe ff 03 06 05 09 08 71 02 ff ff 03 00"),
]


@pytest.mark.parametrize("make, hexed", [pytest.param(m, h, id=i) for i, m, h in GOLDEN])
def test_golden(compact, make, hexed):
    expected = H(hexed)
    obj = make()
    codec = compact.CompactCodec()
    assert codec.encode_struct(obj) == expected
    decoded = codec.decode_struct(type(obj), expected)
    for name in type(obj).thrift_spec.values():
        fname = name[1]
        want = getattr(obj, fname)
        if want is not None:
            peers.same_value(want, getattr(decoded, fname), fname)


MESSAGES = [
    # name, mtype, seqid, body, bytes
    ("ping", 1, 1, lambda: AT.AllTypesService.ping_args(), "82 21 01 04 70 69 6e 67 00"),
    ("", 2, 0, lambda: AT.AllTypesService.ping_result(), "82 41 00 00 00"),
    ("e", 3, -1, lambda: AT.AllTypesService.ping_result(), "82 61 ff ff ff ff 0f 01 65 00"),
    ("o", 4, 2**31 - 1, lambda: AT.AllTypesService.fire_args(event="x", n=-1),
     "82 81 ff ff ff ff 07 01 6f 18 01 78 16 01 00"),
    ("m", 7, -2**31, lambda: AT.Empty(), "82 e1 80 80 80 80 08 01 6d 00"),
]


@pytest.mark.parametrize("name, mtype, seqid, make, hexed", MESSAGES)
@pytest.mark.parametrize("strict", [True, False])
def test_message_golden(compact, name, mtype, seqid, make, hexed, strict):
    codec = compact.CompactCodec(strict_read=strict, strict_write=strict)
    expected = H(hexed)
    assert codec.encode_message(name, mtype, seqid, make()) == expected
    framed = codec.encode_message(name, mtype, seqid, make(), framed=True)
    assert framed == struct.pack("!i", len(expected)) + expected
    got_name, got_type, got_seqid, offset = codec.decode_message_begin(expected)
    assert (got_name, got_type, got_seqid) == (name, mtype, seqid)
    assert codec.decode_struct(type(make()), expected, offset) == make()
    assert codec.decode_message_begin(bytearray(expected)) == (name, mtype, seqid, offset)
    assert codec.decode_message_begin(memoryview(b"xx" + expected)[2:]) == (name, mtype, seqid, offset)


# ---------------------------------------------------------------- round trips

def _rich_alltypes():
    tree = AT.Tree(label="root", leaves=[AT.Leaf(name="a", weight=-1, points=[P(1, 2)],
                                                 color=AT.Color.RED)],
                   by_name={"b": AT.Leaf(name="b", points=[])}, anchor=P(0, 0))
    return AT.AllTypes(
        a_bool=False, a_byte=127, a_i16=-1, a_i32=2**31 - 1, a_i64=-2**63, a_double=math.pi,
        a_string="héllo 🌍", a_binary=bytes(range(256)), a_enum=AT.Color.HUGE, a_typedef=0,
        a_name="", a_blob=b"", a_struct=P(-1, 1), a_tree=tree,
        l_bool=[True, False] * 10, l_byte=list(range(-128, 128)), l_i16=[-2**15, 0, 2**15 - 1],
        l_i32=list(range(-1000, 1000, 7)), l_i64=[2**63 - 1, -2**63, 0], l_double=[0.5, -1e300],
        l_string=["", "a" * 200, "🌍"], l_binary=[b"\x00", b""], l_enum=[AT.Color.BLUE],
        l_struct=[P(i, -i) for i in range(20)], l_typedef=["x"],
        s_bool={True}, s_byte={1, 2}, s_i16={3}, s_i32={-4}, s_i64={2**40}, s_double={1.25},
        s_string={"s", "t"}, s_binary={b"b"}, s_enum={AT.Color.RED}, s_struct={P(1, 1)},
        m_string_i32={str(i): i for i in range(30)}, m_i32_string={1: "one"},
        m_i64_struct={5: P(5, 5)}, m_binary_double={b"k": -0.0}, m_enum_list={AT.Color.GREEN: ["g"]},
        m_bool_byte={False: 0}, m_i16_bool={1: True, 2: False}, m_double_i64={0.25: -1},
        m_string_binary={"k": b"\xff"}, m_struct_string={P(2, 2): "two"},
        ll_i32=[[1], [], list(range(20))], lll_string=[[["a"]]], mm_string_i64={"o": {"i": 1}},
        m_typedef={"t": {}}, lm_struct=[{"p": P(1, 2)}], ms_i32={"s": {1}}, ls_string=[{"x"}],
        deep={1: [{"k": [P(3, 4)]}]}, l_tree=[tree, AT.Tree()], s_typedef={7},
    )


def test_round_trip_everything(compact):
    codec = compact.CompactCodec()
    obj = _rich_alltypes()
    data = codec.encode_struct(obj)
    back = codec.decode_struct(AT.AllTypes, data)
    peers.same_value(obj, back)
    # into an instance; from bytearray/memoryview; at an offset with trailing bytes
    target = AT.AllTypes()
    assert codec.decode_struct(target, bytearray(data)) is target
    peers.same_value(obj, target)
    peers.same_value(obj, codec.decode_struct(AT.AllTypes, memoryview(b"\x01\x02" + data + b"junk"), 2))


def test_non_contiguous_input(compact):
    data = compact.CompactCodec().encode_struct(P(3, 4))
    spread = bytearray(len(data) * 2)
    spread[::2] = data
    view = memoryview(spread)[::2]
    assert not view.c_contiguous
    assert compact.CompactCodec().decode_struct(AT.Point, view) == P(3, 4)


def test_decode_offset_checks(compact):
    codec = compact.CompactCodec()
    with pytest.raises(ValueError):
        codec.decode_struct(AT.Point, b"\x00", -1)
    with pytest.raises(TruncatedError):
        codec.decode_struct(AT.Point, b"\x00", 1)
    with pytest.raises(TruncatedError):
        codec.decode_struct(AT.Point, b"\x00", 10**30)


def test_recursive_struct(compact):
    codec = compact.CompactCodec()
    node = CT.Node(v=1, kids=[CT.Node(v=2, kids=[CT.Node(v=3)])], child=CT.Node(v=4))
    assert codec.decode_struct(CT.Node, codec.encode_struct(node)) == node


def test_decoded_objects_skip_init_and_copy_defaults(compact):
    codec = compact.CompactCodec()
    a = codec.decode_struct(CT.Defaults, b"\x00")
    b = codec.decode_struct(CT.Defaults, b"\x00")
    assert (a.l, a.m, a.x) == ([1, 2], {"a": [1]}, 7)
    assert list(vars(a)) == ["l", "m", "x"]
    a.l.append(3)
    a.m["a"].append(2)
    assert (b.l, b.m) == ([1, 2], {"a": [1]})
    assert CT.Defaults.default_spec[0][1] == [1, 2]  # the class default is untouched


def test_decode_into_instance_keeps_other_fields(compact):
    codec = compact.CompactCodec()
    target = AT.Point(x=9, y=9)
    codec.decode_struct(target, H("25 06 00"))
    assert (target.x, target.y) == (9, 3)


def test_decode_response_false_and_invalid_utf8(compact):
    data = H("78 03 61 ff 80 18 02 c3 a9 00")
    obj = compact.CompactCodec().decode_struct(AT.AllTypes, data)
    assert obj.a_string == b"a\xff\x80"  # not UTF-8: the bytes (thriftpy2's rule)
    assert obj.a_binary == b"\xc3\xa9"   # binary is always bytes
    good = H("78 02 c3 a9 00")
    assert compact.CompactCodec().decode_struct(AT.AllTypes, good).a_string == "é"
    raw = compact.CompactCodec(decode_response=False).decode_struct(AT.AllTypes, good)
    assert raw.a_string == b"\xc3\xa9"


def test_bool_fields_and_elements(compact):
    codec = compact.CompactCodec()
    assert codec.decode_struct(AT.AllTypes, H("11 00")).a_bool is True
    assert codec.decode_struct(AT.AllTypes, H("12 00")).a_bool is False
    # elements: only 1 is true, as every Apache reader decides
    assert codec.decode_struct(AT.AllTypes, H("09 28 51 01 02 00 03 ff 00")).l_bool == [
        True, False, False, False, False]
    # the element type nibble may be TRUE or FALSE
    assert codec.decode_struct(AT.AllTypes, H("09 28 12 01 00")).l_bool == [True]


def test_stop_with_a_delta_nibble(compact):
    """A header byte whose type nibble is 0 ends the struct, as Apache reads it."""
    assert compact.CompactCodec().decode_struct(AT.Point, H("15 02 f0")) == AT.Point(x=1)


def test_unknown_and_retyped_fields_are_skipped(compact):
    codec = compact.CompactCodec()
    # Point: field 1 sent as a string, then field 4 (unknown) of every type,
    # then y (field 2, long header)
    skipped = [
        "31", "32", "33 7f", "34 ff ff 03", "35 ff ff ff ff 0f", "36 ff ff ff ff ff ff ff ff ff 01",
        "37 00 00 00 00 00 00 00 00", "38 02 61 62", "39 21 01 02", "3a 1c 00",
        "3b 02 34 01 02 01 02", "3b 00", "3c 11 12 1c 00 00", "39 f9 10" + " 01" * 16,
        "39 18 03 61 62 63", "3b 01 99 05 29 05 02", "39 0d", "3b 00",
    ]
    for part in skipped:
        data = H("18 01 61 " + part + " 05 04 06 00")
        assert codec.decode_struct(AT.Point, data) == AT.Point(y=3), part


def test_wide_and_negative_field_ids(compact):
    codec = compact.CompactCodec()
    obj = CT.Wide(a=1, b=2, c=3, d=4, e=True, f=False)
    assert codec.decode_struct(CT.Wide, codec.encode_struct(obj)) == obj
    # ids reached by deltas past 32767 are just unknown fields
    data = H("05 fe ff 03 02 | 15 04 00".replace("|", ""))
    assert codec.decode_struct(CT.Wide, data) == CT.Wide(c=1)


def test_required_fields(compact):
    codec = compact.CompactCodec()
    assert codec.decode_struct(CT.Req, H("15 02 29 00 00")) == CT.Req(a=1, c=[])
    with pytest.raises(InvalidDataError):
        codec.decode_struct(CT.Req, H("15 02 00"))  # c missing (its default does not count)
    with pytest.raises(InvalidDataError):
        codec.encode_struct(CT.Req(a=None, c=[]))
    with pytest.raises(InvalidDataError):
        codec.encode_struct(CT.Req(a=1, c=None))


def test_unhashable_elements(compact):
    codec = compact.CompactCodec()
    with pytest.raises(InvalidDataError):
        codec.decode_struct(CT.Weird, H("1a 19 15 02 00"))   # set<list<i32>>
    with pytest.raises(InvalidDataError):
        codec.decode_struct(CT.Weird, H("2b 01 95 15 02 04 00"))  # map<list<i32>, i32>
    assert codec.decode_struct(CT.Weird, H("39 1a 15 02 00")).ls == [{1}]


# ---------------------------------------------------------------- varints (CVE-2026-43871)

VARINT_CASES = [
    # (AllTypes bytes, expected exception or (field, value))
    ("i16-3-bytes", "34 ff ff 03 00", ("a_i16", -2**15)),
    ("i16-non-canonical", "34 80 80 00 00", ("a_i16", 0)),
    ("i16-overflow", "34 ff ff 07", InvalidDataError),
    ("i16-4-bytes", "34 80 80 80 00", InvalidDataError),
    ("i32-5-bytes", "45 ff ff ff ff 0f 00", ("a_i32", -2**31)),
    ("i32-overflow", "45 ff ff ff ff 1f", InvalidDataError),
    ("i32-6-bytes", "45 80 80 80 80 80 00", InvalidDataError),
    ("i64-10-bytes", "56 ff ff ff ff ff ff ff ff ff 01 00", ("a_i64", -2**63)),
    ("i64-overflow", "56 ff ff ff ff ff ff ff ff ff 02", InvalidDataError),
    ("i64-11-bytes", "56 80 80 80 80 80 80 80 80 80 80 00", InvalidDataError),
    ("endless", "56" + " ff" * 5000, InvalidDataError),
    ("enum-i32-overflow", "95 80 80 80 80 10", InvalidDataError),
    ("truncated", "56 ff ff", TruncatedError),
    ("truncated-at-limit", "45 ff ff ff ff", TruncatedError),
    ("field-id-4-bytes", "05 80 80 80 00 00", InvalidDataError),
    ("field-id-overflow", "05 80 80 04 00", InvalidDataError),
    ("string-length-2^31", "78 80 80 80 80 08", NegativeSizeError),
    ("string-length-2^32-1", "78 ff ff ff ff 0f", NegativeSizeError),
    ("string-length-overflow", "78 ff ff ff ff 1f", InvalidDataError),
    ("string-length-6-bytes", "78 81 80 80 80 80 00", InvalidDataError),
    ("list-size-negative", "09 2e f5 80 80 80 80 08", NegativeSizeError),
    ("list-size-6-bytes", "09 2e f5 80 80 80 80 80 00", InvalidDataError),
    ("map-size-negative", "0b 78 ff ff ff ff 0f 85", NegativeSizeError),
    ("map-size-overflow", "0b 78 ff ff ff ff 7f 85", InvalidDataError),
    # the same inside skipped values (field 99 is unknown)
    ("skip-i64-11-bytes", "06 c6 01" + " 80" * 10 + " 00", InvalidDataError),
    ("skip-i64-ok", "06 c6 01" + " 80" * 9 + " 01 00", ("a_i64", None)),
    ("skip-i16-4-bytes", "04 c6 01 80 80 80 00", InvalidDataError),
    ("skip-string-negative", "08 c6 01 80 80 80 80 08", NegativeSizeError),
    ("skip-list-endless", "09 c6 01 f5" + " ff" * 100, InvalidDataError),
    ("skip-field-id-endless", "0c c6 01 05" + " ff" * 100, InvalidDataError),
]


@pytest.mark.parametrize("hexed, expected", [pytest.param(h, e, id=i) for i, h, e in VARINT_CASES])
def test_varints(compact, hexed, expected):
    data = H(hexed)
    codec = compact.CompactCodec()
    if isinstance(expected, tuple):
        assert getattr(codec.decode_struct(AT.AllTypes, data), expected[0]) == expected[1]
    else:
        with pytest.raises(expected):
            codec.decode_struct(AT.AllTypes, data)


# ---------------------------------------------------------------- limits and check order

def test_string_limit(compact):
    data = H("78 04 61 62 63 64 00")
    assert compact.CompactCodec(max_string_size=4).decode_struct(AT.AllTypes, data).a_string == "abcd"
    with pytest.raises(SizeLimitError):
        compact.CompactCodec(max_string_size=3).decode_struct(AT.AllTypes, data)
    # limit before bytes left; negative before limit
    with pytest.raises(SizeLimitError):
        compact.CompactCodec(max_string_size=3).decode_struct(AT.AllTypes, H("78 10 61"))
    with pytest.raises(TruncatedError):
        compact.CompactCodec().decode_struct(AT.AllTypes, H("78 10 61"))
    with pytest.raises(NegativeSizeError):
        compact.CompactCodec(max_string_size=0).decode_struct(AT.AllTypes, H("78 ff ff ff ff 0f"))
    # in skipped values too
    with pytest.raises(SizeLimitError):
        compact.CompactCodec(max_string_size=1).decode_struct(AT.Point, H("38 02 61 62 00"))


@pytest.mark.parametrize("field, hexed", [
    ("l_i32", "09 2e 35 02 04 06"),
    ("s_i32", "0a 56 35 02 04 06"),
    ("m_i32_string", "0b 7a 03 58 02 00 04 00 06 00"),
])
def test_container_limit(compact, field, hexed):
    data = H(hexed + " 00")
    decoded = compact.CompactCodec(max_container_size=3).decode_struct(AT.AllTypes, data)
    assert len(getattr(decoded, field)) == 3
    with pytest.raises(SizeLimitError):
        compact.CompactCodec(max_container_size=2).decode_struct(AT.AllTypes, data)
    with pytest.raises(SizeLimitError):  # skipped
        compact.CompactCodec(max_container_size=2).decode_struct(AT.Empty, data)


CHECK_ORDER = [
    # depth first (max_depth=1: no container may open), even with no header byte
    ("depth-before-header", "09 2e", {"max_depth": 1}, DepthLimitError),
    ("truncated-header", "09 2e", {}, TruncatedError),
    ("truncated-size", "09 2e f5 80", {}, TruncatedError),
    ("negative-before-limit", "09 2e f5 80 80 80 80 08", {"max_container_size": 0}, NegativeSizeError),
    ("limit-before-type", "09 2e fd 10", {"max_container_size": 15}, SizeLimitError),
    ("type-before-bytes-left", "09 2e fd 10", {}, InvalidDataError),
    ("schema-type-before-bytes-left", "09 2e f6 10", {}, InvalidDataError),
    ("bytes-left", "09 2e f5 10 02", {}, TruncatedError),
    ("doubles-need-8-bytes", "09 32 27" + " 00" * 15, {}, TruncatedError),
    ("zero-count-any-type", "09 2e 0d 00", {}, None),
    ("map-zero-no-type-byte", "0b 78 00 00", {}, None),
    ("map-type-byte-read-first", "0b 78 80 80 80 80 08", {}, TruncatedError),
    ("map-negative-after-type", "0b 78 80 80 80 80 08 85", {}, NegativeSizeError),
    ("map-bad-key-type", "0b 78 01 d5", {}, InvalidDataError),
    ("map-wrong-value-type", "0b 78 01 86", {}, InvalidDataError),
    ("map-bytes-left", "0b 78 05 85 01 61 02", {}, TruncatedError),
    ("bad-field-type", "0d 00", {}, InvalidDataError),
    ("bad-field-type-15", "1f", {}, InvalidDataError),
    ("skip-bad-elem-type", "09 c6 01 1e", {}, InvalidDataError),
    ("skip-bad-map-types", "0b c6 01 01 e5", {}, InvalidDataError),
    ("skip-elem-bytes-left", "09 c6 01 f5 10", {}, TruncatedError),
    ("skip-depth", "0c c6 01 00", {"max_depth": 1}, DepthLimitError),
    ("empty-input", "", {}, TruncatedError),
]


@pytest.mark.parametrize("hexed, options, expected", [
    pytest.param(h, o, e, id=i) for i, h, o, e in CHECK_ORDER])
def test_check_order(compact, hexed, options, expected):
    data = H(hexed)
    codec = compact.CompactCodec(**options)
    if expected is None:
        codec.decode_struct(AT.AllTypes, data)
    else:
        with pytest.raises(expected):
            codec.decode_struct(AT.AllTypes, data)


def test_huge_declared_sizes_allocate_nothing(compact):
    import tracemalloc

    codec = compact.CompactCodec(max_container_size=2**31, max_string_size=2**31)
    hostile = [
        H("09 2e f5 ff ff ff ff 07 00"),       # list<i32> of 2**31-1
        H("0b 78 ff ff ff ff 07 85 00"),       # map of 2**31-1
        H("78 ff ff ff ff 07 00"),             # string of 2**31-1 bytes
        H("09 c6 01 fc ff ff ff ff 07 00"),    # skipped list of structs
    ]
    tracemalloc.start()
    try:
        for data in hostile:
            with pytest.raises(TruncatedError):
                codec.decode_struct(AT.AllTypes, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# ---------------------------------------------------------------- depth

def _nested_node(levels):
    node = CT.Node(v=0)
    for _ in range(levels - 1):
        node = CT.Node(child=node)
    return node


def _nested_lists(levels):
    # Node.kids: list<Node>; each list adds a level, each Node too
    node = CT.Node(v=0)
    for _ in range(levels):
        node = CT.Node(kids=[node])
    return node


@pytest.mark.parametrize("max_depth", [1, 2, 5, 64])
def test_depth_limit_both_ways(compact, max_depth):
    codec = compact.CompactCodec(max_depth=max_depth)
    big = compact.CompactCodec(max_depth=10_000)
    ok = _nested_node(max_depth)
    assert codec.decode_struct(CT.Node, codec.encode_struct(ok)) == ok
    too_deep = _nested_node(max_depth + 1)
    with pytest.raises(DepthLimitError):
        codec.encode_struct(too_deep)
    data = big.encode_struct(too_deep)
    with pytest.raises(DepthLimitError):
        codec.decode_struct(CT.Node, data)
    with pytest.raises(DepthLimitError):  # unknown to Empty: skipped, still limited
        codec.decode_struct(AT.Empty, H("1c") + data)
    # lists count as levels
    n = max_depth // 2
    lists_ok = _nested_lists(n)  # 2n + 1 levels
    if 2 * n + 1 <= max_depth:
        assert codec.decode_struct(CT.Node, codec.encode_struct(lists_ok)) == lists_ok
    with pytest.raises(DepthLimitError):
        codec.encode_struct(_nested_lists(n + 1))


def test_cycles_are_depth_errors(compact):
    node = CT.Node(v=1)
    node.child = node
    with pytest.raises(DepthLimitError):
        compact.CompactCodec().encode_struct(node)
    lst = []
    lst.append(lst)
    with pytest.raises((DepthLimitError, TypeError)):
        compact.CompactCodec().encode_struct(AT.AllTypes(ll_i32=lst))


def test_very_deep_input_no_crash(compact):
    """100k nested lists: a clean error at max_depth, not a stack overflow."""
    data = H("09 c6 01") + b"\x19" * 100_000
    with pytest.raises(DepthLimitError):
        compact.CompactCodec().decode_struct(AT.Empty, data)
    with pytest.raises((DepthLimitError, RecursionError)):
        compact.CompactCodec(max_depth=10**9).decode_struct(AT.Empty, data + b"\x00" * 5)


# ---------------------------------------------------------------- encode errors

ENCODE_ERRORS = [
    ("i32-too-big", lambda: AT.AllTypes(a_i32=2**31), OverflowError),
    ("i16-too-small", lambda: AT.AllTypes(a_i16=-2**15 - 1), OverflowError),
    ("byte-too-big", lambda: AT.AllTypes(a_byte=128), OverflowError),
    ("i64-too-big", lambda: AT.AllTypes(a_i64=2**63), OverflowError),
    ("i64-str", lambda: AT.AllTypes(a_i64="1"), TypeError),
    ("i32-float", lambda: AT.AllTypes(a_i32=1.0), TypeError),
    ("double-str", lambda: AT.AllTypes(a_double="1.0"), TypeError),
    ("double-huge-int", lambda: AT.AllTypes(a_double=10**400), OverflowError),
    ("string-int", lambda: AT.AllTypes(a_string=5), TypeError),
    ("binary-none-in-list", lambda: AT.AllTypes(l_binary=[None]), TypeError),
    ("struct-wrong-class", lambda: AT.AllTypes(a_struct=AT.Leaf()), TypeError),
    ("list-not-sized", lambda: AT.AllTypes(l_i32=(i for i in range(3))), TypeError),
    ("map-not-a-map", lambda: AT.AllTypes(m_string_i32=[1, 2]), (TypeError, AttributeError)),
    ("list-elem-overflow", lambda: AT.AllTypes(l_i64=[1, 2**64]), OverflowError),
    ("double-list-bad", lambda: AT.AllTypes(l_double=[1.0, "x"]), TypeError),
    ("map-value-bad", lambda: AT.AllTypes(m_string_i32={"a": "b"}), TypeError),
    ("surrogate", lambda: AT.AllTypes(a_string="\ud800"), UnicodeEncodeError),
]


@pytest.mark.parametrize("make, exc", [pytest.param(m, e, id=i) for i, m, e in ENCODE_ERRORS])
def test_encode_errors(compact, make, exc):
    with pytest.raises(exc):
        compact.CompactCodec().encode_struct(make())


def test_encode_accepts_what_binary_accepts(compact):
    import enum

    class Idx:
        def __index__(self):
            return 5

    class Flt:
        def __float__(self):
            return 2.5

    codec = compact.CompactCodec()
    obj = AT.AllTypes(a_i32=Idx(), a_double=Flt(), a_bool=[1], a_byte=True,
                      a_binary=bytearray(b"ab"), a_blob=memoryview(b"cd"),
                      l_double=[1, 2], l_i64=(1, 2), s_i32=frozenset([3]),
                      a_enum=enum.IntEnum("E", "A B")(2))
    back = codec.decode_struct(AT.AllTypes, codec.encode_struct(obj))
    assert (back.a_i32, back.a_double, back.a_bool, back.a_byte, back.a_binary, back.a_blob,
            back.l_double, back.l_i64, back.s_i32, back.a_enum) == (
        5, 2.5, True, 1, b"ab", b"cd", [1.0, 2.0], [1, 2], {3}, 2)


class _LyingList:
    """Claims more elements than it yields."""

    def __init__(self, items, claim):
        self._items, self._claim = items, claim

    def __len__(self):
        return self._claim

    def __iter__(self):
        return iter(self._items)


class _LyingMap(_LyingList):
    def items(self):
        return [(k, 1) for k in self._items]


@pytest.mark.parametrize("field, value", [
    ("l_i32", _LyingList([1], 2)), ("l_string", _LyingList(["a", "b"], 1)),
    ("l_double", _LyingList([1.0], 3)), ("l_bool", _LyingList([True], 2)),
    ("l_struct", _LyingList([], 1)), ("m_string_i32", _LyingMap(["a"], 2)),
])
def test_container_changed_size(compact, field, value):
    with pytest.raises(RuntimeError):
        compact.CompactCodec().encode_struct(AT.AllTypes(**{field: value}))


def test_reentrant_encode(compact):
    """A value's __index__ that encodes with the same codec does not clobber the buffer."""
    codec = compact.CompactCodec()

    class Sneaky:
        def __index__(self):
            codec.encode_struct(P(7, 7))
            return 3

    assert codec.encode_struct(P(Sneaky(), 1)) == codec.encode_struct(P(3, 1))


# ---------------------------------------------------------------- messages

@pytest.mark.parametrize("mtype, seqid, exc", [
    (8, 0, OverflowError), (-1, 0, OverflowError), (1, 2**31, OverflowError),
    (1, -2**31 - 1, OverflowError), ("1", 0, TypeError), (1, 1.0, TypeError),
])
def test_encode_message_range(compact, mtype, seqid, exc):
    with pytest.raises(exc):
        compact.CompactCodec().encode_message("m", mtype, seqid, AT.Empty())


def test_encode_message_name_must_be_str(compact):
    with pytest.raises(TypeError):
        compact.CompactCodec().encode_message(b"m", 1, 0, AT.Empty())


MESSAGE_ERRORS = [
    ("empty", "", TruncatedError),
    ("binary-protocol", "80 01 00 01 00 00 00 00", BadVersionError),
    ("bad-id", "81 21 00 00", BadVersionError),
    ("bad-version", "82 22 00 00", BadVersionError),
    ("version-0", "82 20 00 00", BadVersionError),
    ("truncated-after-id", "82", TruncatedError),
    ("truncated-seqid", "82 21 80", TruncatedError),
    ("seqid-6-bytes", "82 21 80 80 80 80 80 00 00", InvalidDataError),
    ("seqid-overflow", "82 21 ff ff ff ff 1f 00", InvalidDataError),
    ("name-negative", "82 21 00 80 80 80 80 08", NegativeSizeError),
    ("name-truncated", "82 21 00 05 61", TruncatedError),
    ("name-not-utf8", "82 21 00 01 ff", InvalidDataError),
]


@pytest.mark.parametrize("hexed, exc", [pytest.param(h, e, id=i) for i, h, e in MESSAGE_ERRORS])
@pytest.mark.parametrize("strict_read", [True, False])
def test_message_begin_errors(compact, hexed, exc, strict_read):
    with pytest.raises(exc):
        compact.CompactCodec(strict_read=strict_read).decode_message_begin(H(hexed))


def test_message_name_limit(compact):
    data = H("82 21 00 03 61 62 63 00")
    assert compact.CompactCodec(max_string_size=3).decode_message_begin(data) == ("abc", 1, 0, 7)
    with pytest.raises(SizeLimitError):
        compact.CompactCodec(max_string_size=2).decode_message_begin(data)


def test_message_type_bits(compact):
    """Only the low 5 bits are the version; the type is the high 3 bits."""
    for mtype in range(8):
        data = bytes([0x82, 1 | mtype << 5, 0, 0])
        assert compact.CompactCodec().decode_message_begin(data) == ("", mtype, 0, 4)


# ---------------------------------------------------------------- reader

def _message(codec, i=0, size=3):
    args = AT.AllTypesService.echo_all_args(v=AT.AllTypes(
        a_i32=i, l_string=["x" * size] * 3, m_string_i32={"k": i}, a_double=0.5,
        l_bool=[True], a_struct=P(i, i), ll_i32=[[1], []], a_bool=True))
    return codec.encode_message("echo_all", 1, i, args)


def _feed_all(reader, data, chunks):
    out = []
    for chunk in chunks(data):
        out += reader.feed(chunk)
    return out


def _split(sizes):
    def chunks(data):
        pos, i = 0, 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            yield data[pos:pos + n]
            pos += n
            i += 1
    return chunks


@pytest.mark.parametrize("sizes", [[1], [2, 3], [7], [1000], [10**9]], ids=str)
def test_reader_splits_messages(compact, sizes):
    codec = compact.CompactCodec()
    msgs = [_message(codec, i, size=i * 40) for i in range(6)]
    msgs.append(codec.encode_message("ping", 1, 9, AT.AllTypesService.ping_args()))
    stream = b"".join(msgs)
    reader = compact.CompactBufferedReader()
    assert _feed_all(reader, stream, _split(sizes)) == msgs
    assert reader.buffered == 0


def test_reader_buffered_and_types(compact):
    codec = compact.CompactCodec()
    msg = _message(codec)
    reader = compact.CompactBufferedReader()
    assert reader.feed(b"") == []
    assert reader.feed(bytearray(msg[:10])) == []
    assert reader.buffered == 10
    out = reader.feed(memoryview(msg[10:] + msg[:5]))
    assert out == [msg] and type(out[0]) is bytes
    assert reader.buffered == 5


def test_reader_every_split_point(compact):
    codec = compact.CompactCodec()
    msg = _message(codec)
    for cut in range(len(msg) + 1):
        reader = compact.CompactBufferedReader()
        assert reader.feed(msg[:cut]) + reader.feed(msg[cut:]) == [msg], cut


def test_reader_large_string_linear(compact):
    """A 5 MB string arriving in 1 KB chunks is not rescanned per chunk."""
    codec = compact.CompactCodec()
    msg = codec.encode_message("echo_string", 1, 1, AT.AllTypesService.echo_string_args(v="x" * 5_000_000))
    reader = compact.CompactBufferedReader()
    out = []
    for i in range(0, len(msg), 1024):
        out += reader.feed(msg[i:i + 1024])
    assert out == [msg]


READER_ERRORS = [
    ("binary-protocol", "80 01 00 01", {}, BadVersionError),
    ("bad-version", "82 23", {}, BadVersionError),
    ("name-too-long", "82 21 00 05", {"max_string_size": 4}, SizeLimitError),
    ("name-negative", "82 21 00 ff ff ff ff 0f", {}, NegativeSizeError),
    ("seqid-too-long", "82 21 ff ff ff ff ff", {}, InvalidDataError),
    ("bad-field-type", "82 21 00 00 1d", {}, InvalidDataError),
    ("field-id-too-long", "82 21 00 00 05 80 80 80", {}, InvalidDataError),
    ("i64-too-long", "82 21 00 00 16" + " 80" * 10, {}, InvalidDataError),
    ("string-too-long", "82 21 00 00 18 05", {"max_string_size": 4}, SizeLimitError),
    ("list-too-long", "82 21 00 00 19 f5 05", {"max_container_size": 4}, SizeLimitError),
    ("list-bad-type", "82 21 00 00 19 1e", {}, InvalidDataError),
    ("map-bad-type", "82 21 00 00 1b 01 0e", {}, InvalidDataError),
    ("map-negative", "82 21 00 00 1b 80 80 80 80 08 55", {}, NegativeSizeError),
    ("depth", "82 21 00 00 1c 1c", {"max_depth": 2}, DepthLimitError),
    ("depth-list", "82 21 00 00 19 19", {"max_depth": 2}, DepthLimitError),
    ("frame-size-string", "82 21 00 00 18 80 01", {"max_frame_size": 100}, SizeLimitError),
    ("frame-size-count", "82 21 00 00 19 f7 0e", {"max_frame_size": 100}, SizeLimitError),
    ("frame-size-bytes", "82 21 00 00" + " 15 00" * 60, {"max_frame_size": 100}, SizeLimitError),
]


@pytest.mark.parametrize("hexed, options, exc", [
    pytest.param(h, o, e, id=i) for i, h, o, e in READER_ERRORS])
@pytest.mark.parametrize("chunk", [1, 10**6])
def test_reader_errors(compact, hexed, options, exc, chunk):
    reader = compact.CompactBufferedReader(**options)
    with pytest.raises(exc):
        _feed_all(reader, H(hexed), _split([chunk]))
    # broken for good: the connection must be closed
    with pytest.raises(exc):
        reader.feed(b"\x00")


def test_reader_max_depth_zero(compact):
    """The message's struct is level 1: max_depth=0 refuses every message."""
    msg = compact.CompactCodec().encode_message("m", 1, 0, AT.Empty())
    reader = compact.CompactBufferedReader(max_depth=0)
    with pytest.raises(DepthLimitError):
        reader.feed(msg)
    assert compact.CompactBufferedReader(max_depth=1).feed(msg) == [msg]


def test_reader_frame_size_boundary(compact):
    codec = compact.CompactCodec()
    msg = _message(codec)
    assert compact.CompactBufferedReader(max_frame_size=len(msg)).feed(msg) == [msg]
    with pytest.raises(SizeLimitError):
        compact.CompactBufferedReader(max_frame_size=len(msg) - 1).feed(msg)
    reader = compact.CompactBufferedReader(max_frame_size=len(msg) - 1)
    with pytest.raises(SizeLimitError):
        _feed_all(reader, msg, _split([1]))


def test_reader_counts_depth_like_the_decoder(compact):
    codec = compact.CompactCodec(max_depth=10_000)
    for max_depth in (1, 2, 3, 10):
        for levels in (max_depth, max_depth + 1):
            msg = codec.encode_message("m", 1, 0, _nested_node(levels))
            reader = compact.CompactBufferedReader(max_depth=max_depth)
            if levels <= max_depth:
                assert reader.feed(msg) == [msg]
            else:
                with pytest.raises(DepthLimitError):
                    reader.feed(msg)


def test_reader_deep_nesting_no_recursion(compact):
    """The scanner is iterative: 200k levels with max_depth raised is fine."""
    levels = 200_000
    body = b"\x1c" * levels + b"\x00" * (levels + 1)
    msg = H("82 21 00 00") + body
    reader = compact.CompactBufferedReader(max_depth=levels + 1)
    assert reader.feed(msg) == [msg]


# ---------------------------------------------------------------- differential (hypothesis)

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_i8 = st.integers(-2**7, 2**7 - 1)
_i16 = st.integers(-2**15, 2**15 - 1)
_i32 = st.integers(-2**31, 2**31 - 1)
_i64 = st.integers(-2**63, 2**63 - 1)
_dbl = st.floats(allow_nan=False)
_txt = st.text(max_size=20)
_bin = st.binary(max_size=20)
_point = st.builds(AT.Point, x=st.none() | _i32, y=st.none() | _i32)


def _small(s):
    return st.none() | s


_leaf = st.builds(AT.Leaf, name=_small(_txt), weight=_small(_i64),
                  points=_small(st.lists(_point, max_size=3)), color=_small(_i32))
_tree = st.builds(AT.Tree, label=_small(_txt), leaves=_small(st.lists(_leaf, max_size=2)),
                  by_name=_small(st.dictionaries(_txt, _leaf, max_size=2)), anchor=_small(_point))

alltypes = st.builds(
    AT.AllTypes,
    a_bool=_small(st.booleans()), a_byte=_small(_i8), a_i16=_small(_i16), a_i32=_small(_i32),
    a_i64=_small(_i64), a_double=_small(_dbl), a_string=_small(_txt), a_binary=_small(_bin),
    a_struct=_small(_point), a_tree=_small(_tree),
    l_bool=_small(st.lists(st.booleans(), max_size=20)),
    l_byte=_small(st.lists(_i8, max_size=20)), l_i16=_small(st.lists(_i16, max_size=5)),
    l_i32=_small(st.lists(_i32, max_size=20)), l_i64=_small(st.lists(_i64, max_size=5)),
    l_double=_small(st.lists(_dbl, max_size=5)), l_string=_small(st.lists(_txt, max_size=5)),
    l_binary=_small(st.lists(_bin, max_size=3)), l_struct=_small(st.lists(_point, max_size=3)),
    s_i32=_small(st.sets(_i32, max_size=5)), s_string=_small(st.sets(_txt, max_size=3)),
    m_string_i32=_small(st.dictionaries(_txt, _i32, max_size=5)),
    m_i16_bool=_small(st.dictionaries(_i16, st.booleans(), max_size=3)),
    m_i64_struct=_small(st.dictionaries(_i64, _point, max_size=3)),
    ll_i32=_small(st.lists(st.lists(_i32, max_size=3), max_size=3)),
    ms_i32=_small(st.dictionaries(_txt, st.sets(_i32, max_size=3), max_size=2)),
)


def _both():
    if _compat.NO_EXTENSIONS:
        pytest.skip("the differential tests need the compiled extension")
    return (importlib.import_module("aiothrift._compact"),
            importlib.import_module("aiothrift._compact_py"))


def _outcome(fn):
    try:
        return "ok", fn()
    except (ProtocolError, TypeError, OverflowError, ValueError, RuntimeError) as exc:
        return "error", type(exc)


def _same_outcome(a, b):
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert a[1] is b[1], (a, b)
    else:
        peers.same_value(a[1], b[1])


@SETTINGS
@given(obj=alltypes)
def test_differential_encode_decode(obj):
    cmod, pmod = _both()
    c, p = cmod.CompactCodec(), pmod.CompactCodec()
    data = c.encode_struct(obj)
    assert data == p.encode_struct(obj)
    peers.same_value(c.decode_struct(AT.AllTypes, data), p.decode_struct(AT.AllTypes, data))
    msg = c.encode_message("m", 2, -5, obj, framed=True)
    assert msg == p.encode_message("m", 2, -5, obj, framed=True)


def _mutate(data, rnd):
    data = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        if op == 0 and data:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif op == 1 and data:
            del data[rnd.randrange(len(data)):]
        elif op == 2:
            at = rnd.randrange(len(data) + 1)
            data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 6)))
        elif data:
            at = rnd.randrange(len(data))
            del data[at:at + rnd.randint(1, 4)]
    return bytes(data)


OPTION_SETS = [{}, {"max_depth": 3}, {"max_container_size": 4}, {"max_string_size": 3},
               {"decode_response": False}]


@SETTINGS
@given(obj=alltypes, seed=st.integers(0, 2**32), opts=st.sampled_from(OPTION_SETS),
       target=st.sampled_from([AT.AllTypes, AT.Empty, AT.Tree, AT.Point]))
def test_differential_mutated_input(obj, seed, opts, target):
    cmod, pmod = _both()
    data = _mutate(cmod.CompactCodec().encode_struct(obj), random.Random(seed))
    c, p = cmod.CompactCodec(**opts), pmod.CompactCodec(**opts)
    _same_outcome(_outcome(lambda: c.decode_struct(target, data)),
                  _outcome(lambda: p.decode_struct(target, data)))


@SETTINGS
@given(data=st.binary(max_size=64), opts=st.sampled_from(OPTION_SETS))
def test_differential_random_bytes(data, opts):
    cmod, pmod = _both()
    c, p = cmod.CompactCodec(**opts), pmod.CompactCodec(**opts)
    for target in (AT.AllTypes, AT.Empty):
        _same_outcome(_outcome(lambda: c.decode_struct(target, data)),
                      _outcome(lambda: p.decode_struct(target, data)))
    _same_outcome(_outcome(lambda: c.decode_message_begin(data)),
                  _outcome(lambda: p.decode_message_begin(data)))


def _reader_outcome(mod, stream, sizes, opts):
    reader = mod.CompactBufferedReader(**opts)
    out = []
    try:
        for chunk in _split(sizes)(stream):
            out += reader.feed(chunk)
    except ProtocolError as exc:
        return "error", type(exc), out
    return "ok", out, reader.buffered


@SETTINGS
@given(objs=st.lists(alltypes, min_size=1, max_size=3), seed=st.integers(0, 2**32),
       sizes=st.lists(st.integers(1, 50), min_size=1, max_size=4),
       opts=st.sampled_from([{}, {"max_depth": 3}, {"max_container_size": 4},
                             {"max_string_size": 3}, {"max_frame_size": 200}]))
def test_differential_reader(objs, seed, sizes, opts):
    """Compiled and Python readers: same messages, same errors, any chunking."""
    cmod, pmod = _both()
    codec = cmod.CompactCodec()
    stream = b"".join(codec.encode_message("m%d" % i, 1, i, o) for i, o in enumerate(objs))
    rnd = random.Random(seed)
    if rnd.random() < 0.7:
        stream = _mutate(stream, rnd)
    assert _reader_outcome(cmod, stream, sizes, opts) == _reader_outcome(pmod, stream, sizes, opts)


@pytest.mark.parametrize("seed_offset", range(3))
def test_reader_agrees_with_decoder(compact, seed_offset):
    """The scanner finds the end the decoder reads to, and fails where it fails.

    The body is decoded as ``Empty`` (every field skipped: the checks the
    scanner does).  Fed one byte at a time: a message out -> the decoder reads
    it; still waiting -> the decoder runs out of input; error E -> the decoder
    raises E or runs out of input first (it checks the bytes left up front).
    The UTF-8 check of the message name is the decoder's alone.
    """
    rnd = random.Random(1234 + seed_offset)
    codec = compact.CompactCodec()
    valid = [_message(codec, i, size=i) for i in range(5)]
    valid.append(codec.encode_message("x", 1, 0, _rich_alltypes()))
    for _ in range(300):
        msg = _mutate(rnd.choice(valid), rnd)
        opts = rnd.choice([{}, {"max_depth": 4}, {"max_container_size": 5}, {"max_string_size": 4}])
        reader = compact.CompactBufferedReader(max_frame_size=2**40, **opts)
        dec = compact.CompactCodec(**opts)

        def decode(data):
            try:
                offset = dec.decode_message_begin(data)[3]
            except InvalidDataError:
                return "name"
            return dec.decode_struct(AT.Empty, data, offset)

        out, error = [], None
        try:
            for i in range(len(msg)):
                out += reader.feed(msg[i:i + 1])
                if out:
                    break
        except ProtocolError as exc:
            error = exc
        if out:
            assert msg.startswith(out[0])
            decode(out[0])
        elif error is not None:
            try:
                result = decode(msg)
            except TruncatedError:
                pass
            except ProtocolError as exc2:
                assert type(exc2) is type(error), (msg.hex(), error, exc2)
            else:
                assert result == "name", "decoder accepted %s, reader raised %r" % (msg.hex(), error)
        else:
            assert reader.buffered == len(msg)
            try:
                result = decode(msg)
            except TruncatedError:
                pass
            else:
                assert result == "name", msg.hex()
