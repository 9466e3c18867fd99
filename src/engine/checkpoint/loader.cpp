#include "checkpoint/loader.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "checkpoint/checkpoint_file.h"
#include "common/errors.h"
#include "model/pos_embed.h"

namespace vitprobe {
namespace {

// Containers official code saves an encoder under, most preferred first (DINO's teacher over its student,
// I-JEPA's target encoder over its online encoder).
const std::vector<std::string> kContainerPreference = {"model", "state_dict", "teacher", "target_encoder",
                                                      "model_ema", "encoder", "student", "net", "network"};
// Keys that end the path of a patch embedding: they mark where an encoder sits in a checkpoint.
const std::vector<std::string> kPatchSentinels = {"patch_embed.proj.weight", "conv_proj.weight"};

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

// Where the encoder sits: the container path (all but the last path element) and the key prefix.
struct EncoderLocation {
  std::vector<std::string> container;
  std::string prefix;
};

int container_rank(const std::vector<std::string>& container) {
  if (container.empty()) return -1;
  const auto found = std::find(kContainerPreference.begin(), kContainerPreference.end(), container.front());
  return found == kContainerPreference.end() ? static_cast<int>(kContainerPreference.size())
                                             : static_cast<int>(found - kContainerPreference.begin());
}

int prefix_rank(const std::string& prefix) {
  if (prefix.find("base_encoder") != std::string::npos) return 0;  // MoCo v3: not the momentum encoder
  if (prefix.find("teacher") != std::string::npos) return 1;
  if (prefix.find("target") != std::string::npos) return 2;
  return 3;
}

EncoderLocation locate_encoder(const RawCheckpoint& raw) {
  std::vector<EncoderLocation> candidates;
  for (const auto& entry : raw.entries) {
    if (!entry.tensor.defined() || entry.path.empty()) continue;
    const std::string& key = entry.path.back();
    for (const auto& sentinel : kPatchSentinels) {
      if (key == sentinel || ends_with(key, "." + sentinel)) {
        candidates.push_back({{entry.path.begin(), entry.path.end() - 1}, key.substr(0, key.size() - sentinel.size())});
      }
    }
  }
  if (candidates.empty()) {
    throw BadInput(raw.file + ": no ViT encoder found (no key ending in patch_embed.proj.weight or conv_proj.weight)");
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    const int rank_a = container_rank(a.container), rank_b = container_rank(b.container);
    if (rank_a != rank_b) return rank_a < rank_b;
    if (prefix_rank(a.prefix) != prefix_rank(b.prefix)) return prefix_rank(a.prefix) < prefix_rank(b.prefix);
    return a.prefix.size() < b.prefix.size();
  });
  return candidates.front();
}

bool path_starts_with(const std::vector<std::string>& path, const std::vector<std::string>& container) {
  return path.size() > container.size() && std::equal(container.begin(), container.end(), path.begin());
}

std::string join_from(const std::vector<std::string>& path, size_t start) {
  std::string joined;
  for (size_t i = start; i < path.size(); ++i) joined += (joined.empty() ? "" : ".") + path[i];
  return joined;
}

int perfect_square_root(int64_t value) {
  const auto root = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(value))));
  return root * root == value ? static_cast<int>(root) : -1;
}

int metadata_int(const std::map<std::string, std::string>& metadata, const std::string& key) {
  const auto found = metadata.find(key);
  if (found == metadata.end()) return 0;
  try {
    return std::stoi(found->second);
  } catch (const std::exception&) {
    return 0;
  }
}

