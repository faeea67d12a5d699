#include "ulmfit/corpus.h"

#include <zlib.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "ulmfit/progress.h"

namespace ulmfit {
namespace {

// Whole file, gunzipped when it starts with the gzip magic (gzread passes plain files through).
std::string read_all(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::unique_ptr<gzFile_s, int (*)(gzFile)> guard(f, gzclose);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      throw std::runtime_error(path + ": read error: " + (msg ? msg : "?"));
    }
    if (n == 0) break;
    out.append(buf, (size_t)n);
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return false;
    for (size_t k = 1; k < len; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool is_wikitext_title(const std::string& line) {
  // " = Title = " (top level) but not " = = Section = = ".
  std::string t = trim(line);
  return t.size() > 4 && t.rfind("= ", 0) == 0 && t.compare(t.size() - 2, 2, " =") == 0 &&
         t.rfind("= =", 0) != 0;
}

}  // namespace

std::vector<std::string> read_text_documents(const std::string& path, std::size_t max_docs,
                                             std::size_t* skipped) {
  std::string all = read_all(path);
  bool wikitext = path.size() >= 7 && path.compare(path.size() - 7, 7, ".tokens") == 0;
  std::vector<std::string> docs;
  std::string cur;
  size_t bad = 0;
  auto flush = [&]() {
    std::string t = trim(cur);
    cur.clear();
    if (t.empty()) return;
    if (!valid_utf8(t)) {
      ++bad;
      return;
    }
    docs.push_back(std::move(t));
  };
  size_t pos = 0;
  while (pos <= all.size() && (max_docs == 0 || docs.size() < max_docs)) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) nl = all.size();
    std::string line = all.substr(pos, nl - pos);
    pos = nl + 1;
    if (wikitext) {
      if (is_wikitext_title(line)) flush();
      cur += line;
      cur += '\n';
    } else if (trim(line).empty()) {
      flush();
    } else {
      cur += line;
      cur += '\n';
    }
    if (nl == all.size()) break;
  }
  if (max_docs == 0 || docs.size() < max_docs) flush();
  if (skipped) *skipped = bad;
  return docs;
}

std::vector<std::vector<std::string>> tokenize_all(const std::vector<std::string>& texts,
                                                   TokenizeMode mode, bool quiet,
                                                   std::vector<std::size_t>* failed) {
  std::vector<std::vector<std::string>> out(texts.size());
  std::vector<char> bad(texts.size(), 0);
  Progress prog("tokenizing", (long)texts.size(), stderr, quiet);
  std::atomic<long> done{0};
  const long n = (long)texts.size();
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < n; ++i) {
    try {
      out[i] = tokenize(texts[i], mode);
    } catch (const std::exception&) {
      bad[i] = 1;
    }
    long d = ++done;
    if (!quiet && (d % 256 == 0)) {
#pragma omp critical(inspire_tokenize_progress)
      prog.update(256);
    }
  }
  prog.finish();
  if (failed)
    for (size_t i = 0; i < bad.size(); ++i)
      if (bad[i]) failed->push_back(i);
  return out;
}

std::vector<std::vector<std::int32_t>> numericalize_all(
    const std::vector<std::vector<std::string>>& docs, const Vocab& vocab, bool keep_empty) {
  std::vector<std::vector<std::int32_t>> out;
  out.reserve(docs.size());
  for (auto& d : docs) {
    if (d.empty() && !keep_empty) continue;
    out.push_back(vocab.numericalize(d));
  }
  return out;
}

}  // namespace ulmfit
