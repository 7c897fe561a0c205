"""Framing of Thrift byte streams, pure Python.

The twin of the compiled ``aiothrift._framing``: same classes, arguments,
results and exceptions (see ``docs/internals.md``).  It is used on PyPy and
with ``AIOTHRIFT_NO_EXTENSIONS=1``.

* :class:`WriteBuffer`: a growable output buffer with back-patched frame
  lengths (a ``bytearray`` here).
* :class:`FramedReader`: splits a stream of 4-byte length prefixed frames.
* :class:`BufferedReader`: splits an unframed stream of binary-protocol
  messages by scanning their encoding with a resumable state machine.
"""

from __future__ import annotations

import struct
import sys
from operator import index as _index
from typing import Any, List, Optional, Tuple, Type, Union

from .errors import (
    BadVersionError,
    DepthLimitError,
    InvalidDataError,
    NegativeSizeError,
    SizeLimitError,
)
from .limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("WriteBuffer", "FramedReader", "BufferedReader", "DEFAULT_INITIAL_SIZE")

BytesLike = Union[bytes, bytearray, memoryview]

#: Bytes a new :class:`WriteBuffer` allocates unless told otherwise (a hint
#: only here: a ``bytearray`` manages its own memory).
DEFAULT_INITIAL_SIZE = 1024

_I32_MAX = (1 << 31) - 1
_SSIZE_MIN = -sys.maxsize - 1

_S_I16 = struct.Struct("!h")
_S_I32 = struct.Struct("!i")
_S_I64 = struct.Struct("!q")
_S_DOUBLE = struct.Struct("!d")
_unpack_i32 = _S_I32.unpack_from
_pack_into_i32 = _S_I32.pack_into


def _ssize(value: Any) -> int:
    """``value`` as a C ``Py_ssize_t`` would take it (TypeError/OverflowError)."""
    value = _index(value)
    if not _SSIZE_MIN <= value <= sys.maxsize:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return value


def _check_limit(value: Any, name: str) -> int:
    value = _ssize(value)
    if value < 0:
        raise ValueError("%s must be >= 0, not %d" % (name, value))
    return value


def _int_in(value: Any, lo: int, hi: int, ctype: str) -> int:
    value = _index(value)
    if not lo <= value <= hi:
        if value < 0 and lo == 0:
            raise OverflowError("can't convert negative value to %s" % ctype)
        raise OverflowError("value too large to convert to %s" % ctype)
    return value


def _as_double(value: Any) -> float:
    """``value`` as C ``PyFloat_AsDouble`` takes it: a float, ``__float__``
    or ``__index__``; an int too big for a double is an OverflowError."""
    if isinstance(value, float):
        return float(value)
    if hasattr(type(value), "__float__"):
        return float(value)
    if hasattr(type(value), "__index__"):
        return float(_index(value))
    raise TypeError("must be real number, not %s" % type(value).__name__)


def _byte_view(data: Any) -> Any:
    """``data`` as something indexable by byte (ints 0..255) and sliceable.

    ``bytes`` is used as is; anything else goes through a ``memoryview`` of
    unsigned bytes, so arrays of wider items count in bytes, like the C
    buffer protocol with ``PyBUF_SIMPLE``.
    """
    if type(data) is bytes:
        return data
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _raise_broken(error: Tuple[Type[BaseException], str]) -> None:
    cls, msg = error
    raise cls("the reader is broken by an earlier error: %s" % (msg,))


# ---------------------------------------------------------------- WriteBuffer

