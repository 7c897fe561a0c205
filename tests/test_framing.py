"""Framing layer: WriteBuffer, FramedReader and BufferedReader.

Every test runs once per implementation through the ``impl`` fixture
(``impl.framing`` is the module under test).  The differential tests also
run the pure-Python twin on the same input and require the very same
results, errors included.
"""

from __future__ import annotations

import array
import importlib
import importlib.machinery
import random
import struct
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.transport import TMemoryBuffer

from aiothrift.errors import (
    BadVersionError,
    DepthLimitError,
    InvalidDataError,
    NegativeSizeError,
    ProtocolError,
    SizeLimitError,
)
from aiothrift.limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

#: The pure-Python twin: the reference of the differential tests.
REF = importlib.import_module("aiothrift._framing_py")

T_STOP, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64 = 0, 2, 3, 4, 6, 8, 10
T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 11, 12, 13, 14, 15
WIRE_TYPES = (2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15)
NOT_WIRE_TYPES = [t for t in range(256) if t not in WIRE_TYPES]

HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: For the tests whose examples are expensive to generate (thriftpy2 objects).
HYPOTHESIS_HEAVY = settings(HYPOTHESIS, max_examples=120)


# --------------------------------------------------------------- encoders

def be32(n: int) -> bytes:
    return struct.pack("!i", n)


def framed(payload: bytes) -> bytes:
    return be32(len(payload)) + payload


def header(name: bytes = b"m", mtype: int = 1, seqid: int = 1, strict: bool = True) -> bytes:
    if strict:
        return be32(-0x7FFF0000 | mtype) + be32(len(name)) + name + be32(seqid)
    return be32(len(name)) + name + bytes([mtype]) + be32(seqid)


def field(ttype: int, fid: int, payload: bytes) -> bytes:
    return struct.pack("!bh", ttype, fid) + payload


def string(data: bytes) -> bytes:
    return be32(len(data)) + data


def list_header(etype: int, count: int) -> bytes:
    return bytes([etype]) + be32(count)


def map_header(ktype: int, vtype: int, count: int) -> bytes:
    return bytes([ktype, vtype]) + be32(count)


def message(*fields: bytes, **hdr) -> bytes:
    """A message whose body struct holds ``fields`` (encoded) then STOP."""
    return header(**hdr) + b"".join(fields) + b"\0"


def nested_structs(levels: int) -> bytes:
    """A message whose struct nesting is ``levels`` deep (its struct is 1)."""
    body = b"\0"
    for _ in range(levels - 1):
        body = field(T_STRUCT, 1, body) + b"\0"
    return header() + body


def nested_lists(levels: int) -> bytes:
    """A message struct (level 1) holding lists nested to ``levels`` in all."""
    value = list_header(T_I32, 1) + be32(7)
    for _ in range(levels - 2):
        value = list_header(T_LIST, 1) + value
    return message(field(T_LIST, 1, value))


def tp2_message(name: str, mtype: int, seqid: int, obj, strict: bool = True) -> bytes:
    """A message encoded by thriftpy2 (an independent encoder)."""
    trans = TMemoryBuffer()
    proto = TBinaryProtocol(trans, strict_write=strict)
    proto.write_message_begin(name, mtype, seqid)
    proto.write_struct(obj)
    proto.write_message_end()
    return trans.getvalue()


ALL_TYPES_BODY = (
    field(T_BOOL, 1, b"\x01")
    + field(T_BYTE, 2, b"\xff")
    + field(T_I16, 3, b"\x7f\xff")
    + field(T_I32, 4, be32(-1))
    + field(T_I64, 5, b"\x00" * 8)
    + field(T_DOUBLE, -6, struct.pack("!d", 2.5))
    + field(T_STRING, 7, string(b"h\xc3\xa9llo"))
    + field(T_STRING, 8, string(b""))
    # list<map<string, list<struct{i32, set<i16>}>>>
    + field(T_LIST, 9, list_header(T_MAP, 2)
            + map_header(T_STRING, T_LIST, 1) + string(b"k")
            + list_header(T_STRUCT, 2)
            + field(T_I32, 1, be32(5)) + field(T_SET, 2, list_header(T_I16, 2) + b"\x00\x01\x00\x02") + b"\0"
            + b"\0"
            + map_header(T_STRING, T_LIST, 0))
    # empty containers may carry any type ids (some peers write 0)
    + field(T_MAP, 10, map_header(0, 0, 0))
    + field(T_LIST, 11, list_header(0xEE, 0))
    + field(T_SET, 12, list_header(T_STRUCT, 0))
    # fixed-width containers are skipped in one go
    + field(T_LIST, 13, list_header(T_I64, 3) + b"\x01" * 24)
    + field(T_MAP, 14, map_header(T_I32, T_DOUBLE, 2) + b"\x02" * 24)
    + field(T_LIST, 15, list_header(T_BOOL, 5) + b"\x00\x01\x00\x01\x01")
    # map with a container key
    + field(T_MAP, 16, map_header(T_LIST, T_STRING, 1) + list_header(T_BYTE, 2) + b"ab" + string(b"v"))
    + field(T_STRUCT, 17, field(T_STRUCT, 1, b"\0") + b"\0")
)


