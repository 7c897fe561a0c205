"""Leaks: 200,000 calls through one connection and through a pool, failing ones
included; the codecs' error paths in tight loops.

Measured after a warm-up, at a middle and an end checkpoint (after
``gc.collect()``), in this process (client and server both live here):

* ``len(gc.get_objects())`` (container objects),
* ``sys.getallocatedblocks()`` (every live pymalloc block: bytes and str
  too, which gc does not track),
* RSS.

Tolerances between the middle and the end checkpoint (100,000 calls,
10,000+ of them failing): objects +1,000, blocks +10,000, RSS +8 MiB.  So
one object (or block) kept per failing call fails loudly, and so does one
block per ten calls.

The codec loops run 100,000 decode/encode attempts of invalid input (every
error class of the decoder, raised at every depth; objects every encoder
check rejects), and the readers' error paths too.  This is the release
build of CPython: ``sys.gettotalrefcount`` does not exist, so reference
leaks are caught by what they keep alive (objects, blocks); on a debug
build the total reference count is checked as well.

Every test runs for both codec implementations.  The connection test runs
on the asyncio loop, the pool test on uvloop (the library code is the same
on both; this keeps the suite short).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import struct
import sys
from typing import Any, Callable, Dict, List

import pytest
import thriftpy2
import uvloop

import aiothrift
from aiothrift import ProtocolError

import rpc_util
from rpc_util import RPC, SyncHandler, rpc_test, serving
from conftest import IDL_DIR

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

rich = thriftpy2.load(str(IDL_DIR / "codec_rich.thrift"), module_name="codec_rich_thrift")

MiB = 1 << 20
TOTAL_CALLS = 200_000
WARMUP_CALLS = 20_000
BATCH = 500
TOLERANCE = {"objects": 1_000, "blocks": 10_000, "rss": 8 * MiB, "refs": 50_000}


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def quiet_aiothrift_logger() -> Any:
    """The server logs every undeclared exception: pytest's log capture would keep
    them all (a "leak" of the test harness).  Records are still made, then dropped."""
    log = logging.getLogger("aiothrift")
    handler = logging.NullHandler()
    old = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.propagate = old
        log.removeHandler(handler)


def snapshot() -> Dict[str, int]:
    gc.collect()
    gc.collect()
    snap = {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks(), "rss": rss()}
    if hasattr(sys, "gettotalrefcount"):  # debug builds only
        snap["refs"] = sys.gettotalrefcount()
    return snap


def assert_flat(mid: Dict[str, int], end: Dict[str, int], what: str) -> None:
    growth = {k: end[k] - mid[k] for k in mid}
    over = {k: v for k, v in growth.items() if v > TOLERANCE[k]}
    assert not over, "%s grows between checkpoints: %r (middle %r, end %r)" % (what, over, mid, end)


class LeakHandler(SyncHandler):
    async def slow(self, id, seconds):
        await asyncio.sleep(seconds)
        return id


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.outcomes: Dict[str, int] = {}

    def note(self, results: List[Any]) -> None:
        self.calls += len(results)
        for r in results:
            key = type(r).__name__
            self.outcomes[key] = self.outcomes.get(key, 0) + 1


async def run_calls(batch: Callable[[], Any], counter: Counter) -> Dict[str, Dict[str, int]]:
    """Run batches until TOTAL_CALLS; snapshots after the warm-up, at the middle and at the end."""
    snaps: Dict[str, Dict[str, int]] = {}
    mid = WARMUP_CALLS + (TOTAL_CALLS - WARMUP_CALLS) // 2
    while counter.calls < TOTAL_CALLS:
        counter.note(await batch())
        for name, at in (("warm", WARMUP_CALLS), ("mid", mid), ("end", TOTAL_CALLS)):
            if name not in snaps and counter.calls >= at:
                await asyncio.sleep(0.1)  # the same state every time: late replies in
                snaps[name] = snapshot()
                break
    return snaps


def check_outcomes(counter: Counter, expected: List[str]) -> None:
    for name in expected:
        assert counter.outcomes.get(name, 0) > 0, (name, counter.outcomes)
    failing = counter.calls - counter.outcomes.get("int", 0) - counter.outcomes.get("str", 0)
    assert failing >= TOTAL_CALLS // 20, counter.outcomes


@pytest.mark.slow
@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop], ids=["asyncio"])
@rpc_test(timeout=240)
async def test_one_connection_200k_calls(proto):
    """Framed, so that a reply over the client's limits fails only its call."""
    counter = Counter()
    with quiet_aiothrift_logger():
        await _one_connection(proto, counter)


