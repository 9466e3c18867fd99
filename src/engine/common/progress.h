#pragma once
// Progress of a long loop on stderr: a redrawn bar with items/s and ETA on a terminal, plain log lines at
// a fixed interval otherwise (CI logs, files), and a one-line summary at the end. VITPROBE_PROGRESS=bar,
// plain or off overrides the choice.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>

namespace vitprobe {

/// How a Progress reports.
struct ProgressOptions {
  std::string unit = "img";           // what is counted, e.g. "img", "batch"
  double log_interval_s = 10.0;       // plain mode: seconds between lines
  double redraw_interval_s = 0.1;     // bar mode: seconds between redraws
  std::optional<bool> bar;            // true: bar, false: plain lines; unset: bar when the stream is a tty
  bool enabled = true;                // false: print nothing at all
  std::ostream* stream = nullptr;     // default std::cerr
};

/// "m:ss" or "h:mm:ss" (seconds rounded down); "?" for a negative or non-finite value.
std::string format_duration(double seconds);

/// The text of one report: "LABEL 120/1000 (12%) 35.2 img/s, ETA 0:25" (no ETA without a total or rate);
/// with bar_width > 0 a bar of that many characters follows the label.
std::string format_progress(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                            const std::string& unit, int bar_width = 0);

/// Counts items of a loop and reports on stderr; advance() may be called from several threads.
class Progress {
 public:
  /// total <= 0 means unknown.
  Progress(std::string label, int64_t total, ProgressOptions options = {});
  /// Calls finish(), except while an exception unwinds the stack (then it only ends a drawn bar's line).
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Adds `count` items and reports when the interval has passed.
  void advance(int64_t count = 1);
  /// Prints the summary line "LABEL: N img in 3.2 s (31.2 img/s)" once; later calls do nothing.
  void finish();

  int64_t done() const;
  double elapsed_s() const;
  /// Items per second so far.
  double rate() const;

 private:
  void report_locked(bool final);

  std::string label_;
  int64_t total_;
  ProgressOptions options_;
  bool bar_ = false;
  bool enabled_ = true;
  std::ostream* stream_;
  std::chrono::steady_clock::time_point start_, last_report_;
  int64_t done_ = 0;
  bool finished_ = false;
  size_t last_width_ = 0;
  mutable std::mutex mutex_;
};

}  // namespace vitprobe