class WriteBuffer:
    """A growable byte buffer with back-patched frame lengths.

    Integers are written big-endian.  :meth:`begin_frame` reserves a 4-byte
    length and :meth:`end_frame` fills it in with the size of what was
    written since, so a framed message is encoded in one pass.

    :param initial_size: bytes to allocate up front (a hint in this
        implementation).
    """

    __slots__ = ("_buf", "_frame_start")

    def __init__(self, initial_size: int = DEFAULT_INITIAL_SIZE) -> None:
        initial_size = _ssize(initial_size)
        if initial_size < 0:
            raise ValueError("initial_size must be >= 0, not %d" % initial_size)
        self._buf = bytearray()
        self._frame_start = -1

    def write(self, data: BytesLike) -> None:
        """Append the bytes of a bytes-like object."""
        if type(data) is bytes:
            self._buf += data
        else:
            self._buf += _byte_view(data)

    def put_u8(self, v: int) -> None:
        """Append one unsigned byte (0..255)."""
        self._buf.append(_int_in(v, 0, 255, "unsigned char"))

    def put_i16(self, v: int) -> None:
        """Append a big-endian signed 16-bit integer."""
        self._buf += _S_I16.pack(_int_in(v, -(1 << 15), (1 << 15) - 1, "int16_t"))

    def put_i32(self, v: int) -> None:
        """Append a big-endian signed 32-bit integer."""
        self._buf += _S_I32.pack(_int_in(v, -(1 << 31), (1 << 31) - 1, "int32_t"))

    def put_i64(self, v: int) -> None:
        """Append a big-endian signed 64-bit integer."""
        self._buf += _S_I64.pack(_int_in(v, -(1 << 63), (1 << 63) - 1, "int64_t"))

    def put_double(self, v: float) -> None:
        """Append a big-endian IEEE 754 double."""
        self._buf += _S_DOUBLE.pack(v if type(v) is float else _as_double(v))

    def begin_frame(self) -> None:
        """Reserve a 4-byte frame length here; :meth:`end_frame` fills it in."""
        if self._frame_start >= 0:
            raise RuntimeError("a frame is already open")
        self._frame_start = len(self._buf)
        self._buf += b"\0\0\0\0"

    def end_frame(self) -> None:
        """Write the length of everything written since :meth:`begin_frame`."""
        start = self._frame_start
        if start < 0:
            raise RuntimeError("end_frame() without begin_frame()")
        size = len(self._buf) - start - 4
        if size > _I32_MAX:
            raise OverflowError("a frame of %d bytes does not fit a 4-byte length" % size)
        _pack_into_i32(self._buf, start, size)
        self._frame_start = -1

    def getvalue(self) -> bytes:
        """The bytes written so far (the buffer keeps them)."""
        if self._frame_start >= 0:
            raise RuntimeError("a frame is still open: call end_frame() first")
        return bytes(self._buf)

    def take(self) -> bytes:
        """The bytes written so far; the buffer is emptied for reuse."""
        if self._frame_start >= 0:
            raise RuntimeError("a frame is still open: call end_frame() first")
        data = bytes(self._buf)
        del self._buf[:]
        return data

    def clear(self) -> None:
        """Drop the content (and an open frame)."""
        del self._buf[:]
        self._frame_start = -1

    def __len__(self) -> int:
        return len(self._buf)

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + self._buf.__sizeof__()


# ------------------------------------------------------------------ readers

