// tools/cmd_ensemble.cpp — `ensemble A B [C ...] -o OUT`: several classifiers in one bundle, whose
// predictions average the members' class probabilities (the ULMFiT paper's forward + backward
// ensemble). The members must share the vocabulary and labels; each keeps its own sizes and
// reading direction. An input that is itself an ensemble contributes all of its members.
// `ensemble --member K E -o OUT` does the reverse: member K of E as a single classifier bundle
// (e.g. to warm-start `finetune-lm --pretrained` from the backward member of the default model).
// The work is ulmfit/ensemble.h's.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "tools/cli.h"
#include "ulmfit/ensemble.h"

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
  app.add_option("models", inputs, "classifier bundles (two or more members in all; one with --member)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "the ensemble bundle to write (atomically)")->required();
  long long member = -1;
  app.add_option("--member", member,
                 "instead: write member K (0 = the first) of ONE ensemble bundle as a single "
                 "classifier (no class weights)");
  bool half = false;
  app.add_flag("--f16", half,
               "store the weights in IEEE half precision: a bundle half the size, predictions "
               "within ~1e-3 (widened to float32 when loaded)");
  std::string card_path;
  app.add_option("--card", card_path,
                 "a JSON object stored as the bundle's `card` metadata (shown by `inspect`): how the "
                 "model was made and measured (recipe, corpus, CV table, commands)")
      ->check(CLI::ExistingFile);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  std::string card;
  if (!card_path.empty()) {
    std::ifstream in(card_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw std::runtime_error(card_path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) throw std::runtime_error(card_path + ": the card must be a JSON object");
    card = j.dump();
  }
  if (app.count("--member")) {
    if (inputs.size() != 1)
      throw std::runtime_error("--member takes exactly one bundle, got " + std::to_string(inputs.size()));
    auto m = ulmfit::extract_member(inputs[0], member, half);
    if (!card.empty()) m.contents.extra_metadata["card"] = card;
    io::write_bundle(out, m.contents);
    std::cout << nlohmann::json{{"model", out}, {"member", member}, {"backwards", m.contents.config.backwards}}.dump()
              << std::endl;
    return 0;
  }
  auto e = ulmfit::make_ensemble(inputs, half, [](const std::string& l) {
    std::fprintf(stderr, "%s\n", l.c_str());
  });
  if (!card.empty()) e.contents.extra_metadata["card"] = card;
  io::write_bundle(out, e.contents);
  std::cout << nlohmann::json{{"model", out}, {"members", e.members}}.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(ensemble, "Combine classifiers (e.g. forward + backward) into one bundle", run_ensemble, 34);
