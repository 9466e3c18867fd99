#include "probe/feature_cache.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/errors.h"
#include "common/progress.h"
#include "io/atomic_file.h"
#include "io/output_folder.h"
#include "probe/file_hash.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

// A read-only mapping of a whole file, unmapped when the cache that views it is destroyed.
struct Mapping {
  void* address = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (address && size) munmap(address, size);
  }
};

constexpr int kCacheFormatVersion = 2;  // 2: a SHA-256 per file in the manifest

std::string file_name_of(const std::string& feature, int rank = 0, int world_size = 1) {
  std::string name = feature;
  for (char& c : name) {
    if (c == ':' || c == '/' || c == '+') c = '_';
  }
  if (world_size > 1) name += "." + std::to_string(rank) + "-of-" + std::to_string(world_size);
  return name + ".bf16";
}

// Items of shard `rank` of `world_size` among n: positions rank, rank + world_size, ...
int64_t shard_rows(int64_t n, int rank, int world_size) {
  return n > rank ? (n - rank + world_size - 1) / world_size : 0;
}

nlohmann::json read_manifest(const fs::path& folder) {
  std::ifstream in(folder / "manifest.json");
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput((folder / "manifest.json").string() + ": not valid JSON (" + e.what() + ")");
  }
}

// Appends rows to a temporary file; rename() moves it into place once complete.
class RowWriter {
 public:
  explicit RowWriter(fs::path file)
      : file_(std::move(file)), temporary_(file_.string() + ".tmp." + std::to_string(::getpid())) {
    out_.open(temporary_, std::ios::binary | std::ios::trunc);
    if (!out_) throw IoError(temporary_.string() + ": cannot create");
  }
  ~RowWriter() {
    if (out_.is_open()) out_.close();
    std::error_code ignored;
    if (!done_) fs::remove(temporary_, ignored);
  }
  void write(const at::Tensor& rows) {
    const auto contiguous = rows.cpu().contiguous();
    out_.write(static_cast<const char*>(contiguous.data_ptr()), static_cast<std::streamsize>(contiguous.nbytes()));
    if (!out_) throw IoError(temporary_.string() + ": write failed (disk full?)");
  }
  void commit() {
    out_.close();
    if (!out_) throw IoError(temporary_.string() + ": close failed");
    std::error_code error;
    fs::rename(temporary_, file_, error);
    if (error) throw IoError(file_.string() + ": cannot rename into place: " + error.message());
    done_ = true;
  }

 private:
  fs::path file_, temporary_;
  std::ofstream out_;
  bool done_ = false;
};

}  // namespace

nlohmann::json FeatureCacheKey::to_json() const {
  nlohmann::json json = {{"format_version", kCacheFormatVersion},
          {"model_sha256", model_sha256},
          {"img_size", img_size},
          {"dtype", dtype},
          {"data", data},
          {"split", split},
          {"limit", limit},
          {"limit_seed", limit_seed},
          {"block", block},
          {"final_norm", final_norm},
          {"transform", transform}};
  if (!oracle_sha256.empty()) json["oracle_sha256"] = oracle_sha256;
  return json;
}

std::string FeatureCacheKey::digest() const { return sha256_hex(to_json().dump()); }

std::string describe_transform(const TransformOptions& options) {
  const auto& p = options.preprocess;
  std::ostringstream out;
  out << (options.preset == TransformPreset::Eval ? "eval" : "train") << " resize=" << p.resize << " crop=" << p.crop
      << " interpolation=" << (p.interpolation == Interpolation::Bicubic ? "bicubic" : "bilinear") << " mean=" << p.mean[0]
      << "," << p.mean[1] << "," << p.mean[2] << " std=" << p.std[0] << "," << p.std[1] << "," << p.std[2];
  if (options.preset == TransformPreset::Train) {
    out << " crop_sampler=" << (options.crop_sampler == CropSampler::Mae ? "mae" : "torchvision");
  }
  return out.str();
}