async def _one_connection(proto: type, counter: Counter) -> None:
    async with serving(proto, LeakHandler(), framed=True, max_concurrency=None) as server:
        conn = await aiothrift.create_connection(
            RPC.RpcTestPlus, ("127.0.0.1", server.port), protocol_cls=proto, framed=True, timeout=10,
            max_string_size=64, max_container_size=16)
        long = "x" * 65

        async def batch() -> List[Any]:
            # Timeouts (the per-call timer) and cancellations (wait_for)...
            conn.timeout = 0.005
            slow = [asyncio.ensure_future(conn.slow(i, 0.02)) for i in range(5)]
            await asyncio.sleep(0)
            conn.timeout = 10
            calls = slow + [asyncio.ensure_future(asyncio.wait_for(conn.slow(i, 0.02), 0.005)) for i in range(5)]
            for i in range(BATCH - 60):
                calls.append(conn.add(i, 1))
            for i in range(10):
                calls.append(conn.raise_declared(1))         # declared exception
                calls.append(conn.raise_undeclared("u"))     # INTERNAL_ERROR
                calls.append(conn.not_on_server(i))          # UNKNOWN_METHOD
                calls.append(conn.echo(long))                # reply over max_string_size: SizeLimitError
                calls.append(conn.add(i, "not an int"))      # encode error, nothing sent
            return await asyncio.gather(*calls, return_exceptions=True)

        snaps = await run_calls(batch, counter)
        assert not conn.closed and conn.pending == 0
        assert len(conn._abandoned) < 100  # late replies arrived and were dropped
        conn.close()
    check_outcomes(counter, ["int", "UserError", "ThriftAppError", "SizeLimitError", "TypeError", "TimeoutError"])
    assert_flat(snaps["mid"], snaps["end"], "one connection (%s)" % (counter.outcomes,))


@pytest.mark.slow
@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop], ids=["uvloop"])
@rpc_test(timeout=240)
async def test_pool_200k_calls(proto):
    """Buffered, so that a reply over the client's limits breaks its connection: the pool replaces it."""
    counter = Counter()
    with quiet_aiothrift_logger():
        await _pool(proto, counter)


async def _pool(proto: type, counter: Counter) -> None:
    async with serving(proto, LeakHandler(), max_concurrency=None) as server:
        pool = await aiothrift.create_pool(
            RPC.RpcTestPlus, ("127.0.0.1", server.port), protocol_cls=proto, minsize=2, maxsize=8,
            timeout=10, max_string_size=64)
        long = "x" * 65

        async def timed_out() -> Any:
            async with pool.acquire() as conn:
                conn.timeout = 0.005
                try:
                    return await conn.slow(1, 0.02)
                finally:
                    conn.timeout = 10

        async def pipelined() -> List[Any]:
            async with pool.acquire() as conn:
                return await asyncio.gather(*[conn.add(i, 2) for i in range(40)])

        async def batch() -> List[Any]:
            calls: List[Any] = [timed_out() for _ in range(4)]
            calls += [asyncio.wait_for(pool.slow(1, 0.02), 0.005) for _ in range(4)]
            calls += [pool.add(i, 1) for i in range(BATCH - 4 * 40 - 8 - 42)]
            for i in range(8):
                calls.append(pool.raise_declared(2))
                calls.append(pool.raise_undeclared("u"))
                calls.append(pool.not_on_server(i))
                calls.append(pool.add(i, "not an int"))
                calls.append(pool.execute("no_such_method"))  # ValueError
            calls.append(pool.echo(long))  # breaks the stream: ConnectionClosedError, reconnect
            calls.append(pool.echo(long))
            results = await asyncio.gather(*calls, *[pipelined() for _ in range(4)], return_exceptions=True)
            flat: List[Any] = []
            for r in results:
                flat.extend(r if isinstance(r, list) else [r])
            return flat

        snaps = await run_calls(batch, counter)
        assert pool.size <= 8
        pool.close()
        await pool.wait_closed()
    check_outcomes(counter, ["int", "OtherError", "ThriftAppError", "TypeError", "ValueError",
                             "ConnectionClosedError", "TimeoutError"])
    assert_flat(snaps["mid"], snaps["end"], "pool (%s)" % (counter.outcomes,))


