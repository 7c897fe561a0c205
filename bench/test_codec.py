"""Codec benchmarks: every candidate on every workload, encode and decode.

One pytest-benchmark group per workload and direction (``medium encode``...),
so that one table compares the candidates.  Run from the repository root::

    python -m pytest bench/test_codec.py --benchmark-only \
        --benchmark-json=bench/results/codec.json
    python bench/report.py bench/results/codec.json

Workloads (``bench_common.make_workload``) on ``tests/idl/bench.thrift``:
small = ``Bench.add_args(a, b)``, medium = an Order of 10 Items (5 tags and 5
counts each), large = an Order of 1000 such Items, blob = an Item with a
1 MiB binary.  The blob benchmarks carry the memory-copy counts of
``bench/copies.py`` in their ``extra_info``.
"""

from __future__ import annotations


def _info(benchmark, codecs, workloads, workload, candidate, direction, blob_copies_fn):
    obj, ref = workloads[workload]
    benchmark.group = "%s %s" % (workload, direction)
    benchmark.extra_info["workload"] = workload
    benchmark.extra_info["candidate"] = candidate
    benchmark.extra_info["direction"] = direction
    benchmark.extra_info["message_bytes"] = len(ref)
    if workload == "blob":
        copies = blob_copies_fn()
        row = copies["rows"][candidate][direction]
        benchmark.extra_info["copies"] = row["fault_copies"]
        benchmark.extra_info["tracemalloc_copies"] = row["tracemalloc_copies"]
        benchmark.extra_info["time_vs_memcpy"] = row["time_vs_memcpy"]
    return codecs(workload, candidate)


def test_encode(benchmark, codecs, workloads, workload, candidate, request):
    codec = _info(benchmark, codecs, workloads, workload, candidate, "encode",
                  lambda: request.getfixturevalue("blob_copies"))
    benchmark(codec.encode, *codec.encode_args)


def test_decode(benchmark, codecs, workloads, workload, candidate, request):
    codec = _info(benchmark, codecs, workloads, workload, candidate, "decode",
                  lambda: request.getfixturevalue("blob_copies"))
    benchmark(codec.decode, *codec.decode_args)


def test_blob_memcpy(benchmark, workloads):
    """Baseline of the blob groups: one copy of 1 MiB (``bytes(bytearray)``)."""
    obj, _ref = workloads["blob"]
    src = bytearray(obj.blob)
    benchmark.group = "blob encode"
    benchmark.extra_info.update(workload="blob", candidate="memcpy", direction="baseline")
    benchmark(bytes, src)
