#include "jobs/demo_verdicts.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/errors.h"

namespace vitprobe {
namespace {

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

// "0.61, 0.72, 0.80" of values[first..].
std::string block_values(const std::vector<double>& values, int first, const char* pattern) {
  std::string text;
  for (size_t block = static_cast<size_t>(first); block < values.size(); ++block) {
    text += (text.empty() ? "" : ", ") + format(pattern, values[block]);
  }
  return text;
}

std::string block_range(int first, size_t depth) {
  return first + 1 == static_cast<int>(depth) ? "block " + std::to_string(first)
                                              : "blocks " + std::to_string(first) + "-" + std::to_string(depth - 1);
}

// "+1.20 ± 0.30"; one value has no spread, so no "± 0.00" that would read as a measured zero.
std::string mean_std_text(const std::vector<double>& values) {
  const auto [mean, std] = mean_and_std(values);
  return values.size() < 2 ? format("%+.2f", mean) : format("%+.2f", mean) + " ± " + format("%.2f", std);
}

// "MAE (mean at an end of the learning-rate grid; cls: not known to be bracketed by the grid)" for the heads of `encoder`
// (name, choice) whose rate is not Bracketed; empty when all are.
std::string untuned_heads(const EncoderAccuracy& encoder, const std::vector<std::pair<std::string, RateChoice>>& heads) {
  std::string edge, unknown;
  for (const auto& [name, rate] : heads) {
    if (rate == RateChoice::AtGridEdge) edge += (edge.empty() ? "" : ", ") + name;
    if (rate == RateChoice::Unknown) unknown += (unknown.empty() ? "" : ", ") + name;
  }
  if (edge.empty() && unknown.empty()) return "";
  std::string text = encoder.label + " (";
  if (!edge.empty()) text += edge + " at an end of the learning-rate grid";
  if (!unknown.empty()) text += (edge.empty() ? "" : "; ") + unknown + ": not known to be bracketed by the grid";
  return text + ")";
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string text;
  for (const auto& part : parts) text += (text.empty() ? "" : separator) + part;
  return text;
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) {
    throw BadInput("demo verdicts: " + std::to_string(a.size()) + " seeds against " + std::to_string(b.size()));
  }
  std::vector<double> out;
  for (size_t i = 0; i < a.size(); ++i) out.push_back(a[i] - b[i]);
  return out;
}

void check_attention(const EncoderAttention& encoder) {
  if (encoder.cls_self.empty() || encoder.cls_self.size() != encoder.cls_patch_entropy.size() || encoder.num_patches < 2) {
    throw BadInput("demo verdicts: " + encoder.label + " has " + std::to_string(encoder.cls_self.size()) + " [cls] blocks, " +
                   std::to_string(encoder.cls_patch_entropy.size()) + " entropy blocks and " +
                   std::to_string(encoder.num_patches) + " patches");
  }
}

// Whether `encoder`'s [cls]->patch attention is uniform in every block, as an untrained ViT's is.
// Why the attention claims cannot be judged when `untrained` (the MIM encoder, the JEA or both) attends uniformly.
std::string untrained_reason(const std::vector<const EncoderAttention*>& untrained, bool mim_untrained,
                             bool jea_untrained, const VerdictRules& rules) {
  std::string labels;
  for (const auto* encoder : untrained) labels += (labels.empty() ? "" : " and ") + encoder->label;
  const std::string what = mim_untrained && jea_untrained
                               ? "neither encoder was trained into a [cls] to test the claim on or compare with"
                           : mim_untrained ? "its [cls] attention shows no MIM training to test the claim on"
                                           : "there is no JEA reference to compare with";
  return labels + "'s [cls]->patch entropy is at least " + format("%.0f", 100 * rules.untrained_uniform) + "% of ln(" +
         std::to_string(untrained.front()->num_patches) + ") in every block: " +
         (untrained.size() > 1 ? "they attend" : "it attends") + " like an untrained ViT, so " + what;
}

// The shared skeleton of the two attention claims: `holds(block)` is the claim's condition on MAE alone,
// `above(block)` the comparison with the JEA in that block.
template <class Holds, class Above>
ClaimVerdict attention_verdict(const EncoderAttention& mim, const EncoderAttention& jea, const VerdictRules& rules,
                               std::string measured, Holds holds, Above above, const std::string& condition,
                               const std::string& comparison) {
  ClaimVerdict verdict;
  verdict.measured = std::move(measured);
  // A uniform MIM encoder would pass the entropy claim trivially; a uniform JEA is no reference.
  const bool mim_untrained = looks_untrained(mim, rules), jea_untrained = looks_untrained(jea, rules);
  if (mim_untrained || jea_untrained) {
    std::vector<const EncoderAttention*> untrained;
    if (mim_untrained) untrained.push_back(&mim);
    if (jea_untrained) untrained.push_back(&jea);
    verdict.reason = untrained_reason(untrained, mim_untrained, jea_untrained, rules);
    return verdict;
  }
  const int depth = static_cast<int>(mim.cls_self.size());
  const int first = first_deep_block(depth, rules);
  int n_holds = 0, n_above = 0, n = 0;
  for (int block = first; block < depth; ++block, ++n) {
    n_holds += holds(block) ? 1 : 0;
    n_above += above(block) ? 1 : 0;
  }
  const std::string where = " in " + block_range(first, static_cast<size_t>(depth));
  if (n_holds == n && n_above == n) {
    verdict.verdict = Verdict::Reproduced;
    verdict.reason = mim.label + " " + condition + " and " + comparison + " in every deep block (" + block_range(first, depth) + ")";
  } else if (n_holds == 0 || n_above == 0) {
    verdict.verdict = Verdict::NotReproduced;
    verdict.reason = n_holds == 0 ? mim.label + " never " + condition + where
                                  : mim.label + " never " + comparison + where;
  } else {
    verdict.reason = "mixed over the deep blocks: " + mim.label + " " + condition + " in " + std::to_string(n_holds) + " of " +
                     std::to_string(n) + " and " + comparison + " in " + std::to_string(n_above) + " of " + std::to_string(n);
  }
  return verdict;
}

}  // namespace

