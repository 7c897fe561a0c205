"""Server side: a Thrift server on asyncio Protocols.

Every connection is a :class:`_ServerProtocol`.  ``data_received`` splits
the bytes into whole messages and handles each one in order:

* a plain-function handler (or, on Python 3.12+, an ``async`` handler that
  finishes without suspending: it runs as an eager task) is answered at
  once; all the replies produced while handling one ``data_received`` chunk
  go out in a single ``transport.write`` (one per 64 KiB of replies: a
  client that does not read its replies pauses the server before they pile
  up, see ``pause_writing``);
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
(any ``BaseException``: ``CancelledError`` too)  connection stays open.  ``KeyboardInterrupt``
                                                 and ``SystemExit`` propagate (the process is
                                                 asked to stop), as asyncio lets them
args do not decode (over a limit, malformed)     ``PROTOCOL_ERROR``, then the connection closes
                                                 (requests already running are answered first)
message type not CALL or ONEWAY                  ``INVALID_MESSAGE_TYPE``, then it closes
bad frame or message header (no seqid known)     the connection closes
a request still incomplete ``read_timeout``      the connection closes (requests already
seconds after its first byte (slowloris)         running are answered first)
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

#: The replies made while handling one chunk of requests are written in one
#: go, or as soon as they add up to this many bytes: a client that does not
#: read its replies then gets the transport to pause us (pause_writing)
#: before more are made.  (A request is a few bytes; its reply may be huge.)
_FLUSH_SIZE = 65536


class _ServerProtocol(asyncio.Protocol):
    """One accepted connection."""

    __slots__ = (
        "_server", "_processor", "_codec", "_encode", "_reader", "_framed", "_loop", "_transport",
        "_peer", "_inflight", "_limit", "_backlog", "_tasks", "_out", "_reading_paused",
        "_writing_paused", "_eof", "_shutting_down", "_bad", "_idle_timeout", "_idle_handle",
        "_last_active", "_ssl", "_read_timeout", "_partial_since", "_out_size", "_unsent",
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
        #: seconds a request may take to arrive, from its first byte to its
        #: last: unlike the idle timeout, a byte now and then does not reset it
        self._read_timeout: Optional[float] = (
            server.read_timeout if server.read_timeout is not None else server.timeout)
        #: loop time the request being received began at (None: no partial one)
        self._partial_since: Optional[float] = None
        #: bytes in _out
        self._out_size = 0
        #: replies not sent yet (transport buffer) at the last idle check
        self._unsent = 0

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
        if self._read_timeout is not None:
            self._track_partial(bool(messages))
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
        if self._idle_timeout is not None:
            self._last_active = self._loop.time()  # the client reads its replies: not idle
            self._unsent = 0
        if self._backlog and not self._bad:
            self._process()  # requests held back while the client did not read
        else:
            self._update_reading()

    # -- request handling ---------------------------------------------------

    def _process(self) -> None:
        """Handle backlog messages while below the concurrency bound."""
        if self._out is not None:
            return  # re-entered (an eager task finished): the outer loop goes on
        out: List[bytes] = []
        self._out = out
        self._out_size = 0
        backlog = self._backlog
        handle = self._handle
        limit = self._limit
        try:
            while backlog and self._inflight < limit and not self._bad and not self._writing_paused:
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
            self._out_size += len(data)
            if self._out_size < _FLUSH_SIZE:
                return
            data = b"".join(out)
            out.clear()
            self._out_size = 0
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
        except (KeyboardInterrupt, SystemExit):
            raise  # asks the process to stop: asyncio lets these through too
        except BaseException as exc:
            # CancelledError and other BaseExceptions too: they must not
            # escape data_received (the transport would kill the connection
            # and every request pipelined on it).
            self._handler_failed(entry, name, seqid, exc, reply)
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

    def _handler_failed(self, entry: _Entry, name: str, seqid: int, exc: BaseException, reply: bool) -> None:
        if isinstance(exc, asyncio.CancelledError):
            exc = RuntimeError("handler raised CancelledError")
        if reply:
            self._reply_error(entry, name, seqid, exc)
        else:
            _exception_reply(entry, exc)  # logs it

    def _reply_error(self, entry: _Entry, name: str, seqid: int, exc: BaseException) -> None:
        mtype, obj = _exception_reply(entry, exc)
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
                self._handler_failed(entry, name, seqid, RuntimeError("handler raised CancelledError"), reply)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                self._handler_failed(entry, name, seqid, exc, reply)
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
            if not self._inflight and self._transport is not None:
                # _on_idle stopped watching idleness while requests ran.
                self._watch(self._last_active + self._idle_timeout)
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
            if self._partial_since is not None:
                # The clock of a request does not run while we do not read it.
                self._partial_since = self._loop.time()
                self._watch(self._partial_since + self._read_timeout)  # type: ignore[operator]

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

    def _track_partial(self, completed: bool) -> None:
        """Start or stop the clock of the request being received (read timeout)."""
        if not self._reader.buffered:
            self._partial_since = None
        elif completed or self._partial_since is None:
            # A request began in this chunk (after those it completed).
            now = self._loop.time()
            self._partial_since = now
            self._watch(now + self._read_timeout)  # type: ignore[operator]

    def _watch(self, when: float) -> None:
        """Make sure _on_idle runs at ``when`` or earlier."""
        handle = self._idle_handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._idle_handle = self._loop.call_at(when, self._on_idle)

    def _on_idle(self) -> None:
        """The timer of both timeouts: idle, and read (a request arriving too slowly)."""
        self._idle_handle = None
        transport = self._transport
        if transport is None:
            return
        closing = transport.is_closing()
        now = self._loop.time()
        next_check: Optional[float] = None
        if not closing and self._partial_since is not None and not self._reading_paused:
            deadline = self._partial_since + self._read_timeout  # type: ignore[operator]
            if now >= deadline:
                logger.warning("closing the connection from %s: a request took over %g s to arrive",
                               self._peer, self._read_timeout)
                self._partial_since = None
                self._bad = True  # requests already running finish and are answered
                self._backlog.clear()
                self._update_reading()
                self._maybe_finish()
                return
            next_check = deadline
        # Busy is not idle: _request_done watches again once nothing runs.
        if self._idle_timeout is not None and not self._inflight:
            deadline = self._last_active + self._idle_timeout
            if now >= deadline:
                unsent = transport.get_write_buffer_size()
                if unsent and (not self._unsent or unsent < self._unsent):
                    # Replies are still going out: the client reads them,
                    # slowly maybe, but it is not idle.
                    self._unsent = unsent
                    self._last_active = now
                    deadline = now + self._idle_timeout
                elif unsent:
                    # It reads nothing: close() would wait for ever to send
                    # its replies (also when closing after bad input or EOF).
                    logger.info("aborting the connection from %s: its replies are not read", self._peer)
                    transport.abort()
                    return
                else:
                    if not closing:
                        logger.debug("closing the connection from %s: idle for %g s",
                                     self._peer, self._idle_timeout)
                        transport.close()
                    return
            if next_check is None or deadline < next_check:
                next_check = deadline
        elif closing:
            return
        if next_check is not None:
            self._idle_handle = self._loop.call_at(next_check, self._on_idle)

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
        # Done for the server now: a handler that does not let itself be
        # cancelled must not keep wait_closed() waiting for ever (it goes
        # on alone; its reply has nowhere to go).
        self._server._connection_done(self)


def _bind_unix(path: Any) -> Tuple[socket.socket, Optional[Tuple[int, int]]]:
    """An AF_UNIX socket bound to ``path``, and the (device, inode) of its file.

    A socket file nobody listens on (left by a server that died) is removed
    first.  asyncio and uvloop would remove any socket file, a live server's
    too, silently taking its address: binding here avoids that.
    """
    if path[:1] in ("\0", b"\0"):  # Linux abstract namespace: no file
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except BaseException:
            sock.close()
            raise
        return sock, None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EADDRINUSE, "cannot listen on %r: the path exists and is not a socket" % (path,))
        if _unix_socket_in_use(path):
            raise OSError(errno.EADDRINUSE, "cannot listen on %r: a server is listening on it" % (path,))
        logger.info("removing the stale Unix socket %r", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        st = os.stat(path)
    except BaseException:
        sock.close()
        raise
    return sock, (st.st_dev, st.st_ino)


def _unix_socket_in_use(path: Any) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)  # a connect to a full backlog must not block
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # backlog full (EAGAIN), no permission...: do not touch it
    finally:
        probe.close()
    return True


def _unlink_unix(path: Any, ident: Optional[Tuple[int, int]]) -> None:
    """Remove the socket file ``path`` if it is still the one we bound."""
    if ident is None:
        return
    try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove the Unix socket %r: %s", path, exc)


def _exception_reply(entry: _Entry, exc: BaseException) -> Tuple[int, Any]:
    """TProcessor.exception, safe from exceptions whose repr() raises."""
    try:
        return TProcessor.exception(entry, exc)
    except Exception:
        logger.error("handler of %s raised %s, whose repr() fails", entry.spec.name, type(exc).__name__)
        return EXCEPTION, app_exception(
            ThriftAppError.INTERNAL_ERROR, "%s (its repr() failed)" % type(exc).__name__)


def _is_awaitable(value: Any) -> bool:
    # Cheap test first: most results are plain data.
    if value is None or type(value) in (int, str, bytes, float, bool, list, dict, set):
        return False
    return hasattr(value, "__await__")


class Server:
    """A Thrift server.  Usually made (and started) by :func:`create_server`.

    :param processor: the :class:`~aiothrift.TProcessor` (or
        :class:`~aiothrift.TMultiplexedProcessor`) answering requests.
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param timeout: idle timeout per connection, in seconds: a connection
        that has received nothing for this long, and is not running a
        request, is closed.  ``None`` (default): never.  Not a limit on a
        connection's lifetime nor on a request's duration.  A client still
        reading its replies (however slowly) is not idle; one that has not
        read any of them for this long is aborted, its replies dropped.
    :param read_timeout: seconds a request may take to arrive, from its
        first byte to its last; a connection whose request is still
        incomplete then is closed (a client trickling bytes, "slowloris",
        resets the idle timeout but not this).  ``None`` (default): the
        value of ``timeout``.
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
        "_abort_handle", "_unix_path", "read_timeout", "__weakref__",
    )

    def __init__(
        self,
        processor: Union[TProcessor, TMultiplexedProcessor],
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
        read_timeout: Optional[float] = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")
        self.processor = processor
        self.protocol_cls = protocol_cls
        self.timeout = timeout
        self.read_timeout = read_timeout
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
        #: (path, (st_dev, st_ino)) of the Unix socket file this server made
        self._unix_path: Optional[Tuple[str, Tuple[int, int]]] = None

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
            string (or path-like object) is the path of a Unix socket: a
            socket file left there by a server that is gone is replaced; a
            live server's socket, or a file that is not a socket, is not
            (:class:`OSError` ``EADDRINUSE``).  :meth:`close` removes the
            socket file.
        :param ssl: an :class:`ssl.SSLContext` for TLS.
        :param backlog: the listen backlog.
        :param reuse_port: set ``SO_REUSEPORT`` (several processes on one port).
        """
        if self._server is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        if isinstance(address, (str, os.PathLike)):
            path = os.fspath(address)
            sock, ident = _bind_unix(path)
            try:
                self._server = await loop.create_unix_server(
                    self._make_protocol, sock=sock, ssl=ssl, backlog=backlog)
            except BaseException:
                sock.close()
                _unlink_unix(path, ident)
                raise
            if ident is not None:
                self._unix_path = (path, ident)
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
        if self._unix_path is not None:
            # Neither asyncio (before 3.13) nor uvloop removes the file.
            path, ident = self._unix_path
            self._unix_path = None
            _unlink_unix(path, ident)
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
    service: Any,
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
    read_timeout: Optional[float] = None,
) -> Server:
    """Create and start a Thrift server.  This is a coroutine.

    Several services on one server: register them on a
    :class:`~aiothrift.TMultiplexedProcessor` and pass it as ``service``,
    with ``handler=None``; clients name the service they call
    (``create_connection(..., service_name="Calc")``, or Apache's
    ``TMultiplexedProtocol``).

    :param service: a thriftpy2 service class; or a
        :class:`~aiothrift.TMultiplexedProcessor` (or a
        :class:`~aiothrift.TProcessor`), with ``handler=None``.
    :param handler: an object with a method (``async def`` or plain) per
        service method; see :class:`~aiothrift.TProcessor`.
    :param address: ``(host, port)``, default ``('', 6000)``: every
        interface.  Port ``0`` picks a free port: read it from
        :attr:`Server.port`.  A string (or path-like object) is a Unix
        socket path; the socket file is removed when the server closes (see
        :meth:`Server.start`).
    :param loop: deprecated and ignored (the running loop is used).
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param timeout: idle timeout per connection in seconds (see :class:`Server`).
    :param read_timeout: seconds a request may take to arrive, from its first
        byte to its last (see :class:`Server`); default: ``timeout``.
    :param framed: framed transport.
    :param ssl: an :class:`ssl.SSLContext` for TLS (server side: made with
        ``ssl.Purpose.CLIENT_AUTH``, with the server's certificate chain;
        ``verify_mode = ssl.CERT_REQUIRED`` and the clients' CA for mutual TLS).
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
    if isinstance(service, (TProcessor, TMultiplexedProcessor)):
        if handler is not None:
            raise TypeError("create_server(processor, handler): with a processor, handler must be None")
        processor: Any = service
    else:
        processor = TProcessor(service, handler)
    server = Server(
        processor, protocol_cls, timeout, framed=framed, max_frame_size=max_frame_size,
        max_string_size=max_string_size, max_container_size=max_container_size, max_depth=max_depth,
        max_concurrency=max_concurrency, grace_period=grace_period, read_timeout=read_timeout)
    return await server.start(address, ssl=ssl, backlog=backlog, reuse_port=reuse_port)
