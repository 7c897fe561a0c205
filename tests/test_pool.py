"""ThriftPool / create_pool, on both loops and both codecs."""

from __future__ import annotations

import asyncio
import socket

import pytest

import aiothrift
from aiothrift import ConnectionClosedError, PoolClosedError

import rpc_util
from rpc_util import (
    RPC,
    AsyncHandler,
    rpc_test,
    serving,
    wait_until,
)

# fixtures: every test runs on both loops and with both codec implementations
loop_factory = rpc_util.loop_factory
proto = rpc_util.proto


async def make_pool(port, proto, **kwargs):
    return await aiothrift.create_pool(RPC.RpcTest, ("127.0.0.1", port), protocol_cls=proto, **kwargs)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@rpc_test
async def test_acquire_release_and_pool_methods(proto):
    async with serving(proto) as server:
        async with await make_pool(server.port, proto, minsize=2, maxsize=4) as pool:
            assert (pool.size, pool.freesize) == (2, 2)
            assert await pool.add(1, 2) == 3
            assert await pool.execute("acquire", "x") == "acquire:x"  # clashing name
            assert asyncio.iscoroutinefunction(pool.echo)
            async with pool.acquire() as conn:
                assert isinstance(conn, aiothrift.ThriftConnection)
                assert await conn.echo("hi") == "hi"
                assert pool.freesize == 1
            assert pool.freesize == 2
            conn = await pool.acquire()
            assert await conn.add(2, 2) == 4
            pool.release(conn)
            with pytest.raises(ValueError):
                pool.release(conn)  # not in use any more
            assert (pool.size, pool.freesize) == (2, 2)
            # concurrent calls beyond maxsize wait their turn
            results = await asyncio.gather(*[pool.slow(i, 0.01) for i in range(20)])
            assert results == list(range(20))
            assert pool.size <= 4
        assert pool.closed
        with pytest.raises(PoolClosedError):
            await pool.acquire()
        with pytest.raises(PoolClosedError):
            await pool.add(1, 1)


@rpc_test
async def test_fill_free_and_clear(proto):
    async with serving(proto) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=3)
        await pool.fill_free(override_min=True)
        assert (pool.size, pool.freesize) == (3, 3)
        await pool.clear()
        assert (pool.size, pool.freesize) == (0, 0)
        await pool.fill_free(override_min=False)
        assert pool.size == 1
        assert await pool.add(1, 1) == 2
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_dead_server_fails_fast(proto):
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(make_pool(port, proto), 5)
    pool = await make_pool(port, proto, minsize=0)
    assert pool.size == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(pool.acquire(), 5)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(pool.add(1, 2), 5)
    assert pool.size == 0  # failed connects leave no trace
    pool.close()


@rpc_test
async def test_waiters_fail_fast_when_server_dies(proto):
    # maxsize 1 in use; the server dies; a waiter woken by the broken
    # connection's release tries to connect and fails promptly.
    handler = AsyncHandler()
    async with serving(proto, handler, grace_period=0) as server:
        port = server.port
        pool = await make_pool(port, proto, minsize=1, maxsize=1)
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.add(1, 1))
        await asyncio.sleep(0.01)
    await wait_until(lambda: conn.closed)
    pool.release(conn)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(waiter, 5)
    pool.close()


@rpc_test
async def test_pool_recovers_after_server_restart(proto):
    async with serving(proto) as server:
        port = server.port
        pool = await make_pool(port, proto, minsize=2, maxsize=4)
        assert await pool.add(1, 1) == 2
    # server gone: the pool's connections see the close
    await wait_until(lambda: pool.freesize == 0)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(pool.add(1, 1), 5)
    server = await aiothrift.create_server(RPC.RpcTest, AsyncHandler(), ("127.0.0.1", port), protocol_cls=proto)
    try:
        assert await pool.add(2, 2) == 4
        assert await asyncio.gather(*[pool.add(i, i) for i in range(8)]) == [2 * i for i in range(8)]
        assert 1 <= pool.size <= 4
    finally:
        pool.close()
        await pool.wait_closed()
        server.close()
        await server.wait_closed()


