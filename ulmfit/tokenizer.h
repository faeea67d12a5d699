// ulmfit/tokenizer.h — fastai 2.7.19 text pipeline + spaCy 3.8.7 blank-"en" tokenizer, exactly.
//
// tokenize(text) reproduces fastai's
//   Tokenizer(SpacyTokenizer('en'), rules=defaults.text_proc_rules)
// on one document: the pre-tokenisation rules (spec §1.2: fix_html, replace_rep, replace_wrep,
// spec_add_spaces, rm_useless_spaces, replace_all_caps, replace_maj, lowercase + "xxbos "),
// then spaCy's blank English tokenizer with fastai's 9 special tokens as special cases (§1.3).
// TokenizeMode::Train additionally applies fastai's replace_space post-rule (every U+0020
// inside a token becomes U+2581 "▁"), as fastai's tokenize_df / training path does (§1.5).
//
// Thread-safe: all tables are immutable and built on first use (C++ magic statics); there is
// no global mutable state. See docs/tokenizer.md for measured parity with fastai.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ulmfit {

enum class TokenizeMode { Predict, Train };

// Invalid text (not UTF-8). what() names the byte offset of the first bad byte.
class TextError : public std::runtime_error {
 public:
  TextError(const std::string& message, std::size_t byte_offset)
      : std::runtime_error(message), byte_offset_(byte_offset) {}
  // Byte offset (in the input given to tokenize) of the first offending byte.
  std::size_t byte_offset() const { return byte_offset_; }

 private:
  std::size_t byte_offset_;
};

// Full fastai pipeline on one document. Every result starts with "xxbos".
// Throws TextError on invalid UTF-8 (overlong forms, surrogates, > U+10FFFF, truncated
// sequences, stray continuation bytes), naming the byte offset.
std::vector<std::string> tokenize(std::string_view text,
                                  TokenizeMode mode = TokenizeMode::Predict);

// The pieces, exposed for tests and tools (all take/return UTF-8).
// fastai's rules only: returns the string that fastai hands to spaCy ("xxbos ..." included).
std::string apply_fastai_rules(std::string_view text);
// spaCy 3.8.7 blank-"en" tokenizer (with fastai's special tokens) on an already-ruled string.
std::vector<std::string> spacy_tokenize(std::string_view text);
// Python html.unescape (HTML5 entity table, numeric refs, invalid code point replacement).
std::string html_unescape(std::string_view text);

// fastai's special tokens in fastai v2 order (ids 0..8).
inline const std::vector<std::string>& special_tokens() {
  static const std::vector<std::string> k = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld",
                                             "xxrep", "xxwrep", "xxup", "xxmaj"};
  return k;
}

}  // namespace ulmfit
