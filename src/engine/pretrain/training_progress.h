#pragma once
// Progress of one training epoch on stderr: the shared progress format (common/progress.h) with the running
// loss and learning rate in the label, redrawn on a terminal, a plain line every log interval otherwise, and
// a summary line per epoch. VITPROBE_PROGRESS=bar|plain|off overrides the choice, as for every command.
#include <chrono>
#include <cstdint>
#include <string>

namespace vitprobe {

/// Reports one epoch; single-threaded (the training loop calls it).
class TrainingProgress {
 public:
  /// `label` such as "mae epoch 3/10"; `total_images` of the epoch; enabled=false prints nothing.
  TrainingProgress(std::string label, int64_t total_images, bool enabled);
  /// Adds a finished step: images it used, its loss and learning rate.
  void step(int64_t images, double loss, double lr);
  /// Prints the epoch summary ("LABEL: loss L, N img in T s (R img/s)") once.
  void finish();
  /// Mean loss of the steps so far.
  double mean_loss() const { return steps_ > 0 ? loss_sum_ / static_cast<double>(steps_) : 0.0; }
  double images_per_second() const;
  double elapsed_s() const;

 private:
  void report(bool final);

  std::string label_;
  int64_t total_;
  bool enabled_ = true;
  bool bar_ = false;
  std::chrono::steady_clock::time_point start_, last_report_;
  int64_t images_ = 0;
  int64_t steps_ = 0;
  double loss_sum_ = 0.0;
  double last_lr_ = 0.0;
  size_t last_width_ = 0;
  bool finished_ = false;
};

}  // namespace vitprobe
