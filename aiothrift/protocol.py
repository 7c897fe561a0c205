"""Protocol classes: the public face of the codecs.

A protocol object holds the options of one side of a connection (strictness,
string decoding, limits) and the codec that implements them.  The codec is
taken from the implementation that :mod:`aiothrift._compat` selected.
"""

from __future__ import annotations

from typing import Any, Optional, Type, TypeVar, Union

from . import _compat
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("TProtocol", "TBinaryProtocol", "TCompactProtocol", "serialize", "deserialize")

T = TypeVar("T")


class TProtocol:
    """Base class of Thrift protocols.

    :param trans: accepted for compatibility with aiothrift 0.2; unused, the
        asyncio layers own the transport.
    :param strict_read: reject message headers without a version.
    :param strict_write: write message headers with a version.
    :param decode_response: decode ``string`` fields to ``str`` (else ``bytes``).
    :param max_string_size: largest string/binary accepted, in bytes.
    :param max_container_size: largest list/set/map element count accepted.
    :param max_depth: deepest struct/container nesting accepted.
    """

    __slots__ = (
        "trans", "strict_read", "strict_write", "decode_response",
        "max_string_size", "max_container_size", "max_depth", "codec",
    )

    def __init__(
        self,
        trans: Any = None,
        strict_read: bool = True,
        strict_write: bool = True,
        decode_response: bool = True,
        *,
        max_string_size: int = DEFAULT_MAX_STRING_SIZE,
        max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.trans = trans
        self.strict_read = strict_read
        self.strict_write = strict_write
        self.decode_response = decode_response
        self.max_string_size = max_string_size
        self.max_container_size = max_container_size
        self.max_depth = max_depth
        self.codec = self._make_codec()

    def _make_codec(self) -> Any:
        raise NotImplementedError

    def make_reader(self, *, framed: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
        """A reader that splits a byte stream into whole messages of this protocol."""
        raise NotImplementedError


class TBinaryProtocol(TProtocol):
    """Thrift's binary protocol, compiled when available."""

    __slots__ = ()

    def _make_codec(self) -> Any:
        return _compat.binary.BinaryCodec(
            strict_read=self.strict_read,
            strict_write=self.strict_write,
            decode_response=self.decode_response,
            max_string_size=self.max_string_size,
            max_container_size=self.max_container_size,
            max_depth=self.max_depth,
        )

    def make_reader(self, *, framed: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
        framing = _compat.framing
        if framed:
            return framing.FramedReader(max_frame_size=max_frame_size)
        return framing.BufferedReader(
            max_frame_size=max_frame_size,
            max_string_size=self.max_string_size,
            max_container_size=self.max_container_size,
            max_depth=self.max_depth,
            strict_read=self.strict_read,
        )


class TCompactProtocol(TProtocol):
    """Thrift's compact protocol, compiled when available.

    Same options, limits and errors as :class:`TBinaryProtocol`; the compact
    message header has a single (versioned) form, so ``strict_read`` and
    ``strict_write`` change nothing.  Framed transport uses the same
    ``FramedReader``; unframed messages are split by a compact-protocol scanner.
    """

    __slots__ = ()

    def _make_codec(self) -> Any:
        return _compat.compact.CompactCodec(
            strict_read=self.strict_read,
            strict_write=self.strict_write,
            decode_response=self.decode_response,
            max_string_size=self.max_string_size,
            max_container_size=self.max_container_size,
            max_depth=self.max_depth,
        )

    def make_reader(self, *, framed: bool, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> Any:
        if framed:
            return _compat.framing.FramedReader(max_frame_size=max_frame_size)
        return _compat.compact.CompactBufferedReader(
            max_frame_size=max_frame_size,
            max_string_size=self.max_string_size,
            max_container_size=self.max_container_size,
            max_depth=self.max_depth,
            strict_read=self.strict_read,
        )


def serialize(obj: Any, protocol_cls: Type[TProtocol] = TBinaryProtocol, **options: Any) -> bytes:
    """Encode a thriftpy2 struct (or exception) to bytes.

    :param options: protocol options (``strict_write``, limits...).
    """
    return protocol_cls(None, **options).codec.encode_struct(obj)


def deserialize(
    cls_or_obj: Union[Type[T], T],
    data: Union[bytes, bytearray, memoryview],
    protocol_cls: Type[TProtocol] = TBinaryProtocol,
    **options: Any,
) -> T:
    """Decode ``data`` into a struct.

    :param cls_or_obj: a thriftpy2 struct class (a new object is built) or an
        instance (its fields are set from ``data``).
    :param options: protocol options (``decode_response``, limits...).
    """
    return protocol_cls(None, **options).codec.decode_struct(cls_or_obj, data)
