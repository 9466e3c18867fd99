// Helper for tests/golden/image_parity.py: preprocesses one image with load_image_tensor and saves the
// (3, H, W) result as .npy, so the Python side can compare it with torchvision.
//
//   image_tool IN OUT.npy RESIZE CROP INTERPOLATION MEAN_R,G,B STD_R,G,B
#include <array>
#include <iostream>
#include <sstream>
#include <string>

#include "common/errors.h"
#include "image/transforms.h"
#include "io/npy.h"

namespace {

std::array<float, 3> parse_triple(const std::string& text) {
  std::array<float, 3> values{};
  std::istringstream in(text);
  char comma = 0;
  if (!(in >> values[0] >> comma >> values[1] >> comma >> values[2]) || !in.eof()) {
    throw vitprobe::BadInput("expected three comma-separated numbers, got '" + text + "'");
  }
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: " << argv[0] << " IN OUT.npy RESIZE CROP INTERPOLATION MEAN_R,G,B STD_R,G,B\n";
    return vitprobe::kExitBadInput;
  }
  try {
    vitprobe::PreprocessOptions options;
    options.resize = std::stoi(argv[3]);
    options.crop = std::stoi(argv[4]);
    options.interpolation = vitprobe::parse_interpolation(argv[5]);
    options.mean = parse_triple(argv[6]);
    options.std = parse_triple(argv[7]);
    vitprobe::write_npy(argv[2], vitprobe::load_image_tensor(argv[1], options));
  } catch (const vitprobe::BadInput& error) {
    std::cerr << "error: " << error.what() << "\n";
    return vitprobe::kExitBadInput;
  } catch (const vitprobe::IoError& error) {
    std::cerr << "error: " << error.what() << "\n";
    return vitprobe::kExitIoError;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return vitprobe::kExitInternal;
  }
  return 0;
}
