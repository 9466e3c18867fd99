#include "jobs/probe_resume.h"

#include <ATen/ATen.h>

#include <fstream>
#include <map>
#include <utility>
#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.h"
#include "common/errors.h"
#include "io/atomic_file.h"
#include "probe/file_hash.h"

namespace vitprobe {

namespace fs = std::filesystem;

void save_resume_state(const ResumeFiles& files, const ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                       int64_t completed_epochs, const nlohmann::json& timing) {
  ensure_directory(files.folder.string());
  const auto tensors_name = "state-" + std::to_string(completed_epochs) + ".safetensors";
  auto tensors = trainer.checkpoint_tensors();
  write_safetensors((files.folder / tensors_name).string(), tensors, {});
  const nlohmann::json state = {{"fingerprint", fingerprint}, {"completed_epochs", completed_epochs},
                                {"tensors", tensors_name},
                                {"checksums", {{tensors_name, sha256_file((files.folder / tensors_name).string())}}},
                                {"trainer", trainer.checkpoint_metadata()}, {"timing", timing}};
  write_file_atomically(files.json.string(), [&](std::ostream& out) { out << state.dump(1) << "\n"; });
  for (const auto& entry : fs::directory_iterator(files.folder)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("state-", 0) == 0 && name != tensors_name) fs::remove(entry.path());
  }
}

int64_t load_resume_state(const ResumeFiles& files, ProbeTrainer& trainer, const nlohmann::json& fingerprint,
                          int64_t epochs, nlohmann::json& timing) {
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
      {"trainer", nlohmann::json::value_t::object}, {"completed_epochs", nlohmann::json::value_t::number_integer},
      {"checksums", nlohmann::json::value_t::object}};
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
    for (const char* key : {"select_on", "head_init"}) {
      if (!state["fingerprint"].contains(key)) {
        throw BadInput(files.json.string() + ": resume state written by an older vitprobe (before held-out selection); "
                       "rerun without --resume");
      }
    }
    std::string differing;
    for (const auto& [key, value] : fingerprint.items()) {
      if (!state["fingerprint"].contains(key) || state["fingerprint"][key] != value) differing += (differing.empty() ? "" : ", ") + key;
    }
    throw BadInput(files.json.string() + ": --resume with other options than the interrupted run (" + differing + ")");
  }
  const auto json_file = files.json.string();
  const int64_t completed = state.at("completed_epochs").get<int64_t>();
  if (completed < 0 || completed > epochs) {
    throw BadInput(json_file + ": resume state claims " + std::to_string(completed) + " completed epochs, outside 0.." +
                   std::to_string(epochs));
  }
  // The tensors file must be the one state.json was written with (a name in this folder, its SHA-256).
  const auto tensors_name = state.at("tensors").get<std::string>();
  if (tensors_name.empty() || fs::path(tensors_name).filename().string() != tensors_name) {
    throw BadInput(json_file + ": resume state names tensors file '" + tensors_name + "' outside its folder");
  }
  const auto tensors_file = (files.folder / tensors_name).string();
  const auto& checksums = state.at("checksums");
  if (!checksums.contains(tensors_name) || !checksums.at(tensors_name).is_string()) {
    throw BadInput(json_file + ": resume state has no checksum for " + tensors_name);
  }
  if (sha256_file(tensors_file) != checksums.at(tensors_name).get<std::string>()) {
    throw BadInput(tensors_file + ": checksum differs from the one in state.json (changed or damaged since written)");
  }
  const auto raw = read_safetensors(tensors_file);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : raw.entries) {
    if (!entry.tensor.defined()) continue;
    const auto name = join_path(entry.path);
    if (entry.tensor.is_floating_point() && !at::isfinite(entry.tensor).all().item<bool>()) {
      throw BadInput(tensors_file + ": tensor '" + name + "' holds non-finite values (NaN or inf)");
    }
    tensors[name] = entry.tensor;
  }
  try {
    trainer.restore(tensors, state.at("trainer"), tensors_file);
  } catch (const nlohmann::json::exception& e) {
    // "[json.exception.out_of_range.403] key 'runs' not found" -> "key 'runs' not found"
    const std::string what = e.what();
    const auto text = what.find("] ") == std::string::npos ? what : what.substr(what.find("] ") + 2);
    throw BadInput(json_file + ": resume state's 'trainer' object is incomplete (" + text + ")");
  }
  timing = state.value("timing", nlohmann::json::object());
  return completed;
}

}  // namespace vitprobe
