// torchvision's ImageFolder over DIR/train or DIR/val: classes are the sub-folders sorted by name, items are
// every file with an image extension below a class folder (symbolic links followed), in the order of
// torchvision.datasets.folder.make_dataset — sorted(os.walk(class_dir)), then sorted file names.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "common/errors.h"
#include "data/packed_dataset.h"

namespace fs = std::filesystem;

namespace vitprobe {
namespace {

// torchvision's IMG_EXTENSIONS, compared case-insensitively. Kept identical so item indices match
// torchvision's ImageFolder even in folders holding formats vitprobe cannot decode (those fail by name).
const std::vector<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                                   ".pgm", ".tif",  ".tiff", ".webp"};

bool has_image_extension(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::any_of(kImageExtensions.begin(), kImageExtensions.end(), [&](const std::string& extension) {
    return lower.size() >= extension.size() &&
           lower.compare(lower.size() - extension.size(), extension.size(), extension) == 0;
  });
}

// Every folder below `root` (itself included), following links, as os.walk(followlinks=True) visits them;
// `seen` stops cycles through links.
void collect_folders(const fs::path& root, std::vector<std::string>& folders, std::set<fs::path>& seen) {
  std::error_code error;
  const fs::path canonical = fs::canonical(root, error);
  if (error || !seen.insert(canonical).second) return;
  folders.push_back(root.string());
  for (const auto& entry : fs::directory_iterator(root, error)) {
    if (entry.is_directory(error)) collect_folders(entry.path(), folders, seen);
  }
}

// Files with an image extension directly in `folder`, sorted by name. Like os.walk, anything that is not a
// folder counts as a file (including broken links, which then fail to decode by name).
std::vector<std::string> image_files_in(const std::string& folder) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    if (entry.is_directory(error)) continue;
    const std::string name = entry.path().filename().string();
    if (has_image_extension(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(std::string root, std::string split) : root_(std::move(root)), split_(std::move(split)) {
    const fs::path split_dir = fs::path(root_) / split_;
    if (!fs::is_directory(root_)) throw IoError(root_ + ": no such folder");
    if (!fs::is_directory(split_dir)) {
      throw BadInput(root_ + ": no '" + split_ + "' folder (imagefolder expects " + root_ + "/" + split_ +
                     "/<class>/<images>)");
    }
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(split_dir, error)) {
      if (entry.is_directory(error)) classes_.push_back(entry.path().filename().string());
    }
    if (error) throw IoError(split_dir.string() + ": cannot list (" + error.message() + ")");
    std::sort(classes_.begin(), classes_.end());
    if (classes_.empty()) throw BadInput(split_dir.string() + ": no class folders (expected <class>/<images> inside)");

    for (size_t label = 0; label < classes_.size(); ++label) {
      const fs::path class_dir = split_dir / classes_[label];
      std::vector<std::string> folders;
      std::set<fs::path> seen;
      collect_folders(class_dir, folders, seen);
      std::sort(folders.begin(), folders.end());  // sorted(os.walk(...)) orders by the full path string
      const size_t before = files_.size();
      for (const auto& folder : folders) {
        for (const auto& name : image_files_in(folder)) {
          files_.push_back((fs::path(folder) / name).string());
          labels_.push_back(static_cast<int32_t>(label));
        }
      }
      if (files_.size() == before) {
        throw BadInput(class_dir.string() + ": class folder has no image files (.jpg .jpeg .png .ppm .pgm ...)");
      }
    }
  }

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  const std::vector<std::string>& class_names() const override { return classes_; }
  int64_t label(int64_t index) const override { return labels_.at(static_cast<size_t>(index)); }
  ImageU8 load(int64_t index) const override { return decode_image(files_.at(static_cast<size_t>(index))); }
  std::string item_name(int64_t index) const override { return files_.at(static_cast<size_t>(index)); }
  std::string format() const override { return "imagefolder"; }
  std::string describe() const override { return "imagefolder:" + root_ + " (" + split_ + ")"; }

 private:
  std::string root_, split_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<int32_t> labels_;
};

}  // namespace

std::unique_ptr<Dataset> open_image_folder(const std::string& dir, bool val) {
  return std::make_unique<ImageFolderDataset>(dir, val ? "val" : "train");
}

}  // namespace vitprobe
