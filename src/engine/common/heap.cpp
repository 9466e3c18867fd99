#include "common/heap.h"

#include <malloc.h>

#include <limits>

namespace vitprobe {

void keep_freed_memory_in_heap() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
}

}  // namespace vitprobe
