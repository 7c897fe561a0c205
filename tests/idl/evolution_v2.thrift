// Schema evolution, the NEW side: see evolution_v1.thrift.

namespace py aiothrift_peer_evolution_v2

enum Level {
  LOW = 1,
  MEDIUM = 2,                   // new value
  HIGH = 3,
}

struct Part {
  1: i32 n,
  3: optional double added_in_v2,
}

struct Record {
  1: i64 id,
  2: string retyped,            // i32 in v1
  // kept
  20: string name,
  21: list<Part> parts,
  22: optional Level level,
  // added in v2, every type
  30: bool new_bool,
  31: i8 new_byte,
  32: i16 new_i16,
  33: i32 new_i32,
  34: i64 new_i64,
  35: double new_double,
  36: string new_string,
  37: binary new_binary,
  38: Level new_enum,
  39: Part new_struct,
  40: list<list<Part>> new_list,
  41: set<i64> new_set,
  42: map<binary, map<string, double>> new_map,
  43: map<Level, list<set<i32>>> new_nested,
  44: optional string new_optional,
  45: string new_default = "v2 default",
}

exception Rejected {
  1: string reason,
  3: list<string> new_hints,
}

service Registry {
  Record put(1: Record record, 2: i32 v2_only_ttl),
  Record get(1: i64 id),
  i32 count(),
  void reject(1: string reason) throws (1: Rejected rejected),
  oneway void notify(1: Record record),
  // only v2 servers have it: a v1 server answers UNKNOWN_METHOD
  string describe(1: Record record),
}
