// ulmfit/awd_lstm.h — fastai 2.7's AWD-LSTM encoder and its language-model head (tied decoder).
//
// Encoder (AWD_LSTM.forward, spec §2.4), per forward call on ids [bs, sl]:
//   1. embedding with EmbeddingDropout (mask [V], whole rows; pad row gets no gradient)
//   2. input RNNDropout (mask [bs, E], shared over time)
//   3. for each LSTM layer l: WeightDropout on W_hh (element mask [4h, h], resampled every
//      forward call), LSTM from the state passed in, hidden RNNDropout (mask [bs, h_l]) if not last
//   4. the new state is written back into that state, detached (truncated BPTT at every call
//      boundary)
// The recurrent state is caller-owned (AwdLstmState): forward/infer take it in and give it back.
// ONE encoder forward (encode) serves LM training, classifier training and serving; the
// overloads without a state use a default state the encoder keeps for convenience (the LM's
// batches carry it from window to window). Every op runs on the encoder's nn::Backend.
// LM head (LinearDecoder, §2.5): output RNNDropout (mask [bs, E]) -> logits = dp·Wᵀ + b with W
// the embedding (tied); loss = mean softmax cross-entropy over all bs·sl positions, computed in
// row chunks so that the [bs·sl, V] logits never exist at once.
//
// Templates over T: float for training/serving, double for finite-difference gradient checks.
// Parameter values and gradients live in two arenas owned by the model; gradients ACCUMULATE
// (the tied embedding/decoder weight gets both contributions); zero them once per step.
// Caches are caller-owned (one per in-flight window, e.g. one per classifier chunk).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "nn/backend.h"
#include "nn/lstm.h"
#include "nn/param.h"
#include "nn/rng.h"
#include "nn/tensor.h"

