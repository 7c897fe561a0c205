"""Count the full memory copies a codec makes of the 1 MiB blob workload.

Run in a process of its own (``bench/test_codec.py`` does it for you)::

    python bench/copies.py --apache-dir /tmp/gen [--candidates a,b] [--json]

How: glibc is told (``mallopt(M_MMAP_THRESHOLD, 64 KiB)``, before anything
big is allocated) to serve every block of 64 KiB or more with a fresh
``mmap`` and to unmap it on ``free``.  A fresh mapping costs one minor page
fault per 4 KiB page the first time it is written, so::

    copies = minor page faults during one call * page size / 1 MiB

counts every MiB written into newly allocated memory during the call: the
output ``bytes`` (encode) or the decoded ``blob`` (decode) is one copy, a
temporary buffer that is then copied into a ``bytes`` is a second, a copy of
the whole input before decoding is another.  Growing a buffer with
``realloc`` moves an mmapped block with ``mremap`` (no copy, no new faults
except for the new pages), so geometric growth is not counted as copies.
This sees allocations made with ``malloc`` directly (C/C++ extensions), which
``tracemalloc`` does not; tracemalloc's peak is reported beside it.  The
calibration row (``bytes(bytearray)``) must read 1.00.

A third figure, ``time / memcpy``, is the call's median time divided by the
median time of that calibration copy.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
M_MMAP_THRESHOLD = -3
_MMAP_SET = bool(_libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024))

import argparse  # noqa: E402  (after mallopt, on purpose)
import gc  # noqa: E402
import json  # noqa: E402
import mmap  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import bench_common as bc  # noqa: E402

PAGE = mmap.PAGESIZE


def fault_copies(fn, size: int, n: int = 8) -> float:
    fn()  # warm: compiled specs, caches
    gc.collect()
    gc.disable()
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            res = fn()
            del res
        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    finally:
        gc.enable()
    return (after - before) * PAGE / n / size


def tracemalloc_copies(fn, size: int) -> float:
    fn()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del res
    finally:
        tracemalloc.stop()
    return (peak - base) / size


def median_time(fn, n: int = 31) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
        del res
    times.sort()
    return times[len(times) // 2]


def measure(candidates, apache_dir) -> dict:
    tp2 = bc.tp2_module()
    obj = bc.make_workload("blob", tp2)
    ref = bc.reference_bytes(obj)
    size = len(obj.blob)
    apache = bc.generate_apache(Path(apache_dir)) if "apache-accel" in candidates else None

    src = bytearray(ref)

    def memcpy():
        return bytes(src)

    rows = {"memcpy": {
        "encode": {"fault_copies": fault_copies(memcpy, size),
                   "tracemalloc_copies": tracemalloc_copies(memcpy, size),
                   "time_s": median_time(memcpy)},
    }}
    rows["memcpy"]["decode"] = rows["memcpy"]["encode"]
    memcpy_time = rows["memcpy"]["encode"]["time_s"]
    for name in candidates:
        codec = bc.make_codec(name, obj, ref, apache)
        problems = bc.check_codec(codec, obj, ref)
        if problems:
            raise AssertionError("; ".join(problems))

        def enc(codec=codec):
            return codec.encode(*codec.encode_args)

        def dec(codec=codec):
            return codec.decode(*codec.decode_args)

        rows[name] = {}
        for direction, fn in (("encode", enc), ("decode", dec)):
            t = median_time(fn)
            rows[name][direction] = {
                "fault_copies": fault_copies(fn, size),
                "tracemalloc_copies": tracemalloc_copies(fn, size),
                "time_s": t,
                "time_vs_memcpy": t / memcpy_time,
            }
    return {"blob_size": size, "message_size": len(ref), "mmap_threshold_set": _MMAP_SET,
            "page_size": PAGE, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apache-dir", required=True, help="where to generate Apache gen-py")
    ap.add_argument("--candidates", default=",".join(bc.CANDIDATES))
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    res = measure([c for c in args.candidates.split(",") if c], args.apache_dir)
    if args.json:
        print(json.dumps(res))
        return 0
    print("blob %d B, mmap threshold set: %s" % (res["blob_size"], res["mmap_threshold_set"]))
    print("| candidate | encode copies (faults) | tracemalloc | time/memcpy "
          "| decode copies (faults) | tracemalloc | time/memcpy |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name, r in res["rows"].items():
        e, d = r["encode"], r["decode"]
        print("| %s | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f |" % (
            name, e["fault_copies"], e["tracemalloc_copies"], e.get("time_vs_memcpy", 1.0),
            d["fault_copies"], d["tracemalloc_copies"], d.get("time_vs_memcpy", 1.0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
