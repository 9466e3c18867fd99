// Checkpoint readers: safetensors round trips, torch.save archives built by hand and by real PyTorch,
// and every kind of malformed input, which must end in BadInput (or IoError) and never in a crash.
#include <ATen/Functions.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "checkpoint/checkpoint_file.h"
#include "checkpoint/pickle.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/torch_archive.h"
#include "common/errors.h"
#include "test_checkpoint_fixtures.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> paths_of(const RawCheckpoint& checkpoint) {
  std::vector<std::string> paths;
  for (const CheckpointEntry& entry : checkpoint.entries) paths.push_back(join_path(entry.path));
  return paths;
}

class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "vitprobe_ckpt_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string dir_;
};

TEST(JoinPath, JoinsWithDots) {
  EXPECT_EQ(join_path({"model", "blocks.0.w"}), "model.blocks.0.w");
  EXPECT_EQ(join_path({}), "");
}

TEST_F(CheckpointFiles, SafetensorsRoundTrip) {
  const at::Tensor f32 = at::arange(12, at::kFloat).reshape({3, 4}).t();  // non-contiguous on purpose
  const at::Tensor f16 = at::linspace(-1, 1, 5).to(at::kHalf);
  const at::Tensor bf16 = at::linspace(-2, 2, 6).reshape({2, 3}).to(at::kBFloat16);
  const at::Tensor i64 = at::arange(-3, 3, at::kLong);
  const at::Tensor empty = at::empty({0, 2}, at::kFloat);
  const std::string file = path("model.safetensors");
  write_safetensors(file, {{"z.f32", f32}, {"a.f16", f16}, {"bf16", bf16}, {"i64", i64}, {"empty", empty}},
                    {{"format", "pt"}});

  // The header is padded to a multiple of 8 and lists the tensors with contiguous offsets.
  const std::string bytes = read_bytes(file);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(header_size % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.substr(8, header_size));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  EXPECT_EQ(header["z.f32"]["dtype"], "F32");
  EXPECT_EQ(header["z.f32"]["shape"], nlohmann::json({4, 3}));
  EXPECT_EQ(header["z.f32"]["data_offsets"], nlohmann::json({0, 48}));
  EXPECT_EQ(bytes.size(), 8 + header_size + 48 + 10 + 12 + 48);

  const RawCheckpoint checkpoint = read_checkpoint_file(file);
  EXPECT_EQ(checkpoint.format, "safetensors");
  EXPECT_EQ(checkpoint.metadata.at("format"), "pt");
  ASSERT_EQ(paths_of(checkpoint), (std::vector<std::string>{"z.f32", "a.f16", "bf16", "i64", "empty"}));
  const std::vector<at::Tensor> expected = {f32, f16, bf16, i64, empty};
  for (size_t i = 0; i < expected.size(); ++i) {
    const at::Tensor& got = checkpoint.entries[i].tensor;
    EXPECT_EQ(got.scalar_type(), expected[i].scalar_type()) << i;
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(at::equal(got, expected[i])) << i;
  }
}

TEST_F(CheckpointFiles, SafetensorsRefusesDuplicateNames) {
  const at::Tensor t = at::ones({2});
  EXPECT_NE(message_of<BadInput>([&] { write_safetensors(path("d.safetensors"), {{"x", t}, {"x", t}}, {}); })
                .find("safetensors"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(path("d.safetensors")));
}

TEST_F(CheckpointFiles, MalformedSafetensors) {
  const std::string tensor = R"("x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]})";
  struct Case {
    std::string name;
    std::string bytes;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {"too short", "abc", {"safetensors", "short"}},
      {"header larger than file", u64_le(5000) + "{}", {"safetensors", "size"}},
      {"absurd header size", u64_le(uint64_t{1} << 60) + "{}", {"safetensors", "size"}},
      {"bad json", safetensors_bytes("{\"x\": [1, 2", 0), {"safetensors", "JSON"}},
      {"not an object", safetensors_bytes("[1, 2]      ", 0), {"safetensors", "object"}},
      {"lying offsets", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 400]}})", 120),
       {"safetensors", "offset", "120"}},
      {"offsets do not match shape", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}})", 12),
       {"safetensors", "size"}},
      {"begin after end", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 12),
       {"safetensors", "offset"}},
      {"unknown dtype", safetensors_bytes(R"({"x": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}})", 1),
       {"safetensors", "dtype"}},
      {"negative shape", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", 0),
       {"safetensors", "shape"}},
      {"overflowing shape",
       safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0),
       {"safetensors", "size"}},
      {"missing offsets", safetensors_bytes(R"({"x": {"dtype": "F32", "shape": [1]}})", 4),
       {"safetensors", "offset"}},
      {"bad metadata", safetensors_bytes("{\"__metadata__\": {\"a\": 1}, " + tensor + "}", 24),
       {"safetensors", "__metadata__"}},
      {"truncated data", safetensors_bytes("{" + tensor + "}", 20), {"safetensors", "offset", "20"}},
      {"deep nesting", safetensors_bytes(std::string(100000, '[') + std::string(100000, ']'), 0),
       {"safetensors", "object"}},
  };
  for (const Case& c : cases) {
    const std::string file = path("bad.safetensors");
    write_bytes(file, c.bytes);
    const std::string message = message_of<BadInput>([&] { read_safetensors(file); });
    for (const std::string& word : c.words) {
      EXPECT_NE(message.find(word), std::string::npos) << c.name << ": " << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.name;
  }
}

