// CIFAR-10, CIFAR-100 and STL-10 binaries and their class-name lists (data/cifar.cpp). A flags byte chooses
// the format; then (split_parts) CIFAR: the test batch and its class-name text (absent when empty); STL-10:
// test_X.bin, test_y.bin and class_names.txt (absent when empty).
#include "data/packed_dataset.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int format = data[0] % 3;
  const auto parts = vitprobe_fuzz::split_parts(data + 1, size - 1, 3);
  const auto& scratch = vitprobe_fuzz::scratch();
  scratch.clear();
  auto write_if = [&](size_t index, const std::string& name, bool always) {
    if (index < parts.size() && (always || !parts[index].empty())) vitprobe_fuzz::write_part(name, parts[index]);
  };
  vitprobe_fuzz::expect_clean_errors([&] {
    if (format == 0) {
      write_if(0, "test_batch.bin", true);
      write_if(1, "batches.meta.txt", false);
      (void)vitprobe::read_cifar_dataset(scratch.folder(), true, 10);
    } else if (format == 1) {
      write_if(0, "test.bin", true);
      write_if(1, "fine_label_names.txt", false);
      (void)vitprobe::read_cifar_dataset(scratch.folder(), true, 100);
    } else {
      write_if(0, "test_X.bin", true);
      write_if(1, "test_y.bin", true);
      write_if(2, "class_names.txt", false);
      (void)vitprobe::read_stl10_dataset(scratch.folder(), true);
    }
  });
  return 0;
}
