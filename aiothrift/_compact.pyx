# cython: language_level=3, embedsignature=True, wraparound=False, cdivision=True
"""Thrift compact protocol codec, compiled.

The twin of the pure-Python ``aiothrift._compact_py`` (whose docstring holds
the wire format and the decoding rules specific to the compact protocol):
same API, same bytes, same objects, same exceptions.  Both follow
``BinaryCodec``'s contract (``docs/internals.md``); only the wire differs.

The protocol-independent machinery is ``aiothrift._schema`` (cimported), as
for ``_binary``; this module holds the compact wire format.

Where the speed comes from (as in ``_binary``):

* each struct class is compiled once (``_spec.struct_info`` -> :class:`StructSpec`)
  into a C array of fields (compact type, precomputed long field header,
  interned name, sub-type descriptor) and a direct-index table from field id
  to field: no dict/tuple walking of the schema per field;
* decoding reads in place from one pointer + length with an explicit bounds
  check per read; varints are read with a byte-count limit; declared sizes
  are checked against their limit and the bytes left before allocating;
* decoded objects are allocated without running ``__init__`` and get a copy
  of the class defaults as their ``__dict__``;
* encoding writes into the codec's reusable ``WriteBuffer``; strings go out
  through ``PyUnicode_AsUTF8AndSize``.

``CompactBufferedReader`` finds message ends in an unframed compact stream
with a resumable scanner (an explicit stack, no recursion, no rescans).
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
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
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.type cimport PyType_Check
from libc.stdint cimport INT64_MAX, INT64_MIN, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memmove

from aiothrift._framing cimport WriteBuffer
from aiothrift._schema cimport (
    GUARD_DEPTH, T_BINARY, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64, T_LIST, T_MAP,
    T_SET, T_STOP, T_STRING, T_STRUCT,
    FieldC, Reader, Schema, StructSpec, TypeDesc,
    aiothrift_as_double, aiothrift_as_int, aiothrift_decode_key, aiothrift_decode_name,
    aiothrift_decode_text, aiothrift_field_value, aiothrift_instance_dict, aiothrift_list_to_set,
    aiothrift_map_set, check_limit, clamp_ssize, contiguous, decode_struct, need, raise_depth,
    raise_missing, raise_truncated, spec_lookup, td_spec,
)

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
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_STRING_SIZE,
)

__all__ = ("CompactCodec", "CompactBufferedReader")


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    Py_ssize_t PyNumber_AsSsize_t(object, PyObject*) except? -1
    object _PyDict_NewPresized(Py_ssize_t)
    int Py_EnterRecursiveCall(const char*) except? 1
    void Py_LeaveRecursiveCall()
    int PyDict_SetItem(object, object, object) except -1


cdef extern from *:
    """
    /* Little-endian doubles, varints, zigzag. */
    static inline double aiothrift_c_lddouble(const unsigned char* p) {
        uint64_t u = (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16)
                   | ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40)
                   | ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    static inline void aiothrift_c_stdouble(char* p, double d) {
        uint64_t u;
        int i;
        memcpy(&u, &d, 8);
        for (i = 0; i < 8; i++) { p[i] = (char)(u >> (8 * i)); }
    }

    /* An unsigned varint of at most ``max_bytes`` bytes that must fit in
       ``bits`` bits.  Returns 0 (value in *out, length in *used), 1 when the
       input ends first, 2 when it is longer than max_bytes, 3 when the value
       overflows. */
    static inline int aiothrift_c_varint(const unsigned char* p, Py_ssize_t avail, int max_bytes,
                                         int bits, uint64_t* out, Py_ssize_t* used) {
        uint64_t v = 0;
        int shift = 0;
        int i;
        for (i = 0; i < max_bytes; i++) {
            unsigned char b;
            if (i >= avail) return 1;
            b = p[i];
            v |= (uint64_t)(b & 0x7F) << shift;
            if (b < 0x80) {
                if (bits < 64) {
                    if (v >> bits) return 3;
                } else if (shift == 63 && (b & 0x7F) > 1) {
                    return 3;
                }
                *out = v;
                *used = i + 1;
                return 0;
            }
            shift += 7;
        }
        return 2;
    }

    /* Append the varint of ``v``; ``p`` has room for 10 bytes. Returns the length. */
    static inline Py_ssize_t aiothrift_c_put_varint(char* p, uint64_t v) {
        Py_ssize_t n = 0;
        while (v > 0x7F) {
            p[n++] = (char)((v & 0x7F) | 0x80);
            v >>= 7;
        }
        p[n++] = (char)v;
        return n;
    }

    static inline int64_t aiothrift_c_unzigzag(uint64_t n) {
        return (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
    }
    static inline uint64_t aiothrift_c_zigzag64(int64_t x) {
        return ((uint64_t)x << 1) ^ (uint64_t)(x >> 63);
    }
    static inline uint64_t aiothrift_c_zigzag32(int32_t x) {
        return (uint32_t)(((uint32_t)x << 1) ^ (uint32_t)(x >> 31));
    }
    """
    double aiothrift_c_lddouble(const unsigned char* p) noexcept nogil
    void aiothrift_c_stdouble(char* p, double d) noexcept nogil
    int aiothrift_c_varint(const unsigned char* p, Py_ssize_t avail, int max_bytes, int bits,
                           uint64_t* out, Py_ssize_t* used) noexcept nogil
    Py_ssize_t aiothrift_c_put_varint(char* p, uint64_t v) noexcept nogil
    int64_t aiothrift_c_unzigzag(uint64_t n) noexcept nogil
    uint64_t aiothrift_c_zigzag64(int64_t x) noexcept nogil
    uint64_t aiothrift_c_zigzag32(int32_t x) noexcept nogil


# Compact type ids.
cdef enum:
    CT_STOP = 0
    CT_TRUE = 1
    CT_FALSE = 2
    CT_BYTE = 3
    CT_I16 = 4
    CT_I32 = 5
    CT_I64 = 6
    CT_DOUBLE = 7
    CT_BINARY = 8
    CT_LIST = 9
    CT_SET = 10
    CT_MAP = 11
    CT_STRUCT = 12

cdef enum:
    PROTOCOL_ID = 0x82
    VERSION = 1
    VERSION_MASK = 0x1F
    TYPE_SHIFT = 5

# Varint status codes of aiothrift_c_varint.
cdef enum:
    VI_OK = 0
    VI_SHORT = 1
    VI_LONG = 2
    VI_OVERFLOW = 3

cdef Py_ssize_t MAX_I32 = 0x7FFFFFFF

# compact nibble -> wire type (0: not a compact type); wire type -> compact
# type written for it; wire type -> fewest bytes of its compact encoding
# (0: not a wire type); fixed widths of the values skipping jumps over.
cdef int CT2T[16]
cdef int T2CT[32]
cdef int MINW[256]
cdef int FIXEDW[256]
CT2T[:] = [0, T_BOOL, T_BOOL, T_BYTE, T_I16, T_I32, T_I64, T_DOUBLE,
           T_STRING, T_LIST, T_SET, T_MAP, T_STRUCT, 0, 0, 0]
T2CT[:] = [0] * 32
MINW[:] = [0] * 256
FIXEDW[:] = [0] * 256
T2CT[T_BOOL] = CT_TRUE
T2CT[T_BYTE] = CT_BYTE
T2CT[T_I16] = CT_I16
T2CT[T_I32] = CT_I32
T2CT[T_I64] = CT_I64
T2CT[T_DOUBLE] = CT_DOUBLE
T2CT[T_STRING] = CT_BINARY
T2CT[T_BINARY] = CT_BINARY
T2CT[T_LIST] = CT_LIST
T2CT[T_SET] = CT_SET
T2CT[T_MAP] = CT_MAP
T2CT[T_STRUCT] = CT_STRUCT
for _t in (T_BOOL, T_BYTE, T_I16, T_I32, T_I64, T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST):
    MINW[_t] = 1
MINW[T_DOUBLE] = 8
FIXEDW[T_BOOL] = 1
FIXEDW[T_BYTE] = 1
FIXEDW[T_DOUBLE] = 8

cdef dict _EMPTY_DICT = {}


# ---------------------------------------------------------------- schema

cdef class CompactSchema(Schema):
    """Struct classes compiled for the compact protocol (``_schema.Schema``)."""

    cdef int check_field(self, object finfo, str cls_name) except -1:
        cdef long long fid = finfo.fid
        if not -0x8000 <= fid <= 0x7FFF:
            raise TypeError("field id %d of %s is not an i16" % (fid, cls_name))
        return 0

    cdef int init_field(self, FieldC* f, object finfo, str cls_name) except -1:
        cdef long long fid = finfo.fid
        f.fid = <int>fid
        # the long-form header: zigzag varint of the id, after the type byte
        f.hdr_len = <int>aiothrift_c_put_varint(f.hdr, aiothrift_c_zigzag32(<int32_t>fid))
        return 0


cdef CompactSchema _SCHEMA = CompactSchema()
_SCHEMA.minw = MINW
_SCHEMA.t2ct = T2CT


cdef inline StructSpec get_spec(object cls):
    return _SCHEMA.get_spec(cls)


# ---------------------------------------------------------------- errors

cdef int raise_varint(int status, int max_bytes, int bits) except -1:
    if status == VI_SHORT:
        raise TruncatedError("input ends inside a varint")
    if status == VI_LONG:
        raise InvalidDataError("varint longer than %d bytes" % max_bytes)
    raise InvalidDataError("varint overflows %d bits" % bits)


cdef int check_elem_type(int ct, int expected, str what) except -1:
    cdef int t = CT2T[ct & 0x0F]
    if t != expected:
        if t == 0:
            raise InvalidDataError("invalid %s type id %d" % (what, ct))
        raise InvalidDataError("%s type id %d does not match the schema's %d"
                               % (what, ct, T2CT[expected]))
    return 0


# ---------------------------------------------------------------- decode

cdef inline int read_u8(Reader* r) except -1:
    if r.pos >= r.end:
        raise_truncated(1, 0)
    r.pos += 1
    return r.buf[r.pos - 1]


cdef inline uint64_t read_varint(Reader* r, int max_bytes, int bits) except? 0xFFFFFFFFFFFFFFFF:
    """An unsigned varint (fast path: one byte)."""
    cdef unsigned char b
    cdef uint64_t v = 0
    cdef Py_ssize_t used = 0
    cdef int status
    if r.pos < r.end:
        b = r.buf[r.pos]
        if b < 0x80:
            r.pos += 1
            return b
    status = aiothrift_c_varint(r.buf + r.pos, r.end - r.pos, max_bytes, bits, &v, &used)
    if status != VI_OK:
        raise_varint(status, max_bytes, bits)
    r.pos += used
    return v


cdef inline int64_t read_i16(Reader* r) except? -0x7FFFFFFFFFFFFFFF:
    return aiothrift_c_unzigzag(read_varint(r, 3, 16))


cdef inline int64_t read_i32(Reader* r) except? -0x7FFFFFFFFFFFFFFF:
    return aiothrift_c_unzigzag(read_varint(r, 5, 32))


cdef inline int64_t read_i64(Reader* r) except? -0x7FFFFFFFFFFFFFFF:
    return aiothrift_c_unzigzag(read_varint(r, 10, 64))


cdef inline Py_ssize_t read_size(Reader* r) except? -0x7FFFFFFFFFFFFFFF:
    """A varint size as the i32 a peer reads (negative when >= 2**31)."""
    return <int32_t><uint32_t>read_varint(r, 5, 32)


cdef inline Py_ssize_t read_string_size(Reader* r, str what) except -1:
    """A declared string length: checked against the limit and the bytes left."""
    cdef Py_ssize_t n = read_size(r)
    if n < 0:
        raise NegativeSizeError("negative %s length %d" % (what, n))
    if n > r.max_string:
        raise SizeLimitError("%s of %d bytes exceeds max_string_size=%d" % (what, n, r.max_string))
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
    cdef Py_ssize_t n = read_string_size(r, "string/binary")
    cdef const char* p = <const char*>(r.buf + r.pos)
    r.pos += n
    if as_text:
        return aiothrift_decode_text(p, n)
    return PyBytes_FromStringAndSize(p, n)


cdef inline object read_key(Reader* r):
    """A string map key (decode_response): through the key cache."""
    cdef Py_ssize_t n = read_string_size(r, "string/binary")
    cdef const char* p = <const char*>(r.buf + r.pos)
    r.pos += n
    return aiothrift_decode_key(p, n)


cdef object decode_value(Reader* r, TypeDesc td, int depth):
    """A value of ``td`` (a bool here is a container element: one byte)."""
    cdef int t = td.ttype
    cdef const unsigned char* p
    if t == T_I32:
        return PyLong_FromLong(<long>read_i32(r))
    elif t == T_I64:
        return PyLong_FromLongLong(read_i64(r))
    elif t == T_STRING:
        return read_string(r, r.decode_response)
    elif t == T_BINARY:
        return read_string(r, False)
    elif t == T_STRUCT:
        return decode_struct(r, td_spec(td), depth, None, read_fields)
    elif t == T_BOOL:
        return read_u8(r) == CT_TRUE
    elif t == T_DOUBLE:
        need(r, 8)
        p = r.buf + r.pos
        r.pos += 8
        return PyFloat_FromDouble(aiothrift_c_lddouble(p))
    elif t == T_I16:
        return PyLong_FromLong(<long>read_i16(r))
    elif t == T_BYTE:
        return PyLong_FromLong(<signed char>read_u8(r))
    elif t == T_LIST:
        return decode_list(r, td, depth, False)
    elif t == T_SET:
        return decode_list(r, td, depth, True)
    elif t == T_MAP:
        return decode_map(r, td, depth)
    raise TypeError("unsupported Thrift type id %r" % (t,))


cdef inline int store_field(FieldC* f, Py_ssize_t idx, PyObject** vals, dict d,
                            object v) except -1:
    cdef PyObject* old
    if vals != NULL:
        old = vals[idx]
        Py_INCREF(v)
        vals[idx] = <PyObject*>v
        Py_XDECREF(old)
    else:
        PyDict_SetItem(d, <object>f.name, v)
    return 0


cdef int read_fields(Reader* r, StructSpec spec, int depth, PyObject** vals, dict d) except -1:
    """Read fields up to STOP into ``vals`` (by field index) or else ``d`` (by name)."""
    cdef int b, ct, ftype
    cdef long long fid, last = 0
    cdef Py_ssize_t idx, i
    cdef FieldC* f
    cdef uint64_t seen = 0
    cdef set seen_slow = None
    if spec.nrequired > 64:
        seen_slow = set()
    while True:
        b = read_u8(r)
        ct = b & 0x0F
        if ct == CT_STOP:
            break
        if b >> 4:
            fid = last + (b >> 4)
        else:
            fid = read_i16(r)
        last = fid
        ftype = CT2T[ct]
        idx = spec_lookup(spec, fid)
        if idx >= 0:
            f = &spec.fields[idx]
            if f.wire == ftype:
                if ftype == T_BOOL:
                    store_field(f, idx, vals, d, ct == CT_TRUE)
                else:
                    store_field(f, idx, vals, d, decode_value(r, <TypeDesc>f.td, depth))
                if f.required:
                    if seen_slow is not None:
                        seen_slow.add(<object>f.name)
                    else:
                        seen |= (<uint64_t>1) << f.req_bit
                continue
        if ftype == 0:
            raise InvalidDataError("invalid field type id %d (field %d)" % (ct, fid))
        if ftype != T_BOOL:  # a bool field's value is its header
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
    cdef int b
    cdef Py_ssize_t n, i
    cdef const unsigned char* p
    cdef list lst
    cdef set s
    b = read_u8(r)
    n = b >> 4
    if n == 15:
        n = read_size(r)
    check_count(r, n, "set" if as_set else "list")
    if n:
        check_elem_type(b & 0x0F, e.wire, "set" if as_set else "list")
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
    if et == T_I32:
        for i in range(n):
            v = PyLong_FromLong(<long>read_i32(r))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
    elif et == T_I64:
        for i in range(n):
            v = PyLong_FromLongLong(read_i64(r))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
    elif et == T_STRING or et == T_BINARY:
        as_text = et == T_STRING and r.decode_response
        for i in range(n):
            v = read_string(r, as_text)
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
    elif et == T_DOUBLE:
        p = r.buf + r.pos
        for i in range(n):
            v = PyFloat_FromDouble(aiothrift_c_lddouble(p + 8 * i))
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += 8 * n
    elif et == T_BOOL:
        p = r.buf + r.pos
        for i in range(n):
            v = p[i] == CT_TRUE
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
        r.pos += n
    elif et == T_STRUCT:
        spec = td_spec(e)
        for i in range(n):
            v = decode_struct(r, spec, depth, None, read_fields)
            Py_INCREF(v)
            PyList_SET_ITEM(lst, i, v)
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
    cdef int kv = 0
    cdef Py_ssize_t n, i
    cdef dict d
    n = read_size(r)
    if n:
        kv = read_u8(r)
    check_count(r, n, "map")
    if n:
        check_elem_type(kv >> 4, kd.wire, "map key")
        check_elem_type(kv & 0x0F, vd.wire, "map value")
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
    """Move past one value of wire type ``t`` (a bool is a container element)."""
    cdef Py_ssize_t w = FIXEDW[t]
    if w:
        need(r, w)
        r.pos += w
        return 0
    if t == T_I32:
        read_varint(r, 5, 32)
        return 0
    if t == T_I64:
        read_varint(r, 10, 64)
        return 0
    if t == T_I16:
        read_varint(r, 3, 16)
        return 0
    if t == T_STRING:
        r.pos += read_string_size(r, "string/binary")
        return 0
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


cdef int skip_body(Reader* r, int t, int depth) except -1:
    cdef int b, ct, ft, et, kt, vt
    cdef Py_ssize_t n, i, w
    if t == T_STRUCT:
        while True:
            b = read_u8(r)
            ct = b & 0x0F
            if ct == CT_STOP:
                return 0
            if not (b >> 4):
                read_varint(r, 3, 16)
            ft = CT2T[ct]
            if ft == 0:
                raise InvalidDataError("invalid field type id %d" % ct)
            if ft != T_BOOL:
                skip(r, ft, depth)
    if t == T_LIST or t == T_SET:
        b = read_u8(r)
        n = b >> 4
        if n == 15:
            n = read_size(r)
        check_count(r, n, "list")
        if n == 0:
            return 0
        et = CT2T[b & 0x0F]
        if et == 0:
            raise InvalidDataError("invalid element type id %d" % (b & 0x0F))
        if n * MINW[et] > r.end - r.pos:
            raise TruncatedError("list of %d elements cannot fit in %d bytes" % (n, r.end - r.pos))
        w = FIXEDW[et]
        if w:
            r.pos += n * w
            return 0
        for i in range(n):
            skip(r, et, depth)
        return 0
    if t == T_MAP:
        n = read_size(r)
        b = 0
        if n:
            b = read_u8(r)
        check_count(r, n, "map")
        if n == 0:
            return 0
        kt = CT2T[b >> 4]
        vt = CT2T[b & 0x0F]
        if kt == 0 or vt == 0:
            raise InvalidDataError("invalid map key/value type ids %d/%d" % (b >> 4, b & 0x0F))
        if n * (MINW[kt] + MINW[vt]) > r.end - r.pos:
            raise TruncatedError("map of %d entries cannot fit in %d bytes" % (n, r.end - r.pos))
        if FIXEDW[kt] and FIXEDW[vt]:
            r.pos += n * (FIXEDW[kt] + FIXEDW[vt])
            return 0
        for i in range(n):
            skip(r, kt, depth)
            skip(r, vt, depth)
        return 0
    raise InvalidDataError("invalid type id %d" % t)


# ---------------------------------------------------------------- encode

cdef inline char* reserve(WriteBuffer out, Py_ssize_t n) except NULL:
    """Room for ``n`` more bytes; the caller writes them and advances ``_len``."""
    out.ensure(n)
    return out._data + out._len


cdef inline int put_u8(WriteBuffer out, int b) except -1:
    cdef char* w = reserve(out, 1)
    w[0] = <char>b
    out._len += 1
    return 0


cdef inline int put_varint(WriteBuffer out, uint64_t v) except -1:
    cdef char* w = reserve(out, 10)
    out._len += aiothrift_c_put_varint(w, v)
    return 0


cdef inline int write_sized(WriteBuffer out, const char* p, Py_ssize_t n) except -1:
    if n > MAX_I32:
        raise OverflowError("string/binary of %d bytes is too long for Thrift" % n)
    cdef char* w = reserve(out, 5 + n)
    cdef Py_ssize_t k
    if n < 0x80:
        w[0] = <char>n
        k = 1
    else:
        k = aiothrift_c_put_varint(w, <uint64_t>n)
    memcpy(w + k, p, n)
    out._len += k + n
    return 0


cdef int write_bytes_like(WriteBuffer out, object v) except -1:
    """string and binary: ``str`` as UTF-8, else any buffer's bytes."""
    cdef const char* p
    cdef Py_ssize_t n
    cdef Py_buffer view
    if PyUnicode_Check(v):
        p = PyUnicode_AsUTF8AndSize(v, &n)
    elif PyBytes_Check(v):
        p = PyBytes_AS_STRING(v)
        n = PyBytes_GET_SIZE(v)
    elif PyObject_CheckBuffer(v):
        PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
        try:
            write_sized(out, <const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0
    else:
        raise TypeError("string/binary expected str or a bytes-like object, got %s"
                        % type(v).__name__)
    return write_sized(out, p, n)


cdef inline int write_int(WriteBuffer out, object v, int t) except -1:
    cdef long long x
    cdef char* w
    if t == T_I32:
        aiothrift_as_int(v, -0x80000000, 0x7FFFFFFF, "i32", &x)
        return put_varint(out, aiothrift_c_zigzag32(<int32_t>x))
    elif t == T_I64:
        aiothrift_as_int(v, INT64_MIN, INT64_MAX, "i64", &x)
        return put_varint(out, aiothrift_c_zigzag64(<int64_t>x))
    elif t == T_I16:
        aiothrift_as_int(v, -0x8000, 0x7FFF, "i16", &x)
        return put_varint(out, aiothrift_c_zigzag32(<int32_t>x))
    else:
        aiothrift_as_int(v, -0x80, 0x7F, "byte", &x)
        w = reserve(out, 1)
        w[0] = <char>x
        out._len += 1
    return 0


cdef inline int write_double(WriteBuffer out, object v) except -1:
    cdef double x
    aiothrift_as_double(v, &x)
    cdef char* w = reserve(out, 8)
    aiothrift_c_stdouble(w, x)
    out._len += 8
    return 0


cdef int encode_value(WriteBuffer out, object v, TypeDesc td, int depth, int max_depth) except -1:
    """A value of ``td`` (a bool here is a container element: one byte)."""
    cdef int t = td.ttype
    if t == T_I32 or t == T_I64 or t == T_I16 or t == T_BYTE:
        return write_int(out, v, t)
    elif t == T_STRING or t == T_BINARY:
        return write_bytes_like(out, v)
    elif t == T_STRUCT:
        return encode_struct(out, v, td_spec(td), depth, max_depth)
    elif t == T_BOOL:
        return put_u8(out, CT_TRUE if v else CT_FALSE)
    elif t == T_DOUBLE:
        return write_double(out, v)
    elif t == T_LIST or t == T_SET:
        return encode_list(out, v, td, depth, max_depth)
    elif t == T_MAP:
        return encode_map(out, v, td, depth, max_depth)
    raise TypeError("unsupported Thrift type id %r" % (t,))


cdef int encode_struct(WriteBuffer out, object obj, StructSpec spec, int depth,
                       int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_struct_body(out, obj, spec, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_struct_body(out, obj, spec, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_struct_body(WriteBuffer out, object obj, StructSpec spec, int depth,
                            int max_depth) except -1:
    cdef Py_ssize_t i
    cdef FieldC* f
    cdef char* w
    cdef int ct, last = 0, delta
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
        ct = f.ctype
        if f.wire == T_BOOL:
            ct = CT_TRUE if v else CT_FALSE
        delta = f.fid - last
        w = reserve(out, 4)
        if 0 < delta <= 15:
            w[0] = <char>(delta << 4 | ct)
            out._len += 1
        else:
            w[0] = <char>ct
            memcpy(w + 1, f.hdr, f.hdr_len)
            out._len += 1 + f.hdr_len
        last = f.fid
        if f.wire != T_BOOL:
            encode_value(out, v, <TypeDesc>f.td, depth, max_depth)
    return put_u8(out, CT_STOP)


cdef inline Py_ssize_t container_len(object v) except -1:
    cdef Py_ssize_t n = len(v)
    if n > MAX_I32:
        raise OverflowError("container of %d elements is too long for Thrift" % n)
    return n


cdef int raise_changed() except -1:
    raise RuntimeError("container changed size during encoding")


cdef int encode_list(WriteBuffer out, object v, TypeDesc td, int depth, int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_list_body(out, v, td, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_list_body(out, v, td, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_list_body(WriteBuffer out, object v, TypeDesc td, int depth,
                          int max_depth) except -1:
    cdef TypeDesc e = td.elem
    cdef int et = e.ttype
    cdef Py_ssize_t n = container_len(v)
    cdef Py_ssize_t count = 0
    cdef char* w
    if n < 15:
        put_u8(out, n << 4 | e.ctype)
    else:
        w = reserve(out, 11)
        w[0] = <char>(0xF0 | e.ctype)
        out._len += 1 + aiothrift_c_put_varint(w + 1, <uint64_t>n)
    if et == T_I32 or et == T_I64 or et == T_I16 or et == T_BYTE:
        for item in v:
            write_int(out, item, et)
            count += 1
    elif et == T_STRING or et == T_BINARY:
        for item in v:
            write_bytes_like(out, item)
            count += 1
    elif et == T_STRUCT:
        spec = td_spec(e)
        for item in v:
            encode_struct(out, item, spec, depth, max_depth)
            count += 1
    elif et == T_DOUBLE:
        for item in v:
            write_double(out, item)
            count += 1
    elif et == T_BOOL:
        for item in v:
            put_u8(out, CT_TRUE if item else CT_FALSE)
            count += 1
    else:
        for item in v:
            encode_value(out, item, e, depth, max_depth)
            count += 1
    if count != n:
        raise_changed()
    return 0


cdef int encode_map(WriteBuffer out, object v, TypeDesc td, int depth, int max_depth) except -1:
    depth += 1
    if depth > max_depth:
        raise_depth(max_depth)
    if depth <= GUARD_DEPTH:
        return encode_map_body(out, v, td, depth, max_depth)
    Py_EnterRecursiveCall(" while encoding Thrift data")
    try:
        return encode_map_body(out, v, td, depth, max_depth)
    finally:
        Py_LeaveRecursiveCall()


cdef int encode_map_body(WriteBuffer out, object v, TypeDesc td, int depth,
                         int max_depth) except -1:
    cdef TypeDesc kd = td.elem
    cdef TypeDesc vd = td.val
    cdef Py_ssize_t n = container_len(v)
    cdef Py_ssize_t count = 0
    cdef char* w
    cdef Py_ssize_t nlen
    if n == 0:
        put_u8(out, 0)
    else:
        w = reserve(out, 11)
        nlen = aiothrift_c_put_varint(w, <uint64_t>n)
        w[nlen] = <char>(kd.ctype << 4 | vd.ctype)
        out._len += nlen + 1
    if PyDict_CheckExact(v):
        for k, val in (<dict>v).items():
            encode_value(out, k, kd, depth, max_depth)
            encode_value(out, val, vd, depth, max_depth)
            count += 1
    else:
        for k, val in v.items():
            encode_value(out, k, kd, depth, max_depth)
            encode_value(out, val, vd, depth, max_depth)
            count += 1
    if count != n:
        raise_changed()
    return 0


# ---------------------------------------------------------------- codec

cdef class CompactCodec:
    """Encoder/decoder of Thrift's compact protocol for thriftpy2 structs.

    :param strict_read: accepted for symmetry with ``BinaryCodec``; the
        compact protocol has a single, versioned, message header.
    :param strict_write: accepted for symmetry with ``BinaryCodec``.
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
    cdef WriteBuffer _buf
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
        self._buf = WriteBuffer()
        self._busy = False

    def __repr__(self):
        return ("CompactCodec(strict_read=%r, strict_write=%r, decode_response=%r, "
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

    cdef inline WriteBuffer _acquire(self):
        # Re-entrant use (a __index__ or __len__ encoding with this codec)
        # must not clobber the buffer being filled: it gets a fresh one.
        if self._busy:
            return WriteBuffer()
        self._busy = True
        self._buf.c_reset()
        return self._buf

    cdef inline void _release(self, WriteBuffer buf) noexcept:
        if buf is self._buf:
            self._busy = False

    def encode_struct(self, obj):
        """Encode a struct, exception or service args/result object to bytes."""
        cdef StructSpec spec = self._encode_spec(type(obj))
        cdef WriteBuffer buf = self._acquire()
        try:
            encode_struct(buf, obj, spec, 0, self._max_depth)
            return buf.c_take()
        finally:
            self._release(buf)

    def encode_message(self, name, mtype, seqid, obj, framed=False):
        """Encode a whole message: header, then ``obj``.

        :param framed: prefix the 4-byte big-endian frame length.
        """
        cdef const char* pname
        cdef Py_ssize_t nname
        cdef long long mt, sq
        cdef char* w
        cdef StructSpec spec
        cdef WriteBuffer buf
        cdef bint is_framed
        cdef Py_ssize_t k
        aiothrift_as_int(mtype, 0, 7, "message type", &mt)
        aiothrift_as_int(seqid, -0x80000000, 0x7FFFFFFF, "seqid", &sq)
        if not PyUnicode_Check(name):
            raise TypeError("message name must be str, got %s" % type(name).__name__)
        pname = PyUnicode_AsUTF8AndSize(name, &nname)
        if nname > MAX_I32:
            raise OverflowError("message name too long")
        spec = self._encode_spec(type(obj))
        is_framed = bool(framed)
        buf = self._acquire()
        try:
            if is_framed:
                buf.c_begin_frame()
            w = reserve(buf, 2 + 5 + 5 + nname)
            w[0] = <char>PROTOCOL_ID
            w[1] = <char>(VERSION | (mt << TYPE_SHIFT))
            k = 2 + aiothrift_c_put_varint(w + 2, <uint32_t><int32_t>sq)
            k += aiothrift_c_put_varint(w + k, <uint64_t>nname)
            memcpy(w + k, pname, nname)
            buf._len += k + nname
            encode_struct(buf, obj, spec, 0, self._max_depth)
            if is_framed:
                buf.c_end_frame()
            return buf.c_take()
        finally:
            self._release(buf)

    def decode_struct(self, cls_or_obj, data, offset=0):
        """Decode one struct from ``data`` (any bytes-like object) at ``offset``.

        :param cls_or_obj: a struct class (a new object is built without running
            ``__init__``) or an instance (decoded fields are set on it).
        """
        cdef StructSpec spec
        cdef Py_buffer view
        cdef Py_ssize_t off
        if PyType_Check(cls_or_obj):
            spec = self._decode_spec(cls_or_obj)
            target = None
        else:
            spec = self._decode_spec(type(cls_or_obj))
            target = cls_or_obj
        if offset is 0:
            off = 0
        else:
            off = PyNumber_AsSsize_t(offset, NULL)
            if off < 0:
                raise ValueError("offset must be >= 0, got %r" % (offset,))
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
        cdef int b, mtype
        cdef int64_t seqid
        cdef Py_ssize_t n
        cdef const char* p
        r.buf = buf
        r.pos = 0
        r.end = size
        r.max_string = self._max_string
        b = read_u8(&r)
        if b != PROTOCOL_ID:
            raise BadVersionError("bad compact protocol id 0x%02x" % b)
        b = read_u8(&r)
        if (b & VERSION_MASK) != VERSION:
            raise BadVersionError("bad compact protocol version %d" % (b & VERSION_MASK))
        mtype = b >> TYPE_SHIFT
        seqid = <int32_t><uint32_t>read_varint(&r, 5, 32)
        n = read_string_size(&r, "message name")
        p = <const char*>(r.buf + r.pos)
        r.pos += n
        name = aiothrift_decode_name(p, n, InvalidDataError)
        return (name, mtype, seqid, r.pos)


# ---------------------------------------------------------------- reader

# Scanner frames.
cdef enum:
    F_STRUCT = 0
    F_LIST = 1    # remaining elements of type t1
    F_MAP = 2     # remaining keys+values; even remaining -> next is a key (t1)

ctypedef struct Frame:
    int kind
    int t1
    int t2
    int64_t remaining

# _start_value results besides a position.
cdef enum:
    NEED_MORE = -1


cdef class CompactBufferedReader:
    """Splits an unframed compact-protocol byte stream into whole messages.

    Same API and semantics as the pure-Python twin: a resumable scanner walks
    each message's encoding once (an explicit stack of open structs and
    containers kept across :meth:`feed` calls; a token split between two calls,
    at most 16 bytes, is read again).  Limits and errors are the decoder's; a
    message longer than ``max_frame_size`` raises ``SizeLimitError`` as soon as
    that is known.  Incomplete data is never an error: the reader waits for
    more.  After ``feed`` raised, the reader is broken: every later call raises
    the same class of error again.

    :param max_frame_size: largest message accepted, in bytes.
    :param strict_read: accepted for symmetry with ``BufferedReader``.
    """

    cdef readonly object max_frame_size
    cdef readonly object max_string_size
    cdef readonly object max_container_size
    cdef readonly object max_depth
    cdef readonly bint strict_read
    cdef Py_ssize_t _max_frame
    cdef Py_ssize_t _max_string
    cdef Py_ssize_t _max_container
    cdef int _max_depth
    cdef unsigned char* _buf
    cdef Py_ssize_t _len        # bytes held
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _start      # where the current message starts
    cdef Py_ssize_t _pos        # scan position
    cdef int64_t _skip          # bytes of a string/fixed-width run still to pass
    cdef Frame* _stack
    cdef Py_ssize_t _depth      # frames in use
    cdef Py_ssize_t _stack_cap
    cdef bint _in_body          # the message header has been read
    cdef object _error

    def __cinit__(self):
        self._buf = NULL
        self._stack = NULL

    def __init__(
        self,
        *,
        max_frame_size=DEFAULT_MAX_FRAME_SIZE,
        max_string_size=DEFAULT_MAX_STRING_SIZE,
        max_container_size=DEFAULT_MAX_CONTAINER_SIZE,
        max_depth=DEFAULT_MAX_DEPTH,
        strict_read=True,
    ):
        self.max_frame_size = check_limit("max_frame_size", max_frame_size, 0)
        self.max_string_size = check_limit("max_string_size", max_string_size, 0)
        self.max_container_size = check_limit("max_container_size", max_container_size, 0)
        self.max_depth = check_limit("max_depth", max_depth, 0)
        self.strict_read = bool(strict_read)
        self._max_frame = clamp_ssize(self.max_frame_size)
        self._max_string = clamp_ssize(self.max_string_size)
        self._max_container = clamp_ssize(self.max_container_size)
        self._max_depth = <int>min(self.max_depth, 0x7FFFFFF0)
        self._len = self._cap = self._start = self._pos = 0
        self._skip = 0
        self._depth = 0
        self._stack_cap = 0
        self._in_body = False
        self._error = None

    def __dealloc__(self):
        PyMem_Free(self._buf)
        PyMem_Free(self._stack)

    @property
    def buffered(self):
        """Bytes held waiting for the rest of a message."""
        return self._len - self._start

    def feed(self, data):
        """Add ``data``; return the messages it completes, in order."""
        cdef Py_buffer view
        cdef list out = []
        cdef Py_ssize_t end
        if self._error is not None:
            cls, msg = self._error
            raise cls("the reader is broken by an earlier error: %s" % msg)
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                self._append(<const char*>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
            while True:
                end = self._scan()
                if end == NEED_MORE:
                    if self._len - self._start > self._max_frame:
                        raise SizeLimitError("message exceeds max_frame_size=%d" % self._max_frame)
                    break
                if end - self._start > self._max_frame:
                    raise SizeLimitError("message exceeds max_frame_size=%d" % self._max_frame)
                out.append(PyBytes_FromStringAndSize(<char*>self._buf + self._start,
                                                     end - self._start))
                self._start = end
                if end == self._len:
                    break
        except BaseException as exc:
            self._error = (type(exc), str(exc))
            raise
        # Drop the bytes of the messages handed out, once per call.
        if self._start:
            memmove(self._buf, self._buf + self._start, self._len - self._start)
            self._len -= self._start
            self._pos -= self._start
            self._start = 0
        return out

    cdef int _append(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t cap
        cdef unsigned char* nb
        if n == 0:
            return 0
        if self._len + n > self._cap:
            # Reclaim handed-out bytes first (none are held between calls).
            cap = self._cap * 2 if self._cap else 4096
            while cap < self._len + n:
                cap *= 2
            nb = <unsigned char*>PyMem_Realloc(self._buf, cap)
            if nb == NULL:
                raise MemoryError()
            self._buf = nb
            self._cap = cap
        memcpy(self._buf + self._len, p, n)
        self._len += n
        return 0

    cdef inline int _budget(self, Py_ssize_t pos, int64_t n) except -1:
        """A declared ``n`` bytes starting at ``pos`` must fit in a message."""
        if pos - self._start + n > self._max_frame:
            raise SizeLimitError("message exceeds max_frame_size=%d" % self._max_frame)
        return 0

    cdef int _push(self, int kind, int64_t remaining, int t1, int t2) except -1:
        cdef Py_ssize_t cap
        cdef Frame* ns
        if self._depth == self._stack_cap:
            cap = self._stack_cap * 2 if self._stack_cap else 16
            ns = <Frame*>PyMem_Realloc(self._stack, cap * sizeof(Frame))
            if ns == NULL:
                raise MemoryError()
            self._stack = ns
            self._stack_cap = cap
        self._stack[self._depth].kind = kind
        self._stack[self._depth].remaining = remaining
        self._stack[self._depth].t1 = t1
        self._stack[self._depth].t2 = t2
        self._depth += 1
        return 0

    cdef int _varint(self, Py_ssize_t* pos, int max_bytes, int bits, uint64_t* out) except -1:
        """0 with the value, 1 when the input ends first; raises when invalid."""
        cdef Py_ssize_t used = 0
        cdef int status = aiothrift_c_varint(self._buf + pos[0], self._len - pos[0],
                                             max_bytes, bits, out, &used)
        if status == VI_SHORT:
            return 1
        if status != VI_OK:
            raise_varint(status, max_bytes, bits)
        pos[0] += used
        return 0

    cdef int _check_count(self, int64_t n, str what) except -1:
        if n < 0:
            raise NegativeSizeError("negative %s size %d" % (what, n))
        if n > self._max_container:
            raise SizeLimitError("%s of %d elements exceeds max_container_size=%d"
                                 % (what, n, self._max_container))
        return 0

    cdef Py_ssize_t _scan(self) except -2:
        """Scan on from ``_pos``: the end of the message, or ``NEED_MORE``."""
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t p
        cdef Frame* fr
        cdef Py_ssize_t parent
        cdef int b, ct, t
        cdef uint64_t u
        cdef int64_t run
        try:
            while True:
                if self._skip:
                    if self._len - pos < self._skip:
                        self._skip -= self._len - pos
                        pos = self._len
                        return NEED_MORE
                    pos += self._skip
                    self._skip = 0
                if not self._in_body:
                    p = self._header(pos)
                    if p == NEED_MORE:
                        return NEED_MORE
                    pos = p
                    self._in_body = True
                    if self._max_depth < 1:  # the message's struct is level 1
                        raise_depth(self._max_depth)
                    self._push(F_STRUCT, 0, 0, 0)
                    continue
                if self._depth == 0:
                    self._in_body = False
                    return pos
                fr = &self._stack[self._depth - 1]
                if fr.kind == F_STRUCT:
                    if pos >= self._len:
                        return NEED_MORE
                    b = self._buf[pos]
                    p = pos + 1
                    ct = b & 0x0F
                    if ct == CT_STOP:
                        self._depth -= 1
                        pos = p
                        continue
                    if not (b >> 4):
                        if self._varint(&p, 3, 16, &u):
                            return NEED_MORE
                    t = CT2T[ct]
                    if t == 0:
                        raise InvalidDataError("invalid field type id %d" % ct)
                    if t != T_BOOL:
                        p = self._start_value(p, t, self._depth)
                        if p == NEED_MORE:
                            return NEED_MORE
                    pos = p
                    continue
                if fr.remaining == 0:
                    self._depth -= 1
                    continue
                if fr.kind == F_LIST:
                    t = fr.t1
                    if FIXEDW[t]:
                        # a run of fixed-width elements: passed in one step
                        run = fr.remaining * FIXEDW[t]
                        self._budget(pos, run)
                        self._skip = run
                        fr.remaining = 0
                        continue
                else:
                    t = fr.t1 if fr.remaining % 2 == 0 else fr.t2
                parent = self._depth - 1
                p = self._start_value(pos, t, self._depth)
                if p == NEED_MORE:
                    return NEED_MORE
                pos = p
                # by index: _start_value may have grown (moved) the stack
                self._stack[parent].remaining -= 1
        finally:
            self._pos = pos

    cdef Py_ssize_t _header(self, Py_ssize_t pos) except -2:
        """Position after a message header up to its name length (then skipped)."""
        cdef uint64_t u
        cdef int64_t n
        cdef int b
        if pos >= self._len:
            return NEED_MORE
        b = self._buf[pos]
        if b != PROTOCOL_ID:
            raise BadVersionError("bad compact protocol id 0x%02x" % b)
        if pos + 1 >= self._len:
            return NEED_MORE
        b = self._buf[pos + 1]
        if (b & VERSION_MASK) != VERSION:
            raise BadVersionError("bad compact protocol version %d" % (b & VERSION_MASK))
        pos += 2
        if self._varint(&pos, 5, 32, &u):
            return NEED_MORE
        if self._varint(&pos, 5, 32, &u):
            return NEED_MORE
        n = <int32_t><uint32_t>u
        if n < 0:
            raise NegativeSizeError("negative message name length %d" % n)
        if n > self._max_string:
            raise SizeLimitError("message name of %d bytes exceeds max_string_size=%d"
                                 % (n, self._max_string))
        self._budget(pos, n)
        self._skip = n
        return pos

    cdef Py_ssize_t _start_value(self, Py_ssize_t pos, int t, Py_ssize_t depth) except -2:
        """Read the first token of a value of wire type ``t`` at ``pos``.

        ``depth`` is the level of the struct or container holding the value.
        ``NEED_MORE`` (nothing changed) when the token is incomplete.
        """
        cdef uint64_t u
        cdef int64_t n
        cdef int b, et, kt, vt
        if t == T_I32:
            return NEED_MORE if self._varint(&pos, 5, 32, &u) else pos
        if t == T_I64:
            return NEED_MORE if self._varint(&pos, 10, 64, &u) else pos
        if t == T_I16:
            return NEED_MORE if self._varint(&pos, 3, 16, &u) else pos
        if FIXEDW[t]:
            self._skip = FIXEDW[t]
            return pos
        if t == T_STRING:
            if self._varint(&pos, 5, 32, &u):
                return NEED_MORE
            n = <int32_t><uint32_t>u
            if n < 0:
                raise NegativeSizeError("negative string/binary length %d" % n)
            if n > self._max_string:
                raise SizeLimitError("string/binary of %d bytes exceeds max_string_size=%d"
                                     % (n, self._max_string))
            self._budget(pos, n)
            self._skip = n
            return pos
        if depth + 1 > self._max_depth:
            raise_depth(self._max_depth)
        if t == T_STRUCT:
            self._push(F_STRUCT, 0, 0, 0)
            return pos
        if t == T_LIST or t == T_SET:
            if pos >= self._len:
                return NEED_MORE
            b = self._buf[pos]
            pos += 1
            n = b >> 4
            if n == 15:
                if self._varint(&pos, 5, 32, &u):
                    return NEED_MORE
                n = <int32_t><uint32_t>u
            self._check_count(n, "list")
            et = 0
            if n:
                et = CT2T[b & 0x0F]
                if et == 0:
                    raise InvalidDataError("invalid element type id %d" % (b & 0x0F))
                self._budget(pos, n * MINW[et])
            self._push(F_LIST, n, et, 0)
            return pos
        # T_MAP
        if self._varint(&pos, 5, 32, &u):
            return NEED_MORE
        n = <int32_t><uint32_t>u
        b = 0
        if n:
            if pos >= self._len:
                return NEED_MORE
            b = self._buf[pos]
            pos += 1
        self._check_count(n, "map")
        kt = vt = 0
        if n:
            kt = CT2T[b >> 4]
            vt = CT2T[b & 0x0F]
            if kt == 0 or vt == 0:
                raise InvalidDataError("invalid map key/value type ids %d/%d" % (b >> 4, b & 0x0F))
            self._budget(pos, n * (MINW[kt] + MINW[vt]))
        self._push(F_MAP, 2 * n, kt, vt)
        return pos
