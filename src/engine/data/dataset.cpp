// Parsing of --data specs, and the views every format shares: --limit subsets and class counts.
#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "common/errors.h"
#include "data/packed_dataset.h"
#include "data/random.h"

namespace vitprobe {
namespace {

const std::vector<std::string> kFormatNames = {"imagefolder", "fashion-mnist", "mnist",         "cifar10",
                                               "cifar100",    "stl10",         "fmnist-clutter"};

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::unique_ptr<Dataset> base, std::vector<int64_t> indices, std::string note)
      : base_(std::move(base)), indices_(std::move(indices)), note_(std::move(note)) {
    for (int64_t index : indices_) {
      if (index < 0 || index >= base_->size()) {
        throw BadInput(base_->describe() + ": subset index " + std::to_string(index) + " is out of range");
      }
    }
  }

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  int64_t label(int64_t index) const override { return base_->label(at(index)); }
  ImageU8 load(int64_t index) const override { return base_->load(at(index)); }
  std::string item_name(int64_t index) const override { return base_->item_name(at(index)); }
  std::string format() const override { return base_->format(); }
  std::string describe() const override { return base_->describe() + ", " + note_; }
  std::optional<std::pair<int, int>> image_size() const override { return base_->image_size(); }

 private:
  int64_t at(int64_t index) const { return indices_.at(static_cast<size_t>(index)); }

  std::unique_ptr<Dataset> base_;
  std::vector<int64_t> indices_;
  std::string note_;
};

bool all_digits(const std::string& text) {
  return !text.empty() && text.size() <= 19 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::unique_ptr<Dataset> open_unlimited(const DatasetSpec& spec) {
  const size_t colon = spec.text.find(':');
  const std::string format = spec.text.substr(0, colon);
  const bool has_argument = colon != std::string::npos;
  const std::string argument = has_argument ? spec.text.substr(colon + 1) : "";
  const bool val = is_val_split(spec.split);
  auto require_dir = [&]() {
    if (argument.empty()) throw BadInput("--data " + spec.text + ": " + format + " needs a folder: " + format + ":DIR");
    return argument;
  };
  if (format == "imagefolder") return open_image_folder(require_dir(), val);
  if (format == "fashion-mnist") {
    return make_packed_dataset(read_idx_dataset(argument.empty() ? kDefaultFashionMnistDir : argument, val, true));
  }
  if (format == "mnist") return make_packed_dataset(read_idx_dataset(require_dir(), val, false));
  if (format == "cifar10") return make_packed_dataset(read_cifar_dataset(require_dir(), val, 10));
  if (format == "cifar100") return make_packed_dataset(read_cifar_dataset(require_dir(), val, 100));
  if (format == "stl10") return make_packed_dataset(read_stl10_dataset(require_dir(), val));
  if (format == "fmnist-clutter") {
    // fmnist-clutter[:SEED[:DIR]]
    const size_t second_colon = argument.find(':');
    const std::string seed_text = argument.substr(0, second_colon);
    const std::string dir =
        second_colon == std::string::npos ? kDefaultFashionMnistDir : argument.substr(second_colon + 1);
    if (!seed_text.empty() && !all_digits(seed_text)) {
      throw BadInput("--data " + spec.text + ": fmnist-clutter takes [:SEED[:DIR]] with SEED a non-negative integer");
    }
    const uint64_t seed = seed_text.empty() ? 0 : std::stoull(seed_text);
    return make_clutter_dataset(read_idx_dataset(dir, val, true), seed);
  }
  std::string known;
  for (const auto& name : kFormatNames) known += (known.empty() ? "" : ", ") + name;
  throw BadInput("--data '" + spec.text + "': unknown dataset format '" + format + "' (known: " + known + ")");
}

}  // namespace

std::vector<std::string> dataset_format_names() { return kFormatNames; }

