// Image decoding (image/image.cpp): JPEG through libjpeg, PNG through libpng, binary and plain PPM/PGM,
// chosen by magic bytes. The pixel limit is lowered (VITPROBE_MAX_IMAGE_PIXELS) so that a header may claim
// more than the limit without a valid image of that size fitting in the fuzzer's memory limit.
#include <cstdlib>

#include "fuzz_common.h"
#include "image/image.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("VITPROBE_MAX_IMAGE_PIXELS", "4000000", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = vitprobe_fuzz::scratch().write("image", data, size);
  vitprobe_fuzz::expect_clean_errors([&] {
    const vitprobe::ImageU8 image = vitprobe::decode_image(file);
    vitprobe::check_image(image, file);
  });
  return 0;
}
