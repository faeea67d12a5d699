// ulmfit/vocab.h — fastai 2.7.19's text vocabulary (make_vocab + Numericalize), exactly.
//
// Building (spec §1.4): count every token of every document in document order; take the
// `max_vocab` most common (count descending, ties in first-occurrence order, as Python's
// Counter.most_common); keep those with count >= min_freq; put the 9 special tokens first in
// fastai v2 order (xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj), removing them from
// where they were; truncate to max_vocab; append "xxfake" until the size is a multiple of 8
// (a size already a multiple of 8 still gets 8 of them, as fastai does).
//
// Numericalising maps a token to its index, any unknown token to 0 (xxunk). "xxfake" maps to 0
// in a vocab built here (fastai excludes it from o2i), and to its last index in a vocab that
// was loaded (fastai's Numericalize(vocab=...) includes it; harmless either way).
//
// The JSON form (a plain array of strings, itos order) is what the model bundle stores as its
// `vocab` metadata.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ulmfit {

// Counts tokens the way Python's collections.Counter does, remembering first-insertion order.
class TokenCounter {
 public:
  void add(const std::string& token);
  void add(const std::vector<std::string>& doc) {
    for (const auto& t : doc) add(t);
  }
  std::size_t count(const std::string& token) const;
  std::size_t size() const { return tokens_.size(); }
  std::size_t total() const { return total_; }
  // Counter.most_common(n): count descending, ties in first-insertion order. n = SIZE_MAX: all.
  std::vector<std::pair<std::string, std::size_t>> most_common(std::size_t n = SIZE_MAX) const;

 private:
  std::unordered_map<std::string, std::size_t> index_;  // token -> position in tokens_
  std::vector<std::string> tokens_;                      // first-insertion order
  std::vector<std::size_t> counts_;
  std::size_t total_ = 0;
};

struct VocabOptions {
  std::size_t min_freq = 3;       // fastai's default; INSPIRE uses 2
  std::size_t max_vocab = 60000;  // INSPIRE: 60000
};

class Vocab {
 public:
  static constexpr int kUnk = 0, kPad = 1, kBos = 2, kEos = 3, kFld = 4, kRep = 5, kWrep = 6,
                       kUp = 7, kMaj = 8;

  Vocab() = default;
  // fastai's make_vocab on a counter (built by counting the documents in order).
  static Vocab build(const TokenCounter& counter, const VocabOptions& opt = {});
  static Vocab build(const std::vector<std::vector<std::string>>& docs,
                     const VocabOptions& opt = {});
  // A vocab given as a list (e.g. read from a bundle or itos.pkl), as fastai's
  // Numericalize(vocab=itos): a string listed twice maps to its LAST index (Python dict from
  // enumerate). Throws std::invalid_argument on an empty list.
  static Vocab from_itos(std::vector<std::string> itos);

  std::size_t size() const { return itos_.size(); }
  const std::vector<std::string>& itos() const { return itos_; }
  const std::string& token(std::size_t id) const { return itos_.at(id); }
  // Id of a token; 0 (xxunk) when unknown.
  std::int32_t id(std::string_view token) const;
  bool contains(std::string_view token) const;

  std::vector<std::int32_t> numericalize(const std::vector<std::string>& tokens) const;
  // Appends to `out` (avoids an allocation per document in loaders).
  void numericalize_into(const std::vector<std::string>& tokens,
                         std::vector<std::int32_t>& out) const;
  std::vector<std::string> decode(const std::vector<std::int32_t>& ids) const;

  // JSON array of strings. from_json throws std::invalid_argument naming the bad element.
  nlohmann::json to_json() const;
  static Vocab from_json(const nlohmann::json& j);
  // File I/O (atomic write). load throws io::FormatError naming the file and the problem.
  void save(const std::string& path) const;
  static Vocab load(const std::string& path);

  bool operator==(const Vocab& o) const { return itos_ == o.itos_; }

 private:
  void index(bool map_fake);
  std::vector<std::string> itos_;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::int32_t, Hash, std::equal_to<>> stoi_;
};

}  // namespace ulmfit
