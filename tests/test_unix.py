"""Unix domain sockets on the server, the connection and the pool (issue 6).

The address is a filesystem path (``str`` or path-like).  What the server
does with the socket file, on both loops (neither asyncio before 3.13 nor
uvloop removes it on close, and both silently replace ANY socket file at
bind time, a live server's too):

* ``close()`` removes the file, unless it is no longer the one it bound
  (another server took the path since);
* a stale socket file (left by a server that died) is replaced;
* a live server's socket, or a file that is not a socket, is left alone:
  ``OSError(EADDRINUSE)``.

Every test runs on both loops and both codec implementations.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import sys
import uuid

import pytest

import aiothrift
import rpc_util
from rpc_util import RPC, AsyncHandler, Point, rpc_test

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto


def is_socket(path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


async def start(path, proto, handler=None, **kwargs) -> aiothrift.Server:
    kwargs.setdefault("grace_period", 0.5)
    return await aiothrift.create_server(RPC.RpcTest, handler or AsyncHandler(), path, protocol_cls=proto, **kwargs)


async def stop(server: aiothrift.Server) -> None:
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


async def connect(path, proto, **kwargs) -> aiothrift.ThriftConnection:
    kwargs.setdefault("timeout", 10)
    return await asyncio.wait_for(aiothrift.create_connection(RPC.RpcTest, path, protocol_cls=proto, **kwargs), 10)


def stale_socket_file(path) -> None:
    """A socket file nobody listens on: what a killed server leaves."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    assert is_socket(path)


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@pytest.mark.parametrize("as_path", [False, True], ids=["str", "pathlike"])
@rpc_test
async def test_connection_and_pool_over_a_unix_socket(proto, tmp_path, framed, as_path):
    path = tmp_path / "rpc.sock"
    address = path if as_path else str(path)
    handler = AsyncHandler()
    server = await start(address, proto, handler, framed=framed)
    try:
        assert is_socket(path)
        assert server.address == str(path) and server.port is None
        conn = await connect(address, proto, framed=framed)
        async with conn:
            assert await conn.add(2, 3) == 5
            assert await conn.move(Point(x=1, y=1), 1, 2) == Point(x=2, y=3)
            assert await asyncio.gather(*[conn.echo("u%d" % i) for i in range(50)]) == ["u%d" % i for i in range(50)]
            await conn.notify("one-way")
            assert await conn.notified() == ["one-way"]
            assert str(path) in repr(conn)
        pool = await aiothrift.create_pool(RPC.RpcTest, address, protocol_cls=proto, framed=framed,
                                           minsize=1, maxsize=3, timeout=10)
        async with pool:
            assert await asyncio.gather(*[pool.slow(i, 0.02) for i in range(3)]) == [0, 1, 2]
            assert pool.size == 3
    finally:
        await stop(server)
    assert not path.exists()


@rpc_test
async def test_socket_file_removed_on_close(proto, tmp_path):
    path = tmp_path / "s.sock"
    server = await start(str(path), proto)
    conn = await connect(str(path), proto)
    assert await conn.add(1, 1) == 2
    server.close()
    # removed at close(), while the connection is still being shut down
    assert not path.exists()
    await asyncio.wait_for(server.wait_closed(), 10)
    await asyncio.wait_for(conn.wait_closed(), 10)
    server.close()  # twice: harmless
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        await connect(str(path), proto)


@rpc_test
async def test_async_with_removes_the_socket_file(proto, tmp_path):
    path = tmp_path / "s.sock"
    async with await start(path, proto):
        assert is_socket(path)
    assert not path.exists()


@rpc_test
async def test_stale_socket_file_is_replaced(proto, tmp_path):
    path = tmp_path / "stale.sock"
    stale_socket_file(path)
    server = await start(str(path), proto)
    try:
        async with await connect(str(path), proto) as conn:
            assert await conn.add(1, 2) == 3
    finally:
        await stop(server)
    assert not path.exists()


@rpc_test
async def test_a_live_servers_socket_is_not_taken(proto, tmp_path):
    path = str(tmp_path / "live.sock")
    first = await start(path, proto)
    try:
        with pytest.raises(OSError) as info:
            await start(path, proto)
        assert info.value.errno == errno.EADDRINUSE
        assert "listening" in str(info.value)
        # the first server still owns the path and serves
        assert is_socket(path)
        async with await connect(path, proto) as conn:
            assert await conn.add(1, 2) == 3
    finally:
        await stop(first)
    assert not os.path.exists(path)


@rpc_test
async def test_a_file_that_is_not_a_socket_is_not_replaced(proto, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    with pytest.raises(OSError) as info:
        await start(str(path), proto)
    assert info.value.errno == errno.EADDRINUSE
    assert "not a socket" in str(info.value)
    assert path.read_text() == "keep me"
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        await start(str(tmp_path / "dir"), proto)
    assert (tmp_path / "dir").is_dir()


@rpc_test
async def test_close_leaves_a_socket_file_it_did_not_make(proto, tmp_path):
    # The path was taken over (file removed, a new server bound) while the
    # first server ran: closing the first one must not remove the new file.
    path = str(tmp_path / "taken.sock")
    first = await start(path, proto)
    os.unlink(path)
    second = await start(path, proto)
    try:
        await stop(first)
        assert is_socket(path)
        async with await connect(path, proto) as conn:
            assert await conn.add(2, 2) == 4
    finally:
        await stop(second)
    assert not os.path.exists(path)


@rpc_test
async def test_failed_start_leaves_no_socket_file(proto, tmp_path):
    path = tmp_path / "bad.sock"
    with pytest.raises(TypeError):  # not an SSLContext: rejected after the bind
        await start(str(path), proto, ssl=True)
    assert not path.exists()


@rpc_test
async def test_pool_survives_a_server_restart_on_the_same_path(proto, tmp_path):
    path = str(tmp_path / "restart.sock")
    server = await start(path, proto)
    pool = await aiothrift.create_pool(RPC.RpcTest, path, protocol_cls=proto, minsize=1, maxsize=2, timeout=10)
    async with pool:
        assert await pool.add(1, 2) == 3
        await stop(server)
        with pytest.raises((FileNotFoundError, ConnectionRefusedError, aiothrift.ConnectionClosedError)):
            await pool.add(1, 2)
        server = await start(path, proto)
        try:
            assert await pool.add(3, 4) == 7  # the dead connection was replaced
        finally:
            await stop(server)


@rpc_test
async def test_connect_to_a_missing_path(proto, tmp_path):
    with pytest.raises(FileNotFoundError):
        await connect(str(tmp_path / "nobody.sock"), proto)
    with pytest.raises(FileNotFoundError):
        await aiothrift.create_pool(RPC.RpcTest, str(tmp_path / "nobody.sock"), protocol_cls=proto)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux only")
@rpc_test
async def test_abstract_namespace_socket(proto):
    name = "\0aiothrift-test-%s" % uuid.uuid4().hex
    server = await start(name, proto)
    try:
        async with await connect(name, proto) as conn:
            assert await conn.add(1, 2) == 3
    finally:
        await stop(server)
