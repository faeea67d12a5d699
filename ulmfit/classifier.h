// ulmfit/classifier.h — the library API: load a model bundle once, classify papers.
//
//   auto clf = ulmfit::Classifier::load("model.safetensors");
//   ulmfit::Prediction p = clf.predict_coreness(title, abstract);
//   std::cout << clf.to_json(p) << "\n";
//   // {"prediction": "core", "scores": {"rejected": 0.0177, "non_core": 0.0177, "core": 0.9647}}
//
// predict_coreness does exactly what INSPIRE's classifier does (spec §6):
//   text = title + " <ENDTITLE> " + abstract            (join_title_abstract, no stripping)
//   ids  = numericalize(tokenize(text, Predict))         (OOV → 0 = xxunk; no replace_space)
//   p    = softmax(classifier_eval_forward(ids))          (72-token chunks, last ≤1440 pooled)
//          (an ensemble bundle: the mean of its members' p; a backwards member reads ids reversed)
//   p    = p * w / sum(p * w)                             (only if the bundle has class_weights:
//                                                         a prior correction set by `calibrate`)
//   s    = temperature_scores(p, T)                       (T from the bundle, default 0.25)
//   prediction = labels[argmax p]
//
// Thread safety: a Classifier is immutable after loading; every call uses its own workspace,
// so any number of threads may call the predict functions concurrently on one Classifier
// (copies share the same loaded model). Nothing is cached between calls: memory does not grow
// call to call.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ulmfit {

struct Prediction {
  std::size_t index = 0;                  // argmax class (== argmax of scores)
  std::string label;                      // labels()[index], e.g. "core"
  std::array<float, 3> probabilities{};   // softmax of the logits (fastai's learn.predict), times
                                          // the bundle's class weights if it has any, renormalised
  std::array<float, 3> scores{};          // INSPIRE's temperature scores (what the API reports)
};

struct Paper {
  std::string title;
  std::string abstract;
};

// One paper's outcome in Classifier::predict_each: its prediction, or, when `error` is set, the
// exception its input raised (std::invalid_argument for invalid UTF-8, naming the field).
struct PaperOutcome {
  Prediction prediction;
  std::exception_ptr error;
};

// {"prediction": "<label>", "scores": {"<label0>": s0, "<label1>": s1, "<label2>": s2}} on one
// line, keys in class-index order, separators as Python's json.dumps (", " and ": "). Scores
// are float32 values printed as the shortest decimal of their double value (as Python prints
// float(np.float32)).
std::string prediction_json(const Prediction& p, const std::vector<std::string>& labels);

// p_c * w_c / sum_j p_j * w_j (w empty: p unchanged). The prior correction of a calibrated bundle.
std::array<float, 3> corrected(const std::array<float, 3>& p, const std::vector<double>& w);

// How a loaded model computes.
struct LoadOptions {
  // Keep the LSTMs' recurrent weights (W_hh) in IEEE half precision for serving: a document's
  // LSTM step reads all of W_hh, so this cuts single-document latency (about 1.6x at INSPIRE's
  // full size) for scores that differ from float32 by about 1e-4. Off by default: float32
  // reproduces fastai's scores to 1e-5.
  bool half_recurrent = false;
  // The same with int8 recurrent weights and one float scale per row (nn/int8.h): a quarter of
  // float32's bytes, so about 1.3x faster again than half precision for one document, for scores
  // within about 1e-2 of float32. Off by default; not together with half_recurrent.
  bool int8_recurrent = false;
  // int8 weights for both LSTM products (W_ih and W_hh) and the activations quantized to uint8
  // per row at each product, computed with AVX512-VNNI (int8 × uint8, ~3.7× float's arithmetic
  // rate on such CPUs): the fastest, mostly for batches (predict --batch N, serve --batch N),
  // and the least exact (docs/performance.md gives its score differences). Loading fails with a
  // clear error on a CPU without AVX512-VNNI. Not together with half_recurrent / int8_recurrent.
  bool w8a8 = false;
  // The most bytes of a paper's text (title + " <ENDTITLE> " + abstract) that are read: a longer
  // text is cut there (at a UTF-8 character boundary) before tokenizing, so one huge document
  // cannot hold a worker for minutes or take gigabytes. The model pools only the last 1440
  // tokens anyway; real abstracts are a few kB, far below the default.
  std::size_t max_text_bytes = kDefaultMaxTextBytes;
  static constexpr std::size_t kDefaultMaxTextBytes = 64 * 1024;
};

// `text` cut to at most `max_bytes` bytes, not inside a UTF-8 sequence.
std::string_view truncate_utf8(std::string_view text, std::size_t max_bytes);

class Classifier {
 public:
  // Loads and validates a classifier bundle (io/bundle.h, kind "classifier" with 3 labels).
  // Throws io::FormatError / std::runtime_error naming the file and the problem.
  static Classifier load(const std::string& path, const LoadOptions& opt = {});
  // A bundle in memory (e.g. the model embedded in the binary); the bytes must outlive the
  // Classifier (the embedded model does). `name` is used in messages and source().
  static Classifier from_memory(std::string_view bytes, const std::string& name,
                                const LoadOptions& opt = {});
  // `path` when not empty, else the model embedded in this build (ulmfit/default_model.h).
  // Throws std::runtime_error "no default model embedded in this build; pass --model" when
  // there is none.
  static Classifier load_or_default(const std::string& path, const LoadOptions& opt = {});

