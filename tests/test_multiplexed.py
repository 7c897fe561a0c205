"""Multiplexed services (issue 6): several services on one server, by name.

The wire format is Apache Thrift's ``TMultiplexedProcessor`` /
``TMultiplexedProtocol`` (thrift/TMultiplexedProcessor.py,
thrift/protocol/TMultiplexedProtocol.py of the installed ``thrift``): a CALL
or ONEWAY message is named ``"Service:method"``; the processor strips the
service name and the reply (REPLY or EXCEPTION) carries the plain method
name.  thriftpy2's implementation does the same.

* server: ``aiothrift.TMultiplexedProcessor`` with ``register(name, service,
  handler)``, passed to ``create_server(mux, None, address)``;
* client: ``create_connection(..., service_name="Calc")`` /
  ``create_pool(..., service_name="Calc")``; a reply named ``"Calc:add"``
  is accepted as well as ``"add"``;
* interop both directions with Apache's ``TMultiplexedProtocol`` clients
  (pure and accelerated protocol, buffered and framed) and
  ``TMultiplexedProcessor`` (``TSimpleServer`` and ``TThreadedServer``), and
  with thriftpy2's.

Local tests run on both loops and both codec implementations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, List

import pytest
from thrift import TMultiplexedProcessor as apache_mux_processor
from thrift.protocol import TMultiplexedProtocol as apache_mux_protocol
from thrift.server import TServer as apache_server
from thrift.transport import TSocket as apache_socket
from thrift.transport import TTransport as apache_transport
from thriftpy2 import server as tp2_server
from thriftpy2.protocol import TMultiplexedProtocol as Tp2MultiplexedProtocol
from thriftpy2.protocol import binary as tp2_binary
from thriftpy2.thrift import TClient as Tp2Client
from thriftpy2.thrift import TMultiplexedProcessor as Tp2MultiplexedProcessor
from thriftpy2.thrift import TProcessor as Tp2Processor
from thriftpy2.transport import buffered as tp2_buffered
from thriftpy2.transport import framed as tp2_framed
from thriftpy2.transport import socket as tp2_socket

import aiothrift
import peers
import rpc_util
from aiothrift import ConnectionClosedError, ThriftAppError
from aiothrift.processor import CALL, EXCEPTION, ONEWAY, REPLY
from peers import apache_alltypes  # noqa: F401  (pytest fixture)
from peers import CALL_TIMEOUT, HOST, SOCKET_TIMEOUT_MS, AllTypesHandler
from rpc_util import RPC, AsyncHandler, Point, UserError, rpc_test, scripted_server, wait_until

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

AT = peers.tp2_module("alltypes")


class BaseHandler:
    """``BaseService`` of alltypes.thrift: ``ping`` clashes with RpcTest's."""

    def __init__(self) -> None:
        self.pings = 0

    async def ping(self):
        self.pings += 1

    def version(self):
        return "base service"

    async def base_add(self, a, b):
        return a + b + 1000


def mux_processor(calc: Any = None, base: Any = None) -> aiothrift.TMultiplexedProcessor:
    mux = aiothrift.TMultiplexedProcessor()
    mux.register("Calc", RPC.RpcTest, calc if calc is not None else AsyncHandler())
    mux.register("Base", AT.BaseService, base if base is not None else BaseHandler())
    return mux


@contextlib.asynccontextmanager
async def mux_serving(proto: type, mux: Any, **kwargs: Any):
    kwargs.setdefault("grace_period", 0.5)
    server = await aiothrift.create_server(mux, None, (HOST, 0), protocol_cls=proto, **kwargs)
    async with server:
        yield server


async def connect(server: Any, proto: type, service: Any, name: Any, **kwargs: Any) -> aiothrift.ThriftConnection:
    kwargs.setdefault("timeout", 10)
    port = server if isinstance(server, int) else server.port
    return await aiothrift.create_connection(service, (HOST, port), protocol_cls=proto, service_name=name, **kwargs)


