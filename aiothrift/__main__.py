"""``python -m aiothrift demo``: a real server and client on 127.0.0.1.

Starts a server on a free port with the benchmark service
(``tests/idl/bench.thrift``, embedded below so an installed package needs no
data files), calls it in every way the library supports, prints what came
back and the calls/s, and exits.  Every step is bounded in count and the
whole run in time.

Options: ``--uvloop`` runs on uvloop (it must be installed; the library never
installs it by itself), ``--framed`` uses the framed transport, ``--calls N``
sets the size of the load steps.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import sys
import time
from typing import Any, List, Optional, Sequence

import thriftpy2

import aiothrift
from aiothrift import ThriftAppError

#: tests/idl/bench.thrift, plus a client-side view with one method the server
#: does not have (to show UNKNOWN_METHOD).
DEMO_IDL = """
namespace py bench

struct Item {
  1: i64 id,
  2: string name,
  3: double price,
  4: list<string> tags,
  5: map<string, i32> counts,
  6: optional binary blob,
  7: bool active,
}

struct Order {
  1: i64 order_id,
  2: string customer,
  3: list<Item> items,
  4: map<string, string> meta,
  5: i32 status,
}

exception BenchError {
  1: string message,
  2: i32 code,
}

service Bench {
  void ping(),
  i64 add(1: i64 a, 2: i64 b),
  string echo(1: string s),
  binary echo_bytes(1: binary b),
  Order roundtrip(1: Order o),
  void fail(1: string msg) throws (1: BenchError err),
  oneway void notify(1: string event),
}

service BenchClientView extends Bench {
  void not_implemented(),
}
"""

#: Whole-run bound, seconds.
RUN_TIMEOUT = 120.0


def load_demo_idl() -> Any:
    """The demo IDL as a thriftpy2 module."""
    return thriftpy2.load_fp(io.StringIO(DEMO_IDL), module_name="aiothrift_demo_thrift")


class DemoHandler:
    """The server side: plain functions and coroutines side by side."""

    def __init__(self, bench: Any) -> None:
        self.bench = bench
        self.events: List[str] = []

    def ping(self) -> None:
        return None

    def add(self, a: int, b: int) -> int:  # plain function: answered without a task
        return a + b

    async def echo(self, s: str) -> str:  # coroutine
        return s

    def echo_bytes(self, b: bytes) -> bytes:
        return b

    async def roundtrip(self, o: Any) -> Any:
        await asyncio.sleep(0)  # really suspends: runs as a task
        return o

    def fail(self, msg: str) -> None:
        if msg == "crash":
            raise RuntimeError("a bug in the handler")  # not declared in the IDL
        raise self.bench.BenchError(message=msg, code=400)

    def notify(self, event: str) -> None:
        self.events.append(event)


def make_order(bench: Any, n_items: int = 3) -> Any:
    items = [
        bench.Item(id=i, name="item%d" % i, price=9.99 + i, tags=["t%d" % i, "demo"],
                   counts={"a": i, "b": 2 * i}, blob=bytes([i]) * 4, active=i % 2 == 0)
        for i in range(n_items)
    ]
    return bench.Order(order_id=42, customer="ada", items=items, meta={"source": "demo"}, status=1)


def show(label: str, outcome: str) -> None:
    print("  %-38s -> %s" % (label, outcome))


async def outcome_of(coro: Any) -> str:
    try:
        value = await coro
    except ThriftAppError as exc:
        return "raised ThriftAppError(type=%d %s, %r)" % (exc.type, _app_error_name(exc.type), exc.message)
    except asyncio.TimeoutError as exc:
        return "raised TimeoutError(%r)" % (str(exc),)
    except Exception as exc:  # a declared IDL exception, shown as such
        return "raised %r" % (exc,)
    text = repr(value)
    return text if len(text) <= 90 else text[:87] + "..."


class _OneLineLog(logging.Handler):
    """Shows the library's log records on one line (no traceback) among the results."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        print("    [log %s] %s%s" % (record.levelname, record.getMessage(), ": %r" % (exc,) if exc else ""))


def _app_error_name(type_: int) -> str:
    for name, value in vars(ThriftAppError).items():
        if name.isupper() and value == type_:
            return name
    return "?"


def rate(n: int, seconds: float) -> str:
    return "%d calls in %.3f s = %s calls/s" % (n, seconds, format(int(n / seconds) if seconds > 0 else 0, ","))


