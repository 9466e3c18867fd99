#pragma once
// DINO (Caron et al., ICCV 2021; official main_dino.py, vision_transformer.py): a student and an EMA teacher
// ViT, each followed by the DINO head; the student's softmax at temperature 0.1 on every crop is matched to
// the teacher's centred, sharpened softmax on the global crops of the same images.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <vector>

#include "pretrain/optimizer.h"

namespace vitprobe {

/// Shape of the DINO head: 3-layer MLP (in -> hidden -> hidden -> bottleneck, GELU between), L2 normalisation,
/// then a weight-normalised linear layer without bias to out_dim prototypes.
struct DinoHeadShape {
  int hidden_dim = 2048;
  int bottleneck_dim = 256;
  int out_dim = 4096;
};

/// The head's weights. The last layer is weight_norm(Linear): weight = g * v / ||v|| (row norms); DINO's
/// norm_last_layer=True fixes g = 1, so only v (last_v) is stored and trained.
struct DinoHeadWeights {
  at::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias, fc3_weight, fc3_bias;
  at::Tensor last_v;  // (out_dim, bottleneck_dim)
};

/// A fresh head as DINOHead._init_weights (trunc_normal(0.02) Linear weights, zero biases) and nn.Linear's
/// default for the last layer's v (kaiming_uniform a=sqrt(5): U(+-1/sqrt(bottleneck))); tensors require grad.
DinoHeadWeights init_dino_head(int in_dim, const DinoHeadShape& shape, at::Generator& generator);

/// The head's tensors named "PREFIX" + DINO's key (mlp.0.weight, mlp.2.weight, mlp.4.weight, last_layer.weight_v).
std::vector<TrainableTensor> head_tensors(DinoHeadWeights& head, const std::string& prefix);

/// Head forward: features (B, in_dim) -> logits (B, out_dim).
at::Tensor dino_head_forward(const DinoHeadWeights& head, const at::Tensor& features);

/// DINOLoss.forward: student_output (V*B, K) with V crops (globals first), teacher_output (2*B, K) of the two
/// global crops. Cross-entropy between softmax((t - center) / teacher_temp) and log_softmax(s / student_temp)
/// over every (teacher crop, student crop) pair of different crops, each averaged over the batch, then averaged
/// over the pairs. The teacher side carries no gradient.
at::Tensor dino_loss(const at::Tensor& student_output, const at::Tensor& teacher_output, const at::Tensor& center,
                     int64_t num_crops, double student_temperature, double teacher_temperature);

/// DINOLoss.update_center: center * m + mean over the batch of teacher_output * (1 - m); returns the new center.
at::Tensor updated_center(const at::Tensor& center, const at::Tensor& teacher_output, double momentum);

/// The EMA update of the teacher: t = m * t + (1 - m) * s for each pair of tensors (in place, no grad).
void ema_update(const std::vector<at::Tensor>& teacher, const std::vector<at::Tensor>& student, double momentum);

}  // namespace vitprobe
