// ulmfit/input_check.cpp — see input_check.h.
#include "ulmfit/input_check.h"

#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include "io/bundle.h"
#include "io/dataset.h"
#include "ulmfit/labels.h"

namespace ulmfit {

namespace fs = std::filesystem;

void check_training_inputs(const TrainingInputs& in) {
  std::vector<std::string> problems;
  std::size_t more = 0;
  auto add = [&](const std::string& p) {
    if (problems.size() < 10)
      problems.push_back(p);
    else
      ++more;
  };
  auto is_label_problem = [](const std::string& m) { return m.find("label") != std::string::npos; };

  for (const auto& f : in.labeled) {
    std::size_t good = 0;
    try {
      io::DatasetOptions o;
      o.require_label = true;
      io::read_dataset(
          f, [&](io::Record& r) { good += r.label_index >= 0; },
          [&](const io::RecordError& e) {
            if (is_label_problem(e.message)) add(e.what());
          },
          o);
    } catch (const std::exception& e) {
      add(e.what());
      continue;
    }
    if (good == 0) add(f + ": no record with a valid label");
  }
  for (const auto& f : in.unlabeled) {
    try {
      io::LineReader r(f, 64u << 20);
      std::string line;
      bool too_long = false;
      r.next(line, too_long);
    } catch (const std::exception& e) {
      add(e.what());
    }
  }
  for (const auto& b : {in.pretrained, in.lm}) {
    if (b.empty()) continue;
    try {
      (void)io::Bundle::load(b);
    } catch (const std::exception& e) {
      add(e.what());
    }
  }
  if (!in.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(in.out_dir, ec);
    if (ec || !fs::is_directory(in.out_dir))
      add(in.out_dir + ": cannot create the output directory" + (ec ? ": " + ec.message() : ""));
    else if (::access(in.out_dir.c_str(), W_OK) != 0)
      add(in.out_dir + ": output directory is not writable");
  }
  if (problems.empty()) return;
  std::string msg = "the training inputs have problems (nothing was trained):";
  for (auto& p : problems) msg += "\n  " + p;
  if (more) msg += "\n  ... and " + std::to_string(more) + " more";
  throw std::runtime_error(msg);
}

}  // namespace ulmfit
