"""Server side: a Thrift server on asyncio Protocols.

Every connection is a :class:`_ServerProtocol`.  ``data_received`` splits
the bytes into whole messages and handles each one in order:

* a plain-function handler (or, on Python 3.12+, an ``async`` handler that
  finishes without suspending: it runs as an eager task) is answered at
  once; all the replies produced while handling one ``data_received`` chunk
  go out in a single ``transport.write``;
* an ``async`` handler that suspends runs as a task and writes its reply
  when it finishes, so requests pipelined on one connection run
  concurrently.  At most ``max_concurrency`` run at once per connection;
  past that, further messages wait in a backlog and the transport stops
  reading until a slot frees up.

Replies carry their request's seqid; oneway methods get none.  What the
server answers to bad requests (``doc/specs/thrift-rpc.md`` rules):

===============================================  ===============================================
request                                          answer
===============================================  ===============================================
unknown method                                   ``UNKNOWN_METHOD``; connection stays open
handler raises an undeclared exception           ``INTERNAL_ERROR`` (``repr`` of it), logged;
                                                 connection stays open
args do not decode (over a limit, malformed)     ``PROTOCOL_ERROR``, then the connection closes
                                                 (requests already running are answered first)
message type not CALL or ONEWAY                  ``INVALID_MESSAGE_TYPE``, then it closes
bad frame or message header (no seqid known)     the connection closes
===============================================  ===============================================

The server itself never stops because of a request.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
import stat
import sys
from typing import Any, Deque, List, Optional, Set, Tuple, Type, Union

from .connection import Address, _warn_loop
from .errors import ProtocolError, ThriftAppError
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)
from .processor import (
    CALL, EXCEPTION, ONEWAY, REPLY, TMultiplexedProcessor, TProcessor, _Entry, app_exception, logger,
)
from .protocol import TBinaryProtocol, TProtocol

__all__ = ("Server", "create_server")

#: Default bound on the requests of one connection handled at once.
DEFAULT_MAX_CONCURRENCY = 128

#: Default seconds that :meth:`Server.close` lets in-flight requests finish.
DEFAULT_GRACE_PERIOD = 5.0

_EAGER_TASKS = sys.version_info >= (3, 12)

_current_task = asyncio.current_task


class _ServerProtocol(asyncio.Protocol):
    """One accepted connection."""

    __slots__ = (
        "_server", "_processor", "_codec", "_encode", "_reader", "_framed", "_loop", "_transport",
        "_peer", "_inflight", "_limit", "_backlog", "_tasks", "_out", "_reading_paused",
        "_writing_paused", "_eof", "_shutting_down", "_bad", "_idle_timeout", "_idle_handle",
        "_last_active", "_ssl",
    )

    def __init__(self, server: "Server") -> None:
        self._server = server
        self._processor = server.processor
        self._codec = server._protocol.codec
        self._encode = self._codec.encode_message
        self._reader = server._protocol.make_reader(framed=server.framed, max_frame_size=server.max_frame_size)
        self._framed = server.framed
        self._loop = asyncio.get_running_loop()
        self._transport: Optional[asyncio.Transport] = None
        self._peer: Any = None
        self._inflight = 0
        self._limit = server.max_concurrency or sys.maxsize
        #: messages received but not started: the concurrency bound is reached
        self._backlog: Deque[bytes] = collections.deque()
        self._tasks: Set[asyncio.Task] = set()
        #: replies collected while handling one chunk, written at its end
        self._out: Optional[List[bytes]] = None
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._shutting_down = False
        self._bad = False
        self._idle_timeout = server.timeout
        self._idle_handle: Optional[asyncio.TimerHandle] = None
        self._last_active = 0.0
        self._ssl = False

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = transport.get_extra_info("peername")
        self._ssl = transport.get_extra_info("sslcontext") is not None
        if not self._server._connection_made(self):
            transport.close()  # accepted while the server was closing
            return
        if self._idle_timeout is not None:
            self._last_active = self._loop.time()
            self._idle_handle = self._loop.call_at(self._last_active + self._idle_timeout, self._on_idle)

    def data_received(self, data: bytes) -> None:
        if self._bad:
            return  # closing after bad input; the rest is not read
        if self._idle_timeout is not None:
            self._last_active = self._loop.time()
        try:
            messages = self._reader.feed(data)
        except ProtocolError as exc:
            # A framing error: no seqid to answer to.
            self._bad_input(exc)
            self._update_reading()
            self._maybe_finish()
            return
        if messages:
            self._backlog.extend(messages)
            self._process()

    def eof_received(self) -> Optional[bool]:
        self._eof = True
        if (self._inflight or self._backlog) and not self._ssl:
            # A client may half-close after its last request: keep the
            # transport open to send the replies still being computed.
            return True
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._transport = None
        self._backlog.clear()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if not self._inflight:
            self._server._connection_done(self)
        # else: the running handlers finish (a oneway request's work is not
        # lost because its client hung up); _request_done reports when done.

    def pause_writing(self) -> None:
        # The client does not read its replies fast enough: stop reading its
        # requests until it does.
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # -- request handling ---------------------------------------------------

    def _process(self) -> None:
        """Handle backlog messages while below the concurrency bound."""
        if self._out is not None:
            return  # re-entered (an eager task finished): the outer loop goes on
        out: List[bytes] = []
        self._out = out
        backlog = self._backlog
        handle = self._handle
        limit = self._limit
        try:
            while backlog and self._inflight < limit and not self._bad:
                handle(backlog.popleft())
        finally:
            self._out = None
        if self._transport is None:
            return
        if out:
            self._send(out[0] if len(out) == 1 else b"".join(out))
        self._update_reading()
        self._maybe_finish()

    def _send(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _reply_exception(self, name: str, seqid: int, type_: int, message: str) -> None:
        self._send(self._encode(name, EXCEPTION, seqid, app_exception(type_, message), framed=self._framed))

    def _handle(self, msg: bytes) -> None:
        codec = self._codec
        try:
            name, mtype, seqid, offset = codec.decode_message_begin(msg)
        except ProtocolError as exc:
            self._bad_input(exc)
            return
        if mtype != CALL and mtype != ONEWAY:
            self._reply_exception(name, seqid, ThriftAppError.INVALID_MESSAGE_TYPE,
                                  "message type %d is not CALL or ONEWAY" % mtype)
            self._bad_input(ThriftAppError(ThriftAppError.INVALID_MESSAGE_TYPE, "message type %d" % mtype))
            return
        entry = self._processor.lookup(name)
        if entry is None:
            if mtype == CALL:
                reply_name, message = self._processor.unknown_method(name)
                self._reply_exception(reply_name, seqid, ThriftAppError.UNKNOWN_METHOD, message)
            else:
                logger.info("oneway call of unknown method %r from %s dropped", name, self._peer)
            return
        # Replies carry the plain method name: "Calc:add" (multiplexed) is
        # answered as "add", as Apache's TMultiplexedProcessor does.
        name = entry.spec.name
        # A thriftpy2 client sends CALL for oneway methods too and reads no
        # reply: answer only CALLs of two-way methods.
        reply = mtype == CALL and not entry.spec.oneway
        try:
            args = codec.decode_struct(entry.spec.args_cls, msg, offset)
        except ProtocolError as exc:
            if reply:
                self._reply_exception(name, seqid, ThriftAppError.PROTOCOL_ERROR, str(exc))
            self._bad_input(exc)
            return
        try:
            value = TProcessor.call(entry, args)
        except Exception as exc:
            if reply:
                self._reply_error(entry, name, seqid, exc)
            else:
                TProcessor.exception(entry, exc)  # logs it
            return
        if entry.is_async or _is_awaitable(value):
            self._inflight += 1
            coro = self._run(entry, name, seqid, value, reply)
            if _EAGER_TASKS:
                task = asyncio.Task(coro, loop=self._loop, eager_start=True)  # type: ignore[call-arg]
            else:
                task = self._loop.create_task(coro)
            if not task.done():
                self._tasks.add(task)
            return
        if reply:
            self._reply_value(entry, name, seqid, value)

    def _reply_value(self, entry: _Entry, name: str, seqid: int, value: Any) -> None:
        try:
            data = self._encode(name, REPLY, seqid, TProcessor.result(entry, value), framed=self._framed)
        except Exception as exc:
            logger.error("cannot encode the result of %s", name, exc_info=exc)
            data = self._encode(name, EXCEPTION, seqid, app_exception(
                ThriftAppError.INTERNAL_ERROR, "cannot encode the result: %r" % (exc,)), framed=self._framed)
        self._send(data)

    def _reply_error(self, entry: _Entry, name: str, seqid: int, exc: BaseException) -> None:
        mtype, obj = TProcessor.exception(entry, exc)
        try:
            data = self._encode(name, mtype, seqid, obj, framed=self._framed)
        except Exception as exc2:
            logger.error("cannot encode the exception of %s", name, exc_info=exc2)
            data = self._encode(name, EXCEPTION, seqid, app_exception(
                ThriftAppError.INTERNAL_ERROR, "cannot encode the exception: %r" % (exc2,)), framed=self._framed)
        self._send(data)

    async def _run(self, entry: _Entry, name: str, seqid: int, awaitable: Any, reply: bool) -> None:
        try:
            try:
                value = await awaitable
            except asyncio.CancelledError:
                task = _current_task()
                cancelling = getattr(task, "cancelling", None)
                if cancelling is None or cancelling():
                    raise  # this task is being cancelled (server abort)
                # The handler let a CancelledError of its own escape.
                if reply:
                    self._reply_error(entry, name, seqid, RuntimeError("handler raised CancelledError"))
            except Exception as exc:
                if reply:
                    self._reply_error(entry, name, seqid, exc)
                else:
                    TProcessor.exception(entry, exc)  # logs it
            else:
                if reply:
                    self._reply_value(entry, name, seqid, value)
        finally:
            self._tasks.discard(_current_task())  # type: ignore[arg-type]
            self._request_done()

    def _request_done(self) -> None:
        self._inflight -= 1
        if self._idle_timeout is not None:
            self._last_active = self._loop.time()
            if not self._inflight and self._idle_handle is None and self._transport is not None:
                # _on_idle stopped watching while requests ran: watch again.
                self._idle_handle = self._loop.call_at(self._last_active + self._idle_timeout, self._on_idle)
        if self._transport is None:
            if not self._inflight:
                self._server._connection_done(self)
            return
        if self._out is not None:
            return  # inside _process, which carries on
        if self._backlog and not self._bad:
            self._process()
        else:
            self._update_reading()
            self._maybe_finish()

    def _update_reading(self) -> None:
        pause = self._writing_paused or self._inflight >= self._limit or self._shutting_down or self._bad
        if pause == self._reading_paused:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _maybe_finish(self) -> None:
        """Close a half-closed, shutting-down or bad connection once nothing runs."""
        if (self._eof or self._shutting_down or self._bad) and not self._inflight and not self._backlog:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.close()

    def _bad_input(self, exc: BaseException) -> None:
        # Nothing more is read or started; requests already running finish
        # and are answered, then the connection closes (_maybe_finish).
        logger.warning("closing the connection from %s: bad input: %s", self._peer, exc)
        self._bad = True
        self._backlog.clear()

    def _on_idle(self) -> None:
        self._idle_handle = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._inflight or self._backlog:
            return  # busy is not idle; _request_done re-arms the timer
        deadline = self._last_active + self._idle_timeout  # type: ignore[operator]
        if self._loop.time() >= deadline:
            logger.debug("closing the connection from %s: idle for %g s", self._peer, self._idle_timeout)
            transport.close()
        else:
            self._idle_handle = self._loop.call_at(deadline, self._on_idle)

    # -- server shutdown ------------------------------------------------------

    def _shutdown(self) -> None:
        """Graceful close: read no more, finish what was received, then close."""
        self._shutting_down = True
        self._update_reading()
        self._maybe_finish()

    def _abort(self) -> None:
        """Grace period over: cancel the handlers, drop the connection."""
        self._backlog.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._transport.abort()


def _is_awaitable(value: Any) -> bool:
    # Cheap test first: most results are plain data.
    if value is None or type(value) in (int, str, bytes, float, bool, list, dict, set):
        return False
    return hasattr(value, "__await__")


class Server:
    """A Thrift server.  Usually made (and started) by :func:`create_server`.

    :param processor: the :class:`~aiothrift.TProcessor` answering requests.
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param timeout: idle timeout per connection, in seconds: a connection
        that has received nothing for this long, and is not running a
        request, is closed.  ``None`` (default): never.  Not a limit on a
        connection's lifetime nor on a request's duration.
    :param framed: framed transport (4-byte length before each message).
    :param max_frame_size: largest request accepted, in bytes.
    :param max_string_size: largest string/binary accepted in a request.
    :param max_container_size: largest list/set/map accepted in a request.
    :param max_depth: deepest nesting accepted in a request.
    :param max_concurrency: most requests of one connection handled at once
        (``None``: no bound).
    :param grace_period: seconds :meth:`close` lets running requests finish
        before their connections are aborted (``None``: wait for them).
    """

    __slots__ = (
        "processor", "protocol_cls", "timeout", "framed", "max_frame_size", "max_concurrency",
        "grace_period", "_protocol", "_server", "_connections", "_closing", "_closed",
        "_abort_handle", "__weakref__",
    )

    def __init__(
        self,
        processor: TProcessor,
        protocol_cls: Type[TProtocol] = TBinaryProtocol,
        timeout: Optional[float] = None,
        *,
        framed: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_string_size: int = DEFAULT_MAX_STRING_SIZE,
        max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_concurrency: Optional[int] = DEFAULT_MAX_CONCURRENCY,
        grace_period: Optional[float] = DEFAULT_GRACE_PERIOD,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")
        self.processor = processor
        self.protocol_cls = protocol_cls
        self.timeout = timeout
        self.framed = framed
        self.max_frame_size = max_frame_size
        self.max_concurrency = max_concurrency
        self.grace_period = grace_period
        # One protocol (codec and options) shared by all connections: the
        # codec keeps no per-connection state; each connection has its reader.
        self._protocol = protocol_cls(
            None, max_string_size=max_string_size, max_container_size=max_container_size,
            max_depth=max_depth)
        self._server: Optional[asyncio.AbstractServer] = None
        self._connections: Set[_ServerProtocol] = set()
        self._closing = False
        self._closed: Optional[asyncio.Future] = None
        self._abort_handle: Optional[asyncio.TimerHandle] = None

    async def start(
        self,
        address: Address = ("", 6000),
        *,
        ssl: Any = None,
        backlog: int = 100,
        reuse_port: bool = False,
    ) -> "Server":
        """Listen on ``address`` and start serving.  This is a coroutine.

        :param address: ``(host, port)``; host ``''`` listens on every
            interface, port ``0`` picks a free port (see :attr:`port`).  A
            string is the path of a Unix socket.
        :param ssl: an :class:`ssl.SSLContext` for TLS.
        :param backlog: the listen backlog.
        :param reuse_port: set ``SO_REUSEPORT`` (several processes on one port).
        """
        if self._server is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        if isinstance(address, str):
            self._server = await loop.create_unix_server(self._make_protocol, address, ssl=ssl, backlog=backlog)
        else:
            host, port = address
            self._server = await loop.create_server(
                self._make_protocol, host or None, port, ssl=ssl, backlog=backlog,
                reuse_port=reuse_port or None)
        return self

    def _make_protocol(self) -> _ServerProtocol:
        return _ServerProtocol(self)

    def _connection_made(self, conn: _ServerProtocol) -> bool:
        if self._closing:
            return False
        self._connections.add(conn)
        return True

    def _connection_done(self, conn: _ServerProtocol) -> None:
        self._connections.discard(conn)
        self._check_closed()

    def _check_closed(self) -> None:
        if self._closing and not self._connections:
            if self._abort_handle is not None:
                self._abort_handle.cancel()
                self._abort_handle = None
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)

    # -- public surface -------------------------------------------------------

    @property
    def sockets(self) -> Tuple[Any, ...]:
        """The listening sockets (empty once closed)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets or ())

    @property
    def address(self) -> Union[Tuple[str, int], str, None]:
        """``(host, port)`` of the first listening socket (a path for Unix sockets)."""
        for sock in self.sockets:
            name = sock.getsockname()
            return tuple(name[:2]) if isinstance(name, tuple) else name  # type: ignore[return-value]
        return None

    @property
    def port(self) -> Optional[int]:
        """The bound TCP port (useful after listening on port 0)."""
        address = self.address
        return address[1] if isinstance(address, tuple) else None

    @property
    def connections(self) -> int:
        """How many client connections are open (or finishing requests)."""
        return len(self._connections)

    def is_serving(self) -> bool:
        """``True`` while accepting connections."""
        return self._server is not None and not self._closing and self._server.is_serving()

    def close(self) -> None:
        """Stop accepting and close gracefully.

        Idle connections close now.  On the others nothing more is read;
        requests already received finish and are answered, then the
        connection closes.  After ``grace_period`` seconds the connections
        still busy are aborted and their handlers cancelled.  Closing twice is
        harmless.  Use :meth:`wait_closed` to wait for the end.
        """
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn._shutdown()
        if self._connections and self.grace_period is not None and self._closed is not None:
            loop = self._closed.get_loop()
            self._abort_handle = loop.call_later(self.grace_period, self._abort_all)
        self._check_closed()

    def _abort_all(self) -> None:
        self._abort_handle = None
        conns = list(self._connections)
        if conns:
            logger.warning("grace period over: aborting %d busy connection(s)", len(conns))
        for conn in conns:
            conn._abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection is done."""
        if self._closed is None:
            return
        await asyncio.shield(self._closed)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` (returns) or until cancelled (closes, then re-raises)."""
        if self._closed is None:
            raise RuntimeError("the server is not started")
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self._closing else ("serving" if self._server is not None else "not started")
        return "<Server %s %s connections=%d>" % (self.address, state, len(self._connections))


