// Pretraining arithmetic against the official PyTorch code (tests/golden/pretrain_reference.py, run here with
// Debian's python3-torch): DINO loss, centering, teacher temperature, EMA and schedules, the DINO head,
// AdamW and the MAE loss, each within 1e-5.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include "checkpoint/safetensors.h"
#include "pretrain/dino.h"
#include "pretrain/mae.h"
#include "pretrain/optimizer.h"

namespace vitprobe {
namespace {

constexpr double kTolerance = 1e-5;

struct Reference {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;

  const at::Tensor& tensor(const std::string& name) const {
    const auto found = tensors.find(name);
    if (found == tensors.end()) throw std::runtime_error("reference has no tensor " + name);
    return found->second;
  }
  double number(const std::string& name) const { return std::stod(metadata.at(name)); }
};

// Runs the Python reference once (CTest runs each test in its own process, so the file is kept while it is
// newer than the script; it is written under a temporary name and renamed, so a half-written file is never read).
const Reference& reference() {
  static const Reference loaded = [] {
    namespace fs = std::filesystem;
    const fs::path dir = VITPROBE_PRETRAIN_WORK_DIR;
    const fs::path script = fs::path(VITPROBE_TESTS_DIR) / "golden" / "pretrain_reference.py";
    const fs::path file = dir / "pretrain_reference.safetensors";
    fs::create_directories(dir);
    if (!fs::exists(file) || fs::last_write_time(file) < fs::last_write_time(script)) {
      const fs::path partial = dir / ("pretrain_reference." + std::to_string(::getpid()) + ".safetensors");
      const std::string command = std::string(VITPROBE_PYTHON) + " " + script.string() + " " + partial.string();
      if (std::system(command.c_str()) != 0) throw std::runtime_error("cannot run: " + command);
      fs::rename(partial, file);
    }
    const auto raw = read_safetensors(file.string());
    Reference reference;
    for (const auto& entry : raw.entries) reference.tensors[entry.path.back()] = entry.tensor;
    reference.metadata = raw.metadata;
    return reference;
  }();
  return loaded;
}

double max_difference(const at::Tensor& actual, const at::Tensor& expected) {
  return (actual.to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
}

TEST(PretrainGolden, DinoLossMatchesOfficialCode) {
  const auto& ref = reference();
  const int epoch = static_cast<int>(ref.number("dino.epoch"));
  const double temperature = teacher_temperature(ref.number("dino.warmup_temp"), ref.number("dino.teacher_temp"),
                                                 static_cast<int>(ref.number("dino.warmup_epochs")), epoch);
  const auto loss =
      dino_loss(ref.tensor("dino.student"), ref.tensor("dino.teacher"), ref.tensor("dino.center"),
                static_cast<int64_t>(ref.number("dino.crops")), ref.number("dino.student_temp"), temperature);
  EXPECT_LE(max_difference(loss.reshape({1}), ref.tensor("dino.loss")), kTolerance);
}

TEST(PretrainGolden, CenterUpdateMatchesOfficialCode) {
  const auto& ref = reference();
  const auto center =
      updated_center(ref.tensor("dino.center"), ref.tensor("dino.teacher"), ref.number("dino.center_momentum"));
  EXPECT_LE(max_difference(center, ref.tensor("dino.new_center")), kTolerance);
}

TEST(PretrainGolden, TeacherTemperatureScheduleMatchesOfficialCode) {
  const auto& ref = reference();
  const auto& expected = ref.tensor("dino.temperatures");
  for (int64_t epoch = 0; epoch < expected.size(0); ++epoch) {
    const double temperature = teacher_temperature(ref.number("dino.warmup_temp"), ref.number("dino.teacher_temp"),
                                                   static_cast<int>(ref.number("dino.warmup_epochs")), epoch);
    EXPECT_NEAR(temperature, expected[epoch].item<double>(), 1e-12) << "epoch " << epoch;
  }
}

TEST(PretrainGolden, EmaUpdateMatchesOfficialCode) {
  const auto& ref = reference();
  at::Tensor teacher = ref.tensor("ema.teacher").clone();
  ema_update({teacher}, {ref.tensor("ema.student")}, ref.number("ema.momentum"));
  EXPECT_LE(max_difference(teacher, ref.tensor("ema.result")), kTolerance);
}

TEST(PretrainGolden, MomentumAndLrSchedulesMatchOfficialCode) {
  const auto& ref = reference();
  const int64_t epochs = static_cast<int64_t>(ref.number("schedule.epochs"));
  const int64_t per_epoch = static_cast<int64_t>(ref.number("schedule.iterations_per_epoch"));
  const int64_t warmup = static_cast<int64_t>(ref.number("schedule.warmup_epochs"));
  const auto& momentum = ref.tensor("schedule.momentum");
  const auto& lr = ref.tensor("schedule.lr");
  for (int64_t i = 0; i < epochs * per_epoch; ++i) {
    EXPECT_NEAR(cosine_decay(0.996, 1.0, i, epochs * per_epoch), momentum[i].item<double>(), 1e-12) << i;
    const double value = warmup_cosine(1e-3, 1e-6, static_cast<double>(i) / per_epoch, static_cast<double>(warmup),
                                       static_cast<double>(epochs));
    if (i >= warmup * per_epoch) {
      EXPECT_NEAR(value, lr[i].item<double>(), 1e-12) << i;
    } else {
      // Warm-up follows MAE's lr_sched (base * epoch / warmup): DINO's linspace reaches base one step earlier.
      EXPECT_NEAR(value, 1e-3 * static_cast<double>(i) / static_cast<double>(warmup * per_epoch), 1e-15) << i;
    }
  }
}

TEST(PretrainGolden, DinoHeadMatchesOfficialCode) {
  const auto& ref = reference();
  DinoHeadWeights head;
  head.fc1_weight = ref.tensor("head.mlp.0.weight");
  head.fc1_bias = ref.tensor("head.mlp.0.bias");
  head.fc2_weight = ref.tensor("head.mlp.2.weight");
  head.fc2_bias = ref.tensor("head.mlp.2.bias");
  head.fc3_weight = ref.tensor("head.mlp.4.weight");
  head.fc3_bias = ref.tensor("head.mlp.4.bias");
  head.last_v = ref.tensor("head.last_layer.weight_v");
  ASSERT_LE(max_difference(ref.tensor("head.last_layer.weight_g"), at::ones({10, 1})), 0.0);
  at::NoGradGuard no_grad;
  EXPECT_LE(max_difference(dino_head_forward(head, ref.tensor("head.features")), ref.tensor("head.logits")),
            kTolerance);
}

TEST(PretrainGolden, AdamWMatchesTorchOptim) {
  const auto& ref = reference();
  at::Tensor decayed = ref.tensor("adamw.a").clone().set_requires_grad(true);
  at::Tensor not_decayed = ref.tensor("adamw.b").clone().set_requires_grad(true);
  AdamWOptions options;
  options.beta2 = ref.number("adamw.beta2");
  AdamW optimizer({{"a", decayed, true}, {"b", not_decayed, false}}, options);
  std::stringstream lrs(ref.metadata.at("adamw.lrs"));
  std::string lr;
  for (int step = 0; std::getline(lrs, lr, ','); ++step) {
    decayed.mutable_grad() = ref.tensor("adamw.grad_a." + std::to_string(step)).clone();
    not_decayed.mutable_grad() = ref.tensor("adamw.grad_b." + std::to_string(step)).clone();
    optimizer.step(std::stod(lr), ref.number("adamw.weight_decay"));
  }
  EXPECT_EQ(optimizer.step_count(), 3);
  EXPECT_LE(max_difference(decayed.detach(), ref.tensor("adamw.a_after")), kTolerance);
  EXPECT_LE(max_difference(not_decayed.detach(), ref.tensor("adamw.b_after")), kTolerance);
}

TEST(PretrainGolden, MaeLossMatchesOfficialCode) {
  const auto& ref = reference();
  const auto& target = ref.tensor("mae.target");
  const auto& prediction = ref.tensor("mae.pred");
  const auto& mask = ref.tensor("mae.mask");
  EXPECT_LE(max_difference(mae_loss(target, prediction, mask, true).reshape({1}), ref.tensor("mae.loss")), kTolerance);
  EXPECT_LE(max_difference(mae_loss(target, prediction, mask, false).reshape({1}), ref.tensor("mae.loss_raw")),
            kTolerance);
}

}  // namespace
}  // namespace vitprobe
