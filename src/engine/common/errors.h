#pragma once
// Error kinds of the engine. Messages name the file or value that is wrong; the CLI catches them once
// in main and turns each kind into an exit code and one line on stderr.
#include <stdexcept>
#include <string>

namespace vitprobe {

/// Input that cannot be used as given: a malformed file, a wrong shape, an unknown option value.
struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A file or folder that cannot be opened, read or written.
struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Exit codes used by the CLI for each error kind.
constexpr int kExitBadInput = 2;
constexpr int kExitIoError = 3;
constexpr int kExitInternal = 4;

}  // namespace vitprobe
