// tools/cmd_ensemble.cpp — `ensemble A B [C ...] -o OUT`: several classifiers in one bundle, whose
// predictions average the members' class probabilities (the ULMFiT paper's forward + backward
// ensemble). The members must share the vocabulary and labels; each keeps its own sizes and
// reading direction. An input that is itself an ensemble contributes all of its members.
// `ensemble --member K E -o OUT` does the reverse: member K of E as a single classifier bundle
// (e.g. to warm-start `finetune-lm --pretrained` from the backward member of the default model).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <iostream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "nn/lstm.h"  // floats_to_half
#include "tools/cli.h"

namespace {

// Half-precision copies of tensors being written (kept alive until the bundle is written).
using HalfStore = std::deque<std::vector<std::uint16_t>>;

// Copies the stored (non-alias) tensors of member `m` of `b` into `c`, renamed from m's prefix to
// `dst`: as stored, or with `half` every float32 tensor rounded to IEEE half (into `store`).
void copy_member(const io::Bundle& b, const io::BundleMember& m, const std::string& dst,
                 io::BundleContents& c, bool half, HalfStore& store) {
  for (const auto& e : io::expected_tensors(m.config, m.prefix)) {
    if (!e.alias_of.empty() || !b.file().contains(e.name)) continue;
    const io::TensorInfo& t = b.file().info(e.name);
    io::TensorOut o;
    o.name = dst + e.name.substr(m.prefix.size());
    o.dtype = t.dtype;
    o.shape = t.shape;
    o.data = b.file().data(t);
    if (half && t.dtype == io::DType::F32) {
      auto v = b.tensor(e.name);
      store.emplace_back(static_cast<std::size_t>(v.numel()));
      nn::floats_to_half(v.data, store.back().data(), v.numel());
      o.dtype = io::DType::F16;
      o.data = store.back().data();
    }
    c.tensors.push_back(std::move(o));
  }
}

// `--member K`: member K of one ensemble bundle, written as a version-1 classifier bundle.
int extract_member(const std::vector<std::string>& inputs, long long k, const std::string& out,
                   bool half) {
  if (inputs.size() != 1)
    throw std::runtime_error("--member takes exactly one bundle, got " + std::to_string(inputs.size()));
  io::Bundle b = io::Bundle::load(inputs[0]);
  const auto& ms = b.members();
  if (k < 0 || (std::size_t)k >= ms.size())
    throw std::runtime_error(inputs[0] + ": --member " + std::to_string(k) + " is out of range; it has " +
                             std::to_string(ms.size()) + " member(s), numbered from 0");
  io::BundleContents c;
  c.config = ms[(std::size_t)k].config;
  c.vocab = b.vocab();
  c.labels = b.labels();
  c.temperature = b.temperature();
  c.provenance = nlohmann::json{{"member_of", inputs[0]}, {"member", k}, {"provenance", b.provenance()}}.dump();
  HalfStore store;
  copy_member(b, ms[(std::size_t)k], "", c, half, store);
  io::write_bundle(out, c);
  std::cout << nlohmann::json{{"model", out}, {"member", k}, {"backwards", c.config.backwards}}.dump()
            << std::endl;
  return 0;
}

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
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (app.count("--member")) return extract_member(inputs, member, out, half);

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
  HalfStore store;
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
      copy_member(b, m, dst, c, half, store);
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