@pytest.fixture(scope="module")
def samples(bench_thrift):
    """Messages of various shapes, most encoded by thriftpy2."""
    b = bench_thrift
    items = [
        b.Item(id=i, name="item %d" % i, price=i * 1.25, tags=["t%d" % j for j in range(i % 4)],
               counts={"c%d" % j: j for j in range(i % 3)}, blob=(b"\x00" * i) if i % 2 else None,
               active=bool(i % 2))
        for i in range(12)
    ]
    order = b.Order(order_id=99, customer="c\u00e9", items=items, meta={"a": "b", "": ""}, status=-3)
    return [
        tp2_message("ping", 1, 0, b.Bench.ping_args()),
        tp2_message("add", 1, 1, b.Bench.add_args(a=1, b=-2)),
        tp2_message("add", 2, 1, b.Bench.add_result(success=-1)),
        tp2_message("echo", 1, 2, b.Bench.echo_args(s="h\u00e9llo")),
        tp2_message("echo_bytes", 1, 3, b.Bench.echo_bytes_args(b=bytes(range(256)) * 4)),
        tp2_message("roundtrip", 1, 4, b.Bench.roundtrip_args(o=order)),
        tp2_message("roundtrip", 2, 4, b.Bench.roundtrip_result(success=b.Order())),
        tp2_message("fail", 2, 5, b.Bench.fail_result(err=b.BenchError(message="no", code=3))),
        tp2_message("notify", 4, 6, b.Bench.notify_args(event="e")),
        header(b"", 1, 0) + b"\0",
        header(b"all", 1, 7) + ALL_TYPES_BODY + b"\0",
    ]


def feed_chunks(reader, data: bytes, cuts) -> list:
    """Feed ``data`` cut at ``cuts``; return all messages returned."""
    out = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        out += reader.feed(data[start:cut])
        start = cut
    return out


def feed_bytewise(reader, data: bytes) -> list:
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    return out


def trace(reader, chunks) -> list:
    """What every feed returned or raised (class and text), then ``buffered``."""
    result = []
    for chunk in chunks:
        try:
            result.append(("ok", reader.feed(chunk)))
        except ProtocolError as exc:
            result.append(("error", type(exc), str(exc)))
            return result
    result.append(("buffered", reader.buffered))
    return result


def split(data: bytes, cuts) -> list:
    bounds = [0] + sorted(set(cuts)) + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# ------------------------------------------------------------ the modules

def test_compiled_is_an_extension(impl):
    if impl.name == "compiled":
        assert impl.framing.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        with pytest.raises(TypeError):  # cdef final class
            type("Sub", (impl.framing.WriteBuffer,), {})
    else:
        assert impl.framing.__file__.endswith("_framing_py.py")
    assert impl.framing.DEFAULT_INITIAL_SIZE == REF.DEFAULT_INITIAL_SIZE


# ------------------------------------------------------------ WriteBuffer

@pytest.mark.parametrize("name, fmt, values", [
    ("put_u8", "!B", [0, 1, 127, 128, 255]),
    ("put_i16", "!h", [0, 1, -1, 258, -(1 << 15), (1 << 15) - 1]),
    ("put_i32", "!i", [0, 1, -1, 0x01020304, -(1 << 31), (1 << 31) - 1]),
    ("put_i64", "!q", [0, 1, -1, 0x0102030405060708, -(1 << 63), (1 << 63) - 1]),
    ("put_double", "!d", [0.0, -0.0, 1.5, -2.25e300, float("inf"), float("-inf"), float("nan"), 5e-324]),
])
def test_writebuffer_integers_and_doubles_big_endian(impl, name, fmt, values):
    buf = impl.framing.WriteBuffer()
    for v in values:
        getattr(buf, name)(v)
    assert buf.getvalue() == b"".join(struct.pack(fmt, v) for v in values)
    assert len(buf) == struct.calcsize(fmt) * len(values)


@pytest.mark.parametrize("name, bad, exc", [
    ("put_u8", 256, OverflowError),
    ("put_u8", -1, OverflowError),
    ("put_i16", 1 << 15, OverflowError),
    ("put_i16", -(1 << 15) - 1, OverflowError),
    ("put_i32", 1 << 31, OverflowError),
    ("put_i64", 1 << 63, OverflowError),
    ("put_i64", -(1 << 63) - 1, OverflowError),
    ("put_i32", 1.0, TypeError),
    ("put_i64", "1", TypeError),
    ("put_u8", None, TypeError),
    ("put_double", "1.0", TypeError),
    ("put_double", None, TypeError),
    ("put_double", 1 << 1024, OverflowError),
])
def test_writebuffer_value_errors(impl, name, bad, exc):
    buf = impl.framing.WriteBuffer()
    with pytest.raises(exc):
        getattr(buf, name)(bad)
    assert len(buf) == 0


def test_writebuffer_number_protocols(impl):
    class Idx:
        def __index__(self):
            return 7

    class Flt:
        def __float__(self):
            return 0.5

    buf = impl.framing.WriteBuffer()
    buf.put_i32(Idx())
    buf.put_i16(True)
    buf.put_double(3)
    buf.put_double(Flt())
    assert buf.getvalue() == be32(7) + b"\x00\x01" + struct.pack("!dd", 3.0, 0.5)


@pytest.mark.parametrize("initial_size", [0, 1, 7, 1024, 1 << 16])
def test_writebuffer_growth_across_many_writes(impl, initial_size):
    rng = random.Random(initial_size)
    buf = impl.framing.WriteBuffer(initial_size)
    expected = bytearray()
    for i in range(3000):
        kind = rng.randrange(4)
        if kind == 0:
            chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            buf.write(chunk)
            expected += chunk
        elif kind == 1:
            buf.put_i64(i)
            expected += struct.pack("!q", i)
        elif kind == 2:
            buf.put_u8(i & 0xFF)
            expected.append(i & 0xFF)
        else:
            big = bytes([i & 0xFF]) * rng.randrange(0, 5000)
            buf.write(big)
            expected += big
        assert len(buf) == len(expected)
    assert buf.getvalue() == bytes(expected)
    assert buf.take() == bytes(expected)
    assert len(buf) == 0


