// io/pickle.cpp — see pickle.h. A stack machine over the opcodes of pickle protocols 0–5 that
// only ever builds passive values.
#include "io/pickle.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "io/errors.h"
#include "io/mmap_file.h"

namespace io::pickle {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "big int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Set: return "set";
    case Kind::FrozenSet: return "frozenset";
    case Kind::Global: return "global";
    case Kind::Object: return "object";
    case Kind::Ext: return "ext";
  }
  return "?";
}

const Value* Value::get(std::string_view key) const {
  const Value* d = this;
  if (kind == Kind::Object) {
    if (state && state->kind == Kind::Dict) {
      if (const Value* r = state->get(key)) return r;
    }
    // A (dict_state, slots_state) tuple.
    if (state && state->kind == Kind::Tuple && state->items.size() == 2) {
      for (const Value* part : state->items)
        if (part && part->kind == Kind::Dict)
          if (const Value* r = part->get(key)) return r;
    }
  } else if (kind != Kind::Dict) {
    return nullptr;
  }
  for (auto it = d->pairs.rbegin(); it != d->pairs.rend(); ++it)
    if (it->first && it->first->kind == Kind::Str && it->first->s == key) return it->second;
  return nullptr;
}

bool Value::is_global(std::string_view module, std::string_view nm) const {
  return kind == Kind::Global && s == module && name == nm;
}

bool Value::is_object_of(std::string_view module, std::string_view nm) const {
  return kind == Kind::Object && cls && cls->is_global(module, nm);
}

std::string Value::class_name() const {
  if (kind == Kind::Global) return s + "." + name;
  if (kind == Kind::Object && cls && cls->kind == Kind::Global) return cls->s + "." + cls->name;
  return "";
}

namespace {

void describe_into(const Value* v, int depth, std::string& out, std::unordered_set<const Value*>& open) {
  if (out.size() > 400) { out += "..."; return; }
  if (!v) { out += "<null>"; return; }
  if (open.count(v)) { out += "<cycle>"; return; }
  auto seq = [&](const char* l, const char* r) {
    out += l;
    if (depth <= 0 && !v->items.empty()) { out += "..."; out += r; return; }
    open.insert(v);
    for (std::size_t k = 0; k < v->items.size(); ++k) {
      if (k) out += ", ";
      if (k >= 8) { out += "... (" + std::to_string(v->items.size()) + " items)"; break; }
      describe_into(v->items[k], depth - 1, out, open);
    }
    open.erase(v);
    out += r;
  };
  switch (v->kind) {
    case Kind::None: out += "None"; break;
    case Kind::Bool: out += v->b ? "True" : "False"; break;
    case Kind::Int: out += std::to_string(v->i); break;
    case Kind::BigInt: out += "<big int of " + std::to_string(v->s.size()) + " bytes>"; break;
    case Kind::Float: { char b[32]; std::snprintf(b, sizeof b, "%.17g", v->f); out += b; break; }
    case Kind::Str: out += "'" + (v->s.size() > 60 ? v->s.substr(0, 60) + "..." : v->s) + "'"; break;
    case Kind::Bytes: out += "<bytes of length " + std::to_string(v->s.size()) + ">"; break;
    case Kind::List: seq("[", "]"); break;
    case Kind::Tuple: seq("(", ")"); break;
    case Kind::Set: seq("{", "}"); break;
    case Kind::FrozenSet: seq("frozenset({", "})"); break;
    case Kind::Dict:
      out += "{";
      if (depth <= 0 && !v->pairs.empty()) { out += "...}"; break; }
      open.insert(v);
      for (std::size_t k = 0; k < v->pairs.size(); ++k) {
        if (k) out += ", ";
        if (k >= 8) { out += "... (" + std::to_string(v->pairs.size()) + " items)"; break; }
        describe_into(v->pairs[k].first, depth - 1, out, open);
        out += ": ";
        describe_into(v->pairs[k].second, depth - 1, out, open);
      }
      open.erase(v);
      out += "}";
      break;
    case Kind::Global: out += "<global " + v->s + "." + v->name + ">"; break;
    case Kind::Object: out += "<" + (v->class_name().empty() ? std::string("object") : v->class_name()) + " object>"; break;
    case Kind::Ext: out += "<" + v->name + ">"; break;
  }
}

// Python-2 module names used by protocol ≤ 2 pickles written with fix_imports.
std::string normalize_module(std::string m) {
  if (m == "__builtin__" || m == "exceptions") return "builtins";
  if (m == "copy_reg") return "copyreg";
  return m;
}

}  // namespace

std::string describe(const Value* v, int max_depth) {
  std::string out;
  std::unordered_set<const Value*> open;
  describe_into(v, max_depth, out, open);
  return out;
}

