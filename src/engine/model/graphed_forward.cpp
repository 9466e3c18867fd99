#include "model/graphed_forward.h"

#include <ATen/ATen.h>

#include "common/errors.h"
#ifdef VITPROBE_TORCH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace vitprobe {

struct GraphedForward::State {
#ifdef VITPROBE_TORCH_CUDA
  at::cuda::CUDAGraph graph;
#endif
  at::Tensor input;
  ForwardResult output;
};

GraphedForward::GraphedForward(const VitEncoder& encoder, const ForwardRequest& request, at::IntArrayRef input_shape)
    : state_(std::make_unique<State>()) {
  const at::Device device = encoder.weights().patch_weight.device();
  if (!device.is_cuda()) throw BadInput("CUDA graphs need an encoder on a CUDA device");
#ifndef VITPROBE_TORCH_CUDA
  (void)request;
  (void)input_shape;
  throw BadInput("CUDA graphs need a libtorch with CUDA");
#else
  state_->input = at::zeros(input_shape, at::TensorOptions().device(device).dtype(encoder.dtype()));
  // As torch.cuda.graphs does: warm up on a side stream (lazy initialisation, kernel selection), then capture
  // on it; the caller's stream waits for nothing captured.
  c10::cuda::CUDAGuard device_guard(device);
  // The input was zeroed on the caller's stream: finished before the side stream reads it.
  c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
  auto stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
  {
    c10::cuda::CUDAStreamGuard stream_guard(stream);
    for (int i = 0; i < 3; ++i) encoder.forward(state_->input, request);
    stream.synchronize();
    state_->graph.capture_begin();
    state_->output = encoder.forward(state_->input, request);
    state_->graph.capture_end();
  }
  stream.synchronize();
#endif
}

GraphedForward::~GraphedForward() = default;

const ForwardResult& GraphedForward::run(const at::Tensor& images) {
  if (images.sizes() != state_->input.sizes()) throw BadInput("graphed forward: the batch shape changed");
  state_->input.copy_(images, /*non_blocking=*/true);
#ifdef VITPROBE_TORCH_CUDA
  state_->graph.replay();
#endif
  return state_->output;
}

}  // namespace vitprobe