def test_writebuffer_initial_size_checked(impl):
    with pytest.raises(ValueError):
        impl.framing.WriteBuffer(-1)
    with pytest.raises(TypeError):
        impl.framing.WriteBuffer(1.5)
    assert len(impl.framing.WriteBuffer(initial_size=0)) == 0


def test_writebuffer_write_bytes_like(impl):
    buf = impl.framing.WriteBuffer(0)
    buf.write(b"ab")
    buf.write(bytearray(b"cd"))
    buf.write(memoryview(b"xefx")[1:3])
    buf.write(array.array("H", [0x0102]))  # counted in bytes, native order
    buf.write(b"")
    assert buf.getvalue() == b"abcdef" + array.array("H", [0x0102]).tobytes()
    with pytest.raises(TypeError):
        buf.write("text")
    with pytest.raises(TypeError):
        buf.write(12)
    with pytest.raises(BufferError):
        buf.write(memoryview(b"abcdef")[::2])
    assert len(buf) == 8


def test_writebuffer_frame_back_patching(impl):
    buf = impl.framing.WriteBuffer(2)
    buf.write(b"pre")
    buf.begin_frame()
    assert len(buf) == 7
    buf.write(b"hello")
    buf.put_i32(-1)
    buf.end_frame()
    buf.begin_frame()
    buf.end_frame()  # an empty frame
    buf.begin_frame()
    buf.write(b"x" * 100_000)
    buf.end_frame()
    assert buf.take() == (b"pre" + framed(b"hello" + be32(-1)) + framed(b"")
                          + framed(b"x" * 100_000))
    # reusable after take
    buf.begin_frame()
    buf.write(b"again")
    buf.end_frame()
    assert buf.getvalue() == framed(b"again")


def test_writebuffer_frame_misuse(impl):
    buf = impl.framing.WriteBuffer()
    with pytest.raises(RuntimeError):
        buf.end_frame()
    buf.begin_frame()
    with pytest.raises(RuntimeError):
        buf.begin_frame()
    with pytest.raises(RuntimeError):
        buf.getvalue()
    with pytest.raises(RuntimeError):
        buf.take()
    buf.clear()  # drops the open frame too
    assert len(buf) == 0
    with pytest.raises(RuntimeError):
        buf.end_frame()
    buf.write(b"ok")
    assert buf.take() == b"ok"


def test_writebuffer_take_getvalue_clear(impl):
    buf = impl.framing.WriteBuffer()
    assert buf.getvalue() == b"" and buf.take() == b""
    buf.write(b"abc")
    assert buf.getvalue() == b"abc"
    assert buf.getvalue() == b"abc"  # getvalue does not reset
    assert buf.take() == b"abc"
    assert buf.take() == b""  # take does
    buf.write(b"def")
    buf.clear()
    assert len(buf) == 0 and buf.getvalue() == b""
    buf.write(b"g")
    assert buf.take() == b"g"


def test_writebuffer_gives_back_memory_after_a_big_message(impl):
    buf = impl.framing.WriteBuffer()
    small = sys.getsizeof(buf)
    payload = bytes(range(256)) * (4 * 4096)  # 4 MiB
    buf.write(payload)
    assert sys.getsizeof(buf) >= len(payload)
    assert buf.take() == payload
    assert sys.getsizeof(buf) < small + (1 << 20)
    buf.write(payload)
    buf.clear()
    assert sys.getsizeof(buf) < small + (1 << 20)
    buf.write(b"next")
    assert buf.take() == b"next"


# ----------------------------------------------------------- FramedReader

FRAMES = [b"first", b"", b"\x00\x01\x02", bytes(range(256)) * 3, b"", b"last one"]
FRAMED_STREAM = b"".join(framed(f) for f in FRAMES)


def test_framed_whole_and_several_per_chunk(impl):
    reader = impl.framing.FramedReader()
    assert reader.feed(FRAMED_STREAM) == FRAMES
    assert reader.buffered == 0
    assert reader.feed(b"") == []
    assert reader.feed(framed(b"") * 3) == [b"", b"", b""]


def test_framed_every_split_point(impl):
    for cut in range(len(FRAMED_STREAM) + 1):
        reader = impl.framing.FramedReader()
        first = reader.feed(FRAMED_STREAM[:cut])
        assert reader.buffered == cut - sum(len(framed(f)) for f in first)
        assert first + reader.feed(FRAMED_STREAM[cut:]) == FRAMES, cut
        assert reader.buffered == 0


def test_framed_one_byte_at_a_time(impl):
    reader = impl.framing.FramedReader()
    assert feed_bytewise(reader, FRAMED_STREAM) == FRAMES
    assert reader.buffered == 0


def test_framed_random_chunks_and_input_types(impl):
    rng = random.Random(5)
    kinds = [bytes, bytearray, memoryview]
    for _ in range(50):
        reader = impl.framing.FramedReader()
        stream = FRAMED_STREAM * 3
        cuts = rng.sample(range(len(stream)), rng.randrange(1, 12))
        out = []
        for chunk in split(stream, cuts):
            out += reader.feed(rng.choice(kinds)(chunk))
        assert out == FRAMES * 3
        assert all(type(f) is bytes for f in out)


