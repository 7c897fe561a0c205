"""Fuzzing the binary codec and the framing readers, differential across implementations.

One fuzz target, :func:`check`, takes any byte string and runs it through
every implementation available (compiled and pure Python):

* ``decode_message_begin`` and, when the header is good, ``decode_struct``
  of the body as each class of ``tests/idl/codec_rich.thrift`` (and
  ``TApplicationException``); ``decode_struct`` of the whole input too; all
  under three option sets (defaults; lenient and bytes; tight limits);
* every decoded object is encoded and decoded again: the same object;
* ``FramedReader`` and ``BufferedReader`` (two option sets each) fed the
  input whole, one byte at a time and in uneven chunks;
* the buffered reader agrees with the codec on where the first message ends
  and on what is wrong with it.

The implementations must agree exactly: equal objects (same classes, field
order and values, NaN-aware) or the same exception class; equal reader
output.  The only exceptions allowed are :class:`~aiothrift.ProtocolError`
subclasses: anything else (RecursionError, MemoryError, SystemError,
KeyError...) is a crash.

Inputs: the committed seed corpus ``tests/fuzz_corpus/*.bin`` (valid
encodings of rich objects and known-nasty inputs; files named ``crash-*``
are inputs that once failed, kept as regressions), mutations of it, token
soups of Thrift-shaped pieces, raw random bytes.

In the test suite (``pytest -q``) every corpus file runs, then hypothesis
runs the target for about 30 s (``FUZZ_EXAMPLES`` examples; the suite runs
twice in CI, compiled and ``AIOTHRIFT_NO_EXTENSIONS=1``).  With
``AIOTHRIFT_NO_EXTENSIONS=1`` the compiled extension is still used as the
reference when it is importable; when it is not (an interpreter without
it), the pure-Python codec runs alone and the checks that need no second
implementation (round trips, readers whole vs chunked, reader vs codec)
still apply.

Longer runs, standalone (a seeded random mutator, no hypothesis)::

    python tests/test_fuzz.py --seconds 600 [--seed N] [--protocol compact]
    python tests/test_fuzz.py --write-corpus      # regenerate the seed files

A failing input is written to ``tests/fuzz_corpus/crash-<sha1>.bin``
(``crash-compact-<sha1>.bin`` with ``--protocol compact``): commit it (and
fix the bug) so that it runs in every suite run.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # standalone: the package and the test helpers must be importable
    sys.path[:0] = [str(HERE.parent), str(HERE)]

import thriftpy2  # noqa: E402
from thriftpy2.thrift import TApplicationException  # noqa: E402

from aiothrift import _compat  # noqa: E402
from aiothrift.errors import ProtocolError  # noqa: E402

from conftest import IDL_DIR, load_impl  # noqa: E402

rich = thriftpy2.load(str(IDL_DIR / "codec_rich.thrift"), module_name="codec_rich_thrift")

CORPUS_DIR = HERE / "fuzz_corpus"

#: hypothesis examples per suite run: about 30 s with both implementations
#: (hypothesis draws every decision: about 330 inputs per second on the
#: 2-core dev box).  AIOTHRIFT_FUZZ_EXAMPLES overrides it.
FUZZ_EXAMPLES = int(os.environ.get("AIOTHRIFT_FUZZ_EXAMPLES", "10000"))

#: classes every input (or message body) is decoded as
DECODE_AS = [rich.Rich, rich.Node, rich.Defaults, rich.Required, rich.Holder, rich.Wide,
             rich.Unhashable, rich.Empty, TApplicationException]

#: codec option sets
CODEC_OPTIONS = [
    {},
    {"strict_read": False, "decode_response": False},
    {"max_string_size": 8, "max_container_size": 4, "max_depth": 4},
]

#: (kind, options) of the readers
READER_OPTIONS = [
    ("framed", {}),
    ("framed", {"max_frame_size": 40}),
    ("buffered", {}),
    ("buffered", {"strict_read": False, "max_frame_size": 300, "max_string_size": 8,
                  "max_container_size": 4, "max_depth": 4}),
]


# ------------------------------------------------------------------ implementations

def available_impls() -> List[Any]:
    """Compiled (when importable) and Python codec/framing modules."""
    impls = []
    try:
        impls.append(load_impl("compiled"))
    except ImportError:
        if not _compat.NO_EXTENSIONS:
            raise  # on CPython a missing extension is an error, not a skip
    impls.append(load_impl("python"))
    return impls


class Crash(AssertionError):
    """Something other than a ProtocolError escaped, or a check failed."""


def canon(v: Any) -> Any:
    """A comparable, type-exact, NaN-aware image of a decoded value."""
    t = type(v)
    if v is None or t in (bool, int, str, bytes):
        return (t.__name__, v)
    if t is float:
        return ("float", struct.pack("!d", v))  # NaN == NaN, -0.0 != 0.0
    if t is list:
        return ("list", tuple(canon(x) for x in v))
    if t is set:
        return ("set", tuple(sorted((canon(x) for x in v), key=repr)))
    if t is dict:
        return ("dict", tuple((canon(k), canon(x)) for k, x in v.items()))
    if hasattr(v, "thrift_spec"):
        return (t.__name__, tuple((k, canon(x)) for k, x in v.__dict__.items()))
    raise Crash("unexpected decoded type %r" % (t,))


def attempt(what: str, fn: Callable[..., Any], *args: Any) -> Tuple[str, Any]:
    """("ok", result) or ("err", ProtocolError subclass name); anything else is a crash."""
    try:
        return ("ok", fn(*args))
    except ProtocolError as exc:
        return ("err", type(exc).__name__)
    except BaseException as exc:
        raise Crash("%s raised %s: %s" % (what, type(exc).__name__, exc)) from exc


def feed_all(reader: Any, data: bytes, sizes: List[int]) -> Tuple[List[bytes], Optional[str]]:
    """Feed ``data`` in chunks of ``sizes`` (cycled); messages until the first error."""
    out: List[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        i += 1
        try:
            out += [bytes(m) for m in reader.feed(data[pos:pos + size])]
        except ProtocolError as exc:
            return out, type(exc).__name__
        except BaseException as exc:
            raise Crash("%r.feed raised %s: %s" % (reader, type(exc).__name__, exc)) from exc
        pos += size
    return out, None


#: chunkings: whole, one byte at a time, uneven
CHUNKINGS = {"whole": [1 << 30], "bytes": [1], "uneven": [3, 1, 7, 2, 64]}


def _compact_module(impl: Any) -> Any:
    import importlib
    return importlib.import_module("aiothrift._compact" if impl.name == "compiled" else "aiothrift._compact_py")


class Target:
    """The fuzz target bound to one implementation (and protocol: binary, or
    compact in the standalone runner's ``--protocol compact``)."""

    def __init__(self, impl: Any, protocol: str = "binary") -> None:
        self.impl = impl
        if protocol == "binary":
            codec_cls, self.buffered_reader = impl.binary.BinaryCodec, impl.framing.BufferedReader
        else:
            compact = _compact_module(impl)
            codec_cls, self.buffered_reader = compact.CompactCodec, compact.CompactBufferedReader
        self.codecs = [codec_cls(**o) for o in CODEC_OPTIONS]

    def _decode(self, ci: int, cls: type, data: bytes, offset: int) -> Any:
        codec = self.codecs[ci]
        what = "%s decode_struct(%s, opts %d, offset %d)" % (self.impl.name, cls.__name__, ci, offset)
        status, obj = attempt(what, codec.decode_struct, cls, data, offset)
        if status != "ok":
            return (status, obj)
        image = canon(obj)
        if not CODEC_OPTIONS[ci].get("decode_response", True):
            return ("ok", image)  # (its defaults are str, what it decodes bytes: no round trip)
        # Round trip: what was decoded encodes, and decodes to the same.
        status2, again = attempt(what + " re-encode", codec.encode_struct, obj)
        if status2 != "ok":
            raise Crash("%s: decoded %r but cannot encode it again: %s" % (what, obj, again))
        status3, obj3 = attempt(what + " re-decode", codec.decode_struct, cls, again, 0)
        if status3 != "ok" or canon(obj3) != image:
            raise Crash("%s: round trip changed %r into %r" % (what, obj, obj3))
        return ("ok", image)

    def outcome(self, data: bytes) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        for ci, codec in enumerate(self.codecs):
            status, begin = attempt("%s decode_message_begin(opts %d)" % (self.impl.name, ci),
                                    codec.decode_message_begin, data)
            out["begin", ci] = (status, begin)
            if status == "ok":
                for cls in DECODE_AS:
                    out["body", ci, cls.__name__] = self._decode(ci, cls, data, begin[3])
            for cls in DECODE_AS:
                out["struct", ci, cls.__name__] = self._decode(ci, cls, data, 0)
        framing = self.impl.framing
        for ri, (kind, opts) in enumerate(READER_OPTIONS):
            make = framing.FramedReader if kind == "framed" else self.buffered_reader
            results = {name: feed_all(make(**opts), data, sizes) for name, sizes in CHUNKINGS.items()}
            for name, result in results.items():
                out["reader", ri, name] = result
            # Whole or chunked: the same error, and the same messages when there is none.
            errors = {r[1] for r in results.values()}
            if len(errors) != 1:
                raise Crash("%s %s reader %d: errors differ by chunking: %r" % (self.impl.name, kind, ri, results))
            if errors == {None} and len({tuple(r[0]) for r in results.values()}) != 1:
                raise Crash("%s %s reader %d: messages differ by chunking" % (self.impl.name, kind, ri))
        self._reader_agrees_with_codec(data, out)
        return out

    def _reader_agrees_with_codec(self, data: bytes, out: Dict[Any, Any]) -> None:
        """Buffered reader (defaults) vs codec (defaults) on the first message."""
        begin = out["begin", 0]
        body = out.get(("body", 0, "Empty"))  # Empty skips every field: structure only
        msgs, error = out["reader", 2, "bytes"]
        if begin[0] == "ok" and body[0] == "ok":
            # A good first message: the reader cuts it out, and it decodes alike.
            if not msgs:
                raise Crash("%s: the codec decodes a message the buffered reader does not find (%s)"
                            % (self.impl.name, error))
            first = msgs[0]
            if not data.startswith(first):
                raise Crash("%s: the reader's first message is not a prefix of the input" % self.impl.name)
            b = self.codecs[0].decode_message_begin(first)
            for cls in DECODE_AS:
                if self._decode(0, cls, first, b[3]) != out["body", 0, cls.__name__]:
                    raise Crash("%s: %s decodes differently from the reader's message" % (self.impl.name, cls.__name__))
            return
        # The first message is bad, not merely cut short: the reader says why, alike.
        # (Names: the reader does not check their UTF-8; the codec does.)
        if begin[0] == "err":
            codec_error = begin[1] if begin[1] not in ("TruncatedError", "InvalidDataError") else None
        else:
            codec_error = body[1] if body[1] != "TruncatedError" else None
        if codec_error is not None and (msgs or error != codec_error):
            raise Crash("%s: the codec says %s, the buffered reader %r / %d messages"
                        % (self.impl.name, codec_error, error, len(msgs)))


_TARGETS: Dict[str, List[Target]] = {}


def targets(protocol: str = "binary") -> List[Target]:
    if protocol not in _TARGETS:
        _TARGETS[protocol] = [Target(impl, protocol) for impl in available_impls()]
    return _TARGETS[protocol]


def check(data: bytes, protocol: str = "binary") -> None:
    """The fuzz target: run ``data`` through every implementation and compare."""
    ts = targets(protocol)
    outcomes = [t.outcome(data) for t in ts]
    for t, o in zip(ts[1:], outcomes[1:]):
        if o != outcomes[0]:
            diffs = [k for k in outcomes[0] if outcomes[0][k] != o.get(k)]
            k = diffs[0]
            raise Crash("%s and %s differ on %r: %r != %r (%d differences)" % (
                ts[0].impl.name, t.impl.name, k, outcomes[0][k], o.get(k), len(diffs)))


# ------------------------------------------------------------------ inputs

VERSION_1 = 0x80010000
T_STOP, T_VOID, T_BOOL, T_BYTE, T_DOUBLE = 0, 1, 2, 3, 4
T_I16, T_I32, T_I64, T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 6, 8, 10, 11, 12, 13, 14, 15
TYPE_IDS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0x7F, 0x80, 0xFF]
VALID_TYPES = [2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15]
INTERESTING_I32 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 63, 64, 65, 127, 128, 255, 256, 0x7FFF, 0x8000,
                   0xFFFF, 1_000_000, 1_000_001, 16_384_000, 16_384_001, 0x7FFFFFFF, -1, -2, -128,
                   -0x80000000, VERSION_1 | 1, VERSION_1 | 2, VERSION_1 | 3, VERSION_1 | 4]


