"""Byte-exact codec vectors against real peers.

For every type of ``tests/idl/alltypes.thrift`` (one struct per field and
value, rich nested objects, edge values) the bytes aiothrift writes must be
the bytes that Apache Thrift (pure and C++-accelerated) and thriftpy2 (pure and
Cython) write for the same value, and it goes both ways: each peer decodes our
bytes to the same value, and we decode each peer's bytes to the same value.
Also message headers (strict, non-strict, framed) and schema evolution.

Sets have no defined order.  A multi-element set is compared byte for byte
only because the peer encodes the very same set object (``Idl.to_apache``
keeps sets of scalars by identity), so every encoder iterates one order; the
decode directions compare sets by value.

Every test runs on both aiothrift implementations (the ``impl`` fixture).
"""

from __future__ import annotations

import math
import struct
import sys

import pytest
from thrift.Thrift import TApplicationException as ApacheAppError
from thrift.Thrift import TMessageType
from thriftpy2.thrift import TApplicationException as Tp2AppError

import peers
from peers import (  # noqa: F401  (pytest fixtures)
    apache_alltypes,
    apache_evolution_v1,
    apache_evolution_v2,
)
from peers import APACHE_CODECS, PEER_CODECS, TP2_CODECS, same_value

AT = peers.tp2_module("alltypes")
V1 = peers.tp2_module("evolution_v1")
V2 = peers.tp2_module("evolution_v2")

# ---------------------------------------------------------------- values

NAN = float("nan")
INF = float("inf")
NAN_PAYLOAD = struct.unpack("!d", bytes.fromhex("7ff8000000000123"))[0]
NEG_NAN = -NAN
assert math.copysign(1.0, NEG_NAN) < 0

I8 = [("zero", 0), ("one", 1), ("minus-one", -1), ("max", 127), ("min", -128)]
I16 = [("zero", 0), ("minus-one", -1), ("max", 2**15 - 1), ("min", -2**15), ("i8-overflow", 128)]
I32 = [("zero", 0), ("minus-one", -1), ("max", 2**31 - 1), ("min", -2**31), ("i16-overflow", 2**15)]
I64 = [("zero", 0), ("minus-one", -1), ("max", 2**63 - 1), ("min", -2**63),
       ("i32-overflow", 2**31), ("neg-2^32", -2**32 - 1)]
DOUBLES = [
    ("zero", 0.0), ("neg-zero", -0.0), ("one-and-half", 1.5), ("neg", -2.25),
    ("pi", math.pi), ("tenth", 0.1), ("inf", INF), ("neg-inf", -INF), ("nan", NAN),
    ("neg-nan", NEG_NAN), ("nan-payload", NAN_PAYLOAD), ("min-subnormal", 5e-324),
    ("min-normal", sys.float_info.min), ("max", sys.float_info.max),
    ("neg-max", -sys.float_info.max),
]
STRINGS = [
    ("empty", ""), ("ascii", "hello, world"), ("latin1", "héllo wörld"),
    ("bmp", "€ 中文 ✓ Ωμέγα"), ("4-byte", "🌍🎉𝄞"), ("mixed", "a\u00e9\u4e2d\U0001f30d!"),
    ("nul", "a\x00b\x00"), ("controls", "\t\n\r\x7f\x1b"), ("bom", "\ufeffbom"),
    ("max-codepoint", "\U0010ffff"),
]
BIG_STRING = "🌍 ünïcödé " * 80_000          # 1.2 MiB of UTF-8, 4-byte characters included
BIG_BINARY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
BINARIES = [("empty", b""), ("nul", b"\x00"), ("all-bytes", bytes(range(256))),
            ("not-utf8", b"\xff\xfe\x80\xc0"), ("utf8", "🌍".encode())]
COLORS = [(name.lower(), getattr(AT.Color, name)) for name in
          ("BLACK", "RED", "GREEN", "BLUE", "NEGATIVE", "HUGE")] + [("undeclared-99", 99)]

assert len(BIG_BINARY) > 1 << 20 and len(BIG_STRING.encode()) > 1 << 20


def P(x, y):  # noqa: N802
    return AT.Point(x=x, y=y)


def leaf(name="leaf", weight=None, points=(), color=None):
    return AT.Leaf(name=name, weight=weight, points=list(points), color=color)


def tree():
    leaves = [leaf("a", 1, [P(1, 2)], AT.Color.RED), leaf("ß🌍", None, [], None),
              leaf("", -2**63, [P(-2**31, 2**31 - 1), P(0, 0)], AT.Color.NEGATIVE)]
    return AT.Tree(label="root", leaves=leaves, by_name={"a": leaves[0], "": leaf("")},
                   anchor=P(7, -7))


