#include "jobs/probe_resume.h"

#include <ATen/ATen.h>

#include <fstream>
#include <map>
#include <utility>
#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "common/errors.h"
#include "io/atomic_file.h"

namespace vitprobe {

namespace fs = std::filesystem;

void save_resume_state(const ResumeFiles& files, const ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                       int64_t completed_epochs, const nlohmann::json& timing) {
  ensure_directory(files.folder.string());
  const auto tensors_name = "state-" + std::to_string(completed_epochs) + ".safetensors";
  auto tensors = trainer.checkpoint_tensors();
  write_safetensors((files.folder / tensors_name).string(), tensors, {});
  const nlohmann::json state = {{"fingerprint", fingerprint}, {"completed_epochs", completed_epochs},
                                {"tensors", tensors_name}, {"trainer", trainer.checkpoint_metadata()}, {"timing", timing}};
  write_file_atomically(files.json.string(), [&](std::ostream& out) { out << state.dump(1) << "\n"; });
  for (const auto& entry : fs::directory_iterator(files.folder)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("state-", 0) == 0 && name != tensors_name) fs::remove(entry.path());
  }
}

int64_t load_resume_state(const ResumeFiles& files, ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                          nlohmann::json& timing) {
  std::ifstream in(files.json);
  if (!in) return 0;
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(files.json.string() + ": not valid JSON (" + e.what() + ")");
  }
  // Name a missing or mistyped field and the file, not nlohmann's "[json.exception.out_of_range.403]".
  const std::pair<const char*, nlohmann::json::value_t> fields[] = {
      {"fingerprint", nlohmann::json::value_t::object}, {"tensors", nlohmann::json::value_t::string},
      {"trainer", nlohmann::json::value_t::object}, {"completed_epochs", nlohmann::json::value_t::number_integer}};
  if (!state.is_object()) throw BadInput(files.json.string() + ": not a probe resume state (not a JSON object)");
  for (const auto& [key, type] : fields) {
    if (!state.contains(key)) throw BadInput(files.json.string() + ": resume state has no '" + key + "'");
    const auto actual = state[key].type();
    const bool integer = actual == nlohmann::json::value_t::number_integer || actual == nlohmann::json::value_t::number_unsigned;
    if (type == nlohmann::json::value_t::number_integer ? !integer : actual != type) {
      throw BadInput(files.json.string() + ": resume state '" + key + "' is a " + state[key].type_name());
    }
  }
  if (state.at("fingerprint") != fingerprint) {
    std::string differing;
    for (const auto& [key, value] : fingerprint.items()) {
      if (!state["fingerprint"].contains(key) || state["fingerprint"][key] != value) differing += (differing.empty() ? "" : ", ") + key;
    }
    throw BadInput(files.json.string() + ": --resume with other options than the interrupted run (" + differing + ")");
  }
  const auto tensors_file = (files.folder / state.at("tensors").get<std::string>()).string();
  const auto raw = read_safetensors(tensors_file);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : raw.entries) {
    if (entry.tensor.defined()) tensors[join_path(entry.path)] = entry.tensor;
  }
  trainer.restore(tensors, state.at("trainer"), tensors_file);
  timing = state.value("timing", nlohmann::json::object());
  return state.at("completed_epochs");
}

}  // namespace vitprobe
