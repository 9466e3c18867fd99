// torch.save zip archives (checkpoint/torch_archive.cpp, zip_directory.cpp, the unpickler behind them),
// written to a file and read as a checkpoint.
#include "checkpoint/torch_archive.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = vitprobe_fuzz::scratch().write("archive.pt", data, size);
  vitprobe_fuzz::expect_clean_errors([&] {
    const vitprobe::RawCheckpoint checkpoint = vitprobe::read_torch_archive(file);
    for (const auto& entry : checkpoint.entries) (void)vitprobe::join_path(entry.path);
  });
  return 0;
}