# Several-element values of every container field.
CONTAINERS = {
    "l_bool": [True, False, True],
    "l_byte": [v for _, v in I8],
    "l_i16": [v for _, v in I16],
    "l_i32": [v for _, v in I32],
    "l_i64": [v for _, v in I64],
    "l_double": [v for _, v in DOUBLES],
    "l_string": [v for _, v in STRINGS],
    "l_binary": [v for _, v in BINARIES],
    "l_enum": [v for _, v in COLORS],
    "l_struct": [P(1, 2), P(-1, -2), AT.Point()],   # a Point with no field set too
    "l_typedef": ["name", "", "🌍"],
    "s_bool": {True, False},
    "s_byte": {-128, 0, 127},
    "s_i16": {-2**15, 2**15 - 1},
    "s_i32": {-2**31, 0, 2**31 - 1},
    "s_i64": {-2**63, 1, 2**63 - 1},
    "s_double": {-INF, -0.0, 1.5, INF},
    "s_string": {"", "a", "🌍", "中文"},
    "s_binary": {b"", b"\x00", b"\xff"},
    "s_enum": {AT.Color.RED, AT.Color.NEGATIVE, AT.Color.HUGE},
    "s_struct": {P(1, 2), P(3, 4)},
    "m_string_i32": {"a": 1, "🌍": -1, "": 2**31 - 1},
    "m_i32_string": {-2**31: "min", 0: "", 2**31 - 1: "max"},
    "m_i64_struct": {2**63 - 1: P(1, 1), -2**63: AT.Point()},
    "m_binary_double": {b"": NAN, b"\x00": -0.0, b"\xff": INF},
    "m_enum_list": {AT.Color.RED: ["x", "y"], AT.Color.BLUE: []},
    "m_bool_byte": {True: 127, False: -128},
    "m_i16_bool": {-1: True, 0: False},
    "m_double_i64": {NAN: 1, -INF: 2, 0.5: 3},
    "m_string_binary": {"": b"", "k": b"\xff\x00"},
    "m_struct_string": {P(1, 2): "one-two", P(0, 0): ""},
    "ll_i32": [[], [1], [2, 3]],
    "lll_string": [[["a"], []], [], [["b", "c"]]],
    "mm_string_i64": {"outer": {"inner": 1, "x": -1}, "empty": {}},
    "m_typedef": {"t": {"u": 2**63 - 1}},
    "lm_struct": [{"p": P(1, 2), "q": P(3, 4)}, {}],
    "ms_i32": {"s": {1, 2, 3}, "e": set()},
    "ls_string": [{"a"}, set(), {"b", "c"}],
    "deep": {1: [{"k": [P(1, 2), P(3, 4)], "e": []}, {}], -1: []},
    "l_tree": [tree(), AT.Tree()],
    "s_typedef": {0, 2**62},
}

# Apache gen-py structs define __eq__ and no __hash__: a set of structs or a
# map keyed by structs cannot be built, encoded or decoded by Apache's library.
APACHE_NO_STRUCT_KEYS = "Apache gen-py structs are unhashable: no set<struct>/map<struct,_> (%s)" % (
    peers.peer_version(peers.APACHE_PURE))
STRUCT_KEY_FIELDS = ("s_struct", "m_struct_string")


def _one_element(value):
    if isinstance(value, dict):
        k = next(iter(value))
        return {k: value[k]}
    if isinstance(value, set):
        return {next(iter(value))}
    return value[:1]


