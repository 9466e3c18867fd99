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
    // beyond_cls abmilp.py: depth - 1 blocks of Linear(D, D) + activation, then Linear(D, 1), drawn in that order.
    for (int layer = 0; layer + 1 < spec.depth; ++layer) {
      hidden_weights_.push_back(init.linear_weight(dim, dim));
      hidden_biases_.push_back(init.linear_bias(dim, dim));
    }
    score_weight_ = init.linear_weight(1, dim);
    score_bias_ = init.linear_bias(1, dim);
    if (spec.cond == "pe") {
      // Starts as the 2-D sin-cos table and is trained: abmilp.py registers it as an nn.Parameter with
      // requires_grad=False, but main_linprobe.py then sets requires_grad on every parameter of model.head and
      // hands them all to the optimizer, so the official runs train it (LARS: a 2-d+ parameter, trust ratio on).
      auto table = sincos_2d_pos_embed(static_cast<int>(dim), layout.grid_size);
      if (spec.content == "all") table = at::cat({at::zeros({layout.num_prefix_tokens, dim}), table}, 0);
      pos_embed_ = table.unsqueeze(0).to(score_weight_.device()).contiguous();
    }
  }

  int64_t output_dim() const override { return layout_.embed_dim; }

  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches, bool) override {
    const auto [weights, values] = attend(tokens, patches);
    return weighted_sum(weights, values);
  }

  at::Tensor pooling_weights(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto weights = attend(tokens, patches).first;
    return spec_.content == "all" ? weights.slice(1, layout_.num_prefix_tokens) : weights;
  }

  std::vector<NamedTensor> parameters() const override {
    std::vector<NamedTensor> named;
    if (pos_embed_.defined()) named.emplace_back("pool.pos_embed", pos_embed_);
    if (spec_.sa != "none") {
      named.emplace_back("pool.self_attn.qkv.weight", qkv_weight_);
      named.emplace_back("pool.self_attn.proj.weight", proj_weight_);
      named.emplace_back("pool.self_attn.proj.bias", proj_bias_);
    }
    // nn.Sequential indices: Linear layers at 0, 2, 4, ... (activations between them).
    for (size_t layer = 0; layer < hidden_weights_.size(); ++layer) {
      named.emplace_back("pool.scorer." + std::to_string(2 * layer) + ".weight", hidden_weights_[layer]);
      named.emplace_back("pool.scorer." + std::to_string(2 * layer) + ".bias", hidden_biases_[layer]);
    }
    const auto last = std::to_string(2 * hidden_weights_.size());
    named.emplace_back("pool.scorer." + last + ".weight", score_weight_);
    named.emplace_back("pool.scorer." + last + ".bias", score_bias_);
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
    for (size_t layer = 0; layer < hidden_weights_.size(); ++layer) {
      scorer_input = at::linear(scorer_input, hidden_weights_[layer], hidden_biases_[layer]);
      scorer_input = spec_.act == "tanh" ? at::tanh(scorer_input) : at::relu(scorer_input);
    }
    const auto scores = at::linear(scorer_input, score_weight_, score_bias_).squeeze(-1);
    return {at::softmax(scores, 1), spec_.sa == "both" ? attended : x};
  }

  HeadSpec spec_;
  TokenLayout layout_;
  at::Tensor qkv_weight_, proj_weight_, proj_bias_;
  std::vector<at::Tensor> hidden_weights_, hidden_biases_;
  at::Tensor score_weight_, score_bias_;
  at::Tensor pos_embed_;  // (1, T', D), trained (cond=pe)
};

class EfficientProbing final : public LearnedPooling {
 public:
  EfficientProbing(const HeadSpec& spec, const TokenLayout& layout, Initializer& init)
      : layout_(layout), num_queries_(spec.size), with_cls_(spec.content == "all"),
        output_dim_(layout.embed_dim / spec.d_out) {
    queries_ = init.normal({1, num_queries_, layout.embed_dim}, 0.02);
    value_weight_ = init.linear_weight(output_dim_, layout.embed_dim);
  }