// Infers the architecture from the encoder weights (timm names).
VitConfig infer_config(const std::map<std::string, at::Tensor>& weights, const LoadOptions& options,
                       LoadReport& report) {
  const auto& file = report.file;
  auto get = [&](const std::string& key) -> const at::Tensor* {
    const auto found = weights.find(key);
    return found == weights.end() ? nullptr : &found->second;
  };
  const auto* patch = get("patch_embed.proj.weight");
  if (patch == nullptr || patch->dim() != 4 || patch->size(2) != patch->size(3)) {
    throw BadInput(file + ": patch_embed.proj.weight must be (D, C, P, P)");
  }
  VitConfig config;
  config.embed_dim = static_cast<int>(patch->size(0));
  config.in_chans = static_cast<int>(patch->size(1));
  config.patch_size = static_cast<int>(patch->size(2));
  int depth = 0;
  while (get("blocks." + std::to_string(depth) + ".norm1.weight") || get("blocks." + std::to_string(depth) + ".attn.qkv.weight")) {
    ++depth;
  }
  if (depth == 0) throw BadInput(file + ": no transformer blocks found (missing blocks.0.*)");
  config.depth = depth;
  const auto* fc1 = get("blocks.0.mlp.fc1.weight");
  config.mlp_hidden_dim = fc1 != nullptr ? static_cast<int>(fc1->size(0)) : 4 * config.embed_dim;
  config.qkv_bias = get("blocks.0.attn.qkv.bias") != nullptr;
  config.class_token = get("cls_token") != nullptr;
  const auto* registers = get("reg_token");
  config.num_registers = registers != nullptr && registers->dim() == 3 ? static_cast<int>(registers->size(1)) : 0;
  config.layer_scale = get("blocks.0.ls1.gamma") != nullptr;
  config.final_norm = get("norm.weight") != nullptr;

  if (const auto* pos = get("pos_embed")) {
    if (pos->dim() != 3) throw BadInput(file + ": pos_embed must be (1, N, D)");
    const int64_t rows = pos->size(1);
    int grid = perfect_square_root(rows);
    config.pos_embed_has_cls_slot = false;
    if (config.class_token && perfect_square_root(rows - 1) > 0) {
      grid = perfect_square_root(rows - 1);
      config.pos_embed_has_cls_slot = true;
    }
    if (grid <= 0) throw BadInput(file + ": pos_embed has " + std::to_string(rows) + " rows: not a square grid");
    config.img_size = grid * config.patch_size;
    config.pos_embed = PosEmbedKind::Learned;
  } else {
    config.pos_embed = PosEmbedKind::SinCos2D;
    config.pos_embed_has_cls_slot = false;
    config.img_size = metadata_int(report.metadata, "img_size");
    if (config.img_size == 0) config.img_size = options.img_size > 0 ? options.img_size : 224;
    report.notes.push_back("no pos_embed stored: using fixed 2-D sin-cos position embeddings");
  }
  report.native_img_size = config.img_size;

  int num_heads = options.num_heads;
  if (num_heads == 0 && !options.arch.empty()) {
    const auto preset = find_preset(options.arch);
    if (!preset) throw BadInput("unknown --arch '" + options.arch + "'");
    if (preset->embed_dim != config.embed_dim || preset->patch_size != config.patch_size) {
      throw BadInput(file + ": --arch " + options.arch + " has width " + std::to_string(preset->embed_dim) +
                     " and patch " + std::to_string(preset->patch_size) + ", the checkpoint " +
                     std::to_string(config.embed_dim) + " and " + std::to_string(config.patch_size));
    }
    num_heads = preset->num_heads;
  }
  if (num_heads == 0) num_heads = metadata_int(report.metadata, "num_heads");
  if (num_heads == 0) {
    num_heads = default_num_heads(config.embed_dim);
    if (num_heads == 0) {
      throw BadInput(file + ": cannot infer the head count for width " + std::to_string(config.embed_dim) +
                     ": pass --num-heads or --arch");
    }
    report.notes.push_back("head count " + std::to_string(num_heads) + " assumed from width " +
                           std::to_string(config.embed_dim) + " (override with --num-heads)");
  }
  config.num_heads = num_heads;
  try {
    config.validate();
  } catch (const BadInput& error) {
    throw BadInput(file + ": " + error.what());
  }
  return config;
}

// The timm keys the configuration needs, for the missing-key check.
std::vector<std::string> required_keys(const VitConfig& config) {
  std::vector<std::string> keys = {"patch_embed.proj.weight", "patch_embed.proj.bias"};
  if (config.class_token) keys.push_back("cls_token");
  if (config.num_registers > 0) keys.push_back("reg_token");
  if (config.pos_embed == PosEmbedKind::Learned) keys.push_back("pos_embed");
  for (int i = 0; i < config.depth; ++i) {
    const std::string prefix = "blocks." + std::to_string(i) + ".";
    for (const char* name : {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                             "mlp.fc2.bias"}) {
      keys.push_back(prefix + name);
    }
    if (config.qkv_bias) keys.push_back(prefix + "attn.qkv.bias");
    if (config.layer_scale) {
      keys.push_back(prefix + "ls1.gamma");
      keys.push_back(prefix + "ls2.gamma");
    }
  }
  if (config.final_norm) {
    keys.push_back("norm.weight");
    keys.push_back("norm.bias");
  }
  return keys;
}