namespace {

std::shared_ptr<Mapping> map_file(const std::string& file, size_t expected_bytes) {
  const int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(file + ": cannot open cached features");
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    throw IoError(file + ": cannot stat");
  }
  if (static_cast<size_t>(info.st_size) != expected_bytes) {
    ::close(fd);
    throw BadInput(file + ": cached features have " + std::to_string(info.st_size) + " bytes, the manifest says " +
                   std::to_string(expected_bytes) + " (damaged cache: delete the folder)");
  }
  auto mapping = std::make_shared<Mapping>();
  if (expected_bytes > 0) {
    mapping->address = ::mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (mapping->address == MAP_FAILED) {
      mapping->address = nullptr;
      ::close(fd);
      throw IoError(file + ": mmap failed");
    }
    mapping->size = expected_bytes;
  }
  ::close(fd);
  return mapping;
}

// The manifest's SHA-256 of `file` must match the file: a cache is never trusted on its size alone.
void verify_checksum(const std::string& file, const nlohmann::json& expected) {
  if (!expected.is_string()) throw BadInput(file + ": the cache manifest has no checksum for it (damaged cache: delete the folder)");
  if (sha256_file(file) != expected.get<std::string>()) {
    throw BadInput(file + ": checksum differs from the cache manifest's (changed or damaged: delete the folder)");
  }
}

}  // namespace

FeatureCache::~FeatureCache() = default;

std::set<std::string> FeatureCache::names() const {
  std::set<std::string> out;
  for (const auto& [name, tensor] : features_) out.insert(name);
  return out;
}

std::unique_ptr<FeatureCache> FeatureCache::open(const std::string& root, const FeatureCacheKey& key,
                                                 const std::set<std::string>& names) {
  const fs::path folder = fs::path(root) / key.digest();
  const auto manifest = read_manifest(folder);
  if (manifest.is_null()) return nullptr;
  if (manifest.value("key", nlohmann::json()) != key.to_json()) {
    throw BadInput((folder / "manifest.json").string() + ": the stored key does not match its folder name");
  }
  const auto& stored = manifest["features"];
  for (const auto& name : names) {
    if (!stored.contains(name)) return nullptr;
  }
  std::unique_ptr<FeatureCache> cache(new FeatureCache());
  cache->folder_ = folder.string();
  cache->num_items_ = manifest["num_items"];
  cache->num_classes_ = manifest["num_classes"];
  const auto label_file = (folder / "labels.i64").string();
  verify_checksum(label_file, manifest.value("labels_sha256", nlohmann::json()));
  auto label_mapping = map_file(label_file, static_cast<size_t>(cache->num_items_) * sizeof(int64_t));
  cache->labels_ = at::from_blob(label_mapping->address, {cache->num_items_}, at::kLong).clone();
  for (const auto& [name, entry] : stored.items()) {
    std::vector<int64_t> row_shape;
    int64_t row_count = 1;
    for (const auto& size : entry["row_shape"]) {
      row_shape.push_back(size.get<int64_t>());
      row_count *= row_shape.back();
    }
    const int shards = entry.value("shards", 1);
    if (shards < 1) throw BadInput((folder / "manifest.json").string() + ": feature '" + name + "' has shards < 1");
    auto& views = cache->features_[name];
    for (int shard = 0; shard < shards; ++shard) {
      const int64_t rows = shard_rows(cache->num_items_, shard, shards);
      std::vector<int64_t> shape = {rows};
      shape.insert(shape.end(), row_shape.begin(), row_shape.end());
      const auto file_name = shards == 1 ? entry["file"].get<std::string>() : entry["files"].at(shard).get<std::string>();
      const auto file = (folder / file_name).string();
      verify_checksum(file, entry.contains("sha256") && entry["sha256"].is_array() && entry["sha256"].size() == static_cast<size_t>(shards)
                                ? entry["sha256"][static_cast<size_t>(shard)] : nlohmann::json());
      auto mapping = map_file(file, static_cast<size_t>(rows * row_count) * 2);
      views.push_back(rows * row_count == 0 ? at::empty(shape, at::kBFloat16)
                                            : at::from_blob(mapping->address, shape, at::kBFloat16));
      if (!at::isfinite(views.back()).all().item<bool>()) {
        throw BadInput(file + ": cached features hold non-finite values (NaN or inf) (damaged cache: delete the folder)");
      }
      cache->mappings_.push_back(std::move(mapping));
    }
  }
  return cache;
}

