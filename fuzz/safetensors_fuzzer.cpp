// safetensors files (checkpoint/safetensors.cpp): header length, JSON header with __metadata__, tensor data.
#include "checkpoint/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = vitprobe_fuzz::scratch().write("model.safetensors", data, size);
  vitprobe_fuzz::expect_clean_errors([&] { (void)vitprobe::read_safetensors(file); });
  return 0;
}
