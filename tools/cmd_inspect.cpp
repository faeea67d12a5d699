// tools/cmd_inspect.cpp — `inspect MODEL`: what is in a model bundle (or a torch checkpoint).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/errors.h"
#include "io/pickle.h"
#include "io/safetensors.h"
#include "io/torch_file.h"
#include "tools/cli.h"

namespace {

using nlohmann::json;

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.1f %s" : "%.0f %s", b, u[i]);
  return buf;
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string with_commas(std::int64_t n) {
  std::string s = std::to_string(n), out;
  int k = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (k && k % 3 == 0 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++k;
  }
  return out;
}

// Pretty JSON if the string parses as JSON, else the string itself.
std::string pretty(const std::string& s, int indent) {
  try {
    json j = json::parse(s);
    if (j.is_object() || j.is_array()) {
      std::string d = j.dump(2), out;
      for (char c : d) {
        out += c;
        if (c == '\n') out += std::string(indent, ' ');
      }
      return out;
    }
  } catch (...) {
  }
  return s;
}

std::string clip(const std::string& s, std::size_t n) {
  return s.size() <= n ? s : s.substr(0, n) + "... (" + std::to_string(s.size()) + " chars)";
}

enum class Kind { Safetensors, TorchZip, TorchLegacy, Unknown };

Kind sniff(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  unsigned char b[9] = {};
  in.read(reinterpret_cast<char*>(b), 9);
  std::streamsize n = in.gcount();
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4) return Kind::TorchZip;
  if (n >= 9 && b[8] == '{') return Kind::Safetensors;  // (its length byte may be 0x80)
  if (n >= 2 && b[0] == 0x80 && b[1] <= 5) return Kind::TorchLegacy;  // pickle PROTO 2..5
  return Kind::Unknown;
}

// Globals the file references that are not on the allow-list of a plain checkpoint: each one
// may run code when the file is loaded with Python's pickle (this tool never calls them).
std::vector<std::string> untrusted_globals(const std::string& path) {
  io::torch::TorchFile tf = io::torch::open_torch_file(path);
  std::vector<std::string> out;
  for (const auto& g : tf.doc.globals()) {
    auto dot = g.rfind('.');
    if (!io::pickle::is_allowed_global(g.substr(0, dot), g.substr(dot + 1))) out.push_back(g);
  }
  return out;
}

