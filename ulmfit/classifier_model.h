// ulmfit/classifier_model.h — fastai 2.7's text classifier (get_text_classifier(AWD_LSTM, ...)).
//
//   SentenceEncoder (spec §4.1): from a zero state (caller-owned, in the cache), run the AWD-LSTM over chunks of `bptt` tokens with the
//     state carried (and resized to the chunk's real batch size: rows whose token at the chunk
//     start is not pad; they must be the first rows, as fastai's front-chunk padding makes them),
//     detached between chunks; keep the outputs of the chunks that lie in the last `max_len`
//     positions, zero-padded back to bs rows.
//   masked_concat_pool (§4.2): [last, max, avg] over non-pad positions → [bs, 3E].
//   PoolingLinearClassifier (§4.3): per block i: BatchNorm1d → Dropout(ps[i]) (absent if 0) →
//     Linear(no bias) → ReLU (not after the last). INSPIRE: [1200 → 50 → 3], ps [0.2, 0.1].
//   loss: mean softmax cross-entropy over the batch.
//
// Training: forward() fills a caller-owned cache, backward() accumulates gradients into the
// trainable parts only (freeze_to: stage 1 head only → no backward through the LSTMs at all;
// stage 2 → through rnn2 within each chunk; ...). Eval-mode forward on a padded batch (BN running
// stats, no dropout) is forward() with ForwardOptions::training = false.
//
// Serving: infer() runs ONE document (batch 1, no padding) in eval mode through its own
// per-thread workspace: const, thread-safe, nothing allocated after the first call of a thread
// (for documents no longer than those seen before). Pooling is streamed: only the running sum /
// max / last of the kept positions are held, never the [T, E] output.
//
// On a backend with its own memory (set_backend, e.g. CUDA) training runs there: parameters,
// BatchNorm running statistics (they live in the parameter arena), gradients, caches and the
// carried state; token ids, the pad mask and targets are uploaded per batch, logits come back.
// tensors() stay host views for files (sync_to_host / sync_to_device, as for the encoder);
// serving (infer*) runs on the CPU only.
//
// Templates over T: float for training/serving, double for finite-difference gradient checks.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/batchnorm.h"
#include "nn/param.h"
#include "nn/rng.h"
#include "nn/tensor.h"
#include "ulmfit/awd_lstm.h"

namespace io {
class Bundle;
}  // namespace io

namespace ulmfit {

// One head block's cache.
template <typename T>
struct HeadBlockCache {
  nn::Tensor<T> x;       // [bs, n_in]  block input (BN input)
  nn::Tensor<T> xhat;    // [bs, n_in]  BN normalised
  nn::Tensor<T> rstd;    // [n_in]
  nn::Tensor<T> bn_out;  // [bs, n_in]  BN output after dropout (Linear input)
  nn::Tensor<T> mask;    // [bs, n_in]  dropout mask (empty: none)
  nn::Tensor<T> y;       // [bs, n_out] Linear output (after ReLU for inner blocks)
};

// Everything one training batch keeps for backward. Reused across batches without reallocation
// while the shapes stay the same.
template <typename T>
struct ClassifierCache {
  Index bs = 0, sl = 0, T_kept = 0;
  bool training = false;
  struct Chunk {
    Index start = 0, len = 0, real_bs = 0, col = 0;  // col: first column in `out`
    bool kept = false;
  };
  std::vector<Chunk> chunks;
  std::vector<AwdLstmCache<T>> enc;  // one per kept chunk (if the encoder trains), else scratch
  AwdLstmState<T> state;             // the encoder's state, carried from chunk to chunk
  AwdLstmWorkspace<T> enc_ws;        // eval-mode chunks run the encoder's serving path
  nn::Tensor<TokenId> chunk_ids;     // [real_bs, len] scratch
  nn::Tensor<T> chunk_out;           // [real_bs, len, E] scratch
  nn::Tensor<T> out;                 // [bs, T_kept, E]
  nn::Tensor<std::uint8_t> pad;      // [bs, T_kept] (the model's memory)
  std::vector<std::uint8_t> pad_host;  // the same, built on the host
  nn::Tensor<std::int32_t> targets;  // train_step's targets, uploaded (another memory only)
  nn::Tensor<T> logits_host;         // train_step's logits on the host
  nn::Tensor<T> pooled;              // [bs, 3E]
  nn::Tensor<std::int32_t> argmax;   // [bs, E]
  std::vector<HeadBlockCache<T>> head;
  nn::Tensor<T> logits;              // [bs, n_classes]
  nn::Tensor<T> dlogits, da, db;     // backward scratch
  nn::Tensor<T> dout;                // [bs, T_kept, E]
  const BatchSync* sync = nullptr;   // the forward's ForwardOptions::sync (SyncBatchNorm)
};

// Per-thread serving workspace (see infer()).
template <typename T>
struct ClassifierWorkspace {
  AwdLstmState<T> state;             // per layer [1, h_l]
  AwdLstmWorkspace<T> enc;           // the encoder's serving buffers
  nn::Tensor<T> y;                   // encoder output of one block
  nn::Tensor<T> sum, mx, last, feat, a, b;
  std::vector<TokenId> reversed;     // a backwards model's document, last token first
  // infer_batch_padded: a block's ids [rows, len], lengths, per-row pooled counts
  std::vector<TokenId> ids;
  std::vector<Index> lengths;
  std::vector<Index> count;
};

template <typename T>
class ClassifierModelT {
 public:
  explicit ClassifierModelT(const ModelConfig& cfg);
  ClassifierModelT(ClassifierModelT&&) noexcept = default;
  ClassifierModelT& operator=(ClassifierModelT&&) noexcept = default;

