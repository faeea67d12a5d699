// ulmfit/labels.h — INSPIRE's label set and its score post-processing.
#pragma once

#include <array>
#include <string>

namespace ulmfit {

// Class index == label index (fastai's CategoryBlock sorts the label strings).
inline const std::array<std::string, 3> kLabels = {"rejected", "non_core", "core"};
constexpr float kTemperature = 0.25f;

// INSPIRE's post-processing (spec §6, step 6): a *second* softmax, over the class probabilities p
// (not logits), with temperature T, in float32. Every score lies in [0.01767, 0.96466].
std::array<float, 3> temperature_scores(const std::array<float, 3>& probabilities,
                                        float temperature = kTemperature);

// Text fed to the model for a paper, exactly as the original builds it.
inline std::string join_title_abstract(const std::string& title, const std::string& abstract) {
  return title + " <ENDTITLE> " + abstract;
}

}  // namespace ulmfit
