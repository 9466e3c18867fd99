#include "pretrain/objectives.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "data/random.h"
#include "pretrain/trainable_vit.h"

namespace vitprobe {
namespace {

// Seed streams of the objectives (distinct from the data pipeline's RandomStream values).
constexpr uint64_t kInitStream = 0x1417;
constexpr uint64_t kMaskStream = 0x3a5c;

class MaeObjective final : public PretrainObjective {
 public:
  MaeObjective(const VitConfig& config, const MaeTrainingOptions& options, uint64_t seed, at::ScalarType dtype)
      : config_(config), options_(options), seed_(seed), dtype_(dtype) {
    auto generator = make_generator(derive_seed(seed, kInitStream));
    encoder_ = init_vit_weights(config_, VitInit::Mae, generator);
    decoder_ = init_mae_decoder(config_, options_.decoder, generator);
  }

  std::string name() const override { return "mae"; }

  std::vector<TrainableTensor> trainable() override {
    auto tensors = trainable_tensors(encoder_, "encoder.");
    for (auto& tensor : decoder_tensors(decoder_)) tensors.push_back(tensor);
    return tensors;
  }

  std::vector<std::pair<std::string, at::Tensor>> buffers() override { return {}; }

  at::Tensor loss(const std::vector<at::Tensor>& views, const TrainingStep& step) override {
    const auto& images = views.at(0);
    auto masking = random_masking(images.size(0), config_.num_patches(), options_.mask_ratio,
                                  derive_seed(seed_, kMaskStream, static_cast<uint64_t>(step.step)));
    // Drawn on the CPU (the same masks on every device), used where the images are.
    for (auto* tensor : {&masking.visible_patches, &masking.restore_indices, &masking.mask}) {
      *tensor = tensor->to(images.device());
    }
    const auto encoded = encode_tokens(encoder_, config_, images, masking.visible_patches, dtype_);
    const auto prediction = decode_patches(decoder_, encoded, masking.restore_indices, dtype_);
    return mae_loss(patchify(images, config_.patch_size), prediction, masking.mask, options_.norm_pix_loss);
  }

  double weight_decay(const TrainingStep&) const override { return options_.weight_decay; }

  VitWeights encoder() const override { return detached_copy(encoder_); }

 private:
  VitConfig config_;
  MaeTrainingOptions options_;
  uint64_t seed_;
  at::ScalarType dtype_;
  VitWeights encoder_;
  MaeDecoderWeights decoder_;
};

class DinoObjective final : public PretrainObjective {
 public:
  DinoObjective(const VitConfig& config, const DinoTrainingOptions& options, int num_crops, uint64_t seed,
                at::ScalarType dtype)
      : config_(config), options_(options), num_crops_(num_crops), dtype_(dtype) {
    auto generator = make_generator(derive_seed(seed, kInitStream));
    student_ = init_vit_weights(config_, VitInit::Dino, generator);
    student_head_ = init_dino_head(config_.embed_dim, options_.head, generator);
    // The teacher starts as the student (teacher.load_state_dict(student.state_dict())) and is never trained.
    teacher_ = detached_copy(student_);
    auto head_copies = head_tensors(student_head_, "");
    for (auto& tensor : head_copies) tensor.tensor = tensor.tensor.detach().clone();
    teacher_head_ = rebuild_head(head_copies);
    center_ = at::zeros({1, options_.head.out_dim});
  }

  std::string name() const override { return "dino"; }

  std::vector<TrainableTensor> trainable() override {
    auto tensors = trainable_tensors(student_, "student.backbone.");
    for (auto& tensor : head_tensors(student_head_, "student.head.")) tensors.push_back(tensor);
    return tensors;
  }

  std::vector<std::pair<std::string, at::Tensor>> buffers() override {
    std::vector<std::pair<std::string, at::Tensor>> state;
    visit_weights(teacher_, [&](const std::string& key, at::Tensor& tensor) {
      if (tensor.defined()) state.emplace_back("teacher.backbone." + key, tensor);
    });
    for (auto& tensor : head_tensors(teacher_head_, "teacher.head.")) state.emplace_back(tensor.name, tensor.tensor);
    state.emplace_back("dino.center", center_);
    return state;
  }

