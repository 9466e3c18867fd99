#include "kernels/onednn_matmul.h"

#include <ATen/ATen.h>

#include <map>
#include <mutex>
#include <vector>
#include <tuple>

#include "common/errors.h"

#ifdef VITPROBE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace vitprobe {

#ifdef VITPROBE_WITH_ONEDNN
namespace {

using dnnl::memory;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::data_type to_dnnl(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return memory::data_type::f32;
    case at::kBFloat16: return memory::data_type::bf16;
    default: throw BadInput(std::string("oneDNN kernels: unsupported dtype ") + c10::toString(dtype));
  }
}

memory::desc strided_desc(const at::Tensor& tensor) {
  return memory::desc(memory::dims(tensor.sizes().begin(), tensor.sizes().end()), to_dnnl(tensor.scalar_type()),
                      memory::dims(tensor.strides().begin(), tensor.strides().end()));
}

memory wrap(const memory::desc& desc, const at::Tensor& tensor) {
  return memory(desc, cpu_engine(), tensor.data_ptr());
}

}  // namespace

struct PackedLinear::Impl {
  struct Variant {
    dnnl::matmul primitive;
    memory weights;  // packed for this variant's primitive
  };
  int64_t n = 0, k = 0;
  at::ScalarType dtype;
  Activation activation;
  at::Tensor weight_plain;  // (K, N) view storage in the compute dtype, used to pack for new shapes
  at::Tensor bias;          // (1, N) fp32
  mutable std::mutex mutex;
  mutable std::map<std::tuple<int64_t, bool, bool>, std::shared_ptr<Variant>> variants;
  mutable std::vector<memory> packed;  // one copy per distinct packed layout, shared by the variants that use it

  std::shared_ptr<Variant> variant(int64_t m, bool with_scale, bool with_residual) const {
    std::lock_guard<std::mutex> lock(mutex);
    auto& slot = variants[{m, with_scale, with_residual}];
    if (slot) return slot;
    const auto dt = to_dnnl(dtype);
    memory::desc src({m, k}, dt, memory::format_tag::ab);
    memory::desc weights_any({k, n}, dt, memory::format_tag::any);
    memory::desc bias_desc({1, n}, memory::data_type::f32, memory::format_tag::ab);
    memory::desc dst({m, n}, dt, memory::format_tag::ab);
    dnnl::post_ops post_ops;
    if (activation == Activation::Gelu) post_ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    if (with_scale) post_ops.append_binary(dnnl::algorithm::binary_mul, memory::desc({1, n}, dt, memory::format_tag::ab));
    if (with_residual) post_ops.append_binary(dnnl::algorithm::binary_add, dst);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post_ops);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights_any, bias_desc, dst), attr, cpu_engine());
    auto made = std::make_shared<Variant>();
    made->primitive = dnnl::matmul(pd);
    // Pack once per layout: the weights are reordered into the kernel's layout at first use, and variants
    // (batch sizes, MLP row chunks, fused or unfused residual) that want the same layout share that copy.
    for (const auto& existing : packed) {
      if (existing.get_desc() == pd.weights_desc()) {
        made->weights = existing;
        slot = made;
        return slot;
      }
    }
    memory plain(memory::desc({k, n}, dt, memory::format_tag::ba), cpu_engine(), weight_plain.data_ptr());
    made->weights = memory(pd.weights_desc(), cpu_engine());
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(plain, made->weights).execute(stream, plain, made->weights);
    stream.wait();
    packed.push_back(made->weights);
    slot = made;
    return slot;
  }
};

bool onednn_available() { return true; }

PackedLinear::PackedLinear(const at::Tensor& weight, const at::Tensor& bias, at::ScalarType dtype, Activation activation)
    : impl_(std::make_shared<Impl>()) {
  impl_->n = weight.size(0);
  impl_->k = weight.size(1);
  impl_->dtype = dtype;
  impl_->activation = activation;
  impl_->weight_plain = weight.to(dtype).contiguous();  // (N, K) row-major == (K, N) in "ba" order
  impl_->bias = (bias.defined() ? bias.to(at::kFloat) : at::zeros({impl_->n})).reshape({1, impl_->n}).contiguous();
}

