#include "stats/pooling_maps.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>


#include "common/errors.h"
#include "image/preprocess_json.h"
#include "probe/features.h"
#include "probe/head_io.h"

namespace vitprobe {

at::Tensor pool_patches(const at::Tensor& block_tokens, const at::Tensor& weights) {
  if (block_tokens.dim() != 3 || weights.dim() != 3 || weights.size(0) != block_tokens.size(0) ||
      weights.size(2) > block_tokens.size(1)) {
    throw BadInput("pool_patches: tokens (B, T, D) and weights (B, maps, patches <= T) do not match");
  }
  const int64_t n_patches = weights.size(2);
  const auto patches = block_tokens.narrow(1, block_tokens.size(1) - n_patches, n_patches).to(at::kFloat);
  return at::matmul(weights.to(at::kFloat), patches).flatten(1);  // (B, maps, D) -> (B, maps * D)
}

namespace {

// The input block's attention in a forward result (undefined when the source does not need it).
at::Tensor input_attention(const PoolingWeightSource& source, const ForwardResult& result) {
  if (!source.needs_attention()) return {};
  return result.attention.at(source.input_block());
}

}  // namespace

void PoolingWeightSource::add_inputs_to(ForwardRequest& request) const {
  request.block_outputs.push_back(input_block());
  if (needs_attention()) request.attention_blocks.push_back(input_block());
}

at::Tensor PoolingWeightSource::patch_weights_of(const ForwardResult& result) const {
  return patch_weights(result.block_outputs.at(input_block()), input_attention(*this, result));
}

at::Tensor PoolingWeightSource::pooled_of(const ForwardResult& result) const {
  return pooled(result.block_outputs.at(input_block()), input_attention(*this, result));
}

namespace {

class ProbeHeadPooling final : public PoolingWeightSource {
 public:
  ProbeHeadPooling(LoadedHead loaded, std::shared_ptr<const VitEncoder> encoder)
      : loaded_(std::move(loaded)), encoder_(std::move(encoder)) {
    const auto& encoder_config = loaded_.config.at("encoder");
    block_ = encoder_config.at("block").get<int>();
    final_norm_ = encoder_config.at("final_norm").get<bool>() && encoder_->config().final_norm;
    names_ = required_features(std::vector<HeadSpec>{loaded_.head->spec()});
    names_.insert("tokens");
  }

  std::string name() const override { return loaded_.head->spec().name; }
  int input_block() const override { return block_; }
  bool final_norm() const override { return final_norm_; }

  std::vector<std::string> mismatches(const std::string& model_sha256, const PreprocessOptions& preprocess) const override {
    std::vector<std::string> notes;
    const auto& encoder = loaded_.config.at("encoder");
    const std::string trained_on = encoder.value("model_sha256", "");
    if (!trained_on.empty() && trained_on != model_sha256) {
      notes.push_back(loaded_.folder + ": trained on another checkpoint (SHA-256 " + trained_on.substr(0, 12) +
                      ") than the model given (" + model_sha256.substr(0, 12) + ")");
    }
    // Both sides are written by preprocess_json from the same float settings: equal when the settings are.
    if (encoder.contains("preprocess") && encoder.at("preprocess") != preprocess_json(preprocess)) {
      notes.push_back(loaded_.folder + ": trained with other preprocessing (" + encoder.at("preprocess").dump() +
                      ") than used here (" + preprocess_json(preprocess).dump() + ")");
    }
    return notes;
  }
  bool needs_attention() const override { return vitprobe::needs_attention(names_); }

  std::vector<std::string> map_names() const override {
    const auto& spec = loaded_.head->spec();
    const int64_t maps = spec.num_pooling_maps();
    if (maps == 1) return {spec.name};
    std::vector<std::string> names;
    const std::string unit = spec.kind == HeadKind::EfficientProbing ? " query " : " head ";
    for (int64_t i = 0; i < maps; ++i) names.push_back(spec.name + unit + std::to_string(i));
    return names;
  }

  at::Tensor patch_weights(const at::Tensor& block_tokens, const at::Tensor& attention) const override {
    at::NoGradGuard no_grad;
    const auto weights = pooling_weights(*loaded_.head, normalised(block_tokens), wide(attention));
    return weights.dim() == 2 ? weights.unsqueeze(1) : weights;
  }

  at::Tensor pooled(const at::Tensor& block_tokens, const at::Tensor& attention) const override {
    at::NoGradGuard no_grad;
    const auto& layout = loaded_.head->layout();
    auto features = compute_features(normalised(block_tokens), wide(attention), layout, names_);
    add_patch_tokens(features, layout);
    return loaded_.head->pool(features);
  }

 private:
  static at::Tensor wide(const at::Tensor& attention) { return attention.defined() ? attention.to(at::kFloat) : attention; }

  at::Tensor normalised(const at::Tensor& tokens) const {
    const auto wide = tokens.to(at::kFloat);
    if (!final_norm_) return wide;
    const auto& weights = encoder_->weights();
    const auto& config = encoder_->config();
    return at::layer_norm(wide, {config.embed_dim}, weights.norm_weight.to(at::kFloat), weights.norm_bias.to(at::kFloat),
                          config.norm_eps);
  }

  LoadedHead loaded_;
  std::shared_ptr<const VitEncoder> encoder_;
  int block_ = 0;
  bool final_norm_ = true;
  std::set<std::string> names_;
};

}  // namespace

std::vector<std::unique_ptr<PoolingWeightSource>> load_pooling_heads(const std::string& heads_dir,
                                                                      std::shared_ptr<const VitEncoder> encoder,
                                                                      std::vector<std::string>* notes) {
  const auto layout = TokenLayout::of(encoder->config());
  std::vector<std::unique_ptr<PoolingWeightSource>> sources;
  std::vector<std::string> skipped;
  for (const auto& folder : find_head_folders(heads_dir)) {
    auto loaded = load_head(folder, encoder->weights().patch_weight.device());
    if (!loaded.head->spec().weights_patches()) {
      skipped.push_back(loaded.head->spec().name);
      // dino weights patches, but by a second encoder's attention (its oracle), which is not run here.
      if (loaded.head->spec().needs_oracle() && notes) {
        notes->push_back(folder + ": head '" + loaded.head->spec().name + "' skipped: its weights are its oracle's "
                         "[cls] attention (config.json \"oracle\"), drawn by `vitprobe maps --model ORACLE`");
      }
      continue;
    }
    if (layout_to_json(loaded.head->layout()) != layout_to_json(layout)) {
      throw BadInput(folder + ": the head was trained on another token layout (" + layout_to_json(loaded.head->layout()).dump() +
                     ") than the model gives (" + layout_to_json(layout).dump() + "); load the model at the head's --img-size");
    }
    const int block = loaded.config.at("encoder").at("block").get<int>();
    if (block < 0 || block >= encoder->config().depth) {
      throw BadInput(folder + ": the head reads block " + std::to_string(block) + ", the model has " +
                     std::to_string(encoder->config().depth));
    }
    sources.push_back(std::make_unique<ProbeHeadPooling>(std::move(loaded), encoder));
  }
  if (sources.empty()) {
    std::string names;
    for (const auto& name : skipped) names += (names.empty() ? "" : ", ") + name;
    throw BadInput(heads_dir + ": no head that weights patches (abmilp, ep, ep_all, simpool, aim, vjepa, cattn, "
                   "attn-mean, attn-minent; dino is skipped); found " + (names.empty() ? std::string("none") : names));
  }
  return sources;
}

}  // namespace vitprobe
