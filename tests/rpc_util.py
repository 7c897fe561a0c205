"""Helpers shared by the RPC tests (test_connection, test_server, test_pool).

Every RPC test runs on both event loops (asyncio, uvloop) and with both codec
implementations (compiled, pure Python):

* the ``loop_factory`` fixture is parametrized over the loops and the
  :func:`rpc_test` decorator turns an ``async def`` test into a plain test
  that runs it on a fresh loop of that kind (``asyncio.Runner``), bounded by
  ``asyncio.wait_for`` so a hang fails instead of blocking the suite;
* the ``proto`` fixture is a :class:`~aiothrift.TBinaryProtocol` subclass
  bound to the ``impl`` fixture's modules, passed as ``protocol_cls`` so
  both implementations are exercised in one process.

A test module gets the fixtures with ``loop_factory = rpc_util.loop_factory``
and ``proto = rpc_util.proto``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Callable, List, Optional

import pytest
import thriftpy2
import uvloop

import aiothrift
from aiothrift.protocol import TBinaryProtocol

IDL_DIR = Path(__file__).parent / "idl"
RPC = thriftpy2.load(str(IDL_DIR / "rpc_test.thrift"), module_name="rpc_test_thrift")
Point = RPC.Point
UserError = RPC.UserError
OtherError = RPC.OtherError

LOOPS = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

#: Upper bound of one test: a hang fails the test instead of the suite.
TEST_TIMEOUT = 30.0


@pytest.fixture(params=list(LOOPS))
def loop_factory(request) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new event loop of one kind (asyncio / uvloop)."""
    return LOOPS[request.param]


def make_protocol_cls(impl: Any) -> type:
    """A TBinaryProtocol whose codec and readers come from ``impl``'s modules."""
    binary, framing = impl.binary, impl.framing

    class ImplProtocol(TBinaryProtocol):
        __slots__ = ()

        def _make_codec(self) -> Any:
            return binary.BinaryCodec(
                strict_read=self.strict_read,
                strict_write=self.strict_write,
                decode_response=self.decode_response,
                max_string_size=self.max_string_size,
                max_container_size=self.max_container_size,
                max_depth=self.max_depth,
            )

        def make_reader(self, *, framed: bool, max_frame_size: int = aiothrift.limits.DEFAULT_MAX_FRAME_SIZE) -> Any:
            if framed:
                return framing.FramedReader(max_frame_size=max_frame_size)
            return framing.BufferedReader(
                max_frame_size=max_frame_size,
                max_string_size=self.max_string_size,
                max_container_size=self.max_container_size,
                max_depth=self.max_depth,
                strict_read=self.strict_read,
            )

    ImplProtocol.__name__ = ImplProtocol.__qualname__ = "ImplProtocol_%s" % impl.name
    return ImplProtocol


@pytest.fixture
def proto(impl) -> type:
    """``protocol_cls`` using the codec implementation under test."""
    return make_protocol_cls(impl)


