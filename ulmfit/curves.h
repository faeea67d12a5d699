// ulmfit/curves.h — training curves: a CSV log and an SVG plot a person can look at.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace ulmfit {

// One row per logged point; `x` is the global step (or epoch), values by column name
// (e.g. "train_loss", "valid_loss", "valid_accuracy", "lr").
struct CurvePoint {
  double x = 0;
  std::string stage;  // e.g. "lm-frozen", "clas-stage-2"
  std::map<std::string, double> values;
};

class Curves {
 public:
  void add(CurvePoint p) { points_.push_back(std::move(p)); }
  const std::vector<CurvePoint>& points() const { return points_; }
  void clear() { points_.clear(); }

  // CSV: header "x,stage,<sorted columns>", empty cells where a value is missing. Atomic write.
  void write_csv(const std::string& path) const;
  // Parses a CSV written by write_csv (used by --resume). Throws on malformed input.
  static Curves read_csv(const std::string& path);
  // SVG line plot: one panel per group of columns (losses together, other metrics each alone).
  void write_svg(const std::string& path, const std::string& title) const;
  std::string svg(const std::string& title) const;

 private:
  std::vector<std::string> columns() const;
  std::vector<CurvePoint> points_;
};

}  // namespace ulmfit
