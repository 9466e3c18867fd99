#include "io/output_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/errors.h"
#include "io/atomic_file.h"

namespace vitprobe {

namespace fs = std::filesystem;

namespace {

// Whether the process `pid` is gone; a process of another user (EPERM) is alive.
bool process_is_gone(long pid) { return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

// The absolute path with every existing part's links resolved, so that "a/../b" and links compare equal.
fs::path resolved(const std::string& path) {
  std::error_code error;
  auto result = fs::weakly_canonical(fs::absolute(path, error), error);
  return error ? fs::absolute(path).lexically_normal() : result;
}

// Whether `path` is `folder` or lies under it (both resolved).
bool is_within(const fs::path& path, const fs::path& folder) {
  auto p = path.begin(), f = folder.begin();
  for (; f != folder.end(); ++f, ++p) {
    if (f->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *f) return false;
  }
  return true;
}

std::set<std::string> relative_entries(const fs::path& folder) {
  std::set<std::string> entries;
  std::error_code error;
  for (fs::recursive_directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    entries.insert(it->path().lexically_relative(folder).string());
  }
  return entries;
}

// Whether `path` is `prefix` or under it (relative paths, component-wise).
bool starts_with_path(const std::string& path, const std::string& prefix) {
  return path == prefix || (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0 &&
                            path[prefix.size()] == '/');
}

}  // namespace

bool is_temporary_name(const std::string& name, long& pid) {
  for (const char* marker : {".tmp.", ".tmp-"}) {  // ".tmp-": feature-cache rows of earlier versions
    const auto at = name.rfind(marker);
    if (at == std::string::npos || at == 0) continue;
    const auto digits = name.substr(at + 5);
    if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    pid = std::stol(digits);
    return true;
  }
  return false;
}

int remove_stale_temporaries(const std::string& folder, bool recursive, const std::string& only_for) {
  std::error_code error;
  if (!fs::is_directory(folder, error)) return 0;
  std::vector<fs::path> stale, subfolders;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    long pid = 0;
    const auto name = it->path().filename().string();
    if (!only_for.empty() && name.rfind(only_for + ".tmp.", 0) != 0) continue;
    if (is_temporary_name(name, pid)) {
      if (pid != ::getpid() && process_is_gone(pid)) stale.push_back(it->path());
    } else if (recursive && it->is_directory(error) && !it->is_symlink(error)) {
      subfolders.push_back(it->path());
    }
  }
  int removed = 0;
  for (const auto& path : stale) {
    std::error_code ignored;
    if (fs::remove_all(path, ignored) > 0) ++removed;
  }
  for (const auto& path : subfolders) removed += remove_stale_temporaries(path.string(), true);
  return removed;
}

namespace {

void check_not_inside(const std::string& out, const std::vector<std::string>& input_folders, const std::string& option) {
  const auto out_path = resolved(out);
  for (const auto& input : input_folders) {
    if (input.empty()) continue;
    if (is_within(out_path, resolved(input))) {
      throw BadInput(option + " " + out + ": is inside the input folder " + input +
                     " (a run would write into what it reads; choose a folder outside it)");
    }
  }
}

}  // namespace

void check_output_location(const std::string& out, const std::vector<std::string>& input_folders,
                           const std::string& option) {
  std::error_code error;
  const auto status = fs::status(out, error);
  if (fs::exists(status) && !fs::is_directory(status)) {
    throw BadInput(option + " " + out + ": exists and is not a folder (" +
                   (fs::is_regular_file(status) ? "a regular file" : "a special file") + ")");
  }
  check_not_inside(out, input_folders, option);
}

void check_output_file(const std::string& out, const std::vector<std::string>& input_folders,
                       const std::string& option) {
  std::error_code error;
  if (fs::is_directory(out, error)) throw BadInput(option + " " + out + ": is a folder, not a file to write");
  check_not_inside(out, input_folders, option);
}

OutputLock::OutputLock(const std::string& target) : file_(target + ".lock") {
  const auto parent = fs::path(file_).parent_path();
  if (!parent.empty()) ensure_directory(parent.string());
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError(file_ + ": cannot create the lock file (" + std::strerror(errno) + ")");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char text[32] = {};
      const auto n = ::pread(fd, text, sizeof text - 1, 0);
      ::close(fd);
      const std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : "unknown";
      throw IoError(target + ": is being written by pid " + holder.substr(0, holder.find('\n')) + " (lock " + file_ + ")");
    }
    // The previous holder may have removed the file between our open and flock: lock the file now at the path.
    struct stat held {}, current {};
    if (::fstat(fd, &held) == 0 && ::stat(file_.c_str(), &current) == 0 && held.st_ino == current.st_ino &&
        held.st_dev == current.st_dev) {
      const std::string pid = std::to_string(::getpid()) + "\n";
      if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
        ::close(fd);
        throw IoError(file_ + ": cannot write the lock file");
      }
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  throw IoError(file_ + ": cannot take the lock (the file keeps changing)");
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(file_.c_str());  // before unlocking: a waiting opener then sees another inode and retries
  ::close(fd_);
}

OutputFolder::OutputFolder(const std::string& out, const std::vector<std::string>& input_folders, Mode mode)
    : final_((check_output_location(out, input_folders), out)), lock_(out) {
  const auto parent = fs::path(out).parent_path();
  // Beside --out (a folder the user shares with other files) only this output's own staging folders.
  remove_stale_temporaries(parent.empty() ? "." : parent.string(), false, fs::path(out).filename().string());
  remove_stale_temporaries(out, true);
  std::error_code error;
  const bool has_content = fs::is_directory(out, error) && !fs::is_empty(out, error);
  if (mode == Mode::Staged && !has_content) {
    staged_ = true;
    path_ = out + ".tmp." + std::to_string(::getpid());
    fs::remove_all(path_, error);
    ensure_directory(path_);
  } else {
    path_ = out;
    ensure_directory(out);
    before_ = relative_entries(out);
  }
}

OutputFolder::~OutputFolder() {
  if (!committed_) roll_back();
}

void OutputFolder::commit() {
  if (committed_) return;
  if (staged_) {
    std::error_code error;
    if (fs::is_directory(final_, error) && fs::is_empty(final_, error)) fs::remove(final_, error);
    fs::rename(path_, final_, error);
    if (error) throw IoError(final_ + ": cannot move the finished output into place: " + error.message());
  }
  committed_ = true;
}

void OutputFolder::roll_back() noexcept {
  std::error_code ignored;
  if (staged_) {
    fs::remove_all(path_, ignored);
    return;
  }
  for (const auto& entry : relative_entries(final_)) {  // sorted: a folder comes before its contents
    if (before_.count(entry)) continue;
    if (fs::symlink_status(fs::path(final_) / entry, ignored).type() == fs::file_type::not_found) continue;
    const bool kept = std::any_of(kept_.begin(), kept_.end(), [&](const std::string& keep) {
      return starts_with_path(entry, keep) || starts_with_path(keep, entry);
    });
    if (kept) continue;
    fs::remove_all(fs::path(final_) / entry, ignored);
  }
}

}  // namespace vitprobe
