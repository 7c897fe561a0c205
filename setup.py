"""Build script: compiles aiothrift's Cython extensions (_framing, _schema, _binary, _compact).

The extensions are not optional on CPython: a build that cannot compile them
fails loudly instead of installing a slow package.  ``AIOTHRIFT_NO_EXTENSIONS=1``
(the same switch that ``aiothrift/_compat.py`` reads at import time) builds a
pure-Python package on purpose; non-CPython interpreters get one automatically.
"""

import os
import platform
import sys

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("AIOTHRIFT_NO_EXTENSIONS", "") not in ("", "0") or (
    platform.python_implementation() != "CPython"
)

if NO_EXTENSIONS:
    print("*** aiothrift: building WITHOUT the compiled extensions (pure Python)", file=sys.stderr)
    ext_modules = []
else:
    from Cython.Build import cythonize

    print("*** aiothrift: compiling the Cython extensions _framing, _schema, _binary and _compact", file=sys.stderr)
    extensions = [
        Extension("aiothrift._framing", ["aiothrift/_framing.pyx"]),
        Extension("aiothrift._schema", ["aiothrift/_schema.pyx"]),
        Extension("aiothrift._binary", ["aiothrift/_binary.pyx"]),
        Extension("aiothrift._compact", ["aiothrift/_compact.pyx"]),
    ]
    ext_modules = cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "boundscheck": True,
            "wraparound": False,
            "cdivision": True,
        },
        annotate=bool(os.environ.get("AIOTHRIFT_CYTHON_ANNOTATE")),
    )

setup(ext_modules=ext_modules)
