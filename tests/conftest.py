"""Shared fixtures.

``impl`` runs a test once per codec implementation (compiled and pure Python).
A missing compiled extension is an error on CPython, never a silent skip,
unless ``AIOTHRIFT_NO_EXTENSIONS=1`` asks for the pure-Python package.
"""

from __future__ import annotations

import importlib
import os
import types
from pathlib import Path

import pytest
import thriftpy2

from aiothrift import _compat

IDL_DIR = Path(__file__).parent / "idl"

IMPLEMENTATIONS = ["python"] if _compat.NO_EXTENSIONS else ["compiled", "python"]


def load_impl(name: str) -> types.SimpleNamespace:
    if name == "compiled":
        binary = importlib.import_module("aiothrift._binary")
        framing = importlib.import_module("aiothrift._framing")
    else:
        binary = importlib.import_module("aiothrift._binary_py")
        framing = importlib.import_module("aiothrift._framing_py")
    return types.SimpleNamespace(name=name, binary=binary, framing=framing)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request) -> types.SimpleNamespace:
    """The codec/framing modules of one implementation."""
    return load_impl(request.param)


@pytest.fixture(scope="session")
def bench_thrift():
    return thriftpy2.load(str(IDL_DIR / "bench.thrift"), module_name="bench_thrift")


def pytest_report_header(config):
    return "aiothrift implementation: %s (AIOTHRIFT_NO_EXTENSIONS=%r)" % (
        _compat.IMPLEMENTATION, os.environ.get("AIOTHRIFT_NO_EXTENSIONS"))
