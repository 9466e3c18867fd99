#include "kernels/onednn_matmul.h"

#include <ATen/ATen.h>

#include <iostream>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "common/cpu_features.h"
#include "common/errors.h"

#ifdef VITPROBE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace vitprobe {

#ifdef VITPROBE_WITH_ONEDNN
namespace {

using dnnl::memory;

dnnl::cpu_isa to_dnnl(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Sse41: return dnnl::cpu_isa::sse41;
    case CpuIsa::Avx: return dnnl::cpu_isa::avx;
    case CpuIsa::Avx2: return dnnl::cpu_isa::avx2;
    case CpuIsa::Avx512Core: return dnnl::cpu_isa::avx512_core;
    case CpuIsa::Avx512CoreBf16: return dnnl::cpu_isa::avx512_core_bf16;
    case CpuIsa::Avx512CoreAmx: return dnnl::cpu_isa::avx512_core_amx;
    case CpuIsa::All: break;
  }
  return dnnl::cpu_isa::all;
}

// VITPROBE_MAX_CPU_ISA caps oneDNN too (ONEDNN_MAX_CPU_ISA oneDNN reads by itself); it must be set before the
// first primitive is made, so it is set with the engine.
dnnl::engine& cpu_engine() {
  static dnnl::engine engine = [] {
    if (const char* cap = std::getenv("VITPROBE_MAX_CPU_ISA"); cap != nullptr && *cap != '\0') {
      try {
        dnnl::set_max_cpu_isa(to_dnnl(cpu_isa_cap()));
      } catch (const dnnl::error&) {
        // oneDNN takes the cap only before its first use in the process, and libtorch shares this libdnnl:
        // too late here, so say so (vitprobe's own choices below still follow the cap).
        std::cerr << "vitprobe: VITPROBE_MAX_CPU_ISA=" << cap << " came too late for oneDNN, which keeps "
                  << "running its own ISA choice\n";
      }
    }
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return engine;
}

// "AVX2" or "AVX512_CORE (capped at AVX2 by VITPROBE_MAX_CPU_ISA/ONEDNN_MAX_CPU_ISA)": the level in words.
std::string cpu_level_text() {
  const auto level = cpu_features().level(), cap = cpu_isa_cap();
  std::string text = "this CPU: " + cpu_isa_name(level);
  if (cap < level) text += ", capped at " + cpu_isa_name(cap) + " by VITPROBE_MAX_CPU_ISA/ONEDNN_MAX_CPU_ISA";
  return text;
}

// oneDNN 2.x has no bf16 matmul below AVX512_CORE (not even a reference one): tried once on a small product.
bool onednn_runs_bf16() {
  static const bool runs = [] {
    if (effective_cpu_isa() < CpuIsa::Avx512Core) return false;  // the cap decides, whatever oneDNN was told
    try {
      const memory::desc small({2, 2}, memory::data_type::bf16, memory::format_tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(small, small, small), cpu_engine());
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return runs;
}

// Which bf16 path runs, and why: said once per process, on stderr, when it is not the native one (a slower or
// less exact path deserves a word; the native one is what bf16 means, and a line there would come before
// every one-line error of the commands that default to bf16 on such CPUs).
void announce_bf16_path() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!onednn_runs_bf16()) {
      std::cerr << "vitprobe: bf16 products run in fp32 with bf16-rounded weights and activations: oneDNN has no "
                   "bf16 matmul without AVX512_CORE ("
                << cpu_level_text() << ")\n";
    } else if (!cpu_supports_bf16()) {
      std::cerr << "vitprobe: bf16 products run on oneDNN's bf16 kernels, emulated without avx512_bf16/amx_bf16 "
                   "(slower than fp32; "
                << cpu_level_text() << ")\n";
    }
  });
}

// The dtype oneDNN computes in for `dtype`: fp32 for bf16 where oneDNN has no bf16 matmul (the values are
// rounded to bf16 first, so results match bf16 products up to the order of the fp32 accumulation).
at::ScalarType kernel_dtype_for(at::ScalarType dtype) {
  if (dtype != at::kBFloat16) return dtype;
  announce_bf16_path();
  return onednn_runs_bf16() ? dtype : at::kFloat;
}

// A oneDNN failure as one vitprobe line: the operation, its shapes and dtype, and the CPU level.
[[noreturn]] void rethrow(const dnnl::error& e, const std::string& operation, at::ScalarType dtype) {
  throw BadInput("oneDNN " + operation + " in " + c10::toString(dtype) + " failed (" + cpu_level_text() +
                 "): " + e.what());
}

std::string shape_text(int64_t m, int64_t k, int64_t n) {
  return std::to_string(m) + "x" + std::to_string(k) + " @ " + std::to_string(k) + "x" + std::to_string(n);
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
  at::ScalarType dtype;         // what callers pass and get back
  at::ScalarType kernel_dtype;  // what oneDNN computes in (kernel_dtype_for())
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
    try {
      slot = make_variant(m, with_scale, with_residual);
    } catch (const dnnl::error& e) {
      rethrow(e, "matmul " + shape_text(m, k, n), dtype);
    }
    return slot;
  }

  // Called with `mutex` held.
  std::shared_ptr<Variant> make_variant(int64_t m, bool with_scale, bool with_residual) const {
    const auto dt = to_dnnl(kernel_dtype);
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
        return made;
      }
    }
    memory plain(memory::desc({k, n}, dt, memory::format_tag::ba), cpu_engine(), weight_plain.data_ptr());
    made->weights = memory(pd.weights_desc(), cpu_engine());
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(plain, made->weights).execute(stream, plain, made->weights);
    stream.wait();
    packed.push_back(made->weights);
    return made;
  }
};