// Block indices must run 0..depth-1 and every block must have the same keys: a checkpoint missing
// blocks.2.* must not load as a depth-2 encoder that silently drops blocks 3 and up. Every encoder key
// the configuration does not use is refused, naming the first few.
void check_block_layout(const std::string& file, const VitConfig& config, const std::map<std::string, at::Tensor>& weights,
                        const std::set<std::string>& required) {
  std::set<int> blocks;
  std::vector<std::string> unused;
  for (const auto& [key, tensor] : weights) {
    if (starts_with(key, "blocks.")) blocks.insert(std::atoi(key.c_str() + 7));
    if (required.count(key) == 0) unused.push_back(key);
  }
  if (!blocks.empty() && *blocks.rbegin() >= config.depth) {
    throw BadInput(file + ": checkpoint has blocks up to blocks." + std::to_string(*blocks.rbegin()) + " but no blocks." +
                   std::to_string(config.depth) + ".* (block indices must run 0.." +
                   std::to_string(*blocks.rbegin()) + " without a gap)");
  }
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 4; ++i) list += (i ? ", " : "") + unused[i];
    if (unused.size() > 4) list += ", ... (" + std::to_string(unused.size()) + " in all)";
    throw BadInput(file + ": encoder keys that do not fit the layout of blocks.0 and the rest: " + list);
  }
}

// NaN or inf in a weight gives all-NaN tokens downstream; refuse them here, naming the tensor.
void check_finite(const std::string& file, const std::string& key, const at::Tensor& tensor) {
  if (!tensor.defined() || !at::isFloatingType(tensor.scalar_type()) || tensor.numel() == 0) return;
  if (!at::isfinite(tensor).all().item<bool>()) {
    const int64_t n_bad = tensor.numel() - at::isfinite(tensor).sum().item<int64_t>();
    throw BadInput(file + ": tensor '" + key + "' holds " + std::to_string(n_bad) +
                   " NaN or inf values (pass --allow-nonfinite to load it anyway)");
  }
}

VitWeights gather_weights(const VitConfig& config, std::map<std::string, at::Tensor>& weights) {
  auto take = [&](const std::string& key) {
    const auto found = weights.find(key);
    return found == weights.end() ? at::Tensor() : found->second.to(at::kFloat);
  };
  VitWeights gathered;
  gathered.patch_weight = take("patch_embed.proj.weight");
  gathered.patch_bias = take("patch_embed.proj.bias");
  gathered.cls_token = take("cls_token");
  gathered.reg_token = take("reg_token");
  gathered.pos_embed = take("pos_embed");
  for (int i = 0; i < config.depth; ++i) {
    const std::string prefix = "blocks." + std::to_string(i) + ".";
    BlockWeights block;
    block.norm1_weight = take(prefix + "norm1.weight");
    block.norm1_bias = take(prefix + "norm1.bias");
    block.qkv_weight = take(prefix + "attn.qkv.weight");
    block.qkv_bias = take(prefix + "attn.qkv.bias");
    block.proj_weight = take(prefix + "attn.proj.weight");
    block.proj_bias = take(prefix + "attn.proj.bias");
    block.ls1_gamma = take(prefix + "ls1.gamma");
    block.ls2_gamma = take(prefix + "ls2.gamma");
    block.norm2_weight = take(prefix + "norm2.weight");
    block.norm2_bias = take(prefix + "norm2.bias");
    block.fc1_weight = take(prefix + "mlp.fc1.weight");
    block.fc1_bias = take(prefix + "mlp.fc1.bias");
    block.fc2_weight = take(prefix + "mlp.fc2.weight");
    block.fc2_bias = take(prefix + "mlp.fc2.bias");
    gathered.blocks.push_back(std::move(block));
  }
  gathered.norm_weight = take("norm.weight");
  gathered.norm_bias = take("norm.bias");
  return gathered;
}

}  // namespace

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  throw BadInput("unknown dtype '" + name + "' (expected fp32 or bf16)");
}