int inspect_torch(const std::string& path, bool legacy, bool as_json) {
  // Reported first, and on stderr, so that the warning is seen even when the file then turns out
  // not to hold a state dict.
  const auto untrusted = untrusted_globals(path);
  if (!untrusted.empty()) {
    std::string list;
    for (const auto& g : untrusted) list += (list.empty() ? "" : ", ") + g;
    cli::warning(path + ": references " + std::to_string(untrusted.size()) + " global" +
                 (untrusted.size() == 1 ? "" : "s") +
                 " outside the allow-list of a plain checkpoint: " + list +
                 " (loading this file with Python's pickle / torch.load may run them; this tool "
                 "never calls them)");
  }
  io::torch::StateDict sd = io::torch::load_state_dict(path);
  std::int64_t params = 0, bytes = 0;
  json tj = json::array();
  for (auto& [k, t] : sd) {
    params += t.numel();
    bytes += t.numel() * static_cast<std::int64_t>(io::torch::element_size(t.dtype));
    tj.push_back({{"name", k}, {"dtype", io::torch::dtype_name(t.dtype)}, {"shape", t.shape}});
  }
  if (as_json) {
    std::cout << json{{"file", path},
                      {"format", legacy ? "torch-legacy" : "torch-zip"},
                      {"tensors", tj},
                      {"total_elements", params},
                      {"untrusted_globals", untrusted},
                      {"total_bytes", bytes}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::cout << path << ": PyTorch checkpoint (" << (legacy ? "legacy format" : "zip format")
            << "), " << sd.size() << " tensors in its state dict\n"
            << "  (convert it with `inspire-classifier import-fastai`)\n\ntensors:\n";
  std::size_t w = 0;
  for (auto& [k, t] : sd) w = std::max(w, k.size());
  for (auto& [k, t] : sd)
    std::printf("  %-*s  %-8s  %s\n", (int)w, k.c_str(), io::torch::dtype_name(t.dtype),
                shape_str(t.shape).c_str());
  std::cout << "\ntotal: " << with_commas(params) << " elements, " << human_bytes((double)bytes)
            << " (shared storages counted once per name)\n";
  for (const auto& g : untrusted)
    std::cout << "warning: references " << cli::printable(g) << ", outside the allow-list\n";
  return 0;
}

int run_inspect(int argc, char** argv) {
  CLI::App app(
      "Show what a model file holds: the bundle's metadata (config, vocab summary, labels,\n"
      "temperature, provenance) and every tensor's name, dtype and shape, with totals.\n"
      "Also lists the state dict of a PyTorch checkpoint (.pth/.pt/.h5).",
      "inspire-classifier inspect");
  std::string path;
  int n_vocab = 20;
  bool as_json = false;
  app.add_option("model", path, "model bundle (.safetensors) or torch checkpoint")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--vocab", n_vocab, "how many leading vocab tokens to show");  // range: cli::parse
  app.add_flag("--json", as_json, "machine-readable output (vocab summarised the same way)");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  Kind k = sniff(path);
  if (k == Kind::TorchZip || k == Kind::TorchLegacy)
    return inspect_torch(path, k == Kind::TorchLegacy, as_json);
  if (k == Kind::Unknown)
    throw io::FormatError(path, "neither a safetensors bundle nor a PyTorch checkpoint");

  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  std::optional<io::Bundle> bundle;
  std::string not_bundle;
  try {
    bundle = io::Bundle::load(path);
  } catch (const io::FormatError& e) {
    not_bundle = e.what();
  }
  const auto& meta = f.metadata();

  // Vocab summary.
  std::vector<std::string> vocab;
  if (bundle) {
    vocab = bundle->vocab();
  } else if (auto it = meta.find("vocab"); it != meta.end()) {
    try {
      json v = json::parse(it->second);
      if (v.is_array())
        for (auto& x : v) vocab.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    } catch (...) {
    }
  }
  std::vector<std::string> head(vocab.begin(),
                                vocab.begin() + std::min<std::size_t>(vocab.size(), n_vocab));

  std::int64_t elems = 0;
  for (auto& t : f.tensors()) elems += t.numel();
  std::int64_t params = 0;  // every member of an ensemble counts
  if (bundle)
    for (auto& m : bundle->members()) params += io::parameter_count(m.config);

  if (as_json) {
    json j;
    j["file"] = path;
    j["file_bytes"] = f.file_size();
    j["bundle"] = bool(bundle);
    if (!bundle) j["not_a_bundle_because"] = not_bundle;
    json m = json::object();
    for (auto& [key, v] : meta) {
      if (key == "vocab") continue;
      try {
        m[key] = json::parse(v);
      } catch (...) {
        m[key] = v;
      }
    }
    j["metadata"] = m;
    j["vocab"] = {{"size", vocab.size()}, {"first", head}};
    json tj = json::array();
    for (auto& t : f.tensors())
      tj.push_back({{"name", t.name}, {"dtype", io::dtype_name(t.dtype)}, {"shape", t.shape},
                    {"bytes", t.nbytes()}});
    if (bundle)
      for (auto& [a, target] : bundle->aliases())
        tj.push_back({{"name", a}, {"alias_of", target}});
    j["tensors"] = tj;
    j["stored_elements"] = elems;
    j["data_bytes"] = f.data_bytes();
    if (bundle) {
      j["parameters"] = params;
      j["members"] = bundle->members().size();
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::cout << path << ": ";
  if (bundle)
    std::cout << "inspire-classifier model bundle (" << meta.at("format") << "), ";
  else
    std::cout << "safetensors file, ";
  std::cout << human_bytes((double)f.file_size()) << "\n";
  if (!bundle) std::cout << "  not a valid model bundle: " << not_bundle << "\n";

  if (bundle) {
    const auto& ms = bundle->members();
    if (ms.size() > 1)
      std::cout << "\nensemble of " << ms.size()
                << " classifiers (a prediction averages their probabilities)";
    for (std::size_t k = 0; k < ms.size(); ++k) {
      const auto& c = ms[k].config;
      std::cout << "\n" << (ms.size() > 1 ? "member " + std::to_string(k) + " (" +
                                                 (ms[k].prefix.empty() ? "no prefix" : ms[k].prefix) +
                                                 ")"
                                           : std::string("model"))
                << ": " << c.kind << ", vocab " << c.vocab_size << ", emb_sz " << c.emb_sz
                << ", n_hid " << c.n_hid << ", " << c.n_layers << " LSTM layers";
      if (c.backwards) std::cout << ", backwards";
      if (c.kind == "classifier") {
        std::cout << ", head " << 3 * c.emb_sz;
        for (auto x : c.lin_ftrs) std::cout << " -> " << x;
        std::cout << " -> " << c.n_classes;
      }
    }
    std::cout << "\nparameters: " << with_commas(params) << " (trainable, tied weights once)\n";
  }
  std::cout << "\nmetadata:\n";
  for (auto& [key, v] : meta) {
    if (key == "vocab") {
      std::cout << "  vocab: " << vocab.size() << " tokens; first " << head.size() << ":";
      for (auto& t : head) std::cout << " " << json(t).dump();
      std::cout << "\n";
    } else if (key == "config" || key == "provenance" || key == "aliases" || key == "labels" ||
               key == "ensemble" || key == "recipe" || key == "card") {
      std::cout << "  " << key << ": " << clip(pretty(v, 2), 4000) << "\n";
    } else {
      std::cout << "  " << key << ": " << clip(v, 400) << "\n";
    }
  }

  std::cout << "\ntensors (" << f.tensors().size() << " stored";
  if (bundle && !bundle->aliases().empty())
    std::cout << ", " << bundle->aliases().size() << " tied aliases";
  std::cout << "):\n";
  std::vector<std::string> order;
  if (bundle)
    order = bundle->names();
  else
    for (auto& t : f.tensors()) order.push_back(t.name);
  std::size_t w = 0;
  for (auto& n : order) w = std::max(w, n.size());
  for (auto& n : order) {
    if (bundle && bundle->aliases().count(n)) {
      std::printf("  %-*s  = %s (tied, stored once)\n", (int)w, n.c_str(),
                  bundle->aliases().at(n).c_str());
      continue;
    }
    const auto& t = f.info(n);
    std::printf("  %-*s  %-4s  %s\n", (int)w, n.c_str(), io::dtype_name(t.dtype),
                t.shape_str().c_str());
  }
  std::cout << "\ntotal: " << with_commas(elems) << " stored elements, "
            << human_bytes((double)f.data_bytes()) << " of tensor data\n";
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(inspect, "Show a model bundle's metadata and tensors (or a torch file's)",
                        run_inspect, 85);
