#include "ulmfit/metrics.h"

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace ulmfit {

ClassificationReport classification_report(const std::vector<int>& gold,
                                           const std::vector<int>& pred,
                                           const std::vector<std::string>& labels) {
  if (gold.size() != pred.size())
    throw std::invalid_argument("classification_report: " + std::to_string(gold.size()) +
                                " gold labels but " + std::to_string(pred.size()) + " predictions");
  if (gold.empty()) throw std::invalid_argument("classification_report: no records");
  const int C = (int)labels.size();
  ClassificationReport r;
  r.labels = labels;
  r.n = (long)gold.size();
  r.confusion_matrix.assign(C, std::vector<long>(C, 0));
  long correct = 0;
  for (size_t i = 0; i < gold.size(); ++i) {
    if (gold[i] < 0 || gold[i] >= C || pred[i] < 0 || pred[i] >= C)
      throw std::invalid_argument("classification_report: label index out of range at record " +
                                  std::to_string(i));
    r.confusion_matrix[gold[i]][pred[i]]++;
    correct += gold[i] == pred[i];
  }
  r.accuracy = (double)correct / r.n;
  r.micro_f1 = r.accuracy;
  double f1_sum = 0;
  int present = 0;
  for (int c = 0; c < C; ++c) {
    ClassMetrics m;
    m.label = labels[c];
    long tp = r.confusion_matrix[c][c];
    for (int k = 0; k < C; ++k) {
      m.support += r.confusion_matrix[c][k];
      m.predicted += r.confusion_matrix[k][c];
    }
    m.absent = m.support == 0;
    if (!m.absent) {
      m.recall = (double)tp / m.support;
      double p = m.predicted ? (double)tp / m.predicted : 0.0;
      if (m.predicted) m.precision = p;
      m.f1 = (p + *m.recall) > 0 ? 2 * p * *m.recall / (p + *m.recall) : 0.0;
      f1_sum += *m.f1;
      present++;
    }
    r.per_class.push_back(m);
  }
  r.macro_f1 = present ? f1_sum / present : 0.0;
  return r;
}

nlohmann::json ClassificationReport::to_json() const {
  nlohmann::json j;
  j["labels"] = labels;
  j["n"] = n;
  j["accuracy"] = accuracy;
  j["micro_f1"] = micro_f1;
  j["macro_f1"] = macro_f1;
  nlohmann::json pc = nlohmann::json::object();
  for (auto& m : per_class) {
    nlohmann::json e;
    e["support"] = m.support;
    e["predicted"] = m.predicted;
    e["absent"] = m.absent;
    e["precision"] = m.precision ? nlohmann::json(*m.precision) : nlohmann::json(nullptr);
    e["recall"] = m.recall ? nlohmann::json(*m.recall) : nlohmann::json(nullptr);
    e["f1"] = m.f1 ? nlohmann::json(*m.f1) : nlohmann::json(nullptr);
    pc[m.label] = e;
  }
  j["per_class"] = pc;
  j["confusion_matrix"] = confusion_matrix;
  return j;
}

std::string ClassificationReport::to_text() const {
  std::ostringstream o;
  char buf[256];
  std::snprintf(buf, sizeof buf, "records   %ld\naccuracy  %.4f\nmicro-F1  %.4f\nmacro-F1  %.4f\n\n",
                n, accuracy, micro_f1, macro_f1);
  o << buf;
  std::snprintf(buf, sizeof buf, "%-10s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1",
                "support");
  o << buf;
  auto fmt = [](const std::optional<double>& v) {
    char b[32];
    if (v)
      std::snprintf(b, sizeof b, "%.4f", *v);
    else
      std::snprintf(b, sizeof b, "-");
    return std::string(b);
  };
  for (auto& m : per_class) {
    if (m.absent)
      std::snprintf(buf, sizeof buf, "%-10s %9s %9s %9s %9ld  (absent from the data)\n",
                    m.label.c_str(), "-", "-", "-", m.support);
    else
      std::snprintf(buf, sizeof buf, "%-10s %9s %9s %9s %9ld\n", m.label.c_str(),
                    fmt(m.precision).c_str(), fmt(m.recall).c_str(), fmt(m.f1).c_str(), m.support);
    o << buf;
  }
  o << "\nconfusion matrix (rows: gold, columns: predicted)\n";
  std::snprintf(buf, sizeof buf, "%-10s", "");
  o << buf;
  for (auto& l : labels) {
    std::snprintf(buf, sizeof buf, " %9s", l.c_str());
    o << buf;
  }
  o << "\n";
  for (size_t g = 0; g < labels.size(); ++g) {
    std::snprintf(buf, sizeof buf, "%-10s", labels[g].c_str());
    o << buf;
    for (long c : confusion_matrix[g]) {
      std::snprintf(buf, sizeof buf, " %9ld", c);
      o << buf;
    }
    o << "\n";
  }
  return o.str();
}

}  // namespace ulmfit
