// Probe heads: the --heads language, features, pooling weights, head state and saved head folders.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/errors.h"
#include "probe/features.h"
#include "probe/file_hash.h"
#include "probe/head_io.h"
#include "model/pos_embed.h"
#include "probe/heads.h"
#include "test_probe_fixtures.h"

namespace vitprobe {
namespace {

TokenLayout small_layout(int prefix = 1) {
  TokenLayout layout;
  layout.embed_dim = 16;
  layout.num_prefix_tokens = prefix;
  layout.class_token = true;
  layout.grid_size = 4;
  layout.num_encoder_heads = 4;
  return layout;
}

FeatureMap random_features(const TokenLayout& layout, const std::vector<HeadSpec>& specs, int64_t batch = 5) {
  const auto tokens = at::randn({batch, layout.num_tokens(), layout.embed_dim});
  const auto attention = at::softmax(at::randn({batch, layout.num_encoder_heads, layout.num_tokens(), layout.num_tokens()}), -1);
  return compute_features(tokens, attention, layout, required_features(specs));
}

TEST(ProbeHeadSpec, ParsesListsWithOptions) {
  const auto specs = parse_head_list("cls, mean,abmilp:depth=2,act=tanh,ep:8;cls+mean,knn:feature=mean,center:3");
  ASSERT_EQ(specs.size(), 7u);
  EXPECT_EQ(specs[0].kind, HeadKind::Cls);
  EXPECT_EQ(specs[2].name, "abmilp:depth=2,act=tanh");
  EXPECT_EQ(specs[2].depth, 2);
  EXPECT_EQ(specs[2].act, "tanh");
  EXPECT_EQ(specs[3].kind, HeadKind::EfficientProbing);
  EXPECT_EQ(specs[3].size, 8);
  EXPECT_EQ(specs[4].kind, HeadKind::ClsMean);
  EXPECT_EQ(specs[5].knn_feature, "mean");
  EXPECT_EQ(specs[6].size, 3);
}

TEST(ProbeHeadSpec, CanonicalNamesLeaveDefaultsOut) {
  EXPECT_EQ(parse_head_spec("abmilp:depth=1,act=relu,sa=none").name, "abmilp");
  EXPECT_EQ(parse_head_spec("abmilp:content=all,sa=both").name, "abmilp:sa=both,content=all");
  EXPECT_EQ(parse_head_spec("knn:feature=cls").name, "knn");
  EXPECT_EQ(parse_head_spec("ep:32,d_out=1").name, "ep:32");
  EXPECT_EQ(parse_head_spec("aim:heads=16").name, "aim");
  EXPECT_EQ(parse_head_spec("vjepa:proj=off,depth=1,heads=8").name, "vjepa:heads=8,proj=off");
}

TEST(ProbeHeadSpec, OfficialPoolersOfIssue16) {
  const auto specs = parse_head_list("ep:8,d_out=2,ep_all:4,aim,aim:heads=12;vjepa,vjepa:heads=6,depth=2,proj=off");
  ASSERT_EQ(specs.size(), 6u);
  EXPECT_EQ(specs[0].name, "ep:8,d_out=2");
  EXPECT_EQ(specs[0].d_out, 2);
  EXPECT_EQ(specs[0].content, "patch");
  EXPECT_EQ(specs[1].kind, HeadKind::EfficientProbing);
  EXPECT_EQ(specs[1].name, "ep_all:4");
  EXPECT_EQ(specs[1].content, "all");
  EXPECT_TRUE(specs[1].reads_prefix_tokens());
  EXPECT_EQ(head_kind_name(specs[1].kind), "ep");
  EXPECT_EQ(specs[2].kind, HeadKind::Aim);
  EXPECT_EQ(specs[2].heads, 16);  // the EP repository's --num_heads default
  EXPECT_EQ(specs[3].heads, 12);
  EXPECT_EQ(specs[4].kind, HeadKind::VJepa);
  EXPECT_EQ(specs[4].depth, 1);
  EXPECT_TRUE(specs[4].proj);
  EXPECT_EQ(specs[5].name, "vjepa:heads=6,depth=2,proj=off");
  EXPECT_FALSE(specs[5].proj);
  for (const auto& spec : specs) EXPECT_EQ(parse_head_spec(spec.name).name, spec.name);
  EXPECT_EQ(specs[0].num_pooling_maps(), 8);
  EXPECT_EQ(specs[3].num_pooling_maps(), 12);
  EXPECT_TRUE(specs[4].weights_patches());
  EXPECT_FALSE(parse_head_spec("cls").weights_patches());
}

TEST(ProbeHeadSpec, RejectsBadHeadsWithTheirText) {
  const auto message = [](const std::string& text) {
    try {
      parse_head_list(text);
    } catch (const BadInput& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("gem").find("unknown head 'gem'"), std::string::npos);
  EXPECT_NE(message("abmilp:depth=17").find("depth=17"), std::string::npos);  // any depth up to 16
  EXPECT_NE(message("abmilp:depth=0").find("positive integer"), std::string::npos);
  EXPECT_NE(message("ep").find("number of queries"), std::string::npos);
  EXPECT_NE(message("ep:d_out=2").find("number of queries"), std::string::npos);
  EXPECT_NE(message("ep:0").find("positive integer"), std::string::npos);
  EXPECT_NE(message("ep:8,d_out=0").find("positive integer"), std::string::npos);
  EXPECT_NE(message("ep:8,depth=2").find("unknown ep option 'depth'"), std::string::npos);
  EXPECT_NE(message("aim:depth=2").find("unknown aim option 'depth'"), std::string::npos);
  EXPECT_NE(message("vjepa:proj=maybe").find("proj=maybe"), std::string::npos);
  EXPECT_NE(message("vjepa:heads=x").find("'x'"), std::string::npos);
  const auto removed = message("mhca");
  EXPECT_NE(removed.find("'aim'"), std::string::npos) << removed;
  EXPECT_NE(removed.find("'vjepa'"), std::string::npos) << removed;
  EXPECT_NE(message("cls,cls").find("given twice"), std::string::npos);
  EXPECT_NE(message("depth=2,cls").find("has no head"), std::string::npos);
  EXPECT_NE(message("abmilp:colour=red").find("unknown abmilp option"), std::string::npos);
  EXPECT_NE(message("mean:3").find("takes no options"), std::string::npos);
}

TEST(ProbeFeatures, CenterWindowFollowsTheOfficialFormula) {
  TokenLayout layout = small_layout();
  layout.grid_size = 14;
  // hw 14, cp 4: rows and columns 5..8.
  const auto weights = center_weights(layout, 4).view({14, 14});
  EXPECT_FLOAT_EQ(weights[5][5].item<float>(), 1.0f / 16);
  EXPECT_FLOAT_EQ(weights[8][8].item<float>(), 1.0f / 16);
  EXPECT_FLOAT_EQ(weights[4][5].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(weights[9][8].item<float>(), 0.0f);
  EXPECT_NEAR(weights.sum().item<float>(), 1.0f, 1e-6);
  EXPECT_THROW(center_weights(layout, 15), BadInput);
}

TEST(ProbeFeatures, ShapesAndAttentionWeightsSumToOne) {
  const auto layout = small_layout(3);
  const auto specs = parse_head_list("cls,mean,center:2,cattn:2,attn-mean,attn-minent,abmilp");
  const auto features = random_features(layout, specs);
  for (const auto& name : {"cls", "mean", "center:2", "cattn:2", "attn-mean", "attn-minent"}) {
    ASSERT_TRUE(features.count(name)) << name;
    EXPECT_EQ(features.at(name).sizes(), (std::vector<int64_t>{5, 16})) << name;
  }
  EXPECT_EQ(features.at("tokens").sizes(), (std::vector<int64_t>{5, 19, 16}));
  const auto attention = at::softmax(at::randn({2, 4, 19, 19}), -1);
  for (const auto& weights : {central_attention_weights(attention, layout, 2), cls_attention_mean_weights(attention, layout),
                              cls_attention_min_entropy_weights(attention, layout)}) {
    EXPECT_EQ(weights.sizes(), (std::vector<int64_t>{2, 16}));
    EXPECT_LT((weights.sum(1) - 1).abs().max().item<double>(), 1e-5);
  }
}

TEST(ProbeFeatures, HeadsThatNeedAClassTokenRefuseEncodersWithout) {
  auto layout = small_layout(0);
  layout.class_token = false;
  EXPECT_THROW(check_head_fits(parse_head_spec("cls"), layout), BadInput);
  EXPECT_THROW(check_head_fits(parse_head_spec("attn-mean"), layout), BadInput);
  EXPECT_NO_THROW(check_head_fits(parse_head_spec("mean"), layout));
  EXPECT_NO_THROW(check_head_fits(parse_head_spec("abmilp"), layout));
  EXPECT_THROW(check_head_fits(parse_head_spec("ep:5"), layout), BadInput);  // 16 not divisible by 5
  EXPECT_THROW(check_head_fits(parse_head_spec("ep_all:4"), layout), BadInput);  // its bag holds the [cls]
  EXPECT_NO_THROW(check_head_fits(parse_head_spec("ep:4,d_out=4"), layout));
  EXPECT_THROW(check_head_fits(parse_head_spec("ep:4,d_out=8"), layout), BadInput);  // 16 not divisible by 32
  EXPECT_THROW(check_head_fits(parse_head_spec("aim:heads=5"), layout), BadInput);
  EXPECT_THROW(check_head_fits(parse_head_spec("vjepa:heads=32"), layout), BadInput);
  EXPECT_NO_THROW(check_head_fits(parse_head_spec("vjepa"), layout));  // 16 heads of width 1
}

TEST(ProbeHeads, EveryKindGivesLogitsAndPoolingWeights) {
  const auto layout = small_layout(2);
  const auto specs = parse_head_list("cls,mean,cls+mean,center:2,cattn:2,attn-mean,attn-minent,abmilp,"
                                     "abmilp:depth=2,sa=both,cond=pe,content=all,ep:4,ep_all:4,d_out=2,simpool,"
                                     "aim:heads=4,vjepa:heads=2,depth=2");
  const auto features = random_features(layout, specs);
  for (const auto& spec : specs) {
    SCOPED_TRACE(spec.name);
    ProbeHead head(spec, layout, 7, 3);
    const auto logits = head.forward(features, true);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{5, 7}));
    EXPECT_GT(head.num_trainable_parameters(), 0);
    if (spec.kind == HeadKind::Cls || spec.kind == HeadKind::ClsMean) continue;
    const auto tokens = features.at("tokens");
    const auto attention = at::softmax(at::randn({5, 4, layout.num_tokens(), layout.num_tokens()}), -1);
    const auto weights = pooling_weights(head, tokens, attention);
    EXPECT_EQ(weights.size(0), 5);
    EXPECT_EQ(weights.size(-1), layout.num_patches());
    if (spec.kind == HeadKind::EfficientProbing) EXPECT_EQ(weights.size(1), 4);
    if (spec.kind == HeadKind::Aim) EXPECT_EQ(weights.size(1), 4);
    if (spec.kind == HeadKind::VJepa) EXPECT_EQ(weights.size(1), 2);
    if (spec.d_out == 2) EXPECT_EQ(head.feature_dim(), 8);
    if (!spec.reads_prefix_tokens()) EXPECT_LT((weights.sum(-1) - 1).abs().max().item<double>(), 1e-5);
  }
}

TEST(ProbeHeads, AbmilpPositionTableStartsAsSinCosAndIsTrainedAtAnyDepth) {
  const auto layout = small_layout();
  ProbeHead head(parse_head_spec("abmilp:depth=3,cond=pe"), layout, 3, 1);
  std::map<std::string, at::Tensor> parameters;
  for (const auto& [name, tensor] : head.parameters()) parameters[name] = tensor;
  ASSERT_TRUE(parameters.count("pool.pos_embed"));
  const auto table = parameters.at("pool.pos_embed");
  EXPECT_TRUE(table.requires_grad());
  EXPECT_TRUE(at::allclose(table.squeeze(0), sincos_2d_pos_embed(static_cast<int>(layout.embed_dim), layout.grid_size)));
  // depth 3: Linear(D,D) at 0 and 2, Linear(D,1) at 4 (nn.Sequential indices, activations between).
  for (const char* name : {"pool.scorer.0.weight", "pool.scorer.2.weight", "pool.scorer.4.weight", "pool.scorer.4.bias"}) {
    EXPECT_TRUE(parameters.count(name)) << name;
  }
  EXPECT_EQ(parameters.at("pool.scorer.4.weight").size(0), 1);
  const auto features = random_features(layout, {head.spec()});
  at::cross_entropy_loss(head.forward(features, true), at::tensor({0, 1, 2, 0, 1}, at::kLong)).backward();
  ASSERT_TRUE(table.grad().defined());
  EXPECT_GT(table.grad().abs().max().item<double>(), 0.0);
}

TEST(ProbeHeads, SameSeedSameInitialisation) {
  const auto layout = small_layout();
  ProbeHead first(parse_head_spec("ep:4"), layout, 3, 42), second(parse_head_spec("ep:4"), layout, 3, 42),
      other(parse_head_spec("ep:4"), layout, 3, 43);
  const auto a = first.parameters(), b = second.parameters(), c = other.parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
    if (a[i].first != "linear.bias") EXPECT_FALSE(at::equal(a[i].second, c[i].second)) << a[i].first;  // bias starts at 0
  }
}

TEST(ProbeHeads, LoadStateChecksNamesAndShapes) {
  const auto layout = small_layout();
  ProbeHead head(parse_head_spec("abmilp"), layout, 3, 1);
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, tensor] : head.state()) state[name] = tensor.detach().clone() + 1;
  head.load_state(state, "test");
  EXPECT_TRUE(at::equal(head.state().back().second, state.at(head.state().back().first)));
  auto extra = state;
  extra["pool.unknown"] = at::zeros({1});
  EXPECT_THROW(head.load_state(extra, "test"), BadInput);
  auto missing = state;
  missing.erase("linear.bias");
  EXPECT_THROW(head.load_state(missing, "test"), BadInput);
  auto wrong = state;
  wrong["linear.weight"] = at::zeros({2, 2});
  EXPECT_THROW(head.load_state(wrong, "test"), BadInput);
}