def test_framed_large_frame_in_chunks(impl):
    payload = bytes(range(251)) * (10 * 4177)  # about 10 MiB
    data = framed(payload) + framed(b"tail")
    reader = impl.framing.FramedReader()
    out = []
    chunk = 64 * 1024
    for i in range(0, len(data), chunk):
        out += reader.feed(data[i:i + chunk])
        if not out:
            assert reader.buffered == min(i + chunk, len(data))
    assert out == [payload, b"tail"]
    assert reader.buffered == 0


def test_framed_size_at_the_limit(impl):
    reader = impl.framing.FramedReader(max_frame_size=10)
    assert reader.feed(framed(b"x" * 10)) == [b"x" * 10]
    reader = impl.framing.FramedReader(max_frame_size=0)
    assert reader.feed(framed(b"") * 2) == [b"", b""]
    assert impl.framing.FramedReader().feed(framed(b"")) == [b""]


@pytest.mark.parametrize("length, limit", [
    (-1, DEFAULT_MAX_FRAME_SIZE),
    (-(1 << 31), DEFAULT_MAX_FRAME_SIZE),
    (DEFAULT_MAX_FRAME_SIZE + 1, DEFAULT_MAX_FRAME_SIZE),
    ((1 << 31) - 1, DEFAULT_MAX_FRAME_SIZE),
    (11, 10),
    (1, 0),
])
def test_framed_bad_length_raises_on_the_length_bytes(impl, length, limit):
    # The body is never sent: the error comes from the 4 length bytes alone.
    reader = impl.framing.FramedReader(max_frame_size=limit)
    with pytest.raises(SizeLimitError):
        reader.feed(be32(length))
    # the same, the length arriving byte by byte after a good frame
    reader = impl.framing.FramedReader(max_frame_size=limit)
    data = framed(b"") + be32(length)
    assert reader.feed(data[:5]) == [b""]
    assert reader.feed(data[5:6]) == []
    assert reader.feed(data[6:7]) == []
    with pytest.raises(SizeLimitError):
        reader.feed(data[7:8])


def test_framed_reader_broken_after_error(impl):
    reader = impl.framing.FramedReader(max_frame_size=4)
    assert reader.feed(framed(b"ok")) == [b"ok"]
    with pytest.raises(SizeLimitError):
        reader.feed(framed(b"too long"))
    for data in (framed(b"ok"), b"", b"\x00"):
        with pytest.raises(SizeLimitError):
            reader.feed(data)


def test_framed_bad_argument_does_not_break_the_reader(impl):
    reader = impl.framing.FramedReader()
    with pytest.raises(TypeError):
        reader.feed("text")
    assert reader.feed(framed(b"ok")) == [b"ok"]


def test_framed_constructor(impl):
    with pytest.raises(ValueError):
        impl.framing.FramedReader(max_frame_size=-1)
    with pytest.raises(TypeError):
        impl.framing.FramedReader(100)
    with pytest.raises(TypeError):
        impl.framing.FramedReader(max_frame_size=1.5)
    assert impl.framing.FramedReader(max_frame_size=1 << 40).feed(framed(b"a")) == [b"a"]


# --------------------------------------------------------- BufferedReader

def test_buffered_samples_whole_and_together(impl, samples):
    for msg in samples:
        reader = impl.framing.BufferedReader()
        assert reader.feed(msg) == [msg]
        assert reader.buffered == 0
    reader = impl.framing.BufferedReader()
    assert reader.feed(b"".join(samples)) == samples
    assert all(type(m) is bytes for m in samples)


def test_buffered_every_split_point(impl, samples):
    small = [m for m in samples if len(m) < 2000]
    data = b"".join(small)
    for cut in range(len(data) + 1):
        reader = impl.framing.BufferedReader()
        first = reader.feed(data[:cut])
        assert reader.buffered == cut - sum(map(len, first))
        assert first + reader.feed(data[cut:]) == small, cut
        assert reader.buffered == 0


def test_buffered_one_byte_at_a_time(impl, samples):
    data = b"".join(samples)
    reader = impl.framing.BufferedReader()
    assert feed_bytewise(reader, data) == samples
    assert reader.buffered == 0


def test_buffered_random_chunks_and_input_types(impl, samples):
    rng = random.Random(11)
    data = b"".join(samples) * 2
    kinds = [bytes, bytearray, memoryview]
    for _ in range(30):
        reader = impl.framing.BufferedReader()
        out = []
        for chunk in split(data, rng.sample(range(len(data)), rng.randrange(1, 40))):
            out += reader.feed(rng.choice(kinds)(chunk))
        assert out == samples * 2


def test_buffered_large_binary_in_chunks(impl, bench_thrift):
    blob = bytes(range(256)) * (3 * 4096)  # 3 MiB
    big = tp2_message("echo_bytes", 1, 1, bench_thrift.Bench.echo_bytes_args(b=blob))
    small = tp2_message("add", 1, 2, bench_thrift.Bench.add_args(a=1, b=2))
    data = small + big + small
    reader = impl.framing.BufferedReader()
    out = []
    chunk = 64 * 1024
    for i in range(0, len(data), chunk):
        out += reader.feed(data[i:i + chunk])
        assert reader.buffered == min(i + chunk, len(data)) - sum(map(len, out))
    assert out == [small, big, small]


