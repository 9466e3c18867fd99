// The demo report's pieces: the per-claim verdict rules, heading demotion, the markdown-to-HTML subset with
// embedded images, and the SVG outputs the figures gained (image grids, log-x dashed line plots).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "jobs/demo_figures.h"
#include "jobs/demo_html.h"
#include "jobs/demo_verdicts.h"
#include "report/image_grid.h"
#include "report/plot.h"
#include "test_data_fixtures.h"

namespace vitprobe {
namespace {

std::string read_all(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

EncoderAttention attention(const std::string& label, std::vector<double> cls_self, std::vector<double> entropy) {
  return {label, std::move(cls_self), std::move(entropy), 49};
}

// A JEA reference that learned: its [cls]->patch entropy well below ln 49 = 3.89 in the deep blocks.
EncoderAttention trained_jea() { return attention("DINO", {0.1, 0.1, 0.1, 0.1}, {3.5, 3.0, 2.5, 2.0}); }

TEST(DemoVerdicts, DeepBlocksAreTheLastHalf) {
  const VerdictRules rules;
  EXPECT_EQ(first_deep_block(6, rules), 3);
  EXPECT_EQ(first_deep_block(12, rules), 6);
  EXPECT_EQ(first_deep_block(5, rules), 2);
  EXPECT_EQ(first_deep_block(1, rules), 0);
}

TEST(DemoVerdicts, ClsSelfAttention) {
  const VerdictRules rules;
  const auto reproduced = cls_self_verdict(attention("MAE", {0.2, 0.3, 0.6, 0.8}, {3.8, 3.8, 3.8, 3.8}), trained_jea(), rules);
  EXPECT_EQ(reproduced.verdict, Verdict::Reproduced) << reproduced.reason;
  EXPECT_NE(reproduced.measured.find("0.600, 0.800"), std::string::npos) << reproduced.measured;
  const auto not_reproduced = cls_self_verdict(attention("MAE", {0.9, 0.9, 0.2, 0.3}, {3.8, 3.8, 3.8, 3.8}), trained_jea(), rules);
  EXPECT_EQ(not_reproduced.verdict, Verdict::NotReproduced) << not_reproduced.reason;
  const auto mixed = cls_self_verdict(attention("MAE", {0.2, 0.3, 0.6, 0.4}, {3.8, 3.8, 3.8, 3.8}), trained_jea(), rules);
  EXPECT_EQ(mixed.verdict, Verdict::Inconclusive) << mixed.reason;
  // Above half but below the JEA's in every deep block: not the MIM-vs-JEA difference the paper reports.
  const auto below_jea = cls_self_verdict(attention("MAE", {0.6, 0.6, 0.6, 0.6}, {3.8, 3.8, 3.8, 3.8}),
                                          attention("DINO", {0.7, 0.7, 0.7, 0.7}, {3.0, 3.0, 3.0, 3.0}), rules);
  EXPECT_EQ(below_jea.verdict, Verdict::NotReproduced) << below_jea.reason;
}

TEST(DemoVerdicts, UntrainedReferenceMakesAttentionClaimsInconclusive) {
  const VerdictRules rules;
  const auto uniform = attention("DINO", {0.02, 0.02, 0.02, 0.02}, {3.889, 3.887, 3.886, 3.885});
  const auto mae = attention("MAE", {0.2, 0.3, 0.6, 0.8}, {3.8, 3.8, 3.8, 3.8});
  EXPECT_EQ(cls_self_verdict(mae, uniform, rules).verdict, Verdict::Inconclusive);
  const auto entropy = cls_entropy_verdict(mae, uniform, rules);
  EXPECT_EQ(entropy.verdict, Verdict::Inconclusive);
  EXPECT_NE(entropy.reason.find("untrained"), std::string::npos) << entropy.reason;
  EXPECT_NE(entropy.measured.find("ln 49 = 3.892"), std::string::npos) << entropy.measured;
}

TEST(DemoVerdicts, UntrainedMimMakesAttentionClaimsInconclusive) {
  const VerdictRules rules;
  // A MAE whose [cls]->patch entropy is ~ln 49 in every block would pass "near uniform" trivially.
  const auto uniform_mae = attention("MAE", {0.6, 0.7, 0.8, 0.9}, {3.889, 3.888, 3.890, 3.887});
  const auto entropy = cls_entropy_verdict(uniform_mae, trained_jea(), rules);
  EXPECT_EQ(entropy.verdict, Verdict::Inconclusive) << entropy.reason;
  EXPECT_EQ(entropy.reason.rfind("MAE's [cls]->patch entropy", 0), 0u) << entropy.reason;
  EXPECT_NE(entropy.reason.find("untrained"), std::string::npos) << entropy.reason;
  EXPECT_EQ(entropy.reason.find("DINO"), std::string::npos) << entropy.reason;  // the trained JEA is not blamed
  const auto self = cls_self_verdict(uniform_mae, trained_jea(), rules);
  EXPECT_EQ(self.verdict, Verdict::Inconclusive) << self.reason;
  // Both uniform: the reason names both.
  const auto both = cls_entropy_verdict(uniform_mae, attention("DINO", {0.1, 0.1, 0.1, 0.1}, {3.89, 3.89, 3.89, 3.89}), rules);
  EXPECT_EQ(both.verdict, Verdict::Inconclusive);
  EXPECT_NE(both.reason.find("MAE and DINO"), std::string::npos) << both.reason;
}

TEST(DemoVerdicts, ClsEntropy) {
  const VerdictRules rules;  // near uniform: >= 0.9 x ln 49 = 3.50
  EXPECT_EQ(cls_entropy_verdict(attention("MAE", {0, 0, 0, 0}, {3.0, 3.0, 3.7, 3.8}), trained_jea(), rules).verdict,
            Verdict::Reproduced);
  EXPECT_EQ(cls_entropy_verdict(attention("MAE", {0, 0, 0, 0}, {3.8, 3.8, 2.0, 1.5}), trained_jea(), rules).verdict,
            Verdict::NotReproduced);
  EXPECT_EQ(cls_entropy_verdict(attention("MAE", {0, 0, 0, 0}, {3.8, 3.8, 3.6, 1.5}), trained_jea(), rules).verdict,
            Verdict::Inconclusive);
  EXPECT_THROW(cls_entropy_verdict(attention("MAE", {0, 0}, {3.8}), trained_jea(), rules), BadInput);
}

TEST(DemoVerdicts, SeedComparisonRule) {
  const VerdictRules rules;  // real beyond max(2 std, 0.5); equivalent when 2 std <= 2
  EXPECT_EQ(compare_seeds({3.0}, rules), Difference::Unresolved);  // one seed
  EXPECT_EQ(compare_seeds({2.0, 2.2, 1.8}, rules), Difference::Positive);
  EXPECT_EQ(compare_seeds({-2.0, -2.2, -1.8}, rules), Difference::Negative);
  EXPECT_EQ(compare_seeds({0.3, 0.2, 0.4}, rules), Difference::Equivalent);  // |0.3| < 0.5 minimum effect
  EXPECT_EQ(compare_seeds({1.0, 0.0, 1.5}, rules), Difference::Equivalent);  // 0.83 within 2 x 0.62 = 1.25
  EXPECT_EQ(compare_seeds({4.0, -3.0, 1.0}, rules), Difference::Unresolved);  // spread too wide to call equal
  const auto [mean, std] = mean_and_std({1.0, 2.0, 3.0});
  EXPECT_DOUBLE_EQ(mean, 2.0);
  EXPECT_NEAR(std, std::sqrt(2.0 / 3.0), 1e-12);  // population, as probe's results
}

TEST(DemoVerdicts, AbmilpGain) {
  const VerdictRules rules;
  EncoderAccuracy mae{"MAE", {70, 71, 70.5}, {70, 71, 70.5}, {74, 75, 74.5}};
  EncoderAccuracy dino{"DINO", {80, 80.5, 81}, {80, 80.5, 81}, {80.5, 81, 81.5}};
  const auto verdict = abmilp_gain_verdict(mae, dino, rules);
  EXPECT_EQ(verdict.verdict, Verdict::Reproduced) << verdict.reason;
  EXPECT_NE(verdict.measured.find("MAE +4.00 ± 0.00"), std::string::npos) << verdict.measured;
  EXPECT_NE(verdict.measured.find("3 seeds"), std::string::npos);
  EXPECT_EQ(abmilp_gain_verdict(dino, mae, rules).verdict, Verdict::NotReproduced);
  EncoderAccuracy same{"DINO", {80, 80.5, 81}, {80, 80.5, 81}, {84, 84.5, 85}};
  EXPECT_EQ(abmilp_gain_verdict(mae, same, rules).verdict, Verdict::NotReproduced);  // equal gains
  EncoderAccuracy one_seed_mae{"MAE", {70}, {70}, {74}}, one_seed_dino{"DINO", {80}, {80}, {80}};
  EXPECT_EQ(abmilp_gain_verdict(one_seed_mae, one_seed_dino, rules).verdict, Verdict::Inconclusive);
  EncoderAccuracy two_seeds{"DINO", {80, 81}, {80, 81}, {80, 81}};
  EXPECT_THROW(abmilp_gain_verdict(mae, two_seeds, rules), BadInput);  // seed counts differ
  // One seed: the measurement shows no "± 0.00" spread it did not measure.
  const auto one_seed = abmilp_gain_verdict(one_seed_mae, one_seed_dino, rules);
  EXPECT_EQ(one_seed.measured.find("±"), std::string::npos) << one_seed.measured;
  EXPECT_NE(one_seed.measured.find("MAE +4.00, DINO +0.00; difference +4.00 points (1 seed)"), std::string::npos)
      << one_seed.measured;
}

TEST(DemoVerdicts, AbmilpGainNeedsTunedRates) {
  const VerdictRules rules;
  EncoderAccuracy mae{"MAE", {70, 71, 70.5}, {70, 71, 70.5}, {74, 75, 74.5}};
  EncoderAccuracy dino{"DINO", {80, 80.5, 81}, {80, 80.5, 81}, {80.5, 81, 81.5}};
  ASSERT_EQ(abmilp_gain_verdict(mae, dino, rules).verdict, Verdict::Reproduced);
  mae.abmilp_rate = RateChoice::AtGridEdge;  // the same numbers, but AbMILP's rate is not tuned
  const auto edge = abmilp_gain_verdict(mae, dino, rules);
  EXPECT_EQ(edge.verdict, Verdict::Inconclusive) << edge.reason;
  EXPECT_NE(edge.reason.find("MAE (abmilp at an end of the learning-rate grid)"), std::string::npos) << edge.reason;
  EXPECT_NE(edge.reason.find("AbMILP gains more on MAE"), std::string::npos) << edge.reason;  // what the seeds say
  mae.abmilp_rate = RateChoice::Bracketed;
  dino.cls_rate = RateChoice::Unknown;  // e.g. fewer than 3 rates
  const auto unknown = abmilp_gain_verdict(mae, dino, rules);
  EXPECT_EQ(unknown.verdict, Verdict::Inconclusive) << unknown.reason;
  EXPECT_NE(unknown.reason.find("DINO (cls: not known to be bracketed"), std::string::npos) << unknown.reason;
  dino.cls_rate = RateChoice::Bracketed;
  dino.mean_rate = RateChoice::AtGridEdge;  // mean is no part of this claim
  EXPECT_EQ(abmilp_gain_verdict(mae, dino, rules).verdict, Verdict::Reproduced);
}

// An encoder whose attention looks untrained is no example of its kind: the accuracy claims leave it out.
TEST(DemoVerdicts, AccuracyClaimsLeaveOutUntrainedEncoders) {
  const VerdictRules rules;
  EncoderAccuracy mae{"MAE", {70, 71, 70.5}, {70.2, 70.9, 70.6}, {72, 73, 72.5}};
  EncoderAccuracy dino{"DINO", {50, 51, 50.5}, {60, 61, 60.5}, {66, 67, 66.5}};
  ASSERT_EQ(abmilp_gain_verdict(mae, dino, rules).verdict, Verdict::NotReproduced);
  ASSERT_EQ(tuned_cls_mean_verdict({mae, dino}, rules).verdict, Verdict::NotReproduced);
  dino.untrained = true;
  const auto gain = abmilp_gain_verdict(mae, dino, rules);
  EXPECT_EQ(gain.verdict, Verdict::Inconclusive) << gain.reason;
  EXPECT_NE(gain.reason.find("DINO attends like an untrained ViT"), std::string::npos) << gain.reason;
  const auto tuned = tuned_cls_mean_verdict({mae, dino}, rules);
  EXPECT_EQ(tuned.verdict, Verdict::Inconclusive) << tuned.reason;  // MAE equal, DINO left out
  EXPECT_NE(tuned.reason.find("DINO (attends like an untrained ViT)"), std::string::npos) << tuned.reason;
  EncoderAttention uniform{"DINO", {0.02, 0.02}, {3.89, 3.885}, 49};
  EncoderAttention selective{"MAE", {0.02, 0.02}, {3.89, 2.5}, 49};
  EXPECT_TRUE(looks_untrained(uniform, rules));
  EXPECT_FALSE(looks_untrained(selective, rules));
}

TEST(DemoVerdicts, TunedClsAgainstMean) {
  const VerdictRules rules;
  EncoderAccuracy mae{"MAE", {70, 71, 70.5}, {70.2, 70.9, 70.6}, {}};
  EncoderAccuracy dino{"DINO", {80, 80.5, 81}, {80.1, 80.4, 81.2}, {}};
  EXPECT_EQ(tuned_cls_mean_verdict({mae, dino}, rules).verdict, Verdict::Reproduced);
  EncoderAccuracy differs{"DINO", {80, 80.5, 81}, {77, 77.5, 78}, {}};
  const auto not_reproduced = tuned_cls_mean_verdict({mae, differs}, rules);
  EXPECT_EQ(not_reproduced.verdict, Verdict::NotReproduced);
  EXPECT_NE(not_reproduced.reason.find("DINO"), std::string::npos) << not_reproduced.reason;
  mae.mean_rate = RateChoice::AtGridEdge;  // the chosen rate at the grid's edge: not tuned, whatever its numbers
  const auto edge = tuned_cls_mean_verdict({mae, dino}, rules);
  EXPECT_EQ(edge.verdict, Verdict::Inconclusive);
  EXPECT_NE(edge.reason.find("1 of 2 encoders tuned: equal within the seeds' spread on DINO"), std::string::npos)
      << edge.reason;
  EXPECT_NE(edge.reason.find("left out: MAE (mean at an end of the learning-rate grid)"), std::string::npos) << edge.reason;
  // A real difference on a tuned encoder still counts against equivalence.
  const auto edge_and_differs = tuned_cls_mean_verdict({mae, differs}, rules);
  EXPECT_EQ(edge_and_differs.verdict, Verdict::NotReproduced) << edge_and_differs.reason;
  EXPECT_NE(edge_and_differs.reason.find("left out"), std::string::npos) << edge_and_differs.reason;
  EXPECT_THROW(tuned_cls_mean_verdict({}, rules), BadInput);
}

TEST(DemoVerdicts, TunedClsAgainstMeanWithNoTunedEncoder) {
  const VerdictRules rules;
  EncoderAccuracy mae{"MAE", {70, 71, 70.5}, {70.2, 70.9, 70.6}, {}};
  EncoderAccuracy dino{"DINO", {80, 80.5, 81}, {80.1, 80.4, 81.2}, {}};
  mae.cls_rate = RateChoice::AtGridEdge;
  dino.mean_rate = RateChoice::Unknown;  // too few rates: not known to be tuned, so not tuned
  const auto none = tuned_cls_mean_verdict({mae, dino}, rules);
  EXPECT_EQ(none.verdict, Verdict::Inconclusive) << none.reason;
  EXPECT_EQ(none.reason.find("tuned encoders"), std::string::npos) << none.reason;  // no "on the tuned encoders"
  EXPECT_NE(none.reason.find("no encoder has both rates tuned"), std::string::npos) << none.reason;
  EXPECT_NE(none.reason.find("MAE (cls at an end of the learning-rate grid)"), std::string::npos) << none.reason;
  EXPECT_NE(none.reason.find("DINO (mean: not known to be bracketed"), std::string::npos) << none.reason;
  // A real difference on an untuned encoder counts for nothing.
  EncoderAccuracy differs{"DINO", {80, 80.5, 81}, {77, 77.5, 78}, {}};
  differs.cls_rate = RateChoice::AtGridEdge;
  EXPECT_EQ(tuned_cls_mean_verdict({mae, differs}, rules).verdict, Verdict::Inconclusive);
  // One tuned encoder whose seeds spread too wide: said so, with the count of tuned encoders.
  EncoderAccuracy wide{"DINO", {80, 80, 80}, {84, 77, 81}, {}};
  const auto unresolved = tuned_cls_mean_verdict({mae, wide}, rules);
  EXPECT_EQ(unresolved.verdict, Verdict::Inconclusive) << unresolved.reason;
  EXPECT_NE(unresolved.reason.find("1 of 2 encoders tuned: the seeds spread too much to call the two equal on DINO"),
            std::string::npos) << unresolved.reason;
}

TEST(DemoVerdicts, FourClaimsWithEvidenceAndNames) {
  ASSERT_EQ(paper_claims().size(), 4u);
  for (const auto& claim : paper_claims()) {
    EXPECT_FALSE(claim.evidence.empty()) << claim.id;
    EXPECT_FALSE(claim.section.empty()) << claim.id;
  }
  EXPECT_NE(paper_claims()[2].evidence.find("67.8 -> 71.6"), std::string::npos);
  EXPECT_EQ(verdict_name(Verdict::Reproduced), "reproduced");
  EXPECT_EQ(verdict_name(Verdict::NotReproduced), "not reproduced");
  EXPECT_EQ(verdict_name(Verdict::Inconclusive), "inconclusive");
  EXPECT_NE(verdict_rules_markdown(VerdictRules{}).find("max(2 x std, 0.5 points)"), std::string::npos);
}

TEST(DemoHtml, DemotesHeadingsOutsideCode) {
  EXPECT_EQ(demote_headings("# Probe results\n\ntext #1\n## Top-1\n```\n# code\n```\n", 2),
            "### Probe results\n\ntext #1\n#### Top-1\n```\n# code\n```\n");
  EXPECT_EQ(demote_headings("#hashtag\n", 1), "#hashtag\n");  // not a heading without the space
}

TEST(DemoHtml, Base64) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
}

TEST(DemoHtml, MarkdownSubset) {
  const std::string markdown = "# Title\n\n## Part\n\n| a | b |\n|---|---|\n| 1 < 2 | `x` |\n\n- one\n- two\n\n"
                               "![fig](figures/a.png)\n\n### Sub\ntext & more\n";
  std::vector<std::string> asked;
  const auto html = markdown_to_html(markdown, [&](const std::string& path) {
    asked.push_back(path);
    return image_data_uri(path, "PNGBYTES");
  });
  EXPECT_EQ(count(html, "<h1>"), 1u);
  EXPECT_NE(html.find("<h1>Title</h1>"), std::string::npos) << html;
  EXPECT_NE(html.find("<h2>Part</h2>"), std::string::npos);
  EXPECT_NE(html.find("<h3>Sub</h3>"), std::string::npos);
  EXPECT_NE(html.find("<th>a</th><th>b</th>"), std::string::npos) << html;
  EXPECT_NE(html.find("<td>1 &lt; 2</td><td><code>x</code></td>"), std::string::npos) << html;
  EXPECT_EQ(html.find("---"), std::string::npos);
  EXPECT_NE(html.find("<ul>\n<li>one</li>\n<li>two</li>\n</ul>"), std::string::npos) << html;
  EXPECT_NE(html.find("src=\"data:image/png;base64," + base64("PNGBYTES") + "\""), std::string::npos) << html;
  EXPECT_EQ(asked, std::vector<std::string>{"figures/a.png"});
  EXPECT_NE(html.find("<p>text &amp; more</p>"), std::string::npos);
  EXPECT_EQ(image_data_uri("x.svg", "<svg/>"), "data:image/svg+xml;base64," + base64("<svg/>"));
  EXPECT_THROW(image_data_uri("x.gif", ""), BadInput);
}

TEST(DemoHtml, TableCellsKeepEscapedPipes) {
  const auto html = markdown_to_html("| claim | reason |\n|---|---|\n| a \\| b | c \\|\\| d |\n| x | ends \\| |\n",
                                     [](const std::string&) { return std::string(); });
  EXPECT_NE(html.find("<tr><td>a | b</td><td>c || d</td></tr>"), std::string::npos) << html;
  EXPECT_NE(html.find("<tr><td>x</td><td>ends |</td></tr>"), std::string::npos) << html;
  EXPECT_EQ(html.find("\\"), std::string::npos) << html;
}

TEST(DemoFigures, ImageGridAndLogAxisSvg) {
  test::TempDir dir;
  ImageGrid grid;
  grid.title = "grid";
  grid.tile_size = 32;
  grid.columns = 2;
  grid.color_bar = ColorMap::Inferno;
  ImageU8 image;
  image.width = image.height = 8;
  image.pixels.assign(8 * 8 * 3, 128);
  grid.tiles = {{"a", image}, {"b", image}, {"c", image}};
  const std::string svg = (std::filesystem::path(dir.path()) / "grid.svg").string();
  write_image_grid_svg(grid, svg);
  const auto text = read_all(svg);
  const auto [width, height] = image_grid_size(grid);
  EXPECT_NE(text.find("<svg"), std::string::npos);
  EXPECT_NE(text.find("width=\"" + std::to_string(width)), std::string::npos) << text.substr(0, 300);
  EXPECT_NE(text.find("height=\"" + std::to_string(height)), std::string::npos);
  EXPECT_NE(text.find("<image"), std::string::npos);  // the tiles, embedded
  EXPECT_THROW(write_image_grid_svg(ImageGrid{}, svg), BadInput);

  Figure figure;
  Panel panel;
  panel.log_x = true;
  LineSeries solid, dashed;
  solid.label = "val";
  dashed.label = "held-out";
  dashed.dashed = true;
  for (double lr : {0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0}) {
    solid.x.push_back(lr);
    solid.y.push_back(50 + lr / 10);
    dashed.x.push_back(lr);
    dashed.y.push_back(48 + lr / 10);
  }
  dashed.x.push_back(0.0);  // not plottable on a log axis: left out
  dashed.y.push_back(10.0);
  panel.lines = {solid, dashed};
  figure.panels.push_back(panel);
  const std::string plot = (std::filesystem::path(dir.path()) / "plot.svg").string();
  write_svg(figure, plot);
  const auto plot_text = read_all(plot);
  EXPECT_NE(plot_text.find("stroke-dasharray"), std::string::npos);  // the dashed series and its legend swatch
  EXPECT_NE(plot_text.find("<svg"), std::string::npos);
}

TEST(DemoFigures, LearningRateCurvesFromProbeResults) {
  // One seed: runs carry top1 and holdout_top1; aggregated: the same keys as means, plus "seeds".
  const nlohmann::json single = {{"heads",
                                  {{{"head", "cls"}, {"type", "cls"},
                                    {"runs", {{{"base_lr", 30.0}, {"top1", 70.0}, {"holdout_top1", 69.0}},
                                              {{"base_lr", 3.0}, {"top1", 60.0}, {"holdout_top1", 61.0}}}}},
                                   {{"head", "knn"}, {"type", "knn"}, {"runs", {{{"k", 10}, {"top1", 50.0}}}}}}}};
  nlohmann::json aggregated = single;
  aggregated["seeds"] = {0, 1, 2};
  aggregated["heads"][0]["runs"][0].erase("holdout_top1");
  const Figure figure = learning_rate_figure({{"MAE", single}, {"DINO", aggregated}});
  ASSERT_EQ(figure.panels.size(), 2u);
  EXPECT_EQ(figure.columns, 2);
  const auto& mae = figure.panels[0];
  EXPECT_TRUE(mae.log_x);
  EXPECT_EQ(mae.title, "MAE");
  ASSERT_EQ(mae.lines.size(), 2u);  // knn has no rate: no line
  EXPECT_EQ(mae.lines[0].label, "cls");
  EXPECT_FALSE(mae.lines[0].dashed);
  EXPECT_EQ(mae.lines[0].x, (std::vector<double>{3.0, 30.0}));  // sorted by rate
  EXPECT_EQ(mae.lines[0].y, (std::vector<double>{60.0, 70.0}));
  EXPECT_EQ(mae.lines[1].label, "cls held-out");
  EXPECT_TRUE(mae.lines[1].dashed);
  EXPECT_EQ(mae.lines[1].y, (std::vector<double>{61.0, 69.0}));
  EXPECT_EQ(figure.panels[1].title, "DINO (mean of 3 seeds)");
  EXPECT_EQ(figure.panels[1].lines[1].x, (std::vector<double>{3.0}));  // the held-out point it has
  // Colours follow the head's name, not its place in a panel: a panel without "cls" keeps "mean"'s colour.
  nlohmann::json two_heads = single;
  two_heads["heads"].push_back(single["heads"][0]);
  two_heads["heads"][2]["head"] = "mean";
  nlohmann::json mean_only = single;
  mean_only["heads"] = {two_heads["heads"][2]};
  const Figure colors = learning_rate_figure({{"MAE", two_heads}, {"DINO", mean_only}});
  ASSERT_EQ(colors.panels.size(), 2u);
  ASSERT_EQ(colors.panels[0].lines.size(), 4u);
  ASSERT_EQ(colors.panels[1].lines.size(), 2u);
  EXPECT_EQ(colors.panels[0].lines[2].label, "mean");
  EXPECT_EQ(colors.panels[1].lines[0].label, "mean");
  const auto same = [](const Rgb& a, const Rgb& b) { return a.r == b.r && a.g == b.g && a.b == b.b; };
  EXPECT_TRUE(same(colors.panels[0].lines[2].color, colors.panels[1].lines[0].color));
  EXPECT_FALSE(same(colors.panels[0].lines[0].color, colors.panels[1].lines[0].color));  // cls and mean differ
  EXPECT_THROW(learning_rate_figure({{"MAE", {{"heads", {single["heads"][1]}}}}}), BadInput);
}

}  // namespace
}  // namespace vitprobe
