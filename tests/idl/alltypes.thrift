// Every Thrift type, for byte-exact codec vectors (tests/test_vectors.py) and
// RPC interoperability with real peers (tests/test_interop.py).
//
// Loaded two ways: by thriftpy2.load() (the classes aiothrift encodes) and by
// Apache `thrift --gen py` at test time (tests/peers.py).  The Apache package
// name comes from the namespace below; it is distinct from the thriftpy2
// module name (alltypes_thrift) so the two never shadow each other.
//
// Fields are declared in ascending id order: Apache writes fields sorted by id,
// thriftpy2 and aiothrift in declaration order, and byte-exact comparisons need
// one order.  OutOfOrder below covers the other case (decode comparisons only).

namespace py aiothrift_peer_alltypes

// ---------------------------------------------------------------- typedefs

typedef i64 Timestamp
typedef string Name
typedef binary Blob
typedef list<Name> NameList
typedef map<string, map<string, i64>> Table
typedef Timestamp Instant  // a typedef of a typedef

// ---------------------------------------------------------------- enums

enum Color {
  BLACK = 0,
  RED = 1,
  GREEN = 2,
  BLUE = 4,
  NEGATIVE = -7,
  HUGE = 2147483647,
}

enum Implicit {
  FIRST,
  SECOND,
  THIRD,
}

// ---------------------------------------------------------------- structs

struct Point {
  1: i32 x,
  2: i32 y,
}

struct Leaf {
  1: Name name,
  2: optional i64 weight,
  3: list<Point> points,
  4: optional Color color,
}

struct Tree {
  1: string label,
  2: list<Leaf> leaves,
  3: map<string, Leaf> by_name,
  4: optional Point anchor,
}

// One optional field per type, so a value of any type can be encoded alone
// (a struct "per field") or all together.
struct AllTypes {
  1: optional bool a_bool,
  2: optional i8 a_byte,
  3: optional i16 a_i16,
  4: optional i32 a_i32,
  5: optional i64 a_i64,
  6: optional double a_double,
  7: optional string a_string,
  8: optional binary a_binary,
  9: optional Color a_enum,
  10: optional Timestamp a_typedef,
  11: optional Name a_name,
  12: optional Blob a_blob,
  13: optional Point a_struct,
  14: optional Tree a_tree,
  // lists of every element type
  20: optional list<bool> l_bool,
  21: optional list<i8> l_byte,
  22: optional list<i16> l_i16,
  23: optional list<i32> l_i32,
  24: optional list<i64> l_i64,
  25: optional list<double> l_double,
  26: optional list<string> l_string,
  27: optional list<binary> l_binary,
  28: optional list<Color> l_enum,
  29: optional list<Point> l_struct,
  30: optional NameList l_typedef,
  // sets
  40: optional set<bool> s_bool,
  41: optional set<i8> s_byte,
  42: optional set<i16> s_i16,
  43: optional set<i32> s_i32,
  44: optional set<i64> s_i64,
  45: optional set<double> s_double,
  46: optional set<string> s_string,
  47: optional set<binary> s_binary,
  48: optional set<Color> s_enum,
  49: optional set<Point> s_struct,       // Apache gen-py structs are unhashable
  // maps
  60: optional map<string, i32> m_string_i32,
  61: optional map<i32, string> m_i32_string,
  62: optional map<i64, Point> m_i64_struct,
  63: optional map<binary, double> m_binary_double,
  64: optional map<Color, list<string>> m_enum_list,
  65: optional map<bool, i8> m_bool_byte,
  66: optional map<i16, bool> m_i16_bool,
  67: optional map<double, i64> m_double_i64,
  68: optional map<string, binary> m_string_binary,
  69: optional map<Point, string> m_struct_string,  // same
  // nesting
  80: optional list<list<i32>> ll_i32,
  81: optional list<list<list<string>>> lll_string,
  82: optional map<string, map<string, i64>> mm_string_i64,
  83: optional Table m_typedef,
  84: optional list<map<string, Point>> lm_struct,
  85: optional map<string, set<i32>> ms_i32,
  86: optional list<set<string>> ls_string,
  87: optional map<i32, list<map<string, list<Point>>>> deep,
  88: optional list<Tree> l_tree,
  89: optional set<Instant> s_typedef,
}

