#include "common/limits.h"

#include <cerrno>
#include <cstdlib>

#include "common/errors.h"

namespace vitprobe {

uint64_t max_image_pixels() {
  const char* text = std::getenv(kMaxImagePixelsVariable);
  if (text == nullptr || *text == '\0') return kDefaultMaxImagePixels;
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (*end != '\0' || errno != 0 || value == 0 || text[0] == '-') {
    throw BadInput(std::string(kMaxImagePixelsVariable) + "='" + text + "' is not a positive integer");
  }
  return value;
}

std::string byte_count(uint64_t bytes) {
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + " MiB";
  return std::to_string(bytes) + " bytes";
}

}  // namespace vitprobe
