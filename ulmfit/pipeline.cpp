#include "ulmfit/pipeline.h"

#include "ulmfit/input_check.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "dist/comm.h"
#include "io/bundle.h"
#include "nn/backend.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/corpus.h"
#include "ulmfit/fastai_import.h"
#include "ulmfit/name_map.h"

namespace fs = std::filesystem;

namespace ulmfit {

namespace {

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// The training-loop options of one stage; the recipe (as actually run) goes into every bundle.
TrainOptions train_options(const RunOptions& o, const std::string& dir, double wd, bool resume,
                           const Recipe& r) {
  TrainOptions t;
  t.out_dir = dir;
  t.seed = r.seed;
  t.resume = resume;
  t.quiet = o.quiet;
  t.wd = wd;
  t.provenance = o.provenance;
  t.max_steps = o.max_steps;
  t.checkpoint_every_steps = o.checkpoint_every_steps;
  t.checkpoint_every_s = o.checkpoint_every_s;
  t.on_epoch = o.on_epoch;
  t.no_validation = o.fit_all;
  t.metadata[kRecipeMetadataKey] = r.to_json().dump();
  return t;
}

}  // namespace

std::string make_provenance(const std::string& command, const std::vector<std::string>& data,
                            const std::string& tool) {
  nlohmann::json j;
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  j["date"] = buf;
  j["command"] = command;
  j["data"] = data;
  j["tool"] = tool;
  return j.dump();
}

LmData prepare_lm_data(const Sides& s, std::size_t max_vocab, std::size_t min_freq, bool quiet,
                       const LogFn& log) {
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
  if (log)
    log("vocab: " + std::to_string(d.vocab.size()) + " tokens (" + std::to_string(counter.size()) +
        " distinct seen, " + std::to_string(counter.total()) + " total) in " +
        fmt("%.1fs", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  return d;
}

ModelConfig lm_config(const Recipe& r, std::size_t vocab_size) {
  ModelConfig cfg = ModelConfig::lm((Index)vocab_size, r.lm_drop_mult);
  cfg.emb_sz = r.emb_sz;
  cfg.n_hid = r.n_hid;
  cfg.n_layers = r.n_layers;
  cfg.backwards = r.backwards;
  return cfg;
}

void init_lm(AwdLstmLM& lm, const Vocab& vocab, const std::string& pretrained, std::uint64_t seed,
             const LogFn& log) {
  nn::Rng rng(seed);
  lm.init(rng);
  if (pretrained.empty()) return;
  auto b = io::Bundle::load(pretrained);
  const auto& c = b.config();
  // A classifier bundle gives its encoder (the LM decoder's bias starts at zero).
  if (c.emb_sz != lm.config().emb_sz || c.n_hid != lm.config().n_hid ||
      c.n_layers != lm.config().n_layers)
    throw std::runtime_error(pretrained + ": sizes (emb " + std::to_string(c.emb_sz) + ", hid " +
                             std::to_string(c.n_hid) + ", layers " + std::to_string(c.n_layers) +
                             ") differ from the preset's; pass the matching --preset");
  std::string pre = c.encoder_prefix();
  // The LSTMs as they are; the embedding below, matched to the new vocabulary.
  load_tensors(lm.encoder().tensors(), "encoder", b,
               [](const std::string& key) { return key == "encoder.weight"; });
  auto emb = b.tensor(pre + "encoder.weight");
  const float* bias = b.has("1.decoder.bias") ? b.tensor("1.decoder.bias").data : nullptr;
  auto m = match_embeds(emb.data, c.vocab_size, c.emb_sz, bias, b.vocab(), vocab.itos());
  std::copy(m.emb.begin(), m.emb.end(), lm.encoder().embedding().data);
  if (!m.bias.empty()) std::copy(m.bias.begin(), m.bias.end(), lm.decoder_bias().data);
  if (log) {
    log("pretrained " + pretrained + ": " + std::to_string(m.matched) + " of " +
        std::to_string(vocab.size()) + " tokens matched by string");
    if (c.backwards != lm.config().backwards)
      log("pretrained " + pretrained + " reads " + (c.backwards ? "backwards" : "forwards") +
          ", this LM reads " + (lm.config().backwards ? "backwards" : "forwards") +
          ": its weights are a warm start");
  }
}

bool bundle_is_backwards(const std::string& path) {
  return !path.empty() && io::Bundle::load(path).config().backwards;
}

namespace {

// --device: the model's parameters, gradients, optimizer state and caches on that backend
// (batches are copied per step); "cpu" or empty: nothing to do.
template <typename Model>
void place_on_device(Model& m, const RunOptions& o) {
  if (!o.device.empty() && o.device != "cpu") {
    if (dist::world().size() > 1)
      throw std::invalid_argument("--device " + o.device + " trains in one process, not under mpirun");
    nn::Backend& be = nn::get_backend(o.device);
    if (!be.set_tf32(o.tf32)) throw std::invalid_argument("--tf32: the " + o.device + " backend has no TF32 mode");
    m.set_backend(be);
    if (o.log) o.log(std::string("training on ") + o.device + (o.tf32 ? " (TF32 products)" : ""));
  } else if (o.tf32) {
    throw std::invalid_argument("--tf32 needs --device cuda");
  }
}

// The recipe with the model sizes and direction of `c` (a bundle's config).
Recipe with_sizes_of(const Recipe& r_in, const ModelConfig& c) {
  Recipe r = r_in;
  r.emb_sz = c.emb_sz;
  r.n_hid = c.n_hid;
  r.n_layers = c.n_layers;
  r.backwards = c.backwards;
  return r;
}

// `keep`: numericalise with this vocabulary instead of building one from the text.
LmStageResult run_lm(const Recipe& r, const Sides& sides, const std::string& pretrained,
                     const std::vector<Stage>& stages, const RunOptions& o, const std::string& dir,
                     bool resume, const Vocab* keep = nullptr) {
  r.validate();
  LmData d;
  if (keep) {
    d.vocab = *keep;
    d.train = numericalize_all(tokenize_all(sides.train, TokenizeMode::Train, o.quiet), d.vocab);
    d.valid = numericalize_all(tokenize_all(sides.valid, TokenizeMode::Train, o.quiet), d.vocab);
  } else {
    d = prepare_lm_data(sides, r.max_vocab, r.min_freq, o.quiet, o.log);
  }
  AwdLstmLM lm(lm_config(r, d.vocab.size()));
  if (!resume) init_lm(lm, d.vocab, pretrained, r.seed, o.log);
  place_on_device(lm, o);
  LmStageResult res;
  res.lm = train_language_model(lm, d.vocab, d.train, d.valid, r.lm_bs, r.lm_bptt, stages,
                                train_options(o, dir, r.lm_wd, resume, r));
  res.vocab_size = d.vocab.size();
  res.train_docs = sides.train.size();
  res.valid_docs = sides.valid.size();
  return res;
}

}  // namespace

LmStageResult pretrain_language_model(const Recipe& r, const std::vector<std::string>& data,
                                      const RunOptions& o) {
  r.validate();
  auto sides = read_sides(data, r.pretrain_valid_pct, r.seed, false, o.log, /*general_corpus=*/true);
  return run_lm(r, sides, "", r.pretrain_stages(), o, o.out_dir, o.resume);
}

LmStageResult finetune_language_model(const Recipe& r, const std::vector<std::string>& data,
                                      const std::string& pretrained, const RunOptions& o,
                                      bool keep_vocab) {
  r.validate();
  if (keep_vocab && pretrained.empty())
    throw std::invalid_argument("--keep-vocab keeps the vocabulary of --pretrained: give one");
  auto sides = read_sides(data, r.valid_pct, r.seed, false, o.log);
  if (keep_vocab) return finetune_language_model_keep_vocab(r, sides, pretrained, o);
  return run_lm(r, sides, pretrained, r.finetune_stages(!pretrained.empty()), o, o.out_dir,
                o.resume);
}

LmStageResult finetune_language_model_keep_vocab(const Recipe& r_in, const Sides& sides,
                                                 const std::string& pretrained, const RunOptions& o) {
  r_in.validate();
  if (sides.train.empty()) throw std::invalid_argument("LM fine-tuning: no training text");
  auto b = io::Bundle::load(pretrained);
  const Vocab vocab = Vocab::from_itos(b.vocab());
  const Recipe r = with_sizes_of(r_in, b.config());
  return run_lm(r, sides, pretrained, r.finetune_stages(true), o, o.out_dir, o.resume, &vocab);
}

ClassifierStageResult train_classifier_from_lm(const Recipe& r_in, const std::string& lm_path,
                                         const Sides& sides, const RunOptions& o) {
  r_in.validate();
  auto lmb = io::Bundle::load(lm_path);
  Vocab vocab = Vocab::from_itos(lmb.vocab());
  auto tok_train = tokenize_all(sides.train, TokenizeMode::Train, o.quiet);
  auto tok_valid = tokenize_all(sides.valid, TokenizeMode::Train, o.quiet);
  auto train = numericalize_all(tok_train, vocab, true);
  auto valid = numericalize_all(tok_valid, vocab, true);
  for (auto l : sides.train_labels)
    if (l < 0) throw std::runtime_error("a training record has no label");
  // Sizes and direction are the LM's (a classifier reads text in its LM's direction); the recipe
  // stored in the bundle says so.
  const Recipe r = with_sizes_of(r_in, lmb.config());
  ModelConfig cc = classifier_config_over(lmb.config(), (Index)vocab.size(), r.clas_drop_mult);
  cc.bptt = r.clas_bptt;
  cc.max_len = r.clas_max_len;
  ClassifierModel m(cc);
  nn::Rng rng(r.seed);
  m.init(rng);
  load_encoder_into_classifier(m, lmb);
  place_on_device(m, o);
  ClassifierStageResult res;
  res.clas = train_classifier(m, vocab, train, sides.train_labels, valid, sides.valid_labels,
                              r.clas_bs, r.classifier_stages(),
                              train_options(o, o.out_dir, r.clas_wd, o.resume, r));
  res.train_docs = sides.train.size();
  res.valid_docs = sides.valid.size();
  return res;
}

ClassifierStageResult train_classifier_from_lm(const Recipe& r, const std::string& lm_path,
                                         const std::vector<std::string>& data, const RunOptions& o) {
  r.validate();
  check_training_inputs({data, {}, "", lm_path, o.out_dir});  // bad labels fail now, not later
  auto sides = read_sides(data, r.valid_pct, r.seed, true, o.log);
  if (o.fit_all) {
    // train + valid all train; there is no validation.
    sides.train.insert(sides.train.end(), std::make_move_iterator(sides.valid.begin()),
                       std::make_move_iterator(sides.valid.end()));
    sides.train_labels.insert(sides.train_labels.end(), sides.valid_labels.begin(), sides.valid_labels.end());
    sides.valid.clear();
    sides.valid_labels.clear();
    if (o.log) o.log("--fit-all: training on " + std::to_string(sides.train.size()) + " papers, no validation");
  }
  return train_classifier_from_lm(r, lm_path, sides, o);
}

PipelineResult run_pipeline(const Recipe& r, const PipelineInputs& in, const RunOptions& o) {
  r.validate();
  if (in.data.empty()) throw std::invalid_argument("pipeline: no labeled data");
  if (!in.pretrained.empty() && !in.pretrain_data.empty())
    throw std::invalid_argument("give --pretrained or --pretrain-data, not both");
  if (o.out_dir.empty()) throw std::invalid_argument("pipeline: no output directory");
  {
    // Everything the run will read, checked before any training: a bad label found after hours
    // of LM fine-tuning is hours lost.
    TrainingInputs ti;
    ti.labeled = in.data;
    ti.unlabeled = in.lm_data;
    ti.unlabeled.insert(ti.unlabeled.end(), in.pretrain_data.begin(), in.pretrain_data.end());
    ti.pretrained = in.pretrained;
    ti.out_dir = o.out_dir;
    check_training_inputs(ti);
    // and the device: one this build or machine cannot use fails now, not after pretraining
    if (!o.device.empty() && o.device != "cpu") (void)nn::get_backend(o.device);
  }
  auto dir = [&](const char* sub) { return (fs::path(o.out_dir) / sub).string(); };
  auto done = [&](const std::string& d) { return fs::exists(fs::path(d) / "lm.safetensors"); };
  auto resume_in = [&](const std::string& d) {
    return o.resume && fs::exists(fs::path(d) / "checkpoint.json");
  };
  PipelineResult res;
  std::string pretrained = in.pretrained;

  // 1. pretraining (optional)
  if (!in.pretrain_data.empty()) {
    std::string d = dir("pretrain");
    if (done(d)) {
      if (o.log) o.log("pretrain: " + d + " exists, skipping");
    } else {
      auto sides = read_sides(in.pretrain_data, r.pretrain_valid_pct, r.seed, false, o.log,
                              /*general_corpus=*/true);
      res.pretrain = run_lm(r, sides, "", r.pretrain_stages(), o, d, resume_in(d));
    }
    pretrained = (fs::path(d) / "lm.safetensors").string();
  }

  // 2. LM fine-tuning on labeled (train/valid) + unlabeled text
  std::string lmdir = dir("lm");
  if (done(lmdir)) {
    if (o.log) o.log("finetune-lm: " + lmdir + " exists, skipping");
  } else {
    std::vector<std::string> files = in.data;
    files.insert(files.end(), in.lm_data.begin(), in.lm_data.end());
    auto sides = read_sides(files, r.valid_pct, r.seed, false, o.log);
    res.lm = run_lm(r, sides, pretrained, r.finetune_stages(!pretrained.empty()), o, lmdir,
                    resume_in(lmdir));
  }

  // 3. classifier
  RunOptions oc = o;
  oc.out_dir = dir("classifier");
  oc.resume = resume_in(oc.out_dir);
  auto sides = read_sides(in.data, r.valid_pct, r.seed, true, o.log);
  res.classifier =
      train_classifier_from_lm(r, (fs::path(lmdir) / "lm.safetensors").string(), sides, oc);
  res.model_path = res.classifier.clas.model_path;
  return res;
}

}  // namespace ulmfit