std::unique_ptr<FeatureCache> FeatureCache::build(const std::string& root, const FeatureCacheKey& key,
                                                  const std::set<std::string>& names, const Dataset& dataset,
                                                  const ImageTransform& transform, const FeatureExtractor& extractor,
                                                  LoaderOptions loader_options, bool show_progress,
                                                  Communicator& communicator) {
  // Every rank sees the same folder, so every rank takes the same branch here.
  if (auto cache = open(root, key, names)) return cache;
  const int rank = communicator.rank(), world_size = communicator.world_size();
  const fs::path folder = fs::path(root) / key.digest();
  ensure_directory(folder.string());
  if (rank == 0) remove_stale_temporaries(root, true);  // of killed extractions
  auto manifest = read_manifest(folder);
  std::set<std::string> missing;
  for (const auto& name : names) {
    if (manifest.is_null() || !manifest["features"].contains(name)) missing.insert(name);
  }
  const FeatureExtractor pass = extractor.with_names(missing);
  loader_options.shuffle = false;
  loader_options.drop_last = false;
  loader_options.rank = rank;
  loader_options.world_size = world_size;
  BatchLoader loader(dataset, transform, loader_options);
  loader.start_epoch(0);
  std::map<std::string, std::unique_ptr<RowWriter>> writers;
  std::map<std::string, std::vector<int64_t>> row_shapes;
  for (const auto& name : missing) writers[name] = std::make_unique<RowWriter>(folder / file_name_of(name, rank, world_size));
  std::vector<at::Tensor> labels;
  ProgressOptions progress_options;
  progress_options.enabled = show_progress && rank == 0;
  Progress progress("extract " + key.split + (world_size > 1 ? " (rank 0 of " + std::to_string(world_size) + ")" : ""),
                    loader.num_items(), progress_options);
  int64_t expected_index = rank, seen = 0;
  while (auto batch = loader.next()) {
    // Rows are stored in shard order: check that the loader kept it (no item skipped).
    const auto indices = batch->indices;
    const auto expected = at::arange(expected_index, expected_index + indices.size(0) * world_size, world_size, at::kLong);
    if (indices.size(0) == 0 || !at::equal(indices, expected)) {
      throw BadInput(dataset.describe() + ": cached extraction needs every item in order (item " +
                     std::to_string(expected_index) + " missing)");
    }
    expected_index += indices.size(0) * world_size;
    seen += indices.size(0);
    const auto features = pass(batch->images);
    for (const auto& [name, tensor] : features) {
      row_shapes[name] = tensor.sizes().slice(1).vec();
      writers[name]->write(tensor.to(at::kBFloat16));
    }
    labels.push_back(batch->labels.to(at::kLong));
    progress.advance(indices.size(0));
  }
  progress.finish();
  if (seen != shard_rows(dataset.size(), rank, world_size)) {
    throw BadInput(dataset.describe() + ": extraction saw " + std::to_string(seen) + " of " +
                   std::to_string(shard_rows(dataset.size(), rank, world_size)) + " items");
  }
  for (auto& [name, writer] : writers) writer->commit();
  // Labels in dataset order, from every rank's shard.
  auto local_labels = labels.empty() ? at::zeros({0}, at::kLong) : at::cat(labels);
  const auto positions = at::arange(rank, rank + local_labels.size(0) * world_size, world_size, at::kLong);
  const auto all_labels = all_gather_rows(communicator, local_labels, positions, dataset.size());
  communicator.barrier();  // every shard is in place
  if (rank == 0) {
    RowWriter label_writer(folder / "labels.i64");
    label_writer.write(all_labels);
    label_writer.commit();
    if (manifest.is_null()) manifest = {{"key", key.to_json()}, {"features", nlohmann::json::object()}};
    manifest["labels_sha256"] = sha256_file((folder / "labels.i64").string());
    manifest["num_items"] = dataset.size();
    manifest["num_classes"] = dataset.num_classes();
    manifest["class_names"] = dataset.class_names();
    manifest["dataset"] = dataset.describe();
    for (const auto& name : missing) {
      nlohmann::json entry = {{"file", file_name_of(name)}, {"dtype", "bf16"}, {"row_shape", row_shapes[name]},
                              {"shards", world_size}};
      if (world_size > 1) {
        entry["files"] = nlohmann::json::array();
        for (int shard = 0; shard < world_size; ++shard) entry["files"].push_back(file_name_of(name, shard, world_size));
      }
      entry["sha256"] = nlohmann::json::array();  // every shard is in place (barrier above)
      for (int shard = 0; shard < world_size; ++shard) {
        entry["sha256"].push_back(sha256_file((folder / file_name_of(name, shard, world_size)).string()));
      }
      manifest["features"][name] = entry;
    }
    write_file_atomically((folder / "manifest.json").string(), [&](std::ostream& out) { out << manifest.dump(2) << "\n"; });
  }
  communicator.barrier();  // the manifest is in place
  auto cache = open(root, key, names);
  if (!cache) throw IoError(folder.string() + ": cached features cannot be read back");
  return cache;
}

