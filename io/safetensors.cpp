// io/safetensors.cpp — see io/safetensors.h.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "io/atomic_file.h"
#include "io/errors.h"

namespace io {

using ojson = nlohmann::ordered_json;

// ---- dtypes ----------------------------------------------------------------------------------

namespace {
struct DTypeRow {
  DType t;
  const char* name;
  std::size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4},   {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},     {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::U16, "U16", 2}, {DType::U32, "U32", 4},
    {DType::U64, "U64", 8},
};
const DTypeRow& row(DType t) {
  for (auto& r : kDTypes)
    if (r.t == t) return r;
  throw std::invalid_argument("unknown DType");
}
}  // namespace

std::size_t dtype_size(DType t) { return row(t).size; }
const char* dtype_name(DType t) { return row(t).name; }
std::optional<DType> parse_dtype(const std::string& s) {
  for (auto& r : kDTypes)
    if (s == r.name) return r.t;
  return std::nullopt;
}

std::string TensorInfo::shape_str() const {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- the bytes behind a file -------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  void* addr = nullptr;  // mmap'ed region, or nullptr
  std::size_t len = 0;
  std::vector<std::uint64_t> heap;  // owned copy (8-byte aligned) when not mapped
  ~Mapping() {
    if (addr) ::munmap(addr, len);
  }
};

void SafetensorsFile::drop_cached(const void* p, std::size_t n) const noexcept {
  if (!file_backed_ || !bytes_ || !p || !n) return;
  auto lo = reinterpret_cast<std::uintptr_t>(bytes_);
  auto hi = lo + size_;
  auto a = std::max(reinterpret_cast<std::uintptr_t>(p), lo);
  auto b = std::min(reinterpret_cast<std::uintptr_t>(p) + n, hi);
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  a = (a + page - 1) / page * page;  // whole pages inside the range only
  b = b / page * page;
  // A private read-only file mapping that was never written: MADV_DONTNEED drops the page
  // cache references; the next access reads the file again. Failure only costs memory.
  if (b > a) (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(path, "not a regular file");
  }
  f.size_ = static_cast<std::size_t>(st.st_size);
  f.map_ = std::make_unique<Mapping>();
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": cannot mmap: " + std::strerror(e));
    }
    f.map_->addr = p;
    f.map_->len = f.size_;
    f.bytes_ = static_cast<const unsigned char*>(p);
    f.file_backed_ = true;
  }
  ::close(fd);
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_file_image(const void* data, std::size_t size,
                                                 const std::string& label) {
  SafetensorsFile f = from_memory(data, size, label, false);
  f.file_backed_ = true;
  return f;
}

SafetensorsFile SafetensorsFile::from_memory(const void* data, std::size_t size,
                                             const std::string& label, bool copy) {
  SafetensorsFile f;
  f.path_ = label;
  f.size_ = size;
  if (copy) {
    f.map_ = std::make_unique<Mapping>();
    f.map_->heap.resize((size + 7) / 8);
    if (size) std::memcpy(f.map_->heap.data(), data, size);
    f.bytes_ = reinterpret_cast<const unsigned char*>(f.map_->heap.data());
  } else {
    f.bytes_ = static_cast<const unsigned char*>(data);
  }
  if (size && !f.bytes_) throw std::invalid_argument(label + ": null buffer");
  f.parse();
  return f;
}

// ---- validation --------------------------------------------------------------------------------

namespace {

std::string qname(const std::string& s) {
  // Names come from a hostile file: show at most 80 bytes, control bytes escaped.
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < 80; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

// Reads a JSON value as a non-negative integer that fits in uint64; false otherwise.
bool as_u64(const ojson& v, std::uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<std::uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    auto x = v.get<std::int64_t>();
    if (x < 0) return false;
    out = static_cast<std::uint64_t>(x);
    return true;
  }
  return false;
}

}  // namespace

