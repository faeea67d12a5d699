// tools/main.cpp — `inspire-classifier`: dispatches to the subcommands registered in tools/.
#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "dist/comm.h"
#include "io/atomic_file.h"
#include "nn/backend.h"
#include "tools/cli.h"
#include "ulmfit/classifier.h"

#ifndef INSPIRE_VERSION
#define INSPIRE_VERSION "0.0.0"
#endif

namespace cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
std::string printable(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : s) {
    if (c == '\n' || c == '\t') {
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}
void error(const std::string& msg) {
  std::cerr << "inspire-classifier: error: " << printable(msg) << "\n";
}
void warning(const std::string& msg) {
  std::cerr << "inspire-classifier: warning: " << printable(msg) << "\n";
}

// The allowed range of every numeric flag, by its long name, whatever command declares it. A
// value outside is a usage error (exit 2) naming the flag and the range, before any work.
struct FlagRange {
  const char* name;
  double lo, hi;
};
constexpr double kBig = 1e15;
const FlagRange kFlagRanges[] = {
    {"threads", 0, 1024},         {"io-threads", 1, 64},
    {"epochs", 0, 100000},        {"frozen-epochs", 0, 100000},
    {"pretrain-epochs", 0, 100000}, {"lm-epochs", 0, 100000},
    {"clas-epochs", 0, 100000},   {"max-vocab", 16, 10000000},
    {"min-freq", 1, kBig},        {"bs", 1, 65536},
    {"bptt", 2, 100000},          {"max-steps", 0, kBig},
    {"lr", 1e-12, 10},            {"frozen-lr", 1e-12, 10},
    {"wd", 0, 10},                {"drop-mult", 0, 10},
    {"valid-pct", 0, 0.99},       {"chunk", 1, 1 << 20},
    {"max-text-bytes", 1, 1 << 30}, {"max-line-bytes", 16, 1u << 31},
    {"max-inflight-bytes", 1024, 1e12}, {"vocab", 0, 10000000},
};

void add_range_checks(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    for (const auto& name : o->get_lnames()) {
      for (const auto& r : kFlagRanges) {
        if (name != r.name) continue;
        const double lo = r.lo, hi = r.hi;
        o->check(CLI::Validator(
            [lo, hi](std::string& v) -> std::string {
              double d = 0;
              try {
                std::size_t pos = 0;
                d = std::stod(v, &pos);
                if (pos != v.size()) throw std::invalid_argument(v);
              } catch (const std::exception&) {
                return "'" + printable(v) + "' is not a number";
              }
              if (!(d >= lo && d <= hi)) {
                auto fmt = [](double x) {
                  std::ostringstream os;
                  os << x;
                  return os.str();
                };
                return "value " + printable(v) + " out of range [" + fmt(lo) + ", " + fmt(hi) + "]";
              }
              return std::string();
            },
            "", "range"));
      }
    }
  }
}
void add_load_options(CLI::App& app, ulmfit::LoadOptions& opt) {
  auto* fp16 = app.add_flag("--fp16", opt.half_recurrent,
                            "keep the LSTMs' recurrent weights in half precision: faster "
                            "single-document latency, scores within ~1e-4 of float32");
  auto* int8 = app.add_flag("--int8", opt.int8_recurrent,
                            "keep the LSTMs' recurrent weights in int8 (one scale per row): "
                            "faster still, scores within ~1e-2 of float32")
                   ->excludes(fp16);
  app.add_flag("--w8a8", opt.w8a8,
               "int8 LSTM weights and int8 activations (AVX512-VNNI CPUs only): the fastest, "
               "~3x float32 for batches (--batch N); scores within a few 1e-2 of float32")
      ->excludes(fp16)
      ->excludes(int8);
  app.add_option("--max-text-bytes", opt.max_text_bytes,
                 "read at most this many bytes of a paper's text (title + abstract); longer "
                 "texts are cut, bounding the work per document")
      ->capture_default_str();
  add_device_option(app);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const std::size_t c = s.find(',', start);
    parts.push_back(s.substr(start, c == std::string::npos ? c : c - start));
    if (c == std::string::npos) return parts;
    start = c + 1;
  }
}

void add_device_option(CLI::App& app) {
  if (app.get_option_no_throw("--device")) return;  // added once per command
  app.add_option("--device", "where the model computes: cpu, or cuda[:N] (CUDA device N; needs "
                             "a -DINSPIRE_CUDA=ON build and a GPU; see cuda/README.md)")
      ->default_str("cpu")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            const bool ok = v == "cpu" || v == "cuda" ||
                            (v.rfind("cuda:", 0) == 0 && v.size() > 5 && v.size() < 9 &&
                             v.find_first_not_of("0123456789", 5) == std::string::npos);
            return ok ? "" : "must be cpu, cuda or cuda:N, got '" + v + "'";
          },
          "cpu|cuda[:N]", "device"));
}