TEST(ProbeHeadIo, SavedHeadLoadsBackWithTheSameOutputs) {
  probe_test::ScratchDir dir;
  const auto layout = small_layout();
  const auto spec = parse_head_spec("abmilp:depth=2,act=tanh");
  ProbeHead head(spec, layout, 4, 9);
  const auto features = random_features(layout, {spec});
  head.forward(features, true);  // move the BatchNorm statistics away from their start
  const nlohmann::json config = {{"format", "vitprobe-head"}, {"version", 1}, {"head", spec.name},
                                 {"layout", layout_to_json(layout)}, {"num_classes", 4}};
  const auto folder = dir.path() + "/heads/" + head_folder_name(spec.name);
  save_head(folder, head.state(), config);
  EXPECT_EQ(head_folder_name(spec.name), "abmilp_depth=2_act=tanh");
  const auto loaded = load_head(folder);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::allclose(loaded.head->forward(features, false), head.forward(features, false)));
  EXPECT_EQ(find_head_folders(dir.path()), std::vector<std::string>{folder});
  EXPECT_EQ(find_head_folders(folder), std::vector<std::string>{folder});
}

TEST(ProbeHeadIo, AimBatchNormStatisticsAreSavedAndUsedAtEvaluation) {
  probe_test::ScratchDir dir;
  const auto layout = small_layout();
  const auto spec = parse_head_spec("aim:heads=4");
  ProbeHead head(spec, layout, 4, 9);
  const auto features = random_features(layout, {spec});
  const auto& names = head.buffers();
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(names[0].first, "pool.bn.running_mean");
  EXPECT_EQ(names[1].first, "pool.bn.running_var");
  const auto before = names[0].second.clone();
  const auto training = head.forward(features, true);
  EXPECT_FALSE(at::equal(before, head.buffers()[0].second));  // the token statistics moved
  at::NoGradGuard no_grad;
  const auto evaluation = head.forward(features, false);
  EXPECT_FALSE(at::allclose(training, evaluation));  // batch statistics versus running ones
  const nlohmann::json config = {{"format", "vitprobe-head"}, {"version", 1}, {"head", spec.name},
                                 {"layout", layout_to_json(layout)}, {"num_classes", 4}};
  const auto folder = dir.path() + "/" + head_folder_name(spec.name);
  save_head(folder, head.state(), config);
  const auto loaded = load_head(folder);
  EXPECT_TRUE(at::allclose(loaded.head->forward(features, false), evaluation));
  EXPECT_TRUE(at::equal(loaded.head->buffers()[0].second, head.buffers()[0].second));
}

TEST(ProbeFileHash, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000, 'a')), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

}  // namespace
}  // namespace vitprobe
