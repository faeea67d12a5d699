// ctest-labels: unit
// Tests for the inert pickle VM (io/pickle.h): hand-assembled pickles for every opcode family,
// hostile inputs, resource limits, and the pickles written by Python in tests/fixtures/torch/.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "io/errors.h"
#include "io/pickle.h"
#include "io/zip.h"

using namespace io::pickle;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

const std::string kDir = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/";
const char* kMarker = "/tmp/inspire_pickle_hostile_marker";

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
Document P(const std::string& s, const Options& o = {}) { return parse(bytes_of(s), "test.pkl", o); }

// Returns the error message of parsing s ("" if it parsed).
std::string err(const std::string& s, const Options& o = {}) {
  try {
    P(s, o);
  } catch (const io::FormatError& e) {
    return e.what();
  }
  return "";
}

std::string u32(std::uint32_t n) {
  std::string r(4, '\0');
  for (int k = 0; k < 4; ++k) r[k] = char((n >> (8 * k)) & 0xff);
  return r;
}
std::string bu(const std::string& s) { return "X" + u32(static_cast<std::uint32_t>(s.size())) + s; }
std::string P2(const std::string& body) { return std::string("\x80\x02", 2) + body + "."; }

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST(Pickle, Integers) {
  // [255, 65535, -1, -1 (LONG1), 0 (LONG1 empty), INT64_MAX (LONG1 8), 2^63 (LONG1 9 → big)]
  std::string body = "(K\xff" "M\xff\xff" "J\xff\xff\xff\xff";
  body += std::string("\x8a\x01\xff", 3);
  body += std::string("\x8a\x00", 2);
  body += std::string("\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f", 10);
  body += std::string("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00", 11);
  body += std::string("\x8a\x09\x05\x00\x00\x00\x00\x00\x00\x00\x00", 11);  // fits: 5
  body += std::string("\x8b\x02\x00\x00\x00\x00\x01", 7);                     // LONG4 256
  body += "l";
  Document d = P(P2(body));
  ASSERT_EQ(d.root->kind, Kind::List);
  const auto& it = d.root->items;
  ASSERT_EQ(it.size(), 9u);
  EXPECT_EQ(it[0]->i, 255);
  EXPECT_EQ(it[1]->i, 65535);
  EXPECT_EQ(it[2]->i, -1);
  EXPECT_EQ(it[3]->i, -1);
  EXPECT_EQ(it[4]->i, 0);
  EXPECT_EQ(it[5]->i, INT64_MAX);
  EXPECT_EQ(it[6]->kind, Kind::BigInt);
  EXPECT_EQ(it[6]->s.size(), 9u);
  EXPECT_EQ(it[7]->kind, Kind::Int);
  EXPECT_EQ(it[7]->i, 5);
  EXPECT_EQ(it[8]->i, 256);
}

