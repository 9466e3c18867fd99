#include "pretrain/checkpoints.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "checkpoint/safetensors.h"
#include "common/errors.h"

namespace vitprobe {
namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + ")";
}

// Every tensor of the state with its name, in a fixed order: trained tensors, buffers, then the moments.
std::vector<std::pair<std::string, at::Tensor>> state_tensors(PretrainObjective& objective, AdamW& optimizer) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  const auto& parameters = optimizer.parameters();
  for (const auto& parameter : parameters) tensors.emplace_back(parameter.name, parameter.tensor);
  for (const auto& buffer : objective.buffers()) tensors.push_back(buffer);
  for (size_t i = 0; i < parameters.size(); ++i) {
    tensors.emplace_back("adamw.exp_avg." + parameters[i].name, optimizer.first_moments()[i]);
    tensors.emplace_back("adamw.exp_avg_sq." + parameters[i].name, optimizer.second_moments()[i]);
  }
  return tensors;
}

}  // namespace

void save_encoder(const std::string& file, VitWeights weights, at::ScalarType dtype,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  visit_weights(weights, [&](const std::string& key, at::Tensor& tensor) {
    if (tensor.defined()) tensors.emplace_back(key, tensor.detach().to(at::kCPU, dtype).contiguous());
  });
  write_safetensors(file, tensors, metadata);
}

void save_training_state(const std::string& file, PretrainObjective& objective, AdamW& optimizer,
                         const std::string& progress) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (auto& [name, tensor] : state_tensors(objective, optimizer)) tensors.emplace_back(name, tensor.detach().cpu());
  write_safetensors(file, tensors,
                    {{"vitprobe_training_state", progress}, {"adamw_steps", std::to_string(optimizer.step_count())}});
}

std::string load_training_state(const std::string& file, PretrainObjective& objective, AdamW& optimizer) {
  const RawCheckpoint raw = read_safetensors(file);
  const auto progress = raw.metadata.find("vitprobe_training_state");
  const auto steps = raw.metadata.find("adamw_steps");
  if (progress == raw.metadata.end() || steps == raw.metadata.end()) {
    throw BadInput(file + ": not a vitprobe training state (no vitprobe_training_state metadata)");
  }
  std::map<std::string, at::Tensor> stored;
  for (const auto& entry : raw.entries) stored[entry.path.back()] = entry.tensor;
  at::NoGradGuard no_grad;
  for (auto& [name, tensor] : state_tensors(objective, optimizer)) {
    const auto found = stored.find(name);
    if (found == stored.end()) throw BadInput(file + ": training state has no tensor '" + name + "'");
    if (found->second.sizes() != tensor.sizes()) {
      throw BadInput(file + ": tensor '" + name + "' has shape " + shape_text(found->second.sizes()) +
                     ", this run needs " + shape_text(tensor.sizes()));
    }
    tensor.copy_(found->second);
  }
  optimizer.set_step_count(std::stoll(steps->second));
  return progress->second;
}

std::string default_state_file(const std::string& encoder_file) {
  const std::string suffix = ".safetensors";
  if (encoder_file.size() > suffix.size() &&
      encoder_file.compare(encoder_file.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return encoder_file.substr(0, encoder_file.size() - suffix.size()) + ".state" + suffix;
  }
  return encoder_file + ".state.safetensors";
}

}  // namespace vitprobe
