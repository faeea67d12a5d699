// python/core.cpp — inspire_classifier._core: the nanobind binding of the C++ predict API
// (ulmfit/classifier.h: Classifier, and Embedder for document vectors), of the fastai learner import (ulmfit/fastai_import.h), of the training
// pipeline (ulmfit/pipeline.h) and of create-dataset (harvest/harvest.h).
//
// The Python package (python/inspire_classifier/__init__.py) checks and normalises the
// arguments; this module loads models and classifies, with the GIL released around all compute.
// Errors: a missing model file raises FileNotFoundError, a directory IsADirectoryError, a
// corrupt/hostile/unsupported model file or invalid text ValueError (with the C++ message).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <map>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "io/bundle.h"
#include "harvest/harvest.h"
#include "io/errors.h"
#include "nn/backend.h"
#include "ulmfit/classifier.h"
#include "ulmfit/default_model.h"
#include "ulmfit/fastai_import.h"
#include "ulmfit/pipeline.h"
#include "ulmfit/recipe.h"

namespace nb = nanobind;

namespace {

// Mapped to Python's FileNotFoundError / IsADirectoryError (see the translator below).
struct FileNotFound : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct IsADirectory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// True when `path` holds a PyTorch checkpoint (a fastai learner exported with learn.export():
// INSPIRE's classifier.h5 / export.pkl) rather than a model bundle (safetensors).
bool is_torch_file(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".safetensors") return false;
  if (ext == ".h5" || ext == ".pkl" || ext == ".pth" || ext == ".pt") return true;
  // Any other name: look at the first bytes (zip: torch >= 1.6; 0x80 PROTO: legacy torch.save).
  std::ifstream in(path, std::ios::binary);
  char head[4] = {0, 0, 0, 0};
  in.read(head, sizeof head);
  if (in.gcount() >= 2 && head[0] == 'P' && head[1] == 'K') return true;
  return in.gcount() >= 1 && static_cast<unsigned char>(head[0]) == 0x80;
}

// FileNotFound / IsADirectory for a path that is not a file (`expected`: what it should hold).
void check_model_path(const std::string& path, const char* expected) {
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st))
    throw FileNotFound(path + ": no such model file (expected " + expected + ")");
  if (std::filesystem::is_directory(st))
    throw IsADirectory(path + ": is a directory, not a model file");
}

// A loaded model. A learner is converted to a bundle in memory; `bytes` keeps that bundle alive
// for as long as the classifier that points into it.
class Model {
 public:
  // path empty: the model embedded in this build.
  Model(const std::string& path, bool fp16, bool int8, bool w8a8) {
    ulmfit::LoadOptions opt;
    opt.half_recurrent = fp16;
    opt.int8_recurrent = int8;
    opt.w8a8 = w8a8;  // refused with std::invalid_argument (ValueError) without AVX512-VNNI
    if (path.empty()) {
      if (ulmfit::default_model_bytes().empty())
        throw std::runtime_error(
            "no default model embedded in this build; pass model_path (a .safetensors bundle or "
            "a fastai learner .h5/.pkl)");
      clf_ = std::make_unique<ulmfit::Classifier>(ulmfit::Classifier::load_or_default("", opt));
      return;
    }
    check_model_path(path, "a model bundle .safetensors or a fastai learner .h5/.pkl");
    try {
      if (is_torch_file(path)) {
        // Imported in memory by our own pickle reader: no code in the file is ever run.
        auto imported = ulmfit::import_learner(path);
        bytes_ = std::make_shared<std::string>(
            io::serialize_bundle(imported.contents("imported from fastai learner " + path)));
        clf_ = std::make_unique<ulmfit::Classifier>(
            ulmfit::Classifier::from_memory(*bytes_, path, opt));
      } else {
        clf_ = std::make_unique<ulmfit::Classifier>(ulmfit::Classifier::load(path, opt));
      }
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      // Whatever is wrong with the file (format, hostile pickle, wrong model kind, sizes).
      throw nb::value_error(e.what());
    }
  }

  const ulmfit::Classifier& clf() const { return *clf_; }

 private:
  std::shared_ptr<std::string> bytes_;  // declared first: destroyed after clf_
  std::unique_ptr<ulmfit::Classifier> clf_;
};