void SafetensorsFile::parse() {
  const std::string& P = path_;
  if (size_ < 8)
    throw FormatError(P, "file too short for a safetensors header (" + std::to_string(size_) +
                             " bytes, need at least 8)",
                      "", "the file is truncated or not a safetensors file");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes_[i];
  if (n == 0) throw FormatError(P, "header length is 0", "byte 0");
  if (n > kMaxSafetensorsHeader)
    throw FormatError(P, "header length " + std::to_string(n) + " exceeds the limit of " +
                             std::to_string(kMaxSafetensorsHeader) + " bytes",
                      "byte 0", "not a safetensors file, or a corrupt one");
  if (n > size_ - 8)
    throw FormatError(P, "header length " + std::to_string(n) + " runs past the end of the file (" +
                             std::to_string(size_) + " bytes)",
                      "byte 0", "the file is truncated");
  const char* hb = reinterpret_cast<const char*>(bytes_ + 8);
  if (hb[0] != '{')
    throw FormatError(P, "header does not start with '{'", "byte 8",
                      "not a safetensors file");
  data_start_ = 8 + static_cast<std::size_t>(n);
  const std::uint64_t data_size = size_ - data_start_;

  // Parse, detecting duplicate keys at any depth (nlohmann would silently keep the last one).
  std::vector<std::set<std::string>> seen;
  std::string dup;
  int dup_depth = 0;
  auto cb = [&](int depth, ojson::parse_event_t ev, ojson& parsed) {
    if (ev == ojson::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (ev == ojson::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (ev == ojson::parse_event_t::key && !seen.empty() && dup.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(k).second) {
        dup = k;
        dup_depth = depth;
      }
    }
    return true;
  };
  ojson h;
  try {
    h = ojson::parse(hb, hb + n, cb, /*allow_exceptions=*/true);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(P, std::string("header is not valid JSON: ") + e.what(), "bytes 8.." +
                             std::to_string(8 + n));
  }
  if (!dup.empty()) {
    if (dup_depth <= 1)
      throw FormatError(P, "duplicate tensor name " + qname(dup) + " in the header");
    throw FormatError(P, "duplicate key " + qname(dup) + " in the header");
  }
  if (!h.is_object()) throw FormatError(P, "header is not a JSON object");

  tensors_.clear();
  index_.clear();
  metadata_.clear();
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        throw FormatError(P, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw FormatError(P, "metadata value of " + qname(m.key()) + " is a " +
                                   m.value().type_name() + ", not a string",
                            "__metadata__", "safetensors metadata maps strings to strings");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + qname(name);
    if (!v.is_object()) throw FormatError(P, "entry is not an object", where);
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        throw FormatError(P, "unknown field " + qname(f.key()), where);
    TensorInfo t;
    t.name = name;
    auto d = v.find("dtype");
    if (d == v.end() || !d->is_string()) throw FormatError(P, "missing or non-string dtype", where);
    auto dt = parse_dtype(d->get<std::string>());
    if (!dt)
      throw FormatError(P, "unknown dtype " + qname(d->get<std::string>()), where,
                        "known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL U16 U32 U64");
    t.dtype = *dt;
    auto s = v.find("shape");
    if (s == v.end() || !s->is_array()) throw FormatError(P, "missing or non-array shape", where);
    std::uint64_t numel = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < s->size(); ++i) {
      std::uint64_t dim;
      if (!as_u64((*s)[i], dim) || dim > static_cast<std::uint64_t>(INT64_MAX))
        throw FormatError(P, "shape dimension " + std::to_string(i) + " is " + (*s)[i].dump() +
                                 ", not a non-negative integer",
                          where);
      t.shape.push_back(static_cast<std::int64_t>(dim));
      if (__builtin_mul_overflow(numel, dim, &numel)) overflow = true;
    }
    std::uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, (std::uint64_t)dtype_size(t.dtype), &nbytes) ||
        nbytes > static_cast<std::uint64_t>(INT64_MAX))
      throw FormatError(P, "shape " + t.shape_str() + " is too large (element count overflows)",
                        where);
    auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2 || !as_u64((*o)[0], t.begin) ||
        !as_u64((*o)[1], t.end))
      throw FormatError(P, "data_offsets must be two non-negative integers [begin, end]", where);
    if (t.begin > t.end)
      throw FormatError(P, "data_offsets [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + "] has begin > end",
                        where);
    if (t.end > data_size)
      throw FormatError(P, "data_offsets [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + "] run past the data buffer (" +
                               std::to_string(data_size) + " bytes)",
                        where, "the file is truncated");
    if (t.end - t.begin != nbytes)
      throw FormatError(P, "data_offsets span " + std::to_string(t.end - t.begin) +
                               " bytes but " + dtype_name(t.dtype) + " " + t.shape_str() +
                               " needs " + std::to_string(nbytes),
                        where);
    tensors_.push_back(std::move(t));
  }

  // Byte ranges: sorted, non-overlapping, covering the data buffer exactly.
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  const TensorInfo* prev = nullptr;
  for (auto& t : tensors_) {
    if (t.begin < cursor)
      throw FormatError(P, "data of " + qname(t.name) + " [" + std::to_string(t.begin) + ", " +
                               std::to_string(t.end) + ") overlaps " + qname(prev->name) +
                               " [" + std::to_string(prev->begin) + ", " +
                               std::to_string(prev->end) + ")",
                        "tensor " + qname(t.name));
    if (t.begin > cursor)
      throw FormatError(P, "data buffer has unused bytes [" + std::to_string(cursor) + ", " +
                               std::to_string(t.begin) + ") before " + qname(t.name),
                        "tensor " + qname(t.name),
                        "safetensors requires the tensors to cover the data buffer exactly");
    cursor = t.end;
    if (t.end > t.begin || !prev) prev = &t;
  }
  if (cursor != data_size)
    throw FormatError(P, "data buffer has " + std::to_string(data_size - cursor) +
                             " trailing bytes not covered by any tensor (" +
                             std::to_string(data_size) + " bytes, tensors end at " +
                             std::to_string(cursor) + ")",
                      "byte " + std::to_string(data_start_ + cursor),
                      "truncated or appended-to file");
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;

  // Alignment: copy any tensor whose data is not aligned to its element size.
  for (auto& t : tensors_) {
    std::size_t es = dtype_size(t.dtype);
    const unsigned char* p = bytes_ + data_start_ + t.begin;
    if (reinterpret_cast<std::uintptr_t>(p) % es != 0) {
      auto buf = std::make_unique<std::uint64_t[]>((t.nbytes() + 7) / 8 + 1);
      std::memcpy(buf.get(), p, t.nbytes());
      realigned_[t.name] = std::move(buf);
    }
  }
}

