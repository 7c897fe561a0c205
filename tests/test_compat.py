"""Which implementation is in use, and that the switch really switches."""

from __future__ import annotations

import importlib.machinery
import os
import platform
import subprocess
import sys

import pytest

import aiothrift
from aiothrift import _compat

ON_CPYTHON = platform.python_implementation() == "CPython"
WANT_PURE = os.environ.get("AIOTHRIFT_NO_EXTENSIONS", "") not in ("", "0")


@pytest.mark.skipif(not ON_CPYTHON or WANT_PURE, reason="compiled build expected only on CPython")
def test_compiled_extensions_are_loaded():
    from aiothrift import _binary, _compact, _framing, _schema

    assert _compat.IMPLEMENTATION == "compiled"
    assert _compat.binary is _binary
    assert _compat.compact is _compact
    assert _compat.framing is _framing
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for mod in (_binary, _compact, _framing, _schema):
        assert mod.__file__.endswith(suffixes), mod.__file__
    assert aiothrift.IMPLEMENTATION == "compiled"


@pytest.mark.skipif(not WANT_PURE, reason="only when AIOTHRIFT_NO_EXTENSIONS is set")
def test_pure_python_selected_by_env():
    assert _compat.IMPLEMENTATION == "python"
    assert _compat.binary.__name__ == "aiothrift._binary_py"
    assert _compat.framing.__name__ == "aiothrift._framing_py"


@pytest.mark.parametrize("value, expected", [("1", "python"), ("0", None), ("", None)])
def test_env_switch_in_a_fresh_interpreter(value, expected):
    env = dict(os.environ, AIOTHRIFT_NO_EXTENSIONS=value)
    out = subprocess.run(
        [sys.executable, "-c", "import aiothrift, aiothrift._compat as c; print(c.IMPLEMENTATION, c.binary.__name__)"],
        # Run where the aiothrift under test is importable (site-packages, or
        # the source tree for in-place builds), not from the checkout's root.
        cwd=os.path.dirname(os.path.dirname(aiothrift.__file__)),
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    if expected is None:
        expected = "compiled" if ON_CPYTHON else "python"
    assert out[0] == expected
    assert out[1] == ("aiothrift._binary_py" if expected == "python" else "aiothrift._binary")


def test_both_implementations_importable_by_name(impl):
    assert impl.binary.BinaryCodec is not None
    assert impl.framing.FramedReader is not None
    expected = "aiothrift._binary_py" if impl.name == "python" else "aiothrift._binary"
    assert impl.binary.__name__ == expected


def test_serialize_uses_the_selected_codec(bench_thrift):
    args = bench_thrift.Bench.add_args(a=1, b=-2)
    data = aiothrift.serialize(args)
    assert data == bytes.fromhex("0a00010000000000000001" "0a0002fffffffffffffffe" "00")
    back = aiothrift.deserialize(bench_thrift.Bench.add_args, data)
    assert (back.a, back.b) == (1, -2)
    target = bench_thrift.Bench.add_args()
    assert aiothrift.deserialize(target, data) is target and target.b == -2
    proto = aiothrift.TBinaryProtocol(None)
    assert type(proto.codec) is _compat.binary.BinaryCodec