# ---------------------------------------------------------------- our server, our client

@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_two_services_on_one_server(proto, framed):
    calc, base = AsyncHandler(), BaseHandler()
    async with mux_serving(proto, mux_processor(calc, base), framed=framed) as server:
        c = await connect(server, proto, RPC.RpcTest, "Calc", framed=framed)
        b = await connect(server, proto, AT.BaseService, "Base", framed=framed)
        async with c, b:
            assert c.service_name == "Calc" and b.service_name == "Base"
            assert await c.add(1, 2) == 3
            assert await b.base_add(1, 2) == 1003
            assert await b.version() == "base service"
            # ping is in both services: each goes to its own handler
            await b.ping()
            await c.ping()
            assert base.pings == 1
            assert await c.move(Point(x=1, y=1), 2, 3) == Point(x=3, y=4)
            with pytest.raises(UserError):
                await c.raise_declared(1)
            with pytest.raises(ThriftAppError) as info:
                await c.raise_undeclared("boom")
            assert info.value.type == ThriftAppError.INTERNAL_ERROR
            await c.notify("oneway")  # ONEWAY message, "Calc:notify"
            assert await c.notified() == ["oneway"]
            assert await c.execute("close", "x") == "close:x"  # a name that clashes
            # pipelined, interleaved on one connection and across services
            results = await asyncio.gather(*[c.slow(i, 0.01) for i in range(20)],
                                           *[b.base_add(i, 0) for i in range(20)])
            assert results == list(range(20)) + [1000 + i for i in range(20)]


@rpc_test
async def test_pools_bound_to_services(proto):
    calc, base = AsyncHandler(), BaseHandler()
    async with mux_serving(proto, mux_processor(calc, base)) as server:
        pc = await aiothrift.create_pool(RPC.RpcTest, (HOST, server.port), protocol_cls=proto,
                                         service_name="Calc", minsize=1, maxsize=3, timeout=10)
        pb = await aiothrift.create_pool(AT.BaseService, (HOST, server.port), protocol_cls=proto,
                                         service_name="Base", minsize=0, maxsize=2, timeout=10)
        async with pc, pb:
            assert await asyncio.gather(*[pc.slow(i, 0.05) for i in range(3)]) == [0, 1, 2]
            assert pc.size == 3
            assert await asyncio.gather(*[pb.base_add(i, i) for i in range(4)]) == [1000 + 2 * i for i in range(4)]
            async with pc.acquire() as conn:
                assert conn.service_name == "Calc"
            assert server.connections == pc.size + pb.size


@rpc_test
async def test_unknown_service_and_unknown_method(proto):
    async with mux_serving(proto, mux_processor()) as server:
        async with await connect(server, proto, RPC.RpcTest, "Nope") as conn:
            with pytest.raises(ThriftAppError) as info:
                await conn.add(1, 2)
            assert info.value.type == ThriftAppError.UNKNOWN_METHOD
            assert "Unknown service 'Nope'" in info.value.message
            # a oneway call to it is dropped; the connection goes on
            await conn.notify("lost")
            with pytest.raises(ThriftAppError):
                await conn.add(1, 2)
        async with await connect(server, proto, RPC.RpcTestPlus, "Calc") as conn:
            with pytest.raises(ThriftAppError) as info:
                await conn.not_on_server(1)
            assert info.value.type == ThriftAppError.UNKNOWN_METHOD
            assert "not_on_server" in info.value.message and "'Calc'" in info.value.message
            assert await conn.add(1, 2) == 3


