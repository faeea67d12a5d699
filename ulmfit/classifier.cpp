// ulmfit/classifier.cpp — a thin composition: bundle (io/bundle.h) + tokenizer + vocab +
// the classifier model's eval forward + INSPIRE's post-processing (labels.h).
#include "ulmfit/classifier.h"

#include <nlohmann/json.hpp>
#include <omp.h>
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "io/bundle.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/default_model.h"
#include "ulmfit/labels.h"
#include "ulmfit/tokenizer.h"
#include "ulmfit/train.h"
#include "ulmfit/vocab.h"


namespace ulmfit {

struct Classifier::Impl {
  Vocab vocab;
  std::vector<std::string> labels;
  float temperature = kTemperature;
  std::vector<double> class_weights;  // empty: none (the bundle's prior correction)
  std::string source;
  std::size_t max_text_bytes = LoadOptions::kDefaultMaxTextBytes;
  // The bundle's classifiers: one, or an ensemble whose probabilities are averaged. Eval-mode
  // forward is thread-safe (each call uses its own workspace).
  std::vector<std::shared_ptr<const ClassifierModel>> models;
};

namespace {

std::shared_ptr<const Classifier::Impl> build(io::Bundle bundle, std::string source,
                                              const LoadOptions& opt) {
  auto impl = std::make_shared<Classifier::Impl>();
  impl->source = std::move(source);
  if (opt.max_text_bytes == 0) throw std::invalid_argument("max_text_bytes must be at least 1");
  impl->max_text_bytes = opt.max_text_bytes;
  const auto& cfg = bundle.config();
  if (cfg.kind != "classifier")
    throw std::runtime_error(impl->source + ": this bundle holds a \"" + cfg.kind +
                             "\" model, not a classifier (hint: pass the bundle written by "
                             "train-classifier or import)");
  if (bundle.labels().size() != 3 || cfg.n_classes != 3)
    throw std::runtime_error(impl->source + ": the classifier must have 3 labels (rejected, "
                             "non_core, core), this one has " +
                             std::to_string(bundle.labels().size()));
  impl->labels = bundle.labels();
  if (bundle.temperature()) impl->temperature = static_cast<float>(*bundle.temperature());
  if (!(impl->temperature > 0) || !std::isfinite(impl->temperature))
    throw std::runtime_error(impl->source + ": temperature must be a positive number, got " +
                             std::to_string(impl->temperature));
  impl->vocab = Vocab::from_itos(bundle.vocab());
  impl->class_weights = bundle.class_weights();
  if ((int)opt.half_recurrent + (int)opt.int8_recurrent + (int)opt.w8a8 > 1)
    throw std::runtime_error("load options: choose one of half-precision (--fp16), int8 (--int8) "
                             "and w8a8 (--w8a8) weights, not several");
  const RecurrentPrecision prec = opt.w8a8             ? RecurrentPrecision::w8a8
                                  : opt.int8_recurrent ? RecurrentPrecision::i8
                                  : opt.half_recurrent ? RecurrentPrecision::f16
                                                       : RecurrentPrecision::f32;
  for (std::size_t k = 0; k < bundle.members().size(); ++k)
    impl->models.push_back(std::make_shared<const ClassifierModel>(
        ClassifierModel::from_bundle(bundle, prec, k)));
  // The models copied every weight: the mapping is not needed any more (keeping it would hold
  // the model twice in memory).
  return impl;
}

// Offset of the first byte that does not start a valid UTF-8 sequence, or npos.
std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    utf8proc_int32_t cp;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                              static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) return i;
    i += static_cast<std::size_t>(n);
  }
  return std::string_view::npos;
}

std::array<float, 3> softmax3(const std::array<float, 3>& z) {
  float m = std::max({z[0], z[1], z[2]});
  std::array<float, 3> p{};
  float s = 0;
  for (int i = 0; i < 3; ++i) s += (p[i] = std::exp(z[i] - m));
  for (auto& x : p) x /= s;
  return p;
}

// Classifier::encode: the text tokenized as predict does and numericalized, uncut.
std::vector<std::int32_t> encode_with(const Vocab& vocab, std::string_view text) {
  return vocab.numericalize(tokenize(text, TokenizeMode::Predict));
}

// Classifier::encode_text (and Embedder's): the text cut at `cap` bytes, then encode_with.
std::vector<std::int32_t> encode_text_with(const Vocab& vocab, std::size_t cap,
                                           std::string_view text) {
  return encode_with(vocab, truncate_utf8(text, cap));
}

