"""Server, create_server and TProcessor, on both loops and both codecs."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest
from thriftpy2.thrift import TApplicationException

import aiothrift
from aiothrift import ConnectionClosedError, ThriftAppError

import rpc_util
from rpc_util import (
    HANDLERS,
    RPC,
    AsyncHandler,
    OtherError,
    Point,
    UserError,
    captured_logs,
    connect,
    rpc_test,
    serving,
    wait_until,
)

# fixtures: every test runs on both loops and with both codec implementations
loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4


class RawClient:
    """A client writing raw bytes and decoding whatever comes back."""

    def __init__(self, proto, reader, writer, framed):
        self.codec = proto(None).codec
        self.msg_reader = proto(None).make_reader(framed=framed)
        self.reader, self.writer, self.framed = reader, writer, framed
        self.messages = []

    @classmethod
    async def open(cls, server, proto, framed=False):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(proto, reader, writer, framed)

    def call(self, name, mtype, seqid, args):
        self.writer.write(self.codec.encode_message(name, mtype, seqid, args, framed=self.framed))

    async def next_message(self):
        """(name, mtype, seqid, msg, offset) of the next message; None at EOF."""
        while not self.messages:
            data = await self.reader.read(65536)
            if not data:
                return None
            self.messages.extend(self.msg_reader.feed(data))
        msg = self.messages.pop(0)
        return self.codec.decode_message_begin(msg) + (msg,)

    async def app_error(self):
        name, mtype, seqid, offset, msg = await self.next_message()
        assert mtype == EXCEPTION
        x = self.codec.decode_struct(TApplicationException, msg, offset)
        return name, seqid, x.type, x.message

    async def at_eof(self):
        """True when the server closes without sending anything more."""
        return await asyncio.wait_for(self.next_message(), 5) is None

    def close(self):
        self.writer.close()


def frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


@pytest.mark.parametrize("kind", list(HANDLERS))
@rpc_test
async def test_sync_and_async_handlers(proto, kind):
    handler = HANDLERS[kind]()
    async with serving(proto, handler) as server:
        conn = await connect(server, proto)
        try:
            assert await conn.add(40, 2) == 42
            assert await conn.concat("b", "a") == "ab"
            assert (await conn.move(Point(x=1, y=1), 1, 2)).y == 3
            assert await conn.numbers(3) == [0, 1, 2]
            assert await conn.ping() is None
            with pytest.raises(UserError):
                await conn.raise_declared(1)
            with pytest.raises(OtherError):
                await conn.raise_declared(2)
            with pytest.raises(ThriftAppError) as ei:
                await conn.raise_undeclared("x")
            assert ei.value.type == ThriftAppError.INTERNAL_ERROR
            await conn.notify("n")
            assert await conn.notified() == ["n"]
            # pipelined
            assert await asyncio.gather(*[conn.add(i, 1) for i in range(200)]) == [i + 1 for i in range(200)]
        finally:
            conn.close()


@rpc_test
async def test_handler_returning_awaitable_from_plain_function(proto):
    class Handler(AsyncHandler):
        def add(self, a, b):  # a plain function returning a coroutine (decorators do this)
            async def later():
                await asyncio.sleep(0)
                return a + b
            return later()

    async with serving(proto, Handler()) as server:
        conn = await connect(server, proto)
        assert await conn.add(1, 2) == 3
        conn.close()


@rpc_test
async def test_pipelined_requests_run_concurrently_with_a_bound(proto):
    handler = AsyncHandler()
    async with serving(proto, handler, max_concurrency=4) as server:
        conn = await connect(server, proto)
        try:
            results = await asyncio.gather(*[conn.slow(i, 0.02) for i in range(24)])
            assert results == list(range(24))
            assert handler.max_running == 4  # concurrent, never over the bound
            # Other calls queue behind the bound but all get answered.
            results = await asyncio.gather(*[conn.slow(i, 0.01) for i in range(10)],
                                           *[conn.add(i, i) for i in range(10)])
            assert results == list(range(10)) + [2 * i for i in range(10)]
        finally:
            conn.close()


@rpc_test
async def test_unknown_method(proto):
    async with serving(proto) as server:
        conn = await connect(server, proto, service=RPC.RpcTestPlus)
        try:
            with pytest.raises(ThriftAppError) as ei:
                await conn.not_on_server(1)
            assert ei.value.type == ThriftAppError.UNKNOWN_METHOD
            assert "not_on_server" in ei.value.message
            await conn.oneway_not_on_server(1)  # dropped, no reply
            assert await conn.add(1, 2) == 3  # connection still fine
            assert not conn.closed
        finally:
            conn.close()


@rpc_test
async def test_handler_missing_a_method_is_unknown_method(proto):
    class Partial:
        def add(self, a, b):
            return a + b

    async with serving(proto, Partial()) as server:
        conn = await connect(server, proto)
        try:
            with pytest.raises(ThriftAppError) as ei:
                await conn.echo("x")
            assert ei.value.type == ThriftAppError.UNKNOWN_METHOD
            assert await conn.add(1, 2) == 3
        finally:
            conn.close()


@pytest.mark.parametrize("kind", list(HANDLERS))
@rpc_test
async def test_undeclared_exception_is_internal_error_and_logged(proto, kind):
    async with serving(proto, HANDLERS[kind]()) as server:
        conn = await connect(server, proto)
        try:
            with captured_logs() as records:
                with pytest.raises(ThriftAppError) as ei:
                    await conn.raise_undeclared("boom")
            assert ei.value.type == ThriftAppError.INTERNAL_ERROR
            assert ei.value.message == repr(ValueError("boom"))
            errors = [r for r in records if r.levelno >= logging.ERROR]
            assert errors and errors[0].exc_info[0] is ValueError
            assert await conn.echo("still here") == "still here"
            assert not conn.closed
        finally:
            conn.close()


@rpc_test
async def test_app_errors_and_bad_results(proto):
    class Handler(AsyncHandler):
        def echo(self, s):
            raise ThriftAppError(ThriftAppError.INVALID_TRANSFORM, "no " + s)

        async def add(self, a, b):
            return "not an i64"  # cannot be encoded

        def numbers(self, n):
            raise TApplicationException(ThriftAppError.UNSUPPORTED_CLIENT_TYPE, "thriftpy2 style")

    async with serving(proto, Handler()) as server:
        conn = await connect(server, proto)
        try:
            with pytest.raises(ThriftAppError) as ei:
                await conn.echo("way")
            assert (ei.value.type, ei.value.message) == (ThriftAppError.INVALID_TRANSFORM, "no way")
            with pytest.raises(ThriftAppError) as ei:
                await conn.numbers(1)
            assert ei.value.type == ThriftAppError.UNSUPPORTED_CLIENT_TYPE
            with captured_logs():
                with pytest.raises(ThriftAppError) as ei:
                    await conn.add(1, 2)
            assert ei.value.type == ThriftAppError.INTERNAL_ERROR
            assert await conn.ping() is None
        finally:
            conn.close()


@rpc_test
async def test_oneway_gets_no_reply(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        raw = await RawClient.open(server, proto)
        raw.call("notify", ONEWAY, 1, RPC.RpcTest.notify_args(event="a"))
        # thriftpy2 clients send CALL for oneway methods and read no reply
        raw.call("notify", CALL, 2, RPC.RpcTest.notify_args(event="b"))
        raw.call("ping", CALL, 3, RPC.RpcTest.ping_args())
        name, mtype, seqid, _, _ = await raw.next_message()
        assert (name, mtype, seqid) == ("ping", REPLY, 3)  # the first and only reply
        assert handler.events == ["a", "b"]
        raw.close()


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_replies_carry_request_seqids(proto, framed):
    async with serving(proto, framed=framed) as server:
        raw = await RawClient.open(server, proto, framed=framed)
        # Odd seqids, negative ones included, in one write; slow first.
        seqids = [7, -5, 2**31 - 1, 0, 12345]
        for i, seqid in enumerate(seqids):
            if i == 0:
                raw.call("slow", CALL, seqid, RPC.RpcTest.slow_args(id=1, seconds=0.05))
            else:
                raw.call("add", CALL, seqid, RPC.RpcTest.add_args(a=i, b=0))
        got = {}
        for _ in seqids:
            name, mtype, seqid, offset, msg = await raw.next_message()
            assert mtype == REPLY
            cls = RPC.RpcTest.slow_result if name == "slow" else RPC.RpcTest.add_result
            got[seqid] = raw.codec.decode_struct(cls, msg, offset).success
        assert got == {7: 1, -5: 1, 2**31 - 1: 2, 0: 3, 12345: 4}
        raw.close()


@rpc_test
async def test_args_over_limit_protocol_error_then_close(proto):
    with captured_logs():
        async with serving(proto, framed=True, max_string_size=100) as server:
            raw = await RawClient.open(server, proto, framed=True)
            raw.call("ping", CALL, 1, RPC.RpcTest.ping_args())
            raw.call("echo", CALL, 2, RPC.RpcTest.echo_args(s="x" * 101))
            raw.call("ping", CALL, 3, RPC.RpcTest.ping_args())  # never answered
            # ping(1), already running, is answered; echo(2) gets PROTOCOL_ERROR
            # then the connection closes: ping(3) is never read.
            replies = {}
            for _ in range(2):
                name, mtype, seqid, offset, msg = await raw.next_message()
                replies[seqid] = (name, mtype, msg, offset)
            assert sorted(replies) == [1, 2]
            assert replies[1][:2] == ("ping", REPLY)
            name, mtype, msg, offset = replies[2]
            assert (name, mtype) == ("echo", EXCEPTION)
            x = raw.codec.decode_struct(TApplicationException, msg, offset)
            assert x.type == ThriftAppError.PROTOCOL_ERROR and "101" in x.message
            assert await raw.at_eof()
            raw.close()
            # the server itself is fine
            conn = await connect(server, proto, framed=True)
            assert await conn.echo("x" * 100) == "x" * 100
            conn.close()


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_args_of_wrong_shape_protocol_error_then_close(proto, framed):
    # sum(1: list<i32> values) sent a list<string>: well framed, but it does
    # not decode against the IDL.
    async with serving(proto, framed=framed) as server:
        raw = await RawClient.open(server, proto, framed=framed)
        def header(seqid):
            return raw.codec.encode_message("sum", CALL, seqid, RPC.RpcTest.sum_args())[:-1]  # no STOP

        good = header(8) + b"\x0f\x00\x01\x08" + struct.pack("!ii", 1, 5) + b"\x00"
        bad = header(9) + b"\x0f\x00\x01\x0b" + struct.pack("!ii", 1, 1) + b"a\x00"
        wrap = frame if framed else bytes
        with captured_logs() as records:
            raw.writer.write(wrap(good) + wrap(bad))
            replies = {}
            for _ in range(2):
                name, mtype, seqid, offset, msg = await raw.next_message()
                replies[seqid] = (mtype, msg, offset)
            mtype, msg, offset = replies[8]
            assert mtype == REPLY
            assert raw.codec.decode_struct(RPC.RpcTest.sum_result, msg, offset).success == 5
            mtype, msg, offset = replies[9]
            assert mtype == EXCEPTION
            x = raw.codec.decode_struct(TApplicationException, msg, offset)
            assert x.type == ThriftAppError.PROTOCOL_ERROR
            assert await raw.at_eof()
        assert any("bad input" in r.getMessage() for r in records)
        raw.close()
        conn = await connect(server, proto, framed=framed)
        assert await conn.sum([1, 2, 3]) == 6
        conn.close()


@rpc_test
async def test_invalid_message_type_then_close(proto):
    with captured_logs():
        async with serving(proto) as server:
            raw = await RawClient.open(server, proto)
            raw.call("add", REPLY, 4, RPC.RpcTest.add_args(a=1, b=2))
            name, seqid, type_, _ = await raw.app_error()
            assert (name, seqid, type_) == ("add", 4, ThriftAppError.INVALID_MESSAGE_TYPE)
            assert await raw.at_eof()
            raw.close()


@pytest.mark.parametrize("payload", [
    frame(b"")[:4] + b"\xff\xff\xff\xff",   # nonsense after an empty frame
    struct.pack("!i", -1),                    # negative frame size
    struct.pack("!i", 20_000_000),            # over max_frame_size
    frame(b"\x80\x09\x00\x01" + b"\x00" * 12),  # bad version
], ids=["empty-frame", "negative", "oversize", "bad-version"])
@rpc_test
async def test_bad_frames_close_without_reply(proto, payload):
    with captured_logs():
        async with serving(proto, framed=True) as server:
            raw = await RawClient.open(server, proto, framed=True)
            raw.writer.write(payload)
            assert await raw.at_eof()
            raw.close()
            conn = await connect(server, proto, framed=True)
            assert await conn.add(2, 2) == 4
            conn.close()


@rpc_test
async def test_garbage_unframed_closes(proto):
    with captured_logs():
        async with serving(proto) as server:
            raw = await RawClient.open(server, proto)
            raw.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await raw.at_eof()
            raw.close()


@rpc_test
async def test_half_close_still_gets_replies(proto):
    async with serving(proto) as server:
        raw = await RawClient.open(server, proto)
        raw.call("slow", CALL, 1, RPC.RpcTest.slow_args(id=5, seconds=0.05))
        raw.call("add", CALL, 2, RPC.RpcTest.add_args(a=1, b=1))
        raw.writer.write_eof()
        seqids = {(await raw.next_message())[2], (await raw.next_message())[2]}
        assert seqids == {1, 2}
        assert await raw.at_eof()
        raw.close()


@rpc_test
async def test_idle_timeout_closes_idle_connections_only(proto):
    handler = AsyncHandler()
    async with serving(proto, handler, timeout=0.3) as server:
        busy = await connect(server, proto)
        call = asyncio.ensure_future(busy.slow(1, 0.8))
        idle = await connect(server, proto)
        # busy runs one request longer than the idle timeout: not closed
        assert await call == 1
        assert not busy.closed
        await wait_until(lambda: idle.closed)
        # after its request, busy becomes idle and is closed too
        await wait_until(lambda: busy.closed)
        await wait_until(lambda: server.connections == 0)


@rpc_test
async def test_idle_timeout_is_not_a_lifetime_limit(proto):
    async with serving(proto, timeout=0.5) as server:
        conn = await connect(server, proto)
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.1  # well past the idle timeout
        while loop.time() < end:
            assert await conn.ping() is None
            await asyncio.sleep(0.02)
        assert not conn.closed
        conn.close()


@rpc_test
async def test_graceful_close_with_in_flight_calls(proto):
    handler = AsyncHandler()
    async with serving(proto, handler) as server:
        port = server.port
        busy = await connect(server, proto)
        idle = await connect(server, proto)
        await idle.ping()
        calls = [asyncio.ensure_future(busy.slow(i, 0.3)) for i in range(5)]
        await wait_until(lambda: handler.running == 5)
        server.close()
        server.close()  # harmless
        assert not server.is_serving()
        with pytest.raises(OSError):
            await connect(port, proto)  # no longer accepting
        await wait_until(lambda: idle.closed)  # idle connections close at once
        assert await asyncio.gather(*calls) == list(range(5))  # in-flight ones finish
        await asyncio.wait_for(server.wait_closed(), 5)
        await wait_until(lambda: busy.closed)
        assert server.connections == 0


@rpc_test
async def test_grace_period_expiry_aborts(proto):
    handler = AsyncHandler()
    with captured_logs():
        async with serving(proto, handler, grace_period=0.1) as server:
            conn = await connect(server, proto)
            call = asyncio.ensure_future(conn.slow(1, 30))
            await wait_until(lambda: handler.running == 1)
            server.close()
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(call, 5)
            await asyncio.wait_for(server.wait_closed(), 5)
            assert handler.running == 0  # the handler was cancelled
            assert handler.completed == 0


@rpc_test
async def test_serve_forever_and_context_manager(proto):
    async with serving(proto) as server:
        assert server.port and server.address == ("127.0.0.1", server.port)
        assert len(server.sockets) == 1
        assert server.is_serving()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        conn = await connect(server, proto)
        assert await conn.add(1, 1) == 2
        server.close()
        await asyncio.wait_for(task, 5)  # returns once closed
        assert conn.closed or await asyncio.wait_for(conn.wait_closed(), 5) is None
    # cancelling serve_forever closes the server
    server = await aiothrift.create_server(RPC.RpcTest, AsyncHandler(), ("127.0.0.1", 0), protocol_cls=proto)
    task = asyncio.ensure_future(server.serve_forever())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()
    async with server:  # async with on a closed server: harmless
        pass


@rpc_test
async def test_server_constructor_and_start(proto):
    server = aiothrift.Server(aiothrift.TProcessor(RPC.RpcTest, AsyncHandler()), proto, None, framed=True)
    assert server.port is None
    await server.start(("127.0.0.1", 0))
    async with server:
        conn = await connect(server, proto, framed=True)
        assert await conn.echo("hi") == "hi"
        conn.close()


@rpc_test
async def test_loop_argument_is_deprecated(proto):
    with pytest.warns(DeprecationWarning):
        server = await aiothrift.create_server(
            RPC.RpcTest, AsyncHandler(), ("127.0.0.1", 0), asyncio.get_running_loop(), proto)
    server.close()
    await server.wait_closed()


@pytest.mark.interop
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_thriftpy2_client(proto, framed):
    """thriftpy2's own (blocking) client, in a thread, against our server."""
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory

    handler = AsyncHandler()
    async with serving(proto, handler, framed=framed) as server:
        def client_session():
            trans = TFramedTransportFactory() if framed else TBufferedTransportFactory()
            client = make_client(RPC.RpcTest, "127.0.0.1", server.port, trans_factory=trans, timeout=5000)
            try:
                out = [client.add(1, 2), client.echo("tp2"), client.move(Point(x=1, y=1), 2, 3).y]
                client.notify("from thriftpy2")  # CALL of a oneway method: no reply may come
                out.append(client.notified())
                try:
                    client.raise_declared(1)
                except UserError as exc:
                    out.append(exc.code)
                try:
                    client.raise_undeclared("x")
                except Exception as exc:  # thriftpy2's TApplicationException
                    out.append(getattr(exc, "type", None))
                out.append(client.add(5, 5))
                return out
            finally:
                client.close()

        result = await asyncio.get_running_loop().run_in_executor(None, client_session)
        assert result == [3, "tp2", 4, ["from thriftpy2"], 7, ThriftAppError.INTERNAL_ERROR, 10]
