"""Unit tests of the binary codec (``BinaryCodec``), run on both implementations.

Byte-exact expectations come from thriftpy2's pure-Python binary protocol
(``thriftpy2.protocol.binary``) wherever thriftpy2 is correct; errors are the
ones ``docs/internals.md`` specifies.
"""

from __future__ import annotations

import enum
import importlib.machinery
import math
import struct
import tracemalloc

import pytest
import thriftpy2
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.transport import TMemoryBuffer

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
    DEFAULT_MAX_STRING_SIZE,
)

from conftest import IDL_DIR

rich = thriftpy2.load(str(IDL_DIR / "codec_rich.thrift"), module_name="codec_rich_thrift")
evo = thriftpy2.load(str(IDL_DIR / "codec_evolution.thrift"), module_name="codec_evolution_thrift")

T_STOP, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64 = 0, 2, 3, 4, 6, 8, 10
T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 11, 12, 13, 14, 15


# ---------------------------------------------------------------- helpers

def codec(impl, **options):
    return impl.binary.BinaryCodec(**options)


def tp2_encode(obj) -> bytes:
    """thriftpy2's pure-Python binary encoding of ``obj``."""
    buf = TMemoryBuffer()
    obj.write(TBinaryProtocol(buf))
    return buf.getvalue()


def tp2_message_begin(name, mtype, seqid, strict=True) -> bytes:
    buf = TMemoryBuffer()
    TBinaryProtocol(buf, strict_write=strict).write_message_begin(name, mtype, seqid)
    return buf.getvalue()


def fh(ttype: int, fid: int) -> bytes:
    """A field header."""
    return struct.pack("!bh", ttype, fid)


def i32(v: int) -> bytes:
    return struct.pack("!i", v)


def lhdr(etype: int, n: int) -> bytes:
    return struct.pack("!bi", etype, n)


def mhdr(ktype: int, vtype: int, n: int) -> bytes:
    return struct.pack("!bbi", ktype, vtype, n)


def sbytes(b: bytes) -> bytes:
    return i32(len(b)) + b


def canon(v):
    """A comparable form of a decoded value: NaN-aware, type-strict, order-strict."""
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


def assert_same(a, b):
    assert canon(a) == canon(b), (a, b)


def full_rich():
    """A Rich with every field set."""
    inner = rich.Inner(x=-5, label="ünïcode")
    return rich.Rich(
        a_bool=True, a_byte=-128, a_i16=32767, a_i32=-(2 ** 31), a_i64=2 ** 63 - 1,
        a_double=-0.0, a_string="héllo 🌍", a_binary=b"\x00\xff\x80", a_kind=rich.Kind.NEG,
        a_inner=inner,
        l_bool=[True, False, True], l_byte=[0, -1, 127], l_i16=[-32768, 0, 1],
        l_i32=[1, 2, 3], l_i64=[-(2 ** 63), 2 ** 63 - 1], l_double=[1.5, math.inf, -math.inf],
        l_string=["", "a", "𝄞"], l_binary=[b"", b"\x00"], l_inner=[inner, rich.Inner(x=1)],
        s_i32={1, 2, 3}, s_string={"x", "y"}, s_binary={b"a"}, s_double={0.5}, s_bool={True},
        m_string_i64={"a": 1, "b": -2}, m_i32_string={1: "one", -1: "minus"},
        m_binary_inner={b"k": inner}, m_i16_list={7: ["a", "b"], 8: []},
        ll_i32=[[1, 2], [], [3]], lms=[{"a": {1, 2}}, {}], mml={"x": {1: [inner]}},
        s_kind={rich.Kind.ONE, rich.Kind.BIG}, tree=make_tree(3),
        l_set=[{"a"}, set()], m_bool_byte={True: 1, False: -1}, m_double={1.5: -2.5},
        neg_one=-1, neg_min="min", pos_max=2 ** 40,
    )


def make_tree(depth: int):
    if depth == 0:
        return rich.Node(value=0, kids=[])
    return rich.Node(value=depth, kids=[make_tree(depth - 1), rich.Node(value=-depth, kids=[])],
                     sibling=rich.Node(value=100 + depth, kids=[]))


def sibling_chain(n: int):
    """``n`` Nodes nested through ``sibling``: n levels of struct."""
    node = rich.Node(value=0)
    for i in range(1, n):
        node = rich.Node(value=i, sibling=node)
    return node


# ---------------------------------------------------------------- compiled in use

def test_compiled_extension_is_used():
    if _compat.NO_EXTENSIONS:
        pytest.skip("pure-Python build requested (AIOTHRIFT_NO_EXTENSIONS)")
    import aiothrift._binary as compiled

    assert _compat.binary is compiled
    assert compiled.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert compiled.__file__.endswith((".so", ".pyd"))


def test_codec_options(impl):
    c = codec(impl)
    assert (c.strict_read, c.strict_write, c.decode_response) == (True, True, True)
    assert c.max_string_size == DEFAULT_MAX_STRING_SIZE
    assert c.max_container_size == DEFAULT_MAX_CONTAINER_SIZE
    assert c.max_depth == DEFAULT_MAX_DEPTH
    c = codec(impl, strict_read=0, strict_write=0, decode_response=0,
              max_string_size=0, max_container_size=0, max_depth=1)
    assert (c.strict_read, c.strict_write, c.decode_response) == (False, False, False)
    assert (c.max_string_size, c.max_container_size, c.max_depth) == (0, 0, 1)


@pytest.mark.parametrize("options, exc", [
    ({"max_depth": 0}, ValueError),
    ({"max_string_size": -1}, ValueError),
    ({"max_container_size": -1}, ValueError),
    ({"max_depth": 1.5}, TypeError),
    ({"max_string_size": "10"}, TypeError),
])
def test_codec_bad_options(impl, options, exc):
    with pytest.raises(exc):
        codec(impl, **options)


