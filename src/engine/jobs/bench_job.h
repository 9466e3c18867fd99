#pragma once
// `vitprobe bench`: throughput of the encoder forward on random weights, next to the GEMM ceiling of the same
// machine and dtype measured in the same run.
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace vitprobe {

/// Options of one benchmark run; the CLI fills them.
struct BenchOptions {
  std::string arch = "vit_base_patch16";
  int batch = 16;
  int img_size = 224;
  std::string dtype = "bf16";
  std::string device = "cpu";
  std::string backend = "auto";
  int warmup = 2;
  int iterations = 10;
  int gemm_size = 2048;      // square matrix product for the ceiling
  bool with_attention = true;  // also time a forward that returns every block's attention maps
  bool cuda_graphs = true;     // on a GPU, also time the forward replayed from a CUDA graph
};

/// Forward FLOPs of one image (multiply-adds counted as 2): patch embedding, qkv, attention, projection, MLP.
double vit_forward_flops(int embed_dim, int depth, int mlp_hidden_dim, int num_tokens, int patch_dim);

/// Runs the benchmark and returns its figures (medians over iterations).
nlohmann::json run_bench(const BenchOptions& options);

}  // namespace vitprobe