@rpc_test
async def test_plain_client_on_a_multiplexed_server(proto):
    async with mux_serving(proto, mux_processor()) as server:
        async with await connect(server, proto, RPC.RpcTest, None) as conn:
            with pytest.raises(ThriftAppError) as info:
                await conn.add(1, 2)
            assert info.value.type == ThriftAppError.UNKNOWN_METHOD
            assert "service_name" in info.value.message and "Base, Calc" in info.value.message
    # register_default: old, non-multiplexed clients keep working
    mux = mux_processor()
    mux.register_default(RPC.RpcTest, AsyncHandler())
    async with mux_serving(proto, mux) as server:
        async with await connect(server, proto, RPC.RpcTest, None) as plain, \
                await connect(server, proto, AT.BaseService, "Base") as base:
            assert await plain.add(1, 2) == 3
            assert await base.base_add(1, 2) == 1003
        async with await connect(server, proto, RPC.RpcTestPlus, None) as plain:
            with pytest.raises(ThriftAppError) as info:
                await plain.not_on_server(1)
            assert info.value.message == "Unknown method 'not_on_server'"


@rpc_test
async def test_multiplexed_client_on_a_plain_server(proto):
    async with rpc_util.serving(proto) as server:
        async with await connect(server, proto, RPC.RpcTest, "Calc") as conn:
            with pytest.raises(ThriftAppError) as info:
                await conn.add(1, 2)
            assert info.value.type == ThriftAppError.UNKNOWN_METHOD
            assert "Calc:add" in info.value.message
            with pytest.raises(ThriftAppError):  # the connection goes on
                await conn.add(1, 2)


@rpc_test
async def test_a_processor_on_create_server(proto):
    # create_server accepts a plain TProcessor as well
    processor = aiothrift.TProcessor(RPC.RpcTest, AsyncHandler())
    server = await aiothrift.create_server(processor, None, (HOST, 0), protocol_cls=proto)
    async with server:
        assert server.processor is processor
        async with await rpc_util.connect(server, proto) as conn:
            assert await conn.add(1, 2) == 3
        with pytest.raises(TypeError, match="handler must be None"):
            await aiothrift.create_server(mux_processor(), AsyncHandler(), (HOST, 0))


def test_registration_rules():
    mux = aiothrift.TMultiplexedProcessor()
    processor = mux.register("Calc", RPC.RpcTest, AsyncHandler())
    assert isinstance(processor, aiothrift.TProcessor)
    assert mux.services == {"Calc": processor}
    ready = aiothrift.TProcessor(AT.BaseService, BaseHandler())
    assert mux.register("Base", ready) is ready
    for bad in ("", "a:b", None, 3):
        with pytest.raises(ValueError):
            mux.register(bad, RPC.RpcTest, AsyncHandler())
    with pytest.raises(ValueError, match="already"):
        mux.register("Calc", RPC.RpcTest, AsyncHandler())
    with pytest.raises(TypeError):
        mux.register("Other", ready, AsyncHandler())
    mux.register_default(RPC.RpcTest, AsyncHandler())
    with pytest.raises(ValueError):
        mux.register_default(RPC.RpcTest, AsyncHandler())
    assert "Base, Calc" in repr(mux)
    # routing
    assert mux.lookup("Calc:add").spec.name == "add"
    assert mux.lookup("Base:base_add").spec.name == "base_add"
    assert mux.lookup("Base:add") is None
    assert mux.lookup("add").spec.name == "add"  # the default service
    assert mux.lookup("Nope:add") is None
    assert mux.unknown_method("Nope:add") == ("add", "Unknown service 'Nope' (method 'add')")


@rpc_test
async def test_service_name_is_checked_before_connecting(proto):
    for bad in ("", "Calc:x", 5):
        with pytest.raises(ValueError, match="service_name"):
            await aiothrift.create_connection(RPC.RpcTest, (HOST, 1), protocol_cls=proto, service_name=bad)
        with pytest.raises(ValueError, match="service_name"):
            await aiothrift.create_pool(RPC.RpcTest, (HOST, 1), protocol_cls=proto, minsize=0, service_name=bad)


# ---------------------------------------------------------------- the bytes on the wire

def read_messages(proto: type, data: bytes, framed: bool = False) -> List[tuple]:
    codec = proto(None).codec
    return [codec.decode_message_begin(m)[:3] for m in proto(None).make_reader(framed=framed).feed(bytes(data))]


