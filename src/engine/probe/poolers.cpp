#include "probe/poolers.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "common/errors.h"
#include "model/pos_embed.h"

namespace vitprobe {
namespace {

// Draws initial values on the CPU from one seeded generator, then moves them to the device.
class Initializer {
 public:
  Initializer(uint64_t seed, const at::Device& device) : generator_(at::detail::createCPUGenerator(seed)), device_(device) {}

  // nn.Linear's reset_parameters: kaiming_uniform(a=sqrt(5)) gives bound 1/sqrt(fan_in), the bias the same.
  at::Tensor linear_weight(int64_t out, int64_t in) { return uniform({out, in}, 1.0 / std::sqrt(double(in))); }
  at::Tensor linear_bias(int64_t out, int64_t in) { return uniform({out}, 1.0 / std::sqrt(double(in))); }
  at::Tensor normal(at::IntArrayRef shape, double std) {
    return at::empty(shape, at::kFloat).normal_(0.0, std, generator_).to(device_);
  }
  at::Tensor constant(at::IntArrayRef shape, double value) {
    return at::full(shape, value, at::TensorOptions().dtype(at::kFloat).device(device_));
  }

 private:
  at::Tensor uniform(at::IntArrayRef shape, double bound) {
    return at::empty(shape, at::kFloat).uniform_(-bound, bound, generator_).to(device_);
  }
  at::Generator generator_;
  at::Device device_;
};

at::Tensor weighted_sum(const at::Tensor& weights, const at::Tensor& values) {
  return at::bmm(weights.unsqueeze(1), values).squeeze(1);
}

class Abmilp final : public LearnedPooling {
 public:
  Abmilp(const HeadSpec& spec, const TokenLayout& layout, Initializer& init) : spec_(spec), layout_(layout) {
    const int64_t dim = layout.embed_dim;
    if (spec.sa != "none") {
      qkv_weight_ = init.linear_weight(3 * dim, dim);
      proj_weight_ = init.linear_weight(dim, dim);
      proj_bias_ = init.linear_bias(dim, dim);
    }
    if (spec.depth == 2) {
      hidden_weight_ = init.linear_weight(dim, dim);
      hidden_bias_ = init.linear_bias(dim, dim);
    }
    score_weight_ = init.linear_weight(1, dim);
    score_bias_ = init.linear_bias(1, dim);
    if (spec.cond == "pe") {
      auto table = sincos_2d_pos_embed(static_cast<int>(dim), layout.grid_size);
      if (spec.content == "all") table = at::cat({at::zeros({layout.num_prefix_tokens, dim}), table}, 0);
      pos_embed_ = table.to(score_weight_.device());
    }
  }

  int64_t output_dim() const override { return layout_.embed_dim; }

  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto [weights, values] = attend(tokens, patches);
    return weighted_sum(weights, values);
  }

  at::Tensor pooling_weights(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto weights = attend(tokens, patches).first;
    return spec_.content == "all" ? weights.slice(1, layout_.num_prefix_tokens) : weights;
  }

  std::vector<NamedTensor> parameters() const override {
    std::vector<NamedTensor> named;
    if (spec_.sa != "none") {
      named.emplace_back("pool.self_attn.qkv.weight", qkv_weight_);
      named.emplace_back("pool.self_attn.proj.weight", proj_weight_);
      named.emplace_back("pool.self_attn.proj.bias", proj_bias_);
    }
    if (spec_.depth == 2) {
      named.emplace_back("pool.scorer.0.weight", hidden_weight_);
      named.emplace_back("pool.scorer.0.bias", hidden_bias_);
      named.emplace_back("pool.scorer.2.weight", score_weight_);
      named.emplace_back("pool.scorer.2.bias", score_bias_);
    } else {
      named.emplace_back("pool.scorer.0.weight", score_weight_);
      named.emplace_back("pool.scorer.0.bias", score_bias_);
    }
    return named;
  }

