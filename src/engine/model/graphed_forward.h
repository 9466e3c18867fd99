#pragma once
// A forward replayed from a CUDA graph: the encoder's kernels for one input shape are captured once, then each
// call launches them as one graph (no per-kernel launch overhead, which dominates small batches on a fast GPU).
#include <ATen/core/Tensor.h>

#include <memory>

#include "model/vit_encoder.h"

namespace vitprobe {

class GraphedForward {
 public:
  /// Captures `encoder`'s forward of `request` for inputs of `input_shape` (B, C, H, W) on the encoder's CUDA
  /// device. Throws BadInput when the encoder is not on a CUDA device or this libtorch has no CUDA.
  GraphedForward(const VitEncoder& encoder, const ForwardRequest& request, at::IntArrayRef input_shape);
  ~GraphedForward();
  GraphedForward(const GraphedForward&) = delete;
  GraphedForward& operator=(const GraphedForward&) = delete;

  /// Copies `images` (the captured shape, any device and dtype) into the graph's input and replays it. The
  /// result's tensors belong to the graph: the next call overwrites them (clone what must be kept).
  const ForwardResult& run(const at::Tensor& images);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitprobe
