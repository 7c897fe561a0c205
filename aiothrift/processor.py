"""Service introspection and request dispatch.

:class:`MethodSpec` describes one method of a thriftpy2 service (its args and
result classes, whether it is oneway, its declared exceptions).  The client
(:mod:`aiothrift.connection`) and the server side (:class:`TProcessor`) both
read services through it, so they agree on argument order, void results and
exception mapping.

:class:`TProcessor` binds a service to a handler object and turns one decoded
request into the reply to send: the result struct, a declared exception in
that struct, or a ``TApplicationException``.  It does no I/O; the server's
connection protocol (:mod:`aiothrift.server`) does.

:class:`TMultiplexedProcessor` routes ``"Service:method"`` calls to one
:class:`TProcessor` per service name (Apache's multiplexed wire format).  The
server asks a processor two things: ``lookup(name)`` (the method's entry, or
``None``) and ``unknown_method(name)`` (how to answer when there is none).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from thriftpy2.thrift import TApplicationException

from .errors import ThriftAppError

__all__ = (
    "TProcessor", "TMultiplexedProcessor", "MethodSpec", "method_specs", "SEPARATOR",
    "CALL", "REPLY", "EXCEPTION", "ONEWAY",
)

logger = logging.getLogger("aiothrift")

# Thrift message types.
CALL = 1
REPLY = 2
EXCEPTION = 3
ONEWAY = 4

#: Between the service name and the method name in the message name of a
#: multiplexed call (``"Calc:add"``), as Apache's ``TMultiplexedProtocol``.
SEPARATOR = ":"


class MethodSpec:
    """What the wire needs to know about one service method.

    :param service: the thriftpy2 service class.
    :param name: the method name, as in the IDL.
    """

    __slots__ = ("name", "args_cls", "result_cls", "oneway", "arg_names", "has_success", "exc_fields")

    def __init__(self, service: type, name: str) -> None:
        self.name = name
        self.args_cls: type = getattr(service, name + "_args")
        self.result_cls: type = getattr(service, name + "_result")
        self.oneway: bool = bool(getattr(self.result_cls, "oneway", False))
        # thrift_spec insertion order is the IDL declaration order, which is
        # the order of positional arguments (and of the generated __init__).
        self.arg_names: Tuple[str, ...] = tuple(f[1] for f in self.args_cls.thrift_spec.values())
        rspec = self.result_cls.thrift_spec
        self.has_success: bool = 0 in rspec
        #: (field name, exception class) of every declared exception
        self.exc_fields: Tuple[Tuple[str, type], ...] = tuple(
            (f[1], f[2]) for fid, f in rspec.items() if fid != 0
        )

    def make_args(self, args: tuple, kwargs: Dict[str, Any]) -> Any:
        """The args struct of a call: positional in IDL order, keywords by name.

        Too many positional arguments, an unknown keyword or a value given
        twice raise :class:`TypeError` (from the generated ``__init__``).
        """
        return self.args_cls(*args, **kwargs)

    def unpack_result(self, result: Any) -> Any:
        """The value of a decoded result struct: raise what it holds.

        :raises: the declared exception it carries, or :class:`ThriftAppError`
            ``MISSING_RESULT`` when a non-void method returned nothing.
        """
        if self.has_success:
            value = result.success
            if value is not None:
                return value
        for fname, _ in self.exc_fields:
            exc = getattr(result, fname, None)
            if exc is not None:
                raise exc
        if self.has_success:
            raise ThriftAppError(ThriftAppError.MISSING_RESULT, "%s failed: unknown result" % self.name)
        return None

    def __repr__(self) -> str:
        return "<MethodSpec %s%s>" % (self.name, " oneway" if self.oneway else "")


_specs_cache: "weakref.WeakKeyDictionary[type, Dict[str, MethodSpec]]" = weakref.WeakKeyDictionary()


def method_specs(service: type) -> Dict[str, MethodSpec]:
    """``{name: MethodSpec}`` for every method of ``service`` (inherited ones too).

    Computed once per service class.
    """
    try:
        return _specs_cache[service]
    except KeyError:
        pass
    names = getattr(service, "thrift_services", None)
    if names is None:
        raise TypeError("%r is not a thriftpy2 service (no thrift_services)" % (service,))
    specs = {name: MethodSpec(service, name) for name in names}
    _specs_cache[service] = specs
    return specs


def app_exception(type: int, message: str) -> TApplicationException:
    """A ``TApplicationException`` struct ready to encode."""
    return TApplicationException(type=type, message=message)


def app_error_from_struct(obj: Any) -> ThriftAppError:
    """Map a decoded ``TApplicationException`` struct to :class:`ThriftAppError`."""
    type_ = getattr(obj, "type", None)
    message = getattr(obj, "message", None)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return ThriftAppError(ThriftAppError.UNKNOWN if type_ is None else type_, message)


class _Entry:
    """A method bound to its handler function."""

    __slots__ = ("spec", "func", "is_async")

    def __init__(self, spec: MethodSpec, func: Callable[..., Any]) -> None:
        self.spec = spec
        self.func = func
        # A handler may also be a plain function returning an awaitable (a
        # decorator, functools.partial of a coroutine function...):
        # TProcessor.call checks results of non-async functions too.
        self.is_async = inspect.iscoroutinefunction(func)


class TProcessor:
    """Dispatches requests of ``service`` to the methods of ``handler``.

    Handler methods have the IDL method names and take the IDL arguments
    positionally.  They may be ``async def`` coroutine functions or plain
    functions; a plain function's return value is used directly (it runs on
    the event loop, not in a thread: keep it short).  Raising an exception
    declared in the IDL (``throws``) sends it to the client as that
    exception; raising :class:`~aiothrift.ThriftAppError` sends a
    ``TApplicationException`` of its type; any other exception is logged on
    the ``"aiothrift"`` logger and sent as ``INTERNAL_ERROR``.

    :param service: a thriftpy2 service class (``thriftpy2.load(...).Service``).
    :param handler: an object with one attribute per implemented method.  A
        method the handler does not have is answered ``UNKNOWN_METHOD``.
    """

    __slots__ = ("service", "handler", "_entries")

    def __init__(self, service: type, handler: Any) -> None:
        self.service = service
        self.handler = handler
        self._entries: Dict[str, _Entry] = {}
        for name, spec in method_specs(service).items():
            func = getattr(handler, name, None)
            if callable(func):
                self._entries[name] = _Entry(spec, func)

    def lookup(self, name: str) -> Optional[_Entry]:
        """The entry of method ``name``, or ``None`` if unknown or unimplemented."""
        return self._entries.get(name)

    def unknown_method(self, name: str) -> Tuple[str, str]:
        """``(reply name, message)`` of the ``UNKNOWN_METHOD`` answer to a
        call of ``name`` that :meth:`lookup` did not find."""
        return name, "Unknown method %r" % name

    @staticmethod
    def call(entry: _Entry, args: Any) -> Any:
        """Run the handler on a decoded args struct.

        :returns: the handler's return value: for ``async`` handlers (or
            plain functions returning an awaitable) an awaitable the caller
            must await.
        :raises: whatever the handler raises.
        """
        return entry.func(*[getattr(args, n) for n in entry.spec.arg_names])

    @staticmethod
    def result(entry: _Entry, value: Any) -> Any:
        """The result struct for a handler's return value."""
        result = entry.spec.result_cls()
        if entry.spec.has_success:
            result.success = value
        return result

    @staticmethod
    def exception(entry: Optional[_Entry], exc: BaseException) -> Tuple[int, Any]:
        """``(message type, struct)`` to send for a handler's exception.

        Declared exceptions go into the result struct (``REPLY``);
        :class:`ThriftAppError` and thriftpy2's ``TApplicationException``
        keep their type; anything else is logged and becomes
        ``INTERNAL_ERROR`` with ``repr(exc)`` as its message.
        """
        if entry is not None:
            for fname, cls in entry.spec.exc_fields:
                if isinstance(exc, cls):
                    result = entry.spec.result_cls()
                    setattr(result, fname, exc)
                    return REPLY, result
        if isinstance(exc, ThriftAppError):
            return EXCEPTION, app_exception(exc.type, exc.message or "")
        if isinstance(exc, TApplicationException):
            return EXCEPTION, app_exception(exc.type, exc.message or "")
        name = entry.spec.name if entry is not None else "?"
        logger.error("handler of %s raised an exception the IDL does not declare", name, exc_info=exc)
        return EXCEPTION, app_exception(ThriftAppError.INTERNAL_ERROR, repr(exc))

    def __repr__(self) -> str:
        return "<TProcessor %s -> %r>" % (getattr(self.service, "__name__", self.service), self.handler)


