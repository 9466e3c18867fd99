#include "kernels/softmax.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/cpu_features.h"
#include "common/errors.h"

namespace vitprobe {
namespace {

constexpr float kSmallestNormal = std::numeric_limits<float>::min();

// One row. Probabilities that would be denormal come out as 0 (as in the AVX-512 loop); a NaN or +inf in the
// row gives a row of NaN, as at::softmax does.
void softmax_row_plain(float* x, int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max = std::isnan(x[i]) || std::isnan(max) ? NAN : std::max(max, x[i]);
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - max));
  const float inverse = 1.f / sum, smallest = kSmallestNormal * sum;
  const bool finite = std::isfinite(sum);  // else (a NaN, +inf, or an all -inf row) every entry is NaN
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= smallest || !finite ? x[i] * inverse : 0.f;
}

void softmax_rows_plain(float* data, int64_t rows, int64_t n) {
  for (int64_t row = 0; row < rows; ++row) softmax_row_plain(data + row * n, n);
}

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside their own reduce/mask intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor polynomial of degree 7
// (truncation error < 1e-8 relative), times 2^n by scalef. Below -87.3 (where exp leaves the normal floats) the
// result is 0.
__attribute__((target("avx512f"))) inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 split in two for exactness
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_maskz_scalef_ps(normal, p, n);
}

// Rows in three passes that stay in L1: maximum, exp and sum, scale. Tail lanes load the row maximum (exp(0),
// no overflow) and are left out of the sum. Probabilities below the smallest normal float are written as 0, so
// no denormals reach the mixing product; a row holding a NaN goes through the plain loop (a row of NaN).
__attribute__((target("avx512f"))) void softmax_rows_avx512(float* data, int64_t rows, int64_t n) {
  const int64_t full = n / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n - full)) - 1u);
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t row = 0; row < rows; ++row) {
    float* x = data + row * n;
    __m512 max = lowest;
    __mmask16 nan = 0;
    for (int64_t i = 0; i < full; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      max = _mm512_max_ps(max, v);
    }
    if (tail) {
      const __m512 v = _mm512_mask_loadu_ps(lowest, tail, x + full);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      max = _mm512_max_ps(max, v);
    }
    if (nan) {
      softmax_row_plain(x, n);
      continue;
    }
    const __m512 row_max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(x + i), row_max));
      _mm512_storeu_ps(x + i, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_mask_loadu_ps(row_max, tail, x + full), row_max));
      _mm512_mask_storeu_ps(x + full, tail, e);
      sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    const float total = _mm512_reduce_add_ps(sum);
    const __m512 inverse = _mm512_set1_ps(1.f / total), smallest = _mm512_set1_ps(kSmallestNormal * total);
    for (int64_t i = 0; i < full; i += 16) {
      const __m512 e = _mm512_loadu_ps(x + i);
      _mm512_storeu_ps(x + i, _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(e, smallest, _CMP_GE_OQ), e, inverse));
    }
    if (tail) {
      const __m512 e = _mm512_maskz_loadu_ps(tail, x + full);
      _mm512_mask_storeu_ps(x + full, tail, _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(e, smallest, _CMP_GE_OQ), e, inverse));
    }
  }
}

#pragma GCC diagnostic pop
#endif

void check_contiguous_float(const at::Tensor& x, const char* what) {
  if (x.scalar_type() != at::kFloat || !x.is_contiguous() || x.dim() < 1 || !x.device().is_cpu()) {
    throw BadInput(std::string(what) + ": needs a contiguous fp32 CPU tensor");
  }
}

}  // namespace

bool softmax_vectorized_available() {
#if defined(__x86_64__)
  // The CPU's own word (cpuid) and the cap (VITPROBE_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA) must both allow it.
  static const bool has = __builtin_cpu_supports("avx512f") && effective_cpu_isa() >= CpuIsa::Avx512Core;
  return has;
#else
  return false;
#endif
}

void softmax_lastdim_(const at::Tensor& x, bool vectorized) {
  check_contiguous_float(x, "softmax_lastdim_");
  const int64_t n = x.size(-1);
  if (n == 0 || x.numel() == 0) return;
  const int64_t rows = x.numel() / n;
  float* data = x.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / n);  // rows per task: ~64 KB of scores
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
#if defined(__x86_64__)
    if (vectorized && softmax_vectorized_available()) return softmax_rows_avx512(data + begin * n, end - begin, n);
#endif
    softmax_rows_plain(data + begin * n, end - begin, n);
  });
}

}  // namespace vitprobe
