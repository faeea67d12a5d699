// ulmfit/progress.h — progress reporting for long work (training, batch prediction).
//
// On a TTY: one self-overwriting line with a bar, percentage, ETA, throughput and loss.
// Otherwise (logs, CI): a plain line at most every `plain_interval_s` seconds, plus the final one.
// quiet = true prints nothing.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace ulmfit {

class Progress {
 public:
  Progress(std::string label, long total, std::FILE* out = stderr, bool quiet = false,
           double plain_interval_s = 10.0);
  // Advance by `steps` items; `tokens` adds to the throughput counter; loss < 0 means unknown.
  void update(long steps, long tokens = 0, double loss = -1);
  // A resumed run: `done` items were done before this process (counted as done, not in the
  // ETA's rate). Call before the first update().
  void resume_at(long done) { done_ = base_ = done; }
  // Print the final line (idempotent).
  void finish();
  ~Progress() { finish(); }

  double elapsed_s() const;
  long done() const { return done_; }
  static std::string format_duration(double seconds);

 private:
  void render(bool final_line);
  std::string label_;
  long total_, done_ = 0, base_ = 0, tokens_ = 0;
  double loss_ = -1, smooth_loss_ = -1;
  std::FILE* out_;
  bool quiet_, tty_, finished_ = false;
  double plain_interval_s_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace ulmfit
