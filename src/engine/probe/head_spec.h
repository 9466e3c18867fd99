#pragma once
// The `--heads` language: which aggregation each probe head uses, with its options, e.g.
//   cls, mean, cls+mean, center:4, cattn:4, attn-mean, attn-minent,
//   abmilp, abmilp:depth=2,act=tanh,sa=both,cond=pe,content=all, ep:32, ep:32,d_out=2, ep_all:32, simpool,
//   aim, aim:heads=12, vjepa, vjepa:heads=12,depth=2, knn, knn:feature=mean, dino
// A comma separates heads; an item of the form key=value continues the options of the head before it, so
// `--heads cls,abmilp:depth=2,act=tanh,mean` is three heads. ';' also separates heads.
// `mhca` (vitprobe's own cross-attention pooler before issue 16) is gone: it matched neither official pooler;
// parsing it throws a BadInput that names `aim` and `vjepa`.
#include <string>
#include <vector>

namespace vitprobe {

/// The aggregation a head applies to the encoder's tokens before BatchNorm1d + Linear.
enum class HeadKind {
  Cls,                  // the [cls] token
  Mean,                 // mean of the patch tokens
  ClsMean,              // [cls] and the patch mean concatenated
  Center,               // mean of the central NxN patches (official "cpN")
  CenterAttention,      // patches weighted by the central NxN patches' attention (official "caN")
  AttentionMean,        // patches weighted by the [cls] attention averaged over heads (official "attn-mn")
  AttentionMinEntropy,  // patches weighted by the [cls] attention of the lowest-entropy head ("attn-lcte")
  Abmilp,               // attention-based MIL pooling (beyond_cls ABMILPHead)
  EfficientProbing,     // M learned queries, no key projection (Psomas et al., EP); ep_all: [cls] in the bag
  SimPool,              // GAP query, LayerNorm'd keys/values, one-head cross-attention
  Aim,                  // EP repository's AIM pooler: BatchNorm'd tokens, one learned query, k/v without bias
  VJepa,                // V-JEPA AttentivePooler: query token, cross-attention block (LN, q/kv, proj, MLP)
  Knn,                  // weighted k-NN on L2-normalised features; nothing trained
  Dino,                 // patches weighted by a second encoder's (the oracle's, --oracle-model) last-block [cls]
                        // attention averaged over heads (official "dino", beyond_cls models_vit.py:337-350)
};

/// One parsed head.
struct HeadSpec {
  std::string name;  // canonical text: options in a fixed order, defaults left out ("abmilp:depth=2,act=tanh")
  HeadKind kind = HeadKind::Cls;
  int size = 0;      // N of center:N / cattn:N, M of ep:M and ep_all:M
  // AbMILP options; the defaults are the paper's ImageNet setting.
  int depth = 1;                    // abmilp: depth - 1 x (Linear(D,D) + act), then Linear(D,1). vjepa: 1 + the
                                    // self-attention blocks after the cross-attention block
  std::string act = "relu";         // tanh | relu (depth >= 2)
  std::string sa = "none";          // none | map | both: one-head self-attention on the scorer input / values
  std::string cond = "none";        // none | pe: add a 2-D sin-cos table (trained, as the official runs) to the scorer input
  std::string content = "patch";    // abmilp: patch | all (all = every token, prefix tokens included);
                                    // ep: patch, or all for ep_all ([cls] + patches, registers left out)
  // EP option: the pooled width is D / d_out (EP's --d_out: v = Linear(D, D / d_out), M chunks of it).
  int d_out = 1;
  // aim / vjepa options.
  int heads = 16;                   // attention heads (EP repository's --num_heads, default 16)
  bool proj = true;                 // vjepa: apply the cross-attention's output projection (see poolers.h)
  // k-NN options.
  std::string knn_feature = "cls";  // cls | mean | cls+mean

  /// True for heads with parameters trained by gradient descent (all but knn).
  bool trainable() const { return kind != HeadKind::Knn; }
  /// True when the aggregation learns where to look (abmilp, ep, simpool, aim, vjepa).
  bool learned_pooling() const;
  /// True when the aggregation reads the encoder's attention of the probed block.
  bool needs_attention() const;
  /// True when a learned pooling reads prefix tokens (abmilp content=all, ep_all): its pooling weights need
  /// all tokens, not the patches alone.
  bool reads_prefix_tokens() const;
  /// True when the head weights patches, i.e. has per-patch pooling weights to draw (`vitprobe maps`).
  bool weights_patches() const;
  /// Number of per-patch weight maps of a head that weights patches: M for ep, the heads of aim and vjepa, else 1.
  int num_pooling_maps() const;
  /// True when the aggregation reads the oracle's attention (dino): the run needs --oracle-model.
  bool needs_oracle() const { return kind == HeadKind::Dino; }
};

/// Parses one head, e.g. "abmilp:depth=2,act=tanh"; throws BadInput naming the text and the valid values.
HeadSpec parse_head_spec(const std::string& text);

/// Parses a `--heads` list (see the file comment); duplicates are an error.
std::vector<HeadSpec> parse_head_list(const std::string& text);

/// The head names `--heads` knows, for --help texts.
std::string head_syntax_help();

/// The type word of a kind ("abmilp", "ep", ...), as written in head configs (ep_all is type "ep" with
/// content "all").
std::string head_kind_name(HeadKind kind);

}  // namespace vitprobe
