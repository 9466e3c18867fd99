#pragma once
// The held-out part of a training split that chooses each probe head's learning rate and epoch (issue 16:
// choosing them on the validation split whose accuracy is reported makes that accuracy an optimistic maximum
// over the grid). Stratified: every class gives the same fraction of its items, so the held-out part has the
// class balance of the training split.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace vitprobe {

/// The two parts of a training split, each in ascending item order.
struct HoldoutSplit {
  std::vector<int64_t> fit;      // the items the heads train on
  std::vector<int64_t> holdout;  // the items that choose the learning rate and epoch
};

/// Splits `dataset` class by class: each class's items are shuffled with `seed` (a stream of their own) and
/// round(fraction x class size) of them are held out, at least one of every class with two or more items and
/// never a class's last item. Throws BadInput when `fraction` is not in (0, 0.5] or nothing is held out.
HoldoutSplit stratified_holdout(const Dataset& dataset, double fraction, uint64_t seed);

/// A view of `base` restricted to `indices` that does not own `base` (which must outlive it).
std::unique_ptr<Dataset> make_subset_view(const Dataset& base, std::vector<int64_t> indices, const std::string& note);

}  // namespace vitprobe