// Classifier::encode_paper (and Embedder's): predict_coreness's checks, cut, join, encode.
std::vector<std::int32_t> encode_paper_with(const Vocab& vocab, std::size_t cap,
                                            std::string_view title, std::string_view abstract) {
  // Name the field and the offset in it (the tokenizer would only see the joined text).
  for (auto [name, field] : {std::pair{"title", title}, std::pair{"abstract", abstract}})
    if (auto off = first_invalid_utf8(field); off != std::string_view::npos)
      throw std::invalid_argument(std::string("invalid UTF-8 in the ") + name + " (byte offset " +
                                  std::to_string(off) + ")");
  // Cut before joining too, so that a huge abstract is never copied whole.
  std::string text = join_title_abstract(std::string(truncate_utf8(title, cap)),
                                         std::string(truncate_utf8(abstract, cap)));
  try {
    return encode_text_with(vocab, cap, text);
  } catch (const TextError& e) {
    throw std::invalid_argument(std::string("invalid text: ") + e.what());
  }
}

}  // namespace

std::array<float, 3> corrected(const std::array<float, 3>& p, const std::vector<double>& w) {
  if (w.empty()) return p;
  double s = 0;
  std::array<double, 3> q{};
  for (int i = 0; i < 3; ++i) s += (q[i] = (double)p[i] * w[(std::size_t)i]);
  std::array<float, 3> out{};
  for (int i = 0; i < 3; ++i) out[i] = static_cast<float>(q[i] / s);
  return out;
}

std::string prediction_json(const Prediction& p, const std::vector<std::string>& labels) {
  using nlohmann::json;
  auto str = [](const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); };
  std::string out = "{\"prediction\": " + str(p.label) + ", \"scores\": {";
  for (std::size_t i = 0; i < labels.size() && i < 3; ++i) {
    if (i) out += ", ";
    out += str(labels[i]) + ": " + json(static_cast<double>(p.scores[i])).dump();
  }
  return out + "}}";
}

Classifier Classifier::load(const std::string& path, const LoadOptions& opt) {
  return Classifier(build(io::Bundle::load(path), path, opt));
}

Classifier Classifier::from_memory(std::string_view bytes, const std::string& name,
                                   const LoadOptions& opt) {
  std::string source = "embedded:" + name;
  return Classifier(
      build(io::Bundle::from_memory(bytes.data(), bytes.size(), source), source, opt));
}

Classifier Classifier::load_or_default(const std::string& path, const LoadOptions& opt) {
  if (!path.empty()) return load(path, opt);
  auto bytes = default_model_bytes();
  if (bytes.empty())
    throw std::runtime_error("no default model embedded in this build; pass --model");
  std::string name = default_model_origin();
  // The embedded bytes are part of the executable's read-only image: once copied, their pages
  // can go (Bundle::from_file_image), so the model is not held twice.
  std::string source = "embedded:" + (name.empty() ? std::string("default") : name);
  return Classifier(build(io::Bundle::from_file_image(bytes.data(), bytes.size(), source), source, opt));
}

std::vector<std::int32_t> Classifier::encode(std::string_view text) const {
  return encode_with(impl_->vocab, text);
}

std::array<float, 3> Classifier::probabilities(const std::vector<std::int32_t>& ids) const {
  // The mean of the members' probabilities (for one member, exactly its own: a float summed in
  // double and divided by 1 is unchanged).
  const auto& ms = impl_->models;
  std::array<double, 3> sum{};
  for (const auto& m : ms) {
    auto p = softmax3(m->infer(ids));
    for (int i = 0; i < 3; ++i) sum[i] += p[i];
  }
  std::array<float, 3> out{};
  for (int i = 0; i < 3; ++i) out[i] = static_cast<float>(sum[i] / static_cast<double>(ms.size()));
  return out;
}

Prediction Classifier::finish(const std::array<float, 3>& raw) const {
  Prediction r;
  r.probabilities = corrected(raw, impl_->class_weights);
  const auto& p = r.probabilities;
  r.scores = temperature_scores(p, impl_->temperature);
  r.index = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
  r.label = impl_->labels[r.index];
  return r;
}

std::string_view truncate_utf8(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t n = max_bytes;
  // Back off over continuation bytes (10xxxxxx) so that the cut is between two characters.
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n);
}