  at::Tensor loss(const std::vector<at::Tensor>& views, const TrainingStep& step) override {
    const auto globals = at::cat({views.at(0), views.at(1)}, 0);
    at::Tensor teacher_output;
    {
      at::NoGradGuard no_grad;
      const auto tokens = encode_tokens(teacher_, config_, globals, at::Tensor(), dtype_);
      teacher_output = dino_head_forward(teacher_head_, tokens.select(1, 0));
    }
    // The student sees the global crops together, then all local crops together (same resolution each).
    std::vector<at::Tensor> student_outputs;
    student_outputs.push_back(
        dino_head_forward(student_head_, encode_tokens(student_, config_, globals, at::Tensor(), dtype_).select(1, 0)));
    if (views.size() > 2) {
      const auto locals = at::cat(std::vector<at::Tensor>(views.begin() + 2, views.end()), 0);
      student_outputs.push_back(dino_head_forward(
          student_head_, encode_tokens(student_, config_, locals, at::Tensor(), dtype_).select(1, 0)));
    }
    const double temperature = teacher_temperature(options_.warmup_teacher_temp, options_.teacher_temp,
                                                   options_.warmup_teacher_temp_epochs, step.epoch);
    auto loss =
        dino_loss(at::cat(student_outputs, 0), teacher_output, center_, num_crops_, options_.student_temp, temperature);
    last_teacher_output_ = teacher_output;
    {
      at::NoGradGuard no_grad;
      const auto teacher = at::softmax((teacher_output - center_) / temperature, -1);
      teacher_entropy_ = -(teacher * at::log(teacher.clamp_min(1e-30))).sum(-1).mean().item<double>();
      last_loss_ = loss.item<double>();
    }
    return loss;
  }

  std::map<std::string, double> step_metrics() const override {
    return {{"teacher_entropy", teacher_entropy_}, {"kl", last_loss_ - teacher_entropy_}};
  }

  double weight_decay(const TrainingStep& step) const override {
    return cosine_decay(options_.weight_decay, options_.weight_decay_end, step.step, step.total_steps);
  }

  void before_update(const TrainingStep& step) override {
    const auto tensors = trainable();
    if (options_.clip_grad > 0) clip_gradients_per_tensor(tensors, options_.clip_grad);
    // cancel_gradients_last_layer: the prototypes stay fixed during the first epochs.
    if (step.epoch < options_.freeze_last_layer_epochs) student_head_.last_v.mutable_grad() = at::Tensor();
  }

  void after_update(const TrainingStep& step) override {
    // The center moves with the teacher outputs of the step just taken (DINOLoss.update_center).
    center_.copy_(updated_center(center_, last_teacher_output_, options_.center_momentum));
    const double momentum = cosine_decay(options_.momentum_teacher, 1.0, step.step, step.total_steps);
    std::vector<at::Tensor> teacher, student;
    auto student_tensors = trainable();
    for (auto& [name, tensor] : buffers()) {
      if (name != "dino.center") teacher.push_back(tensor);
    }
    for (auto& tensor : student_tensors) student.push_back(tensor.tensor);
    ema_update(teacher, student, momentum);
  }

  VitWeights encoder() const override { return detached_copy(teacher_); }

 private:
  static DinoHeadWeights rebuild_head(const std::vector<TrainableTensor>& tensors) {
    DinoHeadWeights head;
    head.fc1_weight = tensors[0].tensor;
    head.fc1_bias = tensors[1].tensor;
    head.fc2_weight = tensors[2].tensor;
    head.fc2_bias = tensors[3].tensor;
    head.fc3_weight = tensors[4].tensor;
    head.fc3_bias = tensors[5].tensor;
    head.last_v = tensors[6].tensor;
    return head;
  }

  VitConfig config_;
  DinoTrainingOptions options_;
  int num_crops_;
  at::ScalarType dtype_;
  VitWeights student_, teacher_;
  DinoHeadWeights student_head_, teacher_head_;
  at::Tensor center_;
  at::Tensor last_teacher_output_;
  double teacher_entropy_ = 0.0, last_loss_ = 0.0;
};

}  // namespace

std::unique_ptr<PretrainObjective> make_mae_objective(const VitConfig& config, const MaeTrainingOptions& options,
                                                      uint64_t seed, at::ScalarType dtype) {
  return std::make_unique<MaeObjective>(config, options, seed, dtype);
}

std::unique_ptr<PretrainObjective> make_dino_objective(const VitConfig& config, const DinoTrainingOptions& options,
                                                       int num_crops, uint64_t seed, at::ScalarType dtype) {
  return std::make_unique<DinoObjective>(config, options, num_crops, seed, dtype);
}

}  // namespace vitprobe