def test_buffered_many_structs_in_chunks(impl, bench_thrift):
    b = bench_thrift
    items = [b.Item(id=i, name="n" * (i % 7), tags=["x"] * (i % 3), counts={"k": i}, active=True)
             for i in range(3000)]
    msg = tp2_message("roundtrip", 1, 9, b.Bench.roundtrip_args(o=b.Order(items=items)))
    reader = impl.framing.BufferedReader()
    out = []
    for i in range(0, len(msg), 1000):
        out += reader.feed(msg[i:i + 1000])
    assert out == [msg]


def test_buffered_old_format_header(impl, samples, bench_thrift):
    old = [tp2_message("add", 1, 3, bench_thrift.Bench.add_args(a=5, b=6), strict=False),
           message(field(T_I32, 1, be32(1)), name=b"", strict=False)]
    reader = impl.framing.BufferedReader(strict_read=False)
    assert feed_bytewise(reader, b"".join(old + samples)) == old + samples
    for msg in old:
        with pytest.raises(BadVersionError):
            impl.framing.BufferedReader().feed(msg)
        # the error comes with the first 4 bytes
        with pytest.raises(BadVersionError):
            impl.framing.BufferedReader(strict_read=True).feed(msg[:4])


@pytest.mark.parametrize("version", [0x80020000, 0x80000001, 0xFFFF0001, 0x80000000, 0x90010001])
def test_buffered_bad_version(impl, version):
    data = struct.pack("!I", version) + string(b"m") + be32(1) + b"\0"
    for strict in (True, False):
        with pytest.raises(BadVersionError):
            impl.framing.BufferedReader(strict_read=strict).feed(data[:4])


def test_buffered_version_low_bits_are_not_checked(impl):
    data = struct.pack("!I", 0x8001FF7F) + string(b"m") + be32(1) + b"\0"
    assert impl.framing.BufferedReader().feed(data) == [data]


