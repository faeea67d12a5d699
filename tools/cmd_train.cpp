// tools/cmd_train.cpp — `pretrain`, `finetune-lm`, `train-classifier` and `train` (the whole
// ULMFiT pipeline), with the original's defaults (spec §0, §3, §5) and --preset for smaller models.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/dataset.h"
#include "nn/backend.h"
#include "tools/cli.h"
#include "ulmfit/corpus.h"
#include "ulmfit/data.h"
#include "ulmfit/fastai_import.h"
#include "ulmfit/input_check.h"
#include "ulmfit/train.h"

namespace fs = std::filesystem;
using namespace ulmfit;

namespace {

std::string command_line(int argc, char** argv) {
  std::string s = "inspire-classifier";
  for (int i = 0; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

std::string provenance(int argc, char** argv, const std::vector<std::string>& data) {
  nlohmann::json j;
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  j["date"] = buf;
  j["command"] = command_line(argc, argv);
  j["data"] = data;
  j["tool"] = "inspire-classifier " INSPIRE_VERSION;
  return j.dump();
}

bool is_plain_text(const std::string& path) {
  for (const char* ext : {".txt", ".txt.gz", ".tokens"})
    if (path.size() >= std::strlen(ext) && path.compare(path.size() - std::strlen(ext), std::strlen(ext), ext) == 0)
      return true;
  return false;
}

// Texts and labels of the train and valid sides. Records whose `split` is "train"/"valid" go
// there; records with another split ("test", "fixture") are left out; records without a split are
// split at random (valid_pct, seeded) like fastai's RandomSplitter, except those whose title is
// a valid or test paper's (`title_matches_labeled_split`): training on them, even as unlabeled LM
// text, would leak the papers the model is scored on.
struct Sides {
  std::vector<std::string> train, valid;
  std::vector<std::int32_t> train_labels, valid_labels;
  std::size_t skipped = 0, bad = 0, held_out_matches = 0;
};

bool matches_held_out_paper(const io::Record& r) {
  return r.split.empty() && (r.title_match_split == "valid" || r.title_match_split == "test");
}

Sides read_sides(const std::vector<std::string>& files, double valid_pct, std::uint64_t seed,
                 bool need_labels, bool quiet) {
  Sides s;
  std::vector<std::string> free_texts;
  std::vector<std::int32_t> free_labels;
  for (auto& f : files) {
    if (is_plain_text(f)) {
      if (need_labels) throw std::runtime_error(f + ": a plain-text corpus has no labels");
      std::size_t skipped = 0;
      auto docs = read_text_documents(f, 0, &skipped);
      s.bad += skipped;
      for (auto& d : docs) free_texts.push_back(std::move(d));
      free_labels.resize(free_texts.size(), -1);
      continue;
    }
    io::DatasetOptions o;
    o.require_label = need_labels;
    io::read_dataset(
        f,
        [&](io::Record& r) {
          if (r.split == "train") {
            s.train.push_back(std::move(r.text));
            s.train_labels.push_back(r.label_index);
          } else if (r.split == "valid") {
            s.valid.push_back(std::move(r.text));
            s.valid_labels.push_back(r.label_index);
          } else if (matches_held_out_paper(r)) {
            s.held_out_matches++;
          } else if (r.split.empty()) {
            free_texts.push_back(std::move(r.text));
            free_labels.push_back(r.label_index);
          } else {
            s.skipped++;
          }
        },
        [&](const io::RecordError& e) {
          s.bad++;
          if (!quiet) std::fprintf(stderr, "warning: skipping %s\n", e.what().c_str());
        },
        o);
  }
  if (!free_texts.empty()) {
    auto sp = random_split(free_texts.size(), valid_pct, seed);
    for (auto i : sp.train) s.train.push_back(free_texts[i]), s.train_labels.push_back(free_labels[i]);
    for (auto i : sp.valid) s.valid.push_back(free_texts[i]), s.valid_labels.push_back(free_labels[i]);
  }
  if (!quiet)
    std::fprintf(stderr,
                 "data: %zu train / %zu valid documents (%zu in other splits and %zu matching a valid "
                 "or test paper's title left out, %zu bad)\n",
                 s.train.size(), s.valid.size(), s.skipped, s.held_out_matches, s.bad);
  if (s.train.empty()) throw std::runtime_error("no training documents in the given data");
  return s;
}

// Options shared by the commands.
struct Common {
  std::string preset_name = "original";
  std::string out;
  std::uint64_t seed = 42;
  bool resume = false, quiet = false;
  int threads = 0;
  std::int64_t max_steps = 0;
  double valid_pct = 0.2;
  std::int64_t emb_sz = 0, n_hid = 0, n_layers = 0;

  void add(CLI::App& app) {
    app.add_option("--preset", preset_name,
                   "model size: original (400/1152/3, 60000 words, as INSPIRE), small (64/256/3, "
                   "12000 words: the embedded default), tiny (tests)")
        ->capture_default_str();
    app.add_option("-o,--out", out, "output directory (checkpoints, curves, final model)")->required();
    app.add_option("--seed", seed, "random seed (data order, dropout, init)")->capture_default_str();
    app.add_flag("--resume", resume, "continue a killed run from <out>/checkpoint.json");
    app.add_flag("-q,--quiet", quiet, "no progress output");
    app.add_option("--threads", threads, "OpenMP threads (default: all cores)");
    app.add_option("--max-steps", max_steps, "stop after this many training batches (smoke tests)");
    app.add_option("--valid-pct", valid_pct,
                   "share of records WITHOUT a `split` field that go to validation")
        ->capture_default_str();
    app.add_option("--emb-sz", emb_sz, "embedding size (default: preset's; original 400)")
        ->check(CLI::Range(1, 4096));
    app.add_option("--n-hid", n_hid, "LSTM hidden size (default: preset's; original 1152)")
        ->check(CLI::Range(1, 8192));
    app.add_option("--n-layers", n_layers, "LSTM layers (default: preset's; original 3)")
        ->check(CLI::Range(2, 8));
  }
  // The preset with --emb-sz / --n-hid / --n-layers applied.
  Preset resolved_preset() const {
    Preset p = preset(preset_name);
    if (emb_sz) p.emb_sz = emb_sz;
    if (n_hid) p.n_hid = n_hid;
    if (n_layers) p.n_layers = n_layers;
    return p;
  }
  TrainOptions options(const std::string& dir, double wd, const std::string& prov) const {
    TrainOptions o;
    o.out_dir = dir;
    o.seed = seed;
    o.resume = resume;
    o.quiet = quiet;
    o.wd = wd;
    o.provenance = prov;
    o.max_steps = max_steps;
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
  bool backwards = false;

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
    }
  }
};

// Tokenize + vocab + numericalise for an LM; returns (vocab, train docs, valid docs).
struct LmData {
  Vocab vocab;
  std::vector<Doc> train, valid;
};

LmData prepare_lm_data(const Sides& s, std::size_t max_vocab, std::size_t min_freq, bool quiet) {
  auto t0 = std::chrono::steady_clock::now();
  auto tok_train = tokenize_all(s.train, TokenizeMode::Train, quiet);
  auto tok_valid = tokenize_all(s.valid, TokenizeMode::Train, quiet);
  // fastai counts the whole dataframe (train + valid rows) for the vocabulary (spec §1.4).
  TokenCounter counter;
  for (auto& d : tok_train) counter.add(d);
  for (auto& d : tok_valid) counter.add(d);
  VocabOptions vo;
  vo.max_vocab = max_vocab;
  vo.min_freq = min_freq;
  LmData d;
  d.vocab = Vocab::build(counter, vo);
  d.train = numericalize_all(tok_train, d.vocab);
  d.valid = numericalize_all(tok_valid, d.vocab);
  if (!quiet)
    std::fprintf(stderr, "vocab: %zu tokens (%zu distinct seen, %zu total) in %.1fs\n",
                 d.vocab.size(), counter.size(), counter.total(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return d;
}

// Builds the LM (init or from a pretrained bundle with vocab matching).
void init_lm(AwdLstmLM& lm, const Vocab& vocab, const std::string& pretrained, std::uint64_t seed,
             bool quiet) {
  nn::Rng rng(seed);
  lm.init(rng);
  if (pretrained.empty()) return;
  auto b = io::Bundle::load(pretrained);
  const auto& c = b.config();
  // A classifier bundle gives its encoder (the LM decoder's bias starts at zero).
  if (c.emb_sz != lm.config().emb || c.n_hid != lm.config().hidden || c.n_layers != lm.config().n_layers)
    throw std::runtime_error(pretrained + ": sizes (emb " + std::to_string(c.emb_sz) + ", hid " +
                             std::to_string(c.n_hid) + ", layers " + std::to_string(c.n_layers) +
                             ") differ from the preset's; pass the matching --preset");
  std::string pre = c.encoder_prefix();
  for (auto& t : lm.encoder().tensors()) {
    if (t.key == "encoder.weight") continue;
    auto v = b.tensor(pre + t.key);
    nn::check_shape(v.shape, t.value.shape, (pre + t.key).c_str());
    t.value.copy_from(v);
  }
  auto emb = b.tensor(pre + "encoder.weight");
  const float* bias = b.has("1.decoder.bias") ? b.tensor("1.decoder.bias").data : nullptr;
  auto m = match_embeds(emb.data, c.vocab_size, c.emb_sz, bias, b.vocab(), vocab.itos());
  std::copy(m.emb.begin(), m.emb.end(), lm.encoder().embedding().data);
  if (!m.bias.empty()) std::copy(m.bias.begin(), m.bias.end(), lm.decoder_bias().data);
  if (!quiet) {
    std::fprintf(stderr, "pretrained %s: %lld of %zu tokens matched by string\n",
                 pretrained.c_str(), (long long)m.matched, vocab.size());
    if (c.backwards != lm.config().backwards)
      std::fprintf(stderr, "pretrained %s reads %s, this LM reads %s: its weights are a warm start\n",
                   pretrained.c_str(), c.backwards ? "backwards" : "forwards",
                   lm.config().backwards ? "backwards" : "forwards");
  }
}

// An LM of the preset's sizes over `vocab_size` tokens.
AwdLstmConfig lm_config(const Preset& p, std::size_t vocab_size, double drop_mult, bool backwards) {
  AwdLstmConfig cfg = AwdLstmConfig::lm((Index)vocab_size, drop_mult);
  cfg.emb = p.emb_sz;
  cfg.hidden = p.n_hid;
  cfg.n_layers = (int)p.n_layers;
  cfg.backwards = backwards;
  return cfg;
}

// Whether the bundle at `path` (empty: none) holds a backwards model.
bool bundle_is_backwards(const std::string& path) {
  return !path.empty() && io::Bundle::load(path).config().backwards;
}

void print_json_result(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

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
  Preset p = com.resolved_preset();
  if (!a.max_vocab) a.max_vocab = p.max_vocab;
  if (!a.min_freq) a.min_freq = p.min_freq;
  if (!a.bs) a.bs = p.lm_bs;
  if (!a.bptt) a.bptt = p.lm_bptt;
  if (a.epochs < 0) a.epochs = pretrain ? p.pretrain_epochs : p.lm_epochs;
  if (a.frozen_epochs < 0) a.frozen_epochs = pretrain ? 0 : p.lm_frozen_epochs;

  auto sides = read_sides(a.data, com.valid_pct, com.seed, false, com.quiet);
  auto d = prepare_lm_data(sides, a.max_vocab, a.min_freq, com.quiet);
  AwdLstmLM lm(lm_config(p, d.vocab.size(), a.drop_mult, a.backwards || bundle_is_backwards(a.pretrained)));
  if (!com.resume) init_lm(lm, d.vocab, a.pretrained, com.seed, com.quiet);
  auto stages = pretrain ? lm_pretrain_stages(a.epochs, a.lr)
                         : lm_finetune_stages(a.pretrained.empty() ? 0 : a.frozen_epochs,
                                              a.frozen_lr, a.epochs, a.lr);
  auto r = train_language_model(lm, d.vocab, d.train, d.valid, a.bs, a.bptt, stages,
                                com.options(com.out, a.wd, provenance(argc, argv, a.data)));
  print_json_result({{"model", r.model_path},
                     {"vocab_size", d.vocab.size()},
                     {"valid_loss", r.valid_loss},
                     {"valid_accuracy", r.valid_accuracy},
                     {"train_docs", sides.train.size()},
                     {"valid_docs", sides.valid.size()},
                     {"steps", r.steps}});
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
};

ClasResult classifier_from_lm(const std::string& lm_path, const Sides& sides, const ClasArgs& a,
                              const Preset& p, const Common& com, const std::string& out,
                              const std::string& prov) {
  auto lmb = io::Bundle::load(lm_path);
  Vocab vocab = Vocab::from_itos(lmb.vocab());
  auto tok_train = tokenize_all(sides.train, TokenizeMode::Train, com.quiet);
  auto tok_valid = tokenize_all(sides.valid, TokenizeMode::Train, com.quiet);
  auto train = numericalize_all(tok_train, vocab, true);
  auto valid = numericalize_all(tok_valid, vocab, true);
  for (auto l : sides.train_labels)
    if (l < 0) throw std::runtime_error("a training record has no label");
  ClassifierConfig cc = ClassifierConfig::inspire((Index)vocab.size(), a.drop_mult);
  const auto& mc = lmb.config();
  cc.enc.emb = mc.emb_sz;
  cc.enc.hidden = mc.n_hid;
  cc.enc.n_layers = (int)mc.n_layers;
  cc.enc.backwards = mc.backwards;  // a classifier reads text in its LM's direction
  ClassifierModel m(cc);
  nn::Rng rng(com.seed);
  m.init(rng);
  load_encoder_into_classifier(m, lmb);
  std::size_t bs = a.bs ? a.bs : p.clas_bs;
  int epochs = a.epochs >= 0 ? a.epochs : p.clas_last_epochs;
  return train_classifier(m, vocab, train, sides.train_labels, valid, sides.valid_labels, bs,
                          classifier_stages(epochs, a.lr), com.options(out, a.wd, prov));
}

nlohmann::json clas_json(const ClasResult& r) {
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
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  check_training_inputs({a.data, {}, "", a.lm, com.out});
  Preset p = com.resolved_preset();
  auto sides = read_sides(a.data, com.valid_pct, com.seed, true, com.quiet);
  auto r = classifier_from_lm(a.lm, sides, a, p, com, com.out, provenance(argc, argv, a.data));
  print_json_result(clas_json(r));
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
  Common com;
  std::vector<std::string> data, lm_data, pretrain_data;
  std::string pretrained;
  std::size_t max_vocab = 0, min_freq = 0;
  int pre_epochs = -1, lm_epochs = -1, clas_epochs = -1;
  bool backwards = false;
  com.add(app);
  app.add_flag("--backwards", backwards,
               "train backward models: every document is read last token first (the ULMFiT "
               "paper's backward LM; ensemble it with a forward classifier by `ensemble`)");
  app.add_option("-d,--data", data, "labeled JSON Lines / CSV (title, abstract, label[, split])")->required();
  app.add_option("--lm-data", lm_data, "extra unlabeled HEP text for LM fine-tuning");
  app.add_option("--pretrain-data", pretrain_data, "general-English corpus: pretrain an LM first");
  app.add_option("--pretrained", pretrained, "start from this pretrained LM bundle instead");
  app.add_option("--max-vocab", max_vocab, "LM vocabulary size (default: preset's)");
  app.add_option("--min-freq", min_freq, "minimum token count (default 2)");
  app.add_option("--pretrain-epochs", pre_epochs, "pretraining epochs (default: preset's)");
  app.add_option("--lm-epochs", lm_epochs, "unfrozen LM fine-tuning epochs (default: preset's)");
  app.add_option("--clas-epochs", clas_epochs, "last-stage classifier epochs (default: preset's)");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (com.threads > 0) nn::set_num_threads(com.threads);
  if (!pretrained.empty() && !pretrain_data.empty())
    throw std::runtime_error("give --pretrained or --pretrain-data, not both");
  {
    TrainingInputs ti;
    ti.labeled = data;
    ti.unlabeled = lm_data;
    ti.unlabeled.insert(ti.unlabeled.end(), pretrain_data.begin(), pretrain_data.end());
    ti.pretrained = pretrained;
    ti.out_dir = com.out;
    check_training_inputs(ti);  // before any training: bad labels fail now, not hours later
  }
  Preset p = com.resolved_preset();
  std::string prov = provenance(argc, argv, data);
  auto dir = [&](const char* sub) { return (fs::path(com.out) / sub).string(); };
  auto done = [&](const std::string& d, const char* file) {
    return fs::exists(fs::path(d) / file);
  };
  nlohmann::json result;

  // 1. pretraining (optional)
  if (!pretrain_data.empty()) {
    std::string d = dir("pretrain");
    if (done(d, "lm.safetensors")) {
      if (!com.quiet) std::fprintf(stderr, "pretrain: %s exists, skipping\n", d.c_str());
    } else {
      auto sides = read_sides(pretrain_data, 0.05, com.seed, false, com.quiet);
      auto lmd = prepare_lm_data(sides, max_vocab ? max_vocab : p.max_vocab, min_freq ? min_freq : p.min_freq, com.quiet);
      AwdLstmLM lm(lm_config(p, lmd.vocab.size(), 0.7, backwards));
      Common c2 = com;
      c2.resume = com.resume && fs::exists(fs::path(d) / "checkpoint.json");
      if (!c2.resume) init_lm(lm, lmd.vocab, "", com.seed, com.quiet);
      auto r = train_language_model(lm, lmd.vocab, lmd.train, lmd.valid, p.lm_bs, p.lm_bptt,
                                    lm_pretrain_stages(pre_epochs >= 0 ? pre_epochs : p.pretrain_epochs),
                                    c2.options(d, 1e-7, prov));
      result["pretrain"] = {{"valid_loss", r.valid_loss}, {"valid_accuracy", r.valid_accuracy}};
    }
    pretrained = (fs::path(d) / "lm.safetensors").string();
  }

  // 2. LM fine-tuning on labeled (train/valid) + unlabeled text
  std::string lmdir = dir("lm");
  if (done(lmdir, "lm.safetensors")) {
    if (!com.quiet) std::fprintf(stderr, "finetune-lm: %s exists, skipping\n", lmdir.c_str());
  } else {
    std::vector<std::string> files = data;
    files.insert(files.end(), lm_data.begin(), lm_data.end());
    auto sides = read_sides(files, com.valid_pct, com.seed, false, com.quiet);
    auto lmd = prepare_lm_data(sides, max_vocab ? max_vocab : p.max_vocab, min_freq ? min_freq : p.min_freq, com.quiet);
    AwdLstmLM lm(lm_config(p, lmd.vocab.size(), 0.7, backwards));
    Common c2 = com;
    c2.resume = com.resume && fs::exists(fs::path(lmdir) / "checkpoint.json");
    if (!c2.resume) init_lm(lm, lmd.vocab, pretrained, com.seed, com.quiet);
    auto r = train_language_model(
        lm, lmd.vocab, lmd.train, lmd.valid, p.lm_bs, p.lm_bptt,
        lm_finetune_stages(pretrained.empty() ? 0 : p.lm_frozen_epochs, 1e-2,
                           lm_epochs >= 0 ? lm_epochs : p.lm_epochs, 1e-3),
        c2.options(lmdir, 1e-7, prov));
    result["lm"] = {{"valid_loss", r.valid_loss}, {"valid_accuracy", r.valid_accuracy},
                    {"vocab_size", lmd.vocab.size()}, {"train_docs", sides.train.size()},
                    {"valid_docs", sides.valid.size()}};
  }

  // 3. classifier
  ClasArgs ca;
  ca.epochs = clas_epochs;
  Common c3 = com;
  c3.resume = com.resume && fs::exists(fs::path(dir("classifier")) / "checkpoint.json");
  auto sides = read_sides(data, com.valid_pct, com.seed, true, com.quiet);
  auto r = classifier_from_lm((fs::path(lmdir) / "lm.safetensors").string(), sides, ca, p, c3,
                              dir("classifier"), prov);
  result["classifier"] = clas_json(r);
  result["classifier"]["train_docs"] = sides.train.size();
  result["classifier"]["valid_docs"] = sides.valid.size();
  print_json_result(result);
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(train, "Train the whole pipeline: [pretrain →] fine-tune LM → classifier", run_train, 30);
INSPIRE_COMMAND_ORDERED(pretrain, "Pretrain a language model from scratch on general English", run_pretrain, 31);
INSPIRE_COMMAND_NAMED(finetune_lm, "finetune-lm", "Fine-tune a language model on HEP text", run_finetune, 32);
INSPIRE_COMMAND_NAMED(train_classifier, "train-classifier", "Train the classifier on a fine-tuned LM (gradual unfreezing)", run_train_classifier, 33);
