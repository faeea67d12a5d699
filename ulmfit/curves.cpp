#include "ulmfit/curves.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

#include "io/atomic_file.h"

namespace ulmfit {

std::vector<std::string> Curves::columns() const {
  std::set<std::string> s;
  for (auto& p : points_)
    for (auto& kv : p.values) s.insert(kv.first);
  return {s.begin(), s.end()};
}

void Curves::write_csv(const std::string& path) const {
  auto cols = columns();
  io::write_file_atomically(path, [&](std::ostream& o) {
    o << "x,stage";
    for (auto& c : cols) o << "," << c;
    o << "\n";
    o.precision(9);
    for (auto& p : points_) {
      o << p.x << "," << p.stage;
      for (auto& c : cols) {
        o << ",";
        auto it = p.values.find(c);
        if (it != p.values.end()) o << it->second;
      }
      o << "\n";
    }
  });
}

Curves Curves::read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  auto split = [](const std::string& line) {
    std::vector<std::string> f;
    std::string cur;
    std::istringstream ss(line);
    while (std::getline(ss, cur, ',')) f.push_back(cur);
    if (!line.empty() && line.back() == ',') f.push_back("");
    return f;
  };
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(path + ": empty curves file");
  auto head = split(line);
  if (head.size() < 2 || head[0] != "x" || head[1] != "stage")
    throw std::runtime_error(path + ": not a curves CSV (header must start with x,stage)");
  Curves c;
  long lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    auto f = split(line);
    if (f.size() != head.size())
      throw std::runtime_error(path + ": line " + std::to_string(lineno) + " has " +
                               std::to_string(f.size()) + " fields, expected " +
                               std::to_string(head.size()));
    CurvePoint p;
    try {
      p.x = std::stod(f[0]);
      p.stage = f[1];
      for (size_t i = 2; i < f.size(); ++i)
        if (!f[i].empty()) p.values[head[i]] = std::stod(f[i]);
    } catch (const std::logic_error&) {
      throw std::runtime_error(path + ": line " + std::to_string(lineno) + ": bad number");
    }
    c.add(std::move(p));
  }
  return c;
}

namespace {
std::string esc(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else o += ch;
  }
  return o;
}
const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
}  // namespace

std::string Curves::svg(const std::string& title) const {
  auto cols = columns();
  // Panels: all *loss* columns together, then each other column alone.
  std::vector<std::vector<std::string>> panels;
  std::vector<std::string> losses;
  for (auto& c : cols)
    if (c.find("loss") != std::string::npos) losses.push_back(c);
  if (!losses.empty()) panels.push_back(losses);
  for (auto& c : cols)
    if (c.find("loss") == std::string::npos) panels.push_back({c});
  const int W = 760, PH = 240, top = 40, gap = 50, left = 70, right = 20;
  int H = top + (int)panels.size() * (PH + gap) + 10;
  if (panels.empty()) H = top + 60;
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << esc(title)
    << "</text>\n";
  if (panels.empty()) o << "<text x='20' y='60'>no data yet</text>\n";
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin;
  for (auto& p : points_) xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
  if (!(xmax > xmin)) xmax = xmin + 1;
  for (size_t pi = 0; pi < panels.size(); ++pi) {
    int y0 = top + (int)pi * (PH + gap);
    double ymin = std::numeric_limits<double>::infinity(), ymax = -ymin;
    for (auto& p : points_)
      for (auto& c : panels[pi]) {
        auto it = p.values.find(c);
        if (it != p.values.end() && std::isfinite(it->second))
          ymin = std::min(ymin, it->second), ymax = std::max(ymax, it->second);
      }
    if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
    if (!(ymax > ymin)) ymax = ymin + 1e-9 + std::fabs(ymin) * 0.01;
    double pad = (ymax - ymin) * 0.05;
    ymin -= pad, ymax += pad;
    int pw = W - left - right;
    auto X = [&](double x) { return left + (x - xmin) / (xmax - xmin) * pw; };
    auto Y = [&](double y) { return y0 + PH - (y - ymin) / (ymax - ymin) * PH; };
    o << "<rect x='" << left << "' y='" << y0 << "' width='" << pw << "' height='" << PH
      << "' fill='none' stroke='#888'/>\n";
    for (int k = 0; k <= 4; ++k) {
      double yv = ymin + (ymax - ymin) * k / 4;
      char b[32];
      std::snprintf(b, sizeof b, "%.4g", yv);
      o << "<text x='" << left - 6 << "' y='" << Y(yv) + 4 << "' text-anchor='end'>" << b
        << "</text><line x1='" << left << "' x2='" << left + pw << "' y1='" << Y(yv) << "' y2='"
        << Y(yv) << "' stroke='#eee'/>\n";
      double xv = xmin + (xmax - xmin) * k / 4;
      std::snprintf(b, sizeof b, "%.4g", xv);
      o << "<text x='" << X(xv) << "' y='" << y0 + PH + 16 << "' text-anchor='middle'>" << b
        << "</text>\n";
    }
    for (size_t ci = 0; ci < panels[pi].size(); ++ci) {
      const auto& c = panels[pi][ci];
      const char* color = kColors[ci % 6];
      std::ostringstream pts;
      int npts = 0;
      for (auto& p : points_) {
        auto it = p.values.find(c);
        if (it == p.values.end() || !std::isfinite(it->second)) continue;
        pts << X(p.x) << "," << Y(it->second) << " ";
        ++npts;
      }
      if (npts == 1) {
        std::string s = pts.str();
        auto comma = s.find(',');
        o << "<circle cx='" << s.substr(0, comma) << "' cy='" << s.substr(comma + 1)
          << "' r='3' fill='" << color << "'/>\n";
      } else if (npts > 1) {
        o << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5' points='"
          << pts.str() << "'/>\n";
      }
      o << "<text x='" << left + 8 + 150 * ci << "' y='" << y0 - 6 << "' fill='" << color << "'>"
        << esc(c) << "</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

void Curves::write_svg(const std::string& path, const std::string& title) const {
  std::string s = svg(title);
  io::write_file_atomically(path, s.data(), s.size());
}

}  // namespace ulmfit
