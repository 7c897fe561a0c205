"""RPC interoperability with real peers, both directions, on 127.0.0.1 (issue 4).

* Peer clients against our server (``aiothrift.create_server`` in the test's
  event loop): Apache Thrift (pure and accelerated protocol, buffered and
  framed transport) and thriftpy2 (pure and Cython protocol, buffered and
  framed) in worker threads, thriftpy2.contrib.aio (buffered and framed) in
  the event loop.
* Our client (``aiothrift.create_connection``) against peer servers: Apache
  ``TSimpleServer`` and ``TThreadedServer`` (pure and accelerated, buffered and
  framed) and thriftpy2's ``TThreadedServer`` (pure and Cython, buffered and
  framed) in daemon threads, thriftpy2.contrib.aio's ``TAsyncServer`` in the
  event loop.

Each pairing runs every scenario: echo of every type, edge values, declared
exceptions, an undeclared exception (INTERNAL_ERROR, and the connection goes
on), void / oneway / inherited methods, large payloads, many calls on one
connection, and schema evolution (v1 <-> v2 both ways).

Every test runs on both aiothrift implementations: the ``impl`` fixture
selects the codec and framing modules that ``TBinaryProtocol`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

import aiothrift
import peers
from aiothrift import _compat
from peers import (  # noqa: F401  (pytest fixtures)
    apache_alltypes,
    apache_evolution_v1,
    apache_evolution_v2,
)
from peers import (
    CALL_TIMEOUT,
    CLIENT_CONFIGS,
    HOST,
    INTERNAL_ERROR,
    SERVER_CONFIGS,
    UNKNOWN_METHOD,
    AllTypesHandler,
    AppError,
    PeerClient,
    PeerServer,
    RegistryHandler,
    args_struct,
    evolve,
    many_args_summary,
    same_value,
    server_stamp,
)

pytestmark = pytest.mark.interop

AT = peers.tp2_module("alltypes")
V1 = peers.tp2_module("evolution_v1")
V2 = peers.tp2_module("evolution_v2")
SERVICE = "AllTypesService"

NAN = float("nan")
INF = float("inf")


@pytest.fixture
def use_impl(impl, monkeypatch):
    """Make ``TBinaryProtocol`` (hence servers and connections) use ``impl``."""
    monkeypatch.setattr(_compat, "binary", impl.binary)
    monkeypatch.setattr(_compat, "framing", impl.framing)
    return impl


# ---------------------------------------------------------------- our side

@contextlib.asynccontextmanager
async def serving(service, handler, framed):
    server = await asyncio.wait_for(
        aiothrift.create_server(service, handler, (HOST, 0), framed=framed), CALL_TIMEOUT)
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), CALL_TIMEOUT)


@contextlib.asynccontextmanager
async def connected(service, port, framed):
    conn = await aiothrift.create_connection(
        service, (HOST, port), framed=framed, timeout=CALL_TIMEOUT, connect_timeout=CALL_TIMEOUT)
    try:
        yield OurClient(conn)
    finally:
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), CALL_TIMEOUT)


class OurClient:
    """aiothrift's connection behind the same ``call`` as the peer clients."""

    ours = True

    def __init__(self, conn):
        self.conn = conn

    async def call(self, name, *args):
        try:
            return await self.conn.execute(name, *args)
        except aiothrift.ThriftAppError as exc:
            raise AppError(exc.type, exc.message) from exc


class OurServerSide:
    """What our server's handler received (as aiothrift decoded it, raw)."""

    def __init__(self, idl, service, handler):
        self.idl, self.service, self.handler = idl, service, handler

    def received(self, name):
        return args_struct(self.idl, self.service, name, self.handler.last(name),
                           apache=False, normalize=False)

    async def wait_received(self, name):
        args = await self.handler.wait_for(name)
        return args_struct(self.idl, self.service, name, args, apache=False, normalize=False)


# ---------------------------------------------------------------- values

def P(x, y):  # noqa: N802
    return AT.Point(x=x, y=y)


def tree(n=3):
    leaves = [AT.Leaf(name="leaf %d 🌍" % i, weight=i * 1000 if i % 2 else None,
                      points=[P(i, -i)] * (i % 3), color=AT.Color.RED if i % 2 else None)
              for i in range(n)]
    return AT.Tree(label="tree", leaves=leaves, by_name={l.name: l for l in leaves[:2]},
                   anchor=P(0, 1))


