// Schema evolution, the OLD side.  evolution_v2.thrift is the same struct and
// service one version later: the fields and arguments numbered 3..19 here are
// gone there, v2 adds fields numbered 30..49 of every type, and field 2 changed
// its type (a reader must skip a field whose wire type is not the one it knows).
// Each side must skip what it does not know and keep what both know.

namespace py aiothrift_peer_evolution_v1

enum Level {
  LOW = 1,
  HIGH = 3,
}

struct Part {
  1: i32 n,
  2: string removed_in_v2,
}

struct Record {
  1: i64 id,
  2: i32 retyped,               // string in v2
  // removed in v2, every type
  3: bool old_bool,
  4: i8 old_byte,
  5: i16 old_i16,
  6: i32 old_i32,
  7: i64 old_i64,
  8: double old_double,
  9: string old_string,
  10: binary old_binary,
  11: Level old_enum,
  12: Part old_struct,
  13: list<Part> old_list,
  14: set<string> old_set,
  15: map<string, list<i64>> old_map,
  16: list<map<i32, set<string>>> old_nested,
  17: optional string old_optional,
  18: string old_default = "v1 default",
  // kept
  20: string name,
  21: list<Part> parts,
  22: optional Level level,
}

exception Rejected {
  1: string reason,
  2: i32 old_code,
}

service Registry {
  // v2 adds a second argument and removes the third
  Record put(1: Record record, 3: bool v1_only_flag),
  Record get(1: i64 id),
  i32 count(),
  void reject(1: string reason) throws (1: Rejected rejected),
  oneway void notify(1: Record record),
}
