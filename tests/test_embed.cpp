// ctest-labels: unit
// Document embeddings (ulmfit::Embedder, `inspire-classifier embed`): from a language model, an
// encoder or a classifier bundle, each paper's vector equals the pooled features the training
// path's eval-mode forward computes (cache.pooled) with that encoder; papers are encoded as
// Classifier::encode_paper does; the command keeps ids and input order and names bad lines.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "nn/rng.h"
#include "tests/tiny_bundle.h"
#include "ulmfit/classifier.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/labels.h"
#include "ulmfit/train.h"
#include "ulmfit/vocab.h"

namespace fs = std::filesystem;
using namespace ulmfit;
using nlohmann::json;

namespace {

constexpr Index kV = 40;

ModelConfig lm_cfg(bool backwards) {
  ModelConfig c = ModelConfig::lm(kV);
  c.emb_sz = 8;
  c.n_hid = 12;
  c.n_layers = 3;
  c.backwards = backwards;
  return c;
}

Vocab tiny_vocab() {
  std::vector<std::string> itos = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"};
  while ((Index)itos.size() < kV) itos.push_back("w" + std::to_string(itos.size()));
  return Vocab::from_itos(itos);
}

// Documents of 1 to 200 tokens: longer than the pooled window (max_len 1440 needs more: the
// classifier config below shrinks it), in reading order.
std::vector<std::vector<std::int32_t>> docs_of(std::uint64_t seed) {
  nn::Rng rng(seed);
  std::vector<std::vector<std::int32_t>> docs;
  for (int i = 0; i < 9; ++i) {
    std::vector<std::int32_t> d{2};
    const int len = 1 + (int)rng.below(200);
    for (int t = 1; t < len; ++t) d.push_back(9 + (std::int32_t)rng.below(kV - 9));
    docs.push_back(d);
  }
  return docs;
}

// The pooled features of each document by the training path in eval mode, a batch of one.
std::vector<float> reference(ClassifierModel& m, const std::vector<std::vector<std::int32_t>>& docs) {
  const Index F = 3 * m.config().emb_sz;
  std::vector<float> want;
  ClassifierCache<float> cache;
  ForwardOptions eval;
  eval.training = false;
  for (auto d : docs) {
    if (m.config().backwards) std::reverse(d.begin(), d.end());
    nn::Tensor<float> logits({1, m.config().n_classes});
    m.forward(nn::CView<TokenId>(d.data(), nn::Shape{1, (Index)d.size()}), logits.view(), cache, eval);
    want.insert(want.end(), cache.pooled.data(), cache.pooled.data() + F);
  }
  return want;
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << ": element " << i;
}

}  // namespace

TEST(Embedder, LanguageModelVectorsAreTheClassifierPoolingOfItsEncoder) {
  fs::path dir = clitest::fresh_dir("embed_lm");
  for (bool backwards : {false, true}) {
    nn::Rng rng(backwards ? 5 : 4);
    AwdLstmLM lm(lm_cfg(backwards));
    lm.init(rng);
    const std::string path = (dir / (backwards ? "bwd.safetensors" : "fwd.safetensors")).string();
    io::write_bundle(path, lm_bundle(lm, tiny_vocab(), "test"));

    auto e = Embedder::load(path);
    EXPECT_EQ(e.kind(), "lm");
    EXPECT_EQ(e.dim(), 24u);
    EXPECT_EQ(e.backwards(), backwards);
    auto docs = docs_of(backwards ? 12 : 11);
    auto got = e.embed_batch(docs, 4);

    // The same encoder under a classifier (fastai's bptt 72, max_len 1440) through forward().
    ModelConfig cc = ModelConfig::classifier(kV);
    cc.emb_sz = 8;
    cc.n_hid = 12;
    cc.n_layers = 3;
    cc.backwards = backwards;
    ClassifierModel m(cc);
    nn::Rng r2(1);
    m.init(r2);
    load_encoder_into_classifier(m, io::Bundle::load(path));
    expect_near_all(got, reference(m, docs), 1e-5, backwards ? "backward LM" : "forward LM");
    // batch sizes change nothing but summation order
    expect_near_all(e.embed_batch(docs, 1), got, 1e-5, "batch 1");

    // An encoder bundle (the LM without its decoder) gives the same vectors.
    const std::string enc = (dir / "enc.safetensors").string();
    auto contents = lm_bundle(lm, tiny_vocab(), "test");
    contents.config.kind = "encoder";
    std::vector<io::TensorOut> kept;
    for (auto& t : contents.tensors)
      if (t.name.rfind("0.", 0) == 0) {
        kept.push_back(t);
        kept.back().name = t.name.substr(2);  // encoder keys: no "0." prefix
      }
    contents.tensors = kept;
    io::write_bundle(enc, contents);
    expect_near_all(Embedder::load(enc).embed_batch(docs, 4), got, 0, "encoder bundle");
  }
  fs::remove_all(dir);
}

