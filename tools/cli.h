// tools/cli.h — subcommand registry for the one `inspire-classifier` executable.
//
// Each subcommand lives in its own tools/cmd_<name>.cpp and registers itself:
//
//   static int run_tokenize(int argc, char** argv);   // argv[0] is the subcommand name
//   INSPIRE_COMMAND(tokenize, "Tokenize JSON Lines the way fastai does", run_tokenize);
//
// A command returns the process exit code: 0 ok, 1 runtime failure, 2 usage error.
// Library code throws; only tools/ turns errors into messages and exit codes.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}
namespace ulmfit {
struct LoadOptions;
}

namespace cli {

using RunFn = int (*)(int argc, char** argv);

struct Command {
  std::string name;
  std::string summary;
  RunFn run;
  int order;  // position in --help (lower first)
};

std::vector<Command>& registry();

struct Registrar {
  Registrar(const char* name, const char* summary, RunFn fn, int order = 100) {
    registry().push_back(Command{name, summary, fn, order});
  }
};

// Prints "inspire-classifier: error: <msg>" to stderr, control bytes escaped as \xNN (so that
// text from input files cannot drive the terminal).
void error(const std::string& msg);
// The same for "inspire-classifier: warning: <msg>".
void warning(const std::string& msg);
// `s` with control bytes other than newline and tab written as \xNN.
std::string printable(const std::string& s);

// Parses a subcommand's arguments with CLI11. Every numeric flag whose long name is in the shared
// range table (tools/main.cpp: threads, epochs, max-vocab, bs, lr, ...) is range-checked here,
// whichever command declares it. Returns -1 to go on, or the exit code to return
// at once: 0 after --help, 2 after a usage error (printed with a hint to run --help).
int parse(CLI::App& app, int argc, char** argv);

// The flags that choose how a loaded model computes (--fp16, --device), for the commands that
// classify.
void add_load_options(CLI::App& app, ulmfit::LoadOptions& opt);

// --device cpu|cuda[:N] (default cpu). parse() checks it: a value other than cpu|cuda|cuda:N is a
// usage error (exit 2); cuda in a binary built without CUDA, on a machine without a usable GPU,
// or while models cannot yet run on the CUDA backend, is a one-line error naming what is missing
// (exit 1), before any work starts.
void add_device_option(CLI::App& app);

// "a,b,,c" -> {"a", "b", "", "c"} (empty parts kept; "" -> {""}).
std::vector<std::string> split_commas(const std::string& s);

}  // namespace cli

#define INSPIRE_COMMAND_ORDERED(name, summary, fn, order) \
  static ::cli::Registrar inspire_cmd_registrar_##name(#name, summary, fn, order)
#define INSPIRE_COMMAND(name, summary, fn) INSPIRE_COMMAND_ORDERED(name, summary, fn, 100)
// For names that are not C++ identifiers ("predict-coreness"): `id` names the registrar.
#define INSPIRE_COMMAND_NAMED(id, name, summary, fn, order) \
  static ::cli::Registrar inspire_cmd_registrar_##id(name, summary, fn, order)
