// tools/cmd_import_fastai.cpp — `import-fastai`: fastai/PyTorch checkpoints → model bundle.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "tools/cli.h"
#include "ulmfit/fastai_import.h"

#ifndef INSPIRE_VERSION
#define INSPIRE_VERSION "0.0.0"
#endif

namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

int run_import_fastai(int argc, char** argv) {
  CLI::App app(
      "Convert fastai AWD-LSTM checkpoints into one model bundle (.safetensors) that the other\n"
      "commands load. No Python needed; nothing in the pickles is executed.\n\n"
      "  Pretrained LM (e.g. WikiText-103 lstm_fwd.pth + itos_wt103.pkl), optionally re-indexed\n"
      "  to the fine-tuning vocab exactly like fastai's load_pretrained/match_embeds:\n"
      "    inspire-classifier import-fastai --weights lstm_fwd.pth --itos itos_wt103.pkl \\\n"
      "        [--target-vocab train_valid_data_itos.pkl] --out lm.safetensors\n"
      "  Fine-tuned encoder (INSPIRE finetuned_language_model_encoder.h5) + its vocab:\n"
      "    inspire-classifier import-fastai --weights finetuned_language_model_encoder.h5 \\\n"
      "        --itos train_valid_data_itos.pkl --out encoder.safetensors\n"
      "  Whole exported classifier Learner (INSPIRE classifier.h5):\n"
      "    inspire-classifier import-fastai --learner classifier.h5 [--itos itos.pkl] \\\n"
      "        --out model.safetensors\n\n"
      "The model kind (lm / encoder / classifier) and its sizes are inferred from the keys and\n"
      "shapes; fastai v1's duplicate `module.weight_hh_l0` keys are dropped as fastai does.",
      "inspire-classifier import-fastai");
  std::string weights, itos, target, learner, out, labels_csv;
  bool quiet = false;
  auto* ow = app.add_option("-w,--weights", weights,
                            "state dict file (.pth/.pt/.h5; torch zip or legacy; may be "
                            "wrapped as {'model': ...})")
                 ->check(CLI::ExistingFile);
  auto* ol = app.add_option("-l,--learner", learner,
                            "a whole pickled fastai Learner (Learner.export / torch.save(learn))")
                 ->check(CLI::ExistingFile);
  app.add_option("-i,--itos", itos,
                 "vocab pickle (list of str, id order): required with --weights; with --learner "
                 "optional (must then equal the learner's own vocab)")
      ->check(CLI::ExistingFile);
  auto* ot = app.add_option("-t,--target-vocab", target,
                            "re-index the embedding/decoder to this vocab pickle (fastai "
                            "match_embeds): known tokens keep their rows, others get the mean")
                 ->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "output model bundle (.safetensors), written atomically")
      ->required();
  app.add_option("--labels", labels_csv,
                 "classifier: comma-separated class names in class-index order (default: the "
                 "learner's; INSPIRE's 0,1,2 become rejected,non_core,core)");
  app.add_flag("-q,--quiet", quiet, "print nothing on success");
  ow->excludes(ol);
  ot->excludes(ol);

  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (weights.empty() && learner.empty()) {
    cli::error("give --weights FILE (with --itos) or --learner FILE; see --help");
    return 2;
  }
  if (!weights.empty() && itos.empty()) {
    cli::error("--weights needs --itos FILE.pkl (the vocab saved with those weights)");
    return 2;
  }

  auto t0 = std::chrono::steady_clock::now();
  ulmfit::ImportedModel m = learner.empty() ? ulmfit::import_weights(weights, itos, target)
                                            : ulmfit::import_learner(learner, itos);
  if (!labels_csv.empty()) {
    if (m.config.kind != "classifier") {
      cli::error("--labels applies to a classifier, but this is a " + m.config.kind);
      return 2;
    }
    const std::vector<std::string> labels = cli::split_commas(labels_csv);
    if ((std::int64_t)labels.size() != m.config.n_classes) {
      cli::error("--labels has " + std::to_string(labels.size()) + " names but the model has " +
                 std::to_string(m.config.n_classes) + " classes");
      return 2;
    }
    m.labels = labels;
  }

  std::string cmdline = "inspire-classifier";
  for (int i = 0; i < argc; ++i) cmdline += std::string(" ") + argv[i];
  nlohmann::json prov = {
      {"tool", std::string("inspire-classifier ") + INSPIRE_VERSION},
      {"command", cmdline},
      {"date", utc_now()},
      {"source", learner.empty() ? weights : learner},
      {"notes", m.notes}};
  if (!itos.empty()) prov["itos"] = itos;
  if (!target.empty()) prov["target_vocab"] = target;
  io::write_bundle(out, m.contents(prov.dump()));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (!quiet) {
    const auto& c = m.config;
    std::cout << "wrote " << out << ": " << c.kind << ", vocab " << c.vocab_size << ", emb_sz "
              << c.emb_sz << ", n_hid " << c.n_hid << ", " << c.n_layers << " layers";
    if (c.kind == "classifier") {
      std::cout << ", head";
      for (auto f : c.lin_ftrs) std::cout << " " << f;
      std::cout << " -> " << c.n_classes << " classes";
    }
    std::cout << ", " << io::parameter_count(c) << " parameters (" << secs << " s)\n";
    for (auto& n : m.notes) std::cout << "  note: " << n << "\n";
  }
  return 0;
}

}  // namespace

// (A hyphenated name cannot go through the INSPIRE_COMMAND macro's token pasting.)
static ::cli::Registrar inspire_cmd_registrar_import_fastai(
    "import-fastai", "Convert fastai/PyTorch AWD-LSTM checkpoints (.pth, .h5, Learner) to a model bundle",
    run_import_fastai, 80);
