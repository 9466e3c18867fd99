#pragma once
// The options and the result of `vitprobe pretrain mae|dino`: the architecture they describe, their checks, and
// the JSON the saved encoder's metadata, the training state and --json hold.
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/vit_config.h"
#include "pretrain/objectives.h"

namespace vitprobe {

/// Options of one pretraining run; the CLI fills them. Defaults are the bundled Fashion-MNIST recipe.
struct PretrainOptions {
  std::string objective = "mae";       // mae | dino
  std::string data = "fashion-mnist";  // a --data SPEC (training split)
  int64_t limit = 0;                   // > 0: a class-balanced subset of that many images
  std::string out;                     // the encoder file (.safetensors)
  std::string state;                   // the training state; empty: OUT with .state.safetensors
  bool resume = false;                 // continue from `state` after its last completed epoch

  /// Architecture: a preset name (vit_tiny_patch16, ...) or empty for the fields below.
  std::string arch;
  int img_size = 28, patch_size = 4, embed_dim = 192, depth = 6, num_heads = 3;
  double mlp_ratio = 4.0;

  int epochs = 10;
  int64_t max_steps = 0;  // > 0: stop after this many steps of this invocation (tests); the state
                          // is that of the last completed epoch, so a stop at an epoch boundary
                          // resumes exactly as if the run had not stopped
  int64_t batch_size = 64;
  double warmup_epochs = 1.0;  // fractional epochs of linear lr warm-up
  uint64_t seed = 0;
  int workers = 1;                                // data threads of the MAE loader (DINO crops use the compute threads)
  std::string precision = "fp32";                 // fp32 | bf16 (blocks in bf16 copies of fp32 master weights)
  std::string save_dtype = "fp32";                // dtype of the saved encoder: fp32 | bf16 | fp16
  std::string device = "cpu";                     // cpu | cuda | cuda:N: where the model, views and steps run
  std::optional<std::array<float, 3>> mean, std;  // unset: measured on the training images
  std::string interpolation = "bicubic";
  bool progress = true;
  std::string command_line;  // recorded in the metadata when given

  MaeTrainingOptions mae;
  DinoTrainingOptions dino;
};

/// What a run did.
struct PretrainResult {
  int epochs_done = 0;
  int64_t steps_done = 0;
  double final_loss = 0.0;           // mean loss of the last epoch (or of the steps run with max_steps)
  std::vector<double> epoch_losses;  // mean loss per completed epoch, from the first (resumed runs included)
  std::vector<double> step_losses;   // loss of every step of this invocation
  std::map<std::string, std::vector<double>> step_metrics;  // the objective's diagnostics per step (DINO: kl, ...)
  double images_per_second = 0.0;                           // this invocation
  double wall_s = 0.0;                                      // all invocations together
  std::string out, state;
};

/// The architecture the options describe; throws BadInput for an unknown preset or inconsistent sizes.
VitConfig pretrain_architecture(const PretrainOptions& options);

/// The options as JSON (what the saved encoder's "training" metadata holds).
nlohmann::json pretrain_options_json(const PretrainOptions& options);

/// The result as JSON, for --json and tests.
nlohmann::json pretrain_result_json(const PretrainResult& result);

/// Throws BadInput for an unknown objective, a missing --out or an out-of-range value.
void validate_pretrain_options(const PretrainOptions& options);

/// Throws BadInput naming the first option (other than those a resume may change: epochs, max steps, workers,
/// output files, ...) whose value in the state `file` (`stored`) differs from the current one.
void check_resume_compatible(const std::string& file, const nlohmann::json& stored, const nlohmann::json& current);

}  // namespace vitprobe
