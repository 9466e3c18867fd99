#include "data/holdout_split.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/errors.h"
#include "data/random.h"

namespace vitprobe {
namespace {

// Its own stream, so that the held-out part does not move when --limit or the epoch order change.
constexpr uint64_t kHoldoutStream = 5;

class SubsetView final : public Dataset {
 public:
  SubsetView(const Dataset& base, std::vector<int64_t> indices, std::string note)
      : base_(base), indices_(std::move(indices)), note_(std::move(note)) {
    for (const int64_t index : indices_) {
      if (index < 0 || index >= base_.size()) {
        throw BadInput(base_.describe() + ": subset index " + std::to_string(index) + " is out of range");
      }
    }
  }
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  const std::vector<std::string>& class_names() const override { return base_.class_names(); }
  int64_t label(int64_t index) const override { return base_.label(at(index)); }
  ImageU8 load(int64_t index) const override { return base_.load(at(index)); }
  std::string item_name(int64_t index) const override { return base_.item_name(at(index)); }
  std::string format() const override { return base_.format(); }
  std::string describe() const override { return base_.describe() + ", " + note_; }
  std::optional<std::pair<int, int>> image_size() const override { return base_.image_size(); }

 private:
  int64_t at(int64_t index) const { return indices_.at(static_cast<size_t>(index)); }

  const Dataset& base_;
  std::vector<int64_t> indices_;
  std::string note_;
};

}  // namespace

HoldoutSplit stratified_holdout(const Dataset& dataset, double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction <= 0.5)) {
    throw BadInput("stratified_holdout: --holdout-fraction " + std::to_string(fraction) + " must be in (0, 0.5]");
  }
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(dataset.num_classes()));
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int64_t label = dataset.label(i);
    if (label < 0 || label >= dataset.num_classes()) {
      throw BadInput("stratified_holdout: " + dataset.item_name(i) + " has label " + std::to_string(label) + ", outside 0.." +
                     std::to_string(dataset.num_classes() - 1));
    }
    by_class[static_cast<size_t>(label)].push_back(i);
  }
  HoldoutSplit split;
  for (size_t label = 0; label < by_class.size(); ++label) {
    auto& items = by_class[label];
    const auto n_items = static_cast<int64_t>(items.size());
    Rng rng(derive_seed(seed, kHoldoutStream, label));
    for (int64_t i = n_items - 1; i > 0; --i) std::swap(items[i], items[rng.below(i + 1)]);
    int64_t n_held = std::llround(fraction * static_cast<double>(n_items));
    if (n_items >= 2) n_held = std::clamp<int64_t>(n_held, 1, n_items - 1);
    else n_held = 0;
    split.holdout.insert(split.holdout.end(), items.begin(), items.begin() + n_held);
    split.fit.insert(split.fit.end(), items.begin() + n_held, items.end());
  }
  if (split.holdout.empty()) {
    throw BadInput(dataset.describe() + ": too few items to hold out a part for choosing the learning rate "
                   "(use --select-on val)");
  }
  std::sort(split.fit.begin(), split.fit.end());
  std::sort(split.holdout.begin(), split.holdout.end());
  return split;
}

std::unique_ptr<Dataset> make_subset_view(const Dataset& base, std::vector<int64_t> indices, const std::string& note) {
  return std::make_unique<SubsetView>(base, std::move(indices), note);
}

}  // namespace vitprobe
