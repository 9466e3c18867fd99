// `vitprobe bench`: encoder throughput on random weights and the GEMM ceiling of the same run.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "jobs/bench_job.h"

namespace vitprobe::cli {
namespace {

struct BenchFlags {
  BenchOptions bench;
  int threads = 0;
  bool json = false;
};

void print_table(const nlohmann::json& r) {
  std::printf("%s batch %d, %d px, %s on %s (%s backend), %d threads\n", r["arch"].get<std::string>().c_str(),
              r["batch"].get<int>(), r["img_size"].get<int>(), r["dtype"].get<std::string>().c_str(),
              r["device"].get<std::string>().c_str(), r["backend"].get<std::string>().c_str(), r["threads"].get<int>());
  std::printf("  forward        %8.1f ms (median, min %.1f)  %7.1f images/s  %7.1f GFLOP/s\n",
              r["forward_ms_median"].get<double>(), r["forward_ms_min"].get<double>(), r["images_per_s"].get<double>(),
              r["gflops"].get<double>());
  if (r.contains("graph_forward_ms_median")) {
    std::printf("  CUDA graph     %8.1f ms (median)             %7.1f images/s\n", r["graph_forward_ms_median"].get<double>(),
                r["images_per_s_cuda_graph"].get<double>());
  }
  if (r.contains("attention_forward_ms_median")) {
    std::printf("  + all attention maps %8.1f ms (%.2fx the plain forward)\n", r["attention_forward_ms_median"].get<double>(),
                r["attention_forward_ratio"].get<double>());
  }
  std::printf("  GEMM ceiling   %8.1f GFLOP/s (%d^3); forward reaches %.0f%% of it\n", r["gemm_gflops"].get<double>(),
              r["gemm_size"].get<int>(), 100.0 * r["ratio_to_gemm"].get<double>());
  std::printf("  peak RSS       %8.0f MB\n", r["peak_rss_mb"].get<double>());
  const auto& cpu = r["machine"]["cpu"];
  const auto& kernels = r["machine"]["kernels"];
  std::string features;
  for (const auto& feature : cpu["features"]) features += " " + feature.get<std::string>();
  std::printf("  machine        %s:%s (level %s, cap %s)\n", cpu["model"].get<std::string>().c_str(), features.c_str(),
              cpu["level"].get<std::string>().c_str(), cpu["cap"].get<std::string>().c_str());
  std::printf("  kernels        softmax %s, fp32 products %s, bf16 products %s (oneDNN %s)\n",
              kernels["softmax"].get<std::string>().c_str(), kernels["matmul_fp32"].get<std::string>().c_str(),
              kernels["matmul_bf16"].get<std::string>().c_str(), kernels["onednn"].get<std::string>().c_str());
}

}  // namespace

Subcommand register_bench(CLI::App& parent) {
  auto flags = std::make_shared<BenchFlags>();
  auto& bench = flags->bench;
  auto* app = parent.add_subcommand("bench", "Encoder throughput on random weights vs the GEMM ceiling of this machine");
  app->add_option("--arch", bench.arch, "Architecture preset")->capture_default_str();
  app->add_option("--batch", bench.batch, "Images per forward")->capture_default_str()->check(number_in(1, kMaxBatch));
  app->add_option("--img-size", bench.img_size, "Input size")->capture_default_str()->check(number_in(1, kMaxImageSide));
  app->add_option("--dtype", bench.dtype, "Compute dtype")->capture_default_str()->check(CLI::IsMember({"fp32", "bf16"}));
  add_device_option(*app, bench.device);
  app->add_option("--backend", bench.backend, "auto, reference (libtorch) or fast (oneDNN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "reference", "fast"}));
  app->add_option("--warmup", bench.warmup, "Untimed forwards first")->capture_default_str()->check(number_in(0, 1e6));
  app->add_option("--iterations", bench.iterations, "Timed forwards (the median is reported)")->capture_default_str()->check(number_in(1, 1e6));
  app->add_option("--gemm-size", bench.gemm_size, "Side of the square matrix product giving the ceiling")
      ->capture_default_str()
      ->check(number_in(1, 65536));
  app->add_flag("!--no-attention", bench.with_attention, "Skip timing the forward that returns all attention maps");
  app->add_flag("!--no-cuda-graphs", bench.cuda_graphs, "On a GPU, skip timing the forward replayed from a CUDA graph");
  app->add_flag("--json", flags->json, "Print JSON");
  add_threads_option(*app, flags->threads);
  return {app, [flags]() {
            apply_threads(flags->threads);
            const auto result = run_bench(flags->bench);
            if (flags->json) {
              std::cout << result.dump(2) << "\n";
            } else {
              print_table(result);
            }
            return 0;
          }};
}

}  // namespace vitprobe::cli
