"""Profile one RPC cell of ``bench/rpc_bench.py`` with cProfile.

    python bench/rpc_profile.py --side client --candidate aiothrift-framed --method add --inflight 64
    python bench/rpc_profile.py --side server --candidate aiothrift-framed --method roundtrip --inflight 64

The server and the client run in two processes pinned to two cores, as in
the benchmark; ``--side`` says which one runs under cProfile.  Prints the
top functions by own time (cProfile slows pure-Python code several times:
read the shares, not the absolute times).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import multiprocessing as mp
import pstats
import sys
import time

import rpc_bench as rb


def _profiled(fn, sort: str, top: int, conn, *args):
    prof = cProfile.Profile()
    prof.enable()
    try:
        res = fn(*args)
    finally:
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(top)
    conn.send(("profile", out.getvalue()))
    return res


class GcMeter:
    """Time spent in the cyclic garbage collector, per generation."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.time = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.collected = 0

    def __call__(self, phase, info) -> None:
        if phase == "start":
            self.t0 = time.perf_counter()
        else:
            g = info["generation"]
            self.time[g] += time.perf_counter() - self.t0
            self.count[g] += 1
            self.collected += info.get("collected", 0)

    def report(self, wall: float) -> str:
        return "GC: " + ", ".join(
            "gen%d %d runs %.0f ms" % (g, self.count[g], self.time[g] * 1e3) for g in range(3)) + (
            "; %.1f%% of %.1f s wall; %d objects collected" % (
                sum(self.time) / wall * 100, wall, self.collected))


def server_child(loop_name, candidate, cpu, conn, profile, sort, top, gc_stats=False):
    rb.pin(cpu)
    tp2 = rb.service()
    loop = rb.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    port, _srv = loop.run_until_complete(rb._start_server(candidate, tp2))
    conn.send(("port", port))
    loop.add_reader(conn.fileno(), loop.stop)
    meter = GcMeter() if gc_stats else None
    if meter is not None:
        gc.callbacks.append(meter)
    t0 = time.perf_counter()
    if profile:
        _profiled(loop.run_forever, sort, top, conn)
    else:
        loop.run_forever()
    if meter is not None:
        conn.send(("gc", meter.report(time.perf_counter() - t0)))


def client_child(loop_name, candidate, port, cfg, cpu, conn, profile, sort, top):
    rb.pin(cpu)
    tp2 = rb.service()
    loop = rb.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    method, n = cfg["methods"][0], cfg["inflights"][0]

    async def run():
        if candidate.startswith("raw-"):
            msg = rb.framed_call(tp2, method)
            fn = rb._run_raw_callback if candidate == "raw-echo" else rb._run_raw_await
            return await fn(port, msg, n, cfg["duration"], cfg["max_calls"], 30)
        clients, close = await rb._connect_api(candidate, tp2, port, n)
        try:
            return await rb._run_api(clients, method, rb.method_args(tp2, method), n,
                                     cfg["duration"], cfg["max_calls"], 30)
        finally:
            await close()

    if profile:
        res = _profiled(loop.run_until_complete, sort, top, conn, run())
    else:
        res = loop.run_until_complete(run())
    conn.send(("result", res))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("client", "server", "none"), default="client")
    ap.add_argument("--loop", choices=rb.LOOPS, default="uvloop")
    ap.add_argument("--candidate", default="aiothrift-framed", choices=rb.CANDIDATES)
    ap.add_argument("--method", default="add", choices=rb.METHODS)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--max-calls", type=int, default=2_000_000)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--gc", action="store_true", help="report the server's time in the garbage collector")
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    cfg = {"methods": [args.method], "inflights": [args.inflight], "duration": args.duration,
           "max_calls": args.max_calls}
    s_parent, s_child = ctx.Pipe()
    server = ctx.Process(target=server_child, daemon=True, args=(
        args.loop, args.candidate, 0, s_child, args.side == "server", args.sort, args.top, args.gc))
    server.start()
    kind, port = s_parent.recv()
    c_parent, c_child = ctx.Pipe()
    client = ctx.Process(target=client_child, daemon=True, args=(
        args.loop, args.candidate, port, cfg, 1, c_child, args.side == "client", args.sort, args.top))
    client.start()
    result = None
    while result is None:
        kind, val = c_parent.recv()
        if kind == "profile":
            print(val)
        else:
            result = val
    client.join(10)
    s_parent.send("stop")
    if args.side == "server":
        kind, val = s_parent.recv()
        print(val)
    if args.gc:
        kind, val = s_parent.recv()
        print(val)
    server.join(10)
    print("%s %s %s x%d: %.0f calls/s (%s profiled)" % (
        args.loop, args.candidate, args.method, args.inflight, result["calls_per_s"], args.side),
        file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