def test_options_are_keyword_only(impl):
    with pytest.raises(TypeError):
        impl.binary.BinaryCodec(True)


# ---------------------------------------------------------------- scalars

SCALARS = [
    ("a_bool", True), ("a_bool", False),
    ("a_byte", 0), ("a_byte", -128), ("a_byte", 127),
    ("a_i16", -32768), ("a_i16", 32767), ("a_i16", 256),
    ("a_i32", -(2 ** 31)), ("a_i32", 2 ** 31 - 1), ("a_i32", 0),
    ("a_i64", -(2 ** 63)), ("a_i64", 2 ** 63 - 1), ("a_i64", 1 << 40),
    ("a_double", 0.0), ("a_double", -0.0), ("a_double", 1.5), ("a_double", -1e308),
    ("a_double", 5e-324), ("a_double", math.inf), ("a_double", -math.inf), ("a_double", math.nan),
    ("a_string", ""), ("a_string", "ascii"), ("a_string", "é"), ("a_string", "€"),
    ("a_string", "🌍 4-byte UTF-8 𝄞"), ("a_string", "x" * 10000),
    ("a_binary", b""), ("a_binary", bytes(range(256))),
    ("a_kind", rich.Kind.ZERO), ("a_kind", rich.Kind.NEG), ("a_kind", rich.Kind.BIG),
    ("neg_one", 12), ("neg_min", "negative id"), ("pos_max", -1),
]


@pytest.mark.parametrize("name, value", SCALARS, ids=[
    "%s=%r" % (n, v if not isinstance(v, (str, bytes)) or len(v) < 20 else len(v))
    for n, v in SCALARS])
def test_scalar_roundtrip(impl, name, value):
    c = codec(impl)
    obj = rich.Rich(**{name: value})
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    out = c.decode_struct(rich.Rich, data)
    assert type(out) is rich.Rich
    assert_same(getattr(out, name), value)
    assert type(getattr(out, name)) is type(value)


def test_binary_is_written_as_string_type(impl):
    data = codec(impl).encode_struct(rich.Rich(a_binary=b"xyz"))
    assert data == fh(T_STRING, 8) + sbytes(b"xyz") + b"\x00"
    assert 18 not in (data[0],)


def test_string_field_accepts_bytes_and_binary_accepts_str(impl):
    c = codec(impl)
    assert c.encode_struct(rich.Rich(a_string=b"raw")) == fh(T_STRING, 7) + sbytes(b"raw") + b"\x00"
    assert c.encode_struct(rich.Rich(a_binary="é")) == fh(T_STRING, 8) + sbytes("é".encode()) + b"\x00"
    for buf in (bytearray(b"ab"), memoryview(b"ab"), memoryview(b"xaxb")[1::2]):
        assert c.encode_struct(rich.Rich(a_binary=buf)) == fh(T_STRING, 8) + sbytes(b"ab") + b"\x00"


def test_int_like_values(impl):
    class Idx:
        def __index__(self):
            return 42

    class Color(enum.IntEnum):
        RED = 7

    c = codec(impl)
    assert c.encode_struct(rich.Rich(a_i32=Idx())) == c.encode_struct(rich.Rich(a_i32=42))
    assert c.encode_struct(rich.Rich(a_i64=Color.RED)) == c.encode_struct(rich.Rich(a_i64=7))
    assert c.encode_struct(rich.Rich(a_byte=True)) == c.encode_struct(rich.Rich(a_byte=1))
    assert c.encode_struct(rich.Rich(a_double=3)) == c.encode_struct(rich.Rich(a_double=3.0))
    assert c.encode_struct(rich.Rich(l_i32=(Idx(), 1))) == c.encode_struct(rich.Rich(l_i32=[42, 1]))


def test_bool_is_truthiness(impl):
    c = codec(impl)
    for truthy in (1, "x", [0], 2.5):
        assert c.encode_struct(rich.Rich(a_bool=truthy)) == fh(T_BOOL, 1) + b"\x01\x00"
    for falsy in (0, "", [], 0.0):
        assert c.encode_struct(rich.Rich(a_bool=falsy)) == fh(T_BOOL, 1) + b"\x00\x00"
    assert c.encode_struct(rich.Rich(l_bool=[0, 2, "", "a"])) == (
        fh(T_LIST, 11) + lhdr(T_BOOL, 4) + b"\x00\x01\x00\x01\x00")


def test_decode_bool_any_nonzero_is_true(impl):
    out = codec(impl).decode_struct(rich.Rich, fh(T_BOOL, 1) + b"\x7f\x00")
    assert out.a_bool is True
    out = codec(impl).decode_struct(rich.Rich, fh(T_LIST, 11) + lhdr(T_BOOL, 3) + b"\x00\x02\xff\x00")
    assert out.l_bool == [False, True, True]


# ---------------------------------------------------------------- containers, nesting

def test_full_struct_matches_thriftpy2(impl):
    c = codec(impl)
    obj = full_rich()
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    out = c.decode_struct(rich.Rich, data)
    assert_same(out, obj)
    # thriftpy2 decodes sets as lists; we give sets
    assert type(out.s_i32) is set and type(out.lms[0]["a"]) is set
    # Sets re-encode in hash order (PYTHONHASHSEED), so compare by value.
    again = c.encode_struct(out)
    assert len(again) == len(data)
    assert_same(c.decode_struct(rich.Rich, again), obj)