// Required, optional and default fields of every kind.
struct WithDefaults {
  1: required i32 id,
  2: required string label,
  3: optional i64 opt_i64,
  4: optional string opt_string = "fallback",
  5: i32 def_i32 = 42,
  6: double def_double = -1.5,
  7: string def_string = "dëfault ✓",
  8: bool def_bool = true,
  9: Color def_enum = Color.BLUE,
  10: list<i32> def_list = [1, 2, 3],
  11: map<string, i32> def_map = {"one": 1, "two": 2},
  12: set<string> def_set = ["only"],
  13: Point def_struct = {"x": 1, "y": -1},
  14: byte def_byte = -128,  // `byte`: the old alias of i8
  15: i16 def_i16 = 32767,
  16: i64 def_i64 = -9223372036854775807,
  17: optional list<string> opt_list,
  18: required Point req_struct,
  19: Implicit def_implicit = Implicit.THIRD,
  20: binary def_binary = "raw",
}

// Declared out of id order: peers disagree on the order they write fields in
// (Apache sorts by id), so this one is only compared by decoding.
struct OutOfOrder {
  3: string third,
  1: i32 first,
  2: list<i64> second,
}

struct Empty {
}

// ---------------------------------------------------------------- exceptions

exception NotFound {
  1: string message,
  2: i64 id,
  3: list<string> candidates,
}

exception InvalidInput {
  1: string message,
  2: i32 code,
  3: map<string, string> details,
  4: Point where,
}

exception Unavailable {
  1: string reason,
  2: double retry_after,
  3: optional bool permanent,
  4: binary token,
}

// ---------------------------------------------------------------- constants

const i32 MAX_I32 = 2147483647
const i64 BIG_I64 = 9223372036854775807
const double PI = 3.14159
const string GREETING = "héllo wörld 🌍"
const Color DEFAULT_COLOR = Color.GREEN
const list<i32> PRIMES = [2, 3, 5, 7, 11]
const set<string> TAGS = ["alpha", "beta"]
const map<string, i32> WEIGHTS = {"light": 1, "heavy": 9}
const map<string, list<i32>> GROUPS = {"odd": [1, 3], "even": [2, 4]}
const Point ORIGIN = {"x": 0, "y": 0}
const Timestamp EPOCH = 0

// ---------------------------------------------------------------- services

service BaseService {
  void ping(),
  string version(),
  i32 base_add(1: i32 a, 2: i32 b),
}

service MiddleService extends BaseService {
  i64 middle_mul(1: i64 a, 2: i64 b),
}

service AllTypesService extends MiddleService {
  // echo of each type
  bool echo_bool(1: bool v),
  i8 echo_byte(1: i8 v),
  i16 echo_i16(1: i16 v),
  i32 echo_i32(1: i32 v),
  i64 echo_i64(1: i64 v),
  double echo_double(1: double v),
  string echo_string(1: string v),
  binary echo_binary(1: binary v),
  Color echo_enum(1: Color v),
  Timestamp echo_typedef(1: Timestamp v),
  Point echo_struct(1: Point v),
  Tree echo_tree(1: Tree v),
  list<i32> echo_list(1: list<i32> v),
  set<string> echo_set(1: set<string> v),
  map<string, i64> echo_map(1: map<string, i64> v),
  list<list<i32>> echo_list_list(1: list<list<i32>> v),
  map<string, map<string, i64>> echo_map_map(1: map<string, map<string, i64>> v),
  list<Point> echo_struct_list(1: list<Point> v),
  AllTypes echo_all(1: AllTypes v),
  WithDefaults echo_defaults(1: WithDefaults v),
  Empty echo_empty(1: Empty v),

  // many arguments of different types, in id order
  string many_args(1: bool a, 2: i8 b, 3: i16 c, 4: i32 d, 5: i64 e,
                   6: double f, 7: string g, 8: binary h, 9: Color i,
                   10: list<Point> j, 11: map<string, set<i32>> k),

  // void, oneway
  void void_call(1: i32 v),
  oneway void fire(1: string event, 2: i64 n),

  // declared exceptions: which = 1 NotFound, 2 InvalidInput, 3 Unavailable,
  // anything else returns normally
  string may_fail(1: i32 which) throws (1: NotFound not_found,
                                        2: InvalidInput invalid,
                                        3: Unavailable unavailable),
  void may_fail_void(1: i32 which) throws (1: NotFound not_found,
                                           2: InvalidInput invalid,
                                           3: Unavailable unavailable),
  // the handler raises an exception the IDL does not declare
  string raise_undeclared(1: string message),
}
