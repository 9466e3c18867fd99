// Loader throughput for the `eval` preset (Resize 256 + CenterCrop 224, bicubic, ImageNet mean/std): the
// 17 ImageNet photos in ../shared/data/imagenet-sample (an ImageFolder of links, each epoch reading them 8 times)
// and Fashion-MNIST (28x28 upscaled to 224), with 2 workers; plus the single-threaded stages (decode,
// resize + crop, normalise) of one photo to show where the time goes. items_per_second is images per second.
//
//   build/bench/loader_benchmark [--benchmark_filter=Loader] [--benchmark_min_time=3]
//   VITPROBE_SHARED=DIR overrides the shared folder.
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "data/loader.h"

namespace fs = std::filesystem;

namespace vitprobe {
namespace {

std::string shared_dir() {
  const char* from_env = std::getenv("VITPROBE_SHARED");
  return from_env && *from_env ? from_env : VITPROBE_SHARED_DIR;
}

// DIR/val/<synset>/<photo> links to the sample photos, made once per process.
std::string photo_folder() {
  static const std::string root = [] {
    const fs::path source = fs::path(shared_dir()) / "data" / "imagenet-sample";
    const fs::path folder = fs::temp_directory_path() / ("vitprobe_bench_" + std::to_string(getpid()));
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(source, error)) {
      const std::string name = entry.path().filename().string();
      if (entry.path().extension() != ".JPEG") continue;
      const fs::path link = folder / "val" / name.substr(0, name.find('_')) / name;
      fs::create_directories(link.parent_path());
      fs::create_symlink(entry.path(), link, error);
    }
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(fs::temp_directory_path() / ("vitprobe_bench_" + std::to_string(getpid())), ignored);
    });
    return folder.string();
  }();
  return root;
}

TransformOptions eval_preset() {
  TransformOptions options;  // resize 256, crop 224, bicubic, ImageNet mean/std
  return options;
}

// CPU seconds used by the whole process (all threads) so far.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// One iteration = one epoch of `dataset` through a BatchLoader with `workers` threads. Besides images/s, reports
// the CPU milliseconds the process spent per image: on a busy machine wall-clock rates drop with the share of
// the cores the benchmark gets, while CPU time per image does not (much), and 1000 * workers / cpu_ms_per_image
// is the rate with `workers` cores to itself.
void run_loader(benchmark::State& state, const Dataset& dataset, int workers, bool bfloat16) {
  LoaderOptions options;
  options.batch_size = 16;
  options.num_workers = workers;
  options.bfloat16 = bfloat16;
  BatchLoader loader(dataset, ImageTransform(eval_preset()), options);
  int64_t images = 0, epoch = 0;
  const double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    loader.start_epoch(epoch++);
    while (auto batch = loader.next()) {
      images += batch->images.size(0);
      benchmark::DoNotOptimize(batch->images.data_ptr());
    }
  }
  state.SetItemsProcessed(images);
  state.counters["workers"] = workers;
  state.counters["cpu_ms_per_image"] = 1000.0 * (process_cpu_seconds() - cpu_start) / std::max<int64_t>(images, 1);
}

// The dataset `spec` names, or null after marking the benchmark skipped when it cannot be opened.
std::unique_ptr<Dataset> open_or_skip(benchmark::State& state, const DatasetSpec& spec) {
  try {
    return open_dataset(spec);
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
    return nullptr;
  }
}

void BM_LoaderEvalPhotos(benchmark::State& state) {
  DatasetSpec spec;
  spec.text = "imagefolder:" + photo_folder();
  spec.split = "val";
  auto photos = open_or_skip(state, spec);
  if (!photos) return;
  // One iteration = the 17 photos 8 times over (136 images), so that the end of an epoch, where one worker
  // finishes the last photo alone, weighs as little as in a real dataset.
  std::vector<int64_t> repeated;
  for (int round = 0; round < 8; ++round) {
    for (int64_t i = 0; i < photos->size(); ++i) repeated.push_back(i);
  }
  const auto dataset = make_subset(std::move(photos), repeated, "x8");
  run_loader(state, *dataset, static_cast<int>(state.range(0)), state.range(1) != 0);
}
BENCHMARK(BM_LoaderEvalPhotos)->ArgNames({"workers", "bf16"})->Args({2, 0})->Args({2, 1})->Args({1, 0})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_LoaderEvalFashionMnist(benchmark::State& state) {
  DatasetSpec spec;
  spec.text = "fashion-mnist";
  spec.split = "val";
  spec.limit = 512;  // one iteration = 512 images
  const auto dataset = open_or_skip(state, spec);
  if (!dataset) return;
  run_loader(state, *dataset, static_cast<int>(state.range(0)), false);
}
BENCHMARK(BM_LoaderEvalFashionMnist)
    ->ArgNames({"workers"})
    ->Arg(2)
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The single-threaded stages of one photo, for the breakdown; "" when the photos are missing.
const std::string& first_photo() {
  static const std::string photo = []() -> std::string {
    DatasetSpec spec;
    spec.text = "imagefolder:" + photo_folder();
    spec.split = "val";
    try {
      return open_dataset(spec)->item_name(0);
    } catch (const std::exception&) {
      return "";
    }
  }();
  return photo;
}

bool have_photo(benchmark::State& state) {
  if (!first_photo().empty()) return true;
  state.SkipWithError("no photos under $VITPROBE_SHARED/data/imagenet-sample");
  return false;
}

void BM_StageDecodePhoto(benchmark::State& state) {
  if (!have_photo(state)) return;
  for (auto _ : state) benchmark::DoNotOptimize(decode_image(first_photo()).pixels.data());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StageDecodePhoto)->Unit(benchmark::kMillisecond);

void BM_StageResizeCropPhoto(benchmark::State& state) {
  if (!have_photo(state)) return;
  const ImageU8 image = decode_image(first_photo());
  const ImageTransform transform(eval_preset());
  for (auto _ : state) benchmark::DoNotOptimize(transform.geometric(image, 0).pixels.data());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StageResizeCropPhoto)->Unit(benchmark::kMillisecond);

void BM_StageNormalize(benchmark::State& state) {
  if (!have_photo(state)) return;
  const ImageTransform transform(eval_preset());
  const ImageU8 square = transform.geometric(decode_image(first_photo()), 0);
  std::vector<float> out(3 * 224 * 224);
  for (auto _ : state) {
    transform.normalize_into(square, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StageNormalize)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vitprobe

BENCHMARK_MAIN();