TEST(Pickle, FloatsStringsBytesBools) {
  std::string body = "(G";
  body += std::string("\x3f\xf8\x00\x00\x00\x00\x00\x00", 8);  // 1.5 big-endian
  body += bu("caf\xc3\xa9");
  body += std::string("\x8c\x02hi", 4);
  body += std::string("\x8d\x01\x00\x00\x00\x00\x00\x00\x00z", 10);
  body += std::string("C\x03\x00\x01\x02", 5);
  body += "B" + u32(2) + "ab";
  body += std::string("\x88\x89N", 3);
  body += "t";
  Document d = P(P2(body));
  ASSERT_EQ(d.root->kind, Kind::Tuple);
  const auto& it = d.root->items;
  ASSERT_EQ(it.size(), 9u) << describe(d.root);
  EXPECT_TRUE(it[8]->is_none());
  EXPECT_EQ(it[0]->f, 1.5);
  EXPECT_EQ(it[1]->s, "caf\xc3\xa9");
  EXPECT_EQ(it[2]->s, "hi");
  EXPECT_EQ(it[3]->s, "z");
  EXPECT_EQ(it[4]->kind, Kind::Bytes);
  EXPECT_EQ(it[4]->s, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(it[5]->s, "ab");
  EXPECT_TRUE(it[6]->kind == Kind::Bool && it[6]->b);
  EXPECT_TRUE(it[7]->kind == Kind::Bool && !it[7]->b);
}

TEST(Pickle, ContainersMemoAndOrder) {
  // d = {'b': 1, 'a': (x, x, x)} with x = [] memoized: the three tuple items are one value.
  std::string body = "}q\x00("s + bu("b") + "K\x01" + bu("a") + "]q\x01h\x01h\x01\x87" + "u";
  Document d = P(P2(body));
  ASSERT_EQ(d.root->kind, Kind::Dict);
  ASSERT_EQ(d.root->pairs.size(), 2u);
  EXPECT_EQ(d.root->pairs[0].first->s, "b");  // insertion order kept
  const Value* a = d.root->get("a");
  ASSERT_TRUE(a && a->kind == Kind::Tuple && a->items.size() == 3);
  EXPECT_EQ(a->items[0], a->items[1]);
  EXPECT_EQ(a->items[1], a->items[2]);
  EXPECT_EQ(d.root->get("b")->i, 1);
  EXPECT_EQ(d.root->get("zz"), nullptr);
  // Sets (EMPTY_SET + ADDITEMS, FROZENSET), MEMOIZE (protocol 4), EMPTY_TUPLE, TUPLE1/2, DUP, POP.
  std::string b2 = std::string("\x80\x04", 2) + "(" + "\x8f\x94(K\x01K\x02\x90" + "(K\x03\x91" + ")" +
                   "K\x07\x85" + "K\x08K\x09\x86" + "K\x01" + "2" + "0" + "0" + "t.";
  Document d2 = P(b2);
  ASSERT_EQ(d2.root->kind, Kind::Tuple);
  ASSERT_EQ(d2.root->items.size(), 5u);
  EXPECT_EQ(d2.root->items[0]->kind, Kind::Set);
  EXPECT_EQ(d2.root->items[0]->items.size(), 2u);
  EXPECT_EQ(d2.root->items[1]->kind, Kind::FrozenSet);
  EXPECT_EQ(d2.root->items[2]->items.size(), 0u);
  EXPECT_EQ(d2.root->items[3]->items[0]->i, 7);
  EXPECT_EQ(d2.root->items[4]->items[1]->i, 9);
}

TEST(Pickle, CyclesAndDeepNestingAreSafe) {
  Document d = P(P2("]q\x00h\x00" "a"s));  // l = []; l.append(l)
  ASSERT_EQ(d.root->items.size(), 1u);
  EXPECT_EQ(d.root->items[0], d.root);
  EXPECT_TRUE(contains(describe(d.root), "<cycle>"));
  // 200000 nested lists: no recursion in the reader, the destructor or describe().
  const int n = 200000;
  std::string body(n, ']');
  body += std::string(n - 1, 'a');
  Document deep = P(P2(body));
  EXPECT_EQ(deep.root->kind, Kind::List);
  EXPECT_LT(describe(deep.root, 5).size(), 600u);
}

TEST(Pickle, Protocol0TextOpcodes) {
  std::string s = "(lp0\nI1\naI-2\naI01\naL12345678901234567890123L\naF1.5\naS'a\\'b\\n'\naVcaf\\u00e9\\U0001F600\n"
                  "p1\nag1\na(dp2\nS'k'\np3\nI7\nsa.";
  Document d = P(s);
  ASSERT_EQ(d.root->kind, Kind::List);
  const auto& it = d.root->items;
  ASSERT_EQ(it.size(), 9u);
  EXPECT_EQ(it[0]->i, 1);
  EXPECT_EQ(it[1]->i, -2);
  EXPECT_EQ(it[2]->kind, Kind::Bool);
  EXPECT_EQ(it[3]->kind, Kind::BigInt);
  EXPECT_EQ(it[4]->f, 1.5);
  EXPECT_EQ(it[5]->s, "a'b\n");
  EXPECT_EQ(it[6]->s, "caf\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(it[7], it[6]);  // PUT/GET
  EXPECT_EQ(it[8]->get("k")->i, 7);
}

TEST(Pickle, KnownReconstructorsAndOpaqueObjects) {
  // OrderedDict() + SETITEMS + BUILD({'_metadata': ...}) → plain ordered Dict.
  std::string od = "ccollections\nOrderedDict\nq\x00)R("s + bu("w") + "K\x01u}" + bu("_metadata") + "}sb";
  Document d = P(P2(od));
  ASSERT_EQ(d.root->kind, Kind::Dict);
  EXPECT_EQ(d.root->get("w")->i, 1);
  // _codecs.encode('\u00e9\u00ff', 'latin1') → bytes e9 ff; set([1]) via __builtin__.
  std::string enc = "(c_codecs\nencode\n(" + bu("\xc3\xa9\xc3\xbf") + bu("latin1") + "tRc__builtin__\nset\n]K\x01" "a\x85Rt";
  Document e = P(P2(enc));
  EXPECT_EQ(e.root->items[0]->kind, Kind::Bytes);
  EXPECT_EQ(e.root->items[0]->s, std::string("\xe9\xff", 2));
  EXPECT_EQ(e.root->items[1]->kind, Kind::Set);
  // NEWOBJ of an unknown class + BUILD: an opaque object keeping its state, never executed.
  std::string obj = "cmy.module\nThing\n)\x81}" + bu("a") + "K\x05sb";
  Document o = P(P2(obj));
  EXPECT_EQ(o.root->kind, Kind::Object);
  EXPECT_EQ(o.root->class_name(), "my.module.Thing");
  EXPECT_TRUE(o.root->is_object_of("my.module", "Thing"));
  EXPECT_EQ(o.root->get("a")->i, 5);
  // STACK_GLOBAL (protocol 4) + REDUCE of an unknown callable: opaque, args kept.
  std::string sg = std::string("\x80\x04", 2) + "\x8c\x03pkg\x8c\x04" "func\x93K\x02\x85R.";
  Document g = P(sg);
  EXPECT_TRUE(g.root->is_object_of("pkg", "func"));
  EXPECT_EQ(g.root->args->items[0]->i, 2);
  // copy_reg._reconstructor(cls, object, None) → opaque instance of cls.
  std::string cr = "ccopy_reg\n_reconstructor\n(cfoo\nBar\nc__builtin__\nobject\nNtR}" + bu("x") + "K\x01sb";
  Document c = P(P2(cr));
  EXPECT_TRUE(c.root->is_object_of("foo", "Bar"));
  EXPECT_EQ(c.root->get("x")->i, 1);
  // A bound method pickles as getattr(obj, 'name'): allowed, inert.
  std::string ga = "c__builtin__\ngetattr\n(cfoo\nBar\n)\x81" + bu("method") + "tR";
  EXPECT_NO_THROW(P(P2(ga)));
}

TEST(Pickle, PersistentIdsAndHooks) {
  std::string s = P2("(" + bu("storage") + "K\x03tQ");
  EXPECT_TRUE(contains(err(s), "no persistent loader"));
  Options o;
  std::string seen;
  o.persistent_load = [&](Document& doc, const Value& pid) {
    seen = describe(&pid);
    Value* v = doc.make(Kind::Ext);
    v->name = "storage!";
    return v;
  };
  Document d = P(s, o);
  EXPECT_EQ(d.root->kind, Kind::Ext);
  EXPECT_EQ(d.root->name, "storage!");
  EXPECT_EQ(seen, "('storage', 3)");
  // A hook error becomes a FormatError with file and offset.
  o.reduce_hook = [](Document&, const Value& fn, Value&) -> Value* {
    if (fn.name == "bad") throw std::runtime_error("hook says no");
    return nullptr;
  };
  std::string m = err(P2("cm\nbad\n)R"), o);
  EXPECT_TRUE(contains(m, "test.pkl")) << m;
  EXPECT_TRUE(contains(m, "hook says no")) << m;
  EXPECT_TRUE(contains(m, "byte offset 10")) << m;
}

TEST(Pickle, ConsecutivePicklesReportConsumedBytes) {
  std::string a = P2("K\x01"), b = P2("K\x02");
  std::string all = a + b;
  std::size_t used = 0;
  Document d1 = parse(bytes_of(all), "two.pkl", {}, &used);
  EXPECT_EQ(used, a.size());
  Document d2 = parse(bytes_of(all).subspan(used), "two.pkl", {}, &used, used);
  EXPECT_EQ(d2.root->i, 2);
  // Offsets in errors include the base offset.
  try {
    parse(bytes_of(std::string("\x80\x02\xff", 3)), "f.pt", {}, nullptr, 1000);
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "byte offset 1002")) << e.what();
  }
}

