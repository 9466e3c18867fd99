#include "pretrain/training_progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "common/progress.h"

namespace vitprobe {
namespace {

constexpr double kRedrawIntervalS = 0.2;
constexpr double kLogIntervalS = 30.0;

}  // namespace

TrainingProgress::TrainingProgress(std::string label, int64_t total_images, bool enabled)
    : label_(std::move(label)), total_(total_images), enabled_(enabled) {
  bar_ = isatty(STDERR_FILENO);
  if (const char* mode = std::getenv("VITPROBE_PROGRESS")) {
    if (std::strcmp(mode, "off") == 0) enabled_ = false;
    if (std::strcmp(mode, "plain") == 0) bar_ = false;
    if (std::strcmp(mode, "bar") == 0) bar_ = true;
  }
  start_ = last_report_ = std::chrono::steady_clock::now();
}

double TrainingProgress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double TrainingProgress::images_per_second() const {
  const double elapsed = elapsed_s();
  return elapsed > 0 ? static_cast<double>(images_) / elapsed : 0.0;
}

void TrainingProgress::step(int64_t images, double loss, double lr) {
  images_ += images;
  ++steps_;
  loss_sum_ += loss;
  last_lr_ = lr;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_report_).count() >= (bar_ ? kRedrawIntervalS : kLogIntervalS)) {
    last_report_ = now;
    report(false);
  }
}

void TrainingProgress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) report(true);
}

void TrainingProgress::report(bool final) {
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, " loss %.4f lr %.2e", mean_loss(), last_lr_);
  std::string line;
  if (final) {
    char summary[128];
    std::snprintf(summary, sizeof summary, ": loss %.4f, %lld img in %.1f s (%.1f img/s)", mean_loss(),
                  static_cast<long long>(images_), elapsed_s(), images_per_second());
    line = label_ + summary;
  } else {
    line = format_progress(label_ + numbers, images_, total_, elapsed_s(), "img", bar_ ? 30 : 0);
  }
  if (bar_) {
    std::cerr << '\r' << line << std::string(last_width_ > line.size() ? last_width_ - line.size() : 0, ' ');
    last_width_ = line.size();
    if (final) std::cerr << '\n';
  } else {
    std::cerr << line << '\n';
  }
  std::cerr << std::flush;
}

}  // namespace vitprobe