 private:
  // One-head self-attention over the pooled tokens (timm Attention, qkv without bias), scale 1/sqrt(D).
  at::Tensor self_attention(const at::Tensor& x) const {
    const auto qkv = at::linear(x, qkv_weight_).chunk(3, -1);
    const double scale = 1.0 / std::sqrt(static_cast<double>(layout_.embed_dim));
    const auto attention = at::softmax(at::bmm(qkv[0], qkv[1].transpose(1, 2)) * scale, -1);
    return at::linear(at::bmm(attention, qkv[2]), proj_weight_, proj_bias_);
  }

  // (softmax weights over the pooled tokens (B, T'), the values they weight (B, T', D)).
  std::pair<at::Tensor, at::Tensor> attend(const at::Tensor& tokens, const at::Tensor& patches) const {
    const auto& x = spec_.content == "patch" ? patches : tokens;
    at::Tensor attended;
    if (spec_.sa != "none") attended = self_attention(x);
    auto scorer_input = spec_.sa == "none" ? x : attended;
    if (pos_embed_.defined()) scorer_input = scorer_input + pos_embed_;
    if (spec_.depth == 2) {
      scorer_input = at::linear(scorer_input, hidden_weight_, hidden_bias_);
      scorer_input = spec_.act == "tanh" ? at::tanh(scorer_input) : at::relu(scorer_input);
    }
    const auto scores = at::linear(scorer_input, score_weight_, score_bias_).squeeze(-1);
    return {at::softmax(scores, 1), spec_.sa == "both" ? attended : x};
  }

  HeadSpec spec_;
  TokenLayout layout_;
  at::Tensor qkv_weight_, proj_weight_, proj_bias_;
  at::Tensor hidden_weight_, hidden_bias_, score_weight_, score_bias_;
  at::Tensor pos_embed_;  // fixed, not trained
};

class EfficientProbing final : public LearnedPooling {
 public:
  EfficientProbing(const HeadSpec& spec, const TokenLayout& layout, Initializer& init)
      : layout_(layout), num_queries_(spec.size) {
    queries_ = init.normal({1, num_queries_, layout.embed_dim}, 0.02);
    value_weight_ = init.linear_weight(layout.embed_dim, layout.embed_dim);
  }

  int64_t output_dim() const override { return layout_.embed_dim; }

  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto averaged = at::bmm(pooling_weights(tokens, patches), patches);  // (B, M, D)
    // Query m keeps the m-th chunk of W_v x: project each averaged token by its chunk of rows only.
    const int64_t dim = layout_.embed_dim, chunk = dim / num_queries_;
    const auto chunks = value_weight_.view({num_queries_, chunk, dim}).transpose(1, 2);  // (M, D, D/M)
    const auto projected = at::bmm(averaged.transpose(0, 1), chunks);                  // (M, B, D/M)
    return projected.transpose(0, 1).reshape({tokens.size(0), dim});
  }

  at::Tensor pooling_weights(const at::Tensor&, const at::Tensor& patches) const override {
    const double scale = 1.0 / std::sqrt(static_cast<double>(layout_.embed_dim));
    const auto logits = at::matmul(patches, queries_[0].t()).transpose(1, 2) * scale;  // (B, M, N)
    return at::softmax(logits, -1);
  }

  std::vector<NamedTensor> parameters() const override {
    return {{"pool.queries", queries_}, {"pool.v.weight", value_weight_}};
  }

 private:
  TokenLayout layout_;
  int64_t num_queries_;
  at::Tensor queries_, value_weight_;
};

class SimPool final : public LearnedPooling {
 public:
  SimPool(const TokenLayout& layout, Initializer& init) : layout_(layout) {
    const int64_t dim = layout.embed_dim;
    norm_weight_ = init.constant({dim}, 1.0);
    norm_bias_ = init.constant({dim}, 0.0);
    query_weight_ = init.linear_weight(dim, dim);
    key_weight_ = init.linear_weight(dim, dim);
  }

  int64_t output_dim() const override { return layout_.embed_dim; }

  at::Tensor forward(const at::Tensor&, const at::Tensor& patches) const override {
    const auto [weights, normed] = attend(patches);
    return weighted_sum(weights, normed);
  }

  at::Tensor pooling_weights(const at::Tensor&, const at::Tensor& patches) const override { return attend(patches).first; }

  std::vector<NamedTensor> parameters() const override {
    return {{"pool.norm.weight", norm_weight_}, {"pool.norm.bias", norm_bias_},
            {"pool.wq.weight", query_weight_}, {"pool.wk.weight", key_weight_}};
  }

