#pragma once
// Opening input files safely: only regular files are read (a device such as /dev/zero, a FIFO or a folder
// would read forever, block, or fail with a library message), and whole-file reads are bounded.
#include <cstdint>
#include <string>
#include <vector>

namespace vitprobe {

/// The size of `file` in bytes; throws IoError "<file>: cannot open (...)" unless it is (a link to) a regular
/// file, naming what it is instead: missing, a folder, a character or block device, a FIFO, a socket.
uint64_t require_regular_file(const std::string& file);

/// require_regular_file, and BadInput naming `what` and the limit when the file is larger than `max_bytes`.
uint64_t require_regular_file(const std::string& file, uint64_t max_bytes, const std::string& what);

/// The whole of regular file `file`; IoError when it cannot be read, BadInput when it is larger than
/// `max_bytes` (the message names `what` and the limit).
std::vector<uint8_t> read_regular_file(const std::string& file, uint64_t max_bytes, const std::string& what);

}  // namespace vitprobe
