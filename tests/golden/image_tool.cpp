// Helper for tests/golden/image_parity.py: preprocesses one image with load_image_tensor and saves the
// (3, H, W) result as .npy, so the Python side can compare it with torchvision.
//
//   image_tool IN OUT.npy RESIZE CROP INTERPOLATION MEAN_R,G,B STD_R,G,B
//   image_tool --batch    (the same seven fields per line on stdin, tab-separated: one process for all cases)
#include <array>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

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

void run_case(const std::vector<std::string>& fields) {
  vitprobe::PreprocessOptions options;
  options.resize = std::stoi(fields[2]);
  options.crop = std::stoi(fields[3]);
  options.interpolation = vitprobe::parse_interpolation(fields[4]);
  options.mean = parse_triple(fields[5]);
  options.std = parse_triple(fields[6]);
  vitprobe::write_npy(fields[1], vitprobe::load_image_tensor(fields[0], options));
}

int main(int argc, char** argv) {
  const bool batch = argc == 2 && std::string(argv[1]) == "--batch";
  if (argc != 8 && !batch) {
    std::cerr << "usage: " << argv[0] << " IN OUT.npy RESIZE CROP INTERPOLATION MEAN_R,G,B STD_R,G,B | --batch\n";
    return vitprobe::kExitBadInput;
  }
  try {
    if (!batch) {
      run_case(std::vector<std::string>(argv + 1, argv + 8));
      return 0;
    }
    for (std::string line; std::getline(std::cin, line);) {
      std::vector<std::string> fields;
      std::istringstream in(line);
      for (std::string field; std::getline(in, field, '\t');) fields.push_back(field);
      if (fields.size() != 7) throw vitprobe::BadInput("batch line needs 7 tab-separated fields: " + line);
      run_case(fields);
    }
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
