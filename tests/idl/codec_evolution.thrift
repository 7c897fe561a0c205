// Codec tests: schema evolution.  Old and New share field ids 1 and 2; New
// adds fields of every kind; Mismatch reuses ids 1 and 2 with other wire
// types; ElemMismatch keeps id 3 a list but with other element types.

struct Sub {
  1: i32 a,
  2: optional list<string> b,
}

struct Old {
  1: i32 id,
  2: string name,
}

struct New {
  1: i32 id,
  2: string name,
  3: list<map<string, Sub>> extra,
  4: Sub sub,
  5: double score,
  6: set<i64> ids,
  7: map<i32, list<list<binary>>> deep,
  8: bool flag,
  9: byte small,
  10: i16 medium,
  11: i64 big,
  12: binary raw,
  13: map<string, string> empty_map,
}

struct Mismatch {
  1: string id,
  2: i64 name,
}

struct ElemMismatch {
  1: i32 id,
  2: string name,
  3: list<i64> extra,
}

struct MapMismatch {
  7: map<string, list<list<binary>>> deep,
}
