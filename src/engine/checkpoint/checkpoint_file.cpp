#include "checkpoint/checkpoint_file.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "checkpoint/safetensors.h"
#include "checkpoint/torch_archive.h"
#include "common/errors.h"
#include "common/limits.h"

namespace vitprobe {
namespace {

// torch.save before 1.6 wrote pickles that start with protocol 2 and LONG1 of this magic number.
constexpr unsigned char kLegacyTorchMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                               0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr unsigned char kZipLocalHeader[] = {'P', 'K', 0x03, 0x04};

bool starts_with(const std::string& head, const unsigned char* prefix, size_t length) {
  return head.size() >= length && std::memcmp(head.data(), prefix, length) == 0;
}

}  // namespace

RawCheckpoint read_checkpoint_file(const std::string& file) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(file, error)) {
    throw IoError(file + ": cannot open" + (std::filesystem::exists(file, error) ? " (not a regular file)" : ""));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open");
  std::string head(sizeof kLegacyTorchMagic, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  if (head.empty()) throw BadInput(file + ": empty file, not a checkpoint");

  if (starts_with(head, kZipLocalHeader, sizeof kZipLocalHeader)) return read_torch_archive(file);
  if (starts_with(head, kLegacyTorchMagic, sizeof kLegacyTorchMagic)) {
    throw BadInput(file + ": legacy (pre-1.6) torch.save format is not supported; re-save it with torch >= 1.6");
  }
  // A safetensors header is a JSON object right after its 8-byte size; the size itself is checked
  // against the file by the reader, which reports a truncated file better than "not a checkpoint".
  if (head.size() >= 9 && head[8] == '{') {
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<unsigned char>(head[i]);
    if (header_size >= 2 && header_size <= kMaxSafetensorsHeaderBytes) return read_safetensors(file);
  }
  throw BadInput(file + ": not a checkpoint (neither a torch.save zip archive nor safetensors)");
}

}  // namespace vitprobe