TEST(Embedder, ClassifierVectorsAreItsHeadsInput) {
  fs::path dir = clitest::fresh_dir("embed_clf");
  const std::string path = (dir / "tiny.safetensors").string();
  tiny::write(path);
  auto e = Embedder::load(path);
  auto clf = Classifier::load(path);
  EXPECT_EQ(e.kind(), "classifier");
  const auto& recs = tiny::golden()["records"];
  std::vector<std::vector<std::int32_t>> docs;
  for (const auto& r : recs) {
    const std::string t = r["title"], a = r["abstract"];
    docs.push_back(e.encode_paper(t, a));
    EXPECT_EQ(docs.back(), clf.encode_paper(t, a)) << "encoded as the classifier does";
  }
  auto m = ClassifierModel::from_bundle(io::Bundle::load(path));
  expect_near_all(e.embed_batch(docs), reference(m, docs), 1e-5, "classifier");
  EXPECT_THROW(Embedder::load(path, 1), std::invalid_argument);  // no member 1
  EXPECT_THROW(e.encode_paper("bad \xFF", "x"), std::invalid_argument);
  EXPECT_THROW(e.embed_batch(docs, 0), std::invalid_argument);
  EXPECT_THROW(e.embed_batch({{}}), std::invalid_argument);  // an empty document
  EXPECT_ANY_THROW(Embedder::load((dir / "missing.safetensors").string()));
  fs::remove_all(dir);
}

TEST(CliEmbed, WritesOneVectorPerGoodRecordInOrderAndNamesBadLines) {
  fs::path dir = clitest::fresh_dir("cli_embed");
  const std::string model = (dir / "tiny.safetensors").string();
  tiny::write(model);
  const auto& recs = tiny::golden()["records"];
  const fs::path in = dir / "in.jsonl", out = dir / "out.jsonl";
  {
    std::ofstream f(in);
    f << json{{"id", "a"}, {"title", recs[0]["title"]}, {"abstract", recs[0]["abstract"]}}.dump() << "\n";
    f << "{not json\n";                                                                              // 2
    f << json{{"title", recs[1]["title"]}, {"abstract", recs[1]["abstract"]}}.dump() << "\n";         // 3: no id
    f << "\n";                                                                                       // blank
    f << json{{"id", 7}, {"title", "only a title"}}.dump() << "\n";                                  // 5
    f << json{{"id", "t"}, {"text", join_title_abstract(recs[2]["title"].get<std::string>(), recs[2]["abstract"].get<std::string>())}}.dump() << "\n";
  }
  int rc = 0;
  std::string err = clitest::run(clitest::kBin + " embed -m " + model + " -i " + in.string() + " -o " +
                                     out.string() + " --batch 2 --chunk 2 -t 1",
                                 &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << "bad lines make the exit code 1\n" << err;
  EXPECT_NE(err.find("in.jsonl:2:"), std::string::npos) << err;
  EXPECT_NE(err.find("in.jsonl:5:"), std::string::npos) << err;
  EXPECT_EQ(err.find("in.jsonl:4:"), std::string::npos) << err;
  std::ifstream f(out);
  std::vector<json> js;
  for (std::string l; std::getline(f, l);) js.push_back(json::parse(l));
  ASSERT_EQ(js.size(), 3u);
  EXPECT_EQ(js[0]["id"], "a");
  EXPECT_EQ(js[1]["line"], 3);
  EXPECT_EQ(js[2]["id"], "t");
  auto e = Embedder::load(model);
  std::vector<std::vector<std::int32_t>> docs;
  for (int k = 0; k < 3; ++k)
    docs.push_back(e.encode_paper(recs[k]["title"].get<std::string>(), recs[k]["abstract"].get<std::string>()));
  auto want = e.embed_batch(docs);
  for (int k = 0; k < 3; ++k) {
    auto v = js[k]["vector"].get<std::vector<double>>();
    ASSERT_EQ(v.size(), e.dim());
    for (std::size_t j = 0; j < v.size(); ++j)
      ASSERT_NEAR(v[j], want[k * e.dim() + j], 1e-5 * (1 + std::fabs(want[k * e.dim() + j]))) << k << " " << j;
  }
  // Without a model: a usage error naming the flag.
  err = clitest::run(clitest::kBin + " embed -i " + in.string(), &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 2) << err;
  EXPECT_NE(err.find("--model"), std::string::npos) << err;
  // A bundle that is not a model of these kinds: a clear error, no output left behind.
  const fs::path junk = dir / "junk.safetensors", out2 = dir / "out2.jsonl";
  std::ofstream(junk) << "not a bundle";
  err = clitest::run(clitest::kBin + " embed -m " + junk.string() + " -i " + in.string() + " -o " + out2.string(), &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << err;
  EXPECT_NE(err.find("junk.safetensors"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out2));
  fs::remove_all(dir);
}
