#include "ulmfit/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "dist/comm.h"
#include "io/atomic_file.h"
#include "io/sha256.h"
#include "nn/loss.h"
#include "nn/optim.h"
#include "nn/placed.h"
#include "ulmfit/labels.h"
#include "ulmfit/name_map.h"
#include "ulmfit/progress.h"

namespace fs = std::filesystem;

namespace ulmfit {

// ---------------------------------------------------------------------------------------------
// Presets and recipes
// ---------------------------------------------------------------------------------------------
Preset preset(const std::string& name) {
  //            name        emb   hid  lay  max_vocab min_freq lm_bs bptt clas_bs pre fz lm clas
  if (name == "original") return {name, 400, 1152, 3, 60000, 2, 64, 100, 128, 10, 1, 15, 15};
  if (name == "small") return {name, 64, 256, 3, 12000, 2, 32, 70, 64, 1, 1, 2, 4};
  if (name == "tiny") return {name, 16, 32, 3, 500, 2, 8, 20, 8, 1, 1, 1, 1};
  std::string known;
  for (auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown preset '" + name + "' (known: " + known + ")");
}
std::vector<std::string> preset_names() { return {"original", "small", "tiny"}; }

std::vector<Stage> lm_finetune_stages(int frozen_epochs, double frozen_lr, int epochs, double lr) {
  std::vector<Stage> s;
  if (frozen_epochs > 0) s.push_back({"lm-frozen", frozen_epochs, nn::LrSpec::scalar(frozen_lr), -1});
  if (epochs > 0) s.push_back({"lm-unfrozen", epochs, nn::LrSpec::scalar(lr), 0});
  return s;
}

std::vector<Stage> lm_pretrain_stages(int epochs, double lr) {
  return {{"lm-pretrain", epochs, nn::LrSpec::scalar(lr), 0}};
}

std::vector<Stage> classifier_stages(int last_epochs, double base_lr) {
  const double f = std::pow(2.6, 4);
  // INSPIRE: 2e-2 head, then 1e-2, 5e-3, 1e-3 peaks (each half / fifth of the previous).
  double l1 = base_lr, l2 = base_lr / 2, l3 = base_lr / 4, l4 = base_lr / 20;
  std::vector<Stage> s = {
      {"clas-1", 1, nn::LrSpec::scalar(l1), -1},
      {"clas-2", 1, nn::LrSpec::slice(l2 / f, l2), -2},
      {"clas-3", 1, nn::LrSpec::slice(l3 / f, l3), -3},
  };
  if (last_epochs > 0) s.push_back({"clas-4", last_epochs, nn::LrSpec::slice(l4 / f, l4), 0});
  return s;
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------
io::BundleContents lm_bundle(AwdLstmLM& lm, const Vocab& vocab, const std::string& provenance) {
  io::BundleContents b;
  b.config = lm.config();
  b.config.kind = "lm";
  b.vocab = vocab.itos();
  b.provenance = provenance;
  lm.encoder().sync_to_host();  // a model on another backend: its current values
  b.tensors = bundle_tensors(lm.tensors(), "lm", "lm");
  return b;
}

void load_lm_weights(AwdLstmLM& lm, const io::Bundle& b) {
  const auto& c = b.config();
  const auto& a = lm.config();
  if (c.vocab_size != a.vocab_size || c.emb_sz != a.emb_sz || c.n_hid != a.n_hid ||
      c.n_layers != a.n_layers)
    throw std::invalid_argument("model bundle sizes (vocab " + std::to_string(c.vocab_size) +
                                ", emb " + std::to_string(c.emb_sz) + ", hid " +
                                std::to_string(c.n_hid) + ", layers " + std::to_string(c.n_layers) +
                                ") do not match the model being trained");
  // An encoder (or classifier) bundle has no decoder bias: it keeps its value.
  lm.encoder().sync_to_host();
  load_tensors(lm.tensors(), "lm", b);
  lm.encoder().sync_to_device();
}

// ---------------------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------------------
namespace {

nlohmann::json rng_json(const nn::Rng::State& s) {
  nlohmann::json j = nlohmann::json::array();
  for (auto w : s) j.push_back(std::to_string(w));
  return j;
}
nn::Rng::State rng_from_json(const nlohmann::json& j) {
  nn::Rng::State s{};
  if (!j.is_array() || j.size() != s.size())
    throw std::invalid_argument("checkpoint: bad rng state");
  for (size_t i = 0; i < s.size(); ++i) s[i] = std::stoull(j[i].get<std::string>());
  return s;
}

struct Checkpoint {
  int stage = 0;          // stage index of the last completed epoch
  int epoch = -1;         // epochs completed in that stage - 1 (-1: none)
  std::int64_t step = 0;  // global training steps done
  std::string model, optim;
  nn::Rng::State model_rng{};
  nlohmann::json loader;
  double best = -1e300;
  std::string best_model;
  std::string best_stage;  // where the best score was reached (best_epoch -1: none yet)
  int best_epoch = -1;
  nlohmann::json provenance;  // what the run is made from (see run_provenance)
  int world_size = 1;         // data-parallel ranks of the run (docs/distributed.md)
  std::vector<nn::Rng::State> rank_rngs;  // every rank's dropout RNG (world_size > 1)
  // Inside an epoch (TrainOptions::checkpoint_every_*): `in_epoch` batches of epoch `epoch + 1`
  // of `stage` are done (0: the checkpoint is at an epoch's end), their summed loss, and the file
  // of the state carried from batch to batch (the LM's hidden state; may be empty).
  std::int64_t in_epoch = 0;
  double epoch_loss = 0;
  std::string carry;
};

// ---- checkpoint provenance (issue 20, item 5) ----------------------------------------------
// A checkpoint records digests of what the run is made of: the training and validation data
// (token ids, and labels for a classifier), the vocabulary, and the recipe (stages, batch size,
// sequence length, weight decay, seed). --resume refuses a checkpoint made from anything else:
// resuming with other data would silently reuse weights trained under another vocabulary.
std::string docs_sha256(const std::vector<Doc>& docs, const std::vector<std::int32_t>* labels) {
  io::Sha256 h;
  std::uint64_t n = docs.size();
  h.update(&n, sizeof n);
  for (const auto& d : docs) {
    std::uint64_t len = d.size();
    h.update(&len, sizeof len);
    if (!d.empty()) h.update(d.data(), d.size() * sizeof(d[0]));
  }
  if (labels && !labels->empty()) h.update(labels->data(), labels->size() * sizeof((*labels)[0]));
  return h.hex();
}

nlohmann::json run_provenance(const Vocab& vocab, const std::vector<Doc>& train,
                              const std::vector<Doc>& valid,
                              const std::vector<std::int32_t>* train_labels,
                              const std::vector<std::int32_t>* valid_labels,
                              const std::vector<Stage>& stages, std::size_t bs, std::size_t bptt,
                              const TrainOptions& opt) {
  io::Sha256 v;
  for (const auto& t : vocab.itos()) {
    v.update(t.data(), t.size());
    v.update("\n", 1);
  }
  nlohmann::json recipe;
  recipe["stages"] = nlohmann::json::array();
  for (const auto& st : stages)
    recipe["stages"].push_back({{"name", st.name}, {"epochs", st.epochs}, {"lr", st.lr.str()},
                                {"freeze_to", st.freeze_to}});
  recipe["bs"] = bs;
  recipe["bptt"] = bptt;
  recipe["wd"] = opt.wd;
  recipe["seed"] = std::to_string(opt.seed);
  return {{"train_sha256", docs_sha256(train, train_labels)},
          {"valid_sha256", docs_sha256(valid, valid_labels)},
          {"vocab_sha256", v.hex()},
          {"vocab_size", vocab.size()},
          {"recipe", recipe}};
}

// Throws naming what differs between the checkpoint's provenance and this run's.
void check_provenance(const std::string& ckpt, const nlohmann::json& stored,
                      const nlohmann::json& now, bool quiet) {
  if (stored.is_null()) {
    if (!quiet)
      std::fprintf(stderr, "warning: %s records no provenance (an older version wrote it): "
                           "cannot check that it was made from the same data\n", ckpt.c_str());
    return;
  }
  std::vector<std::string> diffs;
  const std::pair<const char*, const char*> fields[] = {
      {"train_sha256", "the training data"},
      {"valid_sha256", "the validation data"},
      {"vocab_sha256", "the vocabulary"},
      {"recipe", "the recipe (stages, epochs, learning rates, batch size, bptt, wd or seed)"}};
  for (auto [key, what] : fields)
    if (!stored.contains(key) || stored[key] != now[key]) diffs.push_back(what);
  if (diffs.empty()) return;
  std::string list;
  for (std::size_t i = 0; i < diffs.size(); ++i)
    list += (i ? (i + 1 == diffs.size() ? " and " : ", ") : "") + diffs[i];
  throw std::runtime_error(ckpt + ": cannot resume: " + list +
                           " differ from those the checkpoint was made from (hint: resume with "
                           "the same inputs and flags, or start a new run in another -o folder)");
}

// ---- checkpoint confinement (issue 20, item 10) --------------------------------------------
// File names read from checkpoint.json are never trusted as paths: each must be a plain name
// of the kind this code writes (ckpt-<stage>-<epoch>[-b<batch>].safetensors / .optim / .carry,
// best.safetensors),
// and what it names in the run folder must be a regular file (not a symlink out of it).
std::string confined_name(const std::string& ckpt, const std::string& dir, const std::string& field,
                          const std::string& name, const char* suffix, bool may_be_empty) {
  auto bad = [&](const std::string& why) {
    throw std::runtime_error(ckpt + ": field '" + field + "' is not a checkpoint file of the run "
                             "folder (" + why + ")");
  };
  if (name.empty()) {
    if (may_be_empty) return name;
    bad("empty");
  }
  if (name.size() > 255) bad("name too long");
  for (char c : name)
    if (c == '/' || c == '\\' || c == '\0' || static_cast<unsigned char>(c) < 0x20)
      bad("a path, not a file name");
  const std::string sfx = suffix;
  const bool ours = (name.rfind("ckpt-", 0) == 0 || name == "best.safetensors") &&
                    name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0;
  if (!ours) bad("'" + name + "' is not a name this tool writes");
  std::error_code ec;
  auto st = fs::symlink_status(fs::path(dir) / name, ec);
  if (!ec && fs::exists(st) && !fs::is_regular_file(st)) bad("'" + name + "' is not a regular file");
  return name;
}

// The checkpoint's file names, confined to the run folder (throws on anything else).
void confine_checkpoint(const std::string& dir, const Checkpoint& c) {
  const std::string ckpt = (fs::path(dir) / "checkpoint.json").string();
  confined_name(ckpt, dir, "model", c.model, ".safetensors", false);
  confined_name(ckpt, dir, "optim", c.optim, ".optim", false);
  confined_name(ckpt, dir, "best_model", c.best_model, ".safetensors", true);
  confined_name(ckpt, dir, "carry", c.carry, ".carry", true);
}

std::string ckpt_path(const std::string& dir) { return (fs::path(dir) / "checkpoint.json").string(); }

void write_checkpoint(const std::string& dir, const Checkpoint& c, const std::string& kind) {
  nlohmann::json j;
  j["format"] = "inspire-classifier-checkpoint/1";
  j["kind"] = kind;
  j["stage"] = c.stage;
  j["epoch"] = c.epoch;
  j["step"] = c.step;
  j["model"] = c.model;
  j["optim"] = c.optim;
  j["model_rng"] = rng_json(c.model_rng);
  j["loader"] = c.loader;
  j["best"] = c.best;
  j["best_model"] = c.best_model;
  if (c.best_epoch >= 0) {
    j["best_stage"] = c.best_stage;
    j["best_epoch"] = c.best_epoch;
  }
  j["provenance"] = c.provenance;
  if (c.in_epoch > 0) {
    j["in_epoch"] = c.in_epoch;
    j["epoch_loss"] = c.epoch_loss;
    j["carry"] = c.carry;
  }
  if (c.world_size > 1) {
    j["world_size"] = c.world_size;
    j["rank_rngs"] = nlohmann::json::array();
    for (const auto& r : c.rank_rngs) j["rank_rngs"].push_back(rng_json(r));
  }
  std::string s = j.dump(1);
  io::write_file_atomically(ckpt_path(dir), s.data(), s.size());
}

std::optional<Checkpoint> read_checkpoint(const std::string& dir, const std::string& kind) {
  std::ifstream in(ckpt_path(dir));
  if (!in) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(ckpt_path(dir) + ": not valid JSON: " + e.what());
  }
  try {
    if (j.at("format") != "inspire-classifier-checkpoint/1")
      throw std::runtime_error("unknown checkpoint format");
    if (j.at("kind") != kind)
      throw std::runtime_error("checkpoint is for a " + j.at("kind").get<std::string>() +
                               " run, not " + kind);
    Checkpoint c;
    c.stage = j.at("stage");
    c.epoch = j.at("epoch");
    c.step = j.at("step");
    c.model = j.at("model");
    c.optim = j.at("optim");
    c.model_rng = rng_from_json(j.at("model_rng"));
    c.loader = j.at("loader");
    c.best = j.at("best");
    c.best_model = j.at("best_model");
    c.best_stage = j.value("best_stage", std::string());  // absent in older checkpoints
    c.best_epoch = j.value("best_epoch", -1);
    if (j.contains("provenance")) c.provenance = j["provenance"];
    c.in_epoch = j.value("in_epoch", std::int64_t{0});
    if (c.in_epoch < 0) throw std::runtime_error("in_epoch must not be negative");
    if (c.in_epoch > 0) {
      c.epoch_loss = j.at("epoch_loss");
      c.carry = j.at("carry");
    }
    c.world_size = j.value("world_size", 1);
    if (c.world_size > 1) {
      const auto& rr = j.at("rank_rngs");
      if (!rr.is_array() || (int)rr.size() != c.world_size)
        throw std::runtime_error("rank_rngs must hold " + std::to_string(c.world_size) + " states");
      for (const auto& r : rr) c.rank_rngs.push_back(rng_from_json(r));
    }
    return c;
  } catch (const std::exception& e) {
    throw std::runtime_error(ckpt_path(dir) + ": " + e.what());
  }
}

std::vector<std::uint8_t> read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open (checkpoint incomplete?)");
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
}

void remove_quietly(const std::string& dir, const std::string& name) {
  if (name.empty()) return;
  std::error_code ec;
  fs::remove(fs::path(dir) / name, ec);
}

// Trainable flags of the LM from the optimizer's frozen groups (rnn l -> group l, embedding and
// decoder bias -> group n_layers).
void apply_lm_freezing(AwdLstmLM& lm, const nn::Adam& opt) {
  int L = lm.config().n_layers;
  std::vector<bool> rnn(L);
  for (int l = 0; l < L; ++l) rnn[l] = !opt.frozen(l);
  lm.encoder().set_trainable(!opt.frozen(L), rnn);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------
// The documents as a model reads them: a copy, reversed if it reads backwards.
static std::vector<Doc> reading_direction(const std::vector<Doc>& docs, bool backwards) {
  std::vector<Doc> out(docs);
  if (backwards)
    for (auto& d : out) std::reverse(d.begin(), d.end());
  return out;
}

std::pair<double, double> evaluate_language_model(AwdLstmLM& lm, const std::vector<Doc>& docs_in,
                                                  std::size_t bs, std::size_t bptt,
                                                  dist::Communicator* comm) {
  // A forward LM reads docs_in as they are; only a backwards one needs a (reversed) copy.
  std::vector<Doc> reversed;
  if (lm.config().backwards) reversed = reading_direction(docs_in, true);
  const std::vector<Doc>& docs = lm.config().backwards ? reversed : docs_in;
  std::size_t total = 0;
  for (auto& d : docs) total += d.size();
  bs = std::max<std::size_t>(1, std::min(bs, total > 1 ? (total - 1) / 2 : 1));
  LMLoader loader(docs, bs, bptt, /*shuffle=*/false);
  // Data parallel: this rank's rows of every batch (all rows when there are fewer than ranks).
  const bool shard = comm && comm->size() > 1 && bs >= (std::size_t)comm->size();
  const dist::Range mine = shard ? dist::share(bs, comm->rank(), comm->size()) : dist::Range{0, bs};
  lm.reset();
  const Index E = lm.config().emb_sz, V = lm.config().vocab_size;
  // A model on another backend: the buffers and the targets in its memory too.
  nn::Placement* place = lm.encoder().placement();
  nn::Tensor<float> out, ws;
  nn::Tensor<TokenId> tgd;
  out.place(place), ws.place(place);
  ws.resize({V * 64});
  double loss_sum = 0;
  std::int64_t correct = 0, n = 0;
  LMBatch b, part;
  loader.begin_epoch();
  while (loader.next(b)) {
    if (shard) {
      const std::size_t sl = b.seq_len;
      part.bs = mine.size();
      part.seq_len = sl;
      part.x.assign(b.x.begin() + mine.begin * sl, b.x.begin() + mine.end * sl);
      part.y.assign(b.y.begin() + mine.begin * sl, b.y.begin() + mine.end * sl);
      std::swap(b, part);
    }
    Index rows = (Index)(b.bs * b.seq_len);
    nn::CView<TokenId> ids(b.x.data(), {(Index)b.bs, (Index)b.seq_len});
    const nn::CView<TokenId> tg = nn::placed::upload_in(place, tgd, nn::CView<TokenId>(b.y.data(), {rows}));
    out.resize({(Index)b.bs, (Index)b.seq_len, E});
    lm.encoder().infer(ids, out.view());
    auto r = lm.encoder().backend().f32().lm_softmax_ce_forward(
        out.view().reshape({rows, E}), lm.encoder().embedding(), lm.decoder_bias(), tg, ws.view(), 64);
    loss_sum += r.loss * rows;
    correct += r.correct;
    n += rows;
  }
  lm.reset();
  if (shard) {
    double s[3] = {loss_sum, (double)correct, (double)n};
    comm->allreduce_sum(s, 3);
    loss_sum = s[0], correct = (std::int64_t)s[1], n = (std::int64_t)s[2];
  }
  return {n ? loss_sum / n : 0.0, n ? (double)correct / n : 0.0};
}

// ---------------------------------------------------------------------------------------------
// The generic driver: stages × epochs, one-cycle, validation, checkpoints, resume
// ---------------------------------------------------------------------------------------------
namespace {

struct Hooks {
  std::string kind;                  // "lm" | "classifier" (checked on resume)
  nlohmann::json provenance;         // data / vocab / recipe digests (checked on resume)
  std::string title;                 // plot title
  int n_groups = 0;
  std::int64_t iters_per_epoch = 0;
  nn::Adam* adam = nullptr;
  nn::Rng* rng = nullptr;
  std::function<void(const Stage&)> set_frozen;        // after adam.freeze_to
  std::function<void()> begin_epoch;                   // reset state, loader.begin_epoch()
  // One batch: returns (loss, tokens); false when the epoch is over.
  std::function<bool(double& loss, long& tokens)> train_batch;
  // Validation metrics; "score" (higher is better) selects the best epoch.
  std::function<std::map<std::string, double>()> evaluate;
  std::function<nlohmann::json()> loader_state;
  std::function<void(const nlohmann::json&)> restore_loader;
  std::function<void(const std::string&)> save_model;
  std::function<void(const std::string&)> load_model;
  // The state a run carries from one batch to the next inside an epoch (the LM's hidden state),
  // for checkpoints inside an epoch; empty where there is none (the classifier's batches).
  // save_carry: this rank's rows; merge_carry (rank 0): the ranks' parts, in rank order, as
  // the whole batch's; load_carry: takes this rank's rows from the whole batch's.
  std::function<std::vector<std::uint8_t>()> save_carry;
  std::function<std::vector<std::uint8_t>(const std::vector<std::string>&)> merge_carry;
  std::function<void(const std::vector<std::uint8_t>&)> load_carry;
  // Data parallelism (docs/distributed.md): the flat gradient arena and this rank's share of
  // the global batch (rows_r / bs: the weight of its gradient and loss in the average).
  std::function<nn::View<float>()> grads;
  double share = 1.0;
};

struct DriverResult {
  std::int64_t steps = 0;
  std::map<std::string, double> last;
  double best = -1e300;
  std::string best_stage;
  int best_epoch = -1;
};

DriverResult run_stages(const std::vector<Stage>& stages, const TrainOptions& opt, Hooks& h) {
  if (opt.out_dir.empty()) throw std::invalid_argument("train: no output directory");
  if (stages.empty()) throw std::invalid_argument("train: no stages");
  dist::Communicator& comm = opt.comm ? *opt.comm : dist::world();
  if (comm.rank() == 0) fs::create_directories(opt.out_dir);  // the others only read it (--resume)
  auto in_dir = [&](const std::string& f) { return (fs::path(opt.out_dir) / f).string(); };
  nn::Adam& adam = *h.adam;
  const bool lead = comm.rank() == 0, parallel = comm.size() > 1;
  if (opt.checkpoint_every_steps < 0 || !(opt.checkpoint_every_s >= 0) ||
      !std::isfinite(opt.checkpoint_every_s))
    throw std::invalid_argument("train: the checkpoint interval must be a number of steps or "
                                "seconds >= 0 (0: at epoch ends only)");
  const bool inside_ckpts = opt.checkpoint_every_steps > 0 || opt.checkpoint_every_s > 0;
  const bool quiet = opt.quiet || !lead;  // rank 0 alone prints
  dist::Communicator* gcomm = &comm;      // the gradients' communicator (NCCL for GPU memory)
  if (parallel && comm.memory() != adam.backend().memory())
    gcomm = &dist::gradient_communicator(adam.backend().memory());
  Curves curves;
  Checkpoint ck;
  DriverResult res;

  int start_stage = 0, start_epoch = 0;
  bool resume_inside = false;  // the checkpoint lies inside epoch start_epoch of start_stage
  std::vector<std::uint8_t> carry;
  if (opt.resume) {
    auto c = read_checkpoint(opt.out_dir, h.kind);
    if (!c) throw std::runtime_error(ckpt_path(opt.out_dir) + ": no checkpoint to resume from");
    ck = *c;
    confine_checkpoint(opt.out_dir, ck);
    check_provenance(ckpt_path(opt.out_dir), ck.provenance, h.provenance, quiet);
    if (ck.world_size != comm.size())
      throw std::runtime_error(
          ckpt_path(opt.out_dir) + ": written by a run of " + std::to_string(ck.world_size) +
          " rank(s), this run has " + std::to_string(comm.size()) + ": resume with the same rank "
          "count (" + (ck.world_size == 1 ? std::string("without mpirun") : "mpirun -np " +
          std::to_string(ck.world_size)) + "); the batch shares and dropout streams depend on it");
    if (ck.stage < 0 || ck.stage >= (int)stages.size())
      throw std::runtime_error(ckpt_path(opt.out_dir) + ": stage " + std::to_string(ck.stage) +
                               " does not exist in this recipe");
    h.load_model(in_dir(ck.model));
    adam.freeze_to(stages[ck.stage].freeze_to);
    adam.load_state(read_binary(in_dir(ck.optim)));
    h.rng->set_state(parallel ? ck.rank_rngs.at((std::size_t)comm.rank()) : ck.model_rng);
    h.restore_loader(ck.loader);
    start_stage = ck.stage;
    start_epoch = ck.epoch + 1;
    resume_inside = ck.in_epoch > 0;
    if (resume_inside) {  // inside epoch start_epoch: the loader stands at batch in_epoch
      const auto bad = [&](const std::string& why) {
        throw std::runtime_error(ckpt_path(opt.out_dir) + ": a checkpoint inside an epoch " + why);
      };
      if (start_epoch >= stages[ck.stage].epochs) bad("of an epoch the stage does not have");
      if (ck.in_epoch >= h.iters_per_epoch)
        bad("at batch " + std::to_string(ck.in_epoch) + " of an epoch of " +
            std::to_string(h.iters_per_epoch) + " batches");
      if (LoaderState::from_json(h.loader_state()).batch != (std::uint64_t)ck.in_epoch)
        bad("whose loader is not at batch " + std::to_string(ck.in_epoch));
      if (ck.carry.empty() != !h.save_carry)
        bad(h.save_carry ? "without the state this run carries from batch to batch (carry)"
                         : "with a carried state this run has none of");
      if (!ck.carry.empty()) carry = read_binary(in_dir(ck.carry));
    } else if (start_epoch >= stages[ck.stage].epochs) {
      start_stage++, start_epoch = 0;
    }
    if (fs::exists(in_dir("curves.csv"))) curves = Curves::read_csv(in_dir("curves.csv"));
    res.best = ck.best;
    res.best_stage = ck.best_stage;  // a resumed run reports where its best epoch was
    res.best_epoch = ck.best_epoch;
    if (!quiet) {
      if (resume_inside)
        std::fprintf(stderr, "resuming from %s: %s epoch %d at batch %lld of %lld (step %lld)\n",
                     ckpt_path(opt.out_dir).c_str(), stages[ck.stage].name.c_str(),
                     start_epoch + 1, (long long)ck.in_epoch, (long long)h.iters_per_epoch,
                     (long long)ck.step);
      else
        std::fprintf(stderr, "resuming from %s: after %s epoch %d (step %lld)\n",
                     ckpt_path(opt.out_dir).c_str(), stages[ck.stage].name.c_str(), ck.epoch + 1,
                     (long long)ck.step);
    }
  }
  // Writes the checkpoint files, then the pointer, then removes the previous checkpoint's files.
  // `in_epoch` > 0: inside epoch e (its batches done so far, their summed loss); else after it.
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_ckpt = Clock::now();
  auto write_ckpt = [&](int s, int e, std::int64_t step_now, std::int64_t in_epoch,
                        double epoch_loss) {
    const std::string tag = stages[s].name + "-" + std::to_string(e + 1) +
                            (in_epoch > 0 ? "-b" + std::to_string(in_epoch) : std::string());
    Checkpoint prev = ck;
    ck.stage = s;
    ck.epoch = in_epoch > 0 ? e - 1 : e;
    ck.step = step_now;
    ck.model = "ckpt-" + tag + ".safetensors";
    ck.optim = "ckpt-" + tag + ".optim";
    ck.in_epoch = in_epoch;
    ck.epoch_loss = in_epoch > 0 ? epoch_loss : 0.0;
    ck.carry = in_epoch > 0 && h.save_carry ? "ckpt-" + tag + ".carry" : std::string();
    ck.model_rng = h.rng->state();
    ck.loader = h.loader_state();
    ck.world_size = comm.size();
    ck.rank_rngs.clear();
    if (parallel) {  // every rank's dropout RNG, for an exact --resume
      const nn::Rng::State mine = h.rng->state();
      auto all = comm.gather(std::string((const char*)mine.data(), sizeof mine), 0);
      for (const auto& a : all) {
        nn::Rng::State r{};
        if (a.size() != sizeof r) throw std::runtime_error("checkpoint: bad RNG state from a rank");
        std::memcpy(r.data(), a.data(), sizeof r);
        ck.rank_rngs.push_back(r);
      }
    }
    // The carried state: each rank holds its rows; rank 0 writes the whole batch's.
    std::vector<std::uint8_t> cb;
    if (!ck.carry.empty()) {
      cb = h.save_carry();
      if (parallel) {
        auto parts = comm.gather(std::string(cb.begin(), cb.end()), 0);
        cb = lead ? h.merge_carry(parts) : std::vector<std::uint8_t>{};
      }
    }
    // The model, optimizer state and RNG streams are identical on every rank (or gathered):
    // rank 0 alone writes.
    if (lead) {
      h.save_model(in_dir(ck.model));
      auto os = adam.save_state();
      io::write_file_atomically(in_dir(ck.optim), os.data(), os.size());
      if (!ck.carry.empty()) io::write_file_atomically(in_dir(ck.carry), cb.data(), cb.size());
    }
    return prev;
  };
  // After the pointer names the new files: the previous checkpoint's files go.
  auto drop_prev = [&](const Checkpoint& prev) {
    if (!lead) return;
    for (auto [was, now] : {std::pair{&prev.model, &ck.model}, std::pair{&prev.optim, &ck.optim},
                            std::pair{&prev.carry, &ck.carry}})
      if (*was != *now) remove_quietly(opt.out_dir, *was);
  };

  ck.provenance = h.provenance;
  std::int64_t step = ck.step;
  bool stop = false;
  for (int s = start_stage; s < (int)stages.size() && !stop; ++s) {
    const Stage& st = stages[s];
    // A new stage: fastai's freeze_to clears the optimizer state. When resuming in the middle
    // of a stage, the state was restored above instead.
    bool resumed_mid_stage = opt.resume && s == start_stage && (start_epoch > 0 || resume_inside);
    if (!resumed_mid_stage) adam.freeze_to(st.freeze_to);
    h.set_frozen(st);
    // The part of the gradient arena this stage all-reduces: the span of the trainable
    // parameters' gradients (a frozen stage reduces less: the classifier's first stage only its
    // head). The whole arena if a gradient lies outside it.
    float* red_lo = nullptr;
    std::size_t red_n = 0;
    if (parallel) {
      const nn::View<float> g = h.grads();
      float *lo = g.data + g.numel(), *hi = g.data;
      bool inside = true;
      for (const auto& p : adam.params()) {
        if (adam.frozen(p.group) || p.grad.numel() == 0) continue;
        inside &= p.grad.data >= g.data && p.grad.data + p.grad.numel() <= g.data + g.numel();
        lo = std::min(lo, p.grad.data);
        hi = std::max(hi, p.grad.data + p.grad.numel());
      }
      if (!inside) lo = g.data, hi = g.data + g.numel();
      red_lo = lo;
      red_n = hi > lo ? (std::size_t)(hi - lo) : 0;
    }
    nn::OneCycle sched(st.lr, h.n_groups);
    const std::int64_t n_iter = h.iters_per_epoch;
    for (int e = (s == start_stage ? start_epoch : 0); e < st.epochs && !stop; ++e) {
      double epoch_loss = 0;
      std::int64_t it = 0;
      if (resume_inside) {  // the loader stands where the checkpoint was taken: no new epoch
        if (h.load_carry) h.load_carry(carry);
        it = ck.in_epoch;
        epoch_loss = ck.epoch_loss;
      } else {
        h.begin_epoch();
      }
      char label[96];
      std::snprintf(label, sizeof label, "%s epoch %d/%d", st.name.c_str(), e + 1, st.epochs);
      Progress prog(label, (long)n_iter, stderr, quiet, opt.progress_interval_s);
      if (resume_inside) prog.resume_at((long)it);
      resume_inside = false;
      for (;;) {
        sched.apply(adam, nn::one_cycle_position(e, std::min(it, n_iter - 1), n_iter, st.epochs));
        adam.zero_grad();
        double loss = 0;
        long tokens = 0;
        if (!h.train_batch(loss, tokens)) break;
        if (parallel) {  // the global loss and token count (every rank then agrees on them)
          double red[2] = {loss * h.share, (double)tokens};
          comm.allreduce_sum(red, 2);
          loss = red[0];
          tokens = (long)red[1];
        }
        if (!std::isfinite(loss))
          throw std::runtime_error("training diverged: loss is " + std::to_string(loss) +
                                   " at step " + std::to_string(step) +
                                   " (hint: lower the learning rate)");
        // One all-reduce of the flat gradient arena (its trainable span): Σ_r share_r · grad_r.
        if (parallel && red_n > 0) gcomm->allreduce_weighted(red_lo, red_n, h.share);
        adam.step();
        epoch_loss += loss;
        ++it, ++step;
        prog.update(1, tokens, loss);
        if (opt.max_steps > 0 && step >= opt.max_steps) {
          stop = true;
          break;
        }
        bool due = inside_ckpts && it < n_iter &&
                   ((opt.checkpoint_every_steps > 0 && step % opt.checkpoint_every_steps == 0) ||
                    (opt.checkpoint_every_s > 0 &&
                     std::chrono::duration<double>(Clock::now() - last_ckpt).count() >=
                         opt.checkpoint_every_s));
        if (parallel && opt.checkpoint_every_s > 0 && it < n_iter) {  // rank 0's clock decides
          std::uint8_t d = due;
          comm.broadcast(&d, 1, 0);
          due = d != 0;
        }
        if (due) {
          const Checkpoint prev = write_ckpt(s, e, step, it, epoch_loss);
          if (lead) write_checkpoint(opt.out_dir, ck, h.kind);
          drop_prev(prev);
          last_ckpt = Clock::now();
        }
        if (opt.on_step) opt.on_step(step);
      }
      prog.finish();
      auto m = h.evaluate();
      m["train_loss"] = it ? epoch_loss / it : 0.0;
      if (!quiet) {
        std::string line = st.name + " epoch " + std::to_string(e + 1) + "/" +
                           std::to_string(st.epochs) + ":";
        for (auto& kv : m) {
          if (kv.first == "score") continue;
          char b[64];
          std::snprintf(b, sizeof b, " %s %.4f", kv.first.c_str(), kv.second);
          line += b;
        }
        std::fprintf(stderr, "%s (%.0fs)\n", line.c_str(), prog.elapsed_s());
      }
      auto logged = m;
      logged.erase("score");
      curves.add({(double)step, st.name, logged});
      res.last = m;

      // ---- checkpoint: files first, the pointer last ----
      const Checkpoint prev = write_ckpt(s, e, step, 0, 0.0);
      auto sc = m.find("score");
      if (sc != m.end() && sc->second > ck.best) {
        ck.best = sc->second;
        if (lead) h.save_model(in_dir("best.safetensors"));
        res.best_stage = ck.best_stage = st.name;
        res.best_epoch = ck.best_epoch = e;
      }
      res.best = ck.best;
      if (lead) {
        curves.write_csv(in_dir("curves.csv"));
        curves.write_svg(in_dir("curves.svg"), h.title);
        write_checkpoint(opt.out_dir, ck, h.kind);
      }
      drop_prev(prev);
      last_ckpt = Clock::now();
      // After the checkpoint: a callback that throws here behaves like a kill after this epoch.
      if (opt.on_epoch) opt.on_epoch(st.name, e, m);
    }
  }
  res.steps = step;
  return res;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LM training
// ---------------------------------------------------------------------------------------------
LmResult train_language_model(AwdLstmLM& lm, const Vocab& vocab, const std::vector<Doc>& train,
                              const std::vector<Doc>& valid, std::size_t bs, std::size_t bptt,
                              const std::vector<Stage>& stages, const TrainOptions& opt) {
  const int L = lm.config().n_layers;
  std::vector<nn::Param> params = lm_params(lm);
  nn::AdamHyper hyper;
  hyper.wd = opt.wd;
  nn::Adam adam(params, L + 1, hyper);
  adam.set_backend(lm.encoder().backend());
  // A backwards LM learns on every document reversed (fastai's backwards=True).
  LMLoader loader(reading_direction(train, lm.config().backwards), bs, bptt, /*shuffle=*/true,
                  opt.seed);
  // Data parallelism: every rank draws the same batches and takes its rows (stream rows are
  // contiguous text: a rank keeps its rows' hidden state from batch to batch); its dropout RNG
  // is derived from the seed and its rank (rank 0's = one process's).
  dist::Communicator& comm = opt.comm ? *opt.comm : dist::world();
  const dist::Range rows = dist::share(bs, comm.rank(), comm.size());
  if (rows.size() == 0)
    throw std::invalid_argument("language model: a batch of " + std::to_string(bs) +
                                " rows cannot be shared by " + std::to_string(comm.size()) +
                                " ranks (raise --bs to at least the rank count)");
  nn::Rng rng(dist::rank_seed(opt.seed, comm.rank()) ^ 0x5eedULL);
  AwdLstmCache<float> cache;
  LMBatch b, mine;

  Hooks h;
  h.kind = "lm";
  h.provenance = run_provenance(vocab, train, valid, nullptr, nullptr, stages, bs, bptt, opt);
  h.title = "language model";
  h.n_groups = L + 1;
  h.iters_per_epoch = (std::int64_t)loader.n_batches();
  h.adam = &adam;
  h.rng = &rng;
  h.set_frozen = [&](const Stage&) { apply_lm_freezing(lm, adam); };
  h.begin_epoch = [&]() {
    lm.reset();
    loader.begin_epoch();
  };
  h.grads = [&]() { return lm.grads(); };
  h.share = (double)rows.size() / (double)bs;
  h.train_batch = [&](double& loss, long& tokens) {
    if (!loader.next(b)) return false;
    const LMBatch* use = &b;
    if (comm.size() > 1) {  // this rank's rows [rows.begin, rows.end)
      const std::size_t sl = b.seq_len;
      mine.bs = rows.size();
      mine.seq_len = sl;
      mine.x.assign(b.x.begin() + rows.begin * sl, b.x.begin() + rows.end * sl);
      mine.y.assign(b.y.begin() + rows.begin * sl, b.y.begin() + rows.end * sl);
      use = &mine;
    }
    nn::CView<TokenId> ids(use->x.data(), {(Index)use->bs, (Index)use->seq_len});
    nn::CView<TokenId> tg(use->y.data(), {(Index)use->bs, (Index)use->seq_len});
    ForwardOptions fo;
    fo.training = true;
    fo.rng = &rng;
    loss = lm.train_step(ids, tg, cache, fo);
    tokens = (long)(use->bs * use->seq_len);
    return true;
  };
  h.evaluate = [&]() {
    auto [vl, va] = evaluate_language_model(lm, valid, bs, bptt, &comm);
    return std::map<std::string, double>{{"valid_loss", vl},
                                         {"valid_accuracy", va},
                                         {"valid_perplexity", std::exp(vl)},
                                         {"score", -vl}};
  };
  h.loader_state = [&]() { return loader.state().to_json(); };
  h.restore_loader = [&](const nlohmann::json& j) { loader.restore(LoaderState::from_json(j)); };
  h.save_model = [&](const std::string& path) {
    auto contents = lm_bundle(lm, vocab, opt.provenance);
    contents.extra_metadata = opt.metadata;
    io::write_bundle(path, contents);
  };
  h.load_model = [&](const std::string& path) { load_lm_weights(lm, io::Bundle::load(path)); };
  // Inside an epoch the LM carries each row's hidden state (h, c of every layer) from one
  // window to the next: "ICCARRY1", rows and layers (int64), then per layer h and c as float32
  // [rows, hidden] (this machine's byte order; a checkpoint is read back where it was written).
  // A rank saves its rows; the file holds the whole batch's, the ranks' rows in rank order.
  const auto carry_size = [&](std::int64_t n_rows) {
    std::size_t want = 24;
    for (int l = 0; l < L; ++l)
      want += 2 * sizeof(float) * (std::size_t)(n_rows * lm.config().layer_hidden(l));
    return want;
  };
  // The rows of a carry file (throws naming what is wrong).
  const auto carry_rows = [&](const std::uint8_t* p, std::size_t size) {
    const auto bad = [](const std::string& why) {
      throw std::runtime_error("checkpoint: the carried LM state " + why);
    };
    std::int64_t n_rows = 0, layers = 0;
    if (size < 24 || std::memcmp(p, "ICCARRY1", 8) != 0) bad("is not an ICCARRY1 file");
    std::memcpy(&n_rows, p + 8, 8);
    std::memcpy(&layers, p + 16, 8);
    if (layers != L) bad("has " + std::to_string(layers) + " layers, the model " + std::to_string(L));
    if (n_rows < 0 || n_rows > (std::int64_t)bs)
      bad("has " + std::to_string(n_rows) + " rows, the batch " + std::to_string(bs));
    if (size != carry_size(n_rows))
      bad("is " + std::to_string(size) + " bytes, " + std::to_string(carry_size(n_rows)) +
          " expected");
    return n_rows;
  };
  const auto carry_header = [](std::vector<std::uint8_t>& out, std::int64_t n_rows, std::int64_t layers) {
    out.insert(out.end(), "ICCARRY1", "ICCARRY1" + 8);
    const auto* r = reinterpret_cast<const std::uint8_t*>(&n_rows);
    out.insert(out.end(), r, r + 8);
    const auto* l = reinterpret_cast<const std::uint8_t*>(&layers);
    out.insert(out.end(), l, l + 8);
  };
  h.save_carry = [&]() {
    const AwdLstmState<float>& st = lm.encoder().state();
    std::vector<std::uint8_t> out;
    carry_header(out, st.batch(), (std::int64_t)st.h.size());
    for (std::size_t l = 0; l < st.h.size(); ++l)
      for (const auto* t : {&st.h[l], &st.c[l]}) {
        const std::size_t nb = sizeof(float) * (std::size_t)t->numel();
        if (nn::Placement* place = t->placement()) {  // the state is in the backend's memory
          const std::size_t at = out.size();
          out.resize(at + nb);
          place->download(out.data() + at, t->data(), nb);
        } else {
          const auto* b = reinterpret_cast<const std::uint8_t*>(t->data());
          out.insert(out.end(), b, b + nb);
        }
      }
    return out;
  };
  h.merge_carry = [&](const std::vector<std::string>& parts) {
    std::vector<std::int64_t> n(parts.size());
    std::int64_t total = 0;
    for (std::size_t r = 0; r < parts.size(); ++r)
      total += n[r] = carry_rows(reinterpret_cast<const std::uint8_t*>(parts[r].data()), parts[r].size());
    std::vector<std::uint8_t> out;
    carry_header(out, total, L);
    std::vector<std::size_t> at(parts.size(), 24);
    for (int l = 0; l < L; ++l)
      for (int k = 0; k < 2; ++k)  // h, then c
        for (std::size_t r = 0; r < parts.size(); ++r) {
          const std::size_t bytes = sizeof(float) * (std::size_t)(n[r] * lm.config().layer_hidden(l));
          const auto* p = reinterpret_cast<const std::uint8_t*>(parts[r].data()) + at[r];
          out.insert(out.end(), p, p + bytes);
          at[r] += bytes;
        }
    return out;
  };
  h.load_carry = [&](const std::vector<std::uint8_t>& in) {
    const std::int64_t n_rows = carry_rows(in.data(), in.size());
    if (n_rows != (std::int64_t)bs)
      throw std::runtime_error("checkpoint: the carried LM state has " + std::to_string(n_rows) +
                               " rows, the batch " + std::to_string(bs));
    lm.reset();
    lm.encoder().resize_state((Index)rows.size());
    AwdLstmState<float>& st = lm.encoder().state();
    std::size_t at = 24;
    for (int l = 0; l < L; ++l) {
      const std::size_t H = (std::size_t)lm.config().layer_hidden(l), row = sizeof(float) * H;
      for (auto* t : {&st.h[l], &st.c[l]}) {  // this rank's rows of the whole batch's
        if (nn::Placement* place = t->placement())
          place->upload(t->data(), in.data() + at + rows.begin * row, rows.size() * row);
        else
          std::memcpy(t->data(), in.data() + at + rows.begin * row, rows.size() * row);
        at += (std::size_t)n_rows * row;
      }
    }
  };

  auto r = run_stages(stages, opt, h);
  LmResult res;
  res.steps = r.steps;
  res.valid_loss = r.last.count("valid_loss") ? r.last["valid_loss"] : 0;
  res.valid_accuracy = r.last.count("valid_accuracy") ? r.last["valid_accuracy"] : 0;
  res.model_path = (fs::path(opt.out_dir) / "lm.safetensors").string();
  if (comm.rank() == 0) h.save_model(res.model_path);
  comm.barrier();  // the other ranks may read it next (the classifier stage)
  return res;
}

// ---------------------------------------------------------------------------------------------
// Classifier training
// ---------------------------------------------------------------------------------------------
std::vector<int> classify_documents(const ClassifierModel& m, const std::vector<Doc>& docs,
                                    dist::Communicator* comm) {
  if (comm && comm->size() > 1 && docs.size() >= (std::size_t)comm->size()) {
    // Each rank its contiguous share (documents are classified one by one: the same result).
    const dist::Range r = dist::share(docs.size(), comm->rank(), comm->size());
    std::vector<Doc> part(docs.begin() + (std::ptrdiff_t)r.begin, docs.begin() + (std::ptrdiff_t)r.end);
    std::vector<int> mine = classify_documents(m, part, nullptr);
    std::vector<int> all(docs.size(), 0);
    auto got = comm->gather(std::string((const char*)mine.data(), mine.size() * sizeof(int)), 0);
    if (comm->rank() == 0) {
      std::size_t at = 0;
      for (const auto& g : got) {
        if (at * sizeof(int) + g.size() > all.size() * sizeof(int))
          throw std::runtime_error("classify_documents: a rank sent too many predictions");
        std::memcpy(all.data() + at, g.data(), g.size());
        at += g.size() / sizeof(int);
      }
    }
    comm->broadcast(all.data(), all.size() * sizeof(int), 0);
    return all;
  }
  std::vector<int> pred(docs.size(), 0);
  if (docs.empty()) return pred;
  const Index C = m.config().n_classes;
  nn::Tensor<float> logits({(Index)docs.size(), C});
  m.infer_batch(docs, logits.view());
  for (size_t i = 0; i < docs.size(); ++i) {
    int best = 0;
    for (Index c = 1; c < C; ++c)
      if (logits[(Index)i * C + c] > logits[(Index)i * C + best]) best = (int)c;
    pred[i] = best;
  }
  return pred;
}

io::BundleContents classifier_bundle(ClassifierModel& m, const Vocab& vocab,
                                     const std::string& provenance) {
  io::BundleContents b;
  b.config = m.config();
  b.vocab = vocab.itos();
  b.labels = std::vector<std::string>(kLabels.begin(), kLabels.end());
  b.temperature = kTemperature;
  b.provenance = provenance;
  m.sync_to_host();  // a model on another backend: its current values
  b.tensors = bundle_tensors(m.tensors(), "classifier", "classifier");
  return b;
}

ModelConfig classifier_config_over(const ModelConfig& encoder, std::int64_t vocab_size,
                                   double drop_mult) {
  ModelConfig cc = ModelConfig::classifier(vocab_size, drop_mult);
  cc.emb_sz = encoder.emb_sz;
  cc.n_hid = encoder.n_hid;
  cc.n_layers = encoder.n_layers;
  cc.backwards = encoder.backwards;
  return cc;
}

void load_encoder_into_classifier(ClassifierModel& m, const io::Bundle& src) {
  const auto& c = src.config();
  const auto& a = m.config();
  // A classifier gives its encoder (its head is not used); an ensemble has several, so which one
  // is ambiguous: `ensemble --member K` extracts one.
  if (c.kind == "classifier" && src.members().size() > 1)
    throw std::invalid_argument("the bundle is an ensemble of " + std::to_string(src.members().size()) +
                                " classifiers; extract one with `ensemble --member K`");
  if (c.vocab_size != a.vocab_size || c.emb_sz != a.emb_sz || c.n_hid != a.n_hid ||
      c.n_layers != a.n_layers)
    throw std::invalid_argument("encoder sizes in the bundle (vocab " +
                                std::to_string(c.vocab_size) + ", emb " + std::to_string(c.emb_sz) +
                                ", hid " + std::to_string(c.n_hid) + ", layers " +
                                std::to_string(c.n_layers) + ") do not match the classifier");
  load_tensors(m.encoder().tensors(), "encoder", src);
}

namespace {
// Every tensor's values (host views, BatchNorm statistics included) from `from` into `to`, two
// classifiers of the same config.
void copy_weights(ClassifierModel& to, ClassifierModel& from) {
  auto dst = to.tensors();
  auto src = from.tensors();
  for (std::size_t i = 0; i < dst.size(); ++i) dst[i].value.copy_from(src[i].value);
}
}  // namespace

ClassifierResult train_classifier(ClassifierModel& m, const Vocab& vocab, const std::vector<Doc>& train,
                            const std::vector<std::int32_t>& train_labels,
                            const std::vector<Doc>& valid,
                            const std::vector<std::int32_t>& valid_labels, std::size_t bs,
                            const std::vector<Stage>& stages, const TrainOptions& opt) {
  const int G = m.n_groups();
  std::vector<nn::Param> params = classifier_params(m);
  nn::AdamHyper hyper;
  hyper.wd = opt.wd;
  nn::Adam adam(params, G, hyper);
  adam.set_backend(m.backend());
  if (valid.empty() && !opt.no_validation)
    throw std::invalid_argument("classifier: no validation documents (train-classifier --fit-all trains without)");
  // A backwards model trains on reversed documents; validation (infer) reverses by itself.
  ClassifierLoader loader(reading_direction(train, m.config().backwards), train_labels, bs,
                    /*train=*/true, opt.seed, (std::size_t)m.config().bptt);
  dist::Communicator& comm = opt.comm ? *opt.comm : dist::world();
  const dist::Range rows = dist::share(bs, comm.rank(), comm.size());
  if (rows.size() == 0)
    throw std::invalid_argument("classifier: a batch of " + std::to_string(bs) +
                                " documents cannot be shared by " + std::to_string(comm.size()) +
                                " ranks (raise --bs to at least the rank count)");
  // BatchNorm over the global batch (SyncBatchNorm): N ranks train as one process does.
  BatchSync sync;
  sync.sum = [&](double* d, std::size_t n) { comm.allreduce_sum(d, n); };
  sync.global_bs = (Index)bs;
  sync.share = (double)rows.size() / (double)bs;
  nn::Rng rng(dist::rank_seed(opt.seed, comm.rank()) ^ 0xc1a5ULL);
  ClassifierCache<float> cache;
  ClassifierBatch b;
  std::vector<TokenId> mine_x;
  std::vector<std::int32_t> mine_y;
  std::vector<std::string> labels(kLabels.begin(), kLabels.end());

  Hooks h;
  h.kind = "classifier";
  h.provenance = run_provenance(vocab, train, valid, &train_labels, &valid_labels, stages, bs, 0, opt);
  h.title = "classifier";
  h.n_groups = G;
  h.iters_per_epoch = (std::int64_t)loader.n_batches();
  if (h.iters_per_epoch == 0)
    throw std::invalid_argument("classifier: " + std::to_string(train.size()) +
                                " training documents make no full batch of " + std::to_string(bs) +
                                " (hint: lower --bs)");
  h.adam = &adam;
  h.rng = &rng;
  h.set_frozen = [&](const Stage& st) { m.freeze_to(st.freeze_to); };
  h.begin_epoch = [&]() { loader.begin_epoch(); };
  h.grads = [&]() { return m.grads(); };
  h.share = (double)rows.size() / (double)bs;
  h.train_batch = [&](double& loss, long& tokens) {
    if (!loader.next(b)) return false;
    // This rank's rows of the batch (sorted longest first), padded as in the whole batch but
    // without the leading blocks that are padding in all of them (the first row has the least
    // front padding): the encoder skips a row's chunks before its text anyway, so every row's
    // result is the one of the whole batch.
    const std::size_t r0 = comm.size() > 1 ? rows.begin : 0, nr = comm.size() > 1 ? rows.size() : b.bs;
    const TokenId* x = b.x.data();
    const std::int32_t* y = b.y.data();
    std::size_t len = b.len;
    if (comm.size() > 1) {
      const std::size_t cut = b.front_pad[r0];
      len = b.len - cut;
      mine_x.resize(nr * len);
      for (std::size_t r = 0; r < nr; ++r)
        std::copy_n(b.x.begin() + (r0 + r) * b.len + cut, len, mine_x.begin() + r * len);
      // Likewise a last chunk that is end padding in all of them (the whole batch's longest row
      // may end there): the encoder would skip it for each of these rows. (For documents longer
      // than max_len - bptt tokens this can shift which chunk is the first kept one by one.)
      const std::size_t chunk = (std::size_t)m.config().bptt;
      const TokenId pad = (TokenId)m.config().pad_idx;
      for (;;) {
        const std::size_t last = (len - 1) / chunk * chunk;
        bool all_pad = last > 0;
        for (std::size_t r = 0; r < nr && all_pad; ++r) all_pad = mine_x[r * len + last] == pad;
        if (!all_pad) break;
        for (std::size_t r = 1; r < nr; ++r)  // repack rows to the shorter length
          std::copy_n(mine_x.begin() + r * len, last, mine_x.begin() + r * last);
        len = last;
      }
      mine_y.assign(b.y.begin() + r0, b.y.begin() + r0 + nr);
      x = mine_x.data();
      y = mine_y.data();
    }
    nn::CView<TokenId> ids(x, {(Index)nr, (Index)len});
    nn::CView<std::int32_t> tg(y, {(Index)nr});
    ForwardOptions fo;
    fo.training = true;
    fo.rng = &rng;
    fo.sync = comm.size() > 1 ? &sync : nullptr;
    loss = m.train_step(ids, tg, cache, fo);
    tokens = 0;
    for (std::size_t r = r0; r < r0 + nr; ++r) tokens += (long)b.lengths[r];
    return true;
  };
  // A model on another backend (it trains there, it does not serve): validation runs on a CPU
  // copy of its current values, so it scores as the bundle it writes will.
  std::optional<ClassifierModel> host_copy;
  h.evaluate = [&]() {
    if (valid.empty()) return std::map<std::string, double>{};  // opt.no_validation
    std::vector<int> gold(valid_labels.begin(), valid_labels.end());
    const ClassifierModel* scorer = &m;
    if (m.placement()) {
      if (!host_copy) host_copy.emplace(m.config());
      m.sync_to_host();
      copy_weights(*host_copy, m);
      host_copy->encoder().reset();
      scorer = &*host_copy;
    }
    auto rep = classification_report(gold, classify_documents(*scorer, valid, &comm), labels);
    return std::map<std::string, double>{{"valid_accuracy", rep.accuracy},
                                         {"valid_macro_f1", rep.macro_f1},
                                         {"score", rep.macro_f1}};
  };
  h.loader_state = [&]() { return loader.state().to_json(); };
  h.restore_loader = [&](const nlohmann::json& j) { loader.restore(LoaderState::from_json(j)); };
  h.save_model = [&](const std::string& path) {
    auto contents = classifier_bundle(m, vocab, opt.provenance);
    contents.extra_metadata = opt.metadata;
    io::write_bundle(path, contents);
  };
  h.load_model = [&](const std::string& path) {
    auto bundle = io::Bundle::load(path);
    auto loaded = ClassifierModel::from_bundle(bundle);
    copy_weights(m, loaded);  // into host views (a model on another backend: uploaded next)
    m.sync_to_device();
  };

  auto r = run_stages(stages, opt, h);
  ClassifierResult res;
  res.steps = r.steps;
  res.valid_accuracy = r.last.count("valid_accuracy") ? r.last["valid_accuracy"] : 0;
  res.valid_macro_f1 = r.last.count("valid_macro_f1") ? r.last["valid_macro_f1"] : 0;
  res.best_macro_f1 = r.best;
  res.best_stage = r.best_stage;
  res.best_epoch = r.best_epoch;
  res.last_model_path = (fs::path(opt.out_dir) / "classifier-last.safetensors").string();
  res.model_path = (fs::path(opt.out_dir) / "classifier.safetensors").string();
  if (comm.rank() == 0) {
    h.save_model(res.last_model_path);
    auto best = fs::path(opt.out_dir) / "best.safetensors";
    if (fs::exists(best))
      fs::copy_file(best, res.model_path, fs::copy_options::overwrite_existing);
    else
      h.save_model(res.model_path);
  }
  comm.barrier();
  return res;
}

}  // namespace ulmfit
