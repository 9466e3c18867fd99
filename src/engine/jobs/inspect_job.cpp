#include "jobs/inspect_job.h"

#include <nlohmann/json.hpp>

namespace vitprobe {
namespace {

nlohmann::json describe(const LoadedModel& model) {
  const auto& config = model.encoder->config();
  nlohmann::json arch = {
      {"embed_dim", config.embed_dim},
      {"depth", config.depth},
      {"num_heads", config.num_heads},
      {"patch_size", config.patch_size},
      {"img_size", config.img_size},
      {"native_img_size", model.report.native_img_size},
      {"in_chans", config.in_chans},
      {"mlp_ratio", config.mlp_ratio()},
      {"mlp_hidden_dim", config.mlp_hidden_dim},
      {"qkv_bias", config.qkv_bias},
      {"class_token", config.class_token},
      {"num_registers", config.num_registers},
      {"layer_scale", config.layer_scale},
      {"final_norm", config.final_norm},
      {"pos_embed", pos_embed_name(config.pos_embed)},
      {"pos_embed_has_cls_slot", config.pos_embed_has_cls_slot},
      {"zero_k_bias", config.zero_k_bias},
      {"rel_pos_bias", config.rel_pos_bias},
      {"shared_rel_pos_bias", config.shared_rel_pos_bias},
      {"num_tokens", config.num_tokens()},
  };
  nlohmann::json out = {
      {"file", model.report.file},
      {"format", model.report.format},
      {"source", model.report.source},
      {"container", model.report.container},
      {"prefix", model.report.prefix},
      {"arch", arch},
      {"num_params", config.num_parameters()},
      {"ignored_keys", model.report.ignored_keys},
      {"skipped_entries", model.report.skipped_entries},
      {"notes", model.report.notes},
      {"metadata", model.report.metadata},
      {"problems", nlohmann::json::array()},
  };
  out["classifier"] = model.classifier ? nlohmann::json{{"num_classes", model.classifier->weight.size(0)}}
                                       : nlohmann::json(nullptr);
  return out;
}

}  // namespace

nlohmann::json run_inspect_job(const InspectJobOptions& options) {
  return describe(load_model(options.model, options.load));
}

}  // namespace vitprobe
