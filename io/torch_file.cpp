// io/torch_file.cpp — see torch_file.h.
#include "io/torch_file.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "io/errors.h"
#include "io/mmap_file.h"
#include "io/zip.h"

namespace io::torch {

using pickle::Kind;
using pickle::Value;

std::size_t element_size(DType d) {
  switch (d) {
    case DType::Float64: case DType::Int64: return 8;
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float16: case DType::BFloat16: case DType::Int16: return 2;
    case DType::Int8: case DType::UInt8: case DType::Bool: return 1;
  }
  return 1;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int64: return "int64";
    case DType::Int32: return "int32";
    case DType::Int16: return "int16";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

namespace {

constexpr std::uint64_t kMaxCompressedPickle = std::uint64_t(256) << 20;

bool storage_dtype(const std::string& name, DType& d) {
  static const std::pair<const char*, DType> kTypes[] = {
      {"FloatStorage", DType::Float32},   {"DoubleStorage", DType::Float64},
      {"HalfStorage", DType::Float16},    {"BFloat16Storage", DType::BFloat16},
      {"LongStorage", DType::Int64},      {"IntStorage", DType::Int32},
      {"ShortStorage", DType::Int16},     {"CharStorage", DType::Int8},
      {"ByteStorage", DType::UInt8},      {"BoolStorage", DType::Bool},
  };
  for (auto& [n, t] : kTypes)
    if (name == n) { d = t; return true; }
  return false;
}

float half_to_float(std::uint16_t h) {
  std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: value = man * 2^-24, exact in float
      float f = std::ldexp(static_cast<float>(man), -24);
      std::memcpy(&bits, &f, 4);
      bits |= sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Reads element i (in storage elements) as double / int64.
double elem_f64(const Storage& s, std::int64_t i) {
  const std::uint8_t* p = s.data + i * static_cast<std::int64_t>(element_size(s.dtype));
  switch (s.dtype) {
    case DType::Float32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::Float64: { double v; std::memcpy(&v, p, 8); return v; }
    case DType::Float16: { std::uint16_t v; std::memcpy(&v, p, 2); return half_to_float(v); }
    case DType::BFloat16: {
      std::uint16_t v; std::memcpy(&v, p, 2);
      std::uint32_t b = std::uint32_t(v) << 16; float f; std::memcpy(&f, &b, 4); return f;
    }
    case DType::Int64: { std::int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    case DType::Int32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::Int16: { std::int16_t v; std::memcpy(&v, p, 2); return v; }
    case DType::Int8: return static_cast<std::int8_t>(*p);
    case DType::UInt8: return *p;
    case DType::Bool: return *p ? 1.0 : 0.0;
  }
  return 0;
}
std::int64_t elem_i64(const Storage& s, std::int64_t i) {
  const std::uint8_t* p = s.data + i * static_cast<std::int64_t>(element_size(s.dtype));
  switch (s.dtype) {
    case DType::Int64: { std::int64_t v; std::memcpy(&v, p, 8); return v; }
    case DType::Int32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::Int16: { std::int16_t v; std::memcpy(&v, p, 2); return v; }
    case DType::Int8: return static_cast<std::int8_t>(*p);
    case DType::UInt8: return *p;
    case DType::Bool: return *p ? 1 : 0;
    default: throw std::logic_error("elem_i64 on a float tensor");
  }
}

// Calls f(storage_index) for every element in logical row-major order.
template <typename F>
void for_each_index(const Tensor& t, F&& f) {
  std::int64_t n = t.numel();
  if (n == 0) return;
  int nd = t.ndim();
  std::vector<std::int64_t> idx(nd, 0);
  std::int64_t pos = t.offset;
  for (std::int64_t k = 0; k < n; ++k) {
    f(pos);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < t.shape[d]) { pos += t.stride[d]; break; }
      pos -= t.stride[d] * (t.shape[d] - 1);
      idx[d] = 0;
    }
  }
}

bool is_float(DType d) {
  return d == DType::Float32 || d == DType::Float64 || d == DType::Float16 || d == DType::BFloat16;
}

}  // namespace

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (auto x : shape) n *= x;
  return n;
}

bool Tensor::is_contiguous() const {
  std::int64_t expect = 1;
  for (int d = ndim() - 1; d >= 0; --d) {
    if (shape[d] != 1 && stride[d] != expect) return false;
    expect *= shape[d];
  }
  return true;
}

std::string Tensor::str() const {
  std::string s = std::string(dtype_name(dtype)) + "[";
  for (int d = 0; d < ndim(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + "]";
}

std::vector<float> Tensor::to_float32() const {
  std::vector<float> out(static_cast<std::size_t>(numel()));
  if (out.empty()) return out;
  if (dtype == DType::Float32 && is_contiguous()) {
    std::memcpy(out.data(), storage->data + offset * 4, out.size() * 4);
    return out;
  }
  std::size_t k = 0;
  const Storage& s = *storage;
  if (dtype == DType::Float32) {
    for_each_index(*this, [&](std::int64_t i) { std::memcpy(&out[k++], s.data + i * 4, 4); });
  } else {
    for_each_index(*this, [&](std::int64_t i) { out[k++] = static_cast<float>(elem_f64(s, i)); });
  }
  return out;
}

std::vector<double> Tensor::to_float64() const {
  std::vector<double> out(static_cast<std::size_t>(numel()));
  std::size_t k = 0;
  const Storage* s = storage.get();
  for_each_index(*this, [&](std::int64_t i) { out[k++] = elem_f64(*s, i); });
  return out;
}

std::vector<std::int64_t> Tensor::to_int64() const {
  if (is_float(dtype))
    throw std::invalid_argument(std::string("to_int64 on a ") + dtype_name(dtype) + " tensor");
  std::vector<std::int64_t> out(static_cast<std::size_t>(numel()));
  std::size_t k = 0;
  const Storage* s = storage.get();
  for_each_index(*this, [&](std::int64_t i) { out[k++] = elem_i64(*s, i); });
  return out;
}

const Tensor* StateDict::find(std::string_view name) const {
  for (const auto& [k, t] : entries)
    if (k == name) return &t;
  return nullptr;
}

const Tensor& StateDict::at(std::string_view name) const {
  if (const Tensor* t = find(name)) return *t;
  std::string have;
  for (std::size_t k = 0; k < entries.size() && k < 12; ++k) have += (k ? ", " : "") + entries[k].first;
  if (entries.size() > 12) have += ", ...";
  throw FormatError(source, "no tensor named '" + std::string(name) + "'", "",
                    "the file has " + std::to_string(entries.size()) + " tensors: " + have);
}

std::vector<std::string> StateDict::names() const {
  std::vector<std::string> v;
  for (const auto& e : entries) v.push_back(e.first);
  return v;
}

const Tensor* as_tensor(const Value* v) {
  if (!v || v->kind != Kind::Ext || v->name != "torch.Tensor") return nullptr;
  return static_cast<const Tensor*>(v->ext.get());
}

namespace {

// A reference to a (part of a) storage, as produced by a persistent id.
struct StorageRef {
  std::shared_ptr<Storage> storage;
  std::int64_t offset = 0;  // view offset in elements (legacy views)
  std::int64_t numel = -1;  // view size in elements (-1: whole storage)
};

std::int64_t as_int(const Value* v, const char* what) {
  if (v && v->kind == Kind::Int) return v->i;
  if (v && v->kind == Kind::Bool) return v->b;
  throw std::runtime_error(std::string(what) + " is not an int: " + pickle::describe(v, 1));
}

std::vector<std::int64_t> as_int_list(const Value* v, const char* what) {
  // torch.Size(...) pickles as REDUCE(torch.Size, (tuple,)) in some files.
  if (v && v->kind == Kind::Object && v->args && v->args->kind == Kind::Tuple && v->args->items.size() == 1)
    v = v->args->items[0];
  if (!v || !v->is_seq()) throw std::runtime_error(std::string(what) + " is not a tuple: " + pickle::describe(v, 1));
  std::vector<std::int64_t> r;
  for (const Value* x : v->items) r.push_back(as_int(x, what));
  return r;
}

// The state shared by the pickle callbacks while one torch file loads.
struct Loader {
  std::string path;
  std::shared_ptr<const MmapFile> map;
  const ZipReader* zip = nullptr;  // zip format
  std::string prefix;              // "<archive>/"
  bool legacy = false;
  std::map<std::string, std::shared_ptr<Storage>> storages;
  std::vector<std::shared_ptr<Tensor>> tensors;          // for the final bounds check
  std::vector<std::shared_ptr<StorageRef>> tensor_refs;  // parallel to tensors

  pickle::Options options() {
    pickle::Options o;
    o.persistent_load = [this](pickle::Document& doc, const Value& pid) { return persistent(doc, pid); };
    o.reduce_hook = [this](pickle::Document& doc, const Value& fn, Value& args) { return reduce(doc, fn, args); };
    return o;
  }

  Value* persistent(pickle::Document& doc, const Value& pid) {
    if (!pid.is_seq() || pid.items.empty() || !pid.items[0]->is_str())
      throw std::runtime_error("unexpected persistent id " + pickle::describe(&pid, 1));
    const std::string& tag = pid.items[0]->s;
    if (tag == "module") {  // legacy: a pickled nn.Module class with its source; keep opaque
      Value* v = doc.make(Kind::None);
      return v;
    }
    if (tag != "storage") throw std::runtime_error("unknown persistent id type '" + tag + "'");
    std::size_t n = pid.items.size();
    if (n != 5 && n != 6)
      throw std::runtime_error("storage persistent id has " + std::to_string(n) + " fields (expected 5 or 6)");
    const Value* type = pid.items[1];
    DType dt;
    if (type->kind != Kind::Global || type->s != "torch" || !storage_dtype(type->name, dt))
      throw std::runtime_error("unsupported storage type " + pickle::describe(type, 0));
    if (!pid.items[2]->is_str()) throw std::runtime_error("storage key is not a str");
    const std::string& key = pid.items[2]->s;
    std::int64_t numel = as_int(pid.items[4], "storage size");
    if (numel < 0) throw std::runtime_error("negative storage size");
    auto ref = std::make_shared<StorageRef>();
    auto it = storages.find(key);
    if (it == storages.end()) {
      auto s = std::make_shared<Storage>();
      s->key = key;
      s->dtype = dt;
      s->numel = numel;
      if (!legacy) attach_zip_storage(*s);
      it = storages.emplace(key, s).first;
    } else if (it->second->dtype != dt) {
      throw std::runtime_error("storage '" + key + "' is used with two dtypes");
    }
    ref->storage = it->second;
    if (n == 6 && !pid.items[5]->is_none()) {  // legacy view: (view_key, offset, size)
      const Value* vm = pid.items[5];
      if (!vm->is_seq() || vm->items.size() != 3) throw std::runtime_error("bad storage view metadata");
      ref->offset = as_int(vm->items[1], "view offset");
      ref->numel = as_int(vm->items[2], "view size");
      if (ref->offset < 0 || ref->numel < 0) throw std::runtime_error("negative storage view");
    }
    Value* v = doc.make(Kind::Ext);
    v->name = "torch.StorageRef";
    v->ext = ref;
    return v;
  }

  void attach_zip_storage(Storage& s) {
    const ZipEntry* e = zip->find(prefix + "data/" + s.key);
    if (!e) throw std::runtime_error("missing storage record '" + prefix + "data/" + s.key + "'");
    std::uint64_t need = static_cast<std::uint64_t>(s.numel) * element_size(s.dtype);
    if (static_cast<std::uint64_t>(s.numel) > (std::uint64_t(1) << 60) / 8 || e->size < need)
      throw std::runtime_error("storage record '" + e->name + "' has " + std::to_string(e->size) +
                               " bytes, needs " + std::to_string(need) + " (truncated?)");
    if (e->method == 0) {
      auto span = zip->stored(*e);
      zip->verify_crc(*e, span);
      s.data = span.data();
      s.owner = map;
    } else {
      // Compressed: inflate no more than the storage needs (its size in the pickle), so a
      // record declaring more (a decompression bomb) is refused before anything is allocated.
      if (e->size != need)
        throw std::runtime_error("compressed storage record '" + e->name + "' declares " +
                                 std::to_string(e->size) + " bytes, the storage needs " +
                                 std::to_string(need));
      auto buf = std::make_shared<std::vector<std::uint8_t>>(zip->read(*e, need));
      zip->verify_crc(*e, *buf);
      s.data = buf->data();
      s.owner = buf;
    }
  }

  Value* make_tensor(pickle::Document& doc, const Value& sv, const Value* off, const Value* size,
                     const Value* stride) {
    if (sv.kind != Kind::Ext || sv.name != "torch.StorageRef")
      throw std::runtime_error("tensor storage is not a storage: " + pickle::describe(&sv, 1));
    auto ref = std::static_pointer_cast<const StorageRef>(sv.ext);
    auto t = std::make_shared<Tensor>();
    t->dtype = ref->storage->dtype;
    t->offset = as_int(off, "storage offset");
    t->shape = as_int_list(size, "tensor size");
    t->stride = as_int_list(stride, "tensor stride");
    if (t->shape.size() != t->stride.size()) throw std::runtime_error("tensor size and stride lengths differ");
    if (t->shape.size() > 16) throw std::runtime_error("tensor has more than 16 dimensions");
    if (t->offset < 0) throw std::runtime_error("negative storage offset");
    for (std::size_t d = 0; d < t->shape.size(); ++d)
      if (t->shape[d] < 0 || t->stride[d] < 0) throw std::runtime_error("negative tensor size or stride");
      else if (t->shape[d] > (std::int64_t(1) << 50) || t->stride[d] > (std::int64_t(1) << 50))
        throw std::runtime_error("impossibly large tensor size or stride");
    t->storage = ref->storage;  // offsets are fixed up in finish() once storages are known
    tensors.push_back(t);
    tensor_refs.push_back(std::const_pointer_cast<StorageRef>(ref));
    Value* v = doc.make(Kind::Ext);
    v->name = "torch.Tensor";
    v->ext = t;
    return v;
  }

  Value* reduce(pickle::Document& doc, const Value& fn, Value& args) {
    if (fn.s == "torch._utils") {
      const auto& a = args.items;
      if (fn.name == "_rebuild_tensor_v2" || fn.name == "_rebuild_tensor") {
        if (a.size() < 4) throw std::runtime_error(fn.name + ": expected at least 4 arguments");
        return make_tensor(doc, *a[0], a[1], a[2], a[3]);
      }
      if (fn.name == "_rebuild_parameter" || fn.name == "_rebuild_parameter_with_state") {
        if (a.empty() || !as_tensor(a[0])) throw std::runtime_error(fn.name + ": first argument is not a tensor");
        return a[0];
      }
      if (fn.name.rfind("_rebuild_", 0) == 0 && fn.name != "_rebuild_device_tensor_from_numpy")
        throw std::runtime_error("unsupported tensor kind torch._utils." + fn.name +
                                 " (only dense CPU tensors are supported)");
    }
    return nullptr;
  }

  // Bounds-checks every tensor against its storage (after all storages have data).
  void finish() {
    for (std::size_t k = 0; k < tensors.size(); ++k) {
      Tensor& t = *tensors[k];
      const StorageRef& ref = *tensor_refs[k];
      const Storage& s = *ref.storage;
      if (!s.data && s.numel > 0) throw FormatError(path, "storage '" + s.key + "' has no data");
      std::int64_t avail = ref.numel >= 0 ? ref.numel : s.numel;
      if (ref.offset > s.numel || avail > s.numel - ref.offset)
        throw FormatError(path, "storage view of '" + s.key + "' exceeds the storage");
      // extent = offset + sum (shape-1)*stride + 1, overflow-checked
      std::int64_t numel = 1;
      bool empty = false;
      __int128 last = t.offset;
      for (int d = 0; d < t.ndim(); ++d) {
        if (t.shape[d] == 0) empty = true;
        last += static_cast<__int128>(t.shape[d] - 1) * t.stride[d];
        if (!empty && t.shape[d] > 0 && numel > (std::int64_t(1) << 50) / t.shape[d])
          throw FormatError(path, "tensor " + t.str() + " is impossibly large");
        numel *= t.shape[d];
      }
      if (!empty && last >= avail)
        throw FormatError(path, "tensor " + t.str() + " (offset " + std::to_string(t.offset) +
                                    ") reads past the end of storage '" + s.key + "' (" +
                                    std::to_string(avail) + " elements)");
      t.offset += ref.offset;
    }
  }
};

const std::uint8_t kLegacyMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

TorchFile load_zip(Loader& L) {
  ZipReader zip(L.map);
  L.zip = &zip;
  if (zip.entries().empty()) throw FormatError(L.path, "zip archive is empty (not a PyTorch checkpoint)");
  const std::string& first = zip.entries()[0].name;
  auto slash = first.find('/');
  if (slash == std::string::npos || slash == 0)
    throw FormatError(L.path, "zip entry '" + first + "' is not inside an archive folder (not a PyTorch checkpoint)");
  L.prefix = first.substr(0, slash + 1);
  const ZipEntry* pkl = zip.find(L.prefix + "data.pkl");
  if (!pkl) {
    if (zip.find(L.prefix + "constants.pkl") || zip.find(L.prefix + "code/"))
      throw FormatError(L.path, "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
    throw FormatError(L.path, "zip has no '" + L.prefix + "data.pkl' record (not a PyTorch checkpoint)");
  }
  if (const ZipEntry* bo = zip.find(L.prefix + "byteorder")) {
    auto b = zip.read(*bo, 64);
    std::string s(b.begin(), b.end());
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s == "big") throw FormatError(L.path, "big-endian checkpoint is not supported", "record 'byteorder'");
    if (s != "little") throw FormatError(L.path, "unknown byteorder '" + s + "'", "record 'byteorder'");
  }
  TorchFile tf;
  tf.path = L.path;
  for (const char* vname : {"version", ".data/version"}) {
    if (const ZipEntry* ve = zip.find(L.prefix + vname)) {
      auto b = zip.read(*ve, 64);
      std::string s(b.begin(), b.end());
      int v = 0;
      for (char c : s) {
        if (c >= '0' && c <= '9') { v = v * 10 + (c - '0'); if (v > 1000000) break; }
        else if (c != '\n' && c != '\r' && c != ' ') throw FormatError(L.path, "bad version record '" + s + "'");
      }
      tf.version = v;
      break;
    }
  }
  std::vector<std::uint8_t> owned;
  std::span<const std::uint8_t> bytes;
  if (pkl->method == 0) {
    bytes = zip.stored(*pkl);
  } else {
    // A compressed pickle is inflated only up to kMaxCompressedPickle bytes (real data.pkl
    // records hold names and metadata, a few MB at most); a bigger one is refused unread.
    if (pkl->size > kMaxCompressedPickle)
      throw FormatError(L.path, "compressed record '" + pkl->name + "' declares " +
                                    std::to_string(pkl->size) + " bytes, more than the " +
                                    std::to_string(kMaxCompressedPickle) + " a pickle may take");
    owned = zip.read(*pkl, kMaxCompressedPickle);
    bytes = owned;
  }
  zip.verify_crc(*pkl, bytes);
  std::string src = L.path + " (record " + pkl->name + ")";
  std::size_t used = 0;
  tf.doc = pickle::parse(bytes, src, L.options(), &used, 0);
  L.finish();
  L.zip = nullptr;
  return tf;
}

TorchFile load_legacy(Loader& L) {
  L.legacy = true;
  auto all = L.map->bytes();
  std::size_t pos = 0;
  auto next = [&](const pickle::Options& o) {
    std::size_t used = 0;
    pickle::Document d = pickle::parse(all.subspan(pos), L.path, o, &used, pos);
    pos += used;
    return d;
  };
  pickle::Options plain;
  plain.max_alloc_bytes = std::size_t(1) << 26;
  auto magic = next(plain);
  const Value* m = magic.root;
  if (!(m->kind == Kind::BigInt && m->s.size() == 10 && std::memcmp(m->s.data(), kLegacyMagic, 10) == 0))
    throw FormatError(L.path, "not a PyTorch checkpoint (the first pickle is not torch's magic number)",
                      "byte offset 0");
  std::size_t at = pos;
  auto proto = next(plain);
  if (proto.root->kind != Kind::Int || proto.root->i != 1001)
    throw FormatError(L.path, "unsupported legacy protocol version " + pickle::describe(proto.root, 0),
                      "byte offset " + std::to_string(at));
  at = pos;
  auto sys = next(plain);
  const Value* le = sys.root->get("little_endian");
  if (!le || le->kind != Kind::Bool)
    throw FormatError(L.path, "legacy sys_info lacks 'little_endian'", "byte offset " + std::to_string(at));
  if (!le->b) throw FormatError(L.path, "big-endian checkpoint is not supported");
  TorchFile tf;
  tf.path = L.path;
  tf.legacy = true;
  tf.version = 1001;
  tf.doc = next(L.options());
  at = pos;
  auto keys = next(plain);
  if (keys.root->kind != Kind::List)
    throw FormatError(L.path, "legacy storage key list is not a list", "byte offset " + std::to_string(at));
  for (const Value* kv : keys.root->items) {
    if (!kv->is_str()) throw FormatError(L.path, "legacy storage key is not a str", "byte offset " + std::to_string(at));
    auto it = L.storages.find(kv->s);
    if (it == L.storages.end())
      throw FormatError(L.path, "legacy storage key '" + kv->s + "' was never referenced",
                        "byte offset " + std::to_string(at));
    Storage& s = *it->second;
    if (s.data) throw FormatError(L.path, "legacy storage '" + kv->s + "' appears twice");
    if (all.size() - pos < 8)
      throw FormatError(L.path, "truncated: storage '" + s.key + "' size missing", "byte offset " + std::to_string(pos));
    std::uint64_t n = 0;
    for (int j = 0; j < 8; ++j) n |= std::uint64_t(all[pos + j]) << (8 * j);
    std::size_t es = element_size(s.dtype);
    if (n > (all.size() - pos - 8) / es)
      throw FormatError(L.path, "truncated: storage '" + s.key + "' needs " + std::to_string(n) + " elements of " +
                            std::to_string(es) + " bytes, only " + std::to_string(all.size() - pos - 8) + " bytes left",
                        "byte offset " + std::to_string(pos));
    s.numel = static_cast<std::int64_t>(n);
    s.data = all.data() + pos + 8;
    s.owner = L.map;
    pos += 8 + n * es;
  }
  for (auto& [k, s] : L.storages)
    if (!s->data && s->numel > 0) throw FormatError(L.path, "legacy storage '" + k + "' has no data (truncated?)");
  L.finish();
  return tf;
}

}  // namespace

TorchFile open_torch_file(const std::string& path) {
  Loader L;
  L.path = path;
  L.map = MmapFile::open_shared(path);
  auto b = L.map->bytes();
  if (b.size() >= 8 && std::memcmp(b.data(), "PYTORCH1", 8) == 0)
    throw FormatError(path, "unsupported preview-format PyTorch file (PYTORCH1)");
  if (b.size() >= 4 && std::memcmp(b.data(), "PK\x03\x04", 4) == 0) return load_zip(L);
  if (b.size() >= 262 && std::memcmp(b.data() + 257, "ustar", 5) == 0)
    throw FormatError(path, "tar-format checkpoint (PyTorch < 0.4) is not supported",
                      "", "re-save it with a newer torch: torch.save(torch.load(f), g)");
  if (b.size() >= 2 && b[0] == 0x80) return load_legacy(L);
  if (b.empty()) throw FormatError(path, "empty file (expected a PyTorch checkpoint)");
  throw FormatError(path, "not a PyTorch checkpoint (neither a zip archive nor a legacy pickle stream)",
                    "byte offset 0");
}

namespace {

bool is_module_object(const Value* v) {
  return v && v->kind == Kind::Object && v->get("_parameters") && v->get("_modules");
}

void collect_module(const Value* mod, const std::string& prefix, StateDict& out, int depth,
                    std::unordered_map<std::string, std::size_t>& seen, std::size_t& visits) {
  if (depth > 64) throw FormatError(out.source, "module tree deeper than 64 levels (cyclic?)", "'" + prefix + "'");
  if (++visits > 100000) throw FormatError(out.source, "more than 100000 submodules (hostile module graph?)");
  auto add = [&](const Value* dict, const Value* skip) {
    if (!dict) return;
    if (dict->kind != Kind::Dict)
      throw FormatError(out.source, "module attribute is not a dict", "'" + prefix + "'");
    for (const auto& [k, v] : dict->pairs) {
      if (!k->is_str()) continue;
      if (v->is_none()) continue;
      if (skip) {
        bool sk = false;
        for (const Value* x : skip->items) sk = sk || (x->is_str() && x->s == k->s);
        if (sk) continue;
      }
      const Tensor* t = as_tensor(v);
      if (!t) throw FormatError(out.source, "'" + prefix + k->s + "' is " + pickle::describe(v, 0) + ", not a tensor");
      std::string name = prefix + k->s;
      auto it = seen.find(name);
      if (it != seen.end()) out.entries[it->second].second = *t;
      else { seen.emplace(name, out.entries.size()); out.entries.emplace_back(name, *t); }
    }
  };
  add(mod->get("_parameters"), nullptr);
  add(mod->get("_buffers"), mod->get("_non_persistent_buffers_set"));
  const Value* children = mod->get("_modules");
  if (children && children->kind == Kind::Dict) {
    for (const auto& [k, v] : children->pairs) {
      if (!k->is_str() || v->is_none()) continue;
      if (!is_module_object(v))
        throw FormatError(out.source, "submodule '" + prefix + k->s + "' is not an nn.Module object");
      collect_module(v, prefix + k->s + ".", out, depth + 1, seen, visits);
    }
  }
}

bool is_tensor_dict(const Value* v) {
  if (!v || v->kind != Kind::Dict || v->pairs.empty()) return false;
  for (const auto& [k, x] : v->pairs)
    if (!k->is_str() || !as_tensor(x)) return false;
  return true;
}

StateDict dict_to_state(const Value* d, const std::string& source) {
  StateDict sd;
  sd.source = source;
  std::unordered_map<std::string, std::size_t> seen;
  for (const auto& [k, v] : d->pairs) {
    if (!k->is_str()) throw FormatError(source, "state dict key " + pickle::describe(k, 0) + " is not a str");
    const Tensor* t = as_tensor(v);
    if (!t) throw FormatError(source, "state dict entry '" + k->s + "' is " + pickle::describe(v, 0) + ", not a tensor");
    auto it = seen.find(k->s);
    if (it != seen.end()) sd.entries[it->second].second = *t;
    else { seen.emplace(k->s, sd.entries.size()); sd.entries.emplace_back(k->s, *t); }
  }
  return sd;
}

}  // namespace

StateDict module_state_dict(const Value* module, const std::string& source) {
  StateDict sd;
  sd.source = source;
  if (!is_module_object(module)) throw FormatError(source, "object is not an nn.Module: " + pickle::describe(module, 0));
  std::unordered_map<std::string, std::size_t> seen;
  std::size_t visits = 0;
  collect_module(module, "", sd, 0, seen, visits);
  return sd;
}

StateDict load_state_dict(const std::string& path) {
  TorchFile tf = open_torch_file(path);
  const Value* r = tf.root();
  for (int hop = 0; hop < 4; ++hop) {
    if (is_tensor_dict(r)) return dict_to_state(r, path);
    if (r->kind == Kind::Dict) {
      const Value* inner = nullptr;
      for (const char* k : {"model", "state_dict", "model_state_dict", "module"})
        if ((inner = r->get(k))) break;
      if (inner) { r = inner; continue; }
      if (r->pairs.empty()) throw FormatError(path, "the checkpoint holds an empty dict (no tensors)");
      // A dict with some non-tensor entries: report the first offender.
      return dict_to_state(r, path);
    }
    if (is_module_object(r)) return module_state_dict(r, path);
    if (r->kind == Kind::Object) {
      if (const Value* m = r->get("model"); m && is_module_object(m)) return module_state_dict(m, path);
    }
    break;
  }
  throw FormatError(path, "no state dict found: the file holds " + pickle::describe(tf.root(), 1));
}

std::vector<std::string> load_itos(const std::string& path) {
  pickle::Document d = pickle::parse_file(path);
  const Value* r = d.root;
  // fastcore L or similar wrappers: accept an object whose state has 'items'.
  if (r->kind == Kind::Object) {
    if (const Value* it = r->get("items")) r = it;
  }
  if (!r->is_seq())
    throw FormatError(path, "expected a pickled list of str (vocabulary), got " + pickle::describe(r, 0));
  std::vector<std::string> out;
  out.reserve(r->items.size());
  for (std::size_t k = 0; k < r->items.size(); ++k) {
    const Value* s = r->items[k];
    if (!s->is_str())
      throw FormatError(path, "vocabulary item " + std::to_string(k) + " is " + pickle::describe(s, 0) + ", not a str");
    out.push_back(s->s);
  }
  return out;
}

namespace {

// Breadth-first search for the first Object of class module.name (cycle-safe, bounded).
const Value* find_object(const Value* root, std::string_view module, std::string_view name) {
  std::vector<const Value*> queue{root};
  std::unordered_set<const Value*> seen{root};
  for (std::size_t q = 0; q < queue.size() && q < 5'000'000; ++q) {
    const Value* v = queue[q];
    if (v->is_object_of(module, name)) return v;
    auto visit = [&](const Value* c) {
      if (c && seen.insert(c).second) queue.push_back(c);
    };
    for (const Value* c : v->items) visit(c);
    for (const auto& [a, b] : v->pairs) { visit(a); visit(b); }
    visit(v->args);
    visit(v->state);
  }
  return nullptr;
}

// numpy scalar: REDUCE(numpy[._core|.core].multiarray.scalar, (dtype('i8', ...), raw bytes)).
bool numpy_scalar_string(const Value* s, std::string& out) {
  if (!s || s->kind != Kind::Object || !s->cls || s->cls->kind != Kind::Global || s->cls->name != "scalar" ||
      (s->cls->s != "numpy._core.multiarray" && s->cls->s != "numpy.core.multiarray"))
    return false;
  const Value* a = s->args;
  if (!a || a->kind != Kind::Tuple || a->items.size() != 2 || a->items[1]->kind != Kind::Bytes) return false;
  const Value* dt = a->items[0];
  if (!dt || dt->kind != Kind::Object || !dt->args || dt->args->items.empty() || !dt->args->items[0]->is_str())
    return false;
  const std::string& code = dt->args->items[0]->s;  // "i8", "u1", "f8", ...
  const std::string& b = a->items[1]->s;
  if (code.size() != 2 || b.size() != static_cast<std::size_t>(code[1] - '0')) return false;
  std::uint64_t u = 0;
  for (std::size_t j = 0; j < b.size(); ++j) u |= std::uint64_t(std::uint8_t(b[j])) << (8 * j);
  int bits = static_cast<int>(b.size()) * 8;
  if (code[0] == 'u' && bits <= 64) { out = std::to_string(u); return true; }
  if (code[0] == 'i' && bits <= 64) {
    if (bits < 64 && (u >> (bits - 1)) & 1) u |= ~std::uint64_t(0) << bits;
    out = std::to_string(static_cast<std::int64_t>(u));
    return true;
  }
  if (code == "f8" || code == "f4") {
    double d;
    if (bits == 64) std::memcpy(&d, &u, 8);
    else { std::uint32_t w = static_cast<std::uint32_t>(u); float f; std::memcpy(&f, &w, 4); d = f; }
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    out = buf;
    return true;
  }
  return false;
}

std::vector<std::string> str_list(const Value* v) {
  // fastcore L / CategoryMap (an L whose 'items' is itself an L): state {'items': [...], ...}
  for (int hop = 0; hop < 4 && v && v->kind == Kind::Object; ++hop) {
    const Value* it = v->get("items");
    if (!it) break;
    v = it;
  }
  std::vector<std::string> out;
  if (!v || !v->is_seq()) return out;
  for (const Value* s : v->items) {
    if (s->is_str()) out.push_back(s->s);
    else if (s->is_int()) out.push_back(std::to_string(s->i));
    else if (std::string t; numpy_scalar_string(s, t)) out.push_back(t);
    else return {};
  }
  return out;
}

}  // namespace

LearnerFile load_learner(const std::string& path) {
  TorchFile tf = open_torch_file(path);
  const Value* r = tf.root();
  if (r->kind != Kind::Object)
    throw FormatError(path, "expected a pickled fastai Learner, got " + pickle::describe(r, 0));
  LearnerFile lf;
  lf.learner_class = r->class_name();
  const Value* model = r->get("model");
  if (!model) throw FormatError(path, "the pickled " + lf.learner_class + " has no 'model' attribute");
  lf.model = module_state_dict(model, path);
  if (const Value* num = find_object(r, "fastai.text.data", "Numericalize"))
    lf.vocab = str_list(num->get("vocab"));
  if (const Value* cat = find_object(r, "fastai.data.transforms", "Categorize"))
    lf.classes = str_list(cat->get("vocab"));
  return lf;
}

}  // namespace io::torch