TEST(Pickle, MalformedInputErrorsNameFileAndOffset) {
  std::string m = err(std::string("\x80\x02K\x01\xff.", 6));
  EXPECT_TRUE(contains(m, "test.pkl")) << m;
  EXPECT_TRUE(contains(m, "unknown opcode 0xff")) << m;
  EXPECT_TRUE(contains(m, "byte offset 4")) << m;
  EXPECT_TRUE(contains(err(std::string("\x80\x06K\x01.", 5)), "unsupported pickle protocol 6"));
  EXPECT_TRUE(contains(err(P2("K\x01K\x02")), "STOP with 2 stack items"));
  EXPECT_TRUE(contains(err(P2("a")), "stack underflow"));
  EXPECT_TRUE(contains(err(P2("t")), "no MARK"));
  EXPECT_TRUE(contains(err(P2("h\x05")), "memo key 5 not defined"));
  EXPECT_TRUE(contains(err(P2("X\xff\xff\xff\x7f" "abc")), "exceeds the"));
  EXPECT_TRUE(contains(err(std::string("\x80\x02K\x01", 4)), "no STOP"));
  EXPECT_TRUE(contains(err(std::string("\x80\x05\x97.", 4)), "out-of-band"));
  EXPECT_TRUE(contains(err(P2("K\x01K\x02R")), "REDUCE arguments are not a tuple"));
  EXPECT_TRUE(contains(err(""), "no STOP"));
}