Value* Document::make(Kind k) {
  arena_.emplace_back();
  arena_.back().kind = k;
  return &arena_.back();
}

std::vector<std::string> Document::globals() const {
  std::set<std::string> out;
  for (const Value& v : arena_)
    if (v.kind == Kind::Global) out.insert(v.s + "." + v.name);
  return {out.begin(), out.end()};
}

bool is_allowed_global(std::string_view module_in, std::string_view name) {
  const std::string m = normalize_module(std::string(module_in));
  auto starts = [&](const char* p) { return m.rfind(p, 0) == 0; };
  auto in = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (name == n) return true;
    return false;
  };
  if (m == "collections") return in({"OrderedDict", "defaultdict", "namedtuple", "deque", "Counter"});
  if (m == "builtins")
    return in({"set", "frozenset", "list", "dict", "tuple", "object", "bytearray", "bytes", "slice",
               "complex", "float", "int", "bool", "str", "range", "type", "NoneType"});
  if (m == "_codecs") return name == "encode";
  if (m == "copyreg") return in({"_reconstructor", "__newobj__", "__newobj_ex__"});
  if (m == "torch._utils")
    return in({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
               "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor"});
  if (m == "torch._tensor") return name == "_rebuild_from_type_v2";
  if (m == "torch.storage") return in({"UntypedStorage", "TypedStorage"});
  if (m == "torch") {
    std::string_view n = name;
    if (n.size() > 7 && n.substr(n.size() - 7) == "Storage") return true;
    return in({"Size", "device", "dtype", "float32", "float64", "float16", "bfloat16", "int64",
               "int32", "int16", "int8", "uint8", "bool", "Tensor", "memory_format",
               "contiguous_format", "channels_last", "preserve_format"});
  }
  if (m == "torch.nn.parameter") return name == "Parameter";
  if (starts("torch.nn.modules.")) return true;  // layer classes (rebuilt from their state)
  if (m == "fastai.torch_core") return name == "_rebuild_from_type" || name == "TensorBase";
  if (starts("fastai.text.models.") || starts("fastai.layers") || starts("fastai.losses") ||
      starts("fastai.metrics") || starts("fastai.optimizer") || starts("fastai.text.data") ||
      starts("fastai.data.") || starts("fastai.learner") || starts("fastai.callback.") ||
      starts("fastai.text.learner") || starts("fastai.basics") || starts("fastai.text.core"))
    return true;
  if (m == "numpy.core.multiarray" || m == "numpy._core.multiarray")
    return in({"_reconstruct", "scalar"});
  if (m == "numpy") return in({"ndarray", "dtype"});
  if (m == "pathlib") return in({"PosixPath", "WindowsPath", "Path", "PurePosixPath"});
  return false;
}

bool is_dangerous_callable(std::string_view module, std::string_view name) {
  std::string m = normalize_module(std::string(module));
  std::string_view top = std::string_view(m).substr(0, std::string_view(m).find('.'));
  static const char* const kModules[] = {
      "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "pty", "shutil", "socket",
      "importlib", "runpy", "ctypes", "code", "codeop", "commands", "multiprocessing",
      "webbrowser", "pickle", "_pickle", "cPickle", "marshal", "shelve", "platform", "popen2",
      "pdb", "bdb", "timeit", "threading", "_thread", "signal", "asyncio", "tempfile", "glob",
      "io", "_io", "urllib", "http", "ftplib", "smtplib", "telnetlib", "imp", "zipimport",
      "pydoc", "sysconfig", "distutils", "setuptools", "pip", "ensurepip", "venv", "nturl2path",
      "dill", "cloudpickle", "joblib",
  };
  for (const char* d : kModules)
    if (top == d) return true;
  if (m == "builtins") {
    static const char* const kNames[] = {
        "eval", "exec", "execfile", "compile", "__import__", "open", "input", "raw_input",
        "setattr", "delattr", "globals", "locals", "vars", "breakpoint", "exit", "quit", "help",
        "file", "reload", "apply", "__build_class__", "__loader__",
    };
    for (const char* d : kNames)
      if (name == d) return true;
  }
  if (m == "operator" && (name == "attrgetter" || name == "methodcaller" || name == "itemgetter" ||
                          name == "call"))
    return true;
  if (m == "functools" && name == "reduce") return true;
  if (m == "types" || m == "gc" || m == "ctypes") return true;
  if (m == "numpy" && (name == "load" || name == "loadtxt" || name == "fromfile")) return true;
  if (m == "torch" && (name == "load" || name == "save")) return true;
  return false;
}

namespace {

class Reader {
 public:
  Reader(std::span<const std::uint8_t> b, const std::string& src, const Options& o, std::size_t base)
      : p_(b.data()), n_(b.size()), src_(src), opt_(o), base_(base) {}

