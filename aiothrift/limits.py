"""Default limits for data read from the network.

Every limit is a keyword argument with the same name and default in the
compiled and the pure-Python codec, the connection, the pool and the server.
A declared size is checked against its limit *and* against the bytes actually
present before anything is allocated, so these are caps, not preallocations.
"""

#: Largest frame (framed transport) or message (buffered transport) accepted,
#: in bytes.  Same as Apache Thrift's ``TConfiguration.MaxFrameSize``.
DEFAULT_MAX_FRAME_SIZE = 16_384_000

#: Largest string or binary value, in bytes.
DEFAULT_MAX_STRING_SIZE = 16_384_000

#: Largest element count of one list, set or map.
DEFAULT_MAX_CONTAINER_SIZE = 1_000_000

#: Deepest nesting of structs and containers, the outermost struct included.
#: Same as Apache Thrift's ``TConfiguration.RecursionLimit``.
DEFAULT_MAX_DEPTH = 64
