// tools/labeled.h — the labeled records that `validate` and `calibrate` score: one file, an
// optional split filter, labels as the model names them; bad lines are warned about and counted.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "io/dataset.h"

namespace cli {

// Records of `data` whose split is `split` (empty: all), each with a label among `labels`.
// Bad lines are reported on stderr and counted in *bad (when given).
inline std::vector<io::Record> read_labeled(const std::string& data, const std::string& split,
                                            const std::vector<std::string>& labels,
                                            std::size_t* bad = nullptr) {
  io::DatasetOptions opt;
  opt.labels = labels;
  opt.require_label = true;
  std::vector<io::Record> recs;
  io::read_dataset(
      data,
      [&](io::Record& r) {
        if (split.empty() || r.split == split) recs.push_back(std::move(r));
      },
      [&](const io::RecordError& e) {
        if (bad) ++*bad;
        std::fprintf(stderr, "warning: skipping %s\n", e.what().c_str());
      },
      opt);
  return recs;
}

}  // namespace cli
