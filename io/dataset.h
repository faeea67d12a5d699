// io/dataset.h — streaming readers for labelled / unlabelled paper datasets.
//
// Formats (chosen by read_dataset from the file name, or given explicitly):
//  * JSON Lines (.jsonl, .json, .ndjson): one object per line with the fields
//      id (string or number), title, abstract, text (strings), label (string, or an integer
//      index into the label list), split (string), is_valid (bool or 0/1),
//      title_abstract_split (bool; false = the title is already inside `abstract`),
//      title_matches_labeled_split (string: an unlabeled record whose title is that of a
//      labeled paper in this split; see docs/training-log.md).
//  * CSV (.csv, .tsv is not supported): RFC 4180 (quoted fields may hold commas, quotes
//    written "" and newlines); the header row names the columns: `title` and `abstract`
//    and/or `text`, optional `label`, `id`, `split`, `is_valid`. Unknown columns are ignored.
//  * pandas DataFrame pickle (.pkl, .pickle): the original's inspire_classifier_dataset.pkl
//    (`DataFrame.to_pickle`, pandas 1.x/2.x), read whole with the safe unpickler (io/pandas_pickle.h).
//    Columns as for CSV; `labels` (the original's name) is accepted for `label`, as an integer
//    index (0 rejected, 1 non_core, 2 core) or a name. A row with None/NaN text is a bad record.
//  * JSON Lines and CSV may be gzip-compressed (.gz, detected from the content): decompressed transparently
//    with zlib. The path "-" reads standard input (also gzip or plain).
//
// Reading streams: memory stays constant (one line / one CSV record at a time), each good
// record goes to a callback, and each bad record goes to an error callback with its line
// number — a bad line never stops the reading and never crashes. Invalid UTF-8 is a bad
// record. Problems with the file as a whole (cannot open, corrupt gzip, CSV header without
// the needed columns) throw io::FormatError naming the file.
//
// The text the model reads (Record::text), as INSPIRE builds it:
//   `text` when the record has one (non-empty), else title + " <ENDTITLE> " + abstract,
//   except that a record with title_abstract_split == false uses `abstract` alone
//   (the oldest INSPIRE fixture rows store title and abstract concatenated in `abstract`).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace io {

struct Record {
  std::size_t line = 0;  // 1-based line number (CSV: the line the record starts on)
  std::string id;        // "" when absent
  bool id_is_number = false;  // the JSON id was an integer (id holds its decimal digits)
  std::string title, abstract;
  std::string text;      // what the model reads (see above)
  std::string label;     // label name ("" when the record has none)
  int label_index = -1;  // index of `label` in DatasetOptions::labels; -1 when no label
  std::string split;     // "train", "valid", "test", "fixture", ... ("" when absent);
                         // is_valid true/false gives "valid"/"train"
  std::string title_match_split;  // title_matches_labeled_split ("" when absent)
  std::string dup_group;  // dup_group: records of the same paper share it ("" when absent);
                          // JSON Lines only
};

struct RecordError {
  std::string path;       // file name ("<stdin>" for "-")
  std::size_t line = 0;   // 1-based line number of the bad record
  std::string message;    // what is wrong, e.g. "missing field 'abstract'"
  // "<path>:<line>: <message>"
  std::string what() const;
};

struct DatasetOptions {
  // Label names; the class index is the position. Default: INSPIRE's (ulmfit/labels.h).
  std::vector<std::string> labels = {"rejected", "non_core", "core"};
  bool read_labels = true;     // false: ignore the label field entirely
  bool require_label = false;  // true: a record without a label is an error
  // Longest accepted line / CSV record in bytes; longer ones are reported as errors.
  std::size_t max_record_bytes = std::size_t(16) << 20;
};

struct ReadStats {
  std::size_t lines = 0;    // physical lines read
  std::size_t records = 0;  // good records passed to the callback
  std::size_t errors = 0;   // bad records passed to the error callback
};

enum class DatasetFormat { Auto, JsonLines, Csv, PandasPickle };

using RecordCallback = std::function<void(Record&)>;
using ErrorCallback = std::function<void(const RecordError&)>;

// Reads `path` ("-" = stdin). Format Auto: ".csv"/".csv.gz" -> CSV, ".pkl"/".pickle" -> pandas
// DataFrame pickle, anything else JSON Lines.
// on_error may be null: bad records are then counted and skipped.
ReadStats read_dataset(const std::string& path, const RecordCallback& on_record,
                       const ErrorCallback& on_error = nullptr, const DatasetOptions& opt = {},
                       DatasetFormat format = DatasetFormat::Auto);

// Convenience: every good record of a file in memory (use only for small files); bad ones go
// to `errors` when given.
std::vector<Record> read_all(const std::string& path, std::vector<RecordError>* errors = nullptr,
                             const DatasetOptions& opt = {},
                             DatasetFormat format = DatasetFormat::Auto);

// One JSON Lines line -> Record (line number set by the caller). Throws
// std::invalid_argument with a message naming the problem (malformed JSON with its column,
// missing / mistyped field, invalid UTF-8, unknown label).
Record parse_json_record(std::string_view line, const DatasetOptions& opt = {});

// One CSV cell as RFC 4180 and spreadsheets expect: quoted when it holds a comma, quote or line
// break; a value starting with = + - @ TAB or CR (which a spreadsheet would run as a formula)
// is prefixed with ' and quoted, so that it shows as text (OWASP's CSV-injection rule).
std::string csv_field(std::string_view s);

// The lines of a text file, plain or gzip-compressed (detected from the content; "-" = standard
// input), each at most max_line_bytes long: a longer line is reported with too_long set and its
// bytes skipped, so memory stays bounded whatever the input. Throws FormatError naming the file
// when it cannot be opened or its gzip data is corrupt.
class LineReader {
 public:
  LineReader(const std::string& path, std::size_t max_line_bytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // Next line without "\n" / "\r\n". False at end of input.
  bool next(std::string& line, bool& too_long);
  std::size_t line_no() const;  // of the line last returned (1-based)
  const std::string& name() const;  // the path, or "<stdin>"

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Byte offset of the first invalid UTF-8 sequence in `s` (overlong forms, surrogates,
// > U+10FFFF, truncated sequences, stray continuation bytes), or nullopt if `s` is valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view s);

}  // namespace io
