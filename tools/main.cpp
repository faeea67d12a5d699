// tools/main.cpp — `inspire-classifier`: dispatches to the subcommands registered in tools/.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

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
void error(const std::string& msg) { std::cerr << "inspire-classifier: error: " << msg << "\n"; }
void add_load_options(CLI::App& app, ulmfit::LoadOptions& opt) {
  app.add_flag("--fp16", opt.half_recurrent,
               "keep the LSTMs' recurrent weights in half precision: faster single-document "
               "latency, scores within ~1e-4 of float32");
}

int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    error(e.what());
    std::cerr << "Run '" << app.get_name() << " --help' for usage.\n";
    return 2;
  }
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

int main(int argc, char** argv) {
  if (argc < 2) {
    print_help(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    print_help(stdout);
    return 0;
  }
  if (cmd == "-V" || cmd == "--version") {
    std::printf("inspire-classifier %s\n", INSPIRE_VERSION);
    return 0;
  }
  for (auto& c : cli::registry()) {
    if (c.name == cmd) {
      try {
        return c.run(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        cli::error(e.what());
        return 1;
      }
    }
  }
  cli::error("unknown command '" + cmd + "' (see inspire-classifier --help)");
  return 2;
}
