#pragma once
// The `--heads` language: which aggregation each probe head uses, with its options, e.g.
//   cls, mean, cls+mean, center:4, cattn:4, attn-mean, attn-minent,
//   abmilp, abmilp:depth=2,act=tanh,sa=both,cond=pe,content=all, ep:32, simpool, mhca, knn, knn:feature=mean, dino
// A comma separates heads; an item of the form key=value continues the options of the head before it, so
// `--heads cls,abmilp:depth=2,act=tanh,mean` is three heads. ';' also separates heads.
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
  EfficientProbing,     // M learned queries, no key projection (Psomas et al., EP)
  SimPool,              // GAP query, LayerNorm'd keys/values, one-head cross-attention
  MultiHeadCrossAttention,  // one learned query, q/k/v projections, heads = encoder heads (AIM / V-JEPA)
  Knn,                  // weighted k-NN on L2-normalised features; nothing trained
  Dino,                 // patches weighted by a second encoder's (the oracle's, --oracle-model) last-block [cls]
                        // attention averaged over heads (official "dino", beyond_cls models_vit.py:337-350)
};

/// One parsed head.
struct HeadSpec {
  std::string name;  // canonical text: options in a fixed order, defaults left out ("abmilp:depth=2,act=tanh")
  HeadKind kind = HeadKind::Cls;
  int size = 0;      // N of center:N / cattn:N, M of ep:M
  // AbMILP options; the defaults are the paper's ImageNet setting.
  int depth = 1;                    // 1: Linear(D,1) scorer; 2: Linear(D,D) + act + Linear(D,1)
  std::string act = "relu";         // tanh | relu (depth 2)
  std::string sa = "none";          // none | map | both: one-head self-attention on the scorer input / values
  std::string cond = "none";        // none | pe: add the fixed 2-D sin-cos table to the scorer input
  std::string content = "patch";    // patch | all (all = every token, prefix tokens included)
  // k-NN options.
  std::string knn_feature = "cls";  // cls | mean | cls+mean

  /// True for heads with parameters trained by gradient descent (all but knn).
  bool trainable() const { return kind != HeadKind::Knn; }
  /// True when the aggregation learns where to look (abmilp, ep, simpool, mhca).
  bool learned_pooling() const;
  /// True when the aggregation reads the encoder's attention of the probed block.
  bool needs_attention() const;
  /// True when the aggregation reads the oracle's attention (dino): the run needs --oracle-model.
  bool needs_oracle() const { return kind == HeadKind::Dino; }
};

/// Parses one head, e.g. "abmilp:depth=2,act=tanh"; throws BadInput naming the text and the valid values.
HeadSpec parse_head_spec(const std::string& text);

/// Parses a `--heads` list (see the file comment); duplicates are an error.
std::vector<HeadSpec> parse_head_list(const std::string& text);

/// The head names `--heads` knows, for --help texts.
std::string head_syntax_help();

/// The type word of a kind ("abmilp", "ep", ...), as written in head configs.
std::string head_kind_name(HeadKind kind);

}  // namespace vitprobe
