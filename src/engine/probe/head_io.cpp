#include "probe/head_io.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "checkpoint/safetensors.h"
#include "common/errors.h"
#include "io/atomic_file.h"

namespace vitprobe {

namespace fs = std::filesystem;

std::string head_folder_name(const std::string& head_name) {
  std::string name = head_name;
  for (char& c : name) {
    if (c == ':' || c == ',' || c == '/') c = '_';
  }
  return name;
}

nlohmann::json layout_to_json(const TokenLayout& layout) {
  return {{"embed_dim", layout.embed_dim},
          {"num_prefix_tokens", layout.num_prefix_tokens},
          {"class_token", layout.class_token},
          {"grid_size", layout.grid_size},
          {"num_encoder_heads", layout.num_encoder_heads}};
}

TokenLayout layout_from_json(const nlohmann::json& json, const std::string& source) {
  try {
    TokenLayout layout;
    layout.embed_dim = json.at("embed_dim");
    layout.num_prefix_tokens = json.at("num_prefix_tokens");
    layout.class_token = json.at("class_token");
    layout.grid_size = json.at("grid_size");
    layout.num_encoder_heads = json.at("num_encoder_heads");
    return layout;
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(source + ": bad layout (" + e.what() + ")");
  }
}

nlohmann::json spec_options_json(const HeadSpec& spec) {
  switch (spec.kind) {
    case HeadKind::Center:
    case HeadKind::CenterAttention: return {{"size", spec.size}};
    case HeadKind::EfficientProbing: return {{"num_queries", spec.size}, {"d_out", spec.d_out}, {"content", spec.content}};
    case HeadKind::Aim: return {{"heads", spec.heads}};
    case HeadKind::VJepa: return {{"heads", spec.heads}, {"depth", spec.depth}, {"proj", spec.proj}};
    case HeadKind::Abmilp:
      return {{"depth", spec.depth}, {"act", spec.act}, {"sa", spec.sa}, {"cond", spec.cond}, {"content", spec.content}};
    case HeadKind::Knn: return {{"feature", spec.knn_feature}};
    default: return nlohmann::json::object();
  }
}

void save_head(const std::string& folder, const std::vector<NamedTensor>& state, const nlohmann::json& config) {
  ensure_directory(folder);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, tensor] : state) tensors.emplace_back(name, tensor.detach().to(at::kCPU, at::kFloat).contiguous());
  write_safetensors((fs::path(folder) / "head.safetensors").string(), tensors, {{"vitprobe_head_config", config.dump()}});
  write_file_atomically((fs::path(folder) / "config.json").string(), [&](std::ostream& out) { out << config.dump(2) << "\n"; });
}

LoadedHead load_head(const std::string& folder, const at::Device& device) {
  LoadedHead loaded;
  loaded.folder = folder;
  const auto config_file = (fs::path(folder) / "config.json").string();
  std::ifstream in(config_file);
  if (!in) throw IoError(config_file + ": cannot open");
  try {
    loaded.config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(config_file + ": not valid JSON (" + e.what() + ")");
  }
  if (loaded.config.value("format", "") != "vitprobe-head") throw BadInput(config_file + ": not a vitprobe head config");
  HeadSpec spec;
  TokenLayout layout;
  int64_t num_classes = 0;
  try {
    spec = parse_head_spec(loaded.config.at("head").get<std::string>());
    layout = layout_from_json(loaded.config.at("layout"), config_file);
    num_classes = loaded.config.at("num_classes");
  } catch (const nlohmann::json::exception& e) {
    throw BadInput(config_file + ": " + e.what());
  } catch (const BadInput& e) {
    throw BadInput(config_file + ": " + e.what());
  }
  loaded.head = std::make_unique<ProbeHead>(spec, layout, num_classes, 0, device);
  const auto weights_file = (fs::path(folder) / "head.safetensors").string();
  const auto raw = read_safetensors(weights_file);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& entry : raw.entries) {
    if (entry.tensor.defined()) tensors[join_path(entry.path)] = entry.tensor;
  }
  loaded.head->load_state(tensors, weights_file);
  return loaded;
}

std::vector<std::string> find_head_folders(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw BadInput(dir + ": not a folder");
  if (fs::exists(root / "config.json") && fs::exists(root / "head.safetensors")) return {root.string()};
  std::vector<std::string> folders;
  for (const auto& parent : {root / "heads", root}) {
    if (!fs::is_directory(parent)) continue;
    for (const auto& entry : fs::directory_iterator(parent)) {
      if (entry.is_directory() && fs::exists(entry.path() / "config.json") && fs::exists(entry.path() / "head.safetensors")) {
        folders.push_back(entry.path().string());
      }
    }
  }
  std::sort(folders.begin(), folders.end());
  if (folders.empty()) throw BadInput(dir + ": no saved heads (expected DIR/heads/<head>/config.json and head.safetensors)");
  return folders;
}

}  // namespace vitprobe