// A loaded Embedder (document vectors; ulmfit/classifier.h) of a model bundle.
class EmbedModel {
 public:
  EmbedModel(const std::string& path, std::size_t member) {
    check_model_path(path, "a language model or classifier bundle .safetensors");
    try {
      emb_ = std::make_unique<ulmfit::Embedder>(ulmfit::Embedder::load(path, member));
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      throw nb::value_error(e.what());  // format, kind, member
    }
  }
  const ulmfit::Embedder& emb() const { return *emb_; }

 private:
  std::unique_ptr<ulmfit::Embedder> emb_;
};

std::string as_string(nb::handle h, const char* what) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (!PyBytes_Check(h.ptr()) || PyBytes_AsStringAndSize(h.ptr(), &data, &size) != 0)
    throw nb::type_error((std::string(what) + " must be bytes (UTF-8)").c_str());
  return std::string(data, static_cast<std::size_t>(size));
}

nb::dict to_dict(const ulmfit::Classifier& clf, const ulmfit::Prediction& p) {
  nb::dict scores;
  const auto& labels = clf.labels();
  for (std::size_t i = 0; i < labels.size() && i < 3; ++i)
    scores[nb::str(labels[i].c_str(), labels[i].size())] =
        nb::float_(static_cast<double>(p.scores[i]));
  nb::dict d;
  d["prediction"] = nb::str(p.label.c_str(), p.label.size());
  d["scores"] = scores;
  return d;
}

// Thrown through the library when a Python callback raised; the Python exception is kept in
// CallbackGuard and re-raised once the GIL is held again.
struct CallbackFailed {};

// Runs Python callbacks from library code that runs with the GIL released: takes the GIL, calls,
// and turns a Python exception into CallbackFailed (stopping the library call).
class CallbackGuard {
 public:
  template <class F>
  void call(F&& f) {
    nb::gil_scoped_acquire gil;
    if (error_) throw CallbackFailed{};
    try {
      f();
    } catch (nb::python_error& e) {
      error_.emplace(std::move(e));
      throw CallbackFailed{};
    }
  }
  // With the GIL held: re-raises the kept Python exception, if any.
  void rethrow() {
    if (error_) {
      nb::python_error e = std::move(*error_);
      error_.reset();
      throw e;
    }
  }
  ~CallbackGuard() {
    if (error_) {
      nb::gil_scoped_acquire gil;
      error_.reset();
    }
  }

 private:
  std::optional<nb::python_error> error_;
};

nb::dict lm_stage_dict(const ulmfit::LmStageResult& r) {
  nb::dict d;
  d["valid_loss"] = r.lm.valid_loss;
  d["valid_accuracy"] = r.lm.valid_accuracy;
  d["steps"] = r.lm.steps;
  d["model_path"] = r.lm.model_path;
  d["vocab_size"] = r.vocab_size;
  d["train_docs"] = r.train_docs;
  d["valid_docs"] = r.valid_docs;
  return d;
}

