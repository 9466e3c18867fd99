// The dino oracle aggregation against the PyTorch reference of tests/golden/oracle_reference.py (the official
// beyond_cls models_vit.py:337-350 restated). Runs when VITPROBE_ORACLE_REFERENCES names the folder that script
// wrote (ctest golden.probe.oracle does both); in a plain unit run it is skipped.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/loader.h"
#include "io/npy.h"
#include "jobs/feature_setup.h"
#include "probe/feature_source.h"

namespace vitprobe {
namespace {

constexpr double kFeatureTolerance = 1e-4;  // golden.forward's block-output tolerance
constexpr double kWeightTolerance = 1e-5;   // golden.forward's attention tolerance

std::string reference_dir() {
  const char* dir = std::getenv("VITPROBE_ORACLE_REFERENCES");
  return dir ? dir : "";
}

double max_abs_diff(const at::Tensor& actual, const at::Tensor& expected) {
  EXPECT_EQ(actual.sizes(), expected.sizes());
  if (actual.sizes() != expected.sizes()) return 1e30;
  return (actual.to(at::kCPU, at::kDouble) - expected.to(at::kDouble)).abs().max().item<double>();
}

TEST(OracleReference, DinoFeatureMatchesTheOfficialForm) {
  if (reference_dir().empty()) GTEST_SKIP() << "VITPROBE_ORACLE_REFERENCES not set (run ctest -R golden.probe.oracle)";
  std::ifstream in(reference_dir() + "/cases.json");
  ASSERT_TRUE(in) << reference_dir() << "/cases.json";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 2u);
  for (const auto& [name, item] : cases.items()) {
    SCOPED_TRACE(name);
    const auto path = [&](const char* key) { return reference_dir() + "/" + item.at(key).get<std::string>(); };
    LoadOptions load;
    load.num_heads = item.at("encoder_num_heads");  // the encoder's --num-heads; the oracle finds its own
    const auto model = load_model(path("encoder"), load);
    const auto oracle = load_oracle(path("oracle"), load, model.encoder->config());
    EXPECT_EQ(oracle->config().num_heads, item.at("oracle_num_heads").get<int>());
    EXPECT_EQ(oracle->config().num_prefix_tokens(), item.at("oracle_prefix_tokens").get<int>());
    const auto images = read_npy(path("input"));
    const FeatureExtractor extractor(model.encoder, item.at("block").get<int>(), /*final_norm=*/false, {"dino"}, oracle);
    const double weights_diff = max_abs_diff(oracle_weights(*oracle, images), read_npy(path("oracle_weights")));
    EXPECT_LE(weights_diff, kWeightTolerance);
    const double feature_diff = max_abs_diff(extractor(images).at("dino"), read_npy(path("dino")));
    EXPECT_LE(feature_diff, kFeatureTolerance);
    std::cout << name << ": oracle weights max abs diff " << weights_diff << " (<= " << kWeightTolerance
              << "), dino feature " << feature_diff << " (<= " << kFeatureTolerance << ")\n";
  }
}

}  // namespace
}  // namespace vitprobe