class FramedReader:
    """Splits a framed-transport byte stream into message payloads.

    Every frame is a 4-byte big-endian signed length followed by that many
    bytes.  A negative length or one over ``max_frame_size`` raises
    :class:`~aiothrift.errors.SizeLimitError` as soon as the 4 length bytes
    are in, without waiting for the body.  Once :meth:`feed` has raised on
    the data, the reader is broken and every later call raises the same
    class (frames completed earlier in the failing chunk are not returned:
    the stream cannot be trusted anyway).  A ``data`` that is not bytes-like
    raises without breaking it.

    :param max_frame_size: largest frame payload accepted, in bytes.
    """

    __slots__ = ("_hdr", "_body", "_frame_len", "_max_frame_size", "_error")

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._max_frame_size = _check_limit(max_frame_size, "max_frame_size")
        self._hdr = bytearray()       # the length prefix while it is incomplete
        self._body = bytearray()
        self._frame_len = -1          # -1 until the whole length prefix is in
        self._error: Optional[Tuple[Type[BaseException], str]] = None

    @property
    def buffered(self) -> int:
        """Bytes held (length prefix included) until their frame is complete."""
        return len(self._hdr) + len(self._body)

    def feed(self, data: BytesLike) -> List[bytes]:
        """Add received bytes; return the payloads of the frames they complete.

        :param data: a bytes-like object.
        :returns: a list of ``bytes``, one per complete frame, in order.
        :raises SizeLimitError: a frame length is negative or too large.
        """
        if self._error is not None:
            _raise_broken(self._error)
        view = _byte_view(data)
        try:
            return self._feed(view)
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise

    def _check_size(self, size: int) -> int:
        if size < 0:
            raise SizeLimitError("frame size %d is negative" % size)
        if size > self._max_frame_size:
            raise SizeLimitError("frame size %d is over max_frame_size %d"
                                 % (size, self._max_frame_size))
        return size

    def _feed(self, data: Any) -> List[bytes]:
        out: List[bytes] = []
        n = len(data)
        i = 0
        hdr = self._hdr
        if hdr:
            # Finish the frame that earlier chunks started.
            if len(hdr) < 4:
                i = min(4 - len(hdr), n)
                hdr += data[:i]
                if len(hdr) < 4:
                    return out
                self._frame_len = self._check_size(_unpack_i32(hdr)[0])
            body = self._body
            take = min(self._frame_len - len(body), n - i)
            body += data[i:i + take]
            i += take
            if len(body) < self._frame_len:
                return out
            out.append(bytes(body))
            self._body = bytearray()
            del hdr[:]
            self._frame_len = -1
        # Whole frames are sliced straight out of the chunk: one copy each.
        is_bytes = type(data) is bytes
        check = self._check_size
        while n - i >= 4:
            size = check(_unpack_i32(data, i)[0])
            if n - i - 4 < size:
                break
            frame = data[i + 4:i + 4 + size]
            out.append(frame if is_bytes else bytes(frame))
            i += 4 + size
        if i < n:
            take = min(4, n - i)
            hdr += data[i:i + take]
            i += take
            if take == 4:
                # Already checked by the loop above.
                self._frame_len = _unpack_i32(hdr)[0]
                self._body += data[i:]
        return out


# Thrift wire type ids.
_T_STOP = 0
_T_BOOL = 2
_T_BYTE = 3
_T_DOUBLE = 4
_T_I16 = 6
_T_I32 = 8
_T_I64 = 10
_T_STRING = 11
_T_STRUCT = 12
_T_MAP = 13
_T_SET = 14
_T_LIST = 15

#: Width of fixed-size values.
_FIXED_WIDTH = {_T_BOOL: 1, _T_BYTE: 1, _T_I16: 2, _T_I32: 4, _T_I64: 8, _T_DOUBLE: 8}
#: Fewest bytes a value of each wire type takes; its keys are the valid ids.
_MIN_WIDTH = dict(_FIXED_WIDTH)
_MIN_WIDTH.update({_T_STRING: 4, _T_STRUCT: 1, _T_MAP: 6, _T_SET: 5, _T_LIST: 5})

# Scanner modes: what the next token of the message is.
_M_BEGIN = 0        # first i32 of the message header
_M_NAME_LEN = 1     # strict header: i32 name length
_M_TYPE = 2         # old header: message type byte
_M_SEQID = 3        # i32 seqid, then the body struct
_M_FIELD = 4        # a field header (or STOP) of the innermost struct
_M_VALUE = 5        # a value of type _vtype
_M_SKIP = 6         # _skip opaque bytes, then mode _after
_M_NEXT = 7         # a value just ended: ask the innermost container

# Kinds of open levels; a level is a list [kind, ktype, vtype, remaining].
_K_STRUCT = 0
_K_LIST = 1         # list or set: ``remaining`` elements of ``ktype``
_K_MAP = 2          # ``remaining`` keys and values, alternating