def everything():
    return AT.AllTypes(
        a_bool=True, a_byte=-7, a_i16=300, a_i32=-70000, a_i64=2**40, a_double=2.5,
        a_string="all ✓", a_binary=b"\x01\x02", a_enum=AT.Color.GREEN, a_typedef=99,
        a_name="name", a_blob=b"blob", a_struct=P(3, 4), a_tree=tree(),
        l_bool=[True, False], l_byte=[-1, 1], l_i16=[2], l_i32=[3, -3], l_i64=[2**50],
        l_double=[0.5, -1.0], l_string=["x", "🌍"], l_binary=[b"\x00", b""],
        l_enum=[AT.Color.BLUE], l_struct=[P(1, 1)], l_typedef=["t"],
        s_bool={False}, s_byte={5}, s_i16={-6}, s_i32={7, 8}, s_i64={9}, s_double={1.5},
        s_string={"a", "b"}, s_binary={b"\xff"}, s_enum={AT.Color.RED},
        m_string_i32={"one": 1}, m_i32_string={2: "two"}, m_i64_struct={3: P(3, 3)},
        m_binary_double={b"k": 0.25}, m_enum_list={AT.Color.BLACK: ["b"]},
        m_bool_byte={True: 1}, m_i16_bool={4: False}, m_double_i64={0.5: 5},
        m_string_binary={"s": b"\x80"}, ll_i32=[[1], []], lll_string=[[["deep"]]],
        mm_string_i64={"o": {"i": 1}}, m_typedef={"t": {}}, lm_struct=[{"p": P(5, 5)}],
        ms_i32={"s": {1}}, ls_string=[{"z"}], deep={1: [{"k": [P(6, 6)]}]}, l_tree=[tree(2)],
        s_typedef={10})


ECHOES = [
    ("echo_bool", True), ("echo_bool", False), ("echo_byte", -3), ("echo_i16", 300),
    ("echo_i32", 70000), ("echo_i64", 2**40), ("echo_double", 1.25),
    ("echo_string", "héllo 🌍"), ("echo_binary", b"\x00\xffbin"), ("echo_enum", AT.Color.BLUE),
    ("echo_typedef", 1234567890123), ("echo_struct", P(1, 2)), ("echo_tree", tree()),
    ("echo_list", [1, 2, 3]), ("echo_set", {"a", "b", "c"}), ("echo_map", {"a": 1, "b": -1}),
    ("echo_list_list", [[1], [2, 3], []]), ("echo_map_map", {"x": {"y": 1}, "e": {}}),
    ("echo_struct_list", [P(1, 2), P(3, 4)]), ("echo_all", everything()),
    ("echo_defaults", AT.WithDefaults(id=1, label="x", req_struct=P(1, 2))),
    ("echo_defaults", AT.WithDefaults(id=2, label="", req_struct=AT.Point(), opt_i64=5,
                                      def_list=None, def_map={}, opt_list=["o"])),
    ("echo_empty", AT.Empty()),
]

EDGES = (
    [("echo_byte", v) for v in (127, -128, 0)]
    + [("echo_i16", v) for v in (2**15 - 1, -2**15)]
    + [("echo_i32", v) for v in (2**31 - 1, -2**31, 0)]
    + [("echo_i64", v) for v in (2**63 - 1, -2**63, -1)]
    + [("echo_typedef", -2**63)]
    + [("echo_double", v) for v in (NAN, INF, -INF, -0.0, 0.0, 5e-324, sys.float_info.max)]
    + [("echo_string", v) for v in ("", "🌍🎉𝄞", "\x00", "\U0010ffff", "ü" * 1000)]
    + [("echo_binary", v) for v in (b"", b"\xff\xfe\x80", bytes(range(256)))]
    + [("echo_enum", v) for v in (AT.Color.NEGATIVE, AT.Color.HUGE, AT.Color.BLACK, 99)]
    + [("echo_list", []), ("echo_set", set()), ("echo_map", {}), ("echo_list_list", [[]]),
       ("echo_map_map", {"": {}}), ("echo_struct_list", []), ("echo_struct", AT.Point()),
       ("echo_all", AT.AllTypes()), ("echo_tree", AT.Tree()),
       ("echo_all", AT.AllTypes(l_double=[NAN, -0.0, INF], m_double_i64={NAN: 1},
                                m_string_binary={"": b""}, s_string={""},
                                a_string="", a_binary=b""))]
)

