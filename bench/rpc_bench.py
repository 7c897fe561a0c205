"""RPC benchmarks: calls/s of aiothrift against thriftpy2.contrib.aio and a raw echo.

Run from the repository root (so that the in-tree aiothrift is measured)::

    python bench/rpc_bench.py --quick                         # both loops, < 2 min
    python bench/rpc_bench.py --json bench/results/rpc.json   # both loops, median of 3
    python bench/rpc_bench.py --loop uvloop --quick
    python bench/report.py --rpc bench/results/rpc.json       # the README tables

For every event loop (uvloop, asyncio) and candidate, a server process pinned
to one core (``--server-cpu``, default 0) and a client process pinned to the
other (``--client-cpu``, default 1) talk over 127.0.0.1.  The client runs
every method of ``tests/idl/bench.thrift`` it is asked for (ping, add, echo of
100 B, roundtrip of the medium Order, echo_bytes of 1 MiB) sequentially (1 in
flight) and with 64 in flight.  Candidates:

``aiothrift-framed`` / ``aiothrift-buffered``
    ``aiothrift.create_server`` / ``create_connection`` (``framed=True/False``);
    64 in flight = 64 tasks on ONE connection (pipelined by seqid).
``aiothrift-framed-sync``
    as ``aiothrift-framed`` but the server's handler methods are plain
    functions instead of ``async def`` (aiothrift accepts both; thriftpy2's
    server needs coroutines, so the comparisons use the async handler).
``thriftpy2-aio-buffered`` / ``thriftpy2-aio-framed``
    ``thriftpy2.contrib.aio`` with its buffered / framed transport (its best
    is whichever is faster).  It cannot pipeline: 64 in flight = 64
    connections, one client and one task each.
``raw-echo``
    the ceiling: an asyncio Protocol server that writes back every complete
    frame it received (one write per ``data_received`` batch) and a callback
    client that keeps N pre-encoded framed requests of the method in flight,
    counting replies (no Futures, no decoding).
``raw-await``
    the same server; the client awaits one Future per call from N tasks: the
    floor of any ``await conn.method()`` API.

Every measurement is bounded in count and time: it stops issuing calls after
``--duration`` seconds or ``--max-calls`` calls, whichever comes first, then
waits for the calls in flight (at most ``--grace`` seconds, else the cell
reports an error).  Each cell is preceded by a short warm-up and repeated
``--repeat`` times, the repetitions interleaved over all candidates; the
median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing as mp
import os
import platform
import statistics
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for p in (str(REPO), str(BENCH_DIR)):
    if p not in sys.path:
        sys.path.insert(0, p)

LOOPS = ("uvloop", "asyncio")
CANDIDATES = ("raw-echo", "raw-await", "aiothrift-framed", "aiothrift-buffered",
              "aiothrift-framed-sync", "thriftpy2-aio-buffered", "thriftpy2-aio-framed")
METHODS = ("ping", "add", "echo", "roundtrip", "echo_bytes")
INFLIGHTS = (1, 64)
ECHO_100 = "x" * 100


# --------------------------------------------------------------------------
# shared set-up (runs in the children)

def pin(cpu: Optional[int]) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError(name)


def service():
    import bench_common as bc
    return bc.tp2_module()


def method_args(tp2: Any, method: str) -> tuple:
    import bench_common as bc
    if method == "ping":
        return ()
    if method == "add":
        return (1, 2)
    if method == "echo":
        return (ECHO_100,)
    if method == "roundtrip":
        return (bc.make_order(tp2, 10),)
    if method == "echo_bytes":
        return (bc.blob_bytes(),)
    raise ValueError(method)


def expected_result(tp2: Any, method: str) -> Any:
    args = method_args(tp2, method)
    return {"ping": None, "add": 3}.get(method, args[0] if args else None)


def framed_call(tp2: Any, method: str) -> bytes:
    """The framed CALL message of ``method`` (what a framed client writes)."""
    from thriftpy2.protocol.cybin import TCyBinaryProtocol
    from thriftpy2.thrift import TMessageType
    from thriftpy2.transport.memory import TCyMemoryBuffer

    args_cls = getattr(tp2.Bench, method + "_args")
    args = args_cls(*method_args(tp2, method))
    buf = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(buf)
    proto.write_message_begin(method, TMessageType.CALL, 1)
    proto.write_struct(args)
    proto.write_message_end()
    buf.flush()
    body = buf.getvalue()
    return struct.pack("!i", len(body)) + body


class Handler:
    """The Bench service, the same for every server (async, as thriftpy2.contrib.aio needs)."""

    def __init__(self, tp2: Any) -> None:
        self._tp2 = tp2

    async def ping(self):
        return None

    async def add(self, a, b):
        return a + b

    async def echo(self, s):
        return s

    async def echo_bytes(self, b):
        return b

    async def roundtrip(self, o):
        return o

    async def fail(self, msg):
        raise self._tp2.BenchError(message=msg, code=1)

    async def notify(self, event):
        return None


class SyncHandler:
    """The same service with plain (non-async) methods."""

    def __init__(self, tp2: Any) -> None:
        self._tp2 = tp2

    def ping(self):
        return None

    def add(self, a, b):
        return a + b

    def echo(self, s):
        return s

    def echo_bytes(self, b):
        return b

    def roundtrip(self, o):
        return o

    def fail(self, msg):
        raise self._tp2.BenchError(message=msg, code=1)

    def notify(self, event):
        return None


# --------------------------------------------------------------------------
# raw echo

def _frames_end(buf: bytearray, pos: int = 0) -> Tuple[int, int]:
    """(number of complete frames from ``pos``, end offset of the last one)."""
    n = 0
    size = len(buf)
    unpack = struct.unpack_from
    while size - pos >= 4:
        (flen,) = unpack("!i", buf, pos)
        end = pos + 4 + flen
        if end > size:
            break
        pos = end
        n += 1
    return n, pos


class EchoServerProtocol(asyncio.Protocol):
    """Writes back every complete frame, one write per ``data_received``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n, end = _frames_end(buf)
        if n:
            self.transport.write(bytes(buf[:end]))
            del buf[:end]