namespace ulmfit {

using TokenId = std::int32_t;
using nn::Index;

// How the LSTMs' recurrent weights (W_hh) are held for serving: float32 (training and the
// reference), IEEE half precision, or int8 with one float scale per row (nn/int8.h). w8a8: W_hh
// and W_ih in int8 and the LSTM's activations quantized to uint8 per row at each product
// (int8 × uint8 with AVX512-VNNI; only where nn::kernels::vnni_usable(), std::invalid_argument
// elsewhere): the fastest, and the least exact.
enum class RecurrentPrecision { f32, f16, i8, w8a8 };

// THE model configuration (io/model_config.h): sizes, dropouts (already multiplied by drop_mult)
// and, for a classifier, its head. The encoder reads vocab_size, emb_sz (also the last layer's
// hidden size), n_hid, n_layers, pad_idx, backwards (the model reads each document last token
// first, fastai's `backwards=True`; callers always pass documents in reading order: the
// training loops and the classifier's infer() reverse them) and the five *_p.
using ModelConfig = io::ModelConfig;

// Data parallelism (docs/distributed.md): this process's rows are part of a global batch of
// `global_bs` rows spread over ranks; `sum` adds host doubles over the ranks in place. The
// classifier's BatchNorm then normalises with the statistics of the global batch
// (nn/batchnorm_sync.h), so that N ranks train as one process does.
struct BatchSync {
  std::function<void(double* data, std::size_t n)> sum;
  Index global_bs = 0;
  double share = 1.0;  // this rank's rows / global_bs
};

// How a forward call behaves.
struct ForwardOptions {
  bool training = true;       // false: every dropout is the identity
  nn::Rng* rng = nullptr;     // where masks come from when training (required unless reuse_masks)
  bool reuse_masks = false;   // training with the masks already in the cache (deterministic
                              // tests, gradient checks): nothing is sampled
  const BatchSync* sync = nullptr;  // data-parallel training (nullptr: one process)
};

// Inverted-dropout masks of one forward call: entries are 0 or 1/(1-p). An empty tensor means
// "no dropout" (eval mode or p == 0). Tests may fill them directly and use reuse_masks.
template <typename T>
struct AwdLstmMasks {
  nn::Tensor<T> embed;                // [V]
  nn::Tensor<T> input;                // [bs, E]
  std::vector<nn::Tensor<T>> weight;  // per layer [4h_l, h_l] (WeightDropout on W_hh)
  std::vector<nn::Tensor<T>> hidden;  // per layer l < n_layers-1: [bs, h_l]
  nn::Tensor<T> output;               // [bs, E] (LM head only)
};

// Everything one training window keeps for its backward pass.
template <typename T>
struct AwdLstmCache {
  Index bs = 0, sl = 0;
  bool training = false;
  nn::Tensor<TokenId> ids;                     // [bs, sl]
  AwdLstmMasks<T> masks;
  nn::Tensor<T> x0;                            // [bs, sl, E] input of layer 0 (after dropouts)
  std::vector<nn::Tensor<T>> inputs;           // inputs[l] of layer l >= 1 (after hidden dropout)
  std::vector<nn::Tensor<T>> outputs;          // raw LSTM outputs [bs, sl, h_l]
  std::vector<nn::LstmCache<T>> lstm;
  // LM head
  nn::Tensor<T> dp;                            // [bs, sl, E] output-dropped encoder output
  nn::Tensor<T> scratch_a, scratch_b;          // backward scratch
  // (the weight-dropped W_hh is not kept: backward recomputes raw ⊙ mask into a model scratch)
};

// The recurrent state of the encoder, owned by the caller: per layer h, c [bs, h_l].
template <typename T>
struct AwdLstmState {
  std::vector<nn::Tensor<T>> h, c;
  Index batch() const { return h.empty() ? 0 : h[0].shape()[0]; }
  // Zero state for `bs` rows, in host memory or the placement's.
  void reset(const ModelConfig& cfg, Index bs = 0, nn::Placement* place = nullptr);
  // Batch size change: the first rows are kept, new rows are zero (no-op if bs is unchanged).
  // A state in another memory than `place` is reset there instead (zeros).
  void resize(const ModelConfig& cfg, Index bs, nn::Placement* place = nullptr);
};

// Buffers of the serving path (AwdLstmEncoderT::infer), one per caller / thread: nothing is
// allocated once they have seen the largest window.
template <typename T>
struct AwdLstmWorkspace {
  nn::Tensor<T> a, b, scratch;
  nn::Tensor<TokenId> ids;  // the ids in the backend's memory (a backend with its own memory)
};

// A named tensor of the model (fastai state_dict key without prefix).
template <typename T>
struct NamedTensor {
  std::string key;    // e.g. "encoder.weight", "rnns.0.weight_hh_l0_raw", "decoder.bias"
  nn::View<T> value;
  nn::View<T> grad;
  int layer;          // -1: embedding (and decoder bias), 0..n_layers-1: that LSTM
  bool do_wd;         // fastai: false only for the decoder (nn.Linear) bias
};

template <typename T>
class AwdLstmEncoderT {
 public:
  // Allocates zeroed parameters (call init() or load values). `extra` reserves room in the
  // arenas for a head's parameters (see take_extra()).
  explicit AwdLstmEncoderT(const ModelConfig& cfg, Index extra = 0);
  AwdLstmEncoderT(AwdLstmEncoderT&&) noexcept = default;
  AwdLstmEncoderT& operator=(AwdLstmEncoderT&&) noexcept = default;
  AwdLstmEncoderT(const AwdLstmEncoderT&) = delete;
  AwdLstmEncoderT& operator=(const AwdLstmEncoderT&) = delete;

  const ModelConfig& config() const { return cfg_; }

  // fastai initialisation (§2.2): embedding U(-0.1, 0.1) (pad row included); every LSTM tensor
  // U(-1/sqrt(h_l), 1/sqrt(h_l)). Resets the state.
  void init(nn::Rng& rng);

  // Tensors in state_dict order, keys without prefix: "encoder.weight",
  // "rnns.{l}.weight_hh_l0_raw", "rnns.{l}.module.weight_ih_l0", "rnns.{l}.module.bias_ih_l0",
  // "rnns.{l}.module.bias_hh_l0". ("encoder_dp.emb.weight" is the same tensor as
  // "encoder.weight" and is not listed; checkpoint writers add it.)
  std::vector<NamedTensor<T>> tensors();
  // The same tensors where the ops read and write them: tensors() itself on the CPU; on a
  // backend with its own memory (set_backend) the device copies (optimizers take these).
  std::vector<NamedTensor<T>> compute_tensors();

