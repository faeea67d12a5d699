// ulmfit/splits.h — which documents a run trains and validates on.
//
// Records whose `split` is "train"/"valid" go there; records with another split ("test",
// "fixture") are left out; records without a split are split at random (valid_pct, seeded) like
// fastai's RandomSplitter, except those whose title is a valid or test paper's
// (`title_matches_labeled_split`): training on them, even as unlabeled LM text, would leak the
// papers the model is scored on. Plain-text corpora (.txt[.gz], .tokens) have no split and no
// labels.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/dataset.h"

namespace ulmfit {

// Where the library reports what it does (one line, no trailing newline): warnings about skipped
// records, data and vocabulary summaries. Empty: silent. The command-line tool prints to stderr.
using LogFn = std::function<void(const std::string&)>;

struct Sides {
  std::vector<std::string> train, valid;
  std::vector<std::int32_t> train_labels, valid_labels;  // -1: no label
  std::size_t skipped = 0;           // records in other splits ("test", ...)
  std::size_t bad = 0;               // unreadable records / empty documents
  std::size_t held_out_matches = 0;  // unsplit records matching a valid or test paper's title
};

// Whether `path` is a plain-text corpus (.txt, .txt.gz, .tokens) rather than a dataset.
bool is_plain_text(const std::string& path);

// The train and valid sides of `files`. `need_labels`: every record must have a label (a
// plain-text file is then an error); without it (LM data) the label field is not read at all.
// Records in split "train" / "valid" go to that side, "test" is never read, records without a
// split are shared by valid_pct; other splits are left out, except for a `general_corpus`
// (pretraining text such as IMDb's, whose split names are another dataset's: "unsup"), where
// they are shared by valid_pct too. Throws std::runtime_error when no training document is left.
Sides read_sides(const std::vector<std::string>& files, double valid_pct, std::uint64_t seed,
                 bool need_labels, const LogFn& log = {}, bool general_corpus = false);

// Records of `data` whose split is `split` (empty: all), each with a label among `labels`.
// Bad lines are logged ("warning: skipping ...") and counted in *bad (when given).
std::vector<io::Record> read_labeled(const std::string& data, const std::string& split,
                                     const std::vector<std::string>& labels,
                                     std::size_t* bad = nullptr, const LogFn& log = {});

}  // namespace ulmfit
