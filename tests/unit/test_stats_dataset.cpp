// The filelist: dataset of the analysis commands and the default compute dtype.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/errors.h"
#include "data/file_list_dataset.h"
#include "jobs/dataset_pass.h"
#include "model/vit_config.h"
#include "test_data_fixtures.h"

namespace vitprobe {
namespace {

using ScratchDir = test::TempDir;

void write_text(const std::string& file, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(file).parent_path());
  std::ofstream(file) << text;
}

// A 3x2 binary PPM whose pixels are all `value`.
void write_ppm(const std::string& file, uint8_t value) {
  std::filesystem::create_directories(std::filesystem::path(file).parent_path());
  std::ofstream out(file, std::ios::binary);
  out << "P6\n3 2\n255\n" << std::string(18, static_cast<char>(value));
}

TEST(stats, FileListLabelsFileGivesClassesInNumericOrder) {
  ScratchDir dir;
  for (int i = 0; i < 5; ++i) write_ppm(dir / ("img" + std::to_string(i) + ".ppm"), static_cast<uint8_t>(10 * i));
  write_text(dir / "labels.txt", "# file label name\nimg0.ppm 10 n0001 ten\nimg1.ppm 2 n0002\n\nimg2.ppm 10 n0001\n"
                                 "img3.ppm 7\nimg4.ppm 2 n0002\n");
  const auto dataset = open_analysis_dataset({"filelist:" + dir.path(), "val"});
  ASSERT_EQ(dataset->size(), 5);
  EXPECT_EQ(dataset->class_names(), (std::vector<std::string>{"2 n0002", "7", "10 n0001 ten"}));
  EXPECT_EQ(dataset->label(0), 2);
  EXPECT_EQ(dataset->label(1), 0);
  EXPECT_EQ(dataset->label(3), 1);
  EXPECT_EQ(dataset->format(), "filelist");
  EXPECT_EQ(dataset->item_name(2), dir / "img2.ppm");
  const auto image = dataset->load(4);
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.pixels[0], 40);
}

TEST(stats, FileListClassNamesFileAndLimit) {
  ScratchDir dir;
  std::string list;
  for (int i = 0; i < 6; ++i) {
    write_ppm(dir / ("photos/p" + std::to_string(i) + ".ppm"), 0);
    list += "photos/p" + std::to_string(i) + ".ppm " + std::to_string(i % 3) + "\n";
  }
  write_text(dir / "list.txt", list);
  write_text(dir / "names.txt", "zero\none\ntwo\n");
  const auto named = open_analysis_dataset({"filelist:" + (dir / "list.txt"), "val"}, dir / "names.txt");
  EXPECT_EQ(named->class_names(), (std::vector<std::string>{"zero", "one", "two"}));
  DatasetSpec limited{"filelist:" + (dir / "list.txt"), "val", 3, 1};
  const auto subset = open_analysis_dataset(limited);
  ASSERT_EQ(subset->size(), 3);
  std::set<int64_t> labels;
  for (int64_t i = 0; i < 3; ++i) labels.insert(subset->label(i));
  EXPECT_EQ(labels.size(), 3u);  // class-balanced
  write_text(dir / "short.txt", "zero\n");
  EXPECT_THROW(open_analysis_dataset({"filelist:" + (dir / "list.txt"), "val"}, dir / "short.txt"), BadInput);
}

TEST(stats, FileListFlatFolderWithoutLabelsIsOneClass) {
  ScratchDir dir;
  write_ppm(dir / "b.ppm", 1);
  write_ppm(dir / "a.ppm", 2);
  write_text(dir / "notes.md", "not an image");
  const auto dataset = open_analysis_dataset({"filelist:" + dir.path(), "val"});
  ASSERT_EQ(dataset->size(), 2);
  EXPECT_EQ(dataset->item_name(0), dir / "a.ppm");
  EXPECT_EQ(dataset->class_names(), std::vector<std::string>{"unlabelled"});
}

TEST(stats, FileListMalformedListsAreBadInput) {
  ScratchDir dir;
  write_text(dir / "mixed.txt", "a.ppm 1\nb.ppm\n");
  EXPECT_THROW(open_file_list(dir / "mixed.txt"), BadInput);
  write_text(dir / "empty.txt", "# nothing\n");
  EXPECT_THROW(open_file_list(dir / "empty.txt"), BadInput);
  EXPECT_THROW(open_file_list(dir / "missing.txt"), IoError);
  write_text(dir / "words.txt", "a.ppm cat\n");
  EXPECT_THROW(open_file_list(dir / "words.txt", dir / "words.txt"), BadInput);  // names need integer labels
  EXPECT_THROW(open_analysis_dataset({"imagefolder:" + dir.path(), "val"}, dir / "words.txt"), BadInput);
  EXPECT_THROW(open_analysis_dataset({"nonsense:x", "val"}), BadInput);
}

TEST(stats, FileListModelLabels) {
  EXPECT_EQ(model_labels({"a/mae.pth", "b/mae.pth", "dino.safetensors"}, {}),
            (std::vector<std::string>{"mae", "mae-2", "dino"}));
  EXPECT_EQ(model_labels({"x.pth"}, {"MAE"}), std::vector<std::string>{"MAE"});
  EXPECT_THROW(model_labels({"x.pth", "y.pth"}, {"one"}), BadInput);
  EXPECT_THROW(model_labels({"x.pth", "y.pth"}, {"same", "same"}), BadInput);
}

}  // namespace
}  // namespace vitprobe