# Each case: (bytes that must raise as soon as they are all in, reader
# options, expected error).  ``prefix`` bytes must not raise.
ERROR_CASES = {
    "negative name length": (be32(-0x7FFF0000 | 1) + be32(-1), {}, NegativeSizeError),
    "name over max_string_size": (be32(-0x7FFF0000 | 1) + be32(5), {"max_string_size": 4}, SizeLimitError),
    "old name over max_string_size": (be32(5), {"max_string_size": 4, "strict_read": False}, SizeLimitError),
    "negative string length": (header() + field(T_STRING, 1, be32(-1)), {}, NegativeSizeError),
    "string over max_string_size": (header() + field(T_STRING, 1, be32(11)),
                                    {"max_string_size": 10}, SizeLimitError),
    "negative list size": (header() + field(T_LIST, 1, list_header(T_I32, -1)), {}, NegativeSizeError),
    "negative set size": (header() + field(T_SET, 1, list_header(T_STRUCT, -5)), {}, NegativeSizeError),
    "negative map size": (header() + field(T_MAP, 1, map_header(T_I32, T_I32, -(1 << 31))), {},
                          NegativeSizeError),
    "list over max_container_size": (header() + field(T_LIST, 1, list_header(T_I32, 4)),
                                     {"max_container_size": 3}, SizeLimitError),
    "map over max_container_size": (header() + field(T_MAP, 1, map_header(T_I32, T_I32, 4)),
                                    {"max_container_size": 3}, SizeLimitError),
    "huge bool list": (header() + field(T_LIST, 1, list_header(T_BOOL, (1 << 31) - 1)), {}, SizeLimitError),
    "huge bool list, no container limit": (header() + field(T_LIST, 1, list_header(T_BOOL, (1 << 31) - 1)),
                                           {"max_container_size": 1 << 31}, SizeLimitError),
    "huge struct list, no container limit": (
        header() + field(T_LIST, 1, list_header(T_STRUCT, DEFAULT_MAX_FRAME_SIZE)),
        {"max_container_size": 1 << 31}, SizeLimitError),
    "invalid field type": (header() + b"\x01", {}, InvalidDataError),
    "invalid field type 0x8c": (header() + b"\x8c", {}, InvalidDataError),
    "invalid field type in a nested struct": (
        header() + field(T_STRUCT, 1, field(T_I32, 1, be32(0))) + b"\x10", {}, InvalidDataError),
    "invalid element type": (header() + field(T_LIST, 1, list_header(1, 1)), {}, InvalidDataError),
    "STOP element type": (header() + field(T_SET, 1, list_header(0, 2)), {}, InvalidDataError),
    "invalid map key type": (header() + field(T_MAP, 1, map_header(9, T_I32, 1)), {}, InvalidDataError),
    "invalid map value type": (header() + field(T_MAP, 1, map_header(T_I32, 16, 1)), {}, InvalidDataError),
    "struct too deep": (nested_structs(4)[:-4], {"max_depth": 3}, DepthLimitError),
    "list too deep": (header() + field(T_LIST, 1, list_header(T_LIST, 1)), {"max_depth": 2}, DepthLimitError),
    "map too deep": (header() + field(T_MAP, 1, b""), {"max_depth": 1}, DepthLimitError),
    "list element struct too deep": (header() + field(T_LIST, 1, list_header(T_STRUCT, 2)),
                                     {"max_depth": 2}, DepthLimitError),
    "max_depth 0": (header(), {"max_depth": 0}, DepthLimitError),
    "string past max_frame_size": (header() + field(T_STRING, 1, be32(100)), {"max_frame_size": 100},
                                   SizeLimitError),
    "list past max_frame_size": (header() + field(T_LIST, 1, list_header(T_I64, 10)), {"max_frame_size": 90},
                                 SizeLimitError),
    "map past max_frame_size": (header() + field(T_MAP, 1, map_header(T_STRING, T_STRUCT, 10)),
                                {"max_frame_size": 70}, SizeLimitError),
    "name past max_frame_size": (be32(-0x7FFF0000 | 1) + be32(100), {"max_frame_size": 100}, SizeLimitError),
    "header past max_frame_size": (be32(-0x7FFF0000 | 1) + be32(0), {"max_frame_size": 11}, SizeLimitError),
    "field header past max_frame_size": (header() + b"\x08", {"max_frame_size": len(header()) + 2},
                                         SizeLimitError),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_buffered_errors_as_soon_as_known(impl, name):
    data, options, exc = ERROR_CASES[name]
    # whole
    reader = impl.framing.BufferedReader(**options)
    with pytest.raises(exc):
        reader.feed(data)
    # byte by byte: nothing before the last byte raises
    reader = impl.framing.BufferedReader(**options)
    for i in range(len(data) - 1):
        assert reader.feed(data[i:i + 1]) == []
    with pytest.raises(exc):
        reader.feed(data[-1:])
    with pytest.raises(exc):  # broken from now on
        reader.feed(message())


def test_buffered_limits_are_inclusive(impl):
    cases = [
        (message(field(T_STRING, 1, string(b"x" * 10))), {"max_string_size": 10}),
        (message(field(T_LIST, 1, list_header(T_STRING, 3) + string(b"") * 3)), {"max_container_size": 3}),
        (message(field(T_MAP, 1, map_header(T_I16, T_STRUCT, 3) + b"\x00\x01\x00" * 3)),
         {"max_container_size": 3}),
        (nested_structs(5), {"max_depth": 5}),
        (nested_lists(4), {"max_depth": 4}),
        (message(name=b"abcd"), {"max_string_size": 4}),
        (message(name=b"abcd", strict=False), {"max_string_size": 4, "strict_read": False}),
    ]
    for data, options in cases:
        reader = impl.framing.BufferedReader(**options)
        assert reader.feed(data) == [data]
        assert feed_bytewise(impl.framing.BufferedReader(**options), data) == [data]
    with pytest.raises(DepthLimitError):
        impl.framing.BufferedReader(max_depth=4).feed(nested_structs(5))
    with pytest.raises(DepthLimitError):
        impl.framing.BufferedReader(max_depth=3).feed(nested_lists(4))


def test_buffered_max_frame_size_boundary(impl, samples):
    for msg in samples:
        assert impl.framing.BufferedReader(max_frame_size=len(msg)).feed(msg) == [msg]
        with pytest.raises(SizeLimitError):
            impl.framing.BufferedReader(max_frame_size=len(msg) - 1).feed(msg)
        # the limit applies to each message, not to a chunk holding several
        reader = impl.framing.BufferedReader(max_frame_size=len(msg))
        assert reader.feed(msg * 3) == [msg] * 3


def test_buffered_default_depth_limit(impl):
    ok = nested_structs(DEFAULT_MAX_DEPTH)
    assert impl.framing.BufferedReader().feed(ok) == [ok]
    with pytest.raises(DepthLimitError):
        impl.framing.BufferedReader().feed(nested_structs(DEFAULT_MAX_DEPTH + 1))
    # very deep input neither recurses nor crashes
    deep = header() + field(T_STRUCT, 1, b"") * 100_000
    with pytest.raises(DepthLimitError):
        impl.framing.BufferedReader().feed(deep)
    deep_ok = nested_structs(5000)
    assert impl.framing.BufferedReader(max_depth=5000).feed(deep_ok) == [deep_ok]


def test_buffered_empty_containers_accept_any_type_ids(impl):
    fields = []
    for t in (0, 1, 5, 16, 255, T_STRUCT):
        fields.append(field(T_LIST, 1, list_header(t, 0)))
        fields.append(field(T_SET, 2, list_header(t, 0)))
        fields.append(field(T_MAP, 3, map_header(t, 255 - t, 0)))
    data = message(*fields)
    assert impl.framing.BufferedReader(max_container_size=0).feed(data) == [data]


def test_buffered_huge_zero_width_list_consumes_input(impl):
    # 2**31 - 1 one-byte elements declared, none sent: the reader returns at
    # once, holding only what arrived, and walks the bytes as they come.
    data = header() + field(T_LIST, 1, list_header(T_BOOL, (1 << 31) - 1))
    reader = impl.framing.BufferedReader(max_container_size=1 << 31, max_frame_size=1 << 40)
    assert reader.feed(data) == []
    assert reader.buffered == len(data)
    assert reader.feed(b"\x01" * 100_000) == []
    assert reader.buffered == len(data) + 100_000
    # a struct list needs one byte per element too
    data = header() + field(T_LIST, 1, list_header(T_STRUCT, (1 << 31) - 1)) + b"\0" * 100_000
    reader = impl.framing.BufferedReader(max_container_size=1 << 31, max_frame_size=1 << 40)
    assert reader.feed(data) == []


def test_buffered_messages_before_an_error_are_returned(impl, samples):
    reader = impl.framing.BufferedReader()
    assert reader.feed(samples[1] + samples[1][:5]) == [samples[1]]
    with pytest.raises(InvalidDataError):
        reader.feed(samples[1][5:-1] + b"\x07")
    with pytest.raises(InvalidDataError):
        reader.feed(samples[1])


def test_buffered_bad_argument_does_not_break_the_reader(impl, samples):
    reader = impl.framing.BufferedReader()
    assert reader.feed(samples[0][:3]) == []
    with pytest.raises(TypeError):
        reader.feed("text")
    with pytest.raises(BufferError):
        reader.feed(memoryview(samples[0])[::2])
    assert reader.feed(samples[0][3:]) == [samples[0]]


def test_buffered_constructor(impl):
    m = impl.framing
    for name in ("max_frame_size", "max_string_size", "max_container_size", "max_depth"):
        with pytest.raises(ValueError):
            m.BufferedReader(**{name: -1})
        with pytest.raises(TypeError):
            m.BufferedReader(**{name: 2.0})
    with pytest.raises(TypeError):
        m.BufferedReader(100)
    reader = m.BufferedReader(max_frame_size=DEFAULT_MAX_FRAME_SIZE, max_string_size=DEFAULT_MAX_STRING_SIZE,
                              max_container_size=DEFAULT_MAX_CONTAINER_SIZE, max_depth=DEFAULT_MAX_DEPTH,
                              strict_read=0)
    old = message(strict=False)
    assert reader.feed(old) == [old]


# ------------------------------------------------- differential (hypothesis)

_PRIMITIVES = {
    T_BOOL: st.sampled_from([b"\x00", b"\x01", b"\x02"]),
    T_BYTE: st.binary(min_size=1, max_size=1),
    T_I16: st.binary(min_size=2, max_size=2),
    T_I32: st.binary(min_size=4, max_size=4),
    T_I64: st.binary(min_size=8, max_size=8),
    T_DOUBLE: st.binary(min_size=8, max_size=8),
    T_STRING: st.binary(max_size=24).map(string),
}

#: Thrift types as trees: an int for a primitive, (LIST|SET, elem),
#: (MAP, key, value) or (STRUCT, ((fid, type), ...)).
thrift_types = st.recursive(
    st.sampled_from(sorted(_PRIMITIVES)),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from([T_LIST, T_SET]), inner),
        st.tuples(st.just(T_MAP), inner, inner),
        st.lists(st.tuples(st.integers(-(1 << 15), (1 << 15) - 1), inner), max_size=4)
        .map(lambda fields: (T_STRUCT, tuple(fields))),
    ),
    max_leaves=6,
)


