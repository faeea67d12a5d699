// tools/cmd_tokenize.cpp — `inspire-classifier tokenize`: JSON Lines in, fastai tokens out.
//
//   inspire-classifier tokenize [--mode predict|train] [--input FILE] [--output FILE]
//
// Each input line is a JSON object with `text`, or `title` and `abstract` (joined as
// title + " <ENDTITLE> " + abstract, as INSPIRE does). Each output line is
// {"id": ..., "tokens": [...]} (id only when the input had one), in input order. A bad line
// gives {"error": "...", "line": N} on the output and a message on stderr; the rest goes on.
// Exit status: 0 all lines fine, 1 some line (or the input) failed, 2 usage error.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/dataset.h"
#include "tools/cli.h"
#include "ulmfit/tokenizer.h"

namespace {

struct Item {
  std::size_t line = 0;
  std::string id;
  bool has_id = false, id_is_number = false;
  std::string text;
  std::string error;  // non-empty: a bad line
  std::vector<std::string> tokens;
};

std::string render(const Item& it) {
  nlohmann::ordered_json j;
  if (!it.error.empty()) {
    j["error"] = it.error;
    j["line"] = it.line;
  } else {
    if (it.has_id) {
      if (it.id_is_number) j["id"] = nlohmann::json::parse(it.id);
      else j["id"] = it.id;
    }
    j["tokens"] = it.tokens;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int run_tokenize(int argc, char** argv) {
  CLI::App app(
      "Tokenize papers exactly as fastai 2.7.19 + spaCy 3.8.7 do for INSPIRE's classifier.\n"
      "Input: JSON Lines, one object per line with \"text\", or \"title\" and \"abstract\"\n"
      "(joined as title + \" <ENDTITLE> \" + abstract). gzip'd input is read transparently.\n"
      "Output: one line per input record, {\"id\": ..., \"tokens\": [...]} (id only if the input\n"
      "has one), in input order. A bad line gives {\"error\": \"...\", \"line\": N} and a message\n"
      "on stderr, and processing goes on.\n"
      "Exit status: 0 all lines fine, 1 some line failed, 2 usage error.\n\n"
      "Example:\n"
      "  echo '{\"title\": \"Dark matter\", \"abstract\": \"We study WIMPs.\"}' | "
      "inspire-classifier tokenize",
      "inspire-classifier tokenize");
  std::string mode = "predict", input = "-", output;
  int threads = 0;
  app.add_option("-m,--mode", mode,
                 "predict: fastai's predict path (no post-rule); train: the training path "
                 "(tokenize_df: spaces inside tokens become U+2581)")
      ->check(CLI::IsMember({"predict", "train"}))
      ->capture_default_str();
  app.add_option("-i,--input", input, "JSON Lines file (.gz allowed); '-' = standard input")
      ->capture_default_str();
  app.add_option("-o,--output", output,
                 "write here (atomically) instead of standard output");
  app.add_option("-t,--threads", threads, "worker threads (default: all cores)");  // range: cli::parse
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (input != "-" && ::access(input.c_str(), R_OK) != 0) {
    cli::error("cannot read input file '" + input + "'");
    return 1;
  }
  if (threads > 0) omp_set_num_threads(threads);
  const auto tmode = mode == "train" ? ulmfit::TokenizeMode::Train : ulmfit::TokenizeMode::Predict;
  const bool progress = ::isatty(2) && (input != "-");

  std::size_t n_ok = 0, n_bad = 0;
  auto work = [&](std::ostream& out) {
    std::vector<Item> batch;
    constexpr std::size_t kBatch = 512;
    auto flush = [&] {
      const long n = (long)batch.size();
#pragma omp parallel for schedule(dynamic, 8)
      for (long i = 0; i < n; ++i) {
        Item& it = batch[i];
        if (!it.error.empty()) continue;
        try {
          it.tokens = ulmfit::tokenize(it.text, tmode);
        } catch (const std::exception& e) {
          it.error = e.what();
        }
      }
      for (auto& it : batch) {
        if (!it.error.empty()) {
          ++n_bad;
          cli::error((input == "-" ? std::string("<stdin>") : input) + ":" +
                     std::to_string(it.line) + ": " + it.error);
        } else {
          ++n_ok;
        }
        out << render(it) << '\n';
      }
      batch.clear();
      if (progress) std::fprintf(stderr, "\rtokenize: %zu records", n_ok + n_bad);
    };
    io::DatasetOptions opt;
    opt.read_labels = false;
    io::read_dataset(
        input,
        [&](io::Record& r) {
          Item it;
          it.line = r.line;
          it.has_id = !r.id.empty();
          it.id = std::move(r.id);
          it.id_is_number = r.id_is_number;
          it.text = std::move(r.text);
          batch.push_back(std::move(it));
          if (batch.size() == kBatch) flush();
        },
        [&](const io::RecordError& e) {
          Item it;
          it.line = e.line;
          it.error = e.message;
          batch.push_back(std::move(it));
          if (batch.size() == kBatch) flush();
        },
        opt, io::DatasetFormat::JsonLines);
    flush();
    if (progress) std::fprintf(stderr, "\n");
    out.flush();
    if (!out) throw std::runtime_error("write error on the output");
  };
  if (output.empty()) {
    std::ios::sync_with_stdio(false);
    work(std::cout);
  } else {
    io::write_file_atomically(output, work);
  }
  if (n_bad > 0) {
    std::cerr << "tokenize: " << n_bad << " of " << (n_ok + n_bad) << " lines failed\n";
    return 1;
  }
  return 0;
}

}  // namespace

INSPIRE_COMMAND(tokenize, "Tokenize JSON Lines the way fastai does (one JSON line of tokens per record)",
                run_tokenize);
