// Probe heads, optimizers and schedule against the PyTorch references of tests/golden/probe_reference.py.
// These tests run when VITPROBE_PROBE_REFERENCES names the folder that script wrote (ctest golden.probe.reference
// does both); in a plain unit run they are skipped.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/errors.h"
#include "io/npy.h"
#include "probe/features.h"
#include "probe/heads.h"
#include "probe/optimizers.h"

namespace vitprobe {
namespace {

constexpr double kTolerance = 1e-5;

std::string reference_dir() {
  const char* dir = std::getenv("VITPROBE_PROBE_REFERENCES");
  return dir ? dir : "";
}

nlohmann::json read_cases() {
  std::ifstream in(reference_dir() + "/cases.json");
  return nlohmann::json::parse(in);
}

at::Tensor load(const std::string& folder, const std::string& name) {
  return read_npy(reference_dir() + "/" + folder + "/" + name + ".npy");
}

double max_abs_diff(const at::Tensor& actual, const at::Tensor& expected) {
  EXPECT_EQ(actual.sizes(), expected.sizes());
  if (actual.sizes() != expected.sizes()) return 1e30;
  return (actual.detach().to(at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
}

TokenLayout layout_of(const nlohmann::json& json) {
  TokenLayout layout;
  layout.embed_dim = json["embed_dim"];
  layout.num_prefix_tokens = json["num_prefix_tokens"];
  layout.class_token = json["class_token"];
  layout.grid_size = json["grid_size"];
  layout.num_encoder_heads = json["num_encoder_heads"];
  return layout;
}

// A head with the reference's initial state.
ProbeHead make_head(const std::string& folder, const nlohmann::json& item) {
  ProbeHead head(parse_head_spec(item["spec"]), layout_of(item["layout"]), item["num_classes"], 0);
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, tensor] : head.state()) state[name] = load(folder, "init." + name);
  head.load_state(state, folder);
  return head;
}

FeatureMap features_of(const std::string& folder, const std::string& prefix, const ProbeHead& head) {
  const auto tokens = load(folder, prefix + "tokens");
  const auto attention = load(folder, prefix + "attention");
  return compute_features(tokens, attention, head.layout(), required_features(std::vector<HeadSpec>{head.spec()}));
}

TEST(ProbeReference, HeadsForwardGradientsAndStatistics) {
  if (reference_dir().empty()) GTEST_SKIP() << "VITPROBE_PROBE_REFERENCES not set (run ctest -R golden.probe)";
  const auto cases = read_cases()["heads"];
  ASSERT_FALSE(cases.empty());
  for (const auto& [folder, item] : cases.items()) {
    SCOPED_TRACE(folder + " (" + item["spec"].get<std::string>() + ")");
    auto head = make_head(folder, item);
    const auto features = features_of(folder, "", head);
    const auto labels = load(folder, "labels");
    const auto logits = head.forward(features, true);
    const auto loss = at::cross_entropy_loss(logits, labels);
    loss.backward();
    EXPECT_LT(max_abs_diff(logits, load(folder, "logits")), kTolerance);
    EXPECT_LT(max_abs_diff(loss.reshape({1}), load(folder, "loss")), kTolerance);
    for (const auto& [name, parameter] : head.parameters()) {
      SCOPED_TRACE("gradient of " + name);
      ASSERT_TRUE(parameter.grad().defined());
      EXPECT_LT(max_abs_diff(parameter.grad(), load(folder, "grad." + name)), kTolerance);
    }
    EXPECT_EQ(head.parameters().size(), item["gradients"].size());
    EXPECT_EQ(head.buffers().size(), item["buffers"].size());
    for (const auto& [name, buffer] : head.buffers()) {
      SCOPED_TRACE(name);
      EXPECT_LT(max_abs_diff(buffer, load(folder, "after." + name)), kTolerance);
    }
    {
      at::NoGradGuard no_grad;
      EXPECT_LT(max_abs_diff(head.forward(features, false), load(folder, "eval_logits")), kTolerance);
    }
    if (item["has_pooling_weights"]) {
      SCOPED_TRACE("pooling weights");
      const auto tokens = load(folder, "tokens");
      const auto expected = load(folder, "pooling_weights");
      // Evaluation-mode weights after the step (aim: BatchNorm with the updated running statistics).
      EXPECT_LT(max_abs_diff(pooling_weights(head, tokens), expected), kTolerance);
      const auto patches = tokens.slice(1, head.layout().num_prefix_tokens);
      if (head.spec().reads_prefix_tokens()) {
        EXPECT_THROW(pooling_weights(head, patches), BadInput);
      } else {
        EXPECT_LT(max_abs_diff(pooling_weights(head, patches), expected), kTolerance);
      }
    }
  }
}

TEST(ProbeReference, OptimizersAndScheduleStepByStep) {
  if (reference_dir().empty()) GTEST_SKIP() << "VITPROBE_PROBE_REFERENCES not set (run ctest -R golden.probe)";
  const auto cases = read_cases()["optimizers"];
  ASSERT_FALSE(cases.empty());
  for (const auto& [folder, item] : cases.items()) {
    SCOPED_TRACE(folder);
    auto head = make_head(folder, item);
    OptimizerOptions options;
    options.kind = item["optimizer"];
    options.weight_decay = item["weight_decay"];
    options.momentum = item["momentum"];
    auto optimizer = make_optimizer(options, head.parameters());
    LearningRateSchedule schedule;
    schedule.warmup_epochs = item["warmup_epochs"];
    schedule.epochs = item["epochs"];
    const double peak = scaled_learning_rate(item["base_lr"], item["batch"]);
    const int steps = item["steps"], steps_per_epoch = item["steps_per_epoch"];
    for (int step = 0; step < steps; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      const std::string prefix = "step" + std::to_string(step) + ".";
      const double lr = schedule.at(static_cast<double>(step) / steps_per_epoch, peak);
      EXPECT_NEAR(lr, item["lrs"][step].get<double>(), 1e-12);
      const auto logits = head.forward(features_of(folder, prefix, head), true);
      at::cross_entropy_loss(logits, load(folder, prefix + "labels")).backward();
      optimizer->step(lr);
      optimizer->zero_grad();
      for (const auto& [name, parameter] : head.parameters()) {
        SCOPED_TRACE(name);
        EXPECT_LT(max_abs_diff(parameter, load(folder, prefix + name)), kTolerance);
      }
    }
  }
}

TEST(ProbeReference, ClassifierInitialisationAsPyTorchAndMae) {
  if (reference_dir().empty()) GTEST_SKIP() << "VITPROBE_PROBE_REFERENCES not set (run ctest -R golden.probe)";
  const auto cases = read_cases()["inits"];
  ASSERT_EQ(cases.size(), 3u);
  for (const auto& [folder, item] : cases.items()) {
    SCOPED_TRACE(folder);
    const bool mae = item["init"] == "mae";
    ProbeHead head(parse_head_spec(item["spec"]), layout_of(item["layout"]), item["num_classes"], item["seed"], at::kCPU,
                   parse_classifier_init(item["init"]));
    std::map<std::string, at::Tensor> state;
    for (const auto& [name, tensor] : head.parameters()) state[name] = tensor;
    const auto weight = state.at("linear.weight"), bias = state.at("linear.bias");
    const auto expected_weight = load(folder, "linear.weight"), expected_bias = load(folder, "linear.bias");
    if (!mae) {
      // The same generator, seed and draws as nn.Linear.reset_parameters: equal to float rounding of the bound.
      EXPECT_LT(max_abs_diff(weight, expected_weight), 1e-7);
      EXPECT_LT(max_abs_diff(bias, expected_bias), 1e-7);
      const double bound = 1.0 / std::sqrt(static_cast<double>(weight.size(1)));
      EXPECT_LE(weight.abs().max().item<double>(), bound);
      EXPECT_GT(weight.abs().max().item<double>(), 0.9 * bound);
    } else {
      // 16,000 draws: the standard deviation within 5% (about 9 standard errors), the mean within 0.0005.
      EXPECT_TRUE(at::equal(bias, at::zeros_like(bias)));
      EXPECT_NEAR(weight.std().item<double>(), expected_weight.std().item<double>(), 0.05 * 0.01);
      EXPECT_NEAR(weight.std().item<double>(), 0.01, 0.05 * 0.01);
      EXPECT_NEAR(weight.mean().item<double>(), 0.0, 5e-4);
    }
  }
}

}  // namespace
}  // namespace vitprobe
