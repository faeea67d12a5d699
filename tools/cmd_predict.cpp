// tools/cmd_predict.cpp — `predict-coreness` (one paper), `predict` (JSON Lines, streamed) and
// `embed` (the same input, a document vector per paper).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <chrono>
#include <cstring>
#include <sstream>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "io/atomic_file.h"
#include "io/dataset.h"
#include "tools/cli.h"
#include "ulmfit/classifier.h"

namespace {

// ---------------------------------------------------------------------------------------------
// predict-coreness TITLE ABSTRACT [--model M]
// ---------------------------------------------------------------------------------------------
int run_predict_coreness(int argc, char** argv) {
  CLI::App app(
      "Classify one paper as core / non_core / rejected, exactly as INSPIRE's classifier does.\n"
      "Prints one JSON line: {\"prediction\": ..., \"scores\": {\"rejected\": ..., "
      "\"non_core\": ..., \"core\": ...}}",
      "inspire-classifier predict-coreness");
  std::string title, abstract, model;
  app.add_option("title", title, "the paper's title")->required();
  app.add_option("abstract", abstract, "the paper's abstract")->required();
  app.add_option("-m,--model", model,
                 "model bundle (.safetensors); default: the model embedded in this build");
  ulmfit::LoadOptions load_opt;
  cli::add_load_options(app, load_opt);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  auto clf = ulmfit::Classifier::load_or_default(model, load_opt);
  try {
    auto p = clf.predict_coreness(title, abstract);
    std::cout << clf.to_json(p) << std::endl;
  } catch (const std::invalid_argument& e) {
    cli::error(e.what());
    return 2;
  }
  return std::cout ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// predict --input records.jsonl [--output out.jsonl] [--model M] [--threads N]
// ---------------------------------------------------------------------------------------------
struct Item {
  long line = 0;
  std::optional<nlohmann::json> id;
  bool joined = false;  // "text" given instead of title/abstract
  ulmfit::Paper paper;
  std::string error;  // non-empty: a bad line
  std::string output;
};

// Parses one input line into `it` (sets it.error on a bad line).
void parse_line(const std::string& line, Item& it) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    std::string m = e.what();
    auto p = m.find("parse error");
    it.error = "malformed JSON: " + (p == std::string::npos ? m : m.substr(p));
    return;
  }
  if (!j.is_object()) {
    it.error = std::string("expected a JSON object with \"title\" and \"abstract\", got ") +
               j.type_name();
    return;
  }
  if (auto f = j.find("id"); f != j.end()) it.id = *f;
  auto field = [&](const char* name, std::string& out) -> bool {
    auto f = j.find(name);
    if (f == j.end()) {
      it.error = std::string("missing field \"") + name + "\"";
      return false;
    }
    if (!f->is_string()) {
      it.error = std::string("field \"") + name + "\" must be a string, got " + f->type_name();
      return false;
    }
    out = f->get<std::string>();
    return true;
  };
  if (!j.contains("title") && !j.contains("abstract") && j.contains("text")) {
    it.joined = true;  // a dataset row that only has the joined text
    field("text", it.paper.title);
    return;
  }
  if (field("title", it.paper.title)) field("abstract", it.paper.abstract);
}

std::string output_line(const ulmfit::Classifier& clf, const Item& it,
                        const ulmfit::Prediction& p) {
  std::string s = "{";
  if (it.id)
    s += "\"id\": " + it.id->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + ", ";
  else
    s += "\"line\": " + std::to_string(it.line) + ", ";
  return s + clf.to_json(p).substr(1);
}