def test_containers_accept_any_sized_iterable(impl):
    c = codec(impl)
    as_list = c.encode_struct(rich.Rich(l_i32=[1, 2, 3], l_string=["a", "b"], s_i32={5}))
    assert c.encode_struct(rich.Rich(l_i32=(1, 2, 3), l_string=("a", "b"), s_i32=frozenset([5]))) == as_list
    assert c.encode_struct(rich.Rich(l_i32=range(1, 4), l_string=["a", "b"], s_i32=[5])) == as_list


def test_map_accepts_items_mapping(impl):
    class Mapping:
        def __init__(self, d):
            self.d = d

        def __len__(self):
            return len(self.d)

        def items(self):
            return iter(self.d.items())

    c = codec(impl)
    assert (c.encode_struct(rich.Rich(m_string_i64=Mapping({"a": 1, "b": 2})))
            == c.encode_struct(rich.Rich(m_string_i64={"a": 1, "b": 2})))


def test_empty_containers(impl):
    c = codec(impl)
    obj = rich.Rich(l_i32=[], s_string=set(), m_string_i64={}, ll_i32=[[]], l_inner=[])
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    assert_same(c.decode_struct(rich.Rich, data), obj)


def test_zero_count_accepts_any_element_type(impl):
    c = codec(impl)
    # some peers write 0 as the types of an empty map
    data = (fh(T_LIST, 14) + lhdr(0, 0) + fh(T_MAP, 25) + mhdr(0, 0, 0)
            + fh(T_SET, 20) + lhdr(99, 0) + b"\x00")
    out = c.decode_struct(rich.Rich, data)
    assert out.l_i32 == [] and out.m_string_i64 == {} and out.s_i32 == set()


def test_recursive_struct(impl):
    c = codec(impl)
    tree = make_tree(6)
    data = c.encode_struct(tree)
    assert data == tp2_encode(tree)
    assert_same(c.decode_struct(rich.Node, data), tree)
    holder = rich.Rich(tree=tree)
    assert_same(c.decode_struct(rich.Rich, c.encode_struct(holder)).tree, tree)


def test_struct_in_containers(impl):
    c = codec(impl)
    obj = rich.Rich(mml={"a": {1: [rich.Inner(x=1), rich.Inner(x=2, label="l")]}, "b": {}},
                    m_binary_inner={b"\xff": rich.Inner(x=3)})
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    assert_same(c.decode_struct(rich.Rich, data), obj)


def test_wide_field_ids(impl):
    c = codec(impl)
    obj = rich.Wide(low=1, high=2, neg="n")
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    assert_same(c.decode_struct(rich.Wide, data), obj)
    # an id inside the declared range but not declared is skipped
    out = c.decode_struct(rich.Wide, fh(T_I32, 500) + i32(9) + fh(T_I32, 1000) + i32(3) + b"\x00")
    assert (out.low, out.high, out.neg) == (None, 3, None)


def test_duplicate_field_last_wins(impl):
    c = codec(impl)
    data = fh(T_I32, 4) + i32(1) + fh(T_STRING, 7) + sbytes(b"s") + fh(T_I32, 4) + i32(2) + b"\x00"
    out = c.decode_struct(rich.Rich, data)
    assert out.a_i32 == 2 and out.a_string == "s"


# ---------------------------------------------------------------- decoded objects

def test_decoded_object_is_built_without_init(impl):
    c = codec(impl)
    out = c.decode_struct(rich.Inner, fh(T_I32, 1) + i32(5) + b"\x00")
    assert type(out) is rich.Inner
    assert out.__dict__ == {"x": 5, "label": None}
    assert list(out.__dict__) == ["x", "label"]
    assert out == rich.Inner(x=5)


def test_defaults(impl):
    c = codec(impl)
    out = c.decode_struct(rich.Defaults, b"\x00")
    # thriftpy2 keeps a binary default as str; decoded objects get bytes
    expected = rich.Defaults(raw=b"bin")
    assert out == expected
    assert list(out.__dict__) == [name for name, _ in rich.Defaults.default_spec]
    # mutable defaults are copies, never shared with the class or between objects
    defaults = dict(rich.Defaults.default_spec)
    other = c.decode_struct(rich.Defaults, b"\x00")
    for name in ("nums", "table", "tags", "inner", "nested"):
        assert getattr(out, name) == defaults[name]
        assert getattr(out, name) is not defaults[name]
        assert getattr(out, name) is not getattr(other, name)
    assert out.nested[0] is not defaults["nested"][0]
    out.nums.append(4)
    assert c.decode_struct(rich.Defaults, b"\x00").nums == [1, 2, 3]


def test_decoded_fields_override_defaults_in_place(impl):
    c = codec(impl)
    out = c.decode_struct(rich.Defaults, fh(T_I64, 7) + struct.pack("!q", 9) + fh(T_I32, 1) + i32(-1)
                          + b"\x00")
    assert out.num == -1 and out.opt == 9 and out.nums == [1, 2, 3]
    assert list(out.__dict__) == [name for name, _ in rich.Defaults.default_spec]


def test_exception_roundtrip(impl):
    c = codec(impl)
    exc = rich.Oops(message="boom", code=-3, details=["a"])
    data = c.encode_struct(exc)
    assert data == tp2_encode(exc)
    out = c.decode_struct(rich.Oops, data)
    assert type(out) is rich.Oops and isinstance(out, Exception)
    assert out.__dict__ == {"message": "boom", "code": -3, "details": ["a"]}
    assert out.args == ()
    with pytest.raises(rich.Oops):
        raise out
    holder = rich.Holder(oops=exc, many=[exc, rich.Oops(message="x")])
    data = c.encode_struct(holder)
    assert data == tp2_encode(holder)
    out = c.decode_struct(rich.Holder, data)
    assert out.oops.__dict__ == exc.__dict__ and out.many[1].message == "x"


