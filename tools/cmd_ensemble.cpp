// tools/cmd_ensemble.cpp — `ensemble A B [C ...] -o OUT`: several classifiers in one bundle, whose
// predictions average the members' class probabilities (the ULMFiT paper's forward + backward
// ensemble). The members must share the vocabulary and labels; each keeps its own sizes and
// reading direction. An input that is itself an ensemble contributes all of its members.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "tools/cli.h"

namespace {

int run_ensemble(int argc, char** argv) {
  CLI::App app(
      "Combine classifier bundles into one ensemble bundle (format version 2). A prediction is\n"
      "the mean of the members' class probabilities, as the ULMFiT paper ensembles a forward and\n"
      "a backward classifier (train the backward one with `finetune-lm --backwards`, then\n"
      "`train-classifier` on that LM). All members must have the same vocabulary and labels.",
      "inspire-classifier ensemble");
  std::vector<std::string> inputs;
  std::string out;
  app.add_option("models", inputs, "classifier bundles (two or more members in all)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "the ensemble bundle to write (atomically)")->required();
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  std::vector<io::Bundle> bundles;
  for (auto& p : inputs) {
    bundles.push_back(io::Bundle::load(p));
    if (bundles.back().config().kind != "classifier")
      throw std::runtime_error(p + ": holds a \"" + bundles.back().config().kind +
                               "\" model; only classifiers can be ensembled");
  }
  const io::Bundle& first = bundles.front();
  io::BundleContents c;
  c.config = first.config();
  c.vocab = first.vocab();
  c.labels = first.labels();
  c.temperature = first.temperature();
  nlohmann::json prov = nlohmann::json::array();
  std::size_t k = 0;  // next member index
  for (std::size_t i = 0; i < bundles.size(); ++i) {
    const io::Bundle& b = bundles[i];
    if (b.vocab() != first.vocab())
      throw std::runtime_error(inputs[i] + ": its vocabulary differs from " + inputs[0] +
                               "'s; ensemble members must share one (train them from LMs "
                               "fine-tuned on the same data)");
    if (b.labels() != first.labels())
      throw std::runtime_error(inputs[i] + ": its labels differ from " + inputs[0] + "'s");
    if (b.temperature() != first.temperature())
      std::fprintf(stderr, "warning: %s has another temperature; the ensemble uses %s's\n",
                   inputs[i].c_str(), inputs[0].c_str());
    prov.push_back({{"file", inputs[i]}, {"provenance", b.provenance()}});
    for (const auto& m : b.members()) {
      const std::string dst = k == 0 ? "" : io::ensemble_prefix(k);
      if (k > 0) c.extra_members.push_back({dst, m.config});
      for (const auto& e : io::expected_tensors(m.config, m.prefix)) {
        if (!e.alias_of.empty() || !b.file().contains(e.name)) continue;
        const io::TensorInfo& t = b.file().info(e.name);
        io::TensorOut o;
        o.name = dst + e.name.substr(m.prefix.size());
        o.dtype = t.dtype;
        o.shape = t.shape;
        o.data = b.file().data(t);
        c.tensors.push_back(std::move(o));
      }
      ++k;
    }
  }
  if (k < 2) throw std::runtime_error("an ensemble needs two or more members, got " + std::to_string(k));
  c.provenance = nlohmann::json{{"ensemble_of", prov}}.dump();
  io::write_bundle(out, c);
  std::cout << nlohmann::json{{"model", out}, {"members", k}}.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(ensemble, "Combine classifiers (e.g. forward + backward) into one bundle", run_ensemble, 34);