bool onednn_available() { return true; }

std::string bf16_matmul_path() {
  if (!onednn_runs_bf16()) return "fp32-rounded";
  return cpu_supports_bf16() ? "onednn-native" : "onednn-emulated";
}

std::string onednn_description() {
  cpu_engine();  // the cap is applied with the engine
  const auto* version = dnnl::version();
  static const std::map<dnnl::cpu_isa, const char*> names = {
      {dnnl::cpu_isa::sse41, "sse41"},
      {dnnl::cpu_isa::avx, "avx"},
      {dnnl::cpu_isa::avx2, "avx2"},
      {dnnl::cpu_isa::avx2_vnni, "avx2_vnni"},
      {dnnl::cpu_isa::avx512_core, "avx512_core"},
      {dnnl::cpu_isa::avx512_core_vnni, "avx512_core_vnni"},
      {dnnl::cpu_isa::avx512_core_bf16, "avx512_core_bf16"},
      {dnnl::cpu_isa::avx512_core_amx, "avx512_core_amx"},
  };
  const auto found = names.find(dnnl::get_effective_cpu_isa());
  return std::to_string(version->major) + "." + std::to_string(version->minor) + "." + std::to_string(version->patch) +
         ", " + (found == names.end() ? "other" : found->second);
}

PackedLinear::PackedLinear(const at::Tensor& weight, const at::Tensor& bias, at::ScalarType dtype, Activation activation)
    : impl_(std::make_shared<Impl>()) {
  impl_->n = weight.size(0);
  impl_->k = weight.size(1);
  impl_->dtype = dtype;
  impl_->kernel_dtype = kernel_dtype_for(dtype);
  impl_->activation = activation;
  // (N, K) row-major == (K, N) in "ba" order; rounded to `dtype` first when the kernel computes in fp32.
  impl_->weight_plain = weight.to(dtype).to(impl_->kernel_dtype).contiguous();
  impl_->bias = (bias.defined() ? bias.to(at::kFloat) : at::zeros({impl_->n})).reshape({1, impl_->n}).contiguous();
}

int64_t PackedLinear::out_features() const { return impl_->n; }

at::Tensor PackedLinear::operator()(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& scale) const {
  const auto& impl = *impl_;
  const int64_t m = x.size(0);
  // Rounded to the caller's dtype, then widened (exactly) where the kernel computes in fp32.
  auto kernel_input = [&](const at::Tensor& t) { return t.to(impl.dtype).to(impl.kernel_dtype).contiguous(); };
  const auto input = kernel_input(x);
  const auto variant = impl.variant(m, scale.defined(), residual.defined());
  auto out = at::empty({m, impl.n}, input.options());
  const auto dt = to_dnnl(impl.kernel_dtype);
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
    scale_values = kernel_input(scale);
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op) | DNNL_ARG_SRC_1] =
        memory(memory::desc({1, impl.n}, dt, memory::format_tag::ab), cpu_engine(), scale_values.data_ptr());
    ++post_op;
  }
  if (residual.defined()) {
    residual_values = kernel_input(residual);
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op) | DNNL_ARG_SRC_1] =
        memory(memory::desc({m, impl.n}, dt, memory::format_tag::ab), cpu_engine(), residual_values.data_ptr());
  }
  try {
    dnnl::stream stream(cpu_engine());
    variant->primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    rethrow(e, "matmul " + shape_text(m, impl.k, impl.n), impl.dtype);
  }
  return impl.kernel_dtype == impl.dtype ? out : out.to(impl.dtype);
}

void batched_matmul(const at::Tensor& a, const at::Tensor& b, const at::Tensor& out, float alpha) {
  const bool has_bf16 = a.scalar_type() == at::kBFloat16 || b.scalar_type() == at::kBFloat16 ||
                        out.scalar_type() == at::kBFloat16;
  if (has_bf16 && kernel_dtype_for(at::kBFloat16) == at::kFloat) {
    // bf16 values widened exactly to fp32 (strides kept); a bf16 result is rounded once at the end.
    const auto a32 = a.to(at::kFloat), b32 = b.to(at::kFloat);
    if (out.scalar_type() == at::kFloat) return batched_matmul(a32, b32, out, alpha);
    const auto out32 = at::empty(out.sizes(), out.options().dtype(at::kFloat));
    batched_matmul(a32, b32, out32, alpha);
    out.copy_(out32);
    return;
  }
  static std::mutex mutex;
  static std::map<std::string, dnnl::matmul> cache;
  const auto a_desc = strided_desc(a), b_desc = strided_desc(b), out_desc = strided_desc(out);
  std::string key = std::to_string(alpha);
  for (const auto& tensor : {a, b, out}) {
    key += "|" + std::string(c10::toString(tensor.scalar_type()));
    for (auto size : tensor.sizes()) key += "," + std::to_string(size);
    for (auto stride : tensor.strides()) key += ":" + std::to_string(stride);
  }
  try {
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
  } catch (const dnnl::error& e) {
    rethrow(e, "batched matmul " + shape_text(a.size(-2), a.size(-1), b.size(-1)), a.scalar_type());
  }
}

#else  // no oneDNN: the reference path is used; these are never called.

struct PackedLinear::Impl {};
bool onednn_available() { return false; }
std::string bf16_matmul_path() { return "none"; }
std::string onednn_description() { return "none"; }
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