  const ModelConfig& config() const { return cfg_; }
  AwdLstmEncoderT<T>& encoder() { return enc_; }

  // fastai init: encoder (§2.2), BatchNorm weight 1 / bias 1e-3 / running stats (0, 1),
  // Linear weights U(−1/√fan_in, 1/√fan_in).
  void init(nn::Rng& rng);

  // Every tensor with its fastai key ("0.module.encoder.weight", "0.module.rnns.0....",
  // "1.layers.0.0.weight", ".bias", ".running_mean", ".running_var", "1.layers.0.2.weight", ...),
  // in state_dict order. Buffers (BN running stats) have an empty grad and layer = -2.
  std::vector<NamedTensor<T>> tensors();
  // The same tensors where the ops read them: the device copies after set_backend to a backend
  // with its own memory (the optimizer takes these), else the tensors() views.
  std::vector<NamedTensor<T>> compute_tensors();

  // Whole arenas of trainable values / gradients (zero_grad = grads().zero()).
  nn::View<T> values() { return enc_.values(); }
  nn::View<T> grads() { return enc_.grads(); }

  // fastai freeze_to(n) over the awd_lstm_clas_split groups [embedding, rnn0..rnnL-1, head]:
  // groups >= n (n < 0 counts from the end) get gradients. The head always trains.
  void freeze_to(int n);
  bool group_trainable(int g) const;
  // The number of those groups: embedding, one per LSTM layer, head.
  int n_groups() const { return (int)cfg_.n_layers + 2; }

  // ---- training / eval on a padded batch ----
  // ids [bs, sl] (pad-chunked as §1.7). opt.training: dropout + BN batch stats (bs >= 2), else
  // eval mode. Writes logits [bs, n_classes] (also kept in cache.logits). Resets the encoder.
  void forward(nn::CView<TokenId> ids, nn::View<T> logits, ClassifierCache<T>& cache,
               const ForwardOptions& opt);
  // Backward of the batch in `cache` from dlogits [bs, n_classes]; gradients accumulate into the
  // trainable parts only.
  void backward(ClassifierCache<T>& cache, nn::CView<T> dlogits);
  // forward + mean cross-entropy + backward. targets [bs]. Returns the loss; `correct` (if given)
  // receives the number of argmax hits.
  double train_step(nn::CView<TokenId> ids, nn::CView<std::int32_t> targets,
                    ClassifierCache<T>& cache, const ForwardOptions& opt,
                    Index* correct = nullptr);

