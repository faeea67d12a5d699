// tools/cmd_train.cpp — `pretrain`, `finetune-lm`, `train-classifier` and `train` (the whole
// ULMFiT pipeline): flags -> ulmfit::Recipe + RunOptions -> ulmfit/pipeline.h -> JSON on stdout.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dist/comm.h"
#include "nn/backend.h"
#include "tools/cli.h"
#include "io/atomic_file.h"
#include "ulmfit/cv.h"
#include "ulmfit/pipeline.h"
#include "ulmfit/recipe.h"

using namespace ulmfit;

namespace {

std::string command_line(int argc, char** argv) {
  std::string s = "inspire-classifier";
  for (int i = 0; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

std::string provenance(int argc, char** argv, const std::vector<std::string>& data) {
  return make_provenance(command_line(argc, argv), data, "inspire-classifier " INSPIRE_VERSION);
}

// The library's log lines go to stderr.
LogFn stderr_log(bool quiet) {
  if (quiet) return {};
  return [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
}

std::string recipe_footer() {
  return "Recipe (the original's defaults; --preset changes sizes, vocabulary, batch shapes and\n"
         "epochs; every bundle written stores its recipe as JSON, metadata key `recipe`):\n" +
         Recipe().describe();
}

// --checkpoint-every: "N" training steps, or a duration "N[.N]s|m|h" (seconds); "" is neither.
std::pair<std::int64_t, double> parse_checkpoint_every(const std::string& v) {
  if (v.empty()) return {0, 0.0};
  const auto bad = [&]() {
    throw std::invalid_argument("--checkpoint-every '" + v + "': give a number of training steps "
                                "(e.g. 500) or a duration (e.g. 90s, 30m, 2h)");
  };
  std::size_t digits = 0;
  while (digits < v.size() && (std::isdigit((unsigned char)v[digits]) || v[digits] == '.')) ++digits;
  const std::string num = v.substr(0, digits), unit = v.substr(digits);
  if (num.empty() || num.size() > 15 || std::count(num.begin(), num.end(), '.') > 1 ||
      num.front() == '.' || num.back() == '.')
    bad();
  const double x = std::stod(num);
  if (unit.empty()) {
    if (num.find('.') != std::string::npos || x < 1) bad();
    return {(std::int64_t)x, 0.0};
  }
  const double scale = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
  if (scale == 0 || !(x > 0)) bad();
  return {0, x * scale};
}

// Options shared by the commands.
struct Common {
  std::string preset_name = "original";
  std::string out;
  std::uint64_t seed = 42;
  bool resume = false, quiet = false;
  int threads = 0;
  std::int64_t max_steps = 0;
  std::string checkpoint_every;
  double valid_pct = 0.2;
  std::int64_t emb_sz = 0, n_hid = 0, n_layers = 0;
  CLI::Option* device_opt = nullptr;
  bool tf32 = false;

  void add(CLI::App& app) {
    app.add_option("--preset", preset_name,
                   "model size: original (400/1152/3, 60000 words, as INSPIRE), small (64/256/3, "
                   "12000 words: the embedded default), tiny (tests)")
        ->capture_default_str();
    app.add_option("-o,--out", out, "output directory (checkpoints, curves, final model)")->required();
    app.add_option("--seed", seed, "random seed (data order, dropout, init)")->capture_default_str();
    app.add_flag("--resume", resume, "continue a killed run from <out>/checkpoint.json");
    app.add_flag("-q,--quiet", quiet, "no progress output");
    app.add_option("--threads", threads, "OpenMP threads (default: all cores; under mpirun: per rank)");
    cli::add_device_option(app);
    device_opt = app.get_option("--device");
    app.add_flag("--tf32", tf32,
                 "with --device cuda: TF32 tensor-core matrix products (about 2.6x the LM training "
                 "speed; 10-bit mantissas in the products, float32 sums)");
    app.add_option("--max-steps", max_steps, "stop after this many training batches (smoke tests)");
    app.add_option("--checkpoint-every", checkpoint_every,
                   "also checkpoint inside an epoch: every N training steps (e.g. 500), or every "
                   "so long (e.g. 90s, 30m, 2h); --resume continues from such a checkpoint "
                   "exactly (default: at epoch ends only)")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
              try {
                parse_checkpoint_every(v);
                return "";
              } catch (const std::invalid_argument& e) {
                return e.what();
              }
            },
            "N|DURATION"));
    app.add_option("--valid-pct", valid_pct,
                   "share of records WITHOUT a `split` field that go to validation")
        ->capture_default_str();
    app.add_option("--emb-sz", emb_sz, "embedding size (default: preset's; original 400)")
        ->check(CLI::Range(1, 4096));
    app.add_option("--n-hid", n_hid, "LSTM hidden size (default: preset's; original 1152)")
        ->check(CLI::Range(1, 8192));
    app.add_option("--n-layers", n_layers, "LSTM layers (default: preset's; original 3)")
        ->check(CLI::Range(2, 8));
    app.footer(app.get_footer() + (app.get_footer().empty() ? "" : "\n\n") +
               "Data parallel (a build with -DINSPIRE_MPI=ON): mpirun -np N " + app.get_name() +
               " ... with the same flags; each rank takes 1/N of every batch, rank 0 writes "
               "(docs/distributed.md).");
  }
  // The preset's recipe with the common flags applied.
  Recipe recipe() const {
    Recipe r = Recipe::from_preset(preset_name);
    if (emb_sz) r.emb_sz = emb_sz;
    if (n_hid) r.n_hid = n_hid;
    if (n_layers) r.n_layers = n_layers;
    r.seed = seed;
    r.valid_pct = valid_pct;
    return r;
  }
  RunOptions options(int argc, char** argv, const std::vector<std::string>& data) const {
    RunOptions o;
    o.out_dir = out;
    o.resume = resume;
    o.quiet = quiet || dist::world().rank() != 0;  // under mpirun, rank 0 alone prints
    o.log = stderr_log(o.quiet);
    o.max_steps = max_steps;
    std::tie(o.checkpoint_every_steps, o.checkpoint_every_s) = parse_checkpoint_every(checkpoint_every);
    o.provenance = provenance(argc, argv, data);
    if (device_opt && device_opt->count() > 0) o.device = device_opt->as<std::string>();
    o.tf32 = tf32;
    if (tf32 && o.device == "cpu") throw std::runtime_error("--tf32 needs --device cuda");
    return o;
  }
};

struct LmArgs {
  std::vector<std::string> data;
  std::string pretrained;
  std::size_t max_vocab = 0, min_freq = 0, bs = 0, bptt = 0;
  double drop_mult = 0.7, wd = 1e-7;
  int frozen_epochs = -1, epochs = -1;
  double frozen_lr = 1e-2, lr = 1e-3;
  bool backwards = false, keep_vocab = false;