LoadedModel load_model(const std::string& file, const LoadOptions& options) {
  const auto dtype = parse_dtype(options.dtype);
  const bool cuda = options.device.rfind("cuda", 0) == 0;
  if (options.device != "cpu" && !cuda) {
    throw BadInput("unknown --device '" + options.device + "' (expected cpu, cuda or cuda:N)");
  }
  if (cuda && !at::hasCUDA()) {
    throw BadInput("--device cuda: no CUDA device (this libtorch build or machine has none)");
  }
  std::optional<CheckpointSource> forced;
  if (options.format != "auto") {
    forced = parse_source(options.format);
    if (!forced) throw BadInput("unknown --format '" + options.format + "'");
  }

  // Phase 1: read the file (nothing in it is executed).
  RawCheckpoint raw = read_checkpoint_file(file);
  LoadReport report;
  report.file = file;
  report.format = raw.format;
  report.metadata = raw.metadata;

  // Phase 2: find the encoder's container and prefix; everything else is reported, not used.
  const EncoderLocation location = locate_encoder(raw);
  report.container = join_from(location.container, 0);
  report.prefix = location.prefix;
  StateDict state_dict;
  std::map<std::string, int> other_containers;
  for (const auto& entry : raw.entries) {
    if (!entry.tensor.defined()) {
      report.skipped_entries.push_back(join_path(entry.path) + ": " + entry.kind);
      continue;
    }
    if (!location.container.empty() && !path_starts_with(entry.path, location.container)) {
      ++other_containers[entry.path.front()];
      continue;
    }
    const std::string key = join_from(entry.path, location.container.size());
    if (!starts_with(key, location.prefix)) {
      report.ignored_keys.push_back(key);
      continue;
    }
    state_dict.emplace_back(key.substr(location.prefix.size()), entry.tensor);
  }
  for (const auto& [name, count] : other_containers) {
    report.skipped_entries.push_back(name + ": container of " + std::to_string(count) + " tensors");
  }

  // Phase 3: rename into timm keys with the source's table.
  const auto source = forced ? *forced : detect_source(state_dict, report.container + "/" + report.prefix);
  report.source = source_name(source);
  RemappedKeys remapped = remap_to_timm(state_dict, source);
  report.ignored_keys.insert(report.ignored_keys.end(), remapped.ignored.begin(), remapped.ignored.end());
  std::map<std::string, at::Tensor> weights;
  for (auto& [key, tensor] : remapped.encoder) {
    if (!weights.emplace(key, tensor).second) throw BadInput(file + ": key '" + key + "' appears twice");
  }

  // Phase 4: infer the architecture and check strictly.
  VitConfig config = infer_config(weights, options, report);
  std::vector<std::string> missing;
  for (const auto& key : required_keys(config)) {
    if (weights.find(key) == weights.end()) missing.push_back(key);
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw BadInput(file + ": missing encoder keys: " + list);
  }
  const std::vector<std::string> required_list = required_keys(config);
  const std::set<std::string> required(required_list.begin(), required_list.end());
  check_block_layout(file, config, weights, required);
  if (!options.allow_nonfinite) {
    for (const auto& key : required_list) check_finite(file, key, weights.at(key));
    for (const auto& [key, tensor] : remapped.classifier) check_finite(file, key, tensor);
  }
  VitWeights gathered = gather_weights(config, weights);
  if (config.pos_embed == PosEmbedKind::SinCos2D) {
    gathered.pos_embed = sincos_2d_pos_embed(config.embed_dim, config.grid_size()).unsqueeze(0);
  }

  // Phase 5: resample position embeddings when another input size is asked for.
  if (options.img_size > 0 && options.img_size != config.img_size) {
    if (options.img_size % config.patch_size != 0) {
      throw BadInput("--img-size " + std::to_string(options.img_size) + " is not a multiple of the patch size " +
                     std::to_string(config.patch_size));
    }
    const int new_grid = options.img_size / config.patch_size;
    if (config.pos_embed == PosEmbedKind::Learned) {
      const int prefix_rows = config.class_token && config.pos_embed_has_cls_slot ? 1 : 0;
      gathered.pos_embed = resample_pos_embed(gathered.pos_embed, prefix_rows, new_grid);
    } else {
      gathered.pos_embed = sincos_2d_pos_embed(config.embed_dim, new_grid).unsqueeze(0);
    }
    report.notes.push_back("pos_embed resampled from " + std::to_string(config.img_size) + " to " +
                           std::to_string(options.img_size) + " px (bicubic)");
    config.img_size = options.img_size;
  }

  LoadedModel loaded;
  try {
    const at::Device device(options.device);
    loaded.encoder = std::make_shared<const VitEncoder>(
        config, weights_on(std::move(gathered), device), dtype,
        device.is_cpu() ? parse_backend(options.backend) : EncoderBackend::Reference);
  } catch (const BadInput& error) {
    throw BadInput(file + ": " + error.what());
  }
  if (remapped.classifier.size() == 2) {
    Classifier classifier;
    for (const auto& [key, tensor] : remapped.classifier) {
      (key == "head.weight" ? classifier.weight : classifier.bias) = tensor.to(at::kFloat);
      report.ignored_keys.push_back(key);
    }
    if (classifier.weight.size(1) == config.embed_dim && classifier.bias.size(0) == classifier.weight.size(0)) {
      loaded.classifier = classifier;
    }
  }
  loaded.report = std::move(report);
  return loaded;
}

}  // namespace vitprobe
