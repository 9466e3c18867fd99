#include "io/npy.h"

#include <ATen/Functions.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <vector>

#include "common/errors.h"
#include "io/atomic_file.h"
#include "io/input_file.h"

namespace vitprobe {
namespace {

// Data is copied to and from tensors byte for byte, and the supported dtypes are little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy support assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLength = 6;
// numpy aligns the start of the data to 64 bytes so that it can be memory-mapped efficiently.
constexpr size_t kHeaderAlignment = 64;

struct DtypeInfo {
  const char* descr;
  at::ScalarType scalar_type;
  size_t item_size;
};

const DtypeInfo kDtypes[] = {
    {"<f4", at::kFloat, 4}, {"<f8", at::kDouble, 8}, {"<f2", at::kHalf, 2}, {"<i8", at::kLong, 8},
    {"<i4", at::kInt, 4},   {"|u1", at::kByte, 1},   {"|b1", at::kBool, 1},
};

std::string supported_descrs() {
  std::string names;
  for (const DtypeInfo& dtype : kDtypes) names += (names.empty() ? "" : ", ") + std::string(dtype.descr);
  return names;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// A value of the header dictionary: a string, a boolean or a tuple of integers.
struct HeaderValue {
  enum class Kind { String, Bool, Tuple } kind = Kind::String;
  std::string text;
  bool flag = false;
  std::vector<int64_t> numbers;
};

// Parses the Python dict literal numpy writes as header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 224), }
// Only the literal forms numpy produces are accepted; anything else is reported as malformed.
class HeaderParser {
 public:
  HeaderParser(const std::string& file, const std::string& text) : file_(file), text_(text) {}

  std::map<std::string, HeaderValue> parse() {
    std::map<std::string, HeaderValue> entries;
    expect('{');
    while (!accept('}')) {
      const std::string key = parse_string();
      expect(':');
      entries[key] = parse_value();
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (position_ != text_.size()) fail("trailing characters after the header dictionary");
    return entries;
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const {
    throw BadInput(file_ + ": invalid npy header: " + reason + " in \"" + text_ + "\"");
  }

  void skip_space() {
    while (position_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[position_]))) ++position_;
  }

  bool accept(char c) {
    skip_space();
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!accept(c)) fail(std::string("expected '") + c + "'");
  }

  std::string parse_string() {
    skip_space();
    if (position_ >= text_.size() || (text_[position_] != '\'' && text_[position_] != '"')) fail("expected a string");
    const char quote = text_[position_++];
    const size_t end = text_.find(quote, position_);
    if (end == std::string::npos) fail("unterminated string");
    std::string value = text_.substr(position_, end - position_);
    position_ = end + 1;
    return value;
  }

  int64_t parse_integer() {
    skip_space();
    int64_t value = 0;
    size_t digits = 0;
    while (position_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[position_]))) {
      const int digit = text_[position_++] - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("shape dimension too large");
      value = value * 10 + digit;
      ++digits;
    }
    // numpy may write Python 2 longs as "3L".
    if (digits > 0 && position_ < text_.size() && text_[position_] == 'L') ++position_;
    if (digits == 0) fail("expected a non-negative integer in shape");
    return value;
  }

  HeaderValue parse_value() {
    skip_space();
    HeaderValue value;
    if (text_.compare(position_, 4, "True") == 0 || text_.compare(position_, 5, "False") == 0) {
      value.kind = HeaderValue::Kind::Bool;
      value.flag = text_[position_] == 'T';
      position_ += value.flag ? 4 : 5;
    } else if (accept('(')) {
      value.kind = HeaderValue::Kind::Tuple;
      while (!accept(')')) {
        value.numbers.push_back(parse_integer());
        if (!accept(',')) {
          expect(')');
          break;
        }
      }
    } else if (position_ < text_.size() && (text_[position_] == '\'' || text_[position_] == '"')) {
      value.text = parse_string();
    } else {
      fail("unsupported value (structured dtypes are not supported)");
    }
    return value;
  }

  const std::string& file_;
  const std::string& text_;
  size_t position_ = 0;
};

uint64_t read_little_endian(const std::vector<uint8_t>& bytes, size_t offset, size_t n_bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < n_bytes; ++i) value |= static_cast<uint64_t>(bytes[offset + i]) << (8 * i);
  return value;
}

const DtypeInfo* find_dtype(at::ScalarType scalar_type) {
  for (const DtypeInfo& dtype : kDtypes) {
    if (dtype.scalar_type == scalar_type) return &dtype;
  }
  return nullptr;
}

}  // namespace