TEST_F(CheckpointFiles, SniffsFormats) {
  EXPECT_NE(message_of<IoError>([&] { read_checkpoint_file(path("missing.pt")); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(message_of<IoError>([&] { read_checkpoint_file(dir_); }).find("cannot open"), std::string::npos);

  write_bytes(path("empty.pt"), "");
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("empty.pt")); }).find("empty"), std::string::npos);

  std::mt19937 random(7);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(random() & 0xff);
  noise[8] = 'x';
  write_bytes(path("noise.pt"), noise);
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("noise.pt")); }).find("not a checkpoint"),
            std::string::npos);

  write_bytes(path("legacy.pt"), std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e", 15));
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("legacy.pt")); }).find("legacy (pre-1.6)"),
            std::string::npos);

  // A safetensors file cut inside its header is reported as such, not as an unknown format.
  write_bytes(path("cut.safetensors"), u64_le(64) + "{\"x\": ");
  const std::string cut = message_of<BadInput>([&] { read_checkpoint_file(path("cut.safetensors")); });
  EXPECT_NE(cut.find("safetensors header size"), std::string::npos) << cut;
}

TEST_F(CheckpointFiles, ZipWithoutDataPkl) {
  write_archive(path("nodata.pt"), {{"notes.txt", "hello"}});
  const std::string message = message_of<BadInput>([&] { read_checkpoint_file(path("nodata.pt")); });
  EXPECT_NE(message.find("data.pkl"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, DamagedZip) {
  write_archive(path("good.pt"), {{"data.pkl", PickleWriter().op('}').bytes()}});
  const std::string good = read_bytes(path("good.pt"));
  EXPECT_TRUE(read_checkpoint_file(path("good.pt")).entries.size() == 1);
  for (size_t length : {size_t{4}, size_t{30}, good.size() / 2, good.size() - 10}) {
    write_bytes(path("cut.pt"), good.substr(0, length));
    const std::string message = message_of<BadInput>([&] { read_checkpoint_file(path("cut.pt")); });
    EXPECT_NE(message.find(path("cut.pt")), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  std::mt19937 random(11);
  std::string noise = "PK\x03\x04";
  for (int i = 0; i < 2000; ++i) noise += static_cast<char>(random() & 0xff);
  write_bytes(path("noise.pt"), noise);
  message_of<BadInput>([&] { read_checkpoint_file(path("noise.pt")); });
}

TEST_F(CheckpointFiles, HandWrittenTorchArchive) {
  // {'model': OrderedDict(w=<2x3 tensor>, wt=<its transpose>), 'args': Namespace(lr=0.1), 'epoch': 3}
  PickleWriter pickle;
  pickle.op('}').op('(').text("model").global("collections", "OrderedDict").op(')').op('R').op('(');
  pickle.text("w").float_tensor("0", 6, 0, {2, 3}, {3, 1});
  pickle.text("wt").float_tensor("0", 6, 0, {3, 2}, {1, 3});
  pickle.op('u').text("args").global("argparse", "Namespace").op(')').op('\x81').op('}').text("lr");
  pickle.op('G').raw(std::string("\x3f\xb9\x99\x99\x99\x99\x99\x9a", 8)).op('s').op('b');
  pickle.text("epoch").small_int(3).op('u');
  write_archive(path("hand.pt"), {{"data.pkl", pickle.bytes()}, {"data/0", float_bytes({0, 1, 2, 3, 4, 5})}});

  const RawCheckpoint checkpoint = read_checkpoint_file(path("hand.pt"));
  EXPECT_EQ(checkpoint.format, "torch-zip");
  ASSERT_EQ(paths_of(checkpoint), (std::vector<std::string>{"model.w", "model.wt", "args", "epoch"}));
  const at::Tensor w = at::arange(6, at::kFloat).reshape({2, 3});
  EXPECT_TRUE(at::equal(checkpoint.entries[0].tensor, w));
  EXPECT_TRUE(at::equal(checkpoint.entries[1].tensor, w.t()));
  EXPECT_TRUE(checkpoint.entries[1].tensor.is_contiguous());
  EXPECT_EQ(checkpoint.entries[2].kind, "argparse.Namespace");
  EXPECT_FALSE(checkpoint.entries[2].tensor.defined());
  EXPECT_EQ(checkpoint.entries[3].kind, "int");
}

TEST_F(CheckpointFiles, ArchiveRefusesUnknownGlobal) {
  const std::string pickle = PickleWriter().global("os", "system").text("echo pwned").op('\x85').op('R').bytes();
  write_archive(path("evil.pt"), {{"data.pkl", pickle}});
  const std::string message = message_of<BadInput>([&] { read_checkpoint_file(path("evil.pt")); });
  EXPECT_NE(message.find("unknown global"), std::string::npos) << message;
  EXPECT_NE(message.find("os.system"), std::string::npos) << message;
}

TEST_F(CheckpointFiles, ArchiveStorageChecks) {
  const std::string pickle = PickleWriter().float_tensor("0", 6, 0, {2, 3}, {3, 1}).bytes();
  write_archive(path("short.pt"), {{"data.pkl", pickle}, {"data/0", float_bytes({0, 1, 2})}});
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("short.pt")); }).find("size"), std::string::npos);
  write_archive(path("missing.pt"), {{"data.pkl", pickle}});
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("missing.pt")); }).find("data/0"),
            std::string::npos);
  // A view reaching past its storage is refused before any memory is touched.
  const std::string outside = PickleWriter().float_tensor("0", 6, 4, {2, 3}, {3, 1}).bytes();
  write_archive(path("outside.pt"), {{"data.pkl", outside}, {"data/0", float_bytes({0, 1, 2, 3, 4, 5})}});
  EXPECT_NE(message_of<BadInput>([&] { read_checkpoint_file(path("outside.pt")); }).find("pickle"),
            std::string::npos);
}

