// io/dataset.cpp — see dataset.h.
#include "io/dataset.h"
#include "io/pandas_pickle.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "io/errors.h"

namespace io {

std::string RecordError::what() const {
  return path + ":" + std::to_string(line) + ": " + message;
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------
std::optional<std::size_t> find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;  // no surrogates
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;  // <= U+10FFFF
    else return i;                          // continuation byte, C0/C1, F5..FF
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::nullopt;
}

namespace {

// ---------------------------------------------------------------------------------------------
// A line reader over zlib's gzFile (reads gzip or plain files alike), constant memory.
// ---------------------------------------------------------------------------------------------
class LineSource {
 public:
  LineSource(const std::string& path, std::size_t max_bytes)
      : name_(path == "-" ? "<stdin>" : path), max_(max_bytes) {
    errno = 0;
    if (path == "-") {
      int fd = ::dup(0);
      if (fd < 0) throw FormatError(name_, "cannot read standard input");
      gz_ = gzdopen(fd, "rb");
      if (!gz_) ::close(fd);
    } else {
      gz_ = gzopen(path.c_str(), "rb");
    }
    if (!gz_)
      throw FormatError(name_, std::string("cannot open file: ") +
                                   (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(gz_, 1 << 17);
    buf_.resize(1 << 16);
  }
  ~LineSource() {
    if (gz_) gzclose(gz_);
  }
  LineSource(const LineSource&) = delete;
  LineSource& operator=(const LineSource&) = delete;

  const std::string& name() const { return name_; }
  std::size_t line_no() const { return line_no_; }

  // Next line without its "\n" (and without a trailing "\r"). False at end of input.
  // `too_long` is set when the line exceeded max bytes (the rest of it is skipped).
  bool next(std::string& out, bool& too_long) {
    out.clear();
    too_long = false;
    bool any = false;
    for (;;) {
      if (pos_ == len_) {
        if (!fill()) break;
      }
      any = true;
      const char* b = buf_.data() + pos_;
      const char* e = static_cast<const char*>(std::memchr(b, '\n', len_ - pos_));
      const std::size_t take = (e ? (std::size_t)(e - b) : len_ - pos_);
      if (!too_long) {
        if (out.size() + take > max_) {
          too_long = true;
          out.clear();
        } else {
          out.append(b, take);
        }
      }
      pos_ += take;
      if (e) {
        ++pos_;  // the '\n'
        break;
      }
    }
    if (!any) return false;
    ++line_no_;
    if (!out.empty() && out.back() == '\r') out.pop_back();
    if (line_no_ == 1 && out.compare(0, 3, "\xEF\xBB\xBF") == 0) out.erase(0, 3);  // BOM
    return true;
  }

 private:
  bool fill() {
    if (eof_) return false;
    int r = gzread(gz_, buf_.data(), (unsigned)buf_.size());
    if (r < 0) {
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      throw FormatError(name_, std::string("cannot decompress/read: ") + (msg ? msg : "?"),
                        "line " + std::to_string(line_no_ + 1));
    }
    if (r == 0) {
      // A truncated gzip stream reads as EOF with an error set.
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      if (err != Z_OK && err != Z_STREAM_END)
        throw FormatError(name_, std::string("corrupt or truncated gzip data: ") + (msg ? msg : "?"),
                          "line " + std::to_string(line_no_ + 1));
      eof_ = true;
      return false;
    }
    pos_ = 0;
    len_ = (std::size_t)r;
    return true;
  }

  std::string name_;
  std::size_t max_;
  gzFile gz_ = nullptr;
  std::vector<char> buf_;
  std::size_t pos_ = 0, len_ = 0, line_no_ = 0;
  bool eof_ = false;
};

}  // namespace

std::string csv_field(std::string_view s) {
  const bool formula = !s.empty() && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' ||
                                      s[0] == '\t' || s[0] == '\r');
  if (!formula && s.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(s);
  std::string o = "\"";
  if (formula) o += '\'';
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

struct LineReader::Impl {
  Impl(const std::string& path, std::size_t max) : src(path, max) {}
  LineSource src;
};
LineReader::LineReader(const std::string& path, std::size_t max_line_bytes)
    : impl_(std::make_unique<Impl>(path, max_line_bytes)) {}
LineReader::~LineReader() = default;
bool LineReader::next(std::string& line, bool& too_long) { return impl_->src.next(line, too_long); }
std::size_t LineReader::line_no() const { return impl_->src.line_no(); }
const std::string& LineReader::name() const { return impl_->src.name(); }

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

void check_utf8(const std::string& field, const std::string& value) {
  if (auto off = find_invalid_utf8(value))
    bad("invalid UTF-8 in field '" + field + "' at byte " + std::to_string(*off));
}

// Label from a name or an integer index.
void set_label(Record& r, const std::string& name, long long index, bool is_index,
               const DatasetOptions& opt) {
  const auto& L = opt.labels;
  if (!is_index) {
    auto it = std::find(L.begin(), L.end(), name);
    if (it != L.end()) {
      r.label = name;
      r.label_index = (int)(it - L.begin());
      return;
    }
    // "2" in a CSV column of class indices
    if (!name.empty() && name.size() < 10 &&
        name.find_first_not_of("0123456789") == std::string::npos) {
      index = std::stoll(name);
      is_index = true;
    } else {
      std::string expected;
      for (std::size_t i = 0; i < L.size(); ++i) expected += (i ? ", " : "") + L[i];
      check_utf8("label", name);
      bad("unknown label '" + name + "' (expected one of: " + expected + ")");
    }
  }
  if (index < 0 || (std::size_t)index >= L.size())
    bad("label index " + std::to_string(index) + " out of range [0, " + std::to_string(L.size()) +
        ")");
  r.label = L[(std::size_t)index];
  r.label_index = (int)index;
}

void finish_text(Record& r, bool has_text, bool has_title, bool has_abstract,
                 bool title_abstract_split) {
  if (has_text && !r.text.empty()) return;
  if (!title_abstract_split) {
    if (!has_abstract) bad("missing field 'abstract' (title_abstract_split is false)");
    r.text = r.abstract;
    return;
  }
  if (!has_title && !has_abstract) bad("missing field: need 'text', or 'title' and 'abstract'");
  if (!has_title) bad("missing field 'title' (or give 'text')");
  if (!has_abstract) bad("missing field 'abstract' (or give 'text')");
  r.text = r.title + " <ENDTITLE> " + r.abstract;
}

void finish_label(const Record& r, const DatasetOptions& opt) {
  if (opt.read_labels && opt.require_label && r.label_index < 0) bad("missing field 'label'");
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------
// Reads one RFC 4180 record (which may span lines). False at end of input. A malformed record
// is consumed whole and described in `err`.
bool next_csv_record(LineSource& src, std::vector<std::string>& fields, std::size_t& start_line,
                     std::string& err, std::size_t max_bytes) {
  std::string line;
  bool too_long = false;
  do {
    if (!src.next(line, too_long)) return false;
  } while (line.empty() && !too_long);  // blank lines between records are skipped
  start_line = src.line_no();
  fields.assign(1, std::string());
  err.clear();
  if (too_long) err = "record longer than " + std::to_string(max_bytes) + " bytes";
  bool in_quotes = false, after_quote = false;
  std::size_t bytes = 0;
  for (;;) {
    bytes += line.size();
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      std::string& f = fields.back();
      if (in_quotes) {
        if (c == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            f += '"';
            ++i;
          } else {
            in_quotes = false;
            after_quote = true;
          }
        } else {
          f += c;
        }
      } else if (c == ',') {
        fields.emplace_back();
        after_quote = false;
      } else if (after_quote) {
        if (err.empty())
          err = "unexpected character after the closing quote of field " +
                std::to_string(fields.size()) + " (a quote inside a quoted field must be doubled)";
      } else if (c == '"' && f.empty()) {
        in_quotes = true;
      } else {
        f += c;  // a bare quote inside an unquoted field is kept as is (lenient, like pandas)
      }
    }
    if (!in_quotes) break;
    if (bytes > max_bytes) {
      if (err.empty()) err = "record longer than " + std::to_string(max_bytes) + " bytes";
    }
    if (!src.next(line, too_long)) {
      if (err.empty())
        err = "unterminated quoted field " + std::to_string(fields.size()) + " (opened on line " +
              std::to_string(start_line) + ")";
      return true;
    }
    if (too_long && err.empty()) err = "record longer than " + std::to_string(max_bytes) + " bytes";
    if (bytes <= max_bytes) fields.back() += '\n';
  }
  return true;
}

ReadStats read_csv(LineSource& src, const RecordCallback& on_record, const ErrorCallback& on_error,
                   const DatasetOptions& opt) {
  ReadStats st;
  std::vector<std::string> fields;
  std::size_t line = 0;
  std::string err;
  if (!next_csv_record(src, fields, line, err, opt.max_record_bytes))
    throw FormatError(src.name(), "empty CSV file: expected a header row naming the columns");
  if (!err.empty()) throw FormatError(src.name(), "bad CSV header: " + err, "line " + std::to_string(line));
  auto col = [&](const char* name) -> long {
    long found = -1;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      std::string h = fields[i];
      while (!h.empty() && (h.back() == ' ' || h.back() == '\t')) h.pop_back();
      while (!h.empty() && (h.front() == ' ' || h.front() == '\t')) h.erase(0, 1);
      if (h == name) {
        if (found >= 0)
          throw FormatError(src.name(), std::string("CSV header names column '") + name + "' twice",
                            "line " + std::to_string(line));
        found = (long)i;
      }
    }
    return found;
  };
  const long c_title = col("title"), c_abstract = col("abstract"), c_text = col("text"),
             c_label = col("label"), c_id = col("id"), c_split = col("split"),
             c_valid = col("is_valid");
  if (c_text < 0 && (c_title < 0 || c_abstract < 0))
    throw FormatError(src.name(), "CSV header must name a 'text' column or 'title' and 'abstract' columns",
                      "line " + std::to_string(line));
  if (opt.read_labels && opt.require_label && c_label < 0)
    throw FormatError(src.name(), "CSV header has no 'label' column", "line " + std::to_string(line));
  const std::size_t n_cols = fields.size();

