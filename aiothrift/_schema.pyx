# cython: language_level=3, embedsignature=True, wraparound=False, cdivision=True, auto_pickle=False
"""Protocol-independent machinery of the compiled codecs.

``aiothrift._binary`` and ``aiothrift._compact`` ``cimport`` it (see
``_schema.pxd``, which also holds the inline helpers): the compiled schema
built from ``_spec.struct_info``, object construction without ``__init__``,
the struct decoding skeleton, the shared errors and the codec setup checks.
The wire formats themselves stay in the codecs.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.dict cimport PyDict_Copy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t, uint64_t
from libc.string cimport memset

import copy as _copy
import sys as _sys

from aiothrift._spec import _IMMUTABLE, struct_info
from aiothrift.errors import DepthLimitError, InvalidDataError, TruncatedError

__all__ = ()


cdef extern from "Python.h":
    object PyNumber_Index(object)
    Py_ssize_t PyNumber_AsSsize_t(object, PyObject*) except? -1


cdef object _deepcopy = _copy.deepcopy
cdef object _intern = _sys.intern
cdef tuple _IMMUTABLE_TYPES = _IMMUTABLE
# exact types whose values never need a copy inside a copied default container
cdef tuple _ATOMIC = (type(None), bool, int, float, str, bytes)


# ---------------------------------------------------------------- schema

cdef class TypeDesc:
    pass


cdef class StructSpec:

    def __dealloc__(self):
        PyMem_Free(self.fields)
        PyMem_Free(self.index)
        PyMem_Free(self.order_names)
        PyMem_Free(self.order_defaults)
        PyMem_Free(self.order_idx)
        PyMem_Free(self.order_copy)

    cdef dict new_dict(self):
        """A fresh attribute dict: the defaults, mutable ones copied."""
        cdef dict d = PyDict_Copy(self.defaults)
        cdef dict memo
        if self.mutable_keys is None:
            return d
        if self.deep_defaults:
            memo = {}
            for k in self.mutable_keys:
                d[k] = _deepcopy(self.defaults[k], memo)
        else:
            for k in self.mutable_keys:
                v = self.defaults[k]
                if type(v) is list:
                    d[k] = list(<list>v)
                elif type(v) is dict:
                    d[k] = PyDict_Copy(v)
                else:
                    d[k] = set(v)
        return d


cdef bint _is_simple_container(object v):
    """A list/dict/set of atomic values: a shallow copy equals a deep copy."""
    t = type(v)
    if t is list or t is set:
        return all(type(e) in _ATOMIC for e in v)
    if t is dict:
        return all(type(k) in _ATOMIC and type(e) in _ATOMIC for k, e in (<dict>v).items())
    return False


cdef class Schema:

    def __cinit__(self):
        self.specs = {}

    cdef TypeDesc make_type(self, object tinfo):
        cdef TypeDesc td = TypeDesc.__new__(TypeDesc)
        ttype, arg = tinfo
        if ttype not in (T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64, T_STRING, T_BINARY,
                         T_LIST, T_SET, T_MAP, T_STRUCT):
            raise TypeError("unsupported Thrift type id %r" % (ttype,))
        td.ttype = ttype
        td.schema = self
        td.wire = T_STRING if ttype == T_BINARY else ttype
        if self.t2ct != NULL:
            td.ctype = self.t2ct[td.wire]
        if ttype == T_LIST or ttype == T_SET:
            td.elem = self.make_type(arg)
            td.min_width = self.minw[td.elem.wire]
        elif ttype == T_MAP:
            td.elem = self.make_type(arg[0])
            td.val = self.make_type(arg[1])
            td.min_width = self.minw[td.elem.wire] + self.minw[td.val.wire]
        elif ttype == T_STRUCT:
            td.cls = arg
        return td

    cdef int check_field(self, object finfo, str cls_name) except -1:
        """Protocol check of a field before its type is compiled."""
        return 0

    cdef int init_field(self, FieldC* f, object finfo, str cls_name) except -1:
        """Set ``f.fid`` and the protocol's precomputed header (``f.wire``/``ctype`` set)."""
        raise NotImplementedError

    cdef StructSpec build_spec(self, object cls):
        info = struct_info(cls)
        cdef StructSpec spec = StructSpec.__new__(StructSpec)
        cdef Py_ssize_t i, n = len(info.fields)
        cdef FieldC* f
        cdef int req_bit = 0
        cdef long long fid, min_fid = 0, max_fid = 0
        cdef TypeDesc td
        spec.cls = cls
        spec.cls_name = cls.__name__
        spec._keep = []
        spec.fields = <FieldC*>PyMem_Malloc(sizeof(FieldC) * (n if n else 1))
        if spec.fields == NULL:
            raise MemoryError()
        memset(spec.fields, 0, sizeof(FieldC) * (n if n else 1))
        spec.nfields = n
        spec.by_id = {}
        for i, finfo in enumerate(info.fields):
            f = &spec.fields[i]
            self.check_field(finfo, spec.cls_name)
            name = finfo.name
            if type(name) is str:
                name = _intern(name)
            td = self.make_type(finfo.type)
            spec._keep.append(name)
            spec._keep.append(td)
            f.name = <PyObject*>name
            f.td = <PyObject*>td
            f.ttype = td.ttype
            f.wire = td.wire
            f.ctype = td.ctype
            self.init_field(f, finfo, spec.cls_name)
            fid = f.fid
            f.required = finfo.required
            f.req_bit = -1
            if f.required:
                if req_bit < 64:
                    f.req_bit = req_bit
                    spec.required_mask |= (<uint64_t>1) << req_bit
                req_bit += 1
            spec.by_id[fid] = i
            if i == 0 or fid < min_fid:
                min_fid = fid
            if i == 0 or fid > max_fid:
                max_fid = fid
        spec.nrequired = req_bit
        spec.required_names = tuple(info.required)
        spec.min_fid = min_fid
        if n and max_fid - min_fid + 1 <= INDEX_MAX_SPAN:
            spec.index_len = max_fid - min_fid + 1
            spec.index = <int16_t*>PyMem_Malloc(sizeof(int16_t) * spec.index_len)
            if spec.index == NULL:
                raise MemoryError()
            for i in range(spec.index_len):
                spec.index[i] = -1
            for i in range(n):
                spec.index[spec.fields[i].fid - min_fid] = <int16_t>i
        # Defaults: same dict (and key order) as _spec.make_defaults gives.
        spec.defaults = dict(info.defaults)
        if info.mutable_defaults:
            keys = tuple(k for k, v in spec.defaults.items() if not isinstance(v, _IMMUTABLE_TYPES))
            spec.mutable_keys = keys
            values = [spec.defaults[k] for k in keys]
            # Shared objects keep their aliasing only through deepcopy's memo.
            spec.deep_defaults = (
                len({id(v) for v in values}) != len(values)
                or not all(_is_simple_container(v) for v in values)
            )
        _init_attr_mode(spec, info)
        return spec

    cdef StructSpec get_spec(self, object cls):
        cdef PyObject* p = aiothrift_dict_get(self.specs, cls)
        if p != NULL:
            return <StructSpec>p
        spec = self.build_spec(cls)
        self.specs[cls] = spec
        return spec


