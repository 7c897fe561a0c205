# cython: language_level=3, embedsignature=True
"""Framing of Thrift byte streams, compiled.

The twin of ``aiothrift._framing_py``: same classes, arguments, results and
exceptions (see ``docs/internals.md``).

* :class:`WriteBuffer`: the growable output buffer the compiled codec writes
  into (declared in ``_framing.pxd`` so ``_binary`` can ``cimport`` it).
* :class:`FramedReader`: splits a stream of 4-byte length prefixed frames.
* :class:`BufferedReader`: splits an unframed stream of binary-protocol
  messages by scanning their encoding with a resumable state machine.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.number cimport PyNumber_Index
from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint32_t
from libc.stdlib cimport free, malloc, realloc

from aiothrift.errors import (
    BadVersionError,
    DepthLimitError,
    InvalidDataError,
    NegativeSizeError,
    SizeLimitError,
)
from aiothrift.limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

__all__ = ("WriteBuffer", "FramedReader", "BufferedReader", "DEFAULT_INITIAL_SIZE")

#: Bytes a new :class:`WriteBuffer` allocates unless told otherwise.
DEFAULT_INITIAL_SIZE = 1024

cdef enum:
    _DEFAULT_INITIAL = 1024
    # Smallest allocation once a buffer has to grow: avoids a string of
    # tiny reallocs for buffers created with initial_size=0.
    _MIN_GROW = 256
    # take() gives back memory above this, so that one big message does not
    # pin megabytes per connection for ever.
    _SHRINK_ABOVE = 1048576
    _SHRINK_TO = _DEFAULT_INITIAL


# ---------------------------------------------------------------- WriteBuffer

cdef inline void _shrink(WriteBuffer buf) noexcept:
    # Only called on an empty buffer.  free() + malloc() rather than a
    # shrinking realloc(): glibc's realloc of an mmap()ed block unmaps it
    # without raising its mmap threshold, so every later big message would
    # mmap and page-fault its memory afresh (measured: 5x slower on 10 MiB
    # messages).  A failed malloc leaves the old block in place.
    cdef char* p
    if buf._cap > _SHRINK_ABOVE and buf._len == 0:
        p = <char*>malloc(_SHRINK_TO)
        if p is not NULL:
            free(buf._data)
            buf._data = p
            buf._cap = _SHRINK_TO


@cython.final
cdef class WriteBuffer:
    """A growable byte buffer with back-patched frame lengths.

    Integers are written big-endian.  :meth:`begin_frame` reserves a 4-byte
    length and :meth:`end_frame` fills it in with the size of what was
    written since, so a framed message is encoded in one pass.

    :param initial_size: bytes to allocate up front; the buffer doubles as
        needed after that.
    """

    def __cinit__(self, Py_ssize_t initial_size=_DEFAULT_INITIAL):
        if initial_size < 0:
            raise ValueError("initial_size must be >= 0, not %d" % initial_size)
        self._frame_start = -1
        if initial_size > 0:
            self._data = <char*>malloc(<size_t>initial_size)
            if self._data is NULL:
                raise MemoryError("cannot allocate a %d byte buffer" % initial_size)
            self._cap = initial_size

    def __dealloc__(self):
        free(self._data)
        self._data = NULL

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need, new_cap
        cdef char* p
        if extra > PY_SSIZE_T_MAX - self._len:
            raise MemoryError("buffer size would overflow")
        need = self._len + extra
        new_cap = self._cap if self._cap >= _MIN_GROW else _MIN_GROW
        while new_cap < need:
            if new_cap > PY_SSIZE_T_MAX // 2:
                new_cap = need
                break
            new_cap *= 2
        p = <char*>realloc(self._data, <size_t>new_cap)
        if p is NULL:
            raise MemoryError("cannot grow the buffer to %d bytes" % new_cap)
        self._data = p
        self._cap = new_cap
        return 0

    cdef int c_begin_frame(self) except -1:
        cdef Py_ssize_t start
        if self._frame_start >= 0:
            raise RuntimeError("a frame is already open")
        start = self._len
        self.write_i32(0)
        self._frame_start = start
        return 0

    cdef int c_end_frame(self) except -1:
        cdef Py_ssize_t size
        cdef uint32_t u
        cdef unsigned char* p
        if self._frame_start < 0:
            raise RuntimeError("end_frame() without begin_frame()")
        size = self._len - self._frame_start - 4
        # _len is writable from C: make sure the 4 reserved bytes still exist
        # before patching them.
        if size < 0 or self._frame_start + 4 > self._cap:
            raise RuntimeError("the buffer was cut back past the open frame")
        if size > INT32_MAX:
            raise OverflowError("a frame of %d bytes does not fit a 4-byte length" % size)
        u = <uint32_t>size
        p = <unsigned char*>self._data + self._frame_start
        p[0] = <unsigned char>(u >> 24)
        p[1] = <unsigned char>(u >> 16)
        p[2] = <unsigned char>(u >> 8)
        p[3] = <unsigned char>u
        self._frame_start = -1
        return 0

    cdef bytes c_take(self):
        cdef bytes data
        if self._frame_start >= 0:
            raise RuntimeError("a frame is still open: call end_frame() first")
        data = PyBytes_FromStringAndSize(self._data, self._len)
        self._len = 0
        _shrink(self)
        return data

    # -- Python API -------------------------------------------------------

    def write(self, data):
        """Append the bytes of a bytes-like object."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self.write_raw(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def put_u8(self, v):
        """Append one unsigned byte (0..255)."""
        # PyNumber_Index first: a float must be a TypeError, not truncated.
        cdef unsigned char x = PyNumber_Index(v)
        self.write_u8(x)

    def put_i16(self, v):
        """Append a big-endian signed 16-bit integer."""
        # PyNumber_Index first: a float must be a TypeError, not truncated.
        cdef int16_t x = PyNumber_Index(v)
        self.write_i16(x)

    def put_i32(self, v):
        """Append a big-endian signed 32-bit integer."""
        # PyNumber_Index first: a float must be a TypeError, not truncated.
        cdef int32_t x = PyNumber_Index(v)
        self.write_i32(x)

    def put_i64(self, v):
        """Append a big-endian signed 64-bit integer."""
        # PyNumber_Index first: a float must be a TypeError, not truncated.
        cdef int64_t x = PyNumber_Index(v)
        self.write_i64(x)

    def put_double(self, double v):
        """Append a big-endian IEEE 754 double."""
        self.write_double(v)

    def begin_frame(self):
        """Reserve a 4-byte frame length here; :meth:`end_frame` fills it in."""
        self.c_begin_frame()

    def end_frame(self):
        """Write the length of everything written since :meth:`begin_frame`."""
        self.c_end_frame()

    def getvalue(self):
        """The bytes written so far (the buffer keeps them)."""
        if self._frame_start >= 0:
            raise RuntimeError("a frame is still open: call end_frame() first")
        return PyBytes_FromStringAndSize(self._data, self._len)

    def take(self):
        """The bytes written so far; the buffer is emptied for reuse."""
        return self.c_take()

    def clear(self):
        """Drop the content (and an open frame)."""
        self.c_reset()
        _shrink(self)

    def __len__(self):
        return self._len

    def __sizeof__(self):
        return type(self).__basicsize__ + self._cap