BIG_BINARY = bytes(range(256)) * 4096 + b"+"       # 1 MiB + 1
BIG_STRING = "🌍 ünïcödé " * 80_000                 # 1.2 MiB of UTF-8
LARGE = [
    ("echo_binary", BIG_BINARY),
    ("echo_string", BIG_STRING),
    ("echo_list", list(range(-10_000, 10_000))),
    ("echo_all", AT.AllTypes(l_i64=list(range(20_000)), a_blob=BIG_BINARY,
                             m_i32_string={i: str(i) for i in range(5_000)})),
    ("echo_tree", tree(500)),
]


def result_value(idl, name, value):
    """What a client should get back when the server echoes ``value``."""
    svc = getattr(idl.tp2, SERVICE)
    return idl.expected(getattr(svc, name + "_result")(success=value)).success


async def check_echo(client, side, idl, name, value):
    got = await client.call(name, value)
    same_value(result_value(idl, name, value), got, name)
    svc = getattr(idl.tp2, SERVICE)
    same_value(idl.expected(getattr(svc, name + "_args")(value)), side.received(name),
               name + " (server side)")


# ---------------------------------------------------------------- scenarios

async def scenario_echo(client, side, idl):
    for name, value in ECHOES:
        await check_echo(client, side, idl, name, value)


async def scenario_edge_values(client, side, idl):
    for name, value in EDGES:
        await check_echo(client, side, idl, name, value)


async def scenario_large_payloads(client, side, idl):
    for name, value in LARGE:
        await check_echo(client, side, idl, name, value)


def expected_exceptions():
    return {
        1: AT.NotFound(message="not found 🌍", id=-2**63, candidates=["a", ""]),
        2: AT.InvalidInput(message="invalid", code=2**31 - 1, details={"k": "v"},
                           where=P(-1, 1)),
        3: AT.Unavailable(reason="later", retry_after=-0.0, permanent=True, token=b"\x00\xff"),
    }


async def scenario_declared_exceptions(client, side, idl):
    for method in ("may_fail", "may_fail_void"):
        for which, expected in expected_exceptions().items():
            with pytest.raises(type(expected)) as info:
                await client.call(method, which)
            same_value(idl.expected(expected), info.value, "%s(%d)" % (method, which))
        got = await client.call(method, 0)
        assert got == ("fine 0" if method == "may_fail" else None)
    assert await client.call("echo_i32", 5) == 5


async def scenario_undeclared_exception(client, side, idl):
    for i in range(3):
        with pytest.raises(AppError) as info:
            await client.call("raise_undeclared", "boom %d 🌍" % i)
        assert info.value.type == INTERNAL_ERROR, info.value
        # the connection keeps working
        assert await client.call("echo_string", "after %d" % i) == "after %d" % i
    assert side.received("raise_undeclared").message == "boom 2 🌍"


async def scenario_void_oneway_inherited(client, side, idl):
    assert await client.call("ping") is None
    side.received("ping")
    assert await client.call("void_call", -9) is None
    assert side.received("void_call").v == -9
    assert await client.call("fire", "event 🌍", 2**40) is None
    fired = await side.wait_received("fire")
    assert (fired.event, fired.n) == ("event 🌍", 2**40)
    assert await client.call("version") == "alltypes 1 ✓"           # BaseService
    assert await client.call("base_add", 2**31 - 2, 1) == 2**31 - 1
    assert await client.call("middle_mul", -3, 2**40) == -3 * 2**40   # MiddleService
    args = (True, -1, 2, -3, 2**40, -0.5, "g🌍", b"h\x00", AT.Color.BLUE, [P(1, 1)],
            {"s": {7, 8}})
    got = await client.call("many_args", *args)
    assert got == many_args_summary(*args)
    same_value(idl.expected(getattr(idl.tp2, SERVICE).many_args_args(*args)),
               side.received("many_args"))
    for _ in range(3):  # oneways in a row, then a call
        assert await client.call("fire", "again", 1) is None
    assert await client.call("echo_i64", -1) == -1


async def scenario_many_calls(client, side, idl):
    for i in range(300):
        if i % 3 == 0:
            assert await client.call("echo_i64", i * 2**33) == i * 2**33
        elif i % 3 == 1:
            assert await client.call("echo_string", "s%d" % i) == "s%d" % i
        else:
            assert await client.call("base_add", i, -i) == 0
    if getattr(client, "ours", False):
        # our client pipelines: 200 calls in flight on the one connection
        results = await asyncio.wait_for(asyncio.gather(
            *(client.call("echo_i32", i) for i in range(200))), CALL_TIMEOUT)
        assert results == list(range(200))