// Reads up to `chunk` records into `items` (blank lines skipped; a line too long or not a paper
// becomes an item with its error). Returns false at the end of the input.
bool read_chunk(io::LineReader& reader, std::vector<Item>& items, int chunk,
                std::size_t max_line_bytes) {
  items.clear();
  std::string line;
  while (items.size() < static_cast<std::size_t>(chunk)) {
    bool too_long = false;
    if (!reader.next(line, too_long)) return false;
    if (!too_long && line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank
    items.emplace_back();
    items.back().line = static_cast<long>(reader.line_no());
    if (too_long)
      items.back().error = "line longer than " + std::to_string(max_line_bytes) +
                           " bytes (see --max-line-bytes)";
    else
      parse_line(line, items.back());
  }
  return true;
}

// Writes the good items' output lines in order and reports the bad ones on stderr (named by
// `in_name`:line); counts both.
void write_chunk(std::ostream& out, const std::vector<Item>& items, const std::string& in_name,
                 bool tty, long& good, long& bad) {
  for (const auto& it : items) {
    if (!it.error.empty()) {
      ++bad;
      if (tty) std::fputc('\n', stderr);
      cli::warning(in_name + ":" + std::to_string(it.line) + ": " + it.error + " (skipped)");
      continue;
    }
    out << it.output << '\n';
    ++good;
  }
  out.flush();
  if (!out) throw std::runtime_error("cannot write the output (disk full or closed pipe?)");
}

// Sharded predict (mpirun, docs/distributed.md): the results of items [b, e) to one buffer and
// back: per item its output line and its error (one of them empty), length-prefixed.
void put_str(std::string& buf, const std::string& s) {
  const std::uint64_t n = s.size();
  buf.append(reinterpret_cast<const char*>(&n), sizeof n);
  buf += s;
}
std::string get_str(const std::string& buf, std::size_t& pos) {
  std::uint64_t n = 0;
  if (pos + sizeof n > buf.size()) throw std::runtime_error("predict: truncated result from a rank");
  std::memcpy(&n, buf.data() + pos, sizeof n);
  pos += sizeof n;
  if (n > buf.size() - pos) throw std::runtime_error("predict: truncated result from a rank");
  std::string s = buf.substr(pos, n);
  pos += n;
  return s;
}

int run_predict(int argc, char** argv) {
  CLI::App app(
      "Classify every record of a JSON Lines file ({\"id\", \"title\", \"abstract\"} per line; "
      "a record with only \"text\" is taken as the joined text). Writes one JSON line per good "
      "record, in input order: {\"id\": ..., \"prediction\": ..., \"scores\": {...}} (\"line\" "
      "instead of \"id\" when a record has none). Bad lines are reported on stderr with their "
      "line number and skipped; the exit code is then 1. Memory stays constant whatever the "
      "input size.",
      "inspire-classifier predict");
  std::string input = "-", output = "-", model;
  int threads = 0, chunk = 256, batch = 1;
  std::size_t max_line_bytes = 8u << 20;
  bool quiet = false;
  app.add_option("-i,--input", input, "JSON Lines input, plain or gzip ('-' = stdin)")
      ->capture_default_str();
  app.add_option("-o,--output", output,
                 "JSON Lines output ('-' = stdout; a file is written atomically)")
      ->capture_default_str();
  app.add_option("-m,--model", model,
                 "model bundle (.safetensors); default: the model embedded in this build");
  app.add_option("-t,--threads", threads, "worker threads (0 = all cores)")
      ->capture_default_str();  // range: cli::parse
  app.add_option("--chunk", chunk, "records read and classified together")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--batch", batch,
                 "papers padded together through the model (longest first): >1 is faster for "
                 "bulk work (about 4x the papers/s at 32 with the full-size model), scores within "
                 "~1e-6 of one at a time; 1 = each paper alone, exactly as predict-coreness")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-line-bytes", max_line_bytes,
                 "longest input line read; a longer one is reported as a bad line and skipped "
                 "(memory stays bounded)")
      ->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "no progress or summary on stderr");
  ulmfit::LoadOptions load_opt;
  cli::add_load_options(app, load_opt);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  // Under mpirun every rank reads the input, classifies its share of every chunk and sends the
  // results to rank 0, which alone writes the output (in input order) and reports.
  dist::Communicator& comm = dist::world();
  const int rank = comm.rank(), nranks = comm.size();
  const bool lead = rank == 0;
  if (nranks > 1 && input == "-")
    throw std::runtime_error("predict under mpirun needs --input FILE (standard input reaches "
                             "rank 0 only)");
  if (!lead) quiet = true;

  // Fail at once, before loading the model, on an input that cannot be read or an output that
  // may not be replaced.
  if (output != "-" && lead) io::check_output_path(output);
  io::LineReader reader(input, max_line_bytes);
  const std::string in_name = reader.name();
  auto clf = ulmfit::Classifier::load_or_default(model, load_opt);

  long good = 0, bad = 0, shown = -1;
  const bool tty = !quiet && ::isatty(STDERR_FILENO);
  auto t0 = std::chrono::steady_clock::now(), last = t0;
  auto progress = [&](bool final_line) {
    auto now = std::chrono::steady_clock::now();
    double el = std::chrono::duration<double>(now - t0).count();
    if (quiet) return;
    if (!final_line && std::chrono::duration<double>(now - last).count() < (tty ? 0.5 : 10.0))
      return;
    if (final_line && !tty && shown == good + bad) return;  // already printed these numbers
    last = now;
    shown = good + bad;
    std::fprintf(stderr, "%spredict: %ld records, %ld bad, %.1f s, %.1f records/s%s",
                 tty ? "\r" : "", good, bad, el, el > 0 ? good / el : 0.0,
                 final_line || !tty ? "\n" : "");
    std::fflush(stderr);
  };

  auto process = [&](std::ostream& out) {
    std::vector<Item> items;
    items.reserve(static_cast<std::size_t>(chunk));
    for (bool more = true; more;) {
      more = read_chunk(reader, items, chunk, max_line_bytes);
      const dist::Range mine = dist::share(items.size(), rank, nranks);
      const long i0 = static_cast<long>(mine.begin), i1 = static_cast<long>(mine.end);
      // This rank's share: each record encoded alone (a bad one fails alone), then through the
      // model one at a time (--batch 1, as predict-coreness) or padded in batches.
      const auto each = clf.predict_each_encoded(
          static_cast<std::size_t>(i1 - i0),
          [&](std::size_t k) {
            const Item& it = items[i0 + static_cast<long>(k)];
            if (!it.error.empty()) throw std::invalid_argument(it.error);  // stays as it is
            return it.joined ? clf.encode_text(it.paper.title)
                             : clf.encode_paper(it.paper.title, it.paper.abstract);
          },
          threads, batch);
      for (long i = i0; i < i1; ++i) {
        Item& it = items[i];
        const auto& e = each[static_cast<std::size_t>(i - i0)];
        if (!e.error) {
          it.output = output_line(clf, it, e.prediction);
          continue;
        }
        try {
          std::rethrow_exception(e.error);
        } catch (const std::exception& x) {
          it.error = x.what();
        } catch (...) {
          it.error = "unknown error";
        }
      }
      if (nranks > 1) {  // every rank's share to rank 0
        std::string buf;
        for (long i = i0; i < i1; ++i) {
          put_str(buf, items[i].output);
          put_str(buf, items[i].error);
        }
        auto all = comm.gather(buf, 0);
        for (int r = 1; r < static_cast<int>(all.size()); ++r) {
          const dist::Range sh = dist::share(items.size(), r, nranks);
          std::size_t pos = 0;
          for (std::size_t i = sh.begin; i < sh.end; ++i) {
            items[i].output = get_str(all[r], pos);
            items[i].error = get_str(all[r], pos);
          }
        }
        if (!lead) continue;
      }
      write_chunk(out, items, in_name, tty, good, bad);
      progress(false);
    }
  };

  if (!lead) {
    std::ostringstream unused;  // the other ranks classify and send; rank 0 writes
    process(unused);
  } else if (output == "-") {
    std::ios::sync_with_stdio(false);
    process(std::cout);
  } else {
    io::write_file_atomically(output, process);
  }
  progress(true);
  if (nranks > 1) {  // every rank exits as rank 0 does
    double b = lead ? static_cast<double>(bad) : 0.0;
    comm.allreduce_sum(&b, 1);
    bad = static_cast<long>(b);
  }
  return bad ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// embed --model M [--input records.jsonl] [--output out.jsonl] [--member K] [--batch N]