std::vector<std::int32_t> Classifier::encode_text(std::string_view text) const {
  return encode_text_with(impl_->vocab, impl_->max_text_bytes, text);
}

Prediction Classifier::predict_text(std::string_view text) const {
  return finish(probabilities(encode_text(text)));
}

Prediction Classifier::predict_coreness(std::string_view title, std::string_view abstract) const {
  return finish(probabilities(encode_paper(title, abstract)));
}

std::vector<std::array<float, 3>> Classifier::probabilities_batch(
    const std::vector<std::vector<std::int32_t>>& ids, int batch) const {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1, got " + std::to_string(batch));
  const auto& ms = impl_->models;
  const nn::Index n = static_cast<nn::Index>(ids.size());
  std::vector<std::array<double, 3>> sum(ids.size(), std::array<double, 3>{});
  nn::Tensor<float> logits({n, 3});
  for (const auto& m : ms) {
    m->infer_batch_padded(ids, logits.view(), batch);
    for (nn::Index i = 0; i < n; ++i) {
      auto p = softmax3({logits[i * 3], logits[i * 3 + 1], logits[i * 3 + 2]});
      for (int k = 0; k < 3; ++k) sum[i][k] += p[k];
    }
  }
  std::vector<std::array<float, 3>> out(ids.size());
  for (nn::Index i = 0; i < n; ++i)
    for (int k = 0; k < 3; ++k)
      out[i][k] = static_cast<float>(sum[i][k] / static_cast<double>(ms.size()));
  return out;
}

std::vector<std::int32_t> Classifier::encode_paper(std::string_view title,
                                                   std::string_view abstract) const {
  return encode_paper_with(impl_->vocab, impl_->max_text_bytes, title, abstract);
}

namespace {

// fn(i) for i in [0, n) on `threads` threads (<= 0: OpenMP's default). fn must not throw.
template <typename F>
void parallel_each(long n, int threads, F&& fn) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads()) if (threads != 1)
  for (long i = 0; i < n; ++i) fn(i);
}

// Classifier::predict_each_encoded; fail_fast (predict_batch, which throws the first error
// anyway): no model work once an input has failed to encode.
std::vector<PaperOutcome> predict_each_impl(
    const Classifier& clf, std::size_t count,
    const std::function<std::vector<std::int32_t>(std::size_t)>& encode, int threads, int batch,
    bool fail_fast) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1, got " + std::to_string(batch));
  std::vector<PaperOutcome> out(count);
  const long n = static_cast<long>(count);
  std::vector<std::vector<std::int32_t>> ids(count);
  parallel_each(n, threads, [&](long i) {
    try {
      ids[i] = encode(static_cast<std::size_t>(i));
      if (ids[i].empty()) throw std::invalid_argument("empty document (no tokens)");
      // One at a time: as predict_coreness (encode, probabilities, finish), on this thread.
      if (batch == 1) out[i].prediction = clf.finish(clf.probabilities(ids[i]));
    } catch (...) {
      out[i].error = std::current_exception();
    }
  });
  if (batch == 1) return out;
  if (fail_fast)
    for (auto& o : out)
      if (o.error) return out;
  // Only the inputs that encoded go through the model.
  std::vector<std::vector<std::int32_t>> good;
  std::vector<std::size_t> which;
  for (std::size_t i = 0; i < count; ++i)
    if (!out[i].error) {
      good.push_back(std::move(ids[i]));
      which.push_back(i);
    }
  if (good.empty()) return out;
  // The batches run on `threads` threads (restored afterwards: the setting is this thread's).
  const int saved = omp_get_max_threads();
  if (threads > 0) omp_set_num_threads(threads);
  std::vector<std::array<float, 3>> probs;
  try {
    probs = clf.probabilities_batch(good, batch);
  } catch (...) {
    omp_set_num_threads(saved);
    throw;
  }
  omp_set_num_threads(saved);
  for (std::size_t k = 0; k < which.size(); ++k) out[which[k]].prediction = clf.finish(probs[k]);
  return out;
}

std::function<std::vector<std::int32_t>(std::size_t)> paper_encoder(
    const Classifier& clf, const std::vector<Paper>& papers) {
  return [&clf, &papers](std::size_t i) { return clf.encode_paper(papers[i].title, papers[i].abstract); };
}

}  // namespace