@rpc_test
async def test_broken_connection_is_not_handed_out_again(proto):
    async with serving(proto) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=2)
        conn = await pool.acquire()
        conn._transport.abort()  # broken under the user's feet
        with pytest.raises(ConnectionClosedError):
            await conn.ping()
        pool.release(conn)
        assert pool.size == 0
        conn2 = await pool.acquire()
        assert conn2 is not conn and not conn2.closed
        assert await conn2.add(1, 2) == 3
        pool.release(conn2)
        # a free connection closed by the server is skipped too
        conn2.close()
        conn3 = await pool.acquire()
        assert conn3 is not conn2 and await conn3.ping() is None
        pool.release(conn3)
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_timed_out_connection_stays_if_healthy(proto):
    async with serving(proto) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=1, timeout=0.05)
        (conn,) = list(pool._free)
        with pytest.raises(asyncio.TimeoutError):
            await pool.slow(1, 0.3)
        assert pool.size == 1 and not conn.closed
        assert await pool.add(1, 2) == 3
        assert list(pool._free) == [conn]  # the same connection, still usable
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_acquire_timeout(proto):
    async with serving(proto) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=1)
        conn = await pool.acquire()
        with pytest.raises(asyncio.TimeoutError):
            await pool.acquire(timeout=0.05)
        with pytest.raises(asyncio.TimeoutError):
            async with pool.acquire(timeout=0.05):
                pass
        assert not pool._waiters  # timed-out waiters leave no trace
        pool.release(conn)
        async with pool.acquire(timeout=1) as again:
            assert again is conn
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_cancelled_waiter_does_not_leak(proto):
    async with serving(proto) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=1)
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        pool.release(conn)
        assert (pool.size, pool.freesize) == (1, 1)
        # a connection handed to a waiter cancelled at that moment comes back
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        pool.release(conn)  # handed to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (pool.size, pool.freesize) == (1, 1)
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_release_on_cancellation(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        pool = await make_pool(server.port, proto, minsize=1, maxsize=1)

        async def user():
            async with pool.acquire() as conn:
                await conn.slow(1, 5)

        task = asyncio.ensure_future(user())
        await wait_until(lambda: handler.running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (pool.size, pool.freesize) == (1, 1)
        assert await pool.add(1, 1) == 2  # the late reply of slow(1) is dropped
        task = asyncio.ensure_future(pool.slow(2, 5))
        await wait_until(lambda: handler.running == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.freesize == 1
        pool.close()
        await pool.wait_closed()


@rpc_test
async def test_close_and_terminate(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        pool = await make_pool(server.port, proto, minsize=0, maxsize=1)
        conn = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        pool.close()
        pool.close()  # harmless
        with pytest.raises(PoolClosedError):
            await waiter
        # close() is graceful: the connection in use works until released
        assert await conn.add(1, 1) == 2
        closing = asyncio.ensure_future(pool.wait_closed())
        await asyncio.sleep(0.01)
        assert not closing.done()
        pool.release(conn)
        await asyncio.wait_for(closing, 5)
        assert conn.closed

        pool = await make_pool(server.port, proto, minsize=1, maxsize=1)
        conn = await pool.acquire()
        call = asyncio.ensure_future(conn.slow(1, 5))
        await wait_until(lambda: handler.running == 1)
        pool.terminate()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(call, 5)
        pool.release(conn)  # after terminate: harmless
        await asyncio.wait_for(pool.wait_closed(), 5)


@rpc_test
async def test_pool_options_reach_connections(proto):
    async with serving(proto, framed=True) as server:
        with pytest.warns(DeprecationWarning):
            pool = await make_pool(server.port, proto, framed=True, connect_timeout=5, timeout=3,
                                   loop=asyncio.get_running_loop())
        async with pool:
            assert await pool.echo("framed") == "framed"
            async with pool.acquire() as conn:
                assert conn.timeout == 3 and conn._framed
    with pytest.raises(ValueError):
        aiothrift.ThriftPool(RPC.RpcTest, ("127.0.0.1", 1), minsize=3, maxsize=2)
