"""What the benchmarks share: the IDL, the workloads and the codec candidates.

Imported by ``bench/conftest.py`` (pytest puts ``bench/`` on ``sys.path``),
by ``bench/copies.py`` and by ``bench/rpc_bench.py`` (run as scripts from
``bench/``).  Nothing here is timed.

Apache Thrift's Python code for ``bench.thrift`` is generated when a benchmark
runs (``thrift --gen py`` into a temporary directory, never committed), under
the package name ``bench_apache_gen`` so that it cannot collide with anything.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import thriftpy2
from thriftpy2.thrift import TType

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
IDL = REPO / "tests" / "idl" / "bench.thrift"
APACHE_PACKAGE = "bench_apache_gen"

MIB = 1 << 20

# --------------------------------------------------------------------------
# aiothrift implementations (the same loader as tests/conftest.py)


def load_impl(name: str) -> types.SimpleNamespace:
    """The codec/framing modules of one aiothrift implementation.

    ``"compiled"`` imports the Cython extensions: a missing one is an
    ImportError, never a silent fall back to Python.
    """
    if name == "compiled":
        binary = importlib.import_module("aiothrift._binary")
        framing = importlib.import_module("aiothrift._framing")
    elif name == "python":
        binary = importlib.import_module("aiothrift._binary_py")
        framing = importlib.import_module("aiothrift._framing_py")
    else:
        raise ValueError(name)
    return types.SimpleNamespace(name=name, binary=binary, framing=framing)


# --------------------------------------------------------------------------
# IDL: thriftpy2 module and Apache generated package

_TP2: Optional[types.ModuleType] = None


def tp2_module() -> types.ModuleType:
    global _TP2
    if _TP2 is None:
        _TP2 = thriftpy2.load(str(IDL), module_name="bench_thrift")
    return _TP2


def generate_apache(out_dir: Path) -> types.ModuleType:
    """Generate Apache gen-py for bench.thrift into ``out_dir`` and import it.

    The IDL is copied with its ``namespace py`` renamed to
    ``bench_apache_gen`` (``bench`` would be shadowed by this directory).
    """
    out_dir = Path(out_dir)
    pkg_dir = out_dir / APACHE_PACKAGE
    if not (pkg_dir / "ttypes.py").exists():
        compiler = shutil.which("thrift")
        if compiler is None:
            raise RuntimeError("the Apache Thrift compiler `thrift` is not on PATH "
                               "(apt-get install thrift-compiler)")
        out_dir.mkdir(parents=True, exist_ok=True)
        idl_copy = out_dir / "bench_apache.thrift"
        text = IDL.read_text()
        assert "namespace py bench\n" in text, "bench.thrift namespace changed"
        idl_copy.write_text(text.replace("namespace py bench\n",
                                         "namespace py %s\n" % APACHE_PACKAGE))
        proc = subprocess.run([compiler, "--gen", "py", "-out", str(out_dir), str(idl_copy)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("thrift --gen py failed:\n" + proc.stdout + proc.stderr)
    for mod in [m for m in sys.modules if m == APACHE_PACKAGE or m.startswith(APACHE_PACKAGE + ".")]:
        del sys.modules[mod]
    spec = importlib.util.spec_from_file_location(
        APACHE_PACKAGE, pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[APACHE_PACKAGE] = pkg
    spec.loader.exec_module(pkg)
    pkg.ttypes = importlib.import_module(APACHE_PACKAGE + ".ttypes")
    pkg.Bench = importlib.import_module(APACHE_PACKAGE + ".Bench")
    return pkg


def apache_class(apache: types.ModuleType, tp2_cls: type) -> type:
    """The Apache class of a thriftpy2 struct or Bench args/result class."""
    name = tp2_cls.__name__
    if hasattr(apache.ttypes, name):
        return getattr(apache.ttypes, name)
    return getattr(apache.Bench, name)


def to_apache(apache: types.ModuleType, obj: Any) -> Any:
    """The Apache object equal to a thriftpy2 object (by field name)."""
    cls = type(obj)
    out = apache_class(apache, cls)()
    for fspec in cls.thrift_spec.values():
        ttype, name = fspec[0], fspec[1]
        sub = fspec[2] if len(fspec) == 4 else None
        setattr(out, name, _to_apache_value(apache, getattr(obj, name, None), ttype, sub))
    return out


def _split(sub: Any) -> Tuple[int, Any]:
    return (sub[0], sub[1]) if isinstance(sub, tuple) else (sub, None)


def _to_apache_value(apache: types.ModuleType, value: Any, ttype: int, sub: Any) -> Any:
    if value is None:
        return None
    if ttype == TType.STRUCT:
        return to_apache(apache, value)
    if ttype in (TType.LIST, TType.SET):
        et, es = _split(sub)
        items = [_to_apache_value(apache, v, et, es) for v in value]
        return set(items) if ttype == TType.SET else items
    if ttype == TType.MAP:
        (kt, ks), (vt, vs) = _split(sub[0]), _split(sub[1])
        return {_to_apache_value(apache, k, kt, ks): _to_apache_value(apache, v, vt, vs)
                for k, v in value.items()}
    return value


# --------------------------------------------------------------------------
# Workloads

WORKLOADS = ("small", "medium", "large", "blob")


def make_item(tp2: types.ModuleType, i: int, blob: Optional[bytes] = None) -> Any:
    """An Item with 5 tags and 5 counts."""
    return tp2.Item(
        id=1_000_000 + i,
        name="item-%04d" % i,
        price=i * 1.25 + 0.99,
        tags=["tag-%d-%d" % (i % 7, j) for j in range(5)],
        counts={"count-%d" % j: i * 10 + j for j in range(5)},
        blob=blob,
        active=(i % 2 == 0),
    )


def make_order(tp2: types.ModuleType, n_items: int) -> Any:
    return tp2.Order(
        order_id=987_654_321,
        customer="customer-000042",
        items=[make_item(tp2, i) for i in range(n_items)],
        meta={"source": "bench", "region": "eu-west-1", "priority": "high"},
        status=3,
    )


def blob_bytes(size: int = MIB) -> bytes:
    return bytes(range(256)) * (size // 256)


def make_workload(name: str, tp2: Optional[types.ModuleType] = None) -> Any:
    """The thriftpy2 object of a codec workload."""
    tp2 = tp2 or tp2_module()
    if name == "small":
        return tp2.Bench.add_args(a=123_456_789, b=987_654_321)
    if name == "medium":
        return make_order(tp2, 10)
    if name == "large":
        return make_order(tp2, 1000)
    if name == "blob":
        return make_item(tp2, 7, blob=blob_bytes())
    raise ValueError(name)


# --------------------------------------------------------------------------
# Codec candidates

#: name -> what it is (for the README tables)
CANDIDATES: Dict[str, str] = {
    "aiothrift-compiled": "aiothrift Cython codec, BinaryCodec.encode_struct / decode_struct",
    "aiothrift-python": "aiothrift pure-Python twin, same API",
    "thriftpy2-cybin": "thriftpy2 0.7.1 serialize/deserialize with TCyBinaryProtocolFactory",
    "thriftpy2-pure": "thriftpy2 0.7.1 serialize/deserialize with the pure TBinaryProtocolFactory",
    "apache-accel": "Apache thrift 0.25.0 TSerialization with TBinaryProtocolAcceleratedFactory(fallback=False)",
}


class Codec:
    """One candidate for one workload: ``encode(*encode_args)`` and
    ``decode(*decode_args)`` are what the benchmark calls.

    The arguments are chosen so that the timed call is the cheapest fair one
    for that library: a bound method with its arguments where the API allows
    it, a closure only where the API needs a fresh target object per call.
    """

    def __init__(self, name: str, encode: Callable[..., bytes], encode_args: tuple,
                 decode: Callable[..., Any], decode_args: tuple,
                 to_tp2_bytes: Callable[[Any], bytes]) -> None:
        self.name = name
        self.encode = encode
        self.encode_args = encode_args
        self.decode = decode
        self.decode_args = decode_args
        #: re-encodes a decoded object (for the identity check)
        self.reencode = to_tp2_bytes


def make_codec(name: str, obj: Any, data: bytes, apache: Optional[types.ModuleType] = None) -> Codec:
    """Candidate ``name`` set up to encode ``obj`` and decode ``data``."""
    cls = type(obj)
    if name in ("aiothrift-compiled", "aiothrift-python"):
        # only the codec module: the benchmark does not need framing
        binary = importlib.import_module(
            "aiothrift._binary" if name == "aiothrift-compiled" else "aiothrift._binary_py")
        if name == "aiothrift-compiled":
            assert binary.__file__.endswith((".so", ".pyd")), (
                "aiothrift._binary is not the compiled extension: %s" % binary.__file__)
        codec = binary.BinaryCodec()
        return Codec(name, codec.encode_struct, (obj,), codec.decode_struct, (cls, data),
                     codec.encode_struct)
    if name in ("thriftpy2-cybin", "thriftpy2-pure"):
        from thriftpy2.utils import deserialize, serialize
        if name == "thriftpy2-cybin":
            from thriftpy2.protocol.cybin import TCyBinaryProtocolFactory
            factory = TCyBinaryProtocolFactory()
        else:
            from thriftpy2.protocol.binary import TBinaryProtocolFactory
            factory = TBinaryProtocolFactory()

        def decode(data: bytes) -> Any:
            return deserialize(cls(), data, factory)

        return Codec(name, serialize, (obj, factory), decode, (data,),
                     lambda o: serialize(o, factory))
    if name == "apache-accel":
        assert apache is not None, "apache-accel needs the generated package"
        from thrift import TSerialization
        from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
        factory = TBinaryProtocolAcceleratedFactory(fallback=False)
        check_fastbinary(factory)
        aobj = to_apache(apache, obj)
        acls = type(aobj)
        a_serialize = TSerialization.serialize
        a_deserialize = TSerialization.deserialize

        def decode(data: bytes) -> Any:
            return a_deserialize(acls(), data, factory)

        return Codec(name, a_serialize, (aobj, factory), decode, (data,),
                     lambda o: a_serialize(o, factory))
    raise ValueError("unknown candidate %r" % name)


def check_fastbinary(factory: Any) -> None:
    """Assert Apache's accelerated protocol really is the C++ ``fastbinary``.

    ``TBinaryProtocolAccelerated`` silently falls back to pure Python when the
    extension is missing; ``fallback=False`` turns that into an ImportError,
    and this checks the protocol's hooks are the extension's functions.
    """
    from thrift.protocol import fastbinary
    from thrift.transport.TTransport import TMemoryBuffer

    assert type(fastbinary).__name__ == "module" and fastbinary.__file__.endswith(
        (".so", ".pyd")), "thrift.protocol.fastbinary is not the C++ extension: %r" % fastbinary
    proto = factory.getProtocol(TMemoryBuffer())
    assert proto._fast_encode is fastbinary.encode_binary, "fastbinary encode not in use"
    assert proto._fast_decode is fastbinary.decode_binary, "fastbinary decode not in use"


def count_fastbinary_calls(fn: Callable[[], Any]) -> Dict[str, int]:
    """Run ``fn`` with the fastbinary entry points wrapped, return the call
    counts: proves the generated code took the accelerated path."""
    from thrift.protocol import fastbinary

    calls = {"encode": 0, "decode": 0}
    real_enc, real_dec = fastbinary.encode_binary, fastbinary.decode_binary

    def enc(*a):
        calls["encode"] += 1
        return real_enc(*a)

    def dec(*a):
        calls["decode"] += 1
        return real_dec(*a)

    fastbinary.encode_binary, fastbinary.decode_binary = enc, dec
    try:
        fn()
    finally:
        fastbinary.encode_binary, fastbinary.decode_binary = real_enc, real_dec
    return calls


def reference_bytes(obj: Any) -> bytes:
    """The wire bytes of ``obj`` as thriftpy2's pure binary protocol writes them."""
    from thriftpy2.protocol.binary import TBinaryProtocolFactory
    from thriftpy2.utils import serialize
    return serialize(obj, TBinaryProtocolFactory())


def check_codec(codec: Codec, obj: Any, ref: bytes) -> List[str]:
    """Problems of ``codec`` against the reference bytes (empty: all good).

    Encode must give the reference bytes; decoding them and encoding again
    (with the same library) must give them back.
    """
    problems = []
    out = bytes(codec.encode(*codec.encode_args))
    if out != ref:
        first = next((i for i, (a, b) in enumerate(zip(out, ref)) if a != b), min(len(out), len(ref)))
        problems.append("%s encode: %d bytes differ from the reference %d bytes (first at %d)"
                        % (codec.name, len(out), len(ref), first))
    back = codec.decode(*codec.decode_args)
    again = bytes(codec.reencode(back))
    if again != ref:
        problems.append("%s decode+encode does not give the reference bytes back" % codec.name)
    return problems