std::vector<PaperOutcome> Classifier::predict_each_encoded(
    std::size_t n, const std::function<std::vector<std::int32_t>(std::size_t)>& encode,
    int threads, int batch) const {
  return predict_each_impl(*this, n, encode, threads, batch, false);
}

std::vector<PaperOutcome> Classifier::predict_each(const std::vector<Paper>& papers, int threads,
                                                   int batch) const {
  return predict_each_impl(*this, papers.size(), paper_encoder(*this, papers), threads, batch,
                           false);
}

std::vector<Prediction> Classifier::predict_batch(const std::vector<Paper>& papers,
                                                  int threads, int batch) const {
  auto each = predict_each_impl(*this, papers.size(), paper_encoder(*this, papers), threads,
                                batch, true);
  std::vector<Prediction> out;
  out.reserve(each.size());
  for (auto& e : each) {
    if (e.error) std::rethrow_exception(e.error);
    out.push_back(std::move(e.prediction));
  }
  return out;
}

const std::vector<std::string>& Classifier::labels() const { return impl_->labels; }
float Classifier::temperature() const { return impl_->temperature; }
std::size_t Classifier::vocab_size() const { return impl_->vocab.size(); }
std::size_t Classifier::n_members() const { return impl_->models.size(); }
const std::vector<double>& Classifier::class_weights() const { return impl_->class_weights; }
const std::string& Classifier::source() const { return impl_->source; }
std::size_t Classifier::max_text_bytes() const { return impl_->max_text_bytes; }

// ---- Embedder ---------------------------------------------------------------------------------

struct Embedder::Impl {
  Vocab vocab;
  std::string kind;
  std::size_t max_text_bytes = LoadOptions::kDefaultMaxTextBytes;
  std::optional<ClassifierModel> model;  // a language model's encoder under an unused head
};

Embedder Embedder::load(const std::string& path, std::size_t member, std::size_t max_text_bytes) {
  if (max_text_bytes == 0) throw std::invalid_argument("max_text_bytes must be at least 1");
  auto bundle = io::Bundle::load(path);
  auto impl = std::make_shared<Impl>();
  impl->kind = bundle.config().kind;
  impl->max_text_bytes = max_text_bytes;
  impl->vocab = Vocab::from_itos(bundle.vocab());
  if (impl->kind == "classifier") {
    impl->model.emplace(ClassifierModel::from_bundle(bundle, RecurrentPrecision::f32, member));
  } else if (impl->kind == "lm" || impl->kind == "encoder") {
    if (member != 0)
      throw std::invalid_argument(path + ": a language model has one encoder, no member " +
                                  std::to_string(member));
    // The classifier's pooling (bptt 72, max_len 1440: fastai's) over the LM's encoder; the head
    // is never run, so its (zero) initial values do not matter.
    const auto& c = bundle.config();
    ModelConfig cc = classifier_config_over(c, c.vocab_size, io::kInspireClasDropMult);
    cc.pad_idx = c.pad_idx;
    impl->model.emplace(cc);
    load_encoder_into_classifier(*impl->model, bundle);
  } else {
    throw std::invalid_argument(path + ": this bundle holds a \"" + impl->kind +
                                "\" model; vectors come from a language model, an encoder or a "
                                "classifier");
  }
  return Embedder(std::move(impl));
}

std::size_t Embedder::dim() const {
  return 3 * static_cast<std::size_t>(impl_->model->config().emb_sz);
}
const std::string& Embedder::kind() const { return impl_->kind; }
bool Embedder::backwards() const { return impl_->model->config().backwards; }

std::vector<std::int32_t> Embedder::encode_paper(std::string_view title,
                                                 std::string_view abstract) const {
  return encode_paper_with(impl_->vocab, impl_->max_text_bytes, title, abstract);
}

std::vector<std::int32_t> Embedder::encode_text(std::string_view text) const {
  return encode_text_with(impl_->vocab, impl_->max_text_bytes, text);
}

std::vector<float> Embedder::embed_batch(const std::vector<std::vector<std::int32_t>>& ids,
                                         int batch) const {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1, got " + std::to_string(batch));
  const nn::Index n = static_cast<nn::Index>(ids.size()), d = static_cast<nn::Index>(dim());
  std::vector<float> out(ids.size() * dim());
  impl_->model->pooled_batch(ids, nn::View<float>(out.data(), nn::Shape{n, d}), batch);
  return out;
}

}  // namespace ulmfit
