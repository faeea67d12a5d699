// nn/schedule.cpp — one-cycle schedule; see nn/schedule.h.
#include "nn/schedule.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "nn/optim.h"

namespace nn {

double cos_sched(double a, double b, double t) {
  return a + (1.0 + std::cos(M_PI * (1.0 - t))) * (b - a) / 2.0;
}

double one_cycle_position(std::int64_t epoch, std::int64_t it, std::int64_t n_iter,
                          std::int64_t n_epoch) {
  if (n_iter <= 0 || n_epoch <= 0)
    throw std::invalid_argument("one_cycle_position: n_iter and n_epoch must be > 0");
  return (double)epoch / (double)n_epoch + (double)it / ((double)n_iter * (double)n_epoch);
}

static double parse_positive(const std::string& s, const std::string& whole) {
  if (s.empty()) throw std::invalid_argument("learning rate '" + whole + "': empty number");
  char* end = nullptr;
  double x = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size())
    throw std::invalid_argument("learning rate '" + whole + "': '" + s + "' is not a number");
  if (!(x > 0) || !std::isfinite(x))
    throw std::invalid_argument("learning rate '" + whole + "': " + s +
                                " must be a positive finite number");
  return x;
}

LrSpec LrSpec::parse(const std::string& text) {
  auto colon = text.find(':');
  if (colon == std::string::npos) return scalar(parse_positive(text, text));
  if (text.find(':', colon + 1) != std::string::npos)
    throw std::invalid_argument("learning rate '" + text +
                                "': expected LR, LO:HI or :HI (one colon at most)");
  std::string lo = text.substr(0, colon), hi = text.substr(colon + 1);
  double h = parse_positive(hi, text);
  if (lo.empty()) return slice_hi(h);
  return slice(parse_positive(lo, text), h);
}

std::string LrSpec::str() const {
  std::ostringstream o;
  o.precision(6);
  switch (kind) {
    case Kind::Scalar: o << hi; break;
    case Kind::Slice: o << "slice(" << lo << ", " << hi << ")"; break;
    case Kind::SliceHi: o << "slice(" << hi << ")"; break;
  }
  return o.str();
}

std::vector<double> LrSpec::per_group(int G) const {
  if (G <= 0) throw std::invalid_argument("LrSpec::per_group: need at least one group");
  std::vector<double> v(G);
  switch (kind) {
    case Kind::Scalar:
      for (auto& x : v) x = hi;
      break;
    case Kind::Slice:
      // fastcore even_mults: step = (hi/lo)^(1/(G-1)); value i = lo * step^i; G == 1 -> hi.
      if (G == 1) {
        v[0] = hi;
      } else {
        double step = std::pow(hi / lo, 1.0 / (G - 1));
        for (int i = 0; i < G; ++i) v[i] = lo * std::pow(step, i);
      }
      break;
    case Kind::SliceHi:
      for (int i = 0; i + 1 < G; ++i) v[i] = hi / 10;
      v[G - 1] = hi;
      break;
  }
  return v;
}

double OneCycle::lr(int g, double pos) const {
  const double top = lr_max.at(g);
  if (pos < pct_start) return cos_sched(top / div, top, pos / pct_start);
  return cos_sched(top, top / div_final, (pos - pct_start) / (1.0 - pct_start));
}

double OneCycle::mom(double pos) const {
  if (pos < pct_start) return cos_sched(mom_start, mom_mid, pos / pct_start);
  return cos_sched(mom_mid, mom_end, (pos - pct_start) / (1.0 - pct_start));
}

void OneCycle::apply(Adam& opt, double pos) const {
  if ((int)lr_max.size() != opt.n_groups())
    throw std::invalid_argument("OneCycle::apply: " + std::to_string(lr_max.size()) +
                                " learning rates for " + std::to_string(opt.n_groups()) +
                                " parameter groups");
  const double m = mom(pos);
  for (int g = 0; g < opt.n_groups(); ++g) {
    opt.group(g).lr = lr(g, pos);
    opt.group(g).mom = m;
  }
}

}  // namespace nn
