"""aiothrift: fast asyncio Thrift RPC.

Pipelined connections, pools and servers for services loaded with
``thriftpy2.load(...)``, on a compiled binary codec with a pure-Python twin.
"""

from ._compat import IMPLEMENTATION
from .connection import ThriftConnection, create_connection
from .errors import (
    BadVersionError,
    ConnectionClosedError,
    DepthLimitError,
    InvalidDataError,
    NegativeSizeError,
    PoolClosedError,
    ProtocolError,
    SizeLimitError,
    ThriftAppError,
    ThriftError,
    TruncatedError,
)
from .pool import ThriftPool, create_pool
from .processor import TMultiplexedProcessor, TProcessor
from .protocol import TBinaryProtocol, TCompactProtocol, TProtocol, deserialize, serialize
from .server import Server, create_server

__version__ = "0.3.0.dev0"

__all__ = (
    "IMPLEMENTATION",
    "ThriftConnection",
    "ThriftPool",
    "TProtocol",
    "TBinaryProtocol",
    "TCompactProtocol",
    "TProcessor",
    "TMultiplexedProcessor",
    "Server",
    "create_connection",
    "create_pool",
    "create_server",
    "serialize",
    "deserialize",
    "ThriftError",
    "ConnectionClosedError",
    "PoolClosedError",
    "ThriftAppError",
    "ProtocolError",
    "TruncatedError",
    "NegativeSizeError",
    "SizeLimitError",
    "DepthLimitError",
    "BadVersionError",
    "InvalidDataError",
)
