// ctest-labels: unit
// tests/test_safetensors.cpp — io/safetensors.h: round trips and every validation failure.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "io/errors.h"
#include "io/safetensors.h"

namespace {

using io::DType;
using io::SafetensorsFile;
using io::TensorOut;

std::string tmp_path(const std::string& name) {
  return ::testing::TempDir() + "st_" + std::to_string(::getpid()) + "_" + name;
}

// A raw file from a header string and data bytes (no validation, for crafting bad files).
std::string raw(const std::string& header, const std::string& data = "", std::uint64_t len = ~0ull) {
  if (len == ~0ull) len = header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

// Expects from_memory to throw io::FormatError whose message contains every `needle`.
void expect_error(const std::string& bytes, std::initializer_list<const char*> needles) {
  try {
    SafetensorsFile::from_memory(bytes.data(), bytes.size(), "bad.safetensors", true);
    FAIL() << "accepted a bad file; expected an error mentioning " << *needles.begin();
  } catch (const io::FormatError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

struct Sample {
  std::vector<float> w{1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};  // [2, 3]
  std::int64_t counter = 12345;
  std::vector<std::uint8_t> bytes{1, 2, 3};                        // odd size
  std::vector<double> d{3.141592653589793};
  std::vector<float> empty;

  std::vector<TensorOut> tensors() const {
    return {
        TensorOut{"bytes", DType::U8, {3}, bytes.data()},
        TensorOut::f32("layer.weight", nn::CView<float>(w.data(), nn::Shape{2, 3})),
        TensorOut{"count", DType::I64, {}, &counter},
        TensorOut{"pi", DType::F64, {1}, d.data()},
        TensorOut{"nothing", DType::F32, {0, 5}, nullptr},
    };
  }
  std::map<std::string, std::string> meta() const {
    return {{"format", "test/1"}, {"note", "unicode ✓ \"quoted\""}};
  }
};

void check_sample(const SafetensorsFile& f, const Sample& s) {
  ASSERT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.metadata().at("format"), "test/1");
  EXPECT_EQ(f.metadata().at("note"), "unicode ✓ \"quoted\"");
  auto w = f.f32("layer.weight");
  ASSERT_EQ(w.shape, (nn::Shape{2, 3}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(w[i], s.w[i]);
  const auto& c = f.info("count");
  EXPECT_EQ(c.dtype, DType::I64);
  EXPECT_TRUE(c.shape.empty());
  std::int64_t cv;
  std::memcpy(&cv, f.data(c), 8);
  EXPECT_EQ(cv, 12345);
  EXPECT_EQ(std::memcmp(f.data("bytes"), s.bytes.data(), 3), 0);
  EXPECT_EQ(*static_cast<const double*>(f.data("pi")), s.d[0]);
  EXPECT_EQ(f.info("nothing").numel(), 0);
  EXPECT_EQ(f.info("nothing").shape_str(), "[0, 5]");
  // Every tensor is aligned to its element size.
  for (auto& t : f.tensors())
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.data(t)) % io::dtype_size(t.dtype), 0u) << t.name;
}

TEST(Safetensors, RoundTripThroughFile) {
  Sample s;
  std::string path = tmp_path("rt.safetensors");
  io::write_safetensors(path, s.tensors(), s.meta());
  auto f = SafetensorsFile::open(path);
  check_sample(f, s);
  // Header length is a multiple of 8, so the data buffer starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  std::uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(f.file_size(), 8 + n + f.data_bytes());
  std::remove(path.c_str());
}

TEST(Safetensors, WriterOrdersByElementSizeAndKeepsOrderWithin) {
  Sample s;
  auto f = [&] {
    std::string b = io::serialize_safetensors(s.tensors(), s.meta());
    return SafetensorsFile::from_memory(b.data(), b.size(), "mem", true);
  }();
  std::vector<std::string> order;
  for (auto& t : f.tensors()) order.push_back(t.name);
  // 8-byte (count, pi in caller order), then 4-byte (layer.weight, nothing), then 1-byte.
  EXPECT_EQ(order, (std::vector<std::string>{"count", "pi", "layer.weight", "nothing", "bytes"}));
}

TEST(Safetensors, FromMemoryIsZeroCopyAndSerializeMatchesFile) {
  Sample s;
  std::string b = io::serialize_safetensors(s.tensors(), s.meta());
  std::vector<std::uint64_t> aligned((b.size() + 7) / 8);
  std::memcpy(aligned.data(), b.data(), b.size());
  auto f = SafetensorsFile::from_memory(aligned.data(), b.size(), "mem");
  check_sample(f, s);
  const char* base = reinterpret_cast<const char*>(aligned.data());
  const char* p = reinterpret_cast<const char*>(f.f32("layer.weight").data);
  EXPECT_TRUE(p >= base && p < base + b.size()) << "tensor view is not into the caller's buffer";

  std::string path = tmp_path("same.safetensors");
  io::write_safetensors(path, s.tensors(), s.meta());
  std::ifstream in(path, std::ios::binary);
  std::string disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(disk, b);
  std::remove(path.c_str());
}

TEST(Safetensors, MisalignedBufferIsCopiedAligned) {
  Sample s;
  std::string b = io::serialize_safetensors(s.tensors(), s.meta());
  std::vector<char> buf(b.size() + 1);
  std::memcpy(buf.data() + 1, b.data(), b.size());  // odd address
  auto f = SafetensorsFile::from_memory(buf.data() + 1, b.size(), "odd");
  check_sample(f, s);
}

TEST(Safetensors, ForeignFileWithUnalignedF32) {
  // A 1-byte tensor first puts the F32 data at offset 1 (legal safetensors, unaligned).
  float v[2] = {4.5f, -1.0f};
  std::string data = std::string("\x07", 1) + std::string(reinterpret_cast<char*>(v), 8);
  std::string h = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  while (h.size() % 8) h += ' ';
  std::string bytes = raw(h, data);
  auto f = SafetensorsFile::from_memory(bytes.data(), bytes.size(), "foreign", true);
  auto b = f.f32("b");
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data) % 4, 0u);
  EXPECT_EQ(b[0], 4.5f);
  EXPECT_EQ(b[1], -1.0f);
}

TEST(Safetensors, EmptyFileWithOnlyMetadata) {
  std::string b = io::serialize_safetensors({}, {{"k", "v"}});
  auto f = SafetensorsFile::from_memory(b.data(), b.size(), "m", true);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.metadata().at("k"), "v");
  std::string b2 = io::serialize_safetensors({}, {});
  auto f2 = SafetensorsFile::from_memory(b2.data(), b2.size(), "m2", true);
  EXPECT_TRUE(f2.metadata().empty());
}