# ------------------------------------------------------------------ readers

cdef enum:
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

# Indexed by a type byte (0..255, so any byte is a valid index).
# _FIXED_WIDTH: width of a fixed-size value, 0 for the others.
# _MIN_WIDTH: fewest bytes a value can take, 0 for ids that are not Thrift
# wire types (so it doubles as the validity test).
cdef unsigned char _FIXED_WIDTH[256]
cdef unsigned char _MIN_WIDTH[256]


cdef void _init_tables() noexcept:
    cdef int i
    for i in range(256):
        _FIXED_WIDTH[i] = 0
        _MIN_WIDTH[i] = 0
    _FIXED_WIDTH[_T_BOOL] = 1
    _FIXED_WIDTH[_T_BYTE] = 1
    _FIXED_WIDTH[_T_I16] = 2
    _FIXED_WIDTH[_T_I32] = 4
    _FIXED_WIDTH[_T_I64] = 8
    _FIXED_WIDTH[_T_DOUBLE] = 8
    for i in range(256):
        _MIN_WIDTH[i] = _FIXED_WIDTH[i]
    _MIN_WIDTH[_T_STRING] = 4      # length
    _MIN_WIDTH[_T_STRUCT] = 1      # STOP
    _MIN_WIDTH[_T_MAP] = 6         # key type, value type, count
    _MIN_WIDTH[_T_SET] = 5         # element type, count
    _MIN_WIDTH[_T_LIST] = 5


