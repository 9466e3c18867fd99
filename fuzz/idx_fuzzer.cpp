// MNIST / Fashion-MNIST IDX files (data/idx.cpp, gzip through data/file_bytes.cpp). The input is split
// (fuzz_common.h's split_parts) into a flags byte, the images file and the labels file of one split.
#include "data/packed_dataset.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const auto parts = vitprobe_fuzz::split_parts(data + 1, size - 1, 2);
  const auto& scratch = vitprobe_fuzz::scratch();
  scratch.clear();
  const bool val = flags & 1, fashion = flags & 2, gzip_names = flags & 4;
  const std::string prefix = val ? "t10k" : "train", suffix = gzip_names ? ".gz" : "";
  if (parts.size() > 0) vitprobe_fuzz::write_part(prefix + "-images-idx3-ubyte" + suffix, parts[0]);
  if (parts.size() > 1) vitprobe_fuzz::write_part(prefix + "-labels-idx1-ubyte" + suffix, parts[1]);
  vitprobe_fuzz::expect_clean_errors([&] { (void)vitprobe::read_idx_dataset(scratch.folder(), val, fashion); });
  return 0;
}
