// ulmfit/corpus.h — turning text files into numericalised documents for training.
//
// Plain-text corpora (general English for pretraining): `.txt` or `.txt.gz` files whose documents
// are separated by blank lines (nltk_english.*), and WikiText `.tokens` files (one document per
// article, split at top-level " = Title = " headings). Labeled and unlabeled INSPIRE sets are JSON
// Lines / CSV and are read with io/dataset.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ulmfit/tokenizer.h"
#include "ulmfit/vocab.h"

namespace ulmfit {

// Reads a plain-text corpus (see above). Each returned string is one document. gzip is detected
// by the file's magic bytes. Invalid UTF-8 documents are skipped and counted in *skipped (when
// given). Throws std::runtime_error naming the file if it cannot be read.
std::vector<std::string> read_text_documents(const std::string& path, std::size_t max_docs = 0,
                                             std::size_t* skipped = nullptr);

// Tokenizes every text (fastai rules + spaCy, `mode`) in parallel (OpenMP), keeping order.
// A text that fails (invalid UTF-8) yields an empty token list and its index is appended to
// *failed (when given). Shows progress unless quiet.
std::vector<std::vector<std::string>> tokenize_all(const std::vector<std::string>& texts,
                                                   TokenizeMode mode, bool quiet = true,
                                                   std::vector<std::size_t>* failed = nullptr);

// Numericalises token lists with `vocab` (OOV -> xxunk); empty lists are dropped unless
// keep_empty.
std::vector<std::vector<std::int32_t>> numericalize_all(
    const std::vector<std::vector<std::string>>& docs, const Vocab& vocab, bool keep_empty = false);

}  // namespace ulmfit