def _cases():
    cases = []

    def add(case_id, make, *fields):
        cases.append((case_id, make, frozenset(fields)))

    scalars = {
        "a_bool": [("true", True), ("false", False)],
        "a_byte": I8, "a_i16": I16, "a_i32": I32, "a_i64": I64, "a_double": DOUBLES,
        "a_string": STRINGS + [("1MiB", BIG_STRING)],
        "a_binary": BINARIES + [("1MiB", BIG_BINARY)],
        "a_enum": COLORS, "a_typedef": I64[:4], "a_name": STRINGS[:5], "a_blob": BINARIES[:3],
        "a_struct": [("point", P(1, -1)), ("empty-point", AT.Point())],
        "a_tree": [("tree", tree()), ("empty-tree", AT.Tree())],
    }
    for field, values in scalars.items():
        for label, value in values:
            add("%s-%s" % (field, label), lambda f=field, v=value: AT.AllTypes(**{f: v}), field)
    for field, value in CONTAINERS.items():
        empty = type(value)()
        add("%s-empty" % field, lambda f=field, e=empty: AT.AllTypes(**{f: e}))
        add("%s-one" % field, lambda f=field, v=_one_element(value): AT.AllTypes(**{f: v}), field)
        add("%s-many" % field, lambda f=field, v=value: AT.AllTypes(**{f: v}), field)
    add("big-list-i64", lambda: AT.AllTypes(l_i64=list(range(-50_000, 50_000))), "l_i64")
    add("big-map", lambda: AT.AllTypes(m_i32_string={i: str(i) for i in range(20_000)}),
        "m_i32_string")

    every = {f: v for f, v in CONTAINERS.items() if f not in STRUCT_KEY_FIELDS}
    every.update(a_bool=True, a_byte=-128, a_i16=-2**15, a_i32=2**31 - 1, a_i64=-2**63,
                 a_double=NAN, a_string="🌍", a_binary=b"\x00\xff", a_enum=AT.Color.HUGE,
                 a_typedef=2**62, a_name="name", a_blob=b"blob", a_struct=P(5, 6), a_tree=tree())
    add("everything", lambda: AT.AllTypes(**every), *every)
    add("everything-plus-struct-keys", lambda: AT.AllTypes(**dict(every, **{
        f: CONTAINERS[f] for f in STRUCT_KEY_FIELDS})), *CONTAINERS)
    add("nothing", AT.AllTypes)

    # other structs, exceptions, service args and results
    add("Point", lambda: P(1, 2))
    add("Empty", AT.Empty)
    add("Leaf-optional-unset", lambda: leaf("x"))
    add("Leaf-optional-set", lambda: leaf("x", 0, [P(0, 0)], AT.Color.BLACK))
    add("Tree", tree)
    add("WithDefaults-defaults", lambda: AT.WithDefaults(id=1, label="l", req_struct=P(0, 0)))
    add("WithDefaults-optional-default-unset", lambda: AT.WithDefaults(
        id=-1, label="", req_struct=AT.Point(), opt_string=None, def_list=None, def_map=None))
    add("WithDefaults-all-set", lambda: AT.WithDefaults(
        id=2**31 - 1, label="🌍", opt_i64=-2**63, opt_string="", def_i32=0, def_double=-0.0,
        def_string="", def_bool=False, def_enum=AT.Color.NEGATIVE, def_list=[], def_map={},
        def_set=set(), def_struct=AT.Point(), def_byte=127, def_i16=-2**15, def_i64=2**63 - 1,
        opt_list=["a", "🌍"], req_struct=P(-1, -1), def_implicit=AT.Implicit.FIRST,
        def_binary=b"\xff"))
    add("NotFound", lambda: AT.NotFound(message="gone 🌍", id=2**63 - 1, candidates=["a", ""]))
    add("InvalidInput", lambda: AT.InvalidInput(message="bad", code=-2**31,
                                                details={"k": "v", "🌍": ""}, where=P(1, 2)))
    add("Unavailable", lambda: AT.Unavailable(reason="later", retry_after=INF, permanent=False,
                                              token=BINARIES[3][1]))
    svc = AT.AllTypesService
    add("many_args_args", lambda: svc.many_args_args(
        a=True, b=-1, c=2, d=-3, e=2**40, f=-0.5, g="g🌍", h=b"h\x00", i=AT.Color.BLUE,
        j=[P(1, 1)], k={"s": {7}}))
    add("echo_all_args", lambda: svc.echo_all_args(v=AT.AllTypes(**every)))
    add("echo_i32_result-zero", lambda: svc.echo_i32_result(success=0))
    add("echo_bool_result-false", lambda: svc.echo_bool_result(success=False))
    add("echo_string_result-empty", lambda: svc.echo_string_result(success=""))
    add("echo_set_result", lambda: svc.echo_set_result(success={"x", "y"}))
    add("ping_result-void", lambda: svc.ping_result())
    add("may_fail_result-success", lambda: svc.may_fail_result(success="ok"))
    add("may_fail_result-not_found", lambda: svc.may_fail_result(
        not_found=AT.NotFound(message="nf", id=1, candidates=[])))
    add("may_fail_result-invalid", lambda: svc.may_fail_result(
        invalid=AT.InvalidInput(message="ii", code=2, details={}, where=P(0, 0))))
    add("may_fail_result-unavailable", lambda: svc.may_fail_result(
        unavailable=AT.Unavailable(reason="un", retry_after=NAN, permanent=True, token=b"")))
    add("may_fail_void_result-invalid", lambda: svc.may_fail_void_result(
        invalid=AT.InvalidInput(message="v", code=0)))
    add("fire_args-oneway", lambda: svc.fire_args(event="e", n=-1))
    add("base_add_args-inherited", lambda: svc.base_add_args(a=1, b=2))
    add("middle_mul_result-inherited", lambda: svc.middle_mul_result(success=-2**63))
    return cases


CASES = _cases()


def _xfail(case_fields, peer):
    if peer in APACHE_CODECS and case_fields & set(STRUCT_KEY_FIELDS):
        return APACHE_NO_STRUCT_KEYS
    return None


