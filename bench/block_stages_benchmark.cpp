// Where the time of one fast-path encoder block goes: each stage of FastEncoderPath::run_block timed alone on
// the shapes of ViT-S/16 and ViT-B/16 at 224 px, batch 16, fp32, all cores. items_per_second is rows (tokens)
// per second; the "GFLOP/s" counter is set for the products.
//
//   build/bench/block_stages_benchmark [--benchmark_filter=vit_small] [--benchmark_min_time=1]
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "common/heap.h"
#include "kernels/onednn_matmul.h"
#include "kernels/softmax.h"

namespace vitprobe {
namespace {

struct Shape {
  int64_t batch = 16, tokens = 197, dim, heads, hidden;
  int64_t rows() const { return batch * tokens; }
  int64_t head_dim() const { return dim / heads; }
};
const Shape kSmall{16, 197, 384, 6, 1536};
const Shape kBase{16, 197, 768, 12, 3072};

// All cores, and the CLI's allocator setting (common/heap.h): large activations from the untrimmed heap.
void set_threads() {
  at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  keep_freed_memory_in_heap();
}

void flops_counter(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iteration * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void Linear(benchmark::State& state, Shape s, int64_t in, int64_t out, Activation act, bool residual) {
  set_threads();
  const auto weight = at::randn({out, in}) * 0.02;
  PackedLinear linear(weight, at::randn({out}), at::kFloat, act);
  const auto x = at::randn({s.rows(), in});
  const auto res = residual ? at::randn({s.rows(), out}) : at::Tensor();
  for (auto _ : state) benchmark::DoNotOptimize(linear(x, res).data_ptr());
  flops_counter(state, 2.0 * s.rows() * in * out);
  state.SetItemsProcessed(state.iterations() * s.rows());
}

void LayerNorm(benchmark::State& state, Shape s) {
  set_threads();
  const auto x = at::randn({s.rows(), s.dim});
  const auto w = at::ones({s.dim}), b = at::zeros({s.dim});
  for (auto _ : state) benchmark::DoNotOptimize(at::layer_norm(x, {s.dim}, w, b, 1e-6).data_ptr());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

void QkvSplit(benchmark::State& state, Shape s) {
  set_threads();
  const auto qkv = at::randn({s.rows(), 3 * s.dim});
  for (auto _ : state) {
    auto split = qkv.view({s.batch, s.tokens, 3, s.heads, s.head_dim()}).permute({2, 0, 3, 1, 4}).contiguous();
    benchmark::DoNotOptimize(split.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * s.rows());
}

void Scores(benchmark::State& state, Shape s) {
  set_threads();
  const auto q = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  const auto k = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  auto scores = at::empty({s.batch, s.heads, s.tokens, s.tokens});
  for (auto _ : state) batched_matmul(q, k.transpose(-2, -1), scores, 0.125f);
  flops_counter(state, 2.0 * s.batch * s.heads * s.tokens * s.tokens * s.head_dim());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

// Scores read straight from the qkv product's output (strided views, no split copy).
void ScoresStrided(benchmark::State& state, Shape s) {
  set_threads();
  const auto qkv = at::randn({s.rows(), 3 * s.dim}).view({s.batch, s.tokens, 3, s.heads, s.head_dim()}).permute({2, 0, 3, 1, 4});
  auto scores = at::empty({s.batch, s.heads, s.tokens, s.tokens});
  for (auto _ : state) batched_matmul(qkv[0], qkv[1].transpose(-2, -1), scores, 0.125f);
  flops_counter(state, 2.0 * s.batch * s.heads * s.tokens * s.tokens * s.head_dim());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

void MixingStrided(benchmark::State& state, Shape s) {
  set_threads();
  const auto p = at::softmax(at::randn({s.batch, s.heads, s.tokens, s.tokens}), -1);
  const auto qkv = at::randn({s.rows(), 3 * s.dim}).view({s.batch, s.tokens, 3, s.heads, s.head_dim()}).permute({2, 0, 3, 1, 4});
  // Context written straight into (B, T, H, hd) order: the merge copy is gone too.
  auto merged = at::empty({s.batch, s.tokens, s.heads, s.head_dim()});
  for (auto _ : state) batched_matmul(p, qkv[2], merged.permute({0, 2, 1, 3}), 1.0f);
  flops_counter(state, 2.0 * s.batch * s.heads * s.tokens * s.tokens * s.head_dim());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

// libtorch's softmax or ours (kernels/softmax.h), in place as the fast path runs it: each iteration starts again
// from the same random scores (the copy is not timed).
void Softmax(benchmark::State& state, Shape s, bool ours) {
  set_threads();
  const auto input = at::randn({s.batch, s.heads, s.tokens, s.tokens}) * 3;
  auto scores = input.clone();
  for (auto _ : state) {
    state.PauseTiming();
    scores.copy_(input);
    state.ResumeTiming();
    if (ours) {
      softmax_lastdim_(scores);
    } else {
      at::_softmax_out(scores, scores, -1, false);
    }
    benchmark::DoNotOptimize(scores.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * s.rows());
}

void Mixing(benchmark::State& state, Shape s) {
  set_threads();
  const auto p = at::softmax(at::randn({s.batch, s.heads, s.tokens, s.tokens}), -1);
  const auto v = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  auto context = at::empty({s.batch, s.heads, s.tokens, s.head_dim()});
  for (auto _ : state) batched_matmul(p, v, context, 1.0f);
  flops_counter(state, 2.0 * s.batch * s.heads * s.tokens * s.tokens * s.head_dim());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

// Scores, softmax and mixing in one sweep (current path) or image by image, so that an image's (H, T, T) scores
// stay in L2 between the three steps.
void Attention(benchmark::State& state, Shape s) {
  set_threads();
  const auto q = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  const auto k = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  const auto v = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  auto context = at::empty({s.batch, s.heads, s.tokens, s.head_dim()});
  const int64_t group = state.range(0);
  auto scores = at::empty({group, s.heads, s.tokens, s.tokens});
  for (auto _ : state) {
    for (int64_t first = 0; first < s.batch; first += group) {
      batched_matmul(q.narrow(0, first, group), k.narrow(0, first, group).transpose(-2, -1), scores, 0.125f);
      softmax_lastdim_(scores);
      batched_matmul(scores, v.narrow(0, first, group), context.narrow(0, first, group), 1.0f);
    }
  }
  flops_counter(state, 4.0 * s.batch * s.heads * s.tokens * s.tokens * s.head_dim());
  state.SetItemsProcessed(state.iterations() * s.rows());
}
BENCHMARK_CAPTURE(Attention, vit_small, kSmall)->Arg(1)->Arg(2)->Arg(4)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(Attention, vit_base, kBase)->Arg(1)->Arg(2)->Arg(4)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();

void ContextMerge(benchmark::State& state, Shape s) {
  set_threads();
  const auto context = at::randn({s.batch, s.heads, s.tokens, s.head_dim()});
  for (auto _ : state) benchmark::DoNotOptimize(context.permute({0, 2, 1, 3}).reshape({s.rows(), s.dim}).data_ptr());
  state.SetItemsProcessed(state.iterations() * s.rows());
}

// fc1 (+GELU) and fc2 (+residual) over the rows in chunks of state.range(0) rows.
void MlpChunked(benchmark::State& state, Shape s) {
  set_threads();
  PackedLinear fc1(at::randn({s.hidden, s.dim}) * 0.02, at::randn({s.hidden}), at::kFloat, Activation::Gelu);
  PackedLinear fc2(at::randn({s.dim, s.hidden}) * 0.02, at::randn({s.dim}), at::kFloat, Activation::None);
  const auto x = at::randn({s.rows(), s.dim}), residual = at::randn({s.rows(), s.dim});
  auto out = at::empty({s.rows(), s.dim});
  const int64_t chunk = state.range(0);
  for (auto _ : state) {
    for (int64_t first = 0; first < s.rows(); first += chunk) {
      const int64_t n = std::min(chunk, s.rows() - first);
      out.narrow(0, first, n).copy_(fc2(fc1(x.narrow(0, first, n)), residual.narrow(0, first, n)));
    }
  }
  flops_counter(state, 4.0 * s.rows() * s.dim * s.hidden);
  state.SetItemsProcessed(state.iterations() * s.rows());
}
BENCHMARK_CAPTURE(MlpChunked, vit_small, kSmall)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(4096)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(MlpChunked, vit_base, kBase)->Arg(128)->Arg(256)->Arg(512)->Arg(1365)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

#define STAGES(name, shape)                                                                                  \
  BENCHMARK_CAPTURE(LayerNorm, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();                   \
  BENCHMARK_CAPTURE(Linear, name##_qkv, shape, shape.dim, 3 * shape.dim, Activation::None, false)            \
      ->Unit(benchmark::kMillisecond)->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(QkvSplit, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();                    \
  BENCHMARK_CAPTURE(Scores, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();                      \
  BENCHMARK_CAPTURE(ScoresStrided, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();               \
  BENCHMARK_CAPTURE(MixingStrided, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();               \
  BENCHMARK_CAPTURE(Softmax, name##_libtorch, shape, false)->Unit(benchmark::kMillisecond)->UseRealTime();   \
  BENCHMARK_CAPTURE(Softmax, name##_ours, shape, true)->Unit(benchmark::kMillisecond)->UseRealTime();        \
  BENCHMARK_CAPTURE(Mixing, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();                      \
  BENCHMARK_CAPTURE(ContextMerge, name, shape)->Unit(benchmark::kMillisecond)->UseRealTime();                \
  BENCHMARK_CAPTURE(Linear, name##_proj_residual, shape, shape.dim, shape.dim, Activation::None, true)       \
      ->Unit(benchmark::kMillisecond)->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(Linear, name##_fc1_gelu, shape, shape.dim, shape.hidden, Activation::Gelu, false)        \
      ->Unit(benchmark::kMillisecond)->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(Linear, name##_fc1_plain, shape, shape.dim, shape.hidden, Activation::None, false)        \
      ->Unit(benchmark::kMillisecond)->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(Linear, name##_fc2_residual, shape, shape.hidden, shape.dim, Activation::None, true)     \
      ->Unit(benchmark::kMillisecond)->UseRealTime();

// One L2-sized group of heads at a time (the cost without the trip to L3/DRAM).
const Shape kSmallGroup{1, 197, 384, 4, 1536};
BENCHMARK_CAPTURE(Softmax, group_ours, kSmallGroup, true)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(Softmax, group_libtorch, kSmallGroup, false)->Unit(benchmark::kMicrosecond)->UseRealTime();

STAGES(vit_small, kSmall)
STAGES(vit_base, kBase)

}  // namespace
}  // namespace vitprobe

BENCHMARK_MAIN();