def test_decode_into_instance(impl):
    c = codec(impl)
    target = rich.Inner(x=1, label="keep")
    target.extra = "untouched"
    out = c.decode_struct(target, fh(T_I32, 1) + i32(42) + b"\x00")
    assert out is target
    assert (target.x, target.label, target.extra) == (42, "keep", "untouched")


def test_decode_into_instance_checks_required_before_setting(impl):
    c = codec(impl)
    target = rich.Required(id=1, name="n", inner=rich.Inner(x=1))
    with pytest.raises(InvalidDataError):
        c.decode_struct(target, fh(T_I32, 1) + i32(2) + b"\x00")
    assert target.id == 1


def test_decode_offset_and_trailing_bytes(impl):
    c = codec(impl)
    data = c.encode_struct(full_rich())
    out = c.decode_struct(rich.Rich, b"junk" + data + b"trailing", 4)
    assert_same(out, full_rich())
    assert_same(c.decode_struct(rich.Rich, data + b"\x01\x02"), full_rich())
    with pytest.raises(TruncatedError):
        c.decode_struct(rich.Rich, data, len(data))
    with pytest.raises(TruncatedError):
        c.decode_struct(rich.Rich, data, len(data) + 100)
    with pytest.raises(ValueError):
        c.decode_struct(rich.Rich, data, -1)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview,
                                  lambda b: memoryview(bytearray(b)),
                                  lambda b: memoryview(b"".join(bytes([x, 0]) for x in b))[::2]],
                         ids=["bytes", "bytearray", "memoryview", "memoryview-rw", "strided"])
def test_bytes_like_input(impl, wrap):
    c = codec(impl)
    obj = full_rich()
    data = c.encode_struct(obj)
    assert_same(c.decode_struct(rich.Rich, wrap(data)), obj)
    msg = c.encode_message("name", 1, 3, obj)
    assert c.decode_message_begin(wrap(msg)) == ("name", 1, 3, 16)


@pytest.mark.parametrize("data", [5, [0], "\x00", None])
def test_non_buffer_input(impl, data):
    with pytest.raises(TypeError):
        codec(impl).decode_struct(rich.Rich, data)
    with pytest.raises(TypeError):
        codec(impl).decode_message_begin(data)


def test_decode_response(impl):
    data = codec(impl).encode_struct(rich.Rich(a_string="é", l_string=["a"], a_binary=b"b",
                                               m_string_i64={"k": 1}, s_string={"s"}))
    out = codec(impl, decode_response=False).decode_struct(rich.Rich, data)
    assert out.a_string == "é".encode() and out.l_string == [b"a"] and out.a_binary == b"b"
    assert out.m_string_i64 == {b"k": 1} and out.s_string == {b"s"}
    out = codec(impl).decode_struct(rich.Rich, data)
    assert out.a_string == "é" and out.a_binary == b"b" and out.m_string_i64 == {"k": 1}


def test_invalid_utf8_falls_back_to_bytes(impl):
    c = codec(impl)
    bad = b"\xff\xfe"
    data = (fh(T_STRING, 7) + sbytes(bad) + fh(T_LIST, 17) + lhdr(T_STRING, 2) + sbytes(b"ok")
            + sbytes(bad) + fh(T_MAP, 25) + mhdr(T_STRING, T_I64, 1) + sbytes(bad)
            + struct.pack("!q", 1) + b"\x00")
    out = c.decode_struct(rich.Rich, data)
    assert out.a_string == bad and out.l_string == ["ok", bad] and out.m_string_i64 == {bad: 1}
    # a lone surrogate is not valid UTF-8 either
    surrogate = "\ud800".encode("utf-8", "surrogatepass")
    assert c.decode_struct(rich.Rich, fh(T_STRING, 7) + sbytes(surrogate) + b"\x00").a_string == surrogate


def test_map_keys_cache_does_not_mix_values(impl):
    c = codec(impl)
    maps = [{"k%d" % i: i for i in range(50)}, {"k%d" % i: -i for i in range(50)}, {"é": 1, "e": 2}]
    for m in maps:
        assert c.decode_struct(rich.Rich, c.encode_struct(rich.Rich(m_string_i64=m))).m_string_i64 == m


def test_reentrant_encode(impl):
    c = codec(impl)

    class Sneaky:
        def __index__(self):
            # encoding something else with the same codec in the middle
            assert c.encode_struct(rich.Inner(x=1, label="inner")) == tp2_encode(rich.Inner(x=1, label="inner"))
            return 5

    obj = rich.Rich(a_i32=Sneaky(), a_string="after", l_i64=[1, Sneaky(), 3])
    assert c.encode_struct(obj) == c.encode_struct(rich.Rich(a_i32=5, a_string="after", l_i64=[1, 5, 3]))


BIG = 1 << 16  # values this big are spliced into the output, not buffered


