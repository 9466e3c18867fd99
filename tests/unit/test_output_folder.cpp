// Unit tests of io/output_folder (issue 18): all-or-nothing output folders, their lock, the --out checks,
// and the removal of temporaries left by killed runs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/errors.h"
#include "io/output_folder.h"

namespace vitprobe {
namespace {

namespace fs = std::filesystem;

void touch(const fs::path& file) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << "x";
}

// The pid of a child that has exited and been reaped: no process has it (until the pid is reused).
long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

class OutputFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("vitprobe_output_folder_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(OutputFolderTest, TemporaryNames) {
  long pid = 0;
  EXPECT_TRUE(is_temporary_name("tokens.npy.tmp.1234", pid));
  EXPECT_EQ(pid, 1234);
  EXPECT_TRUE(is_temporary_name("cls.bf16.tmp-77", pid));
  EXPECT_EQ(pid, 77);
  EXPECT_FALSE(is_temporary_name("tokens.npy", pid));
  EXPECT_FALSE(is_temporary_name("notes.tmp.txt", pid));
  EXPECT_FALSE(is_temporary_name(".tmp.12", pid));
}

TEST_F(OutputFolderTest, StaleTemporariesOfDeadProcessesOnly) {
  const long gone = dead_pid();
  touch(root_ / ("a.npy.tmp." + std::to_string(gone)));
  touch(root_ / ("out.tmp." + std::to_string(gone)) / "tokens.npy");
  touch(root_ / "sub" / ("b.bf16.tmp-" + std::to_string(gone)));
  touch(root_ / ("live.npy.tmp." + std::to_string(::getpid())));
  touch(root_ / ("parent.npy.tmp." + std::to_string(::getppid())));
  touch(root_ / "kept.npy");
  EXPECT_EQ(remove_stale_temporaries(root_.string(), false), 2);
  EXPECT_TRUE(fs::exists(root_ / "sub" / ("b.bf16.tmp-" + std::to_string(gone))));
  EXPECT_EQ(remove_stale_temporaries(root_.string(), true), 1);
  EXPECT_TRUE(fs::exists(root_ / ("live.npy.tmp." + std::to_string(::getpid()))));
  EXPECT_TRUE(fs::exists(root_ / ("parent.npy.tmp." + std::to_string(::getppid()))));
  EXPECT_TRUE(fs::exists(root_ / "kept.npy"));
}

TEST_F(OutputFolderTest, OutMustBeAFolderOutsideTheInputs) {
  touch(root_ / "file.txt");
  EXPECT_THROW(check_output_location((root_ / "file.txt").string(), {}), BadInput);
  fs::create_directories(root_ / "data" / "train");
  EXPECT_THROW(check_output_location((root_ / "data").string(), {(root_ / "data").string()}), BadInput);
  EXPECT_THROW(check_output_location((root_ / "data" / "train" / "heads").string(), {(root_ / "data/").string()}),
               BadInput);
  EXPECT_THROW(check_output_location((root_ / "x" / ".." / "data" / "y").string(), {(root_ / "data").string()}),
               BadInput);
  EXPECT_NO_THROW(check_output_location((root_ / "data-out").string(), {(root_ / "data").string(), ""}));
  try {
    check_output_location((root_ / "data" / "o").string(), {(root_ / "data").string()});
  } catch (const BadInput& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((root_ / "data" / "o").string()), std::string::npos) << message;
    EXPECT_NE(message.find("inside the input folder " + (root_ / "data").string()), std::string::npos) << message;
  }
  EXPECT_THROW(check_output_file((root_ / "data").string(), {}), BadInput);
}

TEST_F(OutputFolderTest, LockRefusesASecondWriterAndIsReleased) {
  const auto out = (root_ / "out").string();
  {
    OutputLock first(out);
    try {
      OutputLock second(out);
      FAIL() << "a second lock was granted";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("is being written by pid " + std::to_string(::getpid())), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(out + ".lock"));
  std::ofstream(out + ".lock") << dead_pid() << "\n";  // left by a killed run, no flock held
  EXPECT_NO_THROW(OutputLock taken_over(out));
}

TEST_F(OutputFolderTest, StagedFolderAppearsOnlyAtCommit) {
  const auto out = root_ / "out";
  {
    OutputFolder output(out.string(), {});
    EXPECT_NE(output.path(), out.string());
    touch(fs::path(output.path()) / "tokens.npy");
    EXPECT_FALSE(fs::exists(out));
    output.commit();
  }
  EXPECT_TRUE(fs::exists(out / "tokens.npy"));
  EXPECT_EQ(std::distance(fs::directory_iterator(root_), fs::directory_iterator()), 1);  // no temporary, no lock
}

TEST_F(OutputFolderTest, FailedRunLeavesNothing) {
  const auto out = root_ / "out";
  try {
    OutputFolder output(out.string(), {});
    touch(fs::path(output.path()) / "tokens.npy");
    throw IoError("the last write failed");
  } catch (const IoError&) {
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(root_));
}

TEST_F(OutputFolderTest, FailedInPlaceRunRemovesOnlyWhatItAdded) {
  const auto out = root_ / "out";
  touch(out / "results.json");
  touch(out / "heads" / "cls" / "head.safetensors");
  try {
    OutputFolder output(out.string(), {}, OutputFolder::Mode::InPlace);
    output.keep_on_failure("seed-1/resume");
    EXPECT_EQ(output.path(), out.string());
    touch(out / "heads" / "mean" / "head.safetensors");
    touch(out / "heads-extra" / "x");
    touch(out / "seed-1" / "resume" / "state.json");
    touch(out / "seed-1" / "results.json");
    throw IoError("failed");
  } catch (const IoError&) {
  }
  EXPECT_TRUE(fs::exists(out / "results.json"));
  EXPECT_TRUE(fs::exists(out / "heads" / "cls" / "head.safetensors"));
  EXPECT_FALSE(fs::exists(out / "heads" / "mean"));
  EXPECT_FALSE(fs::exists(out / "heads-extra"));
  EXPECT_TRUE(fs::exists(out / "seed-1" / "resume" / "state.json"));
  EXPECT_FALSE(fs::exists(out / "seed-1" / "results.json"));
}

}  // namespace
}  // namespace vitprobe
