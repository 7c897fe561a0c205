"""Client side: a pipelined Thrift connection on an asyncio Protocol.

One :class:`ThriftConnection` carries any number of calls at once.  Each call
gets its own sequence id (seqid) and a Future in ``_pending``; a reply is
matched to its call by seqid *and* method name and decoded synchronously, as
a whole message, in ``data_received``.  A call is one encode into one
``bytes`` and one ``transport.write``.

Error handling, in short (see :class:`ThriftConnection` for details):

* a call that times out or is cancelled forgets its seqid; its late reply is
  recognised by seqid and dropped, so it never reaches another caller and
  the connection stays usable;
* a reply that cannot belong to any call (unknown seqid, wrong method name,
  wrong message type, a broken byte stream) means the stream can no longer be
  trusted: the connection is aborted and every pending call fails with
  :class:`~aiothrift.ConnectionClosedError` whose ``__cause__`` says why;
* the peer closing or resetting the connection fails every pending call with
  :class:`~aiothrift.ConnectionClosedError` at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import warnings
from typing import Any, Dict, Optional, Tuple, Type, Union

from thriftpy2.thrift import TApplicationException

from .errors import ConnectionClosedError, ProtocolError, ThriftAppError
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)
from .processor import (
    CALL, EXCEPTION, ONEWAY, REPLY, SEPARATOR, MethodSpec, app_error_from_struct, method_specs,
)
from .protocol import TBinaryProtocol, TProtocol

__all__ = ("ThriftConnection", "create_connection")

#: ``(host, port)``, or the path of a Unix socket (a str or path-like object)
Address = Union[Tuple[str, int], str, "os.PathLike[str]"]

#: seqids are non-negative i32 values; they wrap to 0 after 2**31 - 1.
_SEQID_MASK = 0x7FFFFFFF

#: How many abandoned (timed-out or cancelled) seqids a connection remembers
#: so that their late replies are dropped quietly.  Past this many, the
#: oldest is forgotten, and if its reply still arrives it is treated as a
#: reply for an unknown seqid (the connection is closed).  A server that
#: leaves this many calls unanswered is not one to keep talking to.
MAX_ABANDONED = 65536


def _warn_loop(loop: Any, stacklevel: int = 3) -> None:
    if loop is not None:
        warnings.warn(
            "the loop argument is deprecated and ignored: the running event loop is used",
            DeprecationWarning,
            stacklevel=stacklevel,
        )


def _check_service_name(service_name: Optional[str]) -> None:
    if service_name is not None and (
            not isinstance(service_name, str) or not service_name or SEPARATOR in service_name):
        raise ValueError("service_name is a non-empty str without %r, not %r" % (SEPARATOR, service_name))


def _client_host_port(address: Tuple[str, int]) -> Tuple[str, int]:
    host, port = address
    # The seed API's default address is ('', 6000): for a client, '' can only
    # mean this host.
    return (host or "127.0.0.1"), port


def _service_class(base: type, service: type, make_method: Any, cache: Any) -> type:
    """A subclass of ``base`` with one coroutine method per service method.

    Built once per (base, service): class attributes are found by ordinary
    attribute lookup, cheaper than ``__getattr__`` on every call, and work
    with ``__slots__``.  Names that ``base`` already has (``close``,
    ``execute``, ``timeout``...) are skipped; call those through
    ``execute(name, ...)``.  ``_calls`` maps every method name (clashing
    ones included) to its function, for ``execute``.
    """
    key = (base, service)
    cls = cache.get(key)
    if cls is None:
        calls = {name: make_method(name, spec) for name, spec in method_specs(service).items()}
        ns: Dict[str, Any] = {
            "__slots__": (), "__module__": base.__module__, "_service": service, "_calls": calls}
        for name, func in calls.items():
            if not hasattr(base, name):
                ns[name] = func
        cls = type(base.__name__, (base,), ns)
        cls.__qualname__ = "%s[%s]" % (base.__qualname__, getattr(service, "__name__", "service"))
        cache[key] = cls
    return cls


def _make_call(api: str, spec: MethodSpec) -> Any:
    """The coroutine function calling ``api``: a service method of the connection.

    One per method and service, so the method's spec is bound here rather
    than looked up on every call, and ``await conn.add(1, 2)`` runs one
    coroutine, not one calling another.
    """
    make_args = spec.args_cls
    oneway = spec.oneway

    async def call(self: "ThriftConnection", *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise self._closed_error()
        args_obj = make_args(*args, **kwargs)  # TypeError for bad arguments
        seqid = self._next_seqid()
        if oneway:
            wire = self._wire_names
            data = self._encode(api if wire is None else wire[api], ONEWAY, seqid, args_obj,
                                framed=self._framed)
            if self._write_paused:
                await self._drain()
            self._transport.write(data)
            return None
        wire = self._wire_names
        data = self._encode(api if wire is None else wire[api], CALL, seqid, args_obj,
                            framed=self._framed)
        if self._write_paused:
            # Backpressure: the transport's buffer is over its high-water
            # mark; wait for it to drain before adding more.
            await self._drain()
        loop = self._loop
        fut = loop.create_future()
        timeout = self.timeout
        timer = None
        if timeout is not None:
            timer = loop.call_at(loop.time() + timeout, self._on_timeout, seqid, timeout)
        self._pending[seqid] = (fut, api, spec, timer)
        self._transport.write(data)
        try:
            return await fut
        except asyncio.CancelledError:
            self._abandon(seqid)
            raise

    call.__name__ = call.__qualname__ = api
    call.__doc__ = "Call the ``%s`` method of the service (see :meth:`ThriftConnection.execute`)." % api
    return call


_connection_classes: Dict[Tuple[type, type], type] = {}


class ThriftConnection(asyncio.Protocol):
    """A client connection to a Thrift server; it is the socket's asyncio Protocol.

    Usually made by :func:`create_connection`.  Every method of ``service``
    becomes a coroutine method of the connection (``await conn.add(1, 2)``),
    unless its name clashes with an attribute of the connection (``close``,
    ``execute``, ``data_received``...): call those with
    ``await conn.execute("close", ...)``.

    Many calls may be in flight at once; each reply is matched to its call by
    seqid and method name.  What a call raises:

    * a declared IDL exception: that exception's class;
    * a ``TApplicationException`` from the server:
      :class:`~aiothrift.ThriftAppError` with its ``type`` and ``message``
      (``MISSING_RESULT`` when a non-void method returned no value);
    * :class:`asyncio.TimeoutError` after ``timeout`` seconds (one timer per
      call); the connection stays usable and the late reply is dropped;
    * :class:`~aiothrift.ConnectionClosedError` when the connection is or
      gets closed: by :meth:`close`, by the peer (at once, for every pending
      call), or because the peer sent something no call can accept (unknown
      seqid, wrong method name, wrong message type, malformed stream; the
      ``__cause__`` is a :class:`~aiothrift.ThriftAppError` with type
      ``BAD_SEQUENCE_ID``, ``WRONG_METHOD_NAME`` or ``INVALID_MESSAGE_TYPE``,
      or the :class:`~aiothrift.ProtocolError`);
    * a :class:`~aiothrift.ProtocolError` when one reply is well framed but
      its body does not decode (over a limit, wrong container types...):
      only that call fails, the connection goes on;
    * :class:`TypeError`, :class:`OverflowError` or
      :class:`~aiothrift.InvalidDataError` when the arguments cannot be
      encoded (nothing is sent).

    :param service: a thriftpy2 service class.
    :param iprot: protocol (options and limits) for decoding replies.
    :param oprot: protocol for encoding calls (defaults to ``iprot``).
    :param address: the peer address, for messages and ``repr``.
    :param loop: deprecated, ignored.
    :param timeout: per-call timeout in seconds, or ``None``.  May be changed
        on the instance.
    :param framed: use the framed transport (4-byte length before every
        message) instead of the buffered one.
    :param max_frame_size: largest reply accepted, in bytes.
    :param service_name: call the service registered under this name on a
        multiplexed server (:class:`~aiothrift.TMultiplexedProcessor`, or
        Apache's): calls are sent as ``"service_name:method"``.  ``None``
        (default): a plain server.
    """

    __slots__ = (
        "service", "address", "timeout", "_iprot", "_oprot", "_encode", "_decode_begin",
        "_decode_struct", "_reader", "_framed", "_loop", "_transport", "_pending",
        "_abandoned", "_seqid", "_closed", "_close_exc", "_write_paused", "_drain_waiter",
        "_lost", "service_name", "_wire_names", "__weakref__",
    )

    #: set on the per-service subclasses made by __new__
    _service: Optional[type] = None
    _calls: Dict[str, Any] = {}

    def __new__(cls, service: type, *args: Any, **kwargs: Any) -> "ThriftConnection":
        if cls.__dict__.get("_service") is not service:
            if cls.__dict__.get("_service") is not None:  # a class made for another service
                cls = cls.__bases__[0]
            cls = _service_class(cls, service, _make_call, _connection_classes)
        return super().__new__(cls)

    def __init__(
        self,
        service: type,
        *,
        iprot: Optional[TProtocol] = None,
        oprot: Optional[TProtocol] = None,
        address: Any = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        timeout: Optional[float] = None,
        framed: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        service_name: Optional[str] = None,
    ) -> None:
        _warn_loop(loop)
        _check_service_name(service_name)
        if iprot is None:
            iprot = TBinaryProtocol(None)
        if oprot is None:
            oprot = iprot
        self.service = service
        self.address = address
        self.timeout = timeout
        self._iprot = iprot
        self._oprot = oprot
        self._encode = oprot.codec.encode_message
        self._decode_begin = iprot.codec.decode_message_begin
        self._decode_struct = iprot.codec.decode_struct
        self._reader = iprot.make_reader(framed=framed, max_frame_size=max_frame_size)
        self._framed = framed
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._transport: Optional[asyncio.Transport] = None
        #: seqid -> (future, method name, spec, timer handle or None)
        self._pending: Dict[int, Tuple[asyncio.Future, str, MethodSpec, Optional[asyncio.TimerHandle]]] = {}
        #: seqid -> method name of calls given up (timeout, cancel): their
        #: late replies are dropped.  Insertion ordered: oldest first.
        self._abandoned: Dict[int, str] = {}
        self._seqid = 0
        self._closed = False
        self._close_exc: Optional[BaseException] = None
        self._write_paused = False
        self._drain_waiter: Optional[asyncio.Future] = None
        self._lost: Optional[asyncio.Future] = None
        self.service_name = service_name
        #: method name -> message name on the wire ("Calc:add"); None: the
        #: plain names (not multiplexed)
        self._wire_names: Optional[Dict[str, str]] = None if service_name is None else {
            api: service_name + SEPARATOR + api for api in self._calls}

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio and uvloop set TCP_NODELAY on TCP transports themselves
        # (checked in tests/test_connection.py), so it is not set again here.
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return  # closed by us; nothing read now can matter
        try:
            messages = self._reader.feed(data)
        except ProtocolError as exc:
            self._fail_stream(exc)
            return
        pending = self._pending
        for msg in messages:
            try:
                name, mtype, seqid, offset = self._decode_begin(msg)
            except ProtocolError as exc:
                self._fail_stream(exc)
                return
            call = pending.pop(seqid, None)
            if call is None:
                if self._abandoned.pop(seqid, None) is not None:
                    continue  # late reply of a timed-out or cancelled call
                self._fail_stream(ThriftAppError(
                    ThriftAppError.BAD_SEQUENCE_ID,
                    "reply %r with seqid %d matches no pending call" % (name, seqid)))
                return
            fut, api, spec, timer = call
            if timer is not None:
                timer.cancel()
            if name != api and (self._wire_names is None or name != self._wire_names[api]):
                # (A multiplexed reply carries the plain method name, as
                # Apache's processor writes it; "Service:method" is accepted too.)
                self._fail_stream(ThriftAppError(
                    ThriftAppError.WRONG_METHOD_NAME,
                    "reply for seqid %d names method %r, the call was %r" % (seqid, name, api)), fut)
                return
            if mtype == REPLY:
                if fut.done():  # cancelled; the caller's task has not run yet
                    continue
                try:
                    value = spec.unpack_result(self._decode_struct(spec.result_cls, msg, offset))
                except Exception as exc:  # declared exception, MISSING_RESULT, bad body
                    fut.set_exception(exc)
                else:
                    fut.set_result(value)
            elif mtype == EXCEPTION:
                if fut.done():
                    continue
                try:
                    err = app_error_from_struct(self._decode_struct(TApplicationException, msg, offset))
                except ProtocolError as exc:
                    fut.set_exception(exc)
                else:
                    fut.set_exception(err)
            else:
                self._fail_stream(ThriftAppError(
                    ThriftAppError.INVALID_MESSAGE_TYPE,
                    "reply for seqid %d has message type %d" % (seqid, mtype)), fut)
                return

    def eof_received(self) -> Optional[bool]:
        return False  # let the transport close; connection_lost fails the calls

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if exc is None:
            err = ConnectionClosedError("connection to %s closed" % (self._peer(),))
        else:
            err = ConnectionClosedError("connection to %s lost: %s" % (self._peer(), exc))
            err.__cause__ = exc
        self._shutdown(err)
        self._transport = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # -- calls ------------------------------------------------------------

    async def execute(self, api: str, *args: Any, **kwargs: Any) -> Any:
        """Call method ``api`` of the service.  This is a coroutine.

        :param api: the method name, as in the IDL.
        :param args: positional arguments, in IDL declaration order.
        :param kwargs: arguments by name.
        :returns: the method's result; ``None`` for void and oneway methods
            (oneway calls return once written, without waiting for anything).
        :raises asyncio.TimeoutError: no reply within :attr:`timeout` seconds.
        :raises ThriftAppError: the server sent a ``TApplicationException``.
        :raises ConnectionClosedError: the connection is or got closed.
        :raises ValueError: the service has no method ``api``.
        """
        call = self._calls.get(api)
        if call is None:
            raise ValueError("service %s has no method %r" % (getattr(self.service, "__name__", "?"), api))
        return await call(self, *args, **kwargs)

    def _next_seqid(self) -> int:
        seqid = (self._seqid + 1) & _SEQID_MASK
        # After 2**31 calls seqids come round again: skip those still owned by
        # a pending or abandoned call.
        while seqid in self._pending or seqid in self._abandoned:
            seqid = (seqid + 1) & _SEQID_MASK
        self._seqid = seqid
        return seqid

    def _abandon(self, seqid: int) -> None:
        call = self._pending.pop(seqid, None)
        if call is None:
            return
        if call[3] is not None:
            call[3].cancel()
        abandoned = self._abandoned
        abandoned[seqid] = call[1]
        if len(abandoned) > MAX_ABANDONED:
            del abandoned[next(iter(abandoned))]

    def _on_timeout(self, seqid: int, timeout: float) -> None:
        call = self._pending.get(seqid)
        if call is None:
            return
        self._abandon(seqid)
        fut = call[0]
        if not fut.done():
            fut.set_exception(asyncio.TimeoutError(
                "call %s to %s timed out after %g s" % (call[1], self._peer(), timeout)))

    async def _drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self._loop.create_future()  # type: ignore[union-attr]
        # Shielded: the waiter is shared, one caller's cancellation must not
        # cancel it for the others.
        await asyncio.shield(waiter)
        if self._closed:
            raise self._closed_error()

    def _wake_writers(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- closing ----------------------------------------------------------

    def _peer(self) -> str:
        a = self.address
        if isinstance(a, tuple) and len(a) >= 2:
            return "%s:%s" % (a[0], a[1])
        return str(a)

    def _closed_error(self) -> ConnectionClosedError:
        err = ConnectionClosedError("connection to %s is closed" % (self._peer(),))
        err.__cause__ = self._close_exc
        return err

    def _fail_stream(self, cause: BaseException, popped: Optional[asyncio.Future] = None) -> None:
        """The peer sent what no call can accept: abort, fail every call."""
        err = ConnectionClosedError(
            "protocol error from %s, connection closed: %s" % (self._peer(), cause))
        err.__cause__ = cause
        if popped is not None and not popped.done():
            popped.set_exception(_copy_error(err))
        self._shutdown(err)
        if self._transport is not None:
            # abort, not close: nothing more is to be read or written.
            self._transport.abort()

    def _shutdown(self, err: ConnectionClosedError) -> None:
        if not self._closed:
            self._closed = True
            self._close_exc = err
        pending = self._pending
        if pending:
            self._pending = {}
            for fut, _, _, timer in pending.values():
                if timer is not None:
                    timer.cancel()
                if not fut.done():
                    # One exception object per caller: a shared one would
                    # collect every caller's traceback.
                    fut.set_exception(_copy_error(err))
        self._abandoned.clear()
        self._wake_writers()

    @property
    def closed(self) -> bool:
        """``True`` once the connection is closed or broken: it will not be usable again.

        Also ``True`` as soon as the transport is closing (the peer's EOF has
        been seen, say), before ``connection_lost`` has run.
        """
        if self._closed:
            return True
        transport = self._transport
        return transport is not None and transport.is_closing()

    @property
    def pending(self) -> int:
        """How many calls are waiting for their reply."""
        return len(self._pending)

    def close(self) -> None:
        """Close the connection.

        Data already written (a oneway call, say) is still flushed; calls
        waiting for a reply fail with :class:`ConnectionClosedError` at once.
        Closing twice is harmless.
        """
        self._shutdown(ConnectionClosedError("connection to %s closed by the client" % (self._peer(),)))
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (after :meth:`close` or a failure)."""
        if self._lost is not None:
            await asyncio.shield(self._lost)

    async def __aenter__(self) -> "ThriftConnection":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return "<%s %s %s%s pending=%d>" % (
            type(self).__name__, getattr(self.service, "__name__", "?"), self._peer(),
            " closed" if self._closed else "", len(self._pending))


def _copy_error(err: ConnectionClosedError) -> ConnectionClosedError:
    new = ConnectionClosedError(*err.args)
    new.__cause__ = err.__cause__
    return new


async def _connect_abstract(loop: asyncio.AbstractEventLoop, factory: Any, name: Any,
                            tls: Dict[str, Any]) -> Tuple[Any, Any]:
    """Connect to a Linux abstract-namespace Unix socket (``"\\0name"``).

    Through a socket connected by ``sock_connect``: uvloop's
    ``create_unix_connection`` cannot connect to an abstract name itself.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, name)
        return await loop.create_unix_connection(factory, sock=sock, **tls)
    except BaseException:
        sock.close()
        raise


async def create_connection(
    service: type,
    address: Address = ("", 6000),
    *,
    protocol_cls: Type[TProtocol] = TBinaryProtocol,
    timeout: Optional[float] = None,
    loop: Optional[asyncio.AbstractEventLoop] = None,
    framed: bool = False,
    ssl: Any = None,
    connect_timeout: Optional[float] = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_string_size: int = DEFAULT_MAX_STRING_SIZE,
    max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    server_hostname: Optional[str] = None,
    service_name: Optional[str] = None,
) -> ThriftConnection:
    """Open a connection to a Thrift server.  This is a coroutine.

    :param service: a thriftpy2 service class.
    :param address: ``(host, port)`` (a host of ``''`` means ``127.0.0.1``),
        or the path of a Unix socket (a str or path-like object).
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param timeout: per-call timeout in seconds (:class:`asyncio.TimeoutError`),
        ``None`` for none.
    :param loop: deprecated and ignored (a :class:`DeprecationWarning` when
        given): the running loop is used.
    :param framed: framed transport (must match the server).
    :param ssl: an :class:`ssl.SSLContext` (or ``True``: the system's CAs)
        for TLS.  The server's certificate is checked as the context says
        (``ssl.create_default_context(cafile=...)``: against those CAs and
        for the host name); load a client certificate into it
        (``load_cert_chain``) for a server that requires one.
    :param connect_timeout: seconds allowed to connect (TLS handshake
        included); :class:`asyncio.TimeoutError` after that.
    :param max_frame_size: largest reply accepted, in bytes.
    :param max_string_size: largest string/binary accepted in a reply.
    :param max_container_size: largest list/set/map accepted in a reply.
    :param max_depth: deepest nesting accepted in a reply.
    :param server_hostname: with ``ssl``: the name the server's certificate
        must match, also sent as SNI.  Default: the host of ``address``.
        Required for TLS over a Unix socket (there is no host name).
    :param service_name: the service to call on a multiplexed server (see
        :class:`~aiothrift.TMultiplexedProcessor`): calls are sent as
        ``"service_name:method"``, Apache's ``TMultiplexedProtocol`` format.
    :returns: a connected :class:`ThriftConnection`.
    :raises OSError: the connection could not be made (for example
        :class:`ConnectionRefusedError`).
    :raises ssl.SSLCertVerificationError: (an :class:`OSError`) the server's
        certificate is not trusted by ``ssl`` or does not match the host name.
        A server that refuses *this client's* certificate is seen, with TLS
        1.3, only at the first call: it fails with
        :class:`~aiothrift.ConnectionClosedError` (``__cause__``: the reset
        or the TLS alert), because the client's side of the handshake is over
        before the server checks the certificate.
    """
    _warn_loop(loop)
    _check_service_name(service_name)
    running = asyncio.get_running_loop()
    proto = protocol_cls(
        None, max_string_size=max_string_size, max_container_size=max_container_size, max_depth=max_depth)
    if isinstance(address, (str, os.PathLike)):
        peer: Any = os.fspath(address)
    else:
        peer = _client_host_port(address)

    def factory() -> ThriftConnection:
        return ThriftConnection(service, iprot=proto, oprot=proto, address=peer, timeout=timeout,
                                framed=framed, max_frame_size=max_frame_size, service_name=service_name)

    tls: Dict[str, Any] = {"ssl": ssl}
    if server_hostname is not None:
        tls["server_hostname"] = server_hostname
    if isinstance(peer, (str, bytes)):
        if peer[:1] in ("\0", b"\0"):
            coro = _connect_abstract(running, factory, peer, tls)
        else:
            coro = running.create_unix_connection(factory, peer, **tls)
    else:
        coro = running.create_connection(factory, peer[0], peer[1], **tls)
    if connect_timeout is None:
        _, conn = await coro
    else:
        try:
            _, conn = await asyncio.wait_for(coro, connect_timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                "connecting to %s timed out after %g s" % (peer, connect_timeout)) from None
    return conn  # type: ignore[return-value]
