#include "ulmfit/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace ulmfit {

Progress::Progress(std::string label, long total, std::FILE* out, bool quiet,
                   double plain_interval_s)
    : label_(std::move(label)),
      total_(std::max(total, 0L)),
      out_(out),
      quiet_(quiet),
      tty_(out && ::isatty(::fileno(out))),
      plain_interval_s_(plain_interval_s),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = (long)std::llround(s);
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%02ld:%02ld", t / 60, t % 60);
  return b;
}

void Progress::update(long steps, long tokens, double loss) {
  done_ += steps;
  tokens_ += tokens;
  if (loss >= 0 && std::isfinite(loss)) {
    loss_ = loss;
    // Exponential moving average, de-biased like fastai's smooth loss (beta 0.98).
    smooth_loss_ = smooth_loss_ < 0 ? loss : 0.98 * smooth_loss_ + 0.02 * loss;
  }
  if (quiet_ || !out_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_ ? since >= 0.1 : since >= plain_interval_s_) {
    last_print_ = now;
    render(false);
  }
}

void Progress::render(bool final_line) {
  double el = elapsed_s();
  double frac = total_ ? std::min(1.0, (double)done_ / total_) : 0.0;
  const long ran = done_ - base_;  // steps of this process (a resumed run starts at base_)
  double eta = (ran > 0 && total_ > done_) ? el * (total_ - done_) / ran : 0.0;
  char rate[64] = "";
  if (tokens_ > 0 && el > 0) std::snprintf(rate, sizeof rate, " %.0f tok/s", tokens_ / el);
  char loss[48] = "";
  if (smooth_loss_ >= 0) std::snprintf(loss, sizeof loss, " loss %.4f", smooth_loss_);
  if (tty_) {
    const int width = 24;
    int filled = (int)(frac * width);
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::fprintf(out_, "\r%s [%s] %3.0f%% %ld/%ld %s<%s%s%s\033[K", label_.c_str(), bar.c_str(),
                 100 * frac, done_, total_, format_duration(el).c_str(),
                 format_duration(eta).c_str(), rate, loss);
    if (final_line) std::fputc('\n', out_);
  } else {
    std::fprintf(out_, "%s: %ld/%ld (%.0f%%) elapsed %s eta %s%s%s\n", label_.c_str(), done_,
                 total_, 100 * frac, format_duration(el).c_str(), format_duration(eta).c_str(),
                 rate, loss);
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!quiet_ && out_) render(true);
}

}  // namespace ulmfit