  // Views of single tensors (compute views).
  nn::View<T> embedding() { return emb_; }
  nn::View<T> embedding_grad() { return demb_; }
  nn::LstmParams<T> lstm_params(int l) const;  // with the RAW W_hh
  nn::LstmGrads<T> lstm_grads(int l) const;

  // Whole arenas (zero_grad = grads().zero(); checkpoints; optimizers).
  nn::View<T> values() { return placement() ? dvalues_.all() : values_.all(); }
  nn::View<T> grads() { return placement() ? dgrads_.all() : grads_.all(); }
  // Carve a (value, grad) pair for a head parameter from the `extra` reserve.
  std::pair<nn::View<T>, nn::View<T>> take_extra(nn::Shape s);

  // ---- which parts get gradients (freezing; §3.5, §5) ----
  // A frozen LSTM gets no dW/db GEMMs; backward stops below the lowest part that is trainable.
  void set_trainable(bool embedding, const std::vector<bool>& rnn);

  // ---- serving precision ----
  // f16 / i8: keep a half-precision (nn::HalfMatrix) or int8 (nn::Int8Matrix, one scale per row)
  // copy of every raw W_hh and use it in inference (infer, lstm_infer via lstm_params); a
  // single document's latency is bound by reading W_hh at every step. A snapshot of the current
  // weights: call again after changing them. f32: drop the copies (float32 everywhere).
  void set_recurrent_precision(RecurrentPrecision p);
  void set_half_recurrent(bool on) { set_recurrent_precision(on ? RecurrentPrecision::f16 : RecurrentPrecision::f32); }
  RecurrentPrecision recurrent_precision() const {
    return !whh_half_.empty()  ? RecurrentPrecision::f16
           : !whh_w8a8_.empty() ? RecurrentPrecision::w8a8
           : !whh_i8_.empty()   ? RecurrentPrecision::i8
                                : RecurrentPrecision::f32;
  }
  bool half_recurrent() const { return !whh_half_.empty(); }
  // Serving only: use these half-precision (int8) W_hh (one per layer, [4h_l, h_l]) and treat
  // the float32 ones as absent (they were never loaded, so they cost no memory). Afterwards
  // forward/backward (training), tensors() (export) and set_recurrent_precision throw
  // std::logic_error; infer and lstm_infer work.
  void adopt_half_recurrent(std::vector<nn::HalfMatrix> w_hh);
  // w8a8: pack these int8 W_hh and the (float, loaded) W_ih for int8 × uint8 products instead
  // (RecurrentPrecision::w8a8; throws std::invalid_argument without VNNI).
  void adopt_int8_recurrent(std::vector<nn::Int8Matrix> w_hh, bool w8a8 = false);
  bool float_recurrent_loaded() const { return f32_whh_; }
  bool embedding_trainable() const { return train_emb_; }
  bool rnn_trainable(int l) const { return train_rnn_[l]; }

  // ---- backend ----
  // The backend every op runs on (default: the CPU). A backend with its own memory
  // (Backend::placement(), e.g. CUDA) gets the parameters (uploaded), zero gradients, the state
  // and every cache there; the host arenas stay as the copy that files are read into and written
  // from: tensors() are host views, compute_tensors() the device ones. After writing host values
  // (loading weights) call sync_to_device(); before reading them (saving) sync_to_host(). Both
  // do nothing on the CPU. Serving-precision copies (set_recurrent_precision) are CPU only.
  void set_backend(nn::Backend& b);
  nn::Backend& backend() const { return *be_; }
  nn::Placement* placement() const { return be_->placement(); }
  void sync_to_host();
  void sync_to_device();
  // The host view of compute view v (a parameter or gradient of this encoder's arenas, extras
  // included); v itself on the CPU.
  nn::View<T> host_of(nn::View<T> v) const;
  // The reverse: the compute view of host view v of this encoder's arenas.
  nn::View<T> device_of(nn::View<T> v) const;

