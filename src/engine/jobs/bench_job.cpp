#include "jobs/bench_job.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "checkpoint/loader.h"
#include "common/errors.h"
#include "kernels/onednn_matmul.h"
#include "model/graphed_forward.h"
#include "model/random_weights.h"
#include "model/vit_encoder.h"
#include "jobs/machine.h"

namespace vitprobe {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// Seconds of each of `iterations` calls of `work`, after `warmup` untimed calls.
template <typename Work>
std::vector<double> time_runs(int warmup, int iterations, Work&& work) {
  for (int i = 0; i < warmup; ++i) work();
  std::vector<double> seconds;
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    work();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return seconds;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

double vit_forward_flops(int embed_dim, int depth, int mlp_hidden_dim, int num_tokens, int patch_dim) {
  const double d = embed_dim, t = num_tokens, hidden = mlp_hidden_dim;
  const double per_block = 2 * t * d * 3 * d      // qkv
                           + 2 * 2 * t * t * d    // q k^T and probabilities @ v
                           + 2 * t * d * d        // projection
                           + 2 * 2 * t * d * hidden;  // fc1 + fc2
  const double patches = 2.0 * (num_tokens - 1) * patch_dim * d;
  return depth * per_block + patches;
}

nlohmann::json run_bench(const BenchOptions& options) {
  auto config = find_preset(options.arch);
  if (!config) throw BadInput("unknown --arch '" + options.arch + "'");
  config->img_size = options.img_size;
  config->validate();
  if (options.batch <= 0 || options.iterations <= 0 || options.warmup < 0) {
    throw BadInput("--batch and --iterations must be > 0");
  }
  const auto dtype = parse_dtype(options.dtype);
  const at::Device device(options.device);
  VitEncoder encoder(*config, weights_on(random_vit_weights(*config, 0), device), dtype,
                     device.is_cpu() ? parse_backend(options.backend) : EncoderBackend::Reference);
  const auto images = at::randn({options.batch, 3, config->img_size, config->img_size}).to(device);
  auto synchronize = [&]() {
    if (device.is_cuda()) at::empty({1}, at::TensorOptions().device(device)).cpu();
  };

  ForwardRequest plain;
  const auto forward_seconds = time_runs(options.warmup, options.iterations, [&]() {
    encoder.forward(images, plain);
    synchronize();
  });
  nlohmann::json result;
  const double flops_per_image = vit_forward_flops(config->embed_dim, config->depth, config->mlp_hidden_dim,
                                                   config->num_tokens(), config->in_chans * config->patch_size *
                                                                             config->patch_size);
  const double forward = median(forward_seconds);
  result["arch"] = options.arch;
  result["batch"] = options.batch;
  result["img_size"] = config->img_size;
  result["dtype"] = options.dtype;
  result["device"] = options.device;
  result["backend"] = encoder.backend_name();
  result["threads"] = at::get_num_threads();
  result["iterations"] = options.iterations;
  result["forward_ms_median"] = forward * 1e3;
  result["forward_ms_min"] = *std::min_element(forward_seconds.begin(), forward_seconds.end()) * 1e3;
  result["images_per_s"] = options.batch / forward;
  result["gflop_per_image"] = flops_per_image / 1e9;
  result["gflops"] = flops_per_image * options.batch / forward / 1e9;

  // On a GPU the same forward replayed from a CUDA graph (what a small batch gains without launch overhead).
  if (device.is_cuda() && options.cuda_graphs) {
    GraphedForward graphed(encoder, plain, images.sizes());
    const double replay = median(time_runs(options.warmup, options.iterations, [&]() {
      graphed.run(images);
      synchronize();
    }));
    result["graph_forward_ms_median"] = replay * 1e3;
    result["images_per_s_cuda_graph"] = options.batch / replay;
  }

  if (options.with_attention) {
    ForwardRequest with_maps;
    for (int i = 0; i < config->depth; ++i) with_maps.attention_blocks.push_back(i);
    const double with_attention = median(time_runs(options.warmup, options.iterations, [&]() {
      encoder.forward(images, with_maps);
      synchronize();
    }));
    result["attention_forward_ms_median"] = with_attention * 1e3;
    result["attention_forward_ratio"] = with_attention / forward;
  }

  // The ceiling: one large square matrix product in the same dtype and on the same threads, through libtorch
  // (the system BLAS for fp32) and through oneDNN; the faster of the two is the machine's ceiling.
  const int64_t n = options.gemm_size;
  const auto a = at::randn({n, n}).to(device, dtype);
  const auto b = at::randn({n, n}).to(device, dtype);
  const double flops = 2.0 * n * n * n;
  const double libtorch_gemm = median(time_runs(1, 5, [&]() {
    at::matmul(a, b);
    synchronize();
  }));
  result["gemm_libtorch_gflops"] = flops / libtorch_gemm / 1e9;
  double best = libtorch_gemm;
  if (onednn_available() && device.is_cpu()) {
    const PackedLinear product(b, {}, dtype, Activation::None);
    const double onednn_gemm = median(time_runs(1, 5, [&]() { product(a); }));
    result["gemm_onednn_gflops"] = flops / onednn_gemm / 1e9;
    best = std::min(best, onednn_gemm);
  }
  result["gemm_size"] = n;
  result["gemm_gflops"] = flops / best / 1e9;
  result["ratio_to_gemm"] = result["gflops"].get<double>() / result["gemm_gflops"].get<double>();
  result["peak_rss_mb"] = peak_rss_mb();
  result["machine"] = machine_description();
  return result;
}

}  // namespace vitprobe
