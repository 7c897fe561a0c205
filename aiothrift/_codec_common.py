"""What the pure-Python codecs ``_binary_py`` and ``_compact_py`` share.

Only the protocol-independent pieces live here: the codec options and the
compiler cache keyed by them, the lazy struct closures that let recursive
types compile, the container-count check, and the error constructors and
option checks whose messages both codecs (and their compiled twins in
``_schema.pyx``) give word for word.  The wire formats stay in the codecs.
"""

from __future__ import annotations

from operator import index as _index
from typing import Any, Callable, Dict, Tuple

from .errors import DepthLimitError, NegativeSizeError, SizeLimitError

Encoder = Callable[[bytearray, Any, int], None]
Decoder = Callable[[bytes, int, int], Tuple[Any, int]]


def depth_error(max_depth: int) -> DepthLimitError:
    return DepthLimitError("Thrift data nests deeper than max_depth=%d" % max_depth)


def as_double_error(v: Any) -> Exception:
    """The exception for a value that ``struct`` refused as a double."""
    if isinstance(v, int):
        return OverflowError("int too large to convert to a double")
    return TypeError("double expected a float or an integer, got %s" % type(v).__name__)


def check_limit(name: str, value: Any, minimum: int) -> int:
    value = _index(value)
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


class Options:
    """Codec options that compiled closures bind; hashable cache key."""

    __slots__ = ("decode_response", "max_string_size", "max_container_size", "max_depth", "key")

    def __init__(self, decode_response: bool, max_string_size: int,
                 max_container_size: int, max_depth: int) -> None:
        self.decode_response = decode_response
        self.max_string_size = max_string_size
        self.max_container_size = max_container_size
        self.max_depth = max_depth
        self.key = (decode_response, max_string_size, max_container_size, max_depth)


class CompilerBase:
    """Compiles ``TypeInfo`` into encoder/decoder closures for one option set.

    Struct closures are cached per class and created lazily on first call, so
    recursive types (``struct S { 1: list<S> kids }``) compile fine.  A codec
    subclasses it with its ``struct_encoder``/``struct_decoder`` and the
    closures for its wire format.
    """

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.struct_encoders: Dict[type, Encoder] = {}
        self.struct_decoders: Dict[type, Callable[..., Any]] = {}

    def struct_encoder(self, cls: type) -> Encoder:
        raise NotImplementedError

    def struct_decoder(self, cls: type) -> Callable[..., Any]:
        raise NotImplementedError

    def _lazy_struct_encoder(self, cls: type) -> Encoder:
        compiled: list = []

        def encode(out: bytearray, v: Any, depth: int) -> None:
            if not compiled:
                compiled.append(self.struct_encoder(cls))
            compiled[0](out, v, depth)
        return encode

    def _lazy_struct_decoder(self, cls: type) -> Decoder:
        compiled: list = []

        def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
            if not compiled:
                compiled.append(self.struct_decoder(cls))
            return compiled[0](data, pos, depth, None)
        return decode

    def _check_count(self, n: int, what: str) -> None:
        if n < 0:
            raise NegativeSizeError("negative %s size %d" % (what, n))
        if n > self.opts.max_container_size:
            raise SizeLimitError("%s of %d elements exceeds max_container_size=%d"
                                 % (what, n, self.opts.max_container_size))


def compiler_cache(factory: Callable[[Options], CompilerBase]) -> Callable[[Options], CompilerBase]:
    """``get(opts)``: the one compiler ``factory`` made for these option values."""
    compilers: Dict[tuple, CompilerBase] = {}

    def get(opts: Options) -> CompilerBase:
        c = compilers.get(opts.key)
        if c is None:
            c = compilers[opts.key] = factory(opts)
        return c
    return get
