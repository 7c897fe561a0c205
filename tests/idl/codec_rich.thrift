// Codec tests (tests/test_binary.py, tests/test_differential.py): every type,
// container and nesting the binary codec handles, in one schema.

enum Kind {
  ZERO = 0,
  ONE = 1,
  NEG = -3,
  BIG = 2147483647,
}

struct Inner {
  1: i32 x,
  2: optional string label,
}

struct Node {
  1: i64 value,
  2: list<Node> kids,
  3: optional Node sibling,
}

struct Rich {
  1: optional bool a_bool,
  2: optional byte a_byte,
  3: optional i16 a_i16,
  4: optional i32 a_i32,
  5: optional i64 a_i64,
  6: optional double a_double,
  7: optional string a_string,
  8: optional binary a_binary,
  9: optional Kind a_kind,
  10: optional Inner a_inner,
  11: optional list<bool> l_bool,
  12: optional list<byte> l_byte,
  13: optional list<i16> l_i16,
  14: optional list<i32> l_i32,
  15: optional list<i64> l_i64,
  16: optional list<double> l_double,
  17: optional list<string> l_string,
  18: optional list<binary> l_binary,
  19: optional list<Inner> l_inner,
  20: optional set<i32> s_i32,
  21: optional set<string> s_string,
  22: optional set<binary> s_binary,
  23: optional set<double> s_double,
  24: optional set<bool> s_bool,
  25: optional map<string, i64> m_string_i64,
  26: optional map<i32, string> m_i32_string,
  27: optional map<binary, Inner> m_binary_inner,
  28: optional map<i16, list<string>> m_i16_list,
  29: optional list<list<i32>> ll_i32,
  30: optional list<map<string, set<i64>>> lms,
  31: optional map<string, map<i32, list<Inner>>> mml,
  32: optional set<Kind> s_kind,
  33: optional Node tree,
  34: optional list<set<string>> l_set,
  35: optional map<bool, byte> m_bool_byte,
  36: optional map<double, double> m_double,
  -1: optional i32 neg_one,
  -32768: optional string neg_min,
  32767: optional i64 pos_max,
}

struct Defaults {
  1: i32 num = 7,
  2: string text = "héllo",
  3: list<i32> nums = [1, 2, 3],
  4: map<string, i32> table = {"a": 1},
  5: set<string> tags = ["x"],
  6: Inner inner = {"x": 5},
  7: optional i64 opt,
  8: list<list<i32>> nested = [[1], [2, 3]],
  9: binary raw = "bin",
  10: Kind kind = Kind.NEG,
}

struct Required {
  1: required i32 id,
  2: optional string note,
  3: required string name,
  4: required Inner inner,
}

struct Wide {
  1: optional i32 low,
  1000: optional i32 high,
  -1000: optional string neg,
}

exception Oops {
  1: string message,
  2: i32 code,
  3: optional list<string> details,
}

struct Holder {
  1: optional Oops oops,
  2: optional list<Oops> many,
}

// Only reachable with hand-made bytes: decoding these builds unhashable set
// elements / map keys (InvalidDataError).
struct Unhashable {
  1: optional set<list<i32>> s_list,
  2: optional map<list<i32>, i32> m_list_key,
  3: optional set<map<string, i32>> s_map,
}

struct Empty {
}
