"""Graceful shutdown of the server (and of a pool using it).

On both event loops and both codec implementations, over both transports:
requests already received (running, or waiting behind ``max_concurrency``)
are answered; new connections are refused; idle, half-received (a request
incomplete) and finished connections close at once; ``wait_closed()``
returns within the grace period (plus a generous 1.5 s), even when a
handler never ends or refuses to be cancelled, or a client never reads its
replies; a second ``close()`` is harmless; nothing reaches the loop's
exception handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aiothrift
from aiothrift import ConnectionClosedError

import rpc_util
from rpc_util import RPC, AsyncHandler, captured_logs, connect, rpc_test, serving, wait_until
from test_hostile_clients import RawPeer, frame, loop_errors, valid

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

BOTH = pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
#: slack over the grace period for wait_closed()
SLACK = 1.5


class ShutdownHandler(AsyncHandler):
    def __init__(self) -> None:
        super().__init__()
        self.forever = 0
        self.stubborn = 0
        self.cancelled = 0

    async def notify(self, event):
        await asyncio.sleep(0.2)  # oneway work in flight at close time
        self.events.append(event)

    async def echo(self, s):
        if s == "forever":
            self.forever += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if s == "stubborn":  # refuses to be cancelled
            self.stubborn += 1
            for _ in range(10):  # 1 s: well past the grace period
                try:
                    await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    pass
        return s


async def elapsed(coro: Any) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await coro
    return loop.time() - start


@BOTH
@rpc_test
async def test_graceful_close(proto, framed):
    handler = ShutdownHandler()
    grace = 3.0
    with loop_errors() as errors:
        async with serving(proto, handler, framed=framed, grace_period=grace, max_concurrency=2,
                           timeout=30) as server:
            port = server.port
            busy = [await connect(server, proto, framed=framed) for _ in range(3)]
            idle = await connect(server, proto, framed=framed)
            await idle.ping()
            # A client half-way through sending a request.
            partial = await RawPeer.open(port)
            data = valid(proto(None).codec)
            partial.write((frame(data) if framed else data)[:-4])
            # In flight on every busy connection: 2 running (max_concurrency) and 4 received, waiting.
            calls = [asyncio.ensure_future(c.slow(10 * i + j, 0.3)) for i, c in enumerate(busy) for j in range(6)]
            await busy[0].notify("oneway-in-flight")
            await wait_until(lambda: handler.running == 6)
            assert server.connections == 5

            server.close()
            assert not server.is_serving()
            server.close()  # harmless
            with pytest.raises(OSError):
                await connect(port, proto, framed=framed)  # refused
            await idle.wait_closed()   # idle: closed at once
            await partial.closed_within(1.0)  # its request will never be read
            took = await elapsed(asyncio.wait_for(server.wait_closed(), grace + SLACK))
            assert took < grace  # all finished, no abort
            # Every request received before close() was answered.
            assert await asyncio.gather(*calls) == [10 * i + j for i in range(3) for j in range(6)]
            assert handler.events == ["oneway-in-flight"]
            for c in busy:
                await asyncio.wait_for(c.wait_closed(), 2)
                assert c.closed
            assert server.connections == 0
            server.close()  # after wait_closed: still harmless
            await asyncio.wait_for(server.wait_closed(), 1)
    assert not errors, errors


@pytest.mark.parametrize("what", ["forever", "stubborn"])
@BOTH
@rpc_test
async def test_wait_closed_returns_within_the_grace_period(proto, framed, what):
    """Handlers that never end (or ignore cancellation): aborted after the grace period."""
    handler = ShutdownHandler()
    grace = 0.3
    with captured_logs(), loop_errors() as errors:
        async with serving(proto, handler, framed=framed, grace_period=grace) as server:
            conns = [await connect(server, proto, framed=framed) for _ in range(4)]
            calls = [asyncio.ensure_future(c.echo(what)) for c in conns for _ in range(3)]
            fast = [asyncio.ensure_future(c.echo("fast")) for c in conns]
            await wait_until(lambda: getattr(handler, what) == 12)
            assert await asyncio.gather(*fast) == ["fast"] * 4
            server.close()
            took = await elapsed(asyncio.wait_for(server.wait_closed(), grace + SLACK))
            assert took < grace + SLACK
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
            assert all(isinstance(r, ConnectionClosedError) for r in results), results
            if what == "forever":
                assert handler.cancelled == 12
            server.close()
    assert not errors, errors


@BOTH
@rpc_test
async def test_close_with_a_client_not_reading_its_replies(proto, framed):
    """Its replies cannot be flushed: the connection is aborted at the end of the grace period."""
    grace = 0.3
    codec = proto(None).codec
    wrap = frame if framed else bytes
    async with serving(proto, rpc_util.SyncHandler(), framed=framed, grace_period=grace) as server:
        peer = await RawPeer.open(server.port)
        peer.transport.pause_reading()
        peer.write(wrap(valid(codec, "numbers", RPC.RpcTest.numbers_args(n=1_000_000), seqid=1)) * 4)
        await asyncio.sleep(0.3)  # replies made, stuck in buffers
        server.close()
        await asyncio.wait_for(server.wait_closed(), grace + SLACK)
        assert server.connections == 0
        peer.abort()


@rpc_test
async def test_close_idle_and_unstarted_servers(proto):
    # never started: close and wait_closed are harmless
    server = aiothrift.Server(aiothrift.TProcessor(RPC.RpcTest, AsyncHandler()), proto)
    server.close()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 1)
    # started, no connection ever
    server = await aiothrift.create_server(RPC.RpcTest, AsyncHandler(), ("127.0.0.1", 0), protocol_cls=proto)
    port = server.port
    server.close()
    took = await elapsed(asyncio.wait_for(server.wait_closed(), 2))
    assert took < 1.0
    server.close()
    await asyncio.wait_for(server.wait_closed(), 1)
    with pytest.raises(ConnectionRefusedError):
        await connect(port, proto)


@BOTH
@rpc_test
async def test_connections_racing_with_close(proto, framed):
    """Clients connecting while the server closes: refused, or closed promptly; never left hanging."""
    handler = ShutdownHandler()
    async with serving(proto, handler, framed=framed, grace_period=1.0) as server:
        port = server.port

        async def client(i: int) -> str:
            try:
                conn = await connect(port, proto, framed=framed, timeout=3)
            except OSError:
                return "refused"
            try:
                return "answered" if await conn.echo("r%d" % i) == "r%d" % i else "wrong"
            except ConnectionClosedError:
                return "closed"
            finally:
                conn.close()

        tasks = [asyncio.ensure_future(client(i)) for i in range(60)]
        await asyncio.sleep(0.005)
        server.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert set(results) <= {"refused", "answered", "closed"}, results
        await asyncio.wait_for(server.wait_closed(), 1.0 + SLACK)
        assert server.connections == 0


@BOTH
@rpc_test
async def test_pool_through_a_server_shutdown(proto, framed):
    """A pool's in-flight calls complete; afterwards calls fail fast; pool.close() twice is harmless."""
    handler = ShutdownHandler()
    async with serving(proto, handler, framed=framed, grace_period=3.0) as server:
        pool = await aiothrift.create_pool(RPC.RpcTest, ("127.0.0.1", server.port), protocol_cls=proto,
                                           framed=framed, minsize=2, maxsize=4)
        calls = [asyncio.ensure_future(pool.slow(i, 0.3)) for i in range(4)]
        await wait_until(lambda: handler.running == 4)
        server.close()
        assert await asyncio.gather(*calls) == [0, 1, 2, 3]
        await asyncio.wait_for(server.wait_closed(), 3.0 + SLACK)
        with pytest.raises((ConnectionRefusedError, ConnectionClosedError)):
            await asyncio.wait_for(pool.add(1, 1), 2)
        pool.close()
        pool.close()
        await asyncio.wait_for(pool.wait_closed(), 2)
        pool.close()
        with pytest.raises(aiothrift.PoolClosedError):
            await pool.add(1, 1)


@BOTH
@rpc_test
async def test_serve_forever_returns_after_close_with_busy_connections(proto, framed):
    handler = ShutdownHandler()
    async with serving(proto, handler, framed=framed, grace_period=2.0) as server:
        task = asyncio.ensure_future(server.serve_forever())
        conn = await connect(server, proto, framed=framed)
        call = asyncio.ensure_future(conn.slow(1, 0.2))
        await wait_until(lambda: handler.running == 1)
        server.close()
        assert await call == 1
        await asyncio.wait_for(task, 2.0 + SLACK)
        conn.close()