bool looks_untrained(const EncoderAttention& encoder, const VerdictRules& rules) {
  const double uniform = std::log(static_cast<double>(encoder.num_patches));
  return std::all_of(encoder.cls_patch_entropy.begin(), encoder.cls_patch_entropy.end(),
                     [&](double h) { return h >= rules.untrained_uniform * uniform; });
}

std::string verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::Reproduced: return "reproduced";
    case Verdict::NotReproduced: return "not reproduced";
    case Verdict::Inconclusive: return "inconclusive";
  }
  return "inconclusive";
}

const std::vector<PaperClaim>& paper_claims() {
  static const std::vector<PaperClaim> claims = {
      {"cls-self", "MAE's [cls] attends mostly to itself in the deep blocks",
       "\"MAE's [cls] token attends primarily to itself\" (the paper's per-block attention figures; PAPER.md quotes "
       "no values)",
       "The paper"},
      {"cls-entropy", "MAE's [cls]->patch attention is high-entropy, near uniform",
       "\"what it gives to the patches is spread almost uniformly, so it cannot select the relevant ones\" (no "
       "values in PAPER.md)",
       "The paper"},
      {"abmilp-gain", "Patch aggregation (AbMILP) gains more over the [cls] probe for MAE than for a JEA (DINO)",
       "MAE ViT-B/16 ImageNet-1k linear probe 67.8 -> 71.6 with AbMILP (+3.8); efficient probing: MAE ViT-B 67.7 -> "
       "75.6 (+7.9) but DINO ViT-B 77.3 -> 77.8 (+0.5)",
       "The paper; Related results (Psomas et al.)"},
      {"tuned-cls-mean", "With a tuned rate per representation, [cls] and mean pooling are equivalent",
       "MAE ViT-B: LP 67.7 vs GAP 66.7 at the same rate (Psomas et al.); the critical note: \"with the learning rate "
       "tuned for each, the two are equivalent\"",
       "The paper (critical note); Related results"},
  };
  return claims;
}