async def demo(framed: bool, n_calls: int) -> None:
    bench = load_demo_idl()
    log = logging.getLogger("aiothrift")
    log.addHandler(_OneLineLog())
    log.propagate = False
    loop = asyncio.get_running_loop()
    print("aiothrift %s, codec: %s, loop: %s.%s, transport: %s" % (
        aiothrift.__version__, aiothrift.IMPLEMENTATION, type(loop).__module__, type(loop).__name__,
        "framed" if framed else "buffered"))
    handler = DemoHandler(bench)
    server = await aiothrift.create_server(bench.Bench, handler, ("127.0.0.1", 0), framed=framed, grace_period=1.0)
    async with server:
        print("server listening on %s:%d" % server.address)
        conn = await aiothrift.create_connection(
            bench.BenchClientView, ("127.0.0.1", server.port), framed=framed, timeout=10, connect_timeout=5)
        async with conn:
            print("calls on one connection:")
            show("ping()", await outcome_of(conn.ping()))
            show("add(1, 2)", await outcome_of(conn.add(1, 2)))
            show("add(a=2**40, b=-1)", await outcome_of(conn.add(a=2 ** 40, b=-1)))
            show("echo('hello, thrift ☃')", await outcome_of(conn.echo("hello, thrift ☃")))
            show("echo_bytes(b'\\x00\\x01\\xfe\\xff')", await outcome_of(conn.echo_bytes(b"\x00\x01\xfe\xff")))
            order = make_order(bench)
            back = await conn.roundtrip(order)
            show("roundtrip(Order with 3 items)", "Order(order_id=%d, %d items), equal to the one sent: %s" % (
                back.order_id, len(back.items), back == order))
            show("fail('bad input')  [declared]", await outcome_of(conn.fail("bad input")))
            show("fail('crash')  [undeclared]", await outcome_of(conn.fail("crash")))
            show("not_implemented()  [unknown]", await outcome_of(conn.not_implemented()))
            show("notify('demo event')  [oneway]", await outcome_of(conn.notify("demo event")))
            await conn.ping()  # the server handles messages in order: notify ran before this
            show("  ... the server received", repr(handler.events))
            conn.timeout = 1e-6  # far too short: the reply comes after the timer
            show("roundtrip(), timeout 1 us", await outcome_of(conn.roundtrip(order)))
            conn.timeout = 10
            show("  ... then echo('next')", await outcome_of(conn.echo("next")) + " (the late reply was dropped)")
            print("  connection still open after all that: %s" % (not conn.closed,))

            print("load:")
            t0 = time.perf_counter()
            for i in range(n_calls):
                await conn.add(i, 1)
            show("sequential add()", rate(n_calls, time.perf_counter() - t0))

            t0 = time.perf_counter()
            results = await asyncio.gather(*[conn.add(i, i) for i in range(n_calls)])
            elapsed = time.perf_counter() - t0
            ok = sum(1 for i, r in enumerate(results) if r == 2 * i)
            show("%d concurrent add(), 1 connection" % n_calls, "%d/%d correct; %s" % (ok, n_calls, rate(n_calls, elapsed)))

            t0 = time.perf_counter()
            orders = await asyncio.gather(*[conn.roundtrip(order) for _ in range(n_calls // 4)])
            elapsed = time.perf_counter() - t0
            show("%d concurrent roundtrip(Order)" % len(orders), "%d equal; %s" % (
                sum(o == order for o in orders), rate(len(orders), elapsed)))

        pool = await aiothrift.create_pool(
            bench.Bench, ("127.0.0.1", server.port), minsize=2, maxsize=8, framed=framed, timeout=10)
        async with pool:
            t0 = time.perf_counter()
            results = await asyncio.gather(*[pool.add(i, 1) for i in range(n_calls)])
            elapsed = time.perf_counter() - t0
            show("pool (max 8): %d concurrent add()" % n_calls, "%d/%d correct, %d connections; %s" % (
                sum(1 for i, r in enumerate(results) if r == i + 1), n_calls, pool.size, rate(n_calls, elapsed)))
            async with pool.acquire(timeout=5) as c:
                show("pool.acquire() -> conn.echo('x')", await outcome_of(c.echo("x")))
    print("server closed; done.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiothrift", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run a server and a client on 127.0.0.1 and call every kind of method")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop (must be installed)")
    p.add_argument("--framed", action="store_true", help="use the framed transport")
    p.add_argument("--calls", type=int, default=1000, help="calls per load step (default 1000, max 100000)")
    args = parser.parse_args(argv)
    n_calls = max(4, min(args.calls, 100_000))

    async def bounded() -> None:
        await asyncio.wait_for(demo(args.framed, n_calls), RUN_TIMEOUT)

    if not args.uvloop:
        asyncio.run(bounded())
        return 0
    try:
        import uvloop
    except ImportError:
        print("uvloop is not installed (pip install 'aiothrift[uvloop]')", file=sys.stderr)
        return 2
    # A uvloop loop for this run only: no event loop policy is changed.
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(bounded())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