cdef int _init_attr_mode(StructSpec spec, object info) except -1:
    """Decide whether decoded objects can get their fields by attribute stores.

    That gives exactly the dict the twin installs (same keys, values and order:
    an instance dict keeps insertion order) when the instances have a
    ``__dict__``, every field has a default-spec entry, and no class in the
    MRO defines a data descriptor (property, slot) under a default's name.
    """
    cdef Py_ssize_t j, n
    cls = spec.cls
    if not isinstance(cls, type) or (<PyTypeObject*>cls).tp_dictoffset == 0:
        return 0
    names = list(spec.defaults)
    if any(type(k) is not str for k in names):
        return 0
    if any(f.name not in spec.defaults for f in info.fields):
        return 0
    for k in names:
        for klass in cls.__mro__:
            attr = klass.__dict__.get(k)
            if attr is not None and (hasattr(type(attr), "__set__") or hasattr(type(attr), "__delete__")):
                return 0
    n = len(names)
    spec.order_names = <PyObject**>PyMem_Malloc(sizeof(PyObject*) * (n if n else 1))
    spec.order_defaults = <PyObject**>PyMem_Malloc(sizeof(PyObject*) * (n if n else 1))
    spec.order_idx = <Py_ssize_t*>PyMem_Malloc(sizeof(Py_ssize_t) * (n if n else 1))
    spec.order_copy = <unsigned char*>PyMem_Malloc(n if n else 1)
    if (spec.order_names == NULL or spec.order_defaults == NULL or spec.order_idx == NULL
            or spec.order_copy == NULL):
        raise MemoryError()
    field_index = {f.name: i for i, f in enumerate(info.fields)}
    mutable = set(spec.mutable_keys or ())
    for j in range(n):
        name = _intern(names[j])
        dflt = spec.defaults[names[j]]
        spec._keep.append(name)
        spec._keep.append(dflt)
        spec.order_names[j] = <PyObject*>name
        spec.order_defaults[j] = <PyObject*>dflt
        spec.order_idx[j] = field_index.get(name, -1)
        if names[j] not in mutable:
            spec.order_copy[j] = COPY_NONE
        elif spec.deep_defaults:
            spec.order_copy[j] = COPY_DEEP
        elif type(dflt) is list:
            spec.order_copy[j] = COPY_LIST
        elif type(dflt) is dict:
            spec.order_copy[j] = COPY_DICT
        else:
            spec.order_copy[j] = COPY_SET
    spec.norder = n
    spec.attr_mode = True
    return 0


# ---------------------------------------------------------------- objects

cdef object deepcopy(object v, dict memo):
    return _deepcopy(v, memo)


# ---------------------------------------------------------------- errors

cdef int raise_depth(int max_depth) except -1:
    raise DepthLimitError("Thrift data nests deeper than max_depth=%d" % max_depth)


cdef int raise_truncated(Py_ssize_t want, Py_ssize_t left) except -1:
    raise TruncatedError("input ends inside a value: %d bytes needed, %d left"
                         % (want, left if left > 0 else 0))


cdef int raise_missing(StructSpec spec, object name) except -1:
    raise InvalidDataError("required field %r of %s is missing" % (name, spec.cls_name))


cdef int raise_current() except -1:
    # An exception is already set: make Cython propagate it.
    raise


# ---------------------------------------------------------------- codec setup

cdef object check_limit(str name, object value, int minimum):
    value = PyNumber_Index(value)
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


cdef Py_ssize_t clamp_ssize(object value) except? -1:
    return PyNumber_AsSsize_t(value, NULL)


cdef object contiguous(object data):
    """``data`` itself when it exports a contiguous buffer, else a ``bytes`` copy."""
    if type(data) is bytearray:
        return data
    mv = memoryview(data)
    if mv.c_contiguous:
        return data
    return mv.tobytes()
