#pragma once
// The demo's per-claim verdicts: the paper's four claims that the demo can test at its scale, the paper's
// evidence for each (quoted from docs/PAPER.md), and explicit rules that turn this run's measurements into
// "reproduced", "not reproduced" or "inconclusive" with a reason. Pure functions of numbers, so the rules are
// unit-tested apart from the run that feeds them.
#include <string>
#include <vector>

namespace vitprobe {

enum class Verdict { Reproduced, NotReproduced, Inconclusive };

/// "reproduced", "not reproduced" or "inconclusive".
std::string verdict_name(Verdict verdict);

/// One claim and the paper's evidence for it, with the section of docs/PAPER.md the numbers come from.
struct PaperClaim {
  std::string id;        // cls-self, cls-entropy, abmilp-gain, tuned-cls-mean
  std::string claim;
  std::string evidence;
  std::string section;
};

/// The four claims in report order (the table the report opens with).
const std::vector<PaperClaim>& paper_claims();

/// The thresholds of the rules; the report states them (verdict_rules_markdown).
struct VerdictRules {
  double deep_fraction = 0.5;         // deep blocks: the last half (blocks floor(depth/2) .. depth-1)
  double mostly_self = 0.5;           // "attends mostly to itself": A[cls,cls] above this
  double near_uniform = 0.9;          // "near uniform": [cls]->patch entropy at least this fraction of ln(patches)
  double untrained_uniform = 0.98;    // a reference whose entropy is at least this fraction of ln(patches) in
                                      // every block attends like an untrained ViT: no comparison against it
  double std_multiple = 2.0;          // a difference is real beyond this many seed standard deviations ...
  double min_effect = 0.5;            // ... and beyond this many points of top-1
  double max_noise = 2.0;             // "equivalent" only when std_multiple x std is at most this many points
};

/// The rules as a markdown list for the report.
std::string verdict_rules_markdown(const VerdictRules& rules);

/// Per-block attention statistics of one encoder (means over images and heads).
struct EncoderAttention {
  std::string label;
  std::vector<double> cls_self;            // cls_cls_attention: A[cls, cls]
  std::vector<double> cls_patch_entropy;   // cls_pos_entropy (nats)
  int num_patches = 0;
};

/// Whether a head's chosen learning rate is known to be tuned: Bracketed when, for every seed, it lies strictly
/// inside the grid; AtGridEdge when it sat at an end of the grid for some seed; Unknown when that is not known
/// (probe records null with fewer than 3 rates, or the results lack the flag). Only Bracketed counts as tuned.
enum class RateChoice { Bracketed, AtGridEdge, Unknown };

/// Per-seed validation top-1 (in %) of the heads a claim compares, each at its own chosen rate, and how each
/// head's rate was chosen.
struct EncoderAccuracy {
  std::string label;
  std::vector<double> cls, mean, abmilp;
  RateChoice cls_rate = RateChoice::Bracketed, mean_rate = RateChoice::Bracketed, abmilp_rate = RateChoice::Bracketed;
  bool untrained = false;  // its attention looks untrained (looks_untrained): its accuracies say nothing of its kind
};

/// A verdict with the measurement it rests on and the reason in words.
struct ClaimVerdict {
  Verdict verdict = Verdict::Inconclusive;
  std::string measured;
  std::string reason;
};

/// Whether an encoder attends like an untrained ViT: [cls]->patch entropy >= rules.untrained_uniform x ln(patches)
/// in every block.
bool looks_untrained(const EncoderAttention& encoder, const VerdictRules& rules);

/// The first deep block of a `depth`-block encoder.
int first_deep_block(int depth, const VerdictRules& rules);

/// Claim cls-self: MAE's [cls] gives more than `mostly_self` of its attention to itself in every deep block,
/// and more than the JEA's does in each. Both attention claims are inconclusive when either encoder attends
/// like an untrained ViT ([cls]->patch entropy >= `untrained_uniform` x ln(patches) in every block).
ClaimVerdict cls_self_verdict(const EncoderAttention& mim, const EncoderAttention& jea, const VerdictRules& rules);

/// Claim cls-entropy: MAE's [cls]->patch entropy is at least `near_uniform` x ln(patches) in every deep block
/// and above the JEA's in each.
ClaimVerdict cls_entropy_verdict(const EncoderAttention& mim, const EncoderAttention& jea, const VerdictRules& rules);

/// How per-seed values of a difference compare with zero.
enum class Difference { Positive, Negative, Equivalent, Unresolved };

/// Mean and population standard deviation (ddof 0, as probe's results) of `values`; NaN for none.
std::pair<double, double> mean_and_std(const std::vector<double>& values);

/// The rule for per-seed differences: Unresolved with fewer than 2 seeds; Positive / Negative when |mean| >
/// max(std_multiple x std, min_effect); Equivalent when not and std_multiple x std <= max_noise; else
/// Unresolved (the seeds spread too much to call two numbers equal).
Difference compare_seeds(const std::vector<double>& differences, const VerdictRules& rules);

/// Claim abmilp-gain: per seed, (AbMILP - [cls]) on MAE minus (AbMILP - [cls]) on the JEA; Positive ->
/// reproduced, Negative or Equivalent -> not reproduced, Unresolved -> inconclusive. Inconclusive too when the
/// [cls] or AbMILP rate of either encoder is not Bracketed (the gains would compare untuned heads).
ClaimVerdict abmilp_gain_verdict(const EncoderAccuracy& mim, const EncoderAccuracy& jea, const VerdictRules& rules);

/// Claim tuned-cls-mean: per encoder and seed, mean pooling - [cls]. An encoder whose [cls] or mean rate is not
/// Bracketed is not tuned and left out. Reproduced when Equivalent for every encoder, not reproduced when any
/// tuned encoder is Positive or Negative, else inconclusive (the reason says how many encoders were tuned).
ClaimVerdict tuned_cls_mean_verdict(const std::vector<EncoderAccuracy>& encoders, const VerdictRules& rules);

}  // namespace vitprobe
