#pragma once
// The `filelist:PATH` dataset of the analysis commands (attn-stats, embed): a few labelled photos that do not
// sit in an imagefolder tree, such as ../shared/data/imagenet-sample. PATH is
//   - a text file with one item per line, `IMAGE [LABEL [NAME ...]]` (IMAGE relative to the file's folder,
//     blank lines and lines starting with '#' skipped), e.g. imagenet-sample/labels.txt
//     (`n01514668_10054.JPEG 7 n01514668`);
//   - a folder holding such a labels.txt;
//   - a folder without one: every image file in it (sorted by name), all in one class "unlabelled".
// Classes are the distinct LABEL values, sorted numerically when all are integers (else by text); a class is
// named "LABEL NAME" from its first line, or from a class-names file (line LABEL) when one is given.
#include <memory>
#include <string>

#include "data/dataset.h"

namespace vitprobe {

/// Spec prefix of the file-list dataset.
constexpr const char* kFileListPrefix = "filelist:";

/// Opens `path` as described above; throws IoError for a missing path and BadInput naming the file and
/// line for a malformed list, mixed labelled and unlabelled lines, or a label outside the class-names file.
std::unique_ptr<Dataset> open_file_list(const std::string& path, const std::string& class_names_file = "");

/// open_dataset, plus the `filelist:PATH` kind; --limit (class-balanced, seeded) applies to both, --split
/// to the formats that have splits.
std::unique_ptr<Dataset> open_analysis_dataset(const DatasetSpec& spec, const std::string& class_names_file = "");

/// Text for --data help: every format open_analysis_dataset accepts.
std::string analysis_dataset_help();

}  // namespace vitprobe