  int64_t output_dim() const override { return output_dim_; }

  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& patches, bool) override {
    const auto bag = bag_of(tokens, patches);
    const auto averaged = at::bmm(attend(bag), bag);  // (B, M, D)
    // Query m keeps the m-th chunk of W_v x (ep.py:40-45): project each averaged token by its chunk of rows only.
    const int64_t dim = layout_.embed_dim, chunk = output_dim_ / num_queries_;
    const auto chunks = value_weight_.view({num_queries_, chunk, dim}).transpose(1, 2);  // (M, D, chunk)
    const auto projected = at::bmm(averaged.transpose(0, 1), chunks);                  // (M, B, chunk)
    return projected.transpose(0, 1).reshape({tokens.size(0), output_dim_});
  }

  at::Tensor pooling_weights(const at::Tensor& tokens, const at::Tensor& patches) const override {
    const auto weights = attend(bag_of(tokens, patches));
    return with_cls_ ? weights.slice(2, 1) : weights;
  }

  std::vector<NamedTensor> parameters() const override {
    return {{"pool.queries", queries_}, {"pool.v.weight", value_weight_}};
  }

 private:
  // The tokens EP attends over: the patches, or for ep_all the [cls] token (the first prefix token) and the patches.
  at::Tensor bag_of(const at::Tensor& tokens, const at::Tensor& patches) const {
    return with_cls_ ? at::cat({tokens.slice(1, 0, 1), patches}, 1) : patches;
  }

  // Softmax over the bag of q x^T / sqrt(D), one head (ep.py:37-43); (B, M, n).
  at::Tensor attend(const at::Tensor& bag) const {
    const double scale = 1.0 / std::sqrt(static_cast<double>(layout_.embed_dim));
    return at::softmax(at::matmul(bag, queries_[0].t()).transpose(1, 2) * scale, -1);
  }

  TokenLayout layout_;
  int64_t num_queries_;
  bool with_cls_;
  int64_t output_dim_;
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

  at::Tensor forward(const at::Tensor&, const at::Tensor& patches, bool) override {
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

// Per-head value projection of head-averaged tokens: averaged (B, H, D), rows of W_v (H * dh, D) -> (B, H * dh):
// head h keeps W_v,h (sum_n a_hn x_n), which equals sum_n a_hn (W_v,h x_n) because each row of a sums to 1.
at::Tensor project_per_head(const at::Tensor& averaged, const at::Tensor& value_weight, int64_t num_heads) {
  const int64_t dim = averaged.size(2), head_dim = value_weight.size(0) / num_heads;
  const auto rows = value_weight.view({num_heads, head_dim, dim}).transpose(1, 2);  // (H, D, dh)
  return at::bmm(averaged.transpose(0, 1), rows).transpose(0, 1).reshape({averaged.size(0), num_heads * head_dim});
}

// Attention of one query (D) per head over keys W_k x (no key bias, or one that a softmax over keys ignores):
// q_h . (W_k,h x) = (q_h W_k,h) . x, so one folded query per head (H, D) meets the tokens x (B, N, D); (B, H, N).
at::Tensor one_query_attention(const at::Tensor& query, const at::Tensor& key_weight, const at::Tensor& x,
                               int64_t num_heads) {
  const int64_t dim = x.size(2), head_dim = dim / num_heads;
  const auto folded = at::bmm(query.reshape({num_heads, 1, head_dim}), key_weight.view({num_heads, head_dim, dim})).squeeze(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  return at::softmax(at::matmul(x, folded.t()).transpose(1, 2) * scale, -1);
}

class Aim final : public LearnedPooling {
 public:
  Aim(const HeadSpec& spec, const TokenLayout& layout, Initializer& init) : dim_(layout.embed_dim), num_heads_(spec.heads) {
    query_ = init.normal({1, 1, dim_}, 0.02);  // aim.py:355 torch.randn(1, num_queries, dim) * 0.02
    key_weight_ = init.linear_weight(dim_, dim_);
    value_weight_ = init.linear_weight(dim_, dim_);
    running_mean_ = init.constant({dim_}, 0.0);
    running_var_ = init.constant({dim_}, 1.0);
  }

  int64_t output_dim() const override { return dim_; }

  at::Tensor forward(const at::Tensor&, const at::Tensor& patches, bool training) override {
    const auto normed = normalise(patches, training);
    const auto averaged = at::bmm(one_query_attention(query_, key_weight_, normed, num_heads_), normed);  // (B, H, D)
    return project_per_head(averaged, value_weight_, num_heads_);  // one query: aim.py:391's mean is the identity
  }

  at::Tensor pooling_weights(const at::Tensor&, const at::Tensor& patches) const override {
    return one_query_attention(query_, key_weight_, normalise(patches, false), num_heads_);
  }

  std::vector<NamedTensor> parameters() const override {
    return {{"pool.cls_token", query_}, {"pool.k.weight", key_weight_}, {"pool.v.weight", value_weight_}};
  }

  std::vector<NamedTensor> buffers() const override {
    return {{"pool.bn.running_mean", running_mean_}, {"pool.bn.running_var", running_var_}};
  }

 private:
  // aim.py:364: BatchNorm1d(D, affine=False, eps=1e-6) on (B, D, N): per channel over the batch and the tokens;
  // in training the batch statistics (running ones updated, momentum 0.1, unbiased), else the running ones.
  at::Tensor normalise(const at::Tensor& patches, bool training) const {
    return at::batch_norm(patches.transpose(1, 2), {}, {}, running_mean_, running_var_, training, 0.1, 1e-6, false)
        .transpose(1, 2);
  }

  int64_t dim_, num_heads_;
  at::Tensor query_, key_weight_, value_weight_, running_mean_, running_var_;
};

// A Linear or LayerNorm of the V-JEPA pooler: its official name (below "pool.") and its tensors.
struct NamedLayer {
  std::string name;
  at::Tensor weight, bias;
};

class VJepa final : public LearnedPooling {
 public:
  VJepa(const HeadSpec& spec, const TokenLayout& layout, Initializer& init)
      : dim_(layout.embed_dim), num_heads_(spec.heads), proj_(spec.proj) {
    // AttentivePooler._init_weights (attentive_pooler.py:83-94): Linear weights trunc_normal(std 0.02) (cut at
    // +-2 absolute, i.e. a plain normal), biases 0, LayerNorm 1 and 0; _rescale_blocks (:69-81) divides the
    // cross-attention's proj and fc2 weights by sqrt(2) and those of extra block l (1-based) by sqrt(2 (l + 1)).
    query_ = init.normal({1, 1, dim_}, 0.02);
    const std::string block = "cross_attention_block.";
    const double first = 1.0 / std::sqrt(2.0);
    norm1_ = norm(init, block + "norm1");
    q_ = linear(init, block + "xattn.q", dim_, dim_);
    kv_ = linear(init, block + "xattn.kv", 2 * dim_, dim_);
    if (proj_) proj_layer_ = linear(init, block + "xattn.proj", dim_, dim_, first);
    norm2_ = norm(init, block + "norm2");
    fc1_ = linear(init, block + "mlp.fc1", 4 * dim_, dim_);
    fc2_ = linear(init, block + "mlp.fc2", dim_, 4 * dim_, first);
    for (int index = 0; index + 1 < spec.depth; ++index) {
      const std::string name = "blocks." + std::to_string(index) + ".";
      const double rescale = 1.0 / std::sqrt(2.0 * (index + 2));
      blocks_.push_back({norm(init, name + "norm1"), linear(init, name + "attn.qkv", 3 * dim_, dim_),
                         linear(init, name + "attn.proj", dim_, dim_, rescale), norm(init, name + "norm2"),
                         linear(init, name + "mlp.fc1", 4 * dim_, dim_),
                         linear(init, name + "mlp.fc2", dim_, 4 * dim_, rescale)});
    }
  }

  int64_t output_dim() const override { return dim_; }

  at::Tensor forward(const at::Tensor&, const at::Tensor& patches, bool) override {
    // CrossAttentionBlock.forward (modules.py:177-181): q = q + xattn(q, norm1(x)); q = q + mlp(norm2(q)).
    const auto normed = layer_norm(patches, norm1_);
    const auto averaged = at::bmm(attention(normed), normed);  // (B, H, D)
    // v = the second half of kv(x); each attention row sums to 1, so v's bias passes through unweighted.
    auto attended = project_per_head(averaged, kv_.weight.slice(0, dim_), num_heads_) + kv_.bias.slice(0, dim_);
    if (proj_) attended = at::linear(attended, proj_layer_.weight, proj_layer_.bias);
    auto query = query_.view({1, dim_}) + attended;  // (B, D)
    query = query + mlp(layer_norm(query, norm2_), fc1_, fc2_);
    // Block.forward (modules.py:114-120) on one token: its attention is softmax over one key = 1, so the
    // attention output is v (the last third of qkv) before proj.
    for (const auto& block : blocks_) {
      const auto values = at::linear(layer_norm(query, block.norm1), block.qkv.weight.slice(0, 2 * dim_),
                                     block.qkv.bias.slice(0, 2 * dim_));
      query = query + at::linear(values, block.proj.weight, block.proj.bias);
      query = query + mlp(layer_norm(query, block.norm2), block.fc1, block.fc2);
    }
    return query;
  }

  at::Tensor pooling_weights(const at::Tensor&, const at::Tensor& patches) const override {
    return attention(layer_norm(patches, norm1_));
  }

  std::vector<NamedTensor> parameters() const override {
    std::vector<NamedTensor> named{{"pool.query_tokens", query_}};
    const auto add = [&named](const NamedLayer& layer) {
      named.emplace_back("pool." + layer.name + ".weight", layer.weight);
      named.emplace_back("pool." + layer.name + ".bias", layer.bias);
    };
    for (const auto* layer : {&norm1_, &q_, &kv_}) add(*layer);
    if (proj_) add(proj_layer_);
    for (const auto* layer : {&norm2_, &fc1_, &fc2_}) add(*layer);
    for (const auto& block : blocks_) {
      for (const auto* layer : {&block.norm1, &block.qkv, &block.proj, &block.norm2, &block.fc1, &block.fc2}) add(*layer);
    }
    return named;
  }

 private:
  struct Block {
    NamedLayer norm1, qkv, proj, norm2, fc1, fc2;
  };

  NamedLayer linear(Initializer& init, const std::string& name, int64_t out, int64_t in, double rescale = 1.0) const {
    return {name, init.normal({out, in}, 0.02) * rescale, init.constant({out}, 0.0)};
  }
  NamedLayer norm(Initializer& init, const std::string& name) const {
    return {name, init.constant({dim_}, 1.0), init.constant({dim_}, 0.0)};
  }
  at::Tensor layer_norm(const at::Tensor& x, const NamedLayer& layer) const {
    return at::layer_norm(x, {dim_}, layer.weight, layer.bias, 1e-5);  // nn.LayerNorm's default eps
  }
  static at::Tensor mlp(const at::Tensor& x, const NamedLayer& fc1, const NamedLayer& fc2) {
    return at::linear(at::gelu(at::linear(x, fc1.weight, fc1.bias)), fc2.weight, fc2.bias);  // nn.GELU: exact
  }

  // CrossAttention (modules.py:140-157): q = W_q query + b_q, k = the first half of kv(x'); the key bias adds
  // q_h . b_k,h to every logit of head h, which the softmax over keys ignores. (B, H, N).
  at::Tensor attention(const at::Tensor& normed) const {
    const auto query = at::linear(query_.view({1, dim_}), q_.weight, q_.bias);
    return one_query_attention(query, kv_.weight.slice(0, 0, dim_), normed, num_heads_);
  }

  int64_t dim_, num_heads_;
  bool proj_;
  at::Tensor query_;
  NamedLayer norm1_, q_, kv_, proj_layer_, norm2_, fc1_, fc2_;
  std::vector<Block> blocks_;
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
    case HeadKind::Aim: return std::make_unique<Aim>(spec, layout, init);
    case HeadKind::VJepa: return std::make_unique<VJepa>(spec, layout, init);
    default: throw BadInput("make_learned_pooling: head '" + spec.name + "' has no learned pooling");
  }
}

}  // namespace vitprobe