TEST(Pickle, EveryTruncationOfRealPicklesFails) {
  io::ZipReader z(kDir + "zoo_zip.pt");
  auto pk = z.stored(z.at("zoo_zip/data.pkl"));
  std::ifstream f(kDir + "itos_pd.pkl", std::ios::binary);
  std::string pd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Options o;
  o.persistent_load = [](Document& doc, const Value&) { return doc.make(Kind::None); };
  for (const std::string& full : {std::string(pk.begin(), pk.end()), pd}) {
    EXPECT_NO_THROW(P(full, o));
    for (std::size_t cut = 0; cut < full.size(); ++cut) {
      std::string m = err(full.substr(0, cut), o);
      ASSERT_TRUE(contains(m, "test.pkl")) << "cut " << cut << " parsed without error";
    }
  }
}

TEST(Pickle, ResourceLimits) {
  Options small;
  small.max_alloc_bytes = 1 << 16;
  std::string many = "(";
  for (int k = 0; k < 2000; ++k) many += "K\x01";
  EXPECT_TRUE(contains(err(P2(many + "l"), small), "allocation limit"));
  Options ms;
  ms.max_stack = 100;
  EXPECT_TRUE(contains(err(P2(std::string(200, ']')), ms), "stack limit"));
  Options mm;
  mm.max_memo = 10;
  std::string memo = "N";
  for (int k = 0; k < 20; ++k) memo += std::string("q") + char(k);
  EXPECT_TRUE(contains(err(P2(memo), mm), "memo limit"));
  // A string longer than the input is rejected before allocating.
  EXPECT_TRUE(contains(err(P2(std::string("\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", 9))), "truncated"));
  // Repeated copies of a big container are charged: no quadratic blow-up.
  std::string amp = "(]q\x00"s;
  for (int k = 0; k < 3000; ++k) amp += "h\x00K\x01" "a"s;  // l of 3000 items
  amp += "0";
  for (int k = 0; k < 3000; ++k) amp += "c__builtin__\nset\nh\x00\x85R0"s;
  Options cap;
  cap.max_alloc_bytes = 8 << 20;
  EXPECT_TRUE(contains(err(P2(amp + "N"), cap), "allocation limit"));
}