std::string verdict_rules_markdown(const VerdictRules& rules) {
  std::ostringstream out;
  out << "- Deep blocks: the last " << format("%.0f", 100 * rules.deep_fraction)
      << "% of the blocks. Attention values are means over the statistics images and the heads, per block.\n"
      << "- [cls] attends mostly to itself: A[cls,cls] > " << format("%g", rules.mostly_self)
      << " (more than half of its attention). Near uniform: [cls]->patch entropy >= " << format("%g", rules.near_uniform)
      << " x ln(patches). Each attention claim is reproduced when MAE meets the condition and exceeds DINO in every "
         "deep block, not reproduced when it meets it in none or exceeds DINO in none, inconclusive when mixed; and "
         "inconclusive when MAE's or DINO's [cls]->patch entropy is >= "
      << format("%g", rules.untrained_uniform)
      << " x ln(patches) in every block (that encoder attends like an untrained ViT: a uniform MAE would meet the "
         "entropy condition trivially, a uniform DINO is no reference).\n"
      << "- Accuracies: validation top-1 of each head at its own rate and epoch, chosen on the held-out part of the "
         "training split, per seed; the seeds set the heads' initialisation and data order. A compared quantity is "
         "computed per seed (a difference of heads trained with that seed) and judged by its mean and population "
         "standard deviation over the seeds: a real difference when |mean| > max("
      << format("%g", rules.std_multiple) << " x std, " << format("%g", rules.min_effect)
      << " points); equivalent when not and " << format("%g", rules.std_multiple) << " x std <= "
      << format("%g", rules.max_noise) << " points; unresolved otherwise or with one seed.\n"
      << "- A head's rate is tuned when, for every seed, the chosen rate lies strictly inside the learning-rate grid; "
         "a rate at an end of the grid, or one not known to be bracketed (fewer than 3 rates), is not tuned.\n"
      << "- AbMILP gain: (AbMILP - [cls]) on MAE minus the same on DINO; reproduced when a real positive difference, "
         "not reproduced when negative or equivalent, inconclusive when unresolved or when the [cls] or AbMILP rate "
         "of either encoder is not tuned, or when either encoder attends like an untrained ViT.\n"
      << "- Tuned [cls] vs mean: mean - [cls] per encoder; an encoder where the rate of [cls] or mean is not tuned, "
         "or that attends like an untrained ViT, is left out; reproduced when equivalent on every encoder, not reproduced when a real difference on any "
         "tuned encoder, inconclusive otherwise (the reason says how many encoders were tuned).\n";
  return out.str();
}

int first_deep_block(int depth, const VerdictRules& rules) {
  const int deep = std::max(1, static_cast<int>(std::ceil(rules.deep_fraction * depth - 1e-9)));
  return std::max(0, depth - deep);
}

ClaimVerdict cls_self_verdict(const EncoderAttention& mim, const EncoderAttention& jea, const VerdictRules& rules) {
  check_attention(mim);
  check_attention(jea);
  const int first = first_deep_block(static_cast<int>(mim.cls_self.size()), rules);
  const std::string measured = "A[cls,cls] in " + block_range(first, mim.cls_self.size()) + ": " + mim.label + " " +
                               block_values(mim.cls_self, first, "%.3f") + "; " + jea.label + " " +
                               block_values(jea.cls_self, first, "%.3f");
  return attention_verdict(
      mim, jea, rules, measured, [&](int b) { return mim.cls_self[b] > rules.mostly_self; },
      [&](int b) { return b < static_cast<int>(jea.cls_self.size()) && mim.cls_self[b] > jea.cls_self[b]; },
      "gives more than " + format("%g", rules.mostly_self) + " of its [cls] attention to itself",
      "more than " + jea.label + "'s");
}

