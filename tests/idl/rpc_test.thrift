// Service for the RPC layer tests (tests/test_connection.py, test_server.py, test_pool.py).
namespace py rpc_test

struct Point {
  1: i32 x,
  2: i32 y,
  3: optional string label,
}

exception UserError {
  1: string why,
  2: i32 code,
}

exception OtherError {
  1: string what,
}

service RpcTest {
  i64 add(1: i64 a, 2: i64 b),
  // Positional arguments follow the declaration order, not the field ids.
  string concat(2: string second, 1: string first),
  string echo(1: string s),
  binary echo_bytes(1: binary b),
  Point move(1: Point p, 2: i32 dx, 3: i32 dy),
  list<i32> numbers(1: i32 n),
  i64 sum(1: list<i32> values),
  void ping(),
  // Sleeps `seconds`, then returns `id`.
  i32 slow(1: i32 id, 2: double seconds),
  void raise_declared(1: i32 which) throws (1: UserError ue, 2: OtherError oe),
  void raise_undeclared(1: string msg),
  // The handler returns None: the client must see MISSING_RESULT.
  i32 no_result(),
  oneway void notify(1: string event),
  list<string> notified(),
  // Names that clash with attributes of ThriftConnection / ThriftPool.
  string close(1: string s),
  string execute(1: string s),
  string acquire(1: string s),
}

// A client-side view with a method the server does not implement.
service RpcTestPlus extends RpcTest {
  i32 not_on_server(1: i32 x),
  oneway void oneway_not_on_server(1: i32 x),
}
