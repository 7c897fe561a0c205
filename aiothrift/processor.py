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
"""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from thriftpy2.thrift import TApplicationException

from .errors import ThriftAppError

__all__ = ("TProcessor", "MethodSpec", "method_specs", "CALL", "REPLY", "EXCEPTION", "ONEWAY")

logger = logging.getLogger("aiothrift")

# Thrift message types.
CALL = 1
REPLY = 2
EXCEPTION = 3
ONEWAY = 4


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