ClaimVerdict cls_entropy_verdict(const EncoderAttention& mim, const EncoderAttention& jea, const VerdictRules& rules) {
  check_attention(mim);
  check_attention(jea);
  const int first = first_deep_block(static_cast<int>(mim.cls_patch_entropy.size()), rules);
  const double uniform = std::log(static_cast<double>(mim.num_patches));
  const std::string measured = "[cls]->patch entropy in " + block_range(first, mim.cls_patch_entropy.size()) + ": " +
                               mim.label + " " + block_values(mim.cls_patch_entropy, first, "%.3f") + "; " + jea.label +
                               " " + block_values(jea.cls_patch_entropy, first, "%.3f") + " (uniform: ln " +
                               std::to_string(mim.num_patches) + " = " + format("%.3f", uniform) + ")";
  return attention_verdict(
      mim, jea, rules, measured, [&](int b) { return mim.cls_patch_entropy[b] >= rules.near_uniform * uniform; },
      [&](int b) {
        return b < static_cast<int>(jea.cls_patch_entropy.size()) && mim.cls_patch_entropy[b] > jea.cls_patch_entropy[b];
      },
      "has entropy >= " + format("%g", rules.near_uniform) + " x ln(patches) = " + format("%.3f", rules.near_uniform * uniform),
      "is above " + jea.label + "'s");
}

std::pair<double, double> mean_and_std(const std::vector<double>& values) {
  if (values.empty()) return {std::nan(""), std::nan("")};
  double sum = 0;
  for (double value : values) sum += value;
  const double mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (double value : values) squares += (value - mean) * (value - mean);
  return {mean, std::sqrt(squares / static_cast<double>(values.size()))};
}

Difference compare_seeds(const std::vector<double>& differences, const VerdictRules& rules) {
  if (differences.size() < 2) return Difference::Unresolved;
  const auto [mean, std] = mean_and_std(differences);
  if (!std::isfinite(mean) || !std::isfinite(std)) return Difference::Unresolved;
  const double threshold = std::max(rules.std_multiple * std, rules.min_effect);
  if (mean > threshold) return Difference::Positive;
  if (mean < -threshold) return Difference::Negative;
  return rules.std_multiple * std <= rules.max_noise ? Difference::Equivalent : Difference::Unresolved;
}

ClaimVerdict abmilp_gain_verdict(const EncoderAccuracy& mim, const EncoderAccuracy& jea, const VerdictRules& rules) {
  const auto mim_gain = minus(mim.abmilp, mim.cls), jea_gain = minus(jea.abmilp, jea.cls);
  const auto difference = minus(mim_gain, jea_gain);
  ClaimVerdict verdict;
  verdict.measured = "AbMILP - [cls] top-1: " + mim.label + " " + mean_std_text(mim_gain) + ", " + jea.label + " " +
                     mean_std_text(jea_gain) + "; difference " + mean_std_text(difference) + " points (" +
                     std::to_string(difference.size()) + " seed" + (difference.size() == 1 ? "" : "s") + ")";
  std::string seeds_say;
  switch (compare_seeds(difference, rules)) {
    case Difference::Positive:
      verdict.verdict = Verdict::Reproduced;
      seeds_say = "AbMILP gains more on " + mim.label + ", beyond the seeds' spread";
      break;
    case Difference::Negative:
      verdict.verdict = Verdict::NotReproduced;
      seeds_say = "AbMILP gains more on " + jea.label + ", beyond the seeds' spread";
      break;
    case Difference::Equivalent:
      verdict.verdict = Verdict::NotReproduced;
      seeds_say = "the two gains are equal within the seeds' spread";
      break;
    case Difference::Unresolved:
      seeds_say = difference.size() < 2 ? "one seed: no spread to judge the difference against"
                                        : "the seeds spread too much to tell the gains apart";
      break;
  }
  // The same rule as the tuned-rate claim: a gain measured on a head whose rate is not tuned says nothing.
  std::vector<std::string> untuned;
  for (const auto* encoder : {&mim, &jea}) {
    const auto text = untuned_heads(*encoder, {{"cls", encoder->cls_rate}, {"abmilp", encoder->abmilp_rate}});
    if (!text.empty()) untuned.push_back(text);
  }
  std::vector<std::string> untrained;
  for (const auto* encoder : {&mim, &jea}) {
    if (encoder->untrained) untrained.push_back(encoder->label);
  }
  if (!untrained.empty()) {
    verdict.verdict = Verdict::Inconclusive;
    verdict.reason = join(untrained, " and ") + " attends like an untrained ViT, so the gains do not compare a trained "
                     "MIM with a trained JEA (at these rates: " + seeds_say + ")";
  } else if (untuned.empty()) {
    verdict.reason = seeds_say;
  } else {
    verdict.verdict = Verdict::Inconclusive;
    verdict.reason = "not tuned: " + join(untuned, ", ") + ", so the gains compare heads at untuned rates (at these "
                     "rates: " + seeds_say + ")";
  }
  return verdict;
}