namespace {
// -1: go on (cpu); else the exit code after a one-line error naming what is missing.
int check_device(const std::string& dev, const std::string& command) {
  if (dev.empty() || dev == "cpu") return -1;
  const auto avail = nn::available_backends();
  if (std::find(avail.begin(), avail.end(), "cuda") == avail.end()) {
    error("--device " + dev + ": this binary was built without CUDA support (rebuild with "
          "-DINSPIRE_CUDA=ON, see cuda/README.md), or use --device cpu");
    return 1;
  }
  try {
    nn::get_backend(dev);
  } catch (const std::exception& e) {
    error("--device " + dev + ": " + e.what() + "; use --device cpu");
    return 1;
  }
  // Training runs on the device (parameters, gradients, optimizer state and caches in its
  // memory, each batch copied there); serving (predict, validate, serve, ...) does not yet.
  auto ends_with = [&](const std::string& s) {
    return command.size() >= s.size() && command.compare(command.size() - s.size(), s.size(), s) == 0;
  };
  for (const char* c : {" pretrain", " finetune-lm", " train-classifier", " train", " cv"})
    if (ends_with(c)) return -1;
  error("--device " + dev + ": on the CUDA backend only training runs so far (pretrain, "
        "finetune-lm, train-classifier, train, cv); prediction and serving run on the CPU: use "
        "--device cpu");
  return 1;
}
}  // namespace

int parse(CLI::App& app, int argc, char** argv) {
  add_range_checks(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    error(e.what());
    std::cerr << "Run '" << app.get_name() << " --help' for usage.\n";
    return 2;
  }
  if (const CLI::Option* d = app.get_option_no_throw("--device"); d && d->count() > 0)
    return check_device(d->as<std::string>(), app.get_name());
  return -1;
}
}  // namespace cli

namespace {

void print_help(std::FILE* out) {
  std::fprintf(out,
               "inspire-classifier %s — classify HEP papers as core / non_core / rejected\n"
               "(a C++ re-implementation of INSPIRE's ULMFiT classifier)\n\n"
               "Usage: inspire-classifier <command> [options]\n"
               "       inspire-classifier <command> --help\n\nCommands:\n",
               INSPIRE_VERSION);
  auto cmds = cli::registry();
  std::stable_sort(cmds.begin(), cmds.end(),
                   [](const cli::Command& a, const cli::Command& b) { return a.order < b.order; });
  size_t w = 0;
  for (auto& c : cmds) w = std::max(w, c.name.size());
  for (auto& c : cmds)
    std::fprintf(out, "  %-*s  %s\n", (int)w, c.name.c_str(), c.summary.c_str());
  std::fprintf(out,
               "\nOptions:\n  -h, --help     show this help\n  -V, --version  show the "
               "version\n");
}

}  // namespace

// Every byte written to standard output must have arrived: a full disk (> /dev/full) or a
// closed pipe is an error and a non-zero exit, never a silent 0.
int finish_stdout(int rc) {
  std::cout.flush();
  bool bad = !std::cout;
  int err = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) bad = true, err = errno;
  if (bad) {
    cli::error(std::string("cannot write to standard output") +
               (err ? std::string(": ") + std::strerror(err) : std::string(" (disk full or closed pipe?)")));
    std::clearerr(stdout);
    return rc ? rc : 1;
  }
  return rc;
}

int main(int argc, char** argv) {
  // Temporaries of atomic writes are removed on Ctrl-C / SIGTERM (serve handles them itself).
  io::install_signal_cleanup();
  if (argc < 2) {
    print_help(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    print_help(stdout);
    return finish_stdout(0);
  }
  if (cmd == "-V" || cmd == "--version") {
    std::printf("inspire-classifier %s\n", INSPIRE_VERSION);
    return finish_stdout(0);
  }
  for (auto& c : cli::registry()) {
    if (c.name == cmd) {
      int rc = 1;
      try {
        // Under mpirun: MPI starts before the command (an error then names the rank and stops
        // the job; a build without MPI refuses to run N independent copies).
        if (dist::launcher_world_size() != 1) dist::world();
        rc = c.run(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        // In an MPI job: say which rank failed, then stop every rank (none may wait forever).
        const dist::Communicator* w = dist::world_if_created();
        cli::error(w && w->size() > 1 ? "rank " + std::to_string(w->rank()) + " of " +
                                             std::to_string(w->size()) + ": " + e.what()
                                       : std::string(e.what()));
        rc = 1;
        dist::fatal_error_exit(rc);
      }
      return finish_stdout(rc);
    }
  }
  cli::error("unknown command '" + cmd + "' (see inspire-classifier --help)");
  return 2;
}