// Storages for direct unpickler tests: `numel` counting values of the requested dtype.
at::Tensor counting_storage(const std::string&, at::ScalarType dtype, int64_t numel) {
  // Damaged pickles may ask for huge storages; a real archive refuses them by the record size.
  if (numel > 1000) throw BadInput("f: storage too large");
  return at::arange(numel, at::TensorOptions().dtype(dtype));
}

TEST(Unpickler, MalformedInputIsBadInput) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"stack underflow", std::string("\x80\x02s.", 4)},
      {"underflow below mark", std::string("\x80\x02K\x01(a.", 7)},
      {"bad memo index", std::string("\x80\x02h\x07.", 5)},
      {"unknown opcode", std::string("\x80\x02\xff.", 4)},
      {"truncated", std::string("\x80\x02X\x05\x00\x00\x00" "ab", 9)},
      {"absurd length", std::string("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.", 12)},
      {"no stop", std::string("\x80\x02K\x01", 4)},
      {"empty", ""},
      {"protocol too new", std::string("\x80\x09N.", 4)},
      {"reduce on a non-global", std::string("\x80\x02K\x01)R.", 6)},
      {"odd setitems", std::string("\x80\x02}(K\x01u.", 7)},
      {"persistent id not a storage", std::string("\x80\x02K\x01Q.", 6)},
      {"unsupported opcode", std::string("\x80\x02S'a'\n.", 8)},
  };
  for (const auto& [name, bytes] : cases) {
    const std::string message =
        message_of<BadInput>([&] { unpickle(bytes.data(), bytes.size(), "f.pt", counting_storage); });
    EXPECT_NE(message.find("pickle"), std::string::npos) << name << ": " << message;
    EXPECT_EQ(message.rfind("f.pt: ", 0), 0u) << name << ": " << message;
  }
}