_init_tables()


cdef inline int32_t _be_i32(const unsigned char* p) noexcept:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
                     | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline Py_ssize_t _min(Py_ssize_t a, Py_ssize_t b) noexcept:
    return a if a < b else b


cdef _raise_broken(tuple error):
    cls, msg = error
    raise cls("the reader is broken by an earlier error: %s" % (msg,))


cdef Py_ssize_t _check_limit(Py_ssize_t value, str name) except -1:
    if value < 0:
        raise ValueError("%s must be >= 0, not %d" % (name, value))
    return value


@cython.final
cdef class FramedReader:
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

    cdef WriteBuffer _body
    cdef unsigned char _hdr[4]
    cdef Py_ssize_t _hdr_len
    cdef Py_ssize_t _frame_len      # -1 until the whole length prefix is in
    cdef Py_ssize_t _max_frame_size
    cdef tuple _error

    def __cinit__(self, *, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        self._max_frame_size = _check_limit(max_frame_size, "max_frame_size")
        self._body = WriteBuffer(0)
        self._hdr_len = 0
        self._frame_len = -1

    @property
    def buffered(self):
        """Bytes held (length prefix included) until their frame is complete."""
        return self._hdr_len + self._body._len

    def feed(self, data):
        """Add received bytes; return the payloads of the frames they complete.

        :param data: a bytes-like object.
        :returns: a list of ``bytes``, one per complete frame, in order.
        :raises SizeLimitError: a frame length is negative or too large.
        """
        cdef Py_buffer view
        if self._error is not None:
            _raise_broken(self._error)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._feed(<const unsigned char*>view.buf, view.len)
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise
        finally:
            PyBuffer_Release(&view)

    cdef inline Py_ssize_t _check_size(self, int32_t size) except -1:
        if size < 0:
            raise SizeLimitError("frame size %d is negative" % size)
        if size > self._max_frame_size:
            raise SizeLimitError("frame size %d is over max_frame_size %d"
                                 % (size, self._max_frame_size))
        return size

    cdef list _feed(self, const unsigned char* p, Py_ssize_t n):
        cdef list out = []
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t take, size
        cdef WriteBuffer body = self._body
        if self._hdr_len > 0:
            # Finish the frame that earlier chunks started.
            if self._hdr_len < 4:
                while self._hdr_len < 4 and i < n:
                    self._hdr[self._hdr_len] = p[i]
                    self._hdr_len += 1
                    i += 1
                if self._hdr_len < 4:
                    return out
                self._frame_len = self._check_size(_be_i32(self._hdr))
            take = _min(self._frame_len - body._len, n - i)
            body.write_raw(<const char*>p + i, take)
            i += take
            if body._len < self._frame_len:
                return out
            out.append(body.c_take())
            self._hdr_len = 0
            self._frame_len = -1
        # Whole frames are sliced straight out of the chunk: one copy each.
        while n - i >= 4:
            size = self._check_size(_be_i32(p + i))
            if n - i - 4 < size:
                break
            out.append(PyBytes_FromStringAndSize(<const char*>p + i + 4, size))
            i += 4 + size
        if i < n:
            while self._hdr_len < 4 and i < n:
                self._hdr[self._hdr_len] = p[i]
                self._hdr_len += 1
                i += 1
            if self._hdr_len == 4:
                # Already checked by the loop above.
                self._frame_len = _be_i32(self._hdr)
                body.write_raw(<const char*>p + i, n - i)
        return out


# Scanner modes: what the next token of the message is.
cdef enum:
    _M_BEGIN        # first i32 of the message header
    _M_NAME_LEN     # strict header: i32 name length
    _M_TYPE         # old header: message type byte
    _M_SEQID        # i32 seqid, then the body struct
    _M_FIELD        # a field header (or STOP) of the innermost struct
    _M_VALUE        # a value of type _vtype
    _M_SKIP         # _skip opaque bytes, then mode _after
    _M_NEXT         # a value just ended: ask the innermost container

# Kinds of open levels.
cdef enum:
    _K_STRUCT
    _K_LIST         # list or set: ``remaining`` elements of ``ktype``
    _K_MAP          # ``remaining`` keys and values, alternating


ctypedef struct _Level:
    int64_t remaining
    unsigned char kind
    unsigned char ktype
    unsigned char vtype


@cython.final
cdef class BufferedReader:
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

    cdef WriteBuffer _pending       # bytes of the incomplete message, from its start
    cdef Py_ssize_t _max_frame_size
    cdef Py_ssize_t _max_string_size
    cdef Py_ssize_t _max_container_size
    cdef Py_ssize_t _max_depth
    cdef bint _strict_read
    cdef tuple _error
    # scanner state
    cdef int _mode
    cdef int _after
    cdef unsigned char _vtype
    cdef Py_ssize_t _pos            # bytes of the current message scanned
    cdef Py_ssize_t _skip
    cdef _Level* _stack
    cdef Py_ssize_t _depth
    cdef Py_ssize_t _stack_cap

    def __cinit__(self, *, max_frame_size=DEFAULT_MAX_FRAME_SIZE,
                  max_string_size=DEFAULT_MAX_STRING_SIZE,
                  max_container_size=DEFAULT_MAX_CONTAINER_SIZE,
                  max_depth=DEFAULT_MAX_DEPTH, strict_read=True):
        self._max_frame_size = _check_limit(max_frame_size, "max_frame_size")
        self._max_string_size = _check_limit(max_string_size, "max_string_size")
        self._max_container_size = _check_limit(max_container_size, "max_container_size")
        self._max_depth = _check_limit(max_depth, "max_depth")
        self._strict_read = bool(strict_read)
        self._pending = WriteBuffer(0)
        self._mode = _M_BEGIN

    def __dealloc__(self):
        free(self._stack)
        self._stack = NULL

    @property
    def buffered(self):
        """Bytes held until the message they start is complete."""
        return self._pending._len

    def feed(self, data):
        """Add received bytes; return the messages they complete.

        :param data: a bytes-like object.
        :returns: a list of ``bytes``, one per complete message (header
            included, as received), in order.
        :raises ProtocolError: a subclass saying what is wrong.
        """
        cdef Py_buffer view
        if self._error is not None:
            _raise_broken(self._error)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._feed(<const unsigned char*>view.buf, view.len)
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise
        finally:
            PyBuffer_Release(&view)

    cdef list _feed(self, const unsigned char* p, Py_ssize_t n):
        cdef list out = []
        cdef Py_ssize_t k = 0
        cdef Py_ssize_t r, old
        cdef WriteBuffer pending = self._pending
        if n == 0:
            return out
        if pending._len > 0:
            # The scanner's positions count from the start of the pending
            # message, so the chunk is appended and the scan resumes where it
            # stopped: nothing is scanned twice.
            old = pending._len
            pending.write_raw(<const char*>p, n)
            r = self._scan(<const unsigned char*>pending._data, pending._len)
            if r < 0:
                return out
            k = r - old
            pending._len = r
            out.append(pending.c_take())
        while k < n:
            r = self._scan(p + k, n - k)
            if r < 0:
                pending.write_raw(<const char*>p + k, n - k)
                break
            out.append(PyBytes_FromStringAndSize(<const char*>p + k, r))
            k += r
        return out

    cdef inline int _budget(self, int64_t size) except -1:
        if size > self._max_frame_size:
            raise SizeLimitError("message of at least %d bytes is over max_frame_size %d"
                                 % (size, self._max_frame_size))
        return 0

    cdef inline int _enter(self) except -1:
        if self._depth >= self._max_depth:
            raise DepthLimitError("nesting is deeper than max_depth %d" % self._max_depth)
        return 0

    cdef int _push(self, unsigned char kind, unsigned char ktype, unsigned char vtype,
                   int64_t remaining) except -1:
        cdef _Level* stack
        cdef Py_ssize_t cap
        cdef _Level* top
        if self._depth >= self._stack_cap:
            # Grown on demand: max_depth may be set very high, and most
            # messages nest only a few levels.
            cap = self._stack_cap * 2 if self._stack_cap else 16
            stack = <_Level*>realloc(self._stack, <size_t>cap * sizeof(_Level))
            if stack is NULL:
                raise MemoryError()
            self._stack = stack
            self._stack_cap = cap
        top = &self._stack[self._depth]
        top.kind = kind
        top.ktype = ktype
        top.vtype = vtype
        top.remaining = remaining
        self._depth += 1
        return 0

    cdef Py_ssize_t _scan(self, const unsigned char* q, Py_ssize_t m) except -2:
        """Advance over q[pos:m] (q is the start of the message).

        Returns the message length once its last byte is consumed, or -1
        when it needs more bytes (the state is saved for the next call).
        """
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t skip = self._skip
        cdef int mode = self._mode
        cdef int after = self._after
        cdef unsigned char vtype = self._vtype
        cdef unsigned char t, kt, vt
        cdef int32_t size
        cdef uint32_t version
        cdef Py_ssize_t width
        cdef int64_t count
        cdef _Level* top

        while True:
            if mode == _M_NEXT:
                if self._depth == 0:
                    self._pos = 0
                    self._skip = 0
                    self._mode = _M_BEGIN
                    return pos
                top = &self._stack[self._depth - 1]
                if top.kind == _K_STRUCT:
                    mode = _M_FIELD
                elif top.remaining == 0:
                    self._depth -= 1
                else:
                    top.remaining -= 1
                    # A map counts keys and values down from 2 * count: an
                    # odd number left after the decrement means a key.
                    if top.kind == _K_LIST or (top.remaining & 1):
                        vtype = top.ktype
                    else:
                        vtype = top.vtype
                    mode = _M_VALUE

            elif mode == _M_FIELD:
                self._budget(<int64_t>pos + 1)
                if m - pos < 1:
                    break
                t = q[pos]
                if t == _T_STOP:
                    pos += 1
                    self._depth -= 1
                    mode = _M_NEXT
                    continue
                if _MIN_WIDTH[t] == 0:
                    raise InvalidDataError("invalid field type id %d" % t)
                self._budget(<int64_t>pos + 3)
                if m - pos < 3:
                    break
                pos += 3
                vtype = t
                mode = _M_VALUE

            elif mode == _M_VALUE:
                width = _FIXED_WIDTH[vtype]
                if width != 0:
                    self._budget(<int64_t>pos + width)
                    if m - pos < width:
                        break
                    pos += width
                    mode = _M_NEXT
                elif vtype == _T_STRING:
                    self._budget(<int64_t>pos + 4)
                    if m - pos < 4:
                        break
                    size = _be_i32(q + pos)
                    if size < 0:
                        raise NegativeSizeError("negative string length %d" % size)
                    if size > self._max_string_size:
                        raise SizeLimitError("string length %d is over max_string_size %d"
                                             % (size, self._max_string_size))
                    self._budget(<int64_t>pos + 4 + size)
                    pos += 4
                    skip = size
                    after = _M_NEXT
                    mode = _M_SKIP
                elif vtype == _T_STRUCT:
                    self._enter()
                    self._push(_K_STRUCT, 0, 0, 0)
                    mode = _M_FIELD
                elif vtype == _T_LIST or vtype == _T_SET:
                    self._enter()
                    self._budget(<int64_t>pos + 5)
                    if m - pos < 5:
                        break
                    t = q[pos]
                    size = _be_i32(q + pos + 1)
                    if size < 0:
                        raise NegativeSizeError("negative container size %d" % size)
                    if size > self._max_container_size:
                        raise SizeLimitError("container size %d is over max_container_size %d"
                                             % (size, self._max_container_size))
                    if size > 0 and _MIN_WIDTH[t] == 0:
                        raise InvalidDataError("invalid element type id %d" % t)
                    self._budget(<int64_t>pos + 5 + <int64_t>size * _MIN_WIDTH[t])
                    pos += 5
                    if size == 0:
                        mode = _M_NEXT
                    elif _FIXED_WIDTH[t] != 0:
                        # Fixed-width elements: one skip, however many there are.
                        skip = <Py_ssize_t>(<int64_t>size * _FIXED_WIDTH[t])
                        after = _M_NEXT
                        mode = _M_SKIP
                    else:
                        self._push(_K_LIST, t, 0, size)
                        mode = _M_NEXT
                elif vtype == _T_MAP:
                    self._enter()
                    self._budget(<int64_t>pos + 6)
                    if m - pos < 6:
                        break
                    kt = q[pos]
                    vt = q[pos + 1]
                    size = _be_i32(q + pos + 2)
                    if size < 0:
                        raise NegativeSizeError("negative container size %d" % size)
                    if size > self._max_container_size:
                        raise SizeLimitError("container size %d is over max_container_size %d"
                                             % (size, self._max_container_size))
                    if size > 0 and (_MIN_WIDTH[kt] == 0 or _MIN_WIDTH[vt] == 0):
                        raise InvalidDataError("invalid map key/value type ids %d, %d" % (kt, vt))
                    self._budget(<int64_t>pos + 6
                                 + <int64_t>size * (_MIN_WIDTH[kt] + _MIN_WIDTH[vt]))
                    pos += 6
                    if size == 0:
                        mode = _M_NEXT
                    elif _FIXED_WIDTH[kt] != 0 and _FIXED_WIDTH[vt] != 0:
                        skip = <Py_ssize_t>(<int64_t>size * (_FIXED_WIDTH[kt] + _FIXED_WIDTH[vt]))
                        after = _M_NEXT
                        mode = _M_SKIP
                    else:
                        self._push(_K_MAP, kt, vt, <int64_t>size * 2)
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
                self._budget(<int64_t>pos + 4)
                if m - pos < 4:
                    break
                size = _be_i32(q + pos)
                if size < 0:
                    version = <uint32_t>size
                    if (version & <uint32_t>0xffff0000) != <uint32_t>0x80010000:
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
                    self._budget(<int64_t>pos + 4 + size)
                    pos += 4
                    skip = size
                    after = _M_TYPE
                    mode = _M_SKIP

            elif mode == _M_NAME_LEN:
                self._budget(<int64_t>pos + 4)
                if m - pos < 4:
                    break
                size = _be_i32(q + pos)
                if size < 0:
                    raise NegativeSizeError("negative message name length %d" % size)
                if size > self._max_string_size:
                    raise SizeLimitError("message name length %d is over max_string_size %d"
                                         % (size, self._max_string_size))
                self._budget(<int64_t>pos + 4 + size)
                pos += 4
                skip = size
                after = _M_SEQID
                mode = _M_SKIP

            elif mode == _M_TYPE:
                self._budget(<int64_t>pos + 1)
                if m - pos < 1:
                    break
                pos += 1
                mode = _M_SEQID

            elif mode == _M_SEQID:
                self._budget(<int64_t>pos + 4)
                if m - pos < 4:
                    break
                pos += 4
                self._enter()
                self._push(_K_STRUCT, 0, 0, 0)
                mode = _M_FIELD

            else:
                raise AssertionError("bad scanner mode %d" % mode)

        self._pos = pos
        self._skip = skip
        self._mode = mode
        self._after = after
        self._vtype = vtype
        return -1