class TMultiplexedProcessor:
    """Several services on one server, each under its name.

    The wire format of Apache Thrift's ``TMultiplexedProcessor``: a call's
    message name is ``"ServiceName:method"`` (what Apache's and thriftpy2's
    ``TMultiplexedProtocol`` clients send, and what
    ``create_connection(..., service_name="ServiceName")`` sends); the reply
    carries the plain method name, as Apache's processor writes it.  Pass the
    processor to :func:`~aiothrift.create_server` in place of the service,
    with no handler::

        mux = aiothrift.TMultiplexedProcessor()
        mux.register("Calc", calc_thrift.Calculator, CalcHandler())
        mux.register("Echo", echo_thrift.Echo, EchoHandler())
        server = await aiothrift.create_server(mux, None, ("127.0.0.1", 6000))

    What the server answers to calls it cannot route (the connection stays
    open): a service name that is not registered -> ``UNKNOWN_METHOD``
    naming it; a message name without ``":"`` (a client that is not
    multiplexed) -> the :meth:`register_default` service if there is one,
    else ``UNKNOWN_METHOD``.  (Apache's processor raises in both cases and
    its server drops the connection.)
    """

    __slots__ = ("_processors", "_default")

    def __init__(self) -> None:
        self._processors: Dict[str, TProcessor] = {}
        self._default: Optional[TProcessor] = None

    @staticmethod
    def _processor(service: Any, handler: Any) -> TProcessor:
        if isinstance(service, TProcessor):
            if handler is not None:
                raise TypeError("give a TProcessor or (service, handler), not both")
            return service
        return TProcessor(service, handler)

    def register(self, name: str, service: Any, handler: Any = None) -> TProcessor:
        """Serve ``service`` with ``handler`` under ``name``.

        :param name: the service name clients give (``service_name=`` of
            :func:`~aiothrift.create_connection`, the second argument of
            Apache's ``TMultiplexedProtocol``); not empty, no ``":"``.
        :param service: a thriftpy2 service class, or a ready
            :class:`TProcessor` (then ``handler`` is ``None``).
        :param handler: the handler object (see :class:`TProcessor`).
        :returns: the :class:`TProcessor` registered.
        :raises ValueError: a bad name, or one already registered.
        """
        if not isinstance(name, str) or not name or SEPARATOR in name:
            raise ValueError("a service name is a non-empty str without %r, not %r" % (SEPARATOR, name))
        if name in self._processors:
            raise ValueError("service name %r is already registered" % (name,))
        processor = self._processor(service, handler)
        self._processors[name] = processor
        return processor

    def register_default(self, service: Any, handler: Any = None) -> TProcessor:
        """Serve calls without a service name (non-multiplexed clients) with
        ``service``: lets a server move to multiplexing and still answer its
        old clients (Apache's ``registerDefault``).

        :returns: the :class:`TProcessor` registered.
        """
        if self._default is not None:
            raise ValueError("a default service is already registered")
        self._default = self._processor(service, handler)
        return self._default

    @property
    def services(self) -> Dict[str, TProcessor]:
        """``{name: TProcessor}`` of the registered services (a copy)."""
        return dict(self._processors)

    def lookup(self, name: str) -> Optional[_Entry]:
        """The entry of ``"Service:method"`` (or of ``method`` of the default
        service), or ``None``."""
        service_name, sep, method = name.partition(SEPARATOR)
        if not sep:
            default = self._default
            return default.lookup(name) if default is not None else None
        processor = self._processors.get(service_name)
        return processor.lookup(method) if processor is not None else None

    def unknown_method(self, name: str) -> Tuple[str, str]:
        """``(reply name, message)`` of the ``UNKNOWN_METHOD`` answer to
        ``name``; the reply name is the plain method name."""
        service_name, sep, method = name.partition(SEPARATOR)
        if not sep:
            if self._default is not None:
                return self._default.unknown_method(name)
            return name, ("no service name in %r: this server is multiplexed (services %s); "
                          "the client must name a service (service_name=...)" % (
                              name, ", ".join(sorted(self._processors)) or "none"))
        if service_name not in self._processors:
            return method, "Unknown service %r (method %r)" % (service_name, method)
        return method, "Unknown method %r of service %r" % (method, service_name)

    def __repr__(self) -> str:
        return "<TMultiplexedProcessor %s%s>" % (
            ", ".join(sorted(self._processors)), " +default" if self._default is not None else "")