async def create_server(
    service: type,
    handler: Any,
    address: Address = ("", 6000),
    loop: Optional[asyncio.AbstractEventLoop] = None,
    protocol_cls: Type[TProtocol] = TBinaryProtocol,
    timeout: Optional[float] = None,
    *,
    framed: bool = False,
    ssl: Any = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_string_size: int = DEFAULT_MAX_STRING_SIZE,
    max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    backlog: int = 100,
    reuse_port: bool = False,
    max_concurrency: Optional[int] = DEFAULT_MAX_CONCURRENCY,
    grace_period: Optional[float] = DEFAULT_GRACE_PERIOD,
) -> Server:
    """Create and start a Thrift server.  This is a coroutine.

    :param service: a thriftpy2 service class.
    :param handler: an object with a method (``async def`` or plain) per
        service method; see :class:`~aiothrift.TProcessor`.
    :param address: ``(host, port)``, default ``('', 6000)``: every
        interface.  Port ``0`` picks a free port: read it from
        :attr:`Server.port`.  A string is a Unix socket path.
    :param loop: deprecated and ignored (the running loop is used).
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param timeout: idle timeout per connection in seconds (see :class:`Server`).
    :param framed: framed transport.
    :param ssl: an :class:`ssl.SSLContext` for TLS.
    :param max_frame_size: largest request accepted, in bytes.
    :param max_string_size: largest string/binary accepted in a request.
    :param max_container_size: largest list/set/map accepted in a request.
    :param max_depth: deepest nesting accepted in a request.
    :param backlog: the listen backlog.
    :param reuse_port: set ``SO_REUSEPORT``.
    :param max_concurrency: most requests of one connection handled at once.
    :param grace_period: seconds :meth:`Server.close` waits for running requests.
    :returns: the started :class:`Server`.
    """
    _warn_loop(loop)
    server = Server(
        TProcessor(service, handler), protocol_cls, timeout, framed=framed, max_frame_size=max_frame_size,
        max_string_size=max_string_size, max_container_size=max_container_size, max_depth=max_depth,
        max_concurrency=max_concurrency, grace_period=grace_period)
    return await server.start(address, ssl=ssl, backlog=backlog, reuse_port=reuse_port)
