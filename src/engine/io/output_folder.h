#pragma once
// The --out folder of a command, written all-or-nothing (issue 18): checked before any work (not a file, not
// inside an input folder), locked while a run writes it, staged in a temporary folder beside it and renamed
// into place at the end, or, when it already holds what a run must extend (probe resume states), written in
// place with everything the run added removed again if it fails. Temporaries of killed runs are cleaned.
#include <set>
#include <string>
#include <vector>

namespace vitprobe {

/// Whether `name` is a temporary of this program: "<anything>.tmp.<pid>" or "<anything>.tmp-<pid>"; sets `pid`.
bool is_temporary_name(const std::string& name, long& pid);

/// Removes the temporaries (files or folders, see is_temporary_name) in `folder` and, when `recursive`, in
/// its sub-folders, whose process is gone (kill(pid, 0) fails with ESRCH); never those of a live process.
/// Returns how many were removed; a missing folder is no error. With `only_for` set, only the temporaries of
/// that one name (`<only_for>.tmp.<pid>`) are touched: what a folder shared with the user's other files needs.
int remove_stale_temporaries(const std::string& folder, bool recursive, const std::string& only_for = "");

/// Throws BadInput (one line naming both paths) when `out` is an existing non-folder, or equal to or inside
/// one of `input_folders` (empty entries are skipped); `option` names the flag in the message ("--out").
void check_output_location(const std::string& out, const std::vector<std::string>& input_folders,
                           const std::string& option = "--out");

/// The same checks for an output file (pretrain's --out): BadInput when `out` is an existing folder or lies
/// inside one of `input_folders`.
void check_output_file(const std::string& out, const std::vector<std::string>& input_folders,
                       const std::string& option = "--out");

/// An exclusive lock on `target` while a run writes it: the file "<target>.lock" beside it holds the pid.
/// flock() makes a lock of a dead process free to take; a live holder gives IoError "<target>: is being
/// written by pid N". Released (and the lock file removed) on destruction.
class OutputLock {
 public:
  explicit OutputLock(const std::string& target);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string file_;
  int fd_ = -1;
};

/// One command's output folder. Construct it before any work; write under path(); call commit() when every
/// file is written. Destroyed without commit() (an exception), it leaves the folder as it was before the run.
class OutputFolder {
 public:
  enum class Mode {
    Staged,   // write into "<out>.tmp.<pid>", rename onto <out> at commit (in place when <out> has content)
    InPlace,  // write into <out>; on failure remove what the run added (except keep_on_failure paths)
  };
  OutputFolder(const std::string& out, const std::vector<std::string>& input_folders, Mode mode = Mode::Staged);
  ~OutputFolder();
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;

  /// The folder to write into now: the staging folder, or the final one when written in place.
  const std::string& path() const { return path_; }
  /// The final folder (--out).
  const std::string& final_path() const { return final_; }
  /// A path relative to the folder that a failed in-place run keeps (a resume state, for --resume).
  void keep_on_failure(const std::string& relative) { kept_.insert(relative); }
  /// Moves the staged folder into place; throws IoError when that fails (the staged files are removed).
  void commit();

 private:
  void roll_back() noexcept;

  std::string final_, path_;
  bool staged_ = false, committed_ = false;
  std::set<std::string> before_;  // relative paths present before an in-place run
  std::set<std::string> kept_;
  OutputLock lock_;
};

}  // namespace vitprobe