@rpc_test
async def test_client_wire_format(proto):
    codec = proto(None).codec
    async with scripted_server() as (port, scripted):
        conn = await connect(port, proto, RPC.RpcTest, "Calc")
        async with conn:
            await conn.notify("e")
            call = asyncio.ensure_future(conn.add(1, 2))
            await wait_until(lambda: scripted and len(read_messages(proto, scripted[0].received)) == 2)
            (n1, t1, _), (n2, t2, seqid) = read_messages(proto, scripted[0].received)
            assert (n1, t1) == ("Calc:notify", ONEWAY)
            assert (n2, t2) == ("Calc:add", CALL)
            # Apache's processor answers with the plain name...
            scripted[0].transport.write(codec.encode_message("add", REPLY, seqid, RPC.RpcTest.add_result(success=3)))
            assert await asyncio.wait_for(call, 5) == 3
            # ...and "Calc:add" is accepted too
            call = asyncio.ensure_future(conn.add(2, 2))
            await wait_until(lambda: len(read_messages(proto, scripted[0].received)) == 3)
            seqid = read_messages(proto, scripted[0].received)[2][2]
            scripted[0].transport.write(codec.encode_message(
                "Calc:add", REPLY, seqid, RPC.RpcTest.add_result(success=4)))
            assert await asyncio.wait_for(call, 5) == 4
            # another service's name is not
            call = asyncio.ensure_future(conn.add(3, 3))
            await wait_until(lambda: len(read_messages(proto, scripted[0].received)) == 4)
            seqid = read_messages(proto, scripted[0].received)[3][2]
            scripted[0].transport.write(codec.encode_message(
                "Base:add", REPLY, seqid, RPC.RpcTest.add_result(success=6)))
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(call, 5)
            assert info.value.__cause__.type == ThriftAppError.WRONG_METHOD_NAME


@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_server_replies_carry_the_plain_method_name(proto, framed):
    codec = proto(None).codec
    args = RPC.RpcTest.add_args(a=1, b=2)
    async with mux_serving(proto, mux_processor(), framed=framed) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            writer.write(codec.encode_message("Calc:add", CALL, 7, args, framed=framed))
            writer.write(codec.encode_message("Calc:raise_declared", CALL, 8,
                                              RPC.RpcTest.raise_declared_args(which=1), framed=framed))
            writer.write(codec.encode_message("Calc:raise_undeclared", CALL, 9,
                                              RPC.RpcTest.raise_undeclared_args(msg="x"), framed=framed))
            writer.write(codec.encode_message("Calc:nope", CALL, 10, args, framed=framed))
            writer.write(codec.encode_message("Nope:add", CALL, 11, args, framed=framed))
            writer.write(codec.encode_message("add", CALL, 12, args, framed=framed))
            stream = proto(None).make_reader(framed=framed)
            got: List[tuple] = []
            while len(got) < 6:
                data = await asyncio.wait_for(reader.read(65536), 5)
                assert data, "server closed the connection"
                got += [codec.decode_message_begin(m)[:3] for m in stream.feed(data)]
            assert sorted(got, key=lambda m: m[2]) == [
                ("add", REPLY, 7), ("raise_declared", REPLY, 8), ("raise_undeclared", EXCEPTION, 9),
                ("nope", EXCEPTION, 10), ("add", EXCEPTION, 11), ("add", EXCEPTION, 12)]
        finally:
            writer.close()


# ---------------------------------------------------------------- interop: Apache and thriftpy2

@pytest.fixture
def quiet_peer_logs():
    """Peers log the errors we provoke with tracebacks: keep them quiet."""
    loggers = [logging.getLogger(n) for n in ("thrift", "thriftpy2")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    yield
    for lg, level in zip(loggers, old):
        lg.setLevel(level)


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), CALL_TIMEOUT)