def _params():
    out = []
    for case_id, make, fields in CASES:
        for peer in PEER_CODECS:
            reason = _xfail(fields, peer)
            marks = [pytest.mark.xfail(reason=reason, strict=True, raises=TypeError)] if reason else []
            out.append(pytest.param(make, peer, id="%s-%s" % (case_id, peer), marks=marks))
    return out


VECTORS = _params()


def _codec(impl, **options):
    return impl.binary.BinaryCodec(**options)


def assert_same_bytes(ours, theirs, who="peer"):
    """``ours == theirs``, failing with the first difference, not two megabytes."""
    if ours == theirs:
        return
    at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    lo = max(0, at - 16)
    raise AssertionError("bytes differ from %s at offset %d (lengths %d, %d):\n ours:   %s\n theirs: %s"
                         % (who, at, len(ours), len(theirs), ours[lo:at + 16].hex(" "),
                            theirs[lo:at + 16].hex(" ")))


# ---------------------------------------------------------------- the three directions

@pytest.mark.parametrize("make, peer", VECTORS)
def test_same_bytes_as_peer(impl, apache_alltypes, make, peer):
    obj = make()
    ours = _codec(impl).encode_struct(obj)
    theirs = apache_alltypes.encode(peer, obj)
    assert_same_bytes(ours, theirs, peer)


@pytest.mark.parametrize("make, peer", VECTORS)
def test_peer_decodes_ours(impl, apache_alltypes, make, peer):
    obj = make()
    ours = _codec(impl).encode_struct(obj)
    decoded = apache_alltypes.decode(peer, type(obj), ours)
    same_value(apache_alltypes.expected(obj), decoded)


@pytest.mark.parametrize("make, peer", VECTORS)
def test_we_decode_peer(impl, apache_alltypes, make, peer):
    obj = make()
    theirs = apache_alltypes.encode(peer, obj)
    decoded = _codec(impl).decode_struct(type(obj), theirs)
    same_value(apache_alltypes.expected(obj), decoded)
    # and decoding into an existing instance gives the same
    target = type(obj)()
    assert _codec(impl).decode_struct(target, memoryview(theirs)) is target
    same_value(apache_alltypes.expected(obj), target)


# ---------------------------------------------------------------- fixed vectors

# A few vectors written out by hand from the binary protocol specification, so
# that a bug shared by every peer (and by us) would still show.
GOLDEN = [
    ("Point", lambda: P(1, -2), "08 0001 00000001 08 0002 fffffffe 00"),
    ("Empty", AT.Empty, "00"),
    ("bool", lambda: AT.AllTypes(a_bool=True), "02 0001 01 00"),
    ("byte", lambda: AT.AllTypes(a_byte=-128), "03 0002 80 00"),
    ("i16", lambda: AT.AllTypes(a_i16=-2), "06 0003 fffe 00"),
    ("i64", lambda: AT.AllTypes(a_i64=2**63 - 1), "0a 0005 7fffffffffffffff 00"),
    ("double-neg-zero", lambda: AT.AllTypes(a_double=-0.0), "04 0006 8000000000000000 00"),
    ("string-4-byte", lambda: AT.AllTypes(a_string="🌍"), "0b 0007 00000004 f09f8c8d 00"),
    ("binary-as-string", lambda: AT.AllTypes(a_binary=b"\xff"), "0b 0008 00000001 ff 00"),
    ("enum", lambda: AT.AllTypes(a_enum=AT.Color.NEGATIVE), "08 0009 fffffff9 00"),
    ("list-empty", lambda: AT.AllTypes(l_i32=[]), "0f 0017 08 00000000 00"),
    ("set-one", lambda: AT.AllTypes(s_string={"a"}), "0e 002e 0b 00000001 00000001 61 00"),
    ("map-empty", lambda: AT.AllTypes(m_string_i32={}), "0d 003c 0b 08 00000000 00"),
    ("map-map", lambda: AT.AllTypes(mm_string_i64={"a": {}}),
     "0d 0052 0b 0d 00000001 00000001 61 0b 0a 00000000 00"),
    ("nested-struct", lambda: AT.AllTypes(a_struct=AT.Point(y=3)),
     "0c 000d 08 0002 00000003 00 00"),
    ("void-result", lambda: AT.AllTypesService.ping_result(), "00"),
    ("result-zero", lambda: AT.AllTypesService.echo_i32_result(success=0),
     "08 0000 00000000 00"),
]


@pytest.mark.parametrize("make, hexed", [pytest.param(m, h, id=i) for i, m, h in GOLDEN])
def test_golden(impl, apache_alltypes, make, hexed):
    expected = bytes.fromhex(hexed.replace(" ", ""))
    obj = make()
    assert _codec(impl).encode_struct(obj) == expected
    same_value(apache_alltypes.expected(obj), _codec(impl).decode_struct(type(obj), expected))
    for peer in PEER_CODECS:  # the peers agree with the specification too
        assert apache_alltypes.encode(peer, obj) == expected, peer


