"""Exceptions raised by aiothrift.

Both codec implementations (compiled and pure Python) import this module, so
they raise exactly the same classes.  Every error about malformed or hostile
input subclasses :class:`ProtocolError`, which is also a :class:`ValueError`.
"""

from __future__ import annotations

__all__ = (
    "ThriftError",
    "ConnectionClosedError",
    "PoolClosedError",
    "ThriftAppError",
    "ProtocolError",
    "TruncatedError",
    "NegativeSizeError",
    "SizeLimitError",
    "DepthLimitError",
    "BadVersionError",
    "InvalidDataError",
)


class ThriftError(Exception):
    """Base exception of aiothrift."""


class ConnectionClosedError(ThriftError, ConnectionError):
    """The connection was closed (by us or by the peer) before the call finished."""


class PoolClosedError(ThriftError):
    """The connection pool is closed."""


class ThriftAppError(ThriftError):
    """A ``TApplicationException`` received from, or to be sent to, the peer.

    :param type: one of the ``TApplicationException`` type codes below.
    :param message: human readable text.
    """

    UNKNOWN = 0
    UNKNOWN_METHOD = 1
    INVALID_MESSAGE_TYPE = 2
    WRONG_METHOD_NAME = 3
    BAD_SEQUENCE_ID = 4
    MISSING_RESULT = 5
    INTERNAL_ERROR = 6
    PROTOCOL_ERROR = 7
    INVALID_TRANSFORM = 8
    INVALID_PROTOCOL = 9
    UNSUPPORTED_CLIENT_TYPE = 10

    def __init__(self, type: int = UNKNOWN, message: str | None = None) -> None:
        super().__init__(type, message)
        self.type = type
        self.message = message

    def __str__(self) -> str:
        return self.message or "TApplicationException type %d" % self.type


class ProtocolError(ThriftError, ValueError):
    """Malformed, truncated or over-limit Thrift data."""


class TruncatedError(ProtocolError):
    """The input ended in the middle of a value."""


class NegativeSizeError(ProtocolError):
    """A declared length or element count is negative."""


class SizeLimitError(ProtocolError):
    """A declared frame, string, binary or container size is over its limit."""


class DepthLimitError(ProtocolError):
    """Structs and containers nest deeper than ``max_depth``."""


class BadVersionError(ProtocolError):
    """A message header has a bad or missing protocol version."""


class InvalidDataError(ProtocolError):
    """Anything else that is not valid for the schema or the protocol.

    Unknown type ids, a missing required field, an unhashable set element or
    map key, a bad message name.
    """
