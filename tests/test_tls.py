"""TLS on the server, the connection and the pool (issue 6).

Certificates are made at test time (``certs.py``): a test CA, a server
certificate for localhost / 127.0.0.1 / ::1, a client certificate, and an
unrelated CA with a "rogue" client certificate of its own.

* server authentication: the client checks the server against the CA and the
  host name (``server_hostname=``, SNI); the wrong CA or the wrong name is
  refused with :class:`ssl.SSLCertVerificationError` at connect time;
* mutual TLS: the server requires a client certificate of its CA; a client
  without one, or with the rogue one, gets nothing served (TLS 1.3: its first
  call fails with ConnectionClosedError; TLS 1.2: the connect fails);
* TLS composes with framed/buffered, both codecs (``test_compose.py`` runs
  the full matrix), Unix sockets and pools;
* interop: Apache's ``TSSLSocket`` client against our TLS server and our TLS
  client against Apache's ``TSSLServerSocket`` under ``TSimpleServer`` and
  ``TThreadedServer`` (daemon threads), with and without client certificates.

Local tests run on both loops and both codec implementations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from typing import Any, Callable, List

import pytest
from thrift.protocol import TBinaryProtocol as apache_binary
from thrift.server import TServer as apache_server
from thrift.transport import TSSLSocket as apache_ssl
from thrift.transport import TTransport as apache_transport

import aiothrift
import peers
import rpc_util
from aiothrift import ConnectionClosedError
from certs import pki  # noqa: F401  (pytest fixture)
from peers import apache_alltypes  # noqa: F401  (pytest fixture)
from peers import CALL_TIMEOUT, HOST, SOCKET_TIMEOUT_MS, AllTypesHandler
from rpc_util import RPC, AsyncHandler, Point, UserError, rpc_test, serving, wait_until

loop_factory = rpc_util.loop_factory
proto = rpc_util.proto

AT = peers.tp2_module("alltypes")


def quiet_loop() -> List[dict]:
    """Collect the running loop's error reports (refused handshakes are
    logged by asyncio on the server side) instead of printing them."""
    seen: List[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: seen.append(ctx))
    return seen


async def tls_connect(server: aiothrift.Server, proto: type, ctx: ssl.SSLContext, **kwargs: Any):
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("timeout", 10)
    return await rpc_util.connect(server, proto, ssl=ctx, **kwargs)


async def some_calls(client: Any) -> None:
    assert await client.add(1, 2) == 3
    assert await client.move(Point(x=1, y=2, label="p"), 10, 20) == Point(x=11, y=22, label="p")
    with pytest.raises(UserError):
        await client.raise_declared(1)


def peer_common_name(transport: Any) -> str:
    cert = transport.get_extra_info("peercert")
    return dict(item[0] for item in cert["subject"])["commonName"]


# ---------------------------------------------------------------- server authentication

@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_server_auth(proto, framed, pki):
    async with serving(proto, framed=framed, ssl=pki.server_context()) as server:
        conn = await tls_connect(server, proto, pki.client_context(), framed=framed)
        async with conn:
            await some_calls(conn)
            # many calls in flight, and a reply bigger than a TLS record
            assert await asyncio.gather(*[conn.echo("t%d" % i) for i in range(50)]) == [
                "t%d" % i for i in range(50)]
            blob = bytes(range(256)) * 1000
            assert await conn.echo_bytes(blob) == blob
            assert peer_common_name(conn._transport) == "localhost"
            assert conn._transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            (server_side,) = server._connections
            assert server_side._transport.get_extra_info("sslcontext") is not None


@rpc_test
async def test_server_hostname_is_checked_and_sent_as_sni(proto, pki):
    names: List[Any] = []
    server_ctx = pki.server_context()
    server_ctx.sni_callback = lambda sslobj, name, ctx: names.append(name)
    async with serving(proto, ssl=server_ctx) as server:
        # 127.0.0.1 matches the certificate's IP address; no SNI for an IP
        async with await tls_connect(server, proto, pki.client_context()) as conn:
            assert await conn.add(1, 1) == 2
        # server_hostname: checked against the certificate's DNS name, sent as SNI
        async with await tls_connect(server, proto, pki.client_context(), server_hostname="localhost") as conn:
            assert await conn.add(2, 2) == 4
        assert names == [None, "localhost"]
        quiet_loop()
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await tls_connect(server, proto, pki.client_context(), server_hostname="not-localhost.test")
        # the server goes on
        async with await tls_connect(server, proto, pki.client_context(), server_hostname="localhost") as conn:
            assert await conn.add(3, 3) == 6


@rpc_test
async def test_wrong_ca_is_refused(proto, pki):
    quiet_loop()
    async with serving(proto, ssl=pki.server_context()) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await tls_connect(server, proto, pki.client_context(ca=pki.other_ca))
        # a client trusting no CA at all (the system store lacks the test CA)
        with pytest.raises(ssl.SSLCertVerificationError):
            await tls_connect(server, proto, ssl.create_default_context(cafile=pki.other_ca))
        await wait_until(lambda: server.connections == 0)
        async with await tls_connect(server, proto, pki.client_context()) as conn:
            assert await conn.add(1, 2) == 3


@rpc_test
async def test_pool_wrong_ca_is_refused_and_pool_stays_usable(proto, pki):
    quiet_loop()
    async with serving(proto, ssl=pki.server_context()) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await aiothrift.create_pool(RPC.RpcTest, (HOST, server.port), protocol_cls=proto,
                                        ssl=pki.client_context(ca=pki.other_ca), connect_timeout=10)
        pool = await aiothrift.create_pool(RPC.RpcTest, (HOST, server.port), protocol_cls=proto, minsize=0,
                                           ssl=pki.client_context(ca=pki.other_ca), connect_timeout=10)
        async with pool:
            for _ in range(2):  # the failure frees the slot each time
                with pytest.raises(ssl.SSLCertVerificationError):
                    await pool.add(1, 2)
            assert pool.size == 0


@rpc_test
async def test_plain_client_on_tls_server_and_tls_client_on_plain_server(proto, pki):
    quiet_loop()
    async with serving(proto, ssl=pki.server_context()) as server:
        plain = await rpc_util.connect(server, proto, timeout=5)
        with pytest.raises((ConnectionClosedError, asyncio.TimeoutError)):
            await plain.add(1, 2)
        plain.close()
        async with await tls_connect(server, proto, pki.client_context()) as conn:
            assert await conn.add(1, 2) == 3
    async with serving(proto) as server:
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.TimeoutError)):
            await tls_connect(server, proto, pki.client_context(), connect_timeout=5)
        async with await rpc_util.connect(server, proto) as conn:
            assert await conn.add(1, 2) == 3


@rpc_test
async def test_server_hostname_needs_ssl(proto):
    async with serving(proto) as server:
        with pytest.raises(ValueError, match="server_hostname"):
            await rpc_util.connect(server, proto, server_hostname="localhost")


# ---------------------------------------------------------------- mutual TLS

@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_mutual_tls(proto, framed, pki):
    async with serving(proto, framed=framed, ssl=pki.server_context(require_client_cert=True)) as server:
        conn = await tls_connect(server, proto, pki.client_context(client_cert="client"), framed=framed)
        async with conn:
            await some_calls(conn)
            (server_side,) = server._connections
            assert peer_common_name(server_side._transport) == "aiothrift test client"
            assert peer_common_name(conn._transport) == "localhost"


async def refused(server: aiothrift.Server, proto: type, ctx: ssl.SSLContext, **kwargs: Any) -> BaseException:
    """What a client the server refuses gets: the connect fails (TLS 1.2), or
    (TLS 1.3: the client's handshake ends before the server checks its
    certificate) the first call fails with ConnectionClosedError."""
    try:
        conn = await tls_connect(server, proto, ctx, **kwargs)
    except (ssl.SSLError, ConnectionError) as exc:
        return exc
    try:
        with pytest.raises(ConnectionClosedError) as info:
            await conn.add(1, 2)
    finally:
        conn.close()
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, OSError)
    return info.value


@pytest.mark.parametrize("tls_version", ["TLSv1_2", "TLSv1_3"])
@rpc_test
async def test_mutual_tls_refuses_clients_without_a_good_certificate(proto, pki, tls_version):
    seen = quiet_loop()
    server_ctx = pki.server_context(require_client_cert=True)
    server_ctx.minimum_version = server_ctx.maximum_version = getattr(ssl.TLSVersion, tls_version)
    handler = AsyncHandler()
    async with serving(proto, handler, ssl=server_ctx) as server:
        no_cert = await refused(server, proto, pki.client_context())
        rogue = await refused(server, proto, pki.client_context(client_cert="rogue-client"))
        if tls_version == "TLSv1_2":
            assert isinstance(no_cert, OSError) and isinstance(rogue, OSError)
        # the server served nothing to them, and goes on
        assert server.connections == 0
        assert all(isinstance(ctx.get("exception"), OSError) for ctx in seen), seen
        async with await tls_connect(server, proto, pki.client_context(client_cert="client")) as conn:
            assert await conn.add(1, 2) == 3
            assert conn._transport.get_extra_info("ssl_object").version() == tls_version.replace("_", ".")


@rpc_test
async def test_mutual_tls_pool(proto, pki):
    handler = AsyncHandler()
    async with serving(proto, handler, ssl=pki.server_context(require_client_cert=True)) as server:
        pool = await aiothrift.create_pool(
            RPC.RpcTest, (HOST, server.port), protocol_cls=proto, minsize=2, maxsize=4,
            ssl=pki.client_context(client_cert="client"), server_hostname="localhost",
            connect_timeout=10, timeout=10)
        async with pool:
            assert pool.freesize == 2
            await some_calls(pool)
            assert await asyncio.gather(*[pool.slow(i, 0.05) for i in range(4)]) == list(range(4))
            assert pool.size == 4  # two free ones and two new ones, all busy at once
            async with pool.acquire() as conn:
                assert peer_common_name(conn._transport) == "localhost"


@rpc_test
async def test_tls_over_unix_socket(proto, pki, tmp_path):
    path = tmp_path / "tls.sock"
    server = await aiothrift.create_server(RPC.RpcTest, AsyncHandler(), path, protocol_cls=proto,
                                           ssl=pki.server_context(require_client_cert=True))
    async with server:
        ctx = pki.client_context(client_cert="client")
        with pytest.raises(ValueError, match="server_hostname"):  # no host name to check
            await aiothrift.create_connection(RPC.RpcTest, path, protocol_cls=proto, ssl=ctx)
        conn = await aiothrift.create_connection(RPC.RpcTest, path, protocol_cls=proto, ssl=ctx,
                                                 server_hostname="localhost", connect_timeout=10)
        async with conn:
            await some_calls(conn)
        pool = await aiothrift.create_pool(RPC.RpcTest, str(path), protocol_cls=proto, ssl=ctx,
                                           server_hostname="localhost", connect_timeout=10)
        async with pool:
            await some_calls(pool)
    assert not path.exists()


# ---------------------------------------------------------------- interop with Apache

class _ApacheTLSListener(apache_ssl.TSSLServerSocket):
    """Apache's TLS server socket on 127.0.0.1:0, bound up front, stoppable
    (as ``peers._ApacheListener``)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        super().__init__(host=HOST, port=0, ssl_context=ctx)
        self.stopping = False
        self.clients: list = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(16)
        self.handle = sock

    def listen(self) -> None:  # already listening
        pass

    def accept(self):
        try:
            client = super().accept()  # the handshake: None when it fails
        except OSError:
            if self.stopping:
                raise peers._Stopped() from None
            raise
        if self.stopping:
            if client is not None:
                client.close()
            raise peers._Stopped()
        if client is not None:
            self.clients.append(client.handle)
        return client

    @property
    def bound_port(self) -> int:
        return self.handle.getsockname()[1]

    def stop(self) -> None:
        self.stopping = True
        peers._shutdown_sockets([self.handle] + self.clients)