nb::dict train(const std::vector<std::string>& data, const std::string& out_dir,
               const std::vector<std::string>& lm_data, const std::vector<std::string>& pretrain_data,
               const std::string& pretrained, const std::string& preset, const std::string& recipe_json,
               bool resume, int threads, std::int64_t max_steps, const std::string& device,
               const std::string& provenance, nb::object log, nb::object progress) {
  ulmfit::Recipe r;
  try {
    r = ulmfit::Recipe::from_preset(preset);
    if (!recipe_json.empty()) r = ulmfit::Recipe::from_json_text(recipe_json, r);
    r.validate();
  } catch (const std::exception& e) {
    throw nb::value_error((std::string("recipe: ") + e.what()).c_str());
  }
  ulmfit::PipelineInputs in;
  in.data = data;
  in.lm_data = lm_data;
  in.pretrain_data = pretrain_data;
  in.pretrained = pretrained;
  ulmfit::RunOptions o;
  o.out_dir = out_dir;
  o.resume = resume;
  o.quiet = true;  // no progress bars: Python sees the log lines and the epochs
  o.max_steps = max_steps;
  o.device = device;
  o.provenance = provenance;
  CallbackGuard guard;
  if (!log.is_none())
    o.log = [&](const std::string& line) {
      guard.call([&] { log(nb::str(line.c_str(), line.size())); });
    };
  if (!progress.is_none())
    o.on_epoch = [&](const std::string& stage, int epoch, const std::map<std::string, double>& m) {
      guard.call([&] {
        nb::dict metrics;
        for (const auto& [k, v] : m) metrics[nb::str(k.c_str(), k.size())] = v;
        progress(nb::str(stage.c_str(), stage.size()), epoch, metrics);
      });
    };
  ulmfit::PipelineResult res;
  std::string failure;
  bool failed = false;
  {
    nb::gil_scoped_release release;
    if (threads > 0) nn::set_num_threads(threads);
    try {
      res = ulmfit::run_pipeline(r, in, o);
    } catch (const CallbackFailed&) {
      failed = true;
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      failure = e.what();
      if (failure.empty()) failure = "training failed";
    }
  }
  guard.rethrow();
  if (failed) throw std::runtime_error("training stopped by a callback");
  if (!failure.empty()) throw nb::value_error(failure.c_str());

  nb::dict d;
  d["model_path"] = res.model_path;
  d["out_dir"] = out_dir;
  d["recipe"] = r.to_json().dump();
  d["pretrain"] = res.pretrain ? nb::object(lm_stage_dict(*res.pretrain)) : nb::none();
  d["lm"] = res.lm ? nb::object(lm_stage_dict(*res.lm)) : nb::none();
  const auto& c = res.classifier.clas;
  nb::dict cd;
  cd["valid_accuracy"] = c.valid_accuracy;
  cd["valid_macro_f1"] = c.valid_macro_f1;
  cd["best_macro_f1"] = c.best_macro_f1;
  cd["best_stage"] = c.best_stage;
  cd["best_epoch"] = c.best_epoch;
  cd["steps"] = c.steps;
  cd["model_path"] = c.model_path;
  cd["last_model_path"] = c.last_model_path;
  cd["train_docs"] = res.classifier.train_docs;
  cd["valid_docs"] = res.classifier.valid_docs;
  d["classifier"] = cd;
  return d;
}

nb::dict stats_dict(const harvest::Stats& s) {
  nb::dict d;
  for (int i = 0; i < 3; ++i) d[harvest::kLabels[i]] = s.per_label[i];
  d["kept"] = s.kept();
  d["no_abstract"] = s.no_abstract;
  d["duplicates"] = s.duplicates;
  d["bad"] = s.bad;
  d["missing"] = s.missing;
  d["split_windows"] = s.split_windows;
  d["requests"] = s.requests;
  d["windows_done"] = s.windows_done;
  d["windows_total"] = s.windows_total;
  d["resumed_rows"] = s.resumed_rows;
  d["seconds"] = s.seconds;
  return d;
}