  Document run(std::size_t* consumed) {
    while (true) {
      if (pos_ >= n_) fail("unexpected end of data (no STOP opcode)");
      op_pos_ = pos_;
      std::uint8_t op = p_[pos_++];
      if (step(op)) break;
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("malformed pickle: STOP with " + std::to_string(stack_.size()) + " stack items and " +
           std::to_string(marks_.size()) + " open marks");
    doc_.root = stack_.back();
    if (consumed) *consumed = pos_;
    return std::move(doc_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, "byte offset %zu", base_ + op_pos_);
    std::string where = buf;
    if (op_pos_ < n_) {
      unsigned op = p_[op_pos_];
      std::snprintf(buf, sizeof buf, " (opcode 0x%02x", op);
      where += buf;
      if (op >= 0x20 && op < 0x7f) { where += " '"; where += char(op); where += "'"; }
      where += ")";
    }
    throw FormatError(src_, "pickle: " + what, where);
  }

  // ---- input ----
  void need(std::size_t k) const {
    if (k > n_ - pos_) fail("truncated: needs " + std::to_string(k) + " more bytes, only " +
                            std::to_string(n_ - pos_) + " left");
  }
  std::uint64_t le(int k) {
    need(k);
    std::uint64_t v = 0;
    for (int j = 0; j < k; ++j) v |= std::uint64_t(p_[pos_ + j]) << (8 * j);
    pos_ += k;
    return v;
  }
  std::string_view take(std::uint64_t k) {
    if (k > n_ - pos_) fail("truncated: a length of " + std::to_string(k) + " exceeds the " +
                            std::to_string(n_ - pos_) + " bytes left");
    std::string_view r(reinterpret_cast<const char*>(p_ + pos_), k);
    pos_ += k;
    return r;
  }
  std::string_view line() {
    const void* nl = std::memchr(p_ + pos_, '\n', n_ - pos_);
    if (!nl) fail("truncated: missing newline");
    std::size_t k = static_cast<const std::uint8_t*>(nl) - (p_ + pos_);
    std::string_view r(reinterpret_cast<const char*>(p_ + pos_), k);
    pos_ += k + 1;
    if (!r.empty() && r.back() == '\r') r.remove_suffix(1);
    return r;
  }

  // ---- allocation accounting ----
  void charge(std::size_t bytes) {
    if (bytes > opt_.max_alloc_bytes - used_)
      fail("allocation limit exceeded (" + std::to_string(opt_.max_alloc_bytes) + " bytes)");
    used_ += bytes;
  }
  Value* make(Kind k) {
    charge(sizeof(Value) + 16);
    return doc_.make(k);
  }

  // ---- stack ----
  void push(Value* v) {
    if (stack_.size() + marks_.size() >= opt_.max_stack) fail("stack limit exceeded");
    stack_.push_back(v);
  }
  Value* pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // Pops everything above the last MARK; returns the first index of those items in stack_.
  std::size_t pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    std::size_t m = marks_.back();
    marks_.pop_back();
    return m;
  }

  // ---- memo ----
  void memo_put(std::uint64_t idx) {
    Value* v = top();
    auto it = memo_.find(idx);
    if (it == memo_.end()) {
      if (memo_.size() >= opt_.max_memo) fail("memo limit exceeded");
      charge(48);
      memo_.emplace(idx, v);
    } else {
      it->second = v;
    }
  }
  void memo_get(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key " + std::to_string(idx) + " not defined");
    push(it->second);
  }

  // ---- value constructors ----
  Value* make_int(std::int64_t x) { Value* v = make(Kind::Int); v->i = x; return v; }
  Value* make_str(std::string_view s, Kind k = Kind::Str) {
    charge(s.size());
    Value* v = make(k);
    v->s.assign(s.data(), s.size());
    return v;
  }
  // Little-endian two's complement → Int when it fits in int64, else BigInt.
  Value* make_long(std::string_view bytes) {
    std::size_t k = bytes.size();
    if (k == 0) return make_int(0);
    if (k <= 8) {
      std::uint64_t u = 0;
      for (std::size_t j = 0; j < k; ++j) u |= std::uint64_t(std::uint8_t(bytes[j])) << (8 * j);
      if (k < 8 && (std::uint8_t(bytes[k - 1]) & 0x80)) u |= ~std::uint64_t(0) << (8 * k);
      return make_int(static_cast<std::int64_t>(u));
    }
    // Fits if the extra bytes are pure sign extension.
    bool neg = std::uint8_t(bytes[k - 1]) & 0x80;
    bool fits = true;
    for (std::size_t j = 8; j < k && fits; ++j) fits = std::uint8_t(bytes[j]) == (neg ? 0xff : 0x00);
    if (fits && bool(std::uint8_t(bytes[7]) & 0x80) == neg) return make_long(bytes.substr(0, 8));
    return make_str(bytes, Kind::BigInt);
  }
  void add_items(Value* target, std::size_t from) {
    std::size_t cnt = stack_.size() - from;
    charge(cnt * sizeof(Value*));
    if (target->kind == Kind::List || target->kind == Kind::Set || target->kind == Kind::Object ||
        target->kind == Kind::FrozenSet) {
      target->items.insert(target->items.end(), stack_.begin() + from, stack_.end());
    } else {
      fail(std::string("cannot append to a ") + kind_name(target->kind));
    }
    stack_.resize(from);
  }
  void set_items(Value* target, std::size_t from) {
    std::size_t cnt = stack_.size() - from;
    if (cnt % 2) fail("SETITEMS with an odd number of items");
    if (target->kind != Kind::Dict && target->kind != Kind::Object)
      fail(std::string("cannot set items on a ") + kind_name(target->kind));
    charge(cnt * sizeof(Value*));
    for (std::size_t j = from; j < stack_.size(); j += 2) target->pairs.emplace_back(stack_[j], stack_[j + 1]);
    stack_.resize(from);
  }
  Value* make_tuple_from(std::size_t from) {
    Value* t = make(Kind::Tuple);
    charge((stack_.size() - from) * sizeof(Value*));
    t->items.assign(stack_.begin() + from, stack_.end());
    stack_.resize(from);
    return t;
  }

