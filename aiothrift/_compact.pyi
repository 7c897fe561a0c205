"""Type stub of the compiled ``aiothrift._compact`` (twin: ``_compact_py``)."""

from typing import Any, List, Tuple, Type, TypeVar, Union, overload

BytesLike = Union[bytes, bytearray, memoryview]
T = TypeVar("T")

class CompactCodec:
    strict_read: bool
    strict_write: bool
    decode_response: bool
    max_string_size: int
    max_container_size: int
    max_depth: int
    def __init__(
        self,
        *,
        strict_read: bool = ...,
        strict_write: bool = ...,
        decode_response: bool = ...,
        max_string_size: int = ...,
        max_container_size: int = ...,
        max_depth: int = ...,
    ) -> None: ...
    def encode_struct(self, obj: Any) -> bytes: ...
    def encode_message(self, name: str, mtype: int, seqid: int, obj: Any,
                       framed: bool = ...) -> bytes: ...
    @overload
    def decode_struct(self, cls_or_obj: Type[T], data: BytesLike, offset: int = ...) -> T: ...
    @overload
    def decode_struct(self, cls_or_obj: T, data: BytesLike, offset: int = ...) -> T: ...
    def decode_message_begin(self, data: BytesLike) -> Tuple[str, int, int, int]: ...

class CompactBufferedReader:
    max_frame_size: int
    max_string_size: int
    max_container_size: int
    max_depth: int
    strict_read: bool
    def __init__(
        self,
        *,
        max_frame_size: int = ...,
        max_string_size: int = ...,
        max_container_size: int = ...,
        max_depth: int = ...,
        strict_read: bool = ...,
    ) -> None: ...
    @property
    def buffered(self) -> int: ...
    def feed(self, data: BytesLike) -> List[bytes]: ...
