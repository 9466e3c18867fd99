#pragma once
// Files are written under a temporary name in the same folder and renamed into place once complete,
// so a failed or interrupted run never leaves a partial file under the final name.
#include <functional>
#include <ostream>
#include <string>

namespace vitprobe {

/// Writes `file` atomically: `write` fills a stream on a temporary file beside it, which is renamed to
/// `file` only when `write` returns and the stream is good. On any failure the temporary is removed.
void write_file_atomically(const std::string& file, const std::function<void(std::ostream&)>& write);

/// Creates `dir` (and parents) if missing; throws IoError naming it when that fails.
void ensure_directory(const std::string& dir);

}  // namespace vitprobe
