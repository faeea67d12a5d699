#include "ulmfit/recipe.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <variant>
#include <vector>

namespace ulmfit {

namespace {

// One row per field: the JSON name, the member, and what it means. to_json, from_json and
// describe() all walk this table, so a new field is one line here.
// (std::size_t is std::uint64_t on the 64-bit platforms this builds for.)
static_assert(std::is_same_v<std::size_t, std::uint64_t>, "size_t fields need their own alternative");
using Member = std::variant<std::string Recipe::*, std::int64_t Recipe::*, std::uint64_t Recipe::*,
                            int Recipe::*, double Recipe::*, bool Recipe::*>;
struct Field {
  const char* name;
  Member member;
  const char* help;
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"preset", &Recipe::preset, "preset the sizes and epochs came from"},
      {"emb_sz", &Recipe::emb_sz, "embedding size (= last LSTM layer's size)"},
      {"n_hid", &Recipe::n_hid, "LSTM hidden size"},
      {"n_layers", &Recipe::n_layers, "LSTM layers"},
      {"backwards", &Recipe::backwards, "read documents last token first"},
      {"seed", &Recipe::seed, "random seed (split, order, dropout, init)"},
      {"valid_pct", &Recipe::valid_pct, "validation share of records without a split"},
      {"pretrain_valid_pct", &Recipe::pretrain_valid_pct, "validation share of the pretraining corpus"},
      {"max_vocab", &Recipe::max_vocab, "vocabulary size limit"},
      {"min_freq", &Recipe::min_freq, "minimum token count"},
      {"lm_bs", &Recipe::lm_bs, "LM batch size"},
      {"lm_bptt", &Recipe::lm_bptt, "LM sequence length"},
      {"lm_drop_mult", &Recipe::lm_drop_mult, "LM dropout multiplier"},
      {"lm_wd", &Recipe::lm_wd, "LM weight decay"},
      {"pretrain_epochs", &Recipe::pretrain_epochs, "pretraining epochs"},
      {"pretrain_lr", &Recipe::pretrain_lr, "pretraining peak lr"},
      {"lm_frozen_epochs", &Recipe::lm_frozen_epochs, "LM epochs with only the embeddings trainable"},
      {"lm_frozen_lr", &Recipe::lm_frozen_lr, "peak lr of the frozen LM stage"},
      {"lm_epochs", &Recipe::lm_epochs, "unfrozen LM fine-tuning epochs"},
      {"lm_lr", &Recipe::lm_lr, "peak lr of the unfrozen LM stage"},
      {"clas_bs", &Recipe::clas_bs, "classifier batch size"},
      {"clas_bptt", &Recipe::clas_bptt, "classifier chunk length"},
      {"clas_max_len", &Recipe::clas_max_len, "classifier positions kept for pooling"},
      {"clas_drop_mult", &Recipe::clas_drop_mult, "classifier dropout multiplier"},
      {"clas_wd", &Recipe::clas_wd, "classifier weight decay"},
      {"clas_lr", &Recipe::clas_lr, "peak lr of classifier stage 1 (then /2, /4, /20)"},
      {"clas_epochs", &Recipe::clas_epochs, "epochs of the last (unfrozen) classifier stage"},
  };
  return f;
}

std::string type_name(const Member& m) {
  return std::visit(
      [](auto p) -> std::string {
        using V = std::remove_reference_t<decltype(std::declval<Recipe&>().*p)>;
        if constexpr (std::is_same_v<V, std::string>) return "a string";
        else if constexpr (std::is_same_v<V, bool>) return "true or false";
        else if constexpr (std::is_same_v<V, double>) return "a number";
        else if constexpr (std::is_unsigned_v<V>) return "a non-negative integer";
        else return "an integer";
      },
      m);
}

void set_field(Recipe& r, const Field& f, const nlohmann::json& v) {
  auto bad = [&]() {
    return std::invalid_argument("recipe: field '" + std::string(f.name) + "' must be " +
                                 type_name(f.member) + ", got " + v.dump());
  };
  std::visit(
      [&](auto p) {
        using V = std::remove_reference_t<decltype(r.*p)>;
        if constexpr (std::is_same_v<V, std::string>) {
          if (!v.is_string()) throw bad();
          r.*p = v.get<std::string>();
        } else if constexpr (std::is_same_v<V, bool>) {
          if (!v.is_boolean()) throw bad();
          r.*p = v.get<bool>();
        } else if constexpr (std::is_same_v<V, double>) {
          if (!v.is_number()) throw bad();
          r.*p = v.get<double>();
        } else if constexpr (std::is_unsigned_v<V>) {
          if (!v.is_number_integer()) throw bad();
          if (!v.is_number_unsigned() && v.get<std::int64_t>() < 0) throw bad();
          auto u = v.get<std::uint64_t>();
          if (u > (std::uint64_t)std::numeric_limits<V>::max()) throw bad();
          r.*p = (V)u;
        } else {
          if (!v.is_number_integer()) throw bad();
          if (v.is_number_unsigned() && v.get<std::uint64_t>() > (std::uint64_t)std::numeric_limits<V>::max())
            throw bad();
          auto i = v.get<std::int64_t>();
          if (i < (std::int64_t)std::numeric_limits<V>::min() ||
              i > (std::int64_t)std::numeric_limits<V>::max())
            throw bad();
          r.*p = (V)i;
        }
      },
      f.member);
}

nlohmann::json get_field(const Recipe& r, const Field& f) {
  return std::visit([&](auto p) { return nlohmann::json(r.*p); }, f.member);
}

}  // namespace