  void add(CLI::App& app, bool pretrain) {
    app.add_option("-d,--data", data,
                   pretrain ? "general-English corpus files (.txt[.gz] blank-line separated, "
                              "WikiText .tokens, .jsonl[.gz] with `text`)"
                            : "JSON Lines / CSV files with title + abstract (or text); a `split` "
                              "field sends records to train/valid")
        ->required();
    if (!pretrain)
      app.add_option("--pretrained", pretrained,
                     "pretrained LM bundle (e.g. from `pretrain` or `import-fastai`); its "
                     "embeddings are matched to the new vocabulary by string");
    app.add_option("--max-vocab", max_vocab, "vocabulary size limit (default: preset's; original 60000)");
    app.add_option("--min-freq", min_freq, "minimum token count (default: 2)");
    app.add_option("--bs", bs, "batch size (default: preset's; original 64)");
    app.add_option("--bptt", bptt, "sequence length (default: preset's; original 100)");
    app.add_option("--drop-mult", drop_mult, "dropout multiplier")->capture_default_str();
    app.add_option("--wd", wd, "weight decay")->capture_default_str();
    app.add_flag("--backwards", backwards,
                 pretrain ? "a backward LM: reads every document last token first (fastai's "
                            "backwards=True; a classifier trained on it is backwards too)"
                          : "a backward LM: reads every document last token first (default: as "
                            "the --pretrained model does)");
    if (pretrain) {
      app.add_option("--epochs", epochs, "epochs (default: preset's)");
      app.add_option("--lr", lr, "peak learning rate")->default_val(5e-3);
    } else {
      app.add_option("--frozen-epochs", frozen_epochs, "epochs with only the embeddings trainable (default 1)");
      app.add_option("--frozen-lr", frozen_lr, "peak lr of the frozen stage")->capture_default_str();
      app.add_option("--epochs", epochs, "unfrozen epochs (default: preset's; original 15)");
      app.add_option("--lr", lr, "peak lr of the unfrozen stage")->capture_default_str();
      app.add_flag("--keep-vocab", keep_vocab,
                   "keep the vocabulary of --pretrained (sizes and direction too) instead of "
                   "building one from -d: as `cv --fold-lm-epochs` does (--max-vocab and "
                   "--min-freq then do nothing)");
    }
  }
  // The recipe with these flags applied (0 / -1: the preset's value).
  void apply(Recipe& r, bool pretrain) const {
    if (max_vocab) r.max_vocab = max_vocab;
    if (min_freq) r.min_freq = min_freq;
    if (bs) r.lm_bs = bs;
    if (bptt) r.lm_bptt = bptt;
    r.lm_drop_mult = drop_mult;
    r.lm_wd = wd;
    r.backwards = backwards;
    if (pretrain) {
      if (epochs >= 0) r.pretrain_epochs = epochs;
      r.pretrain_lr = lr;
    } else {
      if (frozen_epochs >= 0) r.lm_frozen_epochs = frozen_epochs;
      r.lm_frozen_lr = frozen_lr;
      if (epochs >= 0) r.lm_epochs = epochs;
      r.lm_lr = lr;
    }
  }
};

void print_json_result(const nlohmann::json& j) {
  if (dist::world().rank() == 0) std::cout << j.dump() << std::endl;
}

nlohmann::json lm_json(const LmStageResult& r) {
  return {{"model", r.lm.model_path},     {"vocab_size", r.vocab_size},
          {"valid_loss", r.lm.valid_loss}, {"valid_accuracy", r.lm.valid_accuracy},
          {"train_docs", r.train_docs},    {"valid_docs", r.valid_docs},
          {"steps", r.lm.steps}};
}

// ---------------------------------------------------------------------------------------------
int run_lm(int argc, char** argv, bool pretrain) {
  CLI::App app(pretrain ? "Pretrain an AWD-LSTM language model from scratch on a general-English "
                          "corpus (stands in for WikiText-103)."
                        : "Fine-tune a language model on HEP titles and abstracts (ULMFiT stage 2): "
                          "one epoch with only the embeddings trainable, then all layers.",
               pretrain ? "inspire-classifier pretrain" : "inspire-classifier finetune-lm");
  Common com;
  LmArgs a;
  com.add(app);
  a.add(app, pretrain);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  Recipe r = com.recipe();
  a.apply(r, pretrain);
  auto o = com.options(argc, argv, a.data);
  LmStageResult res;
  if (pretrain) {
    r.pretrain_valid_pct = com.valid_pct;
    res = pretrain_language_model(r, a.data, o);
  } else {
    r.backwards = a.backwards || bundle_is_backwards(a.pretrained);
    res = finetune_language_model(r, a.data, a.pretrained, o, a.keep_vocab);
  }
  print_json_result(lm_json(res));
  return 0;
}

int run_pretrain(int argc, char** argv) { return run_lm(argc, argv, true); }
int run_finetune(int argc, char** argv) { return run_lm(argc, argv, false); }

// ---------------------------------------------------------------------------------------------
struct ClasArgs {
  std::vector<std::string> data;
  std::string lm;
  std::size_t bs = 0;
  double drop_mult = 0.5, wd = 1e-6, lr = 2e-2;
  int epochs = -1;
  void add(CLI::App& app, bool with_lm) {
    app.add_option("-d,--data", data, "labeled JSON Lines / CSV (title, abstract, label[, split])")
        ->required();
    if (with_lm)
      app.add_option("--lm", lm, "fine-tuned LM, encoder or classifier bundle: its encoder and vocabulary are used")
          ->required();
    app.add_option("--bs", bs, "batch size (default: preset's; original 128)");
    app.add_option("--drop-mult", drop_mult, "dropout multiplier")->capture_default_str();
    app.add_option("--wd", wd, "weight decay")->capture_default_str();
    app.add_option("--lr", lr, "peak lr of stage 1 (stages 2-4 use lr/2, lr/4, lr/20)")
        ->capture_default_str();
    app.add_option("--epochs", epochs, "epochs of the last (unfrozen) stage (default: preset's; original 15)");
  }
  void apply(Recipe& r) const {
    if (bs) r.clas_bs = bs;
    r.clas_drop_mult = drop_mult;
    r.clas_wd = wd;
    r.clas_lr = lr;
    if (epochs >= 0) r.clas_epochs = epochs;
  }
};

nlohmann::json clas_json(const ClassifierResult& r) {
  if (r.best_epoch < 0)  // no validation (--fit-all): the model is the last epoch's
    return {{"model", r.model_path}, {"last_model", r.last_model_path}, {"validation", nullptr},
            {"steps", r.steps}};
  return {{"model", r.model_path},
          {"last_model", r.last_model_path},
          {"best_valid_macro_f1", r.best_macro_f1},
          {"best_stage", r.best_stage},
          {"best_epoch", r.best_epoch + 1},
          {"last_valid_accuracy", r.valid_accuracy},
          {"last_valid_macro_f1", r.valid_macro_f1},
          {"steps", r.steps}};
}

int run_train_classifier(int argc, char** argv) {
  CLI::App app("Train the classifier on a fine-tuned LM with gradual unfreezing (ULMFiT stage 3): "
               "head only, then +rnn2, +rnn1, then everything, with discriminative learning rates.",
               "inspire-classifier train-classifier");
  Common com;
  ClasArgs a;
  com.add(app);
  a.add(app, true);
  bool fit_all = false;
  app.add_flag("--fit-all", fit_all,
               "train on the train AND valid records, with no validation; the model is the last "
               "epoch's: the final model of a recipe measured by `cv` (docs/cross-validation.md)");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  Recipe r = com.recipe();
  a.apply(r);
  RunOptions o = com.options(argc, argv, a.data);
  o.fit_all = fit_all;
  auto res = train_classifier_from_lm(r, a.lm, a.data, o);
  print_json_result(clas_json(res.clas));
  return 0;
}

// ---------------------------------------------------------------------------------------------
int run_train(int argc, char** argv) {
  CLI::App app(
      "The whole ULMFiT pipeline, as INSPIRE trains its classifier: [pretrain on general English] "
      "→ fine-tune the LM on HEP text (unlabeled + labeled) → train the classifier.\n"
      "Writes <out>/pretrain, <out>/lm, <out>/classifier; the final model is "
      "<out>/classifier/classifier.safetensors.",
      "inspire-classifier train");
  app.footer(recipe_footer());
  Common com;
  PipelineInputs in;
  std::size_t max_vocab = 0, min_freq = 0;
  int pre_epochs = -1, lm_epochs = -1, clas_epochs = -1;
  bool backwards = false;
  com.add(app);
  app.add_flag("--backwards", backwards,
               "train backward models: every document is read last token first (the ULMFiT "
               "paper's backward LM; ensemble it with a forward classifier by `ensemble`)");
  app.add_option("-d,--data", in.data, "labeled JSON Lines / CSV (title, abstract, label[, split])")->required();
  app.add_option("--lm-data", in.lm_data, "extra unlabeled HEP text for LM fine-tuning");
  app.add_option("--pretrain-data", in.pretrain_data, "general-English corpus: pretrain an LM first");
  app.add_option("--pretrained", in.pretrained, "start from this pretrained LM bundle instead");
  app.add_option("--max-vocab", max_vocab, "LM vocabulary size (default: preset's)");
  app.add_option("--min-freq", min_freq, "minimum token count (default 2)");
  app.add_option("--pretrain-epochs", pre_epochs, "pretraining epochs (default: preset's)");
  app.add_option("--lm-epochs", lm_epochs, "unfrozen LM fine-tuning epochs (default: preset's)");
  app.add_option("--clas-epochs", clas_epochs, "last-stage classifier epochs (default: preset's)");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  if (!in.pretrained.empty() && !in.pretrain_data.empty())
    throw std::runtime_error("give --pretrained or --pretrain-data, not both");
  Recipe r = com.recipe();
  r.backwards = backwards;
  if (max_vocab) r.max_vocab = max_vocab;
  if (min_freq) r.min_freq = min_freq;
  if (pre_epochs >= 0) r.pretrain_epochs = pre_epochs;
  if (lm_epochs >= 0) r.lm_epochs = lm_epochs;
  if (clas_epochs >= 0) r.clas_epochs = clas_epochs;
  auto res = run_pipeline(r, in, com.options(argc, argv, in.data));

  nlohmann::json result;
  if (res.pretrain)
    result["pretrain"] = {{"valid_loss", res.pretrain->lm.valid_loss},
                          {"valid_accuracy", res.pretrain->lm.valid_accuracy}};
  if (res.lm)
    result["lm"] = {{"valid_loss", res.lm->lm.valid_loss}, {"valid_accuracy", res.lm->lm.valid_accuracy},
                    {"vocab_size", res.lm->vocab_size}, {"train_docs", res.lm->train_docs},
                    {"valid_docs", res.lm->valid_docs}};
  result["classifier"] = clas_json(res.classifier.clas);
  result["classifier"]["train_docs"] = res.classifier.train_docs;
  result["classifier"]["valid_docs"] = res.classifier.valid_docs;
  print_json_result(result);
  return 0;
}

// ---------------------------------------------------------------------------------------------
std::string pm(const nlohmann::json& ms) {
  if (ms[0].is_null()) return "-";
  char b[48];
  std::snprintf(b, sizeof b, "%.3f +- %.3f", ms[0].get<double>(), ms[1].get<double>());
  return b;
}

int run_cv(int argc, char** argv) {
  CLI::App app(
      "K-fold cross-validation of the classifier recipe over the train + valid records (the honest "
      "protocol of docs/cross-validation.md): per fold, one classifier per --lm is trained on the "
      "other folds and its LAST epoch is scored on the fold; several --lm (forward + backward) are "
      "also scored as their ensemble. Each is also scored prior-corrected (+prior: class "
      "probabilities weighted by max prior / class prior of the training folds). Folds are those of tools/reference/cv_peers.py (grouped by "
      "dup_group, stratified, FNV-1a order, no RNG). Prints mean ± sample sd of accuracy, macro-F1 "
      "and per-class F1; writes <out>/cv.json. A killed run re-run continues with the folds not "
      "yet scored (--resume also resumes an interrupted fold).",
      "inspire-classifier cv");
  app.footer(recipe_footer());
  Common com;
  ClasArgs a;
  std::vector<std::string> lms;
  int k = 5;
  std::vector<int> only;
  com.add(app);
  a.add(app, false);
  app.add_option("--lm", lms, "fine-tuned LM / encoder bundle(s) trained WITHOUT the labels; one "
                              "classifier per LM per fold")
      ->required();
  app.add_option("-k,--folds", k, "number of folds")->capture_default_str()->check(CLI::Range(2, 50));
  app.add_option("--fold", only, "run only these folds (0-based; default: all)");
  int fold_lm_epochs = 0;
  double fold_lm_lr = 2e-3;
  app.add_option("--fold-lm-epochs", fold_lm_epochs,
                 "ULMFiT's LM step inside each fold: fine-tune each --lm on the training folds' "
                 "texts (no labels; its vocabulary kept) for N epochs before the classifier, as "
                 "`train` fine-tunes on the labeled texts (default 0: the --lm as given)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--fold-lm-lr", fold_lm_lr, "learning rate of that LM step (one cycle)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bool no_watch = false;
  app.add_flag("--no-watch", no_watch,
               "do not score the fold after every epoch (those scores are for watching only); it "
               "is scored once, after the last epoch, as always, with the same result. Saves the "
               "per-epoch scoring, which runs on the CPU and with --device cuda can take longer "
               "than the training");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  if (a.data.size() != 1) throw std::runtime_error("cv reads one labeled file (-d), got " + std::to_string(a.data.size()));
  if (dist::world().size() > 1)
    throw std::runtime_error("cv runs in one process (its folds are independent runs: start one "
                             "`cv --fold J` per machine instead of mpirun)");
  Recipe r = com.recipe();
  a.apply(r);
  CvOptions cv;
  cv.lms = lms;
  cv.k = k;
  cv.only_folds = only;
  cv.fold_lm_epochs = fold_lm_epochs;
  cv.fold_lm_lr = fold_lm_lr;
  cv.watch = !no_watch;
  auto res = cross_validate(r, a.data[0], cv, com.options(argc, argv, a.data));
  nlohmann::json j = res.to_json();
  j["recipe"] = r.to_json();
  j["lms"] = lms;
  j["k"] = k;
  if (fold_lm_epochs > 0) j["fold_lm"] = {{"epochs", fold_lm_epochs}, {"lr", fold_lm_lr}};
  const std::string path = com.out + "/cv.json";
  const std::string text = j.dump(1) + "\n";
  io::write_file_atomically(path, text.data(), text.size());
  if (!com.quiet) {
    auto s = res.summary();
    std::fprintf(stderr, "\n%zu fold(s) of %d; mean +- sample sd; written to %s\n", res.folds.size(), k,
                 path.c_str());
    std::fprintf(stderr, "%-12s %-15s %-15s %-15s %-15s\n", "contender", "accuracy", "macro-F1",
                 "F1 non_core", "F1 core");
    auto row = [&](const std::string& name, const nlohmann::json& x) {
      auto f1 = [&](const char* l) { return x["f1"].contains(l) ? pm(x["f1"][l]) : std::string("-"); };
      std::fprintf(stderr, "%-12s %-15s %-15s %-15s %-15s\n", name.c_str(), pm(x["accuracy"]).c_str(),
                   pm(x["macro_f1"]).c_str(), f1("non_core").c_str(), f1("core").c_str());
    };
    for (std::size_t m = 0; m < s["members"].size(); ++m) {
      row("lm " + std::to_string(m), s["members"][m]);
      row("  +prior", s["members_prior"][m]);
    }
    if (lms.size() > 1) {
      row("ensemble", s["ensemble"]);
      row("  +prior", s["ensemble_prior"]);
    }
    std::fprintf(stderr, "(+prior: probabilities weighted by max prior / class prior of the training "
                         "folds before the argmax)\n");
  }
  print_json_result(j["summary"]);
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(train, "Train the whole pipeline: [pretrain →] fine-tune LM → classifier", run_train, 30);
INSPIRE_COMMAND_ORDERED(pretrain, "Pretrain a language model from scratch on general English", run_pretrain, 31);
INSPIRE_COMMAND_NAMED(finetune_lm, "finetune-lm", "Fine-tune a language model on HEP text", run_finetune, 32);
INSPIRE_COMMAND_NAMED(train_classifier, "train-classifier", "Train the classifier on a fine-tuned LM (gradual unfreezing)", run_train_classifier, 33);
INSPIRE_COMMAND_ORDERED(cv, "K-fold cross-validation of the classifier recipe (mean ± sd)", run_cv, 36);
