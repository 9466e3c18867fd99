#pragma once
// The resume state of one seed's probe run: written after every epoch, read by --resume.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

#include "probe/trainer.h"

namespace vitprobe {

/// The resume state of one seed's folder: DIR/resume/state.json naming DIR/resume/state-<epoch>.safetensors.
struct ResumeFiles {
  std::filesystem::path folder, json;
  explicit ResumeFiles(const std::string& dir)
      : folder(std::filesystem::path(dir) / "resume"), json(folder / "state.json") {}
};

/// Writes the trainer's state after `completed_epochs` epochs (the tensors, then state.json with the tensors
/// file's SHA-256, each atomically) and removes older tensor files.
void save_resume_state(const ResumeFiles& files, const ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                       int64_t completed_epochs, const nlohmann::json& timing);

/// Restores the trainer; returns the number of completed epochs (0 when there is no state). Nothing is
/// trusted: throws BadInput naming the file when the state was written with another `fingerprint`, when the
/// tensors file's SHA-256 differs from the one state.json records, when the completed epochs are outside
/// 0..`epochs`, when a tensor holds NaN or inf, or when a key of the 'trainer' object is missing.
int64_t load_resume_state(const ResumeFiles& files, ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                          int64_t epochs, nlohmann::json& timing);

}  // namespace vitprobe