@contextlib.asynccontextmanager
async def apache_tls_server(idl: Any, handler: Any, ctx: ssl.SSLContext, kind: str, framed: bool):
    """Apache ``TSimpleServer`` / ``TThreadedServer`` of AllTypesService with a
    ``TSSLServerSocket``, in a daemon thread; yields the port."""
    listener = _ApacheTLSListener(ctx)
    processor = idl.services["AllTypesService"].Processor(handler)
    tfactory = (apache_transport.TFramedTransportFactory() if framed
                else apache_transport.TBufferedTransportFactory())
    pfactory = apache_binary.TBinaryProtocolFactory()
    if kind == "simple":
        server = apache_server.TSimpleServer(processor, listener, tfactory, pfactory)
    else:
        server = apache_server.TThreadedServer(processor, listener, tfactory, pfactory, daemon=True)
    errors: List[BaseException] = []

    def run() -> None:
        try:
            server.serve()
        except peers._Stopped:
            pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="apache-tls-%s" % kind, daemon=True)
    thread.start()
    try:
        yield listener.bound_port
    finally:
        listener.stop()
        await asyncio.wait_for(asyncio.to_thread(thread.join, CALL_TIMEOUT), CALL_TIMEOUT + 1)
        assert not thread.is_alive(), "Apache TLS server thread did not stop"
        assert not errors, errors