  // Latin-1 encode a UTF-8 string (the protocol-2 rendering of Python bytes).
  Value* latin1_bytes(const std::string& u) {
    std::string out;
    out.reserve(u.size());
    for (std::size_t j = 0; j < u.size();) {
      unsigned c = std::uint8_t(u[j]);
      if (c < 0x80) { out += char(c); ++j; }
      else if ((c & 0xe0) == 0xc0 && j + 1 < u.size()) {
        unsigned cp = ((c & 0x1f) << 6) | (std::uint8_t(u[j + 1]) & 0x3f);
        if (cp > 0xff) fail("_codecs.encode: character U+" + std::to_string(cp) + " is not latin-1");
        out += char(cp);
        j += 2;
      } else {
        fail("_codecs.encode: string is not latin-1");
      }
    }
    return make_str(out, Kind::Bytes);
  }

  // The heart of safety: what "calling" callable(args) produces.
  Value* call(Value* callable, Value* args, int depth = 0) {
    if (depth > opt_.max_call_depth) fail("nested reconstructor calls too deep");
    if (callable->kind == Kind::Global) {
      const std::string& mod = callable->s;
      const std::string& nm = callable->name;
      if (is_dangerous_callable(mod, nm))
        fail("refusing to call " + mod + "." + nm + " from pickle (this file tries to run code; "
             "it is not a plain checkpoint — do not load it with Python either)");
      if (mod == "builtins" && nm == "getattr") {
        // Bound methods and enum members pickle as getattr(obj, "name"); keep that as an opaque
        // value, but never for dunder attributes, code-running names, or objects from
        // dangerous modules.
        static const char* const kBadAttr[] = {"system", "popen", "eval", "exec", "execv", "execve",
                                               "spawn", "spawnv", "call", "check_call", "check_output",
                                               "run", "Popen", "load", "loads", "open", "compile"};
        bool ok = args->kind == Kind::Tuple && args->items.size() >= 2 && args->items.size() <= 3 &&
                  args->items[1]->kind == Kind::Str && !args->items[1]->s.empty() &&
                  args->items[1]->s.rfind("__", 0) != 0;
        if (ok) {
          for (const char* b : kBadAttr) ok = ok && args->items[1]->s != b;
          const Value* obj = args->items[0];
          const Value* g = obj->kind == Kind::Global ? obj : (obj->kind == Kind::Object ? obj->cls : nullptr);
          if (g && g->kind == Kind::Global && is_dangerous_callable(g->s, g->name)) ok = false;
          if (g && g->kind == Kind::Global && is_dangerous_callable(g->s, "")) ok = false;
        }
        if (!ok) fail("refusing to call builtins.getattr" + std::string(" with ") + describe(args, 1) +
                      " from pickle (this file tries to run code)");
      }
      if (opt_.reduce_hook) {
        Value* r;
        try {
          r = opt_.reduce_hook(doc_, *callable, *args);
        } catch (const std::exception& e) {
          fail(e.what());
        }
        if (r) return r;
      }
      auto tuple_args = [&](std::size_t lo, std::size_t hi) {
        if (args->kind != Kind::Tuple || args->items.size() < lo || args->items.size() > hi)
          fail(mod + "." + nm + ": unexpected arguments " + describe(args, 1));
      };
      if (mod == "collections" && nm == "OrderedDict") {
        tuple_args(0, 1);
        Value* d = make(Kind::Dict);
        if (args->items.size() == 1) {
          Value* src = args->items[0];
          if (src->kind == Kind::Dict) d->pairs = src->pairs;
          else if (src->is_seq()) {
            for (Value* kv : src->items) {
              if (!kv->is_seq() || kv->items.size() != 2) fail("OrderedDict: item is not a pair");
              d->pairs.emplace_back(kv->items[0], kv->items[1]);
            }
          } else fail("OrderedDict: unexpected argument " + describe(src, 1));
          charge(d->pairs.size() * 16);
        }
        return d;
      }
      if (mod == "builtins" && (nm == "set" || nm == "frozenset" || nm == "list" || nm == "tuple")) {
        tuple_args(0, 1);
        Kind k = nm == "set" ? Kind::Set : nm == "frozenset" ? Kind::FrozenSet
                 : nm == "list" ? Kind::List : Kind::Tuple;
        Value* r = make(k);
        if (args->items.size() == 1) {
          Value* src = args->items[0];
          if (src->kind == Kind::List || src->kind == Kind::Tuple || src->kind == Kind::Set ||
              src->kind == Kind::FrozenSet)
            r->items = src->items;
          else fail(nm + "(): unexpected argument " + describe(src, 1));
          charge(r->items.size() * sizeof(Value*));
        }
        return r;
      }
      if (mod == "builtins" && nm == "bytearray") {
        tuple_args(0, 2);
        if (args->items.empty()) return make(Kind::Bytes);
        Value* a = args->items[0];
        if (a->kind == Kind::Bytes) return make_str(a->s, Kind::Bytes);
        if (a->kind == Kind::Str && args->items.size() == 2) return latin1_bytes(a->s);
        return object(callable, args);
      }
      if (mod == "_codecs" && nm == "encode") {
        tuple_args(1, 2);
        if (args->items[0]->kind != Kind::Str) fail("_codecs.encode: first argument is not a str");
        if (args->items.size() == 2) {
          Value* enc = args->items[1];
          if (enc->kind != Kind::Str || (enc->s != "latin1" && enc->s != "latin-1" && enc->s != "iso-8859-1"))
            fail("_codecs.encode: unsupported encoding " + describe(enc, 0));
          return latin1_bytes(args->items[0]->s);
        }
        return make_str(args->items[0]->s, Kind::Bytes);  // default utf-8
      }
      if (mod == "copyreg" && nm == "_reconstructor") {
        tuple_args(2, 3);
        Value* o = object(args->items[0], nullptr);
        if (args->items.size() == 3 && !args->items[2]->is_none()) o->args = args->items[2];
        return o;
      }
      if (mod == "copyreg" && nm == "__newobj__") {
        if (args->kind != Kind::Tuple || args->items.empty()) fail("copyreg.__newobj__: no class argument");
        Value* rest = make(Kind::Tuple);
        rest->items.assign(args->items.begin() + 1, args->items.end());
        return newobj(args->items[0], rest);
      }
      if ((mod == "torch._tensor" && nm == "_rebuild_from_type_v2") ||
          (mod == "fastai.torch_core" && nm == "_rebuild_from_type")) {
        // (func, subclass, args, state): the tensor subclass is dropped; state ignored.
        tuple_args(3, 4);
        Value* inner = args->items[2];
        if (inner->kind != Kind::Tuple) fail("_rebuild_from_type_v2: args is not a tuple");
        return call(args->items[0], inner, depth + 1);
      }
    }
    return object(callable, args);
  }
  Value* object(Value* cls, Value* args) {
    Value* o = make(Kind::Object);
    o->cls = cls;
    o->args = args;
    return o;
  }
  Value* newobj(Value* cls, Value* args) {
    if (cls->kind == Kind::Global) {
      if (is_dangerous_callable(cls->s, cls->name))
        fail("refusing to instantiate " + cls->s + "." + cls->name + " from pickle");
      if (opt_.reduce_hook) {
        Value* r;
        try {
          r = opt_.reduce_hook(doc_, *cls, *args);
        } catch (const std::exception& e) {
          fail(e.what());
        }
        if (r) return r;
      }
      if (cls->s == "collections" && cls->name == "OrderedDict") return make(Kind::Dict);
      if (cls->s == "builtins" && (cls->name == "set")) return make(Kind::Set);
      if (cls->s == "builtins" && (cls->name == "dict")) return make(Kind::Dict);
      if (cls->s == "builtins" && (cls->name == "list")) return make(Kind::List);
    }
    return object(cls, args);
  }
  void build(Value* obj, Value* state) {
    if (obj->kind == Kind::Object) {
      obj->state = state;
    }
    // Dict (OrderedDict _metadata), Ext (tensors with state), others: state is ignored.
  }