SCENARIOS = {
    "echo-every-type": scenario_echo,
    "edge-values": scenario_edge_values,
    "large-payloads": scenario_large_payloads,
    "declared-exceptions": scenario_declared_exceptions,
    "undeclared-exception": scenario_undeclared_exception,
    "void-oneway-inherited": scenario_void_oneway_inherited,
    "many-calls": scenario_many_calls,
}

TP2_SERVER_UNDECLARED = (
    "%s: thriftpy2's TProcessor.process re-raises an exception the IDL does not declare; "
    "its servers log it and close the connection instead of sending INTERNAL_ERROR "
    "(see test_thriftpy2_server_drops_connection_on_undeclared)" % peers.cfg_version(
        SERVER_CONFIGS[-1]))


def _client_params():
    return [pytest.param(cfg, scenario, id="%s-%s" % (cfg.id, scenario))
            for cfg in CLIENT_CONFIGS for scenario in SCENARIOS]


def _server_params():
    out = []
    for cfg in SERVER_CONFIGS:
        for scenario in SCENARIOS:
            marks = []
            if scenario == "undeclared-exception" and cfg.peer.startswith("thriftpy2"):
                marks.append(pytest.mark.xfail(reason=TP2_SERVER_UNDECLARED, strict=True,
                                               raises=aiothrift.ConnectionClosedError))
            out.append(pytest.param(cfg, scenario, id="%s-%s" % (cfg.id, scenario), marks=marks))
    return out


# ---------------------------------------------------------------- the matrix

@pytest.mark.parametrize("cfg, scenario", _client_params())
async def test_peer_client_our_server(use_impl, apache_alltypes, cfg, scenario):
    handler = AllTypesHandler(AT)
    async with serving(AT.AllTypesService, handler, cfg.framed) as server:
        client = await PeerClient(cfg, apache_alltypes, SERVICE, server.port).open()
        try:
            await SCENARIOS[scenario](client, OurServerSide(apache_alltypes, SERVICE, handler),
                                      apache_alltypes)
        finally:
            await client.close()
        client.check_accelerated()


@pytest.mark.parametrize("cfg, scenario", _server_params())
async def test_our_client_peer_server(use_impl, apache_alltypes, cfg, scenario):
    types = apache_alltypes.ttypes if cfg.peer == "apache" else AT
    server = await PeerServer(cfg, apache_alltypes, SERVICE, AllTypesHandler(types)).start()
    try:
        async with connected(AT.AllTypesService, server.port, cfg.framed) as client:
            await SCENARIOS[scenario](client, server, apache_alltypes)
    finally:
        await server.stop()
    server.check_accelerated()


@pytest.mark.parametrize("cfg", [c for c in SERVER_CONFIGS if c.peer.startswith("thriftpy2")],
                         ids=lambda c: c.id)
async def test_thriftpy2_server_drops_connection_on_undeclared(use_impl, apache_alltypes, cfg):
    """The peer side of the expected failure above: thriftpy2 sends nothing and
    closes; our client fails the call at once (no hang) and reconnects fine."""
    server = await PeerServer(cfg, apache_alltypes, SERVICE, AllTypesHandler(AT)).start()
    try:
        async with connected(AT.AllTypesService, server.port, cfg.framed) as client:
            with pytest.raises(aiothrift.ConnectionClosedError):
                await asyncio.wait_for(client.call("raise_undeclared", "boom"), CALL_TIMEOUT)
            assert client.conn.closed
        async with connected(AT.AllTypesService, server.port, cfg.framed) as client:
            assert await client.call("echo_i32", 1) == 1
    finally:
        await server.stop()


# ---------------------------------------------------------------- schema evolution

MODULES = {"v1": V1, "v2": V2}
OTHER = {"v1": "v2", "v2": "v1"}


