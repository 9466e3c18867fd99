#include "checkpoint/safetensors.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

#include "common/errors.h"
#include "common/limits.h"
#include "io/input_file.h"
#include "io/atomic_file.h"

namespace vitprobe {
namespace {

// Tensor data is copied byte for byte, which is only right on a little-endian machine.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");


struct DtypeName {
  const char* name;
  at::ScalarType type;
};

constexpr DtypeName kDtypes[] = {{"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
                                 {"F64", at::kDouble}, {"I64", at::kLong}, {"I32", at::kInt},
                                 {"I16", at::kShort},  {"I8", at::kChar},  {"U8", at::kByte},
                                 {"BOOL", at::kBool}};

// One tensor as the header describes it, checked against the data size.
struct TensorLayout {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

std::string quoted(const std::string& name) { return "'" + name + "'"; }

TensorLayout parse_layout(const std::string& file, const std::string& name, const nlohmann::json& info,
                          uint64_t data_size) {
  const std::string where = file + ": safetensors tensor " + quoted(name);
  if (!info.is_object()) throw BadInput(where + " is not described by a JSON object");
  TensorLayout layout;
  layout.name = name;

  const auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) throw BadInput(where + " has no dtype string");
  const auto* known = std::find_if(std::begin(kDtypes), std::end(kDtypes),
                                   [&](const DtypeName& d) { return *dtype == d.name; });
  if (known == std::end(kDtypes)) {
    throw BadInput(where + " has unsupported dtype '" + dtype->get<std::string>() + "'");
  }
  layout.dtype = known->type;

  const auto shape = info.find("shape");
  if (shape == info.end() || !shape->is_array() || shape->size() > 64) throw BadInput(where + " has no shape array");
  uint64_t numel = 1;
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      throw BadInput(where + " has a shape entry that is not a non-negative integer");
    }
    layout.shape.push_back(dim.get<int64_t>());
    if (__builtin_mul_overflow(numel, dim.get<uint64_t>(), &numel)) throw BadInput(where + " shape size overflows");
  }
  uint64_t n_bytes = 0;
  if (__builtin_mul_overflow(numel, c10::elementSize(layout.dtype), &n_bytes)) {
    throw BadInput(where + " shape size overflows");
  }

  const auto offsets = info.find("data_offsets");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned()) {
    throw BadInput(where + " has no data_offsets [begin, end] of non-negative integers");
  }
  layout.begin = (*offsets)[0].get<uint64_t>();
  layout.end = (*offsets)[1].get<uint64_t>();
  const std::string range = " data_offsets [" + std::to_string(layout.begin) + ", " + std::to_string(layout.end) + "]";
  if (layout.begin > layout.end) throw BadInput(where + range + " has begin after end");
  if (layout.end > data_size) {
    throw BadInput(where + range + " exceed the data size " + std::to_string(data_size));
  }
  if (layout.end - layout.begin != n_bytes) {
    throw BadInput(where + range + " hold " + std::to_string(layout.end - layout.begin) + " bytes but its shape and " +
                   dtype->get<std::string>() + " need " + std::to_string(n_bytes) + " (size mismatch)");
  }
  return layout;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const nlohmann::json& value) {
  const std::string error = file + ": safetensors __metadata__ must map strings to strings";
  if (!value.is_object()) throw BadInput(error);
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string()) throw BadInput(error);
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

const char* dtype_name(const std::string& file, const std::string& name, at::ScalarType type) {
  for (const DtypeName& d : kDtypes) {
    if (d.type == type) return d.name;
  }
  throw BadInput(file + ": safetensors cannot store tensor " + quoted(name) + " of dtype " + c10::toString(type));
}

}  // namespace