  // ---- the default hidden state (§2.6), for callers that pass none ----
  void reset();                           // zero state (batch size forgotten)
  Index state_batch() const { return state_.batch(); }
  // Batch size change: keep the first rows, new rows are zero.
  void resize_state(Index bs) { state_.resize(cfg_, bs, placement()); }
  nn::View<T> state_h(int l) { return state_.h[l].view(); }  // [state_batch, h_l]
  nn::View<T> state_c(int l) { return state_.c[l].view(); }
  AwdLstmState<T>& state() { return state_; }
  // A zero state of this encoder's sizes for `bs` rows.
  AwdLstmState<T> make_state(Index bs = 0) const;

  // ---- compute ----
  // Training-style forward (dropout if opt.training): ids [bs, sl] -> out [bs, sl, E] (raw last
  // layer output). Fills `cache` for backward. `state` is read (resized to bs: first rows kept)
  // and replaced by the final state (detached).
  void forward(nn::CView<TokenId> ids, AwdLstmState<T>& state, nn::View<T> out,
               AwdLstmCache<T>& cache, const ForwardOptions& opt);
  // The same on the default state.
  void forward(nn::CView<TokenId> ids, nn::View<T> out, AwdLstmCache<T>& cache,
               const ForwardOptions& opt) {
    forward(ids, state_, out, cache, opt);
  }
  // Backward of the window in `cache` (consumes it): dout [bs, sl, E]. Gradients accumulate
  // into grads(), skipping frozen parts.
  void backward(AwdLstmCache<T>& cache, nn::CView<T> dout);
  // Serving path: eval mode, no cache, `state` carried (as in forward). out [bs, sl, E].
  // Const and thread-safe given one state and workspace per thread.
  void infer(nn::CView<TokenId> ids, AwdLstmState<T>& state, nn::View<T> out,
             AwdLstmWorkspace<T>& ws) const;
  // Padded rows: row b of ids holds lengths[b] real tokens, then padding (lengths
  // non-increasing); each row's state ends after its own last token and its outputs past it are
  // zero (nn::lstm_infer). Only where infer_takes_lengths() (the CPU backend).
  void infer(nn::CView<TokenId> ids, AwdLstmState<T>& state, nn::View<T> out,
             AwdLstmWorkspace<T>& ws, const Index* lengths) const;
  bool infer_takes_lengths() const { return be_->template ops<T>().lstm_infer_takes_lengths(); }
  // The same on the default state.
  void infer(nn::CView<TokenId> ids, nn::View<T> out) { infer(ids, state_, out, ws_); }

  // Throws std::invalid_argument naming the position of the first id outside [0, vocab).
  void check_ids(nn::CView<TokenId> ids) const;

 private:
  void sample_masks(AwdLstmCache<T>& cache, const ForwardOptions& opt) const;
  // THE encoder forward: with a cache, a training-style window (lstm_forward, masks if
  // opt.training); without one, the serving path (lstm_infer through `ws`).
  void encode(nn::CView<TokenId> ids, AwdLstmState<T>& state, nn::View<T> out,
              AwdLstmCache<T>* cache, AwdLstmWorkspace<T>* ws, const ForwardOptions& opt,
              const Index* lengths = nullptr) const;

