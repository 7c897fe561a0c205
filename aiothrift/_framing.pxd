# cython: language_level=3
"""C-level interface of :mod:`aiothrift._framing`.

``WriteBuffer`` is declared here, with its small writers defined inline, so
that other extensions (``aiothrift._binary``) can ``cimport`` it and append
to it with no Python call and no vtable lookup on the hot path.  Only the
rare slow path (``_grow``) and the framing/taking methods live in the .pyx.
"""

cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


@cython.final
cdef class WriteBuffer:
    cdef char* _data
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _frame_start      # -1 when no frame is open

    cdef int _grow(self, Py_ssize_t extra) except -1

    cdef inline int ensure(self, Py_ssize_t extra) except -1:
        # Written as a subtraction so that a huge ``extra`` cannot overflow.
        if extra > self._cap - self._len:
            return self._grow(extra)
        return 0

    # Every writer checks the room left before touching ``_data``: the
    # pointer arithmetic below is only done on bytes that ``_grow`` has
    # made sure exist.  Values are split into bytes with shifts, so the
    # output is big-endian whatever the host byte order.

    cdef inline int write_u8(self, unsigned char v) except -1:
        if self._cap - self._len < 1:
            self._grow(1)
        self._data[self._len] = <char>v
        self._len += 1
        return 0

    cdef inline int write_i16(self, int16_t v) except -1:
        cdef uint16_t u = <uint16_t>v
        cdef unsigned char* p
        if self._cap - self._len < 2:
            self._grow(2)
        p = <unsigned char*>self._data + self._len
        p[0] = <unsigned char>(u >> 8)
        p[1] = <unsigned char>u
        self._len += 2
        return 0

    cdef inline int write_i32(self, int32_t v) except -1:
        cdef uint32_t u = <uint32_t>v
        cdef unsigned char* p
        if self._cap - self._len < 4:
            self._grow(4)
        p = <unsigned char*>self._data + self._len
        p[0] = <unsigned char>(u >> 24)
        p[1] = <unsigned char>(u >> 16)
        p[2] = <unsigned char>(u >> 8)
        p[3] = <unsigned char>u
        self._len += 4
        return 0

    cdef inline int write_i64(self, int64_t v) except -1:
        cdef uint64_t u = <uint64_t>v
        cdef unsigned char* p
        if self._cap - self._len < 8:
            self._grow(8)
        p = <unsigned char*>self._data + self._len
        p[0] = <unsigned char>(u >> 56)
        p[1] = <unsigned char>(u >> 48)
        p[2] = <unsigned char>(u >> 40)
        p[3] = <unsigned char>(u >> 32)
        p[4] = <unsigned char>(u >> 24)
        p[5] = <unsigned char>(u >> 16)
        p[6] = <unsigned char>(u >> 8)
        p[7] = <unsigned char>u
        self._len += 8
        return 0

    cdef inline int write_double(self, double v) except -1:
        # IEEE 754 binary64 bits, sent big-endian like an i64 (memcpy is the
        # defined way to reinterpret the bits; compilers turn it into a move).
        cdef int64_t bits
        memcpy(&bits, &v, 8)
        return self.write_i64(bits)

    cdef inline int write_raw(self, const char* p, Py_ssize_t n) except -1:
        if n <= 0:
            if n < 0:
                raise ValueError("negative length %d" % n)
            return 0
        if n > self._cap - self._len:
            self._grow(n)
        memcpy(self._data + self._len, p, <size_t>n)
        self._len += n
        return 0

    cdef int c_begin_frame(self) except -1
    cdef int c_end_frame(self) except -1
    cdef bytes c_take(self)

    cdef inline void c_reset(self) noexcept:
        self._len = 0
        self._frame_start = -1