class _Counted:
    """Counts the calls of a fastbinary function.  A callable object, not a
    function: Apache's TProtocolDecorator (TMultiplexedProtocol, the server's
    StoredMessageProtocol) copies the protocol's attributes into a class,
    where a plain Python function would turn into a bound method."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)


def count_fast_calls(proto: Any, counters: List[_Counted]) -> Any:
    """Assert ``proto`` is really accelerated (fastbinary) and count its calls."""
    from thrift.protocol import fastbinary

    assert proto._fast_encode is fastbinary.encode_binary, "fastbinary encode not in use"
    assert proto._fast_decode is fastbinary.decode_binary, "fastbinary decode not in use"
    proto._fast_encode = _Counted(proto._fast_encode)
    proto._fast_decode = _Counted(proto._fast_decode)
    counters += [proto._fast_encode, proto._fast_decode]
    return proto


class CountingAcceleratedFactory(peers.apache_binary.TBinaryProtocolAcceleratedFactory):
    def __init__(self) -> None:
        super().__init__(fallback=False)
        self.counters: List[_Counted] = []

    def getProtocol(self, trans):  # noqa: N802 (Apache's name)
        return count_fast_calls(super().getProtocol(trans), self.counters)

    def fast_calls(self) -> int:
        return sum(c.calls for c in self.counters)


def apache_mux_clients(idl: Any, port: int, framed: bool, accelerated: bool):
    """Apache clients of "All" (AllTypesService), "Base" (BaseService) and
    "Nope" on ONE transport, each through its TMultiplexedProtocol."""
    sock = apache_socket.TSocket(HOST, port)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    trans = apache_transport.TFramedTransport(sock) if framed else apache_transport.TBufferedTransport(sock)
    counters: List[_Counted] = []
    if accelerated:
        proto = count_fast_calls(peers.apache_binary.TBinaryProtocolAccelerated(trans, fallback=False), counters)
    else:
        proto = peers.apache_binary.TBinaryProtocol(trans)
    trans.open()
    clients = {
        "All": idl.services["AllTypesService"].Client(apache_mux_protocol.TMultiplexedProtocol(proto, "All")),
        "Base": idl.services["BaseService"].Client(apache_mux_protocol.TMultiplexedProtocol(proto, "Base")),
        "Nope": idl.services["BaseService"].Client(apache_mux_protocol.TMultiplexedProtocol(proto, "Nope")),
    }
    return clients, trans, counters


@pytest.mark.interop
@pytest.mark.parametrize("accelerated", [False, True], ids=["pure", "accel"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_apache_multiplexed_clients_against_our_server(apache_alltypes, framed, accelerated):
    idl = apache_alltypes
    all_handler, base_handler = AllTypesHandler(AT), AllTypesHandler(AT)
    mux = aiothrift.TMultiplexedProcessor()
    mux.register("All", AT.AllTypesService, all_handler)
    mux.register("Base", AT.BaseService, base_handler)
    server = await aiothrift.create_server(mux, None, (HOST, 0), framed=framed)
    async with server:
        clients, trans, counters = await in_thread(apache_mux_clients, idl, server.port, framed, accelerated)
        try:
            assert await in_thread(clients["All"].base_add, 2, 3) == 5
            assert await in_thread(clients["Base"].base_add, 20, 30) == 50
            assert all_handler.last("base_add") == (2, 3) and base_handler.last("base_add") == (20, 30)
            assert await in_thread(clients["All"].echo_string, "mux ✓") == "mux ✓"
            assert await in_thread(clients["All"].echo_struct, idl.ttypes.Point(x=1, y=-1)) == idl.ttypes.Point(x=1, y=-1)
            with pytest.raises(idl.ttypes.NotFound):
                await in_thread(clients["All"].may_fail, 1)
            await in_thread(clients["All"].fire, "evt", 3)  # oneway
            assert await all_handler.wait_for("fire") == ("evt", 3)
            with pytest.raises(peers.apache_thrift.TApplicationException) as info:
                await in_thread(clients["Nope"].version)
            assert info.value.type == peers.UNKNOWN_METHOD and "Nope" in info.value.message
            assert await in_thread(clients["Base"].version) == "alltypes 1 ✓"  # the connection goes on
            if accelerated:
                assert all(c.calls > 0 for c in counters), "Apache client did not use fastbinary"
        finally:
            await in_thread(trans.close)


@contextlib.asynccontextmanager
async def apache_mux_server(idl: Any, handlers: dict, kind: str, framed: bool, accelerated: bool):
    """Apache TMultiplexedProcessor ("All", "Base") under TSimpleServer or
    TThreadedServer in a daemon thread; yields the port."""
    mux = apache_mux_processor.TMultiplexedProcessor()
    mux.registerProcessor("All", idl.services["AllTypesService"].Processor(handlers["All"]))
    mux.registerProcessor("Base", idl.services["BaseService"].Processor(handlers["Base"]))
    listener = peers._ApacheListener()
    tfactory = (apache_transport.TFramedTransportFactory() if framed
                else apache_transport.TBufferedTransportFactory())
    pfactory = CountingAcceleratedFactory() if accelerated else peers.apache_binary.TBinaryProtocolFactory()
    if kind == "simple":
        server = apache_server.TSimpleServer(mux, listener, tfactory, pfactory)
    else:
        server = apache_server.TThreadedServer(mux, listener, tfactory, pfactory, daemon=True)
    errors: List[BaseException] = []

    def run() -> None:
        try:
            server.serve()
        except peers._Stopped:
            pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="apache-mux-%s" % kind, daemon=True)
    thread.start()
    try:
        yield listener.bound_port
    finally:
        listener.stop()
        await asyncio.wait_for(asyncio.to_thread(thread.join, CALL_TIMEOUT), CALL_TIMEOUT + 1)
        assert not thread.is_alive(), "Apache server thread did not stop"
        assert not errors, errors
        if accelerated:
            assert pfactory.fast_calls() > 0


@pytest.mark.interop
@pytest.mark.parametrize("accelerated", [False, True], ids=["pure", "accel"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@pytest.mark.parametrize("kind", ["simple", "threaded"])
@rpc_test
async def test_our_multiplexed_client_against_apache_server(apache_alltypes, kind, framed, accelerated,
                                                            quiet_peer_logs):
    idl = apache_alltypes
    handlers = {"All": AllTypesHandler(idl.ttypes), "Base": AllTypesHandler(idl.ttypes)}
    async with apache_mux_server(idl, handlers, kind, framed, accelerated) as port:
        options = dict(framed=framed, timeout=CALL_TIMEOUT, connect_timeout=CALL_TIMEOUT)
        # TSimpleServer serves one connection at a time: one after the other
        async with await aiothrift.create_connection(AT.AllTypesService, (HOST, port), service_name="All",
                                                     **options) as conn:
            assert await conn.base_add(2, 3) == 5
            assert await conn.echo_string("mux ✓") == "mux ✓"
            with pytest.raises(AT.NotFound):
                await conn.may_fail(1)
            await conn.fire("evt", 4)
            assert await handlers["All"].wait_for("fire") == ("evt", 4)
        async with await aiothrift.create_pool(AT.BaseService, (HOST, port), service_name="Base", minsize=1,
                                               maxsize=1, **options) as pool:
            assert await pool.base_add(20, 30) == 50
            assert await pool.version() == "alltypes 1 ✓"
        assert handlers["All"].last("base_add") == (2, 3) and handlers["Base"].last("base_add") == (20, 30)
        # Apache's processor raises on an unknown service; its server drops the connection
        async with await aiothrift.create_connection(AT.BaseService, (HOST, port), service_name="Nope",
                                                     **options) as conn:
            with pytest.raises(ConnectionClosedError):
                await conn.version()
        if kind == "threaded":  # several services, several connections at once
            async with await aiothrift.create_connection(AT.AllTypesService, (HOST, port), service_name="All",
                                                         **options) as a, \
                    await aiothrift.create_connection(AT.BaseService, (HOST, port), service_name="Base",
                                                      **options) as b:
                assert await asyncio.gather(a.base_add(1, 1), b.base_add(2, 2), a.version()) == [
                    2, 4, "alltypes 1 ✓"]


def tp2_mux_client(port: int, framed: bool, name: str, service: Any):
    sock = tp2_socket.TSocket(HOST, port, socket_timeout=SOCKET_TIMEOUT_MS, connect_timeout=SOCKET_TIMEOUT_MS)
    trans = tp2_framed.TFramedTransport(sock) if framed else tp2_buffered.TBufferedTransport(sock)
    trans.open()
    proto = Tp2MultiplexedProtocol(tp2_binary.TBinaryProtocol(trans), name)
    return Tp2Client(service, proto), trans


@pytest.mark.interop
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_thriftpy2_multiplexed_client_against_our_server(framed):
    all_handler, base_handler = AllTypesHandler(AT), AllTypesHandler(AT)
    mux = aiothrift.TMultiplexedProcessor()
    mux.register("All", AT.AllTypesService, all_handler)
    mux.register("Base", AT.BaseService, base_handler)
    async with await aiothrift.create_server(mux, None, (HOST, 0), framed=framed) as server:
        a, ta = await in_thread(tp2_mux_client, server.port, framed, "All", AT.AllTypesService)
        b, tb = await in_thread(tp2_mux_client, server.port, framed, "Base", AT.BaseService)
        try:
            assert await in_thread(a.base_add, 2, 3) == 5
            assert await in_thread(b.base_add, 20, 30) == 50
            assert all_handler.last("base_add") == (2, 3) and base_handler.last("base_add") == (20, 30)
            assert await in_thread(a.echo_string, "tp2 ✓") == "tp2 ✓"
            with pytest.raises(AT.NotFound):
                await in_thread(a.may_fail, 1)
        finally:
            await in_thread(ta.close)
            await in_thread(tb.close)


@pytest.mark.interop
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_our_multiplexed_client_against_thriftpy2_server(framed, quiet_peer_logs):
    handlers = {"All": AllTypesHandler(AT), "Base": AllTypesHandler(AT)}
    mux = Tp2MultiplexedProcessor()
    mux.register_processor("All", Tp2Processor(AT.AllTypesService, handlers["All"]))
    mux.register_processor("Base", Tp2Processor(AT.BaseService, handlers["Base"]))
    listener = peers._Tp2Listener()
    tfactory = tp2_framed.TFramedTransportFactory() if framed else tp2_buffered.TBufferedTransportFactory()
    server = tp2_server.TThreadedServer(mux, listener, itrans_factory=tfactory,
                                        iprot_factory=tp2_binary.TBinaryProtocolFactory(), daemon=True)
    errors: List[BaseException] = []

    def run() -> None:
        try:
            server.serve()
        except peers._Stopped:
            pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="tp2-mux", daemon=True)
    thread.start()
    try:
        options = dict(framed=framed, timeout=CALL_TIMEOUT, connect_timeout=CALL_TIMEOUT)
        async with await aiothrift.create_connection(AT.AllTypesService, (HOST, listener.bound_port),
                                                     service_name="All", **options) as a, \
                await aiothrift.create_pool(AT.BaseService, (HOST, listener.bound_port), service_name="Base",
                                            **options) as b:
            assert await a.base_add(2, 3) == 5
            assert await b.base_add(20, 30) == 50
            assert handlers["All"].last("base_add") == (2, 3) and handlers["Base"].last("base_add") == (20, 30)
            assert await a.echo_string("tp2 ✓") == "tp2 ✓"
            with pytest.raises(AT.NotFound):
                await a.may_fail(1)
    finally:
        server.close()
        listener.stop()
        await asyncio.wait_for(asyncio.to_thread(thread.join, CALL_TIMEOUT), CALL_TIMEOUT + 1)
    assert not thread.is_alive()
    assert not errors, errors