class BufferedReader:
    """Splits an unframed binary-protocol byte stream into whole messages.

    Without a length prefix, the end of a message is found by walking its
    binary encoding: the message header, then one struct.  The walk is an
    explicit state machine whose state (position, open structs and
    containers with their element types and counts) survives between
    :meth:`feed` calls, so a message arriving in many chunks is scanned
    once, in linear time, and nothing of it is decoded.

    Limits and errors are those of the decoder
    (:class:`~aiothrift.errors.NegativeSizeError`,
    :class:`~aiothrift.errors.SizeLimitError`,
    :class:`~aiothrift.errors.DepthLimitError`,
    :class:`~aiothrift.errors.BadVersionError`,
    :class:`~aiothrift.errors.InvalidDataError`), raised as soon as the
    offending bytes are in; a message that would grow past
    ``max_frame_size`` raises ``SizeLimitError``.  Incomplete data is never
    an error: the reader waits for more.  Once :meth:`feed` has raised on
    the data, the reader is broken and every later call raises the same
    class (messages completed earlier in the failing chunk are not
    returned: the stream cannot be trusted anyway).  A ``data`` that is not
    bytes-like raises without breaking it.

    :param max_frame_size: largest message accepted, header included, in bytes.
    :param max_string_size: largest string/binary (and message name).
    :param max_container_size: largest list/set/map element count.
    :param max_depth: deepest nesting of structs and containers (the
        message's struct is level 1).
    :param strict_read: reject message headers without a protocol version.
    """

    __slots__ = (
        "_pending", "_max_frame_size", "_max_string_size", "_max_container_size",
        "_max_depth", "_strict_read", "_error",
        "_mode", "_after", "_vtype", "_pos", "_skip", "_stack",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_string_size: int = DEFAULT_MAX_STRING_SIZE,
        max_container_size: int = DEFAULT_MAX_CONTAINER_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        strict_read: bool = True,
    ) -> None:
        self._max_frame_size = _check_limit(max_frame_size, "max_frame_size")
        self._max_string_size = _check_limit(max_string_size, "max_string_size")
        self._max_container_size = _check_limit(max_container_size, "max_container_size")
        self._max_depth = _check_limit(max_depth, "max_depth")
        self._strict_read = bool(strict_read)
        self._error: Optional[Tuple[Type[BaseException], str]] = None
        #: bytes of the incomplete message, from its start
        self._pending = bytearray()
        self._mode = _M_BEGIN
        self._after = _M_BEGIN
        self._vtype = 0
        self._pos = 0       # bytes of the current message scanned
        self._skip = 0
        self._stack: List[List[int]] = []

    @property
    def buffered(self) -> int:
        """Bytes held until the message they start is complete."""
        return len(self._pending)

    def feed(self, data: BytesLike) -> List[bytes]:
        """Add received bytes; return the messages they complete.

        :param data: a bytes-like object.
        :returns: a list of ``bytes``, one per complete message (header
            included, as received), in order.
        :raises ProtocolError: a subclass saying what is wrong.
        """
        if self._error is not None:
            _raise_broken(self._error)
        view = _byte_view(data)
        try:
            return self._feed(view)
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise

    def _feed(self, data: Any) -> List[bytes]:
        out: List[bytes] = []
        n = len(data)
        if n == 0:
            return out
        k = 0
        pending = self._pending
        if pending:
            # The scanner's positions count from the start of the pending
            # message, so the chunk is appended and the scan resumes where it
            # stopped: nothing is scanned twice.
            old = len(pending)
            pending += data
            r = self._scan(pending, 0, len(pending))
            if r < 0:
                return out
            k = r - old
            del pending[r:]
            out.append(bytes(pending))
            self._pending = bytearray()
        is_bytes = type(data) is bytes
        scan = self._scan
        while k < n:
            r = scan(data, k, n)
            if r < 0:
                self._pending = bytearray(memoryview(data)[k:] if is_bytes else data[k:])
                break
            msg = data[k:r]
            out.append(msg if is_bytes else bytes(msg))
            k = r
        return out

    # The scanner tests the limits inline and calls these only to raise.

    def _too_big(self, size: int) -> None:
        raise SizeLimitError("message of at least %d bytes is over max_frame_size %d"
                             % (size, self._max_frame_size))

    def _too_deep(self) -> None:
        raise DepthLimitError("nesting is deeper than max_depth %d" % self._max_depth)

    def _scan(self, q: Any, base: int, end: int) -> int:
        """Advance over the message that starts at ``q[base]``, up to ``q[end]``.

        Returns the offset in ``q`` just past the message once its last byte
        is consumed, or -1 when it needs more bytes (the state is saved for
        the next call).
        """
        pos = self._pos
        skip = self._skip
        mode = self._mode
        after = self._after
        vtype = self._vtype
        stack = self._stack
        m = end - base
        max_frame = self._max_frame_size
        max_depth = self._max_depth
        budget = self._too_big
        fixed_width = _FIXED_WIDTH
        min_width = _MIN_WIDTH

        while True:
            if mode == _M_NEXT:
                if not stack:
                    self._pos = 0
                    self._skip = 0
                    self._mode = _M_BEGIN
                    return base + pos
                top = stack[-1]
                kind = top[0]
                if kind == _K_STRUCT:
                    mode = _M_FIELD
                elif top[3] == 0:
                    stack.pop()
                else:
                    remaining = top[3] - 1
                    top[3] = remaining
                    # A map counts keys and values down from 2 * count: an
                    # odd number left after the decrement means a key.
                    if kind == _K_LIST or remaining & 1:
                        vtype = top[1]
                    else:
                        vtype = top[2]
                    mode = _M_VALUE

            elif mode == _M_FIELD:
                if pos + 1 > max_frame:
                    budget(pos + 1)
                if m - pos < 1:
                    break
                t = q[base + pos]
                if t == _T_STOP:
                    pos += 1
                    stack.pop()
                    mode = _M_NEXT
                    continue
                if t not in min_width:
                    raise InvalidDataError("invalid field type id %d" % t)
                if pos + 3 > max_frame:
                    budget(pos + 3)
                if m - pos < 3:
                    break
                pos += 3
                width = fixed_width.get(t, 0)
                if width and m - pos >= width and pos + width <= max_frame:
                    # Shortcut for the commonest case, a fixed-width field
                    # whose bytes are all here: the same steps as going
                    # through _M_VALUE and _M_NEXT back to _M_FIELD, with two
                    # trips round the loop fewer.
                    pos += width
                    continue
                vtype = t
                mode = _M_VALUE

            elif mode == _M_VALUE:
                width = fixed_width.get(vtype, 0)
                if width:
                    if pos + width > max_frame:
                        budget(pos + width)
                    if m - pos < width:
                        break
                    pos += width
                    mode = _M_NEXT
                elif vtype == _T_STRING:
                    if pos + 4 > max_frame:
                        budget(pos + 4)
                    if m - pos < 4:
                        break
                    size = _unpack_i32(q, base + pos)[0]
                    if size < 0:
                        raise NegativeSizeError("negative string length %d" % size)
                    if size > self._max_string_size:
                        raise SizeLimitError("string length %d is over max_string_size %d"
                                             % (size, self._max_string_size))
                    if pos + 4 + size > max_frame:
                        budget(pos + 4 + size)
                    pos += 4
                    if m - pos >= size:
                        # All here: skip it now rather than via _M_SKIP.
                        pos += size
                        mode = _M_NEXT
                    else:
                        skip = size
                        after = _M_NEXT
                        mode = _M_SKIP
                elif vtype == _T_STRUCT:
                    if len(stack) >= max_depth:
                        self._too_deep()
                    stack.append([_K_STRUCT, 0, 0, 0])
                    mode = _M_FIELD
                elif vtype == _T_LIST or vtype == _T_SET:
                    if len(stack) >= max_depth:
                        self._too_deep()
                    if pos + 5 > max_frame:
                        budget(pos + 5)
                    if m - pos < 5:
                        break
                    t = q[base + pos]
                    size = _unpack_i32(q, base + pos + 1)[0]
                    if size < 0:
                        raise NegativeSizeError("negative container size %d" % size)
                    if size > self._max_container_size:
                        raise SizeLimitError("container size %d is over max_container_size %d"
                                             % (size, self._max_container_size))
                    if size > 0 and t not in min_width:
                        raise InvalidDataError("invalid element type id %d" % t)
                    need = pos + 5 + size * min_width.get(t, 0)
                    if need > max_frame:
                        budget(need)
                    pos += 5
                    if size == 0:
                        mode = _M_NEXT
                    elif t in fixed_width:
                        # Fixed-width elements: one skip, however many there are.
                        skip = size * fixed_width[t]
                        after = _M_NEXT
                        mode = _M_SKIP
                    else:
                        stack.append([_K_LIST, t, 0, size])
                        mode = _M_NEXT
                elif vtype == _T_MAP:
                    if len(stack) >= max_depth:
                        self._too_deep()
                    if pos + 6 > max_frame:
                        budget(pos + 6)
                    if m - pos < 6:
                        break
                    kt = q[base + pos]
                    vt = q[base + pos + 1]
                    size = _unpack_i32(q, base + pos + 2)[0]
                    if size < 0:
                        raise NegativeSizeError("negative container size %d" % size)
                    if size > self._max_container_size:
                        raise SizeLimitError("container size %d is over max_container_size %d"
                                             % (size, self._max_container_size))
                    if size > 0 and (kt not in min_width or vt not in min_width):
                        raise InvalidDataError("invalid map key/value type ids %d, %d" % (kt, vt))
                    need = pos + 6 + size * (min_width.get(kt, 0) + min_width.get(vt, 0))
                    if need > max_frame:
                        budget(need)
                    pos += 6
                    if size == 0:
                        mode = _M_NEXT
                    elif kt in fixed_width and vt in fixed_width:
                        skip = size * (fixed_width[kt] + fixed_width[vt])
                        after = _M_NEXT
                        mode = _M_SKIP
                    else:
                        stack.append([_K_MAP, kt, vt, size * 2])
                        mode = _M_NEXT
                else:
                    # Field and element types are validated before they get here.
                    raise InvalidDataError("invalid type id %d" % vtype)

            elif mode == _M_SKIP:
                if m - pos < skip:
                    skip -= m - pos
                    pos = m
                    break
                pos += skip
                skip = 0
                mode = after

            elif mode == _M_BEGIN:
                if pos + 4 > max_frame:
                    budget(pos + 4)
                if m - pos < 4:
                    break
                size = _unpack_i32(q, base + pos)[0]
                if size < 0:
                    version = size & 0xFFFFFFFF
                    if version & 0xFFFF0000 != 0x80010000:
                        raise BadVersionError("bad protocol version 0x%08x" % version)
                    pos += 4
                    mode = _M_NAME_LEN
                else:
                    if self._strict_read:
                        raise BadVersionError(
                            "message header without a protocol version (strict_read is on)")
                    # Old header: the first i32 is the name length.
                    if size > self._max_string_size:
                        raise SizeLimitError("message name length %d is over max_string_size %d"
                                             % (size, self._max_string_size))
                    if pos + 4 + size > max_frame:
                        budget(pos + 4 + size)
                    pos += 4
                    skip = size
                    after = _M_TYPE
                    mode = _M_SKIP

            elif mode == _M_NAME_LEN:
                if pos + 4 > max_frame:
                    budget(pos + 4)
                if m - pos < 4:
                    break
                size = _unpack_i32(q, base + pos)[0]
                if size < 0:
                    raise NegativeSizeError("negative message name length %d" % size)
                if size > self._max_string_size:
                    raise SizeLimitError("message name length %d is over max_string_size %d"
                                         % (size, self._max_string_size))
                if pos + 4 + size > max_frame:
                    budget(pos + 4 + size)
                pos += 4
                skip = size
                after = _M_SEQID
                mode = _M_SKIP

            elif mode == _M_TYPE:
                if pos + 1 > max_frame:
                    budget(pos + 1)
                if m - pos < 1:
                    break
                pos += 1
                mode = _M_SEQID

            elif mode == _M_SEQID:
                if pos + 4 > max_frame:
                    budget(pos + 4)
                if m - pos < 4:
                    break
                pos += 4
                if len(stack) >= max_depth:
                    self._too_deep()
                stack.append([_K_STRUCT, 0, 0, 0])
                mode = _M_FIELD

            else:
                raise AssertionError("bad scanner mode %d" % mode)

        self._pos = pos
        self._skip = skip
        self._mode = mode
        self._after = after
        self._vtype = vtype
        return -1