def test_big_values(impl):
    c = codec(impl)
    blob = bytes(range(256)) * (BIG // 256) + b"tail"
    text = "é" * BIG + "🌍"
    obj = rich.Rich(a_i32=1, a_string=text, a_binary=blob, l_binary=[b"x", blob, b"", blob],
                    l_string=["small", text], m_string_i64={text: 1, "k": 2}, a_i64=7,
                    a_inner=rich.Inner(x=1, label="x" * BIG))
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    assert_same(c.decode_struct(rich.Rich, data), obj)
    for framed in (False, True):
        msg = c.encode_message("big", 1, 1, obj, framed=framed)
        body = msg[4:] if framed else msg
        if framed:
            assert struct.unpack("!i", msg[:4])[0] == len(body)
        assert body == tp2_message_begin("big", 1, 1) + data
    # bytearray / memoryview values are copied at once
    assert c.encode_struct(rich.Rich(a_binary=bytearray(blob))) == c.encode_struct(rich.Rich(a_binary=blob))
    assert c.encode_struct(rich.Rich(a_binary=memoryview(blob))) == c.encode_struct(rich.Rich(a_binary=blob))


def test_big_value_then_error_then_reuse(impl):
    c = codec(impl)
    blob = b"b" * BIG
    with pytest.raises(OverflowError):
        c.encode_struct(rich.Rich(a_binary=blob, pos_max=2 ** 64))
    assert c.encode_struct(rich.Inner(x=2)) == tp2_encode(rich.Inner(x=2))
    with pytest.raises(TypeError):
        c.encode_message("m", 1, 1, rich.Rich(a_binary=blob, l_i32=[None]), framed=True)
    body = tp2_message_begin("m", 1, 1) + tp2_encode(rich.Inner(x=2))
    assert c.encode_message("m", 1, 1, rich.Inner(x=2), framed=True) == i32(len(body)) + body


def test_reentrant_encode_with_big_values(impl):
    c = codec(impl)
    blob = b"o" * BIG
    inner = rich.Rich(a_binary=b"i" * BIG, a_i32=3)

    class Sneaky:
        def __index__(self):
            assert c.encode_struct(inner) == tp2_encode(inner)
            return 5

    obj = rich.Rich(a_binary=blob, l_i64=[Sneaky()], pos_max=Sneaky())
    assert c.encode_struct(obj) == tp2_encode(rich.Rich(a_binary=blob, l_i64=[5], pos_max=5))


def test_codec_reusable_after_error(impl):
    c = codec(impl)
    with pytest.raises(OverflowError):
        c.encode_struct(rich.Rich(a_string="first", a_i32=2 ** 40))
    assert c.encode_struct(rich.Inner(x=1)) == tp2_encode(rich.Inner(x=1))


# ---------------------------------------------------------------- schema evolution

def new_object():
    return evo.New(
        id=7, name="n", extra=[{"a": evo.Sub(a=1, b=["x"])}, {}], sub=evo.Sub(a=2),
        score=0.5, ids={1, 2}, deep={1: [[b"a", b""], []]}, flag=True, small=-1, medium=300,
        big=-(2 ** 40), raw=b"\x00\x01", empty_map={},
    )


def test_unknown_fields_are_skipped(impl):
    c = codec(impl)
    data = c.encode_struct(new_object())
    out = c.decode_struct(evo.Old, data)
    assert out.__dict__ == {"id": 7, "name": "n"}
    out = c.decode_struct(rich.Empty, data)
    assert out.__dict__ == {}


def test_missing_new_fields_are_defaults(impl):
    c = codec(impl)
    out = c.decode_struct(evo.New, c.encode_struct(evo.Old(id=1, name="x")))
    assert out == evo.New(id=1, name="x")


def test_mismatched_wire_type_is_skipped(impl):
    c = codec(impl)
    out = c.decode_struct(evo.Mismatch, c.encode_struct(new_object()))
    assert out.__dict__ == {"id": None, "name": None}


def test_mismatched_element_type_is_invalid(impl):
    c = codec(impl)
    with pytest.raises(InvalidDataError):
        c.decode_struct(evo.ElemMismatch, c.encode_struct(new_object()))
    with pytest.raises(InvalidDataError):
        c.decode_struct(evo.MapMismatch, c.encode_struct(new_object()))
    # an empty container of other element types is fine
    out = c.decode_struct(evo.ElemMismatch, c.encode_struct(evo.New(extra=[])))
    assert out.extra == []


# ---------------------------------------------------------------- required fields

def test_required_fields(impl):
    c = codec(impl)
    obj = rich.Required(id=1, name="n", inner=rich.Inner(x=1))
    data = c.encode_struct(obj)
    assert data == tp2_encode(obj)
    assert c.decode_struct(rich.Required, data) == obj
    for missing in ("id", "name", "inner"):
        bad = rich.Required(id=1, name="n", inner=rich.Inner(x=1))
        setattr(bad, missing, None)
        with pytest.raises(InvalidDataError, match=missing):
            c.encode_struct(bad)
    with pytest.raises(InvalidDataError, match="'name'"):
        c.decode_struct(rich.Required, fh(T_I32, 1) + i32(1) + b"\x00")
    with pytest.raises(InvalidDataError, match="'id'"):
        c.decode_struct(rich.Required, b"\x00")
    # a required field present with the wrong wire type is skipped, so missing
    with pytest.raises(InvalidDataError, match="'id'"):
        c.decode_struct(rich.Required, fh(T_I64, 1) + b"\0" * 8 + fh(T_STRING, 3) + sbytes(b"n")
                        + fh(T_STRUCT, 4) + b"\x00" + b"\x00")


def test_attribute_missing_counts_as_none(impl):
    c = codec(impl)
    obj = rich.Inner.__new__(rich.Inner)
    assert c.encode_struct(obj) == b"\x00"
    obj.x = 3
    assert c.encode_struct(obj) == fh(T_I32, 1) + i32(3) + b"\x00"


# ---------------------------------------------------------------- messages

@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("mtype", [1, 2, 3, 4])
def test_message_header_matches_thriftpy2(impl, strict, mtype):
    c = codec(impl, strict_write=strict, strict_read=strict)
    args = rich.Inner(x=3)
    msg = c.encode_message("méthod", mtype, 12345, args)
    header = tp2_message_begin("méthod", mtype, 12345, strict=strict)
    assert msg == header + tp2_encode(args)
    name, mt, seqid, offset = c.decode_message_begin(msg)
    assert (name, mt, seqid, offset) == ("méthod", mtype, 12345, len(header))
    assert c.decode_struct(rich.Inner, msg, offset) == args


def test_message_framed(impl):
    c = codec(impl)
    msg = c.encode_message("add", 1, -1, rich.Inner(x=3), framed=True)
    body = c.encode_message("add", 1, -1, rich.Inner(x=3))
    assert msg == struct.pack("!i", len(body)) + body
    assert c.decode_message_begin(msg[4:])[:3] == ("add", 1, -1)
    assert codec(impl, strict_write=False).encode_message("a", 1, 0, rich.Empty(), framed=1)[:4] == i32(11)


def test_strict_read_rejects_old_header(impl):
    old = codec(impl, strict_write=False).encode_message("ping", 1, 0, rich.Empty())
    with pytest.raises(BadVersionError):
        codec(impl).decode_message_begin(old)
    assert codec(impl, strict_read=False).decode_message_begin(old) == ("ping", 1, 0, 13)


def test_non_strict_read_accepts_new_header(impl):
    new = codec(impl).encode_message("ping", 2, 9, rich.Empty())
    assert codec(impl, strict_read=False).decode_message_begin(new) == ("ping", 2, 9, 16)


@pytest.mark.parametrize("first", [0x80020001, 0x8001FFFF ^ 0x00020000, 0xFFFF0001, 0x80000001])
def test_bad_version(impl, first):
    data = struct.pack("!I", first) + sbytes(b"x") + i32(0)
    for strict in (True, False):
        with pytest.raises(BadVersionError):
            codec(impl, strict_read=strict).decode_message_begin(data)


def test_message_type_in_version_word(impl):
    data = struct.pack("!I", 0x800100FF) + sbytes(b"x") + i32(7)
    assert codec(impl).decode_message_begin(data) == ("x", 255, 7, 13)
    old = sbytes(b"x") + b"\xff" + i32(7)
    assert codec(impl, strict_read=False).decode_message_begin(old) == ("x", -1, 7, 10)


def test_message_name_errors(impl):
    c = codec(impl, max_string_size=4)
    ver = struct.pack("!I", 0x80010001)
    with pytest.raises(NegativeSizeError):
        c.decode_message_begin(ver + i32(-1) + i32(0))
    with pytest.raises(SizeLimitError):
        c.decode_message_begin(ver + sbytes(b"abcde") + i32(0))
    assert c.decode_message_begin(ver + sbytes(b"abcd") + i32(0))[0] == "abcd"
    with pytest.raises(TruncatedError):
        c.decode_message_begin(ver + i32(3) + b"ab")
    with pytest.raises(InvalidDataError):
        c.decode_message_begin(ver + sbytes(b"\xff") + i32(0))


def test_message_header_truncated_everywhere(impl):
    for strict in (True, False):
        c = codec(impl, strict_write=strict, strict_read=strict)
        msg = c.encode_message("name", 1, 5, rich.Empty())
        header_len = c.decode_message_begin(msg)[3]
        for cut in range(header_len):
            with pytest.raises(TruncatedError):
                c.decode_message_begin(msg[:cut])


@pytest.mark.parametrize("mtype, seqid, exc", [
    (-1, 0, OverflowError), (128, 0, OverflowError), (1, 2 ** 31, OverflowError),
    (1, -(2 ** 31) - 1, OverflowError), (1.0, 0, TypeError), (1, "0", TypeError),
])
def test_message_header_encode_errors(impl, mtype, seqid, exc):
    for strict in (True, False):
        with pytest.raises(exc):
            codec(impl, strict_write=strict).encode_message("m", mtype, seqid, rich.Empty())


def test_message_name_must_be_str(impl):
    with pytest.raises(TypeError):
        codec(impl).encode_message(b"m", 1, 0, rich.Empty())
    with pytest.raises(UnicodeEncodeError):
        codec(impl).encode_message("\ud800", 1, 0, rich.Empty())


def test_message_seqid_extremes(impl):
    c = codec(impl)
    for seqid in (-(2 ** 31), 2 ** 31 - 1, 0):
        assert c.decode_message_begin(c.encode_message("m", 4, seqid, rich.Empty()))[2] == seqid


# ---------------------------------------------------------------- encode errors

@pytest.mark.parametrize("field, value, exc", [
    ("a_byte", 128, OverflowError), ("a_byte", -129, OverflowError),
    ("a_i16", 2 ** 15, OverflowError), ("a_i32", -(2 ** 31) - 1, OverflowError),
    ("a_i64", 2 ** 63, OverflowError), ("a_i64", -(2 ** 63) - 1, OverflowError),
    ("a_i64", 2 ** 200, OverflowError),
    ("a_i32", 1.0, TypeError), ("a_i32", "1", TypeError), ("a_i64", b"1", TypeError),
    ("a_kind", 2.5, TypeError),
    ("a_double", "1.0", TypeError), ("a_double", [1.0], TypeError), ("a_double", 10 ** 400, OverflowError),
    ("a_string", 5, TypeError), ("a_binary", 5.0, TypeError), ("a_string", "\udc80", UnicodeEncodeError),
    ("a_inner", rich.Node(value=1), TypeError), ("a_inner", 5, TypeError),
    ("l_i32", 5, TypeError), ("l_i32", [1, "2"], TypeError), ("l_i32", [1, 2 ** 31], OverflowError),
    ("l_i64", [None], TypeError), ("l_double", [1.0, None], TypeError),
    ("l_string", [None], TypeError), ("l_inner", [None], TypeError), ("l_inner", [rich.Wide()], TypeError),
    ("s_i32", {2 ** 40}, OverflowError), ("m_string_i64", {"a": "b"}, TypeError),
    ("m_string_i64", {1: 1}, TypeError), ("m_string_i64", 3, TypeError),
    ("m_i32_string", [(1, "a")], AttributeError),
    ("ll_i32", [[1], [None]], TypeError),
])
def test_encode_type_and_range_errors(impl, field, value, exc):
    with pytest.raises(exc):
        codec(impl).encode_struct(rich.Rich(**{field: value}))


def test_encode_non_struct(impl):
    with pytest.raises(TypeError):
        codec(impl).encode_struct(object())
    with pytest.raises(TypeError):
        codec(impl).encode_struct(None)
    with pytest.raises(TypeError):
        codec(impl).decode_struct(object, b"\x00")


def test_container_changing_size_while_encoding(impl):
    class Liar(list):
        def __len__(self):
            return 3

    with pytest.raises(RuntimeError):
        codec(impl).encode_struct(rich.Rich(l_i64=Liar([1, 2])))


# ---------------------------------------------------------------- decode errors

def test_truncated_at_every_offset(impl):
    c = codec(impl)
    for obj, cls in ((full_rich(), rich.Rich), (new_object(), evo.New), (new_object(), evo.Old)):
        data = c.encode_struct(obj)
        for cut in range(len(data)):
            with pytest.raises(TruncatedError):
                c.decode_struct(cls, data[:cut])


@pytest.mark.parametrize("data", [
    fh(T_STRING, 7) + i32(-1) + b"\x00",                       # string field
    fh(T_STRING, 99) + i32(-1) + b"\x00",                      # skipped string
    fh(T_LIST, 14) + lhdr(T_I32, -1) + b"\x00",                # list
    fh(T_SET, 20) + lhdr(T_I32, -5) + b"\x00",                 # set
    fh(T_MAP, 25) + mhdr(T_STRING, T_I64, -2 ** 31) + b"\x00",  # map
    fh(T_LIST, 99) + lhdr(T_I32, -1) + b"\x00",                # skipped list
    fh(T_MAP, 99) + mhdr(T_I32, T_I32, -1) + b"\x00",          # skipped map
    fh(T_LIST, 17) + lhdr(T_STRING, 1) + i32(-7) + b"\x00",    # string in a list
])
def test_negative_sizes(impl, data):
    with pytest.raises(NegativeSizeError):
        codec(impl).decode_struct(rich.Rich, data)


def test_string_size_limit(impl):
    c = codec(impl, max_string_size=4)
    for fid in (7, 8, 99):  # string, binary, skipped
        assert c.decode_struct(rich.Rich, fh(T_STRING, fid) + sbytes(b"abcd") + b"\x00")
        with pytest.raises(SizeLimitError):
            c.decode_struct(rich.Rich, fh(T_STRING, fid) + sbytes(b"abcde") + b"\x00")
    # checked before the bytes left
    with pytest.raises(SizeLimitError):
        c.decode_struct(rich.Rich, fh(T_STRING, 7) + i32(2 ** 31 - 1))
    with pytest.raises(TruncatedError):
        codec(impl, max_string_size=2 ** 31).decode_struct(rich.Rich, fh(T_STRING, 7) + i32(2 ** 31 - 1) + b"abc")


@pytest.mark.parametrize("field_hdr, body", [
    (fh(T_LIST, 14), lambda n: lhdr(T_I32, n) + i32(1) * n),
    (fh(T_SET, 20), lambda n: lhdr(T_I32, n) + b"".join(i32(i) for i in range(n))),
    (fh(T_MAP, 26), lambda n: mhdr(T_I32, T_STRING, n) + b"".join(i32(i) + sbytes(b"") for i in range(n))),
    (fh(T_LIST, 99), lambda n: lhdr(T_I32, n) + i32(1) * n),
    (fh(T_MAP, 99), lambda n: mhdr(T_I32, T_I32, n) + i32(1) * 2 * n),
], ids=["list", "set", "map", "skip-list", "skip-map"])
def test_container_size_limit(impl, field_hdr, body):
    c = codec(impl, max_container_size=3)
    c.decode_struct(rich.Rich, field_hdr + body(3) + b"\x00")
    with pytest.raises(SizeLimitError):
        c.decode_struct(rich.Rich, field_hdr + body(4) + b"\x00")


def test_huge_declared_count_fails_without_allocating(impl):
    data = fh(T_LIST, 11) + lhdr(T_BOOL, 2 ** 31 - 1) + b"\x01" * 5
    with pytest.raises(SizeLimitError):
        codec(impl).decode_struct(rich.Rich, data)
    c = codec(impl, max_container_size=2 ** 31)
    tracemalloc.start()
    try:
        for cls in (rich.Rich, rich.Empty):  # decoded and skipped
            with pytest.raises(TruncatedError):
                c.decode_struct(cls, data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    # same for maps and for elements wider than one byte
    for data in (fh(T_MAP, 25) + mhdr(T_STRING, T_I64, 2 ** 31 - 1) + b"\x00" * 20,
                 fh(T_LIST, 19) + lhdr(T_STRUCT, 10 ** 9) + b"\x00" * 20,
                 fh(T_LIST, 15) + lhdr(T_I64, 10 ** 8) + b"\x00" * 20):
        with pytest.raises(TruncatedError):
            c.decode_struct(rich.Rich, data)


@pytest.mark.parametrize("data", [
    fh(1, 4) + b"\x00",                                        # field type 1
    fh(19, 99) + b"\x00",                                      # unknown field, bad type
    fh(T_LIST, 14) + lhdr(1, 1) + b"\x00" * 4 + b"\x00",      # element type of a list
    fh(T_LIST, 14) + lhdr(T_I64, 1) + b"\x00" * 8 + b"\x00",  # element type mismatch
    fh(T_MAP, 25) + mhdr(T_STRING, 7, 1) + b"\x00" * 12 + b"\x00",
    fh(T_MAP, 25) + mhdr(T_I32, T_I64, 1) + b"\x00" * 12 + b"\x00",
    fh(T_LIST, 99) + lhdr(0, 1) + b"\x00" * 4 + b"\x00",      # skip: element type 0
    fh(T_MAP, 99) + mhdr(T_I32, 16, 1) + b"\x00" * 8 + b"\x00",
    fh(T_STRUCT, 99) + fh(1, 1) + b"\x00" + b"\x00",          # skip: field type in a struct
    fh(T_STRUCT, 10) + fh(9, 1) + b"\x00" * 4 + b"\x00",      # nested struct field type
])
def test_bad_type_ids(impl, data):
    with pytest.raises(InvalidDataError):
        codec(impl).decode_struct(rich.Rich, data)


def test_unhashable_set_element_and_map_key(impl):
    c = codec(impl)
    inner_list = lhdr(T_I32, 1) + i32(1)
    with pytest.raises(InvalidDataError):
        c.decode_struct(rich.Unhashable, fh(T_SET, 1) + lhdr(T_LIST, 1) + inner_list + b"\x00")
    with pytest.raises(InvalidDataError):
        c.decode_struct(rich.Unhashable, fh(T_MAP, 2) + mhdr(T_LIST, T_I32, 1) + inner_list + i32(1) + b"\x00")
    with pytest.raises(InvalidDataError):
        c.decode_struct(rich.Unhashable, fh(T_SET, 3) + lhdr(T_MAP, 1) + mhdr(T_STRING, T_I32, 0) + b"\x00")
    # an empty one is fine
    out = c.decode_struct(rich.Unhashable, fh(T_SET, 1) + lhdr(T_LIST, 0) + b"\x00")
    assert out.s_list == set()


def test_errors_are_value_errors():
    for exc in (TruncatedError, NegativeSizeError, SizeLimitError, DepthLimitError,
                BadVersionError, InvalidDataError):
        assert issubclass(exc, ProtocolError) and issubclass(exc, ValueError)


# ---------------------------------------------------------------- depth

def test_depth_limit_decode(impl):
    deep = codec(impl, max_depth=1000)
    for limit in (1, 2, 5, 64):
        c = codec(impl, max_depth=limit)
        ok = deep.encode_struct(sibling_chain(limit))
        assert c.decode_struct(rich.Node, ok).value == limit - 1
        too_deep = deep.encode_struct(sibling_chain(limit + 1))
        with pytest.raises(DepthLimitError):
            c.decode_struct(rich.Node, too_deep)
        # skipping counts levels the same way
        c.decode_struct(rich.Empty, ok)
        with pytest.raises(DepthLimitError):
            c.decode_struct(rich.Empty, too_deep)


def test_depth_counts_containers(impl):
    # Rich (1) -> ll_i32 list (2) -> inner list (3)
    obj = rich.Rich(ll_i32=[[1]])
    data = codec(impl).encode_struct(obj)
    assert codec(impl, max_depth=3).decode_struct(rich.Rich, data).ll_i32 == [[1]]
    assert codec(impl, max_depth=3).encode_struct(obj) == data
    for op in (lambda c: c.decode_struct(rich.Rich, data), lambda c: c.encode_struct(obj),
               lambda c: c.decode_struct(rich.Empty, data)):
        with pytest.raises(DepthLimitError):
            op(codec(impl, max_depth=2))
    # a map level and a set level too: Rich (1) -> lms list (2) -> map (3) -> set (4)
    obj = rich.Rich(lms=[{"a": {1}}])
    data = codec(impl).encode_struct(obj)
    codec(impl, max_depth=4).decode_struct(rich.Rich, data)
    with pytest.raises(DepthLimitError):
        codec(impl, max_depth=3).decode_struct(rich.Rich, data)
    with pytest.raises(DepthLimitError):
        codec(impl, max_depth=3).encode_struct(obj)


def test_depth_limit_encode(impl):
    for limit in (1, 3, 64):
        c = codec(impl, max_depth=limit)
        assert c.encode_struct(sibling_chain(limit))
        with pytest.raises(DepthLimitError):
            c.encode_struct(sibling_chain(limit + 1))


def test_encode_cycle_hits_depth_limit(impl):
    node = rich.Node(value=1)
    node.sibling = node
    with pytest.raises(DepthLimitError):
        codec(impl).encode_struct(node)
    node = rich.Node(value=1, kids=[])
    node.kids.append(node)
    with pytest.raises(DepthLimitError):
        codec(impl).encode_struct(node)


HOSTILE_DEPTH = 100_000


@pytest.mark.parametrize("kind", ["struct", "list", "map", "skip-struct", "skip-list"])
def test_hostile_deep_nesting(impl, kind):
    n = HOSTILE_DEPTH
    if kind == "struct":
        data = fh(T_STRUCT, 3) * n
    elif kind == "skip-struct":
        data = fh(T_STRUCT, 99) * n
    elif kind == "list":
        # Node.kids: list<Node>, each Node's kids again
        data = (fh(T_LIST, 2) + lhdr(T_STRUCT, 1)) * n
    elif kind == "map":
        data = fh(T_MAP, 99) + (mhdr(T_I32, T_MAP, 1) + i32(0)) * n
    else:
        data = fh(T_LIST, 99) + lhdr(T_LIST, 1) * n
    with pytest.raises(DepthLimitError):
        codec(impl).decode_struct(rich.Node, data)
    # an absurd max_depth meets the interpreter's recursion limit, never a crash
    with pytest.raises((RecursionError, DepthLimitError)):
        codec(impl, max_depth=10 ** 9).decode_struct(rich.Node, data + b"\x00" * n)
