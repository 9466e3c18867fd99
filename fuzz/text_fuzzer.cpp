// Text inputs: class-name and file lists (io/text_file.cpp, data/file_bytes.cpp's read_text_lines), and the
// strings that name heads and architectures (probe/head_spec.cpp's --heads syntax, model/vit_config.cpp's
// presets), which reach vitprobe from options and from saved configs. The first byte chooses the parser.
#include "data/file_bytes.h"
#include "fuzz_common.h"
#include "io/text_file.h"
#include "model/vit_config.h"
#include "probe/head_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  vitprobe_fuzz::expect_clean_errors([&] {
    switch (data[0] % 4) {
      case 0: (void)vitprobe::read_lines(vitprobe_fuzz::write_part("classes.txt", text)); break;
      case 1: (void)vitprobe::read_text_lines(vitprobe_fuzz::write_part("classes.txt", text)); break;
      case 2: (void)vitprobe::parse_head_list(text); break;
      default:
        if (const auto config = vitprobe::find_preset(text)) config->validate();
        break;
    }
  });
  return 0;
}