int64_t PackedLinear::out_features() const { return impl_->n; }

at::Tensor PackedLinear::operator()(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& scale) const {
  const auto& impl = *impl_;
  const int64_t m = x.size(0);
  const auto input = x.to(impl.dtype).contiguous();
  const auto variant = impl.variant(m, scale.defined(), residual.defined());
  auto out = at::empty({m, impl.n}, input.options());
  const auto dt = to_dnnl(impl.dtype);
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, memory(memory::desc({m, impl.k}, dt, memory::format_tag::ab), cpu_engine(), input.data_ptr())},
      {DNNL_ARG_WEIGHTS, variant->weights},
      {DNNL_ARG_BIAS, memory(memory::desc({1, impl.n}, memory::data_type::f32, memory::format_tag::ab), cpu_engine(),
                             impl.bias.data_ptr())},
      {DNNL_ARG_DST, memory(memory::desc({m, impl.n}, dt, memory::format_tag::ab), cpu_engine(), out.data_ptr())},
  };
  at::Tensor scale_values, residual_values;
  int post_op = impl.activation == Activation::Gelu ? 1 : 0;
  if (scale.defined()) {
    scale_values = scale.to(impl.dtype).contiguous();
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op) | DNNL_ARG_SRC_1] =
        memory(memory::desc({1, impl.n}, dt, memory::format_tag::ab), cpu_engine(), scale_values.data_ptr());
    ++post_op;
  }
  if (residual.defined()) {
    residual_values = residual.to(impl.dtype).contiguous();
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op) | DNNL_ARG_SRC_1] =
        memory(memory::desc({m, impl.n}, dt, memory::format_tag::ab), cpu_engine(), residual_values.data_ptr());
  }
  dnnl::stream stream(cpu_engine());
  variant->primitive.execute(stream, args);
  stream.wait();
  return out;
}

void batched_matmul(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out, float alpha) {
  static std::mutex mutex;
  static std::map<std::string, dnnl::matmul> cache;
  const auto a_desc = strided_desc(a), b_desc = strided_desc(b), out_desc = strided_desc(out);
  std::string key = std::to_string(alpha);
  for (const auto& tensor : {a, b, out}) {
    key += "|" + std::string(c10::toString(tensor.scalar_type()));
    for (auto size : tensor.sizes()) key += "," + std::to_string(size);
    for (auto stride : tensor.strides()) key += ":" + std::to_string(stride);
  }
  dnnl::matmul primitive;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = cache.find(key);
    if (found == cache.end()) {
      dnnl::primitive_attr attr;
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_desc, b_desc, out_desc), attr, cpu_engine());
      found = cache.emplace(key, dnnl::matmul(pd)).first;
    }
    primitive = found->second;
  }
  dnnl::stream stream(cpu_engine());
  primitive.execute(stream, {{DNNL_ARG_SRC, wrap(a_desc, a)}, {DNNL_ARG_WEIGHTS, wrap(b_desc, b)},
                             {DNNL_ARG_DST, wrap(out_desc, out)}});
  stream.wait();
}

#else  // no oneDNN: the reference path is used; these are never called.

struct PackedLinear::Impl {};
bool onednn_available() { return false; }
PackedLinear::PackedLinear(const at::Tensor&, const at::Tensor&, at::ScalarType, Activation) {
  throw BadInput("this build has no oneDNN kernels (use the reference backend)");
}
int64_t PackedLinear::out_features() const { return 0; }
at::Tensor PackedLinear::operator()(const at::Tensor&, const at::Tensor&, const at::Tensor&) const { return {}; }
void batched_matmul(const at::Tensor&, const at::Tensor&, const at::Tensor&, float) {
  throw BadInput("this build has no oneDNN kernels (use the reference backend)");
}

#endif

}  // namespace vitprobe
