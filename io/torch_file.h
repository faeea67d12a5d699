// io/torch_file.h — read PyTorch checkpoints (torch.save) without Python and without executing
// anything from the file.
//
//   auto sd = io::torch::load_state_dict("lstm_fwd.pth");       // zip or legacy, auto-detected
//   const io::torch::Tensor& w = sd.at("0.encoder.weight");      // dtype, shape, strides, offset
//   std::vector<float> v = w.to_float32();                       // contiguous row-major copy
//   auto itos = io::torch::load_itos("train_valid_data_itos.pkl");
//   auto learner = io::torch::load_learner("classifier.h5");     // whole pickled fastai Learner
//
// Containers (spec §7.2): zip (torch ≥ 1.6; archive folder name taken from the first entry;
// `data.pkl`, `data/<key>`, `byteorder`, `version`) — tensors point into the mmapped file, zero
// copy; legacy (magic, protocol 1001, sys_info, main pickle, storage keys, raw storages) — also
// mmapped, storages are located in place (no copy; memory stays bounded for a 220 MB file).
// Tar (torch < 0.4), TorchScript archives and big-endian files are rejected with a clear message.
// Every error is an io::FormatError naming the file and the problem (and a byte offset or key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/pickle.h"

namespace io::torch {

enum class DType : std::uint8_t { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };
std::size_t element_size(DType d);
const char* dtype_name(DType d);  // "float32", "float16", "bfloat16", "int64", ...

// One torch storage: numel elements of dtype, bytes possibly unaligned (read with memcpy).
struct Storage {
  std::string key;
  DType dtype = DType::Float32;
  std::int64_t numel = 0;
  const std::uint8_t* data = nullptr;
  std::shared_ptr<const void> owner;  // keeps `data` alive (the file map or a buffer)
};

struct Tensor {
  DType dtype = DType::Float32;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> stride;   // in elements
  std::int64_t offset = 0;            // in elements, into storage
  std::shared_ptr<const Storage> storage;  // shared between tensors that share a storage

  int ndim() const { return static_cast<int>(shape.size()); }
  std::int64_t numel() const;
  bool is_contiguous() const;
  std::string str() const;  // "float32[40, 8]"
  // Logical row-major copies (strides respected). Floats convert (f16/bf16/f64 → f32 etc.).
  std::vector<float> to_float32() const;
  std::vector<double> to_float64() const;
  std::vector<std::int64_t> to_int64() const;  // integer/bool tensors only (throws for floats)
};

class StateDict {
 public:
  std::string source;  // the file it came from (for messages)
  std::vector<std::pair<std::string, Tensor>> entries;  // file order, unique names

  std::size_t size() const { return entries.size(); }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const Tensor* find(std::string_view name) const;
  // Throws io::FormatError "<source>: no tensor named '<name>' (has: ...)".
  const Tensor& at(std::string_view name) const;
  std::vector<std::string> names() const;
  auto begin() const { return entries.begin(); }
  auto end() const { return entries.end(); }
};

// A torch file's unpickled object graph, with storages resolved. Tensors appear as pickle::Value
// of kind Ext with name "torch.Tensor" (use as_tensor()).
struct TorchFile {
  std::string path;
  bool legacy = false;
  int version = 0;  // zip `version` record (0 if absent) or 1001 for legacy
  pickle::Document doc;
  pickle::Value* root() const { return doc.root; }
};
TorchFile open_torch_file(const std::string& path);
const Tensor* as_tensor(const pickle::Value* v);  // nullptr if v is not a tensor

// The state dict in a checkpoint: a plain name→tensor dict (OrderedDict), or one wrapped as
// {'model': sd, ...} / {'state_dict': sd, ...}, or a pickled fastai Learner / nn.Module (the
// module tree is walked like Module.state_dict()).
StateDict load_state_dict(const std::string& path);

// A pickled Python list of str (fastai itos, pandas.to_pickle of a list; protocols 0–5).
std::vector<std::string> load_itos(const std::string& path);

// A whole pickled fastai Learner (INSPIRE classifier.h5, spec §7.7).
struct LearnerFile {
  std::string learner_class;              // e.g. "fastai.text.learner.TextLearner"
  StateDict model;                        // Module.state_dict() keys: "0.module.encoder.weight", ...
  std::vector<std::string> vocab;         // Numericalize.vocab (empty if not found)
  std::vector<std::string> classes;       // Categorize.vocab as strings (empty if not found)
};
LearnerFile load_learner(const std::string& path);

// Walks an nn.Module object graph (its _parameters/_buffers/_modules) like Module.state_dict().
StateDict module_state_dict(const pickle::Value* module, const std::string& source);

}  // namespace io::torch