TEST(Safetensors, WriterRejectsBadInput) {
  float x = 1;
  EXPECT_THROW(io::serialize_safetensors({TensorOut{"a", DType::F32, {1}, &x},
                                          TensorOut{"a", DType::F32, {1}, &x}},
                                         {}),
               std::invalid_argument);
  EXPECT_THROW(io::serialize_safetensors({TensorOut{"__metadata__", DType::F32, {1}, &x}}, {}),
               std::invalid_argument);
  EXPECT_THROW(io::serialize_safetensors({TensorOut{"a", DType::F32, {-1}, &x}}, {}),
               std::invalid_argument);
  EXPECT_THROW(io::serialize_safetensors({TensorOut{"a", DType::F32, {2}, nullptr}}, {}),
               std::invalid_argument);
  EXPECT_THROW(io::write_safetensors("/nonexistent-dir/x.safetensors", {}, {}), std::runtime_error);
}

TEST(Safetensors, OpenErrors) {
  EXPECT_THROW(SafetensorsFile::open(tmp_path("does-not-exist")), std::runtime_error);
  try {
    SafetensorsFile::open(tmp_path("does-not-exist"));
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist"), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open("/"), std::runtime_error);  // a directory
  std::string empty = tmp_path("empty");
  { std::ofstream(empty, std::ios::binary); }
  EXPECT_THROW(SafetensorsFile::open(empty), io::FormatError);
  std::remove(empty.c_str());
}

TEST(Safetensors, EveryTruncationIsAnError) {
  Sample s;
  std::string b = io::serialize_safetensors(s.tensors(), s.meta());
  for (std::size_t n = 0; n < b.size(); ++n) {
    std::string cut = b.substr(0, n);
    EXPECT_THROW(SafetensorsFile::from_memory(cut.data(), cut.size(), "cut", true), io::FormatError)
        << "prefix of " << n << " bytes accepted";
  }
  // And through a real file (mmap path), a few lengths.
  std::string path = tmp_path("trunc.safetensors");
  for (std::size_t n : {std::size_t(0), std::size_t(7), std::size_t(8), std::size_t(20), b.size() - 1}) {
    { std::ofstream(path, std::ios::binary).write(b.data(), (std::streamsize)n); }
    EXPECT_THROW(SafetensorsFile::open(path), io::FormatError) << n;
  }
  std::remove(path.c_str());
}

TEST(Safetensors, TrailingBytesAreAnError) {
  Sample s;
  std::string b = io::serialize_safetensors(s.tensors(), s.meta()) + "X";
  expect_error(b, {"trailing"});
}

TEST(Safetensors, BadHeaderLength) {
  expect_error(std::string(5, '\0'), {"too short"});
  expect_error(raw("{}", "", 0), {"header length is 0"});
  expect_error(raw("{}", "", 1ull << 40), {"exceeds the limit"});
  expect_error(raw("{}", "", ~1ull), {"exceeds the limit"});
  expect_error(raw("{}    ", "", 100), {"past the end"});
}

TEST(Safetensors, BadJson) {
  expect_error(raw("{\"a\": "), {"not valid JSON"});
  expect_error(raw("[1, 2]  "), {"does not start with '{'"});
  expect_error(raw(" {}     "), {"does not start with '{'"});
  expect_error(raw("{} trailing"), {"not valid JSON"});
  expect_error(raw("{\"\xff\xfe\": 1}"), {"not valid JSON"});  // invalid UTF-8
  expect_error(raw("{\"a\": 1}"), {"'a'", "not an object"});
}

const char* kGood = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

std::string one(const std::string& entry, const std::string& data = std::string(8, '\0')) {
  return raw("{\"w\":{" + entry + "}}", data);
}

TEST(Safetensors, GoodMinimalFileIsAccepted) {
  // The crafting helpers produce acceptable files when nothing is wrong (so the failures
  // below are caused by the one thing each changes).
  std::string b = one(kGood);
  auto f = SafetensorsFile::from_memory(b.data(), b.size(), "ok", true);
  EXPECT_EQ(f.f32("w").numel(), 2);
}

TEST(Safetensors, BadDtypeAndFields) {
  expect_error(one(R"("dtype":"F33","shape":[2],"data_offsets":[0,8])"), {"'w'", "unknown dtype 'F33'"});
  expect_error(one(R"("dtype":7,"shape":[2],"data_offsets":[0,8])"), {"'w'", "dtype"});
  expect_error(one(R"("shape":[2],"data_offsets":[0,8])"), {"'w'", "missing"});
  expect_error(one(R"("dtype":"F32","data_offsets":[0,8])"), {"'w'", "shape"});
  expect_error(one(R"("dtype":"F32","shape":[2])"), {"'w'", "data_offsets"});
  expect_error(one(std::string(kGood) + R"(,"extra":1)"), {"'w'", "unknown field 'extra'"});
}

TEST(Safetensors, BadShapes) {
  expect_error(one(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])"), {"'w'", "dimension 0"});
  expect_error(one(R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])"), {"'w'", "dimension 0"});
  expect_error(one(R"("dtype":"F32","shape":["2"],"data_offsets":[0,8])"), {"'w'", "dimension 0"});
  expect_error(one(R"("dtype":"F32","shape":2,"data_offsets":[0,8])"), {"'w'", "shape"});
  expect_error(one(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])"),
               {"'w'", "overflow"});
  expect_error(one(R"("dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8])"),
               {"'w'", "overflow"});
  expect_error(one(R"("dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8])"),
               {"'w'", "dimension 0"});
  expect_error(one(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])"),
               {"'w'", "span 8 bytes", "needs 12"});
  expect_error(one(R"("dtype":"F64","shape":[2],"data_offsets":[0,8])"), {"'w'", "needs 16"});
}