def client_record(version, hostile):
    """A record with every field of its version set (hostile: see server_stamp)."""
    m = MODULES[version]
    if version == "v1":
        part = m.Part(n=1, removed_in_v2="client part")
        return m.Record(
            id=101, retyped=-5, old_bool=False, old_byte=127, old_i16=-2**15, old_i32=2**31 - 1,
            old_i64=1, old_double=NAN, old_string="client 🌍",
            old_binary=b"\xff\x00" if hostile else b"plain", old_enum=m.Level.LOW,
            old_struct=part, old_list=[part], old_set={"x", "y"}, old_map={"k": [-1]},
            old_nested=[{2: {"z"}}], old_optional=None, old_default="client default",
            name="v1 record", parts=[part, m.Part(n=2)], level=m.Level.HIGH)
    part = m.Part(n=1, added_in_v2=-1.5)
    return m.Record(
        id=202, retyped="client text" if hostile else None, name="v2 record ✓", parts=[part],
        level=m.Level.MEDIUM, new_bool=False, new_byte=0, new_i16=1, new_i32=2, new_i64=3,
        new_double=-INF, new_string="", new_binary=b"\x80\x81" if hostile else b"plain",
        new_enum=m.Level.LOW, new_struct=part, new_list=[[part, m.Part()]], new_set={0},
        new_map={(b"\xc0" if hostile else b"k"): {"x": NAN}}, new_nested={m.Level.MEDIUM: []},
        new_optional="set", new_default="client v2 default")


def put_args(version, record):
    m = MODULES[version]
    if version == "v1":
        return m.Registry.put_args(record=record, v1_only_flag=True)
    return m.Registry.put_args(record=record, v2_only_ttl=60)


def stamped(version, record, hostile):
    """``record`` (already in the server's schema) as the server stores it."""
    out = evolve(record, type(record))
    for name, value in server_stamp(MODULES[version], version, hostile).items():
        setattr(out, name, value)
    return out


APACHE_PURE_SKIP = (
    "thrift %s pure TProtocolBase.skip() decodes a skipped STRING as UTF-8: an unknown "
    "non-UTF-8 binary field raises UnicodeDecodeError (fastbinary is fine)" % peers.APACHE_VERSION)
APACHE_UNKNOWN_METHOD_SKIP = (
    "thrift %s generated Processor skips the args of an unknown method with the pure "
    "TProtocolBase.skip(), also under TBinaryProtocolAccelerated: a non-UTF-8 binary in them "
    "raises UnicodeDecodeError and the server drops the connection instead of answering "
    "UNKNOWN_METHOD" % peers.APACHE_VERSION)
TP2_RETYPED = (
    "thriftpy2 %s pure and contrib.aio read_struct() read a STRING field that the reader "
    "declares as i32 as an i32 (BIN_TYPES shortcut) instead of skipping it (cybin is fine)"
    % peers.THRIFTPY2_VERSION)


def _evolution_params(configs):
    out = []
    for cfg in configs:
        for peer_version in ("v1", "v2"):
            for hostile in (False, True):
                marks = []
                codec = peers.codec_of(cfg)
                if hostile and codec == peers.APACHE_PURE:
                    marks.append(pytest.mark.xfail(reason=APACHE_PURE_SKIP, strict=True))
                elif (hostile and codec == peers.APACHE_ACCEL and peer_version == "v1"
                      and isinstance(cfg, peers.ServerConfig)):
                    # our v2 client calls describe(), unknown to the v1 server
                    marks.append(pytest.mark.xfail(reason=APACHE_UNKNOWN_METHOD_SKIP, strict=True))
                if hostile and peer_version == "v1" and codec in (peers.TP2_PURE, "thriftpy2-aio"):
                    marks.append(pytest.mark.xfail(reason=TP2_RETYPED, strict=True))
                out.append(pytest.param(
                    cfg, peer_version, hostile, marks=marks, id="%s-peer-%s-us-%s%s" % (
                        cfg.id, peer_version, OTHER[peer_version], "-hostile" if hostile else "")))
    return out