  // ---- serving ----
  // One document (batch 1, no padding), eval mode → n_classes logits (T = float only: the
  // array holds the first 3 logits; n_classes must be 3). Thread-safe, per-thread workspace.
  std::array<float, 3> infer(const std::vector<TokenId>& ids) const;
  // Any n_classes, explicit workspace: logits [n_classes].
  void infer(nn::CView<TokenId> ids, nn::View<T> logits, ClassifierWorkspace<T>& ws) const;
  // Several documents, one by one (OpenMP over documents, one workspace per thread);
  // logits [n_docs, n_classes].
  void infer_batch(const std::vector<std::vector<TokenId>>& docs, nn::View<T> logits) const;
  // The same, with up to `group` documents padded into one batch (longest first, so a group
  // holds documents of similar lengths): each LSTM step is then a GEMM over the group's
  // documents, reading W_hh once per step for all of them instead of once per document, and the
  // threads share each group. Every document runs as if alone, up to summation order (logits
  // within ~1e-5 of infer(); the bits can depend on which documents share a group). Backends
  // without padded rows (lstm_infer_takes_lengths) fall back to infer_batch.
  void infer_batch_padded(const std::vector<std::vector<TokenId>>& docs, nn::View<T> logits,
                          Index group = 32) const;
  // The head's input for each document instead of its logits: [last, max, avg] of the last LSTM
  // layer's outputs over the pooled positions (feats [n_docs, 3 * emb_sz]), as
  // infer_batch_padded computes it on the way; the head (and its random init, for a model made
  // from a language model's encoder) plays no part. A document embedding (`embed`).
  void pooled_batch(const std::vector<std::vector<TokenId>>& docs, nn::View<T> feats,
                    Index group = 32) const;
  // Serving precision of the LSTMs' recurrent weights (AwdLstmEncoderT::set_recurrent_precision).
  void set_half_recurrent(bool on) { enc_.set_half_recurrent(on); }
  void set_recurrent_precision(RecurrentPrecision p) { enc_.set_recurrent_precision(p); }
  // The backend every op of the model runs on (the encoder's; default: the CPU).
  // On a backend with its own memory only training runs (serving throws); host tensors are the
  // copies files use: sync_to_host() before reading them, sync_to_device() after writing them.
  void set_backend(nn::Backend& b) { enc_.set_backend(b); }
  nn::Backend& backend() const { return enc_.backend(); }
  nn::Placement* placement() const { return enc_.placement(); }
  void sync_to_host() { enc_.sync_to_host(); }
  void sync_to_device() { enc_.sync_to_device(); }

  // Loads every tensor of a classifier bundle (kind "classifier"); throws io::FormatError /
  // std::invalid_argument naming the tensor on a mismatch. precision f16 / i8 (serving only):
  // the LSTMs' W_hh go straight from the file to half precision / int8 and no float32 copy is
  // kept (AwdLstmEncoderT::adopt_*_recurrent): such a model can infer, not train or export.
  // `member`: which classifier of an ensemble bundle (io::Bundle::members()); 0 for a single one.
  static ClassifierModelT from_bundle(const io::Bundle& bundle, RecurrentPrecision precision,
                                      std::size_t member = 0);
  static ClassifierModelT from_bundle(const io::Bundle& bundle, bool half_recurrent = false,
                                      std::size_t member = 0) {
    return from_bundle(bundle, half_recurrent ? RecurrentPrecision::f16 : RecurrentPrecision::f32,
                       member);
  }

 private:
  void head_forward(ClassifierCache<T>& cache, const ForwardOptions& opt);
  // A head view where the ops read it (enc_.device_of; itself on the CPU).
  nn::View<T> dev(nn::View<T> v) const { return enc_.device_of(v); }
  void require_host(const char* what) const;
  // One group of infer_batch_padded: docs by non-increasing length -> logits [n, C] (head), or
  // their pooled features [n, 3E] (!head).
  void infer_group(const std::vector<const std::vector<TokenId>*>& docs, nn::View<T> out,
                   ClassifierWorkspace<T>& ws, bool head = true) const;
  // infer_batch_padded / pooled_batch: checks every document, then groups of up to `group`
  // documents (longest first) through infer_group, rows back in input order.
  void run_groups(const std::vector<std::vector<TokenId>>& docs, nn::View<T> out, Index group,
                  bool head, const char* what) const;
  // The head on pooled features [bs, 3E] -> logits [bs, C] (eval: batchnorm, linear, ReLU).
  void head_infer(nn::CView<T> feat, nn::View<T> logits, ClassifierWorkspace<T>& ws) const;
  nn::Ops<T>& ops() const { return enc_.backend().template ops<T>(); }

  ModelConfig cfg_;
  AwdLstmEncoderT<T> enc_;
  struct Block {
    Index n_in = 0, n_out = 0;
    double p = 0;
    nn::View<T> bn_w, bn_b, dbn_w, dbn_b, lin_w, dlin_w;  // host views (encoder arenas)
    nn::View<T> running_mean, running_var;  // in the value arena too (their gradients unused)
    nn::Tensor<std::int64_t> num_batches_tracked;  // [1]
  };
  std::vector<Block> blocks_;
  nn::View<T> emb_;  // cached view of the embedding (for const serving)
  int frozen_idx_ = 0;
};

using ClassifierModel = ClassifierModelT<float>;

// fastai Param list (float model; its compute_tensors(), so device views on a device): encoder
// keys "0.module.*" in groups 0 (embedding) and 1..L (rnn l), head parameters "1.layers.*" in
// group L+1 (BatchNorm: do_wd = false). BN running stats are buffers and are not listed.
std::vector<nn::Param> classifier_params(ClassifierModel& m);

}  // namespace ulmfit
