#include "io/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/errors.h"

namespace vitprobe {

void write_file_atomically(const std::string& file, const std::function<void(std::ostream&)>& write) {
  const std::string temporary = file + ".tmp." + std::to_string(::getpid());
  try {
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      if (!out) throw IoError(file + ": cannot open for writing");
      write(out);
      out.flush();
      if (!out) throw IoError(file + ": write failed (disk full?)");
    }
    std::error_code error;
    std::filesystem::rename(temporary, file, error);
    if (error) throw IoError(file + ": cannot rename temporary file: " + error.message());
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
}

void ensure_directory(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error || !std::filesystem::is_directory(dir)) {
    throw IoError(dir + ": cannot create directory" + (error ? ": " + error.message() : std::string()));
  }
}

}  // namespace vitprobe
