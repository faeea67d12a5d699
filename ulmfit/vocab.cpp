// ulmfit/vocab.cpp — see vocab.h.
#include "ulmfit/vocab.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/errors.h"
#include "ulmfit/tokenizer.h"

namespace ulmfit {

// ---------------------------------------------------------------------------------------------
// TokenCounter
// ---------------------------------------------------------------------------------------------
void TokenCounter::add(const std::string& token) {
  auto [it, inserted] = index_.try_emplace(token, tokens_.size());
  if (inserted) {
    tokens_.push_back(token);
    counts_.push_back(1);
  } else {
    ++counts_[it->second];
  }
  ++total_;
}

std::size_t TokenCounter::count(const std::string& token) const {
  auto it = index_.find(token);
  return it == index_.end() ? 0 : counts_[it->second];
}

std::vector<std::pair<std::string, std::size_t>> TokenCounter::most_common(std::size_t n) const {
  std::vector<std::size_t> order(tokens_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  // Python's most_common is sorted(..., key=count, reverse=True) (or heapq.nlargest, which is
  // equivalent): a stable sort, so equal counts keep first-insertion order.
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return counts_[a] > counts_[b]; });
  if (order.size() > n) order.resize(n);
  std::vector<std::pair<std::string, std::size_t>> out;
  out.reserve(order.size());
  for (auto i : order) out.emplace_back(tokens_[i], counts_[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Vocab
// ---------------------------------------------------------------------------------------------
Vocab Vocab::build(const TokenCounter& counter, const VocabOptions& opt) {
  std::vector<std::string> v;
  for (auto& [tok, c] : counter.most_common(opt.max_vocab))
    if (c >= opt.min_freq) v.push_back(tok);
  const auto& specials = special_tokens();
  // fastai: for each special token in reverse order, remove it if present and insert at 0.
  // Net effect: the specials in order, then the rest without them.
  std::vector<std::string> out(specials.begin(), specials.end());
  for (auto& t : v)
    if (std::find(specials.begin(), specials.end(), t) == specials.end()) out.push_back(std::move(t));
  if (out.size() > opt.max_vocab) out.resize(opt.max_vocab);
  const std::size_t n_fake = 8 - out.size() % 8;
  for (std::size_t i = 0; i < n_fake; ++i) out.emplace_back("xxfake");
  Vocab voc;
  voc.itos_ = std::move(out);
  voc.index(/*map_fake=*/false);
  return voc;
}

Vocab Vocab::build(const std::vector<std::vector<std::string>>& docs, const VocabOptions& opt) {
  TokenCounter c;
  for (const auto& d : docs) c.add(d);
  return build(c, opt);
}

Vocab Vocab::from_itos(std::vector<std::string> itos) {
  if (itos.empty()) throw std::invalid_argument("vocab: empty token list");
  if (itos.size() > (std::size_t)INT32_MAX) throw std::invalid_argument("vocab: too many tokens");
  Vocab voc;
  voc.itos_ = std::move(itos);
  voc.index(/*map_fake=*/true);
  return voc;
}

void Vocab::index(bool map_fake) {
  stoi_.clear();
  stoi_.reserve(itos_.size());
  for (std::size_t i = 0; i < itos_.size(); ++i) {
    if (!map_fake && itos_[i] == "xxfake") continue;
    stoi_.insert_or_assign(itos_[i], (std::int32_t)i);  // later duplicates win, as in Python
  }
}

std::int32_t Vocab::id(std::string_view token) const {
  auto it = stoi_.find(token);
  return it == stoi_.end() ? kUnk : it->second;
}

bool Vocab::contains(std::string_view token) const { return stoi_.find(token) != stoi_.end(); }

void Vocab::numericalize_into(const std::vector<std::string>& tokens,
                              std::vector<std::int32_t>& out) const {
  out.reserve(out.size() + tokens.size());
  for (const auto& t : tokens) out.push_back(id(t));
}

std::vector<std::int32_t> Vocab::numericalize(const std::vector<std::string>& tokens) const {
  std::vector<std::int32_t> out;
  numericalize_into(tokens, out);
  return out;
}

std::vector<std::string> Vocab::decode(const std::vector<std::int32_t>& ids) const {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (auto i : ids) {
    if (i < 0 || (std::size_t)i >= itos_.size())
      throw std::out_of_range("vocab: id " + std::to_string(i) + " out of range [0, " +
                              std::to_string(itos_.size()) + ")");
    out.push_back(itos_[i]);
  }
  return out;
}

nlohmann::json Vocab::to_json() const { return nlohmann::json(itos_); }

Vocab Vocab::from_json(const nlohmann::json& j) {
  if (!j.is_array())
    throw std::invalid_argument(std::string("vocab: expected a JSON array of strings, got ") +
                                j.type_name());
  std::vector<std::string> itos;
  itos.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_string())
      throw std::invalid_argument("vocab: element " + std::to_string(i) + " is a " +
                                  j[i].type_name() + ", expected a string");
    itos.push_back(j[i].get<std::string>());
  }
  return from_itos(std::move(itos));
}

void Vocab::save(const std::string& path) const {
  const std::string text = to_json().dump() + "\n";
  io::write_file_atomically(path, text.data(), text.size());
}

Vocab Vocab::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw io::FormatError(path, "cannot open vocab file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::parse_error& e) {
    throw io::FormatError(path, std::string("invalid JSON: ") + e.what(),
                          "byte " + std::to_string(e.byte));
  }
  try {
    return from_json(j);
  } catch (const std::invalid_argument& e) {
    throw io::FormatError(path, e.what());
  }
}

}  // namespace ulmfit