def _wire(t) -> int:
    return t if isinstance(t, int) else t[0]


def encoded(t) -> st.SearchStrategy:
    """Strategy of the binary encodings of values of type ``t``."""
    if isinstance(t, int):
        return _PRIMITIVES[t]
    if t[0] in (T_LIST, T_SET):
        elem = t[1]
        return st.one_of(
            st.lists(encoded(elem), max_size=3).map(
                lambda xs: list_header(_wire(elem), len(xs)) + b"".join(xs)),
            st.integers(0, 255).map(lambda et: list_header(et, 0)),
        )
    if t[0] == T_MAP:
        k, v = t[1], t[2]
        return st.one_of(
            st.lists(st.tuples(encoded(k), encoded(v)), max_size=3).map(
                lambda kvs: map_header(_wire(k), _wire(v), len(kvs)) + b"".join(a + b for a, b in kvs)),
            st.tuples(st.integers(0, 255), st.integers(0, 255)).map(lambda kv: map_header(kv[0], kv[1], 0)),
        )
    fields = t[1]
    return st.tuples(*[st.one_of(st.none(), encoded(ft)) for _, ft in fields]).map(
        lambda values: b"".join(field(_wire(ft), fid, v) for (fid, ft), v in zip(fields, values)
                                if v is not None) + b"\0")


struct_types = st.lists(st.tuples(st.integers(-(1 << 15), (1 << 15) - 1), thrift_types), max_size=4).map(
    lambda fields: (T_STRUCT, tuple(fields)))


@st.composite
def hand_messages(draw, strict=True):
    name = draw(st.binary(max_size=12))
    mtype = draw(st.integers(0, 255) if not strict else st.integers(0, 127))
    seqid = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    body = draw(struct_types.flatmap(encoded))
    return header(name, mtype, seqid, strict=strict) + body


@st.composite
def tp2_messages(draw, bench, strict=True):
    b = bench
    texts = st.text(max_size=10)
    i32 = st.integers(-(1 << 31), (1 << 31) - 1)
    items = st.builds(
        b.Item, id=st.integers(-(1 << 63), (1 << 63) - 1), name=st.one_of(st.none(), texts),
        price=st.floats(allow_nan=False), tags=st.lists(texts, max_size=3),
        counts=st.dictionaries(texts, i32, max_size=3), blob=st.one_of(st.none(), st.binary(max_size=30)),
        active=st.booleans())
    orders = st.builds(b.Order, order_id=st.integers(0, 100), customer=texts,
                       items=st.lists(items, max_size=3), meta=st.dictionaries(texts, texts, max_size=3),
                       status=i32)
    obj = draw(st.one_of(
        st.builds(b.Bench.roundtrip_args, o=orders),
        st.builds(b.Bench.roundtrip_result, success=st.one_of(st.none(), orders)),
        st.builds(b.Bench.add_args, a=st.integers(-5, 5), b=st.integers(-(1 << 63), (1 << 63) - 1)),
        st.builds(b.Bench.echo_bytes_args, b=st.binary(max_size=300)),
        st.builds(b.Bench.fail_result, err=st.builds(b.BenchError, message=texts, code=i32)),
        st.just(b.Bench.ping_args()),
    ))
    name = draw(st.sampled_from(["roundtrip", "add", "echo_bytes", "fail", "ping", ""]))
    return tp2_message(name, draw(st.integers(1, 4)), draw(st.integers(0, 1000)), obj, strict=strict)


