// numpy .npy files (io/npy.cpp): magic, version, the Python-literal header dict, then the data.
#include "fuzz_common.h"
#include "io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = vitprobe_fuzz::scratch().write("batch.npy", data, size);
  vitprobe_fuzz::expect_clean_errors([&] { (void)vitprobe::read_npy(file); });
  return 0;
}
