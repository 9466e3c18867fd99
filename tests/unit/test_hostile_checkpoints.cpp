// Hostile checkpoints (issue 18): resource bombs are refused from their declared sizes, fast and before any
// large allocation; archives and safetensors files are read as strictly as the reference readers; the
// loader refuses gaps in the blocks and non-finite weights. Every input is built here, byte by byte.
#include <ATen/Functions.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <tuple>

#include "checkpoint/checkpoint_file.h"
#include "checkpoint/loader.h"
#include "checkpoint/pickle.h"
#include "checkpoint/safetensors.h"
#include "common/errors.h"
#include "common/limits.h"
#include "test_checkpoint_fixtures.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

class HostileCheckpoints : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "vitprobe_hostile_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // Expects reading `file` to throw BadInput containing every one of `words` and the file's name, within
  // a second (a bomb must be refused from what it declares, not after expanding it).
  void expect_refused(const std::string& file, const std::vector<std::string>& words) {
    const auto start = std::chrono::steady_clock::now();
    const std::string message = message_of<BadInput>([&] { read_checkpoint_file(file); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 1.0) << message;
    EXPECT_NE(message.find(file), std::string::npos) << message;
    for (const std::string& word : words) EXPECT_NE(message.find(word), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }

  std::string dir_;
};

// Lists that hold the previous list twice, `levels` deep: a few bytes per level, 2^levels leaves expanded.
std::string reference_bomb(int levels) {
  PickleWriter pickle;
  pickle.op('(').op('N').op('N').op('l').memo_put(0);
  for (int level = 1; level < levels; ++level) {
    pickle.op('(').memo_get(static_cast<uint8_t>(level - 1)).memo_get(static_cast<uint8_t>(level - 1)).op('l');
    pickle.memo_put(static_cast<uint8_t>(level));
  }
  return pickle.bytes();
}

// The same with DUP and TUPLE2: two bytes per level, no memo at all.
std::string dup_bomb(int levels) {
  PickleWriter pickle;
  pickle.op('N');
  for (int level = 0; level < levels; ++level) pickle.op('2').op('\x86');
  return pickle.bytes();
}

TEST_F(HostileCheckpoints, SharedReferenceBombIsRefusedFast) {
  const std::string pickle = reference_bomb(40);
  EXPECT_LT(pickle.size(), 400u);
  write_archive(path("bomb.pt"), {{"data.pkl", pickle}});
  expect_refused(path("bomb.pt"), {"pickle", "shared references", "limit"});
  write_archive(path("dup.pt"), {{"data.pkl", dup_bomb(40)}});
  expect_refused(path("dup.pt"), {"pickle", "shared references", "limit"});
  // A few shared levels are fine: 2^10 leaves.
  const std::string small = reference_bomb(10);
  EXPECT_EQ(unpickle(small.data(), small.size(), "f", {}).root->items.size(), 2u);
}

TEST_F(HostileCheckpoints, PickleValueAndNestingLimits) {
  // DUP without end: every use of a value counts against the budget.
  const std::string dups = PickleWriter().op('N').raw(std::string(kMaxPickleValues + 10, '2')).bytes();
  const std::string many = message_of<BadInput>([&] { unpickle(dups.data(), dups.size(), "f", {}); });
  EXPECT_NE(many.find("more than " + std::to_string(kMaxPickleValues)), std::string::npos) << many;
  const std::string marks = PickleWriter().raw(std::string(kMaxPickleDepth + 1, '(')).bytes();
  const std::string deep = message_of<BadInput>([&] { unpickle(marks.data(), marks.size(), "f", {}); });
  EXPECT_NE(deep.find("deeper than"), std::string::npos) << deep;
  // A list that holds itself is cyclic: refused by depth, not walked forever.
  const std::string cycle = PickleWriter().op(']').memo_put(0).memo_get(0).op('a').memo_get(0).op('a').bytes();
  const std::string cyclic = message_of<BadInput>([&] { unpickle(cycle.data(), cycle.size(), "f", {}); });
  EXPECT_NE(cyclic.find("cyclic"), std::string::npos) << cyclic;
}

TEST_F(HostileCheckpoints, StrideZeroViewIsNotExpanded) {
  // Four floats viewed as (2^27, 4) with stride (0, 1) would be cloned to 2 GiB.
  const std::string pickle = PickleWriter().wide_float_tensor("0", 4, {1 << 27, 4}, {0, 1}).bytes();
  write_archive(path("stride0.pt"), {{"data.pkl", pickle}, {"data/0", float_bytes({1, 2, 3, 4})}});
  expect_refused(path("stride0.pt"), {"stride-0", "64 MiB"});
  // A small expansion, as torch.save writes for an expanded tensor, still loads.
  const std::string small = PickleWriter().wide_float_tensor("0", 4, {3, 4}, {0, 1}).bytes();
  write_archive(path("small.pt"), {{"data.pkl", small}, {"data/0", float_bytes({1, 2, 3, 4})}});
  const RawCheckpoint checkpoint = read_checkpoint_file(path("small.pt"));
  ASSERT_EQ(checkpoint.entries.size(), 1u);
  EXPECT_TRUE(at::equal(checkpoint.entries[0].tensor, at::tensor({1.f, 2.f, 3.f, 4.f}).expand({3, 4})));
}

// data.pkl of one float storage of `numel` elements viewed whole, in an archive written by hand.
std::vector<ZipMember> storage_archive(int32_t numel, ZipMember storage) {
  const std::string pickle = PickleWriter().wide_float_tensor("0", numel, {numel}, {1}).bytes();
  return {{"archive/data.pkl", pickle}, {"archive/version", "3\n"}, std::move(storage)};
}

TEST_F(HostileCheckpoints, HandWrittenZipReads) {
  write_bytes(path("ok.pt"), zip_bytes(storage_archive(4, {"archive/data/0", float_bytes({1, 2, 3, 4}), true})));
  const RawCheckpoint checkpoint = read_checkpoint_file(path("ok.pt"));
  ASSERT_EQ(checkpoint.entries.size(), 1u);
  EXPECT_TRUE(at::equal(checkpoint.entries[0].tensor, at::tensor({1.f, 2.f, 3.f, 4.f})));
}

TEST_F(HostileCheckpoints, DeflateBombIsRefusedBeforeInflating) {
  // 64 MiB of zeros deflate to ~64 KB: over the ratio limit, refused from the directory entry.
  const int32_t numel = 16 << 20;
  write_bytes(path("zeros.pt"), zip_bytes(storage_archive(numel, {"archive/data/0", std::string(64 << 20, '\0'), true})));
  expect_refused(path("zeros.pt"), {"zip bomb", std::to_string(kMaxCompressionRatio) + "x"});
  // A record declaring more than its storage needs is refused before it is inflated.
  write_bytes(path("lying.pt"), zip_bytes(storage_archive(4, {"archive/data/0", float_bytes({1, 2, 3, 4}), true,
                                                              int64_t{4} << 20})));
  expect_refused(path("lying.pt"), {"size mismatch"});
}

TEST_F(HostileCheckpoints, ZipNamesAndChecksums) {
  const std::string pickle = PickleWriter().op('}').bytes();
  write_bytes(path("twice.pt"), zip_bytes({{"archive/data.pkl", pickle}, {"archive/version", "3\n"},
                                           {"archive/data.pkl", PickleWriter().op(']').bytes()}}));
  expect_refused(path("twice.pt"), {"two entries", "archive/data.pkl"});
  write_bytes(path("escape.pt"), zip_bytes({{"archive/data.pkl", pickle}, {"archive/version", "3\n"},
                                            {"archive/../../evil", "x"}}));
  expect_refused(path("escape.pt"), {"'..'"});
  write_bytes(path("absolute.pt"), zip_bytes({{"archive/data.pkl", pickle}, {"/etc/evil", "x"}}));
  expect_refused(path("absolute.pt"), {"absolute"});
  write_bytes(path("crc.pt"), zip_bytes(storage_archive(4, {"archive/data/0", float_bytes({1, 2, 3, 4}), false, -1,
                                                            0x12345678})));
  expect_refused(path("crc.pt"), {"CRC-32", "data/0"});
}

TEST_F(HostileCheckpoints, SafetensorsAsStrictAsTheReference) {
  const auto tensor = [](const std::string& name, int begin, int end) {
    return "\"" + name + "\": {\"dtype\": \"F32\", \"shape\": [" + std::to_string((end - begin) / 4) +
           "], \"data_offsets\": [" + std::to_string(begin) + ", " + std::to_string(end) + "]}";
  };
  const std::vector<std::tuple<std::string, std::string, size_t, std::string>> cases = {
      {"overlap", "{" + tensor("a", 0, 8) + ", " + tensor("b", 4, 12) + "}", 12, "overlapping"},
      {"gap", "{" + tensor("a", 0, 4) + ", " + tensor("b", 8, 12) + "}", 12, "gap"},
      {"first not at 0", "{" + tensor("a", 4, 8) + "}", 8, "gap"},
      {"duplicate key", "{" + tensor("a", 0, 4) + ", " + tensor("a", 4, 8) + "}", 8, "twice"},
      {"trailing bytes", "{" + tensor("a", 0, 4) + "}", 12, "after the last tensor"},
  };
  for (const auto& [name, header, data_size, word] : cases) {
    write_bytes(path("bad.safetensors"), safetensors_bytes(header, data_size));
    const std::string message = message_of<BadInput>([&] { read_safetensors(path("bad.safetensors")); });
    EXPECT_NE(message.find(word), std::string::npos) << name << ": " << message;
  }
  // Out of order in the header but tiling the data once sorted is what the reference accepts.
  write_bytes(path("ok.safetensors"), safetensors_bytes("{" + tensor("b", 4, 8) + ", " + tensor("a", 0, 4) + "}", 8));
  EXPECT_EQ(read_safetensors(path("ok.safetensors")).entries.size(), 2u);
}

TEST_F(HostileCheckpoints, NotRegularFilesAreRefused) {
  ASSERT_EQ(::mkfifo(path("fifo.pt").c_str(), 0600), 0);
  for (const std::string& file : {path("fifo.pt"), std::string("/dev/zero"), dir_}) {
    const std::string message = message_of<IoError>([&] { read_checkpoint_file(file); });
    EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
  }
}

// A tiny timm-named ViT (width 8, 2 heads, patch 4, 16x16 input) with `depth` blocks, as a state dict.
std::vector<std::pair<std::string, at::Tensor>> tiny_vit(int depth) {
  std::vector<std::pair<std::string, at::Tensor>> weights = {
      {"patch_embed.proj.weight", at::randn({8, 3, 4, 4})}, {"patch_embed.proj.bias", at::zeros({8})},
      {"cls_token", at::zeros({1, 1, 8})},                  {"pos_embed", at::randn({1, 17, 8})},
      {"norm.weight", at::ones({8})},                       {"norm.bias", at::zeros({8})}};
  for (int i = 0; i < depth; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    for (const char* norm : {"norm1", "norm2"}) {
      weights.emplace_back(p + norm + ".weight", at::ones({8}));
      weights.emplace_back(p + norm + ".bias", at::zeros({8}));
    }
    weights.emplace_back(p + "attn.qkv.weight", at::randn({24, 8}));
    weights.emplace_back(p + "attn.qkv.bias", at::zeros({24}));
    weights.emplace_back(p + "attn.proj.weight", at::randn({8, 8}));
    weights.emplace_back(p + "attn.proj.bias", at::zeros({8}));
    weights.emplace_back(p + "mlp.fc1.weight", at::randn({32, 8}));
    weights.emplace_back(p + "mlp.fc1.bias", at::zeros({32}));
    weights.emplace_back(p + "mlp.fc2.weight", at::randn({8, 32}));
    weights.emplace_back(p + "mlp.fc2.bias", at::zeros({8}));
  }
  return weights;
}

TEST_F(HostileCheckpoints, BlocksMustRunWithoutGaps) {
  LoadOptions options;
  options.num_heads = 2;
  write_safetensors(path("full.safetensors"), tiny_vit(6), {});
  EXPECT_EQ(load_model(path("full.safetensors"), options).encoder->config().depth, 6);
  auto weights = tiny_vit(6);
  weights.erase(std::remove_if(weights.begin(), weights.end(), [](const auto& w) { return w.first.rfind("blocks.2.", 0) == 0; }),
                weights.end());
  write_safetensors(path("gap.safetensors"), weights, {});
  const std::string gap = message_of<BadInput>([&] { load_model(path("gap.safetensors"), options); });
  EXPECT_NE(gap.find("blocks.5"), std::string::npos) << gap;
  EXPECT_NE(gap.find("no blocks.2"), std::string::npos) << gap;
  // A block with a key the others lack (qkv bias only in block 3) does not fit one layout.
  weights = tiny_vit(4);
  weights.erase(std::remove_if(weights.begin(), weights.end(),
                               [](const auto& w) { return w.first.find("qkv.bias") != std::string::npos && w.first != "blocks.3.attn.qkv.bias"; }),
                weights.end());
  write_safetensors(path("mixed.safetensors"), weights, {});
  const std::string mixed = message_of<BadInput>([&] { load_model(path("mixed.safetensors"), options); });
  EXPECT_NE(mixed.find("blocks.3.attn.qkv.bias"), std::string::npos) << mixed;
}

TEST_F(HostileCheckpoints, NonFiniteWeightsAreRefusedUnlessAllowed) {
  auto weights = tiny_vit(2);
  for (auto& [key, tensor] : weights) {
    if (key == "blocks.1.mlp.fc1.weight") tensor[3][5] = std::numeric_limits<float>::quiet_NaN();
  }
  write_safetensors(path("nan.safetensors"), weights, {});
  LoadOptions options;
  options.num_heads = 2;
  const std::string message = message_of<BadInput>([&] { load_model(path("nan.safetensors"), options); });
  EXPECT_NE(message.find("blocks.1.mlp.fc1.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-nonfinite"), std::string::npos) << message;
  options.allow_nonfinite = true;
  EXPECT_EQ(load_model(path("nan.safetensors"), options).encoder->config().depth, 2);
}

}  // namespace
}  // namespace vitprobe
