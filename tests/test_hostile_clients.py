"""Hostile clients against a running server: raw bytes, slow and silent peers.

Every test runs on both event loops and both codec implementations (the
server is built with ``rpc_util.proto``: codec and readers of the ``impl``
under test), most of them over both transports.  For every case:

* a normal call from a fresh client works right after;
* the server's RSS (it runs in this process) grows by less than 50 MiB;
* the server answers a ``TApplicationException`` where it can (the message
  header, hence the seqid, was read), and closes a hopeless connection
  promptly: within 2 s for bad input, within the timeout + 2 s for slow or
  silent peers;
* nothing reaches the event loop's exception handler (no "Fatal error:
  protocol.data_received() call failed").

What the server can answer depends on the transport.  Framed: the frame
length tells where a message ends, so a complete frame whose body does not
decode gets ``PROTOCOL_ERROR`` with its seqid.  Buffered: the reader finds
the end of a message by scanning it, with the decoder's limits; a body it
rejects leaves no message to answer to, the connection just closes.  A
message the scanner accepts but the args struct rejects (a wrong element
type) gets ``PROTOCOL_ERROR`` on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import random
import resource
import socket
import struct
from typing import Any, Callable, List, Optional

import pytest
from thriftpy2.thrift import TApplicationException

from aiothrift import ThriftAppError

import rpc_util
from rpc_util import RPC, AsyncHandler, SyncHandler, captured_logs, connect, rpc_test, serving, wait_until

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
VERSION_1 = 0x80010000
T_STOP, T_VOID, T_BOOL, T_BYTE, T_DOUBLE = 0, 1, 2, 3, 4
T_I16, T_I32, T_I64, T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 6, 8, 10, 11, 12, 13, 14, 15

#: seqid of the hostile requests
SEQ = 77
MiB = 1 << 20
#: "the RSS does not jump"
RSS_SLACK = 50 * MiB
#: "an over-limit frame / bad input is closed promptly"
PROMPT = 2.0
#: read timeout of the servers in the payload tests
READ_TIMEOUT = 0.3

BOTH = pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
ASYNCIO_ONLY = pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop], ids=["asyncio"])


# ------------------------------------------------------------------ helpers

def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def i32(v: int) -> bytes:
    return struct.pack("!i", v)


def u32(v: int) -> bytes:
    return struct.pack("!I", v)


def header(name: str, mtype: int = CALL, seqid: int = SEQ) -> bytes:
    raw = name.encode()
    return u32(VERSION_1 | mtype) + i32(len(raw)) + raw + i32(seqid)


def fld(ftype: int, fid: int) -> bytes:
    return struct.pack("!bh", ftype, fid)


def string(s: bytes) -> bytes:
    return i32(len(s)) + s


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def valid(codec: Any, name: str = "echo", args: Any = None, mtype: int = CALL, seqid: int = SEQ) -> bytes:
    if args is None:
        args = RPC.RpcTest.echo_args(s="hello hostile world")
    return codec.encode_message(name, mtype, seqid, args)


def nested_structs(depth: int) -> bytes:
    """Field 99 holding ``depth`` structs, each the field 1 of its parent."""
    return fld(T_STRUCT, 99) + fld(T_STRUCT, 1) * (depth - 1) + b"\x00" * depth


def nested_lists(depth: int) -> bytes:
    """Field 99: list<list<...<i32>>> ``depth`` deep, one element per level."""
    return fld(T_LIST, 99) + (bytes([T_LIST]) + i32(1)) * (depth - 1) + bytes([T_I32]) + i32(1) + i32(7)


def nested_maps(depth: int) -> bytes:
    """Field 99: map<i32, map<i32, ...>> ``depth`` deep, one entry per level."""
    return fld(T_MAP, 99) + (bytes([T_I32, T_MAP]) + i32(1) + i32(0)) * (depth - 1) + bytes([T_I32, T_I32]) + i32(0)


class RawPeer(asyncio.Protocol):
    """A raw client: writes bytes, keeps what comes back, notes when the server closes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: Optional[asyncio.Transport] = None
        self.received = bytearray()
        self.data_event = asyncio.Event()
        self.lost = loop.create_future()

    @classmethod
    async def open(cls, port: int) -> "RawPeer":
        _, peer = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        return peer

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.data_event.set()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    @property
    def closed(self) -> bool:
        return self.lost.done()

    async def closed_within(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), seconds)
        except asyncio.TimeoutError:
            raise AssertionError("the server did not close the connection within %g s" % seconds) from None

    def messages(self, proto: type, framed: bool) -> List[Any]:
        """(name, mtype, seqid, offset, msg) of every message received so far."""
        codec = proto(None).codec
        msgs = proto(None).make_reader(framed=framed).feed(bytes(self.received))
        return [codec.decode_message_begin(m) + (m,) for m in msgs]

    async def wait_messages(self, proto: type, framed: bool, n: int, timeout: float = 5.0) -> List[Any]:
        async def poll() -> List[Any]:
            while True:
                msgs = self.messages(proto, framed)
                if len(msgs) >= n:
                    return msgs
                if self.closed:
                    raise AssertionError("closed after %d of %d replies" % (len(msgs), n))
                self.data_event.clear()
                await self.data_event.wait()
        return await asyncio.wait_for(poll(), timeout)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0)."""
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def app_error(proto: type, message: Any) -> TApplicationException:
    name, mtype, seqid, offset, msg = message
    assert mtype == EXCEPTION, message[:3]
    return proto(None).codec.decode_struct(TApplicationException, msg, offset)


async def assert_healthy(server: Any, proto: type, framed: bool) -> None:
    """A fresh client gets normal answers."""
    conn = await connect(server, proto, framed=framed, timeout=5)
    try:
        assert await conn.add(40, 2) == 42
        assert await conn.echo("still serving") == "still serving"
    finally:
        conn.close()


@contextlib.contextmanager
def loop_errors() -> Any:
    """What reaches the loop's exception handler (it must stay empty)."""
    loop = asyncio.get_running_loop()
    errors: List[dict] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(old)