TEST(Safetensors, BadOffsets) {
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[0,9])"), {"'w'", "past the data"});
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[8,0])"), {"'w'", "begin > end"});
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[0])"), {"'w'", "data_offsets"});
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[-1,7])"), {"'w'", "data_offsets"});
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,9])"), {"'w'", "data_offsets"});
  expect_error(one(R"("dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,7])"),
               {"'w'", "begin > end"});
  // Hole before the first tensor; overlapping tensors; hole between tensors.
  expect_error(one(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])"), {"unused bytes [0, 4)"});
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   std::string(12, '\0')),
               {"'b'", "overlaps 'a'"});
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   std::string(12, '\0')),
               {"unused bytes [4, 8)", "'b'"});
  // Same range for two tensors is an overlap too.
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                   std::string(8, '\0')),
               {"overlaps"});
}

TEST(Safetensors, DuplicateNames) {
  expect_error(raw(std::string("{\"w\":{") + kGood + "},\"w\":{" + kGood + "}}",
                   std::string(8, '\0')),
               {"duplicate tensor name 'w'"});
  expect_error(one(R"("dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8])"),
               {"duplicate key 'dtype'"});
  expect_error(raw(R"({"__metadata__":{"a":"1","a":"2"}})"), {"duplicate key 'a'"});
}