# ------------------------------------------------------------------ codec error paths

def _i32(v: int) -> bytes:
    return struct.pack("!i", v)


def _fld(t: int, fid: int) -> bytes:
    return struct.pack("!bh", t, fid)


def bad_inputs(codec: Any) -> List[bytes]:
    """Inputs failing in every way, at several depths (inside structs, lists, maps)."""
    inner = rich.Inner(x=1, label="l" * 20)
    good = codec.encode_struct(rich.Rich(
        a_i32=1, a_string="s" * 30, l_inner=[inner] * 3, m_binary_inner={b"k": inner, b"j": inner},
        lms=[{"a": {1, 2}}], mml={"m": {1: [inner]}}, tree=rich.Node(value=1, kids=[rich.Node(value=2, kids=[])]),
        s_string={"a", "b"}, l_double=[math.nan, 1.0]))
    out = [good[:i] for i in range(0, len(good), 3)]  # truncated everywhere: partial objects built, dropped
    body = [
        _fld(11, 7) + _i32(-1),                                    # negative string
        _fld(11, 7) + _i32(2**31 - 1),                             # over max_string_size
        _fld(15, 17) + b"\x0b" + _i32(2) + _i32(1) + b"a" + _i32(-3),  # second element bad
        _fld(15, 19) + b"\x0c" + _i32(2) + _fld(8, 1) + _i32(1) + b"\x00" + _fld(8, 1) + b"\x07",  # bad struct in list
        _fld(13, 27) + b"\x0b\x0c" + _i32(2) + _i32(1) + b"k" + b"\x00" + _i32(1) + b"j" + _fld(99, 1),  # bad map value
        _fld(13, 25) + b"\x0b\x08" + _i32(1) + _i32(1) + b"k" + _i32(1),  # map value type mismatch
        _fld(15, 14) + b"\x0b" + _i32(1) + _i32(0),                # element type mismatch
        _fld(14, 20) + b"\x08" + _i32(-1),                         # negative count
        _fld(14, 20) + b"\x08" + _i32(2_000_000),                  # over max_container_size
        _fld(15, 99) + b"\x01" + _i32(5) + b"\x00",                # skip: not a wire type
        _fld(12, 33) + (_fld(15, 2) + b"\x0c" + _i32(1)) * 40 + b"\x00" * 41,  # Node: too deep
        _fld(12, 99) * 70 + b"\x00" * 70,                          # skip: too deep
        _fld(14, 1) + b"\x0f" + _i32(1) + b"\x08" + _i32(1) + _i32(5) + b"\x00",  # Unhashable: unhashable element
        _fld(7, 1) + b"\x00",                                      # field type id 7
    ]
    out += [b + b"\x00" for b in body]
    out += [b"\x80\x01\x00\x01" + _i32(-1), b"\x80\x02\x00\x01", b"\x00\x00\x00\x04ab",
            b"\x80\x01\x00\x01" + _i32(2) + b"\xff\xfe" + _i32(1)]
    return out


CLASSES = [rich.Rich, rich.Node, rich.Required, rich.Unhashable, rich.Defaults]


