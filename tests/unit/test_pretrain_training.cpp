// Short training runs on real data: 50 steps of MAE and of DINO on 512 Fashion-MNIST images must reduce the
// loss, and a run interrupted after one epoch and resumed must end bit-identical to an uninterrupted one.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "checkpoint/safetensors.h"
#include "data/dataset.h"
#include "jobs/pretrain_job.h"

namespace vitprobe {
namespace {

constexpr int kSteps = 50;

bool have_fashion_mnist() {
  return std::filesystem::exists(std::string(kDefaultFashionMnistDir) + "/train-images-idx3-ubyte.gz") ||
         std::filesystem::exists(std::string(kDefaultFashionMnistDir) + "/train-images-idx3-ubyte");
}

std::filesystem::path work_dir(const std::string& name) {
  const auto dir = std::filesystem::path(VITPROBE_PRETRAIN_WORK_DIR) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A small model on 512 images (8 steps of 64 per epoch), so the test stays around a minute on 2 cores.
PretrainOptions small_run(const std::string& objective, const std::filesystem::path& dir) {
  PretrainOptions options;
  options.objective = objective;
  options.data = "fashion-mnist";
  options.limit = 512;
  options.out = (dir / "encoder.safetensors").string();
  options.embed_dim = 64;
  options.depth = 2;
  options.num_heads = 2;
  options.batch_size = 64;
  options.epochs = 7;
  options.warmup_epochs = 1.0;
  options.progress = false;
  options.seed = 3;
  options.mae.decoder = {64, 1, 2, 4.0};
  options.mae.base_lr = 1e-3;
  options.dino.head = {128, 64, 256};
  options.dino.num_local_crops = 2;
  options.dino.base_lr = 1e-3;
  options.dino.freeze_last_layer_epochs = 0;
  return options;
}

double mean_of(const std::vector<double>& values, size_t begin, size_t end) {
  return std::accumulate(values.begin() + begin, values.begin() + end, 0.0) / static_cast<double>(end - begin);
}

class PretrainTraining : public ::testing::TestWithParam<std::string> {};

TEST_P(PretrainTraining, FiftyStepsReduceTheLoss) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed in " << kDefaultFashionMnistDir;
  at::set_num_threads(2);
  const auto dir = work_dir("train_" + GetParam());
  auto options = small_run(GetParam(), dir);
  options.max_steps = kSteps;
  const auto result = run_pretrain_job(options);
  ASSERT_EQ(result.step_losses.size(), static_cast<size_t>(kSteps));
  // MAE: the loss itself. DINO: its KL part, cross-entropy minus the teacher's entropy. DINO's cross-entropy
  // first rises, whatever the student does, while the center catches up with the teacher outputs (from the
  // zero center, the sharpened teacher is nearly one-hot: entropy ~0; centred, it spreads towards ln K);
  // the KL is what each step of the student lowers.
  const auto& curve = GetParam() == "mae" ? result.step_losses : result.step_metrics.at("kl");
  ASSERT_EQ(curve.size(), static_cast<size_t>(kSteps));
  const double first = mean_of(curve, 0, 5);
  const double last = mean_of(curve, kSteps - 5, kSteps);
  EXPECT_LT(last, first * 0.95) << GetParam() << ": first 5 steps " << first << ", last 5 " << last;
  EXPECT_TRUE(std::filesystem::exists(options.out));
}

INSTANTIATE_TEST_SUITE_P(Objectives, PretrainTraining, ::testing::Values("mae", "dino"));

class PretrainResume : public ::testing::TestWithParam<std::string> {};

TEST_P(PretrainResume, ResumedRunEqualsUninterruptedRun) {
  if (!have_fashion_mnist()) GTEST_SKIP() << "Fashion-MNIST not installed in " << kDefaultFashionMnistDir;
  at::set_num_threads(2);
  const auto dir = work_dir("resume_" + GetParam());
  auto whole = small_run(GetParam(), dir / "whole");
  whole.limit = 256;
  whole.epochs = 2;
  auto part = whole;
  part.out = (dir / "part" / "encoder.safetensors").string();
  std::filesystem::create_directories(dir / "whole");
  std::filesystem::create_directories(dir / "part");
  const auto uninterrupted = run_pretrain_job(whole);
  // Stop after the first epoch (256 images, 4 steps), as an interrupted run would, then resume.
  part.max_steps = 4;
  EXPECT_EQ(run_pretrain_job(part).epochs_done, 1);
  part.max_steps = 0;
  part.resume = true;
  const auto resumed = run_pretrain_job(part);
  EXPECT_EQ(resumed.epochs_done, 2);
  EXPECT_EQ(resumed.steps_done, uninterrupted.steps_done);
  ASSERT_EQ(resumed.epoch_losses.size(), 2u);
  EXPECT_EQ(resumed.epoch_losses, uninterrupted.epoch_losses);
  // The tensors are identical (the metadata differs only in wall time and the resume flag).
  const auto a = read_safetensors(whole.out), b = read_safetensors(part.out);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    EXPECT_EQ(a.entries[i].path, b.entries[i].path);
    EXPECT_TRUE(a.entries[i].tensor.equal(b.entries[i].tensor)) << join_path(a.entries[i].path);
  }
}

INSTANTIATE_TEST_SUITE_P(Objectives, PretrainResume, ::testing::Values("mae", "dino"));

}  // namespace
}  // namespace vitprobe