FeatureMap FeatureCache::gather(const at::Tensor& indices, const std::set<std::string>& names,
                                const at::Device& device) const {
  FeatureMap out;
  for (const auto& name : names) {
    const auto found = features_.find(name);
    if (found == features_.end()) throw BadInput(folder_ + ": feature '" + name + "' is not cached");
    const auto& shards = found->second;
    if (shards.size() == 1) {
      out[name] = shards.front().index_select(0, indices).to(device, at::kFloat);
      continue;
    }
    const auto world = static_cast<int64_t>(shards.size());
    auto sizes = shards.front().sizes().vec();
    sizes[0] = indices.size(0);
    auto rows = at::empty(sizes, at::kBFloat16);
    const auto owner = indices.remainder(world), row = indices.div(world, "floor");
    for (int64_t shard = 0; shard < world; ++shard) {
      const auto positions = owner.eq(shard).nonzero().reshape({-1});
      if (positions.numel() == 0) continue;
      rows.index_copy_(0, positions, shards[static_cast<size_t>(shard)].index_select(0, row.index_select(0, positions)));
    }
    out[name] = rows.to(device, at::kFloat);
  }
  return out;
}

CachedFeatures::CachedFeatures(const FeatureCache& cache, std::set<std::string> names, LoaderOptions options,
                               at::Device device, std::vector<int64_t> items)
    : cache_(cache), names_(std::move(names)), options_(options), device_(device), items_(std::move(items)) {
  if (options_.batch_size < 1) throw BadInput("batch size " + std::to_string(options_.batch_size) + " must be >= 1");
  for (const int64_t item : items_) {
    if (item < 0 || item >= cache_.size()) {
      throw BadInput(cache_.folder() + ": item " + std::to_string(item) + " is out of the cache's range");
    }
  }
  start_epoch(0);
}

void CachedFeatures::start_epoch(int64_t epoch) {
  const int64_t n_items = items_.empty() ? cache_.size() : static_cast<int64_t>(items_.size());
  order_ = epoch_order(n_items, options_, epoch);
  trim_to_full_batches(order_, n_items, options_);
  position_ = 0;
}

int64_t CachedFeatures::num_batches() const {
  return (num_items() + options_.batch_size - 1) / options_.batch_size;
}

std::optional<FeatureBatch> CachedFeatures::next() {
  if (position_ >= num_items()) return std::nullopt;
  const int64_t end = std::min<int64_t>(position_ + options_.batch_size, num_items());
  std::vector<int64_t> positions(order_.begin() + position_, order_.begin() + end);
  position_ = end;
  const auto indices = at::tensor(positions, at::kLong);
  at::Tensor rows = indices;
  if (!items_.empty()) {
    for (auto& position : positions) position = items_[static_cast<size_t>(position)];
    rows = at::tensor(positions, at::kLong);
  }
  FeatureBatch batch;
  batch.features = cache_.gather(rows, names_, device_);
  batch.labels = cache_.labels().index_select(0, rows).to(device_);
  batch.indices = indices;
  return batch;
}

}  // namespace vitprobe