# ---------------------------------------------------------------- defaults, field order

@pytest.mark.parametrize("peer", PEER_CODECS)
def test_defaults_built_by_each_side(impl, apache_alltypes, peer):
    """The IDL defaults as each library's constructor applies them."""
    ours = _codec(impl).encode_struct(AT.WithDefaults(id=1, label="x", req_struct=P(1, 2)))
    if peer in APACHE_CODECS:
        t = apache_alltypes.ttypes
        native = t.WithDefaults(id=1, label="x", req_struct=t.Point(x=1, y=2))
        theirs = peers.apache_serialize(native, peer == peers.APACHE_ACCEL)
    else:
        theirs = apache_alltypes.encode(peer, AT.WithDefaults(id=1, label="x", req_struct=P(1, 2)))
    assert ours == theirs
    # fields missing on the wire take the IDL defaults on every side
    minimal = _codec(impl).encode_struct(AT.WithDefaults(
        id=3, label="m", req_struct=P(0, 0), opt_string=None, def_i32=None, def_double=None,
        def_string=None, def_bool=None, def_enum=None, def_list=None, def_map=None,
        def_set=None, def_struct=None, def_byte=None, def_i16=None, def_i64=None,
        def_implicit=None, def_binary=None))
    # (thriftpy2 keeps the binary default "raw" as a str, Apache as bytes:
    # normalized, it is a loader difference, not a wire one)
    ours_decoded = _codec(impl).decode_struct(AT.WithDefaults, minimal)
    peer_decoded = apache_alltypes.decode(peer, AT.WithDefaults, minimal)
    same_value(apache_alltypes.normalized(peer_decoded), apache_alltypes.normalized(ours_decoded))


@pytest.mark.parametrize("peer", PEER_CODECS)
def test_fields_declared_out_of_id_order(impl, apache_alltypes, peer):
    """Apache writes fields sorted by id, thriftpy2 and aiothrift in declaration
    order: both are valid; every side decodes the other."""
    obj = AT.OutOfOrder(third="3", first=1, second=[2, 2])
    ours = _codec(impl).encode_struct(obj)
    theirs = apache_alltypes.encode(peer, obj)
    if peer in TP2_CODECS:
        assert ours == theirs
    else:
        assert sorted(ours) == sorted(theirs) and ours != theirs
    same_value(obj, apache_alltypes.decode(peer, AT.OutOfOrder, ours))
    same_value(obj, _codec(impl).decode_struct(AT.OutOfOrder, theirs))


@pytest.mark.parametrize("peer", PEER_CODECS)
def test_constants_agree(impl, apache_alltypes, peer):
    """thriftpy2's view of the IDL constants, through our codec, is Apache's."""
    c = apache_alltypes.constants
    obj = AT.AllTypes(a_i32=AT.MAX_I32, a_i64=AT.BIG_I64, a_double=AT.PI, a_string=AT.GREETING,
                      a_enum=AT.DEFAULT_COLOR, l_i32=AT.PRIMES, s_string=AT.TAGS,
                      m_string_i32=AT.WEIGHTS, a_struct=AT.ORIGIN, a_typedef=AT.EPOCH)
    got = apache_alltypes.decode(peer, AT.AllTypes, _codec(impl).encode_struct(obj))
    assert (got.a_i32, got.a_i64, got.a_string, got.a_enum, got.l_i32, got.s_string,
            got.m_string_i32, got.a_typedef) == (
        c.MAX_I32, c.BIG_I64, c.GREETING, c.DEFAULT_COLOR, c.PRIMES, c.TAGS, c.WEIGHTS, c.EPOCH)
    assert peers.float_bits(got.a_double) == peers.float_bits(c.PI)
    assert (got.a_struct.x, got.a_struct.y) == (c.ORIGIN.x, c.ORIGIN.y)
    assert AT.GROUPS == c.GROUPS


def test_apache_structs_are_unhashable(impl, apache_alltypes):
    """Why the set<struct> / map<struct, _> vectors are expected failures with
    Apache: its own generated classes cannot be set elements or map keys,
    while thriftpy2 (and aiothrift) handle them (the same vectors pass there)."""
    t = apache_alltypes.ttypes
    with pytest.raises(TypeError, match="unhashable"):
        {t.Point(x=1, y=2)}
    obj = AT.AllTypes(s_struct={P(1, 2)}, m_struct_string={P(3, 4): "x"})
    for peer in TP2_CODECS:
        same_value(obj, apache_alltypes.decode(peer, AT.AllTypes, _codec(impl).encode_struct(obj)))