// The arguments are checked by inspire_classifier.create_dataset; dates are "YYYY[-MM]".
nb::dict create_dataset(const std::string& source, const std::string& date_from, const std::string& date_to,
                        const std::string& output, const std::string& es_url, const std::string& holdingpen_url,
                        const std::string& api_url, const std::string& username, const std::string& password,
                        const std::string& ca_cert, bool resume, bool rejected, int page_size, int api_page_size,
                        int retries, double timeout, nb::object warn, nb::object progress) {
  harvest::Options opt;
  if (source == "opensearch")
    opt.source = harvest::Source::OpenSearch;
  else if (source == "inspire-api")
    opt.source = harvest::Source::InspireApi;
  else
    throw nb::value_error(("source must be 'opensearch' or 'inspire-api', got '" + source + "'").c_str());
  try {
    opt.range = harvest::make_range(date_from, date_to);
  } catch (const std::exception& e) {
    std::string msg = e.what();  // the command's flag names -> the keyword arguments'
    for (auto [flag, kw] : {std::pair{"--from", "date_from"}, std::pair{"--to", "date_to"}})
      for (auto at = msg.find(flag); at != std::string::npos; at = msg.find(flag, at + 1))
        msg.replace(at, std::string(flag).size(), kw);
    throw nb::value_error(msg.c_str());
  }
  opt.es_url = es_url;
  opt.holdingpen_url = holdingpen_url;
  if (!api_url.empty()) opt.api_url = api_url;
  opt.username = username;
  opt.password = password;
  opt.ca_cert = ca_cert;
  opt.output = output;
  opt.resume = resume;
  opt.rejected = rejected;
  opt.es_page_size = page_size;
  opt.api_page_size = api_page_size;
  opt.retry.max_attempts = retries;
  opt.timeout_s = timeout;
  CallbackGuard guard;
  harvest::Callbacks cb;
  if (!warn.is_none())
    cb.warn = [&](const std::string& m) { guard.call([&] { warn(nb::str(m.c_str(), m.size())); }); };
  if (!progress.is_none())
    cb.progress = [&](const harvest::Stats& s, const std::string& window) {
      guard.call([&] { progress(stats_dict(s), nb::str(window.c_str(), window.size())); });
    };
  harvest::Stats st;
  std::string failure;
  int kind = 0;  // 1 callback, 2 bad options, 3 network, 4 other harvest/file error
  {
    nb::gil_scoped_release release;
    try {
      st = harvest::create_dataset(opt, cb);
    } catch (const CallbackFailed&) {
      kind = 1;
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::invalid_argument& e) {
      kind = 2, failure = e.what();
    } catch (const harvest::NetworkError& e) {
      kind = 3, failure = e.what();
    } catch (const std::exception& e) {
      kind = 4, failure = e.what();
    }
  }
  guard.rethrow();
  switch (kind) {
    case 1: throw std::runtime_error("create_dataset stopped by a callback");
    case 2: throw nb::value_error(failure.c_str());
    case 3: PyErr_SetString(PyExc_ConnectionError, failure.c_str()); throw nb::python_error();
    case 4: throw std::runtime_error(failure);
    default: break;
  }
  return stats_dict(st);
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "inspire_classifier._core: the C++ library behind inspire_classifier (internal; use "
            "inspire_classifier.Classifier)";
  m.attr("__version__") = INSPIRE_VERSION;

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const FileNotFound& e) {
      PyErr_SetString(PyExc_FileNotFoundError, e.what());
    } catch (const IsADirectory& e) {
      PyErr_SetString(PyExc_IsADirectoryError, e.what());
    } catch (const io::FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("has_default_model", [] { return !ulmfit::default_model_bytes().empty(); },
        "True when this build embeds a default model (used when model_path is None).");
  m.def("default_model_origin", [] { return ulmfit::default_model_origin(); },
        "The file name the embedded default model was built from ('' when none).");

  nb::class_<Model>(m, "Model", "A loaded classifier (immutable; safe to share between threads).")
      .def(nb::init<const std::string&, bool, bool, bool>(), nb::arg("path"), nb::arg("fp16"),
           nb::arg("int8") = false, nb::arg("w8a8") = false,
           nb::call_guard<nb::gil_scoped_release>(),
           "Loads a model bundle or a fastai learner ('' = the embedded default model).")
      .def_prop_ro("labels",
                   [](const Model& s) {
                     nb::list l;
                     for (auto& x : s.clf().labels()) l.append(nb::str(x.c_str(), x.size()));
                     return nb::tuple(l);
                   })
      .def_prop_ro("temperature", [](const Model& s) { return (double)s.clf().temperature(); })
      .def_prop_ro("vocab_size", [](const Model& s) { return s.clf().vocab_size(); })
      .def_prop_ro("n_members", [](const Model& s) { return s.clf().n_members(); })
      .def_prop_ro("source", [](const Model& s) { return s.clf().source(); })
      .def(
          "predict",
          [](const Model& s, nb::handle title, nb::handle abstract) {
            std::string t = as_string(title, "title"), a = as_string(abstract, "abstract");
            ulmfit::Prediction p;
            {
              nb::gil_scoped_release release;
              p = s.clf().predict_coreness(t, a);  // std::invalid_argument -> ValueError
            }
            return to_dict(s.clf(), p);
          },
          nb::arg("title"), nb::arg("abstract"),
          "One paper (title and abstract as UTF-8 bytes) -> {'prediction', 'scores'}.")
      .def(
          "predict_batch",
          [](const Model& s, nb::list papers, int threads, int batch) {
            std::vector<ulmfit::Paper> in;
            in.reserve(papers.size());
            for (nb::handle item : papers) {
              if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2)
                throw nb::type_error("papers must be a list of (title, abstract) tuples");
              nb::tuple t = nb::borrow<nb::tuple>(item);
              in.push_back({as_string(t[0], "title"), as_string(t[1], "abstract")});
            }
            std::vector<ulmfit::Prediction> out;
            {
              nb::gil_scoped_release release;
              out = s.clf().predict_batch(in, threads, batch);
            }
            nb::list result;
            for (const auto& p : out) result.append(to_dict(s.clf(), p));
            return result;
          },
          nb::arg("papers"), nb::arg("threads"), nb::arg("batch") = 1,
          "A list of (title, abstract) tuples of UTF-8 bytes -> a list of dicts, in input order, "
          "computed in parallel (threads <= 0: all cores); batch > 1 pads that many papers "
          "together.");

  nb::class_<EmbedModel>(m, "EmbedModel", "A loaded model for document vectors (immutable).")
      .def(nb::init<const std::string&, std::size_t>(), nb::arg("path"), nb::arg("member"),
           nb::call_guard<nb::gil_scoped_release>(),
           "Loads a language model, encoder or classifier bundle (member K of an ensemble).")
      .def_prop_ro("dim", [](const EmbedModel& s) { return s.emb().dim(); })
      .def_prop_ro("kind", [](const EmbedModel& s) { return s.emb().kind(); })
      .def(
          "embed_batch",
          [](const EmbedModel& s, nb::list papers, int batch) {
            std::vector<std::pair<std::string, std::string>> in;
            in.reserve(papers.size());
            for (nb::handle item : papers) {
              if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2)
                throw nb::type_error("papers must be a list of (title, abstract) tuples");
              nb::tuple t = nb::borrow<nb::tuple>(item);
              in.emplace_back(as_string(t[0], "title"), as_string(t[1], "abstract"));
            }
            std::vector<float> v;
            {
              nb::gil_scoped_release release;
              std::vector<std::vector<std::int32_t>> ids;
              ids.reserve(in.size());
              for (std::size_t i = 0; i < in.size(); ++i) {
                try {
                  ids.push_back(s.emb().encode_paper(in[i].first, in[i].second));
                } catch (const std::invalid_argument& e) {
                  throw std::invalid_argument("papers[" + std::to_string(i) + "]: " + e.what());
                }
              }
              v = s.emb().embed_batch(ids, batch);
            }
            const std::size_t d = s.emb().dim();
            nb::list result;
            for (std::size_t i = 0; i < in.size(); ++i) {
              nb::list row;
              for (std::size_t j = 0; j < d; ++j) row.append(nb::float_(static_cast<double>(v[i * d + j])));
              result.append(row);
            }
            return result;
          },
          nb::arg("papers"), nb::arg("batch"),
          "A list of (title, abstract) tuples of UTF-8 bytes -> a list of vectors (lists of "
          "floats), in input order.");

  m.def("train", &train, nb::arg("data"), nb::arg("out_dir"), nb::arg("lm_data"), nb::arg("pretrain_data"),
        nb::arg("pretrained"), nb::arg("preset"), nb::arg("recipe_json"), nb::arg("resume"), nb::arg("threads"),
        nb::arg("max_steps"), nb::arg("device"), nb::arg("provenance"), nb::arg("log").none(),
        nb::arg("progress").none(),
        "The ULMFiT pipeline (ulmfit/pipeline.h run_pipeline) -> dict; the GIL is released while it runs.");
  m.def("create_dataset", &create_dataset, nb::arg("source"), nb::arg("date_from"), nb::arg("date_to"),
        nb::arg("output"), nb::arg("es_url"), nb::arg("holdingpen_url"), nb::arg("api_url"), nb::arg("username"),
        nb::arg("password"), nb::arg("ca_cert"), nb::arg("resume"), nb::arg("rejected"), nb::arg("page_size"),
        nb::arg("api_page_size"), nb::arg("retries"), nb::arg("timeout"), nb::arg("warn").none(),
        nb::arg("progress").none(),
        "create-dataset (harvest/harvest.h) -> dict of counts; the GIL is released while it runs.");
}