RawCheckpoint read_safetensors(const std::string& file) {
  require_regular_file(file);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff file_size_signed = in.tellg();
  in.seekg(0);
  if (!in || file_size_signed < 0) throw IoError(file + ": cannot read");
  const auto file_size = static_cast<uint64_t>(file_size_signed);
  if (file_size < 8) {
    throw BadInput(file + ": safetensors file is " + std::to_string(file_size) +
                   " bytes, too short to hold the 8-byte header size");
  }

  unsigned char size_bytes[8];
  in.read(reinterpret_cast<char*>(size_bytes), 8);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | size_bytes[i];
  if (header_size > kMaxSafetensorsHeaderBytes) {
    throw BadInput(file + ": safetensors header size " + std::to_string(header_size) +
                   " is over the 100 MB limit (corrupt or not safetensors)");
  }
  if (header_size > file_size - 8) {
    throw BadInput(file + ": safetensors header size " + std::to_string(header_size) + " exceeds the file size " +
                   std::to_string(file_size) + " (truncated?)");
  }
  std::string header_text(static_cast<size_t>(header_size), '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_size));
  if (!in) throw IoError(file + ": read failed");

  nlohmann::json header;
  // nlohmann keeps the last of two equal keys; the reference loader refuses them, so keys are tracked
  // per open object while parsing.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const nlohmann::json::parser_callback_t track_keys = [&](int, nlohmann::json::parse_event_t event,
                                                           nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == nlohmann::json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == nlohmann::json::parse_event_t::key && !open_objects.empty() && duplicate.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  try {
    header = nlohmann::json::parse(header_text, track_keys);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(file + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw BadInput(file + ": safetensors header is not a JSON object");
  if (!duplicate.empty()) throw BadInput(file + ": safetensors header names '" + duplicate + "' twice");

  RawCheckpoint checkpoint;
  checkpoint.file = file;
  checkpoint.format = "safetensors";
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  std::vector<TensorLayout> layouts;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      checkpoint.metadata = parse_metadata(file, info);
    } else {
      layouts.push_back(parse_layout(file, name, info, data_size));
    }
  }
  std::sort(layouts.begin(), layouts.end(), [](const TensorLayout& a, const TensorLayout& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // As in the reference loader: sorted by offset, the tensors tile the data exactly, with no gap, no
  // overlap and nothing after the last one.
  uint64_t tiled = 0;
  for (const TensorLayout& layout : layouts) {
    if (layout.begin != tiled) {
      throw BadInput(file + ": safetensors tensor " + quoted(layout.name) + " data_offsets begin at " +
                     std::to_string(layout.begin) + " where the previous tensor ends at " + std::to_string(tiled) +
                     (layout.begin < tiled ? " (overlapping tensors)" : " (a gap between tensors)"));
    }
    tiled = layout.end;
  }
  if (tiled != data_size) {
    throw BadInput(file + ": safetensors data holds " + std::to_string(data_size - tiled) +
                   " bytes after the last tensor (offset " + std::to_string(tiled) + " of " + std::to_string(data_size) +
                   ")");
  }

  for (const TensorLayout& layout : layouts) {
    at::Tensor tensor = at::empty(layout.shape, at::TensorOptions().dtype(layout.dtype));
    in.seekg(static_cast<std::streamoff>(data_start + layout.begin));
    in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(layout.end - layout.begin));
    if (!in) throw IoError(file + ": read failed in tensor " + quoted(layout.name));
    checkpoint.entries.push_back(CheckpointEntry{{layout.name}, tensor, ""});
  }
  return checkpoint;
}

void write_safetensors(const std::string& file, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps __metadata__ first and the tensors in data order, as the reference writer does.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || header.contains(name)) {
      throw BadInput(file + ": safetensors cannot store two tensors named " + quoted(name));
    }
    if (!tensor.defined()) throw BadInput(file + ": safetensors tensor " + quoted(name) + " is undefined");
    const char* dtype = dtype_name(file, name, tensor.scalar_type());
    data.push_back(tensor.cpu().contiguous());
    const auto n_bytes = static_cast<uint64_t>(data.back().nbytes());
    header[name] = {{"dtype", dtype}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + n_bytes}}};
    offset += n_bytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(file + ": safetensors header cannot be written: " + e.what());
  }
  // Padding to a multiple of 8 keeps the data aligned for readers that map the file.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  write_file_atomically(file, [&](std::ostream& out) {
    uint64_t size = header_text.size();
    char size_bytes[8];
    for (char& byte : size_bytes) {
      byte = static_cast<char>(size & 0xff);
      size >>= 8;
    }
    out.write(size_bytes, 8);
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (const at::Tensor& tensor : data) {
      out.write(static_cast<const char*>(tensor.data_ptr()), static_cast<std::streamsize>(tensor.nbytes()));
    }
  });
}

}  // namespace vitprobe