def i32(v: int) -> bytes:
    return struct.pack("!I", v & 0xFFFFFFFF)


def fld(t: int, fid: int) -> bytes:
    return bytes([t & 0xFF]) + struct.pack("!h", fid)


def header(name: bytes = b"echo", mtype: int = 1, seqid: int = 1) -> bytes:
    return i32(VERSION_1 | mtype) + i32(len(name)) + name + i32(seqid)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def _rich_objects() -> Dict[str, Any]:
    inner = rich.Inner(x=5, label="in")
    node = rich.Node(value=0, kids=[])
    for i in range(1, 8):
        node = rich.Node(value=i, kids=[node, rich.Node(value=-i, kids=[])], sibling=rich.Node(value=i * 10, kids=[]))
    full = rich.Rich(
        a_bool=True, a_byte=-7, a_i16=-300, a_i32=2**31 - 1, a_i64=-(2**63), a_double=float("nan"),
        a_string="héllo ☃", a_binary=b"\x00\xff\x80", a_kind=rich.Kind.NEG, a_inner=inner,
        l_bool=[True, False], l_byte=[1, -1], l_i16=[7, -7], l_i32=[1, 2, 3], l_i64=[2**40], l_double=[0.5, -0.0],
        l_string=["a", "", "ü"], l_binary=[b"", b"\x01"], l_inner=[inner, rich.Inner(x=-1)], s_i32={3, 1, 2},
        s_string={"x", "y"}, s_binary={b"k"}, s_double={1.5}, s_bool={True}, m_string_i64={"k": 1, "": -1},
        m_i32_string={1: "one", -1: "minus"}, m_binary_inner={b"b": inner}, m_i16_list={1: ["a", "b"], 2: []},
        ll_i32=[[1], [], [2, 3]], lms=[{"s": {1, 2}}, {}], mml={"o": {1: [inner]}}, s_kind={rich.Kind.ONE},
        tree=node, l_set=[{"q"}], m_bool_byte={True: 1, False: -1}, m_double={0.25: -1e300},
        neg_one=-1, neg_min="min", pos_max=2**62)
    return {
        "rich-full": full,
        "rich-empty-containers": rich.Rich(l_i32=[], s_string=set(), m_string_i64={}, ll_i32=[[]], lms=[]),
        "node-tree": node,
        "defaults": rich.Defaults(),
        "required": rich.Required(id=1, name="n", inner=inner, note="opt"),
        "holder": rich.Holder(oops=rich.Oops(message="m", code=3, details=["d"]),
                              many=[rich.Oops(message="x", code=-1)]),
        "wide": rich.Wide(low=1, high=2, neg="n"),
        "empty": rich.Empty(),
        "app-exception": TApplicationException(type=6, message="internal"),
    }


