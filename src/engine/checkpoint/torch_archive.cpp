#include "checkpoint/torch_archive.h"

#include <ATen/ops/empty.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <new>

#include "checkpoint/pickle.h"
#include "common/errors.h"

namespace vitprobe {
namespace {

// Checkpoints nest a few levels (model -> state dict -> optimizer state); a deeper tree is hostile or
// cyclic, and stopping early keeps the recursion off the end of the stack.
constexpr int kMaxDepth = 100;

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Keys come from the file and are shown to users; control bytes would break one-line messages.
std::string printable(const std::string& text) {
  std::string shown;
  for (char c : text) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  return shown;
}

// Archives written on big-endian machines say so in a "byteorder" record (PyTorch >= 1.12); older
// archives have none and are little-endian.
void check_byte_order(caffe2::serialize::PyTorchStreamReader& reader, const std::string& file) {
  if (!reader.hasRecord("byteorder")) return;
  const auto [data, size] = reader.getRecord("byteorder");
  const std::string order(static_cast<const char*>(data.get()), size);
  if (order != "little") {
    throw BadInput(file + ": torch.save archive has byte order '" + printable(order) + "'; only little is supported");
  }
}

at::Tensor load_storage(caffe2::serialize::PyTorchStreamReader& reader, const std::string& file,
                        const std::string& key, at::ScalarType dtype, int64_t numel) {
  const std::string record = "data/" + key;
  if (!reader.hasRecord(record)) {
    throw BadInput(file + ": torch.save archive lacks storage record '" + printable(record) + "'");
  }
  const auto [data, size] = reader.getRecord(record);
  uint64_t expected = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), c10::elementSize(dtype), &expected) ||
      expected != size) {
    throw BadInput(file + ": torch.save storage record '" + printable(record) + "' has " + std::to_string(size) +
                   " bytes but the pickle expects " + std::to_string(numel) + " x " + c10::toString(dtype) +
                   " (size mismatch)");
  }
  at::Tensor storage = at::empty({numel}, at::TensorOptions().dtype(dtype));
  if (size > 0) std::memcpy(storage.data_ptr(), data.get(), size);
  return storage;
}

std::string key_text(const std::string& file, const std::vector<std::string>& path, const PickleValue& key) {
  switch (key.kind) {
    case PickleValue::Kind::String: return key.text;
    case PickleValue::Kind::Int: return std::to_string(key.integer);
    case PickleValue::Kind::Bool: return key.boolean ? "True" : "False";
    case PickleValue::Kind::None: return "None";
    default:
      throw BadInput(file + ": checkpoint has a dict key of type " + pickle_kind_name(key) + " under '" +
                     printable(join_path(path)) + "'");
  }
}

// Containers are walked depth first in pickle order; every other value is a leaf.
void collect(const std::string& file, const PickleValue& value, std::vector<std::string>& path, int depth,
             std::vector<CheckpointEntry>& entries) {
  if (depth > kMaxDepth) {
    throw BadInput(file + ": checkpoint nests containers deeper than " + std::to_string(kMaxDepth) +
                   " levels (cyclic?) under '" + printable(join_path(path)) + "'");
  }
  using Kind = PickleValue::Kind;
  if (value.kind == Kind::Tensor) {
    entries.push_back(CheckpointEntry{path, value.tensor, ""});
  } else if (value.kind == Kind::Dict && !value.entries.empty()) {
    for (const auto& [key, item] : value.entries) {
      path.push_back(key_text(file, path, *key));
      collect(file, *item, path, depth + 1, entries);
      path.pop_back();
    }
  } else if ((value.kind == Kind::List || value.kind == Kind::Tuple) && !value.items.empty()) {
    for (size_t i = 0; i < value.items.size(); ++i) {
      path.push_back(std::to_string(i));
      collect(file, *value.items[i], path, depth + 1, entries);
      path.pop_back();
    }
  } else {
    entries.push_back(CheckpointEntry{path, at::Tensor(), pickle_kind_name(value)});
  }
}

}  // namespace

RawCheckpoint read_torch_archive(const std::string& file) {
  if (!std::ifstream(file, std::ios::binary)) throw IoError(file + ": cannot open");
  try {
    caffe2::serialize::PyTorchStreamReader reader(file);
    if (!reader.hasRecord("data.pkl")) {
      throw BadInput(file + ": zip archive has no data.pkl: not a torch.save checkpoint");
    }
    check_byte_order(reader, file);
    const auto [pickle_data, pickle_size] = reader.getRecord("data.pkl");
    const StorageLoader loader = [&](const std::string& key, at::ScalarType dtype, int64_t numel) {
      return load_storage(reader, file, key, dtype, numel);
    };
    const PickleTree tree = unpickle(static_cast<const char*>(pickle_data.get()), pickle_size, file, loader);

    RawCheckpoint checkpoint;
    checkpoint.file = file;
    checkpoint.format = "torch-zip";
    std::vector<std::string> path;
    collect(file, *tree.root, path, 0, checkpoint.entries);
    return checkpoint;
  } catch (const c10::Error& e) {
    throw BadInput(file + ": cannot read torch.save zip archive: " + first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    throw BadInput(file + ": torch.save zip archive claims a record larger than memory (corrupt size)");
  }
}

}  // namespace vitprobe