def rpc_test(fn: Optional[Callable[..., Any]] = None, *, timeout: float = TEST_TIMEOUT) -> Any:
    """Run an ``async def`` test on a new loop from the ``loop_factory`` fixture.

    The test keeps its other fixtures; it fails if it runs over ``timeout``
    seconds (a generous "does not hang" bound, not a timing assertion).
    """
    if fn is None:
        return functools.partial(rpc_test, timeout=timeout)
    sig = inspect.signature(fn)
    wants_factory = "loop_factory" in sig.parameters

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        factory = kwargs["loop_factory"] if wants_factory else kwargs.pop("loop_factory")
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(fn(**kwargs), timeout))

    params = list(sig.parameters.values())
    if not wants_factory:
        params.insert(0, inspect.Parameter("loop_factory", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    del wrapper.__wrapped__  # pytest must see the new signature, not fn's
    return wrapper


class AsyncHandler:
    """Implements RpcTest with ``async def`` methods."""

    def __init__(self) -> None:
        self.events: List[str] = []
        self.running = 0
        self.max_running = 0
        self.completed = 0

    async def add(self, a, b):
        return a + b

    async def concat(self, second, first):
        return first + second

    async def echo(self, s):
        return s

    async def echo_bytes(self, b):
        return b

    async def move(self, p, dx, dy):
        return Point(x=p.x + dx, y=p.y + dy, label=p.label)

    async def numbers(self, n):
        return list(range(n))

    async def sum(self, values):
        return sum(values)

    async def ping(self):
        return None

    async def slow(self, id, seconds):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
        self.completed += 1
        return id

    async def raise_declared(self, which):
        if which == 1:
            raise UserError(why="nope", code=7)
        raise OtherError(what="other")

    async def raise_undeclared(self, msg):
        raise ValueError(msg)

    async def no_result(self):
        return None

    async def notify(self, event):
        self.events.append(event)

    async def notified(self):
        return list(self.events)

    async def close(self, s):
        return "close:" + s

    async def execute(self, s):
        return "execute:" + s

    async def acquire(self, s):
        return "acquire:" + s


class SyncHandler(AsyncHandler):
    """The same with plain functions (``slow`` stays async: it must sleep)."""

    def add(self, a, b):
        return a + b

    def concat(self, second, first):
        return first + second

    def echo(self, s):
        return s

    def echo_bytes(self, b):
        return b

    def move(self, p, dx, dy):
        return Point(x=p.x + dx, y=p.y + dy, label=p.label)

    def numbers(self, n):
        return list(range(n))

    def sum(self, values):
        return sum(values)

    def ping(self):
        return None

    def raise_declared(self, which):
        if which == 1:
            raise UserError(why="nope", code=7)
        raise OtherError(what="other")

    def raise_undeclared(self, msg):
        raise ValueError(msg)

    def no_result(self):
        return None

    def notify(self, event):
        self.events.append(event)

    def notified(self):
        return list(self.events)

    def close(self, s):
        return "close:" + s

    def execute(self, s):
        return "execute:" + s

    def acquire(self, s):
        return "acquire:" + s


HANDLERS = {"async": AsyncHandler, "sync": SyncHandler}


@contextlib.asynccontextmanager
async def serving(proto: type, handler: Any = None, *, service: Any = None, **kwargs: Any) -> AsyncIterator[aiothrift.Server]:
    """A server on 127.0.0.1, port 0, closed (and waited for) on exit.

    Handlers still running at the end are given 0.5 s (``grace_period``)
    unless the test says otherwise, so tests leaving slow calls behind end fast.
    """
    kwargs.setdefault("grace_period", 0.5)
    server = await aiothrift.create_server(
        service or RPC.RpcTest, handler if handler is not None else AsyncHandler(), ("127.0.0.1", 0),
        protocol_cls=proto, **kwargs)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def connect(server_or_port: Any, proto: type, *, service: Any = None, **kwargs: Any) -> aiothrift.ThriftConnection:
    port = server_or_port if isinstance(server_or_port, int) else server_or_port.port
    return await aiothrift.create_connection(
        service or RPC.RpcTest, ("127.0.0.1", port), protocol_cls=proto, **kwargs)


class ScriptedServer(asyncio.Protocol):
    """A raw peer: records what it receives; the test writes what it wants."""

    instances: List["ScriptedServer"]

    def __init__(self, registry: List["ScriptedServer"], on_data: Optional[Callable[["ScriptedServer"], None]]) -> None:
        self.registry = registry
        self.on_data = on_data
        self.transport: Optional[asyncio.Transport] = None
        self.received = bytearray()
        self.got_data = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.registry.append(self)

    def data_received(self, data):
        self.received += data
        self.got_data.set()
        if self.on_data is not None:
            self.on_data(self)


@contextlib.asynccontextmanager
async def scripted_server(on_data: Optional[Callable[[ScriptedServer], None]] = None) -> AsyncIterator[Any]:
    """``(port, peers)``: a raw TCP server whose connections are ScriptedServer."""
    peers: List[ScriptedServer] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedServer(peers, on_data), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], peers
    finally:
        server.close()
        for p in peers:
            if p.transport is not None:
                p.transport.abort()
        await server.wait_closed()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(interval)
    await asyncio.wait_for(poll(), timeout)


@contextlib.contextmanager
def captured_logs(level: int = logging.DEBUG) -> Any:
    """Records of the "aiothrift" logger (works inside asyncio.Runner tests)."""
    records: List[logging.LogRecord] = []

    class _H(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("aiothrift")
    handler = _H(level)
    old = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


#: A self-signed EC certificate for localhost / 127.0.0.1, valid until 2126,
#: made once with ``openssl req -x509 -newkey ec ...``: TLS tests need no
#: tool or package at test time.
TEST_CERT = """\
-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIUHyi70U/zx1wxIhxVxDzzVrNBWkwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNTE0MjcwNloYDzIxMjYxMTAx
MTQyNzA2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASd1OFGROYtYn+bHrIPeHVzE2N41xa0413/9Tth8cN3tdk8MIFPRgLv
w4ap9sq0AWYEcWbw1Gw9uos7hyxlZmpWo28wbTAdBgNVHQ4EFgQUMOcGxiBd+/gK
4z08UWhYvyPBvG0wHwYDVR0jBBgwFoAUMOcGxiBd+/gK4z08UWhYvyPBvG0wDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSQAwRgIhAOKv1DdKrWMIG6zwRHBQURXsQ4dLGqN2csfIbGBXfKQIAiEA
6/mxEAlSurfYidHkSipdGuI3LWBB74WiCjsx1XXV8Kw=
-----END CERTIFICATE-----
"""

TEST_KEY = """\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgp5++hX16uegYBqe5
NCmzz+tYQzjdAFU1Koi4SHAP4CihRANCAASd1OFGROYtYn+bHrIPeHVzE2N41xa0
413/9Tth8cN3tdk8MIFPRgLvw4ap9sq0AWYEcWbw1Gw9uos7hyxlZmpW
-----END PRIVATE KEY-----
"""


def tls_contexts(tmp_path: Path) -> Any:
    """``(server_context, client_context)`` trusting TEST_CERT."""
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text(TEST_CERT)
    key.write_text(TEST_KEY)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert), str(key))
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return server_ctx, client_ctx
