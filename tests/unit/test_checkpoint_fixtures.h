#pragma once
// Builders of checkpoint files for the checkpoint tests: pickles opcode by opcode, torch.save-style zip
// archives (by PyTorchStreamWriter, or by hand when a test needs deflated, duplicate or damaged entries),
// safetensors bytes.
#include <ATen/Functions.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace vitprobe {
namespace {

// Runs `action`, expects it to throw `Error`, and returns the message so tests can check its words.
template <typename Error, typename Action>
std::string message_of(Action&& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return "";
}

void write_bytes(const std::string& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string u64_le(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A safetensors file with the given header text and `data_size` zero bytes of data.
std::string safetensors_bytes(const std::string& header, size_t data_size) {
  return u64_le(header.size()) + header + std::string(data_size, '\0');
}

// Builds protocol-2 pickles opcode by opcode, the way torch.save writes them.
class PickleWriter {
 public:
  PickleWriter() { bytes_ = "\x80\x02"; }
  PickleWriter& op(char code) { bytes_ += code; return *this; }
  PickleWriter& raw(const std::string& bytes) { bytes_ += bytes; return *this; }
  PickleWriter& text(const std::string& value) {
    bytes_ += 'X';
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((value.size() >> (8 * i)) & 0xff);
    bytes_ += value;
    return *this;
  }
  PickleWriter& small_int(uint8_t value) { bytes_ += 'K'; bytes_ += static_cast<char>(value); return *this; }
  // BININT: a signed 32-bit integer.
  PickleWriter& int32(int32_t value) {
    bytes_ += 'J';
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((static_cast<uint32_t>(value) >> (8 * i)) & 0xff);
    return *this;
  }
  PickleWriter& memo_put(uint8_t index) { bytes_ += 'q'; bytes_ += static_cast<char>(index); return *this; }
  PickleWriter& memo_get(uint8_t index) { bytes_ += 'h'; bytes_ += static_cast<char>(index); return *this; }
  PickleWriter& global(const std::string& module, const std::string& name) {
    bytes_ += "c" + module + "\n" + name + "\n";
    return *this;
  }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  PickleWriter& float_tensor(const std::string& key, uint8_t numel, uint8_t offset, std::vector<uint8_t> size,
                             std::vector<uint8_t> stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').text("storage").global("torch", "FloatStorage");
    text(key).text("cpu").small_int(numel).op('t').op('Q').small_int(offset);
    op('(');
    for (uint8_t s : size) small_int(s);
    op('t').op('(');
    for (uint8_t s : stride) small_int(s);
    op('t').op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    return *this;
  }
  // The same with 32-bit sizes and strides, for views far larger than their storage.
  PickleWriter& wide_float_tensor(const std::string& key, int32_t numel, const std::vector<int32_t>& size,
                                  const std::vector<int32_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').text("storage").global("torch", "FloatStorage");
    text(key).text("cpu").int32(numel).op('t').op('Q').small_int(0);
    op('(');
    for (int32_t s : size) int32(s);
    op('t').op('(');
    for (int32_t s : stride) int32(s);
    op('t').op('\x89').global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    return *this;
  }
  std::string bytes() const { return bytes_ + "."; }

 private:
  std::string bytes_;
};

// Writes a zip archive with PyTorchStreamWriter, the container torch.save uses.
void write_archive(const std::string& file, const std::vector<std::pair<std::string, std::string>>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(file);
  for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
  writer.writeEndOfFile();
}

std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// One entry of a hand-written zip archive. Deflated entries are compressed here; `declared_size` and
// `crc` replace the true values when set, to build lying archives.
struct ZipMember {
  std::string name;
  std::string data;
  bool deflate = false;
  int64_t declared_size = -1;
  int64_t crc = -1;
};

std::string le(uint64_t value, int n_bytes) {
  std::string bytes;
  for (int i = 0; i < n_bytes; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A zip archive as miniz and Python's zipfile read it: local headers, the central directory, its end record.
std::string zip_bytes(const std::vector<ZipMember>& members) {
  std::string file, directory;
  for (const ZipMember& member : members) {
    std::string stored = member.data;
    if (member.deflate) {
      z_stream stream{};
      deflateInit2(&stream, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
      stored.assign(deflateBound(&stream, member.data.size()), '\0');
      stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(member.data.data()));
      stream.avail_in = static_cast<uInt>(member.data.size());
      stream.next_out = reinterpret_cast<Bytef*>(stored.data());
      stream.avail_out = static_cast<uInt>(stored.size());
      deflate(&stream, Z_FINISH);
      stored.resize(stream.total_out);
      deflateEnd(&stream);
    }
    const uint32_t crc = member.crc >= 0 ? static_cast<uint32_t>(member.crc)
                                         : static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(member.data.data()),
                                                                       static_cast<uInt>(member.data.size())));
    const uint64_t size = member.declared_size >= 0 ? static_cast<uint64_t>(member.declared_size) : member.data.size();
    const std::string common = le(20, 2) + le(0, 2) + le(member.deflate ? 8 : 0, 2) + le(0, 4) + le(crc, 4) +
                               le(stored.size(), 4) + le(size, 4) + le(member.name.size(), 2) + le(0, 2);
    directory += le(0x02014b50, 4) + le(20, 2) + common + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
                 le(file.size(), 4) + member.name;
    file += le(0x04034b50, 4) + common + member.name + stored;
  }
  return file + directory + le(0x06054b50, 4) + le(0, 4) + le(members.size(), 2) + le(members.size(), 2) +
         le(directory.size(), 4) + le(file.size(), 4) + le(0, 2);
}

}  // namespace
}  // namespace vitprobe