  Value* global(std::string_view module, std::string_view name) {
    if (module.empty() || name.empty()) fail("GLOBAL with an empty module or name");
    charge(module.size() + name.size());
    Value* g = make(Kind::Global);
    g->s = normalize_module(std::string(module));
    g->name.assign(name.data(), name.size());
    return g;
  }

  // Decodes Python's text int syntax (protocol 0 INT/LONG): "[-]digits[L]", "00"/"01" = bool.
  Value* text_int(std::string_view t, bool is_int_op) {
    if (is_int_op && t == "00") { Value* v = make(Kind::Bool); v->b = false; return v; }
    if (is_int_op && t == "01") { Value* v = make(Kind::Bool); v->b = true; return v; }
    if (!t.empty() && t.back() == 'L') t.remove_suffix(1);
    bool neg = false;
    std::size_t j = 0;
    if (j < t.size() && (t[j] == '-' || t[j] == '+')) { neg = t[j] == '-'; ++j; }
    if (j == t.size()) fail("bad integer literal");
    std::uint64_t acc = 0;
    bool big = false;
    for (; j < t.size(); ++j) {
      if (t[j] < '0' || t[j] > '9') fail("bad integer literal");
      if (acc > (UINT64_MAX - 9) / 10) { big = true; continue; }
      acc = acc * 10 + std::uint64_t(t[j] - '0');
    }
    if (big || acc > std::uint64_t(INT64_MAX)) return make_str(t, Kind::BigInt);  // kept as text
    return make_int(neg ? -static_cast<std::int64_t>(acc) : static_cast<std::int64_t>(acc));
  }
  // STRING 'S': a Python repr in quotes; decodes the common escapes.
  Value* text_string(std::string_view t) {
    if (t.size() < 2 || (t[0] != '\'' && t[0] != '"') || t.back() != t[0]) fail("STRING is not quoted");
    t = t.substr(1, t.size() - 2);
    std::string out;
    for (std::size_t j = 0; j < t.size(); ++j) {
      char c = t[j];
      if (c != '\\') { out += c; continue; }
      if (++j >= t.size()) fail("bad escape in STRING");
      char e = t[j];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'x': {
          if (j + 2 >= t.size()) fail("bad \\x escape in STRING");
          int hi = hexval(t[j + 1]), lo = hexval(t[j + 2]);
          if (hi < 0 || lo < 0) fail("bad \\x escape in STRING");
          out += char(hi * 16 + lo);
          j += 2;
          break;
        }
        default: out += '\\'; out += e;
      }
    }
    return make_str(out, Kind::Str);
  }
  static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // UNICODE 'V': raw-unicode-escape (\uXXXX and \UXXXXXXXX), output UTF-8.
  Value* text_unicode(std::string_view t) {
    std::string out;
    for (std::size_t j = 0; j < t.size(); ++j) {
      unsigned char c = t[j];
      if (c == '\\' && j + 1 < t.size() && (t[j + 1] == 'u' || t[j + 1] == 'U')) {
        std::size_t nd = t[j + 1] == 'u' ? 4 : 8;
        if (j + 2 + nd > t.size()) fail("bad \\u escape in UNICODE");
        std::uint32_t cp = 0;
        for (std::size_t q = 0; q < nd; ++q) {
          int h = hexval(t[j + 2 + q]);
          if (h < 0) fail("bad \\u escape in UNICODE");
          cp = cp * 16 + std::uint32_t(h);
        }
        if (cp > 0x10ffff) fail("code point out of range in UNICODE");
        append_utf8(out, cp);
        j += 1 + nd;
      } else if (c >= 0x80) {
        append_utf8(out, c);  // raw-unicode-escape stores U+0080..U+00FF as latin-1 bytes
      } else {
        out += char(c);
      }
    }
    return make_str(out, Kind::Str);
  }
  static void append_utf8(std::string& o, std::uint32_t cp) {
    if (cp < 0x80) o += char(cp);
    else if (cp < 0x800) { o += char(0xc0 | (cp >> 6)); o += char(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) { o += char(0xe0 | (cp >> 12)); o += char(0x80 | ((cp >> 6) & 0x3f)); o += char(0x80 | (cp & 0x3f)); }
    else { o += char(0xf0 | (cp >> 18)); o += char(0x80 | ((cp >> 12) & 0x3f)); o += char(0x80 | ((cp >> 6) & 0x3f)); o += char(0x80 | (cp & 0x3f)); }
  }

  Value* persistent(Value* pid) {
    if (!opt_.persistent_load) fail("persistent id " + describe(pid, 1) + " but no persistent loader");
    Value* r;
    try {
      r = opt_.persistent_load(doc_, *pid);
    } catch (const std::exception& e) {
      fail(e.what());
    }
    if (!r) fail("persistent id " + describe(pid, 1) + " not resolved");
    return r;
  }

  // Executes one opcode; returns true on STOP.
  bool step(std::uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        std::uint64_t v = le(1);
        if (v > 5) fail("unsupported pickle protocol " + std::to_string(v));
        return false;
      }
      case 0x95: le(8); return false;  // FRAME: just a hint
      case '.': return true;            // STOP
      case '(':                           // MARK
        if (stack_.size() + marks_.size() >= opt_.max_stack) fail("stack limit exceeded");
        marks_.push_back(stack_.size());
        return false;
      case '}': push(make(Kind::Dict)); return false;
      case ']': push(make(Kind::List)); return false;
      case ')': push(make(Kind::Tuple)); return false;
      case 0x8f: push(make(Kind::Set)); return false;
      case 'd': { std::size_t m = pop_mark(); Value* d = make(Kind::Dict); set_items(d, m); push(d); return false; }
      case 'l': { std::size_t m = pop_mark(); Value* l = make(Kind::List); add_items(l, m); push(l); return false; }
      case 't': { std::size_t m = pop_mark(); push(make_tuple_from(m)); return false; }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        std::size_t k = op - 0x84;
        if (stack_.size() < floor() + k) fail("stack underflow");
        push(make_tuple_from(stack_.size() - k));
        // make_tuple_from resized; push re-adds the tuple
        return false;
      }
      case 0x91: {  // FROZENSET
        std::size_t m = pop_mark();
        Value* s = make(Kind::FrozenSet);
        add_items(s, m);
        push(s);
        return false;
      }
      case 's': {  // SETITEM
        if (stack_.size() < floor() + 3) fail("stack underflow");
        set_items(stack_[stack_.size() - 3], stack_.size() - 2);
        return false;
      }
      case 'u': {  // SETITEMS
        std::size_t m = pop_mark();
        if (m == 0 || m <= floor()) fail("SETITEMS without a target");
        set_items(stack_[m - 1], m);
        return false;
      }
      case 'a': {  // APPEND
        if (stack_.size() < floor() + 2) fail("stack underflow");
        add_items(stack_[stack_.size() - 2], stack_.size() - 1);
        return false;
      }
      case 'e': case 0x90: {  // APPENDS, ADDITEMS
        std::size_t m = pop_mark();
        if (m == 0 || m <= floor()) fail("APPENDS without a target");
        add_items(stack_[m - 1], m);
        return false;
      }
      case '0':  // POP (pops the MARK itself when the frame is empty, like CPython)
        if (stack_.size() == floor() && !marks_.empty()) marks_.pop_back(); else pop();
        return false;
      case '1': { std::size_t m = pop_mark(); stack_.resize(m); return false; }  // POP_MARK
      case '2': push(top()); return false;  // DUP
      case 'N': push(make(Kind::None)); return false;
      case 0x88: case 0x89: { Value* v = make(Kind::Bool); v->b = op == 0x88; push(v); return false; }
      case 'J': push(make_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4))))); return false;
      case 'K': push(make_int(static_cast<std::int64_t>(le(1)))); return false;
      case 'M': push(make_int(static_cast<std::int64_t>(le(2)))); return false;
      case 0x8a: { std::uint64_t k = le(1); push(make_long(take(k))); return false; }
      case 0x8b: {
        std::int64_t k = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
        if (k < 0) fail("LONG4 with a negative length");
        push(make_long(take(static_cast<std::uint64_t>(k))));
        return false;
      }
      case 'G': {  // BINFLOAT (big-endian)
        need(8);
        std::uint64_t u = 0;
        for (int j = 0; j < 8; ++j) u = (u << 8) | p_[pos_ + j];
        pos_ += 8;
        Value* v = make(Kind::Float);
        std::memcpy(&v->f, &u, 8);
        push(v);
        return false;
      }
      case 'X': { std::uint64_t k = le(4); push(make_str(take(k))); return false; }
      case 0x8c: { std::uint64_t k = le(1); push(make_str(take(k))); return false; }
      case 0x8d: { std::uint64_t k = le(8); push(make_str(take(k))); return false; }
      case 'C': { std::uint64_t k = le(1); push(make_str(take(k), Kind::Bytes)); return false; }
      case 'B': { std::uint64_t k = le(4); push(make_str(take(k), Kind::Bytes)); return false; }
      case 0x8e: { std::uint64_t k = le(8); push(make_str(take(k), Kind::Bytes)); return false; }
      case 0x96: { std::uint64_t k = le(8); push(make_str(take(k), Kind::Bytes)); return false; }  // BYTEARRAY8
      case 'U': { std::uint64_t k = le(1); push(make_str(take(k), Kind::Bytes)); return false; }  // py2 str
      case 'T': {
        std::int64_t k = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
        if (k < 0) fail("BINSTRING with a negative length");
        push(make_str(take(static_cast<std::uint64_t>(k)), Kind::Bytes));
        return false;
      }
      case 0x97: case 0x98:  // NEXT_BUFFER, READONLY_BUFFER (out-of-band buffers)
        if (op == 0x98) { top(); return false; }
        fail("out-of-band buffers (pickle protocol 5 NEXT_BUFFER) are not supported");
      case 'c': {  // GLOBAL
        std::string_view m = line();
        std::string_view nm = line();
        push(global(m, nm));
        return false;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* nm = pop();
        Value* m = pop();
        if (m->kind != Kind::Str || nm->kind != Kind::Str) fail("STACK_GLOBAL needs two str");
        push(global(m->s, nm->s));
        return false;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* fn = pop();
        if (args->kind != Kind::Tuple) fail("REDUCE arguments are not a tuple: " + describe(args, 1));
        push(call(fn, args));
        return false;
      }
      case 0x81: {  // NEWOBJ
        Value* args = pop();
        Value* cls = pop();
        if (args->kind != Kind::Tuple) fail("NEWOBJ arguments are not a tuple");
        push(newobj(cls, args));
        return false;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();  // kwargs
        Value* args = pop();
        Value* cls = pop();
        if (args->kind != Kind::Tuple) fail("NEWOBJ_EX arguments are not a tuple");
        push(newobj(cls, args));
        return false;
      }
      case 'i': {  // INST (protocol 0): module\nname\n then MARK args
        std::string_view m = line();
        std::string_view nm = line();
        Value* cls = global(m, nm);
        std::size_t mk = pop_mark();
        Value* args = make_tuple_from(mk);
        push(newobj_or_call(cls, args));
        return false;
      }
      case 'o': {  // OBJ: MARK cls args...
        std::size_t mk = pop_mark();
        if (stack_.size() <= mk) fail("OBJ without a class");
        Value* cls = stack_[mk];
        Value* args = make_tuple_from(mk + 1);
        stack_.pop_back();  // cls
        push(newobj_or_call(cls, args));
        return false;
      }
      case 'b': {  // BUILD
        Value* state = pop();
        build(top(), state);
        return false;
      }
      case 'Q': push(persistent(pop())); return false;  // BINPERSID
      case 'P': {  // PERSID
        Value* pid = make_str(line());
        push(persistent(pid));
        return false;
      }
      case 'q': memo_put(le(1)); return false;
      case 'r': memo_put(le(4)); return false;
      case 'p': {
        Value* v = text_int(line(), false);
        if (v->kind != Kind::Int || v->i < 0) fail("bad PUT index");
        memo_put(static_cast<std::uint64_t>(v->i));
        return false;
      }
      case 0x94: memo_put(memo_.size()); return false;  // MEMOIZE
      case 'h': memo_get(le(1)); return false;
      case 'j': memo_get(le(4)); return false;
      case 'g': {
        Value* v = text_int(line(), false);
        if (v->kind != Kind::Int || v->i < 0) fail("bad GET index");
        memo_get(static_cast<std::uint64_t>(v->i));
        return false;
      }
      case 'I': push(text_int(line(), true)); return false;
      case 'L': push(text_int(line(), false)); return false;
      case 'F': {
        std::string t(line());
        char* end = nullptr;
        double d = std::strtod(t.c_str(), &end);
        if (t.empty() || end != t.c_str() + t.size()) fail("bad FLOAT literal");
        Value* v = make(Kind::Float);
        v->f = d;
        push(v);
        return false;
      }
      case 'S': push(text_string(line())); return false;
      case 'V': push(text_unicode(line())); return false;
      default: {
        char b[8];
        std::snprintf(b, sizeof b, "0x%02x", op);
        fail(std::string("unknown opcode ") + b + " (not a pickle, or corrupt)");
      }
    }
  }
  Value* newobj_or_call(Value* cls, Value* args) {
    // INST/OBJ call the class (or, for classic classes, create an instance): same safety rules.
    return call(cls, args);
  }

  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0, op_pos_ = 0;
  const std::string& src_;
  const Options& opt_;
  std::size_t base_;
  std::size_t used_ = 0;
  Document doc_;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Value*> memo_;
};

}  // namespace

Document parse(std::span<const std::uint8_t> bytes, const std::string& source, const Options& opt,
               std::size_t* consumed, std::size_t base_offset) {
  Reader r(bytes, source, opt, base_offset);
  return r.run(consumed);
}

Document parse_file(const std::string& path, const Options& opt) {
  MmapFile f(path);
  if (f.size() == 0) throw FormatError(path, "empty file (expected a pickle)");
  std::size_t used = 0;
  Document d = parse(f.bytes(), path, opt, &used);
  if (used != f.size())
    throw FormatError(path, "trailing data after the pickle's STOP opcode",
                      "byte offset " + std::to_string(used));
  return d;
}

}  // namespace io::pickle