std::string dataset_folder(const std::string& spec_text) {
  const size_t colon = spec_text.find(':');
  const std::string format = spec_text.substr(0, colon);
  const std::string argument = colon == std::string::npos ? "" : spec_text.substr(colon + 1);
  if (format == "fashion-mnist") return argument.empty() ? kDefaultFashionMnistDir : argument;
  if (format == "fmnist-clutter") {
    const size_t second_colon = argument.find(':');
    return second_colon == std::string::npos ? kDefaultFashionMnistDir : argument.substr(second_colon + 1);
  }
  if (format == "filelist") {  // a folder of photos; a list file names photos anywhere, so no folder
    std::error_code error;
    return std::filesystem::is_directory(argument, error) ? argument : std::string();
  }
  return argument;
}

void check_same_classes(const Dataset& train, const Dataset& val, const std::string& what) {
  const auto& train_names = train.class_names();
  const auto& val_names = val.class_names();
  for (size_t i = 0; i < val_names.size(); ++i) {
    if (i < train_names.size() && train_names[i] == val_names[i]) continue;
    const bool known = std::find(train_names.begin(), train_names.end(), val_names[i]) != train_names.end();
    throw BadInput(what + ": the val split's class '" + val_names[i] + "' (label " + std::to_string(i) + ") " +
                   (known ? "has another label in the train split" : "is not in the train split") +
                   " (classes are matched by name)");
  }
  if (train_names.size() != val_names.size()) {
    throw BadInput(what + ": the train split's class '" + train_names[val_names.size()] +
                   "' is not in the val split (classes are matched by name)");
  }
}

bool is_val_split(const std::string& split) {
  if (split == "train") return false;
  if (split == "val" || split == "test") return true;
  throw BadInput("--split '" + split + "': expected train or val");
}

std::vector<int64_t> class_counts(const Dataset& dataset) {
  std::vector<int64_t> counts(static_cast<size_t>(dataset.num_classes()), 0);
  for (int64_t i = 0; i < dataset.size(); ++i) ++counts.at(static_cast<size_t>(dataset.label(i)));
  return counts;
}

std::vector<int64_t> balanced_subset(const Dataset& dataset, int64_t limit, uint64_t seed) {
  const int64_t n_items = dataset.size();
  std::vector<int64_t> order(static_cast<size_t>(n_items));
  std::iota(order.begin(), order.end(), 0);
  if (limit <= 0 || limit >= n_items) return order;
  Rng rng(derive_seed(seed, static_cast<uint64_t>(RandomStream::Subset)));
  for (int64_t i = n_items - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);

  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(dataset.num_classes()));
  for (int64_t index : order) by_class[static_cast<size_t>(dataset.label(index))].push_back(index);
  std::vector<int64_t> chosen;
  chosen.reserve(static_cast<size_t>(limit));
  for (size_t round = 0; static_cast<int64_t>(chosen.size()) < limit; ++round) {
    for (const auto& items : by_class) {
      if (round < items.size() && static_cast<int64_t>(chosen.size()) < limit) chosen.push_back(items[round]);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

std::unique_ptr<Dataset> make_subset(std::unique_ptr<Dataset> base, std::vector<int64_t> indices,
                                     const std::string& note) {
  return std::make_unique<SubsetDataset>(std::move(base), std::move(indices), note);
}

std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec) {
  if (spec.text.empty()) throw BadInput("--data: empty dataset spec");
  if (spec.limit < 0) throw BadInput("--limit " + std::to_string(spec.limit) + ": must be >= 0");
  auto dataset = open_unlimited(spec);
  if (dataset->size() == 0) throw BadInput(dataset->describe() + ": the split has no items");
  if (spec.limit <= 0 || spec.limit >= dataset->size()) return dataset;
  auto indices = balanced_subset(*dataset, spec.limit, spec.seed);
  const std::string note = "limit " + std::to_string(spec.limit) + " of " + std::to_string(dataset->size()) +
                           " (seed " + std::to_string(spec.seed) + ")";
  return make_subset(std::move(dataset), std::move(indices), note);
}

}  // namespace vitprobe
