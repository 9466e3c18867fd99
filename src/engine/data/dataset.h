#pragma once
// Labelled image datasets behind one interface, opened from the `--data SPEC` text every command accepts:
//   imagefolder:DIR          DIR/{train,val}/<class>/<images> (torchvision ImageFolder order)
//   fashion-mnist[:DIR]      IDX files, gzip or raw (default DIR /usr/share/datasets/fashion-mnist)
//   mnist:DIR                IDX files, gzip or raw
//   cifar10:DIR, cifar100:DIR, stl10:DIR    the binary versions
//   fmnist-clutter[:SEED[:DIR]]             Fashion-MNIST on a cluttered 64x64 canvas
// Items load as 8-bit RGB images; load() may be called from several threads at once.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"

namespace vitprobe {

/// What `--data SPEC --split S --limit N` asked for.
struct DatasetSpec {
  std::string text;               // e.g. "imagefolder:/data/imagenet", "cifar10:/data/cifar"
  std::string split = "train";    // train | val ("test" is accepted as val)
  int64_t limit = 0;              // > 0: keep N items, the first after a seeded shuffle, class-balanced
  uint64_t seed = 0;              // the shuffle of --limit
};

/// Default folder of `fashion-mnist` and `fmnist-clutter` (Debian package dataset-fashion-mnist).
constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// A labelled image dataset with a fixed item order; every method is safe to call from several threads.
class Dataset {
 public:
  virtual ~Dataset() = default;

  /// Number of items.
  virtual int64_t size() const = 0;
  /// Class names in label order.
  virtual const std::vector<std::string>& class_names() const = 0;
  /// Number of classes.
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }
  /// Label of item `index`, in [0, num_classes), read without decoding the image.
  virtual int64_t label(int64_t index) const = 0;
  /// Decodes item `index`; throws BadInput / IoError naming the file (and record) when it cannot.
  virtual ImageU8 load(int64_t index) const = 0;
  /// Where item `index` comes from, for messages: a file path, or "FILE record N".
  virtual std::string item_name(int64_t index) const = 0;
  /// The format, e.g. "imagefolder", "cifar10".
  virtual std::string format() const = 0;
  /// One line saying what this is: format, folder and split.
  virtual std::string describe() const = 0;
  /// The (width, height) shared by every item, when the format fixes one (IDX, CIFAR, STL, clutter).
  virtual std::optional<std::pair<int, int>> image_size() const { return std::nullopt; }
};

/// Opens the dataset `spec` names (applying split and limit); throws BadInput for an unknown or malformed
/// spec and the errors of the format's reader (missing folders and files, size mismatches) otherwise.
std::unique_ptr<Dataset> open_dataset(const DatasetSpec& spec);

/// The folder `spec_text` reads (imagefolder:DIR -> DIR, fashion-mnist -> its default folder, ...), for the
/// check that --out does not lie inside an input; empty for a spec without one.
std::string dataset_folder(const std::string& spec_text);

/// Throws BadInput unless `val` has the classes of `train` in the same order (compared by name, not count),
/// naming the first class that differs; `what` names the data (the --data spec) in the message.
void check_same_classes(const Dataset& train, const Dataset& val, const std::string& what);

/// Dataset formats open_dataset knows, for --help texts.
std::vector<std::string> dataset_format_names();

/// Number of items per class, indexed by label.
std::vector<int64_t> class_counts(const Dataset& dataset);

/// The `limit` items kept by --limit: the dataset shuffled with `seed`, then classes taken in turn (lowest
/// label first) from their shuffled lists until `limit` items are chosen, so every class gets limit/C items
/// or all it has; returned in ascending order. All indices when limit <= 0 or >= size.
std::vector<int64_t> balanced_subset(const Dataset& dataset, int64_t limit, uint64_t seed);

/// A view of `base` restricted to `indices` (in that order); item i of the view is item indices[i] of base.
std::unique_ptr<Dataset> make_subset(std::unique_ptr<Dataset> base, std::vector<int64_t> indices,
                                     const std::string& note);

/// Whether `split` names the validation split: false for "train", true for "val" or "test"; throws BadInput
/// for anything else.
bool is_val_split(const std::string& split);

}  // namespace vitprobe
