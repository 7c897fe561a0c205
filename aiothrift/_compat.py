"""The one place that decides between the compiled and the pure-Python codec.

Set ``AIOTHRIFT_NO_EXTENSIONS=1`` to force the pure-Python implementation; it
is also used automatically on interpreters other than CPython.  On CPython a
missing extension is an error, not a silent fallback: an installation that
was expected to be fast must not quietly be slow.
"""

import os
import platform

NO_EXTENSIONS: bool = os.environ.get("AIOTHRIFT_NO_EXTENSIONS", "") not in ("", "0") or (
    platform.python_implementation() != "CPython"
)

if NO_EXTENSIONS:
    from . import _binary_py as binary
    from . import _compact_py as compact
    from . import _framing_py as framing
else:
    from . import _binary as binary  # type: ignore[no-redef]
    from . import _compact as compact  # type: ignore[no-redef]
    from . import _framing as framing  # type: ignore[no-redef]

IMPLEMENTATION: str = "python" if NO_EXTENSIONS else "compiled"

__all__ = ("NO_EXTENSIONS", "IMPLEMENTATION", "binary", "compact", "framing")