TEST(Unpickler, ReadsNewerProtocolOpcodes) {
  // Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_SET/ADDITEMS, NEWOBJ_EX, BINBYTES8.
  std::string bytes = std::string("\x80\x04\x95", 3) + u64_le(0) + "}\x94(";
  bytes += std::string("\x8c\x01s\x8f\x94(K\x01K\x02\x90", 11);
  bytes += std::string("\x8c\x01p\x8c\x07pathlib\x8c\x09PosixPath\x93)}\x92", 27);
  bytes += std::string("\x8c\x01" "b\x8e", 4) + u64_le(2) + "hi";
  bytes += std::string("\x8c\x01m\x68\x01u.", 7);
  const PickleTree tree = unpickle(bytes.data(), bytes.size(), "f.pt", counting_storage);
  ASSERT_EQ(tree.root->kind, PickleValue::Kind::Dict);
  ASSERT_EQ(tree.root->entries.size(), 4u);
  EXPECT_EQ(tree.root->entries[0].second->kind, PickleValue::Kind::Set);
  EXPECT_EQ(tree.root->entries[0].second->items.size(), 2u);
  EXPECT_EQ(pickle_kind_name(*tree.root->entries[1].second), "pathlib.PosixPath");
  EXPECT_EQ(tree.root->entries[2].second->text, "hi");
  EXPECT_EQ(tree.root->entries[3].second, tree.root->entries[0].second);  // memo 1 is the set
}

TEST(Unpickler, EveryTruncationAndByteFlipIsHandled) {
  PickleWriter writer;
  writer.op('}').op('(').text("model").global("collections", "OrderedDict").op(')').op('R').op('(');
  writer.text("w").float_tensor("0", 6, 0, {2, 3}, {3, 1}).op('u').text("n").op('N').op('u');
  const std::string good = writer.bytes();
  ASSERT_EQ(unpickle(good.data(), good.size(), "f", counting_storage).root->entries.size(), 2u);
  for (size_t length = 0; length < good.size(); ++length) {
    EXPECT_THROW(unpickle(good.data(), length, "f", counting_storage), BadInput) << length;
  }
  // Random damage may still parse; it must only never crash or throw anything but BadInput.
  std::mt19937 random(3);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string damaged = good;
    for (int flips = 0; flips < 3; ++flips) damaged[random() % damaged.size()] = static_cast<char>(random() & 0xff);
    try {
      unpickle(damaged.data(), damaged.size(), "f", counting_storage);
    } catch (const BadInput&) {
    }
  }
}

TEST_F(CheckpointFiles, RealTorchSave) {
  const std::string python = VITPROBE_PYTHON_BIN;
  ASSERT_EQ(std::system((python + " -c 'import torch' >/dev/null 2>&1").c_str()), 0)
      << "this test needs the Python environment with torch (" << python << ", scripts/setup) to write real "
         "torch.save files";
  const std::string script = path("save.py");
  std::ofstream(script) << "import argparse, sys, torch\n"
                           "obj = {'model': {'a': torch.arange(6.).reshape(2, 3),\n"
                           "                 'b': torch.ones(2, dtype=torch.bfloat16)[::1],\n"
                           "                 'c': torch.arange(10.)[2:8:2]},\n"
                           "       'args': argparse.Namespace(lr=0.1), 'epoch': 5,\n"
                           "       'misc': [1, (2.5, None), {'x'}, b'ab', True, 2**70, 'e', [], {}]}\n"
                           "torch.save(obj, sys.argv[1])\n"
                           "torch.save(obj, sys.argv[2], pickle_protocol=4)\n";
  const std::string command = python + " " + script + " " + path("p2.pt") + " " + path("p4.pt");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  for (const std::string name : {"p2.pt", "p4.pt"}) {
    const RawCheckpoint checkpoint = read_checkpoint_file(path(name));
    ASSERT_EQ(paths_of(checkpoint),
              (std::vector<std::string>{"model.a", "model.b", "model.c", "args", "epoch", "misc.0", "misc.1.0",
                                        "misc.1.1", "misc.2", "misc.3", "misc.4", "misc.5", "misc.6", "misc.7",
                                        "misc.8"}))
        << name;
    const auto& e = checkpoint.entries;
    EXPECT_TRUE(at::equal(e[0].tensor, at::arange(6, at::kFloat).reshape({2, 3})));
    EXPECT_EQ(e[1].tensor.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(e[1].tensor, at::ones({2}, at::kBFloat16)));
    EXPECT_TRUE(at::equal(e[2].tensor, at::tensor({2.f, 4.f, 6.f})));
    EXPECT_TRUE(e[2].tensor.is_contiguous());
    EXPECT_EQ(e[2].tensor.storage().nbytes(), 3 * sizeof(float));  // copied out of the 10-element storage
    const std::vector<std::string> kinds = {"argparse.Namespace", "int", "int", "float", "None", "set",
                                            "bytes", "bool", "int", "str", "list", "dict"};
    for (size_t i = 0; i < kinds.size(); ++i) EXPECT_EQ(e[3 + i].kind, kinds[i]) << name << " " << i;
  }
}

}  // namespace
}  // namespace vitprobe