def apache_tls_client(idl: Any, port: int, ctx: ssl.SSLContext, framed: bool, server_hostname: str = "localhost"):
    """An Apache AllTypesService client over ``TSSLSocket`` (opened; blocking)."""
    sock = apache_ssl.TSSLSocket(HOST, port, ssl_context=ctx, server_hostname=server_hostname)
    sock.setTimeout(SOCKET_TIMEOUT_MS)
    trans = apache_transport.TFramedTransport(sock) if framed else apache_transport.TBufferedTransport(sock)
    client = idl.services["AllTypesService"].Client(apache_binary.TBinaryProtocol(trans))
    trans.open()
    return client, trans


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), CALL_TIMEOUT)


@pytest.fixture
def quiet_apache_logs():
    """Apache logs refused handshakes with tracebacks: keep them out of the output."""
    logger = logging.getLogger("thrift")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


@pytest.mark.interop
@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@rpc_test
async def test_apache_tls_client_against_our_server(apache_alltypes, pki, framed, mutual, quiet_apache_logs):
    idl = apache_alltypes
    handler = AllTypesHandler(AT)
    server = await aiothrift.create_server(
        AT.AllTypesService, handler, (HOST, 0), framed=framed,
        ssl=pki.server_context(require_client_cert=mutual))
    async with server:
        ctx = pki.client_context(client_cert="client" if mutual else None)
        client, trans = await in_thread(apache_tls_client, idl, server.port, ctx, framed)
        try:
            assert await in_thread(client.base_add, 2, 3) == 5
            assert await in_thread(client.echo_string, "tls ✓ 🌍") == "tls ✓ 🌍"
            big = bytes(range(256)) * 400
            assert await in_thread(client.echo_binary, big) == big
            with pytest.raises(idl.ttypes.NotFound):
                await in_thread(client.may_fail, 1)
            assert await in_thread(client.version) == "alltypes 1 ✓"
            (server_side,) = server._connections
            if mutual:
                assert peer_common_name(server_side._transport) == "aiothrift test client"
        finally:
            await in_thread(trans.close)
        # Apache's client checks our server's certificate too
        quiet_loop()
        with pytest.raises(apache_transport.TTransportException) as info:
            await in_thread(apache_tls_client, idl, server.port, pki.client_context(ca=pki.other_ca), framed)
        assert isinstance(info.value.inner, ssl.SSLCertVerificationError)
        if mutual:
            # and our server refuses an Apache client without a certificate
            # (TLS 1.3: seen at its first call)
            def no_cert_call() -> None:
                client, trans = apache_tls_client(idl, server.port, pki.client_context(), framed)
                try:
                    client.base_add(1, 1)
                finally:
                    trans.close()

            with pytest.raises((apache_transport.TTransportException, OSError)):
                await in_thread(no_cert_call)