async def evolution_scenario(client, side, client_version, server_version, idls, hostile):
    """``client`` speaks ``client_version``, the server ``server_version``."""
    cm, sm = MODULES[client_version], MODULES[server_version]
    cidl, sidl = idls[client_version], idls[server_version]
    record = client_record(client_version, hostile)
    args = put_args(client_version, record)

    # what the server decodes: our evolution rules, applied to the args
    server_args = sidl.expected(evolve(args, sm.Registry.put_args))
    got = await client.call("put", *[getattr(args, f[2]) for f in peers.tp2_fields(type(args))])
    same_value(server_args, side.received("put"), "server side put()")
    # what comes back: the server's record, with its own extra fields, evolved
    stored = stamped(server_version, server_args.record, hostile)
    expected_back = cidl.expected(evolve(stored, cm.Record))
    same_value(expected_back, got, "put() result")
    same_value(expected_back, await client.call("get", record.id), "get() result")
    assert await client.call("count") == 1

    with pytest.raises(cm.Rejected) as info:
        await client.call("reject", "no 🌍")
    if server_version == "v1":
        thrown = sm.Rejected(reason="no 🌍", old_code=-7)
    else:
        thrown = sm.Rejected(reason="no 🌍", new_hints=["retry", "🌍"])
    same_value(cidl.expected(evolve(thrown, cm.Rejected)), info.value, "reject()")

    assert await client.call("notify", record) is None
    notified = await side.wait_received("notify")
    same_value(sidl.expected(evolve(sm.Registry.notify_args(
        record=evolve(record, sm.Record)), sm.Registry.notify_args)), notified, "notify()")

    if client_version == "v2" and server_version == "v1":
        with pytest.raises(AppError) as app:
            await client.call("describe", record)
        assert app.value.type == UNKNOWN_METHOD
    assert await client.call("count") == 1  # the connection goes on


@pytest.mark.parametrize("cfg, peer_version, hostile", _evolution_params(CLIENT_CONFIGS))
async def test_evolution_peer_client_our_server(use_impl, apache_evolution_v1, apache_evolution_v2,
                                                cfg, peer_version, hostile):
    idls = {"v1": apache_evolution_v1, "v2": apache_evolution_v2}
    ours = OTHER[peer_version]
    handler = RegistryHandler(MODULES[ours], ours, hostile)
    async with serving(MODULES[ours].Registry, handler, cfg.framed) as server:
        client = await PeerClient(cfg, idls[peer_version], "Registry", server.port).open()
        try:
            await evolution_scenario(client, OurServerSide(idls[ours], "Registry", handler),
                                     peer_version, ours, idls, hostile)
        finally:
            await client.close()


@pytest.mark.parametrize("cfg, peer_version, hostile", _evolution_params(SERVER_CONFIGS))
async def test_evolution_our_client_peer_server(use_impl, apache_evolution_v1, apache_evolution_v2,
                                                cfg, peer_version, hostile):
    idls = {"v1": apache_evolution_v1, "v2": apache_evolution_v2}
    ours = OTHER[peer_version]
    types = idls[peer_version].ttypes if cfg.peer == "apache" else MODULES[peer_version]
    handler = RegistryHandler(types, peer_version, hostile)
    server = await PeerServer(cfg, idls[peer_version], "Registry", handler).start()
    try:
        async with connected(MODULES[ours].Registry, server.port, cfg.framed) as client:
            await evolution_scenario(client, server, ours, peer_version, idls, hostile)
    finally:
        await server.stop()



# ---------------------------------------------------------------- non-strict message headers

class LaxProtocol(aiothrift.TBinaryProtocol):
    """Reads message headers without a version (old peers); writes them without one."""

    __slots__ = ()

    def __init__(self, trans=None, strict_read=False, strict_write=False, **options):
        super().__init__(trans, strict_read, strict_write, **options)


@pytest.mark.parametrize("accelerated", [False, True], ids=["apache-pure", "apache-accel"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
async def test_non_strict_apache_client_our_server(use_impl, apache_alltypes, accelerated, framed):
    from thrift.transport import TSocket, TTransport

    def run(port):
        sock = TSocket.TSocket(HOST, port)
        sock.setTimeout(peers.SOCKET_TIMEOUT_MS)
        trans = TTransport.TFramedTransport(sock) if framed else TTransport.TBufferedTransport(sock)
        proto = peers.apache_protocol(trans, accelerated, strict_write=False)
        client = apache_alltypes.services[SERVICE].Client(proto)
        trans.open()
        try:
            return client.echo_string("lax 🌍"), client.base_add(1, 2)
        finally:
            trans.close()

    server = await asyncio.wait_for(aiothrift.create_server(
        AT.AllTypesService, AllTypesHandler(AT), (HOST, 0), framed=framed,
        protocol_cls=LaxProtocol), CALL_TIMEOUT)
    try:
        got = await asyncio.wait_for(asyncio.to_thread(run, server.port), CALL_TIMEOUT)
        assert got == ("lax 🌍", 3)
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), CALL_TIMEOUT)


