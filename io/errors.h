// io/errors.h — errors for humans: which file, what is wrong, where, and a hint.
#pragma once

#include <stdexcept>
#include <string>

namespace io {

// A malformed, truncated, hostile or unsupported file. what() reads
// "<path>: <problem> [at <where>] [(hint: ...)]".
class FormatError : public std::runtime_error {
 public:
  FormatError(const std::string& path, const std::string& problem, const std::string& where = "",
              const std::string& hint = "")
      : std::runtime_error(compose(path, problem, where, hint)), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  static std::string compose(const std::string& path, const std::string& problem,
                             const std::string& where, const std::string& hint) {
    std::string s = path + ": " + problem;
    if (!where.empty()) s += " at " + where;
    if (!hint.empty()) s += " (hint: " + hint + ")";
    return s;
  }
  std::string path_;
};

}  // namespace io
