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

// The patch grid side g of a relative position table with (2g-1)^2 + 3 rows; -1 when the count fits no grid.
int grid_of_relative_table(int64_t rows) {
  if (rows < 4) return -1;
  const int span = perfect_square_root(rows - 3);
  return span > 0 && span % 2 == 1 ? (span + 1) / 2 : -1;
}

// Infers the architecture from the encoder weights (timm names).
VitConfig infer_config(const std::map<std::string, at::Tensor>& weights, const LoadOptions& options,
                       CheckpointSource source, LoadReport& report) {
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
  // BEiT / SimMIM relative position bias: per block and/or shared; the table's shape gives the grid and the
  // head count ((2g-1)^2 + 3, heads).
  const auto* block_table = get("blocks.0.attn.relative_position_bias_table");
  const auto* shared_table = get("rel_pos_bias.relative_position_bias_table");
  config.rel_pos_bias = block_table != nullptr;
  config.shared_rel_pos_bias = shared_table != nullptr;
  const auto* table = block_table != nullptr ? block_table : shared_table;
  int table_grid = 0, table_heads = 0;
  if (table != nullptr) {
    const std::string name = block_table != nullptr ? "blocks.0.attn.relative_position_bias_table"
                                                    : "rel_pos_bias.relative_position_bias_table";
    table_grid = table->dim() == 2 ? grid_of_relative_table(table->size(0)) : -1;
    if (table_grid <= 0) {
      throw BadInput(file + ": " + name + " must be ((2g-1)^2 + 3, heads) for a g x g patch grid, found " +
                     std::to_string(table->dim() == 2 ? table->size(0) : -1) + " rows");
    }
    table_heads = static_cast<int>(table->size(1));
  }

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
  } else if (source == CheckpointSource::Beit || table != nullptr) {
    // BEiT / SimMIM with use_abs_pos_emb=False: no absolute position embedding at all (models_simmim.py:235-238).
    config.pos_embed = PosEmbedKind::None;
    config.pos_embed_has_cls_slot = false;
    if (table_grid > 0) {
      config.img_size = table_grid * config.patch_size;
    } else {
      config.img_size = metadata_int(report.metadata, "img_size");
      if (config.img_size == 0) config.img_size = options.img_size > 0 ? options.img_size : 224;
    }
    report.notes.push_back(table != nullptr ? "no pos_embed stored: positions from the relative position bias only"
                                            : "no pos_embed stored and no relative position bias: no position information");
  } else {
    config.pos_embed = PosEmbedKind::SinCos2D;
    config.pos_embed_has_cls_slot = false;
    config.img_size = metadata_int(report.metadata, "img_size");
    if (config.img_size == 0) config.img_size = options.img_size > 0 ? options.img_size : 224;
    report.notes.push_back("no pos_embed stored: using fixed 2-D sin-cos position embeddings");
  }
  report.native_img_size = config.img_size;

  int num_heads = options.num_heads;
  if (num_heads == 0 && table_heads > 0 && options.arch.empty()) num_heads = table_heads;
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
  if (config.shared_rel_pos_bias) keys.push_back("rel_pos_bias.relative_position_bias_table");
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
    if (config.rel_pos_bias) keys.push_back(prefix + "attn.relative_position_bias_table");
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

// Official BEiT / SimMIM checkpoints store each relative_position_index buffer (SimMIM's are persistent). Each
// must equal the index built here for the model's grid (pos_embed.h), or the stored table would be read with
// another layout than it was trained with; once checked they are dropped (the index is rebuilt, not loaded).
void check_relative_position_indices(const std::string& file, const VitConfig& config,
                                     std::map<std::string, at::Tensor>& weights) {
  const int64_t tokens = static_cast<int64_t>(config.num_patches()) + 1;
  for (auto it = weights.begin(); it != weights.end();) {
    if (!ends_with(it->first, ".relative_position_index")) {
      ++it;
      continue;
    }
    const auto& stored = it->second;
    const bool fits = config.has_relative_position_bias() && stored.dim() == 2 && stored.size(0) == tokens &&
                      stored.size(1) == tokens && !at::isFloatingType(stored.scalar_type()) &&
                      at::equal(stored.to(at::kLong), relative_position_index(config.grid_size()));
    if (!fits) {
      throw BadInput(file + ": '" + it->first + "' is not the BEiT relative position index of a " +
                     std::to_string(config.grid_size()) + "x" + std::to_string(config.grid_size()) +
                     " patch grid with [cls] (" + std::to_string(tokens) + " x " + std::to_string(tokens) + ")");
    }
    it = weights.erase(it);
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
  gathered.rel_pos_bias_table = take("rel_pos_bias.relative_position_bias_table");
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
    block.rel_pos_bias_table = take(prefix + "attn.relative_position_bias_table");
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
  RemappedKeys remapped;
  try {
    remapped = remap_to_timm(state_dict, source);
  } catch (const BadInput& error) {
    throw BadInput(file + ": " + error.what());
  }
  report.ignored_keys.insert(report.ignored_keys.end(), remapped.ignored.begin(), remapped.ignored.end());
  std::map<std::string, at::Tensor> weights;
  for (auto& [key, tensor] : remapped.encoder) {
    if (!weights.emplace(key, tensor).second) throw BadInput(file + ": key '" + key + "' appears twice");
  }

  // Phase 4: infer the architecture and check strictly.
  VitConfig config = infer_config(weights, options, source, report);
  config.zero_k_bias = remapped.zero_k_bias && config.qkv_bias;
  check_relative_position_indices(file, config, weights);
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
    if (config.has_relative_position_bias()) {
      throw BadInput(file + ": --img-size " + std::to_string(options.img_size) + ": the relative position bias of " +
                     "this checkpoint is for a " + std::to_string(config.grid_size()) + "x" +
                     std::to_string(config.grid_size()) + " patch grid (" + std::to_string(config.img_size) +
                     " px) and is not resampled; run at --img-size " + std::to_string(config.img_size) + " or 0");
    }
    const int new_grid = options.img_size / config.patch_size;
    if (config.pos_embed == PosEmbedKind::Learned) {
      const int prefix_rows = config.class_token && config.pos_embed_has_cls_slot ? 1 : 0;
      gathered.pos_embed = resample_pos_embed(gathered.pos_embed, prefix_rows, new_grid);
    } else if (config.pos_embed == PosEmbedKind::SinCos2D) {
      gathered.pos_embed = sincos_2d_pos_embed(config.embed_dim, new_grid).unsqueeze(0);
    }
    if (config.pos_embed != PosEmbedKind::None) {
      report.notes.push_back("pos_embed resampled from " + std::to_string(config.img_size) + " to " +
                             std::to_string(options.img_size) + " px (bicubic)");
    }
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
    // A BEiT / SimMIM fine-tuned head reads fc_norm(mean of the patch tokens) (use_mean_pooling), not [cls]:
    // vitprobe's logits would be wrong, so such a head is reported and not used.
    const bool mean_pooled = std::any_of(state_dict.begin(), state_dict.end(),
                                         [](const auto& item) { return item.first == "fc_norm.weight"; });
    if (mean_pooled) {
      report.notes.push_back("classifier head follows fc_norm over mean-pooled patches: not used (fc_norm ignored)");
    } else if (classifier.weight.size(1) == config.embed_dim && classifier.bias.size(0) == classifier.weight.size(0)) {
      loaded.classifier = classifier;
    }
  }
  loaded.report = std::move(report);
  return loaded;
}

}  // namespace vitprobe