// ---- access -------------------------------------------------------------------------------------

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) throw FormatError(path_, "no tensor named " + qname(name));
  return *t;
}

std::uint64_t SafetensorsFile::data_bytes() const { return size_ - data_start_; }

const void* SafetensorsFile::data(const TensorInfo& t) const {
  auto it = realigned_.find(t.name);
  if (it != realigned_.end()) return it->second.get();
  return bytes_ + data_start_ + t.begin;
}

nn::CView<float> SafetensorsFile::f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype != DType::F32)
    throw FormatError(path_, std::string("tensor has dtype ") + dtype_name(t.dtype) +
                                 ", expected F32",
                      "tensor " + qname(name));
  if (t.shape.size() > static_cast<std::size_t>(nn::kMaxDims))
    throw FormatError(path_, "tensor has " + std::to_string(t.shape.size()) + " dims, at most " +
                                 std::to_string(nn::kMaxDims) + " supported",
                      "tensor " + qname(name));
  nn::Shape s;
  s.ndim = static_cast<int>(t.shape.size());
  for (int i = 0; i < s.ndim; ++i) s.d[i] = t.shape[i];
  return nn::CView<float>(static_cast<const float*>(data(t)), s);
}

// ---- writing ------------------------------------------------------------------------------------

TensorOut TensorOut::f32(std::string name, nn::CView<float> v) {
  TensorOut t;
  t.name = std::move(name);
  t.dtype = DType::F32;
  for (int i = 0; i < v.ndim(); ++i) t.shape.push_back(v.dim(i));
  t.data = v.data;
  return t;
}

namespace {

struct Plan {
  std::string header;  // 8-byte length + padded JSON
  std::vector<const TensorOut*> order;
  std::vector<std::uint64_t> nbytes;
};

Plan plan(const std::vector<TensorOut>& tensors, const std::map<std::string, std::string>& meta) {
  Plan p;
  std::set<std::string> names;
  for (auto& t : tensors) {
    if (t.name == "__metadata__")
      throw std::invalid_argument("safetensors: '__metadata__' is reserved, not a tensor name");
    if (!names.insert(t.name).second)
      throw std::invalid_argument("safetensors: duplicate tensor name '" + t.name + "'");
    p.order.push_back(&t);
  }
  // Larger elements first: every tensor then starts at a multiple of its element size.
  std::stable_sort(p.order.begin(), p.order.end(), [](const TensorOut* a, const TensorOut* b) {
    return dtype_size(a->dtype) > dtype_size(b->dtype);
  });
  ojson h = ojson::object();
  if (!meta.empty()) {
    ojson m = ojson::object();
    for (auto& [k, v] : meta) m[k] = v;
    h["__metadata__"] = m;
  }
  std::uint64_t off = 0;
  for (const TensorOut* t : p.order) {
    std::uint64_t n = 1;
    for (auto d : t->shape) {
      if (d < 0) throw std::invalid_argument("safetensors: negative dim in '" + t->name + "'");
      n *= static_cast<std::uint64_t>(d);
    }
    n *= dtype_size(t->dtype);
    if (n > 0 && !t->data)
      throw std::invalid_argument("safetensors: null data for '" + t->name + "'");
    h[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape},
                  {"data_offsets", {off, off + n}}};
    off += n;
    p.nbytes.push_back(n);
  }
  std::string js = h.dump();
  while (js.size() % 8) js.push_back(' ');
  std::uint64_t len = js.size();
  p.header.resize(8);
  for (int i = 0; i < 8; ++i) p.header[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  p.header += js;
  return p;
}

}  // namespace

std::string serialize_safetensors(const std::vector<TensorOut>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Plan p = plan(tensors, metadata);
  std::string out = p.header;
  for (std::size_t i = 0; i < p.order.size(); ++i)
    out.append(static_cast<const char*>(p.order[i]->data), p.nbytes[i]);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  static_assert(std::endian::native == std::endian::little, "big-endian hosts are not supported");
  Plan p = plan(tensors, metadata);
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(p.header.data(), static_cast<std::streamsize>(p.header.size()));
    for (std::size_t i = 0; i < p.order.size(); ++i)
      if (p.nbytes[i])
        out.write(static_cast<const char*>(p.order[i]->data),
                  static_cast<std::streamsize>(p.nbytes[i]));
  });
}

}  // namespace io