def seed_corpus() -> Dict[str, bytes]:
    """The committed seed files: name -> bytes (see --write-corpus)."""
    codec = load_impl("python").binary.BinaryCodec()
    seeds: Dict[str, bytes] = {}
    for name, obj in _rich_objects().items():
        body = codec.encode_struct(obj)
        seeds["valid-struct-" + name] = body
        seeds["valid-call-" + name] = codec.encode_message("method_" + name, 1, 7, obj)
    seeds["valid-reply-framed"] = codec.encode_message("r", 2, 2**31 - 1, _rich_objects()["holder"], framed=True)
    seeds["valid-exception"] = codec.encode_message("e", 3, -5, _rich_objects()["app-exception"])
    seeds["valid-oneway"] = codec.encode_message("o", 4, 0, rich.Inner(x=1))
    seeds["valid-old-header"] = i32(4) + b"echo" + b"\x01" + i32(9) + codec.encode_struct(rich.Inner(x=2))
    seeds["valid-two-messages"] = seeds["valid-call-wide"] + seeds["valid-call-empty"]
    seeds["valid-two-frames"] = frame(seeds["valid-call-wide"]) + frame(seeds["valid-call-holder"])
    # nesting around the depth limit (64): structs, lists, maps; in known and unknown fields
    for depth in (63, 64, 65, 100):
        seeds["nest-structs-%d" % depth] = fld(T_STRUCT, 99) + fld(T_STRUCT, 1) * (depth - 2) + b"\x00" * depth
        seeds["nest-lists-%d" % depth] = (fld(T_LIST, 99) + (bytes([T_LIST]) + i32(1)) * (depth - 2)
                                          + bytes([T_I32]) + i32(1) + i32(7) + b"\x00")
        seeds["nest-node-%d" % depth] = ((fld(T_LIST, 2) + bytes([T_STRUCT]) + i32(1)) * (depth // 2)
                                         + b"\x00" * (depth // 2 + 1))
    seeds["nest-maps-70"] = (fld(T_MAP, 99) + (bytes([T_I32, T_MAP]) + i32(1) + i32(0)) * 69
                             + bytes([T_I32, T_I32]) + i32(0) + b"\x00")
    # declared sizes with nothing behind them
    for name, v in (("negative", -1), ("2g", 0x7FFFFFFF), ("limit", 16_384_000), ("limit+1", 16_384_001)):
        seeds["string-" + name] = fld(T_STRING, 7) + i32(v) + b"ab"
        seeds["list-" + name] = fld(T_LIST, 14) + bytes([T_I32]) + i32(v) + i32(1)
        seeds["map-" + name] = fld(T_MAP, 25) + bytes([T_STRING, T_I64]) + i32(v)
        seeds["set-unknown-" + name] = fld(T_SET, 999) + bytes([T_I64]) + i32(v)
        seeds["frame-" + name] = i32(v) + b"\x80\x01"
        seeds["name-" + name] = i32(VERSION_1 | 1) + i32(v) + b"nm" + i32(1) + b"\x00"
    # element types that are no wire types, some with no width at all
    for t in (0, 1, 5, 7, 9, 16, 255):
        seeds["skip-list-type-%d" % t] = fld(T_LIST, 99) + bytes([t]) + i32(0x7FFFFFFF) + b"\x00"
        seeds["skip-list-type-%d-small" % t] = fld(T_LIST, 99) + bytes([t]) + i32(3) + b"\x00" * 4
        seeds["field-type-%d" % t] = fld(t, 1) + b"\x00" * 9
    seeds["skip-map-void-stop"] = fld(T_MAP, 99) + bytes([T_VOID, T_STOP]) + i32(1_000_000) + b"\x00"
    seeds["zero-count-any-types"] = (fld(T_MAP, 99) + bytes([0xFF, 0x01]) + i32(0)
                                     + fld(T_LIST, 98) + b"\x09" + i32(0) + b"\x00")
    seeds["wrong-elem-type"] = fld(T_LIST, 14) + bytes([T_STRING]) + i32(1) + i32(1) + b"x" + b"\x00"
    seeds["wrong-field-type"] = fld(T_STRING, 4) + i32(1) + b"x" + fld(T_I32, 7) + i32(3) + b"\x00"
    seeds["unhashable-set"] = fld(T_SET, 1) + bytes([T_LIST]) + i32(1) + bytes([T_I32]) + i32(1) + i32(5) + b"\x00"
    seeds["duplicate-fields"] = fld(T_I32, 4) + i32(1) + fld(T_I32, 4) + i32(2) + b"\x00"
    seeds["bad-utf8-name"] = i32(VERSION_1 | 1) + i32(2) + b"\xff\xfe" + i32(1) + b"\x00"
    seeds["bad-utf8-string"] = fld(T_STRING, 7) + i32(2) + b"\xc3\x28" + b"\x00"
    for v in (0x80020001, 0x80000001, 0xFFFF0001, 0x7FFF0001, 0x80010000 | 0x55):
        seeds["version-%08x" % v] = i32(v) + i32(1) + b"x" + i32(1) + b"\x00"
    seeds["empty"] = b""
    seeds["stop-only"] = b"\x00"
    seeds["http"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    return seeds


def compact_seeds() -> Dict[str, bytes]:
    """Seeds for ``--protocol compact``: the rich objects in compact encoding
    (made at run time from the Python codec, not committed), plus the binary
    corpus as foreign bytes."""
    codec = _compact_module(load_impl("python")).CompactCodec()
    seeds: Dict[str, bytes] = {}
    for name, obj in _rich_objects().items():
        seeds["compact-struct-" + name] = codec.encode_struct(obj)
        seeds["compact-call-" + name] = codec.encode_message("m_" + name, 1, 7, obj)
    seeds["compact-framed-reply"] = codec.encode_message("r", 2, 2**31 - 1, _rich_objects()["holder"], framed=True)
    return seeds


def load_corpus() -> Dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(CORPUS_DIR.glob("*.bin"))}


def _seeds(protocol: str = "binary") -> List[bytes]:
    corpus = load_corpus()
    seeds = list(corpus.values()) if corpus else list(seed_corpus().values())
    if protocol == "compact":
        seeds = list(compact_seeds().values()) * 4 + seeds
    return seeds


def generate(choose: Callable[[int], int], seeds: List[bytes]) -> bytes:
    """One fuzz input.  ``choose(n)`` returns an int in ``range(n)`` (hypothesis
    draws, or a seeded random generator): every decision goes through it."""
    mode = choose(10)
    if mode < 6:
        return _mutate(choose, seeds)
    if mode < 9:
        return _token_soup(choose)
    return bytes(choose(256) for _ in range(choose(64)))


def _mutate(choose: Callable[[int], int], seeds: List[bytes]) -> bytes:
    data = bytearray(seeds[choose(len(seeds))])
    for _ in range(choose(3) if choose(3) else choose(8)):  # mostly few: stay near valid
        op = choose(9)
        pos = choose(len(data) + 1)
        if op == 0 and data:  # flip a bit
            p = min(pos, len(data) - 1)
            data[p] ^= 1 << choose(8)
        elif op == 1 and data:  # a type id or a small value
            data[min(pos, len(data) - 1)] = TYPE_IDS[choose(len(TYPE_IDS))]
        elif op == 2:  # overwrite an interesting i32
            data[pos:pos + 4] = i32(INTERESTING_I32[choose(len(INTERESTING_I32))])
        elif op == 3:  # insert random bytes
            data[pos:pos] = bytes(choose(256) for _ in range(1 + choose(4)))
        elif op == 4:  # delete
            del data[pos:pos + 1 + choose(8)]
        elif op == 5:  # truncate
            del data[pos:]
        elif op == 6:  # splice in a piece of another seed
            other = seeds[choose(len(seeds))]
            a = choose(len(other) + 1)
            data[pos:pos] = other[a:a + 1 + choose(32)]
        elif op == 7 and data:  # duplicate a piece
            a = min(pos, len(data) - 1)
            data[a:a] = data[a:a + 1 + choose(16)]
        elif op == 8:  # frame it (or re-frame it)
            data = bytearray(frame(bytes(data)))
    return bytes(data[:4096])


def _token_soup(choose: Callable[[int], int]) -> bytes:
    """Thrift-shaped pieces in a plausible but unchecked order."""
    parts: List[bytes] = []
    if choose(2):
        name = [b"", b"echo", b"add", b"\xff", b"x" * 40][choose(5)]
        parts.append(header(name, choose(7), INTERESTING_I32[choose(len(INTERESTING_I32))]))
    for _ in range(choose(24)):
        k = choose(9)
        if k == 0:
            parts.append(fld(VALID_TYPES[choose(len(VALID_TYPES))] if choose(4) else TYPE_IDS[choose(len(TYPE_IDS))],
                             [1, 2, 3, 4, 7, 14, 25, 33, 99, -1, 32767, -32768][choose(12)]))
        elif k == 1:
            parts.append(i32(INTERESTING_I32[choose(len(INTERESTING_I32))]))
        elif k == 2:
            parts.append(bytes([VALID_TYPES[choose(len(VALID_TYPES))]]))
        elif k == 3:
            parts.append(b"\x00")  # STOP
        elif k == 4:  # a list/set header with a small count
            parts.append(bytes([VALID_TYPES[choose(len(VALID_TYPES))]]) + i32(choose(5)))
        elif k == 5:  # a map header with a small count
            kv = [VALID_TYPES[choose(len(VALID_TYPES))], VALID_TYPES[choose(len(VALID_TYPES))]]
            parts.append(bytes(kv) + i32(choose(4)))
        elif k == 6:  # a short string
            s = [b"", b"a", b"\xff", "é".encode(), b"abcdefghij"][choose(5)]
            parts.append(i32(len(s)) + s)
        elif k == 7:
            parts.append(struct.pack("!d", [0.0, -0.0, math.nan, math.inf, 1.5][choose(5)]))
        else:
            parts.append(bytes(choose(256) for _ in range(1 + choose(8))))
    data = b"".join(parts)
    return frame(data) if choose(4) == 0 else data


# ------------------------------------------------------------------ tests

def _corpus_ids() -> List[str]:
    return sorted(load_corpus())


def test_corpus_is_committed():
    corpus = load_corpus()
    missing = sorted(set(seed_corpus()) - set(corpus))
    assert not missing, "run `python tests/test_fuzz.py --write-corpus`: missing %s" % missing
    assert all(len(data) <= 8192 for data in corpus.values())


def test_both_implementations_are_compared():
    names = [t.impl.name for t in targets()]
    if not _compat.NO_EXTENSIONS:
        assert names == ["compiled", "python"]


def _corpus_param():
    import pytest
    return pytest.mark.parametrize("name", _corpus_ids())


@_corpus_param()
def test_corpus(name):
    """Every seed and every past crash, through every check."""
    check(load_corpus()[name], "compact" if name.startswith("crash-compact-") else "binary")


def test_compact_seeds_and_mutations():
    """The same target on the compact codec and its reader (a short run;
    ``--protocol compact`` for long ones)."""
    import random

    seeds = _seeds("compact")
    for data in compact_seeds().values():
        check(data, "compact")
    rng = random.Random(1)
    for _ in range(300):
        check(generate(rng.randrange, seeds), "compact")


def _hypothesis_test():
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    seeds = _seeds()

    @st.composite
    def fuzz_inputs(draw):
        return generate(lambda n: draw(st.integers(0, n - 1)) if n > 1 else 0, seeds)

    @pytest.mark.slow
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_inputs())
    def test_fuzz(data):
        """The bounded fuzz run of the suite (about 30 s)."""
        check(data)

    return test_fuzz


test_fuzz = _hypothesis_test()


# ------------------------------------------------------------------ standalone runner

def _write_corpus() -> None:
    CORPUS_DIR.mkdir(exist_ok=True)
    for name, data in seed_corpus().items():
        (CORPUS_DIR / (name + ".bin")).write_bytes(data)
    print("wrote %d seed files to %s" % (len(seed_corpus()), CORPUS_DIR))


def _save_crash(data: bytes, protocol: str) -> Path:
    CORPUS_DIR.mkdir(exist_ok=True)
    prefix = "crash-" if protocol == "binary" else "crash-%s-" % protocol
    path = CORPUS_DIR / ("%s%s.bin" % (prefix, hashlib.sha1(data).hexdigest()[:16]))
    path.write_bytes(data)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    import random

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    parser.add_argument("--max-crashes", type=int, default=10, help="stop after this many failing inputs")
    parser.add_argument("--write-corpus", action="store_true", help="(re)write the seed corpus files and exit")
    parser.add_argument("--protocol", choices=["binary", "compact"], default="binary",
                        help="codec and buffered reader to fuzz (default binary)")
    args = parser.parse_args(argv)
    if args.write_corpus:
        _write_corpus()
        return 0
    seed = args.seed if args.seed is not None else int(time.time() * 1000) & 0xFFFFFFFF
    rng = random.Random(seed)
    seeds = _seeds(args.protocol)
    print("fuzzing %s (%s) for %g s, seed %d, %d seeds" % (
        " vs ".join(t.impl.name for t in targets(args.protocol)), args.protocol, args.seconds, seed,
        len(seeds)), flush=True)
    for data in seeds:
        check(data, args.protocol)
    end = time.monotonic() + args.seconds
    n = crashes = 0
    while time.monotonic() < end and crashes < args.max_crashes:
        data = generate(rng.randrange, seeds)
        n += 1
        try:
            check(data, args.protocol)
        except Exception:
            crashes += 1
            path = _save_crash(data, args.protocol)
            print("FAILURE on %s (%d bytes): %s" % (path, len(data), data.hex()))
            traceback.print_exc()
    print("%d inputs, %d failures" % (n, crashes))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
