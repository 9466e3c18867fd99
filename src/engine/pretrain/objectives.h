#pragma once
// The two pretraining objectives behind one interface, so the training loop (jobs/pretrain_job) is shared:
// MAE (masked patches reconstructed by a light decoder) and DINO (student matches an EMA teacher).
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/vit_encoder.h"
#include "pretrain/dino.h"
#include "pretrain/mae.h"
#include "pretrain/multi_crop.h"
#include "pretrain/optimizer.h"

namespace vitprobe {

/// Hyper-parameters of MAE pretraining (defaults of the official main_pretrain.py unless noted).
struct MaeTrainingOptions {
  double mask_ratio = 0.75;
  bool norm_pix_loss = true;
  MaeDecoderShape decoder;  // 128 wide, 2 blocks, 4 heads here (official ViT-B: 512, 8, 16)
  double base_lr = 1.5e-4;  // blr: lr = blr * batch / 256
  double min_lr = 0.0;
  double weight_decay = 0.05;
  double beta2 = 0.95;          // AdamW betas (0.9, 0.95)
  double crop_scale_min = 0.2;  // RandomResizedCrop(scale=(0.2, 1.0))
};

/// Hyper-parameters of DINO pretraining (defaults of the official main_dino.py unless noted).
struct DinoTrainingOptions {
  DinoHeadShape head;               // out_dim 4096 here (official 65536, sized for ImageNet)
  double momentum_teacher = 0.996;  // cosine to 1 over the run
  double warmup_teacher_temp = 0.04;
  double teacher_temp = 0.04;
  int warmup_teacher_temp_epochs = 0;
  double student_temp = 0.1;
  double center_momentum = 0.9;
  int num_local_crops = 6;        // official default 8
  int local_crop_size = 0;        // 0: img_size * 96 / 224 rounded to the patch size
  double global_scale_min = 0.4;  // global crops scale (0.4, 1)
  double local_scale_max = 0.4;   // local crops scale (0.05, 0.4)
  double local_scale_min = 0.05;
  double base_lr = 5e-4;  // lr = blr * batch / 256
  double min_lr = 1e-6;
  double weight_decay = 0.04;  // cosine to weight_decay_end
  double weight_decay_end = 0.4;
  double clip_grad = 3.0;            // per-tensor gradient norm clip (0: off)
  int freeze_last_layer_epochs = 1;  // the last head layer gets no update in these first epochs
};

/// Where a training step stands, for schedules and seeds.
struct TrainingStep {
  int64_t epoch = 0;
  int64_t step = 0;             // global step, from 0
  int64_t total_steps = 1;      // epochs * steps per epoch
  double epoch_position = 0.0;  // epoch + fraction of it done
};

/// One pretraining objective: its tensors, its loss on a batch of views, and its hooks around the update.
class PretrainObjective {
 public:
  virtual ~PretrainObjective() = default;
  /// "mae" or "dino".
  virtual std::string name() const = 0;
  /// The tensors the optimizer trains (handles to the objective's own tensors, so updates land in place).
  virtual std::vector<TrainableTensor> trainable() = 0;
  /// Other state a checkpoint must hold (DINO's teacher and center), as handles to copy into on resume.
  virtual std::vector<std::pair<std::string, at::Tensor>> buffers() = 0;
  /// The loss of one batch; `views` come from the objective's data pipeline.
  virtual at::Tensor loss(const std::vector<at::Tensor>& views, const TrainingStep& step) = 0;
  /// Weight decay for this step.
  virtual double weight_decay(const TrainingStep& step) const = 0;
  /// Called after backward, before the optimizer step (gradient clipping, frozen layers).
  virtual void before_update(const TrainingStep&) {}
  /// Called after the optimizer step (EMA teacher, center).
  virtual void after_update(const TrainingStep&) {}
  /// The encoder to save: MAE's encoder, DINO's teacher backbone (what the official code evaluates).
  virtual VitWeights encoder() const = 0;
  /// Diagnostics of the last loss() call besides the loss, by name (DINO: "teacher_entropy", the mean
  /// entropy of the centred, sharpened teacher distribution, and "kl" = loss - teacher_entropy, the part of the
  /// cross-entropy the student controls).
  virtual std::map<std::string, double> step_metrics() const { return {}; }
};

/// MAE with a freshly initialised encoder and decoder; `seed` drives the initialisation and the masks.
std::unique_ptr<PretrainObjective> make_mae_objective(const VitConfig& config, const MaeTrainingOptions& options,
                                                      uint64_t seed, at::ScalarType dtype);

/// DINO with a freshly initialised student (and a teacher copied from it); `num_crops` views per batch.
std::unique_ptr<PretrainObjective> make_dino_objective(const VitConfig& config, const DinoTrainingOptions& options,
                                                       int num_crops, uint64_t seed, at::ScalarType dtype);

}  // namespace vitprobe