TEST(Pickle, DangerousCallablesAreRecognised) {
  EXPECT_TRUE(is_dangerous_callable("os", "system"));
  EXPECT_TRUE(is_dangerous_callable("posix", "system"));
  EXPECT_TRUE(is_dangerous_callable("nt", "system"));
  EXPECT_TRUE(is_dangerous_callable("subprocess", "Popen"));
  EXPECT_TRUE(is_dangerous_callable("builtins", "eval"));
  EXPECT_TRUE(is_dangerous_callable("__builtin__", "exec"));
  EXPECT_TRUE(is_dangerous_callable("builtins", "__import__"));
  EXPECT_TRUE(is_dangerous_callable("os.path", "join"));
  EXPECT_FALSE(is_dangerous_callable("collections", "OrderedDict"));
  EXPECT_FALSE(is_dangerous_callable("torch._utils", "_rebuild_tensor_v2"));
  EXPECT_FALSE(is_dangerous_callable("fastai.text.learner", "TextLearner"));
  EXPECT_FALSE(is_dangerous_callable("osx", "thing"));
  // Through the VM: REDUCE, NEWOBJ, INST and getattr tricks are all refused.
  EXPECT_TRUE(contains(err(P2("cos\nsystem\n" + bu("true") + "\x85R")), "refusing to call os.system"));
  EXPECT_TRUE(contains(err(P2("csubprocess\nPopen\n)\x81")), "refusing to instantiate subprocess.Popen"));
  EXPECT_TRUE(contains(err("(S'ls'\nios\nsystem\n."), "refusing to call os.system"));
  EXPECT_TRUE(contains(err(P2("c__builtin__\ngetattr\n(cfoo\nBar\n)\x81" + bu("__class__") + "tR")),
                       "refusing to call builtins.getattr"));
  EXPECT_TRUE(contains(err(P2("c__builtin__\ngetattr\n(cfoo\nBar\n)\x81" + bu("system") + "tR")),
                       "refusing to call builtins.getattr"));
}

TEST(Pickle, HostileFixturesAreRefusedAndNothingRuns) {
  struct H {
    const char* file;
    const char* expect;
  } cases[] = {
      {"hostile_os_system_p0.pkl", "refusing to call posix.system"},
      {"hostile_os_system_p2.pkl", "refusing to call posix.system"},
      {"hostile_os_system_p4.pkl", "refusing to call posix.system"},
      {"hostile_eval.pkl", "refusing to call builtins.eval"},
      {"hostile_subprocess.pkl", "refusing to call subprocess.check_call"},
      {"hostile_getattr.pkl", "refusing to call builtins.__import__"},
  };
  std::remove(kMarker);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    try {
      parse_file(kDir + c.file);
      ADD_FAILURE() << "hostile pickle parsed";
    } catch (const io::FormatError& e) {
      EXPECT_TRUE(contains(e.what(), c.expect)) << e.what();
      EXPECT_TRUE(contains(e.what(), c.file)) << e.what();
      EXPECT_TRUE(contains(e.what(), "byte offset")) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(kMarker));
}

TEST(Pickle, ParseFileRejectsTrailingData) {
  fs::path p = fs::temp_directory_path() / ("inspire_pickle_trailing_" + std::to_string(::getpid()) + ".pkl");
  {
    std::ofstream f(p, std::ios::binary);
    f << P2("K\x01") << "junk";
  }
  try {
    parse_file(p.string());
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "trailing data")) << e.what();
  }
  fs::remove(p);
}