at::Tensor read_npy(const std::string& file) {
  // The data size is the file's own, checked against the header's shape; only non-files need refusing.
  const std::vector<uint8_t> bytes = read_regular_file(file, std::numeric_limits<uint64_t>::max(), "npy file");
  const auto invalid = [&file](const std::string& reason) { return BadInput(file + ": invalid npy file: " + reason); };

  if (bytes.size() < kMagicLength + 2 || std::memcmp(bytes.data(), kMagic, kMagicLength) != 0) {
    throw invalid("bad magic string (not a .npy file)");
  }
  const int major = bytes[kMagicLength], minor = bytes[kMagicLength + 1];
  if (major < 1 || major > 3) {
    throw invalid("unsupported format version " + std::to_string(major) + "." + std::to_string(minor));
  }
  // Version 1.0 stores the header length in 2 bytes; 2.0 and 3.0 (UTF-8 header) in 4.
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t header_start = kMagicLength + 2 + length_bytes;
  if (bytes.size() < header_start) throw invalid("header is truncated");
  const size_t header_length = read_little_endian(bytes, kMagicLength + 2, length_bytes);
  if (bytes.size() - header_start < header_length) throw invalid("header is truncated");
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + header_start, header_length);

  const std::map<std::string, HeaderValue> entries = HeaderParser(file, header).parse();
  const auto entry = [&](const std::string& key, HeaderValue::Kind kind) -> const HeaderValue& {
    const auto found = entries.find(key);
    if (found == entries.end() || found->second.kind != kind) {
      throw invalid("header lacks a valid '" + key + "' entry: \"" + header + "\"");
    }
    return found->second;
  };
  const std::string& descr = entry("descr", HeaderValue::Kind::String).text;
  const bool fortran_order = entry("fortran_order", HeaderValue::Kind::Bool).flag;
  const std::vector<int64_t>& shape = entry("shape", HeaderValue::Kind::Tuple).numbers;

  const DtypeInfo* dtype = nullptr;
  for (const DtypeInfo& candidate : kDtypes) {
    if (descr == candidate.descr) dtype = &candidate;
  }
  if (!dtype) throw invalid("unsupported dtype '" + descr + "' (supported: " + supported_descrs() + ")");
  if (fortran_order) throw invalid("fortran_order arrays are not supported; save with C order");

  uint64_t n_elements = 1;
  for (int64_t dimension : shape) {
    if (dimension != 0 && n_elements > std::numeric_limits<uint64_t>::max() / 8 / dimension) {
      throw invalid("shape " + shape_to_string(shape) + " is too large");
    }
    n_elements *= dimension;
  }
  const uint64_t expected_bytes = n_elements * dtype->item_size;
  const uint64_t data_bytes = bytes.size() - header_start - header_length;
  if (data_bytes != expected_bytes) {
    throw invalid("shape " + shape_to_string(shape) + " of dtype " + descr + " needs " +
                  std::to_string(expected_bytes) + " bytes of data, but the file holds " +
                  std::to_string(data_bytes) + (data_bytes < expected_bytes ? " (truncated)" : ""));
  }

  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype->scalar_type));
  if (expected_bytes == 0) return tensor;
  const uint8_t* data = bytes.data() + header_start + header_length;
  if (dtype->scalar_type == at::kBool) {
    // Any non-zero byte is true to numpy; torch needs exactly 0 or 1.
    bool* out = tensor.data_ptr<bool>();
    for (uint64_t i = 0; i < n_elements; ++i) out[i] = data[i] != 0;
  } else {
    std::memcpy(tensor.data_ptr(), data, expected_bytes);
  }
  return tensor;
}

void write_npy(const std::string& file, const at::Tensor& tensor) {
  if (!tensor.defined()) throw BadInput(file + ": cannot write npy: tensor is undefined");
  at::Tensor data = tensor.cpu();
  if (data.scalar_type() == at::kHalf || data.scalar_type() == at::kBFloat16) data = data.to(at::kFloat);
  const DtypeInfo* dtype = find_dtype(data.scalar_type());
  if (!dtype) {
    throw BadInput(file + ": cannot write npy: unsupported dtype " + std::string(c10::toString(data.scalar_type())));
  }
  data = data.contiguous();

  const std::vector<int64_t> shape(data.sizes().begin(), data.sizes().end());
  std::string header = "{'descr': '" + std::string(dtype->descr) +
                       "', 'fortran_order': False, 'shape': " + shape_to_string(shape) + ", }";
  // Pad with spaces and end with a newline so that magic, version, length and header fill whole
  // 64-byte blocks, as numpy does.
  const size_t prefix = kMagicLength + 2 + 2;
  const size_t total = (prefix + header.size() + 1 + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  if (header.size() > std::numeric_limits<uint16_t>::max()) {
    throw BadInput(file + ": cannot write npy: header too long for format 1.0");
  }

  const char* payload = static_cast<const char*>(data.data_ptr());
  const size_t payload_bytes = static_cast<size_t>(data.numel()) * dtype->item_size;
  write_file_atomically(file, [&](std::ostream& out) {
    const char version_and_length[4] = {1, 0, static_cast<char>(header.size() & 0xFF),
                                        static_cast<char>(header.size() >> 8)};
    out.write(kMagic, kMagicLength);
    out.write(version_and_length, sizeof version_and_length);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(payload, static_cast<std::streamsize>(payload_bytes));
  });
}

}  // namespace vitprobe