  // One paper. Throws std::invalid_argument when title or abstract is not valid UTF-8 (naming
  // which, and the byte offset).
  Prediction predict_coreness(std::string_view title, std::string_view abstract) const;
  // Already-joined text (e.g. a dataset's "text" column).
  Prediction predict_text(std::string_view text) const;
  // Many papers, results in input order. threads <= 0: OpenMP's default. batch 1: each paper
  // is independent (batch of one, as the original predicts), so results equal predict_coreness.
  // batch > 1: papers padded together in batches of up to that many (probabilities_batch):
  // faster for bulk work, scores within ~1e-6 of predict_coreness.
  // Throws the error of the lowest-indexed paper that fails (predict_each's first error).
  std::vector<Prediction> predict_batch(const std::vector<Paper>& papers, int threads = 0,
                                        int batch = 1) const;
  // predict_batch, each paper failing alone: a paper whose input is bad (e.g. invalid UTF-8)
  // gets its error in its own outcome, and the others are still predicted, with the bits they
  // would have without it in the input (it never joins a padded batch). For servers and bulk
  // jobs that answer per paper.
  std::vector<PaperOutcome> predict_each(const std::vector<Paper>& papers, int threads = 0,
                                         int batch = 1) const;
  // predict_each for inputs of any kind: encode(i), for i in [0, n), gives input i's token ids
  // (encode_paper, encode_text, ...) or throws, and then input i alone fails. It is called from
  // several threads at once. predict_each(papers) is this with encode_paper.
  std::vector<PaperOutcome> predict_each_encoded(
      std::size_t n, const std::function<std::vector<std::int32_t>(std::size_t)>& encode,
      int threads = 0, int batch = 1) const;

  // Token ids already computed (encode_paper / encode), padded into batches of up to `batch`
  // documents (longest first; ClassifierModel::infer_batch_padded): each LSTM step is a GEMM
  // over a batch, so bulk classification is faster than one paper at a time; the threads share
  // each batch. Probabilities agree with probabilities() to about 1e-6 (summation order); the
  // bits can depend on which papers share a batch. Throws std::invalid_argument naming the
  // document (index) on an empty or out-of-vocabulary one.
  std::vector<std::array<float, 3>> probabilities_batch(
      const std::vector<std::vector<std::int32_t>>& ids, int batch = 32) const;

  // The steps, for tools and tests.
  std::vector<std::int32_t> encode(std::string_view text) const;  // tokenize + numericalize
  // predict_coreness's checks (UTF-8, naming the field), cut (max_text_bytes) and join, then
  // encode. Throws std::invalid_argument as predict_coreness does.
  std::vector<std::int32_t> encode_paper(std::string_view title, std::string_view abstract) const;
  // encode of a cut, already-joined text (predict_text's first step).
  std::vector<std::int32_t> encode_text(std::string_view text) const;
  std::array<float, 3> probabilities(const std::vector<std::int32_t>& ids) const;
  // Prior correction (class_weights(), if any) + scores + argmax.
  Prediction finish(const std::array<float, 3>& probabilities) const;

  const std::vector<std::string>& labels() const;
  float temperature() const;
  std::size_t vocab_size() const;
  std::size_t n_members() const;  // classifiers in the model: 1, or an ensemble's size
  const std::vector<double>& class_weights() const;  // the bundle's prior correction (or empty)
  const std::string& source() const;  // the path, or "embedded:<name>"
  std::size_t max_text_bytes() const;  // LoadOptions::max_text_bytes
  std::string to_json(const Prediction& p) const { return prediction_json(p, labels()); }

  struct Impl;

 private:
  explicit Classifier(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Document embeddings (`inspire-classifier embed`): for each paper, the vector the classifier's
// head reads, [last, max, mean] of the encoder's last LSTM layer over the positions the classifier
// pools (the last 1440 tokens, in 72-token chunks): 3 x emb_sz floats (1200 at INSPIRE's size).
// From a classifier bundle (member K of an ensemble), or from a language model (or encoder)
// bundle, whose encoder has never seen a label: features for another model (e.g. a linear one)
// or for similarity search. Papers are encoded exactly as Classifier::encode_paper does.
// Immutable after loading; const calls may run concurrently.
class Embedder {
 public:
  // Throws io::FormatError / std::runtime_error naming the file; std::invalid_argument for a
  // member the bundle lacks or a bundle kind other than "lm" / "encoder" / "classifier".
  static Embedder load(const std::string& path, std::size_t member = 0,
                       std::size_t max_text_bytes = LoadOptions::kDefaultMaxTextBytes);
  std::size_t dim() const;           // 3 x emb_sz
  const std::string& kind() const;   // the bundle's: "lm", "encoder" or "classifier"
  bool backwards() const;            // a backward model (reads each paper last token first)
  std::vector<std::int32_t> encode_paper(std::string_view title, std::string_view abstract) const;
  std::vector<std::int32_t> encode_text(std::string_view text) const;
  // The papers' vectors, row-major [ids.size() x dim()], padded through the model in groups of
  // up to `batch` (ClassifierModel::pooled_batch; each row as if alone, to ~1e-6). Throws
  // std::invalid_argument naming the document (index) on an empty or out-of-vocabulary one.
  std::vector<float> embed_batch(const std::vector<std::vector<std::int32_t>>& ids,
                                 int batch = 32) const;

  struct Impl;

 private:
  explicit Embedder(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace ulmfit
