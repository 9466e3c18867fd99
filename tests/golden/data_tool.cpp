// Helper of tests/golden/transform_parity.py: runs the data pipeline and writes what it produced as .npy, so
// the Python side can compare it with torchvision.
//
//   data_tool load  --data SPEC [--split S] --preset eval|train [--seed N] [--epoch E] [--shuffle]
//                   [--dtype fp32|bf16] [--workers W] [--batch-size B] [--resize --crop --interpolation
//                   --mean --std] --out DIR
//       DIR/images.npy (N,3,S,S) float32, labels.npy, indices.npy (N) int64, and for the train preset
//       choices.npy (N,5) int64: top, left, height, width, flipped — the random choices of each item.
//   data_tool boxes --width W --height H --count N [--seed S] [--sampler torchvision|mae] --out FILE.npy
//       N RandomResizedCrop boxes (top, left, height, width) drawn one after another from one generator.
#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "common/errors.h"
#include "data/loader.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "jobs/preprocess_settings.h"

namespace {

using namespace vitprobe;

struct LoadFlags {
  DatasetSpec spec;
  LoaderOptions loader;
  std::string preset = "eval", dtype = "fp32", out;
  int64_t epoch = 0;
  int resize = 256, crop = 224;
  std::string interpolation = "bicubic", mean = "0.485,0.456,0.406", std = "0.229,0.224,0.225";
};

void run_load(const LoadFlags& flags) {
  auto dataset = open_dataset(flags.spec);
  TransformOptions transform;
  transform.preset = parse_transform_preset(flags.preset);
  transform.preprocess.resize = flags.resize;
  transform.preprocess.crop = flags.crop;
  transform.preprocess.interpolation = parse_interpolation(flags.interpolation);
  transform.preprocess.mean = parse_triplet(flags.mean, "--mean");
  transform.preprocess.std = parse_triplet(flags.std, "--std");
  LoaderOptions options = flags.loader;
  options.bfloat16 = flags.dtype == "bf16";
  BatchLoader loader(*dataset, ImageTransform(transform), options);
  loader.start_epoch(flags.epoch);
  std::vector<at::Tensor> images, labels, indices;
  while (auto batch = loader.next()) {
    images.push_back(batch->images.to(at::kFloat));
    labels.push_back(batch->labels);
    indices.push_back(batch->indices);
  }
  ensure_directory(flags.out);
  write_npy(flags.out + "/images.npy", at::cat(images));
  write_npy(flags.out + "/labels.npy", at::cat(labels));
  const at::Tensor all_indices = at::cat(indices);
  write_npy(flags.out + "/indices.npy", all_indices);
  if (transform.preset != TransformPreset::Train) return;
  // The choices of each item, recomputed from its seed: the loader must have used exactly these.
  at::Tensor choices = at::zeros({all_indices.size(0), 5}, at::kLong);
  for (int64_t row = 0; row < all_indices.size(0); ++row) {
    const int64_t index = all_indices[row].item<int64_t>();
    TransformRecord record;
    loader.transform().geometric(dataset->load(index), sample_seed(options.seed, flags.epoch, index), &record);
    const int64_t values[5] = {record.box.top, record.box.left, record.box.height, record.box.width, record.flipped};
    for (int k = 0; k < 5; ++k) choices[row][k] = values[k];
  }
  write_npy(flags.out + "/choices.npy", choices);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"data pipeline helper of the golden tests"};
  app.require_subcommand(1);
  LoadFlags load;
  auto* load_app = app.add_subcommand("load", "Run the loader over a dataset");
  load_app->add_option("--data", load.spec.text)->required();
  load_app->add_option("--split", load.spec.split);
  load_app->add_option("--limit", load.spec.limit);
  load_app->add_option("--preset", load.preset);
  load_app->add_option("--seed", load.loader.seed);
  load_app->add_option("--epoch", load.epoch);
  load_app->add_flag("--shuffle", load.loader.shuffle);
  load_app->add_option("--dtype", load.dtype);
  load_app->add_option("--workers", load.loader.num_workers);
  load_app->add_option("--batch-size", load.loader.batch_size);
  load_app->add_option("--resize", load.resize);
  load_app->add_option("--crop", load.crop);
  load_app->add_option("--interpolation", load.interpolation);
  load_app->add_option("--mean", load.mean);
  load_app->add_option("--std", load.std);
  load_app->add_option("--out", load.out)->required();

  int width = 0, height = 0;
  int64_t count = 0;
  uint64_t seed = 0;
  std::string boxes_out, sampler = "torchvision";
  auto* boxes_app = app.add_subcommand("boxes", "Draw RandomResizedCrop boxes");
  boxes_app->add_option("--width", width)->required();
  boxes_app->add_option("--height", height)->required();
  boxes_app->add_option("--count", count)->required();
  boxes_app->add_option("--seed", seed);
  boxes_app->add_option("--out", boxes_out)->required();
  boxes_app->add_option("--sampler", sampler, "torchvision (ten tries) or mae (util/crop.py, one draw)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (load_app->parsed()) {
      run_load(load);
    } else {
      Rng rng(seed);
      const CropSampler kind = parse_crop_sampler(sampler);
      at::Tensor boxes = at::zeros({count, 4}, at::kLong);
      int64_t* out = boxes.data_ptr<int64_t>();
      for (int64_t i = 0; i < count; ++i) {
        const CropBox box = kind == CropSampler::Mae ? sample_one_draw_crop_box(width, height, ResizedCropRanges{}, rng)
                                                     : sample_resized_crop_box(width, height, ResizedCropRanges{}, rng);
        out[4 * i] = box.top;
        out[4 * i + 1] = box.left;
        out[4 * i + 2] = box.height;
        out[4 * i + 3] = box.width;
      }
      write_npy(boxes_out, boxes);
    }
  } catch (const BadInput& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kExitBadInput;
  } catch (const IoError& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kExitIoError;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kExitInternal;
  }
  return 0;
}