@contextlib.asynccontextmanager
async def hostile_server(proto: type, framed: bool, handler: Any = None, **kwargs: Any) -> Any:
    """A server, its RSS baseline taken after a first normal call; checks run at the end.

    On exit: loop errors none, RSS grew < 50 MiB, a fresh client is served.
    """
    with captured_logs() as records, loop_errors() as errors:
        async with serving(proto, handler, framed=framed, **kwargs) as server:
            await assert_healthy(server, proto, framed)
            base = rss()
            yield server, records
            grown = rss() - base
            assert grown < RSS_SLACK, "RSS grew by %.1f MiB" % (grown / MiB)
            await assert_healthy(server, proto, framed)
        assert not errors, errors


# ------------------------------------------------------------------ the payload table

@dataclasses.dataclass
class Expect:
    """What the server does with a payload.

    kind: "error" (a TApplicationException of ``app_type`` for seqid SEQ,
    then the connection closes unless ``stays_open``), "close" (closes
    without a word, within 2 s), "wait" (the message is incomplete: no
    reply; the read timeout closes it).
    """

    kind: str
    app_type: Optional[int] = None
    stays_open: bool = False


PE = Expect("error", ThriftAppError.PROTOCOL_ERROR)
INTERNAL = Expect("error", ThriftAppError.INTERNAL_ERROR, stays_open=True)
BADTYPE = Expect("error", ThriftAppError.INVALID_MESSAGE_TYPE)
CLOSE = Expect("close")
WAIT = Expect("wait")


@dataclasses.dataclass
class Case:
    id: str
    #: (codec, framed) -> bytes written as they are
    build: Callable[[Any, bool], bytes]
    framed: Expect
    buffered: Expect


def msg_case(id: str, body: Callable[[Any], bytes], framed: Expect, buffered: Expect) -> Case:
    """A message, framed for the framed server (the frame itself is sound)."""
    def build(codec: Any, is_framed: bool) -> bytes:
        data = body(codec)
        return frame(data) if is_framed else data
    return Case(id, build, framed, buffered)


def args_case(id: str, method: str, fields: bytes, framed: Expect, buffered: Expect,
              mtype: int = CALL) -> Case:
    """A call of ``method`` whose args struct is ``fields`` + STOP."""
    return msg_case(id, lambda codec: header(method, mtype) + fields + b"\x00", framed, buffered)