@pytest.mark.parametrize("proto", ["pure", "accel"])
@pytest.mark.parametrize("framed", [False, True], ids=["buffered", "framed"])
async def test_non_strict_our_client_apache_server(use_impl, apache_alltypes, proto, framed):
    """Apache servers read headers without a version (strictRead=False default)."""
    cfg = peers.ServerConfig("apache", "simple", proto, framed)
    server = await PeerServer(cfg, apache_alltypes, SERVICE,
                              AllTypesHandler(apache_alltypes.ttypes)).start()
    try:
        conn = await aiothrift.create_connection(
            AT.AllTypesService, (HOST, server.port), framed=framed, timeout=CALL_TIMEOUT,
            connect_timeout=CALL_TIMEOUT, protocol_cls=LaxProtocol)
        try:
            assert await conn.echo_string("lax ✓") == "lax ✓"
            assert await conn.base_add(2, 3) == 5
        finally:
            conn.close()
            await asyncio.wait_for(conn.wait_closed(), CALL_TIMEOUT)
    finally:
        await server.stop()


# ---------------------------------------------------------------- the peers' bugs, without us

async def test_peer_bug_tp2_server_undeclared_without_aiothrift(apache_alltypes):
    """thriftpy2 client and server alone: an undeclared exception closes the
    connection, no INTERNAL_ERROR (the xfail of the thriftpy2 servers above)."""
    from thriftpy2.transport import TTransportException

    cfg = peers.ServerConfig("thriftpy2", "threaded", "cybin", False)
    server = await PeerServer(cfg, apache_alltypes, SERVICE, AllTypesHandler(AT)).start()
    try:
        client = await PeerClient(peers.ClientConfig("thriftpy2", "cybin", False),
                                  apache_alltypes, SERVICE, server.port).open()
        try:
            with pytest.raises(TTransportException):
                await client.call("raise_undeclared", "boom")
        finally:
            await client.close()
    finally:
        await server.stop()


async def test_peer_bug_apache_unknown_method_skip_without_aiothrift(
        apache_evolution_v1, apache_evolution_v2):
    """Apache accelerated client and server alone: a v2 call unknown to the v1
    server, with a non-UTF-8 binary in its args, drops the connection instead
    of an UNKNOWN_METHOD answer (the xfail of the Apache servers above)."""
    from thrift.transport.TTransport import TTransportException

    cfg = peers.ServerConfig("apache", "threaded", "accel", False)
    server = await PeerServer(cfg, apache_evolution_v1, "Registry",
                              RegistryHandler(apache_evolution_v1.ttypes, "v1")).start()
    try:
        client = await PeerClient(peers.ClientConfig("apache", "accel", False),
                                  apache_evolution_v2, "Registry", server.port).open()
        try:
            with pytest.raises(TTransportException):
                await client.call("describe", V2.Record(id=1, new_binary=b"\xff"))
        finally:
            await client.close()
        # the same call with UTF-8 bytes is answered UNKNOWN_METHOD
        client = await PeerClient(peers.ClientConfig("apache", "accel", False),
                                  apache_evolution_v2, "Registry", server.port).open()
        try:
            with pytest.raises(AppError) as info:
                await client.call("describe", V2.Record(id=1, new_binary=b"ok"))
            assert info.value.type == UNKNOWN_METHOD
        finally:
            await client.close()
    finally:
        await server.stop()


async def test_peer_bug_tp2_aio_retyped_without_aiothrift(apache_evolution_v1, apache_evolution_v2):
    """thriftpy2.contrib.aio (v1) against a thriftpy2 Cython server (v2) alone:
    the v2 string in field 2 is misread as v1's i32 instead of skipped (the
    xfail of the thriftpy2 pure / aio v1 peers above)."""
    cfg = peers.ServerConfig("thriftpy2", "threaded", "cybin", False)
    server = await PeerServer(cfg, apache_evolution_v2, "Registry",
                              RegistryHandler(V2, "v2", hostile=True)).start()
    try:
        client = await PeerClient(peers.ClientConfig("thriftpy2-aio", "pure", False),
                                  apache_evolution_v1, "Registry", server.port).open()
        try:
            got = await client.call("put", V1.Record(id=1, name="n"), True)
            assert got.retyped == len("server text")  # the string's length prefix, as i32
        finally:
            await client.close()
    finally:
        await server.stop()