  ModelConfig cfg_;
  nn::Arena<T> values_, grads_;
  nn::Arena<T> dvalues_, dgrads_;  // the backend's copies (empty on the CPU)
  nn::View<T> emb_, demb_;
  std::vector<nn::View<T>> w_ih_, w_hh_, b_ih_, b_hh_;
  std::vector<nn::View<T>> dw_ih_, dw_hh_, db_ih_, db_hh_;
  bool train_emb_ = true;
  std::vector<bool> train_rnn_;
  nn::Backend* be_ = &nn::cpu_backend();
  AwdLstmState<T> state_;                  // the default state
  AwdLstmWorkspace<T> ws_;                 // the default state's serving buffers
  // Training scratch (not touched by infer, so infer stays thread-safe):
  mutable std::vector<nn::Tensor<T>> weff_;   // weight-dropped W_hh (per layer)
  mutable std::vector<nn::Tensor<T>> dweff_;  // dW_hh of the dropped matrix, before the mask
  std::vector<nn::HalfMatrix> whh_half_;   // serving copies of W_hh (set_recurrent_precision)
  std::vector<nn::Int8Matrix> whh_i8_;     // the same in int8
  std::vector<nn::Int8Packed> whh_w8a8_, wih_w8a8_;  // w8a8: W_hh and W_ih packed (groups of h)
  void pack_w8a8(std::vector<nn::Int8Matrix> w_hh);
  bool f32_whh_ = true;                    // false after adopt_*_recurrent
  template <typename M>
  void check_adopted(const std::vector<M>& w, const char* what) const;
  void require_float_recurrent(const char* what) const;
};

// The language model: encoder + LinearDecoder (tied weight, bias), fused softmax-CE loss.
template <typename T>
class AwdLstmLMT {
 public:
  explicit AwdLstmLMT(const ModelConfig& cfg);

  AwdLstmEncoderT<T>& encoder() { return enc_; }
  const ModelConfig& config() const { return enc_.config(); }
  void init(nn::Rng& rng);  // encoder init + decoder bias 0
  void reset() { enc_.reset(); }
  // The backend (AwdLstmEncoderT::set_backend; the decoder bias lives in the encoder's arenas).
  void set_backend(nn::Backend& b) { enc_.set_backend(b); }
  nn::View<T> decoder_bias() { return enc_.device_of(bias_); }
  nn::View<T> decoder_bias_grad() { return enc_.device_of(dbias_); }
  nn::View<T> values() { return enc_.values(); }  // includes the decoder bias
  nn::View<T> grads() { return enc_.grads(); }

  // Encoder tensors with "0." plus "1.decoder.bias" (keys as fastai's LM state_dict): host
  // views (files), and where the ops use them (optimizers).
  std::vector<NamedTensor<T>> tensors();
  std::vector<NamedTensor<T>> compute_tensors();

  // Training step: forward + backward. ids, targets [bs, sl]. Returns the mean cross-entropy.
  // Gradients accumulate. Row chunks of `chunk_rows` positions bound the logits memory.
  double train_step(nn::CView<TokenId> ids, nn::CView<TokenId> targets, AwdLstmCache<T>& cache,
                    const ForwardOptions& opt);
  // Eval: mean cross-entropy, no dropout, no gradients, state carried.
  double eval_loss(nn::CView<TokenId> ids, nn::CView<TokenId> targets);
  // Logits [bs, sl, V] (small vocabularies: tests, goldens). Training-mode forward if
  // opt.training (fills cache, no backward), else eval.
  void logits(nn::CView<TokenId> ids, nn::View<T> out, AwdLstmCache<T>& cache,
              const ForwardOptions& opt);

  Index chunk_rows = 512;

 private:
  AwdLstmEncoderT<T> enc_;
  nn::View<T> bias_, dbias_;  // host views (enc_.device_of: the compute ones)
  nn::Tensor<T> logits_;  // [chunk_rows, V]
  nn::Tensor<T> out_;     // encoder output
  nn::Tensor<TokenId> targets_;  // the targets in the backend's memory (a backend with its own)
};

using AwdLstmEncoder = AwdLstmEncoderT<float>;
using AwdLstmLM = AwdLstmLMT<float>;

// The fastai Param list (float models): keys prefixed (LM: "0." for the encoder; classifier:
// "0.module."), groups as fastai's splitters, do_wd as fastai's rule.
//   LM (awd_lstm_lm_split, §3.5):    rnn l -> group l, embedding + decoder bias -> group n_layers
//   classifier (awd_lstm_clas_split): embedding -> group 0, rnn l -> group l + 1
std::vector<nn::Param> lm_params(AwdLstmLM& lm);
std::vector<nn::Param> encoder_params(AwdLstmEncoder& enc, const std::string& prefix,
                                      int embedding_group, int first_rnn_group);

}  // namespace ulmfit