  while (next_csv_record(src, fields, line, err, opt.max_record_bytes)) {
    try {
      if (!err.empty()) bad(err);
      if (fields.size() != n_cols)
        bad("expected " + std::to_string(n_cols) + " fields (as in the header), got " +
            std::to_string(fields.size()));
      Record r;
      r.line = line;
      auto get = [&](long c, const char* name, std::string& out) {
        if (c < 0) return false;
        out = std::move(fields[(std::size_t)c]);
        check_utf8(name, out);
        return true;
      };
      get(c_id, "id", r.id);
      get(c_split, "split", r.split);
      const bool has_title = get(c_title, "title", r.title);
      const bool has_abstract = get(c_abstract, "abstract", r.abstract);
      const bool has_text = get(c_text, "text", r.text);
      if (c_valid >= 0 && r.split.empty()) {
        std::string v;
        get(c_valid, "is_valid", v);
        if (v == "True" || v == "true" || v == "1") r.split = "valid";
        else if (v == "False" || v == "false" || v == "0") r.split = "train";
        else if (!v.empty()) bad("field 'is_valid' must be true/false or 1/0, got '" + v + "'");
      }
      if (opt.read_labels && c_label >= 0) {
        std::string lab;
        get(c_label, "label", lab);
        if (!lab.empty()) set_label(r, lab, 0, false, opt);
      }
      finish_text(r, has_text, has_title, has_abstract, true);
      finish_label(r, opt);
      ++st.records;
      on_record(r);
    } catch (const std::invalid_argument& e) {
      ++st.errors;
      if (on_error) on_error(RecordError{src.name(), line, e.what()});
    }
  }
  st.lines = src.line_no();
  return st;
}

ReadStats read_jsonl(LineSource& src, const RecordCallback& on_record,
                     const ErrorCallback& on_error, const DatasetOptions& opt) {
  ReadStats st;
  std::string line;
  bool too_long = false;
  while (src.next(line, too_long)) {
    const std::size_t ln = src.line_no();
    try {
      if (too_long) bad("line longer than " + std::to_string(opt.max_record_bytes) + " bytes");
      if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank line
      Record r = parse_json_record(line, opt);
      r.line = ln;
      ++st.records;
      on_record(r);
    } catch (const std::invalid_argument& e) {
      ++st.errors;
      if (on_error) on_error(RecordError{src.name(), ln, e.what()});
    }
  }
  st.lines = src.line_no();
  return st;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// JSON record
// ---------------------------------------------------------------------------------------------
Record parse_json_record(std::string_view line, const DatasetOptions& opt) {
  if (auto off = find_invalid_utf8(line)) bad("invalid UTF-8 at byte " + std::to_string(*off + 1) + " of the line");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    std::string m = e.what();
    if (auto p = m.find("] "); m.rfind("[json.exception", 0) == 0 && p != std::string::npos)
      m = m.substr(p + 2);
    if (auto p = m.find("at line 1, column "); p != std::string::npos) m.replace(p, 18, "at column ");
    bad("malformed JSON (" + m + ")");
  }
  if (!j.is_object()) bad(std::string("expected a JSON object, got ") + j.type_name());
  Record r;
  auto str = [&](const char* name, std::string& out) -> bool {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return false;
    if (!it->is_string())
      bad(std::string("field '") + name + "' must be a string, got " + it->type_name());
    out = it->get<std::string>();
    return true;
  };
  if (auto it = j.find("id"); it != j.end() && !it->is_null()) {
    if (it->is_string()) r.id = it->get<std::string>();
    else if (it->is_number_integer()) r.id = it->dump(), r.id_is_number = true;
    else bad(std::string("field 'id' must be a string or an integer, got ") + it->type_name());
  }
  const bool has_title = str("title", r.title);
  const bool has_abstract = str("abstract", r.abstract);
  const bool has_text = str("text", r.text);
  str("split", r.split);
  str("title_matches_labeled_split", r.title_match_split);
  str("dup_group", r.dup_group);
  if (auto it = j.find("is_valid"); it != j.end() && !it->is_null() && r.split.empty()) {
    if (it->is_boolean()) r.split = it->get<bool>() ? "valid" : "train";
    else if (it->is_number_integer() && (*it == 0 || *it == 1)) r.split = (*it == 1) ? "valid" : "train";
    else bad("field 'is_valid' must be true/false or 0/1");
  }
  bool split_ta = true;
  if (auto it = j.find("title_abstract_split"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) bad("field 'title_abstract_split' must be true or false");
    split_ta = it->get<bool>();
  }
  if (opt.read_labels) {
    if (auto it = j.find("label"); it != j.end() && !it->is_null()) {
      if (it->is_string()) {
        if (!it->get_ref<const std::string&>().empty()) set_label(r, it->get<std::string>(), 0, false, opt);
      }
      else if (it->is_number_integer()) set_label(r, "", it->get<long long>(), true, opt);
      else bad(std::string("field 'label' must be a string or an integer, got ") + it->type_name());
    }
  }
  finish_text(r, has_text, has_title, has_abstract, split_ta);
  finish_label(r, opt);
  return r;
}

// ---------------------------------------------------------------------------------------------
// pandas DataFrame pickle (the original's inspire_classifier_dataset.pkl)
// ---------------------------------------------------------------------------------------------
namespace {

ReadStats read_df_pickle(const std::string& path, const RecordCallback& on_record, const ErrorCallback& on_error,
                         const DatasetOptions& opt) {
  DataFrame df = read_pandas_pickle(path);
  const int c_text = df.find("text"), c_title = df.find("title"), c_abstract = df.find("abstract");
  int c_label = df.find("label");
  if (c_label < 0) c_label = df.find("labels");  // the original's column name
  const int c_id = df.find("id"), c_split = df.find("split"), c_valid = df.find("is_valid");
  if (c_text < 0 && (c_title < 0 || c_abstract < 0)) {
    std::string cols;
    for (auto& n : df.names) cols += (cols.empty() ? "" : ", ") + n;
    throw FormatError(path, "the DataFrame has no 'text' column (nor 'title' and 'abstract'); its columns: " + cols);
  }
  ReadStats st;
  using T = DataFrameColumn::Type;
  // A cell as a string: false when it is missing (None / NaN); throws for other types.
  auto cell_str = [&](int c, std::size_t row, std::string& out) -> bool {
    const auto& col = df.columns[c];
    if (col.type == T::Float) {
      if (std::isnan(col.floats[row])) return false;
      bad("column '" + df.names[c] + "' holds numbers, not text");
    }
    if (col.type != T::Object) bad("column '" + df.names[c] + "' holds numbers, not text");
    const pickle::Value* v = col.objects[row];
    if (v->is_none() || (v->kind == pickle::Kind::Float && std::isnan(v->f))) return false;
    if (!v->is_str()) bad("column '" + df.names[c] + "' holds " + pickle::describe(v, 0) + ", not a string");
    out = v->s;
    return true;
  };
  for (std::size_t row = 0; row < df.rows; ++row) {
    st.lines++;
    try {
      Record r;
      r.line = row + 1;
      if (c_id >= 0) {
        const auto& col = df.columns[c_id];
        if (col.type == T::Int) r.id = std::to_string(col.ints[row]), r.id_is_number = true;
        else cell_str(c_id, row, r.id);
      }
      bool has_text = c_text >= 0 && cell_str(c_text, row, r.text);
      bool has_title = c_title >= 0 && cell_str(c_title, row, r.title);
      bool has_abstract = c_abstract >= 0 && cell_str(c_abstract, row, r.abstract);
      if (!has_text && !(has_title && has_abstract))
        bad(c_text >= 0 ? "missing text (None/NaN)" : "missing title or abstract (None/NaN)");
      for (auto* f : {&r.text, &r.title, &r.abstract})
        if (auto off = find_invalid_utf8(*f)) bad("invalid UTF-8 at byte " + std::to_string(*off + 1));
      if (c_split >= 0) cell_str(c_split, row, r.split);
      if (c_valid >= 0 && r.split.empty()) {
        const auto& col = df.columns[c_valid];
        if (col.type == T::Bool || col.type == T::Int) r.split = col.ints[row] ? "valid" : "train";
      }
      if (opt.read_labels && c_label >= 0) {
        const auto& col = df.columns[c_label];
        if (col.type == T::Int) {
          set_label(r, "", col.ints[row], true, opt);
        } else {
          std::string name;
          if (cell_str(c_label, row, name) && !name.empty()) set_label(r, name, 0, false, opt);
        }
      }
      finish_text(r, has_text, has_title, has_abstract, true);
      finish_label(r, opt);
      st.records++;
      on_record(r);
    } catch (const std::invalid_argument& e) {
      st.errors++;
      if (on_error) on_error(RecordError{path, row + 1, std::string("row ") + std::to_string(row) + ": " + e.what()});
    }
  }
  return st;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------
ReadStats read_dataset(const std::string& path, const RecordCallback& on_record,
                       const ErrorCallback& on_error, const DatasetOptions& opt,
                       DatasetFormat format) {
  if (!on_record) throw std::invalid_argument("read_dataset: no record callback");
  if (opt.labels.empty() && opt.read_labels)
    throw std::invalid_argument("read_dataset: empty label list");
  if (format == DatasetFormat::Auto && (ends_with(path, ".pkl") || ends_with(path, ".pickle")))
    format = DatasetFormat::PandasPickle;
  if (format == DatasetFormat::PandasPickle) return read_df_pickle(path, on_record, on_error, opt);
  if (format == DatasetFormat::Auto)
    format = (ends_with(path, ".csv") || ends_with(path, ".csv.gz") || ends_with(path, ".CSV"))
                 ? DatasetFormat::Csv
                 : DatasetFormat::JsonLines;
  LineSource src(path, opt.max_record_bytes);
  return format == DatasetFormat::Csv ? read_csv(src, on_record, on_error, opt)
                                      : read_jsonl(src, on_record, on_error, opt);
}

std::vector<Record> read_all(const std::string& path, std::vector<RecordError>* errors,
                             const DatasetOptions& opt, DatasetFormat format) {
  std::vector<Record> out;
  read_dataset(
      path, [&](Record& r) { out.push_back(std::move(r)); },
      [&](const RecordError& e) {
        if (errors) errors->push_back(e);
      },
      opt, format);
  return out;
}

}  // namespace io
