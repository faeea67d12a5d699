// ulmfit/tokenizer.cpp — placeholder while the implementation lands (see tokenizer.h).
#include "ulmfit/tokenizer.h"

namespace ulmfit {
std::vector<std::string> tokenize(std::string_view, TokenizeMode) {
  throw std::logic_error("ulmfit::tokenize: not implemented yet");
}
std::string apply_fastai_rules(std::string_view) {
  throw std::logic_error("ulmfit::apply_fastai_rules: not implemented yet");
}
std::vector<std::string> spacy_tokenize(std::string_view) {
  throw std::logic_error("ulmfit::spacy_tokenize: not implemented yet");
}
std::string html_unescape(std::string_view) {
  throw std::logic_error("ulmfit::html_unescape: not implemented yet");
}
}  // namespace ulmfit