Recipe Recipe::from_preset(const std::string& name) {
  Preset p = ulmfit::preset(name);  // throws listing the known names
  Recipe r;
  r.preset = p.name;
  r.emb_sz = p.emb_sz;
  r.n_hid = p.n_hid;
  r.n_layers = p.n_layers;
  r.max_vocab = p.max_vocab;
  r.min_freq = p.min_freq;
  r.lm_bs = p.lm_bs;
  r.lm_bptt = p.lm_bptt;
  r.clas_bs = p.clas_bs;
  r.pretrain_epochs = p.pretrain_epochs;
  r.lm_frozen_epochs = p.lm_frozen_epochs;
  r.lm_epochs = p.lm_epochs;
  r.clas_epochs = p.clas_last_epochs;
  return r;
}

nlohmann::json Recipe::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (auto& f : fields()) j[f.name] = get_field(*this, f);
  return j;
}

Recipe Recipe::from_json(const nlohmann::json& j, const Recipe& base) {
  if (!j.is_object()) throw std::invalid_argument("recipe: expected a JSON object, got " + j.dump());
  Recipe r = base;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Field* f = nullptr;
    for (auto& g : fields())
      if (it.key() == g.name) f = &g;
    if (!f) {
      std::string known;
      for (auto& g : fields()) known += (known.empty() ? "" : ", ") + std::string(g.name);
      throw std::invalid_argument("recipe: unknown field '" + it.key() + "' (known: " + known + ")");
    }
    set_field(r, *f, it.value());
  }
  r.validate();
  return r;
}

Recipe Recipe::from_json(const nlohmann::json& j) { return from_json(j, Recipe()); }
Recipe Recipe::from_json_text(const std::string& text) { return from_json_text(text, Recipe()); }

Recipe Recipe::from_json_text(const std::string& text, const Recipe& base) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("recipe: not valid JSON: ") + e.what());
  }
  return from_json(j, base);
}

void Recipe::validate() const {
  auto need = [](bool ok, const char* field, const std::string& what) {
    if (!ok) throw std::invalid_argument(std::string("recipe: ") + field + " " + what);
  };
  need(emb_sz >= 1 && emb_sz <= 4096, "emb_sz", "must be in [1, 4096], got " + std::to_string(emb_sz));
  need(n_hid >= 1 && n_hid <= 8192, "n_hid", "must be in [1, 8192], got " + std::to_string(n_hid));
  need(n_layers >= 2 && n_layers <= 8, "n_layers", "must be in [2, 8], got " + std::to_string(n_layers));
  auto pct = [&](double v, const char* f) {
    need(std::isfinite(v) && v >= 0 && v < 1, f, "must be in [0, 1), got " + std::to_string(v));
  };
  pct(valid_pct, "valid_pct");
  pct(pretrain_valid_pct, "pretrain_valid_pct");
  need(max_vocab >= 1, "max_vocab", "must be positive");
  need(min_freq >= 1, "min_freq", "must be positive");
  need(lm_bs >= 1, "lm_bs", "must be positive");
  need(lm_bptt >= 1, "lm_bptt", "must be positive");
  need(clas_bs >= 1, "clas_bs", "must be positive");
  need(clas_bptt >= 1, "clas_bptt", "must be positive");
  need(clas_max_len >= 1, "clas_max_len", "must be positive");
  auto mult = [&](double v, const char* f) {
    // every p = fastai's p x drop_mult must stay below 1 (the largest fastai p is 0.4)
    need(std::isfinite(v) && v >= 0 && v < 2.5, f, "must be in [0, 2.5), got " + std::to_string(v));
  };
  mult(lm_drop_mult, "lm_drop_mult");
  mult(clas_drop_mult, "clas_drop_mult");
  auto nonneg = [&](double v, const char* f) {
    need(std::isfinite(v) && v >= 0, f, "must be >= 0, got " + std::to_string(v));
  };
  nonneg(lm_wd, "lm_wd");
  nonneg(clas_wd, "clas_wd");
  auto lr = [&](double v, const char* f) {
    need(std::isfinite(v) && v > 0, f, "must be > 0, got " + std::to_string(v));
  };
  lr(pretrain_lr, "pretrain_lr");
  lr(lm_frozen_lr, "lm_frozen_lr");
  lr(lm_lr, "lm_lr");
  lr(clas_lr, "clas_lr");
  auto ep = [&](int v, const char* f) { need(v >= 0, f, "must be >= 0, got " + std::to_string(v)); };
  ep(pretrain_epochs, "pretrain_epochs");
  ep(lm_frozen_epochs, "lm_frozen_epochs");
  ep(lm_epochs, "lm_epochs");
  ep(clas_epochs, "clas_epochs");
}

std::vector<Stage> Recipe::pretrain_stages() const { return lm_pretrain_stages(pretrain_epochs, pretrain_lr); }

std::vector<Stage> Recipe::finetune_stages(bool with_frozen) const {
  return lm_finetune_stages(with_frozen ? lm_frozen_epochs : 0, lm_frozen_lr, lm_epochs, lm_lr);
}

std::vector<Stage> Recipe::classifier_stages() const {
  return ulmfit::classifier_stages(clas_epochs, clas_lr);
}

std::string Recipe::describe() const {
  std::ostringstream o;
  for (auto& f : fields()) {
    std::string name = f.name, value = get_field(*this, f).dump();
    o << "  " << name << std::string(name.size() < 20 ? 20 - name.size() : 1, ' ') << value
      << std::string(value.size() < 11 ? 11 - value.size() : 1, ' ') << f.help << "\n";
  }
  return o.str();
}

std::optional<Recipe> recipe_of(const io::Bundle& b) {
  auto it = b.metadata().find(kRecipeMetadataKey);
  if (it == b.metadata().end()) return std::nullopt;
  try {
    return Recipe::from_json_text(it->second);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("bundle metadata `recipe`: " + std::string(e.what()));
  }
}

}  // namespace ulmfit
