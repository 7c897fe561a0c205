"""Schema compilation (aiothrift._spec), shared by both codecs."""

from __future__ import annotations

import thriftpy2

from conftest import IDL_DIR

from aiothrift._spec import T_BINARY, T_LIST, T_STRUCT, struct_info


def _alltypes():
    return thriftpy2.load(str(IDL_DIR / "alltypes.thrift"), module_name="alltypes_spec_thrift")


def test_compiled_once_per_class(bench_thrift):
    assert struct_info(bench_thrift.Order) is struct_info(bench_thrift.Order)


def test_field_order_and_types(bench_thrift):
    info = struct_info(bench_thrift.Order)
    assert [f.name for f in info.fields] == ["order_id", "customer", "items", "meta", "status"]
    assert info.by_id[3].type == (T_LIST, (T_STRUCT, bench_thrift.Item))
    assert struct_info(bench_thrift.Item).by_id[6].type == (T_BINARY, None)


def test_binary_default_is_bytes_in_both_codecs(impl):
    m = _alltypes()
    obj = m.WithDefaults(id=1, label="x", req_struct=m.Point(), def_binary=None)
    codec = impl.binary.BinaryCodec()
    back = codec.decode_struct(m.WithDefaults, codec.encode_struct(obj))
    assert back.def_binary == b"raw"


def test_mutable_defaults_are_not_shared(impl):
    m = _alltypes()
    info = struct_info(m.WithDefaults)
    codec = impl.binary.BinaryCodec()
    data = codec.encode_struct(m.WithDefaults(id=1, label="x", req_struct=m.Point()))
    a = codec.decode_struct(m.WithDefaults, data)
    b = codec.decode_struct(m.WithDefaults, data)
    for name, default in info.defaults.items():
        if isinstance(default, (list, dict, set)) and getattr(a, name) is not None:
            assert getattr(a, name) is not getattr(b, name)
