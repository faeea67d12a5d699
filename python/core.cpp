// python/core.cpp — inspire_classifier._core: the nanobind binding of the C++ predict API
// (ulmfit/classifier.h) and of the fastai learner import (ulmfit/fastai_import.h).
//
// The Python package (python/inspire_classifier/__init__.py) checks and normalises the
// arguments; this module loads models and classifies, with the GIL released around all compute.
// Errors: a missing model file raises FileNotFoundError, a directory IsADirectoryError, a
// corrupt/hostile/unsupported model file or invalid text ValueError (with the C++ message).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "io/bundle.h"
#include "io/errors.h"
#include "ulmfit/classifier.h"
#include "ulmfit/default_model.h"
#include "ulmfit/fastai_import.h"

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

// A loaded model. A learner is converted to a bundle in memory; `bytes` keeps that bundle alive
// for as long as the classifier that points into it.
class Model {
 public:
  // path empty: the model embedded in this build.
  Model(const std::string& path, bool fp16) {
    ulmfit::LoadOptions opt;
    opt.half_recurrent = fp16;
    if (path.empty()) {
      if (ulmfit::default_model_bytes().empty())
        throw std::runtime_error(
            "no default model embedded in this build; pass model_path (a .safetensors bundle or "
            "a fastai learner .h5/.pkl)");
      clf_ = std::make_unique<ulmfit::Classifier>(ulmfit::Classifier::load_or_default("", opt));
      return;
    }
    std::error_code ec;
    auto st = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(st))
      throw FileNotFound(path + ": no such model file (expected a model bundle .safetensors or "
                                "a fastai learner .h5/.pkl)");
    if (std::filesystem::is_directory(st))
      throw IsADirectory(path + ": is a directory, not a model file");
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
      .def(nb::init<const std::string&, bool>(), nb::arg("path"), nb::arg("fp16"),
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
          [](const Model& s, nb::list papers, int threads) {
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
              out = s.clf().predict_batch(in, threads);
            }
            nb::list result;
            for (const auto& p : out) result.append(to_dict(s.clf(), p));
            return result;
          },
          nb::arg("papers"), nb::arg("threads"),
          "A list of (title, abstract) tuples of UTF-8 bytes -> a list of dicts, in input order, "
          "computed in parallel (threads <= 0: all cores).");
}