@pytest.mark.parametrize("peer", APACHE_CODECS)
def test_missing_required_field_from_peer(impl, apache_alltypes, peer):
    """Apache writes a struct whose required field is unset; we reject it."""
    from aiothrift.errors import InvalidDataError

    t = apache_alltypes.ttypes
    data = peers.apache_serialize(t.WithDefaults(id=None, label="x", req_struct=t.Point()),
                                  peer == peers.APACHE_ACCEL)
    with pytest.raises(InvalidDataError):
        _codec(impl).decode_struct(AT.WithDefaults, data)


# ---------------------------------------------------------------- string decoding options

RAW_CASES = [pytest.param(make, id=case_id) for case_id, make, fields in CASES
             if case_id.startswith(("a_string-", "l_string-", "s_string-", "m_string", "mm_"))
             or case_id in ("everything", "Tree", "many_args_args", "NotFound")]


@pytest.mark.parametrize("peer", TP2_CODECS)
@pytest.mark.parametrize("make", RAW_CASES)
def test_decode_response_false_vs_thriftpy2(impl, apache_alltypes, make, peer):
    """``decode_response=False`` leaves strings as bytes, as thriftpy2's option does."""
    obj = make()
    data = _codec(impl).encode_struct(obj)
    ours = _codec(impl, decode_response=False).decode_struct(type(obj), data)
    theirs = type(obj)()
    peers.tp2_protocol(peers.tp2_buffer(peer == peers.TP2_CYBIN, data), peer == peers.TP2_CYBIN,
                       decode_response=False).read_struct(theirs)
    same_value(apache_alltypes.normalized(theirs), ours)


# a_string (field 7) holding bytes that are not UTF-8
NOT_UTF8 = bytes.fromhex("0b 0007 00000003 61ff80 00".replace(" ", ""))


@pytest.mark.parametrize("peer", TP2_CODECS)
def test_invalid_utf8_string_like_thriftpy2(impl, peer, apache_alltypes):
    """Invalid UTF-8 in a string: raw bytes, thriftpy2's behaviour (documented
    contract).  The Apache peers differ from each other: pure raises
    UnicodeDecodeError, fastbinary substitutes U+FFFD."""
    ours = _codec(impl).decode_struct(AT.AllTypes, NOT_UTF8)
    assert ours.a_string == b"a\xff\x80"
    same_value(apache_alltypes.decode(peer, AT.AllTypes, NOT_UTF8), ours)
    with pytest.raises(UnicodeDecodeError):
        apache_alltypes.decode(peers.APACHE_PURE, AT.AllTypes, NOT_UTF8)
    assert apache_alltypes.decode(peers.APACHE_ACCEL, AT.AllTypes, NOT_UTF8).a_string == "a\ufffd\ufffd"


# ---------------------------------------------------------------- messages

NAMES = ["echo_i32", "", "naïve_🌍"]
SEQIDS = [0, 1, 2**31 - 1, -2**31, -1]


def _message_bodies():
    svc = AT.AllTypesService
    return [
        ("call", TMessageType.CALL, lambda: svc.echo_i32_args(v=-5)),
        ("reply", TMessageType.REPLY, lambda: svc.may_fail_result(
            invalid=AT.InvalidInput(message="m", code=1, details={"a": "b"}, where=P(1, 2)))),
        ("exception", TMessageType.EXCEPTION,
         lambda: Tp2AppError(Tp2AppError.INTERNAL_ERROR, "Internal error")),
        ("oneway", TMessageType.ONEWAY, lambda: svc.fire_args(event="🌍", n=7)),
    ]


MESSAGES = _message_bodies()


def _apache_body(idl, body):
    if isinstance(body, Tp2AppError):
        return ApacheAppError(body.type, body.message)
    return idl.to_apache(body)


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non-strict"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@pytest.mark.parametrize("accelerated", [False, True], ids=["apache-pure", "apache-accel"])
@pytest.mark.parametrize("kind, mtype, make", [pytest.param(*m, id=m[0]) for m in MESSAGES])
@pytest.mark.parametrize("name", NAMES, ids=["ascii", "empty", "utf8"])
def test_message_vs_apache(impl, apache_alltypes, strict, framed, accelerated, kind, mtype,
                           make, name):
    body = make()
    seqid = {"": 0, "echo_i32": -2**31, "naïve_🌍": 2**31 - 1}[name]
    ours = _codec(impl, strict_write=strict).encode_message(name, mtype, seqid, body, framed=framed)
    theirs = peers.apache_write_message(name, mtype, seqid, _apache_body(apache_alltypes, body),
                                        accelerated=accelerated, strict=strict, framed=framed)
    assert ours == theirs

    # Apache reads ours
    acls = type(_apache_body(apache_alltypes, body))
    got = peers.apache_read_message(ours, lambda n, t: acls, accelerated=accelerated,
                                    strict=strict, framed=framed)
    assert got[:3] == (name, mtype, seqid)
    if isinstance(body, Tp2AppError):
        assert (got[3].type, got[3].message) == (body.type, body.message)
    else:
        same_value(apache_alltypes.expected(body), apache_alltypes.to_tp2(got[3]))

    # we read Apache's
    payload = theirs
    if framed:
        assert struct.unpack("!i", theirs[:4])[0] == len(theirs) - 4
        payload = theirs[4:]
    codec = _codec(impl, strict_read=strict)
    rname, rtype, rseqid, offset = codec.decode_message_begin(payload)
    assert (rname, rtype, rseqid) == (name, mtype, seqid)
    decoded = codec.decode_struct(type(body), payload, offset)
    if isinstance(body, Tp2AppError):
        assert (decoded.type, decoded.message) == (body.type, body.message)
    else:
        same_value(apache_alltypes.expected(body), decoded)