// ---------------------------------------------------------------------------------------------
int run_embed(int argc, char** argv) {
  CLI::App app(
      "Document vectors: for every record of a JSON Lines file (as `predict` reads them), the "
      "vector a classifier's head reads: [last, max, mean] of the encoder's last layer over the "
      "pooled tokens (3 x emb_sz numbers, 1200 at INSPIRE's size). The model may be a language "
      "model (its encoder never saw a label) or a classifier. Writes one JSON line per good "
      "record, in input order: {\"id\": ..., \"vector\": [...]} (\"line\" instead of \"id\" when "
      "a record has none). Bad lines are reported on stderr and skipped; the exit code is then 1.",
      "inspire-classifier embed");
  std::string input = "-", output = "-", model;
  std::size_t member = 0, max_line_bytes = 8u << 20;
  int threads = 0, chunk = 256, batch = 32;
  bool quiet = false;
  app.add_option("-m,--model", model, "model bundle (.safetensors): a language model or a classifier")
      ->required();
  app.add_option("-i,--input", input, "JSON Lines input, plain or gzip ('-' = stdin)")
      ->capture_default_str();
  app.add_option("-o,--output", output,
                 "JSON Lines output ('-' = stdout; a file is written atomically)")
      ->capture_default_str();
  app.add_option("--member", member, "which classifier of an ensemble bundle")->capture_default_str();
  app.add_option("-t,--threads", threads, "threads (0 = all cores)")->capture_default_str();
  app.add_option("--chunk", chunk, "records read and embedded together")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--batch", batch, "papers padded together through the model (longest first)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-line-bytes", max_line_bytes,
                 "longest input line read; a longer one is reported as a bad line and skipped")
      ->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "no progress or summary on stderr");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (threads > 0) omp_set_num_threads(threads);

  if (output != "-") io::check_output_path(output);
  io::LineReader reader(input, max_line_bytes);
  const std::string in_name = reader.name();
  const auto emb = ulmfit::Embedder::load(model, member);
  const std::size_t dim = emb.dim();
  long good = 0, bad = 0;
  auto t0 = std::chrono::steady_clock::now(), last = t0;
  auto progress = [&](bool final_line) {
    auto now = std::chrono::steady_clock::now();
    if (quiet || (!final_line && std::chrono::duration<double>(now - last).count() < 10.0)) return;
    last = now;
    const double el = std::chrono::duration<double>(now - t0).count();
    std::fprintf(stderr, "embed: %ld records, %ld bad, %.1f s, %.1f records/s\n", good, bad, el,
                 el > 0 ? good / el : 0.0);
  };
  auto process = [&](std::ostream& out) {
    std::vector<Item> items;
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::size_t> which;  // ids[k] is items[which[k]]
    char num[32];
    for (bool more = true; more;) {
      more = read_chunk(reader, items, chunk, max_line_bytes);
      ids.clear();
      which.clear();
      for (std::size_t i = 0; i < items.size(); ++i) {
        Item& it = items[i];
        if (!it.error.empty()) continue;
        try {
          auto v = it.joined ? emb.encode_text(it.paper.title)
                             : emb.encode_paper(it.paper.title, it.paper.abstract);
          if (v.empty()) throw std::invalid_argument("no tokens in the text");
          ids.push_back(std::move(v));
          which.push_back(i);
        } catch (const std::exception& e) {
          it.error = e.what();
        }
      }
      const auto vec = emb.embed_batch(ids, batch);
      for (std::size_t k = 0; k < which.size(); ++k) {
        Item& it = items[which[k]];
        std::string& s = it.output;
        s = "{";
        if (it.id)
          s += "\"id\": " + it.id->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        else
          s += "\"line\": " + std::to_string(it.line);
        s += ", \"vector\": [";
        for (std::size_t j = 0; j < dim; ++j) {
          std::snprintf(num, sizeof num, j ? ", %.7g" : "%.7g", static_cast<double>(vec[k * dim + j]));
          s += num;
        }
        s += "]}";
      }
      write_chunk(out, items, in_name, false, good, bad);
      progress(false);
    }
  };
  if (output == "-") {
    std::ios::sync_with_stdio(false);
    process(std::cout);
  } else {
    io::write_file_atomically(output, process);
  }
  progress(true);
  return bad ? 1 : 0;
}

}  // namespace

// (A hyphenated name cannot go through the INSPIRE_COMMAND macro's token pasting.)
static ::cli::Registrar inspire_cmd_registrar_predict_coreness(
    "predict-coreness", "Classify one paper (title, abstract): prints the prediction and scores",
    run_predict_coreness, 30);
INSPIRE_COMMAND_ORDERED(predict, "Classify a JSON Lines file of papers (streamed, multi-threaded)",
                        run_predict, 31);
INSPIRE_COMMAND_ORDERED(embed, "Document vectors from a language model or classifier (JSON Lines)",
                        run_embed, 32);