@st.composite
def cut_points(draw, data: bytes):
    return draw(st.lists(st.integers(0, len(data)), max_size=10))


@HYPOTHESIS_HEAVY
@given(data=st.data(), strict=st.booleans())
def test_differential_valid_messages(impl, bench_thrift, data, strict):
    one = st.one_of(hand_messages(strict=strict), tp2_messages(bench_thrift, strict=strict))
    msgs = data.draw(st.lists(one, min_size=1, max_size=4))
    stream = b"".join(msgs)
    chunks = split(stream, data.draw(cut_points(stream)))
    got = trace(impl.framing.BufferedReader(strict_read=strict), chunks)
    ref = trace(REF.BufferedReader(strict_read=strict), chunks)
    assert got == ref
    assert [m for kind, *rest in got if kind == "ok" for m in rest[0]] == msgs
    assert got[-1] == ("buffered", 0)
    # framed, the same messages
    fstream = b"".join(framed(m) for m in msgs)
    fchunks = split(fstream, data.draw(cut_points(fstream)))
    got = trace(impl.framing.FramedReader(), fchunks)
    assert got == trace(REF.FramedReader(), fchunks)
    assert [m for kind, *rest in got if kind == "ok" for m in rest[0]] == msgs


limits = st.fixed_dictionaries({
    "max_frame_size": st.integers(0, 400),
    "max_string_size": st.integers(0, 40),
    "max_container_size": st.integers(0, 6),
    "max_depth": st.integers(0, 6),
    "strict_read": st.booleans(),
})


#: Byte values that make lengths negative or huge and type ids invalid.
INTERESTING_BYTES = [0x00, 0x01, 0x10, 0x7F, 0x80, 0xFF]


@st.composite
def mangled(draw, bench):
    """Valid messages with bytes changed, cut short, or plain garbage."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=200))
    base = draw(st.one_of(hand_messages(strict=draw(st.booleans())), tp2_messages(bench)))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == 1:
            data[i] = draw(st.one_of(st.integers(0, 255), st.sampled_from(INTERESTING_BYTES)))
        else:
            del data[i:i + draw(st.integers(1, 8))]
    return bytes(data) + draw(st.binary(max_size=20))


@HYPOTHESIS_HEAVY
@given(data=st.data())
def test_differential_garbage_buffered(impl, bench_thrift, data):
    options = data.draw(limits)
    stream = b"".join(data.draw(st.lists(mangled(bench_thrift), min_size=1, max_size=3)))
    chunks = split(stream, data.draw(cut_points(stream)))
    got = trace(impl.framing.BufferedReader(**options), chunks)
    assert got == trace(REF.BufferedReader(**options), chunks)
    event(got[-1][1].__name__ if got[-1][0] == "error" else "no error")


@HYPOTHESIS
@given(data=st.data(), garbage=st.binary(max_size=300), limit=st.integers(0, 300))
def test_differential_garbage_framed(impl, data, garbage, limit):
    chunks = split(garbage, data.draw(cut_points(garbage)))
    got = trace(impl.framing.FramedReader(max_frame_size=limit), chunks)
    assert got == trace(REF.FramedReader(max_frame_size=limit), chunks)
    event(got[-1][1].__name__ if got[-1][0] == "error" else "no error")


@HYPOTHESIS
@given(data=st.data(), strict=st.booleans())
def test_differential_limits_on_valid_messages(impl, bench_thrift, data, strict):
    # Valid input under tight limits: both implementations stop at the same
    # message with the same error, or both accept everything.
    options = data.draw(limits)
    options["strict_read"] = strict
    msgs = data.draw(st.lists(hand_messages(strict=strict), min_size=1, max_size=3))
    stream = b"".join(msgs)
    chunks = split(stream, data.draw(cut_points(stream)))
    got = trace(impl.framing.BufferedReader(**options), chunks)
    assert got == trace(REF.BufferedReader(**options), chunks)
    event(got[-1][1].__name__ if got[-1][0] == "error" else "accepted")
    if got[-1][0] != "error":
        assert [m for kind, *rest in got if kind == "ok" for m in rest[0]] == msgs


@HYPOTHESIS
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("write"), st.binary(max_size=3000)),
    st.tuples(st.just("put_i16"), st.integers(-(1 << 15), (1 << 15) - 1)),
    st.tuples(st.just("put_i32"), st.integers(-(1 << 31), (1 << 31) - 1)),
    st.tuples(st.just("put_i64"), st.integers(-(1 << 63), (1 << 63) - 1)),
    st.tuples(st.just("put_double"), st.floats()),
    st.tuples(st.just("put_u8"), st.integers(0, 255)),
    st.tuples(st.just("begin_frame")), st.tuples(st.just("end_frame")),
    st.tuples(st.just("take")), st.tuples(st.just("getvalue")), st.tuples(st.just("clear")),
), max_size=40), initial_size=st.integers(0, 64))
def test_differential_writebuffer(impl, ops, initial_size):
    def run(buf):
        log = []
        for name, *args in ops:
            try:
                log.append(getattr(buf, name)(*args))
            except RuntimeError as exc:
                log.append(("RuntimeError", str(exc)))
            log.append(len(buf))
        return log

    assert run(impl.framing.WriteBuffer(initial_size)) == run(REF.WriteBuffer(initial_size))
