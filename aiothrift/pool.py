"""A pool of Thrift connections, shaped like asyncpg's.

Each acquired connection belongs to one user until it is released.  (One
:class:`~aiothrift.ThriftConnection` can itself carry many concurrent calls;
a pool is for spreading load over several sockets and for surviving server
restarts.)

Connections are checked when handed out: a closed or broken one (the server
went away, a protocol error, an idle timeout on the server) is dropped and
replaced, never returned by :meth:`ThriftPool.acquire`.  Nothing runs in the
background: the pool repairs itself on the next acquire.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Deque, Dict, List, Optional, Set, Tuple, Type

from .connection import (
    Address, ThriftConnection, _check_service_name, _service_class, _warn_loop, create_connection,
)
from .errors import PoolClosedError
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)
from .protocol import TBinaryProtocol, TProtocol

__all__ = ("ThriftPool", "create_pool")


def _make_pool_method(api: str, spec: Any) -> Any:
    async def method(self: "ThriftPool", *args: Any, **kwargs: Any) -> Any:
        return await self.execute(api, *args, **kwargs)

    method.__name__ = method.__qualname__ = api
    method.__doc__ = "Call ``%s`` on a connection of the pool (see :meth:`ThriftPool.execute`)." % api
    return method


_pool_classes: Dict[Tuple[type, type], type] = {}


class _AcquireContext:
    """What :meth:`ThriftPool.acquire` returns: await it, or ``async with`` it."""

    __slots__ = ("_pool", "_timeout", "_conn")

    def __init__(self, pool: "ThriftPool", timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Optional[ThriftConnection] = None

    def __await__(self) -> Any:
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self) -> ThriftConnection:
        if self._conn is not None:
            raise RuntimeError("this acquire() context is already in use")
        self._conn = await self._pool._acquire(self._timeout)
        return self._conn

    async def __aexit__(self, *exc_info: Any) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)


class ThriftPool:
    """Thrift connection pool.  Usually made by :func:`create_pool`.

    Every method of ``service`` is also a coroutine method of the pool: it
    acquires a connection, makes the call and releases the connection
    (``await pool.add(1, 2)``).  Names that clash with the pool's own
    (``close``, ``acquire``...) are reachable through :meth:`execute`.

    :param service: a thriftpy2 service class.
    :param address: ``(host, port)`` or a Unix socket path (a str or
        path-like object).
    :param minsize: connections kept open (made by :meth:`fill_free`).
    :param maxsize: most connections open at once, in use or free.
    :param loop: deprecated and ignored.
    :param timeout: per-call timeout of every connection.
    :param connection_options: further keyword arguments of
        :func:`~aiothrift.create_connection` (``framed``, ``ssl``,
        ``server_hostname``, ``service_name``, ``connect_timeout``,
        ``protocol_cls``, limits).
    """

    __slots__ = (
        "service", "address", "minsize", "maxsize", "timeout", "_options", "_free", "_used",
        "_acquiring", "_waiters", "_closed", "_closing_conns", "_all_released", "__weakref__",
    )

    #: set on the per-service subclasses made by __new__
    _service: Optional[type] = None
    _calls: Dict[str, Any] = {}

    def __new__(cls, service: type, *args: Any, **kwargs: Any) -> "ThriftPool":
        if cls.__dict__.get("_service") is not service:
            if cls.__dict__.get("_service") is not None:  # a class made for another service
                cls = cls.__bases__[0]
            cls = _service_class(cls, service, _make_pool_method, _pool_classes)
        return super().__new__(cls)

    def __init__(
        self,
        service: type,
        address: Address,
        *,
        minsize: int,
        maxsize: int,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        timeout: Optional[float] = None,
        **connection_options: Any,
    ) -> None:
        _warn_loop(loop)
        if not isinstance(minsize, int) or minsize < 0:
            raise ValueError("minsize must be an int >= 0, not %r" % (minsize,))
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError("maxsize must be an int >= 1, not %r" % (maxsize,))
        if minsize > maxsize:
            raise ValueError("minsize (%d) is greater than maxsize (%d)" % (minsize, maxsize))
        _check_service_name(connection_options.get("service_name"))
        self.service = service
        self.address = address
        self.minsize = minsize
        self.maxsize = maxsize
        self.timeout = timeout
        self._options = connection_options
        #: idle connections, most recently released last (handed out first:
        #: the ones left unused may be closed by the server's idle timeout).
        self._free: Deque[ThriftConnection] = collections.deque()
        self._used: Set[ThriftConnection] = set()
        self._acquiring = 0
        #: acquirers waiting for a connection to be released, oldest first;
        #: a waiter's future gets the connection itself (already marked used)
        #: or None, meaning "capacity freed up: try again".
        self._waiters: Deque[asyncio.Future] = collections.deque()
        self._closed = False
        self._closing_conns: List[ThriftConnection] = []
        self._all_released: Optional[asyncio.Future] = None

    # -- sizes --------------------------------------------------------------

    def _prune_free(self) -> None:
        if any(c.closed for c in self._free):
            self._free = collections.deque(c for c in self._free if not c.closed)

    @property
    def size(self) -> int:
        """Connections open or being opened: free + in use + connecting."""
        self._prune_free()
        return len(self._free) + len(self._used) + self._acquiring

    @property
    def freesize(self) -> int:
        """Connections open and not in use."""
        self._prune_free()
        return len(self._free)

    @property
    def closed(self) -> bool:
        """``True`` after :meth:`close` or :meth:`terminate`."""
        return self._closed

    # -- acquire / release ----------------------------------------------------

    def acquire(self, *, timeout: Optional[float] = None) -> _AcquireContext:
        """Take a connection: ``conn = await pool.acquire()`` or ``async with pool.acquire() as conn:``.

        A free connection is handed out if there is one, else a new one is
        opened if the pool is below ``maxsize``, else this waits for a
        release.  Closed or broken connections are never handed out.

        :param timeout: seconds to wait, then :class:`asyncio.TimeoutError`.
        :raises PoolClosedError: the pool is closed (or gets closed while
            waiting).
        :raises OSError: a new connection could not be opened, e.g.
            :class:`ConnectionRefusedError` when the server is down (at once,
            not after a timeout); :class:`asyncio.TimeoutError` past
            ``connect_timeout``.  The pool stays usable and retries on the
            next acquire.
        """
        return _AcquireContext(self, timeout)

    def _pop_free(self) -> Optional[ThriftConnection]:
        free = self._free
        while free:
            conn = free.pop()
            if not conn.closed:
                self._used.add(conn)
                return conn
        return None

    async def _acquire(self, timeout: Optional[float]) -> ThriftConnection:
        if self._closed:
            raise PoolClosedError("the pool is closed")
        conn = self._pop_free()
        if conn is not None:
            return conn
        if timeout is None:
            return await self._acquire_slow()
        try:
            return await asyncio.wait_for(self._acquire_slow(), timeout)
        except asyncio.TimeoutError:
            if self._closed:
                raise PoolClosedError("the pool is closed") from None
            raise

    async def _acquire_slow(self) -> ThriftConnection:
        while True:
            if self._closed:
                raise PoolClosedError("the pool is closed")
            conn = self._pop_free()
            if conn is not None:
                return conn
            if len(self._used) + self._acquiring < self.maxsize:
                conn = await self._connect()
                if self._closed:
                    conn.close()
                    raise PoolClosedError("the pool was closed while connecting")
                self._used.add(conn)
                return conn
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                got = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    handed = fut.result()
                    if handed is not None:
                        # Handed over just as we were cancelled: give it back.
                        self.release(handed)
                    else:
                        self._wake_one()  # pass the wake-up on
                else:
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass
                raise
            if got is not None:
                if not got.closed:
                    return got
                self._used.discard(got)  # died while handed over
                self._connection_gone()

    async def _connect(self) -> ThriftConnection:
        self._acquiring += 1
        try:
            conn = await create_connection(self.service, self.address, timeout=self.timeout, **self._options)
        except BaseException:
            # A failed connect frees its slot: let a waiter try (it fails
            # promptly too if the server is down, rather than waiting).
            self._acquiring -= 1
            self._wake_one()
            raise
        self._acquiring -= 1
        return conn

    def _wake_one(self, conn: Optional[ThriftConnection] = None) -> bool:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                if conn is not None:
                    self._used.add(conn)
                fut.set_result(conn)
                return True
        return False

    def _connection_gone(self) -> None:
        """A used connection left the pool: wake a waiter, maybe finish closing."""
        if self._closed:
            self._check_all_released()
        else:
            self._wake_one()

    def release(self, conn: ThriftConnection) -> None:
        """Give a connection back to the pool.

        Not a coroutine: nothing here can be interrupted by cancellation.  A
        healthy connection goes to the next waiter or back to the free list;
        a closed or broken one is dropped (a waiter may then open a new one).
        Once the pool is closed, released connections are closed.

        :raises ValueError: ``conn`` is not in use from this pool.
        """
        if conn not in self._used:
            if self._closed:
                # terminate() already closed and forgot it.
                conn.close()
                return
            raise ValueError("%r is not a connection in use from this pool" % (conn,))
        self._used.remove(conn)
        if conn.closed or self._closed:
            if not conn.closed:
                conn.close()
                self._closing_conns.append(conn)
            self._connection_gone()
            return
        if not self._wake_one(conn):
            self._free.append(conn)

    async def execute(self, api: str, *args: Any, **kwargs: Any) -> Any:
        """Acquire a connection, call ``api`` on it, release it.  This is a coroutine.

        See :meth:`ThriftConnection.execute <aiothrift.ThriftConnection.execute>`.
        """
        conn = await self._acquire(None)
        try:
            return await conn.execute(api, *args, **kwargs)
        finally:
            self.release(conn)

    # -- filling and closing -----------------------------------------------

    async def fill_free(self, *, override_min: bool) -> None:
        """Open connections until there are ``minsize`` (``maxsize`` if ``override_min``).

        :raises OSError: a connection could not be opened.
        """
        self._prune_free()
        target = self.maxsize if override_min else self.minsize
        while not self._closed and self.size < target:
            conn = await self._connect()
            if self._closed:
                conn.close()
                break
            if not self._wake_one(conn):
                self._free.append(conn)

    async def clear(self) -> None:
        """Close and remove every free connection (those in use are left alone)."""
        conns = list(self._free)
        self._free.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
        if not self._closed:
            self._wake_one()

    def close(self) -> None:
        """Mark the pool closed and close its connections.

        Free connections are closed now; those in use are closed when they
        are released (their calls finish first).  Acquirers, waiting or new,
        get :class:`PoolClosedError`.  Use :meth:`wait_closed` to wait for
        the connections in use, or :meth:`terminate` not to.
        """
        if self._closed:
            return
        self._closed = True
        while self._free:
            conn = self._free.popleft()
            conn.close()
            self._closing_conns.append(conn)
        waiters, self._waiters = self._waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(PoolClosedError("the pool was closed"))
        self._check_all_released()

    def terminate(self) -> None:
        """Close the pool and every connection now, those in use included.

        Their pending calls fail with :class:`~aiothrift.ConnectionClosedError`.
        """
        self.close()
        used, self._used = self._used, set()
        for conn in used:
            conn.close()
            self._closing_conns.append(conn)
        self._check_all_released()

    def _check_all_released(self) -> None:
        fut = self._all_released
        if not self._used and fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_closed(self) -> None:
        """After :meth:`close`: wait until every connection is released and closed."""
        if not self._closed:
            raise RuntimeError("wait_closed() before close()")
        if self._used:
            if self._all_released is None:
                self._all_released = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._all_released)
        conns, self._closing_conns = self._closing_conns, []
        for conn in conns:
            await conn.wait_closed()

    async def __aenter__(self) -> "ThriftPool":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return "<%s %s size=%d free=%d%s>" % (
            type(self).__name__, self.address, self.size, self.freesize, " closed" if self._closed else "")


async def create_pool(
    service: type,
    address: Address = ("", 6000),
    *,
    minsize: int = 1,
    maxsize: int = 10,
    loop: Optional[asyncio.AbstractEventLoop] = None,
    timeout: Optional[float] = None,
    framed: bool = False,
    ssl: Any = None,
    connect_timeout: Optional[float] = None,
    protocol_cls: Type[TProtocol] = TBinaryProtocol,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_string_size: int = DEFAULT_MAX_STRING_SIZE,
    max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    server_hostname: Optional[str] = None,
    service_name: Optional[str] = None,
) -> ThriftPool:
    """Create a connection pool and open its first ``minsize`` connections.  This is a coroutine.

    :param service: a thriftpy2 service class.
    :param address: ``(host, port)`` (``''`` means ``127.0.0.1``) or a Unix
        socket path (a str or path-like object).
    :param minsize: connections opened now and kept (default 1; 0 opens
        none until needed).
    :param maxsize: most connections at once (default 10).
    :param loop: deprecated and ignored.
    :param timeout: per-call timeout of the connections, seconds.
    :param framed: framed transport (must match the server).
    :param ssl: an :class:`ssl.SSLContext` for TLS (see
        :func:`~aiothrift.create_connection`).
    :param connect_timeout: seconds allowed to open one connection.
    :param protocol_cls: a :class:`~aiothrift.TProtocol` subclass.
    :param max_frame_size: largest reply accepted, in bytes.
    :param max_string_size: largest string/binary accepted in a reply.
    :param max_container_size: largest list/set/map accepted in a reply.
    :param max_depth: deepest nesting accepted in a reply.
    :param server_hostname: with ``ssl``: the name the server's certificate
        must match (and SNI); default: the host of ``address``; required for
        TLS over a Unix socket.
    :param service_name: the service to call on a multiplexed server
        (``"service_name:method"`` on the wire; see
        :class:`~aiothrift.TMultiplexedProcessor`).
    :returns: a :class:`ThriftPool`.
    :raises OSError: the first connections could not be opened (for example
        :class:`ConnectionRefusedError`); the pool is closed again.
    """
    _warn_loop(loop)
    pool = ThriftPool(
        service, address, minsize=minsize, maxsize=maxsize, timeout=timeout, framed=framed, ssl=ssl,
        connect_timeout=connect_timeout, protocol_cls=protocol_cls, max_frame_size=max_frame_size,
        max_string_size=max_string_size, max_container_size=max_container_size, max_depth=max_depth,
        server_hostname=server_hostname, service_name=service_name)
    try:
        await pool.fill_free(override_min=False)
    except BaseException:
        pool.close()
        raise
    return pool