TEST(Safetensors, BadMetadata) {
  expect_error(raw(R"({"__metadata__":{"a":1}})"), {"'a'", "not a string"});
  expect_error(raw(R"({"__metadata__":{"a":{"b":"c"}}})"), {"'a'", "not a string"});
  expect_error(raw(R"({"__metadata__":["a"]})"), {"__metadata__"});
  expect_error(raw(R"({"__metadata__":null})"), {"__metadata__"});
}

TEST(Safetensors, AccessErrorsNameTheTensor) {
  std::vector<std::int64_t> v{1, 2};
  std::string b = io::serialize_safetensors({TensorOut{"ids", DType::I64, {2}, v.data()}}, {});
  auto f = SafetensorsFile::from_memory(b.data(), b.size(), "acc.safetensors", true);
  try {
    f.f32("ids");
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'ids'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("I64"), std::string::npos);
  }
  try {
    f.f32("missing.weight");
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.weight"), std::string::npos);
  }
  float x[1] = {0};
  std::string b5 = io::serialize_safetensors(
      {TensorOut{"five", DType::F32, {1, 1, 1, 1, 1}, x}}, {});
  auto f5 = SafetensorsFile::from_memory(b5.data(), b5.size(), "five", true);
  EXPECT_THROW(f5.f32("five"), io::FormatError);
  EXPECT_EQ(f5.info("five").shape.size(), 5u);
}

TEST(Safetensors, RandomCorruptionNeverCrashes) {
  // Deterministic mini-fuzz: flip bytes of a valid file; every outcome must be either a valid
  // file whose tensors are in bounds, or an io::FormatError.
  Sample s;
  std::string b = io::serialize_safetensors(s.tensors(), s.meta());
  std::mt19937 rng(1234);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string c = b;
    int flips = 1 + iter % 3;
    for (int k = 0; k < flips; ++k) {
      std::size_t pos = rng() % c.size();
      c[pos] = static_cast<char>(rng() & 0xff);
    }
    try {
      auto f = SafetensorsFile::from_memory(c.data(), c.size(), "fuzz", true);
      for (auto& t : f.tensors()) ASSERT_LE(t.end, f.data_bytes());
      ++accepted;
    } catch (const io::FormatError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // flips inside the data buffer keep the file valid
}

}  // namespace
