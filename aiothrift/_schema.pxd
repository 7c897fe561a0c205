# cython: language_level=3
"""C-level interface of :mod:`aiothrift._schema`: what the compiled codecs share.

``aiothrift._binary`` and ``aiothrift._compact`` ``cimport`` this file.  It
holds everything that does not depend on the wire format:

* the compiled schema (:class:`TypeDesc`, :class:`StructSpec`, ``FieldC``,
  built from ``_spec.struct_info`` by a per-protocol :class:`Schema`);
* object construction without ``__init__`` (attribute mode and dict mode);
* the shared C helpers (instance dicts, text/name/key decoding with the
  short-key cache, integer/double coercion, unhashable-key errors);
* the error helpers, the limit checks and the buffer helpers.

Hot helpers are defined here (``cdef inline`` or static C in the verbatim
block), so that they are compiled into each codec and inlined there: a
cross-module ``cdef`` function that is not inline is called through a
function-pointer table.  Only per-struct or per-call work goes through
``_schema``'s own functions.
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from cpython.dict cimport PyDict_Copy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t, uint64_t
from libc.string cimport memset


cdef extern from "Python.h":
    int Py_EnterRecursiveCall(const char*) except? 1
    void Py_LeaveRecursiveCall()


cdef extern from *:
    """
    #ifndef AIOTHRIFT_SCHEMA_HELPERS
    #define AIOTHRIFT_SCHEMA_HELPERS
    /* Included (static) in every module that cimports aiothrift._schema. */

    /* Instance creation without __init__: what ``cls.__new__(cls)`` followed by
       ``obj.__dict__ = d`` does, minus the work thrown away.  For classes that
       inherit object's tp_new, tp_alloc alone (object_new would also build the
       inline attribute values that the dict assignment discards at once). */
    static inline PyObject* aiothrift_new_instance(PyObject* cls, PyObject* empty, PyObject* d) {
        PyTypeObject* tp = (PyTypeObject*)cls;
        PyObject* o;
        if (tp->tp_new == PyBaseObject_Type.tp_new && tp->tp_alloc != NULL
                && !(tp->tp_flags & Py_TPFLAGS_IS_ABSTRACT)) {
            o = tp->tp_alloc(tp, 0);
        } else if (tp->tp_new != NULL) {
            o = tp->tp_new(tp, empty, NULL);
        } else {
            PyErr_Format(PyExc_TypeError, "cannot create '%.200s' instances", tp->tp_name);
            return NULL;
        }
        if (o == NULL) return NULL;
        PyObject** dp = _PyObject_GetDictPtr(o);
        if (dp == NULL) {
            if (PyObject_SetAttrString(o, "__dict__", d) < 0) { Py_DECREF(o); return NULL; }
            return o;
        }
        Py_INCREF(d);
        Py_XSETREF(*dp, d);
        return o;
    }

    static inline PyObject* aiothrift_tp_new(PyObject* cls, PyObject* empty) {
        PyTypeObject* tp = (PyTypeObject*)cls;
        if (tp->tp_new == NULL) {
            PyErr_Format(PyExc_TypeError, "cannot create '%.200s' instances", tp->tp_name);
            return NULL;
        }
        return tp->tp_new(tp, empty, NULL);
    }

    /* The instance ``__dict__`` (new reference) as ``getattr(obj, "__dict__", None)``
       would give it: ``empty`` when the object supports a dict but has none yet,
       None when it has no dict at all. */
    static inline PyObject* aiothrift_instance_dict(PyObject* obj, PyObject* empty) {
        PyObject** dp = _PyObject_GetDictPtr(obj);
        PyObject* d;
        if (dp == NULL) {
            if (PyErr_Occurred()) return NULL;
            d = Py_None;
        } else if (*dp == NULL) {
            d = empty;
        } else {
            d = *dp;
        }
        Py_INCREF(d);
        return d;
    }

    /* Borrowed ``d.get(key)``; NULL without an exception when absent. */
    static inline PyObject* aiothrift_dict_get(PyObject* d, PyObject* key) {
        return PyDict_GetItemWithError(d, key);
    }

    /* A field value to encode (new reference): ``d.get(name)`` when the object
       has a dict ``d``, else ``getattr(obj, name, None)``. */
    static inline PyObject* aiothrift_field_value(PyObject* d, PyObject* obj, PyObject* name) {
        PyObject* v;
        if (d != Py_None) {
            v = PyDict_GetItemWithError(d, name);
            if (v == NULL) {
                if (PyErr_Occurred()) return NULL;
                Py_RETURN_NONE;
            }
            Py_INCREF(v);
            return v;
        }
        v = PyObject_GetAttr(obj, name);
        if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return v;
    }

    static inline PyObject* aiothrift_decode_text(const char* p, Py_ssize_t n) {
        PyObject* o = PyUnicode_DecodeUTF8(p, n, NULL);
        if (o == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            /* thriftpy2 semantics: not UTF-8 -> hand back the bytes */
            PyErr_Clear();
            o = PyBytes_FromStringAndSize(p, n);
        }
        return o;
    }

    /* Map keys repeat across the entries of a message and across messages:
       short ASCII keys come from a small cache of str objects (as msgspec
       does), which also keeps their hash computed.  Each codec module has its
       own table (this code is compiled into each). */
    #define AIOTHRIFT_KEY_CACHE_SIZE 512
    #define AIOTHRIFT_KEY_CACHE_MAXLEN 16
    static PyObject* aiothrift_key_cache[AIOTHRIFT_KEY_CACHE_SIZE];

    static inline PyObject* aiothrift_decode_key(const char* p, Py_ssize_t n) {
        uint32_t h = 2166136261u;
        Py_ssize_t i;
        PyObject** slot;
        PyObject* s;
        if (n > AIOTHRIFT_KEY_CACHE_MAXLEN) return aiothrift_decode_text(p, n);
        for (i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 16777619u; }
        slot = &aiothrift_key_cache[(h ^ (h >> 16)) & (AIOTHRIFT_KEY_CACHE_SIZE - 1)];
        s = *slot;
        /* cached entries are exact compact ASCII str: bytes compare exactly */
        if (s != NULL && PyUnicode_GET_LENGTH(s) == n
                && memcmp(PyUnicode_1BYTE_DATA(s), p, (size_t)n) == 0) {
            Py_INCREF(s);
            return s;
        }
        s = aiothrift_decode_text(p, n);
        if (s != NULL && PyUnicode_CheckExact(s) && PyUnicode_IS_COMPACT_ASCII(s)) {
            Py_INCREF(s);
            Py_XSETREF(*slot, s);
        }
        return s;
    }

    static inline PyObject* aiothrift_decode_name(const char* p, Py_ssize_t n, PyObject* invalid) {
        PyObject* o = PyUnicode_DecodeUTF8(p, n, NULL);
        if (o == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            PyErr_SetString(invalid, "message name is not valid UTF-8");
        }
        return o;
    }

    static inline int aiothrift_map_set(PyObject* d, PyObject* k, PyObject* v, PyObject* invalid) {
        if (PyDict_SetItem(d, k, v) == 0) return 0;
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(invalid, "unhashable map key");
        }
        return -1;
    }

    static inline PyObject* aiothrift_list_to_set(PyObject* lst, PyObject* invalid) {
        PyObject* s = PySet_New(lst);
        if (s == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(invalid, "unhashable set element");
        }
        return s;
    }

    /* byte/i16/i32/i64 (enums too): operator.index rules, range checked. */
    static inline int aiothrift_as_int(PyObject* v, long long lo, long long hi,
                                       const char* name, long long* out) {
        long long x;
        int overflow = 0;
        if (PyLong_Check(v)) {
            x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (x == -1 && PyErr_Occurred()) return -1;
        } else {
            PyObject* i;
            if (!PyIndex_Check(v)) {
                PyErr_Format(PyExc_TypeError, "%s expected an integer, got %.200s",
                             name, Py_TYPE(v)->tp_name);
                return -1;
            }
            i = PyNumber_Index(v);
            if (i == NULL) return -1;
            x = PyLong_AsLongLongAndOverflow(i, &overflow);
            if (x == -1 && PyErr_Occurred()) { Py_DECREF(i); return -1; }
            if (overflow || x < lo || x > hi) {
                PyErr_Format(PyExc_OverflowError, "%s out of range: %S not in [%lld, %lld]",
                             name, i, lo, hi);
                Py_DECREF(i);
                return -1;
            }
            Py_DECREF(i);
            *out = x;
            return 0;
        }
        if (overflow || x < lo || x > hi) {
            PyErr_Format(PyExc_OverflowError, "%s out of range: %S not in [%lld, %lld]",
                         name, v, lo, hi);
            return -1;
        }
        *out = x;
        return 0;
    }

    /* double: what struct.pack("!d"/"<d", v) accepts; errors as the twins map them. */
    static inline int aiothrift_as_double(PyObject* v, double* out) {
        double x;
        if (PyFloat_CheckExact(v)) { *out = PyFloat_AS_DOUBLE(v); return 0; }
        x = PyFloat_AsDouble(v);
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            if (PyLong_Check(v))
                PyErr_SetString(PyExc_OverflowError, "int too large to convert to a double");
            else
                PyErr_Format(PyExc_TypeError,
                             "double expected a float or an integer, got %.200s",
                             Py_TYPE(v)->tp_name);
            return -1;
        }
        *out = x;
        return 0;
    }
    #endif /* AIOTHRIFT_SCHEMA_HELPERS */
    """
    object aiothrift_new_instance(object cls, object empty, object d)
    object aiothrift_tp_new(object cls, object empty)
    object aiothrift_instance_dict(object obj, object empty)
    PyObject* aiothrift_dict_get(object d, object key)
    object aiothrift_field_value(object d, object obj, object name)
    object aiothrift_decode_text(const char* p, Py_ssize_t n)
    object aiothrift_decode_key(const char* p, Py_ssize_t n)
    object aiothrift_decode_name(const char* p, Py_ssize_t n, object invalid)
    int aiothrift_map_set(object d, object k, object v, object invalid) except -1
    object aiothrift_list_to_set(object lst, object invalid)
    int aiothrift_as_int(object v, long long lo, long long hi, const char* name,
                         long long* out) except -1
    int aiothrift_as_double(object v, double* out) except -1
    int PyObject_GenericSetAttr(object o, object name, object value) except -1


# Thrift type ids (thriftpy2's; BINARY is written as STRING on the wire).
cdef enum:
    T_STOP = 0
    T_BOOL = 2
    T_BYTE = 3
    T_DOUBLE = 4
    T_I16 = 6
    T_I32 = 8
    T_I64 = 10
    T_STRING = 11
    T_STRUCT = 12
    T_MAP = 13
    T_SET = 14
    T_LIST = 15
    T_BINARY = 18

# Past this nesting level each struct/container level also takes a slot of
# the interpreter's recursion budget: max_depth bounds the nesting, this makes
# an absurd max_depth a RecursionError instead of a C stack overflow.
cdef enum:
    GUARD_DEPTH = 100

cdef enum:
    INDEX_MAX_SPAN = 256   # fid ranges up to this use a direct-index table
    INLINE_FIELDS = 24     # structs up to this many fields decode with no heap array

# How build_object gets a fresh copy of a mutable default.
cdef enum:
    COPY_NONE = 0
    COPY_LIST = 1
    COPY_DICT = 2
    COPY_SET = 3
    COPY_DEEP = 4


# ---------------------------------------------------------------- schema

cdef class Schema
cdef class StructSpec


cdef class TypeDesc:
    """One Thrift type, compiled from a ``_spec`` TypeInfo by a :class:`Schema`."""
    cdef int ttype             # thriftpy2 type id (T_BINARY included)
    cdef int wire              # type id on the wire (T_BINARY -> T_STRING)
    cdef int ctype             # compact type written for it (0 for the binary codec)
    cdef Py_ssize_t min_width  # containers: fewest bytes per element (key + value for maps)
    cdef TypeDesc elem         # list/set element, map key
    cdef TypeDesc val          # map value
    cdef object cls            # struct class
    cdef StructSpec spec       # struct spec, resolved on first use (recursive types)
    cdef Schema schema         # the schema that resolves it


ctypedef struct FieldC:
    PyObject* name      # interned str, owned by StructSpec._keep
    PyObject* td        # TypeDesc, owned by StructSpec._keep
    int ttype
    int fid
    int wire
    int ctype           # compact: type nibble written (a bool field's is its value)
    char hdr[4]         # field header bytes precomputed by the protocol's Schema
    int hdr_len         #   (binary: type + big-endian id; compact: zigzag varint id)
    bint required
    int req_bit         # bit in the "required seen" mask, -1 if not required or past 64


cdef class StructSpec:
    """A struct class compiled for a codec (built once per class and protocol)."""
    cdef object cls
    cdef str cls_name
    cdef Py_ssize_t nfields
    cdef FieldC* fields
    cdef list _keep
    cdef long long min_fid
    cdef Py_ssize_t index_len
    cdef int16_t* index      # fid - min_fid -> field index, -1 when absent
    cdef dict by_id          # fid -> field index, when the id range is too wide
    cdef dict defaults
    cdef tuple mutable_keys  # keys whose default must be copied per decode (None: none)
    cdef bint deep_defaults  # copy them with copy.deepcopy (else a shallow copy suffices)
    cdef tuple required_names
    cdef int nrequired
    cdef uint64_t required_mask
    # attribute mode: decoded objects get their attributes set one by one in
    # defaults order (same __dict__ as the twin's, built cheaper)
    cdef bint attr_mode
    cdef Py_ssize_t norder
    cdef PyObject** order_names      # borrowed from _keep
    cdef PyObject** order_defaults   # borrowed from _keep
    cdef Py_ssize_t* order_idx       # field index, -1 for a default-only name
    cdef unsigned char* order_copy   # COPY_* per default

    cdef dict new_dict(self)


cdef class Schema:
    """Compiles struct classes for one protocol and caches the result.

    A protocol subclasses it to fill its per-field header (``init_field``) and
    sets ``minw`` (fewest bytes per wire type) and ``t2ct`` (compact types).
    """
    cdef dict specs
    cdef const int* minw     # wire type id -> fewest bytes of a value (256 entries)
    cdef const int* t2ct     # wire type id -> compact type (32 entries), or NULL

    cdef TypeDesc make_type(self, object tinfo)
    cdef int check_field(self, object finfo, str cls_name) except -1
    cdef int init_field(self, FieldC* f, object finfo, str cls_name) except -1
    cdef StructSpec build_spec(self, object cls)
    cdef StructSpec get_spec(self, object cls)


cdef inline StructSpec td_spec(TypeDesc td):
    if td.spec is None:
        td.spec = td.schema.get_spec(td.cls)
    return td.spec


cdef inline Py_ssize_t spec_lookup(StructSpec spec, long long fid) except -2:
    """Index of field ``fid`` in ``spec.fields``, -1 when the spec has none."""
    cdef long long k
    if spec.index != NULL:
        k = fid - spec.min_fid
        if 0 <= k < spec.index_len:
            return spec.index[k]
        return -1
    if spec.nfields == 0:
        return -1
    v = spec.by_id.get(fid)
    if v is None:
        return -1
    return <Py_ssize_t>v


# ---------------------------------------------------------------- objects

cdef object deepcopy(object v, dict memo)   # copy.deepcopy


cdef inline object build_object(StructSpec spec, PyObject** vals):
    """A new instance (no ``__init__``) with every default-spec attribute set."""
    cdef Py_ssize_t j, idx
    cdef PyObject* v
    cdef dict memo = None
    obj = aiothrift_tp_new(spec.cls, ())
    for j in range(spec.norder):
        idx = spec.order_idx[j]
        v = vals[idx] if idx >= 0 else NULL
        if v != NULL:
            PyObject_GenericSetAttr(obj, <object>spec.order_names[j], <object>v)
            continue
        dflt = <object>spec.order_defaults[j]
        kind = spec.order_copy[j]
        if kind == COPY_NONE:
            pass
        elif kind == COPY_LIST:
            dflt = list(<list>dflt)
        elif kind == COPY_DICT:
            dflt = PyDict_Copy(dflt)
        elif kind == COPY_SET:
            dflt = set(dflt)
        else:
            if memo is None:
                memo = {}
            dflt = deepcopy(dflt, memo)
        PyObject_GenericSetAttr(obj, <object>spec.order_names[j], dflt)
    return obj


# ---------------------------------------------------------------- decoding

ctypedef struct Reader:
    const unsigned char* buf
    Py_ssize_t pos
    Py_ssize_t end
    Py_ssize_t max_string
    Py_ssize_t max_container
    int max_depth
    bint decode_response


# A protocol's field loop: fields up to STOP into ``vals`` (by field index)
# or else ``d`` (by name).
ctypedef int (*read_fields_fn)(Reader* r, StructSpec spec, int depth, PyObject** vals,
                               dict d) except -1


cdef inline int need(Reader* r, Py_ssize_t n) except -1:
    if r.end - r.pos < n:
        raise_truncated(n, r.end - r.pos)
    return 0


cdef inline object decode_struct(Reader* r, StructSpec spec, int depth, object target,
                                 read_fields_fn read_fields):
    """A struct (depth checked) whose fields ``read_fields`` reads off the wire.

    Inline: each codec compiles its own copy, with a direct call to its
    ``read_fields`` (the pointer is a constant there)."""
    depth += 1
    if depth > r.max_depth:
        raise_depth(r.max_depth)
    if depth <= GUARD_DEPTH:
        return decode_struct_body(r, spec, depth, target, read_fields)
    Py_EnterRecursiveCall(" while decoding Thrift data")
    try:
        return decode_struct_body(r, spec, depth, target, read_fields)
    finally:
        Py_LeaveRecursiveCall()


cdef inline object decode_struct_body(Reader* r, StructSpec spec, int depth, object target,
                                      read_fields_fn read_fields):
    cdef PyObject* inline_vals[INLINE_FIELDS]
    cdef PyObject** vals
    cdef Py_ssize_t i, n = spec.nfields
    cdef dict d
    if target is not None or not spec.attr_mode:
        # The twin's way: a dict of the defaults updated with the decoded fields,
        # installed as __dict__ (or setattr'd on the target, in decode order).
        d = spec.new_dict() if target is None else {}
        read_fields(r, spec, depth, NULL, d)
        if target is None:
            return aiothrift_new_instance(spec.cls, (), d)
        for k, v in d.items():
            setattr(target, k, v)
        return target
    # Fast way, same result: decoded values go to a per-field array, then the
    # object gets its attributes in defaults order (instance attribute values,
    # no dict built and thrown away).
    if n <= INLINE_FIELDS:
        vals = inline_vals
    else:
        vals = <PyObject**>PyMem_Malloc(n * sizeof(PyObject*))
        if vals == NULL:
            raise MemoryError()
    memset(vals, 0, n * sizeof(PyObject*))
    try:
        read_fields(r, spec, depth, vals, None)
        return build_object(spec, vals)
    finally:
        for i in range(n):
            Py_XDECREF(vals[i])
        if vals != inline_vals:
            PyMem_Free(vals)


# ---------------------------------------------------------------- errors

cdef int raise_depth(int max_depth) except -1
cdef int raise_truncated(Py_ssize_t want, Py_ssize_t left) except -1
cdef int raise_missing(StructSpec spec, object name) except -1
cdef int raise_current() except -1


# ---------------------------------------------------------------- codec setup

cdef object check_limit(str name, object value, int minimum)
cdef Py_ssize_t clamp_ssize(object value) except? -1
cdef object contiguous(object data)