@pytest.mark.parametrize("seqid", SEQIDS)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non-strict"])
@pytest.mark.parametrize("peer", TP2_CODECS)
def test_message_vs_thriftpy2(impl, apache_alltypes, peer, strict, seqid):
    body = AT.AllTypesService.many_args_args(a=False, g="🌍", k={"x": {1}})
    cython = peer == peers.TP2_CYBIN
    name = "many_args"
    ours = _codec(impl, strict_write=strict).encode_message(name, TMessageType.CALL, seqid, body)
    theirs = peers.tp2_write_message(name, TMessageType.CALL, seqid, body, cython=cython,
                                     strict=strict)
    assert ours == theirs
    got = peers.tp2_read_message(ours, lambda n, t: type(body), cython=cython, strict=strict)
    assert got[:3] == (name, TMessageType.CALL, seqid)
    same_value(body, apache_alltypes.normalized(got[3]))
    codec = _codec(impl, strict_read=strict)
    assert codec.decode_message_begin(theirs)[:3] == (name, TMessageType.CALL, seqid)


@pytest.mark.parametrize("accelerated", [False, True], ids=["apache-pure", "apache-accel"])
def test_non_strict_header_rejected_when_strict_read(impl, apache_alltypes, accelerated):
    from aiothrift.errors import BadVersionError

    data = peers.apache_write_message("ping", TMessageType.CALL, 1,
                                      apache_alltypes.to_apache(AT.AllTypesService.ping_args()),
                                      accelerated=accelerated, strict=False)
    with pytest.raises(BadVersionError):
        _codec(impl, strict_read=True).decode_message_begin(data)
    assert _codec(impl, strict_read=False).decode_message_begin(data)[:3] == (
        "ping", TMessageType.CALL, 1)


# ---------------------------------------------------------------- schema evolution

def _record_v1():
    part = V1.Part(n=1, removed_in_v2="gone")
    return V1.Record(
        id=2**40, retyped=-5, old_bool=True, old_byte=-128, old_i16=-2**15, old_i32=2**31 - 1,
        old_i64=-2**63, old_double=NAN, old_string="old 🌍", old_binary=b"\x00\xff",
        old_enum=V1.Level.HIGH, old_struct=part, old_list=[part, V1.Part()],
        old_set={"a", "b"}, old_map={"k": [1, -1], "e": []},
        old_nested=[{1: {"x"}, 2: set()}, {}], old_optional="opt", old_default="set",
        name="record", parts=[part, V1.Part(n=2)], level=V1.Level.LOW)


def _record_v2():
    part = V2.Part(n=1, added_in_v2=-0.0)
    return V2.Record(
        id=-1, retyped="now a string", name="record 🌍", parts=[part], level=V2.Level.MEDIUM,
        new_bool=False, new_byte=127, new_i16=2**15 - 1, new_i32=-2**31, new_i64=2**63 - 1,
        new_double=-INF, new_string="new", new_binary=b"", new_enum=V2.Level.MEDIUM,
        new_struct=part, new_list=[[part], []], new_set={-2**63, 0},
        new_map={b"\xff": {"d": NAN}, b"": {}}, new_nested={V2.Level.HIGH: [{1, 2}, set()]},
        new_optional="", new_default="changed")


APACHE_PURE_SKIP_BUG = (
    "Apache's pure TProtocolBase.skip() reads an unknown STRING field with readString(), "
    "which decodes it as UTF-8: skipping a non-UTF-8 binary raises UnicodeDecodeError "
    "(%s; fastbinary skips raw bytes)" % peers.peer_version(peers.APACHE_PURE))
TP2_PURE_RETYPE_BUG = (
    "thriftpy2's pure read_struct() reads a STRING field whose id the reader declares "
    "with another type as that type (its BIN_TYPES shortcut) instead of skipping it "
    "(%s; cybin skips it)" % peers.peer_version(peers.TP2_PURE))


