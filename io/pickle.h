// io/pickle.h — a safe, inert pickle reader (protocols 0–5).
//
// Builds a graph of passive values; NEVER imports or calls anything. GLOBAL/STACK_GLOBAL yield
// a Global(module, name) value. REDUCE/NEWOBJ/INST/OBJ on a Global resolve a small whitelist of
// known reconstructors (collections.OrderedDict → Dict, builtins.set/frozenset → Set,
// _codecs.encode(str, 'latin1') → Bytes, copyreg._reconstructor / __newobj__ → Object,
// torch._tensor._rebuild_from_type_v2 and fastai.torch_core._rebuild_from_type → the inner
// call), ask an optional caller hook (the torch
// loader turns torch._utils._rebuild_tensor_v2 into tensors that way), and otherwise produce an
// opaque Object(cls, args) whose BUILD state is kept. Obviously dangerous callables
// (os.system, subprocess.*, builtins.eval/exec/__import__, ...) are refused with
// io::FormatError("refusing to call os.system from pickle ...").
//
// All values live in the Document's arena (stable addresses, raw pointers between them, cycles
// allowed, no recursive destruction). Limits against hostile input: every length is checked
// against the remaining input, the VM stack, memo and total allocation are capped, and no
// operation is worse than linear in its input. Errors name the file and byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace io::pickle {

enum class Kind : std::uint8_t {
  None, Bool, Int, BigInt, Float, Str, Bytes, List, Tuple, Dict, Set, FrozenSet,
  Global,  // a reference to module.name (never resolved)
  Object,  // an opaque instance: cls (usually a Global), args, BUILD state, appended items/pairs
  Ext,     // a value created by a caller hook (e.g. a torch tensor or storage)
};
const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::None;
  bool b = false;                 // Bool
  std::int64_t i = 0;             // Int
  double f = 0;                   // Float
  std::string s;                  // Str (UTF-8), Bytes, BigInt (little-endian two's complement), Global: module
  std::string name;               // Global: qualified name; Ext: tag
  std::vector<Value*> items;      // List/Tuple/Set/FrozenSet; Object: APPENDed items
  std::vector<std::pair<Value*, Value*>> pairs;  // Dict (insertion order; SETITEM never dedups,
                                                 // get() returns the LAST match); Object: SETITEMs
  Value* cls = nullptr;           // Object: the callable/class
  Value* args = nullptr;          // Object: constructor arguments (usually a Tuple) or nullptr
  Value* state = nullptr;         // Object: BUILD state or nullptr
  std::shared_ptr<const void> ext;  // Ext payload (type known from `name`)

  bool is_none() const { return kind == Kind::None; }
  bool is_str() const { return kind == Kind::Str; }
  bool is_int() const { return kind == Kind::Int; }
  bool is_seq() const { return kind == Kind::List || kind == Kind::Tuple; }
  // Dict lookup by string key (for an Object: looks in its Dict state, then its pairs).
  const Value* get(std::string_view key) const;
  // For Global: true if module/name match. For Object: true if its cls is that Global.
  bool is_global(std::string_view module, std::string_view name) const;
  bool is_object_of(std::string_view module, std::string_view name) const;
  // "module.name" of a Global or of an Object's class ("" otherwise).
  std::string class_name() const;
};

// Short human-readable rendering (depth- and length-limited, cycle-safe) for messages/debugging.
std::string describe(const Value* v, int max_depth = 3);

class Document {
 public:
  Document() = default;
  Document(Document&&) = default;
  Document& operator=(Document&&) = default;
  Value* root = nullptr;
  Value* make(Kind k);              // arena allocation
  std::size_t value_count() const { return arena_.size(); }
  // Every global the pickle references ("module.name"), sorted, each once.
  std::vector<std::string> globals() const;

 private:
  std::deque<Value> arena_;
};

struct Options {
  // Called on BINPERSID/PERSID with the persistent id; returns the value to push (allocate it
  // with doc.make). Unset: persistent ids are an error. May throw std::runtime_error.
  std::function<Value*(Document& doc, const Value& pid)> persistent_load;
  // Called on REDUCE/NEWOBJ with a Global callable before the built-in rules; return nullptr to
  // fall through. May throw std::runtime_error with a short message (file and offset are added).
  std::function<Value*(Document& doc, const Value& callable, Value& args)> reduce_hook;
  std::size_t max_alloc_bytes = std::size_t(1) << 31;  // total estimate of values+strings+containers
  std::size_t max_stack = std::size_t(1) << 24;        // VM stack + mark stack entries
  std::size_t max_memo = std::size_t(1) << 24;         // memo entries
  int max_call_depth = 16;                             // nested _rebuild_from_type_v2 etc.
};

// Parses ONE pickle starting at bytes[0] up to and including its STOP opcode.
// `source` names the file in errors; `base_offset` is added to byte offsets in errors (use it
// when the pickle starts inside a larger file). `*consumed` (if given) receives the number of
// bytes read (up to and including STOP). Throws io::FormatError.
Document parse(std::span<const std::uint8_t> bytes, const std::string& source,
               const Options& opt = {}, std::size_t* consumed = nullptr,
               std::size_t base_offset = 0);

// Reads a whole file (mmap) holding one pickle (trailing bytes are an error).
Document parse_file(const std::string& path, const Options& opt = {});

// True if calling module.name would be dangerous (os.system, subprocess.*, builtins.eval, ...).
bool is_dangerous_callable(std::string_view module, std::string_view name);

// True if module.name is on the allow-list of globals a plain PyTorch / fastai checkpoint
// needs (torch tensor/storage rebuilders and dtypes, collections.OrderedDict, builtins
// containers, copyreg, numpy array reconstruction, torch.nn / fastai classes). Anything else
// may run code when the file is loaded with Python's pickle: `inspect` reports it.
bool is_allowed_global(std::string_view module, std::string_view name);

}  // namespace io::pickle
