#include "data/file_list_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/errors.h"
#include "io/text_file.h"

namespace fs = std::filesystem;

namespace vitprobe {
namespace {

constexpr const char* kLabelsFile = "labels.txt";

bool is_image_file(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png" || extension == ".ppm" ||
         extension == ".pgm";
}

bool is_integer(const std::string& text) {
  if (text.empty() || text.size() > 18) return false;
  const size_t start = text[0] == '-' ? 1 : 0;
  return start < text.size() && std::all_of(text.begin() + start, text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class FileListDataset : public Dataset {
 public:
  FileListDataset(std::string source, std::vector<std::string> files, std::vector<int64_t> labels,
                  std::vector<std::string> class_names)
      : source_(std::move(source)), files_(std::move(files)), labels_(std::move(labels)),
        class_names_(std::move(class_names)) {}

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  const std::vector<std::string>& class_names() const override { return class_names_; }
  int64_t label(int64_t index) const override { return labels_.at(static_cast<size_t>(index)); }
  ImageU8 load(int64_t index) const override { return decode_image(files_.at(static_cast<size_t>(index))); }
  std::string item_name(int64_t index) const override { return files_.at(static_cast<size_t>(index)); }
  std::string format() const override { return "filelist"; }
  std::string describe() const override {
    return "filelist " + source_ + " (" + std::to_string(files_.size()) + " images, " +
           std::to_string(class_names_.size()) + " classes)";
  }

 private:
  std::string source_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
};

std::unique_ptr<Dataset> open_unlabelled_folder(const fs::path& folder) {
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    if (!entry.is_directory(error) && is_image_file(entry.path())) files.push_back(entry.path().string());
  }
  if (error) throw IoError(folder.string() + ": cannot list (" + error.message() + ")");
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw BadInput(folder.string() + ": no " + kLabelsFile + " and no image files (.jpg .jpeg .png .ppm .pgm)");
  }
  std::vector<int64_t> labels(files.size(), 0);
  return std::make_unique<FileListDataset>(folder.string(), std::move(files), std::move(labels),
                                           std::vector<std::string>{"unlabelled"});
}

std::unique_ptr<Dataset> open_list_file(const fs::path& list, const std::string& class_names_file) {
  struct Item {
    std::string file, label, name;
  };
  std::vector<Item> items;
  const auto lines = read_lines(list.string());
  size_t labelled = 0;
  for (size_t number = 0; number < lines.size(); ++number) {
    std::istringstream words(lines[number]);
    Item item;
    if (!(words >> item.file) || item.file[0] == '#') continue;
    if (words >> item.label) {
      std::getline(words >> std::ws, item.name);
      ++labelled;
    }
    const fs::path file = fs::path(item.file).is_absolute() ? fs::path(item.file) : list.parent_path() / item.file;
    item.file = file.string();
    if (!items.empty() && (item.label.empty() != items.front().label.empty())) {
      throw BadInput(list.string() + " line " + std::to_string(number + 1) +
                     ": every line needs a label, or none does (IMAGE [LABEL [NAME]])");
    }
    items.push_back(std::move(item));
  }
  if (items.empty()) throw BadInput(list.string() + ": lists no images");

  // Classes: distinct labels, numeric order when all are integers.
  const bool numeric = labelled > 0 && std::all_of(items.begin(), items.end(), [](const Item& item) { return is_integer(item.label); });
  std::vector<std::string> keys;
  std::map<std::string, std::string> first_name;
  for (const auto& item : items) {
    if (first_name.emplace(item.label, item.name).second) keys.push_back(item.label);
  }
  std::sort(keys.begin(), keys.end(), [&](const std::string& a, const std::string& b) {
    return numeric ? std::stoll(a) < std::stoll(b) : a < b;
  });
  std::vector<std::string> override_names;
  if (!class_names_file.empty()) {
    if (!numeric) throw BadInput(class_names_file + ": class names by index need integer labels in " + list.string());
    override_names = read_lines(class_names_file);
  }
  std::map<std::string, int64_t> label_of;
  std::vector<std::string> class_names;
  for (const auto& key : keys) {
    label_of[key] = static_cast<int64_t>(class_names.size());
    if (labelled == 0) {
      class_names.push_back("unlabelled");
    } else if (!override_names.empty()) {
      const long long index = std::stoll(key);
      if (index < 0 || index >= static_cast<long long>(override_names.size())) {
        throw BadInput(class_names_file + ": has " + std::to_string(override_names.size()) + " names, label " + key +
                       " of " + list.string() + " is out of range");
      }
      class_names.push_back(override_names[static_cast<size_t>(index)]);
    } else {
      const auto& name = first_name[key];
      class_names.push_back(name.empty() ? key : key + " " + name);
    }
  }
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (const auto& item : items) {
    files.push_back(item.file);
    labels.push_back(label_of[item.label]);
  }
  return std::make_unique<FileListDataset>(list.string(), std::move(files), std::move(labels), std::move(class_names));
}

}  // namespace

std::unique_ptr<Dataset> open_file_list(const std::string& path, const std::string& class_names_file) {
  if (path.empty()) throw BadInput(std::string("--data ") + kFileListPrefix + ": needs a list file or a folder");
  const fs::path location(path);
  std::error_code error;
  if (!fs::exists(location, error)) throw IoError(path + ": no such file or folder");
  if (fs::is_directory(location, error)) {
    if (fs::exists(location / kLabelsFile, error)) return open_list_file(location / kLabelsFile, class_names_file);
    if (!class_names_file.empty()) throw BadInput(class_names_file + ": class names need a " + kLabelsFile + " in " + path);
    return open_unlabelled_folder(location);
  }
  return open_list_file(location, class_names_file);
}

std::unique_ptr<Dataset> open_analysis_dataset(const DatasetSpec& spec, const std::string& class_names_file) {
  const std::string prefix = kFileListPrefix;
  if (spec.text.rfind(prefix, 0) != 0) {
    if (!class_names_file.empty()) {
      throw BadInput("--class-names " + class_names_file + ": only " + prefix + " data takes class names (--data " +
                     spec.text + ")");
    }
    return open_dataset(spec);
  }
  if (spec.limit < 0) throw BadInput("--limit " + std::to_string(spec.limit) + ": must be >= 0");
  auto dataset = open_file_list(spec.text.substr(prefix.size()), class_names_file);
  if (spec.limit <= 0 || spec.limit >= dataset->size()) return dataset;
  auto indices = balanced_subset(*dataset, spec.limit, spec.seed);
  const std::string note = "limit " + std::to_string(spec.limit) + " of " + std::to_string(dataset->size()) +
                           " (seed " + std::to_string(spec.seed) + ")";
  return make_subset(std::move(dataset), std::move(indices), note);
}

std::string analysis_dataset_help() {
  std::string formats;
  for (const auto& name : dataset_format_names()) formats += name + ", ";
  return "Dataset: " + formats + "or filelist:PATH (a list file 'IMAGE [LABEL [NAME]]' per line, a folder with "
         "labels.txt, or a flat folder of images)";
}

}  // namespace vitprobe
