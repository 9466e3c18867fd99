#include "checkpoint/torch_archive.h"

#include <ATen/ops/empty.h>
#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <map>
#include <tuple>
#include <new>

#include "checkpoint/pickle.h"
#include "checkpoint/zip_directory.h"
#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"

namespace vitprobe {
namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Keys come from the file and are shown to users; control bytes would break one-line messages.
std::string printable(const std::string& text) {
  std::string shown;
  for (char c : text) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
  return shown;
}

// The records of one archive: PyTorchStreamReader reads them, after the zip directory read first has
// told their real sizes. Every record is checked before it is inflated (its declared size against what is
// expected of it) and after (its CRC-32, which the reader's miniz build does not check).
class Records {
 public:
  explicit Records(const std::string& file) : file_(file), entries_(checked_directory(file)), reader_(file) {
    // PyTorchStreamReader names records relative to the archive's top folder, the first entry's.
    const std::string first = entries_.empty() ? "" : reader_first_name();
    prefix_ = first.substr(0, first.find('/') + 1);
  }

  bool has(const std::string& name) { return reader_.hasRecord(name); }

  // The declared inflated size of record `name` (which must exist).
  uint64_t size_of(const std::string& name) const { return entry(name).size; }

  // Reads record `name`, which must declare at most `max_bytes`, and checks its CRC-32.
  std::tuple<at::DataPtr, size_t> read(const std::string& name, uint64_t max_bytes, const std::string& limit) {
    const ZipEntry& found = entry(name);
    if (found.size > max_bytes) {
      throw BadInput(file_ + ": torch.save record '" + printable(name) + "' declares " + std::to_string(found.size) +
                     " bytes, more than " + limit);
    }
    auto record = reader_.getRecord(name);
    const auto& [data, size] = record;
    if (size != found.size || zip_crc32(data.get(), size) != found.crc32) {
      throw BadInput(file_ + ": torch.save record '" + printable(name) +
                     "' fails its CRC-32 check (damaged or tampered with)");
    }
    return record;
  }

 private:
  // PyTorchStreamReader's constructor reads the version record whole; it holds a small number.
  static std::map<std::string, ZipEntry> checked_directory(const std::string& file) {
    std::map<std::string, ZipEntry> entries = read_zip_directory(file);
    for (const auto& [name, e] : entries) {
      const bool version = name == "version" || (name.size() > 8 && name.compare(name.size() - 8, 8, "/version") == 0);
      if (version && e.size > 4096) {
        throw BadInput(file + ": torch.save record '" + printable(name) + "' declares " + std::to_string(e.size) +
                       " bytes, more than the 4096 a version number needs");
      }
    }
    return entries;
  }

  std::string reader_first_name() const {
    // The entry with the lowest local header offset is the one written first.
    const ZipEntry* first = nullptr;
    for (const auto& [name, e] : entries_) {
      if (first == nullptr || e.local_header_offset < first->local_header_offset) first = &e;
    }
    return first->name;
  }
  const ZipEntry& entry(const std::string& name) const {
    const auto found = entries_.find(prefix_ + name);
    if (found == entries_.end()) {
      throw BadInput(file_ + ": torch.save record '" + printable(name) + "' is missing from the zip directory");
    }
    return found->second;
  }

  const std::string& file_;
  std::map<std::string, ZipEntry> entries_;
  caffe2::serialize::PyTorchStreamReader reader_;
  std::string prefix_;
};

// Archives written on big-endian machines say so in a "byteorder" record (PyTorch >= 1.12); older
// archives have none and are little-endian.
void check_byte_order(Records& reader, const std::string& file) {
  if (!reader.has("byteorder")) return;
  const auto [data, size] = reader.read("byteorder", 16, "the 16 bytes a byte order needs");
  const std::string order(static_cast<const char*>(data.get()), size);
  if (order != "little") {
    throw BadInput(file + ": torch.save archive has byte order '" + printable(order) + "'; only little is supported");
  }
}

at::Tensor load_storage(Records& reader, const std::string& file, const std::string& key, at::ScalarType dtype,
                        int64_t numel) {
  const std::string record = "data/" + key;
  if (!reader.has(record)) {
    throw BadInput(file + ": torch.save archive lacks storage record '" + printable(record) + "'");
  }
  // The size is compared before the record is inflated: a deflated record of gigabytes of zeros is
  // refused from its directory entry, not after it fills memory.
  const uint64_t declared = reader.size_of(record);
  uint64_t expected = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), c10::elementSize(dtype), &expected) ||
      expected != declared) {
    throw BadInput(file + ": torch.save storage record '" + printable(record) + "' has " + std::to_string(declared) +
                   " bytes but the pickle expects " + std::to_string(numel) + " x " + c10::toString(dtype) +
                   " (size mismatch)");
  }
  const auto [data, size] = reader.read(record, expected, "its storage's " + std::to_string(expected));
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

// Containers are walked depth first in pickle order; every other value is a leaf. The unpickler has
// already bounded the walk (kMaxPickleExpandedValues) and its depth; the depth check stays as a guard
// for the stack.
void collect(const std::string& file, const PickleValue& value, std::vector<std::string>& path, int depth,
             std::vector<CheckpointEntry>& entries) {
  if (depth > kMaxPickleDepth) {
    throw BadInput(file + ": checkpoint nests containers deeper than " + std::to_string(kMaxPickleDepth) +
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
  require_regular_file(file);
  try {
    Records reader(file);
    if (!reader.has("data.pkl")) {
      throw BadInput(file + ": zip archive has no data.pkl: not a torch.save checkpoint");
    }
    check_byte_order(reader, file);
    const auto [pickle_data, pickle_size] =
        reader.read("data.pkl", kMaxPickleBytes, "the limit of " + byte_count(kMaxPickleBytes));
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