def bad_objects() -> List[Any]:
    cyc = rich.Node(value=1, kids=[])
    cyc.kids.append(cyc)
    deep = rich.Node(value=0, kids=[])
    for _ in range(70):
        deep = rich.Node(value=0, kids=[deep])
    return [
        rich.Rich(a_i32="x"),
        rich.Rich(a_i32=2**40),
        rich.Rich(a_double="d"),
        rich.Rich(l_i32=[1, 2, "three"]),
        rich.Rich(l_inner=[rich.Inner(x=1), rich.Inner(x="bad")]),
        rich.Rich(m_string_i64={"a": 1, "b": "two"}),
        rich.Rich(m_binary_inner={b"k": rich.Inner(x=1), b"j": 5}),
        rich.Rich(lms=[{"a": {1, "x"}}]),
        rich.Rich(a_string=12345),
        rich.Rich(a_inner=rich.Node(value=1, kids=[])),
        rich.Rich(s_i32=5),
        rich.Required(id=1, name=None, inner=rich.Inner(x=1)),
        rich.Required(id=1, name="n", inner=rich.Inner(x="x")),
        cyc,
        deep,
        rich.Rich(tree=rich.Node(value=1, kids=[rich.Node(value="v", kids=[])])),
    ]


def _codec_error_loop(impl: Any, n: int) -> Dict[str, Dict[str, int]]:
    codec = impl.binary.BinaryCodec()
    tight = impl.binary.BinaryCodec(max_string_size=8, max_container_size=4, max_depth=4)
    inputs = bad_inputs(codec)
    objects = bad_objects()
    readers = [
        (lambda: impl.framing.FramedReader(max_frame_size=100), [_i32(101), _i32(-1), _i32(4) + b"ab"]),
        (lambda: impl.framing.BufferedReader(), [b"\x80\x01\x00\x01" + _i32(2) + b"ab" + _i32(1) + d for d in
                                                 (_fld(11, 1) + _i32(-1), _fld(15, 1) + b"\x01" + _i32(9),
                                                  _fld(12, 1) * 70, _fld(9, 1))]),
    ]
    snaps: Dict[str, Dict[str, int]] = {}
    done = 0
    errors = 0
    while done < n:
        for data in inputs:
            for cls in CLASSES:
                for c in (codec, tight):
                    try:
                        c.decode_struct(cls, data)
                    except ProtocolError:
                        errors += 1
                    done += 1
            try:
                codec.decode_message_begin(data)
            except ProtocolError:
                errors += 1
            try:
                codec.decode_struct(rich.Rich(a_i32=1), data)  # into an instance
            except ProtocolError:
                errors += 1
            done += 2
        for obj in objects:
            for c in (codec, tight):
                try:
                    c.encode_struct(obj)
                except (TypeError, OverflowError, ValueError):
                    errors += 1
                try:
                    c.encode_message("m", 1, 1, obj, framed=True)
                except (TypeError, OverflowError, ValueError):
                    errors += 1
                done += 2
        for make, chunks in readers:
            for chunk in chunks:
                reader = make()
                try:
                    reader.feed(chunk)
                    reader.feed(chunk)
                except ProtocolError:
                    errors += 1
                try:
                    reader.feed(b"more")  # a broken reader raises again
                except ProtocolError:
                    errors += 1
                done += 3
        if "warm" not in snaps and done >= n // 10:
            snaps["warm"] = snapshot()
        elif "mid" not in snaps and done >= n // 2 + n // 20:
            snaps["mid"] = snapshot()
    snaps["end"] = snapshot()
    assert errors > done // 2, (errors, done)
    return snaps


@pytest.mark.slow
def test_codec_error_paths_do_not_leak(impl):
    """100,000 failing decodes, encodes and feeds (compiled: the Cython error paths)."""
    if impl.name == "compiled":
        # A release build: no total reference count to read.
        assert hasattr(sys, "gettotalrefcount") or "refs" not in snapshot()
    snaps = _codec_error_loop(impl, 100_000)
    assert_flat(snaps["mid"], snaps["end"], "%s codec error paths" % impl.name)


def test_leak_checks_would_see_a_leak(impl):
    """The measure is sensitive enough: keeping one small object per failing decode is seen."""
    kept: List[Any] = []
    codec = impl.binary.BinaryCodec()
    data = bad_inputs(codec)[-5]
    mid = snapshot()
    for _ in range(10_000):
        try:
            codec.decode_struct(rich.Rich, data)
        except ProtocolError as exc:
            kept.append([exc.args])  # a leak of one list per error
    end = snapshot()
    with pytest.raises(AssertionError):
        assert_flat(mid, end, "deliberate leak")
    assert len(kept) == 10_000
