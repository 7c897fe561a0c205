"""ThriftConnection / create_connection, on both loops and both codecs."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import warnings

import pytest

import aiothrift
from aiothrift import ConnectionClosedError, ProtocolError, SizeLimitError, ThriftAppError
from aiothrift.connection import MAX_ABANDONED

import rpc_util
from rpc_util import (
    RPC,
    AsyncHandler,
    OtherError,
    Point,
    UserError,
    connect,
    rpc_test,
    scripted_server,
    serving,
    tls_contexts,
    wait_until,
)

# fixtures: every test runs on both loops and with both codec implementations
loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4


def _codec(proto):
    return proto(None).codec


def _read_calls(proto, peer, framed=False):
    """Decode the calls a ScriptedServer received so far: [(name, mtype, seqid)]."""
    reader = proto(None).make_reader(framed=framed)
    codec = _codec(proto)
    return [codec.decode_message_begin(m)[:3] for m in reader.feed(bytes(peer.received))]


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_calls_of_every_kind(proto, framed):
    handler = AsyncHandler()
    async with serving(proto, handler, framed=framed) as server:
        async with await connect(server, proto, framed=framed) as conn:
            assert await conn.add(1, 2) == 3
            assert await conn.add(a=-(2 ** 62), b=5) == -(2 ** 62) + 5
            # positional arguments follow the IDL declaration order
            assert await conn.concat("x", "y") == "yx"
            assert await conn.concat(first="a", second="b") == "ab"
            assert await conn.echo("héllo ☃") == "héllo ☃"
            assert await conn.echo("") == ""
            assert await conn.echo_bytes(b"\x00\xff" * 1000) == b"\x00\xff" * 1000
            p = await conn.move(Point(x=1, y=2, label="p"), 10, 20)
            assert (p.x, p.y, p.label) == (11, 22, "p")
            assert await conn.numbers(5) == [0, 1, 2, 3, 4]
            assert await conn.ping() is None
            with pytest.raises(UserError) as ei:
                await conn.raise_declared(1)
            assert (ei.value.why, ei.value.code) == ("nope", 7)
            with pytest.raises(OtherError):
                await conn.raise_declared(2)
            with pytest.raises(ThriftAppError) as ei:
                await conn.raise_undeclared("boom")
            assert ei.value.type == ThriftAppError.INTERNAL_ERROR
            assert "boom" in ei.value.message
            with pytest.raises(ThriftAppError) as ei:
                await conn.no_result()
            assert ei.value.type == ThriftAppError.MISSING_RESULT
            assert await conn.notify("e1") is None  # oneway
            assert await conn.notified() == ["e1"]
            # names clashing with the connection's own attributes
            assert await conn.execute("close", "c") == "close:c"
            assert await conn.execute("execute", "e") == "execute:e"
            assert await conn.execute("add", 2, b=3) == 5
            assert not conn.closed
        assert conn.closed


@rpc_test
async def test_service_methods_are_coroutine_functions(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto)
        try:
            assert isinstance(conn, aiothrift.ThriftConnection)
            assert asyncio.iscoroutinefunction(conn.add)
            # clashing names keep the connection's meaning
            assert conn.close.__func__ is aiothrift.ThriftConnection.close
            assert conn.execute.__func__ is aiothrift.ThriftConnection.execute
            with pytest.raises(ValueError):
                await conn.execute("no_such_method")
            with pytest.raises(TypeError):
                await conn.add(1, 2, 3)
            with pytest.raises(TypeError):
                await conn.add(1, a=2)
            with pytest.raises(TypeError):
                await conn.add(1, "not an int")
            assert await conn.add(1, 1) == 2  # nothing was sent by the failed calls
        finally:
            conn.close()


@rpc_test
async def test_thousand_concurrent_calls_on_one_connection(proto):
    handler = AsyncHandler()
    async with serving(proto, handler, max_concurrency=200) as server:
        conn = await connect(server, proto)
        try:
            # Mix immediate and sleeping handlers so replies come back out of order.
            calls = []
            for i in range(1000):
                if i % 3 == 0:
                    calls.append(conn.slow(i, (i % 7) * 0.002))
                elif i % 3 == 1:
                    calls.append(conn.add(i, 1_000_000))
                else:
                    calls.append(conn.echo("m%d" % i))
            results = await asyncio.gather(*calls)
            for i, r in enumerate(results):
                expected = i if i % 3 == 0 else (i + 1_000_000 if i % 3 == 1 else "m%d" % i)
                assert r == expected
            assert conn.pending == 0
        finally:
            conn.close()


@rpc_test
async def test_timeout_then_further_calls(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        conn = await connect(server, proto, timeout=0.1)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await conn.slow(1, 0.4)
            assert not conn.closed
            conn.timeout = None
            # This call is in flight when the late reply of slow(1) arrives:
            # it must get its own answer, the late one is dropped.
            assert await conn.slow(2, 0.6) == 2
            assert handler.completed == 2
            assert await conn.add(20, 22) == 42
            assert not conn.closed and conn.pending == 0
        finally:
            conn.close()


@rpc_test
async def test_many_timeouts_keep_connection_usable(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto, timeout=0.05)
        try:
            results = await asyncio.gather(*[conn.slow(i, 0.2) for i in range(50)], return_exceptions=True)
            assert all(isinstance(r, asyncio.TimeoutError) for r in results)
            conn.timeout = 10
            await asyncio.sleep(0.3)  # let the late replies arrive (and be dropped)
            assert await asyncio.gather(*[conn.add(i, i) for i in range(50)]) == [2 * i for i in range(50)]
            assert not conn.closed
        finally:
            conn.close()


@rpc_test
async def test_cancellation(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        conn = await connect(server, proto)
        try:
            task = asyncio.ensure_future(conn.slow(1, 0.3))
            await wait_until(lambda: handler.running == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert conn.pending == 0
            assert await conn.slow(2, 0.5) == 2  # the late reply of 1 came meanwhile
            assert handler.completed == 2
            assert await conn.echo("after") == "after"
            assert not conn.closed
        finally:
            conn.close()


@rpc_test
async def test_peer_close_mid_call(proto):
    async with scripted_server() as (port, peers):
        conn = await connect(port, proto)
        calls = [asyncio.ensure_future(conn.add(i, i)) for i in range(10)]
        await wait_until(lambda: peers and len(peers[0].received) > 0)
        await wait_until(lambda: len(_read_calls(proto, peers[0])) == 10)
        peers[0].transport.close()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, ConnectionClosedError) for r in results), results
        assert conn.closed
        with pytest.raises(ConnectionClosedError):
            await conn.add(1, 1)


@rpc_test
async def test_peer_reset_mid_call(proto):
    async with scripted_server() as (port, peers):
        conn = await connect(port, proto)
        call = asyncio.ensure_future(conn.echo("x"))
        await wait_until(lambda: peers and len(peers[0].received) > 0)
        sock = peers[0].transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peers[0].transport.abort()  # linger 0: RST
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(call, 5)
        assert conn.closed


async def _scripted_reply_test(proto, make_reply, cause_type, app_type=None, n_calls=5):
    """Send n calls to a scripted peer that answers the first with make_reply(...)."""
    codec = _codec(proto)
    async with scripted_server() as (port, peers):
        conn = await connect(port, proto)
        calls = [asyncio.ensure_future(conn.echo("c%d" % i)) for i in range(n_calls)]
        await wait_until(lambda: peers and len(_read_calls(proto, peers[0])) == n_calls)
        name, mtype, seqid = _read_calls(proto, peers[0])[0]
        peers[0].transport.write(make_reply(codec, name, seqid))
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        for r in results:
            assert isinstance(r, ConnectionClosedError), results
            assert isinstance(r.__cause__, cause_type)
            if app_type is not None:
                assert r.__cause__.type == app_type
        assert conn.closed
        with pytest.raises(ConnectionClosedError):
            await conn.echo("after")


@rpc_test
async def test_unknown_seqid_fails_every_pending_call(proto):
    def reply(codec, name, seqid):
        return codec.encode_message(name, REPLY, seqid + 1000, RPC.RpcTest.echo_result(success="?"))
    await _scripted_reply_test(proto, reply, ThriftAppError, ThriftAppError.BAD_SEQUENCE_ID)


@rpc_test
async def test_wrong_method_name_fails_every_pending_call(proto):
    def reply(codec, name, seqid):
        return codec.encode_message("add", REPLY, seqid, RPC.RpcTest.add_result(success=1))
    await _scripted_reply_test(proto, reply, ThriftAppError, ThriftAppError.WRONG_METHOD_NAME)


@rpc_test
async def test_wrong_message_type_fails_every_pending_call(proto):
    def reply(codec, name, seqid):
        return codec.encode_message(name, CALL, seqid, RPC.RpcTest.echo_args(s="?"))
    await _scripted_reply_test(proto, reply, ThriftAppError, ThriftAppError.INVALID_MESSAGE_TYPE)


@rpc_test
async def test_malformed_reply_stream_fails_every_pending_call(proto):
    def reply(codec, name, seqid):
        return b"\x80\x07\x00\x02garbage that is no message"  # bad protocol version
    await _scripted_reply_test(proto, reply, ProtocolError)


@rpc_test
async def test_application_exception_reply(proto):
    from thriftpy2.thrift import TApplicationException

    codec = _codec(proto)

    def on_data(peer):
        for name, mtype, seqid in _read_calls(proto, peer)[len(peer.answered):]:
            peer.answered.append(seqid)
            peer.transport.write(codec.encode_message(
                name, EXCEPTION, seqid, TApplicationException(type=9, message="custom problem")))

    async with scripted_server(on_data) as (port, peers):
        conn = await connect(port, proto)
        await wait_until(lambda: bool(peers))
        peers[0].answered = []
        with pytest.raises(ThriftAppError) as ei:
            await conn.echo("x")
        assert (ei.value.type, ei.value.message) == (9, "custom problem")
        assert str(ei.value) == "custom problem"
        assert not conn.closed  # a TApplicationException is a normal reply
        with pytest.raises(ThriftAppError):
            await conn.echo("y")
        conn.close()


@rpc_test
async def test_oneway_does_not_wait(proto):
    async with scripted_server() as (port, peers):  # never replies
        conn = await connect(port, proto)
        assert await asyncio.wait_for(conn.notify("evt"), 5) is None
        assert conn.pending == 0
        await wait_until(lambda: peers and len(_read_calls(proto, peers[0])) == 1)
        name, mtype, seqid = _read_calls(proto, peers[0])[0]
        assert (name, mtype) == ("notify", ONEWAY)
        conn.close()


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_reply_over_client_limit(proto, framed):
    async with serving(proto, framed=framed) as server:
        conn = await connect(server, proto, framed=framed, max_string_size=100)
        try:
            assert await conn.echo("a" * 100) == "a" * 100
            with pytest.raises((SizeLimitError, ConnectionClosedError)) as ei:
                await conn.echo("a" * 101)
            if framed:
                # The frame is intact: only this call fails.
                assert isinstance(ei.value, SizeLimitError)
                assert await conn.echo("ok") == "ok"
            else:
                # The buffered reader cannot find the message end without
                # reading the string: the stream is broken.
                assert isinstance(ei.value, ConnectionClosedError)
                assert isinstance(ei.value.__cause__, SizeLimitError)
                assert conn.closed
        finally:
            conn.close()


@rpc_test
async def test_frame_over_client_limit(proto):
    async with serving(proto, framed=True) as server:
        conn = await connect(server, proto, framed=True, max_frame_size=1000)
        try:
            with pytest.raises(ConnectionClosedError) as ei:
                await conn.echo("a" * 2000)
            assert isinstance(ei.value.__cause__, SizeLimitError)
        finally:
            conn.close()


@rpc_test
async def test_close_fails_pending_calls(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        conn = await connect(server, proto)
        calls = [asyncio.ensure_future(conn.slow(i, 5)) for i in range(3)]
        await wait_until(lambda: handler.running == 3)
        conn.close()
        conn.close()  # twice is harmless
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ConnectionClosedError) for r in results)
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert conn.closed
        with pytest.raises(ConnectionClosedError):
            await conn.ping()


@rpc_test
async def test_seqid_wraps_around(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto)
        try:
            conn._seqid = 0x7FFFFFFF - 3
            results = await asyncio.gather(*[conn.add(i, 0) for i in range(10)])
            assert results == list(range(10))
            assert 0 <= conn._seqid < 10
            # A seqid still owned by a pending call is skipped on wrap.
            conn._seqid = 0x7FFFFFFF
            conn._pending[0] = conn._pending[1] = None  # type: ignore[assignment]
            try:
                assert conn._next_seqid() == 2
            finally:
                del conn._pending[0], conn._pending[1]
        finally:
            conn.close()


@rpc_test
async def test_abandoned_seqids_are_bounded(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto)
        try:
            base = 1000
            conn._abandoned.update(dict.fromkeys(range(base, base + MAX_ABANDONED), "x"))
            conn._pending[5] = (asyncio.get_running_loop().create_future(), "slow", None, None)  # type: ignore
            conn._abandon(5)
            assert len(conn._abandoned) == MAX_ABANDONED  # the oldest was forgotten
            assert 5 in conn._abandoned and base not in conn._abandoned
            # new seqids avoid the abandoned ones (their replies may still come)
            conn._seqid = base + 10
            assert conn._next_seqid() == base + MAX_ABANDONED
            assert await conn.add(1, 2) == 3
        finally:
            conn.close()


@rpc_test
async def test_backpressure_waits_for_drain(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto)
        try:
            conn.pause_writing()
            call = asyncio.ensure_future(conn.add(1, 2))
            await asyncio.sleep(0.05)
            assert not call.done() and conn.pending == 0  # not written yet
            conn.resume_writing()
            assert await asyncio.wait_for(call, 5) == 3
            # a cancelled waiter does not cancel the others
            conn.pause_writing()
            c1 = asyncio.ensure_future(conn.add(1, 1))
            c2 = asyncio.ensure_future(conn.add(2, 2))
            await asyncio.sleep(0.01)
            c1.cancel()
            conn.resume_writing()
            assert await asyncio.wait_for(c2, 5) == 4
            assert c1.cancelled()
        finally:
            conn.close()


@rpc_test
async def test_big_payloads(proto):
    blob = bytes(range(256)) * 8192  # 2 MiB: several pause/resume_writing rounds
    async with serving(proto, framed=True) as server:
        conn = await connect(server, proto, framed=True)
        try:
            results = await asyncio.gather(*[conn.echo_bytes(blob) for _ in range(8)])
            assert all(r == blob for r in results)
        finally:
            conn.close()


@rpc_test
async def test_connect_refused(proto):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with pytest.raises(ConnectionRefusedError):
        await connect(port, proto)


@rpc_test
async def test_connect_timeout(proto):
    # A TLS handshake against a peer that never answers: connect_timeout
    # covers it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    async with scripted_server() as (port, _peers):
        with pytest.raises(asyncio.TimeoutError):
            await connect(port, proto, ssl=ctx, connect_timeout=0.2)


@rpc_test
async def test_loop_argument_is_deprecated(proto):
    async with serving(proto) as server:
        with pytest.warns(DeprecationWarning):
            conn = await connect(server, proto, loop=asyncio.get_running_loop())
        conn.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            conn = await connect(server, proto)
            conn.close()


@rpc_test
async def test_tcp_nodelay_on_both_ends(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto)
        try:
            await conn.ping()
            client_sock = conn._transport.get_extra_info("socket")
            assert client_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            (server_conn,) = server._connections
            server_sock = server_conn._transport.get_extra_info("socket")
            assert server_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            conn.close()


@rpc_test
async def test_unix_socket(proto, tmp_path):
    path = str(tmp_path / "s.sock")
    server = await aiothrift.create_server(RPC.RpcTest, AsyncHandler(), path, protocol_cls=proto)
    try:
        conn = await aiothrift.create_connection(RPC.RpcTest, path, protocol_cls=proto)
        assert await conn.add(2, 3) == 5
        conn.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_tls(proto, framed, tmp_path):
    server_ctx, client_ctx = tls_contexts(tmp_path)
    handler = AsyncHandler()
    async with serving(proto, handler, framed=framed, ssl=server_ctx) as server:
        conn = await connect(server, proto, framed=framed, ssl=client_ctx, connect_timeout=5)
        try:
            assert await conn.add(1, 2) == 3
            assert await asyncio.gather(*[conn.echo("t%d" % i) for i in range(100)]) == ["t%d" % i for i in range(100)]
            blob = b"\xab" * 300_000
            assert await conn.echo_bytes(blob) == blob
        finally:
            conn.close()
            await asyncio.wait_for(conn.wait_closed(), 5)
        # a plain-TCP client talking to the TLS server does not break it
        plain = await connect(server, proto, framed=framed, timeout=1)
        with pytest.raises((ConnectionClosedError, asyncio.TimeoutError)):
            await plain.ping()
        plain.close()


@pytest.mark.interop
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_thriftpy2_server(proto, framed):
    """Our client against thriftpy2's own threaded server."""
    import threading

    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.server import TThreadedServer
    from thriftpy2.thrift import TProcessor
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory, TServerSocket

    listener = TServerSocket(host="127.0.0.1", port=0, client_timeout=5000)
    listener.listen()
    port = listener.sock.getsockname()[1]
    tp2 = TThreadedServer(
        TProcessor(RPC.RpcTest, rpc_util.SyncHandler()), listener, iprot_factory=TBinaryProtocolFactory(),
        itrans_factory=TFramedTransportFactory() if framed else TBufferedTransportFactory())
    # Serve the one connection of this test; it ends when our client closes.
    thread = threading.Thread(target=lambda: tp2.handle(listener.accept()), daemon=True)
    thread.start()
    try:
        conn = await connect(port, proto, framed=framed, timeout=5)
        try:
            assert await conn.add(1, 2) == 3
            assert await asyncio.gather(*[conn.echo("p%d" % i) for i in range(50)]) == ["p%d" % i for i in range(50)]
            assert (await conn.move(Point(x=0, y=0), 1, 1)).x == 1
            with pytest.raises(UserError):
                await conn.raise_declared(1)
            await conn.notify("oneway")
            assert await conn.notified() == ["oneway"]
            # thriftpy2's server drops the connection on an undeclared
            # exception (it answers nothing): every pending call learns at once.
            with pytest.raises(ConnectionClosedError):
                await conn.raise_undeclared("x")
        finally:
            conn.close()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 5)
        assert not thread.is_alive()
    finally:
        listener.close()
