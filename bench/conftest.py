"""Fixtures of the codec benchmarks (``bench/test_codec.py``).

Benchmarks are not part of the test suite: run them explicitly, from the
repository root, so that the in-tree package (with its in-place built
extensions) is the one measured::

    python -m pytest bench/test_codec.py --benchmark-only

``--codec-candidates=a,b`` restricts the candidates (default: all of
``bench_common.CANDIDATES``).  Every candidate is checked before it is timed:
it must write exactly the reference bytes and read them back (a setup error
otherwise), and Apache's accelerated protocol must really run ``fastbinary``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench_common as bc


def pytest_addoption(parser):
    group = parser.getgroup("aiothrift-bench")
    group.addoption("--codec-candidates", default=",".join(bc.CANDIDATES),
                    help="comma-separated codec candidates (default: all: %s)"
                    % ",".join(bc.CANDIDATES))


def _candidates(config):
    names = [c for c in config.getoption("--codec-candidates").split(",") if c]
    unknown = [c for c in names if c not in bc.CANDIDATES]
    if unknown:
        raise pytest.UsageError("unknown codec candidates: %s" % ", ".join(unknown))
    return names


def pytest_generate_tests(metafunc):
    if "candidate" in metafunc.fixturenames:
        metafunc.parametrize("candidate", _candidates(metafunc.config))
    if "workload" in metafunc.fixturenames:
        metafunc.parametrize("workload", bc.WORKLOADS)


@pytest.fixture(scope="session")
def apache_gen_dir(tmp_path_factory) -> Path:
    """A temporary directory holding Apache gen-py for bench.thrift."""
    out = tmp_path_factory.mktemp("gen-py-bench")
    bc.generate_apache(out)
    return out


@pytest.fixture(scope="session")
def apache(apache_gen_dir):
    return bc.generate_apache(apache_gen_dir)


@pytest.fixture(scope="session")
def workloads():
    """workload name -> (thriftpy2 object, reference bytes)."""
    tp2 = bc.tp2_module()
    out = {}
    for name in bc.WORKLOADS:
        obj = bc.make_workload(name, tp2)
        out[name] = (obj, bc.reference_bytes(obj))
    return out


@pytest.fixture(scope="session")
def codecs(workloads, request):
    """``codecs(workload, candidate)`` -> a checked :class:`bench_common.Codec`."""
    cache = {}

    def get(workload: str, candidate: str) -> bc.Codec:
        key = (workload, candidate)
        if key not in cache:
            obj, ref = workloads[workload]
            ap = request.getfixturevalue("apache") if candidate == "apache-accel" else None
            codec = bc.make_codec(candidate, obj, ref, ap)
            problems = bc.check_codec(codec, obj, ref)
            assert not problems, "\n".join(problems)
            if candidate == "apache-accel":
                calls = bc.count_fastbinary_calls(lambda: codec.encode(*codec.encode_args))
                assert calls["encode"] == 1, "Apache encode did not go through fastbinary"
                calls = bc.count_fastbinary_calls(lambda: codec.decode(*codec.decode_args))
                assert calls["decode"] == 1, "Apache decode did not go through fastbinary"
            cache[key] = codec
        return cache[key]

    return get


@pytest.fixture(scope="session")
def blob_copies(request, apache_gen_dir):
    """Memory copies of the blob workload, measured by ``bench/copies.py`` in a
    process of its own (it changes glibc's mmap threshold)."""
    names = _candidates(request.config)
    proc = subprocess.run(
        [sys.executable, str(bc.BENCH_DIR / "copies.py"), "--json",
         "--apache-dir", str(apache_gen_dir), "--candidates", ",".join(names)],
        capture_output=True, text=True, timeout=600, cwd=str(bc.REPO),
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(bc.REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])),
    )
    if proc.returncode != 0:
        raise RuntimeError("bench/copies.py failed:\n" + proc.stdout + proc.stderr)
    return json.loads(proc.stdout)
