#include "common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>

namespace vitprobe {
namespace {

std::string format_rate(double rate) {
  char text[32];
  std::snprintf(text, sizeof text, rate >= 100 ? "%.0f" : rate >= 10 ? "%.1f" : "%.2f", rate);
  return text;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(seconds);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", total / 60, total % 60);
  }
  return text;
}

std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            const std::string& unit, int bar_width) {
  std::string text = label;
  const bool known_total = total > 0;
  const double fraction = known_total ? std::min(1.0, static_cast<double>(done) / total) : 0.0;
  if (bar_width > 0 && known_total) {
    const int filled = static_cast<int>(fraction * bar_width);
    text += " [" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "]";
  }
  text += " " + std::to_string(done);
  if (known_total) {
    char percent[16];
    std::snprintf(percent, sizeof percent, " (%d%%)", static_cast<int>(fraction * 100));
    text += "/" + std::to_string(total) + percent;
  }
  const double rate = elapsed_s > 0 ? done / elapsed_s : 0.0;
  text += " " + format_rate(rate) + " " + unit + "/s";
  if (known_total && rate > 0 && done < total) text += ", ETA " + format_duration((total - done) / rate);
  return text;
}

Progress::Progress(std::string label, int64_t total, ProgressOptions options)
    : label_(std::move(label)), total_(total), options_(std::move(options)),
      stream_(options_.stream ? options_.stream : &std::cerr) {
  enabled_ = options_.enabled;
  bar_ = options_.bar.value_or(stream_ == &std::cerr && isatty(STDERR_FILENO));
  if (const char* mode = std::getenv("VITPROBE_PROGRESS")) {
    if (std::strcmp(mode, "off") == 0) enabled_ = false;
    if (std::strcmp(mode, "plain") == 0) bar_ = false;
    if (std::strcmp(mode, "bar") == 0) bar_ = true;
  }
  start_ = last_report_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (std::uncaught_exceptions() == 0) {
    finish();
    return;
  }
  // Unwinding from an error: no summary (the error line says what happened), just end a drawn bar's line.
  std::lock_guard<std::mutex> lock(mutex_);
  if (enabled_ && bar_ && !finished_ && last_width_ > 0) *stream_ << '\n' << std::flush;
  finished_ = true;
}

int64_t Progress::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  const double elapsed = elapsed_s();
  return elapsed > 0 ? done() / elapsed : 0.0;
}

void Progress::advance(int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += count;
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_report_).count();
  if (since >= (bar_ ? options_.redraw_interval_s : options_.log_interval_s)) {
    last_report_ = now;
    report_locked(false);
  }
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (enabled_) report_locked(true);
}

void Progress::report_locked(bool final) {
  const double elapsed = elapsed_s();
  std::ostream& out = *stream_;
  if (final) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", elapsed);
    const std::string line = label_ + ": " + std::to_string(done_) + " " + options_.unit + " in " + seconds + " s (" +
                             format_rate(elapsed > 0 ? done_ / elapsed : 0.0) + " " + options_.unit + "/s)";
    // On a terminal the summary overwrites the bar; spaces clear what a longer bar left behind.
    if (bar_) out << '\r' << line << std::string(last_width_ > line.size() ? last_width_ - line.size() : 0, ' ');
    else out << line;
    out << '\n' << std::flush;
    return;
  }
  const std::string line = format_progress(label_, done_, total_, elapsed, options_.unit, bar_ ? 30 : 0);
  if (bar_) {
    out << '\r' << line << std::string(last_width_ > line.size() ? last_width_ - line.size() : 0, ' ') << std::flush;
    last_width_ = line.size();
  } else {
    out << line << '\n' << std::flush;
  }
}

}  // namespace vitprobe