ClaimVerdict tuned_cls_mean_verdict(const std::vector<EncoderAccuracy>& encoders, const VerdictRules& rules) {
  ClaimVerdict verdict;
  if (encoders.empty()) throw BadInput("demo verdicts: no encoder to compare [cls] and mean pooling on");
  std::vector<std::string> untuned, differing, equivalent, unresolved;
  for (const auto& encoder : encoders) {
    const auto difference = minus(encoder.mean, encoder.cls);
    verdict.measured += (verdict.measured.empty() ? "mean - [cls] top-1: " : ", ") + encoder.label + " " +
                        mean_std_text(difference);
    auto not_tuned = untuned_heads(encoder, {{"cls", encoder.cls_rate}, {"mean", encoder.mean_rate}});
    if (encoder.untrained) not_tuned = encoder.label + " (attends like an untrained ViT)";
    if (!not_tuned.empty()) {  // not tuned: this encoder's comparison counts for nothing
      untuned.push_back(not_tuned);
      continue;
    }
    switch (compare_seeds(difference, rules)) {
      case Difference::Positive: case Difference::Negative: differing.push_back(encoder.label); break;
      case Difference::Equivalent: equivalent.push_back(encoder.label); break;
      case Difference::Unresolved: unresolved.push_back(encoder.label); break;
    }
  }
  const size_t n_seeds = encoders.front().cls.size();
  verdict.measured += " points (" + std::to_string(n_seeds) + " seed" + (n_seeds == 1 ? "" : "s") + ")";
  const size_t n_tuned = encoders.size() - untuned.size();
  const std::string untuned_note = untuned.empty() ? "" : "; not tuned or untrained, left out: " + join(untuned, ", ");
  if (!differing.empty()) {
    verdict.verdict = Verdict::NotReproduced;
    verdict.reason = "[cls] and mean pooling differ beyond the seeds' spread on " + join(differing, ", ") +
                     ", each at its own tuned rate" + untuned_note;
  } else if (equivalent.size() == encoders.size()) {
    verdict.verdict = Verdict::Reproduced;
    verdict.reason = "equal within the seeds' spread on every encoder, each at its own tuned rate";
  } else if (n_tuned == 0) {
    verdict.reason = "no encoder has both rates tuned and attends like a trained ViT, so nothing to compare: " + join(untuned, ", ");
  } else {
    std::vector<std::string> parts;
    if (!equivalent.empty()) parts.push_back("equal within the seeds' spread on " + join(equivalent, ", "));
    if (!unresolved.empty()) {
      parts.push_back((n_seeds < 2 ? "one seed, no spread to judge the difference against, on "
                                   : "the seeds spread too much to call the two equal on ") +
                      join(unresolved, ", "));
    }
    verdict.reason = std::to_string(n_tuned) + " of " + std::to_string(encoders.size()) + " encoders tuned: " +
                     join(parts, "; ") + untuned_note;
  }
  return verdict;
}

}  // namespace vitprobe