def _evolution_params():
    cases = [
        # (id, make, writer, reader, unknown non-UTF-8 binary skipped?, retyped string?)
        ("v1-writes-v2-reads", _record_v1, "v1", "v2", True, False),
        ("v2-writes-v1-reads", _record_v2, "v2", "v1", True, True),
        ("v1-put-args", lambda: V1.Registry.put_args(record=_record_v1(), v1_only_flag=True),
         "v1", "v2", True, False),
        ("v2-put-args", lambda: V2.Registry.put_args(record=_record_v2(), v2_only_ttl=60),
         "v2", "v1", True, True),
        ("v2-exception-v1-reads", lambda: V2.Registry.reject_result(rejected=V2.Rejected(
            reason="r", new_hints=["h"])), "v2", "v1", False, False),
        ("v1-reads-v2-part", lambda: V2.Part(n=3, added_in_v2=1.0), "v2", "v1", False, False),
    ]
    plain, reading = [], []
    for case_id, make, writer, reader, binary_skip, retyped in cases:
        for peer in PEER_CODECS:
            pid = "%s-%s" % (case_id, peer)
            plain.append(pytest.param(make, writer, reader, peer, id=pid))
            marks = []
            if binary_skip and peer == peers.APACHE_PURE:
                marks.append(pytest.mark.xfail(reason=APACHE_PURE_SKIP_BUG, strict=True,
                                               raises=UnicodeDecodeError))
            if retyped and peer == peers.TP2_PURE:
                marks.append(pytest.mark.xfail(reason=TP2_PURE_RETYPE_BUG, strict=True,
                                               raises=AssertionError))
            reading.append(pytest.param(make, writer, reader, peer, id=pid, marks=marks))
    return plain, reading


EVOLUTION, EVOLUTION_PEER_READS = _evolution_params()


@pytest.fixture
def evolution(apache_evolution_v1, apache_evolution_v2):
    return {"v1": apache_evolution_v1, "v2": apache_evolution_v2}


def _reader_class(idl, obj):
    cls = getattr(idl.tp2, type(obj).__name__, None)
    if cls is None:  # service args/results live on the service class
        cls = getattr(idl.tp2.Registry, type(obj).__name__)
    return cls


@pytest.mark.parametrize("make, writer, reader, peer", EVOLUTION)
def test_evolution_same_bytes(impl, evolution, make, writer, reader, peer):
    obj = make()
    assert_same_bytes(_codec(impl).encode_struct(obj), evolution[writer].encode(peer, obj), peer)


@pytest.mark.parametrize("make, writer, reader, peer", EVOLUTION_PEER_READS)
def test_evolution_peer_reads_ours(impl, evolution, make, writer, reader, peer):
    """The peer, on the other schema, skips what it does not know in our bytes."""
    obj = make()
    reader_cls = _reader_class(evolution[reader], obj)
    expected = evolution[reader].normalized(peers.evolve(obj, reader_cls))
    ours = _codec(impl).encode_struct(obj)
    same_value(expected, evolution[reader].decode(peer, reader_cls, ours))


@pytest.mark.parametrize("make, writer, reader, peer", EVOLUTION)
def test_evolution_we_read_peer(impl, evolution, make, writer, reader, peer):
    """We, on the other schema, skip what we do not know in the peer's bytes."""
    obj = make()
    reader_cls = _reader_class(evolution[reader], obj)
    expected = evolution[reader].normalized(peers.evolve(obj, reader_cls))
    theirs = evolution[writer].encode(peer, obj)
    same_value(expected, _codec(impl).decode_struct(reader_cls, theirs))


def test_evolution_peer_bugs_are_the_peers(impl, evolution):
    """The two expected failures above happen between peers alone, without
    aiothrift's bytes; aiothrift decodes the same bytes correctly."""
    v1, v2 = evolution["v1"], evolution["v2"]
    # Apache pure cannot skip a non-UTF-8 binary it does not know ...
    data = v1.encode(peers.APACHE_ACCEL, V1.Record(id=1, old_binary=b"\xff"))
    with pytest.raises(UnicodeDecodeError):
        v2.decode(peers.APACHE_PURE, V2.Record, data)
    assert v2.decode(peers.APACHE_ACCEL, V2.Record, data).id == 1
    assert _codec(impl).decode_struct(V2.Record, data).id == 1
    # ... and thriftpy2 pure reads a string field it knows as i32 as an i32.
    data = v2.encode(peers.TP2_CYBIN, V2.Record(id=1, retyped="four", name="n"))
    assert peers.tp2_deserialize(V1.Record, data, cython=False).retyped == 4  # the length
    assert peers.tp2_deserialize(V1.Record, data, cython=True).retyped is None
    got = _codec(impl).decode_struct(V1.Record, data)
    assert (got.id, got.retyped, got.name) == (1, None, "n")