def raw_case(id: str, data: bytes, framed: Expect, buffered: Expect) -> Case:
    return Case(id, lambda codec, is_framed: data, framed, buffered)


BIG = 2**31 - 1
CASES: List[Case] = [
    # truncated messages
    msg_case("truncated-header", lambda c: valid(c)[:6], CLOSE, WAIT),
    msg_case("truncated-body", lambda c: valid(c)[:-3], PE, WAIT),
    Case("truncated-frame", lambda c, f: frame(valid(c))[:-5] if f else valid(c)[:-5], WAIT, WAIT),
    # declared lengths with no data behind them
    args_case("string-negative", "echo", fld(T_STRING, 1) + i32(-1), PE, CLOSE),
    args_case("string-2g", "echo", fld(T_STRING, 1) + i32(BIG), PE, CLOSE),
    args_case("string-under-limit-no-data", "echo", fld(T_STRING, 1) + i32(16_000_000), PE, WAIT),
    args_case("list-negative", "sum", fld(T_LIST, 1) + bytes([T_I32]) + i32(-1), PE, CLOSE),
    args_case("list-2g", "sum", fld(T_LIST, 1) + bytes([T_I32]) + i32(BIG), PE, CLOSE),
    args_case("list-under-limit-no-data", "sum", fld(T_LIST, 1) + bytes([T_I32]) + i32(1_000_000), PE, WAIT),
    args_case("map-negative", "echo", fld(T_MAP, 99) + bytes([T_STRING, T_I32]) + i32(-1), PE, CLOSE),
    args_case("map-2g", "echo", fld(T_MAP, 99) + bytes([T_STRING, T_I32]) + i32(BIG), PE, CLOSE),
    args_case("set-2g", "echo", fld(T_SET, 99) + bytes([T_I64]) + i32(BIG), PE, CLOSE),
    args_case("binary-2g", "echo_bytes", fld(T_STRING, 1) + i32(BIG), PE, CLOSE),
    msg_case("name-negative", lambda c: u32(VERSION_1 | CALL) + i32(-1) + b"\x00" * 8, CLOSE, CLOSE),
    msg_case("name-2g", lambda c: u32(VERSION_1 | CALL) + i32(BIG) + b"echo", CLOSE, CLOSE),
    # frame lengths
    raw_case("frame-2g", u32(2**31 - 1) + b"\x80\x01", CLOSE, CLOSE),
    raw_case("frame-0x80000000", u32(2**31), CLOSE, CLOSE),
    raw_case("frame-negative", i32(-1) + b"\x00" * 16, CLOSE, CLOSE),
    raw_case("frame-over-limit", i32(16_384_001), CLOSE, CLOSE),
    raw_case("frame-under-limit-no-data", i32(16_000_000), WAIT, CLOSE),
    raw_case("frame-empty", i32(0) + i32(0), CLOSE, CLOSE),
    # nesting 100,000 deep (in an unknown field: the skip path)
    args_case("nested-structs-100k", "echo", nested_structs(100_000), PE, CLOSE),
    args_case("nested-lists-100k", "echo", nested_lists(100_000), PE, CLOSE),
    args_case("nested-maps-100k", "echo", nested_maps(100_000), PE, CLOSE),
    # wrong field types: skipped (schema evolution), the handler gets None
    args_case("wrong-field-type-i64-as-string", "add",
              fld(T_STRING, 1) + string(b"x") + fld(T_I64, 2) + struct.pack("!q", 1),
              INTERNAL, INTERNAL),
    args_case("wrong-field-type-struct-as-i32", "move", fld(T_I32, 1) + i32(5), INTERNAL, INTERNAL),
    # ... but a container of the wrong element type does not decode
    args_case("wrong-element-type", "sum", fld(T_LIST, 1) + bytes([T_DOUBLE]) + i32(1) + b"\x00" * 8, PE, PE),
    args_case("wrong-map-types-unknown-field-ok", "echo",
              fld(T_MAP, 99) + bytes([T_STRING, T_DOUBLE]) + i32(1) + string(b"k") + b"\x00" * 8
              + fld(T_STRING, 1) + string(b"kept"), Expect("reply", stays_open=True), Expect("reply", stays_open=True)),
    # field type ids that are not wire types
    *[args_case("field-type-%d" % t, "echo", fld(t, 1) + b"\x00" * 8, PE, CLOSE)
      for t in (1, 5, 7, 9, 16, 17, 127, -1)],
    # unknown fields of types whose elements would take no bytes: no loop over the count
    *[args_case("skip-list-of-type-%d-%s" % (t, name), "echo", fld(T_LIST, 99) + bytes([t]) + i32(n), PE, CLOSE)
      for t in (0, 1, 5, 7, 9, 16, 255) for name, n in (("2g", BIG), ("at-limit", 1_000_000))],
    args_case("skip-map-of-void-to-stop", "echo", fld(T_MAP, 99) + bytes([T_VOID, T_STOP]) + i32(1_000_000), PE, CLOSE),
    args_case("skip-set-of-void", "echo", fld(T_SET, 99) + bytes([T_VOID]) + i32(1_000_000), PE, CLOSE),
    args_case("skip-list-of-empty-structs-no-data", "echo", fld(T_LIST, 99) + bytes([T_STRUCT]) + i32(1_000_000),
              PE, WAIT),
    args_case("skip-list-of-bools-2g", "echo", fld(T_LIST, 99) + bytes([T_BOOL]) + i32(BIG), PE, CLOSE),
    # message types other than CALL / ONEWAY: never executed
    *[msg_case("message-type-%d" % t, lambda c, t=t: valid(c, mtype=t), BADTYPE, BADTYPE) for t in (0, 2, 3, 5, 127)],
    # bad versions
    *[msg_case("version-%08x" % v, lambda c, v=v: u32(v) + valid(c)[4:], CLOSE, CLOSE)
      for v in (0x80020001, 0x80000001, 0xFFFF0001, 0x7FFF0001)],
    msg_case("old-header-under-strict-read",
             lambda c: string(b"echo") + bytes([CALL]) + i32(SEQ) + fld(T_STRING, 1) + string(b"x") + b"\x00",
             CLOSE, CLOSE),
    # oneway with bad args: nothing to answer, the connection closes
    args_case("oneway-bad-args", "notify", fld(T_STRING, 1) + i32(-5), CLOSE, CLOSE, mtype=ONEWAY),
    # garbage
    raw_case("http-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", CLOSE, CLOSE),
    raw_case("tls-client-hello", bytes.fromhex("16030100c4010000c00303") + bytes(range(32)), CLOSE, CLOSE),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@BOTH
@rpc_test
async def test_hostile_payload(proto, framed, case):
    expect = case.framed if framed else case.buffered
    codec = proto(None).codec
    async with hostile_server(proto, framed, read_timeout=READ_TIMEOUT) as (server, records):
        peer = await RawPeer.open(server.port)
        peer.write(case.build(codec, framed))
        if expect.kind == "close":
            await peer.closed_within(PROMPT)
            assert peer.messages(proto, framed) == []
            assert any("bad input" in r.getMessage() for r in records)
        elif expect.kind == "wait":
            # Incomplete: nothing is allocated from the declared size, the
            # read timeout closes the connection.
            await peer.closed_within(READ_TIMEOUT + PROMPT)
            assert peer.messages(proto, framed) == []
            assert any("to arrive" in r.getMessage() for r in records)
        else:
            (reply,) = await peer.wait_messages(proto, framed, 1)
            assert reply[2] == SEQ
            if expect.kind == "error":
                err = app_error(proto, reply)
                assert err.type == expect.app_type, err
            else:
                assert reply[1] == REPLY
            if expect.stays_open:
                add = valid(codec, "add", RPC.RpcTest.add_args(a=1, b=2), seqid=SEQ + 1)
                peer.write(frame(add) if framed else add)
                name, mtype, seqid, offset, msg = (await peer.wait_messages(proto, framed, 2))[1]
                assert (name, mtype, seqid) == ("add", REPLY, SEQ + 1)
                assert codec.decode_struct(RPC.RpcTest.add_result, msg, offset).success == 3
                assert not peer.closed
            else:
                await peer.closed_within(PROMPT)
        peer.abort()


WAITING = [(c, f) for c in CASES for f in (False, True) if (c.framed if f else c.buffered).kind == "wait"]


@pytest.mark.parametrize("case,framed", WAITING,
                         ids=["%s-%s" % (c.id, "framed" if f else "buffered") for c, f in WAITING])
@rpc_test
async def test_incomplete_request_then_eof_closes_at_once(proto, framed, case):
    """No read timeout at all: the client's EOF ends an incomplete request."""
    codec = proto(None).codec
    async with hostile_server(proto, framed) as (server, _):
        peer = await RawPeer.open(server.port)
        peer.write(case.build(codec, framed))
        await asyncio.sleep(0.05)
        peer.transport.write_eof()
        await peer.closed_within(PROMPT)
        assert peer.messages(proto, framed) == []


@BOTH
@rpc_test
async def test_stays_open_cases_keep_serving_on_the_same_connection(proto, framed):
    """After a skipped wrong-typed field, the same connection answers normal calls."""
    codec = proto(None).codec
    async with hostile_server(proto, framed) as (server, _):
        peer = await RawPeer.open(server.port)
        wrap = frame if framed else bytes
        for i, case in enumerate(c for c in CASES if (c.framed if framed else c.buffered).stays_open):
            peer.write(case.build(codec, framed))
            peer.write(wrap(valid(codec, "add", RPC.RpcTest.add_args(a=i, b=1), seqid=1000 + i)))
        msgs = await peer.wait_messages(proto, framed, 2 * i + 2)
        adds = [m for m in msgs if m[2] >= 1000]
        assert [(m[0], m[1], m[2]) for m in adds] == [("add", REPLY, 1000 + j) for j in range(i + 1)]
        for j, m in enumerate(adds):
            assert codec.decode_struct(RPC.RpcTest.add_result, m[4], m[3]).success == j + 1
        assert not peer.closed
        peer.abort()


@BOTH
@rpc_test
async def test_random_garbage(proto, framed):
    """Seeded random byte strings (raw, after a valid header, mutated messages)."""
    codec = proto(None).codec
    rng = random.Random(0x5EED + framed)
    good = valid(codec)

    def garbage() -> bytes:
        kind = rng.randrange(4)
        size = rng.choice([1, 3, 4, 5, 17, 100, 1000, 70_000])
        junk = rng.randbytes(size)
        if kind == 0:
            data = junk
        elif kind == 1:
            data = header("echo") + junk
        elif kind == 2:
            data = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = good[:rng.randrange(len(good))] + junk
        if framed and rng.random() < 0.5:
            data = frame(data)
        return data

    async def one_round() -> None:
        peer = await RawPeer.open(server.port)
        peer.write(garbage())
        peer.transport.write_eof()
        # Whatever the bytes, the connection ends soon after our EOF (or at
        # once on bad input): never a hang, never a crash.
        await peer.closed_within(READ_TIMEOUT + PROMPT)
        for name, mtype, seqid, offset, msg in peer.messages(proto, framed):
            assert mtype in (REPLY, EXCEPTION)

    async with hostile_server(proto, framed, read_timeout=READ_TIMEOUT) as (server, _):
        for _ in range(5):
            await asyncio.gather(*[one_round() for _ in range(40)])
            await assert_healthy(server, proto, framed)


# ------------------------------------------------------------------ slow and silent peers

async def trickle(peer: RawPeer, data: bytes, interval: float) -> None:
    """Write ``data`` one byte every ``interval`` seconds until it is sent or the peer is closed."""
    for i in range(len(data)):
        if peer.closed:
            return
        peer.write(data[i:i + 1])
        await asyncio.sleep(interval)


@BOTH
@rpc_test
async def test_slowloris_is_closed_by_the_read_timeout(proto, framed):
    """10 bytes/s: the idle timeout (reset by every byte) never fires, the read timeout does."""
    codec = proto(None).codec
    data = frame(valid(codec)) if framed else valid(codec)
    async with hostile_server(proto, framed, timeout=0.3, read_timeout=0.6) as (server, records):
        peer = await RawPeer.open(server.port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        task = asyncio.ensure_future(trickle(peer, data, 0.1))  # 4+ s to send it all
        await peer.closed_within(0.6 + PROMPT)
        assert loop.time() - start < 0.6 + PROMPT
        assert not task.done() or len(data) * 0.1 > 0.6 + PROMPT  # closed before the request was complete
        await task
        assert peer.messages(proto, framed) == []
        assert any("to arrive" in r.getMessage() for r in records)


@ASYNCIO_ONLY
@BOTH
@rpc_test
async def test_slowloris_one_byte_per_second_default_read_timeout(proto, framed):
    """1 byte/s against timeout=1.5 alone: the read timeout defaults to it."""
    codec = proto(None).codec
    data = frame(valid(codec)) if framed else valid(codec)
    async with hostile_server(proto, framed, timeout=1.5) as (server, _):
        peer = await RawPeer.open(server.port)
        task = asyncio.ensure_future(trickle(peer, data, 1.0))
        await peer.closed_within(1.5 + PROMPT)
        await task
        assert peer.messages(proto, framed) == []


@BOTH
@rpc_test
async def test_read_timeout_spares_fast_pipelined_streams(proto, framed):
    """Writes that always end mid-message, for 3x the read timeout: each request arrives fast."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    async with hostile_server(proto, framed, timeout=0.2, read_timeout=0.2) as (server, _):
        peer = await RawPeer.open(server.port)
        stream = b"".join(wrap(valid(codec, "add", RPC.RpcTest.add_args(a=i, b=1), seqid=i)) for i in range(60))
        step = len(stream) // 45 + 7  # never a message boundary for long
        for pos in range(0, len(stream), step):
            peer.write(stream[pos:pos + step])
            await asyncio.sleep(0.015)
        msgs = await peer.wait_messages(proto, framed, 60)
        assert sorted(m[2] for m in msgs) == list(range(60))
        assert not peer.closed
        peer.abort()


@BOTH
@rpc_test
async def test_read_timeout_clock_stops_while_the_server_does_not_read(proto, framed):
    """max_concurrency reached: the server stops reading; a request half in meanwhile is not timed out."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    async with hostile_server(proto, framed, AsyncHandler(), read_timeout=0.2, max_concurrency=1) as (server, _):
        peer = await RawPeer.open(server.port)
        second = wrap(valid(codec, "add", RPC.RpcTest.add_args(a=1, b=1), seqid=2))
        peer.write(wrap(valid(codec, "slow", RPC.RpcTest.slow_args(id=1, seconds=0.6), seqid=1)) + second[:5])
        await asyncio.sleep(0.1)
        peer.write(second[5:])
        msgs = await peer.wait_messages(proto, framed, 2)
        assert sorted(m[2] for m in msgs) == [1, 2]
        assert not peer.closed
        peer.abort()


@BOTH
@rpc_test
async def test_silent_connection_closed_by_the_idle_timeout(proto, framed):
    async with hostile_server(proto, framed, timeout=0.3) as (server, _):
        peers = [await RawPeer.open(server.port) for _ in range(5)]
        for peer in peers:
            await peer.closed_within(0.3 + PROMPT)
        await wait_until(lambda: server.connections == 0)


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@BOTH
@rpc_test(timeout=60)
async def test_thousand_idle_connections(proto, framed):
    n = 1000
    _raise_nofile(2 * n + 512)  # both ends live in this process
    idle = 2.0
    async with hostile_server(proto, framed, timeout=idle, backlog=1024) as (server, _):
        base = rss()
        loop = asyncio.get_running_loop()
        start = loop.time()
        peers: List[RawPeer] = []
        # No collection pauses while they open (a full suite keeps many
        # objects alive): they must all be open before the idle timeout.
        gc.disable()
        try:
            for _ in range(n // 100):
                peers += await asyncio.gather(*[RawPeer.open(server.port) for _ in range(100)])
            await wait_until(lambda: server.connections >= n, timeout=idle)
        finally:
            gc.enable()
        opened = loop.time() - start
        # All open at once, the server still answers, its memory is fine.
        assert all(not p.closed for p in peers), "opening took %.2f s" % opened
        await assert_healthy(server, proto, framed)
        grown = rss() - base
        assert grown < RSS_SLACK, "RSS grew by %.1f MiB" % (grown / MiB)
        # The idle timeout closes them all.
        for peer in peers:
            await peer.closed_within(idle + 5.0)
        await wait_until(lambda: server.connections == 0, timeout=5)


@BOTH
@rpc_test
async def test_client_disconnects_mid_response(proto, framed):
    """Large replies (4 MB); the client reads a little then resets or closes."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    handler = SyncHandler()
    async with hostile_server(proto, framed, handler) as (server, _):
        for how in ("reset", "close", "reset-before-reading"):
            peers = [await RawPeer.open(server.port) for _ in range(3)]
            for i, peer in enumerate(peers):
                peer.write(wrap(valid(codec, "numbers", RPC.RpcTest.numbers_args(n=1_000_000), seqid=i)))
            for peer in peers:
                if how != "reset-before-reading":
                    await asyncio.wait_for(peer.data_event.wait(), 5)  # the reply has begun
                if how == "close":
                    peer.transport.close()
                else:
                    peer.reset()
            await wait_until(lambda: server.connections == 0, timeout=PROMPT + 3)
            await assert_healthy(server, proto, framed)


@BOTH
@rpc_test
async def test_client_never_reading_its_replies(proto, framed):
    """300 tiny requests for 2 MB replies each, never read: memory stays bounded
    (the server stops making replies when the socket buffer is full), and the
    idle timeout ends the connection even though replies are pending."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    request = wrap(valid(codec, "numbers", RPC.RpcTest.numbers_args(n=500_000), seqid=1))
    async with hostile_server(proto, framed, SyncHandler(), timeout=0.5) as (server, _):
        base = rss()
        peer = await RawPeer.open(server.port)
        peer.transport.pause_reading()
        peer.write(request * 300)  # ~10 kB asking for 600 MB
        await asyncio.sleep(0.5)
        assert rss() - base < RSS_SLACK, "RSS grew by %.1f MiB" % ((rss() - base) / MiB)
        # The server drops it (its pending replies too) ...
        await wait_until(lambda: server.connections == 0, timeout=0.5 + PROMPT)
        # ... which the client sees once it reads again.
        peer.transport.resume_reading()
        await peer.closed_within(PROMPT)


@pytest.mark.parametrize("then", ["bad-input", "eof"])
@BOTH
@rpc_test
async def test_closing_connection_whose_replies_are_never_read(proto, framed, then):
    """After bad input or the client's EOF the server closes gracefully, which
    waits for the replies to be sent: a client that never reads them is
    aborted by the idle timeout instead of holding the connection for ever."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    async with hostile_server(proto, framed, SyncHandler(), timeout=0.3) as (server, _):
        peer = await RawPeer.open(server.port)
        peer.transport.pause_reading()
        peer.write(wrap(valid(codec, "numbers", RPC.RpcTest.numbers_args(n=1_000_000), seqid=1)) * 3)
        await asyncio.sleep(0.2)  # the replies are made (and stuck)
        if then == "eof":
            peer.transport.write_eof()
        else:
            peer.write(b"\xff" * 8)
        await wait_until(lambda: server.connections == 0, timeout=2 * 0.3 + PROMPT)
        peer.abort()


@BOTH
@rpc_test
async def test_slow_reader_making_progress_is_not_idle(proto, framed):
    """A client reading its big replies slowly, sending nothing more, is served to the end."""
    codec = proto(None).codec
    wrap = frame if framed else bytes
    async with hostile_server(proto, framed, SyncHandler(), timeout=0.25) as (server, _):
        peer = await RawPeer.open(server.port)
        peer.transport.pause_reading()
        n_req = 6
        peer.write(b"".join(wrap(valid(codec, "numbers", RPC.RpcTest.numbers_args(n=300_000), seqid=i))
                            for i in range(n_req)))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.75  # three idle timeouts of slow reading
        while loop.time() < end and not peer.closed:
            peer.transport.resume_reading()
            await asyncio.sleep(0.005)
            peer.transport.pause_reading()
            await asyncio.sleep(0.1)
        peer.transport.resume_reading()
        msgs = await peer.wait_messages(proto, framed, n_req, timeout=10)
        assert sorted(m[2] for m in msgs) == list(range(n_req))
        peer.abort()
