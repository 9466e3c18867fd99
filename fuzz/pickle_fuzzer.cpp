// The restricted unpickler (checkpoint/pickle.cpp) on arbitrary data.pkl bytes, in memory. Storages are
// served as zeros up to 1 MiB, as a torch.save archive's records would be after their size check.
#include <ATen/ops/zeros.h>

#include "checkpoint/pickle.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const vitprobe::StorageLoader load_storage = [](const std::string& key, at::ScalarType dtype, int64_t numel) {
    if (numel < 0 || static_cast<uint64_t>(numel) * c10::elementSize(dtype) > (uint64_t{1} << 20)) {
      throw vitprobe::BadInput("fuzz: storage '" + key + "' of " + std::to_string(numel) + " elements refused");
    }
    return at::zeros({numel}, at::TensorOptions().dtype(dtype));
  };
  vitprobe_fuzz::expect_clean_errors([&] {
    const vitprobe::PickleTree tree =
        vitprobe::unpickle(reinterpret_cast<const char*>(data), size, "fuzz.pkl", load_storage);
    if (tree.root) (void)vitprobe::pickle_kind_name(*tree.root);
  });
  return 0;
}
