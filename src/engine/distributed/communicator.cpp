#include "distributed/communicator.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "common/errors.h"

namespace vitprobe {

Communicator& single_process() {
  static Communicator instance;
  return instance;
}

at::Tensor all_gather_rows(Communicator& communicator, const at::Tensor& rows, const at::Tensor& positions, int64_t total) {
  auto sizes = rows.sizes().vec();
  sizes[0] = total;
  auto whole = at::zeros(sizes, rows.options().device(at::kCPU));
  if (rows.size(0) > 0) whole.index_copy_(0, positions.to(at::kCPU, at::kLong), rows.to(at::kCPU));
  communicator.all_reduce_sum(whole);
  return whole.to(rows.device());
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(AutogradContext* context, const at::Tensor& input, int64_t communicator) {
    context->saved_data["communicator"] = communicator;
    auto sum = input.detach().clone();
    reinterpret_cast<Communicator*>(communicator)->all_reduce_sum(sum);
    return sum;
  }
  static variable_list backward(AutogradContext* context, variable_list gradients) {
    auto* communicator = reinterpret_cast<Communicator*>(context->saved_data["communicator"].toInt());
    auto sum = gradients[0].contiguous().clone();
    communicator->all_reduce_sum(sum);
    return {sum, at::Tensor()};
  }
};

}  // namespace

at::Tensor differentiable_all_reduce_sum(const at::Tensor& input, Communicator& communicator) {
  if (!communicator.distributed()) return input;
  return AllReduceSum::apply(input, reinterpret_cast<int64_t>(&communicator));
}

}  // namespace vitprobe