@pytest.mark.interop
@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
@pytest.mark.parametrize("kind", ["simple", "threaded"])
@rpc_test
async def test_our_tls_client_against_apache_server(apache_alltypes, pki, kind, framed, mutual, quiet_apache_logs):
    idl = apache_alltypes
    handler = AllTypesHandler(idl.ttypes)
    server_ctx = pki.server_context(require_client_cert=mutual)
    async with apache_tls_server(idl, handler, server_ctx, kind, framed) as port:
        ctx = pki.client_context(client_cert="client" if mutual else None)
        conn = await aiothrift.create_connection(
            AT.AllTypesService, (HOST, port), framed=framed, ssl=ctx, server_hostname="localhost",
            connect_timeout=CALL_TIMEOUT, timeout=CALL_TIMEOUT)
        async with conn:
            assert await conn.base_add(2, 3) == 5
            assert await conn.echo_string("tls ✓ 🌍") == "tls ✓ 🌍"
            big = bytes(range(256)) * 400
            assert await conn.echo_binary(big) == big
            with pytest.raises(AT.NotFound):
                await conn.may_fail(1)
            await conn.fire("event", 7)
            assert await conn.version() == "alltypes 1 ✓"
            assert await handler.wait_for("fire") == ("event", 7)
            assert peer_common_name(conn._transport) == "localhost"
        # the wrong CA: refused at connect, with the verification error
        with pytest.raises(ssl.SSLCertVerificationError):
            await aiothrift.create_connection(
                AT.AllTypesService, (HOST, port), framed=framed,
                ssl=pki.client_context(ca=pki.other_ca, client_cert="client" if mutual else None),
                connect_timeout=CALL_TIMEOUT)
        if mutual:
            # Apache (a blocking ssl socket) sends its alert: our call fails
            # with ConnectionClosedError caused by the TLS alert.
            conn = await aiothrift.create_connection(
                AT.AllTypesService, (HOST, port), framed=framed, ssl=pki.client_context(),
                connect_timeout=CALL_TIMEOUT, timeout=CALL_TIMEOUT)
            async with conn:
                with pytest.raises(ConnectionClosedError) as info:
                    await conn.base_add(1, 1)
            assert isinstance(info.value.__cause__, OSError), repr(info.value.__cause__)
        # the server still serves good clients
        conn = await aiothrift.create_connection(
            AT.AllTypesService, (HOST, port), framed=framed, ssl=ctx, connect_timeout=CALL_TIMEOUT,
            timeout=CALL_TIMEOUT)
        async with conn:
            assert await conn.base_add(4, 5) == 9
