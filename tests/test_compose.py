"""Every option composes (issue 6): codec x framing x transport x multiplexing.

The matrix, for a connection AND a pool against our server, on both codec
implementations (compiled, pure Python):

    {binary, compact} x {framed, buffered} x {tcp, tls, unix} x {plain, multiplexed}

``tls`` is mutual TLS (the server requires a client certificate of the test
CA; certificates made at test time, ``certs.py``); over a Unix socket the
client names the server with ``server_hostname``.  ``multiplexed`` serves two
services on one ``TMultiplexedProcessor`` and binds the clients with
``service_name``.  Each combination makes one round of a few calls (cheap):
every combination runs on asyncio, and half of them (compact + multiplexed,
binary + plain) on uvloop too.  :func:`test_compact_framed_tls_multiplexed_pool`
is the headline case of the issue, on both loops, with more traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any, Dict

import pytest

import aiothrift
import peers
import rpc_util
from aiothrift.limits import DEFAULT_MAX_FRAME_SIZE
from certs import pki  # noqa: F401  (pytest fixture)
from rpc_util import LOOPS, RPC, AsyncHandler, Point, UserError, rpc_test

AT = peers.tp2_module("alltypes")
HOST = "127.0.0.1"

CODECS = ("binary", "compact")
FRAMINGS = ("buffered", "framed")
TRANSPORTS = ("tcp", "tls", "unix")
MUXES = ("plain", "multiplexed")


def compact_protocol_cls(impl: Any) -> type:
    """A TCompactProtocol whose codec and readers come from ``impl``."""
    compact = importlib.import_module("aiothrift._compact" if impl.name == "compiled" else "aiothrift._compact_py")
    framing = impl.framing

    class ImplCompactProtocol(aiothrift.TCompactProtocol):
        __slots__ = ()

        def _make_codec(self) -> Any:
            return compact.CompactCodec(
                strict_read=self.strict_read, strict_write=self.strict_write,
                decode_response=self.decode_response, max_string_size=self.max_string_size,
                max_container_size=self.max_container_size, max_depth=self.max_depth)

        def make_reader(self, *, framed: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
            if framed:
                return framing.FramedReader(max_frame_size=max_frame_size)
            return compact.CompactBufferedReader(
                max_frame_size=max_frame_size, max_string_size=self.max_string_size,
                max_container_size=self.max_container_size, max_depth=self.max_depth,
                strict_read=self.strict_read)

    ImplCompactProtocol.__name__ = ImplCompactProtocol.__qualname__ = "ImplCompactProtocol_%s" % impl.name
    return ImplCompactProtocol


def protocol_for(codec: str, impl: Any) -> type:
    return rpc_util.make_protocol_cls(impl) if codec == "binary" else compact_protocol_cls(impl)


class BaseHandler:
    async def ping(self):
        return None

    def version(self):
        return "base"

    async def base_add(self, a, b):
        return a + b + 1000


def _matrix():
    params = []
    for codec in CODECS:
        for framing in FRAMINGS:
            for transport in TRANSPORTS:
                for mux in MUXES:
                    loops = ["asyncio"]
                    if (codec, mux) in (("compact", "multiplexed"), ("binary", "plain")):
                        loops.append("uvloop")
                    for loop in loops:
                        params.append(pytest.param(
                            LOOPS[loop], codec, framing, transport, mux,
                            id="-".join((loop, codec, framing, transport, mux))))
    return params


@contextlib.asynccontextmanager
async def stack(pki: Any, tmp_path: Any, proto: type, framed: bool, transport: str, mux: str,
                handler: Any = None):
    """Our server for one combination; yields (server, client options by service)."""
    handler = handler or AsyncHandler()
    server_kwargs: Dict[str, Any] = dict(protocol_cls=proto, framed=framed, grace_period=1)
    client: Dict[str, Any] = dict(protocol_cls=proto, framed=framed, timeout=10, connect_timeout=10)
    if transport == "tls":
        server_kwargs["ssl"] = pki.server_context(require_client_cert=True)
        client["ssl"] = pki.client_context(client_cert="client")
    if transport == "unix":
        address: Any = str(tmp_path / "compose.sock")
        # TLS over a Unix socket: covered by the headline test and test_tls.py
    else:
        address = (HOST, 0)
    if mux == "multiplexed":
        processor = aiothrift.TMultiplexedProcessor()
        processor.register("Calc", RPC.RpcTest, handler)
        processor.register("Base", AT.BaseService, BaseHandler())
        server = await aiothrift.create_server(processor, None, address, **server_kwargs)
        calc = dict(client, service_name="Calc")
        base = dict(client, service_name="Base")
    else:
        server = await aiothrift.create_server(RPC.RpcTest, handler, address, **server_kwargs)
        calc, base = client, None
    target = address if transport == "unix" else (HOST, server.port)
    try:
        yield server, target, calc, base
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


async def round_trip(client: Any) -> None:
    assert await client.add(1, 2) == 3
    assert await client.move(Point(x=1, y=2, label="ü"), 3, 4) == Point(x=4, y=6, label="ü")
    with pytest.raises(UserError):
        await client.raise_declared(1)


def check_transport(conn: aiothrift.ThriftConnection, transport: str, proto: type) -> None:
    tr = conn._transport
    assert (tr.get_extra_info("ssl_object") is not None) == (transport == "tls")
    peer = tr.get_extra_info("peername")
    assert isinstance(peer, str) == (transport == "unix"), peer
    assert isinstance(conn._oprot, proto)


@pytest.mark.parametrize("loop_factory, codec, framing, transport, mux", _matrix())
@rpc_test
async def test_matrix(loop_factory, impl, pki, tmp_path, codec, framing, transport, mux):
    proto = protocol_for(codec, impl)
    framed = framing == "framed"
    async with stack(pki, tmp_path, proto, framed, transport, mux) as (server, target, calc, base):
        # a connection
        conn = await aiothrift.create_connection(RPC.RpcTest, target, **calc)
        async with conn:
            check_transport(conn, transport, proto)
            await round_trip(conn)
            assert await asyncio.gather(*[conn.echo("m%d" % i) for i in range(10)]) == ["m%d" % i for i in range(10)]
        # a pool
        pool = await aiothrift.create_pool(RPC.RpcTest, target, minsize=1, maxsize=2, **calc)
        async with pool:
            await round_trip(pool)
            assert await asyncio.gather(pool.slow(1, 0.01), pool.slow(2, 0.01)) == [1, 2]
            if base is not None:
                # a second service on the same server, through its own pool
                bpool = await aiothrift.create_pool(AT.BaseService, target, minsize=0, maxsize=1, **base)
                async with bpool:
                    assert await bpool.base_add(1, 2) == 1003


@pytest.mark.parametrize("loop_factory", list(LOOPS.values()), ids=list(LOOPS))
@pytest.mark.parametrize("transport", ["tcp", "unix"])
@rpc_test
async def test_compact_framed_tls_multiplexed_pool(loop_factory, impl, pki, tmp_path, transport):
    """compact + framed + mutual TLS + multiplexed, on pools (the issue's case)."""
    proto = compact_protocol_cls(impl)
    handler = AsyncHandler()
    mux = aiothrift.TMultiplexedProcessor()
    mux.register("Calc", RPC.RpcTest, handler)
    mux.register("Base", AT.BaseService, BaseHandler())
    address: Any = str(tmp_path / "headline.sock") if transport == "unix" else (HOST, 0)
    server = await aiothrift.create_server(mux, None, address, protocol_cls=proto, framed=True,
                                           ssl=pki.server_context(require_client_cert=True), grace_period=1)
    async with server:
        target = address if transport == "unix" else (HOST, server.port)
        options = dict(protocol_cls=proto, framed=True, ssl=pki.client_context(client_cert="client"),
                       server_hostname="localhost", timeout=10, connect_timeout=10, minsize=2, maxsize=4)
        calc = await aiothrift.create_pool(RPC.RpcTest, target, service_name="Calc", **options)
        base = await aiothrift.create_pool(AT.BaseService, target, service_name="Base", **options)
        async with calc, base:
            await round_trip(calc)
            results = await asyncio.gather(*[calc.slow(i, 0.02) for i in range(8)],
                                           *[base.base_add(i, i) for i in range(8)])
            assert results == list(range(8)) + [1000 + 2 * i for i in range(8)]
            assert calc.size == 4 and base.size == 4
            blob = bytes(range(256)) * 2000  # frames of many TLS records
            assert await calc.echo_bytes(blob) == blob
            await calc.notify("headline")
            assert await calc.notified() == ["headline"]
            assert await base.version() == "base"
            async with calc.acquire() as conn:
                assert conn.service_name == "Calc"
                assert conn._transport.get_extra_info("ssl_object") is not None
                assert isinstance(conn._oprot, aiothrift.TCompactProtocol)
            assert calc.size >= 2 and base.size >= 2
    if transport == "unix":
        assert not (tmp_path / "headline.sock").exists()
