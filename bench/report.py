"""Print the markdown tables of bench/README.md from benchmark results.

Codec (pytest-benchmark ``--benchmark-json`` output of ``bench/test_codec.py``)::

    python bench/report.py bench/results/codec.json [--slim bench/results/codec.json]

RPC (``--json`` output of ``bench/rpc_bench.py``)::

    python bench/report.py --rpc bench/results/rpc.json

Every ratio is "how many times faster": the other candidate's median time
divided by aiothrift's (codec), or aiothrift's calls/s divided by the other's
(RPC).  All numbers come from the one run in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional, Tuple

WORKLOADS = ("small", "medium", "large", "blob")
DIRECTIONS = ("encode", "decode")
CODEC_ORDER = ("aiothrift-compiled", "aiothrift-python", "thriftpy2-cybin",
               "thriftpy2-pure", "apache-accel")


def _fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return "%.2f ms" % (seconds * 1e3)
    return "%.2f µs" % (seconds * 1e6)


def _verdict(ratio: Optional[float], target: float) -> str:
    if ratio is None:
        return "n/a"
    if ratio >= target:
        return "**met**"
    return "missed by %.0f%%" % ((1 - ratio / target) * 100)


# --------------------------------------------------------------------------
# codec

def codec_tables(data: dict) -> str:
    med: Dict[Tuple[str, str], Dict[str, float]] = {}
    extra: Dict[Tuple[str, str, str], dict] = {}
    memcpy: Optional[float] = None
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        w, d, c = info.get("workload"), info.get("direction"), info.get("candidate")
        if c == "memcpy":
            memcpy = b["stats"]["median"]
            continue
        if not (w and d and c):
            continue
        med.setdefault((w, d), {})[c] = b["stats"]["median"]
        extra[(w, d, c)] = info
    present = [c for c in CODEC_ORDER if any(c in v for v in med.values())]
    out: List[str] = []

    out.append("Median time per call (lower is better); in brackets: times slower than "
               "aiothrift-compiled.\n")
    out.append("| workload | " + " | ".join(present) + " |")
    out.append("|---|" + "--:|" * len(present))
    for w in WORKLOADS:
        for d in DIRECTIONS:
            row = med.get((w, d))
            if not row:
                continue
            base = row.get("aiothrift-compiled")
            cells = []
            for c in present:
                t = row.get(c)
                if t is None:
                    cells.append("-")
                elif base and c != "aiothrift-compiled":
                    cells.append("%s (%.2fx)" % (_fmt_time(t), t / base))
                else:
                    cells.append(_fmt_time(t))
            out.append("| %s %s | %s |" % (w, d, " | ".join(cells)))

    def ratio(w: str, d: str, ours: str, theirs: str) -> Optional[float]:
        row = med.get((w, d), {})
        if ours in row and theirs in row:
            return row[theirs] / row[ours]
        return None

    out.append("")
    out.append("Targets (speed-up = their median / ours):\n")
    out.append("| target | workload | speed-up | verdict |")
    out.append("|---|---|--:|---|")
    checks = []
    for w in ("medium", "large"):
        for d in DIRECTIONS:
            checks.append(("compiled >= 1.5x apache-accel", "%s %s" % (w, d),
                           ratio(w, d, "aiothrift-compiled", "apache-accel"), 1.5))
    for d in DIRECTIONS:
        checks.append(("compiled >= 3x thriftpy2-cybin", "small %s" % d,
                       ratio("small", d, "aiothrift-compiled", "thriftpy2-cybin"), 3.0))
    for w in WORKLOADS:
        for d in DIRECTIONS:
            checks.append(("python twin >= 1.5x thriftpy2-pure", "%s %s" % (w, d),
                           ratio(w, d, "aiothrift-python", "thriftpy2-pure"), 1.5))
    for name, where, r, target in checks:
        out.append("| %s | %s | %s | %s |" % (
            name, where, "-" if r is None else "%.2fx" % r, _verdict(r, target)))

    out.append("")
    out.append("For information, compiled vs the other candidates (speed-up):\n")
    others = [c for c in present if c != "aiothrift-compiled"]
    out.append("| workload | " + " | ".join("vs " + c for c in others) + " |")
    out.append("|---|" + "--:|" * len(others))
    for w in WORKLOADS:
        for d in DIRECTIONS:
            cells = []
            for c in others:
                r = ratio(w, d, "aiothrift-compiled", c)
                cells.append("-" if r is None else "%.2fx" % r)
            out.append("| %s %s | %s |" % (w, d, " | ".join(cells)))

    blob = [(c, extra.get(("blob", "encode", c), {}), extra.get(("blob", "decode", c), {}))
            for c in present]
    if any("copies" in e or "copies" in d for _, e, d in blob):
        out.append("")
        out.append("1 MiB blob: full copies of the blob per call (target for aiothrift-compiled: "
                   "at most 2 each way). *copies* = MiB written to fresh memory "
                   "(page faults, `bench/copies.py`; sees C/C++ `malloc` too); *tracemalloc* = "
                   "peak of Python's allocators / 1 MiB; *time/memcpy* = median time over the "
                   "median of one 1 MiB `bytes(bytearray)` copy (%s) in the same run.\n"
                   % ("-" if memcpy is None else _fmt_time(memcpy)))
        out.append("| candidate | encode copies | tracemalloc | time/memcpy "
                   "| decode copies | tracemalloc | time/memcpy | target |")
        out.append("|---|--:|--:|--:|--:|--:|--:|---|")
        for c, e, d in blob:
            if "copies" not in e and "copies" not in d:
                continue
            if memcpy:
                e = dict(e, time_vs_memcpy=med[("blob", "encode")][c] / memcpy)
                d = dict(d, time_vs_memcpy=med[("blob", "decode")][c] / memcpy)
            verdict = ""
            if c == "aiothrift-compiled":
                ok = e.get("copies", 99) <= 2.05 and d.get("copies", 99) <= 2.05
                verdict = "**met**" if ok else "missed"
            out.append("| %s | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f | %s |" % (
                c, e.get("copies", float("nan")), e.get("tracemalloc_copies", float("nan")),
                e.get("time_vs_memcpy", float("nan")), d.get("copies", float("nan")),
                d.get("tracemalloc_copies", float("nan")), d.get("time_vs_memcpy", float("nan")),
                verdict))

    mi = data.get("machine_info", {})
    ci = data.get("commit_info", {})
    out.append("")
    out.append("Run: %s, Python %s, %s, commit %s%s." % (
        data.get("datetime", "?"), mi.get("python_version", "?"),
        mi.get("cpu", {}).get("brand_raw", "?"), (ci.get("id") or "?")[:10],
        " (dirty)" if ci.get("dirty") else ""))
    return "\n".join(out)


# --------------------------------------------------------------------------
# rpc

def rpc_tables(data: dict) -> str:
    results = data["results"]  # [{loop, candidate, method, inflight, calls_per_s, ...}]
    out: List[str] = []
    methods = data.get("methods") or sorted({r["method"] for r in results})
    loops = data.get("loops") or sorted({r["loop"] for r in results})
    cands = data.get("candidates") or sorted({r["candidate"] for r in results})

    def get(loop: str, cand: str, method: str, inflight: int) -> Optional[float]:
        for r in results:
            if (r["loop"], r["candidate"], r["method"], r["inflight"]) == (loop, cand, method, inflight):
                return r.get("calls_per_s")
        return None

    def fmt(v: Optional[float]) -> str:
        if v is None:
            return "-"
        if v >= 10000:
            return "%.0fk" % (v / 1000)
        if v >= 1000:
            return "%.1fk" % (v / 1000)
        return "%.0f" % v

    for loop in loops:
        out.append("**%s** — calls/s (median of %s runs of up to %s s or %s calls each)\n" % (
            loop, data.get("repeat", "?"), data.get("duration", "?"), data.get("max_calls", "?")))
        out.append("| candidate | " + " | ".join(
            "%s x%d" % (m, n) for m in methods for n in data.get("inflights", (1, 64))) + " |")
        out.append("|---|" + "--:|" * (len(methods) * len(data.get("inflights", (1, 64)))))
        for c in cands:
            cells = [fmt(get(loop, c, m, n)) for m in methods for n in data.get("inflights", (1, 64))]
            out.append("| %s | %s |" % (c, " | ".join(cells)))
        out.append("")

    def cpu(loop: str, cand: str, method: str, n: int) -> str:
        for r in results:
            if (r["loop"], r["candidate"], r["method"], r["inflight"]) == (loop, cand, method, n):
                sv, cv = r.get("server_cpu_us_per_call"), r.get("client_cpu_us_per_call")
                if sv is None and cv is None:
                    return "-"
                return "%s / %s" % ("-" if sv is None else "%.1f" % sv, "-" if cv is None else "%.1f" % cv)
        return "-"

    inflights = data.get("inflights", (1, 64))
    for loop in loops:
        out.append("**%s** — CPU µs per call, server / client (the cost of a call on each side, "
                   "robust to other load; near the whole core per call = that side is the "
                   "bottleneck)\n" % loop)
        out.append("| candidate | " + " | ".join("%s x%d" % (m, n) for m in methods for n in inflights) + " |")
        out.append("|---|" + "--:|" * (len(methods) * len(inflights)))
        for c in cands:
            out.append("| %s | %s |" % (c, " | ".join(cpu(loop, c, m, n) for m in methods for n in inflights)))
        out.append("")

    out.append("Targets (same run):\n")
    out.append("| loop | target | ours | theirs | ratio | verdict |")
    out.append("|---|---|--:|--:|--:|---|")
    ours = data.get("aiothrift_candidate", "aiothrift-framed")
    tp2 = [c for c in cands if c.startswith("thriftpy2")]

    def p50(loop: str, cand: str, method: str) -> Optional[float]:
        for r in results:
            if (r["loop"], r["candidate"], r["method"], r["inflight"]) == (loop, cand, method, 1):
                return r.get("p50_us")
        return None

    def best(loop: str, method: str, n: int) -> Tuple[Optional[float], str]:
        vals = [(get(loop, c, method, n), c) for c in tp2]
        vals = [(v, c) for v, c in vals if v]
        return max(vals) if vals else (None, "-")

    for loop in loops:
        a = get(loop, ours, "add", 1)
        raw = get(loop, "raw-echo", "add", 1)
        r = a / raw if a and raw else None
        out.append("| %s | sequential add >= 70%% of raw echo | %s | %s (raw-echo) | %s | %s |" % (
            loop, fmt(a), fmt(raw), "-" if r is None else "%.0f%%" % (r * 100), _verdict(r, 0.70)))
        a, raw = p50(loop, ours, "add"), p50(loop, "raw-echo", "add")
        r = raw / a if a and raw else None
        out.append("| %s | (same, by p50 latency: raw p50 / ours) | %s µs | %s µs | %s | %s |" % (
            loop, "-" if a is None else "%.0f" % a, "-" if raw is None else "%.0f" % raw,
            "-" if r is None else "%.0f%%" % (r * 100), _verdict(r, 0.70)))
        for method, target in (("add", 3.0), ("roundtrip", 20.0)):
            a = get(loop, ours, method, 64)
            b, bc = best(loop, method, 64)
            r = a / b if a and b else None
            out.append("| %s | 64 in flight %s >= %gx thriftpy2.contrib.aio best | %s | %s (%s) | %s | %s |"
                       % (loop, method, target, fmt(a), fmt(b), bc,
                          "-" if r is None else "%.1fx" % r, _verdict(r, target)))
    out.append("")
    m = data.get("machine", {})
    if m:
        out.append("Run: %s; %s" % (data.get("datetime", "?"),
                                    ", ".join("%s %s" % (k, v) for k, v in m.items())))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_file")
    ap.add_argument("--rpc", action="store_true", help="the file is rpc_bench.py --json output")
    ap.add_argument("--slim", metavar="OUT",
                    help="also write the codec JSON without the raw timings (stats.data: tens "
                         "of MB) to OUT (may be the input file)")
    args = ap.parse_args(argv)
    with open(args.json_file) as f:
        data = json.load(f)
    if args.slim and not args.rpc:
        for b in data.get("benchmarks", []):
            b.get("stats", {}).pop("data", None)
        with open(args.slim, "w") as f:
            json.dump(data, f, indent=1)
    print(rpc_tables(data) if args.rpc else codec_tables(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