 private:
  std::pair<at::Tensor, at::Tensor> attend(const at::Tensor& patches) const {
    const auto normed = at::layer_norm(patches, {layout_.embed_dim}, norm_weight_, norm_bias_, 1e-6);
    const auto query = at::linear(patches.mean(1), query_weight_);  // GAP query (B, D)
    // q . (W_k k) = (q W_k) . k: fold the key projection into the query.
    const auto folded = at::matmul(query, key_weight_);
    const double scale = 1.0 / std::sqrt(static_cast<double>(layout_.embed_dim));
    const auto logits = at::bmm(normed, folded.unsqueeze(2)).squeeze(2) * scale;
    return {at::softmax(logits, 1), normed};
  }

  TokenLayout layout_;
  at::Tensor norm_weight_, norm_bias_, query_weight_, key_weight_;
};

class MultiHeadCrossAttention final : public LearnedPooling {
 public:
  MultiHeadCrossAttention(const TokenLayout& layout, Initializer& init)
      : layout_(layout), num_heads_(layout.num_encoder_heads) {
    const int64_t dim = layout.embed_dim;
    query_ = init.normal({1, 1, dim}, 0.02);
    q_weight_ = init.linear_weight(dim, dim);
    q_bias_ = init.linear_bias(dim, dim);
    k_weight_ = init.linear_weight(dim, dim);
    v_weight_ = init.linear_weight(dim, dim);
    v_bias_ = init.linear_bias(dim, dim);
  }

  int64_t output_dim() const override { return layout_.embed_dim; }

  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto averaged = at::bmm(pooling_weights(tokens, patches), patches);  // (B, H, D)
    const int64_t dim = layout_.embed_dim, head_dim = dim / num_heads_;
    const auto value_rows = v_weight_.view({num_heads_, head_dim, dim}).transpose(1, 2);  // (H, D, dh)
    const auto values = at::bmm(averaged.transpose(0, 1), value_rows);                    // (H, B, dh)
    return values.transpose(0, 1).reshape({tokens.size(0), dim}) + v_bias_;
  }

  at::Tensor pooling_weights(const at::Tensor&, const at::Tensor& patches) const override {
    const int64_t dim = layout_.embed_dim, head_dim = dim / num_heads_;
    const auto query = at::linear(query_.view({1, dim}), q_weight_, q_bias_).view({num_heads_, 1, head_dim});
    // q_h . (W_k,h x) = (q_h W_k,h) . x: one folded query per head, (H, D).
    const auto folded = at::bmm(query, k_weight_.view({num_heads_, head_dim, dim})).squeeze(1);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    const auto logits = at::matmul(patches, folded.t()).transpose(1, 2) * scale;  // (B, H, N)
    return at::softmax(logits, -1);
  }

  std::vector<NamedTensor> parameters() const override {
    return {{"pool.query", query_},   {"pool.q.weight", q_weight_}, {"pool.q.bias", q_bias_},
            {"pool.k.weight", k_weight_}, {"pool.v.weight", v_weight_}, {"pool.v.bias", v_bias_}};
  }

 private:
  TokenLayout layout_;
  int64_t num_heads_;
  at::Tensor query_, q_weight_, q_bias_, k_weight_, v_weight_, v_bias_;
};

}  // namespace

std::unique_ptr<LearnedPooling> make_learned_pooling(const HeadSpec& spec, const TokenLayout& layout, uint64_t seed,
                                                     const at::Device& device) {
  check_head_fits(spec, layout);
  Initializer init(seed, device);
  switch (spec.kind) {
    case HeadKind::Abmilp: return std::make_unique<Abmilp>(spec, layout, init);
    case HeadKind::EfficientProbing: return std::make_unique<EfficientProbing>(spec, layout, init);
    case HeadKind::SimPool: return std::make_unique<SimPool>(layout, init);
    case HeadKind::MultiHeadCrossAttention: return std::make_unique<MultiHeadCrossAttention>(layout, init);
    default: throw BadInput("make_learned_pooling: head '" + spec.name + "' has no learned pooling");
  }
}

}  // namespace vitprobe
