# cython: language_level=3, embedsignature=True, wraparound=False, cdivision=True, auto_pickle=False
"""Thrift binary protocol codec, compiled.

The twin of the pure-Python ``aiothrift._binary_py``: same API, same bytes,
same objects, same exceptions (see ``docs/internals.md``).

The protocol-independent machinery (compiled schema, object construction,
struct-decoding skeleton, shared C helpers and errors) is ``aiothrift._schema``,
cimported; this module holds the binary wire format.

Where the speed comes from:

* Each struct class is compiled once (``_spec.struct_info`` -> :class:`StructSpec`)
  into a C array of fields (precomputed 3-byte field header, wire type, type
  code, interned name, sub-type descriptor) plus a direct-index table from
  field id to field, so the hot loops do no dict/tuple/isinstance work on the
  schema.  Struct sub-specs are resolved lazily, so recursive types work.
* Decoding reads in place from one pointer + length (``bytes`` directly,
  anything else through the buffer protocol), with one explicit bounds check
  per read.  Strings are decoded straight from the input, binaries are one
  copy.  Every declared size is checked against its limit and against the bytes
  left before anything is allocated.
* Decoded objects are created without running ``__init__`` (the type's
  ``tp_new``) and get the defaults then the decoded values as instance
  attributes, in defaults order: the same ``__dict__`` (contents and key order)
  as the twin's ``obj.__dict__ = defaults_copy``, stored as CPython's compact
  instance values.  Short string map keys come from a small str cache.
* Encoding writes into the codec's reusable ``WriteBuffer``; strings go out
  through ``PyUnicode_AsUTF8AndSize`` (no temporary ``bytes``); the result is
  one copy into a ``bytes``.
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.unicode cimport PyUnicode_Check
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_CheckBuffer, PyObject_GetBuffer
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.dict cimport PyDict_CheckExact
from cpython.set cimport PySet_Add
from cpython.long cimport PyLong_FromLong, PyLong_FromLongLong
from cpython.float cimport PyFloat_FromDouble
from cpython.type cimport PyType_Check
from libc.stdint cimport (
    INT8_MAX, INT8_MIN, INT16_MAX, INT16_MIN, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN,
    int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t,
)
cimport cython
from libc.string cimport memcpy

from aiothrift._framing cimport WriteBuffer
from aiothrift._schema cimport (
    GUARD_DEPTH, T_BINARY, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64, T_LIST,
    T_MAP, T_SET, T_STOP, T_STRING, T_STRUCT,
    FieldC, Reader, Schema, StructSpec, TypeDesc,
    aiothrift_as_double, aiothrift_as_int, aiothrift_decode_key, aiothrift_decode_name,
    aiothrift_decode_text, aiothrift_field_value, aiothrift_instance_dict, aiothrift_list_to_set,
    aiothrift_map_set, check_limit, clamp_ssize, contiguous, decode_struct, need, raise_depth,
    raise_missing, raise_truncated, spec_lookup, td_spec,
)

from aiothrift._spec import MIN_WIDTH
from aiothrift.errors import (
    BadVersionError,
    InvalidDataError,
    NegativeSizeError,
    SizeLimitError,
    TruncatedError,
)
from aiothrift.limits import (
    DEFAULT_MAX_CONTAINER_SIZE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("BinaryCodec",)


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    Py_ssize_t PyNumber_AsSsize_t(object, PyObject*) except? -1
    object _PyDict_NewPresized(Py_ssize_t)
    int Py_EnterRecursiveCall(const char*) except? 1
    void Py_LeaveRecursiveCall()
    int PyDict_SetItem(object, object, object) except -1


cdef extern from *:
    """
    /* Big-endian loads and stores. */
    static inline int16_t aiothrift_ld16(const unsigned char* p) {
        return (int16_t)(uint16_t)(((uint16_t)p[0] << 8) | (uint16_t)p[1]);
    }
    static inline uint32_t aiothrift_ld32u(const unsigned char* p) {
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    }
    static inline int32_t aiothrift_ld32(const unsigned char* p) {
        return (int32_t)aiothrift_ld32u(p);
    }
    static inline int64_t aiothrift_ld64(const unsigned char* p) {
        return (int64_t)(((uint64_t)aiothrift_ld32u(p) << 32) | (uint64_t)aiothrift_ld32u(p + 4));
    }
    static inline double aiothrift_lddouble(const unsigned char* p) {
        uint64_t u = (uint64_t)aiothrift_ld64(p);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    static inline void aiothrift_st16(char* p, uint16_t v) {
        p[0] = (char)(v >> 8); p[1] = (char)v;
    }
    static inline void aiothrift_st32(char* p, uint32_t v) {
        p[0] = (char)(v >> 24); p[1] = (char)(v >> 16); p[2] = (char)(v >> 8); p[3] = (char)v;
    }
    static inline void aiothrift_st64(char* p, uint64_t v) {
        aiothrift_st32(p, (uint32_t)(v >> 32)); aiothrift_st32(p + 4, (uint32_t)v);
    }
    static inline void aiothrift_stdouble(char* p, double d) {
        uint64_t u;
        memcpy(&u, &d, 8);
        aiothrift_st64(p, u);
    }
    """
    int16_t aiothrift_ld16(const unsigned char* p) noexcept nogil
    int32_t aiothrift_ld32(const unsigned char* p) noexcept nogil
    int64_t aiothrift_ld64(const unsigned char* p) noexcept nogil
    double aiothrift_lddouble(const unsigned char* p) noexcept nogil
    void aiothrift_st16(char* p, uint16_t v) noexcept nogil
    void aiothrift_st32(char* p, uint32_t v) noexcept nogil
    void aiothrift_st64(char* p, uint64_t v) noexcept nogil
    void aiothrift_stdouble(char* p, double d) noexcept nogil


cdef Py_ssize_t MAX_I32 = 0x7FFFFFFF
cdef uint32_t VERSION_1 = 0x80010000
cdef uint32_t VERSION_MASK = 0xFFFF0000

# Per wire type id: fewest bytes a value takes (0 = not a wire type), and the
# fixed width of the types that skipping can jump over.
cdef int MINW[256]
cdef int FIXEDW[256]
MINW[:] = [0] * 256
FIXEDW[:] = [0] * 256
for _t, _w in MIN_WIDTH.items():
    MINW[_t] = _w
del _t, _w
FIXEDW[T_BOOL] = 1
FIXEDW[T_BYTE] = 1
FIXEDW[T_I16] = 2
FIXEDW[T_I32] = 4
FIXEDW[T_I64] = 8
FIXEDW[T_DOUBLE] = 8

cdef dict _EMPTY_DICT = {}


# ---------------------------------------------------------------- schema

cdef class BinarySchema(Schema):
    """Struct classes compiled for the binary protocol (``_schema.Schema``)."""

    cdef int init_field(self, FieldC* f, object finfo, str cls_name) except -1:
        if not -32768 <= finfo.fid <= 32767:
            raise ValueError("field id %r of %s is not an i16" % (finfo.fid, cls_name))
        f.fid = <int16_t>finfo.fid
        # field header as written: wire type, big-endian id
        f.hdr[0] = <char>f.wire
        f.hdr[1] = <char>((<uint16_t>f.fid) >> 8)
        f.hdr[2] = <char>(<uint16_t>f.fid)
        f.hdr_len = 3
        return 0


cdef BinarySchema _SCHEMA = BinarySchema()
_SCHEMA.minw = MINW


cdef inline StructSpec get_spec(object cls):
    return _SCHEMA.get_spec(cls)


# ---------------------------------------------------------------- errors

cdef int raise_bad_type(int t) except -1:
    raise InvalidDataError("invalid type id %d" % t)


cdef int check_elem_type(int t, int expected, str what) except -1:
    if t != expected:
        if MINW[t] == 0:
            raise InvalidDataError("invalid %s type id %d" % (what, t))
        raise InvalidDataError("%s type id %d does not match the schema's %d" % (what, t, expected))
    return 0


# ---------------------------------------------------------------- decode

cdef inline Py_ssize_t read_size(Reader* r, Py_ssize_t limit, str what) except -1:
    """A declared string length: checked against the limit and the bytes left."""
    need(r, 4)
    cdef Py_ssize_t n = aiothrift_ld32(r.buf + r.pos)
    r.pos += 4
    if n < 0:
        raise NegativeSizeError("negative %s length %d" % (what, n))
    if n > limit:
        raise SizeLimitError("%s of %d bytes exceeds max_string_size=%d" % (what, n, limit))
    if n > r.end - r.pos:
        raise TruncatedError("%s of %d bytes but only %d left" % (what, n, r.end - r.pos))
    return n


cdef inline int check_count(Reader* r, Py_ssize_t n, str what) except -1:
    if n < 0:
        raise NegativeSizeError("negative %s size %d" % (what, n))
    if n > r.max_container:
        raise SizeLimitError("%s of %d elements exceeds max_container_size=%d"
                             % (what, n, r.max_container))
    return 0


cdef inline object read_string(Reader* r, bint as_text):
    cdef Py_ssize_t n = read_size(r, r.max_string, "string/binary")
    cdef const char* p = <const char*>(r.buf + r.pos)
    r.pos += n
    if as_text:
        return aiothrift_decode_text(p, n)
    return PyBytes_FromStringAndSize(p, n)


cdef inline object read_key(Reader* r):
    """A string map key (decode_response): through the key cache."""
    cdef Py_ssize_t n = read_size(r, r.max_string, "string/binary")
    cdef const char* p = <const char*>(r.buf + r.pos)
    r.pos += n
    return aiothrift_decode_key(p, n)


cdef object decode_value(Reader* r, TypeDesc td, int depth):
    cdef int t = td.ttype
    cdef const unsigned char* p
    if t == T_I32:
        need(r, 4)
        p = r.buf + r.pos
        r.pos += 4
        return PyLong_FromLong(aiothrift_ld32(p))
    elif t == T_I64:
        need(r, 8)
        p = r.buf + r.pos
        r.pos += 8
        return PyLong_FromLongLong(aiothrift_ld64(p))
    elif t == T_STRING:
        return read_string(r, r.decode_response)
    elif t == T_BINARY:
        return read_string(r, False)
    elif t == T_STRUCT:
        return decode_struct(r, td_spec(td), depth, None, read_fields)
    elif t == T_BOOL:
        need(r, 1)
        p = r.buf + r.pos
        r.pos += 1
        return p[0] != 0
    elif t == T_DOUBLE:
        need(r, 8)
        p = r.buf + r.pos
        r.pos += 8
        return PyFloat_FromDouble(aiothrift_lddouble(p))
    elif t == T_I16:
        need(r, 2)
        p = r.buf + r.pos
        r.pos += 2
        return PyLong_FromLong(aiothrift_ld16(p))
    elif t == T_BYTE:
        need(r, 1)
        p = r.buf + r.pos
        r.pos += 1
        return PyLong_FromLong(<signed char>p[0])
    elif t == T_LIST:
        return decode_list(r, td, depth, False)
    elif t == T_SET:
        return decode_list(r, td, depth, True)
    elif t == T_MAP:
        return decode_map(r, td, depth)
    raise_bad_type(t)



cdef int read_fields(Reader* r, StructSpec spec, int depth, PyObject** vals, dict d) except -1:
    """Read fields up to STOP into ``vals`` (by field index) or else ``d`` (by name)."""
    cdef unsigned char ftype
    cdef int fid
    cdef Py_ssize_t idx, i
    cdef FieldC* f
    cdef uint64_t seen = 0
    cdef set seen_slow = None
    cdef PyObject* old
    if spec.nrequired > 64:
        seen_slow = set()
    while True:
        need(r, 1)
        ftype = r.buf[r.pos]
        r.pos += 1
        if ftype == T_STOP:
            break
        need(r, 2)
        fid = aiothrift_ld16(r.buf + r.pos)
        r.pos += 2
        idx = spec_lookup(spec, fid)
        if idx >= 0:
            f = &spec.fields[idx]
            if f.wire == ftype:
                v = decode_value(r, <TypeDesc>f.td, depth)
                if vals != NULL:
                    old = vals[idx]
                    Py_INCREF(v)
                    vals[idx] = <PyObject*>v
                    Py_XDECREF(old)
                else:
                    PyDict_SetItem(d, <object>f.name, v)
                if f.required:
                    if seen_slow is not None:
                        seen_slow.add(<object>f.name)
                    else:
                        seen |= (<uint64_t>1) << f.req_bit
                continue
        if MINW[ftype] == 0:
            raise InvalidDataError("invalid field type id %d (field %d)" % (ftype, fid))
        skip(r, ftype, depth)
    if spec.nrequired:
        if seen_slow is not None:
            for name in spec.required_names:
                if name not in seen_slow:
                    raise_missing(spec, name)
        elif seen != spec.required_mask:
            # declaration order, as the twin reports the first missing one
            for i in range(spec.nfields):
                f = &spec.fields[i]
                if f.required and not (seen >> f.req_bit) & 1:
                    raise_missing(spec, <object>f.name)
    return 0


cdef object decode_list(Reader* r, TypeDesc td, int depth, bint as_set):
    depth += 1
    if depth > r.max_depth:
        raise_depth(r.max_depth)
    if depth <= GUARD_DEPTH:
        return decode_list_body(r, td, depth, as_set)
    Py_EnterRecursiveCall(" while decoding Thrift data")
    try:
        return decode_list_body(r, td, depth, as_set)
    finally:
        Py_LeaveRecursiveCall()


cdef object decode_list_body(Reader* r, TypeDesc td, int depth, bint as_set):
    cdef TypeDesc e = td.elem
    cdef int et = e.ttype
    cdef unsigned char t
    cdef Py_ssize_t n, i
    cdef const unsigned char* p
    cdef list lst
    cdef set s
    cdef object v
    need(r, 5)
    t = r.buf[r.pos]
    n = aiothrift_ld32(r.buf + r.pos + 1)
    r.pos += 5
    check_count(r, n, "set" if as_set else "list")
    if n:
        check_elem_type(t, e.wire, "set" if as_set else "list")
        if n * td.min_width > r.end - r.pos:
            raise TruncatedError("%s of %d elements cannot fit in %d bytes"
                                 % ("set" if as_set else "list", n, r.end - r.pos))
    if as_set and et != T_LIST and et != T_SET and et != T_MAP and et != T_STRUCT:
        # Elements that always hash: add as they come.
        s = set()
        for i in range(n):
            PySet_Add(s, decode_value(r, e, depth))
        return s
    lst = PyList_New(n)
    p = r.buf + r.pos
    if et == T_I64:
        for i in range(n):
            v = PyLong_FromLongLong(aiothrift_ld64(p + 8 * i))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += 8 * n
    elif et == T_I32:
        for i in range(n):
            v = PyLong_FromLong(aiothrift_ld32(p + 4 * i))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += 4 * n
    elif et == T_DOUBLE:
        for i in range(n):
            v = PyFloat_FromDouble(aiothrift_lddouble(p + 8 * i))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += 8 * n
    elif et == T_BOOL:
        for i in range(n):
            v = p[i] != 0
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += n
    else:
        for i in range(n):
            v = decode_value(r, e, depth)
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
    if as_set:
        return aiothrift_list_to_set(lst, InvalidDataError)
    return lst


cdef object decode_map(Reader* r, TypeDesc td, int depth):
    depth += 1
    if depth > r.max_depth:
        raise_depth(r.max_depth)
    if depth <= GUARD_DEPTH:
        return decode_map_body(r, td, depth)
    Py_EnterRecursiveCall(" while decoding Thrift data")
    try:
        return decode_map_body(r, td, depth)
    finally:
        Py_LeaveRecursiveCall()


cdef object decode_map_body(Reader* r, TypeDesc td, int depth):
    cdef TypeDesc kd = td.elem
    cdef TypeDesc vd = td.val
    cdef unsigned char kt, vt
    cdef Py_ssize_t n, i
    cdef dict d
    need(r, 6)
    kt = r.buf[r.pos]
    vt = r.buf[r.pos + 1]
    n = aiothrift_ld32(r.buf + r.pos + 2)
    r.pos += 6
    check_count(r, n, "map")
    if n:
        check_elem_type(kt, kd.wire, "map key")
        check_elem_type(vt, vd.wire, "map value")
        if n * td.min_width > r.end - r.pos:
            raise TruncatedError("map of %d entries cannot fit in %d bytes" % (n, r.end - r.pos))
    d = _PyDict_NewPresized(n) if n > 5 else {}
    invalid = InvalidDataError
    if kd.ttype == T_STRING and r.decode_response:
        for i in range(n):
            k = read_key(r)
            aiothrift_map_set(d, k, decode_value(r, vd, depth), invalid)
    else:
        for i in range(n):
            k = decode_value(r, kd, depth)
            aiothrift_map_set(d, k, decode_value(r, vd, depth), invalid)
    return d


cdef int skip(Reader* r, int t, int depth) except -1:
    """Move past one value of wire type ``t``."""
    cdef Py_ssize_t w = FIXEDW[t]
    if w:
        need(r, w)
        r.pos += w
        return 0
    if t == T_STRING:
        r.pos += read_size(r, r.max_string, "string/binary")
        return 0
    if t != T_STRUCT and t != T_LIST and t != T_SET and t != T_MAP:
        raise_bad_type(t)
    depth += 1
    if depth > r.max_depth:
        raise_depth(r.max_depth)
    if depth <= GUARD_DEPTH:
        return skip_body(r, t, depth)
    Py_EnterRecursiveCall(" while skipping Thrift data")
    try:
        return skip_body(r, t, depth)
    finally:
        Py_LeaveRecursiveCall()


cdef inline bint is_nested(int t):
    return t == T_STRUCT or t == T_LIST or t == T_SET or t == T_MAP


cdef int skip_body(Reader* r, int t, int depth) except -1:
    cdef unsigned char ft, et, kt, vt
    cdef Py_ssize_t n, i, w
    if t == T_STRUCT:
        while True:
            need(r, 1)
            ft = r.buf[r.pos]
            r.pos += 1
            if ft == T_STOP:
                return 0
            if MINW[ft] == 0:
                raise InvalidDataError("invalid field type id %d" % ft)
            if r.end - r.pos < 2:
                # The value would start past the end: a nested value checks
                # its depth before reading anything (as the twin does).
                if is_nested(ft) and depth + 1 > r.max_depth:
                    raise_depth(r.max_depth)
                raise_truncated(2, r.end - r.pos)
            r.pos += 2
            skip(r, ft, depth)
    if t == T_LIST or t == T_SET:
        need(r, 5)
        et = r.buf[r.pos]
        n = aiothrift_ld32(r.buf + r.pos + 1)
        r.pos += 5
        check_count(r, n, "list")
        if n == 0:
            return 0
        if MINW[et] == 0:
            raise InvalidDataError("invalid element type id %d" % et)
        if n * MINW[et] > r.end - r.pos:
            raise TruncatedError("list of %d elements cannot fit in %d bytes" % (n, r.end - r.pos))
        w = FIXEDW[et]
        if w:
            r.pos += n * w
            return 0
        for i in range(n):
            skip(r, et, depth)
        return 0
    # T_MAP
    need(r, 6)
    kt = r.buf[r.pos]
    vt = r.buf[r.pos + 1]
    n = aiothrift_ld32(r.buf + r.pos + 2)
    r.pos += 6
    check_count(r, n, "map")
    if n == 0:
        return 0
    if MINW[kt] == 0 or MINW[vt] == 0:
        raise InvalidDataError("invalid map key/value type ids %d/%d" % (kt, vt))
    if n * (MINW[kt] + MINW[vt]) > r.end - r.pos:
        raise TruncatedError("map of %d entries cannot fit in %d bytes" % (n, r.end - r.pos))
    if FIXEDW[kt] and FIXEDW[vt]:
        r.pos += n * (FIXEDW[kt] + FIXEDW[vt])
        return 0
    for i in range(n):
        skip(r, kt, depth)
        skip(r, vt, depth)
    return 0


# ---------------------------------------------------------------- encode

cdef enum:
    # str/bytes values at least this long are not copied into the buffer: the
    # final bytes object gets them straight from the value (one copy in all).
    DEFER_MIN = 32768
    # after a message this big the buffer is dropped (as WriteBuffer.c_take does)
    KEEP_MAX = 1048576


@cython.final
cdef class _Encoder:
    """State of one encode: the buffer, plus the big values to splice in."""
    cdef WriteBuffer buf
    cdef list chunks          # [buffer offset, str/bytes value, ...] or None
    cdef Py_ssize_t deferred  # total bytes of the deferred values

    def __cinit__(self):
        self.buf = WriteBuffer()

    cdef inline void start(self) noexcept:
        self.buf.c_reset()
        self.chunks = None
        self.deferred = 0

    cdef int defer(self, object v, Py_ssize_t n) except -1:
        """Write the length of ``v`` now, its ``n`` bytes at the end."""
        cdef char* w = reserve(self.buf, 4)
        aiothrift_st32(w, <uint32_t>n)
        self.buf._len += 4
        if self.chunks is None:
            self.chunks = []
        self.chunks.append(self.buf._len)
        self.chunks.append(v)
        self.deferred += n
        return 0

    cdef bytes finish(self, bint framed):
        """The encoded bytes: one copy of everything; the first 4 bytes
        become the frame length when ``framed``."""
        cdef WriteBuffer out = self.buf
        cdef Py_ssize_t total = out._len + self.deferred
        cdef Py_ssize_t i, pos, src = 0, n
        cdef const char* p
        cdef char* dst
        cdef bytes result
        if framed:
            if total - 4 > MAX_I32:
                raise OverflowError("message of %d bytes is too long for a frame" % (total - 4))
            aiothrift_st32(out._data, <uint32_t>(total - 4))
        if self.chunks is None:
            return out.c_take()
        result = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(result)
        for i in range(0, len(self.chunks), 2):
            pos = self.chunks[i]
            v = self.chunks[i + 1]
            memcpy(dst, out._data + src, pos - src)
            dst += pos - src
            src = pos
            if PyBytes_Check(v):
                p = PyBytes_AS_STRING(v)
                n = PyBytes_GET_SIZE(v)
            else:
                p = PyUnicode_AsUTF8AndSize(v, &n)   # cached since the first call
            memcpy(dst, p, n)
            dst += n
        memcpy(dst, out._data + src, out._len - src)
        self.chunks = None
        self.deferred = 0
        out.c_reset()
        if out._cap > KEEP_MAX:
            self.buf = WriteBuffer()
        return result


cdef inline char* reserve(WriteBuffer out, Py_ssize_t n) except NULL:
    """Room for ``n`` more bytes; the caller writes them and advances ``_len``."""
    out.ensure(n)
    return out._data + out._len


cdef int write_bytes_like(_Encoder e, object v) except -1:
    """string and binary: ``str`` as UTF-8, else any buffer's bytes."""
    cdef const char* p
    cdef Py_ssize_t n
    cdef Py_buffer view
    if PyUnicode_Check(v):
        p = PyUnicode_AsUTF8AndSize(v, &n)
        if n >= DEFER_MIN and n <= MAX_I32:
            return e.defer(v, n)
    elif PyBytes_Check(v):
        p = PyBytes_AS_STRING(v)
        n = PyBytes_GET_SIZE(v)
        if n >= DEFER_MIN and n <= MAX_I32:
            return e.defer(v, n)
    elif PyObject_CheckBuffer(v):
        try:
            PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
        except BufferError:
            # not contiguous: its bytes, in logical order
            b = memoryview(v).tobytes()
            return write_sized(e, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))
        try:
            write_sized(e, <const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0
    else:
        raise TypeError("string/binary expected str or a bytes-like object, got %s"
                        % type(v).__name__)
    return write_sized(e, p, n)


cdef inline int write_sized(_Encoder e, const char* p, Py_ssize_t n) except -1:
    if n > MAX_I32:
        raise OverflowError("string/binary of %d bytes is too long for Thrift" % n)
    cdef WriteBuffer out = e.buf
    cdef char* w = reserve(out, 4 + n)
    aiothrift_st32(w, <uint32_t>n)
    memcpy(w + 4, p, n)
    out._len += 4 + n
    return 0


cdef inline int write_int(_Encoder e, object v, int t) except -1:
    cdef long long x
    cdef char* w
    cdef WriteBuffer out = e.buf
    if t == T_I64:
        aiothrift_as_int(v, INT64_MIN, INT64_MAX, "i64", &x)
        w = reserve(out, 8)
        aiothrift_st64(w, <uint64_t>x)
        out._len += 8
    elif t == T_I32:
        aiothrift_as_int(v, INT32_MIN, INT32_MAX, "i32", &x)
        w = reserve(out, 4)
        aiothrift_st32(w, <uint32_t>x)
        out._len += 4
    elif t == T_I16:
        aiothrift_as_int(v, INT16_MIN, INT16_MAX, "i16", &x)
        w = reserve(out, 2)
        aiothrift_st16(w, <uint16_t>x)
        out._len += 2
    else:
        aiothrift_as_int(v, INT8_MIN, INT8_MAX, "byte", &x)
        w = reserve(out, 1)
        w[0] = <char>x
        out._len += 1
    return 0


cdef int encode_value(_Encoder e, object v, TypeDesc td, int depth, int max_depth) except -1:
    cdef int t = td.ttype
    cdef double x
    cdef char* w
    cdef WriteBuffer out = e.buf
    if t == T_I32 or t == T_I64 or t == T_I16 or t == T_BYTE:
        return write_int(e, v, t)
    elif t == T_STRING or t == T_BINARY:
        return write_bytes_like(e, v)
    elif t == T_STRUCT:
        return encode_struct(e, v, td_spec(td), depth, max_depth)
    elif t == T_BOOL:
        w = reserve(out, 1)
        w[0] = 1 if v else 0
        out._len += 1
        return 0
    elif t == T_DOUBLE:
        aiothrift_as_double(v, &x)
        w = reserve(out, 8)
        aiothrift_stdouble(w, x)
        out._len += 8
        return 0
    elif t == T_LIST or t == T_SET:
        return encode_list(e, v, td, depth, max_depth)
    elif t == T_MAP:
        return encode_map(e, v, td, depth, max_depth)
    raise TypeError("unsupported Thrift type id %r" % (t,))


cdef int encode_struct(_Encoder e, object obj, StructSpec spec, int depth,
                       int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_struct_body(e, obj, spec, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_struct_body(e, obj, spec, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_struct_body(_Encoder e, object obj, StructSpec spec, int depth,
                            int max_depth) except -1:
    cdef Py_ssize_t i
    cdef FieldC* f
    cdef char* w
    cdef WriteBuffer out = e.buf
    if type(obj) is not spec.cls and not isinstance(obj, spec.cls):
        raise TypeError("expected %s, got %s" % (spec.cls_name, type(obj).__name__))
    d = aiothrift_instance_dict(obj, _EMPTY_DICT)
    for i in range(spec.nfields):
        f = &spec.fields[i]
        v = aiothrift_field_value(d, obj, <object>f.name)
        if v is None:
            if f.required:
                raise InvalidDataError("required field %r of %s is unset"
                                       % (<object>f.name, spec.cls_name))
            continue
        w = reserve(out, 3)
        w[0] = f.hdr[0]
        w[1] = f.hdr[1]
        w[2] = f.hdr[2]
        out._len += 3
        encode_value(e, v, <TypeDesc>f.td, depth, max_depth)
    w = reserve(out, 1)
    w[0] = 0
    out._len += 1
    return 0


cdef inline Py_ssize_t container_len(object v) except -1:
    cdef Py_ssize_t n = len(v)
    if n > MAX_I32:
        raise OverflowError("container of %d elements is too long for Thrift" % n)
    return n


cdef int encode_list(_Encoder e, object v, TypeDesc td, int depth, int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_list_body(e, v, td, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_list_body(e, v, td, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_list_body(_Encoder e, object v, TypeDesc td, int depth,
                          int max_depth) except -1:
    cdef TypeDesc ed = td.elem
    cdef int et = ed.ttype
    cdef Py_ssize_t n = container_len(v)
    cdef Py_ssize_t count = 0
    cdef WriteBuffer out = e.buf
    cdef char* w = reserve(out, 5)
    cdef double x
    w[0] = <char>ed.wire
    aiothrift_st32(w + 1, <uint32_t>n)
    out._len += 5
    if et == T_I32 or et == T_I64 or et == T_I16 or et == T_BYTE:
        for item in v:
            write_int(e, item, et)
            count += 1
        if count != n:
            raise RuntimeError("container changed size during encoding")
    elif et == T_STRING or et == T_BINARY:
        for item in v:
            write_bytes_like(e, item)
    elif et == T_STRUCT:
        spec = td_spec(ed)
        for item in v:
            encode_struct(e, item, spec, depth, max_depth)
    elif et == T_DOUBLE:
        for item in v:
            aiothrift_as_double(item, &x)
            w = reserve(out, 8)
            aiothrift_stdouble(w, x)
            out._len += 8
            count += 1
        if count != n:
            raise RuntimeError("container changed size during encoding")
    elif et == T_BOOL:
        for item in v:
            w = reserve(out, 1)
            w[0] = 1 if item else 0
            out._len += 1
    else:
        for item in v:
            encode_value(e, item, ed, depth, max_depth)
    return 0


cdef int encode_map(_Encoder e, object v, TypeDesc td, int depth, int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_map_body(e, v, td, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_map_body(e, v, td, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_map_body(_Encoder e, object v, TypeDesc td, int depth,
                         int max_depth) except -1:
    cdef TypeDesc kd = td.elem
    cdef TypeDesc vd = td.val
    cdef Py_ssize_t n = container_len(v)
    cdef WriteBuffer out = e.buf
    cdef char* w = reserve(out, 6)
    w[0] = <char>kd.wire
    w[1] = <char>vd.wire
    aiothrift_st32(w + 2, <uint32_t>n)
    out._len += 6
    if PyDict_CheckExact(v):
        for k, val in (<dict>v).items():
            encode_value(e, k, kd, depth, max_depth)
            encode_value(e, val, vd, depth, max_depth)
    else:
        for k, val in v.items():
            encode_value(e, k, kd, depth, max_depth)
            encode_value(e, val, vd, depth, max_depth)
    return 0


# ---------------------------------------------------------------- codec

@cython.final
cdef class BinaryCodec:
    """Encoder/decoder of Thrift's binary protocol for thriftpy2 structs.

    :param strict_read: reject message headers without a version.
    :param strict_write: write message headers with a version.
    :param decode_response: decode ``string`` values to ``str`` (else ``bytes``).
    :param max_string_size: largest string/binary accepted when decoding.
    :param max_container_size: largest list/set/map count accepted when decoding.
    :param max_depth: deepest nesting of structs and containers (both ways).
    """

    cdef readonly bint strict_read
    cdef readonly bint strict_write
    cdef readonly bint decode_response
    cdef readonly object max_string_size
    cdef readonly object max_container_size
    cdef readonly object max_depth
    cdef Py_ssize_t _max_string
    cdef Py_ssize_t _max_container
    cdef int _max_depth
    cdef _Encoder _enc
    cdef bint _busy
    # last class seen by encode/decode: skips the spec dict lookup in loops
    cdef object _enc_cls
    cdef StructSpec _enc_spec
    cdef object _dec_cls
    cdef StructSpec _dec_spec

    def __init__(
        self,
        *,
        strict_read=True,
        strict_write=True,
        decode_response=True,
        max_string_size=DEFAULT_MAX_STRING_SIZE,
        max_container_size=DEFAULT_MAX_CONTAINER_SIZE,
        max_depth=DEFAULT_MAX_DEPTH,
    ):
        self.strict_read = bool(strict_read)
        self.strict_write = bool(strict_write)
        self.decode_response = bool(decode_response)
        self.max_string_size = check_limit("max_string_size", max_string_size, 0)
        self.max_container_size = check_limit("max_container_size", max_container_size, 0)
        self.max_depth = check_limit("max_depth", max_depth, 1)
        self._max_string = clamp_ssize(self.max_string_size)
        self._max_container = clamp_ssize(self.max_container_size)
        self._max_depth = <int>min(self.max_depth, 0x7FFFFFF0)
        self._enc = _Encoder()
        self._busy = False

    def __repr__(self):
        return ("BinaryCodec(strict_read=%r, strict_write=%r, decode_response=%r, "
                "max_string_size=%r, max_container_size=%r, max_depth=%r)" % (
                    self.strict_read, self.strict_write, self.decode_response,
                    self.max_string_size, self.max_container_size, self.max_depth))

    cdef inline StructSpec _encode_spec(self, object cls):
        if cls is not self._enc_cls:
            self._enc_spec = get_spec(cls)
            self._enc_cls = cls
        return self._enc_spec

    cdef inline StructSpec _decode_spec(self, object cls):
        if cls is not self._dec_cls:
            self._dec_spec = get_spec(cls)
            self._dec_cls = cls
        return self._dec_spec

    cdef inline _Encoder _acquire(self):
        # Re-entrant use (a __index__ or __len__ encoding with this codec)
        # must not clobber the buffer being filled: it gets a fresh one.
        cdef _Encoder e
        if self._busy:
            e = _Encoder()
        else:
            self._busy = True
            e = self._enc
        e.start()
        return e

    cdef inline void _release(self, _Encoder e) noexcept:
        e.chunks = None   # never keep big values alive after an error
        if e is self._enc:
            self._busy = False

    def encode_struct(self, obj):
        """Encode a struct, exception or service args/result object to bytes."""
        cdef StructSpec spec = self._encode_spec(type(obj))
        cdef _Encoder e = self._acquire()
        try:
            encode_struct(e, obj, spec, 0, self._max_depth)
            return e.finish(False)
        finally:
            self._release(e)

    def encode_message(self, name, mtype, seqid, obj, framed=False):
        """Encode a whole message: header, then ``obj``.

        :param framed: prefix the 4-byte big-endian frame length.
        """
        cdef const char* pname
        cdef Py_ssize_t nname
        cdef long long mt, sq
        cdef char* w
        cdef StructSpec spec
        cdef _Encoder e
        cdef WriteBuffer buf
        cdef bint is_framed
        # message types are 1..4; 0..127 is what both header formats can carry
        aiothrift_as_int(mtype, 0, 127, "message type", &mt)
        aiothrift_as_int(seqid, INT32_MIN, INT32_MAX, "seqid", &sq)
        if not PyUnicode_Check(name):
            raise TypeError("message name must be str, got %s" % type(name).__name__)
        pname = PyUnicode_AsUTF8AndSize(name, &nname)
        if nname > MAX_I32:
            raise OverflowError("message name too long")
        spec = self._encode_spec(type(obj))
        is_framed = bool(framed)
        e = self._acquire()
        buf = e.buf
        try:
            if is_framed:
                buf.write_i32(0)   # the frame length, patched by finish()
            if self.strict_write:
                w = reserve(buf, 8 + nname + 4)
                aiothrift_st32(w, VERSION_1 | <uint32_t>mt)
                aiothrift_st32(w + 4, <uint32_t>nname)
                memcpy(w + 8, pname, nname)
                aiothrift_st32(w + 8 + nname, <uint32_t><int32_t>sq)
                buf._len += 8 + nname + 4
            else:
                w = reserve(buf, 4 + nname + 5)
                aiothrift_st32(w, <uint32_t>nname)
                memcpy(w + 4, pname, nname)
                w[4 + nname] = <char>mt
                aiothrift_st32(w + 4 + nname + 1, <uint32_t><int32_t>sq)
                buf._len += 4 + nname + 5
            encode_struct(e, obj, spec, 0, self._max_depth)
            return e.finish(is_framed)
        finally:
            self._release(e)

    def decode_struct(self, cls_or_obj, data, offset=0):
        """Decode one struct from ``data`` (any bytes-like object) at ``offset``.

        :param cls_or_obj: a struct class (a new object is built without running
            ``__init__``) or an instance (decoded fields are set on it).
        """
        cdef StructSpec spec
        cdef Py_buffer view
        cdef Py_ssize_t off = 0
        if offset is not 0:
            off = PyNumber_AsSsize_t(offset, NULL)
            if off < 0:
                raise ValueError("offset must be >= 0, got %r" % (offset,))
        if PyType_Check(cls_or_obj):
            spec = self._decode_spec(cls_or_obj)
            target = None
        else:
            spec = self._decode_spec(type(cls_or_obj))
            target = cls_or_obj
        if PyBytes_Check(data):
            return self._decode(spec, <const unsigned char*>PyBytes_AS_STRING(data),
                                PyBytes_GET_SIZE(data), off, target)
        data = contiguous(data)
        if PyBytes_Check(data):
            return self._decode(spec, <const unsigned char*>PyBytes_AS_STRING(data),
                                PyBytes_GET_SIZE(data), off, target)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._decode(spec, <const unsigned char*>view.buf, view.len, off, target)
        finally:
            PyBuffer_Release(&view)

    cdef object _decode(self, StructSpec spec, const unsigned char* buf, Py_ssize_t size,
                        Py_ssize_t off, object target):
        cdef Reader r
        r.buf = buf
        r.pos = off
        r.end = size
        r.max_string = self._max_string
        r.max_container = self._max_container
        r.max_depth = self._max_depth
        r.decode_response = self.decode_response
        return decode_struct(&r, spec, 0, target, read_fields)

    def decode_message_begin(self, data):
        """Decode a message header: ``(name, mtype, seqid, body_offset)``."""
        cdef Py_buffer view
        if PyBytes_Check(data):
            return self._message_begin(<const unsigned char*>PyBytes_AS_STRING(data),
                                       PyBytes_GET_SIZE(data))
        data = contiguous(data)
        if PyBytes_Check(data):
            return self._message_begin(<const unsigned char*>PyBytes_AS_STRING(data),
                                       PyBytes_GET_SIZE(data))
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._message_begin(<const unsigned char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef tuple _message_begin(self, const unsigned char* buf, Py_ssize_t size):
        cdef Reader r
        cdef int32_t sz
        cdef int mtype
        r.buf = buf
        r.pos = 0
        r.end = size
        r.max_string = self._max_string
        need(&r, 4)
        sz = aiothrift_ld32(buf)
        r.pos = 4
        if sz < 0:
            if (<uint32_t>sz & VERSION_MASK) != VERSION_1:
                raise BadVersionError("bad protocol version 0x%08x" % (<uint32_t>sz))
            mtype = (<uint32_t>sz) & 0xFF
            name = self._read_name(&r)
        else:
            if self.strict_read:
                raise BadVersionError("message header has no protocol version (strict_read)")
            r.pos = 0
            name = self._read_name(&r)
            need(&r, 1)
            mtype = <signed char>r.buf[r.pos]
            r.pos += 1
        need(&r, 4)
        seqid = aiothrift_ld32(r.buf + r.pos)
        r.pos += 4
        return (name, mtype, seqid, r.pos)

    cdef object _read_name(self, Reader* r):
        cdef Py_ssize_t n = read_size(r, r.max_string, "message name")
        cdef const char* p = <const char*>(r.buf + r.pos)
        r.pos += n
        return aiothrift_decode_name(p, n, InvalidDataError)