class RawCallbackClient(asyncio.Protocol):
    """Keeps ``inflight`` copies of ``msg`` in flight; counts echoed frames."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport = None
        self.lost: Optional[asyncio.Future] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def start(self, msg: bytes, inflight: int, max_calls: int, deadline: float,
              done: asyncio.Future, lat: Optional[list]) -> None:
        self.msg, self.max_calls, self.deadline, self.done = msg, max_calls, deadline, done
        self.loop = asyncio.get_running_loop()
        self.lat = lat
        self.sent = min(inflight, max_calls)
        self.received = 0
        self.stopped = False
        self.t_sent = time.perf_counter()
        self.transport.write(msg * self.sent)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n, end = _frames_end(buf)
        if not n:
            return
        del buf[:end]
        self.received += n
        if self.lat is not None:
            now = time.perf_counter()
            self.lat.append(now - self.t_sent)
            self.t_sent = now
        if not self.stopped and (self.sent >= self.max_calls or self.loop.time() >= self.deadline):
            self.stopped = True
        if self.stopped:
            if self.received >= self.sent and not self.done.done():
                self.done.set_result(self.received)
            return
        k = min(n, self.max_calls - self.sent)
        self.sent += k
        self.transport.write(self.msg * k if k > 1 else self.msg)

    def connection_lost(self, exc) -> None:
        done = getattr(self, "done", None)
        if done is not None and not done.done():
            done.set_exception(ConnectionError("raw echo connection lost: %r" % (exc,)))


class RawAwaitClient(asyncio.Protocol):
    """Each call writes ``msg`` and awaits one Future, resolved in reply order."""

    def __init__(self) -> None:
        import collections
        self.buf = bytearray()
        self.waiters = collections.deque()
        self.transport = None
        self.exc: Optional[BaseException] = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n, end = _frames_end(buf)
        if not n:
            return
        del buf[:end]
        popleft = self.waiters.popleft
        for _ in range(n):
            fut = popleft()
            if not fut.done():
                fut.set_result(None)

    def connection_lost(self, exc) -> None:
        self.exc = ConnectionError("raw echo connection lost: %r" % (exc,))
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(self.exc)

    def call(self, msg: bytes) -> asyncio.Future:
        fut = self.loop.create_future()
        if self.exc is not None:
            fut.set_exception(self.exc)
            return fut
        self.waiters.append(fut)
        self.transport.write(msg)
        return fut


# --------------------------------------------------------------------------
# servers (child process)

async def _start_server(candidate: str, tp2: Any):
    """Start the server of ``candidate`` on 127.0.0.1, port 0; return (port, closer)."""
    loop = asyncio.get_running_loop()
    if candidate.startswith("raw-"):
        srv = await loop.create_server(EchoServerProtocol, "127.0.0.1", 0)
        return srv.sockets[0].getsockname()[1], srv
    if candidate.startswith("aiothrift-"):
        import aiothrift
        handler = SyncHandler(tp2) if candidate.endswith("-sync") else Handler(tp2)
        srv = await aiothrift.create_server(tp2.Bench, handler, ("127.0.0.1", 0),
                                            framed=(candidate != "aiothrift-buffered"))
        port = getattr(srv, "port", None)
        if port is None:
            port = srv.sockets[0].getsockname()[1]
        return port, srv
    if candidate.startswith("thriftpy2-aio-"):
        from thriftpy2.contrib.aio.processor import TAsyncProcessor
        from thriftpy2.contrib.aio.protocol.binary import TAsyncBinaryProtocolFactory
        from thriftpy2.contrib.aio.server import TAsyncServer
        from thriftpy2.contrib.aio.socket import TAsyncServerSocket
        # make_server() refuses port 0 and closes every connection after
        # client_timeout (3 s by default): build the server by hand, no timeout.
        sock = TAsyncServerSocket(host="127.0.0.1", port=0, client_timeout=None)
        server = TAsyncServer(TAsyncProcessor(tp2.Bench, Handler(tp2)), sock,
                              iprot_factory=TAsyncBinaryProtocolFactory(),
                              itrans_factory=_tp2_trans_factory(candidate), loop=loop)
        server.trans.listen()
        server.server = await server.trans.accept(server.handle)
        return sock.raw_sock.getsockname()[1], server.server
    raise ValueError(candidate)


def _tp2_trans_factory(candidate: str):
    if candidate == "thriftpy2-aio-framed":
        from thriftpy2.contrib.aio.transport.framed import TAsyncFramedTransportFactory
        return TAsyncFramedTransportFactory()
    from thriftpy2.contrib.aio.transport.buffered import TAsyncBufferedTransportFactory
    return TAsyncBufferedTransportFactory()


def server_main(loop_name: str, candidate: str, cpu: Optional[int], conn) -> None:
    pin(cpu)
    tp2 = service()
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        port, _srv = loop.run_until_complete(_start_server(candidate, tp2))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("port", port))
    # Serve until the parent says stop (or goes away).
    loop.add_reader(conn.fileno(), loop.stop)
    loop.run_forever()


# --------------------------------------------------------------------------
# clients (child process)

async def _connect_api(candidate: str, tp2: Any, port: int, n: int) -> Tuple[List[Any], Callable]:
    """``n`` clients for an RPC candidate (aiothrift: one connection for all)."""
    if candidate.startswith("aiothrift-"):
        import aiothrift
        conn = await aiothrift.create_connection(
            tp2.Bench, ("127.0.0.1", port), framed=(candidate != "aiothrift-buffered"), timeout=None)

        async def close():
            res = conn.close()
            if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
                await res
        return [conn] * n, close
    if candidate.startswith("thriftpy2-aio-"):
        from thriftpy2.contrib.aio.protocol.binary import TAsyncBinaryProtocolFactory
        from thriftpy2.contrib.aio.rpc import make_client
        clients = []
        for _ in range(n):
            clients.append(await make_client(
                tp2.Bench, "127.0.0.1", port, proto_factory=TAsyncBinaryProtocolFactory(),
                trans_factory=_tp2_trans_factory(candidate), timeout=None))

        async def close():
            for c in clients:
                c.close()
        return clients, close
    raise ValueError(candidate)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SERVER_PID: Optional[int] = None  # set in the client process


def server_cpu() -> Optional[float]:
    """CPU seconds (user + system) used so far by the server process."""
    if _SERVER_PID is None:
        return None
    try:  # nanoseconds on a CPU, of the main (event loop) thread
        with open("/proc/%d/schedstat" % _SERVER_PID) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        pass
    try:  # clock ticks (10 ms): coarse
        with open("/proc/%d/stat" % _SERVER_PID) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


class CpuMeter:
    """CPU time of both processes over a measurement, per call and as a share
    of the wall time (the side near 100 % is the bottleneck)."""

    def __enter__(self) -> "CpuMeter":
        self.c0, self.s0 = time.process_time(), server_cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.c1, self.s1 = time.process_time(), server_cpu()

    def into(self, row: dict) -> dict:
        calls, elapsed = row.get("calls") or 0, row.get("elapsed_s") or 0
        client = self.c1 - self.c0
        row["client_cpu_share"] = client / elapsed if elapsed else None
        row["client_cpu_us_per_call"] = client / calls * 1e6 if calls else None
        if self.s0 is not None and self.s1 is not None:
            server = self.s1 - self.s0
            row["server_cpu_share"] = server / elapsed if elapsed else None
            row["server_cpu_us_per_call"] = server / calls * 1e6 if calls else None
        return row


def _summary(count: int, elapsed: float, lat: Optional[List[float]]) -> dict:
    out = {"calls": count, "elapsed_s": elapsed,
           "calls_per_s": count / elapsed if elapsed > 0 else 0.0}
    if lat:
        lat = sorted(lat)
        out["p50_us"] = lat[len(lat) // 2] * 1e6
        out["p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e6
    return out


async def _run_api(clients: List[Any], method: str, args: tuple, inflight: int,
                   duration: float, max_calls: int, grace: float) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    started = 0
    done = 0
    lat: Optional[List[float]] = [] if inflight == 1 else None
    perf = time.perf_counter

    async def worker(client):
        nonlocal started, done
        fn = getattr(client, method)
        while started < max_calls and loop.time() < deadline:
            started += 1
            if lat is not None:
                t0 = perf()
                await fn(*args)
                lat.append(perf() - t0)
            else:
                await fn(*args)
            done += 1

    t0 = perf()
    await asyncio.wait_for(asyncio.gather(*[worker(clients[i]) for i in range(inflight)]),
                           duration + grace)
    return _summary(done, perf() - t0, lat)


async def _run_raw_callback(port: int, msg: bytes, inflight: int, duration: float,
                            max_calls: int, grace: float) -> dict:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(RawCallbackClient, "127.0.0.1", port)
    try:
        done = loop.create_future()
        lat: Optional[List[float]] = [] if inflight == 1 else None
        t0 = time.perf_counter()
        proto.start(msg, inflight, max_calls, loop.time() + duration, done, lat)
        count = await asyncio.wait_for(done, duration + grace)
        return _summary(count, time.perf_counter() - t0, lat)
    finally:
        transport.close()


async def _run_raw_await(port: int, msg: bytes, inflight: int, duration: float,
                         max_calls: int, grace: float) -> dict:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(RawAwaitClient, "127.0.0.1", port)

    class Caller:  # the API shape of _run_api: client.<method>(*args)
        def __getattr__(self, name):
            return lambda: proto.call(msg)

    try:
        return await _run_api([Caller()] * inflight, "x", (), inflight, duration, max_calls, grace)
    finally:
        transport.close()


async def _check_api(clients: List[Any], tp2: Any, methods) -> None:
    """Every method answers correctly before anything is timed."""
    for method in methods:
        want = expected_result(tp2, method)
        got = await asyncio.wait_for(getattr(clients[0], method)(*method_args(tp2, method)), 30)
        if got != want:
            raise AssertionError("%s returned %r..., expected %r..." % (
                method, repr(got)[:80], repr(want)[:80]))


async def _check_raw(port: int, msg: bytes) -> None:
    loop = asyncio.get_running_loop()
    got = bytearray()
    fut = loop.create_future()

    class P(asyncio.Protocol):
        def data_received(self, data):
            got.extend(data)
            if len(got) >= len(msg) and not fut.done():
                fut.set_result(None)

    transport, _ = await loop.create_connection(P, "127.0.0.1", port)
    try:
        transport.write(msg)
        await asyncio.wait_for(fut, 30)
        if bytes(got) != msg:
            raise AssertionError("raw echo returned other bytes")
    finally:
        transport.close()


async def _client(candidate: str, port: int, cfg: dict) -> List[dict]:
    tp2 = service()
    methods, inflights = cfg["methods"], cfg["inflights"]
    duration, max_calls, grace = cfg["duration"], cfg["max_calls"], cfg["grace"]
    warmup = cfg["warmup"]
    results = []
    if candidate.startswith("raw-"):
        msgs = {m: framed_call(tp2, m) for m in methods}
        for m in methods:
            await _check_raw(port, msgs[m])
        run = _run_raw_callback if candidate == "raw-echo" else _run_raw_await
        for m in methods:
            for n in inflights:
                row = {"candidate": candidate, "method": m, "inflight": n}
                try:
                    await run(port, msgs[m], n, warmup, max_calls, grace)
                    with CpuMeter() as cpu:
                        row.update(await run(port, msgs[m], n, duration, max_calls, grace))
                    cpu.into(row)
                except Exception as e:  # noqa: BLE001  (report, go on)
                    row["error"] = "%s: %s" % (type(e).__name__, e)
                results.append(row)
        return results

    clients, close = await _connect_api(candidate, tp2, port, 1)
    try:
        await _check_api(clients, tp2, methods)
    finally:
        await close()
    for m in methods:
        args = method_args(tp2, m)
        for n in inflights:
            row = {"candidate": candidate, "method": m, "inflight": n}
            clients, close = await _connect_api(candidate, tp2, port, n)
            try:
                await _run_api(clients, m, args, n, warmup, max_calls, grace)
                with CpuMeter() as cpu:
                    row.update(await _run_api(clients, m, args, n, duration, max_calls, grace))
                cpu.into(row)
            except Exception as e:  # noqa: BLE001  (report, go on)
                row["error"] = "%s: %s" % (type(e).__name__, e)
            finally:
                try:
                    await close()
                except Exception:  # noqa: BLE001
                    pass
            results.append(row)
    return results


def client_main(loop_name: str, candidate: str, port: int, cfg: dict, cpu: Optional[int], conn) -> None:
    global _SERVER_PID
    pin(cpu)
    _SERVER_PID = cfg.get("server_pid")
    loop = new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        rows = loop.run_until_complete(_client(candidate, port, cfg))
        for r in rows:
            r["loop"] = loop_name
        conn.send(("ok", rows))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        loop.close()


# --------------------------------------------------------------------------
# orchestration (parent)

def run_pair(ctx, loop_name: str, candidate: str, cfg: dict, args) -> List[dict]:
    """One server process and one client process for (loop, candidate)."""
    s_parent, s_child = ctx.Pipe()
    server = ctx.Process(target=server_main, name="bench-server",
                         args=(loop_name, candidate, args.server_cpu, s_child), daemon=True)
    server.start()
    try:
        if not s_parent.poll(60):
            raise RuntimeError("server did not start in 60 s")
        kind, val = s_parent.recv()
        if kind != "port":
            raise RuntimeError("server failed:\n" + val)
        c_parent, c_child = ctx.Pipe()
        cfg = dict(cfg, server_pid=server.pid)
        client = ctx.Process(target=client_main, name="bench-client",
                             args=(loop_name, candidate, val, cfg, args.client_cpu, c_child),
                             daemon=True)
        client.start()
        budget = 60 + len(cfg["methods"]) * len(cfg["inflights"]) * (
            cfg["duration"] + cfg["warmup"] + 2 * cfg["grace"])
        if not c_parent.poll(budget):
            client.kill()
            raise RuntimeError("client did not finish in %.0f s" % budget)
        kind, val = c_parent.recv()
        client.join(10)
        if kind != "ok":
            raise RuntimeError("client failed:\n" + val)
        return val
    finally:
        try:
            s_parent.send("stop")
        except OSError:
            pass
        server.join(5)
        if server.is_alive():
            server.kill()
            server.join(5)


def machine_info() -> Dict[str, str]:
    info = {"nproc": str(os.cpu_count())}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["python"] = platform.python_version()
    try:
        from importlib.metadata import version
        for dist in ("thriftpy2", "uvloop", "thrift"):
            info[dist] = version(dist)
    except Exception:  # noqa: BLE001
        pass
    try:
        info["load_avg_at_start"] = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        pass
    return info


def aggregate(rows: List[dict]) -> List[dict]:
    """Median over the repetitions of each (loop, candidate, method, inflight)."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r["loop"], r["candidate"], r["method"], r["inflight"]), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        row = dict(zip(("loop", "candidate", "method", "inflight"), key))
        row["runs"] = [round(r["calls_per_s"], 1) for r in ok]
        if ok:
            row["calls_per_s"] = statistics.median(r["calls_per_s"] for r in ok)
            for k in ("p50_us", "p99_us", "client_cpu_share", "client_cpu_us_per_call",
                      "server_cpu_share", "server_cpu_us_per_call"):
                vals = [r[k] for r in ok if r.get(k) is not None]
                if vals:
                    row[k] = statistics.median(vals)
        errors = [r["error"] for r in rs if "error" in r]
        if errors:
            row["errors"] = errors
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", choices=("uvloop", "asyncio", "both"), default="both")
    ap.add_argument("--quick", action="store_true",
                    help="short cells, one repetition (whole run < 2 min)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 0.6, quick 0.2)")
    ap.add_argument("--max-calls", type=int, default=200_000, help="calls per measurement at most")
    ap.add_argument("--repeat", type=int, help="repetitions, median reported (default 3, quick 1)")
    ap.add_argument("--grace", type=float, default=20.0,
                    help="seconds to wait for the calls in flight after a measurement")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--inflight", default=",".join(map(str, INFLIGHTS)))
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    duration = args.duration or (0.2 if args.quick else 0.6)
    repeat = args.repeat or (1 if args.quick else 3)
    loops = LOOPS if args.loop == "both" else (args.loop,)
    cands = [c for c in args.candidates.split(",") if c]
    for c in cands:
        if c not in CANDIDATES:
            ap.error("unknown candidate %r" % c)
    cfg = {"methods": [m for m in args.methods.split(",") if m],
           "inflights": [int(n) for n in args.inflight.split(",") if n],
           "duration": duration, "max_calls": args.max_calls, "grace": args.grace,
           "warmup": max(0.05, duration / 5)}
    if os.cpu_count() and os.cpu_count() < 2:
        print("warning: fewer than 2 CPUs, server and client share one", file=sys.stderr)
        args.server_cpu = args.client_cpu = None

    ctx = mp.get_context("spawn")
    info = machine_info()
    print("rpc bench: loops=%s candidates=%s duration=%.2fs repeat=%d max_calls=%d; %s" % (
        ",".join(loops), ",".join(cands), duration, repeat, args.max_calls,
        ", ".join("%s %s" % kv for kv in info.items())), file=sys.stderr)
    t_start = time.time()
    rows: List[dict] = []
    failures: List[str] = []
    for rep in range(repeat):
        for loop_name in loops:
            for cand in cands:
                t0 = time.time()
                try:
                    got = run_pair(ctx, loop_name, cand, cfg, args)
                except Exception as e:  # noqa: BLE001  (report, go on)
                    failures.append("%s %s: %s" % (loop_name, cand, e))
                    print("  FAILED %s %s: %s" % (loop_name, cand, e), file=sys.stderr)
                    continue
                rows.extend(got)
                brief = " ".join(
                    "%s/%d=%s" % (r["method"], r["inflight"],
                                  "ERR" if "error" in r else "%.0f" % r["calls_per_s"]) for r in got)
                print("  rep %d %-7s %-22s %5.1fs %s" % (rep + 1, loop_name, cand, time.time() - t0, brief),
                      file=sys.stderr)
                for r in got:
                    if "error" in r:
                        print("    error %s/%d: %s" % (r["method"], r["inflight"], r["error"]),
                              file=sys.stderr)
    results = aggregate(rows)
    out = {
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": info, "loops": list(loops), "candidates": cands,
        "methods": cfg["methods"], "inflights": cfg["inflights"], "duration": duration,
        "max_calls": args.max_calls, "repeat": repeat, "aiothrift_candidate": "aiothrift-framed",
        "wall_s": round(time.time() - t_start, 1), "failures": failures,
        "results": results, "raw_rows": rows,
    }
    try:
        out["machine"]["load_avg_at_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        pass
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    from report import rpc_tables
    print(rpc_tables(out))
    print("\nwall time %.0f s" % out["wall_s"], file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
